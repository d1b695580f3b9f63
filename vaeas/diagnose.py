"""A posterior-collapse diagnosis for any model with ``encode``, ``decode`` and ``latent_dim``.

>>> d = diagnose(model, data)          # a Dataset (its test split), a Split, or a tensor x
>>> print(d.summary()); d.figure()     # the report in nats, and KL / Var[mu] per dimension

Only the :class:`vaeas.metrics.LatentVariableModel` protocol is used, so a user's own PyTorch VAE
works as it is (``encode(x) -> (mu, logvar)`` of a diagonal Gaussian, ``decode(z, x=None)`` -> Bernoulli
logits or anything its ``log_likelihood(out, x)`` reads). Like the metrics, it draws only from
private generators seeded with ``seed``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from . import metrics

__all__ = ["SATURATION", "TOTAL_GAIN", "TOTAL_MI", "WEAK_MI", "Diagnosis", "diagnose"]

TOTAL_MI = 0.1  # nats: below this (with no active unit) the code says nothing about x
TOTAL_GAIN = 0.5  # nats per input: below this the decoder does not use the code
SATURATION = 0.9  # fraction of the dataset-MI cap log n: "as much as the estimator can certify"
WEAK_MI = 1.0  # nats: a code weaker than one nat is collapse-like even with every dimension active


@dataclass
class Diagnosis:
    """The result of :func:`diagnose`; every quantity in nats (per input), settings alongside."""

    verdict: str
    reason: str
    thresholds: dict[str, float]
    n: int
    latent_dim: int
    kl_total: float
    kl_per_dim: list[float]
    posterior_mean_variance: list[float]
    active_units: int
    delta: float
    mi_dataset: float
    mi_dataset_cap: float
    mi_minibatch: float
    mi_minibatch_cap: float
    mi_batch_size: int
    code_gain: float
    seed: int
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return asdict(self)

    def summary(self) -> str:
        """A short multi-line report: the measurements, the verdict and the thresholds behind it."""
        t = self.thresholds
        lines = [
            f"Posterior-collapse diagnosis ({self.n:,} inputs, seed {self.seed}; nats per input)",
            f"  rate (total KL)          {self.kl_total:9.3f}   largest dimension {max(self.kl_per_dim):.3f}",
            f"  active units             {self.active_units:>5d} / {self.latent_dim}"
            f"   (Var_x E[z_d|x] >= delta = {self.delta:g})",
            f"  MI, dataset estimator    {self.mi_dataset:9.3f}   (cap log n = {self.mi_dataset_cap:.3f})",
            f"  MI, minibatch estimator  {self.mi_minibatch:9.3f}   (cap {self.mi_minibatch_cap:.3f},"
            f" shuffled batches of B = {self.mi_batch_size})",
            f"  code gain                {self.code_gain:9.3f}   (log p(x|z(x)) - log p(x|z(x')))",
            f"verdict: {self.verdict} -- {self.reason}",
            f"thresholds: total collapse if (dataset MI < {t['total_mi']:g} and AU = 0) or code gain"
            f" < {t['total_gain']:g};",
            f"  no collapse if dataset MI >= {t['saturation']:g} x log n, or AU = D and dataset MI >="
            f" {t['weak_mi']:g}; partial collapse otherwise",
        ]
        return "\n".join(lines)

    def figure(self) -> Any:
        """A matplotlib Figure (7 x 2.8 in, fonts >= 10 pt): KL per dimension and ``Var_x[mu_d]``.

        Dimensions are sorted by KL (the same order in both panels); inactive ones (variance below
        ``delta``, the dashed line) are grey.
        """
        from matplotlib.figure import Figure

        kl = torch.tensor(self.kl_per_dim)
        var = torch.tensor(self.posterior_mean_variance)
        order = torch.argsort(kl, descending=True)
        active = (var[order] >= self.delta).tolist()
        colors = ["#1f77b4" if a else "#9e9e9e" for a in active]
        pos = list(range(1, len(order) + 1))
        fig = Figure(figsize=(7.0, 2.8), layout="constrained")
        ax_kl, ax_var = fig.subplots(1, 2)
        ax_kl.bar(pos, kl[order].tolist(), color=colors)
        ax_kl.set_ylabel("KL (nats)", fontsize=10)
        ax_kl.set_title(f"KL per dimension (total {self.kl_total:.2f})", fontsize=11)
        floor = max(self.delta * 1e-3, 1e-8)
        ax_var.bar(pos, var[order].clamp_min(floor).tolist(), color=colors)
        ax_var.set_yscale("log")
        ax_var.axhline(self.delta, color="#d62728", linestyle="--")
        ax_var.set_ylabel("Var$_x$ E[$z_d$|x]", fontsize=10)
        ax_var.set_title(f"AU {self.active_units} / {self.latent_dim} (dashed: $\\delta$ = {self.delta:g})",
                         fontsize=11)
        for ax in (ax_kl, ax_var):
            ax.set_xlabel("dimension (sorted by KL)", fontsize=10)
            ax.tick_params(labelsize=10)
        fig.suptitle(self.verdict, fontsize=11)
        return fig


def _inputs(model: Any, data_or_x: Any, n: int | None, seed: int) -> Tensor:
    """The evaluated inputs: a tensor as given, a split's fixed bits, or a dataset's test split."""
    if not isinstance(model, metrics.LatentVariableModel):
        raise TypeError("diagnose needs a model with encode(x) -> (mu, logvar), decode(z, x=None) "
                        f"and latent_dim; got {type(model).__name__}")
    part = getattr(data_or_x, "test", data_or_x)
    if isinstance(part, Tensor):
        x = part
    elif hasattr(part, "x"):
        x = part.fixed_x(seed) if hasattr(part, "fixed_x") else part.x
    else:
        raise TypeError("data_or_x must be a tensor x, a split (with .x) or a dataset (with .test); "
                        f"got {type(data_or_x).__name__}")
    if len(x) < 2:
        raise ValueError("diagnose needs at least 2 inputs")
    idx = metrics.subset_indices(len(x), n, seed).to(x.device)
    return x[idx].to(metrics._device(model))


def _verdict(d: dict[str, Any]) -> tuple[str, str]:
    """(verdict, one-line reason) from the measurements, by the module's thresholds."""
    mi, cap, au, dim, gain = d["mi_dataset"], d["mi_dataset_cap"], d["active_units"], d["latent_dim"], d["code_gain"]
    inactive = dim - au
    if mi < TOTAL_MI and au == 0:
        return "total collapse", (f"dataset MI {mi:.3f} < {TOTAL_MI:g} nats and no active unit: "
                                  f"q(z|x) is the same for every x (code gain {gain:.2f} nats)")
    if gain < TOTAL_GAIN:
        return "total collapse", (f"code gain {gain:.2f} < {TOTAL_GAIN:g} nats: the decoder ignores the "
                                  f"code, although dataset MI is {mi:.2f} nats")
    if mi >= SATURATION * cap:
        pruned = (f"; {inactive} of {dim} dimensions inactive: capacity the KL term pruned, not collapse"
                  if inactive else "")
        return "no collapse", (f"dataset MI {mi:.2f} nats is at least {SATURATION:g} x its cap "
                               f"log n = {cap:.2f} (the code carries all the estimator can certify){pruned}")
    if au == dim and mi >= WEAK_MI:
        return "no collapse", f"every dimension active and dataset MI {mi:.2f} nats >= {WEAK_MI:g}"
    if inactive:
        return "partial collapse", (f"{inactive} of {dim} dimensions collapsed to the prior while dataset MI "
                                    f"{mi:.2f} nats is below {SATURATION:g} x its cap {cap:.2f}")
    return "partial collapse", f"dataset MI {mi:.2f} nats < {WEAK_MI:g}: every dimension active but the code is weak"


def diagnose(model: Any, data_or_x: Any, n: int | None = None, seed: int = 0, mi_batch: int = 128,
             delta: float = 0.01, progress: bool = False) -> Diagnosis:
    """Is this VAE's posterior collapsed? Measurements, a verdict and the thresholds behind it.

    ``data_or_x``: a dataset (its ``test`` split is used), a split (``fixed_x(seed)`` when it has
    one, else ``x``) or a tensor ``x (N, ...)``; ``n`` evaluates a random seeded subset of that size
    (all by default). Measured on those inputs, in nats per input: the rate and KL per dimension,
    active units (``Var_x E[z_d|x] >= delta``), the dataset MI estimator (cap ``log n``), the
    minibatch one (shuffled batches of ``mi_batch``, cap ``log B``) and the code gain
    (:func:`vaeas.metrics.code_gain`: how much better ``x`` is decoded from its own code than from
    another input's).

    Verdict (module constants; stated in :meth:`Diagnosis.summary` and ``.thresholds``):

    * **total collapse** -- code gain < ``TOTAL_GAIN`` = 0.5 nats (the decoder ignores ``z``,
      whatever the encoder does), or dataset MI < ``TOTAL_MI`` = 0.1 nats with no active unit
      (``q(z|x)`` does not depend on ``x``). The rate is reported but is not a criterion: a
      posterior that is the same for every ``x`` but not the prior has KL > 0 and carries nothing.
    * **no collapse** -- dataset MI >= ``SATURATION`` = 0.9 x ``log n``: the code carries as much
      information as the estimator can certify, so no information is demonstrably missing; or every
      dimension is active and the MI is at least ``WEAK_MI`` = 1 nat. Inactive dimensions alone are
      *not* collapse: with a KL term, a Gaussian VAE switches off the dimensions its decoder does
      not need, and Lucas et al. (2019) show that in the linear VAE (probabilistic PCA) exactly the
      dimensions whose data variance is below the noise level collapse at the maximum of the true
      likelihood itself. So an MLP VAE on MNIST with 21 of 32 active units and MI at its cap reads
      "no collapse", with the inactive count reported as pruned capacity.
    * **partial collapse** -- otherwise: the code is used but carries clearly less than the
      estimator could certify while some dimensions sit at the prior (the text-VAE pattern of a
      few nats in one or two of 32 dimensions), or every dimension is active and the code carries
      under one nat.

    The dataset MI, not the minibatch one, decides: its cap ``log n`` (9.2 nats for 10,000 inputs)
    is far above ``log B`` (4.85 for B = 128), which any usable image code reaches. Use ``n`` of at
    least a few thousand: with few inputs ``log n`` is small and saturation is easy.
    """
    start = time.perf_counter()
    x = _inputs(model, data_or_x, n, seed)
    terms = metrics.elbo_terms(model, x, seed=seed)
    kl_per_dim = terms["kl_per_dim"].mean(0)
    var = metrics.posterior_mean_variance(model, x)
    d: dict[str, Any] = dict(
        n=len(x), latent_dim=len(kl_per_dim), kl_total=kl_per_dim.sum().item(),
        kl_per_dim=kl_per_dim.tolist(), posterior_mean_variance=var.tolist(),
        active_units=int((var >= delta).sum().item()), delta=delta,
        mi_dataset=metrics.mutual_information(model, x, "dataset", seed=seed, progress=progress),
        mi_dataset_cap=math.log(len(x)),
        mi_minibatch=metrics.mutual_information(model, x, "minibatch", batch_size=mi_batch, seed=seed,
                                                progress=progress),
        mi_minibatch_cap=metrics.minibatch_mi_cap(len(x), mi_batch), mi_batch_size=mi_batch,
        code_gain=metrics.code_gain(model, x, seed=seed), seed=seed)
    verdict, reason = _verdict(d)
    thresholds = {"total_mi": TOTAL_MI, "total_gain": TOTAL_GAIN, "saturation": SATURATION,
                  "weak_mi": WEAK_MI, "delta": delta}
    return Diagnosis(verdict=verdict, reason=reason, thresholds=thresholds,
                     seconds=time.perf_counter() - start, **d)
