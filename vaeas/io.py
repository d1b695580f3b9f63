"""Atomic file writes: the one helper every writer of the package uses.

A file is written to a temporary name in its own folder and then renamed over the target with
:func:`os.replace`, so a crash (or Ctrl-C) during the write leaves the previous file intact and a
reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ["atomic_write", "write_bytes", "write_csv", "write_json", "write_text", "save_torch"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a binary temporary file beside ``path``, then rename it to ``path``.

    The parent folder must exist. On any error the temporary file is removed and ``path`` is left
    as it was. Returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(text.encode("utf-8"), path)


def write_json(obj: Any, path: str | os.PathLike, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (with a final newline) to ``path`` atomically."""
    return write_text(json.dumps(obj, indent=indent) + "\n", path)


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write dicts as CSV (columns in order of first appearance) to ``path`` atomically."""
    rows = list(rows)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return write_text(buf.getvalue(), path)


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints, caches)."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))
