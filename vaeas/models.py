"""Encoders, decoders and the two models of the book: :class:`VAE` and :class:`VAEAS`.

Conventions used throughout the package

* images are flat: ``x`` has shape ``(B, 784)`` with values in ``[0, 1]`` (binary when scored);
  sentences are ``(B, T)`` int64 token ids (:mod:`vaeas.sequence`, ``arch="lstm"``);
* the approximate posterior is a diagonal Gaussian ``q(z|x) = N(mu, diag(exp(logvar)))`` with
  ``mu, logvar`` of shape ``(B, D)``; the prior is ``N(0, I)``;
* the decoder returns Bernoulli *logits* of shape ``(B, 784)`` (token logits ``(B, T - 1, V)``);
* every log-density and every loss is in **nats** (the densities live in :mod:`vaeas.distributions`,
  the classifier heads in :mod:`vaeas.heads`; both are re-exported here);
* ``loss`` returns a dict of **per-sample** tensors of shape ``(B,)`` (``kl_per_dim``: ``(B, D)``).

Any object with ``encode``, ``decode`` and ``latent_dim`` works with :mod:`vaeas.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .distributions import (  # re-exported: these names have always been importable from here
    LOG_2PI,
    bernoulli_log_likelihood,
    categorical_log_likelihood,
    gaussian_log_density,
    kl_standard_normal,
    log_q_matrix,
    reparameterize,
    standard_normal_log_density,
)
from .heads import ACTIVATIONS, Classifier, SoftmaxHead, TwoLevelSoftmaxHead, batch_nll
from .sequence import SequenceLikelihood, build_lstm

__all__ = [
    "ACTIVATIONS", "ARCHITECTURES", "LOG_2PI", "TARGETS", "VAE", "VAEAS", "Classifier", "ConvDecoder",
    "ConvEncoder", "LinearVAE", "MADEDecoder", "MLPDecoder", "MLPEncoder", "MaskedLinear", "NoEncoder",
    "SequenceVAE", "SequenceVAEAS", "SoftmaxHead", "TwoLevelSoftmaxHead", "batch_nll", "bernoulli_log_likelihood",
    "build_for_dataset", "build_model", "categorical_log_likelihood", "gaussian_log_density",
    "kl_standard_normal", "linear_vae_kl_per_dim", "log_q_matrix", "model_from_config",
    "reparameterize", "standard_normal_log_density",
]


ARCHITECTURES = ("mlp", "conv", "made", "lstm")
TARGETS = ("label", "instance", "batch")


def _mlp(sizes: Sequence[int], activation: str, last_activation: bool = False) -> nn.Sequential:
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(act())
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- encoders
class NoEncoder(nn.Module):
    """No code (``D = 0``): ``x (B, ...) -> mu, logvar (B, 0)``; the VAE is its decoder alone, KL = 0."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        empty = torch.zeros(x.shape[0], 0, device=x.device)
        return empty, empty


class MLPEncoder(nn.Module):
    """Fully connected Gaussian encoder ``x (B, P) -> (mu, logvar)``, each ``(B, D)``."""

    def __init__(self, in_dim: int, hidden: Sequence[int], latent_dim: int, activation: str = "relu"):
        super().__init__()
        self.body = _mlp([in_dim, *hidden], activation, last_activation=True)
        self.head = nn.Linear(hidden[-1] if hidden else in_dim, 2 * latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.body(x)).chunk(2, dim=-1)
        return mu, logvar


class ConvEncoder(nn.Module):
    """Small convolutional Gaussian encoder for 28x28 images.

    ``x (B, 784) -> conv 4x4/2 (14x14) -> conv 4x4/2 (7x7) -> linear -> (mu, logvar)``.
    """

    def __init__(self, latent_dim: int, channels: Sequence[int] = (32, 64), hidden: int = 256,
                 activation: str = "relu"):
        super().__init__()
        act = ACTIVATIONS[activation]
        c1, c2 = channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 4, 2, 1), act(),
            nn.Conv2d(c1, c2, 4, 2, 1), act(),
            nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), act(),
        )
        self.head = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.body(x.view(-1, 1, 28, 28))).chunk(2, dim=-1)
        return mu, logvar


# --------------------------------------------------------------------------- decoders
class MLPDecoder(nn.Module):
    """Fully connected factorised-Bernoulli decoder ``z (B, D) -> logits (B, P)``."""

    autoregressive = False

    def __init__(self, latent_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "relu"):
        super().__init__()
        self.net = _mlp([latent_dim, *hidden, out_dim], activation)

    def forward(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        return self.net(z)


class ConvDecoder(nn.Module):
    """Small transposed-convolution decoder ``z (B, D) -> logits (B, 784)``."""

    autoregressive = False

    def __init__(self, latent_dim: int, channels: Sequence[int] = (64, 32), hidden: int = 256,
                 activation: str = "relu"):
        super().__init__()
        act = ACTIVATIONS[activation]
        c1, c2 = channels
        self.c1 = c1
        self.fc = nn.Sequential(nn.Linear(latent_dim, hidden), act(), nn.Linear(hidden, c1 * 7 * 7), act())
        self.deconv = nn.Sequential(nn.ConvTranspose2d(c1, c2, 4, 2, 1), act(), nn.ConvTranspose2d(c2, 1, 4, 2, 1))

    def forward(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        h = self.fc(z).view(-1, self.c1, 7, 7)
        return self.deconv(h).flatten(1)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (MADE, Germain et al. 2015)."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADEDecoder(nn.Module):
    """Autoregressive Bernoulli decoder: ``p(x|z) = prod_i p(x_i | x_<i, z)`` in raster order.

    A MADE network (Germain et al. 2015) over the pixels with the latent code added to the first
    hidden layer only (``z -> Linear -> + h_1``), so the decoder can model the image *without* z:
    this is what makes a vanilla VAE with this decoder prone to posterior collapse. With
    ``direct=True`` a masked linear skip connection from the pixels to the output is added, which
    makes the decoder stronger still.

    ``forward(z, x)`` evaluates all conditionals in parallel given the observed ``x`` (teacher
    forcing) and returns logits ``(B, P)``; sampling needs ``P`` sequential passes (:meth:`sample`).
    """

    autoregressive = True

    def __init__(self, latent_dim: int, hidden: Sequence[int] = (1000, 1000), out_dim: int = 784,
                 activation: str = "relu", direct: bool = False):
        super().__init__()
        if not hidden:
            raise ValueError("MADEDecoder needs at least one hidden layer")
        self.out_dim = out_dim
        deg_in = torch.arange(1, out_dim + 1)
        degrees = [deg_in]
        for h in hidden:  # hidden degrees cycle through 0..P-1; degree-0 units see z only,
            degrees.append(torch.arange(h) % out_dim)  # so even p(x_1 | z) depends on z
        layers = []
        for d_prev, d_next in zip(degrees[:-1], degrees[1:], strict=True):
            mask = (d_next[:, None] >= d_prev[None, :])
            layers.append(MaskedLinear(len(d_prev), len(d_next), mask))
        self.hidden_layers = nn.ModuleList(layers)
        self.out = MaskedLinear(hidden[-1], out_dim, deg_in[:, None] > degrees[-1][None, :])
        self.direct = MaskedLinear(out_dim, out_dim, deg_in[:, None] > deg_in[None, :]) if direct else None
        self.z_in = nn.Linear(latent_dim, hidden[0]) if latent_dim > 0 else None  # D = 0: no code
        self.act = ACTIVATIONS[activation]()

    def _masked(self) -> list[tuple[Tensor, Tensor]]:
        layers = [*self.hidden_layers, self.out] + ([self.direct] if self.direct is not None else [])
        return [(layer.weight * layer.mask, layer.bias) for layer in layers]

    def _logits(self, z: Tensor, x: Tensor, weights: list[tuple[Tensor, Tensor]]) -> Tensor:
        n_hidden = len(self.hidden_layers)
        h = self.act(F.linear(x, *weights[0]) + (self.z_in(z) if self.z_in is not None else 0))
        for w, b in weights[1:n_hidden]:
            h = self.act(F.linear(h, w, b))
        logits = F.linear(h, *weights[n_hidden])
        if self.direct is not None:
            logits = logits + F.linear(x, *weights[n_hidden + 1])
        return logits

    def forward(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        if x is None:
            raise ValueError("an autoregressive decoder needs x to evaluate p(x|z); use sample()")
        return self._logits(z, x, self._masked())

    @torch.no_grad()
    def sample(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``x ~ p(x|z)`` pixel by pixel: ``z (B, D) -> x (B, P)`` in {0, 1} (``P`` passes)."""
        weights = self._masked()
        x = torch.zeros(z.shape[0], self.out_dim, device=z.device)
        for i in range(self.out_dim):
            p = torch.sigmoid(self._logits(z, x, weights)[:, i])
            x[:, i] = torch.bernoulli(p, generator=generator)
        return x


# --------------------------------------------------------------------------- models
class VAE(nn.Module):
    """A VAE with a diagonal-Gaussian encoder, N(0, I) prior and a Bernoulli decoder.

    Build one with :func:`build_model` / :func:`build_for_dataset` (or pass modules directly). The
    negative ELBO per sample is ``rec + kl`` with ``rec = -log p(x|z)`` for one reparameterised
    ``z ~ q(z|x)`` (:func:`vaeas.distributions.reparameterize`) and the KL in closed form.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int,
                 config: dict[str, Any] | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.config: dict[str, Any] = dict(config or {})

    # -- the protocol used by vaeas.metrics
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, P) -> (mu, logvar)``, each ``(B, D)``."""
        return self.encoder(x)

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """``z (B, D) [, x (B, P)] -> logits (B, P)``; ``x`` is required by autoregressive decoders."""
        return self.decoder(z, x)

    @staticmethod
    def log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) from the decoder's output: ``(B, P) -> (B,)``, nats (Bernoulli here)."""
        return bernoulli_log_likelihood(logits, x)

    @property
    def autoregressive(self) -> bool:
        return bool(getattr(self.decoder, "autoregressive", False))

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``: :func:`vaeas.distributions.reparameterize`."""
        return reparameterize(mu, logvar, generator)

    # -- parameter groups (aggressive inference training, sparse optimisers)
    def encoder_parameters(self) -> list[nn.Parameter]:
        """The inference network's parameters (those of ``q(z|x)``)."""
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Every other parameter: the decoder and, for VAE-AS, the classifier."""
        enc = {id(p) for p in self.encoder_parameters()}
        return [p for p in self.parameters() if id(p) not in enc]

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Parameters whose gradients are sparse (for ``torch.optim.SparseAdam``); none here."""
        return []

    def _parts(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        logits = self.decode(z, x)
        rec = -self.log_likelihood(logits, x)
        kl_per_dim = kl_standard_normal(mu.float(), logvar.float())
        kl = kl_per_dim.sum(-1)
        return {"rec": rec, "kl": kl, "kl_per_dim": kl_per_dim, "neg_elbo": rec + kl}, z, mu, logvar

    def loss(self, x: Tensor, y: Tensor | None = None, index: Tensor | None = None) -> dict[str, Tensor]:
        """Per-sample loss terms for a batch ``x (B, P)``, in nats.

        Returns ``rec (B,)`` = -log p(x|z), ``kl (B,)`` = KL(q(z|x) || p(z)), ``kl_per_dim (B, D)``
        and ``neg_elbo (B,)`` = rec + kl. ``y`` and ``index`` are accepted and ignored.
        """
        return self._parts(x)[0]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from the model: images ``(n, P)`` or sentences ``(n, T)``.

        Factorised decoders return the Bernoulli means ``sigmoid(logits)``; autoregressive decoders
        return samples drawn pixel by pixel (token by token). Call ``model.eval()`` first when the
        decoder has dropout.
        """
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, device=device, generator=generator)
        return self._generate(z, generator)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Decode the posterior mean ``mu(x)``: ``(B, P) -> (B, P)``.

        For an autoregressive decoder the image is *generated* from ``mu(x)`` pixel by pixel (not
        teacher-forced), so a collapsed model returns images unrelated to ``x``.
        """
        mu, _ = self.encode(x)
        return self._generate(mu, generator)

    def _generate(self, z: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.autoregressive:
            return self.decoder.sample(z, generator)
        return torch.sigmoid(self.decode(z))


class VAEAS(VAE):
    """VAE with an Auxiliary Softmax multiclassifier (Li 2019, arXiv:1908.06966), made precise.

    A classifier ``r(c|z)`` reads the reparameterised code ``z ~ q(z|x)`` and predicts a target
    ``c = f(x)``: the class label (``target="label"``, ``C`` = number of classes) or the index of the
    training image itself (``target="instance"``, ``C`` = number of training images). Because
    ``c`` is a function of ``x``, data processing and the Barber-Agakov bound give

        I(x; z) >= I(c; z) >= H(c) - E[-log r(c|z)],

    so the training objective ``rec + kl + lam * ce`` pushes a lower bound on ``I(x; z)`` up.
    ``target_entropy`` is ``H(c)`` in nats (``log C`` for the instance target, the empirical label
    entropy otherwise); it only shifts the reported bound, never the gradient.

    ``target="batch"`` has no classifier weights: the critic is the encoder itself, which scores
    each code ``z_i`` against the ``B`` posteriors of its minibatch, ``r(n | z_i) ∝ q(z_i | x_n)``,
    with target ``c = i`` (the InfoNCE form). Then ``I(x; z) >= log B - CE``, never above ``log B``,
    and ``log B - CE`` is He et al.'s (2019) minibatch MI estimator, trained directly.

    ``detach_aux=True`` is the control: the CE is computed on ``z.detach()``, so the classifier is
    trained but no gradient of the auxiliary term reaches the encoder. For ``target="batch"`` the
    control trains nothing: it is the vanilla VAE with the CE logged.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, num_classes: int,
                 target: str = "label", lam: float = 1.0, head_hidden: int | None = None,
                 head: str = "auto", target_entropy: float | None = None,
                 config: dict[str, Any] | None = None, detach_aux: bool = False):
        super().__init__(encoder, decoder, latent_dim, config)
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
        if lam < 0:
            raise ValueError("lam must be >= 0")
        self.target, self.lam, self.detach_aux = target, float(lam), bool(detach_aux)
        self.num_classes = num_classes if target != "batch" else None
        if target != "batch":  # the batch target has no classifier (and no `classifier` attribute)
            self.classifier = Classifier(latent_dim, num_classes, head_hidden, head, sparse=True)
            h = math.log(num_classes) if target_entropy is None else float(target_entropy)
        else:
            h = float("nan")  # H(c) = log B depends on the batch: see aux_entropy
        self.register_buffer("target_entropy", torch.tensor(h))

    def targets(self, y: Tensor | None, index: Tensor | None) -> Tensor | None:
        """The classifier's target ``c (B,)`` for this batch (``None`` for the batch target)."""
        if self.target == "batch":
            return None
        c = y if self.target == "label" else index
        if c is None:
            raise ValueError(f"VAEAS(target={self.target!r}) needs "
                             f"{'y' if self.target == 'label' else 'index'} in loss()")
        return c

    def aux_ce(self, z: Tensor, mu: Tensor, logvar: Tensor, c: Tensor | None = None) -> Tensor:
        """Cross-entropy of the auxiliary target for codes ``z (B, D)`` drawn from ``q(z|x)`` with
        posteriors ``mu, logvar (B, D)``: ``(B,)``, nats.

        label / instance: ``-log r(c|z)``; batch: ``-log softmax_n log q(z_i|x_n)`` at ``n = i``
        (``c`` is ignored). With ``detach_aux`` no gradient reaches ``z``, ``mu`` or ``logvar``.
        """
        if self.detach_aux:
            z, mu, logvar = z.detach(), mu.detach(), logvar.detach()
        if self.target == "batch":
            return batch_nll(z, mu, logvar)
        if c is None:
            raise ValueError(f"VAEAS(target={self.target!r}).aux_ce needs the targets c")
        return self.classifier.nll(z, c)

    def aux_entropy(self, batch_size: int) -> float:
        """``H(c)`` in nats for a batch of ``batch_size``: log B (batch target) or ``target_entropy``."""
        return math.log(batch_size) if self.target == "batch" else float(self.target_entropy)

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The two-level head's per-class rows (sparse gradients), else ``[]``."""
        return self.classifier.sparse_parameters() if self.target != "batch" else []

    def loss(self, x: Tensor, y: Tensor | None = None, index: Tensor | None = None) -> dict[str, Tensor]:
        """Per-sample terms of VAE-AS, in nats.

        Adds to :meth:`VAE.loss`: ``ce (B,)`` = :meth:`aux_ce` on the same reparameterised ``z`` the
        decoder saw, ``aux (B,)`` = lam * ce (the term added to the objective) and
        ``mi_bound (B,)`` = H(c) - ce (:meth:`aux_entropy`), whose mean is a lower bound on I(x; z).
        """
        c = self.targets(y, index)
        parts, z, mu, logvar = self._parts(x)
        ce = self.aux_ce(z, mu, logvar, c)
        parts["ce"] = ce
        parts["aux"] = self.lam * ce
        parts["mi_bound"] = self.aux_entropy(x.shape[0]) - ce
        return parts


class SequenceVAE(SequenceLikelihood, VAE):
    """A :class:`VAE` over token sequences (LSTM encoder and decoder): categorical ``log_likelihood``
    over the scored tokens and ``count_tokens`` (see :mod:`vaeas.sequence`)."""


class SequenceVAEAS(SequenceLikelihood, VAEAS):
    """A :class:`VAEAS` over token sequences."""


class LinearVAE(VAE):
    """The linear VAE of Lucas et al. (2019), where posterior collapse can be solved exactly.

    ``p(z) = N(0, I)``, ``p(x|z) = N(W z + b, sigma2 I)`` and ``q(z|x) = N(V x + c, diag(s^2))`` with
    a variance that does not depend on ``x``. Its ELBO is maximised by the probabilistic-PCA
    solution: for data-covariance eigenvalues ``lambda_i``, a latent dimension is used iff
    ``lambda_i > sigma2`` and then carries ``KL_i = 0.5 log(lambda_i / sigma2)`` nats
    (:func:`linear_vae_kl_per_dim`); every other dimension collapses to the prior. ``decode``
    returns the Gaussian mean; ``log_likelihood`` is the Gaussian one, so :mod:`vaeas.metrics`
    ELBO terms are correct for this model too.
    """

    def __init__(self, data_dim: int, latent_dim: int, sigma2: float = 1.0, learn_sigma: bool = False):
        enc = nn.Linear(data_dim, latent_dim)
        dec = nn.Linear(latent_dim, data_dim)
        super().__init__(enc, dec, latent_dim, {"model": "linear", "data_dim": data_dim,
                                                "latent_dim": latent_dim, "sigma2": sigma2,
                                                "learn_sigma": learn_sigma})
        self.enc_logvar = nn.Parameter(torch.full((latent_dim,), -2.0))
        log_s2 = torch.tensor(math.log(sigma2))
        if learn_sigma:
            self.log_sigma2 = nn.Parameter(log_s2)
        else:
            self.register_buffer("log_sigma2", log_s2)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu = self.encoder(x)
        return mu, self.enc_logvar.expand_as(mu)

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        return self.decoder(z)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), self.enc_logvar]

    def log_likelihood(self, mean: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        """Gaussian log N(x; mean, sigma2 I): ``(B, P) -> (B,)``, nats."""
        return -0.5 * (LOG_2PI + self.log_sigma2 + (x - mean).pow(2) / self.log_sigma2.exp()).sum(-1)

    def _generate(self, z: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.decode(z)


def linear_vae_kl_per_dim(eigenvalues: Sequence[float] | Tensor, sigma2: float) -> Tensor:
    """KL per latent dimension (nats) at the optimum of a :class:`LinearVAE` (Lucas et al. 2019).

    ``KL_i = max(0, 0.5 * log(lambda_i / sigma2))``, sorted as given; at this optimum the KL of each
    dimension equals the mutual information it carries, and dimensions with ``lambda_i <= sigma2``
    collapse (KL = 0).
    """
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    return torch.clamp(0.5 * torch.log(lam / sigma2), min=0.0)


# --------------------------------------------------------------------------- factory
def _as_tuple(hidden: int | Sequence[int] | None, default: Sequence[int]) -> tuple[int, ...]:
    if hidden is None:
        return tuple(default)
    if isinstance(hidden, int):
        return (hidden,)
    return tuple(int(h) for h in hidden)


def _opt_tuple(hidden: int | Sequence[int] | None) -> tuple[int, ...] | None:
    return None if hidden is None else _as_tuple(hidden, ())


def _image_networks(arch: str, latent_dim: int, hidden: int | Sequence[int] | None,
                    decoder_hidden: int | Sequence[int] | None, activation: str, direct: bool,
                    in_dim: int) -> tuple[nn.Module, nn.Module]:
    enc_hidden = _as_tuple(hidden, (512, 256))
    if any(h < 1 for h in enc_hidden) or any(h < 1 for h in _as_tuple(decoder_hidden, ())):
        raise ValueError("hidden sizes must be >= 1")
    if arch == "mlp":
        dec_hidden = _as_tuple(decoder_hidden, tuple(reversed(enc_hidden)))
        return (MLPEncoder(in_dim, enc_hidden, latent_dim, activation),
                MLPDecoder(latent_dim, dec_hidden, in_dim, activation))
    if latent_dim == 0:  # arch made: the decoder alone
        return NoEncoder(), MADEDecoder(0, _as_tuple(decoder_hidden, (1000, 1000)), in_dim, activation, direct=direct)
    if arch == "conv":
        if in_dim != 784:
            raise ValueError("the conv architecture expects 28x28 images (in_dim=784)")
        return ConvEncoder(latent_dim, activation=activation), ConvDecoder(latent_dim, activation=activation)
    return (MLPEncoder(in_dim, enc_hidden, latent_dim, activation),
            MADEDecoder(latent_dim, _as_tuple(decoder_hidden, (1000, 1000)), in_dim, activation,
                        direct=direct))


def build_model(model: str = "vae", arch: str = "mlp", latent_dim: int = 32,
                hidden: int | Sequence[int] | None = None,
                decoder_hidden: int | Sequence[int] | None = None, activation: str = "relu",
                num_classes: int = 10, target: str = "label", lam: float = 1.0,
                head_hidden: int | None = None, head: str = "auto",
                target_entropy: float | None = None, direct: bool = False,
                in_dim: int = 784, vocab_size: int | None = None, max_len: int | None = None,
                embed_dim: int = 50, lstm_hidden: int = 50, word_dropout: float = 0.0,
                dropout: float = 0.0, detach_aux: bool = False) -> VAE:
    """Build a :class:`VAE` or :class:`VAEAS` by name; the arguments that matter are stored in
    ``model.config`` so that :func:`model_from_config` rebuilds the same network from a checkpoint.

    Architectures: ``mlp`` (MLP encoder and decoder, ``hidden`` default ``(512, 256)``; the decoder
    mirrors it), ``conv`` (convolutional encoder and decoder), ``made`` (MLP encoder with an
    autoregressive MADE decoder, ``decoder_hidden`` default ``(1000, 1000)``) and ``lstm`` (the
    sentence VAE of :mod:`vaeas.sequence`: needs ``vocab_size`` and ``max_len``; ``embed_dim``,
    ``lstm_hidden``, ``word_dropout``, ``dropout``; returns :class:`SequenceVAE` /
    :class:`SequenceVAEAS`). Prefer :func:`build_for_dataset`, which fills in the sizes.
    """
    if arch == "lstm":
        config: dict[str, Any] = dict(model=model, arch=arch, latent_dim=latent_dim, vocab_size=vocab_size,
                                      max_len=max_len, embed_dim=embed_dim, lstm_hidden=lstm_hidden,
                                      word_dropout=float(word_dropout), dropout=float(dropout))
    else:
        config = dict(model=model, arch=arch, latent_dim=latent_dim, hidden=_opt_tuple(hidden),
                      decoder_hidden=_opt_tuple(decoder_hidden), activation=activation, direct=direct,
                      in_dim=in_dim)
    if model == "vaeas":  # the classifier's settings mean nothing for a plain VAE
        config.update(target=target, lam=float(lam))
        if target != "batch":
            config.update(num_classes=num_classes, head_hidden=head_hidden, head=head,
                          target_entropy=None if target_entropy is None else float(target_entropy))
        if detach_aux:  # recorded only when set, so configs of earlier runs stay as they were
            config.update(detach_aux=True)
    if model not in ("vae", "vaeas"):
        raise ValueError(f"unknown model {model!r}; choose vae or vaeas")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    if latent_dim < 0 or (latent_dim == 0 and (model != "vae" or arch not in ("made", "lstm"))):
        raise ValueError("latent_dim must be >= 1 (0, no latent code, only for a plain VAE with an "
                         "autoregressive decoder: arch 'made' or 'lstm')")
    if arch == "lstm":
        if hidden is not None or decoder_hidden is not None or vocab_size is None or max_len is None:
            raise ValueError("arch 'lstm' needs vocab_size and max_len and takes lstm_hidden, not hidden")
        lstm_encoder, decoder = build_lstm(vocab_size, max_len, latent_dim, embed_dim, lstm_hidden,
                                           word_dropout, dropout)
        encoder = lstm_encoder if lstm_encoder is not None else NoEncoder()
    else:
        encoder, decoder = _image_networks(arch, latent_dim, hidden, decoder_hidden, activation, direct,
                                           in_dim)
    if model == "vae":
        return (SequenceVAE if arch == "lstm" else VAE)(encoder, decoder, latent_dim, config)
    return (SequenceVAEAS if arch == "lstm" else VAEAS)(
        encoder, decoder, latent_dim, num_classes, target, lam, head_hidden, head, target_entropy,
        config, detach_aux)


def build_for_dataset(data: Any, model: str = "vae", arch: str = "mlp", target: str = "label",
                      **kwargs: Any) -> VAE:
    """:func:`build_model` with the sizes a dataset implies: the one place they are derived.

    From ``data`` (duck-typed: ``data.train.x``, ``data.num_classes``, ``data.label_entropy()``,
    ``data.kind`` = ``"image"`` | ``"sequence"``, ``data.vocab``): ``in_dim`` = pixels per image, or
    for ``arch="lstm"`` ``vocab_size = len(data.vocab)`` and ``max_len = T - 2``; for VAE-AS
    ``num_classes`` and ``target_entropy`` (label: ``data.num_classes`` and the empirical label
    entropy; instance: ``N = len(data.train)`` and ``log N``; batch: none). Other keyword arguments
    go to :func:`build_model` and override the derived ones.
    """
    kind = getattr(data, "kind", "image")
    x = data.train.x
    if (kind == "sequence") != (arch == "lstm"):
        raise ValueError(f"a {kind} dataset needs " + ("arch 'lstm'" if kind == "sequence"
                                                       else "an image architecture, not 'lstm'"))
    derived: dict[str, Any] = {"target": target} if model == "vaeas" else {}
    if arch == "lstm":
        vocab = getattr(data, "vocab", None)
        if vocab is None:
            raise ValueError("a sequence dataset needs data.vocab to size the LSTM VAE")
        derived.update(vocab_size=len(vocab), max_len=int(x.shape[1]) - 2)
    else:
        derived["in_dim"] = int(x[0].numel())
    if model == "vaeas" and target == "label":
        derived.update(num_classes=int(data.num_classes), target_entropy=float(data.label_entropy()))
    elif model == "vaeas" and target == "instance":
        n = len(data.train)
        derived.update(num_classes=n, target_entropy=math.log(n))
    return build_model(model, arch, **{**derived, **kwargs})


def model_from_config(config: dict[str, Any]) -> VAE:
    """Rebuild a model (untrained) from ``model.config``."""
    if config.get("model") == "linear":
        return LinearVAE(**{k: v for k, v in config.items() if k != "model"})
    return build_model(**config)
