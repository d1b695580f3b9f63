"""Encoders, decoders and the two models of the book: :class:`VAE` and :class:`VAEAS`.

Conventions used throughout the package

* images are flat: ``x`` has shape ``(B, 784)`` with values in ``[0, 1]`` (binary when scored);
* the approximate posterior is a diagonal Gaussian ``q(z|x) = N(mu, diag(exp(logvar)))`` with
  ``mu, logvar`` of shape ``(B, D)``; the prior is ``N(0, I)``;
* the decoder returns Bernoulli *logits* of shape ``(B, 784)``;
* every log-density and every loss is in **nats**;
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

LOG_2PI = math.log(2 * math.pi)

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
}

ARCHITECTURES = ("mlp", "conv", "made")
TARGETS = ("label", "instance")


# --------------------------------------------------------------------------- densities
def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dim, in nats.

    Shapes broadcast; the result drops the last dimension (``(..., D) -> (...)``).
    """
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def standard_normal_log_density(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dim: ``(..., D) -> (...)``, nats."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """Closed-form KL(N(mu, diag(exp(logvar))) || N(0, I)) per dimension: ``(B, D)``, nats.

    ``KL_d = 0.5 * (mu_d^2 + sigma_d^2 - 1 - log sigma_d^2)``.
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """log p(x | logits) of a factorised Bernoulli, summed over pixels: ``(B, P) -> (B,)``, nats."""
    return -F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none").sum(-1)


def _mlp(sizes: Sequence[int], activation: str, last_activation: bool = False) -> nn.Sequential:
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(act())
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- encoders
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
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c1, c2, 4, 2, 1), act(),
            nn.ConvTranspose2d(c2, 1, 4, 2, 1),
        )

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
        self.z_in = nn.Linear(latent_dim, hidden[0])
        self.act = ACTIVATIONS[activation]()

    def _masked(self) -> list[tuple[Tensor, Tensor]]:
        layers = [*self.hidden_layers, self.out] + ([self.direct] if self.direct is not None else [])
        return [(layer.weight * layer.mask, layer.bias) for layer in layers]

    def _logits(self, z: Tensor, x: Tensor, weights: list[tuple[Tensor, Tensor]]) -> Tensor:
        n_hidden = len(self.hidden_layers)
        h = self.act(F.linear(x, *weights[0]) + self.z_in(z))
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


# --------------------------------------------------------------------------- classifier heads
class SoftmaxHead(nn.Module):
    """Dense softmax classifier ``r(c|z)`` over ``C`` classes: ``z (B, D) -> log r (B, C)``."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(in_dim, num_classes)

    def log_prob_all(self, h: Tensor) -> Tensor:
        """log r(c|z) for every class: ``(B, C)``, nats."""
        return F.log_softmax(self.fc(h).float(), dim=-1)

    def nll(self, h: Tensor, c: Tensor) -> Tensor:
        """-log r(c|z) for the given targets ``c (B,)``: ``(B,)``, nats."""
        return F.cross_entropy(self.fc(h).float(), c, reduction="none")


class TwoLevelSoftmaxHead(nn.Module):
    """A class-factored (two-level) softmax over ``C`` classes (Goodman 2001; Morin & Bengio 2005).

    Class ``c`` is written as ``(a, b) = (c // K, c % K)`` with ``K = ceil(sqrt(C))``, and

        r(c | z) = r(a | z) * r(b | a, z),

    a softmax over the ``ceil(C / K)`` groups times a softmax over the classes inside group ``a``
    (each class keeps its own weight vector; padding slots of the last group are masked out). This
    is an *exactly normalised* distribution over the ``C`` classes, so the cross-entropy is a true
    classifier loss and the Barber-Agakov bound ``I(c; z) >= H(c) - CE`` holds exactly. Its cost per
    sample is ``O(sqrt(C) * D)`` instead of ``O(C * D)`` for a dense softmax: with ``C = 55,000``
    training images that is ~470 instead of 55,000 logits.
    """

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.k = math.ceil(math.sqrt(num_classes))
        self.groups = math.ceil(num_classes / self.k)
        self.group_fc = nn.Linear(in_dim, self.groups)
        slots = self.groups * self.k
        self.weight = nn.Parameter(torch.randn(slots, in_dim) / math.sqrt(in_dim))
        self.bias = nn.Parameter(torch.zeros(slots))
        valid = torch.arange(slots) < num_classes
        self.register_buffer("pad", torch.where(valid, 0.0, float("-inf")).view(self.groups, self.k))

    def _within(self, h: Tensor, a: Tensor) -> Tensor:
        """log r(b | a, z) for every b in group a: ``(B, K)``."""
        rows = a[:, None] * self.k + torch.arange(self.k, device=a.device)  # (B, K)
        # gather the group's weight rows; an elementwise product beats B tiny matmuls (bmm) on CPUs
        w = self.weight[rows]  # (B, K, D)
        logits = (w * h[:, None, :]).sum(-1) + self.bias[rows] + self.pad[a]
        return F.log_softmax(logits.float(), dim=-1)

    def nll(self, h: Tensor, c: Tensor) -> Tensor:
        """-log r(c|z) for targets ``c (B,)``: ``(B,)``, nats."""
        a, b = c // self.k, c % self.k
        log_ra = F.log_softmax(self.group_fc(h).float(), dim=-1).gather(1, a[:, None]).squeeze(1)
        log_rb = self._within(h, a).gather(1, b[:, None]).squeeze(1)
        return -(log_ra + log_rb)

    def log_prob_all(self, h: Tensor) -> Tensor:
        """log r(c|z) for every class: ``(B, C)``, nats (dense; for evaluation and tests)."""
        log_ra = F.log_softmax(self.group_fc(h).float(), dim=-1)  # (B, G)
        w = self.weight.view(self.groups, self.k, -1)
        logits = torch.einsum("gkd,bd->bgk", w, h) + self.bias.view(self.groups, self.k) + self.pad
        log_rb = F.log_softmax(logits.float(), dim=-1)  # (B, G, K)
        return (log_ra[:, :, None] + log_rb).flatten(1)[:, : self.num_classes]


class Classifier(nn.Module):
    """The auxiliary classifier ``r(c|z)`` of VAE-AS: optional hidden layer, then a softmax head.

    ``head="auto"`` picks the dense softmax for ``C <= 2048`` classes and the exact two-level
    softmax (:class:`TwoLevelSoftmaxHead`) above that.
    """

    def __init__(self, latent_dim: int, num_classes: int, hidden: int | None = None,
                 head: str = "auto", activation: str = "relu"):
        super().__init__()
        if head == "auto":
            head = "dense" if num_classes <= 2048 else "two_level"
        if head not in ("dense", "two_level"):
            raise ValueError(f"unknown classifier head {head!r}; choose auto, dense or two_level")
        self.head_kind = head
        self.body: nn.Module = (nn.Sequential(nn.Linear(latent_dim, hidden), ACTIVATIONS[activation]())
                                if hidden else nn.Identity())
        width = hidden or latent_dim
        self.head = SoftmaxHead(width, num_classes) if head == "dense" else TwoLevelSoftmaxHead(width, num_classes)

    def nll(self, z: Tensor, c: Tensor) -> Tensor:
        """Cross-entropy -log r(c|z): ``z (B, D), c (B,) -> (B,)``, nats."""
        return self.head.nll(self.body(z), c)

    def log_prob_all(self, z: Tensor) -> Tensor:
        """log r(c|z) for all classes: ``(B, C)``."""
        return self.head.log_prob_all(self.body(z))


# --------------------------------------------------------------------------- models
class VAE(nn.Module):
    """A VAE with a diagonal-Gaussian encoder, N(0, I) prior and a Bernoulli decoder.

    Build one with :func:`build_model` (or pass modules directly). The negative ELBO per sample is
    ``rec + kl`` with ``rec = -log p(x|z)`` for one reparameterised ``z ~ q(z|x)`` and the KL in
    closed form.
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
    def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
        """``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``: ``(B, D)``."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def _parts(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        logits = self.decode(z, x)
        rec = -self.log_likelihood(logits, x)
        kl_per_dim = kl_standard_normal(mu.float(), logvar.float())
        kl = kl_per_dim.sum(-1)
        return {"rec": rec, "kl": kl, "kl_per_dim": kl_per_dim, "neg_elbo": rec + kl}, z

    def loss(self, x: Tensor, y: Tensor | None = None, index: Tensor | None = None) -> dict[str, Tensor]:
        """Per-sample loss terms for a batch ``x (B, P)``, in nats.

        Returns ``rec (B,)`` = -log p(x|z), ``kl (B,)`` = KL(q(z|x) || p(z)), ``kl_per_dim (B, D)``
        and ``neg_elbo (B,)`` = rec + kl. ``y`` and ``index`` are accepted and ignored.
        """
        return self._parts(x)[0]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images from the model: ``(n, P)``.

        Factorised decoders return the Bernoulli means ``sigmoid(logits)``; autoregressive decoders
        return binary samples drawn pixel by pixel.
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
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, num_classes: int,
                 target: str = "label", lam: float = 1.0, head_hidden: int | None = None,
                 head: str = "auto", target_entropy: float | None = None,
                 config: dict[str, Any] | None = None):
        super().__init__(encoder, decoder, latent_dim, config)
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose label or instance")
        if lam < 0:
            raise ValueError("lam must be >= 0")
        self.target = target
        self.lam = float(lam)
        self.num_classes = num_classes
        self.classifier = Classifier(latent_dim, num_classes, head_hidden, head)
        h = math.log(num_classes) if target_entropy is None else float(target_entropy)
        self.register_buffer("target_entropy", torch.tensor(h))

    def targets(self, y: Tensor | None, index: Tensor | None) -> Tensor:
        """The classifier's target ``c (B,)`` for this batch."""
        c = y if self.target == "label" else index
        if c is None:
            raise ValueError(f"VAEAS(target={self.target!r}) needs "
                             f"{'y' if self.target == 'label' else 'index'} in loss()")
        return c

    def loss(self, x: Tensor, y: Tensor | None = None, index: Tensor | None = None) -> dict[str, Tensor]:
        """Per-sample terms of VAE-AS, in nats.

        Adds to :meth:`VAE.loss`: ``ce (B,)`` = -log r(c|z) on the same reparameterised ``z`` the
        decoder saw, ``aux (B,)`` = lam * ce (the term added to the objective) and
        ``mi_bound (B,)`` = H(c) - ce, whose mean is a lower bound on I(x; z).
        """
        parts, z = self._parts(x)
        ce = self.classifier.nll(z, self.targets(y, index))
        parts["ce"] = ce
        parts["aux"] = self.lam * ce
        parts["mi_bound"] = self.target_entropy - ce
        return parts


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


def build_model(model: str = "vae", arch: str = "mlp", latent_dim: int = 32,
                hidden: int | Sequence[int] | None = None,
                decoder_hidden: int | Sequence[int] | None = None, activation: str = "relu",
                num_classes: int = 10, target: str = "label", lam: float = 1.0,
                head_hidden: int | None = None, head: str = "auto",
                target_entropy: float | None = None, direct: bool = False,
                in_dim: int = 784) -> VAE:
    """Build a :class:`VAE` or :class:`VAEAS` by name; the arguments are stored in ``model.config``
    so that :func:`model_from_config` rebuilds the same network from a checkpoint.

    Architectures: ``mlp`` (MLP encoder and decoder, ``hidden`` default ``(512, 256)``; the decoder
    mirrors it), ``conv`` (convolutional encoder and decoder) and ``made`` (MLP encoder with an
    autoregressive MADE decoder, ``decoder_hidden`` default ``(1000, 1000)``).
    """
    config = dict(model=model, arch=arch, latent_dim=latent_dim, hidden=_opt_tuple(hidden),
                  decoder_hidden=_opt_tuple(decoder_hidden), activation=activation, direct=direct,
                  in_dim=in_dim)
    if model == "vaeas":  # the classifier's settings mean nothing for a plain VAE
        config.update(num_classes=num_classes, target=target, lam=float(lam), head_hidden=head_hidden,
                      head=head, target_entropy=None if target_entropy is None else float(target_entropy))
    if model not in ("vae", "vaeas"):
        raise ValueError(f"unknown model {model!r}; choose vae or vaeas")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    if latent_dim < 1:
        raise ValueError("latent_dim must be >= 1")
    enc_hidden = _as_tuple(hidden, (512, 256))
    if any(h < 1 for h in enc_hidden) or any(h < 1 for h in _as_tuple(decoder_hidden, ())):
        raise ValueError("hidden sizes must be >= 1")
    if arch == "mlp":
        encoder: nn.Module = MLPEncoder(in_dim, enc_hidden, latent_dim, activation)
        dec_hidden = _as_tuple(decoder_hidden, tuple(reversed(enc_hidden)))
        decoder: nn.Module = MLPDecoder(latent_dim, dec_hidden, in_dim, activation)
    elif arch == "conv":
        if in_dim != 784:
            raise ValueError("the conv architecture expects 28x28 images (in_dim=784)")
        encoder = ConvEncoder(latent_dim, activation=activation)
        decoder = ConvDecoder(latent_dim, activation=activation)
    else:
        encoder = MLPEncoder(in_dim, enc_hidden, latent_dim, activation)
        decoder = MADEDecoder(latent_dim, _as_tuple(decoder_hidden, (1000, 1000)), in_dim, activation,
                              direct=direct)
    if model == "vae":
        return VAE(encoder, decoder, latent_dim, config)
    return VAEAS(encoder, decoder, latent_dim, num_classes, target, lam, head_hidden, head,
                 target_entropy, config)


def model_from_config(config: dict[str, Any]) -> VAE:
    """Rebuild a model (untrained) from ``model.config``."""
    if config.get("model") == "linear":
        kw = {k: v for k, v in config.items() if k != "model"}
        return LinearVAE(**kw)
    return build_model(**config)
