"""Datasets as tensors on a device: MNIST, Omniglot 28x28 and the sentence corpora.

Everything the rest of the package needs from the data lives here (the files themselves are
found, checked, downloaded, cached and read by :mod:`vaeas.datasets` and :mod:`vaeas.corpora`):

* :func:`load_dataset` is the entry point: ``"mnist"``, ``"omniglot"``, ``"synthetic"`` (the
  synthetic corpus of He et al. 2019) or ``"text"`` (a user's own corpus). It returns a
  :class:`Dataset` of three :class:`Split` objects whose tensors already sit on the requested
  device.
* :func:`batches` iterates over a split by index (no ``DataLoader``, no per-sample Python) and
  binarizes the grey training images afresh for every batch (dynamic binarization).
* :func:`binarize_fixed` (or :meth:`Split.fixed_x`) is the deterministic binarization used for
  validation and test, so that every run, on every device, is evaluated on the same bits.
* :func:`gaussian_dataset` is the Gaussian data of the linear-VAE experiment.

Images are flattened to 784 float32 values in ``[0, 1]`` where 1 means "ink": MNIST digits are
bright on black already, Omniglot strokes are inverted so that strokes are 1 and paper is 0.
Sentences are ``(N, T)`` int64 token ids ``<bos> w1 .. wL <eos>`` right-padded with ``<pad>`` = 0.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .corpora import SYNTHETIC_SEED, SYNTHETIC_SIZES, TEXT_MAX_LEN, TEXT_MAX_VOCAB, synthetic_corpus, text_corpus
from .datasets import DataError, find_root, mnist_tensors, omniglot_tensors, relative_source

# DataError and find_root are re-exported from vaeas.datasets (documented there)
__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "batches",
    "binarize_fixed",
    "gaussian_dataset",
    "load_dataset",
]

DATASETS: tuple[str, ...] = ("mnist", "omniglot", "synthetic", "text")
"""Names accepted by :func:`load_dataset`."""

#: Seeds of the fixed binarization of the validation and test images. They do not depend on the
#: ``seed`` of :func:`load_dataset`, so runs with different seeds are scored on the same bits.
_VAL_BINARIZE_SEED = 1_000_003
_TEST_BINARIZE_SEED = 2_000_003

_MNIST_VAL_SIZE = 5_000
_OMNIGLOT_TRAIN_DRAWERS = 15  # drawers 1..15 -> train (+ val), 16..20 -> test
_OMNIGLOT_VAL_SIZE = 2_000


# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------


@dataclass
class Split:
    """One split (train, val or test) of a dataset, held as whole tensors on one device.

    Attributes:
        x: images: ``(N, 784)`` float32 in ``[0, 1]``, 1 = ink; grey intensities for the training
            split (binarize per batch), already binarized ``{0, 1}`` for validation and test.
            Sentences: ``(N, T)`` int64 token ids, right-padded with 0.
        y: ``(N,)`` int64 class label (MNIST digit 0..9, Omniglot character id 0..1622, mixture
            component 0..3 of the synthetic corpus, 0 for a text corpus).
        index: ``(N,)`` int64 position of each item within this split, ``0..N-1``; for the
            training split it is the "instance" target.
        binarized: True when ``x`` is used as it is (fixed bits of validation and test, tokens,
            real values), False when ``x`` is grey and :func:`batches` should binarize it.
        extra: further per-item tensors of shape ``(N, ...)``, e.g. ``{"alphabet": (N,),
            "drawer": (N,)}`` for Omniglot, ``{"true_z": (N, 2)}`` for the synthetic corpus,
            ``{}`` for MNIST.
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    binarized: bool
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.dim() != 2:
            raise ValueError(f"Split.x must be (N, D), got shape {tuple(self.x.shape)}")
        for key, value in {"y": self.y, "index": self.index}.items():
            if value.shape != (n,):
                raise ValueError(f"Split.{key} must have shape ({n},), got {tuple(value.shape)}")
        for key, value in self.extra.items():
            if value.dim() < 1 or value.shape[0] != n:
                raise ValueError(
                    f"Split.extra['{key}'] must have shape ({n}, ...), got {tuple(value.shape)}"
                )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def device(self) -> torch.device:
        """The device all tensors of this split live on."""
        return self.x.device

    def to(self, device: str | torch.device) -> Split:
        """Return a copy with every tensor moved to ``device`` (no copy when already there)."""
        device = torch.device(device)
        return Split(
            x=self.x.to(device),
            y=self.y.to(device),
            index=self.index.to(device),
            binarized=self.binarized,
            extra={k: v.to(device) for k, v in self.extra.items()},
        )

    def fixed_x(self, seed: int, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``idx`` of ``x`` (all rows by default) as fixed data to score a model on.

        A grey split is binarized by :func:`binarize_fixed` with ``seed`` (the bits are drawn
        for the selected rows in the given order, so the same ``(seed, idx)`` always give the
        same bits, and ``idx = 0..n-1`` gives the first ``n`` rows of ``fixed_x(seed)``); a split
        with ``binarized=True`` (fixed bits, tokens, real values) is returned as it is.

        Args:
            seed: seed of the binarization (ignored when ``binarized``).
            idx: ``(M,)`` int64 row indices on any device, or None for all rows.

        Returns:
            ``(M, D)`` tensor on the split's device (float32 bits for a grey split).
        """
        x = self.x if idx is None else self.x[idx.to(self.x.device)]
        return x if self.binarized else binarize_fixed(x, seed)


@dataclass
class Dataset:
    """A dataset split three ways, every tensor on one device.

    Attributes:
        name: ``"mnist"``, ``"omniglot"``, ``"synthetic"``, ``"text"`` (or ``"gaussian"``...).
        train, val, test: the three :class:`Split` objects.
        num_classes: 10 for MNIST, 1623 for Omniglot (characters), 4 for the synthetic corpus
            (mixture components), 1 for a text corpus.
        source: the folder or file the data were read from (relative to the working directory
            when it lies below it or beside it), or how they were generated; for messages and
            ``config.json``.
        image_shape: ``(C, H, W)`` of one image; ``x.view(-1, *image_shape)`` restores images.
            For sentences it is ``(1, 1, T)``: a sentence is a 1 x T "image" of token ids.
        kind: ``"image"`` or ``"sequence"``.
        vocab: for sequences, the token of every id (``0 = "<pad>"``, ``1 = "<bos>"``,
            ``2 = "<eos>"``, ``3 = "<unk>"``, then the words); None for images.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    source: str
    image_shape: tuple[int, int, int] = (1, 28, 28)
    kind: str = "image"
    vocab: list[str] | None = None

    def to(self, device: str | torch.device) -> Dataset:
        """Return a copy with all three splits on ``device``."""
        return Dataset(
            name=self.name,
            train=self.train.to(device),
            val=self.val.to(device),
            test=self.test.to(device),
            num_classes=self.num_classes,
            source=self.source,
            image_shape=self.image_shape,
            kind=self.kind,
            vocab=self.vocab,
        )

    def label_entropy(self) -> float:
        """Empirical entropy ``H(c)`` in nats of the training labels (``log 10`` ~ 2.30 at most
        for MNIST, ``log 1623`` ~ 7.39 at most for Omniglot, ``log 4`` for the synthetic
        corpus, 0 for a text corpus)."""
        counts = torch.bincount(self.train.y.cpu(), minlength=self.num_classes).double()
        p = counts[counts > 0] / counts.sum()
        return float(-(p * p.log()).sum())


# --------------------------------------------------------------------------------------------
# Batches and binarization
# --------------------------------------------------------------------------------------------


def binarize_fixed(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Binarize ``x`` deterministically: pixel ``i`` becomes 1 with probability ``x[i]``.

    The uniform draws come from a CPU ``torch.Generator`` seeded with ``seed``, so the same
    ``(x, seed)`` give the same bits on every device and every run; the result is moved back to
    ``x``'s device.

    Args:
        x: float tensor of any shape with values in ``[0, 1]``.
        seed: seed of the CPU generator.

    Returns:
        float32 tensor of ``x``'s shape and device with values in ``{0, 1}``.
    """
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    x_cpu = x.detach().to("cpu", torch.float32)
    u = torch.rand(x_cpu.shape, generator=generator, dtype=torch.float32)
    return (u < x_cpu).to(torch.float32).to(x.device)


def batches(
    split: Split,
    batch_size: int,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    binarize: bool | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Iterate once over ``split`` in minibatches, on the split's device.

    The order is a ``torch.randperm`` drawn on the generator's device (or the split's device when
    ``generator`` is None) when ``shuffle`` is True, and ``0..N-1`` otherwise; every image appears
    exactly once per pass (the last batch is smaller unless ``drop_last``).

    Args:
        split: the split to iterate over.
        batch_size: images per batch (> 0).
        shuffle: draw a fresh random order for this pass.
        generator: random source for the order and for binarization; with the same seed the
            batches are identical. For binarization it should live on the split's device (a
            generator on another device still works, at the cost of a transfer per batch).
        binarize: draw ``x = bernoulli(x)`` per batch; defaults to ``not split.binarized``
            (training images are binarized afresh, validation/test already are).
        drop_last: skip the final incomplete batch.

    Yields:
        ``(x, y, index)``: ``(B, 784)`` float32, ``(B,)`` int64 labels, ``(B,)`` int64 positions
        within the split.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(split)
    device = split.x.device
    if binarize is None:
        binarize = not split.binarized
    if shuffle:
        order_device = generator.device if generator is not None else device
        order = torch.randperm(n, generator=generator, device=order_device).to(device)
    else:
        order = torch.arange(n, device=device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        x = split.x[idx]
        if binarize:
            if generator is None or generator.device == device:
                x = torch.bernoulli(x, generator=generator)
            else:
                u = torch.rand(x.shape, generator=generator, device=generator.device)
                x = (u.to(device) < x).to(x.dtype)
        yield x, split.y[idx], split.index[idx]


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _make_split(
    pixels: torch.Tensor,
    y: torch.Tensor,
    extra: dict[str, torch.Tensor],
    binarize_seed: int | None,
    limit: int | None,
) -> Split:
    """Build a split from ``(N, 784)`` uint8 pixels 0..255.

    With ``binarize_seed`` the images are binarized by :func:`binarize_fixed` (before ``limit``
    applies, so the first images get the same bits with or without ``limit``); without it they
    stay grey.
    """
    if binarize_seed is None:
        pixels = pixels[:limit]
        x = pixels.to(torch.float32).div_(255.0)
    else:
        x = binarize_fixed(pixels.to(torch.float32).div_(255.0), binarize_seed)[:limit]
    y = y[:limit]
    return Split(
        x=x.contiguous(),
        y=y.contiguous(),
        index=torch.arange(len(x), dtype=torch.int64),
        binarized=binarize_seed is not None,
        extra={k: v[:limit].contiguous() for k, v in extra.items()},
    )


def _load_mnist(
    root: pathlib.Path,
    val_size: int | None,
    limit: int | None,
    cache_dir: str | os.PathLike[str] | None,
) -> Dataset:
    payload = mnist_tensors(root, cache_dir)
    val_size = _MNIST_VAL_SIZE if val_size is None else int(val_size)
    n_train = payload["train_x"].shape[0]
    if not 0 <= val_size < n_train:
        raise DataError(f"val_size must be in [0, {n_train}), got {val_size}")
    cut = n_train - val_size
    train_x, train_y = payload["train_x"], payload["train_y"]
    return Dataset(
        name="mnist",
        train=_make_split(train_x[:cut], train_y[:cut], {}, None, limit),
        val=_make_split(train_x[cut:], train_y[cut:], {}, _VAL_BINARIZE_SEED, limit),
        test=_make_split(payload["test_x"], payload["test_y"], {}, _TEST_BINARIZE_SEED, limit),
        num_classes=10,
        source=relative_source(root),
    )


def _load_omniglot(
    root: pathlib.Path,
    val_size: int | None,
    seed: int,
    limit: int | None,
    cache_dir: str | os.PathLike[str] | None,
    expect_full: bool,
) -> Dataset:
    payload = omniglot_tensors(root, cache_dir, expect_full)
    drawer = payload["drawer"]
    pool = torch.nonzero(drawer <= _OMNIGLOT_TRAIN_DRAWERS).squeeze(1)
    test_idx = torch.nonzero(drawer > _OMNIGLOT_TRAIN_DRAWERS).squeeze(1)
    val_size = _OMNIGLOT_VAL_SIZE if val_size is None else int(val_size)
    if not 0 <= val_size < len(pool):
        raise DataError(f"val_size must be in [0, {len(pool)}), got {val_size}")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    held_out = torch.zeros(len(pool), dtype=torch.bool)
    held_out[torch.randperm(len(pool), generator=generator)[:val_size]] = True
    train_idx, val_idx = pool[~held_out], pool[held_out]  # both stay in file order

    def part(idx: torch.Tensor, fixed_seed: int | None) -> Split:
        extra = {"alphabet": payload["alphabet"][idx], "drawer": drawer[idx]}
        return _make_split(payload["x"][idx], payload["y"][idx], extra, fixed_seed, limit)

    return Dataset(
        name="omniglot",
        train=part(train_idx, None),
        val=part(val_idx, _VAL_BINARIZE_SEED),
        test=part(test_idx, _TEST_BINARIZE_SEED),
        num_classes=int(payload["num_classes"]),
        source=relative_source(root),
    )


# --------------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------------


def _token_split(
    x: torch.Tensor, y: torch.Tensor, extra: dict[str, torch.Tensor], limit: int | None
) -> Split:
    """A split of ``(N, T)`` int64 token ids, used as they are (``binarized=True``)."""
    x = x[:limit].contiguous()
    return Split(
        x=x,
        y=y[:limit].contiguous(),
        index=torch.arange(len(x), dtype=torch.int64),
        binarized=True,
        extra={k: v[:limit].contiguous() for k, v in extra.items()},
    )


def _load_synthetic(
    val_size: int | None,
    limit: int | None,
    cache_dir: str | os.PathLike[str] | None,
    corpus_seed: int | None,
) -> Dataset:
    seed = SYNTHETIC_SEED if corpus_seed is None else int(corpus_seed)
    n_train, n_val, n_test = SYNTHETIC_SIZES
    corpus = synthetic_corpus(seed, (n_train, n_val if val_size is None else val_size, n_test),
                              cache_dir)

    def part(split: str) -> Split:
        extra = {"true_z": corpus[f"{split}_true_z"]}
        return _token_split(corpus[f"{split}_x"], corpus[f"{split}_y"], extra, limit)

    return Dataset(
        name="synthetic", train=part("train"), val=part("val"), test=part("test"), num_classes=4,
        source=f"generated (He et al. 2019 synthetic corpus, corpus_seed={seed})",
        image_shape=(1, 1, int(corpus["train_x"].shape[1])), kind="sequence",
        vocab=corpus["vocab"],
    )


def _load_text(
    text_file: str | os.PathLike[str] | None,
    max_len: int | None,
    max_vocab: int,
    too_long: str,
    limit: int | None,
) -> Dataset:
    if text_file is None:
        raise DataError(
            "dataset 'text' needs text_file=... (CLI: --text-file): one file with one sentence "
            "per line, or a folder with train.txt, valid.txt and test.txt"
        )
    max_len = TEXT_MAX_LEN if max_len is None else max_len
    corpus = text_corpus(text_file, max_len, max_vocab, too_long)

    def part(split: str) -> Split:
        x = corpus[f"{split}_x"]
        return _token_split(x, torch.zeros(len(x), dtype=torch.int64), {}, limit)

    return Dataset(
        name="text", train=part("train"), val=part("val"), test=part("test"), num_classes=1,
        source=corpus["source"], image_shape=(1, 1, int(corpus["train_x"].shape[1])),
        kind="sequence", vocab=corpus["vocab"],
    )


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

#: The options of :func:`load_dataset` that each dataset accepts (besides the common ones).
_OPTIONS: dict[str, tuple[str, ...]] = {
    "mnist": ("root", "val_size"),
    "omniglot": ("root", "val_size"),
    "synthetic": ("val_size", "corpus_seed"),
    "text": ("text_file", "max_len"),
}


def _check_name(name: str, **options: Any) -> str:
    """The lower-case name; a :class:`~vaeas.datasets.DataError` for an unknown name or an option (given as
    not None) that does not apply to it."""
    key = str(name).lower()
    if key not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose from {', '.join(DATASETS)}")
    wrong = [k for k, v in options.items() if v is not None and k not in _OPTIONS[key]]
    if wrong:
        raise DataError(
            f"{', '.join(wrong)} does not apply to dataset '{key}' "
            f"(it takes {', '.join(_OPTIONS[key])})"
        )
    return key


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    val_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    text_file: str | os.PathLike[str] | None = None,
    max_len: int | None = None,
    *,
    max_vocab: int = TEXT_MAX_VOCAB,
    too_long: str = "error",
    corpus_seed: int | None = None,
    _expect_full: bool = True,
) -> Dataset:
    """Load ``"mnist"``, ``"omniglot"``, ``"synthetic"`` or ``"text"`` as a :class:`Dataset`.

    MNIST: the first 55,000 training images are ``train`` (grey), the last ``val_size`` (5,000)
    are ``val``, the 10,000 test images are ``test``. Omniglot (28x28, strokes = 1): drawers 1-15
    are the 24,345-image training pool, of which a random ``val_size`` (2,000, drawn with
    ``seed``) are held out as ``val``; drawers 16-20 (8,115 images) are ``test``. ``val`` and
    ``test`` are binarized once by :func:`binarize_fixed` with fixed seeds (independent of
    ``seed``); ``train`` stays grey for dynamic binarization by :func:`batches`. The source files
    are verified and parsed into a cache under ``cache_dir`` (see :mod:`vaeas.datasets`).

    ``"synthetic"``: the corpus of He et al. (2019, section 5.1), generated from ``corpus_seed``
    (default 783435; ``seed`` does not change it): 20,000 train, ``val_size`` (5,000) val and
    10,000 test sentences, ``x`` ``(N, 12)`` = ``<bos>`` + 10 words + ``<eos>``, ``y`` the
    mixture component (4 classes), ``extra["true_z"]`` ``(N, 2)`` the latent that generated it;
    see :func:`vaeas.corpora.synthetic_corpus`. ``"text"``: a user's corpus ``text_file`` (one
    file split 80/10/10 by a fixed permutation, or a folder with train.txt, valid.txt,
    test.txt), ``x`` ``(N, max_len + 2)``, ``y`` zeros (1 class); see
    :func:`vaeas.corpora.text_corpus`. Sentences have ``kind="sequence"``, a ``vocab`` and
    ``image_shape = (1, 1, T)``.

    Args:
        name: a name in :data:`DATASETS` (case-insensitive).
        root: folder holding ``MNIST/raw`` or ``omniglot-py``; see :func:`vaeas.datasets.find_root`.
        device: where to put the tensors (``"auto"`` is resolved by callers, not here).
        val_size: size of the validation split (default 5000 for MNIST and the synthetic
            corpus, 2000 for Omniglot).
        seed: seed of Omniglot's validation draw (the other splits are fixed).
        limit: keep only the first ``limit`` items of each split (fast tests and notebooks).
        cache_dir: folder of the processed cache (default ``./data/processed``).
        text_file: the ``"text"`` corpus (file or folder).
        max_len, max_vocab, too_long: ``"text"``: the most words per sentence (default 50),
            words kept besides the four special tokens (20,000), and what a longer sentence
            does: ``"error"`` (default), ``"truncate"`` or ``"drop"``.
        corpus_seed: ``"synthetic"``: the seed the corpus is generated from.

    Raises:
        DataError: unknown name, an option that does not apply to the dataset, data not found,
            truncated/corrupt files, wrong counts, or a bad text corpus.
    """
    key = _check_name(name, root=root, val_size=val_size, text_file=text_file, max_len=max_len,
                      corpus_seed=corpus_seed)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if key == "synthetic":
        dataset = _load_synthetic(val_size, limit, cache_dir, corpus_seed)
    elif key == "text":
        dataset = _load_text(text_file, max_len, max_vocab, too_long, limit)
    elif key == "mnist":
        dataset = _load_mnist(find_root(key, root), val_size, limit, cache_dir)
    else:
        dataset = _load_omniglot(
            find_root(key, root), val_size, seed, limit, cache_dir, _expect_full
        )
    return dataset.to(device)


# --------------------------------------------------------------------------------------------
# Gaussian data
# --------------------------------------------------------------------------------------------


def gaussian_dataset(
    eigenvalues: Sequence[float],
    n_train: int = 20_000,
    n_val: int = 2_000,
    n_test: int = 5_000,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Dataset:
    """Zero-mean Gaussian data ``x ~ N(0, U diag(eigenvalues) U^T)`` with a random rotation ``U``.

    The data of the linear-VAE experiment (Lucas et al. 2019): the covariance spectrum is known,
    so which latent dimensions collapse can be predicted exactly (see
    :func:`vaeas.models.linear_vae_kl_per_dim`). ``x`` is real-valued, so every split is marked
    ``binarized=True`` ("use ``x`` as it is"); labels are all 0.

    Returns:
        a :class:`Dataset` named ``"gaussian"`` with ``x`` of shape ``(N, len(eigenvalues))``.
    """
    eig = torch.as_tensor(list(eigenvalues), dtype=torch.float64)
    if eig.dim() != 1 or len(eig) < 1 or bool((eig <= 0).any()):
        raise ValueError("eigenvalues must be a non-empty list of positive numbers")
    d = len(eig)
    gen = torch.Generator().manual_seed(int(seed))
    u, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    scale = u * eig.sqrt()  # x = U diag(sqrt(eig)) e

    def split(n: int) -> Split:
        e = torch.randn(n, d, generator=gen, dtype=torch.float64)
        x = (e @ scale.T).float()
        zeros = torch.zeros(n, dtype=torch.int64)
        return Split(x, zeros, torch.arange(n), binarized=True)

    ds = Dataset("gaussian", split(n_train), split(n_val), split(n_test), num_classes=1,
                 source="synthetic", image_shape=(1, 1, d))
    return ds.to(device)
