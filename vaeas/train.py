"""The trainer: an Adam loop over preloaded tensors, with history, checkpoints and resume.

Reading guide -- :meth:`Trainer.fit` is the whole loop::

    setup or resume (model, optimisers, both RNG streams, history)
    for epoch:
        for x, y, index in batches(train, B, shuffle, binarize on device):
            [aggressive: train the encoder alone on random batches until its loss stops falling]
            parts = model.loss(x, y, index)                    # per-sample dict, nats
            loss  = total_loss(parts, schedule(step), free_bits)
            loss.backward(); step the optimisers             # the decoder side only, if aggressive
        validate (-ELBO, KL, MI, AU on a fixed validation subset)
        [aggressive: switch off for good when the validation MI did not rise]
        [patience: keep the best weights by validation -ELBO; stop after `patience` epochs without a new best]
        write history.csv and checkpoint.pt (atomically, with vaeas.io)

Optimisers: the parameters of ``model.sparse_parameters()`` (rows of an instance head, whose
gradients are sparse) get :class:`torch.optim.SparseAdam`, all others (fused) Adam; with
``aggressive=True`` the encoder and the decoder side have an Adam each.

Determinism: with the same seed on the CPU two runs produce identical histories and weights, and
a run resumed from any epoch's checkpoint ends exactly where the uninterrupted run ends (the
checkpoint stores model, optimisers, both RNG streams, the aggressive and early-stopping state
and the history).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import metrics
from .data import Dataset, batches
from .io import save_torch, write_csv
from .models import VAE
from .objectives import Schedule, make_schedule, total_loss
from .runtime import keep_freed_memory, resolve_device  # noqa: F401 -- also importable from here

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.csv"

#: Trainer settings that may change when a run is resumed (more epochs continue a run; the rest
#: changes where or how visibly it runs, not what it computes).
RESUMABLE_CHANGES = frozenset({"epochs", "device", "amp", "compile", "progress", "log", "check_every",
                               "snapshots", "extra"})

# Earlier names of the atomic writers (kept for notebooks and tests): the one helper is vaeas.io.
atomic_save = save_torch
write_history_csv = write_csv


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN); the message is one line."""


class ResumeMismatch(TrainingError):
    """A checkpoint was written for another model or other training settings (one line)."""


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
    model.load_state_dict(trained_weights(ckpt))
    return model.to(map_location)


def trained_weights(ckpt: dict[str, Any]) -> dict[str, Tensor]:
    """The weights a run hands on: the best epoch's by validation -ELBO when it was trained with
    ``patience`` (early stopping), else the last epoch's (``ckpt["model"]``, what resume uses)."""
    best = (ckpt.get("early_stopping") or {}).get("model")
    return best if best is not None else ckpt["model"]


def encoder_decoder_parameters(model: torch.nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """``(encoder side, decoder side)``: ``model.encoder_parameters()`` and
    ``model.decoder_parameters()`` when the model has them, else ``model.encoder`` and the rest.

    Raises ``ValueError`` unless the two lists split ``model.parameters()`` exactly.
    """
    enc_fn = getattr(model, "encoder_parameters", None)
    enc = list(enc_fn() if enc_fn is not None else model.encoder.parameters())
    ids = {id(p) for p in enc}
    dec_fn = getattr(model, "decoder_parameters", None)
    dec = list(dec_fn()) if dec_fn is not None else [p for p in model.parameters() if id(p) not in ids]
    if sorted(map(id, enc + dec)) != sorted(map(id, model.parameters())):
        raise ValueError("encoder and decoder parameters must split the model's parameters")
    return enc, dec


def _differences(old: dict[str, Any], new: dict[str, Any], skip: frozenset[str] = frozenset()) -> list[str]:
    keys = [k for k in dict.fromkeys([*old, *new]) if k not in skip]
    return [f"{k}={old.get(k)!r} there, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]


@dataclass
class _Run:
    """Everything one call of :meth:`Trainer.fit` carries from step to step."""

    model: VAE
    data: Dataset
    device: torch.device
    out: Path | None
    optimizers: dict[str, torch.optim.Optimizer]
    gen: torch.Generator
    schedule: Schedule
    steps_per_epoch: int
    x_val: Tensor
    loss_fn: Any
    use_amp: bool
    aggressive_on: bool
    prev_mi: float | None = None
    best: float = math.inf
    best_epoch: int = 0
    best_model: dict[str, Tensor] | None = None
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    step: int = 0


@dataclass
class Trainer:
    """Train a :class:`~vaeas.models.VAE` / :class:`~vaeas.models.VAEAS` with Adam.

    KL weight: ``kl_schedule`` in ``constant`` (``beta``), ``linear`` (0 -> beta over
    ``warmup_epochs``) or ``cyclical`` (``cycles`` cycles, rising over a fraction ``ratio``); with
    ``free_bits > 0`` the KL term has a per-dimension floor (nats). Validation every epoch on the
    first ``val_size`` validation images: -ELBO, KL, MI (dataset estimator) and AU (delta 0.01).

    ``aggressive=True`` is He et al.'s (2019) aggressive inference-network training: before each
    update of the decoder side, the encoder alone is trained on fresh random minibatches until the
    mean loss of a block of ``aggressive_check_every`` inner steps no longer falls below the previous
    block's (at most ``aggressive_max_inner`` steps); once the validation MI of an epoch did not
    rise above the previous epoch's, the mode is switched off for good and both sides are updated
    together. The history then has ``aggressive`` (1 for an epoch trained so) and ``inner_steps``.

    ``patience > 0`` is early stopping: after each epoch the weights with the lowest validation
    -ELBO so far are kept (in memory and in the checkpoint); training stops once ``patience``
    epochs in a row brought no new best, or after ``epochs`` (the cap), and the model then holds
    the best epoch's weights. The criterion is the -ELBO (KL weight 1, no auxiliary term) for
    every method, the number they are compared on. The history has ``best_epoch``.

    ``snapshots`` lists epochs after which the model's weights are kept as ``snapshot-<epoch>.pt``
    in the run folder (0: the weights before training), for figures of a model during training;
    read one back with :func:`load_snapshot`.

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
    aggressive: bool = False
    aggressive_max_inner: int = 100
    aggressive_check_every: int = 15
    patience: int = 0
    snapshots: tuple[int, ...] = ()
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
        if self.aggressive_max_inner < 1 or self.aggressive_check_every < 1:
            raise ValueError("aggressive_max_inner and aggressive_check_every must be >= 1")
        if self.patience < 0:
            raise ValueError("patience must be >= 0 (0: no early stopping)")
        self.snapshots = tuple(sorted({int(e) for e in self.snapshots}))
        if any(e < 0 or e > self.epochs for e in self.snapshots):
            raise ValueError(f"snapshot epochs must lie in 0..{self.epochs}, got {list(self.snapshots)}")

    # ------------------------------------------------------------------ settings
    def config(self) -> dict[str, Any]:
        """The trainer's settings as a JSON-able dict."""
        return asdict(self)

    def schedule(self, steps_per_epoch: int) -> Schedule:
        """The KL-weight schedule over ``steps_per_epoch * epochs`` updates (``schedule(step)``).

        A finished run's schedule is ``Trainer(**config["trainer"]).schedule(steps_per_epoch)``.
        """
        return make_schedule(self.kl_schedule, self.beta, steps_per_epoch * self.epochs,
                             round(self.warmup_epochs * steps_per_epoch), self.cycles, self.ratio)

    # ------------------------------------------------------------------ the loop
    def fit(self, model: VAE, data: Dataset, out_dir: str | os.PathLike | None = None,
            resume: bool = False, stop_after: int | None = None) -> list[dict[str, Any]]:
        """Train ``model`` on ``data.train``; return the per-epoch history (list of dicts).

        With ``out_dir``, writes ``history.csv`` and ``checkpoint.pt`` there after every epoch;
        ``resume=True`` continues from that checkpoint when it exists (:class:`ResumeMismatch` when
        it was written for another model or other settings, see :meth:`check_resume`).
        ``stop_after`` ends the call after that many epochs of this call (to simulate a crash).
        With ``patience``, a finished run leaves the best epoch's weights in ``model``.
        """
        keep_freed_memory()
        run = self._setup(model, data, out_dir, resume)
        last = self.epochs if stop_after is None else min(self.epochs, run.epoch + stop_after)
        with self._progress_bar(run) as bar:
            while run.epoch < last and not run.stopped:
                row = self._epoch(run, bar)
                self._end_epoch(run, row, bar)
        if run.best_model is not None and (run.stopped or run.epoch >= self.epochs):
            model.load_state_dict(run.best_model)
        return run.history

    def fit_or_load(self, model: VAE, data: Dataset, out_dir: str | os.PathLike) -> list[dict[str, Any]]:
        """The history of a finished run of this model and these settings in ``out_dir``, with its
        weights loaded into ``model`` (no training); otherwise ``fit(..., resume=True)``."""
        ckpt = self.check_resume(model, out_dir)
        stopped = bool(((ckpt or {}).get("early_stopping") or {}).get("stopped"))
        if ckpt is None or (int(ckpt["epoch"]) < self.epochs and not stopped):
            return self.fit(model, data, out_dir, resume=True)
        model.load_state_dict(trained_weights(ckpt))
        model.to(resolve_device(self.device))
        return list(ckpt["history"])

    def check_resume(self, model: VAE, out_dir: str | os.PathLike | None,
                     map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The checkpoint in ``out_dir`` (None when there is none), after checking that it was
        written for ``model``'s config and these settings (all but :data:`RESUMABLE_CHANGES`; the
        number of epochs may grow). Raises :class:`ResumeMismatch` naming what differs."""
        path = Path(out_dir) / CHECKPOINT if out_dir is not None else None
        if path is None or not path.exists():
            return None
        ckpt = load_checkpoint(path, map_location)
        diff = _differences(ckpt.get("model_config") or {}, getattr(model, "config", {}) or {})
        if diff:
            raise ResumeMismatch(f"{path} was written for a different model ({'; '.join(diff[:3])}); "
                                 "use another --out or delete it")
        defaults = Trainer().config()
        old = {**defaults, **{k: v for k, v in (ckpt.get("trainer") or {}).items() if k in defaults}}
        diff = _differences(old, self.config(), RESUMABLE_CHANGES)
        if int(ckpt["epoch"]) > self.epochs:
            diff.append(f"{ckpt['epoch']} epochs done there, epochs={self.epochs} now")
        if diff:
            raise ResumeMismatch(f"{path} was trained with other settings ({'; '.join(diff[:3])}); "
                                 "use another --out or delete it")
        return ckpt

    # ------------------------------------------------------------------ setup and resume
    def _setup(self, model: VAE, data: Dataset, out_dir: str | os.PathLike | None,
               resume: bool) -> _Run:
        device = resolve_device(self.device)
        out = Path(out_dir) if out_dir is not None else None
        ckpt = self.check_resume(model, out, device) if resume else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        data = data.to(device)
        model.to(device)
        steps_per_epoch = math.ceil(len(data.train) / self.batch_size)
        run = _Run(model=model, data=data, device=device, out=out,
                   optimizers=self._optimizers(model, device), gen=torch.Generator(device=device),
                   schedule=self.schedule(steps_per_epoch), steps_per_epoch=steps_per_epoch,
                   x_val=data.val.x[: self.val_size],
                   loss_fn=torch.compile(model.loss) if self.compile else model.loss,
                   use_amp=self.amp and device.type == "cuda", aggressive_on=self.aggressive)
        if ckpt is None:
            torch.manual_seed(self.seed)
            run.gen.manual_seed(self.seed)
            self._snapshot(run)
        else:
            self._restore(run, ckpt)
        return run

    def _optimizers(self, model: VAE, device: torch.device) -> dict[str, torch.optim.Optimizer]:
        """``sparse`` (SparseAdam) for ``model.sparse_parameters()``; the rest in ``adam``, or in
        ``encoder`` and ``decoder`` when aggressive. Fused Adam: one kernel for all parameters."""
        sparse = list(getattr(model, "sparse_parameters", list)())
        ids = {id(p) for p in sparse}
        fused = device.type in ("cpu", "cuda")
        if self.aggressive:
            enc, dec = encoder_decoder_parameters(model)
            if not enc:
                raise ValueError("aggressive training needs an encoder with parameters (this model has "
                                 "no latent code)")
            groups = {"encoder": enc, "decoder": dec}
        else:
            groups = {"adam": list(model.parameters())}
        opts: dict[str, torch.optim.Optimizer] = {}
        for name, params in groups.items():
            dense = [p for p in params if id(p) not in ids]
            if dense:
                opts[name] = torch.optim.Adam(dense, lr=self.lr, fused=fused)
        if sparse:
            opts["sparse"] = torch.optim.SparseAdam(sparse, lr=self.lr)
        return opts

    def _restore(self, run: _Run, ckpt: dict[str, Any]) -> None:
        run.model.load_state_dict(ckpt["model"])
        states = ckpt.get("optimizers") or {"adam": ckpt["optimizer"]}  # older checkpoints: one Adam
        if set(states) != set(run.optimizers):
            raise ResumeMismatch(f"the checkpoint has optimisers {sorted(states)}, "
                                 f"this run needs {sorted(run.optimizers)}")
        for name, opt in run.optimizers.items():
            opt.load_state_dict(states[name])
        run.gen.set_state(ckpt["rng_data"].cpu())
        torch.set_rng_state(ckpt["rng_torch"].cpu())
        if run.device.type == "cuda" and ckpt.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng_cuda"].cpu(), run.device)
        run.history = list(ckpt["history"])
        run.epoch = int(ckpt["epoch"])
        run.step = run.epoch * run.steps_per_epoch
        state = ckpt.get("aggressive") or {}
        run.aggressive_on = bool(state.get("on", self.aggressive))
        run.prev_mi = state.get("prev_mi")
        early = ckpt.get("early_stopping") or {}
        run.best = float(early.get("best", math.inf))
        run.best_epoch = int(early.get("best_epoch", 0))
        run.best_model = early.get("model")
        run.stopped = bool(early.get("stopped", False))

    @contextmanager
    def _progress_bar(self, run: _Run) -> Iterator[Any]:
        if self.progress:
            from tqdm.auto import tqdm
        else:  # no progress bar: don't import tqdm.auto (it warns in kernels without ipywidgets)
            from tqdm import tqdm
        bar = tqdm(total=run.steps_per_epoch * self.epochs, initial=run.step, disable=not self.progress,
                   unit="step", dynamic_ncols=True, leave=True)
        try:
            yield bar
        finally:
            bar.close()

    # ------------------------------------------------------------------ one epoch
    def _epoch(self, run: _Run, bar: Any) -> dict[str, Any]:
        """Train one pass over the training split, then validate: the epoch's history row."""
        t0 = time.perf_counter()
        row = self._train_pass(run, bar)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        row.update(self._validate(run.model, run.x_val))
        row["seconds"] = seconds
        row["eval_seconds"] = time.perf_counter() - t1
        return row

    def _train_pass(self, run: _Run, bar: Any) -> dict[str, Any]:
        run.model.train()
        aggressive = run.aggressive_on
        sums: dict[str, Tensor] = {}
        seen = inner = 0
        bad = torch.zeros((), dtype=torch.bool, device=run.device)
        for i, batch in enumerate(batches(run.data.train, self.batch_size, shuffle=True, generator=run.gen)):
            w = run.schedule(run.step)
            if aggressive:
                inner += self._encoder_inner_loop(run, w)
                parts, loss = self._step(run, batch, w, ("decoder", "sparse"))
            else:
                parts, loss = self._step(run, batch, w, tuple(run.optimizers))
            run.step += 1
            seen += self._accumulate(sums, parts, loss, len(batch[0]))
            bad |= ~torch.isfinite(loss.detach())
            if (i + 1) % self.check_every == 0 or i + 1 == run.steps_per_epoch:
                self._check_finite(run, bad)
                self._show(bar, run, sums, seen)
            bar.update(1)
        row: dict[str, Any] = {"epoch": run.epoch + 1, "step": run.step, "kl_weight": run.schedule(run.step - 1)}
        row.update({f"train_{k}": (v / seen).item() for k, v in sums.items()})
        if self.aggressive:
            row.update(aggressive=int(aggressive), inner_steps=inner)
        return row

    # ------------------------------------------------------------------ one step
    def _step(self, run: _Run, batch: tuple[Tensor, Tensor, Tensor], kl_weight: float,
              optimizers: tuple[str, ...]) -> tuple[dict[str, Tensor], Tensor]:
        """One update of the ``optimizers`` (names) on ``batch``: ``(parts, loss)``."""
        x, y, index = batch
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.use_amp):
            parts = run.loss_fn(x, y, index)
        loss = total_loss(parts, kl_weight, self.free_bits)
        run.model.zero_grad(set_to_none=True)
        loss.backward()
        opts = [run.optimizers[name] for name in optimizers if name in run.optimizers]
        if self.grad_clip:
            dense = [p for o in opts if not isinstance(o, torch.optim.SparseAdam)
                     for g in o.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(dense, self.grad_clip)
        for opt in opts:
            opt.step()
        return parts, loss

    def _encoder_inner_loop(self, run: _Run, kl_weight: float) -> int:
        """Aggressive mode: update the encoder alone on random training batches until the mean
        loss of a block of ``aggressive_check_every`` steps is not below the previous block's, or
        ``aggressive_max_inner`` steps; returns the number of steps taken."""
        with _frozen_except(run.model, run.optimizers["encoder"]):
            return self._inner_steps(run, kl_weight)

    def _inner_steps(self, run: _Run, kl_weight: float) -> int:
        best = math.inf
        block = torch.zeros((), device=run.device)
        for k in range(1, self.aggressive_max_inner + 1):
            _, loss = self._step(run, self._random_batch(run), kl_weight, ("encoder",))
            block += loss.detach()
            if k % self.aggressive_check_every == 0:
                mean = block.item() / self.aggressive_check_every
                if not mean < best:  # also stops on a non-finite loss
                    return k
                best = mean
                block.zero_()
        return self.aggressive_max_inner

    def _random_batch(self, run: _Run) -> tuple[Tensor, Tensor, Tensor]:
        """A fresh random minibatch of the training split, drawn from the trainer's generator."""
        split = run.data.train
        n = min(self.batch_size, len(split))
        idx = torch.randint(len(split), (n,), generator=run.gen, device=run.gen.device).to(split.x.device)
        x = split.x[idx]
        if not split.binarized:
            x = torch.bernoulli(x, generator=run.gen)
        return x, split.y[idx], split.index[idx]

    @staticmethod
    def _accumulate(sums: dict[str, Tensor], parts: dict[str, Tensor], loss: Tensor, n: int) -> int:
        with torch.no_grad():
            sums["loss"] = sums.get("loss", 0) + loss.detach() * n
            for key in ("rec", "kl", "ce"):
                if key in parts:
                    sums[key] = sums.get(key, 0) + parts[key].detach().float().sum()
        return n

    def _check_finite(self, run: _Run, bad: Tensor) -> None:
        if bad.item():
            kept = f", last good checkpoint kept at {run.out / CHECKPOINT}" if run.out is not None else ""
            raise TrainingError(f"non-finite loss in epoch {run.epoch + 1} (step {run.step}); stopped"
                                f"{kept}; try a lower --lr")

    def _show(self, bar: Any, run: _Run, sums: dict[str, Tensor], seen: int) -> None:
        if self.progress:
            bar.set_postfix(epoch=run.epoch + 1, loss=f"{sums['loss'].item() / seen:.2f}",
                            kl=f"{sums['kl'].item() / seen:.2f}",
                            au=run.history[-1]["val_au"] if run.history else "-", refresh=False)

    # ------------------------------------------------------------------ validate, end of epoch, save
    def _validate(self, model: VAE, x: Tensor) -> dict[str, float]:
        terms = metrics.elbo_terms(model, x, seed=self.seed)
        return {
            "val_neg_elbo": terms["neg_elbo"].mean().item(),
            "val_rec": terms["rec"].mean().item(),
            "val_kl": terms["kl"].mean().item(),
            "val_mi": metrics.mutual_information(model, x, "dataset", seed=self.seed),
            "val_au": metrics.active_units(model, x, self.delta),
        }

    def _end_epoch(self, run: _Run, row: dict[str, Any], bar: Any) -> None:
        if run.aggressive_on:  # He et al.: stop once the MI of an epoch did not rise
            if run.prev_mi is not None and not row["val_mi"] > run.prev_mi:
                run.aggressive_on = False
            run.prev_mi = row["val_mi"]
        if self.patience:
            self._early_stopping(run, row)
        run.history.append(row)
        run.epoch += 1
        if self.progress:
            bar.set_postfix(epoch=run.epoch, loss=f"{row['train_loss']:.2f}", kl=f"{row['train_kl']:.2f}",
                            au=row["val_au"])
        if self.log:
            agg = f"  aggressive ({row['inner_steps']} inner steps)" if row.get("aggressive") else ""
            print(f"epoch {run.epoch:3d}  loss {row['train_loss']:8.2f}  "
                  f"val -ELBO {row['val_neg_elbo']:8.2f}  KL {row['val_kl']:6.2f}  "
                  f"MI {row['val_mi']:5.2f}  AU {row['val_au']:3d}  ({row['seconds']:.1f} s){agg}", flush=True)
            if run.stopped:
                print(f"stopped: no better validation -ELBO for {self.patience} epochs; "
                      f"the weights of epoch {run.best_epoch} are kept", flush=True)
        if run.out is not None:
            self._save(run)

    def _early_stopping(self, run: _Run, row: dict[str, Any]) -> None:
        """Keep the weights of a new best validation -ELBO; stop after ``patience`` epochs without."""
        epoch = run.epoch + 1
        if row["val_neg_elbo"] < run.best:
            run.best, run.best_epoch = row["val_neg_elbo"], epoch
            run.best_model = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        run.stopped = epoch - run.best_epoch >= self.patience
        row["best_epoch"] = run.best_epoch

    def _save(self, run: _Run) -> None:
        ckpt = {
            "epoch": run.epoch,
            "model": run.model.state_dict(),
            "model_config": getattr(run.model, "config", {}),
            "optimizers": {name: opt.state_dict() for name, opt in run.optimizers.items()},
            "aggressive": {"on": run.aggressive_on, "prev_mi": run.prev_mi},
            "early_stopping": {"best": run.best, "best_epoch": run.best_epoch, "model": run.best_model,
                               "stopped": run.stopped} if self.patience else None,
            "trainer": self.config(),
            "history": run.history,
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None,
            "rng_data": run.gen.get_state(),
        }
        save_torch(ckpt, run.out / CHECKPOINT)
        write_csv(run.history, run.out / HISTORY)
        self._snapshot(run)

    def _snapshot(self, run: _Run) -> None:
        if run.out is not None and run.epoch in self.snapshots:
            save_torch({"epoch": run.epoch, "model": run.model.state_dict(),
                        "model_config": getattr(run.model, "config", {})}, snapshot_path(run.out, run.epoch))


@contextmanager
def _frozen_except(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Turn off ``requires_grad`` for every parameter ``optimizer`` does not update, and back on:
    an encoder-only step then skips the decoder's weight gradients (a third of its backward pass)
    while the gradient still flows through the decoder to z."""
    keep = {id(p) for g in optimizer.param_groups for p in g["params"]}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in keep]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def snapshot_path(out_dir: str | os.PathLike, epoch: int) -> Path:
    """Where ``Trainer(snapshots=...)`` keeps the weights after ``epoch`` epochs of a run."""
    return Path(out_dir) / f"snapshot-{int(epoch)}.pt"


def load_snapshot(model: VAE, out_dir: str | os.PathLike, epoch: int) -> VAE | None:
    """Load the weights a run kept after ``epoch`` epochs into ``model`` and return it (None when
    the run kept no such snapshot). Raises :class:`ResumeMismatch` when it is another model's."""
    path = snapshot_path(out_dir, epoch)
    if not path.is_file():
        return None
    snap = load_checkpoint(path, "cpu")
    diff = _differences(snap.get("model_config") or {}, getattr(model, "config", {}) or {})
    if diff:
        raise ResumeMismatch(f"{path} was written for a different model ({'; '.join(diff[:3])})")
    device = next(model.parameters()).device
    model.load_state_dict(snap["model"])
    return model.to(device)
