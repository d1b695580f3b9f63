"""Tests of vaeas.data and vaeas.datasets (images): lookup, verification, caching, splits, batches.

Tests on the real datasets skip when the data cannot be found (set VAEAS_DATA to the folder
holding MNIST/ and omniglot-py/). The rest run on small fake files built in tmp_path.
"""

from __future__ import annotations

import math
import os
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

from vaeas import data, datasets
from vaeas.data import DataError, Split, batches, binarize_fixed, find_root, load_dataset

REPO = pathlib.Path(__file__).resolve().parents[1]
CACHE = REPO / "data" / "processed"  # the default cache of the real datasets
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _root_or_skip(name: str) -> pathlib.Path:
    try:
        return find_root(name, download=False)
    except DataError as err:
        pytest.skip(f"{name} not available: {err}")


@pytest.fixture(scope="module")
def mnist() -> data.Dataset:
    _root_or_skip("mnist")
    return load_dataset("mnist", cache_dir=CACHE)


@pytest.fixture(scope="module")
def omniglot() -> data.Dataset:
    _root_or_skip("omniglot")
    return load_dataset("omniglot", cache_dir=CACHE)


def make_fake_omniglot(
    root: pathlib.Path,
    layout: dict[str, dict[str, int]] | None = None,
    drawers: int = 20,
) -> pathlib.Path:
    """Write a tiny Omniglot tree: ``layout[half][alphabet] = number of characters``.

    Every image is 105x105, 1-bit, white paper with a black square whose place depends on the
    character and the drawer. Returns ``root`` (the folder containing ``omniglot-py``).
    """
    layout = layout or {
        "images_background": {"Beta": 1, "Alpha": 2},
        "images_evaluation": {"Gamma": 1},
    }
    serial = 0
    for half, alphabets in layout.items():
        for alphabet, n_chars in alphabets.items():
            for c in range(1, n_chars + 1):
                folder = root / "omniglot-py" / half / alphabet / f"character{c:02d}"
                folder.mkdir(parents=True)
                serial += 1
                for d in range(1, drawers + 1):
                    pixels = np.ones((105, 105), dtype=bool)
                    top = 5 * ((serial + d) % 15)
                    pixels[top : top + 30, 10 + 3 * d : 40 + 3 * d] = False
                    Image.fromarray(pixels).convert("1").save(folder / f"{serial:04d}_{d:02d}.png")
    return root


def write_fake_mnist(root: pathlib.Path, sizes: dict[str, int] | None = None) -> pathlib.Path:
    """Four zero-filled IDX files of the given (default: the real) sizes in root/MNIST/raw."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for fname, (size, _) in datasets._MNIST_FILES.items():
        with open(raw / fname, "wb") as f:
            f.truncate((sizes or {}).get(fname, size))
    return root


# ---------------------------------------------------------------------------------------------
# binarization and batches (synthetic, always run)
# ---------------------------------------------------------------------------------------------


def grey_split(n: int = 103, p: float = 0.3) -> Split:
    x = torch.full((n, 784), p)
    y = torch.arange(n) % 10
    return Split(x=x, y=y, index=torch.arange(n), binarized=False)


def test_binarize_fixed_is_deterministic_bernoulli():
    x = torch.full((200, 784), 0.3)
    a, b = binarize_fixed(x, seed=5), binarize_fixed(x, seed=5)
    assert a.dtype == torch.float32 and a.shape == x.shape
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert abs(a.mean().item() - 0.3) < 0.01  # a coin per pixel, not a threshold at 0.5
    assert not torch.equal(a, binarize_fixed(x, seed=6))
    edges = binarize_fixed(torch.tensor([0.0, 1.0]), seed=0)
    assert edges.tolist() == [0.0, 1.0]


def test_batches_cover_every_index_once_per_epoch():
    split = grey_split(103)
    gen = torch.Generator().manual_seed(0)
    seen = [(x, y, i) for x, y, i in batches(split, 10, generator=gen, binarize=False)]
    assert [len(i) for _, _, i in seen] == [10] * 10 + [3]
    order = torch.cat([i for _, _, i in seen])
    assert sorted(order.tolist()) == list(range(103))
    assert not torch.equal(order, torch.arange(103))  # shuffled
    for x, y, i in seen:  # rows travel with their labels and indices
        assert torch.equal(y, split.y[i]) and torch.equal(x, split.x[i])
    kept = list(batches(split, 10, generator=gen, drop_last=True))
    assert len(kept) == 10 and all(len(i) == 10 for _, _, i in kept)
    plain = torch.cat([i for _, _, i in batches(split, 7, shuffle=False)])
    assert torch.equal(plain, torch.arange(103))


def test_batches_deterministic_under_generator_seed():
    split = grey_split(50)

    def run(seed: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return [t for batch in batches(split, 16, generator=gen) for t in batch]

    first, again, other = run(3), run(3), run(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_batches_binarize_train_but_not_fixed_splits():
    split = grey_split(400, p=0.3)
    gen = torch.Generator().manual_seed(1)
    xs = torch.cat([x for x, _, _ in batches(split, 128, generator=gen)])
    assert set(xs.unique().tolist()) == {0.0, 1.0}
    assert abs(xs.mean().item() - 0.3) < 0.01
    xs2 = torch.cat([x for x, _, _ in batches(split, 128, generator=gen, shuffle=False)])
    assert not torch.equal(xs2, xs)  # fresh bits every epoch
    fixed = Split(x=binarize_fixed(split.x, 0), y=split.y, index=split.index, binarized=True)
    out = torch.cat([x for x, _, _ in batches(fixed, 64, shuffle=False)])
    assert torch.equal(out, fixed.x)
    with pytest.raises(ValueError):
        next(batches(split, 0))


def test_split_checks_shapes():
    with pytest.raises(ValueError):
        Split(
            x=torch.zeros(3, 784),
            y=torch.zeros(2, dtype=torch.long),
            index=torch.arange(3),
            binarized=False,
        )


def test_split_extra_may_have_trailing_dims():
    z = torch.randn(5, 2)
    split = Split(x=torch.zeros(5, 3), y=torch.zeros(5, dtype=torch.long), index=torch.arange(5),
                  binarized=True, extra={"true_z": z, "drawer": torch.arange(5)})
    assert torch.equal(split.to("cpu").extra["true_z"], z)
    for bad in (torch.randn(4, 2), torch.tensor(1.0)):
        with pytest.raises(ValueError, match="true_z"):
            Split(x=torch.zeros(5, 3), y=torch.zeros(5, dtype=torch.long), index=torch.arange(5),
                  binarized=True, extra={"true_z": bad})


def test_fixed_x_binarizes_grey_rows_and_keeps_fixed_ones():
    grey = Split(x=torch.rand(60, 784), y=torch.zeros(60, dtype=torch.long), index=torch.arange(60),
                 binarized=False)
    every = grey.fixed_x(3)
    assert torch.equal(every, binarize_fixed(grey.x, 3)) and torch.equal(every, grey.fixed_x(3))
    assert not torch.equal(every, grey.fixed_x(4))
    idx = torch.tensor([7, 2, 50])
    assert torch.equal(grey.fixed_x(3, idx), binarize_fixed(grey.x[idx], 3))
    assert torch.equal(grey.fixed_x(3, torch.arange(10)), every[:10])  # a prefix keeps its bits
    tokens = torch.randint(0, 50, (8, 12))
    seq = Split(x=tokens, y=torch.zeros(8, dtype=torch.long), index=torch.arange(8), binarized=True)
    assert torch.equal(seq.fixed_x(3), tokens) and seq.fixed_x(3).dtype == torch.int64
    assert torch.equal(seq.fixed_x(9, torch.tensor([4, 1])), tokens[[4, 1]])


def test_dataset_to_keeps_kind_and_vocab():
    seq = Split(x=torch.ones(4, 6, dtype=torch.long), y=torch.zeros(4, dtype=torch.long),
                index=torch.arange(4), binarized=True)
    ds = data.Dataset("text", seq, seq, seq, num_classes=1, source="x.txt", image_shape=(1, 1, 6),
                      kind="sequence", vocab=["<pad>", "<bos>", "<eos>", "<unk>"])
    moved = ds.to("cpu")
    assert moved.kind == "sequence" and moved.vocab == ds.vocab and moved.image_shape == (1, 1, 6)
    images = data.Dataset("tiny", grey_split(), grey_split(), grey_split(), 10, "synthetic")
    assert images.kind == "image" and images.vocab is None  # the defaults of image datasets


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_bits_and_batches_on_cuda():
    x = torch.rand(64, 784)
    assert torch.equal(binarize_fixed(x.cuda(), 7).cpu(), binarize_fixed(x, 7))
    split = grey_split(100).to("cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    for xb, yb, ib in batches(split, 32, generator=gen):
        assert xb.is_cuda and yb.is_cuda and ib.is_cuda
    cpu_gen = torch.Generator().manual_seed(0)  # a generator on another device still works
    assert sum(len(i) for _, _, i in batches(split, 32, generator=cpu_gen)) == 100


# ---------------------------------------------------------------------------------------------
# lookup and verification (fake files, always run)
# ---------------------------------------------------------------------------------------------


def test_unknown_dataset():
    with pytest.raises(DataError, match=r"unknown dataset 'cifar'; choose from mnist, omniglot"):
        load_dataset("cifar")
    assert data.DATASETS == ("mnist", "omniglot", "synthetic", "text")
    with pytest.raises(DataError, match="find_root looks up mnist, omniglot, not 'synthetic'"):
        find_root("synthetic")


def test_nothing_found_offline_names_paths_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = tmp_path / "elsewhere"
    env.mkdir()
    monkeypatch.setenv("VAEAS_DATA", str(env))

    def offline(name, dest):
        raise OSError("network is unreachable")

    monkeypatch.setattr(datasets, "_download", offline)
    for name in ("mnist", "omniglot"):
        with pytest.raises(DataError) as info:
            find_root(name)
        msg = str(info.value)
        assert "\n" not in msg
        assert str(env.absolute()) in msg and str((tmp_path / "data").absolute()) in msg
        assert "network is unreachable" in msg and "VAEAS_DATA" in msg and "root=" in msg


def test_explicit_root_must_hold_the_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAEAS_DATA", raising=False)
    write_fake_mnist(tmp_path / "data")  # ./data has MNIST, but an explicit root wins
    monkeypatch.setattr(datasets, "_download", lambda *a: pytest.fail("must not download"))
    with pytest.raises(DataError, match="no MNIST under root='empty'"):
        find_root("mnist", root="empty")
    assert find_root("mnist") == pathlib.Path("data")


def test_lookup_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env, explicit = write_fake_mnist(tmp_path / "env"), write_fake_mnist(tmp_path / "explicit")
    write_fake_mnist(tmp_path / "data")
    monkeypatch.setenv("VAEAS_DATA", str(env))
    assert find_root("mnist", root=explicit) == explicit
    assert find_root("mnist") == env
    monkeypatch.setenv("VAEAS_DATA", str(tmp_path / "nothing"))
    assert find_root("mnist") == pathlib.Path("data")  # falls through to ./data


def test_truncated_mnist_file_refused(tmp_path):
    write_fake_mnist(tmp_path, sizes={"train-labels-idx1-ubyte": 1000})
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=tmp_path, cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert "train-labels-idx1-ubyte" in msg and "truncated/corrupt" in msg
    assert "expected 60008 bytes" in msg and "got 1000 bytes" in msg and "\n" not in msg


def test_mnist_file_with_wrong_bytes_refused_by_md5(tmp_path):
    write_fake_mnist(tmp_path)  # right sizes, all zeros
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte .*md5 6bbc9ace.*got md5"):
        load_dataset("mnist", root=tmp_path, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "mnist.pt").exists()


# ---------------------------------------------------------------------------------------------
# Omniglot on a fake tree (always run)
# ---------------------------------------------------------------------------------------------


def test_fake_omniglot_ids_and_drawer_split(tmp_path):
    root = make_fake_omniglot(tmp_path / "src")
    ds = load_dataset(
        "omniglot", root=root, val_size=10, cache_dir=tmp_path / "c", _expect_full=False
    )
    assert (len(ds.train), len(ds.val), len(ds.test)) == (4 * 15 - 10, 10, 4 * 5)
    assert ds.num_classes == 4 and ds.image_shape == (1, 28, 28)
    test, train = ds.test, ds.train
    # sorted: background (Alpha: 2 characters, Beta: 1) then evaluation (Gamma)
    assert test.y.tolist() == [c for c in range(4) for _ in range(5)]
    assert test.extra["alphabet"].tolist() == [0] * 10 + [1] * 5 + [2] * 5
    assert test.extra["drawer"].tolist() == list(range(16, 21)) * 4
    assert int(train.extra["drawer"].max()) <= 15 and int(ds.val.extra["drawer"].max()) <= 15
    pairs = {(int(c), int(d)) for c, d in zip(train.y, train.extra["drawer"], strict=True)}
    val_pairs = {(int(c), int(d)) for c, d in zip(ds.val.y, ds.val.extra["drawer"], strict=True)}
    assert not pairs & val_pairs and len(pairs | val_pairs) == 60
    # ink is 1: a 30x30 black square on 105x105 white paper covers ~8% of the image
    assert 0.05 < train.x.mean().item() < 0.12 and train.x.max().item() > 0.99
    assert set(test.x.unique().tolist()) == {0.0, 1.0} and not train.binarized
    other = load_dataset(
        "omniglot", root=root, val_size=10, seed=1, cache_dir=tmp_path / "c", _expect_full=False
    )
    assert not torch.equal(
        other.val.y * 100 + other.val.extra["drawer"], ds.val.y * 100 + ds.val.extra["drawer"]
    )
    with pytest.raises(DataError, match="964"):  # the real counts are checked by default
        load_dataset("omniglot", root=root, cache_dir=tmp_path / "c")


def test_omniglot_cache_reused_then_rebuilt_when_source_changes(tmp_path, monkeypatch):
    root = make_fake_omniglot(tmp_path / "src")
    kwargs = dict(root=root, val_size=5, cache_dir=tmp_path / "c", _expect_full=False)
    first = load_dataset("omniglot", **kwargs)
    assert (tmp_path / "c" / "omniglot.pt").is_file()

    def no_decoding(paths):
        raise AssertionError("the cache should have been used")

    real_reader = datasets._read_omniglot_chunk
    monkeypatch.setattr(datasets, "_read_omniglot_chunk", no_decoding)
    again = load_dataset("omniglot", **kwargs)
    assert torch.equal(again.test.x, first.test.x)

    png = root / "omniglot-py/images_evaluation/Gamma/character01/0004_20.png"
    Image.fromarray(np.zeros((105, 105), dtype=bool)).convert("1").save(png)  # all ink
    later = png.stat().st_mtime + 10
    os.utime(png, (later, later))
    with pytest.raises(AssertionError, match="cache should have been used"):
        load_dataset("omniglot", **kwargs)
    monkeypatch.setattr(datasets, "_read_omniglot_chunk", real_reader)
    rebuilt = load_dataset("omniglot", **kwargs)
    assert rebuilt.test.x[-1].mean().item() == 1.0 != first.test.x[-1].mean().item()


def test_corrupt_or_missing_png_refused(tmp_path):
    root = make_fake_omniglot(tmp_path / "src")
    kwargs = dict(root=root, val_size=5, cache_dir=tmp_path / "c", _expect_full=False)
    png = next((root / "omniglot-py/images_background/Alpha/character02").glob("*_07.png"))
    png.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(DataError, match=f"{png.name} is unreadable/corrupt"):
        load_dataset("omniglot", **kwargs)
    png.unlink()
    with pytest.raises(DataError, match=r"character02 has drawers .*expected 1..20"):
        load_dataset("omniglot", **kwargs)


# ---------------------------------------------------------------------------------------------
# real MNIST (skips without the data)
# ---------------------------------------------------------------------------------------------


def test_mnist_splits_and_types(mnist):
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (55000, 5000, 10000)
    assert mnist.name == "mnist" and mnist.num_classes == 10 and mnist.image_shape == (1, 28, 28)
    for split in (mnist.train, mnist.val, mnist.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1] == 784
        assert split.y.dtype == torch.int64 and split.index.dtype == torch.int64
        assert torch.equal(split.index, torch.arange(len(split)))
        assert split.extra == {}
    assert not mnist.train.binarized and mnist.val.binarized and mnist.test.binarized
    assert (pathlib.Path(mnist.source) / "MNIST" / "raw").is_dir()


def test_mnist_contents(mnist):
    train = mnist.train.x
    assert train.min().item() == 0.0 and train.max().item() == 1.0
    assert ((train > 0) & (train < 1)).any()  # grey, not binary
    assert abs(train.mean().item() - 0.1307) < 0.002
    labels = torch.cat([mnist.train.y, mnist.val.y])
    assert torch.bincount(labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.test.y, minlength=10).sum().item() == 10000
    assert math.log(10) - 0.01 < mnist.label_entropy() <= math.log(10)
    for split in (mnist.val, mnist.test):
        assert set(split.x.unique().tolist()) == {0.0, 1.0}
        assert abs(split.x.mean().item() - 0.1307) < 0.01


def test_mnist_fixed_bits_identical_across_loads(mnist):
    again = load_dataset("mnist", cache_dir=CACHE, seed=123)
    assert torch.equal(again.val.x, mnist.val.x) and torch.equal(again.test.x, mnist.test.x)
    small = load_dataset("mnist", cache_dir=CACHE, limit=100)
    assert (len(small.train), len(small.val), len(small.test)) == (100, 100, 100)
    assert torch.equal(small.train.x, mnist.train.x[:100])
    assert torch.equal(small.test.x, mnist.test.x[:100])
    assert torch.equal(small.val.index, torch.arange(100))


def test_mnist_from_gz_archives_with_cache(tmp_path, monkeypatch, mnist):
    """Only the .gz archives: extracted into ./data, verified, parsed, cached, reused."""
    source = _root_or_skip("mnist") / "MNIST" / "raw"
    if not all((source / f"{f}.gz").is_file() for f in datasets._MNIST_FILES):
        pytest.skip("no .gz archives beside the MNIST files")
    gz_root = tmp_path / "gz"
    (gz_root / "MNIST" / "raw").mkdir(parents=True)
    for fname in datasets._MNIST_FILES:
        (gz_root / "MNIST" / "raw" / f"{fname}.gz").symlink_to((source / f"{fname}.gz").resolve())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    ds = load_dataset("mnist", root=gz_root, cache_dir=tmp_path / "c", val_size=1000)
    assert ds.source == "data" and (work / "data/MNIST/raw/train-images-idx3-ubyte").is_file()
    assert len(ds.train) == 59000 and torch.equal(ds.train.x[:55000], mnist.train.x)
    assert torch.equal(ds.test.x, mnist.test.x) and len(ds.val) == 1000

    def md5_again(raw):
        raise AssertionError("MD5s are checked only when the cache is built")

    monkeypatch.setattr(datasets, "_mnist_check_md5", md5_again)
    load_dataset("mnist", root=gz_root, cache_dir=tmp_path / "c")  # cache hit
    extracted = work / "data/MNIST/raw/t10k-labels-idx1-ubyte"
    later = extracted.stat().st_mtime + 10
    os.utime(extracted, (later, later))
    with pytest.raises(AssertionError, match="only when the cache is built"):
        load_dataset("mnist", root=gz_root, cache_dir=tmp_path / "c")  # rebuilt


# ---------------------------------------------------------------------------------------------
# real Omniglot (skips without the data; the first build takes 10-30 s, later loads < 2 s)
# ---------------------------------------------------------------------------------------------


def test_omniglot_real(omniglot):
    train, val, test = omniglot.train, omniglot.val, omniglot.test
    assert (len(train), len(val), len(test)) == (24345 - 2000, 2000, 8115)
    assert omniglot.num_classes == 1623
    labels = torch.cat([train.y, val.y, test.y])
    assert labels.min().item() == 0 and labels.max().item() == 1622
    assert torch.bincount(labels, minlength=1623).tolist() == [20] * 1623
    alphabets = torch.cat([train.extra["alphabet"], test.extra["alphabet"]])
    assert set(alphabets.tolist()) == set(range(50))
    assert int(train.extra["drawer"].max()) <= 15 and int(val.extra["drawer"].max()) <= 15
    assert int(test.extra["drawer"].min()) >= 16
    assert train.x.mean().item() < 0.2 and train.x.max().item() == 1.0  # strokes are 1
    assert set(test.x.unique().tolist()) == {0.0, 1.0}
    assert 0.0 < omniglot.label_entropy() <= math.log(1623)
