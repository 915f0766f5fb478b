"""The flow core: divergences, ODE integration, blocks and training."""

from __future__ import annotations

import copy
import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.stats
import torch

from sigflow.flows import (
    Flow,
    FlowBlock,
    NonFiniteLossError,
    SolverAccuracyWarning,
    TrainingConfig,
    VelocityMLP,
    exact_divergence,
    finetune_flow,
    flow_nll_terms,
    hutchinson_divergence,
    integrate_adaptive,
    integrate_fixed,
    integrate_fixed_into,
    integrate_fixed_with_error,
    ou_step_sizes,
    rademacher_probes,
    sample_times,
    train_flow,
)
from sigflow.flows._ode import workspace_scalar
from sigflow.flows._training import _BestWeights, _trimmed_mean, held_out_statistic


def _net(dim, hidden, activation="silu", seed=0, gain=3.0):
    """A velocity network with a non-trivial field (the default init starts near zero)."""
    net = VelocityMLP(dim, hidden, activation, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        net.weights[-1].mul_(100 * gain)
        net.time_weights[-1].mul_(100)
    return net.double()


@pytest.mark.parametrize("hidden", [(7,), (6, 5), (5, 4, 6)])
@pytest.mark.parametrize("activation", ["silu", "softplus", "tanh"])
def test_analytic_divergence_equals_autograd_trace(hidden, activation):
    net = _net(4, hidden, activation)
    x = torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for t in (0.0, 0.37, torch.rand(9, dtype=torch.float64)):
        v, div = net.forward_with_divergence(x, t)
        v_ref, div_ref = exact_divergence(net, x, t)
        torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(div, div_ref, rtol=1e-10, atol=1e-12)
        assert div.abs().max() > 1e-3  # the check is not vacuous


def test_time_given_as_float_scalar_tensor_or_per_sample_agree():
    # Python floats take a fast path for the time features; it must match the tensor path.
    net = _net(3, (6, 5))
    x = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for t in (0.0, 0.37, 1.0):
        ref_v, ref_div = net.forward_with_divergence(x, torch.full((7,), t, dtype=torch.float64))
        for same in (t, torch.tensor(t, dtype=torch.float64)):
            v, div = net.forward_with_divergence(x, same)
            torch.testing.assert_close(v, ref_v, rtol=0, atol=1e-13)
            torch.testing.assert_close(div, ref_div, rtol=0, atol=1e-12)
            torch.testing.assert_close(net(x, same), ref_v, rtol=0, atol=1e-13)


@pytest.mark.parametrize("hidden", [(7,), (6, 5), (5, 4, 6)])
def test_prepared_network_computes_exactly_what_the_network_does(hidden):
    # A solve gathers the weights once (``prepared``) and reuses the time biases of a time
    # it has seen; every value must be bit for bit the network's own.
    net = _net(3, hidden)
    field = net.prepared()
    x = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for t in (0.0, 0.37, 0.37, 1.0, torch.rand(8, dtype=torch.float64)):
        v, div = field.with_divergence(x, t)
        v_ref, div_ref = net.forward_with_divergence(x, t)
        assert torch.equal(v, v_ref) and torch.equal(div, div_ref)
        assert torch.equal(field(x, t), net(x, t))


class _PlainModule(torch.nn.Module):
    """The same network seen as a generic module: plain autograd, brute-force trace."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t):
        return self.net(x, t)

    def forward_with_divergence(self, x, t):
        return exact_divergence(self.net, x, t, create_graph=True)


@pytest.mark.parametrize("activation", ["silu", "softplus", "tanh"])
@pytest.mark.parametrize("hidden", [(6,), (8, 8), (4, 5, 4)])
def test_gradients_through_prepared_solves_equal_plain_autograd(hidden, activation):
    # Training gathers the weights once per solve, and two-layer networks differentiate
    # (v, div) with a hand-written backward; the gradient must equal plain autograd through
    # the network and a brute-force (autograd Jacobian) trace.
    nets = [_net(3, hidden, activation, seed=k, gain=0.3) for k in range(2)]
    x = torch.randn(30, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = []
    for wrap in (False, True):
        flow = Flow([FlowBlock(_PlainModule(n) if wrap else n) for n in nets], n_steps=3)
        for p in flow.parameters():
            p.grad = None
        nll, kinetic, error, _ = flow_nll_terms(flow, x, solver_error=True, fused=not wrap)
        (nll.mean() + 3.0 * error.mean() + 0.1 * kinetic.mean()).backward()
        grads.append([p.grad.clone() for p in flow.parameters()])
    assert all(float(g.abs().max()) > 0 for g in grads[0])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def _reference_velocity(net, x, t):
    """The network's formula written out with plain autograd operations."""
    act = {"silu": torch.nn.functional.silu, "softplus": torch.nn.functional.softplus,
           "tanh": torch.tanh}[net.activation]
    phi = net.time_features(t, x.shape[0])
    h = x
    layers = list(zip(net.weights, net.time_weights, net.biases))
    for W, U, b in layers[:-1]:
        h = act(h @ W.T + phi @ U.T + b)
    W, U, b = layers[-1]
    return h @ W.T + phi @ U.T + b


def test_fused_training_path_refuses_higher_derivatives():
    # A graph for second derivatives through the hand-written backward would silently miss
    # their second-order part; it must raise instead. The default path supports them.
    net = _net(2, (6, 5), gain=0.3)
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    for fused in (False, True):
        for which in ("velocity", "divergence"):
            field = net.prepared(fused=fused)
            out = field(x, 0.3) if which == "velocity" else field.with_divergence(x, 0.3)[1]
            if fused and which == "divergence":
                with pytest.raises(RuntimeError, match="first derivatives only"):
                    torch.autograd.grad(out.sum(), x, create_graph=True)
            else:
                (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
                g.sum().backward()  # second derivatives exist
    # Hutchinson estimates differentiate the network twice: a block never fuses them.
    block = FlowBlock(net)
    probes = rademacher_probes(3, 2, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    grads = []
    for fused in (True, False):
        net.zero_grad()
        _, div = block.field(probes, create_graph=True, fused=fused)[1](x, 0.3)
        div.sum().backward()
        grads.append(net.weights[0].grad.clone())
    assert float(grads[0].abs().max()) > 0 and torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("activation", ["silu", "softplus", "tanh"])
def test_two_layer_divergence_backward_passes_gradcheck(activation):
    from sigflow.flows._velocity import _TwoLayerDivergence

    net = _net(3, (5, 4), activation, gain=0.5)
    field = net.prepared()
    g = torch.Generator().manual_seed(6)
    x = torch.randn(7, 3, dtype=torch.float64, generator=g)
    for t in (0.4, torch.rand(7, dtype=torch.float64, generator=g)):  # shared or per-sample time
        biases = [c.detach().requires_grad_() for c in field.time_biases(t, 7)]
        weights = [w.detach().clone().requires_grad_() for w in field.weights_t]
        trace = field._trace_matrix().detach().requires_grad_()
        inputs = (x.clone().requires_grad_(), *biases, *weights, trace, activation)
        assert torch.autograd.gradcheck(_TwoLayerDivergence.apply, inputs)
        v, div = _TwoLayerDivergence.apply(*inputs)  # and the forward is the network's
        with torch.no_grad():
            v_ref, div_ref = net.forward_with_divergence(x, t)
        assert torch.equal(v.detach(), v_ref) and torch.equal(div.detach(), div_ref)


def test_nll_terms_without_kinetic_energy_skip_it_and_change_nothing_else():
    flow = Flow([FlowBlock(_net(2, (8, 8), seed=k, gain=0.3)) for k in range(2)], n_steps=3)
    x = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    nll, kinetic, error, nfe = flow_nll_terms(flow, x, solver_error=True)
    nll2, none, error2, nfe2 = flow_nll_terms(flow, x, solver_error=True, kinetic=False)
    assert none is None and nfe == nfe2
    assert torch.equal(nll, nll2) and torch.equal(error, error2)
    assert float(kinetic.min()) > 0


@pytest.mark.parametrize("activation,old_name", [("tanh", "_dtanh"), ("silu", "_dsilu")])
def test_velocity_network_pickled_by_an_earlier_version_loads(activation, old_name):
    # Earlier versions kept the activation's derivative, a module-level function of
    # sigflow.flows._velocity, as a separate attribute; the pickle refers to it by name.
    import pickle

    from sigflow.flows import _velocity

    net = _net(2, (4, 4), activation)
    state = net.__getstate__()
    state = {k: v for k, v in state.items()
             if k not in ("_act", "_act_and_slope", "_frequency_values")}
    state["_dact"] = getattr(_velocity, old_name)
    a = torch.linspace(-3, 3, 7, dtype=torch.float64).requires_grad_()
    f = torch.tanh(a) if activation == "tanh" else torch.nn.functional.silu(a)
    (grad,) = torch.autograd.grad(f.sum(), a)
    torch.testing.assert_close(state["_dact"](a.detach()), grad)  # the derivative it was
    old = VelocityMLP.__new__(VelocityMLP)
    old.__dict__.update(state)
    loaded = pickle.loads(pickle.dumps(old))
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert not hasattr(loaded, "_dact")
    torch.testing.assert_close(loaded.forward_with_divergence(x, 0.3)[1],
                               net.forward_with_divergence(x, 0.3)[1])


def test_exact_divergence_of_linear_field_is_trace():
    A = torch.tensor([[1.0, 2.0, 0.0], [0.5, -3.0, 1.0], [0.0, 4.0, 0.25]], dtype=torch.float64)
    _, div = exact_divergence(lambda x, t: x @ A.T, torch.randn(5, 3, dtype=torch.float64), 0.0)
    torch.testing.assert_close(div, torch.full((5,), float(torch.trace(A)), dtype=torch.float64))


def test_hutchinson_is_unbiased():
    net = _net(5, (16, 16))
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    probes = rademacher_probes(4000, 5, generator=torch.Generator().manual_seed(3))
    assert set(probes.unique().tolist()) == {-1.0, 1.0}
    _, est = hutchinson_divergence(net, x, 0.5, probes)
    _, exact = net.forward_with_divergence(x, 0.5)
    # Hutchinson's variance is 2 * sum_{i != j} J_ij^2 per probe; average over 4000 probes.
    jac = torch.func.vmap(torch.func.jacrev(lambda z: net(z[None], 0.5)[0]))(x)
    off = (jac**2).sum((1, 2)) - (torch.diagonal(jac, dim1=1, dim2=2) ** 2).sum(1)
    sd = torch.sqrt(2 * off / 4000)
    assert torch.all((est - exact).abs() < 5 * sd + 1e-12)
    # a single probe is a different (noisy) number: the estimator is really stochastic
    _, one = hutchinson_divergence(net, x, 0.5, probes[:1])
    assert not torch.allclose(one, exact)


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_solvers_converge_at_their_order(method, order):
    def func(t, s):
        return (s[0] * math.cos(t),)

    exact = math.exp(math.sin(1.0))
    errors = []
    for n in (8, 16):
        (y,), nfe = integrate_fixed(
            func, (torch.ones(1, dtype=torch.float64),), 0.0, 1.0, n, method
        )
        errors.append(abs(float(y) - exact))
        assert nfe == n * {"euler": 1, "midpoint": 2, "rk4": 4}[method]
    assert math.log2(errors[0] / errors[1]) == pytest.approx(order, abs=0.35)


@pytest.mark.parametrize("n_steps", [2.7, 4.0, True, 0, -3, "4"])
def test_step_counts_that_are_not_positive_integers_are_refused(n_steps):
    # int(2.7) would silently take 2 steps; every solver entry point and Flow refuse instead
    def func(t, s):
        return (s[0],)

    x = (torch.ones(1, dtype=torch.float64),)
    for call in (
        lambda: integrate_fixed(func, x, 0.0, 1.0, n_steps, "rk4"),
        lambda: integrate_fixed_with_error(func, x, 0.0, 1.0, n_steps, "rk4"),
        lambda: Flow([], n_steps=n_steps),
    ):
        with pytest.raises(ValueError, match="n_steps must be a positive integer"):
            call()
    assert Flow([], n_steps=np.int64(3)).n_steps == 3
    with pytest.raises(ValueError, match="solver must be one of"):
        Flow([], solver="heun")



@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_quadrature_components_need_no_intermediate_stages(method):
    # With n_dynamic=1 the log-determinant-like component is only formed at the step ends;
    # the result must be bit for bit that of forming every stage.
    A = torch.tensor([[0.1, -1.0], [1.0, 0.2]], dtype=torch.float64)

    def func(t, state):
        x = state[0]
        return x @ A.T * (1 + t), torch.sin(x).sum(dim=1) * t, (x**2).sum(dim=1)

    x0 = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    zeros = torch.zeros(6, dtype=torch.float64)
    full, nfe = integrate_fixed(func, (x0, zeros, zeros), 0.0, 1.0, 5, method)
    fast, nfe_fast = integrate_fixed(func, (x0, zeros, zeros), 0.0, 1.0, 5, method, n_dynamic=1)
    assert nfe == nfe_fast
    assert all(torch.equal(a, b) for a, b in zip(full, fast))
    assert float(full[1].abs().min()) > 0
    full_e = integrate_fixed_with_error(func, (x0, zeros, zeros), 0.0, 1.0, 5, method, index=1)
    fast_e = integrate_fixed_with_error(
        func, (x0, zeros, zeros), 0.0, 1.0, 5, method, index=1, n_dynamic=1
    )
    assert torch.equal(full_e[2], fast_e[2])
    assert all(torch.equal(a, b) for a, b in zip(full_e[0], fast_e[0]))


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("logdet", [False, True])
def test_allocation_free_solver_is_integrate_fixed_bit_for_bit(method, logdet):
    A = torch.tensor([[0.1, -1.0], [1.0, 0.2]], dtype=torch.float64)

    def func(t, state):
        x = state[0]
        return x @ A.T * (1 + t), torch.sin(x).sum(dim=1) * t

    def func_into(t, x, v, div):
        torch.mul(x @ A.T, 1 + t, out=v)
        if div is not None:
            torch.mul(torch.sin(x).sum(dim=1), t, out=div)

    x0 = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    zeros = torch.zeros(6, dtype=torch.float64)
    if logdet:
        (y, ld), nfe = integrate_fixed(func, (x0, zeros), 0.3, -0.7, 5, method, n_dynamic=1)
    else:
        (y,), nfe = integrate_fixed(lambda t, s: func(t, s)[:1], (x0,), 0.3, -0.7, 5, method)
    ws = {}
    for _ in range(2):  # a second solve reuses the buffers of the first
        y2, ld2, nfe2 = integrate_fixed_into(
            func_into, x0, 0.3, -0.7, 5, method, logdet=logdet, workspace=ws
        )
        assert nfe2 == nfe and torch.equal(y2, y)
        assert torch.equal(ld2, ld) if logdet else ld2 is None
        assert all(y2.data_ptr() != b.data_ptr() for b in ws.values())  # a new result
    assert ws and float((y - x0).abs().min()) > 0


def test_workspace_scalar_is_made_once_per_value_and_precision():
    ws = {}
    x32, x64 = torch.ones(3, dtype=torch.float32), torch.ones(3, dtype=torch.float64)
    a = workspace_scalar(ws, 0.1, x32)
    assert a.dim() == 0 and a.dtype == torch.float32 and a is workspace_scalar(ws, 0.1, x32)
    b = workspace_scalar(ws, 0.1, x64)
    assert b.dtype == torch.float64 and float(b) == 0.1 and float(a) != 0.1
    # the product is the one with the Python number, in either precision
    y = torch.linspace(-3, 3, 101, dtype=torch.float32)
    assert torch.equal(torch.mul(y, a), y * 0.1)
    assert torch.equal(torch.mul(y.double(), b), y.double() * 0.1)


@pytest.mark.parametrize("activation", ["silu", "softplus", "tanh"])
@pytest.mark.parametrize("hidden", [(7,), (6, 5), (5, 4, 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inference_without_autograd_gives_the_same_bits_as_with(activation, hidden, dtype):
    # Under no_grad the pushes run through integrate_fixed_into with preallocated buffers;
    # likelihoods, pushes and pulls must equal those computed with autograd on, bit for bit.
    g = torch.Generator().manual_seed(0)
    flow = Flow(
        [FlowBlock(_net(3, hidden, activation, seed=k, gain=0.3)) for k in range(2)], n_steps=3
    ).to(dtype)
    x = torch.randn(37, 3, generator=g, dtype=torch.float64).to(dtype)
    ws = {}
    for rows in (37, 11, 37):  # buffers are remade when the batch size changes
        with torch.enable_grad():
            ref = (flow.log_prob(x[:rows]), flow(x[:rows])[0], flow.inverse(x[:rows]))
        with torch.no_grad():
            got = (
                flow.log_prob(x[:rows], workspace=ws),
                flow(x[:rows], workspace=ws)[0],
                flow.inverse(x[:rows], workspace=ws),
            )
        assert all(torch.equal(a, b) for a, b in zip(got, ref))
        assert all(torch.isfinite(r).all() for r in ref)
    assert ws  # the allocation-free path ran


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_integrate_fixed_with_error_compares_the_quadrature_rules(method):
    # state: (y, q) with dy/dt = y cos t (state-dependent) and dq/dt = t**2 (a quadrature)
    def func(t, s):
        return s[0] * math.cos(t), torch.full_like(s[1], t * t)

    start = (torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    n = 5
    plain, nfe = integrate_fixed(func, start, 0.0, 1.0, n, method)
    state, nfe_e, error = integrate_fixed_with_error(func, start, 0.0, 1.0, n, method, index=1)
    assert nfe_e == nfe
    for a, b in zip(plain, state):
        assert torch.equal(a, b)  # the same steps, bit for bit
    h = 1.0 / n
    ts = [i * h for i in range(n)]
    if method == "rk4":  # Simpson minus trapezoid: h/3 (2 f(t + h/2) - f(t) - f(t + h))
        expected = sum((h / 3 * (2 * (t + h / 2) ** 2 - t**2 - (t + h) ** 2)) ** 2 for t in ts)
        assert expected == pytest.approx(n * (h**3 / 6) ** 2, rel=1e-12)
    else:  # one or two evaluations per step: no estimate of the curvature
        expected = 0.0
    torch.testing.assert_close(error, torch.full((3,), expected, dtype=torch.float64))


def test_flow_solver_error_equals_the_stagewise_quadratures():
    g = torch.Generator().manual_seed(3)
    flow = Flow([FlowBlock(_net(2, (8, 8), seed=k, gain=0.3)) for k in range(2)], n_steps=3)
    x = torch.randn(40, 2, dtype=torch.float64, generator=g)
    nll, kinetic, nfe = flow_nll_terms(flow, x)
    nll_e, kinetic_e, error, nfe_e = flow_nll_terms(flow, x, solver_error=True)
    assert torch.equal(nll, nll_e) and torch.equal(kinetic, kinetic_e) and nfe == nfe_e
    # brute force: run the RK4 stages by hand, compare Simpson's and the trapezoid rule
    expected = torch.zeros(40, dtype=torch.float64)
    z, h = x, 1.0 / 3
    for block in flow.blocks:
        net = block.velocity
        for i in range(3):
            t = i * h
            v1, d1 = net.forward_with_divergence(z, t)
            v2, d2 = net.forward_with_divergence(z + h / 2 * v1, t + h / 2)
            v3, d3 = net.forward_with_divergence(z + h / 2 * v2, t + h / 2)
            v4, d4 = net.forward_with_divergence(z + h * v3, t + h)
            z = z + h / 6 * (v1 + 2 * v2 + 2 * v3 + v4)
            simpson = h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
            expected = expected + (simpson - h / 2 * (d1 + d4)) ** 2
    torch.testing.assert_close(error, expected, rtol=1e-10, atol=1e-14)
    assert float(error.detach().min()) > 0  # a curved field: the indicator is not trivially zero
    error.sum().backward()  # differentiable in the weights
    assert all(p.grad is not None for p in flow.parameters())


def test_block_logdet_equals_brute_force_log_abs_det_jacobian():
    block = FlowBlock(_net(3, (12, 12), gain=1.0))
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y, logdet, _ = block.push(x, logdet=True, n_steps=40)

    def flow_map(z):
        return block.push(z[None], n_steps=40)[0][0]

    for i in range(x.shape[0]):
        J = torch.autograd.functional.jacobian(flow_map, x[i])
        sign, brute = torch.linalg.slogdet(J)
        assert sign > 0
        assert float(logdet[i].detach()) == pytest.approx(float(brute), abs=1e-7)
    assert logdet.abs().max() > 0.05  # the map is far from volume preserving
    # Hutchinson log-determinant agrees in expectation: the mean over all 2**d equally
    # likely Rademacher vectors is the expectation, so it must equal the exact one
    signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=3)), dtype=torch.float64)
    _, ld_all, _ = block.push(x, logdet=True, n_steps=40, probes=signs)
    torch.testing.assert_close(ld_all, logdet, atol=1e-10, rtol=0)
    # and a few seeded probes scatter around it, each set differently
    lds = [block.push(x, logdet=True, n_steps=40, probes=rademacher_probes(
        2, 3, generator=torch.Generator().manual_seed(s), dtype=torch.float64))[1]
        for s in range(4)]
    assert all((ld - logdet).abs().max() > 1e-6 for ld in lds)
    torch.testing.assert_close(torch.stack(lds).mean(0), logdet, atol=0.3, rtol=0)


def test_flow_inverse_recovers_input_and_logdet_changes_sign():
    g = torch.Generator().manual_seed(6)
    flow = Flow([FlowBlock(_net(2, (10, 10), seed=s, gain=0.5)) for s in range(3)], n_steps=20)
    x = torch.randn(50, 2, dtype=torch.float64, generator=g)
    z, ld = flow(x, logdet=True)
    assert flow.last_nfe == 3 * 20 * 4
    x_back = flow.inverse(z)
    torch.testing.assert_close(x_back, x, atol=1e-7, rtol=0)
    _, ld_inv, _ = flow.blocks[0].push(
        flow.blocks[0].push(x, n_steps=20)[0], inverse=True, logdet=True, n_steps=20
    )
    _, ld_fwd, _ = flow.blocks[0].push(x, logdet=True, n_steps=20)
    torch.testing.assert_close(ld_inv, -ld_fwd, atol=1e-7, rtol=0)
    assert not torch.allclose(z, x, atol=1e-2)


def test_adaptive_solver_agrees_with_fine_fixed_steps():
    block = FlowBlock(_net(2, (10, 10), gain=0.5))
    x = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    y_fixed, ld_fixed, _ = block.push(x, logdet=True, n_steps=200)
    y_adapt, ld_adapt, nfe = block.push(x, logdet=True, solver="dopri5")
    torch.testing.assert_close(y_adapt, y_fixed, atol=1e-4, rtol=0)
    torch.testing.assert_close(ld_adapt, ld_fixed, atol=1e-4, rtol=0)
    assert nfe > 0


@pytest.mark.parametrize("solver", ["rk4", "dopri5"])
def test_log_prob_gradients_with_autograd_or_hutchinson_traces(solver):
    # Hutchinson over all 2**d sign vectors equals the exact trace, and so must its
    # gradient; the autograd trace of a plain module likewise. Both had dropped the
    # divergence's dependence on the weights and on x (the value was right).
    net = _net(2, (8, 8), gain=3.0)
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    all_signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=2)), dtype=torch.float64)

    def grads(velocity, probes=None):
        xx = x.clone().requires_grad_(True)
        flow = Flow([FlowBlock(velocity)], n_steps=4, solver=solver)
        lp = flow.log_prob(xx, probes=probes)
        return (lp.detach(), *torch.autograd.grad(lp.sum(), [net.weights[0], xx]))

    ref = grads(net)  # the analytic trace
    for other in (grads(net, all_signs), grads(_PlainModule(net))):
        for a, b in zip(other, ref):
            torch.testing.assert_close(a, b, atol=1e-6 if solver == "dopri5" else 1e-12, rtol=0)
    if solver == "dopri5":  # its steps depend on the weights: no exact derivative to check
        return
    eps = 1e-6  # and the analytic reference against finite differences
    with torch.no_grad():
        flow = Flow([FlowBlock(net)], n_steps=4, solver=solver)
        net.weights[0][0, 0] += eps
        up = flow.log_prob(x).sum()
        net.weights[0][0, 0] -= 2 * eps
        down = flow.log_prob(x).sum()
        net.weights[0][0, 0] += eps
    assert float(ref[1][0, 0]) == pytest.approx(float(up - down) / (2 * eps), abs=1e-5)


def test_adaptive_solver_holds_every_sample_to_the_tolerance():
    # dy/dt = a cos(a t): one hard row (a = 40) among easy ones. A batch-wide RMS error
    # let its error grow with the batch (6e-6 alone, 2.4e-4 among 10,000 rows).
    def error(batch):
        a = torch.zeros(batch, 1, dtype=torch.float64)
        a[0] = 40.0
        (y,), nfe = integrate_adaptive(
            lambda t, s: (a * torch.cos(a * t),),
            (torch.zeros(batch, 1, dtype=torch.float64),), 0.0, 1.0,
        )
        return abs(float(y[0, 0]) - math.sin(40.0)), nfe

    alone, nfe_alone = error(1)
    among, nfe_among = error(2000)
    assert alone < 2e-5 and among == pytest.approx(alone, rel=1e-6) and nfe_among == nfe_alone


def test_adaptive_solver_on_an_empty_batch_or_span():
    block = FlowBlock(_net(2, (8,)))
    y, ld, nfe = block.push(torch.zeros(0, 2, dtype=torch.float64), logdet=True, solver="dopri5")
    assert y.shape == (0, 2) and ld.shape == (0,) and nfe == 0
    x = torch.ones(3, 2, dtype=torch.float64)
    (same,), nfe = integrate_adaptive(lambda t, s: (s[0],), (x,), 0.5, 0.5)
    assert torch.equal(same, x) and nfe == 0
    assert Flow([block]).sample(0, solver="dopri5").shape == (0, 2)


def test_ou_step_sizes_are_geometric():
    h = ou_step_sizes(4, 0.2, 1.3)
    assert h == pytest.approx([0.2, 0.26, 0.338, 0.4394])


@pytest.mark.parametrize("method", ["lfm", "fm"])
def test_training_builds_blocks_and_moves_data_toward_gaussian(method):
    g = torch.Generator().manual_seed(0)
    X = torch.cat(
        [torch.randn(400, 2, generator=g) * 0.3 + 1.5, torch.randn(400, 2, generator=g) * 0.3 - 1.5]
    )
    X = (X - X.mean(0)) / X.std(0)
    cfg = TrainingConfig(
        method=method, n_blocks=3, hidden_layer_sizes=(32, 32), max_iter=150, validation_fraction=0
    )
    result = train_flow(X, cfg, torch.Generator().manual_seed(0))
    assert len(result.flow.blocks) == (3 if method == "lfm" else 1)
    assert len(result.loss_curve) == 150 * len(result.flow.blocks)
    kinds = [b["kind"] for b in result.block_stats]
    assert kinds[-1] == "free" and all(k == "ou" for k in kinds[:-1])
    # the latent codes of the data are closer to N(0, I) than the data: smaller NLL
    flow = result.flow.double()
    with torch.no_grad():
        lp = flow.log_prob(X.double()).mean()
        base = -0.5 * (X.double() ** 2).sum(1).mean() - math.log(2 * math.pi)
    assert lp > base + 0.3


def test_early_stopping_on_held_out_likelihood_keeps_the_best_block():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(150, 6, generator=g) * torch.tensor([1.0, 0.1, 0.1, 0.1, 0.1, 0.1])
    cfg = TrainingConfig(
        n_blocks=2, hidden_layer_sizes=(128, 128), max_iter=3000, validation_interval=20,
        n_iter_no_change=3, learning_rate_init=5e-3,
    )
    result = train_flow(X, cfg, torch.Generator().manual_seed(0))
    # 135 training rows and a large network: the held-out likelihood peaks early
    assert all(b["n_iter"] < 3000 for b in result.block_stats)
    no_stop = TrainingConfig(**{**cfg.__dict__, "validation_fraction": 0.0, "max_iter": 300})
    assert len(train_flow(X, no_stop, torch.Generator().manual_seed(0)).loss_curve) == 600


def test_training_is_reproducible_with_a_seed():
    X = torch.randn(300, 3, generator=torch.Generator().manual_seed(1))
    cfg = TrainingConfig(n_blocks=2, hidden_layer_sizes=(16,), max_iter=30)
    a = train_flow(X, cfg, torch.Generator().manual_seed(5))
    b = train_flow(X, cfg, torch.Generator().manual_seed(5))
    c = train_flow(X, cfg, torch.Generator().manual_seed(6))
    assert a.loss_curve == b.loss_curve
    assert a.loss_curve != c.loss_curve


def test_non_finite_loss_names_block_and_step():
    X = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    cfg = TrainingConfig(n_blocks=2, hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=1e30)
    with pytest.raises(NonFiniteLossError, match=r"block 1, step \d+"):
        train_flow(X, cfg, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("method", "maf", "method must be one of"),
        ("n_blocks", 0, "n_blocks must be a positive integer"),
        ("hidden_layer_sizes", (), "hidden_layer_sizes"),
        ("ode_solver", "rk45", "ode_solver must be one of"),
        ("step_size", -1.0, "step_size must be a positive number"),
        ("interpolant", "cubic", "interpolant must be one of"),
        ("activation", "relu", "activation must be"),
        ("validation_interval", 0, "validation_interval must be a positive integer"),
        ("push_chunk", 0, "push_chunk must be a positive integer"),
        ("n_iter_no_change", 2.5, "n_iter_no_change must be a positive integer"),
        ("validation_fraction", 1.0, r"validation_fraction must be in \[0, 1\)"),
        ("tol", -1.0, "tol must be None or a positive finite number"),
        ("time_sampling", "beta", "time_sampling must be"),
        ("time_sampling", ("beta", 0.0, 1.0), "time_sampling must be"),
        ("time_sampling", ("beta", 1.0, float("nan")), "time_sampling must be"),
    ],
)
def test_bad_training_configuration_is_rejected(field, value, match):
    cfg = TrainingConfig(**{field: value})
    with pytest.raises(ValueError, match=match):
        cfg.validate()


def _ring(n, seed):
    g = torch.Generator().manual_seed(seed)
    angle = 2 * math.pi * torch.rand(n, generator=g)
    radius = 2.0 + 0.2 * torch.randn(n, generator=g)
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], 1)


def test_flow_nll_terms_equal_minus_log_prob():
    g = torch.Generator().manual_seed(0)
    flow = Flow([FlowBlock(VelocityMLP(3, (16, 16), generator=g)) for _ in range(2)], n_steps=3)
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(5.0)  # a field far from the identity, so the terms matter
    x = torch.randn(50, 3, generator=g)
    nll, kinetic, nfe = flow_nll_terms(flow, x)
    torch.testing.assert_close(nll, -flow.log_prob(x), rtol=1e-5, atol=1e-5)
    assert nfe == 2 * 3 * 4
    # kinetic energy of a constant field v = c over unit time is |c|^2
    const = Flow([FlowBlock(VelocityMLP(3, (4,), generator=g))], n_steps=2)
    with torch.no_grad():
        for p in const.parameters():
            p.zero_()
        const.blocks[0].velocity.biases[-1].copy_(torch.tensor([1.0, -2.0, 0.5]))
    _, kin, _ = flow_nll_terms(const, x)
    torch.testing.assert_close(kin, torch.full((50,), 5.25), rtol=1e-6, atol=1e-6)


def test_finetune_improves_held_out_likelihood_and_keeps_a_valid_density():
    X = _ring(3000, 1)
    cfg = TrainingConfig(n_blocks=3, hidden_layer_sizes=(32, 32), max_iter=150)
    base = train_flow(X, cfg, torch.Generator().manual_seed(0))
    assert base.finetune_stats is None
    refined_cfg = TrainingConfig(**{**cfg.__dict__, "finetune_iter": 150})
    refined = train_flow(X, refined_cfg, torch.Generator().manual_seed(0))
    stats = refined.finetune_stats
    assert 0 < stats["n_iter"] <= 150 and stats["nfe_per_step"] == 3 * 4 * 4
    assert stats["val_nll_after"] < stats["val_nll_before"] - 0.05
    X_test = _ring(2000, 2)
    with torch.no_grad():
        before = base.flow.log_prob(X_test).mean()
        after = refined.flow.log_prob(X_test).mean()
    assert after > before + 0.05
    # the refined flow is still a density: it integrates to one on a grid
    n = 160
    axis = torch.linspace(-4.0, 4.0, n)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    flow64 = refined.flow.to(torch.float64)
    with torch.no_grad():
        mass = flow64.log_prob(grid.double()).exp().sum() * (axis[1] - axis[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=0.03)


def test_finetune_is_skipped_when_no_rows_can_be_held_out():
    X = _ring(40, 3)  # 10 % of 40 rows is fewer than 10
    cfg = TrainingConfig(n_blocks=2, hidden_layer_sizes=(8,), max_iter=20, finetune_iter=50)
    result = train_flow(X, cfg, torch.Generator().manual_seed(0))
    assert result.finetune_stats["n_iter"] == 0 and "skipped" in result.finetune_stats
    unchecked = TrainingConfig(**{**cfg.__dict__, "validation_fraction": 0.0})
    result = train_flow(X, unchecked, torch.Generator().manual_seed(0))
    assert result.finetune_stats["n_iter"] == 50 and result.finetune_stats["val_nll_after"] is None


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("finetune_iter", -1, "finetune_iter must be a non-negative integer"),
        ("finetune_iter", 2.5, "finetune_iter must be a non-negative integer"),
        ("kinetic_penalty", -0.1, "kinetic_penalty must be a non-negative number"),
        ("kinetic_penalty", float("nan"), "kinetic_penalty must be a non-negative number"),
        ("solver_penalty", -1.0, "solver_penalty must be a non-negative number"),
        ("finetune_warmup", 1.0, "finetune_warmup must be in"),
        ("finetune_batch_size", 0, "finetune_batch_size must be None or a positive integer"),
        ("finetune_batch_size", 8.5, "finetune_batch_size must be None or a positive integer"),
        ("max_scoring_steps", 0, "max_scoring_steps must be None or a positive integer"),
        ("max_scoring_steps", True, "max_scoring_steps must be None or a positive integer"),
        ("finetune_warmup", -0.1, "finetune_warmup must be in"),
        ("solver_penalty", float("inf"), "solver_penalty must be a non-negative number"),
        ("finetune_learning_rate", 0.0, "finetune_learning_rate must be a positive number"),
        ("finetune_learning_rate", float("inf"), "finetune_learning_rate must be a positive"),
        ("finetune_learning_rate", "fast", "finetune_learning_rate must be a positive number"),
    ],
)
def test_bad_refinement_configuration_is_rejected(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainingConfig(**{field: value}).validate()


def test_finetune_learning_rate_reaches_the_optimiser():
    X = _ring(1500, 4)
    params = dict(n_blocks=2, hidden_layer_sizes=(16, 16), max_iter=60, validation_fraction=0.0)
    trained = train_flow(X, TrainingConfig(**params), torch.Generator().manual_seed(0))
    blocks = trained.flow

    def refined(rate):  # the same block-wise flow, refined at ``rate``
        cfg = TrainingConfig(**params, finetune_iter=40, finetune_learning_rate=rate)
        result = finetune_flow(copy.deepcopy(trained), X, None, cfg, torch.Generator())
        return result.flow, result.finetune_stats

    frozen, frozen_stats = refined(1e-12)
    moved, moved_stats = refined(None)
    assert frozen_stats["learning_rate"] == 1e-12
    assert moved_stats["learning_rate"] == pytest.approx(0.5 * TrainingConfig().learning_rate_init)
    with torch.no_grad():
        ref = blocks.log_prob(X[:200])
        assert torch.allclose(frozen.log_prob(X[:200]), ref, atol=1e-5)
        assert (moved.log_prob(X[:200]) - ref).abs().max() > 1e-3


def _refined(solver, n_steps, rate, solver_penalty=0.0, n_far=0):
    X, X_val = _ring(2000, 5), _ring(500, 6)
    X_val[:n_far] = 1e4  # rows far outside the data among the held-out ones
    cfg = TrainingConfig(
        n_blocks=2, hidden_layer_sizes=(16, 16), max_iter=200, ode_solver=solver,
        n_ode_steps=n_steps, validation_fraction=0.0, finetune_learning_rate=rate,
        validation_interval=25,
    )
    gen = torch.Generator().manual_seed(0)
    result = train_flow(X, cfg, gen)  # blocks only (finetune_iter=0)
    cfg.finetune_iter = 100
    cfg.solver_penalty = solver_penalty
    return finetune_flow(result, X, X_val, cfg, gen), X_val


def test_finetune_reports_how_far_its_solver_is_from_a_finer_one():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolverAccuracyWarning)  # an accurate solver: no warning
        result, X_val = _refined("rk4", 4, 2e-3)
    flow = result.flow
    with torch.no_grad():
        coarse = -flow.log_prob(X_val)
        flow.n_steps = 8
        fine = -flow.log_prob(X_val)
    gap = result.finetune_stats["solver_gap"]
    diff = (coarse - fine).numpy()
    assert gap == pytest.approx(scipy.stats.trim_mean(diff, 0.01), abs=1e-6)  # 500 rows: 5 cut
    kept = scipy.stats.trim_mean(fine.numpy(), 0.01)  # the checks' statistic, as the gap's
    assert result.finetune_stats["val_nll_after"] == pytest.approx(kept, abs=1e-4)
    assert abs(gap) < 0.05


def test_a_few_far_held_out_rows_do_not_decide_the_solver_gap():
    # Three rows at 1e4 (among 500) have solver errors of thousands of nats; the gap of the
    # typical row is what the statistic and its warning are about.
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolverAccuracyWarning)
        result, X_val = _refined("rk4", 4, 2e-3, n_far=3)
    flow = result.flow
    with torch.no_grad():
        coarse = -flow.log_prob(X_val)
        flow.n_steps = 8
        fine = -flow.log_prob(X_val)
    assert float((coarse - fine)[:3].abs().min()) > 1.0  # the far rows' errors are large
    assert float((coarse - fine).mean().abs()) > 0.05  # and would decide a mean
    assert abs(result.finetune_stats["solver_gap"]) < 0.05


def test_far_held_out_rows_do_not_undo_the_refinement():
    # Three rows at 1e4 among 500 held-out ones: their NLL (about 5e7 each) decided the
    # plain mean, which then got worse as the flow fitted the data better, so the
    # refinement kept its first weights.
    result, X_val = _refined("rk4", 4, 2e-3, n_far=3)
    stats = result.finetune_stats
    assert math.isfinite(stats["val_nll_after"])
    assert stats["val_nll_after"] < stats["val_nll_before"] - 0.05
    clean, _ = _refined("rk4", 4, 2e-3)
    with torch.no_grad():  # it improved the likelihood of the typical rows as much
        far_fit = -result.flow.log_prob(X_val[3:]).mean()
        clean_fit = -clean.flow.log_prob(X_val[3:]).mean()
    assert float(far_fit) == pytest.approx(float(clean_fit), abs=0.02)


def test_held_out_statistic():
    rows = torch.cat([torch.full((1,), 1e8, dtype=torch.float64), torch.arange(99.0)])
    assert held_out_statistic(rows) == pytest.approx(scipy.stats.trim_mean(rows.numpy(), 0.01))
    assert held_out_statistic(rows) < 100  # the far row is cut
    with_nan = rows.clone()
    with_nan[0] = float("nan")  # counted as +inf, and cut like the far row
    assert held_out_statistic(with_nan) == held_out_statistic(rows)
    assert held_out_statistic(torch.tensor([1.0, float("nan")])) == math.inf
    assert held_out_statistic(torch.tensor([float("inf")] * 5)) == math.inf
    assert held_out_statistic(torch.tensor([])) == math.inf


def test_an_infinite_first_check_can_be_improved_on():
    best, params = _BestWeights(), [torch.zeros(2)]
    assert best.update(math.inf, params) == 0
    params[0] += 1.0
    assert best.update(3.0, params) == 0 and best.best == 3.0  # an improvement
    assert torch.equal(best.best_weights[0], torch.ones(2))
    assert best.update(math.inf, params) == 1


def test_solver_gap_statistic_sees_broad_errors_and_not_a_few_far_rows():
    # A refined flow's coarse solver can be exact on the typical row and off by tenths of a
    # nat, mostly flattering, on one row in seven: the median would say 0.
    errors = torch.zeros(1000, dtype=torch.float64)
    errors[:140] = 0.3
    errors[140:150] = -0.2
    assert float(errors.median()) == 0.0
    assert _trimmed_mean(errors) == pytest.approx(scipy.stats.trim_mean(errors.numpy(), 0.01))
    assert _trimmed_mean(errors) == pytest.approx(130 * 0.3 / 980)
    # three far rows (thousands of nats) among 500 do not decide it
    far = torch.cat([torch.full((3,), 5e3, dtype=torch.float64), torch.zeros(497)])
    assert _trimmed_mean(far) == 0.0 and float(far.mean()) > 20
    # small samples keep at least one row
    assert _trimmed_mean(torch.tensor([1.0])) == 1.0
    assert _trimmed_mean(torch.tensor([1.0, 2.0])) == 1.5
    assert _trimmed_mean(torch.tensor([1.0, 2.0, 30.0])) == 2.0


def test_finetune_warns_when_its_solver_misstates_the_density():
    # one Euler step per block: the refinement can make the coarse log-likelihood look far
    # better than the flow's, and the user must hear of it
    with pytest.warns(SolverAccuracyWarning, match="raise n_ode_steps"):
        result, _ = _refined("euler", 1, 1e-3)
    assert abs(result.finetune_stats["solver_gap"]) > 0.05


def test_solver_penalty_keeps_the_refinement_from_exploiting_the_solver():
    # one RK4 step per block: unpenalised, the refinement curves the fields until the coarse
    # solver flatters the likelihood; the penalty on the solver's error indicator keeps the
    # coarse and the fine likelihood together, without a worse fine likelihood
    with pytest.warns(SolverAccuracyWarning):
        free, _ = _refined("rk4", 1, 3e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolverAccuracyWarning)
        kept, _ = _refined("rk4", 1, 3e-3, solver_penalty=10.0)
    free, kept = free.finetune_stats, kept.finetune_stats
    assert abs(free["solver_gap"]) > 0.1
    assert abs(kept["solver_gap"]) < 0.05
    assert kept["val_nll_after"] < free["val_nll_after"] + 0.01  # judged with 2 steps
    assert kept["val_nll_after"] < kept["val_nll_before"] - 0.1  # it still refines
    assert (kept["solver_penalty"], free["solver_penalty"]) == (10.0, 0.0)


def test_refinement_learning_rate_warms_up_then_decays():
    from sigflow.flows._training import _lr_at

    rates = [_lr_at(step, 100, 1.0, warmup=10) for step in range(100)]
    cosine = [_lr_at(step, 100, 1.0) for step in range(100)]
    # linear rise to the cosine schedule over the first 10 steps, then the schedule itself
    assert rates[:10] == pytest.approx([(k + 1) / 10 * cosine[k] for k in range(10)])
    assert rates[10:] == cosine[10:]
    assert cosine[0] == 1.0 and cosine[-1] == pytest.approx(0.05, abs=1e-3)
    X = _ring(1500, 4)
    cfg = TrainingConfig(
        n_blocks=2, hidden_layer_sizes=(16, 16), max_iter=60, finetune_iter=40,
        finetune_warmup=0.25, validation_interval=50,
    )
    stats = train_flow(X, cfg, torch.Generator().manual_seed(0)).finetune_stats
    assert stats["warmup_steps"] == 10


def test_finetune_shorter_than_a_validation_interval_keeps_its_progress():
    X = _ring(1500, 4)
    cfg = TrainingConfig(
        n_blocks=2, hidden_layer_sizes=(16, 16), max_iter=60, finetune_iter=30,
        validation_interval=50,
    )
    stats = train_flow(X, cfg, torch.Generator().manual_seed(0)).finetune_stats
    # the only check is the one after the last step; it must not fall back to the start
    assert stats["n_iter"] == 30
    assert stats["val_nll_after"] < stats["val_nll_before"]


@pytest.mark.parametrize("ab", [(2.0, 5.0), (0.5, 0.5), (1.0, 2.0), (0.3, 3.0)])
def test_beta_times_follow_scipy_beta(ab):
    g = torch.Generator().manual_seed(0)
    t = sample_times(("beta", *ab), 100_000, g, dtype=torch.float64).numpy()
    assert t.min() >= 0.0 and t.max() <= 1.0  # and no NaN: small shapes underflowed to 0 / 0
    assert not np.isnan(t).any()
    # Kolmogorov-Smirnov: 0.0052 is the 0.1 % critical value for 100,000 draws
    assert scipy.stats.kstest(t, scipy.stats.beta(*ab).cdf).statistic < 0.0052
    again = sample_times(("beta", *ab), 100_000, torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    np.testing.assert_array_equal(again.numpy(), t)  # seeded


def test_uniform_times_are_the_plain_draws():
    u = sample_times("uniform", 50, torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(u, torch.rand(50, generator=torch.Generator().manual_seed(3)))


def test_beta_time_sampling_trains_lfm_blocks():
    X = _ring(800, 0)
    fits = {}
    for spec in ("uniform", ("beta", 1.0, 2.0)):
        cfg = TrainingConfig(n_blocks=2, hidden_layer_sizes=(16,), max_iter=60, time_sampling=spec)
        fits[str(spec)] = train_flow(X, cfg, torch.Generator().manual_seed(0)).flow
    with torch.no_grad():
        a, b = (f.log_prob(X[:100]) for f in fits.values())
    assert torch.isfinite(b).all() and not torch.equal(a, b)


@pytest.mark.parametrize("ab", [(0.001, 0.001), (0.01, 0.02)])
def test_beta_times_with_tiny_shapes_are_never_nan(ab):
    # The gamma draws underflowed to 0 and t = 0 / 0 (5 % NaN at 0.002, 23 % at 0.001).
    # Such a Beta puts its mass near the ends, a / (a + b) of it near 1.
    t = sample_times(("beta", *ab), 20_000, torch.Generator().manual_seed(0),
                     dtype=torch.float64)
    assert not torch.isnan(t).any()
    share = float((t > 0.5).double().mean())
    assert abs(share - ab[0] / sum(ab)) < 0.015  # 4 standard errors


def test_interpolant_target_is_the_time_derivative_of_the_path():
    from sigflow.flows._training import _interpolate

    g = torch.Generator().manual_seed(0)
    x0, x1 = (torch.randn(50, 3, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.rand(50, generator=g, dtype=torch.float64)
    eps = 1e-6
    for name in ("linear", "trig"):
        _, target = _interpolate(x0, x1, t, name)
        plus, _ = _interpolate(x0, x1, t + eps, name)
        minus, _ = _interpolate(x0, x1, t - eps, name)
        torch.testing.assert_close(target, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-6)
        start, _ = _interpolate(x0, x1, torch.zeros(50, dtype=torch.float64), name)
        end, _ = _interpolate(x0, x1, torch.ones(50, dtype=torch.float64), name)
        torch.testing.assert_close(start, x0)
        torch.testing.assert_close(end, x1, rtol=1e-12, atol=1e-12)


def test_ou_pairs_are_the_ou_transition_of_step_h(monkeypatch):
    # From x0 ~ N(0, I), the OU transition over time h keeps N(0, I) and has correlation
    # exp(-h): x1 = exp(-h) x0 + sqrt(1 - exp(-2h)) eps.
    from sigflow.flows import _training

    pairs = []
    real = _training._interpolate

    def spy(x0, x1, t, interpolant):
        pairs.append((x0.detach().clone(), x1.detach().clone()))
        return real(x0, x1, t, interpolant)

    monkeypatch.setattr(_training, "_interpolate", spy)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    cfg = TrainingConfig(hidden_layer_sizes=(4,), max_iter=4, batch_size=20000, ema_decay=0.0)
    h = 0.3
    net = VelocityMLP(2, (4,), generator=torch.Generator().manual_seed(0)).double()
    _training._train_fm_block(net, X, h, cfg, g, 0)
    x0 = torch.cat([p[0] for p in pairs])
    x1 = torch.cat([p[1] for p in pairs])
    assert abs(float(x1.var(0).mean()) - 1.0) < 0.03
    assert abs(float((x0 * x1).mean()) - math.exp(-h)) < 0.03


def test_one_far_row_is_cut_below_a_hundred_rows():
    # "at least one row at each end from three rows on": one far row among 50 held-out
    # rows (small data sets hold out fewer than 100) must not decide early stopping
    rows = torch.cat([torch.full((1,), 1e8, dtype=torch.float64),
                      torch.arange(49.0, dtype=torch.float64)])
    assert held_out_statistic(rows) == float(torch.arange(1.0, 49.0).mean())


# ---------------------------------------------------------------- the flow API, used directly
def test_gradients_through_the_adaptive_solver_are_as_accurate_as_its_values():
    # The step-size norm carried the state's autograd history, so gradients through
    # "dopri5" were off by about 1000 times the tolerance (7e-3 against 2e-5 for values).
    flow = Flow([FlowBlock(_net(2, (16, 16), seed=s, gain=1.0)) for s in range(2)], n_steps=256)
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def grad(solver):
        flow.solver = solver
        xx = x.clone().requires_grad_(True)
        value = flow.log_prob(xx).sum()
        (g,) = torch.autograd.grad(value, xx)
        return value.detach(), g

    fine_value, fine_grad = grad("rk4")
    value, g = grad("dopri5")
    assert abs(float(value - fine_value)) < 1e-4
    assert float((g - fine_grad).abs().max()) < 1e-4 * max(1.0, float(fine_grad.abs().max()))


def test_adaptive_solver_keeps_non_finite_rows_to_themselves():
    # one NaN row made every step's error NaN and the solve fail ("underflow in dt")
    block = FlowBlock(_net(2, (8,), gain=1.0))
    x = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    clean, ld_clean, _ = block.push(x, logdet=True, solver="dopri5")
    for bad in (float("nan"), float("inf")):
        y = x.clone()
        y[1, 0] = bad
        out, ld, nfe = block.push(y, logdet=True, solver="dopri5")
        assert torch.isnan(out[1]).all() and torch.isnan(ld[1])
        keep = [0, 2, 3]
        torch.testing.assert_close(out[keep], clean[keep], atol=1e-5, rtol=0)
        torch.testing.assert_close(ld[keep], ld_clean[keep], atol=1e-5, rtol=0)
        assert nfe > 0


def test_state_dict_carries_the_steps_and_solver(tmp_path):
    # the refinement may raise n_steps; a flow rebuilt from its configuration and the weights
    # alone scored with the configured steps, without a word
    g = torch.Generator().manual_seed(0)
    flow = Flow([FlowBlock(VelocityMLP(2, (8,), generator=g)) for _ in range(2)], n_steps=1)
    flow.n_steps, flow.solver = 4, "midpoint"
    torch.save(flow.state_dict(), tmp_path / "flow.pt")
    again = Flow([FlowBlock(VelocityMLP(2, (8,), generator=g)) for _ in range(2)], n_steps=1)
    again.load_state_dict(torch.load(tmp_path / "flow.pt", weights_only=True))
    assert (again.n_steps, again.solver) == (4, "midpoint")
    x = torch.randn(6, 2, generator=g)
    torch.testing.assert_close(again.log_prob(x), flow.log_prob(x), rtol=0, atol=0)


def test_train_flow_takes_data_that_require_grad_and_refuses_bad_data():
    # a graph on X was backpropagated through ("backward through the graph a second time")
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 2, generator=g).requires_grad_(True)
    cfg = TrainingConfig(n_blocks=1, hidden_layer_sizes=(8,), max_iter=3, finetune_iter=2)
    result = train_flow(X, cfg, g)
    assert len(result.flow.blocks) == 1 and X.grad is None
    for bad, match in [
        (torch.randn(20, generator=g), "2-D floating-point"),
        (torch.ones(20, 2, dtype=torch.int64), "2-D floating-point"),
        (torch.randn(1, 2, generator=g), "at least 2 rows"),
        (torch.full((20, 2), float("nan")), "NaN or infinite"),
    ]:
        with pytest.raises(ValueError, match=match):
            train_flow(bad, cfg, g)
    with pytest.raises(ValueError, match="learning_rate_init must be a positive number"):
        TrainingConfig(learning_rate_init=True).validate()
    from sigflow.flows import smooth_rows

    with pytest.raises(ValueError, match="at least one row"):
        smooth_rows(torch.zeros(0, 2), 0.1, 10, g)


def test_sample_with_any_velocity_module_or_none():
    class Field(torch.nn.Module):  # a documented velocity(x, t), without a `dim` attribute
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x, t):
            return self.a * x

    flow = Flow([FlowBlock(Field())], n_steps=8)
    with pytest.raises(ValueError, match=r"pass sample\(\.\.\., dim=d\)"):
        flow.sample(3)
    g = torch.Generator().manual_seed(0)
    x = flow.sample(4000, dim=2, generator=g)
    # dx/dt = x / 2 backwards over [0, 1] scales N(0, I) by exp(-1/2)
    assert abs(float(x.std()) - math.exp(-0.5)) < 0.03
    z = Flow().sample(5, dim=3)
    assert z.shape == (5, 3) and z.dtype == torch.get_default_dtype()
    with pytest.raises(ValueError, match="pass sample"):
        Flow().sample(5)


def test_flow_names_rows_it_cannot_take():
    flow = Flow([FlowBlock(_net(2, (8,)))])  # float64 weights
    with pytest.raises(ValueError, match=r"x is torch.float32 but the flow's weights are "):
        flow.log_prob(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="x has 3 columns but the flow takes 2"):
        flow.log_prob(torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"z must be a 2-D tensor"):
        flow.inverse(torch.zeros(3, dtype=torch.float64))


def test_autograd_divergences_say_so_under_inference_mode():
    flow = Flow([FlowBlock(_net(2, (8,)))])
    x = torch.zeros(3, 2, dtype=torch.float64)
    probes = rademacher_probes(4, 2, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        flow.log_prob(x)  # the analytic trace needs no autograd
        with pytest.raises(RuntimeError, match=r"inference_mode\(\) turns off"):
            flow.log_prob(x, probes=probes)
    with torch.no_grad():
        assert torch.isfinite(flow.log_prob(x, probes=probes)).all()


def test_diagnostics_count_evaluations_over_all_chunks(monkeypatch):
    from sigflow.flows import _diagnostics, convergence_diagnostics

    flow = Flow([FlowBlock(_net(2, (8,), gain=1.0))], solver="dopri5")
    X = torch.randn(300, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(_diagnostics, "DIAGNOSTIC_CHUNK", 100)
    rows = convergence_diagnostics(flow, X)
    per_chunk = [flow.blocks[0].push(c, logdet=True, solver="dopri5")[2] for c in X.split(100)]
    assert rows[1]["nfe"] == pytest.approx(np.mean(per_chunk))


def test_the_warmup_multiplies_the_cosine_schedule():
    # the documented peaks: 98 % at the end of a rise over 10 % of the steps, 54 % before
    # the end of one over half
    from sigflow.flows._training import _lr_at

    for frac, peak, at in [(0.1, 0.9777, 49), (0.5, 0.5431, 215)]:
        rates = [_lr_at(s, 500, 1.0, int(frac * 500)) for s in range(500)]
        assert max(rates) == pytest.approx(peak, abs=1e-4)
        assert int(np.argmax(rates)) == at
        assert rates[-1] == pytest.approx(0.05, abs=1e-3)


def test_state_dict_refuses_an_unknown_solver():
    g = torch.Generator().manual_seed(0)
    flow = Flow([FlowBlock(VelocityMLP(2, (8,), generator=g))])
    state = flow.state_dict()
    state["_extra_state"] = {"n_steps": 4, "solver": "bogus"}
    with pytest.raises(ValueError, match="solver must be one of"):
        flow.load_state_dict(state)


# --- tests added from mutation testing of sigflow/flows (each kills a surviving mutant) -------
def test_block_keeps_the_weights_of_its_best_held_out_check(monkeypatch):
    # Early stopping must leave the block with the weights of its best held-out check, not
    # the last (averaged) ones. The checks' values are recorded on their way to _BestWeights.
    from sigflow.flows import _training

    seen = []
    update = _training._BestWeights.update
    monkeypatch.setattr(_training._BestWeights, "update",
                        lambda self, v, p: (seen.append(v), update(self, v, p))[1])
    g = torch.Generator().manual_seed(3)
    spread = torch.tensor([1.0, 0.1, 0.1, 0.1, 0.1, 0.1])
    X, X_val = torch.randn(150, 6, generator=g) * spread, torch.randn(30, 6, generator=g) * spread
    cfg = TrainingConfig(hidden_layer_sizes=(64, 64), max_iter=2000, validation_interval=10,
                         n_iter_no_change=2, learning_rate_init=5e-3)
    net = VelocityMLP(6, (64, 64), generator=torch.Generator().manual_seed(0))
    losses, _ = _training._train_fm_block(net, X, None, cfg, g, 0, X_val)
    assert len(losses) < 2000  # it stopped: its last checks were not its best
    check = _training._EarlyStopping(X_val, cfg)
    check.should_stop(net, list(net.parameters()))
    assert check.best == pytest.approx(min(seen), rel=1e-9, abs=0)


def test_refinement_doubles_scoring_steps_up_to_max_scoring_steps(monkeypatch):
    # The measured solver gap is forced above the limit (a real fit rarely stays there), so
    # that the doubling runs to its cap: 2 -> 4 -> 8 -> 16 steps, then a warning.
    from sigflow.flows import _training

    monkeypatch.setattr(_training._FlowValidation, "solver_gap", lambda self, flow: 1.0)
    X = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    cfg = TrainingConfig(n_blocks=1, method="fm", hidden_layer_sizes=(8,), max_iter=2,
                         finetune_iter=1, n_ode_steps=2, max_scoring_steps=16)
    with pytest.warns(SolverAccuracyWarning):
        result = train_flow(X, cfg, torch.Generator().manual_seed(0))
    assert result.flow.n_steps == result.finetune_stats["scoring_steps"] == 16


def test_block_displacement_is_relative_to_the_pushed_data():
    from sigflow.flows import _training

    before, after = torch.ones(4, 2), 2 * torch.ones(4, 2)
    stats = _training._block_stats(0, "jko", 0.3, [1.0], 0.0, 4, before, after)
    assert stats["displacement"] == pytest.approx(2.0 / 8.0)  # E|T(x)-x|^2 / E|T(x)|^2


def test_flow_sample_follows_its_generator():
    g = torch.Generator().manual_seed(0)
    flow = Flow([FlowBlock(VelocityMLP(2, (8,), generator=g))])
    a = flow.sample(5, generator=torch.Generator().manual_seed(1))
    torch.randn(3)  # the global generator moves on
    b = flow.sample(5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


# ---------------------------------------------------------------- the core used directly


def test_solvers_refuse_a_bare_tensor_and_a_mismatched_derivative():
    """A bare tensor was iterated row by row: only its first row was integrated, silently."""
    y0 = torch.ones(3, 2, dtype=torch.float64)
    for solve in (
        lambda s, f: integrate_fixed(f, s, 0.0, 1.0, 4),
        lambda s, f: integrate_fixed_with_error(f, s, 0.0, 1.0, 4),
        lambda s, f: integrate_adaptive(f, s, 0.0, 1.0),
    ):
        with pytest.raises(TypeError, match="tuple of tensors.*wrap a single tensor"):
            solve(y0, lambda t, s: (-s[0],))
        with pytest.raises(TypeError, match=r"one per component of the state \(1\), got a Tensor"):
            solve((y0,), lambda t, s: -s[0])
        with pytest.raises(TypeError, match=r"one per component of the state \(2\), got 1 comp"):
            solve((y0, torch.zeros(3, dtype=torch.float64)), lambda t, s: (-s[0],))
        # a derivative of another shape would broadcast: (3, 1) + (3,) is (3, 3)
        with pytest.raises(TypeError, match=r"result 0 must be a tensor shaped like state "
                                            r"component 0 \(3, 1\), got shape \(3,\)"):
            solve((y0[:, :1],), lambda t, s: (-s[0][:, 0],))
    # the well-formed call still integrates every row
    (y,), _ = integrate_fixed(lambda t, s: (-s[0],), (y0,), 0.0, 1.0, 64)
    assert torch.allclose(y, torch.full((3, 2), math.exp(-1.0), dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("bad", [-1e-6, float("nan"), float("inf"), True, "1e-6"])
def test_adaptive_solver_refuses_bad_tolerances(bad):
    y0 = (torch.ones(2, 1, dtype=torch.float64),)
    with pytest.raises(ValueError, match="rtol must be a finite number >= 0"):
        integrate_adaptive(lambda t, s: (s[0],), y0, 0.0, 1.0, rtol=bad)
    with pytest.raises(ValueError, match="atol must be a finite number >= 0"):
        integrate_adaptive(lambda t, s: (s[0],), y0, 0.0, 1.0, atol=bad)


def test_adaptive_solver_takes_a_pure_absolute_or_relative_tolerance():
    y0 = (torch.ones(3, 2, dtype=torch.float64),)
    for rtol, atol in ((0.0, 1e-8), (1e-8, 0.0)):
        (y,), _ = integrate_adaptive(lambda t, s: (-s[0],), y0, 0.0, 1.0, rtol=rtol, atol=atol)
        assert torch.allclose(y, torch.full_like(y, math.exp(-1.0)), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="rtol and atol cannot both be 0"):
        integrate_adaptive(lambda t, s: (-s[0],), y0, 0.0, 1.0, rtol=0.0, atol=0.0)


def test_divergence_of_fields_that_do_not_depend_on_x_is_zero():
    """A translation or a purely time-dependent field has divergence 0 (it was an autograd
    error), also inside a flow, whose log-density is then the shifted normal's."""
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    probes = rademacher_probes(2, 3, dtype=torch.float64)
    for field in (lambda x, t: torch.ones_like(x) * t,
                  lambda x, t: torch.ones(x.shape, dtype=x.dtype)):
        assert torch.equal(exact_divergence(field, x, 0.5)[1], torch.zeros(4, dtype=x.dtype))
        assert torch.equal(hutchinson_divergence(field, x, 0.5, probes)[1],
                           torch.zeros(4, dtype=x.dtype))
    # one component independent of x: the other's derivative only
    v, div = exact_divergence(lambda x, t: torch.stack([x[:, 0] ** 2, x[:, 0]], 1),
                              x[:, :2], 0.0)
    assert torch.allclose(div, 2 * x[:, 0])

    class Shift(torch.nn.Module):
        dim = 3

        def __init__(self):
            super().__init__()
            self.b = torch.nn.Parameter(torch.tensor([1.0, 0.0, -0.5], dtype=torch.float64))

        def forward(self, x, t):
            return self.b.expand_as(x)

    flow = Flow([FlowBlock(Shift())], n_steps=2)
    lp = flow.log_prob(x)
    expected = scipy.stats.multivariate_normal(-np.array([1.0, 0.0, -0.5])).logpdf(x.numpy())
    np.testing.assert_allclose(lp.detach().numpy(), expected, rtol=1e-12)
    lp.sum().backward()  # differentiable in the shift
    assert flow.blocks[0].velocity.b.grad is not None


def test_divergences_refuse_a_field_of_the_wrong_shape():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"field\(x, t\) must return a tensor shaped like x"):
        exact_divergence(lambda x, t: x[:, :2], x, 0.0)


@pytest.mark.parametrize(
    "probes",
    ["abc", torch.ones(3), torch.ones(2, 5), torch.ones(0, 3), torch.ones(2, 3, dtype=torch.int64)],
    ids=["str", "1-D", "wrong-width", "no-probes", "integer"],
)
def test_bad_probes_are_refused_up_front(probes):
    x = torch.randn(4, 3)
    flow = Flow([FlowBlock(VelocityMLP(3, (8,)))])
    with pytest.raises(ValueError, match="probes must be a floating-point tensor of shape"):
        hutchinson_divergence(lambda x, t: x, x, 0.0, probes)
    with pytest.raises(ValueError, match="probes must be a floating-point tensor of shape"):
        flow.log_prob(x, probes=probes)
    # wrong width passes validate() (no dimension there) but not train_flow
    if isinstance(probes, torch.Tensor) and probes.shape == (2, 5):
        config = TrainingConfig(n_blocks=1, hidden_layer_sizes=(4,), max_iter=1, probes=probes)
        config.validate()
        with pytest.raises(ValueError, match=r"shape \(n_probes, 3\)"):
            train_flow(x, config, torch.Generator().manual_seed(0))
    else:
        with pytest.raises(ValueError, match="probes must be"):
            TrainingConfig(probes=probes).validate()


def test_train_flow_refuses_low_precision_and_wrong_argument_types():
    g = torch.Generator().manual_seed(0)
    config = TrainingConfig(n_blocks=1, hidden_layer_sizes=(4,), max_iter=1)
    X = torch.randn(32, 2, generator=g)
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(ValueError, match=f"float32 or float64 for training, got {dtype}"):
            train_flow(X.to(dtype), config, g)
    with pytest.raises(TypeError, match=r"config must be a TrainingConfig, got a dict.*\*\*"):
        train_flow(X, {"n_blocks": 1}, g)
    with pytest.raises(TypeError, match="generator must be a torch.Generator.*manual_seed"):
        train_flow(X, config, 0)


def test_train_flow_without_a_generator_follows_the_global_seed():
    config = TrainingConfig(n_blocks=1, hidden_layer_sizes=(4,), max_iter=3)
    X = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(train_flow(X, config, None).flow.log_prob(X[:4]).detach())
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_flow_refuses_integer_rows():
    flow = Flow([FlowBlock(VelocityMLP(2, (4,)))])
    with pytest.raises(ValueError, match="x must be a floating-point tensor, got torch.int64"):
        flow.log_prob(torch.zeros(3, 2, dtype=torch.int64))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"dim": 0}, "dim must be a positive integer"),
     ({"dim": 2.5}, "dim must be a positive integer"),
     ({"dim": 2, "hidden": (8, 0)}, "hidden must be a non-empty tuple of positive"),
     ({"dim": 2, "hidden": ()}, "hidden must be a non-empty tuple of positive"),
     ({"dim": 2, "hidden": 8}, "hidden must be a non-empty tuple of positive"),
     ({"dim": 2, "n_frequencies": -1}, "n_frequencies must be a non-negative integer")],
)
def test_velocity_network_refuses_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VelocityMLP(**kwargs)


@pytest.mark.parametrize("hidden", [[8, 6], np.array([8, 6]), range(8, 5, -2)])
def test_velocity_network_takes_layer_widths_as_any_sequence(hidden):
    net = VelocityMLP(2, hidden)
    assert net.hidden == (8, 6) and all(type(h) is int for h in net.hidden)


@pytest.mark.parametrize("solver", ["rk4", "midpoint", "dopri5"])
def test_sample_and_log_prob_agrees_with_log_prob_of_the_samples(solver):
    flow = Flow(
        [FlowBlock(_net(2, (16,), seed=s, gain=2.0)) for s in range(2)], n_steps=64, solver=solver
    )
    with torch.no_grad():
        x, lp = flow.sample_and_log_prob(200, generator=torch.Generator().manual_seed(1))
        x_again = flow.sample(200, generator=torch.Generator().manual_seed(1))
        direct = flow.log_prob(x)
    # the same noise and the same backward solve (dopri5's steps also follow the logdet)
    tol = 1e-7 if solver == "rk4" else 1e-4
    assert (x - x_again).abs().max() < (1e-12 if solver != "dopri5" else 1e-5)
    assert (lp - direct).abs().max() < tol
    # and it is not trivially the latent density: the flow moves mass
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert (lp + 0.5 * (z**2).sum(1) + math.log(2 * math.pi)).abs().max() > 0.1
