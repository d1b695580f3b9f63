"""Metrics of a trained VAE, all in nats.

Every function works on any ``model`` with ``encode(x) -> (mu, logvar)``, ``decode(z, x=None)
-> logits`` and ``latent_dim`` (see :mod:`vaeas.models`). Inputs ``x`` are binary images ``(N, P)``
on the model's device. Random draws use a private, seeded RNG stream (``seed``), so a metric is
reproducible and never disturbs the caller's random state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from .models import (
    bernoulli_log_likelihood,
    gaussian_log_density,
    kl_standard_normal,
    standard_normal_log_density,
)

MI_ESTIMATORS = ("minibatch", "dataset")


@contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Run a block with a fixed RNG seed, restoring the global RNG state afterwards."""
    device = torch.device(device or "cpu")
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        torch.manual_seed(seed)
        yield


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _log_px(model: Any, out: Tensor, x: Tensor) -> Tensor:
    """log p(x|z) from the decoder output: the model's own ``log_likelihood`` or Bernoulli."""
    fn = getattr(model, "log_likelihood", None)
    return fn(out, x) if fn is not None else bernoulli_log_likelihood(out, x)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


# --------------------------------------------------------------------------- ELBO
def elbo_terms(model: Any, x: Tensor, batch_size: int = 1000, seed: int = 0) -> dict[str, Tensor]:
    """Per-sample ``rec (N,)``, ``kl (N,)``, ``kl_per_dim (N, D)`` and ``neg_elbo (N,)``, nats.

    ``rec = -log p(x|z)`` for one ``z ~ q(z|x)``; the KL is closed form. ``-ELBO = rec + kl``.
    """
    out: dict[str, list[Tensor]] = {"rec": [], "kl": [], "kl_per_dim": []}
    with _eval_mode(model), seeded(seed, _device(model)):
        for s in _chunks(len(x), batch_size):
            xb = x[s]
            mu, logvar = model.encode(xb)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            out["rec"].append(-_log_px(model, model.decode(z, xb), xb))
            kpd = kl_standard_normal(mu.float(), logvar.float())
            out["kl_per_dim"].append(kpd)
            out["kl"].append(kpd.sum(-1))
    res = {k: torch.cat(v) for k, v in out.items()}
    res["neg_elbo"] = res["rec"] + res["kl"]
    return res


def code_gain(model: Any, x: Tensor, batch_size: int = 1000, seed: int = 0) -> float:
    """How much the decoder uses the code: nats per image gained by decoding ``x`` from its own code.

    ``E[log p(x | z)] - E[log p(x | z')]`` with ``z ~ q(z|x)`` and ``z' ~ q(z|x')`` for another
    image ``x'`` of the set (a fixed random pairing). A collapsed model, whose posteriors are all
    the prior, gains 0; a model whose reconstructions depend on the input gains many nats.
    """
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen).to(x.device)
    own, other = [], []
    with _eval_mode(model), seeded(seed, _device(model)):
        for s in _chunks(len(x), batch_size):
            xb = x[s]
            for src, acc in ((xb, own), (x[perm[s]], other)):
                mu, logvar = model.encode(src)
                z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
                acc.append(_log_px(model, model.decode(z, xb), xb))
    return (torch.cat(own) - torch.cat(other)).mean().item()


# --------------------------------------------------------------------------- IW-NLL
def iw_nll(model: Any, x: Tensor, k: int = 5000, max_rows: int = 50_000, seed: int = 0) -> Tensor:
    """Importance-weighted estimate of -log p(x) (Burda et al. 2016), per sample ``(N,)``, nats.

    ``-log (1/k) sum_{j=1..k} p(x|z_j) p(z_j) / q(z_j|x)`` with ``z_j ~ q(z|x)``, computed with a
    running log-sum-exp, so it is stable for any ``k``. The ``N * k`` decoder evaluations are done in
    chunks of at most ``max_rows`` rows to bound memory. In expectation it is an upper bound on
    -log p(x) that is tighter than -ELBO and non-increasing in ``k``; ``k = 1`` is -ELBO.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    out = []
    per_x = max(1, min(len(x), max_rows // k)) if k <= max_rows else 1
    kc = min(k, max_rows)
    with _eval_mode(model), seeded(seed, _device(model)):
        for s in _chunks(len(x), per_x):
            xb = x[s]
            n = len(xb)
            mu, logvar = model.encode(xb)
            std = torch.exp(0.5 * logvar)
            acc = torch.full((n,), -math.inf, device=xb.device)
            for ks in _chunks(k, kc):
                m = ks.stop - ks.start
                z = mu[:, None] + std[:, None] * torch.randn(n, m, mu.shape[1], device=mu.device)
                xr = xb[:, None].expand(n, m, xb.shape[1]).reshape(n * m, -1)
                logits = model.decode(z.reshape(n * m, -1), xr)
                log_px = _log_px(model, logits, xr).view(n, m)
                log_w = log_px + standard_normal_log_density(z) - gaussian_log_density(
                    z, mu[:, None], logvar[:, None])
                acc = torch.logaddexp(acc, torch.logsumexp(log_w.float(), dim=1))
            out.append(-(acc - math.log(k)))
    return torch.cat(out)


# --------------------------------------------------------------------------- MI
def _log_q_matrix(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``M[i, j] = log q(z_i | x_j)`` for ``z (n, D)`` and posteriors ``mu, logvar (m, D)``: ``(n, m)``.

    Expanded into matrix products so memory is ``O(n m)``, not ``O(n m D)``; computed in float64
    (the expansion cancels badly in float32 when posteriors are sharp), except on MPS.
    """
    if z.device.type != "mps":
        z, mu, logvar = z.double(), mu.double(), logvar.double()
    prec = torch.exp(-logvar)  # (m, D)
    quad = (z.pow(2) @ prec.T) - 2 * (z @ (mu * prec).T) + (mu.pow(2) * prec).sum(-1)
    const = -0.5 * (mu.shape[1] * math.log(2 * math.pi) + logvar.sum(-1))
    return (const[None, :] - 0.5 * quad).float()


def _posteriors(model: Any, x: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    mus, logvars = [], []
    for s in _chunks(len(x), batch_size):
        mu, logvar = model.encode(x[s])
        mus.append(mu.float())
        logvars.append(logvar.float())
    return torch.cat(mus), torch.cat(logvars)


def mutual_information(model: Any, x: Tensor, estimator: str = "dataset", batch_size: int = 128,
                       seed: int = 0, chunk: int = 1024) -> float:
    """Estimate ``I_q(x; z) = E_x E_q(z|x)[log q(z|x) - log q(z)]`` under ``q(x, z) = p_data(x) q(z|x)``.

    One ``z_i ~ q(z|x_i)`` is drawn per point and the aggregate posterior ``q(z)`` is replaced by a
    mixture of posteriors:

    * ``"minibatch"`` -- the estimator of He et al. (2019): the data are cut into consecutive
      batches of ``batch_size = B`` and ``q(z_i) ~ (1/B) sum_{j in batch} q(z_i|x_j)``. Since the sum
      contains the ``j = i`` term, each estimate is **at most log B** (4.85 nats for B = 128);
      He et al. use the analytic entropy for the first term, we use the same sample ``z_i``
      (identical expectation), which makes the cap exact.
    * ``"dataset"`` -- the mixture runs over all ``N`` evaluated points, so the estimate is at most
      **log N** (9.21 nats for N = 10,000) and much less biased for informative codes.

    Returns nats. Both are consistent as ``B, N -> inf``; both under-estimate large MI.
    """
    if estimator not in MI_ESTIMATORS:
        raise ValueError(f"unknown MI estimator {estimator!r}; choose minibatch or dataset")
    with _eval_mode(model), seeded(seed, _device(model)):
        mu, logvar = _posteriors(model, x, 1000)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        log_qzx = gaussian_log_density(z, mu, logvar)  # (N,)
        log_qzx = log_qzx.float()
        if estimator == "minibatch":
            total = 0.0
            for s in _chunks(len(x), batch_size):
                m = _log_q_matrix(z[s], mu[s], logvar[s])
                log_qz = torch.logsumexp(m, dim=1) - math.log(s.stop - s.start)
                total += (log_qzx[s] - log_qz).sum().item()
            return total / len(x)
        log_qz = torch.cat([torch.logsumexp(_log_q_matrix(z[s], mu, logvar), dim=1)
                            for s in _chunks(len(x), chunk)]) - math.log(len(x))
        return (log_qzx - log_qz).mean().item()


# --------------------------------------------------------------------------- active units
def posterior_mean_variance(model: Any, x: Tensor, batch_size: int = 1000) -> Tensor:
    """``Var_x[E_q(z|x) z_d]`` for every latent dimension: ``(D,)`` (unbiased variance over x)."""
    with _eval_mode(model):
        mu, _ = _posteriors(model, x, batch_size)
    return mu.var(dim=0)


def active_units(model: Any, x: Tensor, delta: float = 0.01, batch_size: int = 1000) -> int:
    """Number of active units (Burda et al. 2016): dimensions with ``Var_x[E_q(z|x) z_d] >= delta``."""
    return int((posterior_mean_variance(model, x, batch_size) >= delta).sum().item())


# --------------------------------------------------------------------------- probe
def linear_probe(model: Any, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                 steps: int = 100, weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Test accuracy (in [0, 1]) of a logistic regression from ``mu(x)`` to the label.

    Features are standardised with the training statistics; the classifier is fitted full-batch
    with L-BFGS (``steps`` iterations, L2 penalty ``weight_decay``) on the training points.
    """
    with _eval_mode(model):
        f_train, _ = _posteriors(model, x_train, 1000)
        f_test, _ = _posteriors(model, x_test, 1000)
    mean, std = f_train.mean(0), f_train.std(0).clamp_min(1e-6)
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    classes = int(max(y_train.max().item(), y_test.max().item())) + 1
    with seeded(seed, f_train.device):
        lin = torch.nn.Linear(f_train.shape[1], classes).to(f_train.device)
    with torch.enable_grad():
        opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(lin(f_train), y_train)
            loss = loss + weight_decay * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    with torch.no_grad():
        return (lin(f_test).argmax(1) == y_test).float().mean().item()


# --------------------------------------------------------------------------- classifier bound
def classifier_bound(model: Any, x: Tensor, c: Tensor, batch_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """VAE-AS's bound ``I(x; z) >= H(c) - E[-log r(c|z)]`` on the points ``x`` with targets ``c``.

    Returns ``ce`` (mean cross-entropy, nats), ``target_entropy`` ``H(c)`` and ``mi_bound``.
    """
    ces = []
    with _eval_mode(model), seeded(seed, _device(model)):
        for s in _chunks(len(x), batch_size):
            mu, logvar = model.encode(x[s])
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            ces.append(model.classifier.nll(z, c[s]))
    ce = torch.cat(ces).mean().item()
    h = float(model.target_entropy)
    return {"ce": ce, "target_entropy": h, "mi_bound": h - ce}


# --------------------------------------------------------------------------- bundle
def evaluate(model: Any, data: Any, k: int = 5000, iw_size: int | None = None, mi_batch: int = 128,
             delta: float = 0.01, probe: bool = True, probe_size: int = 10_000, seed: int = 0,
             split: str = "test") -> dict[str, Any]:
    """Every metric of the book on one split of a :class:`vaeas.data.Dataset`, as a JSON-able dict.

    ``-ELBO``, ``rec``, ``kl`` (and ``kl_per_dim``) and both MI estimators and active units use the
    whole split; ``iw_nll`` uses the first ``iw_size`` points (all by default) with ``k`` importance
    samples, and ``neg_elbo_iw`` is the ``-ELBO`` of those same points (so ``iw_nll <= neg_elbo_iw``
    up to Monte Carlo noise, while ``neg_elbo`` may differ when the subset is not representative);
    the probe is trained on the first ``probe_size`` training points (binarised with a fixed seed)
    and scored on the split. The settings (k, B, delta, sizes, seed) are recorded in the result next
    to the numbers, and each block's wall time in ``seconds``.
    """
    from .data import binarize_fixed

    part = getattr(data, split)
    x = part.x if part.binarized else binarize_fixed(part.x, seed)
    res: dict[str, Any] = {"split": split, "n": len(x), "seed": seed}
    t = time.perf_counter()
    terms = elbo_terms(model, x, seed=seed)
    res.update(neg_elbo=terms["neg_elbo"].mean().item(), rec=terms["rec"].mean().item(),
               kl=terms["kl"].mean().item(), kl_per_dim=terms["kl_per_dim"].mean(0).tolist())
    res["code_gain"] = code_gain(model, x, seed=seed)
    res["seconds_elbo"] = time.perf_counter() - t

    t = time.perf_counter()
    res["mi_minibatch"] = mutual_information(model, x, "minibatch", batch_size=mi_batch, seed=seed)
    res["mi_batch_size"] = mi_batch
    sizes = [min(mi_batch, len(x) - s) for s in range(0, len(x), mi_batch)]
    res["mi_minibatch_cap"] = sum(n * math.log(n) for n in sizes) / len(x)
    res["mi_dataset"] = mutual_information(model, x, "dataset", seed=seed)
    res["mi_dataset_cap"] = math.log(len(x))
    var = posterior_mean_variance(model, x)
    res["au"] = int((var >= delta).sum().item())
    res["au_delta"] = delta
    res["au_variance"] = var.tolist()
    res["seconds_mi_au"] = time.perf_counter() - t

    if hasattr(model, "classifier"):
        if model.target == "label":
            res.update(classifier_bound(model, x, part.y, seed=seed))
            res["bound_split"] = split
        else:  # instance targets exist only for training images
            tr = data.train
            n = min(len(tr), probe_size)
            res.update(classifier_bound(model, binarize_fixed(tr.x[:n], seed), tr.index[:n], seed=seed))
            res["bound_split"] = f"train[:{n}]"

    if probe:
        t = time.perf_counter()
        n = min(len(data.train), probe_size)
        xtr = binarize_fixed(data.train.x[:n], seed)
        res["probe_acc"] = linear_probe(model, xtr, data.train.y[:n], x, part.y, seed=seed)
        res["probe_train_size"] = n
        res["seconds_probe"] = time.perf_counter() - t

    if k > 0:
        t = time.perf_counter()
        n = len(x) if iw_size is None else min(iw_size, len(x))
        res["iw_nll"] = iw_nll(model, x[:n], k=k, seed=seed).mean().item()
        res["neg_elbo_iw"] = terms["neg_elbo"][:n].mean().item()  # -ELBO on the same images
        res["iw_k"] = k
        res["iw_n"] = n
        res["seconds_iw"] = time.perf_counter() - t
    return res
