"""Training objectives: KL-weight schedules and free bits, the baselines VAE-AS is compared with.

A schedule is a callable ``step -> weight`` (``step`` counts optimiser updates from 0). The
training loss for a batch is :func:`total_loss`::

    mean_b rec_b  +  w(step) * KL_term  +  mean_b aux_b

with ``KL_term = mean_b KL_b`` or, with free bits, ``sum_d max(lambda, mean_b KL_bd)``; ``aux`` is
the auxiliary term of VAE-AS (``lam * ce``) when the model has one. Everything is in nats.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

SCHEDULES = ("constant", "linear", "cyclical")


@dataclass(frozen=True)
class Constant:
    """``w(step) = value``: the VAE (``value=1``) or a beta-VAE (Higgins et al. 2017)."""

    value: float = 1.0

    def __call__(self, step: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class LinearWarmup:
    """Linear KL annealing (Bowman et al. 2016): ``start -> end`` over ``steps`` updates, then ``end``."""

    steps: int
    start: float = 0.0
    end: float = 1.0

    def __call__(self, step: int) -> float:
        if self.steps <= 0:
            return float(self.end)
        t = min(max(step, 0) / self.steps, 1.0)
        return float(self.start + t * (self.end - self.start))


@dataclass(frozen=True)
class Cyclical:
    """Cyclical annealing (Fu et al. 2019).

    Training is cut into ``cycles`` equal cycles of ``total_steps / cycles`` updates; within each,
    the weight rises linearly from ``start`` to ``end`` over the first fraction ``ratio`` of the
    cycle and then stays at ``end``.
    """

    total_steps: int
    cycles: int = 4
    ratio: float = 0.5
    start: float = 0.0
    end: float = 1.0

    def __call__(self, step: int) -> float:
        period = self.total_steps / self.cycles
        tau = (max(step, 0) % period) / period
        if tau >= self.ratio:
            return float(self.end)
        return float(self.start + (tau / self.ratio) * (self.end - self.start))


Schedule = Constant | LinearWarmup | Cyclical


def make_schedule(kind: str = "constant", beta: float = 1.0, total_steps: int = 1,
                  warmup_steps: int = 0, cycles: int = 4, ratio: float = 0.5) -> Schedule:
    """Build a KL-weight schedule by name; ``beta`` is the final (or constant) weight."""
    if beta < 0:
        raise ValueError("beta must be >= 0")
    if kind == "constant":
        return Constant(beta)
    if kind == "linear":
        if warmup_steps < 0:
            raise ValueError("warmup steps must be >= 0")
        return LinearWarmup(warmup_steps, 0.0, beta)
    if kind == "cyclical":
        if cycles < 1 or not 0 < ratio <= 1:
            raise ValueError("cyclical annealing needs cycles >= 1 and 0 < ratio <= 1")
        return Cyclical(max(total_steps, 1), cycles, ratio, 0.0, beta)
    raise ValueError(f"unknown KL schedule {kind!r}; choose from {', '.join(SCHEDULES)}")


def schedule_to_dict(schedule: Schedule) -> dict:
    """A JSON-able description of a schedule (for ``config.json``)."""
    return {"kind": type(schedule).__name__, **asdict(schedule)}


def free_bits_kl(kl_per_dim: Tensor, free_bits: float) -> Tensor:
    """Free-bits KL term (Kingma et al. 2016): ``sum_d max(lambda, mean_b KL_bd)``, a scalar in nats.

    ``kl_per_dim`` is ``(B, D)``; ``free_bits`` is ``lambda`` in nats per latent dimension. Below the
    floor a dimension's KL receives no gradient, so the optimiser has no incentive to shut it down.
    """
    return torch.clamp(kl_per_dim.mean(0), min=free_bits).sum()


def total_loss(parts: dict[str, Tensor], kl_weight: float = 1.0, free_bits: float = 0.0) -> Tensor:
    """The scalar training loss of a batch from a model's per-sample ``parts`` (see module doc)."""
    if free_bits > 0:
        kl_term = free_bits_kl(parts["kl_per_dim"], free_bits)
    else:
        kl_term = parts["kl"].mean()
    loss = parts["rec"].mean() + kl_weight * kl_term
    if "aux" in parts:
        loss = loss + parts["aux"].mean()
    return loss
