"""Tests of the sentence corpora (vaeas.corpora) and of their loading by vaeas.data.load_dataset.

The synthetic corpus (He et al. 2019) is loaded at its documented size through the default cache
``data/processed`` (generated there on the first run: 15-20 s of CPU time on one core; later
runs load it in milliseconds); the cache itself is tested on small corpora in tmp_path. The text
corpora are small files written in tmp_path.
"""

from __future__ import annotations

import math
import pathlib

import pytest
import torch

from vaeas import corpora
from vaeas import data as data_module
from vaeas.corpora import SPECIALS, SYNTHETIC_CENTRES, synthetic_corpus, text_corpus
from vaeas.data import DataError, Dataset, batches, load_dataset

BOS, EOS, PAD, UNK = 1, 2, 0, 3


REPO = pathlib.Path(__file__).resolve().parents[1]
CACHE = REPO / "data" / "processed"  # the default cache, shared with the real datasets' tests


@pytest.fixture(scope="module")
def synthetic() -> Dataset:
    return load_dataset("synthetic", cache_dir=CACHE)


def one_line_error(call, *needles: str) -> str:
    """Run ``call``, expect a DataError whose one-line message contains every needle."""
    with pytest.raises(DataError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


# ---------------------------------------------------------------------------------------------
# the synthetic corpus
# ---------------------------------------------------------------------------------------------


def test_synthetic_shapes_and_token_layout(synthetic):
    assert synthetic.kind == "sequence" and synthetic.num_classes == 4
    assert synthetic.image_shape == (1, 1, 12)
    vocab = synthetic.vocab
    assert len(vocab) == 1004 and tuple(vocab[:4]) == SPECIALS
    assert vocab[4] == "w0" and vocab[-1] == "w999" and len(set(vocab)) == 1004
    sizes = (len(synthetic.train), len(synthetic.val), len(synthetic.test))
    assert sizes == (20_000, 5_000, 10_000)
    for split in (synthetic.train, synthetic.val, synthetic.test):
        x, n = split.x, len(split)
        assert x.dtype == torch.int64 and x.shape == (n, 12) and split.binarized
        assert (x[:, 0] == BOS).all() and (x[:, 11] == EOS).all()
        words = x[:, 1:11]
        assert int(words.min()) >= 4 and int(words.max()) <= 1003  # exactly 10 real words
        assert split.y.dtype == torch.int64 and set(split.y.unique().tolist()) == {0, 1, 2, 3}
        z = split.extra["true_z"]
        assert z.dtype == torch.float32 and z.shape == (n, 2)
        assert torch.equal(split.index, torch.arange(n))


def test_synthetic_latents_match_their_components(synthetic):
    y, z = synthetic.train.y, synthetic.train.extra["true_z"]
    counts = torch.bincount(y, minlength=4)
    assert ((counts - 5000).abs() < 300).all()  # an equal mixture (sd ~ 61)
    for k, centre in enumerate(SYNTHETIC_CENTRES):
        zk = z[y == k]
        assert torch.allclose(zk.mean(0), torch.tensor(centre, dtype=torch.float32), atol=0.08)
        assert torch.allclose(zk.std(0), torch.ones(2), atol=0.06)  # unit variance
        # and each point is nearest to its own centre most of the time (centres 4 apart)
    centres = torch.tensor(SYNTHETIC_CENTRES, dtype=torch.float32)
    nearest = torch.cdist(z, centres).argmin(1)
    assert (nearest == y).float().mean() > 0.9


def test_synthetic_first_word_is_uniform(synthetic):
    first = synthetic.train.x[:, 1] - 4
    counts = torch.bincount(first, minlength=1000).double()
    expected = len(first) / 1000
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert abs(chi2 - 999) < 6 * math.sqrt(2 * 999)  # chi-square with 999 df: mean 999, sd 45
    assert int((counts > 0).sum()) >= 995
    later = torch.bincount(synthetic.train.x[:, 5] - 4, minlength=1000).double()
    later_chi2 = float(((later - expected) ** 2 / expected).sum())
    assert later_chi2 > 10 * chi2  # words sampled from the LSTM are far from uniform


def test_synthetic_sentences_carry_information_about_z(synthetic):
    """Unigram distributions of the 9 sampled words differ between components far more than
    between two random halves of one component."""
    words, y = synthetic.train.x[:, 2:11] - 4, synthetic.train.y
    gen = torch.Generator().manual_seed(0)

    def unigram(rows: torch.Tensor) -> torch.Tensor:
        counts = torch.bincount(rows.reshape(-1), minlength=1000).double()
        return counts / counts.sum()

    between = [
        0.5 * float((unigram(words[y == a]) - unigram(words[y == b])).abs().sum())
        for a in range(4)
        for b in range(a + 1, 4)
    ]
    within = []
    for k in range(4):
        rows = words[y == k]
        perm = torch.randperm(len(rows), generator=gen)
        half = len(rows) // 2
        within.append(0.5 * float((unigram(rows[perm[:half]]) - unigram(rows[perm[half:]])).abs().sum()))
    assert min(between) > 0.5 and max(within) < 0.15 and min(between) > 4 * max(within)
    # within a component, z still matters: sentences from the two ends of a component differ
    zk, rows = synthetic.train.extra["true_z"][y == 0], words[y == 0]
    lo, hi = rows[zk[:, 0] < -2.5], rows[zk[:, 0] > -1.5]
    assert 0.5 * float((unigram(lo) - unigram(hi)).abs().sum()) > 2 * max(within)


def test_synthetic_generator_follows_the_recipe():
    lm = corpora._synthetic_lm(1)
    assert lm["embed"].shape == (1000, 100) and lm["w_hh"].shape == (400, 100)
    assert lm["w_ih"].shape == (400, 102)  # the input is [embedding (100), z (2)]
    assert lm["w_c"].shape == (100, 2) and lm["w_zout"].shape == (1000, 2)
    for key, weight in lm.items():
        bound = 3.0 if key == "w_zout" else 1.0
        assert float(weight.abs().max()) <= bound and float(weight.abs().max()) > 0.9 * bound, key


def test_synthetic_is_deterministic_and_splits_are_independent(tmp_path):
    small = (300, 100, 100)
    a = synthetic_corpus(11, small, cache_dir=tmp_path / "a")
    b = synthetic_corpus(11, small, cache_dir=tmp_path / "b")
    c = synthetic_corpus(12, small, cache_dir=tmp_path / "a")
    for key in ("train_x", "train_y", "train_true_z", "test_x", "val_true_z"):
        assert torch.equal(a[key], b[key]), key
        assert not torch.equal(a[key], c[key]), key
    bigger_val = synthetic_corpus(11, (300, 200, 100), cache_dir=tmp_path / "a")
    assert torch.equal(bigger_val["train_x"], a["train_x"])
    assert torch.equal(bigger_val["test_x"], a["test_x"])
    assert not torch.equal(a["train_x"][:100], a["val_x"])  # the splits are not copies


def test_synthetic_cache_round_trip(tmp_path, monkeypatch):
    sizes = (200, 50, 50)
    first = synthetic_corpus(5, sizes, cache_dir=tmp_path)
    files = list(tmp_path.glob("synthetic-5-*.pt"))
    assert [f.name for f in files] == ["synthetic-5-200-50-50.pt"]

    def no_generation(*args):
        raise AssertionError("the cache should have been used")

    real = corpora._synthetic_split
    monkeypatch.setattr(corpora, "_synthetic_split", no_generation)
    again = synthetic_corpus(5, sizes, cache_dir=tmp_path)
    for key in ("train_x", "val_y", "test_true_z"):
        assert torch.equal(again[key], first[key]) and again[key].dtype == first[key].dtype
    with pytest.raises(AssertionError, match="cache should"):  # other sizes: another file
        synthetic_corpus(5, (200, 60, 50), cache_dir=tmp_path)
    files[0].write_bytes(b"truncated")
    monkeypatch.setattr(corpora, "_synthetic_split", real)
    rebuilt = synthetic_corpus(5, sizes, cache_dir=tmp_path)  # a broken cache is rebuilt
    assert torch.equal(rebuilt["train_x"], first["train_x"])


def test_load_synthetic_seed_limit_and_options(tmp_path, monkeypatch, synthetic):
    same = load_dataset("synthetic", seed=99, limit=30, cache_dir=CACHE)  # the run's seed: no effect
    assert (len(same.train), len(same.val), len(same.test)) == (30, 30, 30)
    assert torch.equal(same.train.x, synthetic.train.x[:30])
    assert torch.equal(same.test.extra["true_z"], synthetic.test.extra["true_z"][:30])
    monkeypatch.setattr(data_module, "SYNTHETIC_SIZES", (300, 100, 200))  # small, to be quick
    other = load_dataset("synthetic", cache_dir=tmp_path, corpus_seed=3, val_size=40)
    assert (len(other.train), len(other.val), len(other.test)) == (300, 40, 200)
    assert not torch.equal(other.train.x[:30], synthetic.train.x[:30])  # another corpus seed
    assert "corpus_seed=3" in other.source and "corpus_seed=783435" in synthetic.source
    moved = other.to("cpu")
    assert moved.kind == "sequence" and moved.vocab == other.vocab and moved.num_classes == 4
    assert math.log(4) - 0.01 < synthetic.label_entropy() <= math.log(4)
    one_line_error(lambda: load_dataset("synthetic", text_file="x.txt"), "text_file", "synthetic")
    one_line_error(lambda: load_dataset("mnist", corpus_seed=1), "corpus_seed", "mnist")
    xb, yb, ib = next(batches(other.train, 16, shuffle=False))  # tokens pass through unchanged
    assert xb.dtype == torch.int64 and torch.equal(xb, other.train.x[:16])


# ---------------------------------------------------------------------------------------------
# a user's text corpus
# ---------------------------------------------------------------------------------------------


def write(path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def decode(x: torch.Tensor, vocab: list[str]) -> list[str]:
    """Token rows back to sentences (words between <bos> and <eos>)."""
    out = []
    for row in x.tolist():
        assert row[0] == BOS
        end = row.index(EOS)
        assert all(t == PAD for t in row[end + 1 :])
        out.append(" ".join(vocab[t] for t in row[1:end]))
    return out


def test_text_file_split_80_10_10_and_padding(tmp_path):
    lines = [f"sentence number s{i} the end" if i % 2 else f"short s{i}" for i in range(50)]
    path = write(tmp_path / "corpus.txt", ["", *lines[:25], "   ", *lines[25:]])  # blanks skipped
    corpus = text_corpus(path, max_len=6)
    sizes = [len(corpus[f"{s}_x"]) for s in ("train", "val", "test")]
    assert sizes == [40, 5, 5]
    vocab = corpus["vocab"]
    assert tuple(vocab[:4]) == SPECIALS
    train = decode(corpus["train_x"], vocab)
    assert len(set(train)) == 40 and set(train) <= set(lines)
    held = decode(corpus["val_x"], vocab) + decode(corpus["test_x"], vocab)
    # every line lands in exactly one split; words seen only outside train (s<i>) become <unk>
    known = set(vocab)
    masked = sorted(" ".join(w if w in known else "<unk>" for w in line.split())
                    for line in lines if line not in train)
    assert sorted(held) == masked and len(held) == 10
    assert train == sorted(train, key=lines.index)  # file order within a split
    x = corpus["train_x"]
    assert x.dtype == torch.int64 and x.shape == (40, 8)  # max_len + 2
    i = next(i for i, sentence in enumerate(train) if sentence.startswith("short"))
    assert x[i].tolist() == [BOS, vocab.index("short"), vocab.index(train[i].split()[1]), EOS] + [PAD] * 4
    long_row = next(i for i, sentence in enumerate(train) if sentence.startswith("sentence"))
    assert x[long_row, 6:].tolist() == [EOS, PAD]  # 5 words: <eos> at 6, then one <pad>
    again = text_corpus(path, max_len=6)
    assert all(torch.equal(again[f"{s}_x"], corpus[f"{s}_x"]) for s in ("train", "val", "test"))


def test_text_vocabulary_from_training_split(tmp_path):
    folder = tmp_path / "ptb"
    folder.mkdir()
    write(folder / "train.txt", ["b a c", "a b", "a <unk> d", "zeta"])
    write(folder / "valid.txt", ["a new word"])
    write(folder / "test.txt", ["c b a", "d"])
    corpus = text_corpus(folder, max_len=5, max_vocab=3)
    # counts: a 3, b 2, c 1, d 1, zeta 1 -> ties alphabetical -> a, b, c
    assert corpus["vocab"] == [*SPECIALS, "a", "b", "c"]
    assert [len(corpus[f"{s}_x"]) for s in ("train", "val", "test")] == [4, 1, 2]
    assert corpus["train_x"][2, :5].tolist() == [BOS, 4, UNK, UNK, EOS]  # literal <unk>, rare d
    assert corpus["val_x"][0, :5].tolist() == [BOS, 4, UNK, UNK, EOS]  # unseen in train
    assert decode(corpus["test_x"], corpus["vocab"]) == ["c b a", "<unk>"]
    full = text_corpus(folder, max_len=5)
    assert full["vocab"][4:] == ["a", "b", "c", "d", "zeta"]
    ds = load_dataset("text", text_file=folder, max_len=5, limit=2)
    assert ds.kind == "sequence" and ds.num_classes == 1 and ds.image_shape == (1, 1, 7)
    assert ds.vocab == full["vocab"] and len(ds.train) == 2 and len(ds.test) == 2
    assert (ds.train.y == 0).all() and ds.train.extra == {} and ds.label_entropy() == 0.0
    (folder / "valid.txt").unlink()
    one_line_error(lambda: text_corpus(folder), "valid.txt", str(folder))


def test_text_bad_inputs_give_one_line_errors(tmp_path):
    one_line_error(lambda: text_corpus(tmp_path / "nope.txt"), "nope.txt", "not found")
    one_line_error(lambda: load_dataset("text"), "text_file", "--text-file")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\t\n")
    one_line_error(lambda: text_corpus(empty), "empty.txt", "empty")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"ok line\nun caf\xe9 noir\n")  # Latin-1 e-acute at byte 14
    one_line_error(lambda: text_corpus(latin), "latin.txt", "not UTF-8", "0xe9", "byte offset 14")
    long = write(tmp_path / "long.txt", ["a b", "c d e", "one two three four five six", "f"])
    msg = one_line_error(lambda: text_corpus(long, max_len=5), "long.txt", "line 3", "6 tokens")
    assert "max_len=5" in msg and "--max-len" in msg and "truncate" in msg
    truncated = text_corpus(long, max_len=5, too_long="truncate")
    rows = [decode(truncated[f"{s}_x"], truncated["vocab"]) for s in ("train", "val", "test")]
    assert "one two three four five" in sum(rows, [])
    dropped = text_corpus(long, max_len=5, too_long="drop")
    assert sum(len(dropped[f"{s}_x"]) for s in ("train", "val", "test")) == 3
    one_line_error(lambda: text_corpus(long, too_long="cut"), "too_long", "cut")
    two = write(tmp_path / "two.txt", ["a b", "c"])
    one_line_error(lambda: text_corpus(two), "two.txt", "2 sentence")
