"""Hidden tests of the exercises of book/06_omniglot.ipynb, read by book/make_autograder.py.

This file is parsed, not imported. Each top-level function ``<function>__<what it checks>()`` is one
hidden test of the exercise whose template defines ``<function>``. Its body runs, when a
submission is graded, with the student's notebook namespace after that exercise: the names it
reads but does not assign (the student's function, ``pd``, ``np``, ...) come from there, which is
why nothing is imported at the top of this file. The tests use other inputs than the public check
(the book's check cell) and probe what the check leaves open.
"""


# ----------------------------------------------------------------------------- seed by seed
def seedwise_rank_correlation__reversed_order_and_two_seeds():
    rows = []
    for seed, shift in [(4, 0.0), (9, 1.0)]:
        for i, m in enumerate(["p", "q", "r", "s"]):
            rows.append(("mnist", m, seed, i + shift))
            rows.append(("omniglot", m, seed, (-i if seed == 4 else i) + 10.0))
    runs = pd.DataFrame(rows[::-1], columns=["dataset", "method", "seed", "v"])   # rows in reverse order
    rho = seedwise_rank_correlation(runs, "v")
    assert set(rho) == {4, 9}, f"one rho per seed, keys 4 and 9; got {sorted(rho)}"
    assert abs(rho[4] + 1) < 1e-12 and abs(rho[9] - 1) < 1e-12, f"expected rho = -1 (seed 4) and +1 (seed 9), got {rho}"


def seedwise_rank_correlation__against_scipy_on_ties():
    from scipy import stats

    runs = pd.DataFrame({"dataset": ["mnist"] * 5 + ["omniglot"] * 5, "seed": [0] * 10,
                         "method": list("abcde") + list("edcba"),
                         "v": [1.0, 2.0, 2.0, 3.0, 5.0, 0.5, 0.1, 0.3, 0.3, 0.2]})
    x = [1.0, 2.0, 2.0, 3.0, 5.0]
    y = [0.2, 0.3, 0.3, 0.1, 0.5]                                  # omniglot values of a..e
    ref = stats.spearmanr(x, y).statistic
    got = seedwise_rank_correlation(runs, "v")[0]
    assert abs(got - ref) < 1e-12, f"Spearman's rho with ties: expected {ref:.6f}, got {got:.6f}"
