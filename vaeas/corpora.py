"""Sentence corpora -> token tensors: the synthetic corpus of He et al. (2019) and a user's text.

* :func:`synthetic_corpus` generates the synthetic corpus of He et al. (2019, section 5.1) from a
  corpus seed (20,000 train / 5,000 val / 10,000 test sentences of 10 words, each with the 2-D
  latent ``z`` and the mixture component that generated it) and caches it under
  ``./data/processed``, keyed by the corpus seed and the sizes.
* :func:`text_corpus` reads a user's own corpus: one file with one sentence per line (split
  80/10/10 into train/val/test by a fixed seeded permutation) or a folder with ``train.txt``,
  ``valid.txt`` and ``test.txt`` (the PTB/Yahoo layout of He et al.).

Token layout, shared by both: the vocabulary starts with :data:`SPECIALS` (``<pad>`` = 0,
``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3); a sentence of ``L`` words becomes the ids
``<bos> w1 .. wL <eos>``, right-padded with ``<pad>`` to ``T = max_len + 2`` tokens. The results
are plain CPU tensors in dicts; :mod:`vaeas.data` turns them into splits on a device.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections import Counter
from typing import Any

import numpy as np
import torch

from .datasets import DataError, cache_path, load_cache, relative_source, save_cache

__all__ = [
    "SPECIALS",
    "SYNTHETIC_CENTRES",
    "SYNTHETIC_SEED",
    "SYNTHETIC_SIZES",
    "TEXT_FILES",
    "synthetic_corpus",
    "text_corpus",
]

#: The first four token ids of every sequence vocabulary.
SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = 0, 1, 2, 3

#: Default corpus seed and (train, val, test) sizes of the synthetic corpus.
SYNTHETIC_SEED = 783_435
SYNTHETIC_SIZES: tuple[int, int, int] = (20_000, 5_000, 10_000)
_CACHE_FORMAT = 1
_SYN_VERSION = 1  # bump when the generator changes; cached corpora are then rebuilt
_SYN_WORDS, _SYN_LENGTH, _SYN_EMBED, _SYN_HIDDEN = 1_000, 10, 100, 100
SYNTHETIC_CENTRES: tuple[tuple[float, float], ...] = ((-2, -2), (2, 2), (-2, 2), (2, -2))

#: Defaults of :func:`text_corpus` and the files of a corpus folder.
TEXT_MAX_LEN = 50
TEXT_MAX_VOCAB = 20_000
TEXT_FILES: tuple[str, str, str] = ("train.txt", "valid.txt", "test.txt")
TOO_LONG: tuple[str, ...] = ("error", "truncate", "drop")
_TEXT_SPLIT_SEED = 0  # the 80/10/10 split of one file is fixed, independent of any run's seed


# --------------------------------------------------------------------------------------------
# The synthetic corpus
# --------------------------------------------------------------------------------------------


def _sub_seed(seed: int, tag: str) -> int:
    """An independent 63-bit seed for the part ``tag`` of the corpus with seed ``seed``."""
    digest = hashlib.sha256(f"vaeas-synthetic:{int(seed)}:{tag}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _synthetic_lm(seed: int) -> dict[str, torch.Tensor]:
    """The randomly initialised generator LSTM: every weight uniform in [-1, 1] except the
    ``z -> vocabulary`` output weights, uniform in [-3, 3] (float64, CPU)."""
    g = torch.Generator().manual_seed(_sub_seed(seed, "lm"))
    v, e, h = _SYN_WORDS, _SYN_EMBED, _SYN_HIDDEN
    shapes = {"embed": (v, e), "w_ih": (4 * h, e + 2), "w_hh": (4 * h, h), "b": (4 * h,),
              "w_c": (h, 2), "b_c": (h,), "w_out": (v, h), "b_out": (v,), "w_zout": (v, 2)}
    lm = {k: torch.rand(s, generator=g, dtype=torch.float64) * 2 - 1 for k, s in shapes.items()}
    lm["w_zout"] *= 3.0
    return lm


def _synthetic_split(lm: dict[str, torch.Tensor], n: int, seed: int) -> dict[str, torch.Tensor]:
    """``n`` sentences generated together, step by step.

    Returns:
        ``x`` ``(n, 10)`` int64 word ids 0..999, ``y`` ``(n,)`` int64 mixture component 0..3,
        ``true_z`` ``(n, 2)`` float32.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(len(SYNTHETIC_CENTRES), (n,), generator=g)
    centres = torch.tensor(SYNTHETIC_CENTRES, dtype=torch.float64)
    z = centres[y] + torch.randn(n, 2, generator=g, dtype=torch.float64)
    c = z @ lm["w_c"].T + lm["b_c"]  # initial cell state: a linear map of z
    h = torch.tanh(c)
    words = [torch.randint(_SYN_WORDS, (n,), generator=g)]  # the first word is uniform
    # The input is [embedding, z]: its gate pre-activations split into a per-word table and a
    # per-sentence constant. z also goes straight into the logits.
    word_gates = lm["embed"] @ lm["w_ih"][:, :_SYN_EMBED].T  # (1000, 4h)
    z_gates = z @ lm["w_ih"][:, _SYN_EMBED:].T + lm["b"]  # (n, 4h)
    z_logits = z @ lm["w_zout"].T + lm["b_out"]  # (n, 1000)
    for _ in range(_SYN_LENGTH - 1):
        gates = word_gates[words[-1]] + z_gates + h @ lm["w_hh"].T
        i, f, cand, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(cand)
        h = torch.sigmoid(o) * torch.tanh(c)
        logits = torch.addmm(z_logits, h, lm["w_out"].T)
        # Inverse-CDF sampling from softmax(logits): one uniform per sentence.
        cdf = (logits - logits.amax(dim=1, keepdim=True)).exp_().cumsum_(dim=1)
        u = torch.rand(n, 1, generator=g, dtype=torch.float64) * cdf[:, -1:]
        words.append(torch.searchsorted(cdf, u, right=True).clamp_(max=_SYN_WORDS - 1).squeeze(1))
    return {"x": torch.stack(words, dim=1), "y": y, "true_z": z.float()}


def synthetic_corpus(
    corpus_seed: int = SYNTHETIC_SEED,
    sizes: tuple[int, int, int] = SYNTHETIC_SIZES,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The synthetic corpus of He et al. (2019, section 5.1), generated from ``corpus_seed``.

    A 2-D latent ``z`` is drawn from an equal mixture of four unit-variance Gaussians centred at
    (-2, -2), (2, 2), (-2, 2) and (2, -2); a randomly initialised one-layer LSTM language model
    (vocabulary 1,000, embedding 100, hidden 100) writes a 10-word sentence from it: its initial
    cell state is a linear map of ``z`` (hidden state = tanh of it), ``z`` is concatenated to
    every input embedding and mapped straight into the logits, the first word is uniform and
    the other nine are sampled from the softmax. Default sizes: 20,000 train, 5,000 val and
    10,000 test sentences. The LSTM and each split have their own generator, so a split does not
    depend on the sizes of the others. Cached under ``cache_dir`` (default ``./data/processed``),
    keyed by the corpus seed and the sizes.

    Returns:
        ``vocab`` (``SPECIALS`` + ``"w0".."w999"``) and per split ``s`` in train/val/test:
        ``s_x`` ``(N, 12)`` int64 ``<bos> w1..w10 <eos>``, ``s_y`` ``(N,)`` int64 component
        0..3, ``s_true_z`` ``(N, 2)`` float32.
    """
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) != 3 or min(sizes) < 1:
        raise DataError(f"synthetic sizes must be three positive numbers, got {sizes}")
    signature = {"format": _CACHE_FORMAT, "generator": _SYN_VERSION, "seed": int(corpus_seed),
                 "sizes": list(sizes)}
    path = cache_path(cache_dir, f"synthetic-{int(corpus_seed)}-{'-'.join(map(str, sizes))}")
    payload = load_cache(path, signature)
    if payload is None:
        lm = _synthetic_lm(corpus_seed)
        payload = {"signature": signature}
        for split, n in zip(("train", "val", "test"), sizes, strict=True):
            part = _synthetic_split(lm, n, _sub_seed(corpus_seed, split))
            part["x"] = part["x"].to(torch.int16)  # ids < 1000: a small cache file
            payload.update({f"{split}_{k}": v for k, v in part.items()})
        save_cache(path, payload)
    out = dict(payload, vocab=[*SPECIALS, *(f"w{i}" for i in range(_SYN_WORDS))])
    for split in ("train", "val", "test"):
        words = out[f"{split}_x"].to(torch.int64) + len(SPECIALS)
        bos = torch.full((len(words), 1), BOS, dtype=torch.int64)
        out[f"{split}_x"] = torch.cat([bos, words, torch.full_like(bos, EOS)], dim=1)
    return out


# --------------------------------------------------------------------------------------------
# A user's text corpus
# --------------------------------------------------------------------------------------------


def _read_sentences(path: pathlib.Path) -> list[tuple[int, list[str]]]:
    """The non-blank lines of a UTF-8 file as ``(line number, whitespace tokens)``."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a leading byte-order mark is dropped
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not UTF-8 text: {err.reason} 0x{raw[err.start]:02x} at byte offset "
            f"{err.start}; convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from err
    lines = [(i, line.split()) for i, line in enumerate(text.split("\n"), start=1)]
    lines = [(i, tokens) for i, tokens in lines if tokens]
    if not lines:
        raise DataError(f"{path} is empty (no non-blank line); put one sentence per line")
    return lines


def _cap(path: pathlib.Path, max_len: int, too_long: str) -> list[list[str]]:
    """The sentences of ``path`` with the length cap applied (error, truncate or drop)."""
    out = []
    for lineno, tokens in _read_sentences(path):
        if len(tokens) > max_len:
            if too_long == "error":
                raise DataError(
                    f"{path} line {lineno} has {len(tokens)} tokens, more than max_len={max_len}; "
                    "pass a larger max_len (CLI: --max-len), or too_long='truncate' or 'drop'"
                )
            if too_long == "drop":
                continue
            tokens = tokens[:max_len]
        out.append(tokens)
    if not out:
        raise DataError(f"every sentence of {path} is longer than max_len={max_len}")
    return out


def _split_text(path: pathlib.Path, max_len: int, too_long: str) -> dict[str, list[list[str]]]:
    """Train, val and test sentences: the three files of a folder, or one file split 80/10/10."""
    if path.is_dir():
        missing = [f for f in TEXT_FILES if not (path / f).is_file()]
        if missing:
            raise DataError(
                f"{path} is a folder without {', '.join(missing)}; a corpus folder needs "
                f"{', '.join(TEXT_FILES)} (the PTB/Yahoo layout), or pass a single file"
            )
        parts = zip(("train", "val", "test"), TEXT_FILES, strict=True)
        return {split: _cap(path / f, max_len, too_long) for split, f in parts}
    sentences = _cap(path, max_len, too_long)
    n = len(sentences)
    if n < 3:
        raise DataError(
            f"{path} has {n} sentence(s), too few to split into train/val/test; "
            "give at least 3 lines (or a folder with train.txt, valid.txt and test.txt)"
        )
    n_held = max(1, n // 10)  # 10 % val, 10 % test, the rest train
    generator = torch.Generator().manual_seed(_TEXT_SPLIT_SEED)
    order = torch.randperm(n, generator=generator)
    picks = {"test": order[:n_held], "val": order[n_held : 2 * n_held], "train": order[2 * n_held :]}
    return {k: [sentences[i] for i in sorted(v.tolist())] for k, v in picks.items()}


def _encode(sentences: list[list[str]], index: dict[str, int], length: int) -> torch.Tensor:
    """``(N, length)`` int64 ids ``<bos> w.. <eos>`` right-padded with ``<pad>``; unknown
    words (and the literal special tokens, e.g. PTB's ``<unk>``) become ``<unk>``."""
    x = np.full((len(sentences), length), PAD, dtype=np.int64)
    for row, words in enumerate(sentences):
        x[row, : len(words) + 2] = [BOS, *(index.get(w, UNK) for w in words), EOS]
    return torch.from_numpy(x)


def text_corpus(
    path: str | os.PathLike[str],
    max_len: int = TEXT_MAX_LEN,
    max_vocab: int = TEXT_MAX_VOCAB,
    too_long: str = "error",
) -> dict[str, Any]:
    """A user's corpus as token ids, so that the sequence models run on PTB, Yahoo or your own.

    ``path`` is either one UTF-8 file with one sentence per line, split into train (80 %), val
    (10 %) and test (10 %, each at least one sentence) by a permutation with a fixed seed (the
    same split every time, whatever the run's seed; file order kept within a split), or a folder
    with ``train.txt``, ``valid.txt`` and ``test.txt``. Tokens are separated by whitespace and
    blank lines are skipped. The vocabulary is :data:`SPECIALS` followed by the ``max_vocab``
    most frequent words of the training split (ties broken alphabetically); other words map to
    ``<unk>``.

    Args:
        path: the file or folder.
        max_len: the most words per sentence; ``x`` has ``max_len + 2`` columns.
        max_vocab: words kept besides the four special tokens.
        too_long: what a sentence over ``max_len`` words does: ``"error"`` (a :class:`~vaeas.datasets.DataError`
            naming file, line, length and cap), ``"truncate"`` (keep its first ``max_len``
            words) or ``"drop"``.

    Returns:
        ``vocab`` (list of str), ``source`` (the path, for messages) and ``train_x``, ``val_x``,
        ``test_x``: ``(N, max_len + 2)`` int64 token ids.

    Raises:
        DataError: missing file, empty file, bytes that are not UTF-8, a sentence over the cap,
            a folder without the three files, or bad options.
    """
    if int(max_len) < 1 or int(max_vocab) < 1:
        raise DataError(f"max_len and max_vocab must be >= 1, got {max_len} and {max_vocab}")
    if too_long not in TOO_LONG:
        raise DataError(f"too_long must be one of {', '.join(TOO_LONG)}, got '{too_long}'")
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise DataError(
            f"text corpus {path} not found; pass text_file=<a file with one sentence per line, "
            f"or a folder with {', '.join(TEXT_FILES)}> (CLI: --text-file)"
        )
    splits = _split_text(path, int(max_len), too_long)
    counts = Counter(w for words in splits["train"] for w in words)
    for special in SPECIALS:
        counts.pop(special, None)
    words = sorted(counts, key=lambda w: (-counts[w], w))[: int(max_vocab)]
    vocab = [*SPECIALS, *words]
    index = {w: i for i, w in enumerate(vocab) if i >= len(SPECIALS)}
    out: dict[str, Any] = {"vocab": vocab, "source": relative_source(path)}
    for split, sentences in splits.items():
        out[f"{split}_x"] = _encode(sentences, index, int(max_len) + 2)
    return out
