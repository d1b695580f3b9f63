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


#: Short metric names for the headers of difference tables (``"Δ KL"``).
SHORT: dict[str, str] = {
    "neg_elbo": "−ELBO", "iw_nll": "IW-NLL", "kl": "KL", "rec": "rec", "mi_minibatch": "MI minibatch",
    "mi_dataset": "MI dataset", "au": "AU", "probe_acc": "probe acc.", "code_gain": "code gain",
    "latent_r2": "R²", "ppl_iw": "perplexity",
}


def interval_text(mean: float, low: float = math.nan, high: float = math.nan, digits: int = 2) -> str:
    """``"+1.23 [+0.51, +1.95]"``: a signed mean and its interval (``"+1.23"`` without one, ``"–"``
    for a NaN mean)."""
    if math.isnan(mean):
        return "–"
    text = f"{mean:+.{digits}f}"
    return text if math.isnan(low) else f"{text} [{low:+.{digits}f}, {high:+.{digits}f}]"


def format_differences(diffs: pd.DataFrame, digits: int = 2, interval: bool = True,
                       headers: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A :func:`vaeas.results.paired_differences` frame as a wide table of strings, one row per
    (dataset,) method and one column per metric: ``"+1.23 [+0.51, +1.95]"`` (``interval=False``: the
    mean only)."""
    def cell(r: pd.Series) -> str:
        return interval_text(r["mean"], *((r["low"], r["high"]) if interval else ()), digits=digits)

    index = ["dataset", "method"] if diffs["dataset"].nunique() > 1 else ["method"]
    metrics = list(dict.fromkeys(diffs["metric"]))
    cells: dict[tuple, dict[str, str]] = {}
    for _, r in diffs.iterrows():
        cells.setdefault(tuple(r[c] for c in index), dict.fromkeys(metrics, "–"))[r["metric"]] = cell(r)
    columns = [*index, *[(headers or {}).get(k, k) for k in metrics]]
    return pd.DataFrame([[*k, *row.values()] for k, row in cells.items()], columns=columns)


def verdicts_table(verdicts: pd.DataFrame, short: str = "8 epochs", long: str = "long",
                   digits: int = 2) -> MarkdownTable:
    """A :func:`vaeas.report.budget_verdicts` frame as a book table: method, metric, the two paired
    differences as ``"+1.23 [+0.51, +1.95]"`` and the verdict."""
    def cell(r: pd.Series, which: str) -> str:
        return interval_text(r[f"{which}_mean"], r[f"{which}_low"], r[f"{which}_high"], digits)

    rows = [[r["method"], SHORT.get(r["metric"], r["metric"]), cell(r, "short"), cell(r, "long"), r["verdict"]]
            for _, r in verdicts.iterrows()]
    return _markdown(["method", "metric", f"Δ after {short}", f"Δ {long}", "verdict"], rows, digits)
