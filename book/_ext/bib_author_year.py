"""Author-year labels for the bibliography (a local Sphinx extension, see ``_config.yml``).

The chapters cite author-year (``bibtex_reference_style: author_year``): "Kingma and Welling
(2014)". pybtex's ``alpha`` style would label the list ``[KW14]``, which a reader cannot match
with the citation, so this registers a pybtex label style that writes the same author-year text
and a formatting style ``author_year`` that uses it (set as ``bibtex_default_style``):

- one author: "Li, 2019"; two: "Kingma and Welling, 2014"; three or more: "Burda et al., 2016";
  name prefixes are kept ("van den Oord et al., 2016");
- entries that would get the same label are told apart by a letter after the year
  ("2016a", "2016b"), as in the alpha style;
- the list is sorted by author, year and title (alpha's sorting).
"""

from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _last_name(person) -> str:
    """The surname with its prefix ("van den Oord"), LaTeX braces and accents rendered."""
    parts = [*person.prelast_names, *person.last_names]
    return " ".join(Text.from_latex(p).render_as("text") for p in parts)


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "Surname, YEAR", "Surname and Surname, YEAR" or "Surname et al., YEAR"."""

    def format_label(self, entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_last_name(p) for p in persons]
        if not names:
            who = entry.fields.get("organization") or entry.fields.get("key") or entry.key
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        year = entry.fields.get("year", "n.d.")
        return f"{who}, {year}"

    def format_labels(self, sorted_entries):
        labels = [self.format_label(entry) for entry in sorted_entries]
        count = Counter(labels)
        seen: Counter = Counter()
        for label in labels:
            if count[label] == 1:
                yield label
            else:
                yield label + chr(ord("a") + seen[label])
                seen[label] += 1


class AuthorYearStyle(UnsrtStyle):
    """The ``unsrt`` entry format, sorted by author/year/title, with author-year labels."""

    default_sorting_style = "author_year_title"
    default_label_style = "author_year"


register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)


def setup(app):
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
