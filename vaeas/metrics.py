"""Metrics of a trained latent-variable model, all in nats.

Every function reads only the :class:`LatentVariableModel` protocol (``encode``, ``decode``,
``latent_dim``; optionally ``log_likelihood`` and ``count_tokens``), so it works on the package's
models and on a user's own PyTorch VAE alike; this module imports neither :mod:`vaeas.models` nor
:mod:`vaeas.data`. Inputs ``x`` are binary images ``(N, P)`` or token ids ``(N, T)`` on the model's
device.

Randomness. Every metric draws from its own :class:`torch.Generator` seeded with ``seed`` and never
touches the global RNG: the noise comes from :func:`make_generator` ``(seed, device)`` on the model's
device (so the codes of :func:`mutual_information` are exactly
``reparameterize(mu, logvar, make_generator(seed, mu.device))``), and index draws (subsets,
pairings, shuffles) from CPU generators derived from ``seed`` (:func:`subset_indices`), so the same
images are chosen on every device.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from .distributions import (
    bernoulli_log_likelihood,
    gaussian_log_density,
    kl_standard_normal,
    log_q_matrix,
    reparameterize,
    standard_normal_log_density,
)

__all__ = [
    "MI_ESTIMATORS", "LatentVariableModel", "active_units", "classifier_bound", "code_gain",
    "elbo_terms", "evaluate", "iw_nll", "latent_r2", "linear_probe", "make_generator",
    "minibatch_mi_cap", "mutual_information", "posterior_mean_variance", "subset_indices",
]

MI_ESTIMATORS = ("minibatch", "dataset")
IW_MAX_ELEMENTS = 50_000 * 784  # decoder outputs held at once by iw_nll (about 157 MB in float32)


@runtime_checkable
class LatentVariableModel(Protocol):
    """What the metrics need of a model: a diagonal-Gaussian encoder and a decoder.

    * ``latent_dim: int`` -- the number of latent dimensions ``D``.
    * ``encode(x) -> (mu, logvar)`` -- ``q(z|x) = N(mu, diag(exp(logvar)))``, both ``(B, D)``.
    * ``decode(z, x=None) -> out`` -- the decoder's output for codes ``z (B, D)``; ``x`` is passed
      for autoregressive decoders (teacher forcing) and may be ignored.

    Optional methods, used when present:

    * ``log_likelihood(out, x) -> (B,)`` -- ``log p(x|z)`` from the decoder output; without it
      ``out`` are Bernoulli logits (:func:`vaeas.distributions.bernoulli_log_likelihood`).
    * ``count_tokens(x) -> (B,)`` -- tokens scored per sequence (sequence models): enables
      perplexities in :func:`evaluate`.
    * ``aux_ce(z, mu, logvar, c) -> (B,)`` and ``aux_entropy(batch_size) -> float`` -- VAE-AS's
      auxiliary classifier (:func:`classifier_bound`).
    * ``parameters()`` (an ``nn.Module``) -- its device is where the noise is drawn; ``train()`` /
      ``eval()`` -- the metrics run in eval mode and restore training mode.
    """

    latent_dim: int

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor: ...


# --------------------------------------------------------------------------- plumbing
def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The private noise stream of a metric: a ``torch.Generator`` on ``device`` seeded with ``seed``."""
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def _index_generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for index draws, seeded from ``(seed, stream)`` (independent of the noise)."""
    digest = hashlib.sha256(f"vaeas:{int(seed)}:{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def subset_indices(n_total: int, n: int | None, seed: int, labels: Tensor | None = None) -> Tensor:
    """``min(n, n_total)`` distinct random indices into ``range(n_total)`` (CPU int64, sorted).

    With ``labels (n_total,)`` the subset is stratified: one random member of every class present
    comes first (when ``n`` is at least the number of classes), the rest are drawn at random from
    the remaining points. ``n=None`` returns every index. Depends only on ``(n_total, n, seed,
    labels)``, never on the device or the global RNG.
    """
    n = n_total if n is None else max(0, min(int(n), n_total))
    gen = _index_generator(seed, "subset")
    perm = torch.randperm(n_total, generator=gen)
    if labels is None or n == n_total:
        return perm[:n].sort().values
    y = labels.detach().cpu()[perm]
    order = torch.sort(y, stable=True).indices  # positions in perm, grouped by class, random within
    first = torch.ones(n_total, dtype=torch.bool)
    first[1:] = y[order][1:] != y[order][:-1]
    is_first = torch.zeros(n_total, dtype=torch.bool)
    is_first[order[first]] = True
    chosen = torch.cat([perm[is_first], perm[~is_first]])[:n]  # perm order: random among firsts
    return chosen.sort().values


def minibatch_mi_cap(n: int, batch_size: int) -> float:
    """The exact ceiling of the minibatch MI estimator on ``n`` points: ``sum_b n_b log n_b / n``."""
    sizes = [min(batch_size, n - s) for s in range(0, n, batch_size)]
    return sum(m * math.log(m) for m in sizes) / n


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


def _bar(progress: bool, total: int, desc: str) -> Any:
    """A tqdm bar (``tqdm.auto``: terminal or notebook) when ``progress``, else a silent stand-in."""
    if progress:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, leave=False)
    return _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


# --------------------------------------------------------------------------- ELBO
def elbo_terms(model: Any, x: Tensor, batch_size: int = 1000, seed: int = 0) -> dict[str, Tensor]:
    """Per-sample ``rec (N,)``, ``kl (N,)``, ``kl_per_dim (N, D)`` and ``neg_elbo (N,)``, nats.

    ``rec = -log p(x|z)`` for one ``z ~ q(z|x)``; the KL is closed form. ``-ELBO = rec + kl``.
    """
    out: dict[str, list[Tensor]] = {"rec": [], "kl": [], "kl_per_dim": []}
    gen = make_generator(seed, _device(model))
    with _eval_mode(model):
        for s in _chunks(len(x), batch_size):
            xb = x[s]
            mu, logvar = model.encode(xb)
            z = reparameterize(mu, logvar, gen)
            out["rec"].append(-_log_px(model, model.decode(z, xb), xb))
            kpd = kl_standard_normal(mu.float(), logvar.float())
            out["kl_per_dim"].append(kpd)
            out["kl"].append(kpd.sum(-1))
    res = {k: torch.cat(v) for k, v in out.items()}
    res["neg_elbo"] = res["rec"] + res["kl"]
    return res


def code_gain(model: Any, x: Tensor, batch_size: int = 1000, seed: int = 0) -> float:
    """How much the decoder uses the code: nats per input gained by decoding ``x`` from its own code.

    ``E[log p(x | z)] - E[log p(x | z')]`` with ``z ~ q(z|x)`` and ``z' ~ q(z|x')`` for another
    input ``x'`` of the set (a fixed random pairing). Both codes use the same noise ``eps`` (common
    random numbers), so a model whose posterior does not depend on ``x`` gains exactly 0, not 0 up
    to Monte Carlo noise; a model whose reconstructions depend on the input gains many nats.
    """
    perm = torch.randperm(len(x), generator=_index_generator(seed, "pairing")).to(x.device)
    gen = make_generator(seed, _device(model))
    own, other = [], []
    with _eval_mode(model):
        for s in _chunks(len(x), batch_size):
            xb = x[s]
            state = gen.get_state()
            for src, acc in ((xb, own), (x[perm[s]], other)):
                gen.set_state(state)  # the same eps for z and z'
                mu, logvar = model.encode(src)
                acc.append(_log_px(model, model.decode(reparameterize(mu, logvar, gen), xb), xb))
    return (torch.cat(own) - torch.cat(other)).mean().item()


# --------------------------------------------------------------------------- IW-NLL
def _rows_per_call(model: Any, x: Tensor, max_rows: int) -> int:
    """Decoder rows per call: ``max_rows``, fewer when one row's output is larger than an image's."""
    mu, _ = model.encode(x[:1])
    per_row = model.decode(mu, x[:1]).numel()
    return max(1, min(max_rows, IW_MAX_ELEMENTS // max(per_row, 1)))


def iw_nll(model: Any, x: Tensor, k: int = 5000, max_rows: int = 4096, seed: int = 0,
           progress: bool = False) -> Tensor:
    """Importance-weighted estimate of -log p(x) (Burda et al. 2016), per sample ``(N,)``, nats.

    ``-log (1/k) sum_{j=1..k} p(x|z_j) p(z_j) / q(z_j|x)`` with ``z_j ~ q(z|x)``, computed with a
    running log-sum-exp, so it is stable for any ``k``. The ``N * k`` decoder evaluations are done in
    chunks of at most ``max_rows`` rows (fewer when the decoder's output per row exceeds an image's
    784 values, e.g. token logits) to bound memory. In expectation it is an upper bound on -log p(x)
    that is tighter than -ELBO and non-increasing in ``k``; ``k = 1`` is -ELBO. ``progress`` shows a
    bar "IW-NLL k=... n=..." over the inputs. A model without a code (``D = 0``) has all ``k``
    weights equal to ``p(x)``: one sample gives the exact -log p(x), and only one is drawn.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    if len(x) and model.encode(x[:1])[0].shape[1] == 0:
        k = 1
    out = [torch.zeros(0, device=x.device)]
    gen = make_generator(seed, _device(model))
    with _eval_mode(model), _bar(progress, len(x), f"IW-NLL k={k} n={len(x)}") as bar:
        rows = _rows_per_call(model, x, max_rows) if len(x) else 1
        per_x = max(1, rows // k) if k <= rows else 1
        kc = min(k, rows)
        for s in _chunks(len(x), per_x):
            xb = x[s]
            n = len(xb)
            mu, logvar = model.encode(xb)
            acc = torch.full((n,), -math.inf, device=xb.device)
            for ks in _chunks(k, kc):
                m = ks.stop - ks.start
                z = reparameterize(mu[:, None].expand(n, m, -1), logvar[:, None].expand(n, m, -1), gen)
                xr = xb[:, None].expand(n, m, *xb.shape[1:]).reshape(n * m, *xb.shape[1:])
                log_px = _log_px(model, model.decode(z.reshape(n * m, -1), xr), xr).view(n, m)
                log_w = log_px + standard_normal_log_density(z) - gaussian_log_density(
                    z, mu[:, None], logvar[:, None])
                acc = torch.logaddexp(acc, torch.logsumexp(log_w.float(), dim=1))
            out.append(-(acc - math.log(k)))
            bar.update(n)
    return torch.cat(out)


# --------------------------------------------------------------------------- MI
def _posteriors(model: Any, x: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    mus, logvars = [], []
    for s in _chunks(len(x), batch_size):
        mu, logvar = model.encode(x[s])
        mus.append(mu.float())
        logvars.append(logvar.float())
    return torch.cat(mus), torch.cat(logvars)


def mutual_information(model: Any, x: Tensor, estimator: str = "dataset", batch_size: int = 128,
                       seed: int = 0, chunk: int = 1024, shuffle: bool = True,
                       progress: bool = False) -> float:
    """Estimate ``I_q(x; z) = E_x E_q(z|x)[log q(z|x) - log q(z)]`` under ``q(x, z) = p_data(x) q(z|x)``.

    One ``z_i ~ q(z|x_i)`` is drawn per point and the aggregate posterior ``q(z)`` is replaced by a
    mixture of posteriors:

    * ``"minibatch"`` -- the estimator of He et al. (2019): the data are cut into batches of
      ``batch_size = B`` (after a seeded random permutation when ``shuffle``, so that an ordered
      file does not put similar points together; consecutive points otherwise) and
      ``q(z_i) ~ (1/B) sum_{j in batch} q(z_i|x_j)``. Since the sum contains the ``j = i`` term,
      each estimate is **at most log B** (4.85 nats for B = 128; :func:`minibatch_mi_cap` gives the
      exact cap with a smaller last batch). He et al. use the analytic entropy for the first term,
      we use the same sample ``z_i`` (identical expectation), which makes the cap exact.
    * ``"dataset"`` -- the mixture runs over all ``N`` evaluated points, so the estimate is at most
      **log N** (9.21 nats for N = 10,000) and much less biased for informative codes.

    Returns nats. Both are consistent as ``B, N -> inf``; both under-estimate large MI.
    """
    if estimator not in MI_ESTIMATORS:
        raise ValueError(f"unknown MI estimator {estimator!r}; choose minibatch or dataset")
    n = len(x)
    with _eval_mode(model):
        mu, logvar = _posteriors(model, x, 1000)
        z = reparameterize(mu, logvar, make_generator(seed, mu.device))
        log_qzx = gaussian_log_density(z, mu, logvar).float()  # (N,)
        if estimator == "minibatch":
            order = (torch.randperm(n, generator=_index_generator(seed, "shuffle")).to(mu.device)
                     if shuffle else torch.arange(n, device=mu.device))
            total = 0.0
            with _bar(progress, n, f"MI minibatch B={batch_size} n={n}") as bar:
                for s in _chunks(n, batch_size):
                    i = order[s]
                    m = log_q_matrix(z[i], mu[i], logvar[i])
                    log_qz = torch.logsumexp(m, dim=1) - math.log(len(i))
                    total += (log_qzx[i] - log_qz).sum().item()
                    bar.update(len(i))
            return total / n
        parts = []
        with _bar(progress, n, f"MI dataset n={n}") as bar:
            for s in _chunks(n, chunk):
                parts.append(torch.logsumexp(log_q_matrix(z[s], mu, logvar), dim=1))
                bar.update(s.stop - s.start)
        log_qz = torch.cat(parts) - math.log(n)
        return (log_qzx - log_qz).mean().item()


# --------------------------------------------------------------------------- active units
def posterior_mean_variance(model: Any, x: Tensor, batch_size: int = 1000) -> Tensor:
    """``Var_x[E_q(z|x) z_d]`` for every latent dimension: ``(D,)`` (unbiased variance over x)."""
    with _eval_mode(model):
        mu, _ = _posteriors(model, x, batch_size)
    return mu.var(dim=0) if mu.shape[1] else mu.new_zeros(0)


def active_units(model: Any, x: Tensor, delta: float = 0.01, batch_size: int = 1000) -> int:
    """Number of active units (Burda et al. 2016): dimensions with ``Var_x[E_q(z|x) z_d] >= delta``."""
    return int((posterior_mean_variance(model, x, batch_size) >= delta).sum().item())


# --------------------------------------------------------------------------- probe, R^2
def linear_probe(model: Any, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                 steps: int = 100, weight_decay: float = 1e-4, seed: int = 0,
                 progress: bool = False) -> float:
    """Test accuracy (in [0, 1]) of a logistic regression from ``mu(x)`` to the label.

    Features are standardised with the training statistics; the classifier starts at zero (the
    problem is convex, so no random initialisation is needed and ``seed`` is unused) and is fitted
    full-batch with L-BFGS (``steps`` iterations, L2 penalty ``weight_decay``).
    """
    del seed  # deterministic: kept for a uniform signature
    with _eval_mode(model):
        f_train, _ = _posteriors(model, x_train, 1000)
        f_test, _ = _posteriors(model, x_test, 1000)
    y_train, y_test = y_train.to(f_train.device), y_test.to(f_train.device)
    if f_train.shape[1] == 0:  # no code (D = 0): the fitted classifier is the training class prior
        return (y_test == torch.bincount(y_train).argmax()).float().mean().item()
    mean, std = f_train.mean(0), f_train.std(0).clamp_min(1e-6)
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    classes = int(max(y_train.max().item(), y_test.max().item())) + 1
    # zero initial weights (nn.Linear's own initialisation would draw from the global RNG)
    w = torch.zeros(classes, f_train.shape[1], device=f_train.device, requires_grad=True)
    b = torch.zeros(classes, device=f_train.device, requires_grad=True)
    with torch.enable_grad(), _bar(progress, steps, f"probe n_train={len(x_train)}") as bar:
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(f_train @ w.T + b, y_train)
            loss = loss + weight_decay * w.pow(2).sum()
            loss.backward()
            bar.update(1)
            return loss

        opt.step(closure)
    with torch.no_grad():
        return ((f_test @ w.T + b).argmax(1) == y_test).float().mean().item()


def latent_r2(model: Any, x_train: Tensor, z_train: Tensor, x_test: Tensor, z_test: Tensor) -> dict[str, Any]:
    """How linearly ``mu(x)`` encodes known true latents ``z (N, K)``: R^2 on held-out points.

    An ordinary least-squares map ``mu(x) -> z`` with intercept is fitted on the training points
    (float64) and scored on the test points: ``R^2_k = 1 - SSE_k / SST_k`` per output (``SST`` about
    the test mean), returned as ``latent_r2`` (mean over the K outputs) and ``latent_r2_per_dim``.
    """
    with _eval_mode(model):
        f_train, _ = _posteriors(model, x_train, 1000)
        f_test, _ = _posteriors(model, x_test, 1000)
    f_train, f_test = f_train.cpu().double(), f_test.cpu().double()  # small; float64 (not on MPS)
    a = torch.cat([f_train, torch.ones(len(f_train), 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(a, z_train.cpu().double()).solution
    pred = torch.cat([f_test, torch.ones(len(f_test), 1, dtype=torch.float64)], 1) @ coef
    zt = z_test.cpu().double()
    sse = (zt - pred).pow(2).sum(0)
    sst = (zt - zt.mean(0)).pow(2).sum(0).clamp_min(1e-12)
    per = (1 - sse / sst).tolist()
    return {"latent_r2": sum(per) / len(per), "latent_r2_per_dim": per}


# --------------------------------------------------------------------------- classifier bound
def classifier_bound(model: Any, x: Tensor, c: Tensor, batch_size: int = 1000, seed: int = 0,
                     progress: bool = False) -> dict[str, float]:
    """VAE-AS's bound ``I(x; z) >= H(c) - E[-log r(c|z)]`` on the points ``x`` with targets ``c``.

    Uses only ``model.aux_ce(z, mu, logvar, c) -> (B,)`` and ``model.aux_entropy(batch_size)``, so it
    works for every target. The points are taken in consecutive batches of ``batch_size``; each
    batch's ``H(c)`` is ``aux_entropy(len(batch))`` (the same for every batch for label and instance
    targets; ``log B`` for the batch target, whose ``c`` is the position in the batch, so pass a
    shuffled ``x`` with ``c = arange(N) % B``). Returns ``ce`` (mean cross-entropy), ``target_entropy``
    (mean ``H(c)`` over points) and ``mi_bound = target_entropy - ce``, nats.
    """
    ces, hs = [], []
    gen = make_generator(seed, _device(model))
    with _eval_mode(model), _bar(progress, len(x), f"classifier bound n={len(x)}") as bar:
        for s in _chunks(len(x), batch_size):
            mu, logvar = model.encode(x[s])
            ce = model.aux_ce(reparameterize(mu, logvar, gen), mu, logvar, c[s].to(mu.device))
            ces.append(ce.float())
            hs.append(float(model.aux_entropy(s.stop - s.start)) * (s.stop - s.start))
            bar.update(s.stop - s.start)
    ce_mean = torch.cat(ces).mean().item()
    h = sum(hs) / len(x)
    return {"ce": ce_mean, "target_entropy": h, "mi_bound": h - ce_mean}


# --------------------------------------------------------------------------- evaluate()
def _elbo_block(model: Any, x: Tensor, seed: int, res: dict[str, Any]) -> Tensor:
    t = time.perf_counter()
    terms = elbo_terms(model, x, seed=seed)
    res.update(neg_elbo=terms["neg_elbo"].mean().item(), rec=terms["rec"].mean().item(),
               kl=terms["kl"].mean().item(), kl_per_dim=terms["kl_per_dim"].mean(0).tolist())
    res["code_gain"] = code_gain(model, x, seed=seed)
    counter = getattr(model, "count_tokens", None)
    if counter is not None:
        tokens = counter(x).double()
        res["tokens"] = int(tokens.sum().item())
        res["ppl_elbo"] = math.exp(terms["neg_elbo"].double().sum().item() / res["tokens"])
    res["seconds_elbo"] = time.perf_counter() - t
    return terms["neg_elbo"]


def _mi_block(model: Any, x: Tensor, mi_batch: int, delta: float, seed: int, progress: bool,
              res: dict[str, Any]) -> None:
    t = time.perf_counter()
    res["mi_minibatch"] = mutual_information(model, x, "minibatch", batch_size=mi_batch, seed=seed,
                                             progress=progress)
    res["mi_batch_size"] = mi_batch
    res["mi_minibatch_cap"] = minibatch_mi_cap(len(x), mi_batch)
    res["mi_dataset"] = mutual_information(model, x, "dataset", seed=seed, progress=progress)
    res["mi_dataset_cap"] = math.log(len(x))
    var = posterior_mean_variance(model, x)
    res["au"] = int((var >= delta).sum().item())
    res["au_delta"] = delta
    res["au_variance"] = var.tolist()
    res["seconds_mi_au"] = time.perf_counter() - t


def _bound_block(model: Any, data: Any, split: str, x: Tensor, mi_batch: int, bound_size: int,
                 seed: int, progress: bool, res: dict[str, Any]) -> None:
    t = time.perf_counter()
    target = getattr(model, "target", "label")
    if target == "batch":  # c = position in a shuffled batch of mi_batch points of the split
        order = torch.randperm(len(x), generator=_index_generator(seed, "shuffle")).to(x.device)
        c = torch.arange(len(x), device=x.device) % mi_batch
        res.update(classifier_bound(model, x[order], c, batch_size=mi_batch, seed=seed,
                                    progress=progress))
        res.update(bound_split=split, bound_n=len(x), bound_batch_size=mi_batch)
    elif target == "instance":  # instance targets exist only for training points: c = index
        tr = data.train
        idx = subset_indices(len(tr), bound_size, seed)
        xs, c = tr.fixed_x(seed, idx).to(x.device), tr.index[idx.to(tr.index.device)]
        res.update(classifier_bound(model, xs, c, seed=seed, progress=progress))
        res.update(bound_split="train", bound_n=len(idx))
    else:
        res.update(classifier_bound(model, x, getattr(data, split).y, seed=seed, progress=progress))
        res.update(bound_split=split, bound_n=len(x))
    res["seconds_bound"] = time.perf_counter() - t


def _probe_block(model: Any, data: Any, part: Any, x: Tensor, probe_size: int, seed: int,
                 progress: bool, res: dict[str, Any]) -> None:
    t = time.perf_counter()
    tr = data.train
    idx = subset_indices(len(tr), probe_size, seed, labels=tr.y)
    y_tr = tr.y[idx.to(tr.y.device)]
    xs = tr.fixed_x(seed, idx).to(x.device)
    res["probe_acc"] = linear_probe(model, xs, y_tr, x, part.y, progress=progress)
    res["probe_train_size"] = len(idx)
    res["probe_train_classes"] = int(torch.unique(y_tr).numel())
    res["train_classes"] = int(torch.unique(tr.y).numel())
    res["seconds_probe"] = time.perf_counter() - t


def _r2_block(model: Any, data: Any, part: Any, x: Tensor, probe_size: int, seed: int,
              res: dict[str, Any]) -> None:
    t = time.perf_counter()
    tr = data.train
    idx = subset_indices(len(tr), probe_size, seed, labels=tr.y)
    z_tr = tr.extra["true_z"][idx.to(tr.extra["true_z"].device)]
    res.update(latent_r2(model, tr.fixed_x(seed, idx).to(x.device), z_tr, x, part.extra["true_z"]))
    res["r2_train_size"] = len(idx)
    res["seconds_r2"] = time.perf_counter() - t


def _iw_block(model: Any, x: Tensor, neg_elbo: Tensor, k: int, iw_size: int | None, seed: int,
              progress: bool, res: dict[str, Any]) -> None:
    t = time.perf_counter()
    idx = subset_indices(len(x), iw_size, seed).to(x.device)
    nll = iw_nll(model, x[idx], k=k, seed=seed, progress=progress)
    res["iw_nll"] = nll.mean().item()
    res["iw_nll_se"] = nll.std().item() / math.sqrt(len(nll)) if len(nll) > 1 else None
    res["neg_elbo_iw"] = neg_elbo[idx].mean().item()  # -ELBO on the same images
    res.update(iw_k=k, iw_n=len(idx))
    counter = getattr(model, "count_tokens", None)
    if counter is not None:
        tokens = counter(x[idx]).double().sum().item()
        res["iw_tokens"] = int(tokens)
        res["ppl_iw"] = math.exp(nll.double().sum().item() / tokens)
        res["ppl_elbo_iw"] = math.exp(neg_elbo[idx].double().sum().item() / tokens)
    res["seconds_iw"] = time.perf_counter() - t


def evaluate(model: Any, data: Any, k: int = 5000, iw_size: int | None = None, mi_batch: int = 128,
             delta: float = 0.01, probe: bool = True, probe_size: int = 10_000,
             bound_size: int = 10_000, seed: int = 0, split: str = "test",
             progress: bool = False) -> dict[str, Any]:
    """Every metric of the book on one split of a dataset, as a JSON-able dict (nats).

    ``data`` needs ``train`` and the named ``split``; a split needs ``x``, ``y``, ``index``, ``extra``
    and ``fixed_x(seed, idx=None)`` (its rows as fixed bits: :class:`vaeas.data.Split`).

    * Whole split: ``neg_elbo``, ``rec``, ``kl``, ``kl_per_dim``, ``code_gain``, ``mi_minibatch``
      (shuffled batches of ``mi_batch``; exact cap ``mi_minibatch_cap``), ``mi_dataset`` (cap
      ``mi_dataset_cap = log n``), ``au`` (threshold ``au_delta``) and ``au_variance``.
    * IW-NLL (``k > 0``): ``iw_nll`` and its standard error over images ``iw_nll_se`` on a random
      subset of ``iw_n = min(iw_size, n)`` points (all by default), with ``neg_elbo_iw`` the -ELBO of
      the same points (so ``iw_nll <= neg_elbo_iw`` up to Monte Carlo noise).
    * Probe (``probe``): ``probe_acc`` of a logistic regression on ``mu(x)``, trained on a random
      subset of ``probe_train_size`` training points stratified so that every class of the training
      split is present (``probe_train_classes`` of ``train_classes``) and scored on the split.
    * VAE-AS (a model with ``aux_ce``): ``ce``, ``target_entropy``, ``mi_bound`` on ``bound_split``
      with ``bound_n`` points: label -> the split; instance -> a random ``bound_size`` subset of
      ``train`` (c = index); batch -> shuffled batches of ``mi_batch`` of the split (c = position).
    * Sequence models (``count_tokens``): ``tokens``, ``ppl_elbo`` (split), ``iw_tokens``,
      ``ppl_iw``, ``ppl_elbo_iw`` (IW subset), ``ppl = exp(sum nats / sum tokens)``.
    * Known latents (``extra["true_z"]`` on the split): ``latent_r2`` and ``latent_r2_per_dim`` of
      a least-squares map ``mu(x) -> z`` fitted on ``r2_train_size`` training points.

    All subsets are :func:`subset_indices` ``(N, size, seed)``; ``subset_seed`` records that seed.
    Every setting is recorded next to the numbers, and each block's wall time (``seconds_*``).
    """
    part = getattr(data, split)
    x = part.fixed_x(seed).to(_device(model))
    res: dict[str, Any] = {"split": split, "n": len(x), "seed": seed, "subset_seed": seed,
                           "iw_size": iw_size, "probe": probe, "probe_size": probe_size,
                           "bound_size": bound_size}
    start = time.perf_counter()
    neg_elbo = _elbo_block(model, x, seed, res)
    _mi_block(model, x, mi_batch, delta, seed, progress, res)
    if hasattr(model, "aux_ce"):
        _bound_block(model, data, split, x, mi_batch, bound_size, seed, progress, res)
    if probe:
        _probe_block(model, data, part, x, probe_size, seed, progress, res)
    if "true_z" in getattr(part, "extra", {}):
        _r2_block(model, data, part, x, probe_size, seed, res)
    if k > 0:
        _iw_block(model, x, neg_elbo, k, iw_size, seed, progress, res)
    res["seconds_total"] = time.perf_counter() - start
    return res
