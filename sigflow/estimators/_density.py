"""FlowDensityEstimator: a scikit-learn density estimator on a continuous normalizing flow."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, DensityMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

from ._base import BaseFlowEstimator, _flow_params_doc

__all__ = ["FlowDensityEstimator"]


_FLOW_DOC = _flow_params_doc(
    finetune_iter="500", finetune_lr="8e-3", finetune_warmup="0.1", finetune_batch_size="1024",
    smoothing="None",
    kinetic="0.0", solver_penalty="60.0",
)


class FlowDensityEstimator(
    ClassNamePrefixFeaturesOutMixin, DensityMixin, TransformerMixin, BaseFlowEstimator
):
    __doc__ = f"""Density estimation with a continuous normalizing flow.

    The flow maps standardised data through blocks of ODEs to ``N(0, I)``; the exact
    log-likelihood is the Gaussian log-density of the latent point plus the integrated
    divergence of each block's velocity field, plus the log-Jacobian of the internal
    standardisation, so :meth:`score_samples` is the log-density in the user's units.
    As a transformer it maps data to the latent space (:meth:`transform`) and back
    (:meth:`inverse_transform`).

    Parameters
    ----------{_FLOW_DOC}

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of str
        Names of features seen during fit (only when ``X`` has string column names).
    device_ : str
        Device the model lives on.
    location_, scale_ : ndarray of shape (n_features,)
        Internal standardisation ``(X - location_) / scale_``: the median and the
        normal-consistent interquartile range of each feature (the standard deviation
        where that range is zero, and 1 for a feature that takes a single value), so that
        outliers in the training data do not squash the bulk of it.
    flow_ : sigflow.flows.Flow
        The trained flow (float64), mapping standardised data to latent space.
    trace_estimator_ : {{"exact", "hutchinson"}}
        The divergence estimator ``"auto"`` resolved to.
    probes_ : torch.Tensor or None
        Hutchinson probes, when used.
    loss_curve_ : list of float
        Training loss at every optimisation step, all blocks in order.
    block_stats_ : list of dict
        One dict per block: ``block``, ``kind``, ``step_size``, ``n_iter``, final ``loss``,
        ``time_s``, ``nfe_push`` (function evaluations per sample to push it through the
        block), ``displacement`` (``E|T(x) - x|^2 / E|T(x)|^2``), ``latent_nll`` (mean
        negative log-likelihood of the pushed training data under ``N(0, I)``) and
        ``n_checks`` (held-out early-stopping checks made while training the block).
    finetune_stats_ : dict or None
        The likelihood refinement of all blocks together (``finetune_iter``): ``n_iter``,
        ``learning_rate``, ``batch_size`` (rows per step), ``time_s``, ``nfe_per_step``,
        held-out ``val_nll_before`` / ``val_nll_after`` (standardised units, ODEs solved
        twice as finely, without the 1 % most extreme rows at each end, as the checks),
        ``solver_gap`` (mean over the held-out rows, without the 1 % most extreme at each end,
        of the NLL with the scoring solver, ``n_ode_steps_`` steps per block, minus the NLL
        with twice the steps; negative when that solver flatters the
        likelihood, and a ``sigflow.flows.SolverAccuracyWarning`` is raised beyond 0.05
        nats), ``scoring_steps`` (``n_ode_steps_``), ``solver_penalty``, ``warmup_steps``,
        ``n_checks`` (held-out checks made) and
        its ``loss_curve``; a ``skipped`` reason when it did not run (fewer than 10 rows to
        hold out: about 100 training rows for ``FlowDensityEstimator`` at the default
        ``validation_fraction``); None with ``finetune_iter=0``.
    n_iter_ : int
        Total optimisation steps (block training plus refinement).
    n_ode_steps_ : int
        Solver steps per block of the fitted flow's scores, transforms and samples:
        ``n_ode_steps``, unless with it the refined flow's held-out log-likelihood differed
        from the one with twice the steps by more than 0.05 nats per sample. The steps are
        then doubled, up to ``4 * n_ode_steps``, until it no longer does: the refinement
        kept the weights whose likelihood was best with twice the steps, so scoring with
        those steps is scoring the density that was chosen. This happens on small data with
        discrete features (1,159 rows of ADBench's cardio: scores 8 steps per block,
        ``solver_gap`` -0.25 nats with 4), and scoring then costs proportionally more.
    smoothing_ : float
        The Gaussian smoothing bandwidth the training data were convolved with, in
        units of each feature's robust scale ``scale_`` (0.0 without ``smoothing``).

    See Also
    --------
    FlowAnomalyDetector : Outlier detection on the same flows.
    sklearn.neighbors.KernelDensity, sklearn.mixture.GaussianMixture

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow import FlowDensityEstimator
    >>> X = np.random.default_rng(0).normal(size=(1000, 2))
    >>> est = FlowDensityEstimator(max_iter=200, random_state=0).fit(X)
    >>> est.score_samples(X[:2]).shape
    (2,)
    >>> est.sample(3, random_state=0).shape
    (3, 2)
    """

    _max_scoring_steps_factor = 4

    def fit(self, X, y=None):
        """Fit the flow to ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; finite numbers.
        y : ignored

        Returns
        -------
        self : FlowDensityEstimator
        """
        with self._keeping_last_fit():  # a failed refit leaves the last fit as it was
            X = self._validate_training_data(X)
            return self._fit_flow(X, check_random_state(self.random_state))

    def score(self, X, y=None):
        """Mean log-likelihood of ``X``: higher is better (used by ``GridSearchCV``).

        The mean, as :class:`sklearn.mixture.GaussianMixture` gives it (not the sum of
        :class:`sklearn.neighbors.KernelDensity`), so that scores of folds of different
        sizes compare.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite rows, in the units the estimator was fitted in.
        y : None
            Ignored.

        Returns
        -------
        score : float
            ``score_samples(X).mean()``, in nats per row.
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """Draw samples from the fitted density.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState instance or None, default=None
            Seed for the latent noise; ``None`` uses the estimator's ``random_state``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        return self._sample(n_samples, random_state)

    def transform(self, X):
        """Map data to the flow's latent space (approximately ``N(0, I)`` distributed).

        Each row is standardised and pushed through every block with the fixed-step
        solver that scores (``n_ode_steps_`` steps per block).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_features_in_)
            Latent points; :meth:`inverse_transform` maps them back up to the solver's
            discretisation error: with the defaults about 1e-4 to 1e-3 standard
            deviations of a feature for most rows, more where the paths bend sharply (up
            to 0.07 on MIT-BIH beat features); raise ``n_ode_steps`` for a closer match.
        """
        return self._push(self._check_X(X))

    def inverse_transform(self, X):
        """Map latent points back to data space (the flow run backwards).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Latent points, e.g. from :meth:`transform` or ``N(0, I)`` draws.

        Returns
        -------
        X_data : ndarray of shape (n_samples, n_features_in_)
            In the user's units. ``inverse_transform(transform(X))`` recovers ``X`` up to
            the fixed-step solver's error (see :meth:`transform`).
        """
        check_is_fitted(self, "flow_")
        Z = check_array(X, dtype=np.float64)
        if Z.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {Z.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return self._push(Z, inverse=True)

    @property
    def _n_features_out(self):
        return self.n_features_in_
