"""Hidden tests of the exercises of book/05_comparison_mnist.ipynb, read by book/make_autograder.py.

This file is parsed, not imported. Each top-level function ``<function>__<what it checks>()`` is one
hidden test of the exercise whose template defines ``<function>``. Its body runs, when a
submission is graded, with the student's notebook namespace after that exercise: the names it
reads but does not assign (the student's function, ``pd``, ``np``, ``math``, ...) come from
there, which is why nothing is imported at the top of this file. The tests use other inputs than
the public check (the book's check cell) and probe what the check leaves open.
"""


# ----------------------------------------------------------------------------- the paired interval
def seed_paired_interval__other_t_and_seeds():
    # five seeds, seed numbers that are not 0..n-1, a method with an extra unpaired seed
    rows = [("a", s, v) for s, v in zip([3, 5, 8, 13, 21], [1.0, 2.5, 2.0, 4.0, 3.5])]
    rows += [("b", s, v) for s, v in zip([21, 13, 8, 5, 3, 34], [3.0, 3.0, 1.0, 2.0, 0.5, 9.0])]
    runs = pd.DataFrame(rows, columns=["method", "seed", "m"])
    d = np.array([0.5, 0.5, 1.0, 1.0, 0.5])                     # seeds 3, 5, 8, 13, 21
    half = 2.776 * d.std(ddof=1) / math.sqrt(5)
    m, lo, hi = (float(v) for v in seed_paired_interval(runs, "a", "b", "m", t=2.776))
    assert abs(m - d.mean()) < 1e-12, f"the mean of the paired differences is {d.mean()}, got {m} (pair by seed)"
    assert abs(lo - (d.mean() - half)) < 1e-9 and abs(hi - (d.mean() + half)) < 1e-9, (lo, hi)


def seed_paired_interval__swapping_negates():
    runs = load_results("results/images-long")
    om = runs[runs["dataset"] == "omniglot"]
    m, lo, hi = (float(v) for v in seed_paired_interval(om, "beta0.5", "vae", "iw_nll"))
    m2, lo2, hi2 = (float(v) for v in seed_paired_interval(om, "vae", "beta0.5", "iw_nll"))
    assert abs(m + m2) < 1e-9 and abs(lo + hi2) < 1e-9 and abs(hi + lo2) < 1e-9, (
        "swapping a and b must negate the mean and mirror the interval")


# ----------------------------------------------------------------------------- the -ELBO line
def elbo_offsets__other_reference_and_dataset():
    runs = load_results("results/images-long")
    om = runs[runs["dataset"] == "omniglot"]
    off = elbo_offsets(om, reference="beta0.5")
    means = om.groupby("method")[["kl", "rec"]].mean().sum(axis=1)
    assert abs(float(off["beta0.5"])) < 1e-9, "the reference's offset is 0"
    assert np.allclose(off.sort_index(), (means - means["beta0.5"]).sort_index()), "offsets against another reference"


def elbo_offsets__unequal_seed_counts():
    fake = pd.DataFrame({"method": ["r", "m", "m", "m"], "kl": [2.0, 1.0, 2.0, 6.0], "rec": [8.0, 5.0, 5.0, 5.0]})
    off = elbo_offsets(fake, "r")
    assert abs(float(off["m"]) - (3.0 + 5.0 - 10.0)) < 1e-12, f"mean R + mean D of m is 8, the reference's 10; got {off['m']}"
