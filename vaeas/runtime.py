"""Where and how a run executes: the device it runs on and how its process reuses memory.

:func:`resolve_device` turns ``"auto"``/``"cpu"``/``"cuda"``/``"mps"`` into a :class:`torch.device`
with one clear error for a device this machine lacks; :func:`keep_freed_memory` stops glibc from
handing a training step's buffers back to the kernel after every step. Both are re-exported by
:mod:`vaeas.train`, which uses them.
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch

__all__ = ["keep_freed_memory", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else Apple MPS, else CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but MPS is not available; use --device cpu or auto")
    return dev


def keep_freed_memory() -> bool:
    """Let glibc's ``malloc`` keep freed memory in the process; True when it applied.

    By default glibc serves a block over 128 KiB with its own ``mmap`` and unmaps it on ``free``,
    and gives the top of the heap back to the kernel once 128 KiB of it is free (both thresholds
    adapt, but not to a training step's pattern). A step allocates and frees the same activation
    buffers every time, so every step then page-faults megabytes back in and has the kernel zero
    them. This sets ``M_MMAP_THRESHOLD`` to 32 MiB (glibc's maximum) and ``M_TRIM_THRESHOLD`` to
    1 GiB with ``mallopt``: freed buffers are reused, and the process holds at most its peak.
    On one CPU thread a step of the LSTM VAE (``B, T, V = 64, 11, 1000``) then takes 11 ms instead
    of 14.5 (the MADE VAE's, compute-bound, is unchanged); ``benchmarks/allocator.py`` prints the
    table. The numbers computed do not change.

    Called by :meth:`vaeas.train.Trainer.fit` and the command line; a no-op (False) where the C library is not
    glibc (macOS, Windows, musl) or when the environment has ``VAEAS_MALLOC=default``.
    Idempotent.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED is None:
        _MALLOC_TUNED = os.environ.get("VAEAS_MALLOC", "") != "default" and _mallopt_glibc()
    return _MALLOC_TUNED


def _mallopt_glibc() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: leave them alone
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30))


_MALLOC_TUNED: bool | None = None
