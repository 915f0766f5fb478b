"""ODE integration: fixed-step Euler, midpoint and RK4; adaptive Dormand-Prince."""

from __future__ import annotations

import torch

__all__ = ["FIXED_STEP_SOLVERS", "integrate_fixed", "integrate_adaptive", "evaluations_per_step"]

FIXED_STEP_SOLVERS = ("euler", "midpoint", "rk4")
_EVALS = {"euler": 1, "midpoint": 2, "rk4": 4}


def evaluations_per_step(method):
    """Number of function evaluations one step of a fixed-step ``method`` costs."""
    try:
        return _EVALS[method]
    except KeyError:
        raise ValueError(
            f"ode_solver must be one of {FIXED_STEP_SOLVERS}, got {method!r}"
        ) from None


def _axpy(state, k, h):
    return tuple(s + h * ki for s, ki in zip(state, k))


def integrate_fixed(func, state, t0, t1, n_steps, method="rk4"):
    """Integrate ``d state / dt = func(t, state)`` from ``t0`` to ``t1`` in fixed steps.

    ``state`` is a tuple of tensors and ``func`` returns a tuple of the same shapes.
    Each sample is integrated with the same steps, so results do not depend on which
    other samples share the batch.

    Parameters
    ----------
    func : callable
        ``func(t, state) -> dstate`` with ``t`` a Python float.
    state : tuple of torch.Tensor
    t0, t1 : float
        Start and end times (``t1 < t0`` integrates backwards).
    n_steps : int
        Number of steps.
    method : {"euler", "midpoint", "rk4"}

    Returns
    -------
    state : tuple of torch.Tensor
        The state at ``t1``.
    nfe : int
        Function evaluations used.

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import integrate_fixed
    >>> (y,), nfe = integrate_fixed(lambda t, s: (s[0],), (torch.ones(1),), 0.0, 1.0, 10)
    >>> round(float(y), 6), nfe
    (2.718279, 40)
    """
    n_evals = evaluations_per_step(method)
    n_steps = int(n_steps)
    if n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps}")
    h = (t1 - t0) / n_steps
    for i in range(n_steps):
        t = t0 + i * h
        if method == "euler":
            state = _axpy(state, func(t, state), h)
        elif method == "midpoint":
            k1 = func(t, state)
            state = _axpy(state, func(t + h / 2, _axpy(state, k1, h / 2)), h)
        else:
            k1 = func(t, state)
            k2 = func(t + h / 2, _axpy(state, k1, h / 2))
            k3 = func(t + h / 2, _axpy(state, k2, h / 2))
            k4 = func(t + h, _axpy(state, k3, h))
            state = tuple(
                s + (h / 6) * (a + 2 * b + 2 * c + d)
                for s, a, b, c, d in zip(state, k1, k2, k3, k4)
            )
    return state, n_steps * n_evals


def integrate_adaptive(func, state, t0, t1, *, rtol=1e-6, atol=1e-6):
    """Adaptive Dormand-Prince (dopri5) integration through ``torchdiffeq``.

    Accurate pushes for sampling. The step size is chosen from the error of the whole
    batch, so unlike :func:`integrate_fixed` a sample's result can depend (within the
    tolerance) on the other samples.

    Returns
    -------
    state : tuple of torch.Tensor
    nfe : int
    """
    from torchdiffeq import odeint

    counter = [0]

    def wrapped(t, s):
        counter[0] += 1
        return func(float(t), s)

    ref = state[0]
    times = torch.tensor([t0, t1], dtype=ref.dtype, device=ref.device)
    out = odeint(wrapped, tuple(state), times, method="dopri5", rtol=rtol, atol=atol)
    return tuple(o[-1] for o in out), counter[0]
