"""Hidden tests of the exercises of book/08_exercises.ipynb, read by book/make_autograder.py.

This file is parsed, not imported. Each top-level function ``<function>__<what it checks>()`` is one
hidden test of the exercise whose template defines ``<function>``. Its body runs, when a
submission is graded, with the student's notebook namespace after that exercise: the names it
reads but does not assign (the student's function, ``torch``, ``math``, ``vaeas``,
``FixedPosteriors``, ...) come from there, which is why nothing is imported at the top of this
file. The tests use other inputs than the public check (the book's check cell) and probe what the
check leaves open.
"""


# ----------------------------------------------------------------------------- exercise 1
def kl_diag_gaussians__matches_torch_distributions():
    g = torch.Generator().manual_seed(11)
    f64 = dict(dtype=torch.float64)
    mu_q, lv_q, mu_p, lv_p = (1.5 * torch.randn(4, 3, 5, 7, generator=g, **f64)).unbind(0)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu_q, (0.5 * lv_q).exp()),
                                            torch.distributions.Normal(mu_p, (0.5 * lv_p).exp()))
    kl = kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p)
    assert torch.is_tensor(kl) and kl.shape == ref.shape, f"return shape {tuple(ref.shape)}"
    err = (kl - ref).abs().max().item()
    assert err < 1e-9, f"largest difference from torch.distributions.kl_divergence: {err:.2e} nats"


def kl_diag_gaussians__extreme_variances():
    f64 = dict(dtype=torch.float64)
    lv_q = torch.tensor([-15.0, 15.0, -15.0, 0.0], **f64)
    lv_p = torch.tensor([15.0, -15.0, -15.0, 0.0], **f64)
    mu_q, mu_p = torch.tensor([0.0, 1.0, 2.0, 3.0], **f64), torch.tensor([1.0, 0.0, 2.0, -3.0], **f64)
    kl = kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu_q, (0.5 * lv_q).exp()),
                                            torch.distributions.Normal(mu_p, (0.5 * lv_p).exp()))
    assert torch.isfinite(kl).all(), "work with the log-variances: no inf or nan for variances e^-15 and e^15"
    assert torch.allclose(kl, ref, rtol=1e-9, atol=1e-9), f"got {kl.tolist()}, expected {ref.tolist()}"


# ----------------------------------------------------------------------------- exercise 2
def iw_nll_estimate__exact_posterior_other_sizes():
    from vaeas.models import LinearVAE

    torch.manual_seed(21)
    P, D, s2, N = 3, 3, 0.1, 40
    toy = LinearVAE(P, D, sigma2=s2)
    with torch.no_grad():
        Q, _ = torch.linalg.qr(torch.randn(P, D))
        W, b = Q * torch.tensor([1.5, 0.7, 0.3]), torch.randn(P)
        toy.decoder.weight.copy_(W)
        toy.decoder.bias.copy_(b)
        prec = 1 + (W ** 2).sum(0) / s2
        toy.encoder.weight.copy_((W / s2).T / prec[:, None])
        toy.encoder.bias.copy_(-(W.T @ b) / s2 / prec)
        toy.enc_logvar.copy_(-prec.log())
        x = b + torch.randn(N, D) @ W.T + math.sqrt(s2) * torch.randn(N, P)
        exact = -torch.distributions.MultivariateNormal(b, W @ W.T + s2 * torch.eye(P)).log_prob(x)
        for k in (3, 17):
            est = iw_nll_estimate(toy, x, k)
            assert est.shape == (N,), f"return shape ({N},)"
            err = (est - exact).abs().max().item()
            assert err < 1e-3, f"P = D = 3, k = {k}: largest error {err:.4f} nats with the exact posterior"


def iw_nll_estimate__large_log_weights():
    # sigma^2 = 1e-4 in 40 dimensions: log w is about +150 nats, and exp(150) overflows in float32
    from vaeas.models import LinearVAE

    torch.manual_seed(22)
    P, D, s2, N = 40, 2, 1e-4, 25
    toy = LinearVAE(P, D, sigma2=s2)
    with torch.no_grad():
        Q, _ = torch.linalg.qr(torch.randn(P, D))
        W, b = Q * torch.tensor([1.0, 0.5]), torch.zeros(P)
        toy.decoder.weight.copy_(W)
        toy.decoder.bias.copy_(b)
        prec = 1 + (W ** 2).sum(0) / s2
        toy.encoder.weight.copy_((W / s2).T / prec[:, None])
        toy.encoder.bias.copy_(torch.zeros(D))
        toy.enc_logvar.copy_(-prec.log())
        x = torch.randn(N, D) @ W.T + math.sqrt(s2) * torch.randn(N, P)
        exact = -torch.distributions.MultivariateNormal(b.double(), (W @ W.T + s2 * torch.eye(P)).double()
                                                        ).log_prob(x.double())
        est = iw_nll_estimate(toy, x, 8)
    assert torch.isfinite(est).all(), "use torch.logsumexp: exp(log w) overflows here"
    err = (est.double() - exact).abs().max().item()
    assert err < 0.05, f"largest error {err:.4f} nats against the exact -log p(x) (about {exact.mean():.0f})"


# ----------------------------------------------------------------------------- exercise 3
def gaussian_channel_mi__more_latents_than_inputs():
    g = torch.Generator().manual_seed(31)
    f64 = dict(dtype=torch.float64)
    A = torch.randn(6, 2, generator=g, **f64)          # D = 6 > P = 2: four directions carry nothing
    L = torch.randn(2, 2, generator=g, **f64)
    Sigma = L @ L.T + 0.2 * torch.eye(2, **f64)
    for s in (0.5, 2.0):
        lam = torch.linalg.eigvalsh(A @ Sigma @ A.T).clamp(min=0)
        ref = 0.5 * torch.log1p(lam / s ** 2).sum().item()
        mine = float(gaussian_channel_mi(A, Sigma, s))
        assert abs(mine - ref) < 1e-8, f"D = 6, P = 2, s = {s}: got {mine:.8f}, expected {ref:.8f}"


def gaussian_channel_mi__zero_gain_and_scale():
    f64 = dict(dtype=torch.float64)
    zero = float(gaussian_channel_mi(torch.zeros(3, 4, **f64), torch.eye(4, **f64), 1.3))
    assert abs(zero) < 1e-12, f"an encoder that ignores x carries 0 nats, got {zero}"
    g = torch.Generator().manual_seed(32)
    A, Sigma = torch.randn(3, 4, generator=g, **f64), torch.eye(4, **f64)
    a, b = float(gaussian_channel_mi(A, Sigma, 0.8)), float(gaussian_channel_mi(5 * A, Sigma, 4.0))
    assert abs(a - b) < 1e-9, "scaling A and s together must not change the information"


# ----------------------------------------------------------------------------- exercise 4
def minibatch_cap__edge_cases():
    for n, B, expected in [(1, 128, 0.0), (40, 128, math.log(40)), (512, 128, math.log(128)),
                           (77, 1, 0.0), (3, 2, 2 * math.log(2) / 3)]:
        mine = float(minibatch_cap(n, B))
        assert abs(mine - expected) < 1e-12, f"N = {n}, B = {B}: expected {expected:.6f} nats, got {mine:.6f}"


def minibatch_cap__mnist_test_set():
    expected = (9984 * math.log(128) + 16 * math.log(16)) / 10_000
    mine = float(minibatch_cap(10_000, 128))
    assert abs(mine - expected) < 1e-12, f"N = 10,000, B = 128: expected {expected:.6f} nats, got {mine:.6f}"
    even = float(minibatch_cap(10_000, 100))
    assert abs(even - math.log(100)) < 1e-12, f"B = 100 divides 10,000: the cap is log 100, got {even:.6f}"


# ----------------------------------------------------------------------------- exercise 5
def active_units_from_means__threshold_and_type():
    mu = torch.tensor([[-0.5, 7.0, 0.0], [0.5, 7.0, 0.2]], dtype=torch.float64)   # unbiased variances 0.5, 0, 0.02
    count = active_units_from_means(mu, delta=0.5)
    assert isinstance(count, int), f"return a Python int, got {type(count).__name__}"
    assert count == 1, f"variance exactly delta = 0.5 counts as active, a constant does not: got {count}"
    assert active_units_from_means(mu) == 2, "with delta = 0.01, two of the three dimensions are active"


def active_units_from_means__other_sizes():
    g = torch.Generator().manual_seed(52)
    mu = torch.randn(57, 9, generator=g, dtype=torch.float64) * torch.tensor(
        [1e-3, 0.03, 0.06, 0.09, 0.2, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    var = mu.var(dim=0)
    for delta in (0.01, 0.1, 1.0):
        expected = int((var >= delta).sum())
        mine = active_units_from_means(mu, delta)
        assert mine == expected, f"N = 57, D = 9, delta = {delta}: expected {expected} active units, got {mine}"


# ----------------------------------------------------------------------------- exercise 6
def mi_estimate__batches_of_one():
    g = torch.Generator().manual_seed(61)
    mu, logvar = torch.randn(20, 2, generator=g), torch.randn(20, 2, generator=g)
    z = mu + (0.5 * logvar).exp() * torch.randn(20, 2, generator=g)
    value = float(mi_estimate(mu, logvar, z, 1))
    assert abs(value) < 1e-6, f"a batch of one point is its own mixture: every term is 0, got {value:.2e}"


def mi_estimate__other_sizes():
    from vaeas.distributions import reparameterize
    from vaeas.metrics import make_generator

    g = torch.Generator().manual_seed(62)
    N, D = 250, 2
    mu, logvar = 1.5 * torch.randn(N, D, generator=g), -2 * torch.rand(N, D, generator=g)
    enc = FixedPosteriors(mu, logvar)
    z = reparameterize(mu, logvar, make_generator(0))
    for B in (96, None):
        ref = vaeas.mutual_information(enc, enc.ids, "dataset" if B is None else "minibatch",
                                       batch_size=B or 128, seed=0, shuffle=False)
        mine = float(mi_estimate(mu, logvar, z, B))
        assert abs(mine - ref) < 1e-3, f"N = 250, batch size {B}: got {mine:.4f} nats, vaeas gives {ref:.4f}"


# ----------------------------------------------------------------------------- exercise 7
def make_fix__a_fresh_pair_each_call():
    (m1, t1), (m2, t2) = make_fix(), make_fix()
    assert m1 is not m2 and m1 is not broken, "make_fix must build a new model on every call"
    assert t1.beta == BETA and t1.kl_schedule == "constant", "keep beta = BETA and the constant schedule"
    assert m1.config == m2.config, "two calls should build the same kind of model"


def make_fix__works_with_another_seed():
    model, trainer = make_fix()
    history = dataclasses.replace(trainer, **{**RUN_7, "seed": 1}).fit(model, data7)
    fix = history[-1]
    assert fix["val_kl"] >= bro["val_kl"] + 0.5, f"seed 1: the KL rose by less than 0.5 nats ({fix['val_kl']:.3f})"
    assert fix["val_mi"] >= bro["val_mi"] + 0.3, f"seed 1: the MI rose by less than 0.3 nats ({fix['val_mi']:.3f})"
