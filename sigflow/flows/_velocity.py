"""Time-conditioned velocity networks with an exact, cheap Jacobian trace."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import nn

from ._ode import workspace_buffer, workspace_scalar

__all__ = ["VelocityMLP"]


def _silu_and_slope(a):
    s = torch.sigmoid(a)
    h = a * s
    return h, s + h * (1.0 - s)  # silu'(a) = s (1 + a (1 - s)), one exponential for both


def _softplus_and_slope(a):
    return torch.nn.functional.softplus(a), torch.sigmoid(a)


def _tanh_and_slope(a):
    h = torch.tanh(a)
    return h, 1.0 - h * h


# name -> (activation, activation and its derivative together); module-level functions so
# that networks pickle. The pair is computed in one pass, sharing the transcendental.
_ACTIVATIONS = {
    "silu": (torch.nn.functional.silu, _silu_and_slope),
    "softplus": (torch.nn.functional.softplus, _softplus_and_slope),
    "tanh": (torch.tanh, _tanh_and_slope),
}


# name -> (a -> (f(a), f'(a), saved), (a, f, f', saved) -> f''(a)): the hand-written backward
# of the two-layer divergence needs the second derivative. The first function computes
# f and f' with exactly the operations of the pair above (so values are bit for bit the
# same) and keeps what the second needs.
def _silu_with_sigmoid(a):
    s = torch.sigmoid(a)
    h = a * s
    return h, s + h * (1.0 - s), s


def _silu_curvature(a, h, slope, s):
    return s * (1.0 - s) * (2.0 + a - 2.0 * h)  # silu''(a) = s (1 - s) (2 + a (1 - 2 s))


def _softplus_with_sigmoid(a):
    h, s = _softplus_and_slope(a)
    return h, s, None


def _softplus_curvature(a, h, slope, saved):
    return slope * (1.0 - slope)


def _tanh_with_nothing(a):
    h, slope = _tanh_and_slope(a)
    return h, slope, None


def _tanh_curvature(a, h, slope, saved):
    return -2.0 * h * slope


_SECOND_ORDER = {
    "silu": (_silu_with_sigmoid, _silu_curvature),
    "softplus": (_softplus_with_sigmoid, _softplus_curvature),
    "tanh": (_tanh_with_nothing, _tanh_curvature),
}


# name -> (a, ws, key) -> (f(a), f'(a)) written into the workspace's buffers, with exactly the
# operations of ``_ACTIVATIONS`` (so values are bit for bit the same; ``-s + 1`` is ``1 - s``
# in IEEE arithmetic). ``a`` may be overwritten. For inference without autograd: scoring a
# large batch otherwise allocates a dozen fresh (batch, width) tensors per evaluation.
def _silu_into(a, ws, key):
    s, h, g = (workspace_buffer(ws, key + name, a) for name in "shg")
    torch.sigmoid(a, out=s)
    torch.mul(a, s, out=h)
    torch.sub(workspace_scalar(ws, 1.0, a), s, out=g)  # 1 - s: -s + 1 in IEEE
    g.mul_(h).add_(s)  # s + h (1 - s)
    return h, g


def _softplus_into(a, ws, key):
    h, g = (workspace_buffer(ws, key + name, a) for name in "hg")
    torch.ops.aten.softplus.out(a, 1, 20, out=h)
    torch.sigmoid(a, out=g)
    return h, g


def _tanh_into(a, ws, key):
    h, g = (workspace_buffer(ws, key + name, a) for name in "hg")
    torch.tanh(a, out=h)
    torch.mul(h, h, out=g)
    torch.sub(workspace_scalar(ws, 1.0, a), g, out=g)  # 1 - h^2
    return h, g


_INTO = {"silu": _silu_into, "softplus": _softplus_into, "tanh": _tanh_into}

# name -> (a, out) -> f(a) written into ``out``, the same kernels as ``_ACTIVATIONS``' first entry.
_ACT_INTO = {
    "silu": lambda a, out: torch.ops.aten.silu.out(a, out=out),
    "softplus": lambda a, out: torch.ops.aten.softplus.out(a, 1, 20, out=out),
    "tanh": lambda a, out: torch.tanh(a, out=out),
}


# Derivatives kept under the names that networks pickled by earlier versions refer to (they
# stored one of these as ``_dact``); unpickling looks them up before ``__setstate__`` runs.
def _dsilu(a):
    s = torch.sigmoid(a)
    return s * (1.0 + a * (1.0 - s))


def _dtanh(a):
    return 1.0 - torch.tanh(a) ** 2


def _activation(name: str):
    """Return ``(f, a -> (f(a), f'(a)))`` for a smooth activation."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be 'silu', 'softplus' or 'tanh', got {name!r}") from None


class VelocityMLP(nn.Module):
    """A multilayer perceptron ``v(x, t)`` with time features in every layer.

    Each hidden layer computes ``h_l = act(W_l h_{l-1} + U_l phi(t) + b_l)``, where
    ``phi(t)`` holds ``t`` and a few Fourier features of it, so the Jacobian with respect
    to ``x`` is ``W_out D_L W_L ... D_1 W_1`` with diagonal ``D_l = act'(a_l)``. Its trace
    (the divergence of the field) is computed exactly without autograd:

    * one hidden layer: ``sum_h D_1[h] (W_1 W_out)[h, h]``;
    * two hidden layers: ``d_2^T (W_2 * (W_1 W_out)^T) d_1``, a bilinear form that costs
      one extra matrix product per evaluation whatever the data dimension;
    * deeper networks: the Jacobian is carried forward layer by layer (forward mode).

    Parameters
    ----------
    dim : int
        Data dimension.
    hidden : tuple of int, default=(64, 64)
        Widths of the hidden layers.
    activation : {"silu", "softplus", "tanh"}
        Smooth activation.
    n_frequencies : int
        Number of Fourier frequencies in the time features.
    generator : torch.Generator, optional
        Source of randomness for the initial weights; None draws them from torch's global
        RNG (the estimators always pass one, so they never touch it).

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import VelocityMLP
    >>> net = VelocityMLP(3, (16, 16), generator=torch.Generator().manual_seed(0))
    >>> v, div = net.forward_with_divergence(torch.zeros(5, 3), torch.tensor(0.5))
    >>> v.shape, div.shape
    (torch.Size([5, 3]), torch.Size([5]))
    """

    def __init__(self, dim, hidden=(64, 64), activation="silu", n_frequencies=4, generator=None):
        super().__init__()

        def positive_int(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1

        if not positive_int(dim):
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if isinstance(hidden, (range, np.ndarray)) and np.ndim(hidden) == 1:
            hidden = tuple(hidden)
        if (not isinstance(hidden, (tuple, list)) or len(hidden) < 1
                or not all(positive_int(h) for h in hidden)):
            raise ValueError(
                f"hidden must be a non-empty tuple of positive layer widths, got {hidden!r}"
            )
        if not (isinstance(n_frequencies, numbers.Integral) and not isinstance(n_frequencies, bool)
                and n_frequencies >= 0):
            raise ValueError(
                f"n_frequencies must be a non-negative integer, got {n_frequencies!r}"
            )
        self.dim = int(dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.n_frequencies = int(n_frequencies)
        self._act, self._act_and_slope = _activation(activation)
        n_time = 1 + 2 * self.n_frequencies
        self.register_buffer(
            "frequencies", math.pi * torch.arange(1, self.n_frequencies + 1, dtype=torch.float32)
        )
        self._frequency_values = tuple(self.frequencies.tolist())
        widths = (self.dim,) + self.hidden + (self.dim,)
        self.weights = nn.ParameterList()
        self.time_weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(_uniform((fan_out, fan_in), bound, generator)))
            self.time_weights.append(
                nn.Parameter(_uniform((fan_out, n_time), 1.0 / math.sqrt(n_time), generator))
            )
            self.biases.append(nn.Parameter(_uniform((fan_out,), bound, generator)))
        # Start close to the zero field: a flow block begins near the identity map.
        with torch.no_grad():
            self.weights[-1].mul_(1e-2)
            self.time_weights[-1].mul_(1e-2)
            self.biases[-1].zero_()

    def __setstate__(self, state):
        super().__setstate__(state)
        # Activation functions are looked up by name, so models pickled by earlier
        # versions (which stored a separate derivative function) load unchanged.
        self._act, self._act_and_slope = _activation(self.activation)
        self.__dict__.pop("_dact", None)
        if "_frequency_values" not in self.__dict__:
            self._frequency_values = tuple(self.frequencies.tolist())

    def time_features(self, t, batch_shape):
        """Features ``[t, sin(pi k t), cos(pi k t)]`` broadcast to ``(batch, n_time)``."""
        t = torch.as_tensor(t, dtype=self.frequencies.dtype, device=self.frequencies.device)
        if t.dim() == 0:
            t = t.reshape(1, 1)
        else:
            t = t.reshape(-1, 1)
        wt = t * self.frequencies
        feats = torch.cat([t, torch.sin(wt), torch.cos(wt)], dim=1)
        return feats.expand(batch_shape, -1) if feats.shape[0] == 1 else feats

    def prepared(self, *, fused=False):
        """The field with its parameters gathered once, for many evaluations in a row.

        An ODE solve evaluates the network tens of times with the same weights. The
        returned object holds the layer matrices (already transposed), the divergence's
        coupling matrix and the time biases of each time it has seen, so each evaluation
        only does the per-sample work. Its results are those of :meth:`forward` and
        :meth:`forward_with_divergence`. Use it while the weights do not change (one solve,
        one training step): it keeps the values it gathered.

        Parameters
        ----------
        fused : bool, default=False
            For training loops: with gradients on, :meth:`with_divergence` of a
            two-hidden-layer network is differentiated through one autograd node with a
            hand-written backward (the chain rule written out, with the activation's second
            derivative for the trace) instead of about twenty, whose bookkeeping cost more
            than the arithmetic at training batch sizes. Same values; first derivatives
            only: a backward pass that builds a graph for higher derivatives
            (``create_graph=True``) raises. The velocity alone is never fused.

        Examples
        --------
        >>> import torch
        >>> from sigflow.flows import VelocityMLP
        >>> net = VelocityMLP(2, (8, 8), generator=torch.Generator().manual_seed(0))
        >>> field = net.prepared()
        >>> x = torch.ones(3, 2)
        >>> torch.equal(field.with_divergence(x, 0.25)[1], net.forward_with_divergence(x, 0.25)[1])
        True
        """
        return _PreparedMLP(self, fused)

    def forward(self, x, t):
        """Velocity at ``x`` (batch, dim) and time ``t`` (scalar or (batch,))."""
        return _PreparedMLP(self)(x, t)

    def forward_with_divergence(self, x, t):
        """Velocity and its exact divergence ``tr(dv/dx)`` per sample."""
        return _PreparedMLP(self).with_divergence(x, t)


class _PreparedMLP:
    """:class:`VelocityMLP`'s arithmetic with the per-network work done once.

    ``nn.ParameterList`` indexing and slicing cost microseconds per call, and the
    divergence's coupling matrix depends only on the weights; at training batch sizes these
    dominated an evaluation. Every value computed here is the one the network's own
    methods compute, with the same operations.
    """

    __slots__ = (
        "net", "fused", "weights", "weights_t", "time_weights_t", "biases", "trace", "_tb"
    )

    def __init__(self, net, fused=False):
        self.net = net
        self.fused = fused
        self.weights = tuple(net.weights)
        self.weights_t = tuple(W.T for W in self.weights)
        self.time_weights_t = tuple(U.T for U in net.time_weights)
        self.biases = tuple(net.biases)
        self.trace = None
        self._tb = {}

    def time_biases(self, t, batch):
        if isinstance(t, (float, int)):
            tb = self._tb.get(t)
            if tb is None:
                # The ODE solvers pass Python floats: build the features in one small
                # tensor instead of a chain of tiny tensor operations.
                net = self.net
                wt = [f * t for f in net._frequency_values]
                phi = torch.tensor(
                    [[t] + [math.sin(w) for w in wt] + [math.cos(w) for w in wt]],
                    dtype=net.frequencies.dtype,
                    device=net.frequencies.device,
                )
                tb = self._tb[t] = [
                    torch.addmm(b, phi, Ut) for Ut, b in zip(self.time_weights_t, self.biases)
                ]
            return tb
        phi = self.net.time_features(t, 1 if torch.as_tensor(t).dim() == 0 else batch)
        return [torch.addmm(b, phi, Ut) for Ut, b in zip(self.time_weights_t, self.biases)]

    def __call__(self, x, t):
        """Velocity at ``x`` (batch, dim) and time ``t``."""
        tb = self.time_biases(t, x.shape[0])
        act = self.net._act
        h = x
        for Wt, c in zip(self.weights_t[:-1], tb):
            h = act(torch.addmm(c, h, Wt))
        return torch.addmm(tb[-1], h, self.weights_t[-1])

    def with_divergence(self, x, t):
        """Velocity and its exact divergence ``tr(dv/dx)`` per sample."""
        tb = self.time_biases(t, x.shape[0])
        if self.trace is None:
            self.trace = self._trace_matrix()
        if self.fused and len(self.weights) == 3 and torch.is_grad_enabled():
            # Training: one autograd node with a hand-written backward instead of about
            # twenty (the autograd bookkeeping cost more than the arithmetic at training
            # batch sizes). Same forward values; gradients equal to rounding.
            return _TwoLayerDivergence.apply(
                x, *tb, *self.weights_t, self.trace, self.net.activation
            )
        act_and_slope = self.net._act_and_slope
        h = x
        slopes = []
        for Wt, c in zip(self.weights_t[:-1], tb):
            h, slope = act_and_slope(torch.addmm(c, h, Wt))
            slopes.append(slope)
        v = torch.addmm(tb[-1], h, self.weights_t[-1])
        if len(slopes) == 1:
            div = slopes[0] @ self.trace
        elif len(slopes) == 2:
            div = ((slopes[0] @ self.trace) * slopes[1]).sum(dim=1)
        else:
            W1, Wout = self.weights[0], self.weights[-1]
            jac = slopes[0].unsqueeze(-1) * W1  # (B, H1, d)
            for W, s in zip(self.weights[1:-1], slopes[1:]):
                jac = s.unsqueeze(-1) * torch.matmul(W, jac)
            div = torch.einsum("ih,bhi->b", Wout, jac)
        return v, div

    def supports_into(self, divergence=True):
        """Whether :meth:`into` can evaluate this network (with the divergence: one or two
        hidden layers)."""
        return not divergence or len(self.weights) in (2, 3)

    def into(self, x, t, v, div, ws):
        """``(v, div)`` at ``(x, t)`` written into ``v`` and ``div`` (``div=None``: velocity only).

        Inference only (no autograd): the intermediate values live in the dict ``ws`` and
        are reused from one evaluation to the next, so a solve allocates no tensor per
        evaluation. Values are bit for bit those of :meth:`__call__` and
        :meth:`with_divergence` (same operations, written to preallocated outputs). The
        divergence needs one or two hidden layers (:meth:`supports_into`).
        """
        tb = self.time_biases(t, x.shape[0])
        activation = self.net.activation
        h, slopes = x, []
        for layer, (Wt, c) in enumerate(zip(self.weights_t[:-1], tb)):
            a = workspace_buffer(ws, f"{layer}a", x, (x.shape[0], Wt.shape[1]))
            torch.addmm(c, h, Wt, out=a)
            if div is None:
                h = workspace_buffer(ws, f"{layer}h", a)
                _ACT_INTO[activation](a, h)
            else:
                h, slope = _INTO[activation](a, ws, f"{layer}")
                slopes.append(slope)
        torch.addmm(tb[-1], h, self.weights_t[-1], out=v)
        if div is None:
            return v, None
        if self.trace is None:
            self.trace = self._trace_matrix()
        if len(slopes) == 1:
            torch.mv(slopes[0], self.trace, out=div)
        else:
            p = workspace_buffer(ws, "p", slopes[1])
            torch.mm(slopes[0], self.trace, out=p)
            torch.sum(p.mul_(slopes[1]), dim=1, out=div)
        return v, div

    def _trace_matrix(self):
        W1, Wout = self.weights[0], self.weights[-1]
        if len(self.weights) == 2:
            return (W1 * Wout.T).sum(dim=1)  # diag(W1 @ Wout), shape (H,)
        if len(self.weights) == 3:
            return (self.weights[1] * (W1 @ Wout).T).T  # (H1, H2): the coupling, transposed
        return None


class _TwoLayerDivergence(torch.autograd.Function):
    """``(v, div)`` of a two-hidden-layer :class:`VelocityMLP` as one autograd node.

    Inputs: ``x`` (B, d), the three time biases ``c_l`` ((1, H_l) or (B, H_l)), the
    transposed weights ``W_l^T`` and the trace matrix ``T = (W_2 * (W_1 W_out)^T)^T``
    (H1, H2). Forward: ``a_l = c_l + h_{l-1} W_l^T``, ``h_l = f(a_l)``, ``g_l = f'(a_l)``,
    ``v = c_3 + h_2 W_3^T``, ``div = sum((g_1 T) * g_2)``. The backward is the chain rule
    written out, with ``f''`` for the slopes' dependence on the pre-activations.
    """

    @staticmethod
    def forward(ctx, x, c1, c2, c3, W1t, W2t, W3t, T, activation):
        forward_pair, curvature = _SECOND_ORDER[activation]
        a1 = torch.addmm(c1, x, W1t)
        h1, g1, aux1 = forward_pair(a1)
        a2 = torch.addmm(c2, h1, W2t)
        h2, g2, aux2 = forward_pair(a2)
        v = torch.addmm(c3, h2, W3t)
        P = g1 @ T
        div = (P * g2).sum(dim=1)
        ctx.curvature = curvature
        ctx.aux = (aux1, aux2)
        ctx.bias_rows = (c1.shape[0], c2.shape[0], c3.shape[0])
        ctx.save_for_backward(x, a1, h1, g1, a2, h2, g2, P, W1t, W2t, W3t, T)
        return v, div

    @staticmethod
    def backward(ctx, gv, gd):
        _first_order_only()
        x, a1, h1, g1, a2, h2, g2, P, W1t, W2t, W3t, T = ctx.saved_tensors
        aux1, aux2 = ctx.aux
        need = ctx.needs_input_grad
        gd = gd.unsqueeze(1)
        gP = gd * g2  # d div / d P
        ga2 = torch.addcmul(
            (gv @ W3t.T) * g2, gd * P, ctx.curvature(a2, h2, g2, aux2)
        )  # through h2 and through the slope g2
        gh1 = ga2 @ W2t.T
        ga1 = torch.addcmul(gh1 * g1, gP @ T.T, ctx.curvature(a1, h1, g1, aux1))
        return (
            ga1 @ W1t.T if need[0] else None,
            *(
                _bias_grad(g, rows, needed)
                for g, rows, needed in zip((ga1, ga2, gv), ctx.bias_rows, need[1:4])
            ),
            x.T @ ga1 if need[4] else None,
            h1.T @ ga2 if need[5] else None,
            h2.T @ gv if need[6] else None,
            g1.T @ gP if need[7] else None,
            None,
        )


def _first_order_only():
    # Grad mode is on inside a backward pass only when it builds a graph for higher
    # derivatives; the hand-written backwards give first derivatives, so say so instead of
    # returning gradients that silently miss their second-order part.
    if torch.is_grad_enabled():
        raise RuntimeError(
            "the fused training path of VelocityMLP gives first derivatives only; for "
            "higher derivatives (create_graph=True) evaluate the network with "
            "prepared(fused=False), forward or forward_with_divergence"
        )


def _bias_grad(grad, rows, needed):
    """Gradient of a bias of ``rows`` rows broadcast over the batch (1) or per sample."""
    if not needed:
        return None
    return grad.sum(dim=0, keepdim=True) if rows != grad.shape[0] else grad


def _uniform(shape, bound, generator):
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)
