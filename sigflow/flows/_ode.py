"""ODE integration: fixed-step Euler, midpoint and RK4; adaptive Dormand-Prince."""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "FIXED_STEP_SOLVERS",
    "integrate_fixed",
    "integrate_fixed_with_error",
    "integrate_fixed_into",
    "integrate_adaptive",
    "evaluations_per_step",
]

FIXED_STEP_SOLVERS = ("euler", "midpoint", "rk4")
_EVALS = {"euler": 1, "midpoint": 2, "rk4": 4}


def evaluations_per_step(method):
    """Number of function evaluations one step of a fixed-step ``method`` costs.

    Parameters
    ----------
    method : {"euler", "midpoint", "rk4"}
        A fixed-step solver of :data:`FIXED_STEP_SOLVERS`.

    Returns
    -------
    n_evals : int
        1 for ``"euler"``, 2 for ``"midpoint"``, 4 for ``"rk4"``.

    Raises
    ------
    ValueError
        For any other ``method``.

    Examples
    --------
    >>> from sigflow.flows import FIXED_STEP_SOLVERS, evaluations_per_step
    >>> [evaluations_per_step(m) for m in FIXED_STEP_SOLVERS]
    [1, 2, 4]
    """
    try:
        return _EVALS[method]
    except KeyError:
        raise ValueError(
            f"ode_solver must be one of {FIXED_STEP_SOLVERS}, got {method!r}"
        ) from None


def _as_state(state, what="state"):
    """``state`` as a tuple of tensors, or a TypeError.

    A bare tensor is refused: iterating over it would take its rows for the components of
    the state, and the solvers would integrate the first row alone without a word.
    """
    if isinstance(state, torch.Tensor) or not isinstance(state, (tuple, list)):
        raise TypeError(
            f"{what} must be a tuple of tensors, got a {type(state).__name__}; wrap a single "
            "tensor as (x,) and return (dx,) from func"
        )
    if not state or not all(isinstance(s, torch.Tensor) for s in state):
        raise TypeError(f"{what} must be a non-empty tuple of tensors")
    return tuple(state)


def _checked_derivative(k, state):
    """``func``'s first result, checked to match ``state`` component for component.

    Shapes are compared too: a derivative of another shape would broadcast against its
    component (a ``(n,)`` derivative of an ``(n, 1)`` state gives an ``(n, n)`` result).
    """
    if isinstance(k, torch.Tensor) or not isinstance(k, (tuple, list)) or len(k) != len(state):
        got = (f"a {type(k).__name__}" if not isinstance(k, (tuple, list))
               else f"{len(k)} component{'s' if len(k) != 1 else ''}")
        raise TypeError(
            f"func must return a tuple of tensors, one per component of the state "
            f"({len(state)}), got {got}"
        )
    for i, (ki, si) in enumerate(zip(k, state)):
        if not isinstance(ki, torch.Tensor) or ki.shape != si.shape:
            got = (f"shape {tuple(ki.shape)}" if isinstance(ki, torch.Tensor)
                   else f"a {type(ki).__name__}")
            raise TypeError(
                f"func's result {i} must be a tensor shaped like state component {i} "
                f"{tuple(si.shape)}, got {got}"
            )
    return k


def _axpy(state, k, h, n_dynamic):
    """``state + h k`` for the components ``func`` reads; the others pass unchanged."""
    if n_dynamic is None or n_dynamic >= len(state):
        return tuple(s + h * ki for s, ki in zip(state, k))
    head = tuple(s + h * ki for s, ki in zip(state[:n_dynamic], k[:n_dynamic]))
    return head + tuple(state[n_dynamic:])


def integrate_fixed(func, state, t0, t1, n_steps, method="rk4", *, n_dynamic=None):
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
    n_dynamic : int, optional
        How many leading components of ``state`` ``func`` reads. The others are
        quadratures (running integrals such as a log-determinant, whose derivative does not
        depend on them): their intermediate stage values are never needed, so they are
        not formed. The result is the same; ``None`` forms them all.

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
    >>> y0 = torch.ones(1, dtype=torch.float64)
    >>> (y,), nfe = integrate_fixed(lambda t, s: (s[0],), (y0,), 0.0, 1.0, 10)
    >>> round(float(y), 6), nfe
    (2.71828, 40)
    """
    n_evals, n_steps, h = _steps(method, n_steps, t0, t1)
    state = _as_state(state)
    func = _checked_once(func, state)
    for i in range(n_steps):
        state, _ = _step(func, state, t0 + i * h, h, method, n_dynamic)
    return state, n_steps * n_evals


def _checked_once(func, state):
    """``func`` whose first result is checked against ``state``; later calls skip the
    check (the wrapper itself costs one Python call per evaluation, negligible beside the
    evaluation)."""
    checked = []

    def first(t, s):
        if checked:
            return func(t, s)
        checked.append(True)
        return _checked_derivative(func(t, s), state)

    return first


def _check_tolerances(rtol, atol):
    """A ValueError unless both tolerances are finite and >= 0 and not both 0 (the
    solver's step would shrink to nothing). A pure absolute (``rtol=0``) or pure relative
    (``atol=0``) tolerance is allowed."""
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(tol, numbers.Real) and not isinstance(tol, bool)
                and math.isfinite(tol) and tol >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}")
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol cannot both be 0: no step would meet the tolerance")


def check_n_steps(n_steps):
    """``n_steps`` as an int, or a ValueError unless it is a positive integer.

    A float such as 2.7 is refused rather than truncated: the solver would silently take
    fewer steps than asked for.
    """
    if not isinstance(n_steps, numbers.Integral) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    return int(n_steps)


def _steps(method, n_steps, t0, t1):
    n_evals = evaluations_per_step(method)
    n_steps = check_n_steps(n_steps)
    return n_evals, n_steps, (t1 - t0) / n_steps


def _step(func, state, t, h, method, n_dynamic=None):
    """One step of ``method``; returns the new state and the stage derivatives."""
    if method == "euler":
        k1 = func(t, state)
        return _axpy(state, k1, h, None), (k1,)
    if method == "midpoint":
        k1 = func(t, state)
        k2 = func(t + h / 2, _axpy(state, k1, h / 2, n_dynamic))
        return _axpy(state, k2, h, None), (k1, k2)
    k1 = func(t, state)
    k2 = func(t + h / 2, _axpy(state, k1, h / 2, n_dynamic))
    k3 = func(t + h / 2, _axpy(state, k2, h / 2, n_dynamic))
    k4 = func(t + h, _axpy(state, k3, h, n_dynamic))
    state = tuple(
        s + (h / 6) * (a + 2 * b + 2 * c + d) for s, a, b, c, d in zip(state, k1, k2, k3, k4)
    )
    return state, (k1, k2, k3, k4)


def workspace_buffer(ws, key, like, shape=None):
    """The buffer ``ws[key]`` with ``like``'s dtype and device and ``shape`` (default
    ``like.shape``), made anew only when it is missing or no longer fits."""
    shape = like.shape if shape is None else shape
    buf = ws.get(key)
    if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
        buf = ws[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
    return buf


def workspace_scalar(ws, value, like):
    """``value`` as a 0-dim tensor of ``like``'s dtype and device, kept in ``ws``.

    An operation with a Python number converts it to a tensor at every call (and, in
    float32, copies it once more to the tensor's precision); a solve makes thousands of them.
    The arithmetic is the same: the number is rounded to the tensor's precision either way.
    """
    key = ("scalar", value, like.dtype, like.device)
    out = ws.get(key)
    if out is None:
        # torch.full, not torch.tensor: no blocking copy from the host on a GPU
        out = ws[key] = torch.full((), value, dtype=like.dtype, device=like.device)
    return out


def integrate_fixed_into(func, x, t0, t1, n_steps, method="rk4", *, logdet=False, workspace=None):
    """:func:`integrate_fixed` of ``dx/dt = v`` (and ``d logdet/dt = div``) without allocations.

    For inference (no autograd). ``func(t, x, v, div)`` writes the velocity at ``(x, t)`` into
    ``v`` and, with ``logdet=True``, the divergence into ``div`` (``None`` otherwise). The
    stages live in ``workspace`` (a dict, reused when given), so a solve allocates only its
    result: scoring large batches otherwise spends much of its time obtaining fresh memory
    for every stage. The arithmetic is that of :func:`integrate_fixed` with
    ``n_dynamic=1``, operation for operation, so the results are bit for bit the same.

    Parameters
    ----------
    func : callable
        ``func(t, x, v, div)`` with ``t`` a Python float; writes into ``v`` (shaped like
        ``x``) and, with ``logdet=True``, into ``div`` (shape ``(batch,)``); its return value
        is ignored.
    x : torch.Tensor of shape (batch, dim)
        Initial state; not modified (the solve works on a copy).
    t0, t1 : float
        Start and end times (``t1 < t0`` integrates backwards).
    n_steps : int
        Number of steps.
    method : {"euler", "midpoint", "rk4"}, default="rk4"
    logdet : bool, default=False
        Also integrate the divergence that ``func`` writes into ``div``.
    workspace : dict, optional
        Buffers of the stages, kept between calls (made anew when missing or when their
        shape, dtype or device no longer fits); a fresh dict when ``None``. One per
        thread: solves running at the same time would overwrite each other's stages.

    Returns
    -------
    x : torch.Tensor
        The state at ``t1`` (a new tensor).
    logdet : torch.Tensor of shape (batch,) or None
        ``int div dt`` with ``logdet=True``.
    nfe : int

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import integrate_fixed, integrate_fixed_into
    >>> def func(t, x, v, div):
    ...     torch.mul(x, -t, out=v)
    ...     div.fill_(-t * x.shape[1])
    >>> x0 = torch.ones(3, 2, dtype=torch.float64)
    >>> x, ld, nfe = integrate_fixed_into(func, x0, 0.0, 1.0, 4, logdet=True)
    >>> (y, l), _ = integrate_fixed(
    ...     lambda t, s: (-t * s[0], torch.full_like(s[1], -2 * t)),
    ...     (x0, torch.zeros(3, dtype=torch.float64)), 0.0, 1.0, 4, n_dynamic=1)
    >>> torch.equal(x, y), torch.equal(ld, l), nfe
    (True, True, 16)
    """
    n_evals, n_steps, h = _steps(method, n_steps, t0, t1)
    ws = {} if workspace is None else workspace
    rows = (x.shape[0],)

    def buf(key, shape):
        return workspace_buffer(ws, key, x, shape)

    k = [buf(f"ode_k{i}", x.shape) for i in range(n_evals)]
    d = [buf(f"ode_d{i}", rows) if logdet else None for i in range(n_evals)]
    xs, tmp = buf("ode_xs", x.shape), buf("ode_tmp", x.shape)
    x = x.clone()
    ld = torch.zeros(rows, dtype=x.dtype, device=x.device) if logdet else None
    acc = buf("ode_acc", x.shape)
    dacc, dtmp = (buf("ode_dacc", rows), buf("ode_dtmp", rows)) if logdet else (None, None)
    parts = ((x, k, acc, tmp),) + (((ld, d, dacc, dtmp),) if logdet else ())

    two, whole, half, sixth = (workspace_scalar(ws, c, x) for c in (2, h, h / 2, h / 6))

    def stage(t, i, source, step):  # k_i = f(t, x + step * source)
        if source is None:
            return func(t, x, k[i], d[i])
        torch.add(x, torch.mul(k[source], step, out=tmp), out=xs)
        return func(t, xs, k[i], d[i])

    for i in range(n_steps):
        t = t0 + i * h
        if method == "euler":
            stage(t, 0, None, None)
            for s, ks, _, w in parts:
                s.add_(torch.mul(ks[0], whole, out=w))
        elif method == "midpoint":
            stage(t, 0, None, None)
            stage(t + h / 2, 1, 0, half)
            for s, ks, _, w in parts:
                s.add_(torch.mul(ks[1], whole, out=w))
        else:
            stage(t, 0, None, None)
            stage(t + h / 2, 1, 0, half)
            stage(t + h / 2, 2, 1, half)
            stage(t + h, 3, 2, whole)
            for s, ks, a, w in parts:  # s + (h / 6) (k1 + 2 k2 + 2 k3 + k4)
                torch.add(ks[0], torch.mul(ks[1], two, out=w), out=a)
                a.add_(torch.mul(ks[2], two, out=w)).add_(ks[3]).mul_(sixth)
                s.add_(a)
    return x, ld, n_steps * n_evals


def _embedded_difference(stages, h):
    """RK4's increment minus the trapezoid rule on the same evaluations (None otherwise).

    Simpson's weights ``(1, 2, 2, 1) / 6`` against ``(1, 0, 0, 1) / 2``, i.e.
    ``h / 3 (k2 + k3 - k1 - k4)``. For a component whose derivative does not depend on the
    state (a quadrature, such as the log-determinant) this is ``-h**3 / 12`` times the
    second time derivative of the integrand: it grows with the curvature of the integrand
    along the path, which is what makes a fixed-step solver inaccurate. The midpoint
    method's two evaluations per step only give a first-derivative difference, which
    penalises any change of the integrand in time, and Euler's one gives nothing.
    """
    if len(stages) != 4:
        return None
    k1, k2, k3, k4 = stages
    return (h / 3) * (k2 + k3 - k1 - k4)


def integrate_fixed_with_error(
    func, state, t0, t1, n_steps, method="rk4", *, index=0, n_dynamic=None
):
    """:func:`integrate_fixed`, plus an error indicator of component ``index``, free of charge.

    Each step also compares the method's increment of ``state[index]`` with a lower-order
    rule built from the same function evaluations (see below) and sums the squared
    differences over the steps. The indicator costs no extra evaluation and is
    differentiable, so it can be penalised during training to keep the learned dynamics
    easy for the solver (``TrainingConfig.solver_penalty``).

    * ``"rk4"``: Simpson's rule (RK4's weights) against the trapezoid rule,
      ``h / 3 (k2 + k3 - k1 - k4)`` per step, about ``h**3 / 12`` times the second time
      derivative of the integrand;
    * ``"midpoint"``, ``"euler"``: the indicator is 0. Their one or two evaluations per
      step give no estimate of the curvature (a difference of the two midpoint
      evaluations would penalise any change of the integrand in time).

    ``n_dynamic`` is :func:`integrate_fixed`'s.

    Parameters
    ----------
    func : callable
        ``func(t, state) -> dstate`` with ``t`` a Python float.
    state : tuple of torch.Tensor
    t0, t1 : float
        Start and end times (``t1 < t0`` integrates backwards).
    n_steps : int
        Number of steps.
    method : {"euler", "midpoint", "rk4"}, default="rk4"
    index : int, default=0
        The component of ``state`` whose error indicator is returned.
    n_dynamic : int, optional
        As in :func:`integrate_fixed`.

    Returns
    -------
    state : tuple of torch.Tensor
        Exactly what :func:`integrate_fixed` returns.
    nfe : int
    error : torch.Tensor
        ``sum_steps difference**2``, the shape of ``state[index]``.

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import integrate_fixed_with_error
    >>> # dy/dt = t**2: each RK4 step's Simpson and trapezoid rules differ by -h**3 / 6
    >>> y0 = torch.zeros(1, dtype=torch.float64)
    >>> (y,), nfe, err = integrate_fixed_with_error(
    ...     lambda t, s: (torch.full_like(s[0], t * t),), (y0,), 0.0, 1.0, 2)
    >>> round(float(y), 6), nfe, abs(float(err) - 2 * (0.5**3 / 6) ** 2) < 1e-15
    (0.333333, 8, True)
    """
    n_evals, n_steps, h = _steps(method, n_steps, t0, t1)
    state = _as_state(state)
    func = _checked_once(func, state)
    error = torch.zeros_like(state[index])
    for i in range(n_steps):
        state, stages = _step(func, state, t0 + i * h, h, method, n_dynamic)
        diff = _embedded_difference([k[index] for k in stages], h)
        if diff is not None:
            error = error + diff * diff
    return state, n_steps * n_evals, error


def integrate_adaptive(func, state, t0, t1, *, rtol=1e-6, atol=1e-6):
    """Adaptive Dormand-Prince (dopri5) integration through ``torchdiffeq``.

    Accurate pushes for sampling. The step size is chosen so that the error estimate of
    every element of the state, of every sample, is within ``atol + rtol * |value|`` (the
    largest scaled error decides): each sample is held to the tolerance however large the
    batch. (torchdiffeq's default, the root mean square over the whole batch, let one hard
    trajectory's error grow with the square root of the batch size.) The steps are shared,
    so unlike :func:`integrate_fixed` a sample's result can depend, within the tolerance,
    on the other samples. An empty batch, or ``t0 == t1``, returns the state unchanged.
    Rows with a non-finite value at ``t0`` are not integrated and come back as NaN (as
    they do from the fixed-step solvers); they would make every step's error NaN. The step
    sizes are not differentiated: gradients through the result are those of the steps
    taken, as accurate as the values.

    Parameters
    ----------
    func : callable
        ``func(t, state) -> dstate`` with ``t`` a Python float and ``state`` a tuple of
        tensors, the first of shape ``(batch, ...)``.
    state : tuple of torch.Tensor
        Initial state; the times are made in the dtype and on the device of ``state[0]``.
    t0, t1 : float
        Start and end times (``t1 < t0`` integrates backwards).
    rtol, atol : float, default=1e-6
        Relative and absolute tolerances of every element.

    Returns
    -------
    state : tuple of torch.Tensor
    nfe : int
        Calls of ``func`` (0 when nothing was integrated).

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import integrate_adaptive
    >>> y0 = torch.ones(1, dtype=torch.float64)
    >>> (y,), nfe = integrate_adaptive(lambda t, s: (s[0],), (y0,), 0.0, 1.0)
    >>> round(float(y), 5), nfe > 0
    (2.71828, True)
    >>> integrate_adaptive(lambda t, s: (s[0],), (y0,), 0.0, 0.0)[1]
    0
    """
    from torchdiffeq import odeint

    state = _as_state(state)
    _check_tolerances(rtol, atol)
    if t0 == t1 or state[0].shape[0] == 0:
        return state, 0
    n = state[0].shape[0]
    batched = [s.dim() > 0 and s.shape[0] == n for s in state]
    finite = torch.ones(n, dtype=torch.bool, device=state[0].device)
    for s, b in zip(state, batched):
        if b:
            finite &= torch.isfinite(s.detach()).reshape(n, -1).all(dim=1)
    if not bool(finite.all()):
        inner, nfe = integrate_adaptive(
            func, tuple(s[finite] if b else s for s, b in zip(state, batched)), t0, t1,
            rtol=rtol, atol=atol,
        )
        out = []
        for s, o, b in zip(state, inner, batched):
            if not b:
                out.append(o)
                continue
            full = torch.full_like(s, float("nan"))
            out.append(full.index_put((finite,), o))
        return tuple(out), nfe
    counter = [0]

    def wrapped(t, s):
        counter[0] += 1
        k = func(float(t.detach()), s)
        return _checked_derivative(k, state) if counter[0] == 1 else k

    ref = state[0]
    times = torch.tensor([t0, t1], dtype=ref.dtype, device=ref.device)
    out = odeint(wrapped, state, times, method="dopri5", rtol=rtol, atol=atol,
                 options={"norm": _max_norm})
    return tuple(o[-1] for o in out), counter[0]


def _max_norm(scaled_errors):
    """The largest of torchdiffeq's scaled errors (error / (atol + rtol * |y|)), over all
    elements of all tensors of the state, detached: the step sizes it chooses are not
    differentiated (with its history, gradients through the solve were off by about 1000
    times the tolerance)."""
    return torch.stack([e.detach().abs().max() for e in scaled_errors if e.numel()]).max()
