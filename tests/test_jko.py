"""JKO-iFlow: the block loss against closed forms, the proximal step on Gaussians, seeding,
convergence diagnostics and the estimators with ``method="jko"``."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from scipy.stats import multivariate_normal

from sigflow import FlowAnomalyDetector, FlowDensityEstimator
from sigflow.flows import (
    NonFiniteLossError,
    TrainingConfig,
    VelocityMLP,
    convergence_diagnostics,
    jko_block_loss,
    jko_block_terms,
    rademacher_probes,
    sliced_wasserstein_to_normal,
    train_flow,
)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class LinearField(torch.nn.Module):
    """``v(x, t) = A x`` (no analytic trace: the loss falls back to autograd)."""

    def __init__(self, A):
        super().__init__()
        self.A = torch.nn.Parameter(torch.as_tensor(A, dtype=torch.float64))

    def forward(self, x, t):
        return x @ self.A.T


A_MATRIX = np.array([[-0.4, 0.7], [-0.3, 0.2]])


def _linear_closed_form(A, x0, h):
    """Per-sample terms for x(t) = expm(tA) x0: end point, tr A, and int |A x(t)|^2 dt."""
    nodes, weights = np.polynomial.legendre.leggauss(40)
    t = 0.5 * (nodes + 1.0)
    kinetic = np.zeros(len(x0))
    for ti, wi in zip(t, 0.5 * weights, strict=True):
        kinetic += wi * ((x0 @ (A @ expm(ti * A)).T) ** 2).sum(1)
    z = x0 @ expm(A).T
    logdet = np.full(len(x0), np.trace(A))
    loss = (0.5 * (z**2).sum(1) - logdet + kinetic / (2 * h)).mean()
    return z, logdet, kinetic, loss


def test_block_loss_linear_field_matches_closed_form():
    x0 = np.random.default_rng(0).normal([0.5, -1.0], 0.8, size=(64, 2))
    h = 0.7
    z_ref, ld_ref, kin_ref, loss_ref = _linear_closed_form(A_MATRIX, x0, h)
    field = LinearField(A_MATRIX)
    x = torch.as_tensor(x0)
    z, ld, kin, nfe = jko_block_terms(field, x, n_steps=16)
    assert nfe == 64
    np.testing.assert_allclose(z.detach().numpy(), z_ref, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(ld.detach().numpy(), ld_ref, rtol=1e-10)
    np.testing.assert_allclose(kin.detach().numpy(), kin_ref, rtol=1e-7)
    loss = jko_block_loss(field, x, h, n_steps=16)
    assert float(loss.detach()) == pytest.approx(loss_ref, rel=1e-8)
    # The loss is differentiable in the field's parameters: compare with finite differences.
    loss.backward()
    eps = 1e-6
    for i, j in [(0, 1), (1, 0)]:
        up, down = A_MATRIX.copy(), A_MATRIX.copy()
        up[i, j] += eps
        down[i, j] -= eps
        fd = (_linear_closed_form(up, x0, h)[3] - _linear_closed_form(down, x0, h)[3]) / (2 * eps)
        assert float(field.A.grad[i, j]) == pytest.approx(fd, rel=1e-5)


def test_block_loss_hutchinson_with_all_sign_probes_is_exact():
    # Averaging e^T A e over all four sign vectors of R^2 gives tr A exactly.
    probes = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    x = torch.as_tensor(np.random.default_rng(1).normal(size=(32, 2)))
    field = LinearField(A_MATRIX)
    exact = jko_block_loss(field, x, 0.5, n_steps=8).detach()
    hutch = jko_block_loss(field, x, 0.5, n_steps=8, probes=probes).detach()
    assert float(hutch) == pytest.approx(float(exact), rel=1e-12)


def _proximal_gaussian(m, s, h):
    """One JKO step of KL(. || N(0, I)) from N(m, s^2 I) with step h.

    The optimal map is affine, T(x) = m' + a (x - m). Per coordinate the objective is
    (m'^2 + a^2 s^2) / 2 - log a + ((m' - m)^2 + (a - 1)^2 s^2) / (2 h), whose minimiser is
    m' = m / (1 + h) and, for sigma = a s, sigma - 1/sigma + (sigma - s) / h = 0.
    """
    c = 1.0 + 1.0 / h
    sigma = (s / h + math.sqrt((s / h) ** 2 + 4.0 * c)) / (2.0 * c)
    return m / (1.0 + h), sigma


M0, S0, H = np.array([1.0, -0.5]), 0.6, 0.5


@pytest.fixture(scope="module")
def gaussian_fit():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(3000, 2, generator=g, dtype=torch.float32) * S0 + torch.tensor(M0).float()
    config = TrainingConfig(
        method="jko", n_blocks=2, step_size=H, step_size_ratio=1.0, hidden_layer_sizes=(32, 32),
        max_iter=100, batch_size=256, learning_rate_init=5e-3,
    )
    result = train_flow(X, config, torch.Generator().manual_seed(1))
    return X, result


def test_one_block_moves_gaussian_by_the_proximal_step(gaussian_fit):
    X, result = gaussian_fit
    with torch.no_grad():
        Z, _ = result.flow(X, n_blocks=1)
    m_new, sigma = _proximal_gaussian(M0, S0, H)
    mean = X.mean(0).numpy()
    std = X.std(0).numpy()
    # The exact Ornstein-Uhlenbeck evolution would give means m * exp(-h) (0.06 lower for
    # the first coordinate) and a standard deviation of 0.874: the fit must be nearer JKO.
    np.testing.assert_allclose(Z.mean(0).numpy(), mean / (1.0 + H), atol=0.025)
    np.testing.assert_allclose(Z.std(0).numpy(), std * sigma / S0, atol=0.025)
    assert abs(m_new[0] - M0[0] * math.exp(-H)) > 0.05
    stats = result.block_stats
    assert [s["kind"] for s in stats] == ["jko", "jko"]
    assert set(stats[0]) == {
        "block", "kind", "step_size", "n_iter", "loss", "time_s", "nfe_push", "displacement",
        "latent_nll", "n_checks",
    }


def test_diagnostics_decrease_block_after_block(gaussian_fit):
    X, result = gaussian_fit
    flow = result.flow.double()
    Xd = X.double()
    true = multivariate_normal(M0, S0**2).logpdf(Xd.numpy())
    rows = convergence_diagnostics(flow, Xd, log_density=torch.as_tensor(true))
    assert [r["block"] for r in rows] == [0, 1, 2]
    # (The latent NLL E|z|^2/2 + const need not decrease: here it rises toward d/2 + const.)
    for key in ("kl_gap", "sliced_wasserstein", "nll"):
        values = [r[key] for r in rows]
        assert values[0] > values[1] > values[2], (key, values)
    # KL(N(m, s^2 I) || N(0, I)) in closed form, per coordinate (m^2 + s^2 - 1)/2 - log s.
    kl0 = float(((M0**2 + S0**2 - 1) / 2 - math.log(S0)).sum())
    assert rows[0]["kl_gap"] == pytest.approx(kl0, abs=0.05)
    assert rows[-1]["kl_gap"] < 0.5 * kl0
    assert rows[2]["nfe"] == 2 * result.flow.n_steps * 4


def test_sliced_wasserstein_is_deterministic_and_detects_shift():
    z = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = sliced_wasserstein_to_normal(z)
    assert a == sliced_wasserstein_to_normal(z)
    assert a < 0.05
    assert sliced_wasserstein_to_normal(z + 0.5) > 0.2


@pytest.mark.parametrize("use_probes", [False, True])
def test_jko_training_is_reproducible(use_probes):
    X = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))

    def fit():
        probes = None
        if use_probes:
            probes = rademacher_probes(2, 3, generator=torch.Generator().manual_seed(3))
        config = TrainingConfig(
            method="jko", n_blocks=2, hidden_layer_sizes=(8, 8), max_iter=5, batch_size=64,
            probes=probes,
        )
        return train_flow(X, config, torch.Generator().manual_seed(7))

    a, b = fit(), fit()
    assert a.loss_curve == b.loss_curve
    for pa, pb in zip(a.flow.parameters(), b.flow.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_tol_stops_adding_blocks():
    X = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    config = TrainingConfig(
        method="jko", n_blocks=5, hidden_layer_sizes=(8,), max_iter=3, batch_size=64, tol=1e3
    )
    result = train_flow(X, config, torch.Generator().manual_seed(0))
    assert len(result.flow.blocks) == len(result.block_stats) == 1


def test_non_finite_loss_names_block_and_step():
    X = torch.full((64, 2), 1e25)
    config = TrainingConfig(method="jko", n_blocks=2, hidden_layer_sizes=(8,), max_iter=3)
    with pytest.raises(NonFiniteLossError, match=r"block 1, step 1"):
        train_flow(X, config, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("Estimator", [FlowDensityEstimator, FlowAnomalyDetector])
def test_estimators_fit_and_score_with_jko(Estimator):
    rng = np.random.default_rng(0)
    X = rng.normal([3.0, -2.0], [2.0, 0.5], size=(400, 2))
    params = dict(
        method="jko", n_blocks=2, hidden_layer_sizes=(16, 16), max_iter=20, batch_size=128,
        step_size=0.3, step_size_ratio=1.3, finetune_iter=30, random_state=0,
    )
    est = Estimator(**params).fit(X)
    scores = est.score_samples(X[:50])
    assert scores.shape == (50,) and np.isfinite(scores).all()
    assert [s["kind"] for s in est.block_stats_] == ["jko", "jko"]
    np.testing.assert_array_equal(scores, Estimator(**params).fit(X).score_samples(X[:50]))
    true = multivariate_normal([3.0, -2.0], np.diag([4.0, 0.25])).logpdf
    assert est.finetune_stats_["n_iter"] > 0  # refined: the middle rows lose their meaning
    with pytest.warns(UserWarning, match="refined together"):
        rows = est.convergence_path(X, log_density=true)
    assert [r["block"] for r in rows] == [0, 1, 2]
    assert [r["kind"] for r in rows] == ["data", "jko", "jko"]
    assert rows[2]["ou_time"] == pytest.approx(0.3 + 0.39)
    # Row 0 is N(0, I) on the standardised data: its NLL in user units is the Gaussian
    # fit's, and the last row's NLL is the flow's mean negative log-likelihood: the
    # estimator's mean negative score, for the detector with plain (not kernel-averaged)
    # scores, which the same seed fits with the same flow.
    plain = est if Estimator is FlowDensityEstimator else Estimator(**params, n_score_draws=1)
    if plain is not est:
        plain.fit(X)
    assert rows[-1]["nll"] == pytest.approx(-plain.score_samples(X).mean(), rel=1e-9)
    assert rows[0]["kl_gap"] == pytest.approx(rows[0]["nll"] + true(X).mean(), rel=1e-9)
    with pytest.raises(ValueError, match="log_density"):
        est.convergence_path(X, log_density=np.zeros(3))
    for bad in (0, -1, 2.5, True):  # 0 gave NaN distances, the others errors inside torch
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the error comes first
            with pytest.raises(ValueError, match="n_projections must be a positive integer"):
                est.convergence_path(X, n_projections=bad)
    # a block-wise fit is what the per-block rows describe: no warning
    blockwise = Estimator(**{**params, "finetune_iter": 0}).fit(X)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the blocks of this model")
        blockwise.convergence_path(X, log_density=true)


def test_jko_blocks_early_stop_on_their_held_out_objective_and_keep_the_best_weights():
    # Data that already are N(0, I): no block can improve its held-out objective for long,
    # so training stops well before max_iter, after n_iter_no_change checks without gain,
    # and the block keeps the weights of its best check.
    from sigflow.flows._jko import _train_jko_block

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(2)
    X = torch.randn(1200, 2, generator=g)
    X_val = torch.randn(300, 2, generator=g)
    config = TrainingConfig(
        method="jko", hidden_layer_sizes=(16, 16), max_iter=2000, batch_size=128,
        validation_interval=10, n_iter_no_change=3, n_ode_steps=2,
    )
    velocity = VelocityMLP(2, (16, 16), generator=torch.Generator().manual_seed(0))
    losses, n_checks = _train_jko_block(velocity, X, 0.5, lambda: None, config, g, 0, X_val)
    assert len(losses) < 2000
    assert n_checks == len(losses) // 10 + (len(losses) % 10 > 0)
    with torch.no_grad():
        kept = float(jko_block_loss(velocity, X_val, 0.5, n_steps=2))
        # the identity map (a zero field) has the objective E|x|^2 / 2: nothing may be worse
        identity = float(0.5 * (X_val**2).sum(1).mean())
    assert kept <= identity + 0.01
    # without held-out rows the block runs all its steps
    velocity = VelocityMLP(2, (16, 16), generator=torch.Generator().manual_seed(0))
    short = TrainingConfig(**{**config.__dict__, "max_iter": 40})
    losses, n_checks = _train_jko_block(velocity, X, 0.5, lambda: None, short, g, 0)
    assert (len(losses), n_checks) == (40, 0)


def test_jko_held_out_check_is_the_block_objective():
    # The held-out check scores exactly jko_block_loss (KL + kinetic / (2 h)): with two rows
    # nothing is trimmed, so the recorded value is the plain mean objective.
    from sigflow.flows._jko import _JKOValidation

    g = torch.Generator().manual_seed(0)
    net = VelocityMLP(2, (8, 8), generator=g).double()
    X_val = 2.0 * torch.randn(2, 2, generator=g, dtype=torch.float64)
    cfg = TrainingConfig(method="jko", n_ode_steps=3)
    for h in (0.1, 0.5):
        monitor = _JKOValidation(X_val, h, None, cfg)
        monitor.check(net, list(net.parameters()))
        with torch.no_grad():
            expected = float(jko_block_loss(net, X_val, h, n_steps=3))
        assert abs(monitor.best - expected) < 1e-10 * max(1.0, abs(expected))


# --- tests added from mutation testing of sigflow/flows (each kills a surviving mutant) -------
def test_jko_checks_each_block_on_held_out_rows_pushed_through_the_earlier_ones(monkeypatch):
    from sigflow.flows import Flow, _jko, _training

    seen = []
    init = _jko._JKOValidation.__init__

    def record(self, X_val, h, probes, config):
        seen.append(X_val.clone())
        init(self, X_val, h, probes, config)

    monkeypatch.setattr(_jko._JKOValidation, "__init__", record)
    g = torch.Generator().manual_seed(0)
    X, X_val = torch.randn(200, 2, generator=g), torch.randn(40, 2, generator=g)
    cfg = TrainingConfig(method="jko", n_blocks=2, hidden_layer_sizes=(8,), max_iter=3,
                         validation_interval=1, n_ode_steps=2)
    result = _training.TrainingResult(flow=Flow(n_steps=2))
    net = VelocityMLP(2, (8,), generator=torch.Generator().manual_seed(1))
    _jko.train_jko_blocks(X, net, cfg, g, result, X_val)
    pushed = _training._push_all(result.flow.blocks[0], X_val, cfg)[0]
    assert torch.equal(seen[0], X_val) and torch.equal(seen[1], pushed)


def test_tol_stops_at_the_first_block_that_moves_less():
    import dataclasses

    X = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    cfg = TrainingConfig(method="jko", n_blocks=3, hidden_layer_sizes=(8,), max_iter=3,
                         batch_size=64, n_ode_steps=2)
    d1 = train_flow(X, cfg, torch.Generator().manual_seed(0)).block_stats[0]["displacement"]
    for tol, one_block in ((1.01 * d1, True), (0.99 * d1, False)):
        fit = train_flow(X, dataclasses.replace(cfg, tol=tol), torch.Generator().manual_seed(0))
        assert (len(fit.flow.blocks) == 1) == one_block


def test_sliced_wasserstein_of_the_normal_quantiles_is_zero():
    n = 1000
    q = torch.special.ndtri((torch.arange(n, dtype=torch.float64) + 0.5) / n).reshape(-1, 1)
    assert sliced_wasserstein_to_normal(q) < 1e-12


def test_diagnostics_use_the_same_directions_for_every_block():
    from sigflow.flows import Flow, FlowBlock

    g = torch.Generator().manual_seed(0)
    flow = Flow([FlowBlock(VelocityMLP(2, (8,), generator=g)) for _ in range(2)]).double()
    X = torch.randn(300, 2, generator=g, dtype=torch.float64)
    for k, row in enumerate(convergence_diagnostics(flow, X)):
        z = flow(X, n_blocks=k)[0]
        assert row["sliced_wasserstein"] == pytest.approx(sliced_wasserstein_to_normal(z),
                                                          rel=1e-12)
