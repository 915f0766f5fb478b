"""What the flow estimators share: parameters, validation, training, scoring, pickling."""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import re
import warnings
import weakref

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .._warnings import user_stacklevel
from ..flows import Flow, TrainingConfig, rademacher_probes, train_flow
from ._device import resolve_device

__all__ = ["BaseFlowEstimator"]

TRACE_ESTIMATORS = ("auto", "exact", "hutchinson")
# Above this dimension "auto" uses Hutchinson for velocity networks whose exact trace costs
# d times a forward pass (three or more hidden layers). Networks with one or two hidden
# layers have an analytic trace that costs about one forward pass whatever d is, so "auto"
# keeps the exact trace for them.
EXACT_TRACE_MAX_DIM = 64
# Rows per solve on a GPU. A solve is about 1,500 small kernels whatever its rows, so a GPU
# needs tens of thousands of rows per chunk to be busy (the working buffers take about
# 5 KB a row: 160 MB); benchmarks/gpu_check.py measures the rates at 4,096 to 131,072.
_SCORE_CHUNK = 32768
# fitted flow -> (key, its copy in another dtype): a cache kept off the estimators, whose
# non-fit methods must leave their __dict__ as it was (scikit-learn's rule); an entry goes
# with its flow
_CONVERTED_FLOWS = weakref.WeakKeyDictionary()


def _score_chunk(device):
    """Rows per solve when scoring, pushing or sampling.

    On the CPU about 1,024 rows per torch thread: smaller chunks keep each layer's values
    in cache (one thread scored 7,200 rows/s at 1,024 rows against 5,500 at 4,096, float64,
    d = 2), while intra-op threads need larger ones (two threads: best at 2,048-4,096).
    """
    if torch.device(device).type != "cpu":
        return _SCORE_CHUNK
    return min(8192, 1024 * max(1, torch.get_num_threads()))

_FLOW_PARAMS_DOC = """
    method : {"lfm", "fm", "jko"}, default="lfm"
        Training method. ``"lfm"``: Local Flow Matching, ``n_blocks - 1`` blocks that each
        follow a short Ornstein-Uhlenbeck step toward N(0, I), then one free flow-matching
        block. ``"fm"``: a single flow-matching block from the data to N(0, I).
        ``"jko"``: JKO-iFlow, blocks that each take one Wasserstein proximal step of the
        KL divergence to N(0, I).
    n_blocks : int, default=4
        Number of flow blocks (ignored by ``"fm"``, which uses one; an upper bound for
        ``"jko"`` when ``tol`` is set).
    hidden_layer_sizes : tuple of int, default=(64, 64)
        Widths of the hidden layers of each block's velocity network.
    activation : {"silu", "softplus", "tanh"}, default="silu"
        Smooth activation of the velocity networks.
    max_iter : int or "auto", default="auto"
        Optimisation steps (Adam) per block. ``"auto"``: 1000 for ``"lfm"`` and ``"fm"``,
        whose steps evaluate the velocity network once, and 500 for ``"jko"``, whose steps
        solve the block's ODE (``4 * n_ode_steps`` network evaluations with
        backpropagation); the likelihood refinement (``finetune_iter``) makes up the
        difference (see ``benchmarks/RESULTS.md``, "Convergence").
    batch_size : int, default=512
        Minibatch size (capped at the number of training samples).
    learning_rate_init : float, default=2e-3
        Initial learning rate of each block; it decays by a cosine schedule to 1/20 of it.
    ode_solver : {"rk4", "midpoint", "euler"}, default="rk4"
        Fixed-step solver for log-likelihoods, transforms and sampling. Fixed steps make a
        sample's score independent of the other samples in its batch. The lower-order
        solvers' scores are densities only approximately: with 4 steps per block a 2-D
        fit's ``exp(score_samples)`` integrates to about 1.06 with ``"euler"`` and 1.003
        with ``"midpoint"``, against 1.0002 with ``"rk4"``.
    n_ode_steps : int, default=4
        Solver steps per block. Function evaluations per block are
        ``n_ode_steps * {rk4: 4, midpoint: 2, euler: 1}``. ``FlowDensityEstimator``
        scores with more when the refined flow needs them (``n_ode_steps_``).
    step_size : float, default=0.3
        Ornstein-Uhlenbeck time ``h_1`` of the first block (``"lfm"``, ``"jko"``). On data
        with very narrow modes a smaller first step with a larger ratio (for example 0.05
        and 1.8 with 8 blocks) spreads the transport over more blocks and fits the density
        more closely, at a higher cost.
    step_size_ratio : float, default=1.3
        Geometric growth of the step sizes: ``h_k = step_size * step_size_ratio**(k-1)``.
        With the defaults the three OU blocks cover a total time of about 1.2 before the
        free block.
    interpolant : {"linear", "trig"}, default="linear"
        Flow-matching interpolant (``"lfm"``, ``"fm"``).
    time_sampling : "uniform" or tuple ("beta", a, b), default="uniform"
        Distribution of the flow-matching times t in [0, 1] (``"lfm"``, ``"fm"``):
        uniform, or Beta(a, b) to spend more of the training where the paths are hard,
        e.g. ``("beta", 1.0, 2.0)`` near the data end of each block.
    trace_estimator : {"auto", "exact", "hutchinson"}, default="auto"
        Divergence used in log-likelihoods. ``"exact"`` is deterministic; for velocity
        networks with one or two hidden layers it costs about one extra forward pass
        whatever the dimension, so ``"auto"`` keeps it; deeper networks switch to
        ``"hutchinson"`` above 64 features. For those deeper networks the exact trace
        costs about one backward pass per feature: at 64 features a refinement step takes
        about ten times as long as with Hutchinson (and several GB), so pass
        ``"hutchinson"`` there when training time matters more than exact scores. The
        probes that score are drawn once from
        ``random_state`` and shared by all samples, so scores stay deterministic and
        batch-independent; training (the likelihood refinement, JKO blocks) draws new
        probes at every step, so that it cannot fit the scoring probes' errors. Hutchinson
        scores are unbiased estimates of the log-density over random probes, but the
        density scored with a few fixed probes need not integrate to 1 (a 2-D fit with 1
        or 3 probes: 1.44 and 1.07), which is why ``"auto"`` keeps the exact trace
        wherever it is affordable.
    n_probes : int, default=8
        Rademacher probes averaged by the Hutchinson estimator.
    tol : float or None, default=None
        ``"jko"`` only: stop adding blocks once a block moves the data by less than
        ``tol`` (``E|T(x) - x|^2 / E|T(x)|^2``).
    validation_fraction : float, default=0.1
        Fraction of the training data held out for early stopping (0 turns it off; it is
        also off when it would hold fewer than 10 samples). Every 50 steps the held-out
        negative log-likelihood of the model "blocks so far, then N(0, I)" (``"lfm"``,
        ``"fm"``) or the block's own JKO objective (``"jko"``) is checked; a block stops
        after ``n_iter_no_change`` checks without improvement and keeps its best weights.
        Checks average the held-out rows without the 1 % most extreme at each end, so that
        a far outlier among them (whose NLL grows like its squared distance) does not
        decide them.
        This matters most on small data sets, where a long fit makes the velocity field
        sharp around the training points.
    n_iter_no_change : int, default=5
        Checks without improvement before a block (or the refinement) stops (see
        ``validation_fraction``).
    finetune_iter : int, default=@FINETUNE_ITER@
        Steps of maximum-likelihood refinement of all blocks together after block-wise
        training (0 turns it off). Each block is trained for its own local task; the
        refinement closes the remaining gap of the composed flow to the data's density.
        ``FlowDensityEstimator`` takes 500 steps by default, ``FlowAnomalyDetector`` 300
        (more steps sharpen the density, which helps density estimates more than the
        ranking of outliers, and cost fit time: 0.05-0.2 s per step on one CPU core,
        depending on the processor; more steps than the default can also overfit, see
        ``benchmarks/RESULTS.md``).
        It is early-stopped on the held-out rows, judged with the ODEs solved twice as
        finely as in training, and keeps the weights that are best by that finer
        likelihood; how far the scores (``n_ode_steps``) still are from it is
        ``finetune_stats_["solver_gap"]``. It costs about
        ``4 * n_blocks * n_ode_steps`` network evaluations with gradients per step. It is
        skipped (``finetune_stats_["skipped"]`` says why) when ``validation_fraction``
        leaves fewer than 10 held-out rows: unchecked, it would memorise a small training
        set (set ``validation_fraction=0`` to run it anyway, unchecked).
    finetune_learning_rate : float or None, default=@FINETUNE_LR@
        Peak Adam learning rate of the refinement, decayed by a cosine schedule to 1/20
        of it (None: half of ``learning_rate_init``). ``FlowDensityEstimator`` takes 8e-3,
        reached by a linear rise over the first 10 % of the steps (``finetune_warmup``),
        which its ``solver_penalty`` makes safe: without the penalty, rates above about 2e-3
        let the refinement profit from the solver's discretisation error (the scores then
        no longer integrate to one). With 1,024 rows per step 8e-3 fits better than 5e-3 in
        the same time (five seeds: the held-out gap to the true density of an 8-dim mixture
        0.076 against 0.083 nats; held-out log-likelihood of MIT-BIH beat features +0.9 nats);
        1.2e-2 learnt to exploit the solver even at ``solver_penalty=30``
        (``benchmarks/RESULTS.md``, "Density"). ``FlowAnomalyDetector`` takes 1e-3 from the
        first step, as its outlier benchmarks were run.
    finetune_warmup : float in [0, 1), default=@FINETUNE_WARMUP@
        Fraction of the refinement's steps over which its learning rate rises linearly
        (0: the full rate from the first step). The rise multiplies the cosine schedule,
        which decays over all the steps, so the rate peaks below ``finetune_learning_rate``:
        at 98 % of it at the end of a rise over 10 % of the steps, at 54 % (before the end)
        for a rise over half of them. A high rate
        from the first step can undo the block-wise flow before the refinement settles:
        on JKO-iFlow blocks at 5e-3 every held-out check got worse and the refinement
        stopped early, while rising over 10 % of the steps it ran to the end
        (``benchmarks/RESULTS.md``, "Density"). The number of rising steps is
        ``finetune_stats_["warmup_steps"]``.
    finetune_batch_size : int or None, default=@FINETUNE_BATCH_SIZE@
        Rows per step of the refinement (None: ``batch_size``). ``FlowDensityEstimator``
        refines with 1,024 rows per step, twice its ``batch_size``: at the learning rate of
        5e-3 and ``solver_penalty=30`` of the time, over five seeds that took the held-out
        gap to the true density, with the ODEs solved finely, about a fifth lower on eight
        Gaussians and on an 8-dim Gaussian mixture than 512 rows did, for about 1.55 times
        the fit time (``benchmarks/RESULTS.md``, "Density"). Smaller batches with more
        steps do worse: they overfit, and they teach the fields to exploit the solver's
        error (see ``solver_gap``). ``FlowAnomalyDetector`` refines with its
        ``batch_size``, as its outlier benchmarks were run.
    smoothing : None, "scott", "silverman", "cv" or float, default=@SMOOTHING@
        Gaussian smoothing of the training data: the flow is fitted to the data convolved
        with a Gaussian kernel whose standard deviation is ``b`` times each feature's robust
        scale (``scale_``: the interquartile range / 1.349, or the standard deviation
        where that is zero), that is to the Gaussian kernel density estimate of the
        training data with bandwidth ``b`` on robustly standardised features, sampled:
        rows repeated to at least 4,096 and jittered (the held-out rows too). On skewed or
        heavy-tailed features the robust scale keeps the kernel as narrow as the bulk of
        the data, where a standard deviation inflated by the tail would blur it.
        ``"scott"``: ``b = n**(-1 / (d + 4))``; ``"silverman"``:
        ``b = (n * (d + 2) / 4)**(-1 / (d + 4))``, with ``n`` the training rows and ``d``
        the features; ``"cv"``: the ``b`` among 1/4 to 2 times Scott's (13 candidates a
        factor ``2**(1/4)`` apart) that maximises the leave-one-out log-likelihood of that
        kernel density estimate of the training rows (maximum-likelihood cross-validation,
        on a fixed subset of at most 2,000 rows, see
        :func:`sigflow.estimators.cv_bandwidth`); it narrows the kernel on clustered data
        that Scott's rule, made for one Gaussian bump, oversmooths; a float gives ``b``;
        None (or 0) fits the data as they are.
        Smoothing keeps a flow from putting sharp peaks on the few or discrete values it
        was shown, which is what ranks outliers well on small or integer-valued data; the
        price is a density wider than the data's by ``b``, so ``score_samples`` is then
        the log-density of the smoothed model. The resolved bandwidth is ``smoothing_``.
    kinetic_penalty : float, default=@KINETIC@
        Weight of the kinetic energy ``sum_k E int |v_k|^2 dt`` added to the refinement
        loss; it keeps the trajectories short and straight. ``FlowDensityEstimator``
        takes 0: ``solver_penalty`` keeps the solver accurate without holding back the
        fit. ``FlowAnomalyDetector`` takes 0.002, with which its benchmarks were run.
    solver_penalty : float, default=@SOLVER_PENALTY@
        Weight of the solver's error indicator added to the refinement loss: for each
        solver step, the squared difference between the solver's quadrature of the
        divergence along a sample's path (RK4: Simpson's rule) and a lower-order rule on
        the same evaluations (the trapezoid rule), summed over steps and blocks. It costs
        no extra network evaluation. Without it, maximum likelihood through a fixed-step
        solver learns to curve the fields until the solver's error flatters the
        likelihood, and the scores integrate to more than one; with it the scores with
        ``n_ode_steps`` agree with finely solved ones (``finetune_stats_["solver_gap"]``
        near 0), which in turn lets the refinement run at a higher learning rate.
        ``FlowDensityEstimator`` takes 60. The weight has to grow with the refinement's
        pace: with 1,024 rows per step (``finetune_batch_size``) a weight of 10 no longer
        held a JKO-iFlow fit of an 8-dim mixture to its solver at a learning rate of 5e-3
        (``solver_gap`` -0.058 nats, a negative gap to the true density), where 30 did
        (-0.004); at 8e-3, 30 let the same fit flatter itself by 0.024 nats on new data and
        60 holds it to 0.004, while the finely solved likelihood of LFM fits is the same
        with 30 or 60 (``benchmarks/RESULTS.md``, "Density"). On small data with discrete
        features no weight may hold it (1,159 rows of ADBench's cardio: ``solver_gap``
        about -0.2 nats at 60 and at 120); ``n_ode_steps=8`` did (-0.002), and
        ``FlowDensityEstimator`` then scores with more steps itself (``n_ode_steps_``).
        ``FlowAnomalyDetector`` takes 0, with which its benchmarks were run. It needs
        ``ode_solver="rk4"`` (four evaluations per step); with the other solvers it has
        no effect.
    inference_dtype : {"float64", "float32"}, default="float64"
        Floating-point precision of scoring, sampling and transforms (training is always
        float32). ``"float64"`` makes a row's score independent of the other rows of its
        batch to about 1e-15; ``"float32"`` scores about 2 times faster on CPUs, at a
        relative error of about 1e-6 (scores still returned as float64).
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU. The resolved device is
        ``device_``.
    random_state : int, RandomState instance or None, default=None
        Seeds the network initialisation, minibatches, noise and probes (through a local
        ``torch.Generator``; the global RNGs of numpy and torch are not touched when an
        int is given). The same value gives identical scores.
    verbose : int, default=0
        Show a progress bar per block when positive."""


def _flow_params_doc(**defaults):
    """The shared parameter text with one estimator's defaults in its ``@NAME@`` slots."""
    text = _FLOW_PARAMS_DOC
    for name, value in defaults.items():
        text = text.replace(f"@{name.upper()}@", value)
    unfilled = re.findall("@[A-Z_]+@", text)
    if unfilled:
        raise ValueError(f"defaults missing from the parameter text: {unfilled}")
    return text


# Bandwidths tried by ``smoothing="cv"``: multiples 2**(k/4) of Scott's, from 1/4 to 2 times it.
CV_BANDWIDTH_MULTIPLES = 2.0 ** (np.arange(-8, 5) / 4.0)
# ``smoothing="cv"`` scores the leave-one-out likelihood on at most this many rows.
CV_MAX_ROWS = 2000


def cv_bandwidth(Z, multiples=CV_BANDWIDTH_MULTIPLES, max_rows=CV_MAX_ROWS):
    """Gaussian kernel bandwidth of ``Z`` by leave-one-out likelihood cross-validation.

    The classical maximum-likelihood cross-validation of a kernel density estimate: for each
    candidate bandwidth ``h``, the mean over the rows of the log-density that the Gaussian
    kernel density estimate of the *other* rows gives them; the best ``h`` wins. The
    candidates are ``multiples`` of Scott's rule ``m**(-1 / (d + 4))``, with ``m =
    min(n, max_rows)`` the rows scored: above ``max_rows`` rows a fixed random subset
    (seed 0) is scored, and the winning multiple is applied to Scott's rule for all ``n``
    rows, so that the bandwidth shrinks with ``n`` as the rule does. Features that are
    constant on the scored rows are left out of the likelihood (they would favour the
    smallest bandwidth whatever the data); with no varying feature the result is Scott's
    rule.

    Like any likelihood cross-validation it narrows the kernel on rows that repeat exactly
    (a repeated row is explained perfectly by its twin); the smallest multiple bounds that.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Standardised data (at least 2 rows).
    multiples : array-like of float
        Candidate multiples of Scott's bandwidth; the smallest and largest bound the result.
    max_rows : int
        Rows scored at most.

    Returns
    -------
    bandwidth : float
        ``multiple * n**(-1 / (d + 4))`` for the best multiple.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> clusters = rng.normal(scale=0.05, size=(500, 2)) + rng.choice([-1.0, 1.0], size=(500, 1))
    >>> wide = rng.normal(size=(500, 2))
    >>> bool(cv_bandwidth(clusters) < cv_bandwidth(wide))
    True
    """
    Z = np.asarray(Z, dtype=np.float64)
    n, d = Z.shape
    if n > max_rows:
        Z = Z[np.random.RandomState(0).choice(n, max_rows, replace=False)]
    multiples = np.asarray(multiples, dtype=np.float64)
    # A feature that is constant on the scored rows says nothing about the width, but each
    # adds -log h to every row's likelihood, which would favour the smallest bandwidth.
    varying = np.ptp(Z, axis=0) > 0
    loo = np.full(len(multiples), -np.inf)
    if varying.any():
        loo = loo_log_likelihood(Z[:, varying], multiples * Z.shape[0] ** (-1.0 / (d + 4)))
        loo = np.where(np.isfinite(loo), loo, -np.inf)
    if np.isneginf(loo).all():  # a single distinct row, or distances out of float range
        best = int(np.argmin(np.abs(np.log(multiples))))  # Scott's rule, or the nearest
    else:
        best = int(np.argmax(loo))
    return float(multiples[best] * n ** (-1.0 / (d + 4)))


def loo_log_likelihood(Z, bandwidths):
    """Mean leave-one-out log-likelihood of Gaussian kernel density estimates of ``Z``.

    For each bandwidth ``h``: ``(1/m) sum_i log( (1/(m-1)) sum_{j != i} N(z_i; z_j, h^2 I) )``.

    Parameters
    ----------
    Z : ndarray of shape (m, d), m >= 2
    bandwidths : array-like of float

    Returns
    -------
    ndarray of shape (len(bandwidths),)

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.estimators import loo_log_likelihood
    >>> # two points 1 apart, h = 1: each is scored by N(1; 0, 1) = -1/2 - log(2 pi)/2
    >>> loo_log_likelihood(np.array([[0.0], [1.0]]), [1.0]).round(4)
    array([-1.4189])
    >>> Z = np.random.default_rng(0).normal(size=(200, 2))
    >>> int(np.argmax(loo_log_likelihood(Z, [0.05, 0.5, 5.0])))
    1
    """
    Z = np.asarray(Z, dtype=np.float64)
    m, d = Z.shape
    out = []
    # Distances out of float range give nan, not a warning; cv_bandwidth then falls back.
    with np.errstate(over="ignore", invalid="ignore"):
        sq = np.einsum("ij,ij->i", Z, Z)
        dist2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T), 0.0)
        np.fill_diagonal(dist2, np.inf)  # leave each row out of its own estimate
        for h in np.asarray(bandwidths, dtype=np.float64):
            logits = -dist2 / (2.0 * h * h)
            top = logits.max(axis=1, keepdims=True)
            log_sum = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
            out.append(
                log_sum.mean() - np.log(m - 1) - d * np.log(h) - 0.5 * d * np.log(2 * np.pi)
            )
    return np.array(out)


#: Training rows farther than this from the median, in robust standard deviations, are
#: refused: float32 (the training precision) overflows on their squares near 1e19.
MAX_STANDARD_UNITS = 1e15


def _robust_location_scale(X):
    """Median and normal-consistent interquartile range of each feature.

    The flow sees ``(X - location) / scale``. Robust statistics keep the bulk of the data at
    unit scale even when the training data hold outliers (anomaly detection) or heavy tails;
    the log-Jacobian of the map is added to the scores, so any affine map gives the same
    density in the user's units. Features with a zero interquartile range (mostly discrete
    ones) fall back to the standard deviation, and constant features to 1. Constancy is
    decided by the range, not by the standard deviation: a column of one repeated value
    such as 0.1 has a standard deviation of about 1e-17 from rounding alone, which as a
    scale would add 38 nats to every score and send any other value to about 1e16
    standard units. Features whose spread is too small to divide by (below about 2e-305)
    get scale 1 too; the third value marks them.
    """
    location = np.median(X, axis=0)
    q75, q25 = np.percentile(X, [75, 25], axis=0)
    scale = (q75 - q25) / 1.3489795003921634
    tiny = np.finfo(np.float64).tiny * 1e3
    need = ~(scale > tiny)
    if need.any():
        # the std of the columns scaled by their largest magnitude, scaled back: finite for
        # any finite column (a plain std overflows from about 1e154, and an infinite scale
        # would make every standardised value 0, a fill value included)
        big = np.abs(X[:, need]).max(axis=0)
        big = np.where(big > 0, big, 1.0)
        scale[need] = (X[:, need] / big).std(axis=0) * big
    varies = np.ptp(X, axis=0) > 0
    unscaled = varies & ~(scale > tiny)  # too little spread to divide by: scale 1, as constant
    scale = np.where(varies & (scale > tiny), scale, 1.0)
    return location, scale, unscaled


def _refuse_far_rows(Z, rows=None):
    """A ValueError naming the rows of standardised ``Z`` beyond :data:`MAX_STANDARD_UNITS`
    (``rows``: their indices in the user's data; default: their positions in ``Z``)."""
    with np.errstate(invalid="ignore"):
        far = np.flatnonzero(~(np.abs(Z).max(axis=1) <= MAX_STANDARD_UNITS))
    if far.size:
        far = far if rows is None else np.sort(np.asarray(rows)[far])
        raise ValueError(
            f"{far.size} training row(s) (indices {far[:5].tolist()}"
            f"{' ...' if far.size > 5 else ''}) lie more than {MAX_STANDARD_UNITS:.0e} "
            "robust standard deviations (interquartile range / 1.349) from the median "
            "of a feature; the flow trains in float32, where their squares overflow. "
            "They look like fill values or corrupt samples: remove them before fitting"
        )


class BaseFlowEstimator(BaseEstimator):
    """Base class of the flow estimators; not for direct use."""

    _min_samples = 2
    # The warm-up this class refined with while it was a class setting, before
    # ``finetune_warmup`` became a parameter (see ``_legacy_warmup``).
    _legacy_finetune_warmup = 0.1
    # Most solver steps per block, as a multiple of ``n_ode_steps``, that the refinement may
    # give the scores when ``n_ode_steps`` misstates the refined flow's density (None: never
    # more than ``n_ode_steps``; see ``TrainingConfig.max_scoring_steps``).
    _max_scoring_steps_factor = None

    def __init__(
        self,
        *,
        method="lfm",
        n_blocks=4,
        hidden_layer_sizes=(64, 64),
        activation="silu",
        max_iter="auto",
        batch_size=512,
        learning_rate_init=2e-3,
        ode_solver="rk4",
        n_ode_steps=4,
        step_size=0.3,
        step_size_ratio=1.3,
        interpolant="linear",
        time_sampling="uniform",
        trace_estimator="auto",
        n_probes=8,
        tol=None,
        validation_fraction=0.1,
        n_iter_no_change=5,
        finetune_iter=500,
        finetune_learning_rate=8e-3,
        finetune_warmup=0.1,
        finetune_batch_size=1024,
        smoothing=None,
        kinetic_penalty=0.0,
        solver_penalty=60.0,
        inference_dtype="float64",
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.method = method
        self.n_blocks = n_blocks
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.ode_solver = ode_solver
        self.n_ode_steps = n_ode_steps
        self.step_size = step_size
        self.step_size_ratio = step_size_ratio
        self.interpolant = interpolant
        self.time_sampling = time_sampling
        self.trace_estimator = trace_estimator
        self.n_probes = n_probes
        self.tol = tol
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.finetune_iter = finetune_iter
        self.finetune_learning_rate = finetune_learning_rate
        self.finetune_warmup = finetune_warmup
        self.finetune_batch_size = finetune_batch_size
        self.smoothing = smoothing
        self.kinetic_penalty = kinetic_penalty
        self.solver_penalty = solver_penalty
        self.inference_dtype = inference_dtype
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting
    def _training_config(self):
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = (int(hidden),)
        config = TrainingConfig(
            method=self.method,
            n_blocks=self.n_blocks,
            hidden_layer_sizes=(
                tuple(hidden) if isinstance(hidden, (tuple, list, np.ndarray)) else hidden
            ),
            activation=self.activation,
            max_iter=self._max_iter(),
            batch_size=self.batch_size,
            learning_rate_init=self.learning_rate_init,
            ode_solver=self.ode_solver,
            n_ode_steps=self.n_ode_steps,
            step_size=self.step_size,
            step_size_ratio=self.step_size_ratio,
            interpolant=self.interpolant,
            time_sampling=self.time_sampling,
            tol=self.tol,
            validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            finetune_iter=self.finetune_iter,
            finetune_learning_rate=self.finetune_learning_rate,
            finetune_warmup=self.finetune_warmup,
            finetune_batch_size=self.finetune_batch_size,
            kinetic_penalty=self.kinetic_penalty,
            solver_penalty=self.solver_penalty,
            max_scoring_steps=(
                None if self._max_scoring_steps_factor is None
                else self._max_scoring_steps_factor * self.n_ode_steps
            ),
            verbose=self.verbose,
        )
        config.validate()  # n_blocks is checked even where "fm" ignores it
        if self.method == "fm":
            config.n_blocks = 1
        if self.trace_estimator not in TRACE_ESTIMATORS:
            raise ValueError(
                f"trace_estimator must be one of {TRACE_ESTIMATORS}, got {self.trace_estimator!r}"
            )
        if (
            not isinstance(self.n_probes, numbers.Integral)
            or isinstance(self.n_probes, bool)
            or self.n_probes < 1
        ):
            raise ValueError(f"n_probes must be a positive integer, got {self.n_probes!r}")
        return config

    def _max_iter(self):
        """``max_iter`` with ``"auto"`` resolved for the method."""
        if isinstance(self.max_iter, str):
            if self.max_iter != "auto":
                raise ValueError(
                    f"max_iter must be a positive integer or 'auto', got {self.max_iter!r}"
                )
            return 500 if self.method == "jko" else 1000
        return self.max_iter

    def _smoothing_bandwidth(self, Z):
        """The bandwidth ``smoothing`` resolves to for the standardised training rows ``Z``."""
        s = self.smoothing
        n, d = Z.shape
        if s is None:
            return 0.0
        if isinstance(s, str):
            if s == "scott":
                return float(n ** (-1.0 / (d + 4)))
            if s == "silverman":
                return float((n * (d + 2) / 4.0) ** (-1.0 / (d + 4)))
            if s == "cv":
                return cv_bandwidth(Z)
        elif isinstance(s, numbers.Real) and not isinstance(s, bool):
            if math.isfinite(s) and s >= 0:
                return float(s)
        raise ValueError(
            "smoothing must be None, 'scott', 'silverman', 'cv' or a non-negative float, "
            f"got {s!r}"
        )

    @contextlib.contextmanager
    def _keeping_last_fit(self):
        """Run a fit; when it raises (a bad parameter, a non-finite loss, an interrupt), put
        the fitted attributes back as they were before it.

        A fit sets its attributes one after another, so a refit that failed halfway left
        the new standardisation beside the old flow, and the model scored silently wrong
        (a detector flagged all normal data). Now the last good fit stays usable, and an
        estimator that had none stays unfitted.
        """
        def fitted(obj):
            return [k for k in vars(obj) if k.endswith("_") and not k.startswith("_")]

        before = {k: vars(self)[k] for k in fitted(self)}
        try:
            yield
        except BaseException:
            for k in fitted(self):
                delattr(self, k)
            vars(self).update(before)
            raise

    def _validate_training_data(self, X):
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=self._min_samples)
        return X

    def _fit_flow(self, X, rng, rows=None):
        """Standardise ``X``, train the flow and set the fitted attributes. ``rows``: the
        indices of ``X``'s rows in the user's data, for error messages (default: themselves).
        """
        config = self._training_config()
        self._inference_dtype()  # a bad value fails before training, not after
        device = resolve_device(self.device)
        n_features = X.shape[1]
        self.location_, self.scale_, unscaled = _robust_location_scale(X)
        Z = (X - self.location_) / self.scale_
        _refuse_far_rows(Z, rows)
        self._warn_constant_features(
            X, unscaled, "training data" if rows is None else "rows the flow is fitted to "
            "(calibration rows aside)"
        )
        self.smoothing_ = config.noise_scale = self._smoothing_bandwidth(Z)
        trace = self.trace_estimator
        if trace == "auto":
            cheap_exact = len(config.hidden_layer_sizes) <= 2
            trace = "exact" if cheap_exact or n_features <= EXACT_TRACE_MAX_DIM else "hutchinson"
        self.trace_estimator_ = trace
        seeds = rng.randint(0, np.iinfo(np.int32).max, size=2)
        if trace == "hutchinson":
            probe_gen = torch.Generator().manual_seed(int(seeds[1]))
            config.probes = rademacher_probes(self.n_probes, n_features, generator=probe_gen)
        generator = torch.Generator(device=device).manual_seed(int(seeds[0]))
        Xs = torch.as_tensor(Z, dtype=torch.float32, device=device)
        result = train_flow(Xs, config, generator)
        self.flow_ = result.flow.to(dtype=torch.float64)
        self.n_ode_steps_ = self.flow_.n_steps
        self.probes_ = None if config.probes is None else config.probes.to(torch.float64)
        self.loss_curve_ = list(result.loss_curve)
        self.block_stats_ = list(result.block_stats)
        self.finetune_stats_ = result.finetune_stats
        self.n_iter_ = len(self.loss_curve_) + (
            0 if result.finetune_stats is None else result.finetune_stats["n_iter"]
        )
        self.device_ = str(device)
        return self

    def _warn_constant_features(self, X, unscaled, where):
        constant = np.flatnonzero(np.ptp(X, axis=0) == 0) if X.shape[0] > 1 else []
        names = getattr(self, "feature_names_in_", None)
        for columns, what in ((constant, "are constant"),
                              (np.flatnonzero(unscaled), "vary too little to standardise "
                               "(a spread below about 2e-305)")):
            if len(columns):
                which = columns.tolist() if names is None else names[columns].tolist()
                warnings.warn(
                    f"feature(s) {which[:10]}{' ...' if len(which) > 10 else ''} {what} "
                    f"in the {where}; the model measures other values of them in the "
                    "feature's own units (scale 1), so how far off a change scores depends "
                    "on those units",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )

    # ------------------------------------------------------------------ scoring
    def _check_X(self, X):
        check_is_fitted(self, "flow_")
        return validate_data(self, X, dtype=np.float64, reset=False)

    def score_samples(self, X):
        """Log-density of each sample (natural log, in the user's units).

        For the anomaly detector this is the normality score: higher means more normal.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
        """
        return self._log_likelihood(self._check_X(X))

    def _inference_dtype(self):
        dtypes = {"float64": torch.float64, "float32": torch.float32}
        try:
            return dtypes[self.inference_dtype]
        except (KeyError, TypeError):
            raise ValueError(
                f"inference_dtype must be 'float64' or 'float32', got {self.inference_dtype!r}"
            ) from None

    def _inference_flow(self):
        """The fitted flow in ``inference_dtype`` and that dtype (``flow_`` stays float64)."""
        dtype = self._inference_dtype()
        if dtype == torch.float64:
            return self.flow_, dtype
        # Converted once per fitted flow, not per call: a copy per call made float32 slower
        # than float64 on small batches (row-by-row scoring). The key follows the flow's
        # weights (their in-place version counters: a load_state_dict or an optimiser step
        # bumps them), device, steps and solver.
        params = list(self.flow_.parameters())
        key = (dtype, self.flow_.n_steps, self.flow_.solver,
               tuple((p._version, p.device) for p in params))
        cached = _CONVERTED_FLOWS.get(self.flow_)
        if cached is None or cached[0] != key:
            cached = _CONVERTED_FLOWS[self.flow_] = (key, copy.deepcopy(self.flow_).to(dtype))
        return cached[1], dtype

    def _standardised_tensor(self, X, dtype=torch.float64):
        return torch.as_tensor((X - self.location_) / self.scale_, dtype=dtype, device=self.device_)

    def _tensor_chunks(self, X, dtype, standardise=True):
        """Row chunks of ``X`` as tensors on ``device_``, standardised one at a time (so
        scoring holds no full-size copy of the input), sized by :func:`_score_chunk`."""
        step = _score_chunk(self.device_)
        for start in range(0, X.shape[0], step):
            rows = X[start:start + step]
            if standardise:
                yield self._standardised_tensor(rows, dtype)
            else:  # a copy: X may be read-only (a joblib memmap), which torch will not share
                yield torch.tensor(rows, dtype=dtype, device=self.device_)

    def _log_likelihood(self, X, offsets=None):
        """Log-density (natural log) of validated rows ``X`` in the user's units.

        With ``offsets`` (rows in the user's units), the mean over the offsets ``u`` of the
        log-density at ``X + u``.
        """
        flow, dtype = self._inference_flow()
        scores = self._flow_log_likelihood(flow, dtype, X, offsets)
        bad = ~np.isfinite(scores)
        if dtype != torch.float64 and bad.any():
            # Rows beyond float32's range overflow to NaN; in float64 they get their true
            # (very low, possibly -inf) log-density instead of a NaN that ranks anywhere.
            scores[bad] = self._flow_log_likelihood(self.flow_, torch.float64, X[bad], offsets)
        # X is finite, so a NaN is an overflow even in float64 (a row near the largest
        # float, standardised to inf): its density is below anything float64 holds.
        scores[np.isnan(scores)] = -np.inf
        return scores

    def _flow_log_likelihood(self, flow, dtype, X, offsets):
        log_jac = -np.log(self.scale_).sum()
        if offsets is None:
            shifts = [None]
        else:
            shifts = torch.as_tensor(offsets / self.scale_, dtype=dtype, device=self.device_)
        probes = None if self.probes_ is None else self.probes_.to(self.device_, dtype)
        out = []
        workspace = {}  # buffers of the allocation-free solver, reused by every chunk
        with torch.no_grad():
            for chunk in self._tensor_chunks(X, dtype):
                total = sum(
                    flow.log_prob(
                        chunk if u is None else chunk + u, probes=probes, workspace=workspace
                    )
                    for u in shifts
                )
                out.append((total / len(shifts)).cpu().numpy())
        scores = np.concatenate(out).astype(np.float64) if out else np.empty(0)
        return scores + log_jac

    def _push(self, X, inverse=False):
        """Map validated rows between data space and latent space."""
        flow, dtype = self._inference_flow()
        Y = self._flow_push(flow, dtype, X, inverse)
        bad = ~np.isfinite(Y).all(axis=1)
        if dtype != torch.float64 and bad.any():
            # As in scoring: rows beyond float32's range are mapped in float64, not to NaN.
            Y[bad] = self._flow_push(self.flow_, torch.float64, X[bad], inverse)
        return Y

    def _flow_push(self, flow, dtype, X, inverse):
        out = []
        workspace = {}
        with torch.no_grad():
            for chunk in self._tensor_chunks(X, dtype, standardise=not inverse):
                if inverse:
                    out.append(flow.inverse(chunk, workspace=workspace).cpu().numpy())
                else:
                    out.append(flow(chunk, workspace=workspace)[0].cpu().numpy())
        Y = np.concatenate(out).astype(np.float64) if out else np.empty((0, self.n_features_in_))
        return Y * self.scale_ + self.location_ if inverse else Y

    def _sample(self, n_samples, random_state):
        check_is_fitted(self, "flow_")
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        rng = check_random_state(self.random_state if random_state is None else random_state)
        generator = torch.Generator(device=self.device_).manual_seed(
            int(rng.randint(0, np.iinfo(np.int32).max))
        )
        flow, dtype = self._inference_flow()
        with torch.no_grad():
            # Drawn in float64 whatever the precision, so that both give the same latents.
            Z = torch.randn(
                int(n_samples),
                self.n_features_in_,
                generator=generator,
                dtype=torch.float64,
                device=self.device_,
            ).to(dtype)
            chunks = torch.split(Z, _score_chunk(self.device_))
            X = torch.cat([flow.inverse(c) for c in chunks])
        return X.cpu().numpy().astype(np.float64) * self.scale_ + self.location_

    # ------------------------------------------------------------------ diagnostics
    def convergence_path(self, X, log_density=None, *, n_projections=128):
        """Per-block convergence diagnostics: how close ``X`` pushed through k blocks is to N(0, I).

        Row ``k`` describes the model made of the first ``k`` blocks followed directly by the
        Gaussian, ``q_k`` (row 0: the standardised data against ``N(0, I)``). Its KL gap
        ``KL(p || q_k)`` equals the KL divergence of the pushed data to ``N(0, I)``, which
        each block of ``"lfm"`` and ``"jko"`` should shrink geometrically. That holds for the
        block-wise flow (``finetune_iter=0``): the likelihood refinement retrains all blocks
        together for the whole flow's density, and afterwards the intermediate rows can
        rise (only the last row is what the refinement improves); a warning says so.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples of the data distribution (held-out data for an honest estimate).
        log_density : array-like of shape (n_samples,) or callable, optional
            The true log-density of each row of ``X`` in the user's units, or a function
            returning it from ``X``; adds the KL gap.
        n_projections : int, default=128
            Random directions (fixed seed) of the sliced Wasserstein distance.

        Returns
        -------
        list of dict
            One dict per ``k = 0 .. n_blocks``: ``block``, ``kind`` and ``ou_time`` (total
            step size of blocks ``1 .. k``; ``nan`` once a free block is included),
            ``latent_nll`` (``E[-log N(z_k; 0, I)]``), ``nll`` (``E[-log q_k(x)]`` in the
            user's units), ``sliced_wasserstein`` (of the pushed standardised data to
            ``N(0, I)``), ``nfe`` (function evaluations per sample), and with
            ``log_density`` ``kl_gap`` (``E[log p(x)] - E[log q_k(x)]`` in nats).

        Examples
        --------
        >>> import numpy as np
        >>> from scipy.stats import multivariate_normal
        >>> from sigflow import FlowDensityEstimator
        >>> X = np.random.default_rng(0).normal(2.0, 0.5, size=(1000, 2))
        >>> est = FlowDensityEstimator(method="jko", n_blocks=2, max_iter=50, finetune_iter=0,
        ...                            hidden_layer_sizes=(32, 32), random_state=0).fit(X)
        >>> true = multivariate_normal([2.0, 2.0], 0.25).logpdf
        >>> rows = est.convergence_path(X, log_density=true)
        >>> [row["block"] for row in rows]
        [0, 1, 2]
        >>> bool(rows[-1]["kl_gap"] < rows[0]["kl_gap"])
        True
        """
        from ..flows import convergence_diagnostics

        X = self._check_X(X)
        log_jac = -np.log(self.scale_).sum()
        log_p = None
        if log_density is not None:
            values = log_density(X) if callable(log_density) else log_density
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            if values.shape[0] != X.shape[0]:
                raise ValueError(
                    f"log_density has {values.shape[0]} values for {X.shape[0]} samples"
                )
            log_p = torch.as_tensor(values - log_jac, dtype=torch.float64, device=self.device_)
        probes = None if self.probes_ is None else self.probes_.to(self.device_)
        rows = convergence_diagnostics(
            self.flow_, self._standardised_tensor(X), log_density=log_p, probes=probes,
            n_projections=n_projections,
        )
        refined = (getattr(self, "finetune_stats_", None) or {}).get("n_iter", 0)
        if refined and len(self.flow_.blocks) > 1:
            warnings.warn(
                f"the blocks of this model were refined together ({refined} steps of "
                "likelihood refinement), so the rows between the first and the last are no "
                "longer stages of the block-wise flow; fit with finetune_iter=0 for the "
                "per-block picture",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        ou_time = 0.0
        for row in rows:
            k = row["block"]
            stats = self.block_stats_[k - 1] if k > 0 else {"kind": "data", "step_size": 0.0}
            step = stats.get("step_size")
            ou_time += float("nan") if step is None else float(step)
            row["kind"], row["ou_time"] = stats.get("kind"), ou_time
            row["nll"] -= log_jac
        return rows

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = dict(super().__getstate__())
        flow = state.get("flow_")
        if isinstance(flow, Flow) and any(
            t.device.type != "cpu" for t in (*flow.parameters(), *flow.buffers())
        ):
            # copied only off the CPU: a copy serialises differently every time (torch keys
            # storages by address), so a CPU model would never pickle to the same bytes
            # and joblib.Memory caches keyed on it would never hit
            state["flow_"] = copy.deepcopy(flow).cpu()
        if isinstance(state.get("probes_"), torch.Tensor):
            state["probes_"] = state["probes_"].cpu()
        return state

    def __setstate__(self, state):
        device = state.get("device_")
        if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
            warnings.warn(
                f"this model was fitted on {device}, which is not available here; "
                "it now runs on the CPU (device_='cpu')",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
            state["device_"] = device = "cpu"
        elif device is not None and device.startswith("cuda"):
            index = torch.device(device).index or 0
            if index >= torch.cuda.device_count():  # fitted on a GPU this machine lacks
                warnings.warn(
                    f"this model was fitted on {device}, which this machine does not have "
                    f"({torch.cuda.device_count()} CUDA device(s)); it now runs on cuda:0",
                    RuntimeWarning,
                    stacklevel=user_stacklevel(),
                )
                state["device_"] = device = "cuda:0"
        if device is not None and isinstance(state.get("flow_"), Flow):
            state["flow_"] = state["flow_"].to(device)
        # parameters added after the first models were saved: their behaviour then
        state.setdefault("finetune_iter", 0)  # before the likelihood refinement existed
        state.setdefault("kinetic_penalty", 0.0)
        state.setdefault("smoothing", None)
        state.setdefault("time_sampling", "uniform")
        state.setdefault("inference_dtype", "float64")
        state.setdefault("finetune_learning_rate", 0.5 * state.get("learning_rate_init", 2e-3))
        if "finetune_warmup" not in state:
            state["finetune_warmup"] = self._legacy_warmup(state)
        state.setdefault("solver_penalty", 0.0)
        state.setdefault("finetune_batch_size", None)  # the refinement used batch_size
        if "flow_" in state:
            state.setdefault("smoothing_", 0.0)
            state.setdefault("n_ode_steps_", state["flow_"].n_steps)
        super().__setstate__(state)

    def _legacy_warmup(self, state):
        """The warm-up a model pickled before ``finetune_warmup`` was a parameter had.

        It came a little after ``solver_penalty``, as a class setting that also added
        ``"warmup_steps"`` to ``finetune_stats_``: a refinement that ran tells which side
        of that change it was on; otherwise ``solver_penalty`` in the state does.
        """
        stats = state.get("finetune_stats_")
        if isinstance(stats, dict) and "learning_rate" in stats:
            had_it = "warmup_steps" in stats
        else:
            had_it = "solver_penalty" in state
        return self._legacy_finetune_warmup if had_it else 0.0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
