"""The trainer: a plain Adam loop over preloaded tensors, with history, checkpoints and resume.

Reading guide -- :meth:`Trainer.fit` is the whole loop::

    for epoch:
        for x, y, index in batches(train, B, shuffle, binarize on device):
            parts = model.loss(x, y, index)                    # per-sample dict, nats
            loss  = total_loss(parts, schedule(step), free_bits)
            loss.backward(); opt.step()
        validate (-ELBO, KL, MI, AU on a fixed validation subset)
        write history.csv and checkpoint.pt (atomically)

Determinism: with the same seed on the CPU two runs produce identical histories and weights, and
a run resumed from any epoch's checkpoint ends exactly where the uninterrupted run ends (the
checkpoint stores model, optimiser, both RNG streams and the history).
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import metrics
from .data import Dataset, batches
from .models import VAE
from .objectives import Schedule, make_schedule, total_loss

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.csv"


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN); the message is one line."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else Apple MPS, else CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but MPS is not available; use --device cpu or auto")
    return dev


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash during the write leaves the previous file intact.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_history_csv(history: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write the per-epoch history as CSV (atomically)."""
    path = Path(path)
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :class:`Trainer` (``torch.load(weights_only=True)``)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> VAE:
    """Rebuild the trained model stored in a checkpoint (or a run folder holding one)."""
    from .models import model_from_config

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    ckpt = load_checkpoint(path, map_location)
    model = model_from_config(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.to(map_location)


@dataclass
class Trainer:
    """Train a :class:`~vaeas.models.VAE` / :class:`~vaeas.models.VAEAS` with Adam.

    KL weight: ``kl_schedule`` in ``constant`` (``beta``), ``linear`` (0 -> beta over
    ``warmup_epochs``) or ``cyclical`` (``cycles`` cycles, rising over a fraction ``ratio``); with
    ``free_bits > 0`` the KL term has a per-dimension floor (nats). Validation every epoch on the
    first ``val_size`` validation images: -ELBO, KL, MI (dataset estimator) and AU (delta 0.01).

    ``device="auto"`` picks CUDA, then MPS, then CPU; ``amp=True`` runs the forward pass under bf16
    autocast on CUDA; ``compile=True`` wraps the loss in :func:`torch.compile`. ``progress`` shows a
    tqdm bar (terminal or notebook); ``log=True`` prints one plain line per epoch instead (for
    notebooks whose outputs are committed).
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    kl_schedule: str = "constant"
    beta: float = 1.0
    warmup_epochs: float = 10.0
    cycles: int = 4
    ratio: float = 0.5
    free_bits: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    val_size: int = 2000
    delta: float = 0.01
    grad_clip: float | None = None
    progress: bool = True
    log: bool = False
    check_every: int = 50
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch size must be >= 1")
        if not self.lr > 0:
            raise ValueError("learning rate must be > 0")
        if self.free_bits < 0:
            raise ValueError("free bits must be >= 0")
        if self.check_every < 1 or self.val_size < 1:
            raise ValueError("check_every and val_size must be >= 1")

    # ------------------------------------------------------------------ helpers
    def config(self) -> dict[str, Any]:
        """The trainer's settings as a JSON-able dict."""
        return asdict(self)

    def schedule(self, steps_per_epoch: int) -> Schedule:
        """The KL-weight schedule over ``steps_per_epoch * epochs`` updates (``schedule(step)``).

        A finished run's schedule is ``Trainer(**config["trainer"]).schedule(steps_per_epoch)``.
        """
        return make_schedule(self.kl_schedule, self.beta, steps_per_epoch * self.epochs,
                             round(self.warmup_epochs * steps_per_epoch), self.cycles, self.ratio)

    def _validate(self, model: VAE, x: Tensor) -> dict[str, float]:
        terms = metrics.elbo_terms(model, x, seed=self.seed)
        return {
            "val_neg_elbo": terms["neg_elbo"].mean().item(),
            "val_rec": terms["rec"].mean().item(),
            "val_kl": terms["kl"].mean().item(),
            "val_mi": metrics.mutual_information(model, x, "dataset", seed=self.seed),
            "val_au": metrics.active_units(model, x, self.delta),
        }

    # ------------------------------------------------------------------ the loop
    def fit(self, model: VAE, data: Dataset, out_dir: str | os.PathLike | None = None,
            resume: bool = False, stop_after: int | None = None) -> list[dict[str, Any]]:
        """Train ``model`` on ``data.train``; return the per-epoch history (list of dicts).

        With ``out_dir``, writes ``history.csv`` and ``checkpoint.pt`` there after every epoch;
        ``resume=True`` continues from that checkpoint when it exists. ``stop_after`` ends the call
        after that many epochs of this call (used to simulate a crash in tests).
        """
        device = resolve_device(self.device)
        out = Path(out_dir) if out_dir is not None else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        data = data.to(device)
        model.to(device)
        steps_per_epoch = math.ceil(len(data.train) / self.batch_size)
        total_steps = steps_per_epoch * self.epochs
        schedule = self.schedule(steps_per_epoch)
        # fused Adam: one kernel for all parameters (about 30 % faster per step on the CPU here)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, fused=device.type in ("cpu", "cuda"))
        gen = torch.Generator(device=device)
        history: list[dict[str, Any]] = []
        start_epoch = 0

        ckpt_path = out / CHECKPOINT if out is not None else None
        if resume and ckpt_path is not None and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path, device)
            if ckpt.get("model_config") != getattr(model, "config", None):
                raise TrainingError(f"{ckpt_path} was written for a different model; "
                                    "use another --out or delete it")
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            gen.set_state(ckpt["rng_data"].cpu())
            torch.set_rng_state(ckpt["rng_torch"].cpu())
            if device.type == "cuda" and ckpt.get("rng_cuda") is not None:
                torch.cuda.set_rng_state(ckpt["rng_cuda"].cpu(), device)
            history = list(ckpt["history"])
            start_epoch = int(ckpt["epoch"])
        else:
            torch.manual_seed(self.seed)
            gen.manual_seed(self.seed)

        val = data.val
        x_val = val.x[: self.val_size]
        loss_fn = torch.compile(model.loss) if self.compile else model.loss
        use_amp = self.amp and device.type == "cuda"

        if self.progress:
            from tqdm.auto import tqdm
        else:  # no progress bar: don't import tqdm.auto (it warns in kernels without ipywidgets)
            from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, disable=not self.progress,
                   unit="step", dynamic_ncols=True, leave=True)
        step = start_epoch * steps_per_epoch
        epochs_run = 0
        try:
            for epoch in range(start_epoch, self.epochs):
                if stop_after is not None and epochs_run >= stop_after:
                    break
                model.train()
                t0 = time.perf_counter()
                sums: dict[str, Tensor] = {}
                seen = 0
                bad = torch.zeros((), dtype=torch.bool, device=device)
                for i, (x, y, index) in enumerate(batches(data.train, self.batch_size, shuffle=True,
                                                          generator=gen)):
                    w = schedule(step)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                        parts = loss_fn(x, y, index)
                    loss = total_loss(parts, w, self.free_bits)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                    opt.step()
                    step += 1
                    with torch.no_grad():
                        bad |= ~torch.isfinite(loss)
                        n = x.shape[0]
                        seen += n
                        sums["loss"] = sums.get("loss", 0) + loss.detach() * n
                        for key in ("rec", "kl", "ce"):
                            if key in parts:
                                sums[key] = sums.get(key, 0) + parts[key].detach().float().sum()
                    if (i + 1) % self.check_every == 0 or i + 1 == steps_per_epoch:
                        if bad.item():
                            raise TrainingError(
                                f"non-finite loss in epoch {epoch + 1} (step {step}); stopped"
                                + (f", last good checkpoint kept at {ckpt_path}" if ckpt_path else "")
                                + "; try a lower --lr")
                        if self.progress:
                            bar.set_postfix(epoch=epoch + 1, loss=f"{sums['loss'].item() / seen:.2f}",
                                            kl=f"{sums['kl'].item() / seen:.2f}",
                                            au=history[-1]["val_au"] if history else "-", refresh=False)
                    bar.update(1)
                seconds = time.perf_counter() - t0
                row: dict[str, Any] = {"epoch": epoch + 1, "step": step, "kl_weight": schedule(step - 1)}
                row.update({f"train_{k}": (v / seen).item() for k, v in sums.items()})
                t1 = time.perf_counter()
                row.update(self._validate(model, x_val))
                row["seconds"] = seconds
                row["eval_seconds"] = time.perf_counter() - t1
                history.append(row)
                if self.progress:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{row['train_loss']:.2f}",
                                    kl=f"{row['train_kl']:.2f}", au=row["val_au"])
                if self.log:
                    print(f"epoch {epoch + 1:3d}  loss {row['train_loss']:8.2f}  "
                          f"val -ELBO {row['val_neg_elbo']:8.2f}  KL {row['val_kl']:6.2f}  "
                          f"MI {row['val_mi']:5.2f}  AU {row['val_au']:3d}  ({seconds:.1f} s)", flush=True)
                if out is not None:
                    self._save(out, model, opt, gen, device, epoch + 1, history)
                epochs_run += 1
        finally:
            bar.close()
        return history

    def _save(self, out: Path, model: VAE, opt: torch.optim.Optimizer, gen: torch.Generator,
              device: torch.device, epoch: int, history: list[dict[str, Any]]) -> None:
        ckpt = {
            "epoch": epoch,
            "model": model.state_dict(),
            "model_config": getattr(model, "config", {}),
            "optimizer": opt.state_dict(),
            "trainer": self.config(),
            "history": history,
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "rng_data": gen.get_state(),
        }
        atomic_save(ckpt, out / CHECKPOINT)
        write_history_csv(history, out / HISTORY)
