"""Markdown tables that fit a book column, shown in a notebook and, in the built book, captioned.

:func:`markdown_table` turns a frame into Markdown of at most ``max_columns`` columns per table;
:func:`show_table` shows a few hand-built rows; :func:`glue_table` shows a table in a notebook and,
when myst-nb is there (the book's build), also stores it under a name, so that a page can place it in
a numbered, captioned table::

    glue_table("tab-mnist-main", markdown_table(df))      # in the code cell (tag: remove-output)

    ::::{table} The caption.                            <- in the next Markdown cell
    :name: tab-mnist-main

    ```{glue:md} tab-mnist-main
    :format: myst
    ```
    ::::

A ``{table}`` directive holds exactly one table: glue a frame of at most ``max_columns`` columns
(one Markdown table), or split it by topic into two glued tables with a caption each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


class MarkdownTable(str):
    """Markdown text that a notebook shows as a rendered table (``_repr_markdown_``)."""

    def _repr_markdown_(self) -> str:
        return str(self)


def _cell(v: Any, digits: int) -> str:
    if v is None or (isinstance(v, float | np.floating) and math.isnan(v)):
        return "–"
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, float | np.floating):
        text = f"{float(v):.{digits}f}"
        return f"{0.0:.{digits}f}" if float(text) == 0 else text   # no "-0.00"
    if isinstance(v, np.integer):
        v = int(v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def _markdown(header: Sequence[Any], rows: Sequence[Sequence[Any]], digits: int | Mapping[Any, int] = 2,
              key: int = 0, max_columns: int = 8) -> MarkdownTable:
    if max_columns < 2:
        raise ValueError("max_columns must be >= 2 (the key column and one more)")
    header = [" ".join(map(str, h)) if isinstance(h, tuple) else str(h) for h in header]
    others = [j for j in range(len(header)) if j != key]
    chunks = [others[i:i + max_columns - 1] for i in range(0, len(others), max_columns - 1)] or [[]]
    tables = []
    for chunk in chunks:
        cols = [key, *chunk]
        dig = [digits.get(header[j], 2) if isinstance(digits, Mapping) else digits for j in cols]
        lines = ["| " + " | ".join(_cell(header[j], 0) for j in cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(row[j], d) for j, d in zip(cols, dig, strict=True)) + " |" for row in rows]
        tables.append("\n".join(lines))
    return MarkdownTable("\n\n".join(tables))


def markdown_table(df: pd.DataFrame, digits: int | Mapping[str, int] = 2, key: str | None = None,
                   max_columns: int = 8, units: Mapping[str, str] | None = None,
                   index: bool = False) -> MarkdownTable:
    """A frame as Markdown that fits a book column: at most ``max_columns`` columns per table.

    A wider frame becomes several tables, one after the other, each starting with the ``key``
    column (default: the first). Floats get ``digits`` decimals (an int, or header -> int), NaN
    shows as ``"–"``; ``units`` (column -> unit) adds ``" (unit)"`` to headers; ``index=True``
    shows the index as leading column(s). In a notebook the result renders as a table
    (``display(markdown_table(df))``); ``print`` shows the Markdown text.
    """
    if index:
        df = df.reset_index()
    units = units or {}
    header = [f"{c} ({units[c]})" if c in units else c for c in df.columns]
    if isinstance(digits, Mapping):
        digits = {f"{c} ({units[c]})" if c in units else c: d for c, d in digits.items()}
    pos = 0 if key is None else list(df.columns).index(key)
    rows = df.astype(object).values.tolist()
    return _markdown(header, rows, digits, key=pos, max_columns=max_columns)


def show_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], digits: int = 2, max_columns: int = 8) -> None:
    """Show ``rows`` under ``header`` as a Markdown table in a notebook (printed elsewhere): the
    quick form of :func:`markdown_table` for a few hand-built rows, cells formatted as there."""
    table = _markdown(header, rows, digits, key=0, max_columns=max_columns)
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        print(table)
    else:
        display(table)


def glue_table(name: str, table: MarkdownTable | str) -> None:
    """Show ``table`` in a notebook and store it as myst-nb's glued output ``name`` (for a
    ``{glue:md}`` inside a ``{table}`` directive); without myst-nb it is only shown (printed
    outside a notebook). ``name`` is also the table's label: letters, digits and ``-``/``_``.

    Raises ``ValueError`` on a bad name or when ``table`` holds more than one Markdown table
    (a ``{table}`` directive holds one).
    """
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"glue_table: {name!r} is not a label (letters, digits, '-' and '_')")
    table = MarkdownTable(table)
    if sum(line.startswith("|---") for line in table.splitlines()) > 1:
        raise ValueError(f"glue_table({name!r}): the text holds several tables; glue each on its own")
    try:
        from myst_nb import glue
    except ImportError:
        try:
            from IPython.display import display
        except ImportError:  # pragma: no cover - IPython comes with Jupyter
            print(table)
        else:
            display(table)
    else:
        glue(name, table, display=True)
