"""JKO-iFlow: blocks that each take one Wasserstein proximal step of KL(. || N(0, I)).

Block ``k`` is the time-1 map ``T`` of ``dx/dt = v(x, t)`` and minimises, over trajectories
started at the training data pushed through blocks ``1 .. k-1``,

``E[ |x(1)|^2 / 2 - int_0^1 div v(x(t), t) dt + 1/(2 h_k) int_0^1 |v(x(t), t)|^2 dt ]``.

The first two terms are ``KL(T#p || N(0, I))`` up to a constant (the change of variables
formula), the last bounds ``W_2^2(p, T#p) / (2 h_k)`` from above, with equality for straight,
constant-speed paths. So a block is one step of the JKO scheme (implicit Euler in
Wasserstein space) for the Fokker-Planck equation whose stationary law is ``N(0, I)``, with
step ``h_k``. The ODE is solved during training (fixed-step RK4, backpropagated through), the
divergence and the kinetic energy being integrated along the trajectory as augmented states.
"""

from __future__ import annotations

import copy
import time

import torch

from ._flow import FlowBlock
from ._ode import integrate_fixed, integrate_fixed_with_error
from ._training import (
    VALIDATION_ROWS,
    _adam_step,
    _append_block,
    _BestWeights,
    _fresh_probes,
    _lr_at,
    _progress,
    _push_all,
    _training_loss_where,
    _WeightAverage,
    held_out_statistic,
    ou_step_sizes,
)

__all__ = ["jko_block_loss", "jko_block_terms", "train_jko_blocks"]


def jko_block_terms(
    velocity, x, *, n_steps=4, solver="rk4", probes=None, solver_error=False, kinetic=True,
    fused=False,
):
    """Per-sample terms of the JKO block objective along ``dx/dt = v(x, t)``, ``t`` in [0, 1].

    Integrates the augmented state ``(x, int div v dt, int |v|^2 dt)`` with a fixed-step
    solver, keeping the autograd graph (the result is differentiable with respect to the
    parameters of ``velocity``).

    Parameters
    ----------
    velocity : nn.Module
        ``velocity(x, t) -> v``. Its ``forward_with_divergence`` gives the exact trace when
        present (otherwise :func:`~sigflow.flows.exact_divergence`).
    x : torch.Tensor of shape (batch, dim)
        Starting points (data side, ``t = 0``).
    n_steps : int, default=4
        Solver steps.
    solver : {"rk4", "midpoint", "euler"}, default="rk4"
    probes : torch.Tensor of shape (n_probes, dim), optional
        Hutchinson probes; exact divergence when ``None``.
    solver_error : bool, default=False
        Also return the solver's error indicator for the log-determinant (see below).
    kinetic : bool, default=True
        Integrate the kinetic energy; with ``False`` it is not computed and ``None`` is
        returned in its place (for objectives that do not use it).
    fused : bool, default=False
        Differentiate the exact divergence of two-hidden-layer networks through one
        autograd node per evaluation (faster; first derivatives only, see
        :meth:`~sigflow.flows.VelocityMLP.prepared`). The training loops use it.

    Returns
    -------
    z : torch.Tensor of shape (batch, dim)
        End points ``x(1)``.
    logdet : torch.Tensor of shape (batch,)
        ``int_0^1 div v(x(t), t) dt``.
    kinetic : torch.Tensor of shape (batch,) or None
        ``int_0^1 |v(x(t), t)|^2 dt``; ``None`` with ``kinetic=False``.
    error : torch.Tensor of shape (batch,)
        Only with ``solver_error=True``: the sum over the steps of the squared difference
        between the solver's quadrature of the divergence and a lower-order one on the same
        evaluations (:func:`~sigflow.flows.integrate_fixed_with_error`), differentiable.
    nfe : int
        Function evaluations of ``velocity``.

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import VelocityMLP, jko_block_terms
    >>> net = VelocityMLP(2, (8, 8), generator=torch.Generator().manual_seed(0))
    >>> z, logdet, kinetic, nfe = jko_block_terms(net, torch.zeros(3, 2))
    >>> z.shape, logdet.shape, kinetic.shape, nfe
    (torch.Size([3, 2]), torch.Size([3]), torch.Size([3]), 16)
    """
    block = velocity if isinstance(velocity, FlowBlock) else FlowBlock(velocity)
    _, with_divergence = block.field(probes, create_graph=True, fused=fused)
    zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    if kinetic:

        def func(t, state):
            v, div = with_divergence(state[0], t)
            return v, div, (v**2).sum(dim=1)

        state = (x, zeros, zeros)
    else:

        def func(t, state):
            return with_divergence(state[0], t)

        state = (x, zeros)
    if solver_error:
        out, nfe, error = integrate_fixed_with_error(
            func, state, 0.0, 1.0, n_steps, solver, index=1, n_dynamic=1
        )
    else:
        out, nfe = integrate_fixed(func, state, 0.0, 1.0, n_steps, solver, n_dynamic=1)
    z, logdet = out[:2]
    energy = out[2] if kinetic else None
    if solver_error:
        return z, logdet, energy, error, nfe
    return z, logdet, energy, nfe


def jko_block_loss(
    velocity, x, step_size, *, n_steps=4, solver="rk4", probes=None, fused=False
):
    """The JKO-iFlow objective of one block, averaged over the rows of ``x``.

    ``mean( |x(1)|^2 / 2 - int_0^1 div v dt + int_0^1 |v|^2 dt / (2 * step_size) )``, which is
    ``KL(T#p || N(0, I)) + E int |v|^2 dt / (2 h)`` up to a constant independent of ``v``
    (``p`` the law of ``x``, ``T`` the block's time-1 map).

    Parameters
    ----------
    velocity : nn.Module
        ``velocity(x, t) -> v`` (see :func:`jko_block_terms`).
    x : torch.Tensor of shape (batch, dim)
    step_size : float
        JKO step ``h`` (Ornstein-Uhlenbeck time) of the block.
    n_steps, solver, probes, fused
        As in :func:`jko_block_terms`.

    Returns
    -------
    loss : torch.Tensor
        A scalar, differentiable with respect to the parameters of ``velocity``.

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import VelocityMLP, jko_block_loss
    >>> net = VelocityMLP(2, (8, 8), generator=torch.Generator().manual_seed(0))
    >>> x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    >>> loss = jko_block_loss(net, x, 0.5)
    >>> loss.backward()
    >>> net.weights[0].grad is not None
    True
    """
    z, logdet, kinetic, _ = jko_block_terms(
        velocity, x, n_steps=n_steps, solver=solver, probes=probes, fused=fused
    )
    return (0.5 * (z**2).sum(dim=1) - logdet + kinetic / (2.0 * float(step_size))).mean()


def train_jko_blocks(X, velocity, config, generator, result, X_val=None):
    """Train JKO-iFlow blocks one after another and append them to ``result.flow``.

    Block ``k`` minimises :func:`jko_block_loss` with step ``h_k`` from
    :func:`~sigflow.flows.ou_step_sizes` on the training data pushed through the previous
    blocks, warm-started from block ``k - 1``. Training uses ``config.ode_solver`` (RK4 by
    default) with ``config.n_ode_steps`` steps and, when ``config.probes`` is given, the Hutchinson
    divergence with as many probes, drawn afresh at every step (the held-out checks draw
    their own set once), else the exact trace. With ``config.tol`` set, no further block
    is added once a block moves the data by less than ``tol``
    (``E|T(x) - x|^2 / E|T(x)|^2``).

    Each block keeps an exponential moving average of its weights (``config.ema_decay``).
    With held-out rows ``X_val`` (pushed through the blocks alongside the training data),
    the block's own objective on up to 2,048 of them is checked every
    ``config.validation_interval`` steps with the averaged weights; the block stops after
    ``config.n_iter_no_change`` checks without improvement and keeps the best weights seen.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, dim)
        Standardised training data.
    velocity : nn.Module
        Initial velocity network of block 1 (on ``X``'s device and dtype).
    config : TrainingConfig
    generator : torch.Generator
        On ``X``'s device; the only source of randomness (minibatches).
    result : TrainingResult
        Receives the blocks (``result.flow``), the loss curve and one ``block_stats`` dict
        per block (the keys of the other methods, ``kind="jko"``).
    X_val : torch.Tensor of shape (n_val, dim), optional
        Held-out rows for early stopping; none when ``None``.

    Returns
    -------
    result : TrainingResult

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import (
    ...     Flow, TrainingConfig, TrainingResult, VelocityMLP, train_jko_blocks)
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(64, 2, generator=g)
    >>> cfg = TrainingConfig(method="jko", n_blocks=2, hidden_layer_sizes=(8,), max_iter=3)
    >>> result = TrainingResult(flow=Flow(n_steps=cfg.n_ode_steps, solver=cfg.ode_solver))
    >>> net = VelocityMLP(2, (8,), generator=torch.Generator().manual_seed(1))
    >>> result = train_jko_blocks(X, net, cfg, g, result)
    >>> len(result.flow.blocks), [s["kind"] for s in result.block_stats], len(result.loss_curve)
    (2, ['jko', 'jko'], 6)
    """
    steps = ou_step_sizes(config.n_blocks, config.step_size, config.step_size_ratio)
    new_probes = _fresh_probes(config.probes, generator, X)
    current = X
    for k, h in enumerate(steps):
        if k > 0:
            velocity = copy.deepcopy(velocity)
        start = time.perf_counter()
        losses, n_checks = _train_jko_block(
            velocity, current, h, new_probes, config, generator, k, X_val
        )
        block = FlowBlock(velocity)
        current = _append_block(
            result, block, current, losses, start, config, k, "jko", h, n_checks
        )
        stats = result.block_stats[-1]
        if X_val is not None:
            X_val = _push_all(block, X_val, config)[0]
        if config.tol is not None and stats["displacement"] < config.tol:
            break
    return result


class _JKOValidation(_BestWeights):
    """Held-out value of the block's own objective, :func:`jko_block_loss` at step ``h``.

    The objective is ``KL(T#p || N(0, I))`` plus the transport cost, so it is the quantity the
    block is fitted to; judged on rows it is not trained on, it stops a block once more
    steps no longer pay (and before it sharpens around the training rows).
    """

    def __init__(self, X_val, h, probes, config):
        super().__init__()
        self.X_val = X_val[:VALIDATION_ROWS]
        self.h, self.probes = h, probes
        self.n_steps, self.solver = config.n_ode_steps, config.ode_solver

    @torch.no_grad()
    def check(self, velocity, params):
        """Record the held-out objective of ``velocity`` (per row, by
        :func:`held_out_statistic`); checks since the last improvement."""
        z, logdet, kinetic, _ = jko_block_terms(
            velocity, self.X_val, n_steps=self.n_steps, solver=self.solver, probes=self.probes
        )
        rows = 0.5 * (z**2).sum(dim=1) - logdet + kinetic / (2.0 * float(self.h))
        return self.update(held_out_statistic(rows), params)


def _train_jko_block(velocity, X, h, new_probes, config, generator, k, X_val=None):
    """Train one block; returns its loss curve and the number of held-out checks.

    ``new_probes()`` gives the Hutchinson probes (``None``: exact trace) of each step and
    of the held-out checks (see :func:`_fresh_probes`).
    """
    params = list(velocity.parameters())
    optimizer = torch.optim.Adam(params, lr=config.learning_rate_init)
    n = X.shape[0]
    batch = min(config.batch_size, n)
    losses = []
    average = _WeightAverage(params, config.ema_decay)
    monitor = None if X_val is None else _JKOValidation(X_val, h, new_probes(), config)
    n_checks = 0
    bar = _progress(config, config.max_iter, f"JKO block {k + 1}/{config.n_blocks}")
    for step in range(config.max_iter):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config.max_iter, config.learning_rate_init)
        idx = torch.randint(0, n, (batch,), generator=generator, device=X.device)
        loss = jko_block_loss(
            velocity, X[idx], h, n_steps=config.n_ode_steps, solver=config.ode_solver,
            probes=new_probes(), fused=True,
        )
        value = _adam_step(optimizer, params, loss, *_training_loss_where(k, step))
        average.update(step)
        losses.append(value)
        if bar is not None:
            bar.update()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
        if monitor is not None and (step + 1) % config.validation_interval == 0:
            n_checks += 1
            if average.judge(lambda: monitor.check(velocity, params)) >= config.n_iter_no_change:
                break
    if bar is not None:
        bar.close()
    if monitor is not None and len(losses) % config.validation_interval:
        average.judge(lambda: monitor.check(velocity, params))  # the last steps, unchecked yet
        n_checks += 1
    average.keep(monitor)
    return losses, n_checks
