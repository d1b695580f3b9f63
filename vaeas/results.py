"""Result files -> pandas: mean, sd and n per group, paired differences with t intervals, rank
correlations, frontier offsets, KL-weight curves and the comparison table (mean ± sd per method).
The comparison chapters' other tables and their checked claims are :mod:`vaeas.report`'s.

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
from collections.abc import Iterable, Mapping, Sequence
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
