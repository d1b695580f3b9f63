"""Command line: ``python -m vaeas train | evaluate | diagnose | sweep``.

A user mistake (bad argument, missing run, bad data file, a run folder that cannot be created, a
``--resume`` with other settings, a malformed sweep config) prints one line on stderr and exits with
status 2; a run that diverges exits with status 1; an interrupted run can be continued with
``--resume``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

USAGE_ERROR = 2
#: Test images used for IW-NLL by default: with k = 5,000 the default MLP is evaluated in about a
#: minute on a 2-core CPU; ``--full-eval`` uses the whole test split (the book's protocol).
DEFAULT_IW_SIZE = 1000


class UsageError(ValueError):
    """A mistake of the user's; reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    raising = False  # raise UsageError instead of exiting (to check a sweep's options)

    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        if self.raising:
            raise UsageError(message)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


# ----------------------------------------------------------------------------- argument types
def _number(s: str, kind: type, ok: Any, what: str) -> Any:
    try:
        v = kind(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
    return v


def _positive_int(s: str) -> int:
    return _number(s, int, lambda v: v >= 1, "a positive integer")


def _nonneg_int(s: str) -> int:
    return _number(s, int, lambda v: v >= 0, "an integer >= 0")


def _nonneg_float(s: str) -> float:
    return _number(s, float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def _positive_float(s: str) -> float:
    return _number(s, float, lambda v: math.isfinite(v) and v > 0, "a number > 0")


def _ratio(s: str) -> float:
    return _number(s, float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def _probability(s: str) -> float:
    return _number(s, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _sizes(s: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(p) for p in s.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 512,256, got {s!r}") from None
    if not sizes or any(v < 1 for v in sizes):
        raise argparse.ArgumentTypeError(f"expected positive comma-separated sizes, got {s!r}")
    return sizes


def _epochs_list(s: str) -> tuple[int, ...]:
    try:
        epochs = tuple(int(p) for p in s.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs like 0,1,3, got {s!r}") from None
    if any(e < 0 for e in epochs):
        raise argparse.ArgumentTypeError(f"snapshot epochs must be >= 0, got {s!r}")
    return epochs


def _shard(s: str) -> tuple[int, int]:
    try:
        i, n = (int(p) for p in s.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shard like 0/4, got {s!r}") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"shard {s!r} must be i/n with 0 <= i < n")
    return i, n


# ----------------------------------------------------------------------------- parsers
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vaeas", description="Posterior collapse and VAE-AS: train, evaluate, diagnose, sweep.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_train_arguments(sub.add_parser("train", help="train one model and evaluate it on the test split"))

    e = sub.add_parser("evaluate", help="recompute metrics.json of a run folder")
    _run_dir_args(e)
    _eval_args(e)

    d = sub.add_parser("diagnose", help="the collapse report of a trained run (KL per dim, verdict)")
    _run_dir_args(d)
    d.add_argument("--n", type=_positive_int, default=None, help="test points used (default: diagnose's)")
    d.add_argument("--out", default=None, help="figure file (default: RUN_DIR/diagnosis.png)")

    s = sub.add_parser("sweep", help="run a grid of runs from a config file into results/")
    s.add_argument("config", help="sweep config (JSON)")
    s.add_argument("--shard", type=_shard, default=(0, 1), help="run slice i of n (i/n)")
    s.add_argument("--results", default=None, help="results folder (default: from the config)")
    s.add_argument("--device", default=None, help="override the config's device")
    s.add_argument("--fast", action="store_true", help="tiny settings (as VAEAS_FAST=1)")
    s.add_argument("--dry-run", action="store_true", help="check the config, list the runs and exit")
    s.add_argument("--dataset", action="append", default=None,
                   help="run only this dataset's part of the grid (repeatable)")
    s.add_argument("--method", action="append", default=None,
                   help="run only this method's part of the grid (repeatable)")
    return p


def train_parser() -> argparse.ArgumentParser:
    """The options of ``vaeas train`` alone; it raises :class:`UsageError` instead of exiting.

    :mod:`vaeas.sweep` checks a sweep config's options with it (the one list of them)."""
    p = _Parser(prog="vaeas train", add_help=False)
    p.raising = True
    add_train_arguments(p)
    return p


def option_names(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """``{"warmup_epochs": action, ...}``: a parser's long options as sweep-config keys."""
    return {o[2:].replace("-", "_"): a for a in parser._actions for o in a.option_strings if o.startswith("--")}


def add_train_arguments(t: argparse.ArgumentParser) -> None:
    from .data import DATASETS
    from .models import ACTIVATIONS, ARCHITECTURES, TARGETS
    from .objectives import SCHEDULES

    g = t.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="mnist")
    g.add_argument("--data-root", default=None, help="folder holding MNIST/ or omniglot-py/ "
                   "(default: $VAEAS_DATA, then ./data)")
    g.add_argument("--limit", type=_positive_int, default=None,
                   help="keep only the first N examples of each split (quick runs)")
    g.add_argument("--text-file", default=None, help="--dataset text: one sentence per line")
    g.add_argument("--max-len", type=_positive_int, default=None, help="sequences: words per sentence")
    g = t.add_argument_group("model")
    g.add_argument("--model", choices=("vae", "vaeas"), default="vae")
    g.add_argument("--arch", choices=ARCHITECTURES, default=None,
                   help="default: mlp for images, lstm for sentences")
    g.add_argument("--latent", type=_nonneg_int, default=32,
                   help="latent dimensions D (0: no code, the decoder alone; --arch made or lstm)")
    g.add_argument("--hidden", type=_sizes, default=None, help="encoder hidden sizes, e.g. 512,256")
    g.add_argument("--decoder-hidden", type=_sizes, default=None, help="decoder hidden sizes")
    g.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu")
    g.add_argument("--direct", action="store_true", help="MADE: add a direct pixel->output path")
    g.add_argument("--embed-dim", type=_positive_int, default=None, help="lstm: word embedding size (50)")
    g.add_argument("--lstm-hidden", type=_positive_int, default=None, help="lstm: hidden units (50)")
    g.add_argument("--word-dropout", type=_probability, default=None, help="lstm: decoder input word dropout (0)")
    g.add_argument("--dropout", type=_probability, default=None, help="lstm: dropout on embeddings/outputs (0)")
    g.add_argument("--target", choices=TARGETS, default="label", help="VAE-AS classifier target")
    g.add_argument("--lam", type=_nonneg_float, default=None, help="VAE-AS weight lambda on CE (1)")
    g.add_argument("--head-hidden", type=_positive_int, default=None,
                   help="VAE-AS classifier hidden units (default: linear)")
    g.add_argument("--head", choices=("auto", "dense", "two_level"), default="auto")
    g.add_argument("--detach-aux", action="store_true",
                   help="VAE-AS control: train the classifier but stop its gradient at z")
    g = t.add_argument_group("objective")
    g.add_argument("--beta", type=_nonneg_float, default=1.0, help="(final) KL weight")
    g.add_argument("--anneal", choices=SCHEDULES, default="constant", help="KL weight schedule")
    g.add_argument("--warmup-epochs", type=_nonneg_float, default=10.0, help="linear annealing length")
    g.add_argument("--cycles", type=_positive_int, default=4, help="cyclical annealing: cycles M")
    g.add_argument("--ratio", type=_ratio, default=0.5, help="cyclical annealing: ratio R")
    g.add_argument("--free-bits", type=_nonneg_float, default=0.0, help="KL floor per dim (nats)")
    g.add_argument("--aggressive", action="store_true",
                   help="aggressive inference-network training (He et al. 2019)")
    g.add_argument("--aggressive-max-inner", type=_positive_int, default=100,
                   help="aggressive: most encoder steps per decoder step")
    g.add_argument("--aggressive-check-every", type=_positive_int, default=15,
                   help="aggressive: encoder steps per block; stop when a block's mean loss stops falling")
    _training_args(t.add_argument_group("training"))
    _eval_args(t)


def _training_args(g: Any) -> None:
    g.add_argument("--epochs", type=_positive_int, default=10)
    g.add_argument("--batch-size", type=_positive_int, default=128)
    g.add_argument("--lr", type=_positive_float, default=1e-3)
    g.add_argument("--seed", type=_nonneg_int, default=0)
    g.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    g.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    g.add_argument("--compile", action="store_true", help="torch.compile the loss")
    g.add_argument("--val-size", type=_positive_int, default=2000)
    g.add_argument("--patience", type=_nonneg_int, default=0,
                   help="early stopping: stop after this many epochs without a better validation "
                        "-ELBO and keep the best epoch's weights; --epochs is the cap (0: off)")
    g.add_argument("--eval-epochs", type=_epochs_list, default=(),
                   help="also evaluate the weights after these epochs (kept as snapshots) with the "
                        "same settings, e.g. 8: a long run then also gives the 8-epoch result")
    g.add_argument("--snapshots", type=_epochs_list, default=(),
                   help="keep the weights after these epochs (0 = before training), e.g. 0,1,3")
    g.add_argument("--out", required=True, help="run folder (created)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--no-pictures", action="store_true",
                   help="do not write samples.png/reconstructions.png (sampling a MADE decoder is slow)")
    g.add_argument("--quiet", action="store_true", help="no progress bar, no messages")


def _run_dir_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--quiet", action="store_true")


def _eval_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation")
    g.add_argument("--k", type=_nonneg_int, default=5000, help="importance samples for IW-NLL (0: skip)")
    g.add_argument("--iw-size", type=_positive_int, default=None,
                   help=f"random test points used for IW-NLL (default: {DEFAULT_IW_SIZE})")
    g.add_argument("--full-eval", action="store_true",
                   help="the full protocol: IW-NLL on the whole test split (slow on a CPU)")
    g.add_argument("--mi-batch", type=_positive_int, default=128, help="B of the minibatch MI estimator")
    g.add_argument("--delta", type=_positive_float, default=0.01, help="active-unit threshold")
    g.add_argument("--no-probe", action="store_true", help="skip the linear probe")


# ----------------------------------------------------------------------------- checks before work
def check_out_dir(out: Path, what: str = "--out") -> None:
    """Refuse (one line) a folder that is a file or cannot be created, without creating it."""
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"{what} {out} exists and is not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {out} is not writable")
        return
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot create {what} {out}: {parent} is a file, not a folder")
    try:  # the one honest test of "can a folder be made here" (root ignores permission bits)
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".vaeas-check-"))
    except OSError as exc:
        raise UsageError(f"cannot create {what} {out}: {parent} is not writable ({exc.strerror})") from None


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {out}: {exc.strerror}") from None


def _check_train_flags(a: argparse.Namespace) -> None:
    from .train import CHECKPOINT

    check_out_dir(Path(a.out))
    if (Path(a.out) / CHECKPOINT).exists() and not a.resume:
        raise UsageError(f"{a.out} already holds a run; pass --resume to continue it or choose another --out")
    if a.model == "vae" and (a.lam is not None or a.head_hidden is not None or a.detach_aux):
        raise UsageError("--lam, --head-hidden and --detach-aux only apply to --model vaeas")
    if any(e > a.epochs for e in a.snapshots):
        raise UsageError(f"--snapshots asks for epoch {max(a.snapshots)} of a run of {a.epochs} epochs")
    if any(e < 1 or e > a.epochs for e in a.eval_epochs):
        raise UsageError(f"--eval-epochs must lie in 1..{a.epochs} (the epochs of this run)")
    if a.arch == "conv" and (a.hidden or a.decoder_hidden):
        raise UsageError("--hidden/--decoder-hidden do not apply to --arch conv")
    if (a.dataset == "text") != (a.text_file is not None):
        raise UsageError("--dataset text needs --text-file FILE" if a.dataset == "text"
                         else "--text-file only applies to --dataset text")


def _check_arch_flags(a: argparse.Namespace, arch: str) -> None:
    lstm_only = [f for f, v in (("--embed-dim", a.embed_dim), ("--lstm-hidden", a.lstm_hidden),
                                ("--word-dropout", a.word_dropout), ("--dropout", a.dropout)) if v is not None]
    image_only = [f for f, v in (("--hidden", a.hidden), ("--decoder-hidden", a.decoder_hidden),
                                 ("--direct", a.direct)) if v]
    if arch != "lstm" and lstm_only:
        raise UsageError(f"{', '.join(lstm_only)} only apply to --arch lstm")
    if arch == "lstm" and image_only:
        raise UsageError(f"{', '.join(image_only)} do not apply to --arch lstm")


# ----------------------------------------------------------------------------- building blocks
def _load_data(dataset: str, root: str | None, device: Any, limit: int | None,
               text_file: str | None = None, max_len: int | None = None) -> Any:
    from .data import load_dataset

    extra = {k: v for k, v in (("text_file", text_file), ("max_len", max_len)) if v is not None}
    return load_dataset(dataset, root=root, device=device, limit=limit, **extra)


def _build_model(a: argparse.Namespace, data: Any) -> Any:
    import torch

    from .models import build_for_dataset

    arch = a.arch or ("lstm" if getattr(data, "kind", "image") == "sequence" else "mlp")
    _check_arch_flags(a, arch)
    if arch == "lstm":
        kw = {k: v for k in ("embed_dim", "lstm_hidden", "word_dropout", "dropout")
              if (v := getattr(a, k)) is not None}
    else:
        kw = dict(hidden=a.hidden, decoder_hidden=a.decoder_hidden, activation=a.activation, direct=a.direct)
    if a.model == "vaeas":
        kw.update(lam=1.0 if a.lam is None else a.lam, head_hidden=a.head_hidden, head=a.head)
        if a.detach_aux:
            kw["detach_aux"] = True
    torch.manual_seed(a.seed)
    return build_for_dataset(data, a.model, arch, a.target, latent_dim=a.latent, **kw)


def _trainer(a: argparse.Namespace, device: Any) -> Any:
    from .train import Trainer

    return Trainer(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, kl_schedule=a.anneal,
                   beta=a.beta, warmup_epochs=a.warmup_epochs, cycles=a.cycles, ratio=a.ratio,
                   free_bits=a.free_bits, seed=a.seed, device=str(device), amp=a.amp,
                   compile=a.compile, val_size=a.val_size, progress=not a.quiet,
                   aggressive=a.aggressive, aggressive_max_inner=a.aggressive_max_inner,
                   aggressive_check_every=a.aggressive_check_every,
                   patience=a.patience, snapshots=tuple(sorted({*a.snapshots, *a.eval_epochs})))


def _eval_settings(a: argparse.Namespace) -> dict[str, Any]:
    """``evaluate``'s settings: IW-NLL on DEFAULT_IW_SIZE random test points unless --full-eval
    (all of them) or --iw-size says otherwise."""
    if a.full_eval and a.iw_size is not None:
        raise UsageError("--full-eval uses the whole test split; leave out --iw-size (or --full-eval)")
    iw_size = a.iw_size if a.iw_size is not None else (None if a.full_eval else DEFAULT_IW_SIZE)
    return dict(k=a.k, iw_size=iw_size, mi_batch=a.mi_batch, delta=a.delta, probe=not a.no_probe)


def _describe_eval(settings: dict[str, Any], n_test: int) -> str:
    if settings["k"] == 0:
        return "evaluation: no IW-NLL (--k 0)"
    n = n_test if settings["iw_size"] is None else min(settings["iw_size"], n_test)
    which = "the whole test split" if n == n_test else f"{n:,} random test points of {n_test:,}"
    hint = "" if n == n_test else "; --full-eval uses all of them (slow on a CPU)"
    return f"evaluation: IW-NLL with k={settings['k']:,} on {which}{hint}"


def _evaluate(model: Any, data: Any, seed: int, settings: dict[str, Any], quiet: bool) -> dict[str, Any]:
    from .metrics import evaluate

    return evaluate(model, data, seed=seed, progress=not quiet, **settings)


def _evaluate_snapshots(model: Any, data: Any, out: Path, history: list[dict[str, Any]],
                        a: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    """``{"8": metrics, ...}``: the weights kept after each of ``--eval-epochs``, evaluated like the
    final model; an epoch the run never reached (early stopping) is left out."""
    from .models import model_from_config
    from .train import load_snapshot

    at: dict[str, Any] = {}
    for e in a.eval_epochs:
        if e > len(history):
            continue
        snap = load_snapshot(model_from_config(model.config).to(data.test.x.device), out, e)
        if snap is None:
            continue
        m = _evaluate(snap.eval(), data, a.seed, settings, a.quiet)
        m["train_seconds"] = sum(r["seconds"] for r in history[:e])
        m["epochs"] = e
        at[str(e)] = m
    return at


def _save_samples(model: Any, data: Any, out: Path, seed: int) -> None:
    """Pictures for images (samples.png, reconstructions.png); sentences for sequences (samples.txt)."""
    import torch

    gen = torch.Generator(device=data.test.x.device).manual_seed(seed)
    if getattr(data, "kind", "image") == "sequence":
        from .io import write_text

        tokens = model.sample(10, generator=gen)
        write_text("".join(_sentence(row, data.vocab) + "\n" for row in tokens.tolist()), out / "samples.txt")
        return
    from .plots import save_image_grid

    save_image_grid(model.sample(64, generator=gen), str(out / "samples.png"))
    x = data.test.x[:32]
    save_image_grid(torch.cat([x, model.reconstruct(x, generator=gen)]), str(out / "reconstructions.png"))


def _sentence(ids: list[int], vocab: list[str]) -> str:
    words = []
    for i in ids[1:]:  # after <bos>
        if i in (0, 2):  # <pad>, <eos>
            break
        words.append(vocab[i])
    return " ".join(words)


def _versions() -> dict[str, str]:
    import torch

    from . import __version__

    return {"vaeas": __version__, "torch": torch.__version__, "python": platform.python_version()}


# ----------------------------------------------------------------------------- commands
def cmd_train(a: argparse.Namespace) -> int:
    from .io import write_json
    from .train import resolve_device

    device = resolve_device(a.device)
    out = Path(a.out)
    _check_train_flags(a)
    settings = _eval_settings(a)
    data = _load_data(a.dataset, a.data_root, device, a.limit, a.text_file, a.max_len)
    model = _build_model(a, data)
    trainer = _trainer(a, device)
    if a.resume:
        trainer.check_resume(model, out)  # before config.json is rewritten
    if not a.quiet:
        print(_describe_eval(settings, len(data.test)), flush=True)
    _make_dir(out)
    config = {"command": "train", "dataset": a.dataset, "data_source": data.source, "limit": a.limit,
              "text_file": a.text_file, "max_len": a.max_len, "model": model.config,
              "trainer": trainer.config(), "eval": settings, "device": str(device), "versions": _versions()}
    write_json(config, out / "config.json")
    t0 = time.perf_counter()
    history = trainer.fit(model, data, out_dir=out, resume=a.resume)
    metrics = _evaluate(model, data, a.seed, settings, a.quiet)
    metrics["train_seconds"] = sum(r["seconds"] for r in history)
    metrics["wall_seconds"] = time.perf_counter() - t0
    metrics["epochs"] = len(history)
    if trainer.patience:
        metrics["best_epoch"] = history[-1]["best_epoch"]
    if a.eval_epochs:
        metrics["at_epoch"] = _evaluate_snapshots(model, data, out, history, a, settings)
    write_json(metrics, out / "metrics.json")
    if not a.no_pictures:
        _save_samples(model, data, out, a.seed)
    if not a.quiet:
        print(_summary(metrics))
    return 0


def _load_run(a: argparse.Namespace) -> tuple[Path, dict[str, Any], Any, Any]:
    """``(run folder, config, model, data)`` of ``a.run_dir``; one-line errors for broken runs."""
    from .train import CHECKPOINT, load_model, resolve_device

    run = Path(a.run_dir)
    if not (run / "config.json").is_file() or not (run / CHECKPOINT).is_file():
        raise UsageError(f"{run} is not a run folder (needs config.json and {CHECKPOINT})")
    try:
        config = json.loads((run / "config.json").read_text())
        dataset = config["dataset"]
    except (json.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
        raise UsageError(f"{run / 'config.json'} is unreadable ({exc})") from None
    device = resolve_device(a.device)
    try:
        model = load_model(run / CHECKPOINT, device)
    except Exception as exc:  # a truncated or foreign file
        msg = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"cannot load {run / CHECKPOINT}: {msg}") from None
    data = _load_data(dataset, a.data_root, device, config.get("limit"), config.get("text_file"),
                      config.get("max_len"))
    return run, config, model, data


def _seed(config: dict[str, Any]) -> int:
    return int((config.get("trainer") or {}).get("seed", 0))


def cmd_evaluate(a: argparse.Namespace) -> int:
    from .io import write_json

    settings = _eval_settings(a)
    run, config, model, data = _load_run(a)
    if not a.quiet:
        print(_describe_eval(settings, len(data.test)), flush=True)
    metrics = _evaluate(model, data, _seed(config), settings, a.quiet)
    old = run / "metrics.json"
    if old.is_file():
        try:
            prev = json.loads(old.read_text())
            metrics.update({k: prev[k] for k in ("train_seconds", "wall_seconds", "epochs") if k in prev})
        except (json.JSONDecodeError, TypeError):
            pass
    write_json(metrics, old)
    if not a.quiet:
        print(_summary(metrics))
    return 0


def cmd_diagnose(a: argparse.Namespace) -> int:
    from .diagnose import diagnose
    from .io import atomic_write

    fig_path = Path(a.out) if a.out else Path(a.run_dir) / "diagnosis.png"
    if a.out:
        check_out_dir(fig_path.parent, "the folder of --out")
    run, config, model, data = _load_run(a)
    kwargs = {"n": a.n} if a.n is not None else {}
    report = diagnose(model, data, seed=_seed(config), progress=not a.quiet, **kwargs)
    print(report.summary())
    fig = report.figure()
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    fmt = fig_path.suffix.lstrip(".").lower() or "png"
    atomic_write(fig_path, lambda f: fig.savefig(f, format=fmt, dpi=150, bbox_inches="tight"))
    if not a.quiet:
        print(f"figure: {fig_path}")
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    from .sweep import run_sweep

    return run_sweep(a.config, shard=a.shard, results=a.results, device=a.device,
                     fast=a.fast or os.environ.get("VAEAS_FAST") == "1", dry_run=a.dry_run,
                     datasets=a.dataset, methods=a.method)


def _summary(m: dict[str, Any]) -> str:
    parts = [f"-ELBO {m['neg_elbo']:.2f}", f"KL {m['kl']:.2f}",
             f"MI {m['mi_dataset']:.2f} (dataset) / {m['mi_minibatch']:.2f} (B={m['mi_batch_size']})",
             f"AU {m['au']}"]
    if "iw_nll" in m:
        parts.insert(1, f"IW-NLL {m['iw_nll']:.2f} (k={m['iw_k']}, n={m.get('iw_n', '?')})")
    if "ppl_elbo" in m:
        ppl = f"perplexity {m['ppl_elbo']:.1f} (ELBO)"
        parts.append(ppl + (f" / {m['ppl_iw']:.1f} (IW)" if "ppl_iw" in m else ""))
    if "probe_acc" in m:
        parts.append(f"probe {100 * m['probe_acc']:.1f}%")
    return "test: " + ", ".join(parts) + " (nats)"


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "diagnose": cmd_diagnose, "sweep": cmd_sweep}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from .data import DataError
    from .train import ResumeMismatch, TrainingError, keep_freed_memory

    a = build_parser().parse_args(argv)
    keep_freed_memory()  # a quarter off a step of the sequence VAE; see its docstring
    try:
        status = COMMANDS[a.command](a)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
        return status
    except (UsageError, DataError, ValueError, ResumeMismatch) as exc:
        print(f"vaeas: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except TrainingError as exc:
        print(f"vaeas: training stopped: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `vaeas sweep CONFIG --dry-run | head -1`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 128 + 13  # as if killed by SIGPIPE, like other command-line tools
    except KeyboardInterrupt:
        print("vaeas: interrupted; the last finished epoch is saved, continue with --resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
