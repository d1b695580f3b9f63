"""Grids of runs (methods x datasets x seeds) from a JSON config, one small result file per run.

A sweep config looks like ::

    {
      "results": "results/sweep",            # where <dataset>-<method>-s<seed>.json go
      "runs": "runs/sweep",                  # checkpoints (git-ignored), for resume
      "datasets": ["mnist", "omniglot"],
      "seeds": [0, 1, 2],
      "common": {"arch": "made", "latent": 32, "epochs": 10},
      "methods": {"vae": {}, "vaeas_label": {"model": "vaeas", "target": "label", "lam": 10}},
      "eval": {"k": 5000, "iw_size": 1000},
      "fast": {"seeds": [0], "epochs": 1, "limit": 2000, "k": 20}     # with --fast: a tiny grid
    }

In ``fast``, ``datasets``/``methods`` (a list of names)/``seeds`` shrink the grid and the other keys
override run options. A method may carry its own ``"seeds": [...]`` (e.g. a costly method or a
control on fewer seeds than the grid) and ``"datasets": [...]`` (a subset of the grid's); the fast
grid's seeds and datasets still win in fast mode. The other
keys of ``common``, a method and ``eval`` are the long options of ``vaeas train``
(``warmup_epochs`` -> ``--warmup-epochs``; ``true`` -> a bare flag). Every run
is a separate ``python -m vaeas train`` process, so the grid can be cut into disjoint slices
(``--shard i/n``) and spread over machines or GPUs; a run whose result file exists is skipped,
and an interrupted run resumes from its last epoch. A config is checked as a whole before the
first run starts (:func:`validate_config`: keys, datasets, methods, seeds, and every run's options
against the ``train`` command's own parser), under ``--dry-run`` too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .io import write_json
from .results import make_result, read_results


class SweepError(ValueError):
    """A malformed sweep config (reported as one line, exit status 2)."""


@dataclass(frozen=True)
class Run:
    """One cell of the grid."""

    dataset: str
    method: str
    seed: int
    options: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.method}-s{self.seed}"


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a sweep config and check it (:func:`validate_config`) before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep config {path} not found")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SweepError(f"sweep config {path} is not valid JSON ({exc})") from None
    validate_config(cfg, str(path))
    return cfg


#: The keys a sweep config may have.
CONFIG_KEYS = ("description", "results", "runs", "datasets", "seeds", "common", "methods", "eval",
               "per_dataset", "fast")
#: Options of ``vaeas train`` that the sweep sets itself (the grid or the runner).
SET_BY_SWEEP = ("dataset", "seed", "out", "resume", "quiet")
_GRID = ("datasets", "methods", "seeds")


def validate_config(cfg: Any, name: str = "the config") -> None:
    """Refuse a malformed config with one line (:class:`SweepError`): missing or unknown keys,
    unknown datasets or methods, bad seeds, and options that ``vaeas train`` would refuse.

    Options are checked against the ``train`` command's own parser (names and values), so every
    run of the grid -- the fast grid too -- is known to start before the first one does.
    """
    def fail(msg: str) -> None:
        raise SweepError(f"sweep config {name}: {msg}")

    if not isinstance(cfg, dict):
        fail("must be a JSON object")
    unknown = [k for k in cfg if k not in CONFIG_KEYS]
    if unknown:
        fail(f"unknown key {unknown[0]!r} (known: {', '.join(CONFIG_KEYS)})")
    for key in _GRID:
        if not cfg.get(key):
            fail(f"needs a non-empty {key!r}")
    if not isinstance(cfg["methods"], dict) or not all(isinstance(v, dict | None) for v in cfg["methods"].values()):
        fail("'methods' must map names to option dicts")
    for block in ("common", "eval", "per_dataset", "fast"):
        if not isinstance(cfg.get(block, {}), dict):
            fail(f"{block!r} must be an object")
    # The sweep runs `vaeas train`: its parser is the one list of options and datasets (imported
    # at call time, as cli imports this module at call time; neither does so when it is loaded).
    from .cli import option_names, train_parser

    parser = train_parser()
    options = option_names(parser)
    datasets = options["dataset"].choices
    for where, grid in (("", cfg), ("fast: ", cfg.get("fast", {}))):
        _check_grid(grid, cfg, datasets, lambda msg, w=where: fail(w + msg))
    for dataset in cfg.get("per_dataset", {}):
        if dataset not in cfg["datasets"]:
            fail(f"per_dataset names {dataset!r}, which is not in 'datasets'")
    _check_options(cfg, parser, set(options), fail)


def _check_grid(grid: dict[str, Any], cfg: dict[str, Any], datasets: Any, fail: Any) -> None:
    if not isinstance(grid.get("datasets", []), list):
        fail("'datasets' must be a list of names")
    for d in grid.get("datasets", []):
        if d not in datasets:
            fail(f"unknown dataset {d!r} (known: {', '.join(datasets)})")
    if "methods" in grid and grid is not cfg:
        if not isinstance(grid["methods"], list):
            fail("'methods' must be a list of method names")
        for m in grid["methods"]:
            if m not in cfg["methods"]:
                fail(f"unknown method {m!r} (the config has {', '.join(cfg['methods'])})")
    for m in grid.get("methods", []) if grid is cfg else []:
        if not isinstance(m, str) or not m or any(c in m for c in "/\\ "):
            fail(f"method name {m!r} must be a non-empty name without spaces or slashes")
    seeds = grid.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        fail(f"'seeds' must be a list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        fail(f"'seeds' has a repeated seed: {seeds!r}")


def _check_options(cfg: dict[str, Any], parser: Any, known: set[str], fail: Any) -> None:
    blocks = [("common", cfg.get("common", {})), ("eval", cfg.get("eval", {}))]
    blocks += [(f"method {m!r}", {k: v for k, v in (o or {}).items() if k not in ("seeds", "datasets")})
               for m, o in cfg["methods"].items()]
    for m, o in cfg["methods"].items():
        if isinstance(o, dict) and "seeds" in o:
            _check_grid({"seeds": o["seeds"]}, cfg, [], lambda msg, m=m: fail(f"method {m!r}: {msg}"))
        if isinstance(o, dict) and "datasets" in o:
            own = o["datasets"]
            if not isinstance(own, list) or not own or not set(own) <= set(cfg["datasets"]):
                fail(f"method {m!r}: 'datasets' must be a non-empty list of the grid's datasets")
    blocks += [(f"per_dataset {d!r}", o) for d, o in cfg.get("per_dataset", {}).items()]
    blocks += [("fast", {k: v for k, v in cfg.get("fast", {}).items() if k not in _GRID})]
    for where, options in blocks:
        if not isinstance(options, dict):
            fail(f"{where} must be an object of options")
        for key in options:
            if key in SET_BY_SWEEP:
                fail(f"{where}: {key!r} is set by the sweep itself")
            if key not in known:
                fail(f"{where}: unknown option {key!r} (not an option of vaeas train)")
    for fast in (False, True) if "fast" in cfg else (False,):
        for run in expand(cfg, fast):
            try:
                ns = parser.parse_args([*train_args(run.options), "--out", "x"])
            except ValueError as exc:
                fail(f"run {run.name}{' (fast)' if fast else ''}: {exc}")
            if any(e > ns.epochs for e in ns.snapshots):
                fail(f"run {run.name}{' (fast)' if fast else ''}: snapshot epoch {max(ns.snapshots)} "
                     f"is past its {ns.epochs} epochs")


def expand(cfg: dict[str, Any], fast: bool = False) -> list[Run]:
    """All runs of the grid in a fixed order (dataset, method, seed)."""
    runs = []
    fast_opts = dict(cfg.get("fast", {})) if fast else {}
    fast_opts0 = dict(fast_opts)  # the fast grid's own seeds win over a method's
    grid = {key: fast_opts.pop(key, cfg[key]) for key in ("datasets", "methods", "seeds")}
    for dataset in grid["datasets"]:
        for method in grid["methods"]:
            opts = dict(cfg["methods"][method] or {})
            seeds = opts.pop("seeds", None)  # a method may run on fewer (or other) seeds than the grid
            seeds = grid["seeds"] if seeds is None or "seeds" in fast_opts0 else seeds
            own = opts.pop("datasets", None)  # ... and on fewer datasets
            if own is not None and "datasets" not in fast_opts0 and dataset not in own:
                continue
            for seed in seeds:
                options = {**cfg.get("common", {}), **cfg.get("eval", {}), **opts}
                options.update(cfg.get("per_dataset", {}).get(dataset, {}))
                options.update(fast_opts)
                options.update(dataset=dataset, seed=int(seed))
                runs.append(Run(dataset, method, int(seed), options))
    return runs


def folders(cfg: dict[str, Any], fast: bool = False, results: str | None = None) -> tuple[Path, Path]:
    """``(results folder, run folder)`` of a config; a fast grid gets a ``-fast`` suffix on both, so
    it never mixes with (or resumes from) full-size runs."""
    res_dir = Path(results or cfg.get("results", "results/sweep"))
    run_dir = Path(cfg.get("runs", "runs/sweep"))
    if fast:
        res_dir = res_dir.with_name(res_dir.name + "-fast")
        run_dir = run_dir.with_name(run_dir.name + "-fast")
    return res_dir, run_dir


def select(cfg: dict[str, Any], fast: bool = False, datasets: list[str] | None = None,
           name: str = "the config", methods: list[str] | None = None) -> list[Run]:
    """The runs of the grid, keeping only ``datasets`` and ``methods`` when given (a name that is
    not in the grid is refused)."""
    runs = expand(cfg, fast)
    for what, keep in (("dataset", datasets), ("method", methods)):
        if keep:
            unknown = sorted(set(keep) - {getattr(r, what) for r in runs})
            if unknown:
                raise SweepError(f"{what} {', '.join(unknown)} is not in the grid of {name}")
            runs = [r for r in runs if getattr(r, what) in keep]
    return runs


def train_or_load(config: str | os.PathLike, fast: bool = False, datasets: list[str] | None = None,
                  device: str | None = None, methods: list[str] | None = None) -> list[dict[str, Any]]:
    """The result dicts of the grid (see :func:`write_result`), in grid order; ``datasets`` and
    ``methods`` keep only those parts of the grid.

    Runs whose result file is missing are trained first (each as its own process, resuming an
    interrupted run), so the call returns at once when the results are committed and takes the
    whole sweep's time when none are. Raises :class:`SweepError` when a run fails.
    """
    cfg = load_config(config)
    res_dir, _ = folders(cfg, fast)
    runs = select(cfg, fast, datasets, name=Path(config).name, methods=methods)
    if any(not (res_dir / f"{r.name}.json").is_file() for r in runs):
        if run_sweep(config, fast=fast, datasets=datasets, device=device, methods=methods) != 0:
            raise SweepError(f"some runs of {Path(config).name} failed (see the messages above)")
    return read_results([res_dir / f"{r.name}.json" for r in runs])  # an older-layout file is upgraded


def finished_methods(config: str | os.PathLike, fast: bool = False, datasets: list[str] | None = None,
                     results: str | os.PathLike | None = None) -> list[str]:
    """The methods of the grid (config order) whose every run, on ``datasets`` (default: all), has a
    result file (in ``results``, default: the config's folder): those a table can show while the rest
    of a study is still running, so that no row rests on fewer seeds than the config gives it."""
    cfg = load_config(config)
    res_dir, _ = folders(cfg, fast, None if results is None else str(results))
    runs = select(cfg, fast, datasets, name=Path(config).name)
    missing = {r.method for r in runs if not (res_dir / f"{r.name}.json").is_file()}
    return [m for m in dict.fromkeys(r.method for r in runs) if m not in missing]


def run_snapshots(config: str | os.PathLike, method: str, seed: int, epochs: Sequence[int],
                  fast: bool = False, dataset: str | None = None) -> dict[int, Any]:
    """The models of one run of the grid after each of ``epochs`` epochs (0: before training),
    ``{epoch: model}`` on the CPU in eval mode: train or load.

    They are read from the run's own folder when it kept those snapshots (``--snapshots`` in the
    config); otherwise the run is trained again, with the same options and these snapshots, in
    ``<runs>/<name>-snapshots`` (resumable; evaluated only briefly, as its metrics are not used).
    """
    from .train import load_model, snapshot_path

    cfg = load_config(config)
    _, run_dir = folders(cfg, fast)
    runs = [r for r in select(cfg, fast, [dataset] if dataset else None, name=Path(config).name)
            if r.method == method and r.seed == seed]
    if not runs:
        raise SweepError(f"{Path(config).name} has no run of method {method!r} with seed {seed}")
    run, wanted = runs[0], sorted({int(e) for e in epochs})
    folders_ = [run_dir / run.name, run_dir / f"{run.name}-snapshots"]
    have = [f for f in folders_ if all(snapshot_path(f, e).is_file() for e in wanted)]
    if not have:
        out = folders_[1]
        opts = {**run.options, "snapshots": ",".join(map(str, wanted)), "k": 2, "iw_size": 2,
                "no_probe": True}
        code, msg = _train(opts, out)
        if code != 0:
            raise SweepError(f"training the snapshots of {run.name} failed (exit {code}): {msg}")
        have = [out]
    return {e: load_model(snapshot_path(have[0], e)).eval() for e in wanted}


def posterior_means(config: str | os.PathLike, method: str, seed: int, epochs: Sequence[int], n: int = 500,
                    grid: int = 30, span: float = 4.0, fast: bool = False, dataset: str | None = None,
                    cache: str | os.PathLike | None = None) -> dict[int, dict[str, Any]]:
    """He et al.'s posterior-mean space of one run of the grid at several points of its training.

    For ``n`` random test inputs (seeded subset, seed 0) and each epoch of ``epochs`` (the models of
    :func:`run_snapshots`): ``{epoch: {"q_mean": (n, D), "p_mean": (n, D), "p_std": (n, D),
    "border_mass": (n,)}}`` as NumPy arrays -- the encoder's mean and the mean of the model's own
    posterior on a ``grid**D`` grid over ``[-span, span]^D`` (:func:`vaeas.posterior.true_posterior`).
    With ``cache``, a JSON file of those numbers is read when it holds these settings and written
    otherwise, so the ``n * grid**D`` decoder passes per epoch are paid once.
    """
    import numpy as np
    import torch

    from .data import load_dataset
    from .metrics import subset_indices
    from .posterior import true_posterior

    settings = {"config": Path(config).name, "method": method, "seed": int(seed), "fast": bool(fast),
                "epochs": sorted({int(e) for e in epochs}), "n": int(n), "grid": int(grid), "span": float(span)}
    if cache is not None and Path(cache).is_file():
        stored = json.loads(Path(cache).read_text())
        if stored.get("settings") == settings:
            return {int(e): {k: np.asarray(v) for k, v in d.items()} for e, d in stored["epochs"].items()}
    models = run_snapshots(config, method, seed, settings["epochs"], fast=fast, dataset=dataset)
    run = next(r for r in select(load_config(config), fast, [dataset] if dataset else None)
               if r.method == method and r.seed == seed)
    data = load_dataset(run.dataset, limit=run.options.get("limit"), max_len=run.options.get("max_len"))
    x = data.test.x[subset_indices(len(data.test), n, seed=0)]
    out: dict[int, dict[str, Any]] = {}
    for e, model in models.items():
        with torch.no_grad():
            mu = model.encode(x)[0]
        post = true_posterior(model, x, span=span, grid=grid)
        out[e] = {"q_mean": mu.numpy(), "p_mean": post["mean"].numpy(), "p_std": post["std"].numpy(),
                  "border_mass": post["border_mass"].numpy()}
    if cache is not None:
        payload = {"settings": settings,
                   "epochs": {str(e): {k: np.round(v, 5).tolist() for k, v in d.items()} for e, d in out.items()}}
        write_json(payload, Path(cache))
    return out


def _train(options: dict[str, Any], out: Path) -> tuple[int, str]:
    """Run ``vaeas train`` with ``options`` into ``out`` (resuming a run already there) as its own
    process: ``(exit status, last line of its error output)``."""
    cmd = [sys.executable, "-m", "vaeas", "train", *train_args(options), "--out", str(out), "--quiet"]
    if (out / "checkpoint.pt").is_file():
        cmd.append("--resume")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, (proc.stderr.strip().splitlines() or ["(no message)"])[-1]


def train_args(options: dict[str, Any]) -> list[str]:
    """``{"warmup_epochs": 5, "amp": True}`` -> ``["--warmup-epochs", "5", "--amp"]``."""
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list | tuple):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


def run_sweep(config: str | os.PathLike, shard: tuple[int, int] = (0, 1), results: str | None = None,
              device: str | None = None, fast: bool = False, dry_run: bool = False,
              datasets: list[str] | None = None, methods: list[str] | None = None) -> int:
    """Run this shard's slice of the grid; return 0 when every run of the slice has a result.

    With ``fast`` the results and run folders get a ``-fast`` suffix, so a tiny grid never mixes
    with (or resumes from) full-size runs. ``datasets`` and ``methods`` keep only those datasets and
    methods of the grid (the shard is a slice of what they keep).
    """
    cfg = load_config(config)
    res_dir, run_dir = folders(cfg, fast, results)
    runs = select(cfg, fast, datasets, name=Path(config).name, methods=methods)
    i, n = shard
    mine = runs[i::n]
    todo = [r for r in mine if not (res_dir / f"{r.name}.json").is_file()]
    print(f"sweep {Path(config).name}: {len(runs)} runs in the grid, {len(mine)} in shard {i}/{n}, "
          f"{len(mine) - len(todo)} done, {len(todo)} to run -> {res_dir}", flush=True)
    if dry_run:
        for r in mine:
            state = "done" if r not in todo else "todo"
            print(f"  {state}  {r.name}  {' '.join(train_args(r.options))}")
        return 0
    res_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    t_sweep = time.perf_counter()
    for j, r in enumerate(todo, 1):
        out = run_dir / r.name
        opts = dict(r.options)
        if device:
            opts["device"] = device
        t0 = time.perf_counter()
        print(f"[{j}/{len(todo)}] {r.name} ...", flush=True)
        code, msg = _train(opts, out)
        if code != 0:
            print(f"[{j}/{len(todo)}] {r.name} FAILED (exit {code}): {msg}", flush=True)
            failed.append(r.name)
            if code == 2:  # a config mistake fails every run alike: stop early
                break
            continue
        write_result(r, out, res_dir / f"{r.name}.json")
        elapsed = time.perf_counter() - t_sweep
        eta = elapsed / j * (len(todo) - j)
        print(f"[{j}/{len(todo)}] {r.name} done in {time.perf_counter() - t0:.0f} s "
              f"(sweep {elapsed / 60:.1f} min, about {eta / 60:.1f} min left)", flush=True)
    if failed:
        print(f"sweep: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def write_result(run: Run, out: Path, path: Path) -> None:
    """Collect a finished run folder into one small JSON result in the API's vocabulary (see
    :mod:`vaeas.results`: model, trainer, data and eval settings, versions, test metrics, history)."""
    import csv

    with open(out / "history.csv") as f:
        history = [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(f)]
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    write_json(make_result(run.name, run.dataset, run.method, run.seed, config, metrics, history), path, indent=1)


def _num(v: str) -> float | int | str:
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


def load_results(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """All result dicts of a sweep folder, sorted by name (see :func:`vaeas.results.read_results`;
    :func:`vaeas.results.load_results` gives them as a pandas frame)."""
    return read_results(folder)
