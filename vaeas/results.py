"""Result files -> pandas: mean, sd and n per group, paired differences with t intervals, rank
correlations, KL-weight curves and Markdown tables that fit a book column, among them those of the
comparison chapters (protocol, differences from a reference, KL profiles, checked claims).

A result file (written by :func:`vaeas.sweep.write_result`, one per run) speaks the API's
vocabulary only ::

    {"name": "mnist-vae-s0", "dataset": "mnist", "method": "vae", "seed": 0,
     "model":   model.config,                      # build_model's keyword arguments
     "trainer": trainer.config(),                  # Trainer(**result["trainer"]) rebuilds it
     "data":    {"limit": None},                   # load_dataset's keyword arguments
     "eval":    {"k": 1000, "iw_size": 1000, ...}, # evaluate's keyword arguments
     "versions": {"vaeas": ..., "torch": ..., "python": ...},
     "metrics": evaluate(...) + train_seconds, wall_seconds, epochs,
     "history": [{"epoch": 1, "step": 430, "kl_weight": ..., ...}, ...]}

Numbers are numbers: the classifier bound's images are ``bound_split`` ("test" or "train") and
``bound_n`` (how many), never a string such as ``"train[:10000]"``. :func:`upgrade_result` turns a
file of the older layout (a CLI ``options`` block next to a ``config`` block) into this one.

:func:`load_results` gives one row per run (``dataset``, ``method``, ``seed``, ``name``, every
scalar metric as a numeric column, list-valued metrics such as ``kl_per_dim`` as object columns,
and ``train_minutes``); :func:`load_histories` gives one row per run and epoch.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

# The table helpers live in vaeas.tables; the chapters import them from here too.
from .tables import (  # noqa: F401
    SHORT,
    MarkdownTable,
    _markdown,
    format_differences,
    glue_table,
    markdown_table,
    show_table,
    verdicts_table,
)

#: The identifying columns of :func:`load_results`, in this order.
KEYS = ("dataset", "method", "seed", "name")

#: Headers of :func:`comparison_table`: metric -> header, unit included.
COLUMNS: dict[str, str] = {
    "neg_elbo": "−ELBO (nats)", "iw_nll": "IW-NLL (nats)", "kl": "KL, rate (nats)",
    "rec": "rec, distortion (nats)", "mi_minibatch": "MI minibatch (nats)", "mi_dataset": "MI dataset (nats)",
    "au": "AU (dims)", "probe_acc": "probe acc. (%)", "train_minutes": "train (min)",
}

#: Headers of further metrics, used when a table asks for them (not in the default columns).
HEADERS: dict[str, str] = {
    **COLUMNS, "ppl_iw": "perplexity (IW)", "code_gain": "code gain (nats)", "latent_r2": "R² to true z",
    "iw_nll_se": "IW-NLL s.e. (nats)", "mi_bound": "VAE-AS bound (nats)", "epochs": "epochs run",
    "best_epoch": "best epoch",
}

#: Keys of a run folder's ``config.json`` that are ``load_dataset`` arguments (the ``data`` block).
DATA_KEYS = ("limit", "val_size", "max_len", "text_file")

Source = str | os.PathLike | Iterable[str | os.PathLike] | Iterable[Mapping[str, Any]]


# ----------------------------------------------------------------------------- the schema
def make_result(name: str, dataset: str, method: str, seed: int, config: Mapping[str, Any],
                metrics: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One result dict from a run folder's ``config.json`` (as ``vaeas train`` writes it), its
    ``metrics.json`` and its history rows. Machine-specific entries (the data folder, the command
    name, the device outside the trainer config) are left out."""
    return {
        "name": name, "dataset": dataset, "method": method, "seed": int(seed),
        "model": dict(config["model"]), "trainer": dict(config["trainer"]),
        "data": {k: config[k] for k in DATA_KEYS if k in config},
        "eval": dict(config.get("eval", {})), "versions": dict(config.get("versions", {})),
        "metrics": normalize_metrics(metrics), "history": [dict(r) for r in history],
    }


def normalize_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics with numbers as numbers: ``bound_split: "train[:10000]"`` becomes ``bound_split:
    "train"`` and ``bound_n: 10000``; a bound on the whole evaluated split gets ``bound_n = n``."""
    out = dict(metrics)
    split = out.get("bound_split")
    if isinstance(split, str):
        m = re.fullmatch(r"(\w+)\[:(\d+)\]", split)
        if m:
            out["bound_split"], out["bound_n"] = m.group(1), int(m.group(2))
        elif "bound_n" not in out and split == out.get("split") and "n" in out:
            out["bound_n"] = int(out["n"])
    return out


def upgrade_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """A result dict in the current layout; one of the older layout (``options`` + ``config``) is
    converted, every number kept as it is."""
    if "config" not in result:
        return {**result, "metrics": normalize_metrics(result.get("metrics", {}))}
    return make_result(result["name"], result["dataset"], result["method"], result["seed"],
                       result["config"], result["metrics"], result.get("history", []))


def read_results(source: Source) -> list[dict[str, Any]]:
    """Result dicts (current layout) from a folder (every ``*.json``, sorted by name), one file, a
    list of files, or a list of result dicts (kept in their order)."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        paths = sorted(path.glob("*.json")) if path.is_dir() else [path]
        items: list[Any] = paths
    else:
        items = list(source)
    return [upgrade_result(x if isinstance(x, Mapping) else json.loads(Path(x).read_text())) for x in items]


# ----------------------------------------------------------------------------- frames
def _train_minutes(m: Mapping[str, Any]) -> float:
    """Training time in minutes, or NaN for a run that resumed after its last epoch (its training
    was measured in an earlier process, so ``wall_seconds`` < ``train_seconds``)."""
    if "train_minutes" in m:
        return float(m["train_minutes"])
    if "train_seconds" not in m or m.get("wall_seconds", 0.0) < m["train_seconds"]:
        return math.nan
    return m["train_seconds"] / 60


def metrics_at(result: Mapping[str, Any], epoch: int) -> dict[str, Any] | None:
    """The test metrics of a run after ``epoch`` epochs: those of the snapshot it evaluated then
    (``vaeas train --eval-epochs``), or its own when it ended there with that epoch's weights; else
    None. With ``train_minutes``, the training time up to that epoch."""
    m = result["metrics"]
    at = (m.get("at_epoch") or {}).get(str(epoch))
    if at is not None:
        return {**normalize_metrics(at), "train_minutes": at["train_seconds"] / 60}
    if int(m.get("epochs", -1)) == epoch and int(m.get("best_epoch", epoch)) == epoch:
        return dict(m)
    return None


def load_results(source: Source, at_epoch: int | None = None) -> pd.DataFrame:
    """One row per run: ``dataset, method, seed, name``, every scalar metric as a numeric column,
    list-valued metrics (``kl_per_dim``, ``au_variance``) as object columns, ``train_minutes``.

    ``source``: a results folder, files, or result dicts (see :func:`read_results`). String metrics
    (``split``, ``bound_split``) are left out; missing metrics are NaN. With ``at_epoch``, each run
    gives its metrics after that many epochs (:func:`metrics_at`) and runs without them are left
    out: the long study's runs, evaluated also after 8 epochs, join the 8-epoch grid so.
    """
    rows = []
    for r in read_results(source):
        metrics = r["metrics"] if at_epoch is None else metrics_at(r, at_epoch)
        if metrics is None:
            continue
        row: dict[str, Any] = {k: r[k] for k in KEYS}
        for key, v in metrics.items():
            if isinstance(v, bool):
                row[key] = int(v)
            elif isinstance(v, int | float | list):
                row[key] = v
        row["train_minutes"] = _train_minutes(metrics)
        rows.append(row)
    df = pd.DataFrame(rows, columns=None if rows else list(KEYS))
    for col in df.columns:
        if col not in KEYS and not df[col].map(lambda v: isinstance(v, list)).any():
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def load_histories(source: Source) -> pd.DataFrame:
    """One row per run and epoch: ``dataset, method, seed, name``, then the history's columns
    (``epoch``, ``step``, ``kl_weight``, ``val_kl``...)."""
    rows = [{**{k: r[k] for k in KEYS}, **h} for r in read_results(source) for h in r["history"]]
    return pd.DataFrame(rows, columns=None if rows else list(KEYS))


# ----------------------------------------------------------------------------- statistics
def summary(df: pd.DataFrame, metrics: str | Sequence[str], by: Sequence[str] = ("dataset", "method")) -> pd.DataFrame:
    """Mean, sample standard deviation (``ddof=1``; NaN for one value) and count per group.

    Returns a frame indexed by ``by`` (groups in order of appearance) with columns
    ``(metric, "mean" | "sd" | "n")``. NaN and infinite values are left out of their metric's
    statistics; a metric missing from ``df`` has ``n = 0``.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    by = [by] if isinstance(by, str) else list(by)
    values = df.reindex(columns=metrics).apply(pd.to_numeric, errors="coerce")
    values = values.replace([np.inf, -np.inf], np.nan)
    grouped = pd.concat([df[by], values], axis=1).groupby(by, sort=False)[metrics]
    out = grouped.agg(["mean", "std", "count"])
    return out.rename(columns={"std": "sd", "count": "n"}, level=1)


def _seed_values(df: pd.DataFrame, method: str, metric: str) -> pd.Series:
    rows = df[df["method"] == method]
    if rows.duplicated(["dataset", "seed"]).any():
        raise ValueError(f"method {method!r} has two runs with the same dataset and seed")
    values = pd.to_numeric(rows.set_index(["dataset", "seed"])[metric], errors="coerce")
    return values.replace([np.inf, -np.inf], np.nan)


def paired_difference(df: pd.DataFrame, a: str, b: str, metric: str, dataset: str | None = None,
                      level: float = 0.95) -> dict[str, Any]:
    """Mean of ``metric(a) - metric(b)`` over the seeds both methods have, with a Student-t interval.

    Pairs are matched on ``seed`` (within ``dataset``; ``dataset=None`` needs a frame of one
    dataset). Returns ``{"a", "b", "metric", "dataset", "seeds", "n", "mean", "sd", "low", "high",
    "level", "resolved"}``: ``mean ± t_{(1+level)/2, n-1} · sd / √n``, ``resolved`` when the
    interval excludes 0. With fewer than two pairs the interval is NaN and nothing is resolved.
    """
    if dataset is not None:
        df = df[df["dataset"] == dataset]
    elif df["dataset"].nunique() > 1:
        raise ValueError("the frame holds several datasets: pass dataset=")
    diff = (_seed_values(df, a, metric) - _seed_values(df, b, metric)).dropna()
    n = len(diff)
    mean = float(diff.mean()) if n else math.nan
    sd = float(diff.std(ddof=1)) if n > 1 else math.nan
    low = high = math.nan
    if n > 1:
        from scipy import stats

        half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
    ds = dataset if dataset is not None else (df["dataset"].iloc[0] if len(df) else None)
    return {"a": a, "b": b, "metric": metric, "dataset": ds, "seeds": sorted(int(s) for _, s in diff.index),
            "n": n, "mean": mean, "sd": sd, "low": low, "high": high, "level": level,
            "resolved": bool(n > 1 and (low > 0 or high < 0))}


def paired_differences(df: pd.DataFrame, reference: str, metrics: str | Sequence[str],
                       methods: Sequence[str] | None = None, dataset: str | None = None,
                       level: float = 0.95) -> pd.DataFrame:
    """:func:`paired_difference` of every method (default: all but ``reference``, in order of
    appearance) against ``reference``, for each metric and dataset (or only ``dataset``).

    One row per (dataset, method, metric): ``n, mean, sd, low, high, resolved``.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    datasets = [dataset] if dataset is not None else list(dict.fromkeys(df["dataset"]))
    rows = []
    for ds in datasets:
        part = df[df["dataset"] == ds]
        names = methods if methods is not None else [m for m in dict.fromkeys(part["method"]) if m != reference]
        for m in names:
            for key in metrics:
                d = paired_difference(part, m, reference, key, dataset=ds, level=level)
                rows.append({"dataset": ds, "method": m, "metric": key,
                             **{k: d[k] for k in ("n", "mean", "sd", "low", "high", "resolved")}})
    return pd.DataFrame(rows, columns=["dataset", "method", "metric", "n", "mean", "sd", "low", "high", "resolved"])


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
    :func:`paired_difference` of ``method − reference`` in ``short`` (e.g. the runs after 8 epochs)
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


class Correlation(NamedTuple):
    rho: float
    p: float


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Spearman's ρ of two equally long sequences and its two-sided p-value (scipy)."""
    from scipy import stats

    if len(x) != len(y):
        raise ValueError(f"rank_correlation needs equally long sequences, got {len(x)} and {len(y)}")
    res = stats.spearmanr(np.asarray(x, float), np.asarray(y, float))
    return Correlation(float(res.statistic), float(res.pvalue))


def frontier_offsets(frontier: tuple[Sequence[float], Sequence[float]], rates: Sequence[float],
                     distortions: Sequence[float]) -> np.ndarray:
    """How far points lie above (+) or below (−) a rate–distortion frontier, in nats of distortion.

    ``frontier``: (rates, distortions) of the points that trace it (e.g. a β sweep), joined in
    order of rate by straight chords. Returns ``D − chord(R)`` for each point ``(R, D)``, NaN where
    ``R`` lies outside the frontier's range of rates. A convex frontier lies on or below its chords,
    so a point is off the frontier only if it lies below a chord by more than the noise.
    """
    fr, fd = (np.asarray(v, float) for v in frontier)
    if fr.shape != fd.shape or fr.ndim != 1 or len(fr) < 2:
        raise ValueError("the frontier needs at least two (rate, distortion) points of equal count")
    order = np.argsort(fr)
    fr, fd = fr[order], fd[order]
    r, d = np.asarray(rates, float), np.asarray(distortions, float)
    if r.shape != d.shape:
        raise ValueError(f"rates and distortions differ in length: {r.shape} and {d.shape}")
    out = d - np.interp(r, fr, fd)
    out[(r < fr[0]) | (r > fr[-1])] = np.nan
    return out


# ----------------------------------------------------------------------------- curves
def kl_weight_curve(trainer_config: Mapping[str, Any], steps_per_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(epochs, weights)``: the KL weight at every update of a run, from the schedule that
    ``Trainer(**trainer_config)`` builds (the one place a schedule is built); ``epochs[i]`` is
    update ``i`` in epochs (``i / steps_per_epoch``)."""
    from .train import Trainer

    trainer = Trainer(**trainer_config)
    schedule = trainer.schedule(steps_per_epoch)
    steps = np.arange(steps_per_epoch * trainer.epochs)
    return steps / steps_per_epoch, np.array([schedule(int(i)) for i in steps], dtype=float)


def steps_per_epoch(result: Mapping[str, Any]) -> int:
    """Updates per epoch of a run, read from its history (the step count after epoch 1)."""
    first = result["history"][0]
    return int(first["step"]) // int(first.get("epoch", 1))


def kl_profile(kl_per_dim: Sequence[float], threshold: float = 0.1, top: int = 5) -> dict[str, float]:
    """How a code spreads its KL: ``dims_above`` (dimensions with KL > ``threshold`` nats) and
    ``top_share`` (share of the total KL in the ``top`` largest dimensions)."""
    v = np.sort(np.asarray(kl_per_dim, dtype=float))[::-1]
    total = v.sum()
    return {"dims_above": int((v > threshold).sum()), "top_share": float(v[:top].sum() / total) if total else math.nan}


# ----------------------------------------------------------------------------- tables
def pm(mean: Any, sd: float | None = None, *, digits: int = 2, n: int | None = None, scale: float = 1.0) -> str:
    """``"mean ± sd"`` with ``digits`` decimals; the bare mean when ``sd`` is NaN or not given (one
    seed), ``"–"`` when there is no value (``n == 0`` or a NaN mean). ``mean`` may also be a
    ``(mean, sd, n)`` triple or one metric's row of :func:`summary` (index ``mean, sd, n``), then
    without ``sd``. ``scale`` multiplies both (100 for percent)."""
    if isinstance(mean, pd.Series | tuple | list):
        if sd is not None:
            raise TypeError("pm: pass either a (mean, sd, n) triple / summary row, or mean and sd")
        if isinstance(mean, pd.Series):
            mean, sd, n = mean.get("mean", math.nan), mean.get("sd", math.nan), mean.get("n")
        else:
            mean, sd, n = (*mean, None)[:3]
    if n == 0 or mean is None or math.isnan(mean):
        return "–"
    if sd is None or math.isnan(sd):
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * sd:.{digits}f}"


def pm_frame(stats: pd.DataFrame, digits: int | Mapping[str, int] = 2,
             scale: Mapping[str, float] | None = None) -> pd.DataFrame:
    """A :func:`summary` frame as strings ``"mean ± sd"``, one column per metric (same index)."""
    metrics = list(dict.fromkeys(stats.columns.get_level_values(0)))
    out = pd.DataFrame(index=stats.index)
    for key in metrics:
        d = digits.get(key, 2) if isinstance(digits, Mapping) else digits
        s = (scale or {}).get(key, 1.0)
        out[key] = [pm(stats.loc[i, key], digits=d, scale=s) for i in stats.index]
    return out


def comparison_table(df: pd.DataFrame, keys: Sequence[str] | None = None, digits: int = 2) -> pd.DataFrame:
    """The book's comparison: one row per (dataset, method), ``mean ± sd`` over seeds per metric.

    Columns: ``dataset`` (only when the frame holds several), ``method``, ``seeds`` and one per key
    (default: those of :data:`COLUMNS`; headers from :data:`HEADERS`, else the key). AU has one
    decimal, the probe accuracy is in percent with one decimal; a group with one seed shows the bare
    value, a missing metric ``"–"``.
    """
    keys = list(COLUMNS) if keys is None else list(keys)
    stats = summary(df, keys)
    places = {**dict.fromkeys(keys, digits), "au": 1, "probe_acc": 1, "epochs": 0, "best_epoch": 0}
    cells = pm_frame(stats, digits=places,
                     scale={"probe_acc": 100.0})
    cells.columns = [HEADERS.get(k, k) for k in keys]
    seeds = df.groupby(["dataset", "method"], sort=False)["seed"].nunique()
    cells.insert(0, "seeds", [int(seeds[i]) for i in cells.index])
    out = cells.reset_index()
    if out["dataset"].nunique() <= 1:
        out = out.drop(columns="dataset")
    return out


# ----------------------------------------------------------------------------- the comparison chapters
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


def seed_runs(source: Source, seed: int | None = None, dataset: str | None = None) -> dict[str, dict[str, Any]]:
    """Each method's result for one seed (default: the smallest seed of the runs), method ->
    result dict in order of appearance; a method without that seed is left out. ``dataset`` keeps
    one dataset (needed when the runs hold several)."""
    items = [r for r in read_results(source) if dataset is None or r["dataset"] == dataset]
    if len({r["dataset"] for r in items}) > 1:
        raise ValueError("the runs hold several datasets: pass dataset=")
    if seed is None:
        seed = min((int(r["seed"]) for r in items), default=0)
    out: dict[str, dict[str, Any]] = {}
    for r in items:
        if int(r["seed"]) == seed:
            out.setdefault(r["method"], r)
    return out


def differences_table(df: pd.DataFrame, reference: str, keys: Sequence[str], methods: Sequence[str] | None = None,
                      dataset: str | None = None, label: str | None = None, digits: int = 2) -> MarkdownTable:
    """Mean over seeds of ``metric(method) − metric(reference)`` (:func:`paired_differences`, pairs
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
    """How each method spreads its KL over the latent dimensions (:func:`kl_profile` of every run's
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
