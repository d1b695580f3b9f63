"""The auxiliary classifiers ``r(c|z)`` of VAE-AS (:class:`vaeas.models.VAEAS`), in nats.

* :class:`SoftmaxHead`: a dense softmax over ``C`` classes (the label target);
* :class:`TwoLevelSoftmaxHead`: an exactly normalised class-factored softmax for ``C`` in the tens
  of thousands (the instance target), optionally with sparse row gradients;
* :class:`Classifier`: optional hidden layer + one of the two heads;
* :func:`batch_nll`: the weightless critic of the batch target, ``r(n | z_i) ∝ q(z_i | x_n)``.

Also home of ``ACTIVATIONS``, the activation table :mod:`vaeas.models` shares.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .distributions import log_q_matrix

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
}


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

    def sparse_parameters(self) -> list[nn.Parameter]:
        return []


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

    With ``sparse=True`` (what :class:`~vaeas.models.VAEAS` uses) :meth:`nll` reads the per-class ``weight`` and
    ``bias`` rows through ``F.embedding(..., sparse=True)``, so their gradients are sparse and
    :meth:`sparse_parameters` lists them for ``torch.optim.SparseAdam``: a row's value and Adam
    moments then change only on the steps where a sample of its group was in the batch.
    """

    def __init__(self, in_dim: int, num_classes: int, sparse: bool = False):
        super().__init__()
        self.num_classes, self.sparse = num_classes, sparse
        self.k = math.ceil(math.sqrt(num_classes))
        self.groups = math.ceil(num_classes / self.k)
        self.group_fc = nn.Linear(in_dim, self.groups)
        slots = self.groups * self.k
        self.weight = nn.Parameter(torch.randn(slots, in_dim) / math.sqrt(in_dim))
        self.bias = nn.Parameter(torch.zeros(slots, 1))  # 2-D so that F.embedding can read it
        valid = torch.arange(slots) < num_classes
        self.register_buffer("pad", torch.where(valid, 0.0, float("-inf")).view(self.groups, self.k))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        bias = state_dict.get(prefix + "bias")
        if bias is not None and bias.dim() == 1:  # checkpoints written before the bias became 2-D
            state_dict[prefix + "bias"] = bias[:, None]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _within(self, h: Tensor, a: Tensor) -> Tensor:
        """log r(b | a, z) for every b in group a: ``(B, K)``."""
        rows = a[:, None] * self.k + torch.arange(self.k, device=a.device)  # (B, K)
        # gather the group's weight rows; an elementwise product beats B tiny matmuls (bmm) on CPUs
        w = F.embedding(rows, self.weight, sparse=self.sparse)  # (B, K, D)
        bias = F.embedding(rows, self.bias, sparse=self.sparse).squeeze(-1)  # (B, K)
        logits = (w * h[:, None, :]).sum(-1) + bias + self.pad[a]
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

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The per-class rows, when their gradients are sparse: ``[weight, bias]`` or ``[]``."""
        return [self.weight, self.bias] if self.sparse else []


class Classifier(nn.Module):
    """The auxiliary classifier ``r(c|z)`` of VAE-AS: optional hidden layer, then a softmax head.

    ``head="auto"`` picks the dense softmax for ``C <= 2048`` classes and the exact two-level
    softmax (:class:`TwoLevelSoftmaxHead`, with sparse row gradients if ``sparse``) above that.
    """

    def __init__(self, latent_dim: int, num_classes: int, hidden: int | None = None,
                 head: str = "auto", activation: str = "relu", sparse: bool = False):
        super().__init__()
        if head == "auto":
            head = "dense" if num_classes <= 2048 else "two_level"
        if head not in ("dense", "two_level"):
            raise ValueError(f"unknown classifier head {head!r}; choose auto, dense or two_level")
        self.head_kind = head
        self.body: nn.Module = (nn.Sequential(nn.Linear(latent_dim, hidden), ACTIVATIONS[activation]())
                                if hidden else nn.Identity())
        width = hidden or latent_dim
        self.head = (SoftmaxHead(width, num_classes) if head == "dense"
                     else TwoLevelSoftmaxHead(width, num_classes, sparse))

    def nll(self, z: Tensor, c: Tensor) -> Tensor:
        """Cross-entropy -log r(c|z): ``z (B, D), c (B,) -> (B,)``, nats."""
        return self.head.nll(self.body(z), c)

    def log_prob_all(self, z: Tensor) -> Tensor:
        """log r(c|z) for all classes: ``(B, C)``."""
        return self.head.log_prob_all(self.body(z))

    def sparse_parameters(self) -> list[nn.Parameter]:
        return self.head.sparse_parameters()



def batch_nll(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Cross-entropy of the batch target: ``-log softmax_n log q(z_i | x_n)`` at ``n = i``: ``(B,)``.

    ``z (B, D)`` are codes drawn from the posteriors ``mu, logvar (B, D)`` of the same batch; the
    critic ``r(n | z_i) = q(z_i | x_n) / sum_m q(z_i | x_m)`` has no weights (InfoNCE with the
    encoder as critic), so ``log B - mean CE`` is a lower bound on ``I(x; z)`` that cannot exceed
    ``log B`` (He et al. 2019's minibatch MI estimator).
    """
    return -F.log_softmax(log_q_matrix(z, mu, logvar), dim=1).diagonal()
