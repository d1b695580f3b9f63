"""Files -> tensors: find, check, download, cache and read the image datasets (MNIST, Omniglot).

* :func:`find_root` looks a dataset up (explicit ``root`` -> ``$VAEAS_DATA`` -> ``./data`` ->
  download into ``./data`` with torchvision) and raises :class:`DataError`, one line naming the
  places tried, when it cannot.
* :func:`mnist_tensors` and :func:`omniglot_tensors` check the source files (MNIST: sizes always,
  MD5s when the cache is built; Omniglot: 1623 characters x 20 drawers, every PNG readable) and
  parse them once into a cache under ``./data/processed`` that is rebuilt when the source changes
  (:func:`load_cache`, :func:`save_cache`; every file is written by :func:`vaeas.io.save_torch`).

The sentence corpora (the synthetic corpus of He et al. 2019 and a user's text file) live in
:mod:`vaeas.corpora`, which builds on the helpers here. Everything returns plain CPU tensors in
dicts; :mod:`vaeas.data` turns them into splits on a device.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .io import save_torch

__all__ = [
    "DataError",
    "cache_path",
    "find_root",
    "load_cache",
    "mnist_tensors",
    "omniglot_tensors",
    "relative_source",
    "save_cache",
]

#: Datasets read from files (the others are generated or come from the user's text file).
FILE_DATASETS: tuple[str, ...] = ("mnist", "omniglot")

#: Bump when the layout of the processed cache files changes; old caches are then rebuilt.
_CACHE_FORMAT = 1

_MNIST_FILES: dict[str, tuple[int, str]] = {
    # file name: (size in bytes, md5)
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}

_OMNIGLOT_HALVES: tuple[str, ...] = ("images_background", "images_evaluation")
_OMNIGLOT_CHARACTERS: dict[str, int] = {"images_background": 964, "images_evaluation": 659}
_OMNIGLOT_DRAWERS = 20
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
# Lookup
# --------------------------------------------------------------------------------------------


def _default_root() -> pathlib.Path:
    return pathlib.Path("data")


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

    Used when only the archives exist (the source may be read-only). A file already present at
    the destination with the expected size is kept; a half-written one has the wrong size and is
    extracted again (and the MD5 check catches anything else).
    """
    from torchvision.datasets.utils import extract_archive

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
        try:
            extract_archive(archive, dest)
        except (OSError, EOFError) as err:
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


def _layout(name: str) -> str:
    return "MNIST/raw/*-ubyte" if name == "mnist" else "omniglot-py/images_{background,evaluation}"


def _resolve(name: str, path: pathlib.Path) -> pathlib.Path | None:
    """``path`` when it holds ``name``; ``./data`` after extracting MNIST archives found there."""
    if _has(name, path):
        return path
    if name == "mnist" and _has_mnist_gz(path):
        _extract_mnist_gz(path, _default_root())
        return _default_root()
    return None


def _download_or_fail(name: str, label: str, tried: list[str], download: bool) -> pathlib.Path:
    """The last step of the lookup: download into ``./data`` or raise the one-line error."""
    local = _default_root()
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
            f"{label} download into {local.absolute()} did not produce {_layout(name)}; "
            f"{_HINTS[name]}"
        )
    return local


def find_root(
    name: str, root: str | os.PathLike[str] | None = None, *, download: bool = True
) -> pathlib.Path:
    """Find the folder that holds dataset ``name`` (``"mnist"`` or ``"omniglot"``).

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
    key = str(name).lower()
    if key not in FILE_DATASETS:
        raise DataError(
            f"find_root looks up {', '.join(FILE_DATASETS)}, not '{name}' "
            "(the synthetic corpus is generated, a text corpus is given by text_file=...)"
        )
    label = "MNIST" if key == "mnist" else "Omniglot"
    if root is not None:
        path = pathlib.Path(root).expanduser()
        found = _resolve(key, path)
        if found is None:
            layout = _layout(key)
            raise DataError(
                f"no {label} under root='{root}' (expected {path / layout}); "
                f"pass the folder that contains {layout.split('/')[0]}/"
            )
        return found
    tried: list[str] = []
    env = os.environ.get("VAEAS_DATA", "").strip()
    candidates = [pathlib.Path(env).expanduser()] if env else []
    for path in [*candidates, _default_root()]:
        tried.append(f"$VAEAS_DATA={path.absolute()}" if env and not tried else str(path.absolute()))
        found = _resolve(key, path)
        if found is not None:
            return found
    return _download_or_fail(key, label, tried, download)


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def cache_path(cache_dir: str | os.PathLike[str] | None, name: str) -> pathlib.Path:
    """``<cache_dir>/<name>.pt``; ``cache_dir`` defaults to ``./data/processed``."""
    base = pathlib.Path(cache_dir) if cache_dir is not None else _default_root() / "processed"
    return base / f"{name}.pt"


def load_cache(path: pathlib.Path, signature: dict[str, Any]) -> dict[str, Any] | None:
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


def save_cache(path: pathlib.Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically with :func:`vaeas.io.save_torch`; warn instead of failing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_torch(payload, path)
    except OSError as err:
        warnings.warn(f"could not write the data cache {path}: {err}", stacklevel=3)


def relative_source(path: pathlib.Path) -> str:
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
    from torchvision.datasets.utils import calculate_md5

    for fname, (size, md5) in _MNIST_FILES.items():
        got = calculate_md5(raw / fname)
        if got != md5:
            raise DataError(
                f"{raw / fname} is truncated/corrupt: expected {size} bytes / md5 {md5}, "
                f"got md5 {got}; delete it and re-download"
            )


def mnist_tensors(
    root: pathlib.Path, cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """MNIST as CPU tensors, from the cache when it matches the source files.

    Returns:
        ``train_x`` ``(60000, 784)`` and ``test_x`` ``(10000, 784)`` uint8 pixels 0..255,
        ``train_y`` / ``test_y`` int64 digits, and the source ``signature``.
    """
    raw = _mnist_raw(root)
    signature = _mnist_check_sizes(raw)
    path = cache_path(cache_dir, "mnist")
    payload = load_cache(path, signature)
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
    save_cache(path, payload)
    return payload


# --------------------------------------------------------------------------------------------
# Omniglot (torchvision's class checks the original zips, so the folders are read here)
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
        for alphabet in (base / half).iterdir():
            if alphabet.name.startswith(".") or not alphabet.is_dir():
                continue
            for character in alphabet.iterdir():
                if character.name.startswith(".") or not character.is_dir():
                    continue
                with os.scandir(character) as files:
                    for f in files:
                        if not f.name.endswith(".png") or not f.is_file():
                            continue
                        stat = f.stat()
                        count, total = count + 1, total + stat.st_size
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


def _index_omniglot(
    base: pathlib.Path, entries: list[tuple[str, str, str, str]], expect_full: bool
) -> tuple[dict[str, list[int]], list[str], int]:
    """Character, alphabet and drawer ids of every file (sorted: background, then evaluation),
    after checking the counts. Returns ``(ids, file paths, number of characters)``."""
    char_ids: dict[tuple[str, str, str], int] = {}
    alphabet_ids: dict[tuple[str, str], int] = {}
    seen: dict[tuple[str, str, str], set[int]] = {}
    ids: dict[str, list[int]] = {"y": [], "alphabet": [], "drawer": []}
    files = []
    for half, alphabet, character, fname in entries:
        full = base / half / alphabet / character / fname
        match = _OMNIGLOT_FILE.match(fname)
        if match is None:
            raise DataError(f"{full} is not named <ID>_<drawer>.png; remove it")
        drawer = int(match.group(2))
        if not 1 <= drawer <= _OMNIGLOT_DRAWERS:
            raise DataError(f"{full} names drawer {drawer}, expected 1..{_OMNIGLOT_DRAWERS}")
        key = (half, alphabet, character)
        ids["y"].append(char_ids.setdefault(key, len(char_ids)))
        ids["alphabet"].append(alphabet_ids.setdefault((half, alphabet), len(alphabet_ids)))
        ids["drawer"].append(drawer)
        seen.setdefault(key, set()).add(drawer)
        files.append(str(full))
    for key, drawers in seen.items():
        if len(drawers) != _OMNIGLOT_DRAWERS:
            raise DataError(
                f"{base.joinpath(*key)} has drawers {sorted(drawers)}, expected "
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
    return ids, files, len(char_ids)


def omniglot_tensors(
    root: pathlib.Path,
    cache_dir: str | os.PathLike[str] | None = None,
    expect_full: bool = True,
) -> dict[str, Any]:
    """Omniglot 28x28 as CPU tensors, from the cache when it matches the source tree.

    Returns:
        ``x`` ``(32460, 784)`` uint8 ink 0..255 (strokes high), int64 ``y`` (character
        0..1622), ``alphabet`` (0..49) and ``drawer`` (1..20) of every image, ``num_classes``.
    """
    base = root / "omniglot-py"
    entries, signature = _scan_omniglot(base)
    signature["expect_full"] = expect_full
    path = cache_path(cache_dir, "omniglot")
    payload = load_cache(path, signature)
    if payload is not None:
        return payload
    ids, files, num_classes = _index_omniglot(base, entries, expect_full)
    # Decoding is the slow part (about 0.15 ms per file, some 7 s in all on two cores). A plain
    # loop over chunks was measured faster than a thread pool (the GIL is held most of the time).
    images = torch.cat(
        [_read_omniglot_chunk(files[i : i + _CHUNK]) for i in range(0, len(files), _CHUNK)]
    )
    payload = {"signature": signature, "x": images, "num_classes": num_classes}
    payload.update({k: torch.tensor(v, dtype=torch.int64) for k, v in ids.items()})
    save_cache(path, payload)
    return payload

