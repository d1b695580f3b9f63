"""Datasets as tensors on a device: MNIST and Omniglot 28x28.

Everything the rest of the package needs from the data lives here:

* :func:`find_root` looks a dataset up (explicit ``root`` -> ``$VAEAS_DATA`` -> ``./data`` ->
  download into ``./data`` when online) and raises :class:`DataError` with a one-line message
  when it cannot.
* :func:`load_dataset` verifies the source files, parses them once into a small cache under
  ``./data/processed`` (rebuilt whenever the source changes) and returns a :class:`Dataset` of
  three :class:`Split` objects whose tensors already sit on the requested device.
* :func:`batches` iterates over a split by index (no ``DataLoader``, no per-sample Python) and
  binarizes the grey training images afresh for every batch (dynamic binarization).
* :func:`binarize_fixed` is the deterministic binarization used for validation and test, so
  that every run, on every device, is evaluated on the same bits.

Images are flattened to 784 float32 values in ``[0, 1]`` where 1 means "ink": MNIST digits are
bright on black already, Omniglot strokes are inverted so that strokes are 1 and paper is 0.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import re
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DataError",
    "Dataset",
    "Split",
    "batches",
    "binarize_fixed",
    "find_root",
    "load_dataset",
]

DATASETS: tuple[str, ...] = ("mnist", "omniglot")
"""Names accepted by :func:`load_dataset`."""

#: Bump when the layout of the processed cache files changes; old caches are then rebuilt.
_CACHE_FORMAT = 1

#: Seeds of the fixed binarization of the validation and test images. They do not depend on the
#: ``seed`` of :func:`load_dataset`, so runs with different seeds are scored on the same bits.
_VAL_BINARIZE_SEED = 1_000_003
_TEST_BINARIZE_SEED = 2_000_003

_MNIST_FILES: dict[str, tuple[int, str]] = {
    # file name: (size in bytes, md5)
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}
_MNIST_VAL_SIZE = 5_000

_OMNIGLOT_HALVES: tuple[str, ...] = ("images_background", "images_evaluation")
_OMNIGLOT_CHARACTERS: dict[str, int] = {"images_background": 964, "images_evaluation": 659}
_OMNIGLOT_DRAWERS = 20
_OMNIGLOT_TRAIN_DRAWERS = 15  # drawers 1..15 -> train (+ val), 16..20 -> test
_OMNIGLOT_VAL_SIZE = 2_000
_OMNIGLOT_SIZE = 105
_OMNIGLOT_FILE = re.compile(r"^(\d+)_(\d+)\.png$")
_CHUNK = 1024  # PNGs decoded and resized at a time

_HINTS: dict[str, str] = {
    "mnist": (
        "set VAEAS_DATA=/path/containing/MNIST or pass root=..., "
        "or put the files under ./data/MNIST/raw"
    ),
    "omniglot": (
        "set VAEAS_DATA=/path/containing/omniglot-py or pass root=..., or put the folders "
        "under ./data/omniglot-py/images_background and ./data/omniglot-py/images_evaluation"
    ),
}


class DataError(Exception):
    """A problem with the data that the user can fix (missing, truncated or corrupt files).

    The message is always a single line that names the file or folder concerned and says what to
    do about it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------


@dataclass
class Split:
    """One split (train, val or test) of a dataset, held as whole tensors on one device.

    Attributes:
        x: ``(N, 784)`` float32 in ``[0, 1]``, 1 = ink. Grey intensities for the training split
            (binarize per batch), already binarized ``{0, 1}`` for validation and test.
        y: ``(N,)`` int64 class label (MNIST digit 0..9, Omniglot character id 0..1622).
        index: ``(N,)`` int64 position of each image within this split, ``0..N-1``; for the
            training split it is the "instance" target.
        binarized: True when ``x`` holds fixed bits (validation and test), False when ``x`` is
            grey and :func:`batches` should binarize it (training).
        extra: further ``(N,)`` int64 per-image tensors, e.g. ``{"alphabet": ..., "drawer": ...}``
            for Omniglot; ``{}`` for MNIST.
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
        tensors = {"y": self.y, "index": self.index, **self.extra}
        for key, value in tensors.items():
            if value.shape != (n,):
                raise ValueError(f"Split.{key} must have shape ({n},), got {tuple(value.shape)}")

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


@dataclass
class Dataset:
    """A dataset split three ways, every tensor on one device.

    Attributes:
        name: ``"mnist"`` or ``"omniglot"``.
        train, val, test: the three :class:`Split` objects.
        num_classes: 10 for MNIST, 1623 for Omniglot (characters).
        source: the folder the files were read from (relative to the working directory when it
            lies below it or beside it), for messages and ``config.json``.
        image_shape: ``(C, H, W)`` of one image; ``x.view(-1, *image_shape)`` restores images.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    source: str
    image_shape: tuple[int, int, int] = (1, 28, 28)

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
        )

    def label_entropy(self) -> float:
        """Empirical entropy ``H(c)`` in nats of the training labels (``log 10`` ~ 2.30 at most
        for MNIST, ``log 1623`` ~ 7.39 at most for Omniglot)."""
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
# Lookup
# --------------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    key = str(name).lower()
    if key not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose from {', '.join(DATASETS)}")
    return key


def _mnist_raw(root: pathlib.Path) -> pathlib.Path:
    return root / "MNIST" / "raw"


def _has(name: str, root: pathlib.Path) -> bool:
    """Whether ``root`` holds the (extracted) dataset ``name``."""
    if name == "mnist":
        raw = _mnist_raw(root)
        return all((raw / f).is_file() for f in _MNIST_FILES)
    return all((root / "omniglot-py" / half).is_dir() for half in _OMNIGLOT_HALVES)


def _has_mnist_gz(root: pathlib.Path) -> bool:
    raw = _mnist_raw(root)
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in _MNIST_FILES)


def _extract_mnist_gz(src_root: pathlib.Path, dest_root: pathlib.Path) -> None:
    """Decompress the ``.gz`` archives of ``src_root/MNIST/raw`` into ``dest_root/MNIST/raw``.

    Used when only the archives exist (the source may be read-only). Files already present at the
    destination with the expected size are kept.
    """
    src, dest = _mnist_raw(src_root), _mnist_raw(dest_root)
    dest.mkdir(parents=True, exist_ok=True)
    for fname, (size, _) in _MNIST_FILES.items():
        target = dest / fname
        if target.is_file() and target.stat().st_size == size:
            continue
        source = src / fname
        if source.is_file():
            if source.resolve() != target.resolve():
                shutil.copyfile(source, target)
            continue
        archive = src / f"{fname}.gz"
        tmp = target.with_name(f"{fname}.tmp{os.getpid()}")
        try:
            with gzip.open(archive, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, length=1 << 20)
            os.replace(tmp, target)
        except (OSError, EOFError) as err:
            tmp.unlink(missing_ok=True)
            raise DataError(
                f"cannot extract {archive} into {dest}: {err}; delete it and re-download"
            ) from err


def _download(name: str, dest: pathlib.Path) -> None:
    """Download ``name`` with torchvision into ``dest`` (``dest/MNIST/raw`` or
    ``dest/omniglot-py``). Raises whatever torchvision raises when offline."""
    import torchvision

    dest.mkdir(parents=True, exist_ok=True)
    if name == "mnist":
        for train in (True, False):
            torchvision.datasets.MNIST(str(dest), train=train, download=True)
    else:
        for background in (True, False):
            torchvision.datasets.Omniglot(str(dest), background=background, download=True)


def _default_root() -> pathlib.Path:
    return pathlib.Path("data")


def find_root(
    name: str, root: str | os.PathLike[str] | None = None, *, download: bool = True
) -> pathlib.Path:
    """Find the folder that holds dataset ``name``.

    Lookup order:

    1. ``root`` when given. It must hold the dataset: a ``root`` without it is an error, the
       lookup does not go on elsewhere.
    2. ``$VAEAS_DATA`` when set.
    3. ``./data`` (relative to the working directory).
    4. Download with torchvision into ``./data`` (when ``download`` is True; fails offline).

    A root holds MNIST when ``<root>/MNIST/raw/`` has the four IDX files, and Omniglot when
    ``<root>/omniglot-py/images_background`` and ``images_evaluation`` exist. When a root has only
    the MNIST ``.gz`` archives they are extracted into ``./data/MNIST/raw`` (the root may be
    read-only) and ``./data`` is returned.

    Returns:
        The folder containing ``MNIST/`` or ``omniglot-py/``.

    Raises:
        DataError: unknown name, explicit root without the dataset, or nothing found and the
            download failed (the message names the paths tried).
    """
    name = _check_name(name)
    label = "MNIST" if name == "mnist" else "Omniglot"
    layout = (
        "MNIST/raw/*-ubyte" if name == "mnist" else "omniglot-py/images_{background,evaluation}"
    )
    local = _default_root()

    def resolve(path: pathlib.Path) -> pathlib.Path | None:
        if _has(name, path):
            return path
        if name == "mnist" and _has_mnist_gz(path):
            _extract_mnist_gz(path, local)
            return local
        return None

    if root is not None:
        path = pathlib.Path(root).expanduser()
        found = resolve(path)
        if found is None:
            raise DataError(
                f"no {label} under root='{root}' (expected {path / layout}); "
                f"pass the folder that contains {layout.split('/')[0]}/"
            )
        return found

    tried: list[str] = []
    env = os.environ.get("VAEAS_DATA", "").strip()
    if env:
        path = pathlib.Path(env).expanduser()
        tried.append(f"$VAEAS_DATA={path.absolute()}")
        found = resolve(path)
        if found is not None:
            return found
    tried.append(str(local.absolute()))
    found = resolve(local)
    if found is not None:
        return found

    if not download:
        raise DataError(f"{label} not found (tried {', '.join(tried)}); {_HINTS[name]}")
    try:
        _download(name, local)
    except Exception as err:  # offline, proxy, disk full ...: one line for the user
        raise DataError(
            f"{label} not found (tried {', '.join(tried)}) and the download into "
            f"{local.absolute()} failed ({type(err).__name__}: {err}); {_HINTS[name]}"
        ) from err
    if not _has(name, local):
        raise DataError(
            f"{label} download into {local.absolute()} did not produce {layout}; {_HINTS[name]}"
        )
    return local


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def _cache_path(cache_dir: str | os.PathLike[str] | None, name: str) -> pathlib.Path:
    base = pathlib.Path(cache_dir) if cache_dir is not None else _default_root() / "processed"
    return base / f"{name}.pt"


def _load_cache(path: pathlib.Path, signature: dict[str, Any]) -> dict[str, Any] | None:
    """The cached tensors when ``path`` exists and was built from a source with ``signature``."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or from another version: rebuild
        return None
    if not isinstance(payload, dict) or payload.get("signature") != signature:
        return None
    return payload


def _save_cache(path: pathlib.Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (tmp file + ``os.replace``); warn instead of failing."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"could not write the data cache {path}: {err}", stacklevel=3)


def _relative_source(path: pathlib.Path) -> str:
    """``path`` relative to the working directory when it lies below it or beside it."""
    absolute = path.absolute()
    try:
        rel = os.path.relpath(absolute)
    except ValueError:  # another drive on Windows
        return str(absolute)
    if pathlib.PurePath(rel).parts[:2] == (os.pardir, os.pardir):
        return str(absolute)
    return pathlib.PurePath(rel).as_posix()


# --------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------


def _md5(path: pathlib.Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mnist_check_sizes(raw: pathlib.Path) -> dict[str, Any]:
    """Check the four IDX files' sizes; return the source signature (sizes and mtimes)."""
    signature: dict[str, Any] = {"format": _CACHE_FORMAT}
    for fname, (size, md5) in _MNIST_FILES.items():
        path = raw / fname
        stat = path.stat()
        if stat.st_size != size:
            raise DataError(
                f"{path} is truncated/corrupt: expected {size} bytes / md5 {md5}, "
                f"got {stat.st_size} bytes; delete it and re-download"
            )
        signature[fname] = [int(stat.st_size), int(stat.st_mtime_ns)]
    return signature


def _mnist_check_md5(raw: pathlib.Path) -> None:
    for fname, (size, md5) in _MNIST_FILES.items():
        path = raw / fname
        got = _md5(path)
        if got != md5:
            raise DataError(
                f"{path} is truncated/corrupt: expected {size} bytes / md5 {md5}, "
                f"got md5 {got}; delete it and re-download"
            )


def _mnist_tensors(root: pathlib.Path, cache_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """uint8 images ``(N, 784)`` and int64 labels of the 60k train and 10k test images."""
    raw = _mnist_raw(root)
    signature = _mnist_check_sizes(raw)
    path = _cache_path(cache_dir, "mnist")
    payload = _load_cache(path, signature)
    if payload is not None:
        return payload

    _mnist_check_md5(raw)
    import torchvision

    payload = {"signature": signature}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = torchvision.datasets.MNIST(str(root), train=train, download=False)
        except (RuntimeError, OSError, ValueError) as err:
            raise DataError(f"cannot read MNIST from {raw}: {err}") from err
        payload[f"{split}_x"] = ds.data.reshape(len(ds.data), -1).to(torch.uint8).contiguous()
        payload[f"{split}_y"] = ds.targets.to(torch.int64).contiguous()
    _save_cache(path, payload)
    return payload


def _load_mnist(
    root: pathlib.Path,
    val_size: int | None,
    limit: int | None,
    cache_dir: str | os.PathLike[str] | None,
) -> Dataset:
    payload = _mnist_tensors(root, cache_dir)
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
        source=_relative_source(root),
    )


# --------------------------------------------------------------------------------------------
# Omniglot
# --------------------------------------------------------------------------------------------


def _scan_omniglot(base: pathlib.Path) -> tuple[list[tuple[str, str, str, str]], dict[str, Any]]:
    """Walk ``base/images_{background,evaluation}`` once.

    Returns:
        The sorted entries ``(half, alphabet, character, file name)`` of every ``.png`` and the
        source signature (number of files, total bytes, latest mtime).
    """
    entries: list[tuple[str, str, str, str]] = []
    count = total = latest = 0
    for half in _OMNIGLOT_HALVES:
        with os.scandir(base / half) as alphabets:
            for alphabet in alphabets:
                if alphabet.name.startswith(".") or not alphabet.is_dir():
                    continue
                with os.scandir(alphabet.path) as characters:
                    for character in characters:
                        if character.name.startswith(".") or not character.is_dir():
                            continue
                        with os.scandir(character.path) as files:
                            for f in files:
                                if not f.name.endswith(".png") or not f.is_file():
                                    continue
                                stat = f.stat()
                                count += 1
                                total += stat.st_size
                                latest = max(latest, stat.st_mtime_ns)
                                entries.append((half, alphabet.name, character.name, f.name))
    entries.sort()  # halves sort as background < evaluation
    signature = {"format": _CACHE_FORMAT, "files": count, "bytes": total, "mtime_ns": latest}
    return entries, signature


def _read_png(path: str) -> np.ndarray:
    """A 105x105 Omniglot PNG as a bool array, True = ink (the files have black strokes)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode == "1":
                ink = ~np.asarray(img, dtype=bool)
            else:
                ink = np.asarray(img.convert("L"), dtype=np.uint8) < 128
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError ... on bad files
        raise DataError(
            f"{path} is unreadable/corrupt ({type(err).__name__}: {err}); "
            "delete the Omniglot folders and download them again"
        ) from err
    if ink.shape != (_OMNIGLOT_SIZE, _OMNIGLOT_SIZE):
        raise DataError(
            f"{path} is {ink.shape[1]}x{ink.shape[0]} pixels, expected "
            f"{_OMNIGLOT_SIZE}x{_OMNIGLOT_SIZE}; delete the Omniglot folders and download again"
        )
    return ink


def _read_omniglot_chunk(paths: list[str]) -> torch.Tensor:
    """Read PNGs and shrink them 105 -> 28 (antialiased bilinear).

    Returns:
        ``(len(paths), 784)`` uint8 ink intensities 0..255 (strokes high, paper 0).
    """
    ink = torch.from_numpy(np.stack([_read_png(p) for p in paths]))
    x = ink.unsqueeze(1).to(torch.float32)
    small = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    return small.clamp_(0, 1).mul_(255).round_().to(torch.uint8).reshape(len(paths), 784)


def _omniglot_tensors(
    root: pathlib.Path,
    cache_dir: str | os.PathLike[str] | None,
    expect_full: bool,
) -> dict[str, Any]:
    """uint8 images ``(32460, 784)`` and int64 character, alphabet and drawer of every image."""
    base = root / "omniglot-py"
    entries, signature = _scan_omniglot(base)
    signature["expect_full"] = expect_full
    path = _cache_path(cache_dir, "omniglot")
    payload = _load_cache(path, signature)
    if payload is not None:
        return payload

    # Character and alphabet ids in sorted order: background alphabets, then evaluation ones.
    char_ids: dict[tuple[str, str, str], int] = {}
    alphabet_ids: dict[tuple[str, str], int] = {}
    drawers_seen: dict[tuple[str, str, str], set[int]] = {}
    labels, alphabets, drawers, files = [], [], [], []
    for half, alphabet, character, fname in entries:
        match = _OMNIGLOT_FILE.match(fname)
        if match is None:
            full = base / half / alphabet / character / fname
            raise DataError(f"{full} is not named <ID>_<drawer>.png; remove it")
        drawer = int(match.group(2))
        if not 1 <= drawer <= _OMNIGLOT_DRAWERS:
            full = base / half / alphabet / character / fname
            raise DataError(f"{full} names drawer {drawer}, expected 1..{_OMNIGLOT_DRAWERS}")
        key = (half, alphabet, character)
        char = char_ids.setdefault(key, len(char_ids))
        alpha = alphabet_ids.setdefault((half, alphabet), len(alphabet_ids))
        drawers_seen.setdefault(key, set()).add(drawer)
        labels.append(char)
        alphabets.append(alpha)
        drawers.append(drawer)
        files.append(os.path.join(base, half, alphabet, character, fname))

    for key, seen in drawers_seen.items():
        if len(seen) != _OMNIGLOT_DRAWERS:
            raise DataError(
                f"{base.joinpath(*key)} has drawers {sorted(seen)}, expected "
                f"1..{_OMNIGLOT_DRAWERS} once each; the Omniglot tree is incomplete, download it "
                "again"
            )
    for half, expected in _OMNIGLOT_CHARACTERS.items():
        got = sum(1 for key in char_ids if key[0] == half)
        if got == 0 or (expect_full and got != expected):
            raise DataError(
                f"{base / half} has {got} characters, expected {expected}; "
                "the Omniglot tree is incomplete, download it again"
            )
    if len(files) != len(char_ids) * _OMNIGLOT_DRAWERS:
        raise DataError(
            f"{base} has {len(files)} images for {len(char_ids)} characters, expected "
            f"{_OMNIGLOT_DRAWERS} per character; the Omniglot tree is incomplete"
        )

    # Decoding is the slow part (about 0.15 ms per file, some 7 s in all on two cores). A plain
    # loop over chunks was measured faster than a thread pool (the GIL is held most of the time).
    images = torch.cat(
        [_read_omniglot_chunk(files[i : i + _CHUNK]) for i in range(0, len(files), _CHUNK)]
    )

    payload = {
        "signature": signature,
        "x": images,
        "y": torch.tensor(labels, dtype=torch.int64),
        "alphabet": torch.tensor(alphabets, dtype=torch.int64),
        "drawer": torch.tensor(drawers, dtype=torch.int64),
        "num_classes": len(char_ids),
    }
    _save_cache(path, payload)
    return payload


def _load_omniglot(
    root: pathlib.Path,
    val_size: int | None,
    seed: int,
    limit: int | None,
    cache_dir: str | os.PathLike[str] | None,
    expect_full: bool,
) -> Dataset:
    payload = _omniglot_tensors(root, cache_dir, expect_full)
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
        source=_relative_source(root),
    )


# --------------------------------------------------------------------------------------------
# Entry point
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


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    val_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    _expect_full: bool = True,
) -> Dataset:
    """Load ``"mnist"`` or ``"omniglot"`` as a :class:`Dataset` on ``device``.

    MNIST: the first 55,000 training images are ``train`` (grey), the last ``val_size`` (5,000)
    are ``val``, the 10,000 test images are ``test``. Omniglot (28x28, strokes = 1): drawers 1-15
    are the 24,345-image training pool, of which a random ``val_size`` (2,000, drawn with
    ``seed``) are held out as ``val``; drawers 16-20 (8,115 images) are ``test``. ``val`` and
    ``test`` are binarized once by :func:`binarize_fixed` with fixed seeds (independent of
    ``seed``); ``train`` stays grey for dynamic binarization by :func:`batches`.

    The source files are verified (MNIST: sizes always, MD5s when the cache is built; Omniglot:
    1623 characters with 20 drawers each, every PNG readable) and parsed into a cache under
    ``cache_dir`` (default ``./data/processed``) that is rebuilt when the source changes.

    Args:
        name: ``"mnist"`` or ``"omniglot"`` (case-insensitive).
        root: folder holding ``MNIST/raw`` or ``omniglot-py``; see :func:`find_root`.
        device: where to put the tensors (``"auto"`` is resolved by callers, not here).
        val_size: size of the validation split (default 5000 for MNIST, 2000 for Omniglot).
        seed: seed of Omniglot's validation draw (MNIST's validation split is fixed).
        limit: keep only the first ``limit`` images of each split (fast tests and notebooks).
        cache_dir: folder of the processed cache (default ``./data/processed``).

    Raises:
        DataError: unknown name, data not found, truncated/corrupt files or wrong counts.
    """
    key = _check_name(name)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    found = find_root(key, root)
    if key == "mnist":
        dataset = _load_mnist(found, val_size, limit, cache_dir)
    else:
        dataset = _load_omniglot(found, val_size, seed, limit, cache_dir, _expect_full)
    return dataset.to(device)


# --------------------------------------------------------------------------------------------
# Synthetic data
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
