"""Block-wise training of flows: Local Flow Matching, flow matching (and JKO-iFlow).

Every method builds blocks one after another. Block ``k`` is trained on the training data
pushed through blocks ``1 .. k-1``, warm-started from block ``k-1``; then the data is pushed
through it. The methods differ in the loss of a block:

* ``"lfm"`` Local Flow Matching: blocks ``1 .. K-1`` are trained by flow matching between the
  pushed data ``x`` and its Ornstein-Uhlenbeck evolution ``exp(-h_k) x + sqrt(1-exp(-2 h_k)) eps``
  over a short time ``h_k`` (geometric step sizes), so each block solves an easy, local
  transport problem; block ``K`` is a free flow-matching block from the pushed data to
  independent ``N(0, I)`` noise.
* ``"fm"``: a single free flow-matching block.
* ``"jko"``: see :mod:`sigflow.flows._jko`.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
import warnings
from dataclasses import dataclass, field

import torch

from .._warnings import user_stacklevel
from ._divergence import check_probes, rademacher_probes
from ._flow import Flow, FlowBlock, standard_normal_log_prob
from ._ode import evaluations_per_step
from ._velocity import VelocityMLP

__all__ = [
    "sample_times",
    "TrainingConfig",
    "TrainingResult",
    "NonFiniteLossError",
    "SolverAccuracyWarning",
    "train_flow",
    "finetune_flow",
    "smooth_rows",
    "flow_nll_terms",
    "ou_step_sizes",
]

METHODS = ("lfm", "fm", "jko")
INTERPOLANTS = ("linear", "trig")
COUPLINGS = ("independent", "ot")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message names the block and step."""


class SolverAccuracyWarning(UserWarning):
    """The fixed-step solver's log-likelihoods disagree with finely solved ones."""


# Held-out NLL difference (nats per sample) between the training solver and the same ODEs
# solved twice as finely above which the refinement warns: the scores it leaves would then
# misstate the flow's density by that much.
SOLVER_GAP_WARN = 0.05

# Held-out rows of every early-stopping check (the first ones of the validation split).
VALIDATION_ROWS = 2048


@dataclass
class TrainingConfig:
    """Everything a training method needs to know (no scikit-learn, no numpy).

    Attributes mirror the estimator parameters of the same names (``max_iter`` is a number
    here, where the estimators also take ``"auto"``; ``probes``, ``push_chunk`` and
    ``validation_interval`` are not estimator parameters), except
    ``ema_decay`` (each block keeps an exponential moving average of its weights over the
    optimisation steps; 0 turns it off), ``free_coupling`` (``"independent"`` noise, or
    ``"ot"``: minibatch optimal-transport pairing of data and noise in the free block, by
    the Hungarian algorithm, whose cost grows with the cube of ``batch_size``: 12 ms per
    step at 512 rows, 0.46 s at 2,048),
    ``noise_scale`` (standard deviation of the Gaussian smoothing noise, in the units of the
    training data; 0 turns it off) and ``noise_rows`` (the
    smoothed training set holds at least this many rows, see :func:`smooth_rows`).
    ``finetune_learning_rate=None`` refines at ``learning_rate_init / 2``;
    ``finetune_warmup`` is the fraction of the refinement's steps over which its learning
    rate rises linearly (0: none), multiplying the cosine schedule (see
    :func:`finetune_flow`), so that it peaks below ``finetune_learning_rate``;
    ``finetune_batch_size=None`` refines with ``batch_size`` rows per step.
    ``time_sampling`` draws the flow-matching times of ``"lfm"`` and ``"fm"`` blocks:
    ``"uniform"`` on [0, 1], or ``("beta", a, b)`` from Beta(a, b) (see
    :func:`sample_times`).
    ``max_scoring_steps``: when the refined flow's held-out likelihood with ``n_ode_steps``
    differs from the one with twice the steps by more than :data:`SOLVER_GAP_WARN`, the
    refinement doubles the flow's steps per block (``Flow.n_steps``, which scores, transforms
    and samples use) until it no longer does or up to this many; None leaves them at
    ``n_ode_steps``.

    Parameters
    ----------
    method : {"lfm", "fm", "jko"}, default="lfm"
        Training method (see :func:`train_flow`).
    n_blocks : int, default=4
        Number of blocks: ``n_blocks - 1`` Ornstein-Uhlenbeck blocks and one free block for
        ``"lfm"``; ignored by ``"fm"`` (one free block); at most this many for ``"jko"``.
    hidden_layer_sizes : tuple of int, default=(64, 64)
        Hidden widths of each block's :class:`VelocityMLP`.
    activation : str, default="silu"
        Activation of the velocity networks (``"silu"``, ``"softplus"`` or ``"tanh"``).
    max_iter : int, default=1000
        Adam steps per block.
    batch_size : int, default=512
        Rows per step (capped at the number of training rows).
    learning_rate_init : float, default=2e-3
        Initial learning rate of each block, decayed by a cosine schedule to 1/20 of it.
    ode_solver : {"rk4", "midpoint", "euler"}, default="rk4"
        Fixed-step solver of the flow (pushes, log-likelihoods, JKO training).
    n_ode_steps : int, default=4
        Solver steps per block.
    step_size : float, default=0.3
        Ornstein-Uhlenbeck time ``h_1`` of the first block (``"lfm"``, ``"jko"``).
    step_size_ratio : float, default=1.3
        Geometric growth of the step sizes (see :func:`ou_step_sizes`).
    interpolant : {"linear", "trig"}, default="linear"
        Flow-matching interpolant (``"lfm"``, ``"fm"``).
    probes : torch.Tensor of shape (n_probes, dim) or None, default=None
        Hutchinson probes (``None``: exact divergence). Training (JKO blocks, the
        refinement) draws new probes of this shape at every step.
    tol : float or None, default=None
        ``"jko"`` only: no further block once a block's displacement is below ``tol``.
    verbose : int, default=0
        Show progress bars (tqdm) when positive.
    push_chunk : int, default=8192
        Rows per chunk when the training data are pushed through a trained block.
    ema_decay : float in [0, 1), default=0.999
        See above.
    free_coupling : {"independent", "ot"}, default="independent"
        See above.
    validation_fraction : float, default=0.1
        Fraction of the rows held out for early stopping (none when that would be fewer
        than 10 rows or leave fewer than 2 to train on; 0 turns it off).
    n_iter_no_change : int, default=5
        Held-out checks without improvement before a block, or the refinement, stops.
    validation_interval : int, default=50
        Optimisation steps between held-out checks.
    finetune_iter : int, default=0
        Steps of the likelihood refinement of all blocks together (:func:`finetune_flow`);
        0 turns it off.
    finetune_learning_rate : float or None, default=None
        See above.
    finetune_warmup : float in [0, 1), default=0.0
        See above.
    finetune_batch_size : int or None, default=None
        See above.
    kinetic_penalty : float, default=0.0
        Weight of the kinetic energy in the refinement loss (see :func:`finetune_flow`).
    solver_penalty : float, default=0.0
        Weight of the solver's error indicator in the refinement loss (see
        :func:`finetune_flow`).
    noise_scale : float, default=0.0
        See above.
    noise_rows : int, default=4096
        See above.
    max_scoring_steps : int or None, default=None
        See above.
    time_sampling : "uniform" or tuple ("beta", a, b), default="uniform"
        See above.

    Examples
    --------
    >>> from sigflow.flows import TrainingConfig
    >>> cfg = TrainingConfig(n_blocks=2, hidden_layer_sizes=(8,), max_iter=5)
    >>> cfg.validate()
    >>> cfg.method, cfg.n_ode_steps, cfg.finetune_iter
    ('lfm', 4, 0)
    >>> TrainingConfig(method="flow").validate()
    Traceback (most recent call last):
    ...
    ValueError: method must be one of ('lfm', 'fm', 'jko'), got 'flow'
    """

    method: str = "lfm"
    n_blocks: int = 4
    hidden_layer_sizes: tuple = (64, 64)
    activation: str = "silu"
    max_iter: int = 1000
    batch_size: int = 512
    learning_rate_init: float = 2e-3
    ode_solver: str = "rk4"
    n_ode_steps: int = 4
    step_size: float = 0.3
    step_size_ratio: float = 1.3
    interpolant: str = "linear"
    probes: torch.Tensor | None = None
    tol: float | None = None
    verbose: int = 0
    push_chunk: int = 8192
    ema_decay: float = 0.999
    free_coupling: str = "independent"
    validation_fraction: float = 0.1
    n_iter_no_change: int = 5
    validation_interval: int = 50
    finetune_iter: int = 0
    finetune_learning_rate: float | None = None
    finetune_warmup: float = 0.0
    finetune_batch_size: int | None = None
    kinetic_penalty: float = 0.0
    solver_penalty: float = 0.0
    noise_scale: float = 0.0
    noise_rows: int = 4096
    max_scoring_steps: int | None = None
    time_sampling: str | tuple = "uniform"

    def validate(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.interpolant not in INTERPOLANTS:
            raise ValueError(f"interpolant must be one of {INTERPOLANTS}, got {self.interpolant!r}")
        _check_time_sampling(self.time_sampling)
        if self.free_coupling not in COUPLINGS:
            raise ValueError(
                f"free_coupling must be one of {COUPLINGS}, got {self.free_coupling!r}"
            )
        if not (0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        evaluations_per_step(self.ode_solver)
        if self.activation not in ("silu", "softplus", "tanh"):
            raise ValueError(
                f"activation must be 'silu', 'softplus' or 'tanh', got {self.activation!r}"
            )
        for name in ("n_blocks", "max_iter", "batch_size", "n_ode_steps", "n_iter_no_change",
                     "validation_interval", "push_chunk", "noise_rows"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        frac = self.validation_fraction
        if not (isinstance(frac, numbers.Real) and 0 <= frac < 1):
            raise ValueError(f"validation_fraction must be in [0, 1), got {frac!r}")
        tol = self.tol
        if tol is not None and not (
            isinstance(tol, numbers.Real) and not isinstance(tol, bool)
            and math.isfinite(tol) and tol > 0
        ):
            raise ValueError(f"tol must be None or a positive finite number, got {tol!r}")
        if (
            not isinstance(self.finetune_iter, numbers.Integral)
            or isinstance(self.finetune_iter, bool)
            or self.finetune_iter < 0
        ):
            raise ValueError(
                f"finetune_iter must be a non-negative integer, got {self.finetune_iter!r}"
            )
        size = self.finetune_batch_size
        if size is not None and (
            not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1
        ):
            raise ValueError(
                f"finetune_batch_size must be None or a positive integer, got {size!r}"
            )
        steps = self.max_scoring_steps
        if steps is not None and (
            not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1
        ):
            raise ValueError(
                f"max_scoring_steps must be None or a positive integer, got {steps!r}"
            )
        warmup = self.finetune_warmup
        if not (isinstance(warmup, numbers.Real) and 0 <= warmup < 1):
            raise ValueError(f"finetune_warmup must be in [0, 1), got {warmup!r}")
        noise = self.noise_scale
        if not (isinstance(noise, numbers.Real) and not isinstance(noise, bool)
                and math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise_scale must be a non-negative number, got {noise!r}")
        for name in ("kinetic_penalty", "solver_penalty"):
            penalty = getattr(self, name)
            if not (isinstance(penalty, numbers.Real) and not isinstance(penalty, bool)
                    and math.isfinite(penalty) and penalty >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {penalty!r}")
        rates = ("learning_rate_init", "step_size", "step_size_ratio")
        if self.finetune_learning_rate is not None:  # None: half of learning_rate_init
            rates += ("finetune_learning_rate",)
        for name in rates:
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
                    and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.probes is not None:
            check_probes(self.probes)
        verbose = self.verbose
        if not isinstance(verbose, numbers.Integral) or verbose < 0:  # bool is allowed here
            raise ValueError(f"verbose must be a non-negative integer or bool, got {verbose!r}")
        hidden = self.hidden_layer_sizes
        if (
            not isinstance(hidden, (tuple, list))
            or len(hidden) == 0
            or not all(
                isinstance(h, numbers.Integral) and not isinstance(h, bool) and h > 0
                for h in hidden
            )
        ):
            raise ValueError(
                f"hidden_layer_sizes must be a non-empty tuple of positive integers, got {hidden!r}"
            )


@dataclass
class TrainingResult:
    """A trained flow with its loss curve and one diagnostics dict per block.

    Attributes
    ----------
    flow : Flow
        The trained blocks, from data to noise.
    loss_curve : list of float
        Training loss at every optimisation step of the block-wise training, all blocks in
        order (the refinement's losses are in ``finetune_stats["loss_curve"]``).
    block_stats : list of dict
        One dict per block: ``block`` (its number, from 1), ``kind`` (``"ou"``, ``"free"``
        or ``"jko"``), ``step_size`` (its Ornstein-Uhlenbeck time; None for a free block),
        ``n_iter``, ``loss`` (mean over the last tenth of its steps), ``time_s``,
        ``nfe_push``, ``displacement`` (``E|T(x) - x|^2 / E|T(x)|^2`` on the training
        data), ``latent_nll`` (mean negative log-likelihood of the pushed training data
        under ``N(0, I)``) and ``n_checks`` (held-out checks).
    finetune_stats : dict or None
        Set by :func:`finetune_flow`; None when no refinement ran.

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import TrainingConfig, train_flow
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(64, 2, generator=g)
    >>> result = train_flow(X, TrainingConfig(n_blocks=2, hidden_layer_sizes=(8,), max_iter=3), g)
    >>> len(result.loss_curve), [s["kind"] for s in result.block_stats], result.finetune_stats
    (6, ['ou', 'free'], None)
    """

    flow: Flow
    loss_curve: list = field(default_factory=list)
    block_stats: list = field(default_factory=list)
    finetune_stats: dict | None = None


def ou_step_sizes(n, step_size, ratio):
    """Geometric Ornstein-Uhlenbeck step sizes ``h_k = step_size * ratio**(k-1)``, k = 1..n.

    Parameters
    ----------
    n : int
        Number of step sizes (0 gives an empty list).
    step_size : float
        The first one, ``h_1``.
    ratio : float
        Ratio of consecutive step sizes.

    Returns
    -------
    steps : list of float
        ``h_1 .. h_n``.

    Examples
    --------
    >>> from sigflow.flows import ou_step_sizes
    >>> [round(h, 4) for h in ou_step_sizes(3, 0.3, 1.3)]
    [0.3, 0.39, 0.507]
    """
    return [float(step_size) * float(ratio) ** k for k in range(n)]


def _check_time_sampling(spec):
    """``spec`` as ``None`` (uniform) or ``(a, b)``; ValueError for anything else."""
    if isinstance(spec, str) and spec == "uniform":
        return None
    if isinstance(spec, (tuple, list)) and len(spec) == 3 and spec[0] == "beta":
        a, b = spec[1], spec[2]
        if all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0
            for v in (a, b)
        ):
            return float(a), float(b)
    raise ValueError(
        f"time_sampling must be 'uniform' or ('beta', a, b) with a, b > 0, got {spec!r}"
    )


def _log_standard_gamma(shape, n, generator, device):
    """Logarithms of ``n`` draws of Gamma(shape, 1) from ``generator`` (Marsaglia and
    Tsang, 2000), in float64.

    Rejection from a transformed normal, accepted with probability above 0.95 for
    ``shape >= 1``; smaller shapes use ``Gamma(shape + 1) * U**(1 / shape)``, added in
    logarithms because for small shapes the draw itself underflows (shape 0.002: one in
    twenty is below 1e-308). ``torch.distributions`` cannot take a generator, so seeded
    training needs this.
    """
    boost = shape < 1.0
    d = (shape + 1.0 if boost else shape) - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, device=device, dtype=torch.float64)
    todo = torch.arange(n, device=device)
    while todo.numel():
        m = todo.numel()
        x = torch.randn(m, generator=generator, device=device, dtype=torch.float64)
        u = torch.rand(m, generator=generator, device=device, dtype=torch.float64)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = math.log(d) + torch.log(v[ok])
        todo = todo[~ok]
    if boost:
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        out = out + torch.log(u) / shape
    return out


def sample_times(spec, n, generator=None, *, device="cpu", dtype=torch.float32):
    """Flow-matching times: ``n`` draws on [0, 1] as ``spec`` says.

    Parameters
    ----------
    spec : "uniform" or tuple ("beta", a, b)
        Uniform on [0, 1], or Beta(a, b) with ``a, b > 0`` (``a < b`` puts more of the
        training near t = 0, the data end of each block; ``a = b < 1`` near both ends).
    n : int
    generator : torch.Generator, optional
        Seeds the draws (Beta: as the ratio of two gamma draws).
    device : str or torch.device, default="cpu"
        Device of the draws (the generator's).
    dtype : torch.dtype, default=torch.float32
        Floating-point type of the draws.

    Returns
    -------
    t : torch.Tensor of shape (n,)

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import sample_times
    >>> g = torch.Generator().manual_seed(0)
    >>> t = sample_times(("beta", 2.0, 5.0), 100_000, g, dtype=torch.float64)
    >>> round(float(t.mean()), 2)  # a / (a + b)
    0.29
    """
    ab = _check_time_sampling(spec)
    if ab is None:
        return torch.rand(n, generator=generator, device=device, dtype=dtype)
    log_a = _log_standard_gamma(ab[0], n, generator, device)
    log_b = _log_standard_gamma(ab[1], n, generator, device)
    return torch.sigmoid(log_a - log_b).to(dtype)  # G_a / (G_a + G_b)


def _interpolate(x0, x1, t, interpolant):
    t = t.unsqueeze(1)
    if interpolant == "linear":
        return (1 - t) * x0 + t * x1, x1 - x0
    c, s = torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)
    return c * x0 + s * x1, 0.5 * math.pi * (c * x1 - s * x0)


def _lr_at(step, max_iter, lr, warmup=0):
    """Cosine decay from ``lr`` to ``lr / 20`` over the block's steps, multiplied by a
    linear rise over the first ``warmup`` steps (so the peak is below ``lr``: the cosine's
    value at the end of a short rise, less for a long one)."""
    rate = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / max_iter)))
    if step < warmup:
        rate *= (step + 1) / warmup
    return rate


@torch.no_grad()
def _push_all(block, X, config):
    out = []
    nfe = 0
    for chunk in torch.split(X, config.push_chunk):
        y, _, nfe = block.push(chunk, n_steps=config.n_ode_steps, solver=config.ode_solver)
        out.append(y)
    return torch.cat(out), nfe


def _progress(config, total, desc):
    if not config.verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def train_flow(X, config, generator):
    """Train a flow on ``X`` (a float tensor on the target device) block by block.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, dim)
        Training data, already standardised.
    config : TrainingConfig
    generator : torch.Generator or None
        On ``X``'s device; the only source of randomness. ``None`` seeds a new one from
        torch's global generator, so that ``torch.manual_seed`` reproduces the fit.

    Returns
    -------
    TrainingResult

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import TrainingConfig, train_flow
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(256, 2, generator=g)
    >>> cfg = TrainingConfig(n_blocks=2, hidden_layer_sizes=(16, 16), max_iter=20)
    >>> result = train_flow(X, cfg, g)
    >>> len(result.flow.blocks), len(result.block_stats)
    (2, 2)
    """
    if not isinstance(config, TrainingConfig):
        raise TypeError(
            f"config must be a TrainingConfig, got a {type(config).__name__} "
            "(for a dict of settings: TrainingConfig(**settings))"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator on X's device or None, got a "
            f"{type(generator).__name__} "
            "(for a seed s: torch.Generator(device=X.device).manual_seed(s))"
        )
    config.validate()
    if not isinstance(X, torch.Tensor) or X.dim() != 2 or not X.is_floating_point():
        raise ValueError(
            "X must be a 2-D floating-point torch tensor of shape (n_samples, dim), got "
            + (f"a {X.dim()}-D {X.dtype} tensor" if isinstance(X, torch.Tensor)
               else type(X).__name__)
        )
    if X.dtype not in (torch.float32, torch.float64):
        # float16 loses the loss to rounding within a few steps (then reported as a
        # non-finite loss with advice about the learning rate); bfloat16's 8-bit mantissa
        # rounds every log-density to about 2 significant digits
        raise ValueError(
            f"X must be float32 or float64 for training, got {X.dtype}; train in float32 "
            "and convert the trained flow (flow.to(dtype)) for lower-precision inference"
        )
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(f"X needs at least 2 rows and 1 column, got shape {tuple(X.shape)}")
    if generator is None:
        seed = int(torch.randint(0, 2**62, (1,)))  # from the global generator
        generator = torch.Generator(device=X.device).manual_seed(seed)
    if config.probes is not None:
        check_probes(config.probes, X.shape[1])
    if not bool(torch.isfinite(X).all()):
        raise ValueError("X holds NaN or infinite values")
    X = X.detach()  # the data are constants here: a graph on X would be backpropagated
    dim = X.shape[1]
    cpu_gen = torch.Generator().manual_seed(
        int(torch.randint(0, 2**62, (1,), generator=generator, device=X.device).item())
    )
    velocity = VelocityMLP(
        dim, tuple(config.hidden_layer_sizes), config.activation, generator=cpu_gen
    )
    velocity = velocity.to(device=X.device, dtype=X.dtype)
    flow = Flow(n_steps=config.n_ode_steps, solver=config.ode_solver)
    result = TrainingResult(flow=flow)
    if config.method == "jko":
        from ._jko import train_jko_blocks

        X, X_val = _smoothed_split(X, config, generator)
        train_jko_blocks(X, velocity, config, generator, result, X_val)
        if config.finetune_iter:
            finetune_flow(result, X, X_val, config, generator)
        return result

    n_ou = config.n_blocks - 1 if config.method == "lfm" else 0
    steps = ou_step_sizes(n_ou, config.step_size, config.step_size_ratio)
    kinds = ["ou"] * n_ou + ["free"]
    X, X_val = _smoothed_split(X, config, generator)
    X_val_data = X_val
    current = X
    for k, kind in enumerate(kinds):
        h = steps[k] if kind == "ou" else None
        if k > 0:
            velocity = copy.deepcopy(velocity)
        start = time.perf_counter()
        losses, n_checks = _train_fm_block(velocity, current, h, config, generator, k, X_val)
        block = FlowBlock(velocity)
        current = _append_block(
            result, block, current, losses, start, config, k, kind, h, n_checks
        )
        if X_val is not None:
            X_val = _push_all(block, X_val, config)[0]
    if config.finetune_iter:
        finetune_flow(result, X, X_val_data, config, generator)
    return result


def flow_nll_terms(flow, x, *, probes=None, solver_error=False, kinetic=True, fused=False):
    """Negative log-likelihood and kinetic energy of each row of ``x``, differentiably.

    Runs ``x`` through every block of ``flow`` with its fixed-step solver, integrating the
    divergence (exact, or Hutchinson with ``probes``) and ``|v|^2`` along the way.
    ``solver_error``, ``kinetic`` and ``fused`` are passed to :func:`jko_block_terms`
    (``fused=True``: first derivatives only, as the refinement takes them).

    Parameters
    ----------
    flow : Flow
        Its blocks are solved with its ``n_steps`` and ``solver``.
    x : torch.Tensor of shape (batch, dim)
        Data-side points.
    probes : torch.Tensor of shape (n_probes, dim), optional
        Hutchinson probes; exact divergence when ``None``.
    solver_error : bool, default=False
        Also return the solver's error indicator (four results instead of three).
    kinetic : bool, default=True
        Integrate the kinetic energy.
    fused : bool, default=False
        See :func:`jko_block_terms`.

    Returns
    -------
    nll : torch.Tensor of shape (batch,)
        ``-log p(x)`` under the flow.
    kinetic : torch.Tensor of shape (batch,) or None
        ``sum_k int_0^1 |v_k(x(t), t)|^2 dt``; ``None`` with ``kinetic=False`` (not
        computed).
    error : torch.Tensor of shape (batch,)
        Only with ``solver_error=True``: the solver's error indicator for the
        log-determinant, summed over the blocks (see :func:`jko_block_terms`).
    nfe : int
        Function evaluations.

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import Flow, FlowBlock, VelocityMLP, flow_nll_terms
    >>> g = torch.Generator().manual_seed(0)
    >>> flow = Flow([FlowBlock(VelocityMLP(2, (8,), generator=g)) for _ in range(2)])
    >>> x = torch.randn(5, 2, generator=g)
    >>> nll, kinetic, nfe = flow_nll_terms(flow, x)
    >>> nll.shape, kinetic.shape, nfe
    (torch.Size([5]), torch.Size([5]), 64)
    >>> bool(torch.allclose(nll, -flow.log_prob(x)))
    True
    """
    from ._jko import jko_block_terms

    logdet = energy = error = 0.0
    nfe = 0
    for block in flow.blocks:
        x, ld, kin, *err, n = jko_block_terms(
            block, x, n_steps=flow.n_steps, solver=flow.solver, probes=probes,
            solver_error=solver_error, kinetic=kinetic, fused=fused,
        )
        logdet, energy, nfe = logdet + ld, energy + kin if kinetic else None, nfe + n
        if solver_error:
            error = error + err[0]
    nll = -(standard_normal_log_prob(x) + logdet)
    if solver_error:
        return nll, energy, error, nfe
    return nll, energy, nfe


def finetune_flow(result, X, X_val, config, generator):
    """Refine all blocks of ``result.flow`` together by maximum likelihood.

    Block-wise training makes every block good at its own, local task; the composed flow
    still leaves a gap to the data's density that the blocks cannot see one at a time.
    This stage minimises

        ``E[-log p(x)] + solver_penalty * E[e(x)] + kinetic_penalty * E[sum_k int |v_k|^2 dt]``

    over all blocks at once (Adam, ``config.finetune_iter`` steps of
    ``config.finetune_batch_size`` rows, or ``batch_size`` when that is None, learning rate
    ``config.finetune_learning_rate``, or ``learning_rate_init / 2`` when that is None,
    decayed by a cosine schedule over all the steps to a twentieth of it, times a linear
    rise over the first ``finetune_warmup`` of the steps: the rate peaks at 98 % of the
    learning rate at the end of a rise over 10 % of the steps, at 54 % for a rise over half),
    through the same fixed-step solver that scores the data. With
    ``config.probes`` (Hutchinson), every step draws new probes of that shape, and the
    held-out checks one set of their own: trained on the scoring probes, the flow would
    learn their errors (see :func:`_fresh_probes`).
    ``e(x)`` is the solver's error indicator for the log-determinant along the path of
    ``x``: per step, the squared difference between the solver's quadrature of the
    divergence and a lower-order rule on the same evaluations (RK4: Simpson against the
    trapezoid rule; see :func:`~sigflow.flows.integrate_fixed_with_error`). It costs no
    extra evaluation. Maximum likelihood through a fixed-step solver otherwise learns to
    curve the fields until the solver's error flatters the likelihood (the computed density
    then integrates to more than one); the penalty keeps the integrand smooth along the
    paths, so the likelihood the refinement improves is the flow's own. The indicator
    needs RK4's four evaluations per step; with ``"midpoint"`` or ``"euler"`` the penalty
    has no effect.

    With held-out rows ``X_val``, their likelihood is checked every ``validation_interval``
    steps with the ODEs solved **twice as finely** as in training (by
    :func:`held_out_statistic`: the mean NLL without the 1 % most extreme rows at each
    end), and the weights with the best such likelihood are kept; refinement stops after
    ``n_iter_no_change`` checks without improvement. Weights whose likelihood only
    improves through the coarse solver's error (long, curved paths), or that memorise the
    training rows, are not kept; the fields can still curve enough for the coarse solver to
    flatter the kept weights somewhat, which ``solver_gap`` (below) measures.

    When ``validation_fraction`` is positive but the data are too few to hold out 10 rows,
    the refinement is skipped (``finetune_stats["skipped"]`` says so): unchecked, it would
    memorise a small training set. With ``validation_fraction=0`` it runs unchecked.

    Sets ``result.finetune_stats`` (steps, learning rate, time, NFE per step, held-out NLL
    before and after, the number of held-out checks, and ``solver_gap``: the mean over the
    held-out rows of the NLL with the training solver minus the same with twice the steps, for
    the kept weights, without the 1 % largest and 1 % smallest differences, so that a few far
    outliers among the rows do not decide it (:func:`_trimmed_mean`); negative when the coarse
    solver overstates the likelihood). When ``solver_gap`` is
    larger than :data:`SOLVER_GAP_WARN` nats in size and ``config.max_scoring_steps`` allows,
    the flow's steps per block are doubled, and ``solver_gap`` measured again for the new
    steps against twice as many, until it is not or the limit is reached; ``scoring_steps``
    records the steps per block the flow keeps. If the gap is still that large, a
    :class:`SolverAccuracyWarning` says so: the flow's scores then misstate its density.
    Raises :class:`NonFiniteLossError` if the loss turns non-finite.

    Parameters
    ----------
    result : TrainingResult
        Its ``flow`` is refined in place and its ``finetune_stats`` set.
    X : torch.Tensor of shape (n_samples, dim)
        Training rows (in the units the flow was trained in), drawn into minibatches.
    X_val : torch.Tensor of shape (n_val, dim) or None
        Held-out rows; the first 2,048 are checked. None: no checks (see above).
    config : TrainingConfig
        The refinement's settings (``finetune_*``, ``kinetic_penalty``,
        ``solver_penalty``, ``probes``, ``validation_fraction``, ``validation_interval``,
        ``n_iter_no_change``, ``max_scoring_steps``, ``batch_size``,
        ``learning_rate_init``, ``verbose``).
    generator : torch.Generator
        On ``X``'s device; draws the minibatches and the probes.

    Returns
    -------
    result : TrainingResult
        ``result`` itself.

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import TrainingConfig, finetune_flow, train_flow
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(64, 2, generator=g)
    >>> cfg = TrainingConfig(n_blocks=2, hidden_layer_sizes=(8,), max_iter=3, finetune_iter=2)
    >>> result = train_flow(X[:48], cfg, g)  # too few rows to hold out: refinement skipped
    >>> result.finetune_stats["skipped"]
    'too few samples to hold out validation rows'
    >>> stats = finetune_flow(result, X[:48], X[48:], cfg, g).finetune_stats
    >>> stats["n_iter"], stats["n_checks"], stats["val_nll_after"] <= stats["val_nll_before"]
    (2, 2, True)
    """
    if X_val is None and config.validation_fraction > 0:
        # Too few rows to hold any out: a likelihood refinement without a check memorises
        # the training rows (on tens of points it would), so it is left out.
        result.finetune_stats = {
            "n_iter": 0,
            "skipped": "too few samples to hold out validation rows",
        }
        return result
    flow = result.flow
    params = list(flow.parameters())
    lr0 = config.finetune_learning_rate
    if lr0 is None:
        lr0 = 0.5 * config.learning_rate_init
    optimizer = torch.optim.Adam(params, lr=lr0)
    warmup = int(config.finetune_warmup * config.finetune_iter)
    n = X.shape[0]
    batch = min(config.finetune_batch_size or config.batch_size, n)
    new_probes = _fresh_probes(config.probes, generator, X)
    monitor = None if X_val is None else _FlowValidation(X_val, new_probes())
    before = None if monitor is None else monitor.nll(flow)
    if monitor is not None:
        monitor.update(before, params)
    losses, nfe = [], 0
    n_checks = 0 if monitor is None else 1
    use_kinetic = bool(config.kinetic_penalty)  # the energy is not integrated when unused
    start = time.perf_counter()
    bar = _progress(config, config.finetune_iter, "refining all blocks")
    for step in range(config.finetune_iter):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config.finetune_iter, lr0, warmup)
        idx = torch.randint(0, n, (batch,), generator=generator, device=X.device)
        probes = new_probes()
        if config.solver_penalty:
            nll, kinetic, error, nfe = flow_nll_terms(
                flow, X[idx], probes=probes, solver_error=True, kinetic=use_kinetic, fused=True
            )
            loss = nll.mean() + config.solver_penalty * error.mean()
        else:
            nll, kinetic, nfe = flow_nll_terms(
                flow, X[idx], probes=probes, kinetic=use_kinetic, fused=True
            )
            loss = nll.mean()
        if config.kinetic_penalty:
            loss = loss + config.kinetic_penalty * kinetic.mean()
        value = _adam_step(
            optimizer, params, loss,
            f"likelihood refinement loss at step {step + 1}",
            "lower finetune_learning_rate, raise kinetic_penalty or set finetune_iter=0",
        )
        losses.append(value)
        if bar is not None:
            bar.update()
            if step % 20 == 0:
                bar.set_postfix(nll=f"{value:.4f}")
        if monitor is not None and (step + 1) % config.validation_interval == 0:
            n_checks += 1
            if monitor.update(monitor.nll(flow), params) >= config.n_iter_no_change:
                break
    if bar is not None:
        bar.close()
    after = solver_gap = None
    if monitor is not None:
        if len(losses) % config.validation_interval:
            monitor.update(monitor.nll(flow), params)  # the last steps were not checked yet
            n_checks += 1
        monitor.restore(params)
        after = monitor.best
        solver_gap = monitor.solver_gap(flow)
        limit = config.max_scoring_steps
        while abs(solver_gap) > SOLVER_GAP_WARN and limit and 2 * flow.n_steps <= limit:
            # The kept weights were chosen by the likelihood with twice the steps: score
            # with those, and check them against twice as many again.
            flow.n_steps *= 2
            solver_gap = monitor.solver_gap(flow)
        if abs(solver_gap) > SOLVER_GAP_WARN:
            warnings.warn(
                f"after the likelihood refinement the held-out log-likelihood with "
                f"{flow.n_steps} solver steps per block differs from the one with twice the "
                f"steps by {-solver_gap:+.3f} nats per sample, so scores misstate the flow's "
                "density by about that much; raise n_ode_steps or solver_penalty, or lower "
                "finetune_learning_rate",
                SolverAccuracyWarning,
                stacklevel=user_stacklevel(),
            )
    result.finetune_stats = {
        "n_iter": len(losses),
        "learning_rate": float(lr0),
        "batch_size": int(batch),
        "solver_penalty": float(config.solver_penalty),
        "warmup_steps": warmup,
        "time_s": float(time.perf_counter() - start),
        "nfe_per_step": int(nfe),
        "val_nll_before": before,
        "val_nll_after": after,
        "solver_gap": solver_gap,
        "scoring_steps": int(flow.n_steps),
        "n_checks": n_checks,
        "loss_curve": losses,
    }
    return result


class _BestWeights:
    """Remembers the weights with the lowest held-out loss seen so far."""

    def __init__(self):
        self.best = math.inf
        self.bad = 0
        self.best_weights = None

    def update(self, value, params):
        """Record a check; returns the number of checks since the last improvement.

        After an infinite best (a check whose statistic was not finite), any lower value is
        an improvement (``inf - 1e-4 * inf`` is NaN, below which nothing lies).
        """
        if (
            self.best_weights is None
            or (math.isinf(self.best) and value < self.best)
            or value < self.best - 1e-4 * max(1.0, abs(self.best))
        ):
            self.best, self.bad = value, 0
            self.best_weights = [p.detach().clone() for p in params]
        else:
            self.bad += 1
        return self.bad

    def restore(self, params):
        with torch.no_grad():
            for p, w in zip(params, self.best_weights):
                p.copy_(w)


def _fresh_probes(probes, generator, X):
    """A function drawing new Hutchinson probes like ``probes`` (``None``: exact trace) on
    ``X``'s device and dtype from ``generator``.

    Training must not see one fixed set of probes: with ``P = mean_k e_k e_k^T != I`` it
    would fit ``tr(J P)`` instead of ``tr J`` and learn fields whose estimated divergence is
    far from the true one (reported likelihoods of hundreds of nats too high). The fixed
    probes of the model are kept for scoring, and the held-out checks draw their own.
    """
    if probes is None:
        return lambda: None
    n_probes, dim = probes.shape
    return lambda: rademacher_probes(
        n_probes, dim, generator=generator, device=X.device, dtype=X.dtype
    )


class _FlowValidation(_BestWeights):
    """Held-out NLL of the whole flow, with twice the solver steps; remembers the best weights."""

    def __init__(self, X_val, probes):
        super().__init__()
        self.X_val = X_val[:VALIDATION_ROWS]
        self.probes = probes

    @torch.no_grad()
    def row_nll(self, flow, fine=True):
        """Held-out NLL per row, with twice the solver steps (``fine=False``: the training
        solver)."""
        coarse = flow.n_steps
        try:
            flow.n_steps = 2 * coarse if fine else coarse
            return -flow.log_prob(self.X_val, probes=self.probes)
        finally:
            flow.n_steps = coarse

    def nll(self, flow, fine=True):
        """Held-out NLL (see :meth:`row_nll`) by :func:`held_out_statistic`."""
        return held_out_statistic(self.row_nll(flow, fine))

    def solver_gap(self, flow):
        """Trimmed mean over the held-out rows of (NLL with the training solver - NLL with
        twice the steps); see :func:`_trimmed_mean`."""
        gap = self.row_nll(flow, fine=False) - self.row_nll(flow, fine=True)
        gap = gap[torch.isfinite(gap)]
        return _trimmed_mean(gap) if gap.numel() else math.inf


# Fraction of the rows left out at each end by :func:`_trimmed_mean`.
SOLVER_GAP_TRIM = 0.01


def _trimmed_mean(values, trim=SOLVER_GAP_TRIM):
    """Mean of ``values`` without the ``ceil(trim * n)`` smallest and largest (as a float).

    The solver gap's statistic. A few far outliers among the held-out rows have solver
    errors of thousands of nats that would decide a plain mean; the median, which ignores
    them, also ignores a refined flow whose coarse solver errs by a tenth of a nat or more on
    one row in seven, in both directions but more often flattering, while the typical row is
    exact (seen on an 8-dim mixture against 32 steps per block: flattery of 0.003 nats by
    the median, 0.041 by the mean, 0.036 by the 1 %-trimmed mean). Cutting 1 % at each end
    keeps the second and drops the first.
    """
    values = torch.sort(values.reshape(-1)).values
    n = values.numel()
    k = min(math.ceil(trim * n), (n - 1) // 2)
    return float(values[k:n - k].mean())


def held_out_statistic(rows):
    """The value a held-out check compares: the per-row values ``rows`` (NLL or a block's
    objective) averaged without the 1 % most extreme at each end (:func:`_trimmed_mean`,
    at least one row at each end from three rows on), NaN rows counted as ``+inf``;
    ``inf`` when that is not finite.

    A row far from the data has an NLL that grows like ``|z|^2 / 2``: one such row among
    the held-out rows (an outlier in the training data, which the robust standardisation
    is meant to tolerate) decided the plain mean, so that checks saw a flow that fits the
    bulk better as worse, blocks stopped early and the refinement kept its first weights.
    """
    rows = rows.reshape(-1)
    rows = torch.where(torch.isnan(rows), torch.full_like(rows, math.inf), rows)
    value = _trimmed_mean(rows) if rows.numel() else math.inf
    return value if math.isfinite(value) else math.inf


def _append_block(result, block, current, losses, start, config, k, kind, h, n_checks=0):
    """Push the training data through a trained block, add the block and its statistics.

    Returns the pushed data; a push that produced non-finite values raises
    :class:`NonFiniteLossError` naming the block.
    """
    pushed, nfe = _push_all(block, current, config)
    if not torch.isfinite(pushed).all():
        raise NonFiniteLossError(
            f"block {k + 1}: pushing the training data produced non-finite values; "
            "lower learning_rate_init or raise n_ode_steps"
        )
    result.flow.append(block)
    result.loss_curve.extend(losses)
    result.block_stats.append(
        _block_stats(
            k, kind, h, losses, time.perf_counter() - start, nfe, current, pushed, n_checks
        )
    )
    return pushed


def _block_stats(k, kind, h, losses, elapsed, nfe, before, after, n_checks=0):
    tail = losses[-max(1, len(losses) // 10):]
    moved = ((after - before) ** 2).sum(1).mean() / (after**2).sum(1).mean().clamp_min(1e-300)
    latent_nll = 0.5 * (after**2).sum(1).mean() + 0.5 * after.shape[1] * math.log(2 * math.pi)
    return {
        "block": k + 1,
        "kind": kind,
        "step_size": h,
        "n_iter": len(losses),
        "loss": float(sum(tail) / len(tail)),
        "time_s": float(elapsed),
        "nfe_push": int(nfe),
        "displacement": float(moved),
        "latent_nll": float(latent_nll),
        "n_checks": int(n_checks),
    }


def _validation_split(X, config, generator):
    """Hold out ``validation_fraction`` of the rows for early stopping (at least 10 rows).

    Returns ``(X_train, X_val)``; ``X_val`` is None when early stopping is off or the data
    are too few to spare a validation set.
    """
    n_val = int(config.validation_fraction * X.shape[0])
    if config.validation_fraction <= 0 or n_val < 10 or X.shape[0] - n_val < 2:
        return X, None
    order = torch.randperm(X.shape[0], generator=generator, device=X.device)
    return X[order[n_val:]], X[order[:n_val]]


def smooth_rows(X, noise_scale, min_rows, generator):
    """Rows of ``X`` repeated and jittered by ``N(0, noise_scale^2 I)``: a sample of the data
    convolved with a Gaussian kernel (the Gaussian kernel density estimate of ``X``).

    ``X`` is repeated ``ceil(min_rows / n)`` times (at least once) so that small data sets
    give the flow a sample of their smoothed density rather than a few jittered points.

    Parameters
    ----------
    X : torch.Tensor of shape (n, dim)
    noise_scale : float
        Standard deviation of the noise, in the units of ``X``.
    min_rows : int
        The result holds at least this many rows.
    generator : torch.Generator
        On ``X``'s device; draws the noise.

    Returns
    -------
    rows : torch.Tensor of shape (copies * n, dim)
        ``X`` stacked ``copies = max(1, ceil(min_rows / n))`` times, plus the noise; ``X``'s
        dtype and device.

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import smooth_rows
    >>> X = torch.zeros(10, 2)
    >>> Y = smooth_rows(X, 0.5, 100, torch.Generator().manual_seed(0))
    >>> Y.shape
    torch.Size([100, 2])
    """
    if X.shape[0] == 0:
        raise ValueError("smooth_rows needs at least one row to smooth, got none")
    copies = max(1, math.ceil(min_rows / X.shape[0]))
    rows = X.repeat(copies, 1)
    noise = torch.randn(rows.shape, generator=generator, device=X.device, dtype=X.dtype)
    return rows + noise_scale * noise


def _smoothed_split(X, config, generator):
    """The validation split, then both parts smoothed when ``config.noise_scale`` is set;
    the held-out checks use the first :data:`VALIDATION_ROWS` validation rows, so only those
    are kept (and pushed through the blocks)."""
    X, X_val = _validation_split(X, config, generator)
    if config.noise_scale > 0:
        X = smooth_rows(X, config.noise_scale, config.noise_rows, generator)
        if X_val is not None:
            X_val = smooth_rows(X_val, config.noise_scale, VALIDATION_ROWS, generator)
    return X, None if X_val is None else X_val[:VALIDATION_ROWS]


class _EarlyStopping(_BestWeights):
    """Held-out negative log-likelihood of the model "blocks so far, then N(0, I)".

    Every block should bring the data closer to N(0, I), so this likelihood should improve
    while the block trains; training of the block stops once it has not improved for
    ``n_iter_no_change`` consecutive checks (one every ``validation_interval`` steps), and
    the block keeps its best weights. On small data sets a velocity field fitted for too
    long grows sharp around the training points and its likelihood elsewhere collapses,
    which the flow-matching loss alone does not show.
    """

    def __init__(self, X_val, config):
        super().__init__()
        self.X_val = X_val[:VALIDATION_ROWS]
        self.n_steps, self.solver = config.n_ode_steps, config.ode_solver
        self.patience = config.n_iter_no_change

    @torch.no_grad()
    def should_stop(self, velocity, weights):
        """Check the held-out likelihood of ``velocity`` (whose parameters are ``weights``)."""
        y, logdet, _ = FlowBlock(velocity).push(
            self.X_val, logdet=True, n_steps=self.n_steps, solver=self.solver
        )
        nll = held_out_statistic(0.5 * (y**2).sum(1) - logdet)
        return self.update(nll, weights) >= self.patience


def _adam_step(optimizer, params, loss, where, advice):
    """One clipped optimisation step on ``loss``; returns its value.

    Raises :class:`NonFiniteLossError` naming ``where`` and what to try (``advice``) when
    the loss is NaN or infinite, before the weights are touched.
    """
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(f"the {where} became non-finite; {advice}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 10.0)
    optimizer.step()
    return value


def _training_loss_where(k, step):
    """``where`` and ``advice`` of :func:`_adam_step` for block-wise training."""
    return (
        f"training loss at block {k + 1}, step {step + 1}",
        "lower learning_rate_init or check the data for extreme values",
    )


def _swap(params, values):
    """Exchange the data of ``params`` and ``values`` in place."""
    with torch.no_grad():
        for p, v in zip(params, values):
            tmp = p.detach().clone()
            p.copy_(v)
            v.copy_(tmp)


class _WeightAverage:
    """Exponential moving average of a block's weights (``None`` inside when ``decay`` is 0).

    The average warms up (rate ``(1 + step) / (10 + step)`` until it reaches ``decay``), so
    early steps are not dragged back to the initial weights.
    """

    def __init__(self, params, decay):
        self.params, self.decay = params, decay
        self.values = [p.detach().clone() for p in params] if decay else None

    def update(self, step):
        if self.values is not None:
            rate = min(self.decay, (1.0 + step) / (10.0 + step))
            with torch.no_grad():
                torch._foreach_lerp_(self.values, [p.detach() for p in self.params], 1.0 - rate)

    def judge(self, check):
        """``check()`` run with the averaged weights in place: the weights that would be kept."""
        if self.values is None:
            return check()
        _swap(self.params, self.values)
        try:
            return check()
        finally:
            _swap(self.params, self.values)

    def keep(self, monitor):
        """Set the weights to the best held-out ones of ``monitor``, else to the average."""
        final = self.values
        if monitor is not None and monitor.best_weights is not None:
            final = monitor.best_weights
        if final is not None:
            with torch.no_grad():
                for p, w in zip(self.params, final):
                    p.copy_(w)


def _train_fm_block(velocity, X, h, config, generator, k, X_val=None):
    """Flow matching for one block; ``h`` is the OU time (``None`` for a free block)."""
    optimizer = torch.optim.Adam(velocity.parameters(), lr=config.learning_rate_init)
    n, dim = X.shape
    batch = min(config.batch_size, n)
    losses = []
    bar = _progress(config, config.max_iter, f"block {k + 1}/{config.n_blocks}")
    if h is not None:
        decay, spread = math.exp(-h), math.sqrt(1.0 - math.exp(-2.0 * h))
    params = list(velocity.parameters())
    average = _WeightAverage(params, config.ema_decay)
    stopper = None if X_val is None else _EarlyStopping(X_val, config)
    n_checks = 0
    for step in range(config.max_iter):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config.max_iter, config.learning_rate_init)
        idx = torch.randint(0, n, (batch,), generator=generator, device=X.device)
        x0 = X[idx]
        eps = torch.randn(batch, dim, generator=generator, device=X.device, dtype=X.dtype)
        if h is not None:
            x1 = decay * x0 + spread * eps
        elif config.free_coupling == "ot":
            x1 = eps[_ot_pairing(x0, eps)]
        else:
            x1 = eps
        t = sample_times(config.time_sampling, batch, generator, device=X.device, dtype=X.dtype)
        xt, target = _interpolate(x0, x1, t, config.interpolant)
        loss = ((velocity(xt, t) - target) ** 2).mean()
        value = _adam_step(optimizer, params, loss, *_training_loss_where(k, step))
        average.update(step)
        losses.append(value)
        if stopper is not None and (step + 1) % config.validation_interval == 0:
            n_checks += 1
            if average.judge(lambda: stopper.should_stop(velocity, params)):
                break
        if bar is not None:
            bar.update()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
    if bar is not None:
        bar.close()
    if stopper is not None and len(losses) % config.validation_interval:
        average.judge(lambda: stopper.should_stop(velocity, params))  # the last steps too
        n_checks += 1
    average.keep(stopper)
    return losses, n_checks


def _ot_pairing(x0, x1):
    """Minibatch optimal transport: the permutation of ``x1`` minimising ``sum |x0 - x1|^2``."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x0.detach().double(), x1.detach().double()).square_()
    _, cols = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(cols, device=x1.device)
