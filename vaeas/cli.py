"""Command line: ``python -m vaeas train | evaluate | sweep``.

A user mistake (bad argument, missing run, bad data file) prints one line on stderr and exits with
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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

USAGE_ERROR = 2


class UsageError(Exception):
    """A mistake of the user's; reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


# ----------------------------------------------------------------------------- argument types
def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _nonneg_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}")
    return v


def _nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {s!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    v = _nonneg_float(s)
    if v == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {s!r}")
    return v


def _ratio(s: str) -> float:
    v = _positive_float(s)
    if v > 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {s!r}")
    return v


def _sizes(s: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(p) for p in s.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 512,256, got {s!r}") from None
    if not sizes or any(v < 1 for v in sizes):
        raise argparse.ArgumentTypeError(f"expected positive comma-separated sizes, got {s!r}")
    return sizes


def _shard(s: str) -> tuple[int, int]:
    try:
        i, n = (int(p) for p in s.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shard like 0/4, got {s!r}") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"shard {s!r} must be i/n with 0 <= i < n")
    return i, n


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .models import ACTIVATIONS, ARCHITECTURES, TARGETS
    from .objectives import SCHEDULES

    p = _Parser(prog="vaeas", description="Posterior collapse and VAE-AS: train, evaluate, sweep.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train one model and evaluate it on the test split")
    g = t.add_argument_group("data")
    g.add_argument("--dataset", choices=("mnist", "omniglot"), default="mnist")
    g.add_argument("--data-root", default=None, help="folder holding MNIST/ or omniglot-py/ "
                   "(default: $VAEAS_DATA, then ./data)")
    g.add_argument("--limit", type=_positive_int, default=None,
                   help="keep only the first N images of each split (quick runs)")
    g = t.add_argument_group("model")
    g.add_argument("--model", choices=("vae", "vaeas"), default="vae")
    g.add_argument("--arch", choices=ARCHITECTURES, default="mlp")
    g.add_argument("--latent", type=_positive_int, default=32, help="latent dimensions D")
    g.add_argument("--hidden", type=_sizes, default=None, help="encoder hidden sizes, e.g. 512,256")
    g.add_argument("--decoder-hidden", type=_sizes, default=None, help="decoder hidden sizes")
    g.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu")
    g.add_argument("--direct", action="store_true", help="MADE: add a direct pixel->output path")
    g.add_argument("--target", choices=TARGETS, default="label", help="VAE-AS classifier target")
    g.add_argument("--lam", type=_nonneg_float, default=None, help="VAE-AS weight lambda on CE (1)")
    g.add_argument("--head-hidden", type=_positive_int, default=None,
                   help="VAE-AS classifier hidden units (default: linear)")
    g.add_argument("--head", choices=("auto", "dense", "two_level"), default="auto")
    g = t.add_argument_group("objective")
    g.add_argument("--beta", type=_nonneg_float, default=1.0, help="(final) KL weight")
    g.add_argument("--anneal", choices=SCHEDULES, default="constant", help="KL weight schedule")
    g.add_argument("--warmup-epochs", type=_nonneg_float, default=10.0, help="linear annealing length")
    g.add_argument("--cycles", type=_positive_int, default=4, help="cyclical annealing: cycles M")
    g.add_argument("--ratio", type=_ratio, default=0.5, help="cyclical annealing: ratio R")
    g.add_argument("--free-bits", type=_nonneg_float, default=0.0, help="KL floor per dim (nats)")
    g = t.add_argument_group("training")
    g.add_argument("--epochs", type=_positive_int, default=10)
    g.add_argument("--batch-size", type=_positive_int, default=128)
    g.add_argument("--lr", type=_positive_float, default=1e-3)
    g.add_argument("--seed", type=_nonneg_int, default=0)
    g.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    g.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    g.add_argument("--compile", action="store_true", help="torch.compile the loss")
    g.add_argument("--val-size", type=_positive_int, default=2000)
    g.add_argument("--out", required=True, help="run folder (created)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--no-pictures", action="store_true",
                   help="do not write samples.png/reconstructions.png (sampling a MADE decoder is slow)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    _eval_args(t)

    e = sub.add_parser("evaluate", help="recompute metrics.json of a run folder")
    e.add_argument("run_dir")
    e.add_argument("--device", default="auto")
    e.add_argument("--data-root", default=None)
    e.add_argument("--quiet", action="store_true")
    _eval_args(e)

    s = sub.add_parser("sweep", help="run a grid of runs from a config file into results/")
    s.add_argument("config", help="sweep config (JSON)")
    s.add_argument("--shard", type=_shard, default=(0, 1), help="run slice i of n (i/n)")
    s.add_argument("--results", default=None, help="results folder (default: from the config)")
    s.add_argument("--device", default=None, help="override the config's device")
    s.add_argument("--fast", action="store_true", help="tiny settings (as VAEAS_FAST=1)")
    s.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    s.add_argument("--dataset", action="append", default=None,
                   help="run only this dataset's part of the grid (repeatable)")
    return p


def _eval_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation")
    g.add_argument("--k", type=_nonneg_int, default=5000, help="importance samples for IW-NLL (0: skip)")
    g.add_argument("--iw-size", type=_positive_int, default=None,
                   help="test images used for IW-NLL (default: all)")
    g.add_argument("--mi-batch", type=_positive_int, default=128, help="B of the minibatch MI estimator")
    g.add_argument("--delta", type=_positive_float, default=0.01, help="active-unit threshold")
    g.add_argument("--no-probe", action="store_true", help="skip the linear probe")


# ----------------------------------------------------------------------------- helpers
def _write_json(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _eval_settings(a: argparse.Namespace) -> dict[str, Any]:
    return dict(k=a.k, iw_size=a.iw_size, mi_batch=a.mi_batch, delta=a.delta, probe=not a.no_probe)


def _save_pictures(model: Any, data: Any, out: Path, seed: int) -> None:
    import torch

    from .plots import save_image_grid

    gen = torch.Generator(device=data.test.x.device).manual_seed(seed)
    save_image_grid(model.sample(64, generator=gen), str(out / "samples.png"))
    x = data.test.x[:32]
    save_image_grid(torch.cat([x, model.reconstruct(x, generator=gen)]), str(out / "reconstructions.png"))


def _versions() -> dict[str, str]:
    import torch

    from . import __version__

    return {"vaeas": __version__, "torch": torch.__version__, "python": platform.python_version()}


# ----------------------------------------------------------------------------- commands
def cmd_train(a: argparse.Namespace) -> int:
    import torch

    from .data import load_dataset
    from .metrics import evaluate
    from .models import build_model
    from .train import CHECKPOINT, Trainer, resolve_device

    device = resolve_device(a.device)
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if (out / CHECKPOINT).exists() and not a.resume:
        raise UsageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if a.model == "vae" and (a.lam is not None or a.head_hidden is not None):
        raise UsageError("--lam and --head-hidden only apply to --model vaeas")
    if a.arch == "conv" and (a.hidden or a.decoder_hidden):
        raise UsageError("--hidden/--decoder-hidden do not apply to --arch conv")

    data = load_dataset(a.dataset, root=a.data_root, device=device, limit=a.limit)
    if a.target == "label":
        num_classes, h = data.num_classes, data.label_entropy()
    else:
        num_classes, h = len(data.train), math.log(len(data.train))
    torch.manual_seed(a.seed)
    model = build_model(a.model, a.arch, a.latent, a.hidden, a.decoder_hidden, a.activation,
                        num_classes=num_classes, target=a.target, lam=1.0 if a.lam is None else a.lam,
                        head_hidden=a.head_hidden,
                        head=a.head, target_entropy=h, direct=a.direct)
    trainer = Trainer(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, kl_schedule=a.anneal,
                      beta=a.beta, warmup_epochs=a.warmup_epochs, cycles=a.cycles, ratio=a.ratio,
                      free_bits=a.free_bits, seed=a.seed, device=str(device), amp=a.amp,
                      compile=a.compile, val_size=a.val_size, progress=not a.quiet)
    out.mkdir(parents=True, exist_ok=True)
    config = {"command": "train", "dataset": a.dataset, "data_source": data.source, "limit": a.limit,
              "model": model.config, "trainer": trainer.config(), "eval": _eval_settings(a),
              "device": str(device), "versions": _versions()}
    _write_json(config, out / "config.json")
    t0 = time.perf_counter()
    history = trainer.fit(model, data, out_dir=out, resume=a.resume)
    train_seconds = sum(r["seconds"] for r in history)
    metrics = evaluate(model, data, seed=a.seed, **_eval_settings(a))
    metrics["train_seconds"] = train_seconds
    metrics["wall_seconds"] = time.perf_counter() - t0
    metrics["epochs"] = len(history)
    _write_json(metrics, out / "metrics.json")
    if not a.no_pictures:
        _save_pictures(model, data, out, a.seed)
    if not a.quiet:
        print(_summary(metrics))
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from .data import load_dataset
    from .metrics import evaluate
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
    data = load_dataset(dataset, root=a.data_root, device=device, limit=config.get("limit"))
    seed = int(config.get("trainer", {}).get("seed", 0))
    metrics = evaluate(model, data, seed=seed, **_eval_settings(a))
    old = run / "metrics.json"
    if old.is_file():
        try:
            prev = json.loads(old.read_text())
            for key in ("train_seconds", "wall_seconds", "epochs"):
                if key in prev:
                    metrics[key] = prev[key]
        except json.JSONDecodeError:
            pass
    _write_json(metrics, old)
    if not a.quiet:
        print(_summary(metrics))
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    from .sweep import run_sweep

    return run_sweep(a.config, shard=a.shard, results=a.results, device=a.device,
                     fast=a.fast or os.environ.get("VAEAS_FAST") == "1", dry_run=a.dry_run,
                     datasets=a.dataset)


def _summary(m: dict[str, Any]) -> str:
    parts = [f"-ELBO {m['neg_elbo']:.2f}", f"KL {m['kl']:.2f}",
             f"MI {m['mi_dataset']:.2f} (dataset) / {m['mi_minibatch']:.2f} (B={m['mi_batch_size']})",
             f"AU {m['au']}"]
    if "iw_nll" in m:
        parts.insert(1, f"IW-NLL {m['iw_nll']:.2f} (k={m['iw_k']})")
    if "probe_acc" in m:
        parts.append(f"probe {100 * m['probe_acc']:.1f}%")
    return "test: " + ", ".join(parts) + " (nats)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from .data import DataError
    from .train import TrainingError

    parser = build_parser()
    a = parser.parse_args(argv)
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "sweep": cmd_sweep}
    try:
        return commands[a.command](a)
    except (UsageError, DataError, ValueError) as exc:
        print(f"vaeas: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except TrainingError as exc:
        print(f"vaeas: training stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vaeas: interrupted; the last finished epoch is saved, continue with --resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
