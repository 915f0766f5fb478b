"""FlowAnomalyDetector: outlier detection on flow log-likelihoods with calibrated thresholds."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
from sklearn.base import OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._warnings import user_stacklevel
from ._base import BaseFlowEstimator, _flow_params_doc, _refuse_far_rows, _robust_location_scale

__all__ = ["FlowAnomalyDetector"]

AUTO_FALSE_ALARM_RATE = 0.01


_FLOW_DOC = _flow_params_doc(
    finetune_iter="300", finetune_lr="1e-3", finetune_warmup="0.0", finetune_batch_size="None",
    smoothing='"cv"',
    kinetic="0.002", solver_penalty="0.0",
)


def _finite_quantile(scores, q):
    """``np.quantile(scores, q)`` (linear interpolation) with ``-inf`` (and NaN) scores taken
    as the lowest float, so that a threshold between such a score and a finite one is a
    very low number, not NaN (``-inf + inf``): a NaN ``offset_`` would flag every sample."""
    lowest = np.finfo(np.float64).min
    return float(np.quantile(np.where(np.isnan(scores), lowest, np.maximum(scores, lowest)), q))


#: How far (relatively) the false-alarm rate of ``contamination="auto"`` may exceed its
#: target, with too few calibration rows, before the detector warns.
CALIBRATION_TOLERANCE = 0.25


class CalibrationWarning(UserWarning):
    """Too few held-out rows for ``contamination="auto"`` to keep its false-alarm bound.

    A class of its own so that it can be filtered (in a grid search over small data, say,
    where every fit would warn): ``warnings.simplefilter("ignore", CalibrationWarning)``.
    """


def _fmt(score):
    return f"{score:.4g}"


def _neighbours(cal):
    """`` (the next lowest ..., the median ...)`` for the calibration warning, so that a
    threshold set by one row far below the others shows as such."""
    if len(cal) < 2:
        return ""
    return f" (the next lowest {_fmt(cal[1])}, the median {_fmt(float(np.median(cal)))})"


class FlowAnomalyDetector(OutlierMixin, BaseFlowEstimator):
    __doc__ = f"""Anomaly detection by the log-likelihood of a continuous normalizing flow.

    Behaves like scikit-learn's outlier detectors (``IsolationForest``,
    ``LocalOutlierFactor(novelty=True)``): :meth:`score_samples` is higher for more
    normal samples (here: the flow's log-likelihood, by default averaged over the
    smoothing kernel, see below), ``decision_function = score_samples -
    offset_`` is negative for outliers, and :meth:`predict` returns +1 (inlier) or -1
    (outlier).

    A part of the training data (``calibration_fraction``) is held out from fitting the
    flow; its scores calibrate the threshold and the p-values:

    * ``contamination="auto"``: ``offset_`` is the conformal threshold at which about 1 %
      of new normal data is flagged (at most 1 % when the training data are normal and
      exchangeable with the new data, and at least 99 rows are held out for calibration,
      i.e. about 500 training rows with the default ``calibration_fraction``; with fewer
      the threshold is the lowest calibration score, which flags about ``1 / (n + 1)`` of
      new normal data for ``n`` calibration rows, and a :class:`CalibrationWarning` says so
      when that is over 1.25 %, below 79 calibration rows). The guarantee
      assumes clean training data: outliers among the held-out rows lower the threshold,
      one alone when there are fewer than 199 of them, and then fewer anomalies are
      flagged; with contaminated training data set ``contamination`` instead.
    * ``contamination=c`` in (0, 0.5]: ``offset_`` is the ``c`` quantile of the scores of
      all training samples, so a fraction ``c`` of the training data is flagged
      (scikit-learn's meaning).
    * :meth:`score_pvalues` returns conformal p-values
      ``p(x) = (1 + #{{calibration scores <= s(x)}}) / (n_calibration + 1)``.
      If the calibration samples and a new normal sample are exchangeable (independent
      draws of the same distribution, for instance), then ``P(p(x) <= a) <= a`` for every
      ``a``: flagging ``p <= a`` bounds the false-alarm rate by ``a`` without any
      assumption on the model. Apply Benjamini-Hochberg to the p-values of a record to
      control the false discovery rate. Data that drift away from the training
      distribution (another patient, another sensor) break the assumption.

    The flow is fitted to the training data smoothed by a Gaussian kernel
    (``smoothing="cv"``, which ``FlowDensityEstimator`` leaves off): to the density a kernel
    density estimate would give, which a flow can then represent more compactly. Fitted to
    the raw data, a flow puts sharp peaks on the few or repeated values of small or
    integer-valued training sets, and new normal samples that miss them score as outliers;
    smoothed, it ranks outliers far better on such data (ADBench novelty protocol,
    ``benchmarks/RESULTS.md``). The bandwidth is chosen by leave-one-out likelihood
    cross-validation of the kernel density estimate among 1/4 to 2 times Scott's rule: close
    to Scott's on most data, narrower on clustered or discrete data that Scott's rule
    oversmooths. ``smoothing=None`` fits the data as they are.

    With smoothing, :meth:`score_samples` is the flow's log-likelihood **averaged over the
    smoothing kernel**: ``s(x) = (1/K) sum_j log q(x + u_j)``, where the ``K =
    n_score_draws`` offsets ``u_j`` (``kernel_offsets_``) are drawn once at fit time from the
    kernel ``N(0, diag((smoothing_ * scale_)^2))``, in antithetic pairs ``+-u``, and are the
    same for every sample (so a score does not depend on the batch it is in). The flow was
    fitted by minimising ``E_u[-log q(x_i + u)]`` over the training rows; scoring a new
    sample by the same average treats it as the training rows were treated, and averages
    out the small-scale roughness of a flow's log-density, which otherwise decides the
    ranking of samples near the data (ADBench novelty protocol: mean AUROC and average
    precision both higher, ``benchmarks/RESULTS.md``). It is a lower bound, by Jensen's
    inequality, of the log-density of the flow convolved with the kernel. Scoring costs
    ``K`` likelihood evaluations per sample; ``n_score_draws=1`` (or ``smoothing=None``)
    scores by the plain log-likelihood ``log q(x)``.

    The likelihood refinement (``finetune_iter``) makes the flow fit its training data more
    closely. That is what novelty detection wants when the training data are normal; when
    they contain the anomalies too (unsupervised use), it learns those as well, and
    ``finetune_iter=0`` usually ranks them better (on sigflow's example ECG, fitted on all
    beats: average precision 0.81 without it, 0.61 with it). For the same reason
    ``smoothing="scott"`` suits such data better than ``"cv"``: cross-validation narrows the
    kernel to explain every training row, a cluster of anomalies included (ADBench's
    unsupervised protocol: mean AUROC 0.863 with Scott's rule, 0.847 with ``"cv"``).

    Parameters
    ----------
    contamination : "auto" or float, default="auto"
        See above. ``fit`` scores the calibration rows for "auto", and every training
        row for a float, each ``n_score_draws`` times: on large data that scoring costs
        more than the training, whose number of steps does not grow with the data (with
        the defaults on one core, about 3,000 rows a second at 3 features and 1,750 at
        10: one to two minutes per million rows for "auto", five times that for a float).
    calibration_fraction : float, default=0.2
        Fraction of the training data held out for calibration (at least one sample);
        the flow is fitted on the rest.
    n_score_draws : int, default=8
        Number of kernel offsets the scores are averaged over when smoothing is on (see
        above); 1 scores by the plain log-likelihood, eight times as fast. An odd number
        includes the offset 0.{_FLOW_DOC}

    Attributes
    ----------
    offset_ : float
        Threshold on :meth:`score_samples`; ``decision_function = score_samples - offset_``.
    calibration_scores_ : ndarray
        Sorted scores (:meth:`score_samples`) of the held-out calibration samples.
    kernel_offsets_ : ndarray of shape (n_offsets, n_features_in_)
        The offsets, in the user's units, whose log-likelihoods :meth:`score_samples`
        averages; a single row of zeros without smoothing or with ``n_score_draws=1``.
    n_features_in_, device_, location_, scale_, flow_, trace_estimator_, probes_,
    loss_curve_, block_stats_, finetune_stats_, n_iter_, smoothing_ :
        As in :class:`FlowDensityEstimator`.
    n_ode_steps_ : int
        Solver steps per block of the fitted flow: always ``n_ode_steps`` here (the
        detector does not add steps when the refinement's solver gap is large; it warns).

    See Also
    --------
    FlowDensityEstimator
    sklearn.ensemble.IsolationForest, sklearn.neighbors.LocalOutlierFactor

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow import FlowAnomalyDetector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 2))
    >>> det = FlowAnomalyDetector(max_iter=200, random_state=0).fit(X)
    >>> det.predict([[0.0, 0.0], [6.0, 6.0]])
    array([ 1, -1])
    >>> bool(det.score_pvalues([[6.0, 6.0]])[0] < 0.01)
    True
    """

    _min_samples = 3
    _legacy_finetune_warmup = 0.0  # the detector never had a warm-up

    def __init__(
        self,
        *,
        contamination="auto",
        calibration_fraction=0.2,
        n_score_draws=8,
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
        finetune_iter=300,
        finetune_learning_rate=1e-3,
        finetune_warmup=0.0,
        finetune_batch_size=None,
        smoothing="cv",
        kinetic_penalty=0.002,
        solver_penalty=0.0,
        inference_dtype="float64",
        device="auto",
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            method=method,
            n_blocks=n_blocks,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            max_iter=max_iter,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
            ode_solver=ode_solver,
            n_ode_steps=n_ode_steps,
            step_size=step_size,
            step_size_ratio=step_size_ratio,
            interpolant=interpolant,
            time_sampling=time_sampling,
            trace_estimator=trace_estimator,
            n_probes=n_probes,
            tol=tol,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            finetune_iter=finetune_iter,
            finetune_learning_rate=finetune_learning_rate,
            finetune_warmup=finetune_warmup,
            finetune_batch_size=finetune_batch_size,
            smoothing=smoothing,
            kinetic_penalty=kinetic_penalty,
            solver_penalty=solver_penalty,
            inference_dtype=inference_dtype,
            device=device,
            random_state=random_state,
            verbose=verbose,
        )
        self.contamination = contamination
        self.calibration_fraction = calibration_fraction
        self.n_score_draws = n_score_draws

    def fit(self, X, y=None):
        """Fit the flow on the training data less a held-out calibration part.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, mostly normal.
        y : ignored

        Returns
        -------
        self : FlowAnomalyDetector
        """
        contamination = self.contamination
        if not (isinstance(contamination, str) and contamination == "auto"):
            if not (
                isinstance(contamination, numbers.Real)
                and not isinstance(contamination, bool)
                and 0 < contamination <= 0.5
            ):
                raise ValueError(
                    f"contamination must be 'auto' or a float in (0, 0.5], got {contamination!r}"
                )
        frac = self.calibration_fraction
        if not (isinstance(frac, numbers.Real) and 0 < frac < 1):
            raise ValueError(f"calibration_fraction must be in (0, 1), got {frac!r}")
        draws = self.n_score_draws
        if not isinstance(draws, numbers.Integral) or isinstance(draws, bool) or draws < 1:
            raise ValueError(f"n_score_draws must be a positive integer, got {draws!r}")
        with self._keeping_last_fit():  # a failed refit leaves the last fit as it was
            X = self._validate_training_data(X)
            # Far rows are refused wherever the split puts them (calibration rows never reach
            # float32 training, but one such row would set the threshold alone). The flow's
            # own rows are checked again against their own scale, which can still refuse
            # rows of a column whose training rows nearly all share one value.
            location, scale, _ = _robust_location_scale(X)
            with np.errstate(over="ignore"):
                _refuse_far_rows((X - location) / scale)
            rng = check_random_state(self.random_state)
            n = X.shape[0]
            n_cal = min(max(1, int(round(frac * n))), n - 2)
            order = rng.permutation(n)
            cal, train = order[:n_cal], order[n_cal:]
            self._fit_flow(X[train], rng, rows=train)
            self.kernel_offsets_ = self._kernel_offsets(int(draws), rng)
            cal_scores = self._scores(X[cal])
            self.calibration_scores_ = np.sort(cal_scores)
            if isinstance(contamination, str):
                self.offset_ = float(self._conformal_threshold(AUTO_FALSE_ALARM_RATE))
            else:
                scores = np.empty(n)
                scores[cal] = cal_scores
                scores[train] = self._scores(X[train])
                self.offset_ = _finite_quantile(scores, contamination)
            return self

    def _kernel_offsets(self, draws, rng):
        """``draws`` offsets from the smoothing kernel: antithetic pairs, plus 0 if odd."""
        d = self.n_features_in_
        if self.smoothing_ == 0 or draws == 1:
            return np.zeros((1, d))
        half = rng.standard_normal((draws // 2, d))
        unit = np.concatenate([half, -half] + ([np.zeros((1, d))] if draws % 2 else []))
        return unit * (self.smoothing_ * self.scale_)

    def _scores(self, X):
        """Kernel-averaged log-likelihood of validated rows ``X`` (see the class notes),
        at least the lowest float64 (an overflowing log-likelihood is not -inf)."""
        offsets = self.kernel_offsets_
        scores = self._log_likelihood(X, None if not offsets.any() else offsets)
        return np.maximum(scores, np.finfo(np.float64).min)

    def score_samples(self, X):
        """Normality score of each sample: higher means more normal.

        The log-likelihood of the fitted flow (natural log, in the user's units), averaged
        over the smoothing kernel's offsets ``kernel_offsets_`` when smoothing is on (see
        the class notes); with ``smoothing=None`` or ``n_score_draws=1``, the plain
        log-likelihood. A row so far out that its log-likelihood overflows gets the lowest
        float64 (about -1.8e308) rather than ``-inf``, so that scikit-learn's metrics
        (``roc_auc_score``, say), which refuse infinite scores, take it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        return self._scores(self._check_X(X))

    def __setstate__(self, state):
        # Detectors saved before kernel-averaged scores were calibrated on plain ones.
        state.setdefault("n_score_draws", 1)
        if "flow_" in state and "kernel_offsets_" not in state:
            state["kernel_offsets_"] = np.zeros((1, state["n_features_in_"]))
        super().__setstate__(state)

    def _conformal_threshold(self, alpha):
        """Score below which a new normal sample falls with probability at most ``alpha``.

        With ``k = floor(alpha (n + 1))`` and the sorted calibration scores ``c_(1..n)``,
        a new exchangeable score is below ``c_(k)`` with probability ``k / (n + 1) <= alpha``.
        With fewer than ``1 / alpha - 1`` calibration samples no such order statistic
        exists, and the lowest score ``c_(1)`` is used instead, which a new score falls
        below with probability ``1 / (n + 1)`` (more than ``alpha``). It is a calibration
        score, not a value between two: interpolating towards a far outlier among the
        scores (an unbounded log-likelihood) put the threshold a large part of the way to
        it. The warning about it comes when ``1 / (n + 1)`` exceeds ``alpha`` by more than
        :data:`CALIBRATION_TOLERANCE` (a quarter): 96 held-out rows flag 1.03 % rather than
        1 %, which is not worth an alarm.
        """
        cal = self.calibration_scores_
        k = max(int(np.floor(alpha * (len(cal) + 1))), 1)
        if alpha * (len(cal) + 1) * (1 + CALIBRATION_TOLERANCE) < 1:
            warnings.warn(
                f"contamination='auto' is calibrated on only {len(cal)} held-out rows; its "
                f"guarantee of at most {100 * alpha:g} % false alarms needs at least "
                f"{math.ceil(1 / alpha) - 1}, so the threshold is the lowest of their scores, "
                f"{_fmt(cal[0])}{_neighbours(cal)}, which flags about 1 / {len(cal) + 1} = "
                f"{100 / (len(cal) + 1):.1f} % of new normal data on average (a single unusual "
                "held-out row lowers it alone). Likewise score_pvalues cannot fall below "
                f"1 / {len(cal) + 1} = {1 / (len(cal) + 1):.3g}, so a cut such as "
                f"p <= {alpha:g} flags nothing. Fit on more rows, raise calibration_fraction, "
                "or set contamination",
                CalibrationWarning,
                stacklevel=user_stacklevel(),
            )
        return max(float(cal[k - 1]), np.finfo(np.float64).min)  # -inf as in _finite_quantile

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for inliers, -1 for outliers."""
        decision = self.decision_function(X)
        return np.where(decision >= 0, 1, -1)  # a NaN score, should one occur, is an outlier

    def score_pvalues(self, X):
        """Conformal p-values: small for samples unlike the (normal) training data.

        ``p(x) = (1 + #{calibration scores <= score(x)}) / (n_calibration + 1)``; valid
        (``P(p <= a) <= a``) for new samples exchangeable with the calibration data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        pvalues : ndarray of shape (n_samples,), values in (0, 1]
        """
        return self._pvalues(self.score_samples(X))

    def _pvalues(self, scores):
        """:meth:`score_pvalues` from scores :meth:`score_samples` gave (no rescoring)."""
        check_is_fitted(self, "calibration_scores_")
        cal = self.calibration_scores_
        counts = np.searchsorted(cal, np.nan_to_num(scores, nan=-np.inf), side="right")
        return (1.0 + counts) / (len(cal) + 1.0)
