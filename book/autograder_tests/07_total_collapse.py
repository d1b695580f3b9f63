"""Hidden tests of the exercises of book/07_total_collapse.ipynb, read by book/make_autograder.py.

This file is parsed, not imported. Each top-level function ``<function>__<what it checks>()`` is one
hidden test of the exercise whose template defines ``<function>``. Its body runs, when a
submission is graded, with the student's notebook namespace after that exercise: the names it
reads but does not assign (the student's function, ``torch``, ``math``, ``np``, ...) come from
there, which is why nothing is imported at the top of this file. The tests use other inputs than
the public check (the book's check cell) and probe what the check leaves open.
"""


# ----------------------------------------------------------------------------- exercise 1
def batch_bound__matches_a_direct_computation():
    # B = 5 codes in D = 2, scored with torch.distributions instead of the package
    g = torch.Generator().manual_seed(71)
    f64 = dict(dtype=torch.float64)
    mu, logvar = torch.randn(5, 2, generator=g, **f64), 0.3 * torch.randn(5, 2, generator=g, **f64)
    z = mu + (0.5 * logvar).exp() * torch.randn(5, 2, generator=g, **f64)
    q = torch.distributions.Normal(mu[None, :, :], (0.5 * logvar).exp()[None, :, :])
    log_q = q.log_prob(z[:, None, :]).sum(-1)                               # (i, j): log q(z_i | x_j)
    ce = -(log_q.diagonal() - torch.logsumexp(log_q, dim=1)).mean()
    mine = float(batch_bound(z, mu, logvar))
    assert abs(mine - (math.log(5) - float(ce))) < 1e-9, f"B = 5, D = 2: got {mine:.9f}"


def batch_bound__one_code_and_order():
    g = torch.Generator().manual_seed(72)
    f64 = dict(dtype=torch.float64)
    mu, logvar = torch.randn(1, 3, generator=g, **f64), torch.randn(1, 3, generator=g, **f64)
    one = float(batch_bound(mu + 0.1, mu, logvar))
    assert abs(one) < 1e-12, f"a batch of one code certifies log 1 = 0 nats, got {one}"
    mu, logvar = torch.randn(12, 3, generator=g, **f64), 0.5 * torch.randn(12, 3, generator=g, **f64)
    z = mu + (0.5 * logvar).exp() * torch.randn(12, 3, generator=g, **f64)
    perm = torch.randperm(12, generator=g)
    a, b = float(batch_bound(z, mu, logvar)), float(batch_bound(z[perm], mu[perm], logvar[perm]))
    assert abs(a - b) < 1e-9, f"the order of the batch must not matter: {a:.9f} vs {b:.9f}"


def batch_bound__narrow_posteriors_in_many_dimensions():
    # log q(z_i | x_i) is about +800 nats here: exp() of it overflows, log-space arithmetic does not
    g = torch.Generator().manual_seed(73)
    f64 = dict(dtype=torch.float64)
    mu = 3 * torch.randn(16, 200, generator=g, **f64)
    logvar = torch.full_like(mu, -10.0)
    z = mu + (0.5 * logvar).exp() * torch.randn(16, 200, generator=g, **f64)
    value = float(batch_bound(z, mu, logvar))
    assert math.isfinite(value), f"got {value}: work with log-densities and torch.logsumexp"
    assert abs(value - math.log(16)) < 1e-6, f"separated posteriors reach log 16 = {math.log(16):.6f}, got {value}"


# ----------------------------------------------------------------------------- exercise 2
def paired_interval__matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(21)
    a, b = rng.normal(size=7), rng.normal(size=7) + 0.3
    for level in (0.9, 0.99):
        d = a - b
        low, high = stats.t.interval(level, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
        m, lo, hi = (float(v) for v in paired_interval(a, b, level=level))
        assert abs(m - d.mean()) < 1e-12, f"the mean of a - b is {d.mean():.6f}, got {m:.6f}"
        assert abs(lo - low) < 1e-9 and abs(hi - high) < 1e-9, (
            f"level {level}: expected [{low:.6f}, {high:.6f}], got [{lo:.6f}, {hi:.6f}]")


def paired_interval__swapping_and_levels():
    a, b = [0.3, 1.7, 2.2, 0.9, 1.4], [0.1, 1.0, 2.5, 0.2, 1.1]
    m, lo, hi = (float(v) for v in paired_interval(a, b))
    m2, lo2, hi2 = (float(v) for v in paired_interval(b, a))
    assert abs(m + m2) < 1e-12 and abs(lo + hi2) < 1e-12 and abs(hi + lo2) < 1e-12, (
        "swapping a and b must negate the mean and mirror the interval")
    _, lo50, hi50 = (float(v) for v in paired_interval(np.array(a), np.array(b), level=0.5))
    assert lo < lo50 < m < hi50 < hi, "a 50 % interval lies inside the 95 % one, around the mean"


# ----------------------------------------------------------------------------- exercise 3
def grid_posterior_mean__a_nonlinear_decoder():
    # p(x | z) = N(x; sin(2z), 0.3^2): posteriors with several modes; reference on a dense grid
    xs = torch.tensor([-0.9, 0.0, 0.4, 0.95], dtype=torch.float64)
    log_lik = lambda zs: -0.5 * ((xs[:, None] - torch.sin(2 * zs[None, :])) / 0.3) ** 2
    dense = torch.linspace(-4.0, 4.0, 40001, dtype=torch.float64)
    w = torch.softmax(log_lik(dense) - 0.5 * dense ** 2, dim=1)
    ref = w @ dense
    mine = grid_posterior_mean(log_lik)
    assert torch.is_tensor(mine) and mine.shape == xs.shape, f"return shape {tuple(xs.shape)}"
    err = (mine.double() - ref).abs().max().item()
    assert err < 1e-3, f"largest error {err:.2e} against a 40,001-point grid"


def grid_posterior_mean__uses_span_and_grid():
    seen = []
    xs = torch.tensor([0.5, -1.0], dtype=torch.float64)

    def log_lik(zs):
        seen.append(zs)
        return -0.5 * ((xs[:, None] - zs[None, :]) / 0.7) ** 2

    grid_posterior_mean(log_lik, span=2.5, grid=51)
    assert seen, "call log_lik with the grid points"
    zs = seen[-1].reshape(-1)
    assert len(zs) == 51 and abs(float(zs[0]) + 2.5) < 1e-9 and abs(float(zs[-1]) - 2.5) < 1e-9, (
        f"grid=51, span=2.5 must give 51 points from -2.5 to 2.5, got {len(zs)} from "
        f"{float(zs[0]):.3f} to {float(zs[-1]):.3f}")


def grid_posterior_mean__huge_log_likelihoods():
    # the same posterior, with log p(x | z) shifted by -5000 nats: exp() underflows to 0 / 0
    xs = torch.tensor([-2.0, 0.3, 1.5], dtype=torch.float64)
    base = lambda zs: -0.5 * ((xs[:, None] - 1.5 * zs[None, :]) / 0.5) ** 2
    shifted = lambda zs: base(zs) - 5000.0
    a, b = grid_posterior_mean(base), grid_posterior_mean(shifted)
    assert torch.isfinite(b).all(), "normalise in log space (torch.softmax or logsumexp)"
    assert (a - b).abs().max().item() < 1e-9, "a constant in log p(x | z) must not change the posterior mean"
