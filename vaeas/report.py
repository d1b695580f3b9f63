"""The comparison chapters' reports, built from result frames (:mod:`vaeas.results`): the protocol of
a sweep grid, what a set of runs holds and cost, paired differences from a reference or between chosen
pairs, whether a short budget's findings survive a long one, KL profiles, and the checked claims that
stop a chapter's run when one fails.

Every table is a :class:`vaeas.tables.MarkdownTable` that :func:`vaeas.tables.glue_table` places in
a numbered, captioned table of the book.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .results import (
    Source,
    kl_profile,
    load_results,
    paired_difference,
    paired_differences,
    read_results,
    summary,
)
from .tables import SHORT, MarkdownTable, _markdown, format_differences, glue_table, markdown_table

#: One checked claim of a chapter: (claim, what is measured, the measured value, whether it holds).
Claim = tuple[str, str, float, bool]


Flags = Callable[[dict[str, Any]], list[str]]


def protocol_table(cfg: Mapping[str, Any], grid: Sequence[Any], flags: Flags) -> MarkdownTable:
    """The methods of a sweep grid and the ``vaeas train`` options each adds to the common ones.

    ``cfg``: a sweep config (:func:`vaeas.sweep.load_config`); ``grid``: its runs
    (:func:`vaeas.sweep.select`), methods in grid order; ``flags``: how options become flags,
    :func:`vaeas.sweep.train_args` (passed in: ``sweep`` sits above this module). Options the config
    sets for every run (``common``, ``eval``, ``fast``), the dataset and the seed are left out; a
    method with nothing of its own shows ``"–"``. :func:`protocol_note` says the rest.
    """
    drop = {"dataset", "seed"} | set(cfg.get("common", {})) | set(cfg.get("eval", {})) | set(cfg.get("fast", {}))
    rows = [[m, " ".join(flags({k: v for k, v in cfg["methods"][m].items() if k not in drop})) or "–"]
            for m in dict.fromkeys(r.method for r in grid)]
    return _markdown(["method", "options on top of the common ones"], rows)


def protocol_note(cfg: Mapping[str, Any], grid: Sequence[Any], flags: Flags) -> str:
    """Two lines under :func:`protocol_table` (same arguments): the options the config sets for
    every run (``common``, and those a ``fast`` grid overrides) as flags, and the evaluation
    settings (IW-NLL samples and number of images, MI batch, AU threshold) with the seeds. Which
    images the IW-NLL used is a fact of each result, not of the config: :func:`iw_subset`."""
    run0 = grid[0].options
    common = set(cfg.get("common", {})) | set(cfg.get("fast", {}))
    seeds = sorted({r.seed for r in grid})
    return (f"common to every run: {' '.join(flags({k: v for k, v in run0.items() if k in common}))}\n"
            f"evaluation: IW-NLL with k={run0['k']} importance samples on {run0['iw_size']} test images; "
            f"MI minibatch B={run0['mi_batch']}; AU threshold delta={run0['delta']}; seeds {seeds}")


def iw_subset(source: Source) -> str:
    """Which images the runs' IW-NLL was measured on, in words, from each result's recorded
    settings: ``"the first 1000 test images"`` for a result without ``subset_seed`` (written before
    :func:`vaeas.metrics.evaluate` drew random subsets), ``"1000 random test images (subset seed
    0)"`` for one with it, ``"all 10000 test images"`` when the subset is the whole split. Runs
    that differ are listed one after the other (``"; "``); runs without an IW-NLL give ``"–"``."""
    phrases: dict[str, list[int]] = {}
    for r in read_results(source):
        m = r["metrics"]
        if "iw_n" not in m:
            continue
        split, n, iw_n = m.get("split", "test"), int(m.get("n", m["iw_n"])), int(m["iw_n"])
        if iw_n >= n:
            phrases.setdefault(f"all {n} {split} images", [])
        elif "subset_seed" in m:
            phrases.setdefault(f"{iw_n} random {split} images", []).append(int(m["subset_seed"]))
        else:
            phrases.setdefault(f"the first {iw_n} {split} images", [])
    out = []
    for text, seeds in phrases.items():
        if seeds:
            s = sorted(set(seeds))
            text += f" (subset seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})"
        out.append(text)
    return "; ".join(out) or "–"


def describe_runs(source: Source) -> str:
    """What a set of runs holds and cost, in three lines: runs (methods × seeds), the sum of their
    wall times and the mean IW-NLL time per run, and the IW-NLL's samples and images
    (:func:`iw_subset`)."""
    items = read_results(source)
    df = load_results(items)
    ks = sorted({int(r["metrics"]["iw_k"]) for r in items if "iw_k" in r["metrics"]})
    return (f"{len(df)} runs ({df['method'].nunique()} methods x {df['seed'].nunique()} seeds)\n"
            f"sum of the runs' wall times (training + evaluation): {df['wall_seconds'].sum() / 3600:.2f} h; "
            f"IW-NLL alone: {df['seconds_iw'].mean():.0f} s per run on average\n"
            f"IW-NLL: k={', '.join(map(str, ks)) or '–'} importance samples on {iw_subset(items)}")


def differences_table(df: pd.DataFrame, reference: str, keys: Sequence[str], methods: Sequence[str] | None = None,
                      dataset: str | None = None, label: str | None = None, digits: int = 2) -> MarkdownTable:
    """Mean over seeds of ``metric(method) − metric(reference)`` (:func:`vaeas.results.paired_differences`, pairs
    matched on seed), one row per method and one column per metric in ``keys`` (headers ``"Δ KL"``
    ...), and a last row with the reference's seed-to-seed standard deviation as the yardstick.

    ``methods``: the rows (default: every method but ``reference``, in order of appearance);
    ``dataset``: the one to read (default: the frame's only one); ``label``: the reference's name
    in the headers (default ``reference``), e.g. ``"vanilla"``.
    """
    keys = list(keys)
    if dataset is None:
        if df["dataset"].nunique() != 1:
            raise ValueError("the frame holds several datasets: pass dataset=")
        dataset = df["dataset"].iloc[0]
    label = reference if label is None else label
    diffs = paired_differences(df, reference, keys, methods=methods, dataset=dataset).set_index(["method", "metric"])
    names = list(dict.fromkeys(diffs.index.get_level_values(0)))
    ref_sd = summary(df, keys).loc[(dataset, reference)].xs("sd", level=1)
    rows = [[m, *diffs.loc[m].loc[keys, "mean"]] for m in names]
    rows.append([f"({label} seed sd)", *ref_sd[keys]])
    return _markdown([f"method − {label}", *[f"Δ {SHORT.get(k, k)}" for k in keys]], rows, digits)


def kl_profile_table(df: pd.DataFrame, threshold: float = 0.1, top: int = 5, digits: int = 2) -> MarkdownTable:
    """How each method spreads its KL over the latent dimensions (:func:`vaeas.results.kl_profile` of every run's
    ``kl_per_dim``, then the mean over its seeds): dimensions with KL > ``threshold`` nats and the
    share of the KL in the ``top`` largest dimensions, one row per method in order of appearance."""
    profile = pd.DataFrame([kl_profile(v, threshold=threshold, top=top) for v in df["kl_per_dim"]], index=df.index)
    rows = profile.groupby(df["method"], sort=False).mean().reset_index().values.tolist()
    return _markdown(["method", f"dims with KL > {threshold:g} nats (mean over seeds)",
                      f"share of the KL in the top {top} dims"], rows, digits)


def estimator_claims(df: pd.DataFrame, tol: float = 1e-3, gap_tol: float = 0.0) -> list[Claim]:
    """The claims every run must satisfy at any size, as :data:`Claim` tuples: each minibatch MI
    estimate at most its cap ``log B``, each dataset MI estimate at most ``log N`` (both up to
    ``tol`` nats), and IW-NLL ≤ −ELBO on the same test images (``neg_elbo_iw``) up to ``gap_tol``
    nats: for a collapsed model the two estimates coincide in expectation and differ by Monte Carlo
    noise of either sign."""
    mb = float((df["mi_minibatch"] - df["mi_minibatch_cap"]).max())
    ds = float((df["mi_dataset"] - df["mi_dataset_cap"]).max())
    gap = float((df["neg_elbo_iw"] - df["iw_nll"]).min())
    up_to = f" (up to {gap_tol:g} nats)" if gap_tol else ""
    return [("every minibatch MI estimate ≤ its cap log B", "max (estimate − cap)", mb, mb <= tol),
            ("every dataset MI estimate ≤ its cap log N", "max (estimate − cap)", ds, ds <= tol),
            (f"IW-NLL ≤ −ELBO on the same test images, for every run{up_to}", "min (−ELBO − IW-NLL)", gap,
             gap >= -gap_tol)]


def claims_table(claims: Sequence[Claim], digits: int = 2) -> MarkdownTable:
    """Claims as a table: claim, measured as, value, holds (``"yes"``, or a bold ``"no"``)."""
    return _markdown(["claim", "measured as", "value", "holds"],
                     [[c, what, float(v), "yes" if ok else "**no**"] for c, what, v, ok in claims], digits)


def check_claims(claims: Sequence[Claim], structural: int | None = None, name: str | None = None) -> None:
    """Show :func:`claims_table` (a rendered table in a notebook, printed elsewhere), raise
    ``AssertionError`` naming every claim that does not hold, else print how many hold;
    ``structural``: how many of the first claims hold at any size (the rest are about full-size
    results). With ``name`` the table is glued under that label (:func:`~vaeas.tables.glue_table`) for a
    numbered, captioned ``{table}`` in the chapter."""
    table = claims_table(claims)
    if name is not None:
        glue_table(name, table)
    else:
        try:
            from IPython.display import display
        except ImportError:  # pragma: no cover - IPython comes with Jupyter
            print(table)
        else:
            display(table)
    failed = [c for c, _, _, ok in claims if not ok]
    if failed:
        raise AssertionError(f"claims that do not hold: {failed}")
    n = len(claims)
    text = f"{n} claims hold"
    if structural is not None:
        text += f" ({structural} structural, {n - structural} about the full-size results)"
    print(text)


def _verdict(short: pd.Series, long: pd.Series) -> str:
    if short["resolved"] and long["resolved"]:
        return "holds" if np.sign(short["mean"]) == np.sign(long["mean"]) else "reverses"
    if short["resolved"]:
        return "no longer resolved"
    if long["resolved"]:
        return "appears"
    return "unresolved at both"


def budget_verdicts(short: pd.DataFrame, long: pd.DataFrame, reference: str, metrics: str | Sequence[str],
                    methods: Sequence[str] | None = None, dataset: str | None = None,
                    level: float = 0.95) -> pd.DataFrame:
    """Does a paired finding of a short budget survive a long one? For each method and metric,
    :func:`vaeas.results.paired_difference` of ``method − reference`` in ``short`` (e.g. the runs after 8 epochs)
    and in ``long`` (the same runs at their end), and a verdict:

    * ``"holds"``: resolved in both, same sign;
    * ``"reverses"``: resolved in both, opposite signs;
    * ``"no longer resolved"``: resolved only in ``short``;
    * ``"appears"``: resolved only in ``long``;
    * ``"unresolved at both"``.

    ``methods``: default every method of ``long`` but ``reference``, in order of appearance, that
    ``short`` has too. Returns one row per (method, metric): ``short_mean, short_low, short_high,
    long_mean, long_low, long_high, n_short, n_long, verdict`` (nats, as the metric).
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if dataset is not None:
        short, long = short[short["dataset"] == dataset], long[long["dataset"] == dataset]
    if methods is None:
        have = set(short["method"])
        methods = [m for m in dict.fromkeys(long["method"]) if m != reference and m in have]
    rows = []
    for m in methods:
        for key in metrics:
            a = pd.Series(paired_difference(short, m, reference, key, level=level))
            b = pd.Series(paired_difference(long, m, reference, key, level=level))
            rows.append({"method": m, "metric": key, "short_mean": a["mean"], "short_low": a["low"],
                         "short_high": a["high"], "long_mean": b["mean"], "long_low": b["low"],
                         "long_high": b["high"], "n_short": a["n"], "n_long": b["n"], "verdict": _verdict(a, b)})
    return pd.DataFrame(rows, columns=["method", "metric", "short_mean", "short_low", "short_high", "long_mean",
                                       "long_low", "long_high", "n_short", "n_long", "verdict"])


def in_order(df: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """The rows of a results frame with their methods in ``order`` (methods not in it last, in
    order of appearance), then by seed: the order of a chapter's tables and figures."""
    rank = {m: i for i, m in enumerate(order)}
    key = df["method"].map(lambda m: rank.get(m, len(rank)))
    return df.assign(_rank=key).sort_values(["_rank", "seed"], kind="stable").drop(columns="_rank")


def pairs_table(df: pd.DataFrame, pairs: Sequence[tuple[str, str]], keys: Sequence[str],
                digits: int = 2) -> MarkdownTable:
    """:func:`vaeas.results.paired_differences` of each pair ``(a, b)``, ``a − b`` over their shared
    seeds, one row per pair (``"a − b"``) and one column per key (``"Δ KL"``...): the mean and its
    95 % interval. Pairs with a method missing from ``df`` are left out (an empty table if none is
    left), so one cell serves a full grid and a quick run's smaller one."""
    keys = list(keys)
    headers = [f"Δ {SHORT.get(k, k)}" for k in keys]
    have = set(df["method"])
    parts = [paired_differences(df, b, keys, methods=[a]).assign(method=f"{a} − {b}")
             for a, b in pairs if a in have and b in have]
    if not parts:
        return markdown_table(pd.DataFrame(columns=["a − b", *headers]))
    table = format_differences(pd.concat(parts), digits=digits, headers=dict(zip(keys, headers, strict=True)))
    return markdown_table(table.rename(columns={"method": "a − b"}))


def vs_reference(df: pd.DataFrame, reference: str, key: str, seed: int = 0) -> pd.Series:
    """``key`` of every method's run of ``seed`` minus the reference's run of that seed, indexed by
    method (the reference left out): a one-seed comparison, for a reference trained once (such as
    the decoder without a code). Raises ``ValueError`` when the reference has no run of ``seed``."""
    runs = df[df["seed"] == seed].set_index("method")[key]
    if reference not in runs.index:
        raise ValueError(f"vs_reference: {reference!r} has no run of seed {seed}")
    return runs.drop(reference) - runs[reference]


def resolved_sign(df: pd.DataFrame, a: str, b: str, metric: str, sign: int, dataset: str | None = None) -> bool:
    """Whether the paired difference ``metric(a) − metric(b)`` (:func:`vaeas.results.paired_difference`)
    is resolved, its 95 % interval excluding zero, with the sign ``sign`` (+1: ``a`` is larger, −1:
    smaller): the form most of a chapter's checked claims take."""
    if sign not in (1, -1):
        raise ValueError(f"resolved_sign: sign must be +1 or -1, not {sign!r}")
    d = paired_difference(df, a, b, metric, dataset=dataset)
    return bool(d["resolved"]) and int(np.sign(d["mean"])) == sign
