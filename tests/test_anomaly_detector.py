"""FlowAnomalyDetector: scikit-learn outlier semantics, calibrated thresholds and p-values."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sigflow import FlowAnomalyDetector
from sigflow.estimators import CalibrationWarning

# Two kernel offsets (one antithetic pair) keep scoring cheap; the default is 8.
QUICK = dict(
    n_blocks=3,
    hidden_layer_sizes=(32, 32),
    max_iter=150,
    finetune_iter=0,
    n_score_draws=2,
    random_state=0,
)


def _normal(n, seed):
    """A correlated, skewed 3-D 'normal' population."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    return np.column_stack([z[:, 0], 0.8 * z[:, 0] + 0.4 * z[:, 1], np.exp(0.5 * z[:, 2])])


@pytest.fixture(scope="module")
def auto_detector():
    return FlowAnomalyDetector(**QUICK).fit(_normal(5000, 0))


def test_contamination_flags_that_fraction_of_training_data():
    X = _normal(1000, 1)
    det = FlowAnomalyDetector(**{**QUICK, "contamination": 0.05}).fit(X)
    assert np.mean(det.predict(X) == -1) == pytest.approx(0.05, abs=0.002)
    np.testing.assert_allclose(det.decision_function(X), det.score_samples(X) - det.offset_)
    assert det.predict([[8.0, -8.0, 0.0]])[0] == -1
    np.testing.assert_array_equal(det.fit_predict(X), det.predict(X))


def test_far_point_is_outlier_and_scores_follow_sklearn_signs(auto_detector):
    det = auto_detector
    inlier, outlier = _normal(1, 99), np.array([[6.0, -6.0, 0.1]])
    assert det.predict(inlier)[0] == 1 and det.predict(outlier)[0] == -1
    assert det.score_samples(outlier)[0] < det.score_samples(inlier)[0]
    assert det.decision_function(outlier)[0] < 0 < det.decision_function(inlier)[0]


def test_auto_threshold_flags_about_one_percent_of_new_normal_data(auto_detector):
    fresh = _normal(20000, 2)
    rate = np.mean(auto_detector.predict(fresh) == -1)
    n = len(auto_detector.calibration_scores_)
    assert n == 1000
    # The threshold is the k-th smallest of n calibration scores, k = floor(0.01 (n + 1)):
    # the flagged fraction of new normal data is Beta(k, n + 1 - k) distributed (mean
    # k / (n + 1) <= 1 %) over calibration sets, plus binomial noise of the fresh sample.
    k = int(np.floor(0.01 * (n + 1)))
    hi = stats.beta.ppf(1 - 1e-4, k, n + 1 - k)
    assert 0 < rate < hi + 4 * np.sqrt(hi / len(fresh))


def test_pvalues_of_fresh_normal_data_are_uniform(auto_detector):
    fresh = _normal(3000, 3)
    p = auto_detector.score_pvalues(fresh)
    assert np.all((p > 0) & (p <= 1))
    # Conformal p-values are uniform over draws of the calibration set; for the one fixed
    # calibration set the distance to uniform is the calibration sample's own fluctuation,
    # so the Kolmogorov-Smirnov bound is the two-sample one (99 % level).
    n_cal = len(auto_detector.calibration_scores_)
    bound = 1.63 * np.sqrt(1 / n_cal + 1 / len(p))
    assert stats.kstest(p, "uniform").statistic < bound
    cal_vs_fresh = stats.ks_2samp(
        auto_detector.calibration_scores_, auto_detector.score_samples(fresh)
    )
    assert cal_vs_fresh.pvalue > 0.01
    # a wrong calibration (data from another distribution) fails the same test
    shifted = _normal(3000, 4) + [1.0, 0.0, 0.0]
    assert stats.kstest(auto_detector.score_pvalues(shifted), "uniform").statistic > 3 * bound


def test_pvalues_match_their_definition(auto_detector):
    X = _normal(20, 5)
    s = auto_detector.score_samples(X)
    cal = auto_detector.calibration_scores_
    expected = np.array([(1 + np.sum(cal <= v)) / (len(cal) + 1) for v in s])
    np.testing.assert_array_equal(auto_detector.score_pvalues(X), expected)


def test_detects_injected_anomalies(auto_detector):
    rng = np.random.default_rng(6)
    normal = _normal(500, 7)
    anomalies = rng.uniform(-4, 4, size=(50, 3))
    X = np.vstack([normal, anomalies])
    y = np.r_[np.zeros(500), np.ones(50)]
    assert roc_auc_score(y, -auto_detector.score_samples(X)) > 0.9


def test_grid_search_with_labelled_scorer_and_group_kfold():
    rng = np.random.default_rng(8)
    X = np.vstack([_normal(600, 9), rng.uniform(-4, 4, size=(60, 3))])
    y = np.r_[np.ones(600, dtype=int), -np.ones(60, dtype=int)]
    groups = rng.integers(0, 3, size=len(y))
    pipe = make_pipeline(StandardScaler(), FlowAnomalyDetector(**{**QUICK, "max_iter": 60}))
    grid = GridSearchCV(
        pipe,
        {"flowanomalydetector__hidden_layer_sizes": [(2,), (32, 32)]},
        scoring="roc_auc",
        cv=GroupKFold(3),
    ).fit(X, y, groups=groups)
    assert grid.best_score_ > 0.85
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    # average precision works the same way (labels +1 / -1, +1 = normal is the positive class)
    grid_ap = GridSearchCV(
        clone(pipe),
        {"flowanomalydetector__n_blocks": [2]},
        scoring="average_precision",
        cv=GroupKFold(3),
    ).fit(X, y, groups=groups)
    assert grid_ap.best_score_ > 0.9


@pytest.mark.parametrize(
    "params,match",
    [
        ({"contamination": 0.7}, "contamination must be 'auto' or a float in"),
        ({"contamination": "high"}, "contamination must be 'auto' or a float in"),
        ({"calibration_fraction": 1.0}, "calibration_fraction must be in"),
        ({"n_score_draws": 0}, "n_score_draws must be a positive integer"),
        ({"n_score_draws": 2.5}, "n_score_draws must be a positive integer"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        FlowAnomalyDetector(**{**QUICK, **params}).fit(_normal(50, 0))


def test_scores_average_the_log_likelihood_over_the_kernel_offsets(auto_detector):
    det = auto_detector
    X = _normal(40, 3)
    offsets = det.kernel_offsets_
    assert det.smoothing_ > 0 and offsets.shape == (det.n_score_draws, 3)
    half = len(offsets) // 2
    np.testing.assert_array_equal(offsets[:half], -offsets[half:])  # antithetic pairs
    by_hand = np.mean([det._log_likelihood(X + u) for u in offsets], axis=0)
    np.testing.assert_allclose(det.score_samples(X), by_hand, rtol=1e-12)
    # a sample's score does not depend on its batch
    np.testing.assert_allclose(det.score_samples(X[7:8])[0], det.score_samples(X)[7], rtol=1e-12)
    # the calibration scores are these scores of the held-out rows (the detector's first
    # draw from its random_state permutes the rows; the first 20 % are held out)
    X_fit = _normal(5000, 0)
    cal = np.random.RandomState(0).permutation(5000)[:1000]
    np.testing.assert_allclose(
        det.calibration_scores_, np.sort(det.score_samples(X_fit[cal])), rtol=1e-12
    )


def test_kernel_offsets_follow_the_smoothing_kernel():
    X = _normal(400, 4)
    det = FlowAnomalyDetector(**{**QUICK, "max_iter": 10, "n_score_draws": 401}).fit(X)
    offsets = det.kernel_offsets_
    np.testing.assert_array_equal(offsets[-1], 0.0)  # an odd count includes the sample itself
    sd = offsets[:-1].std(axis=0)
    np.testing.assert_allclose(sd, det.smoothing_ * det.scale_, rtol=0.2)
    # one draw, or no smoothing: the plain log-likelihood
    for params in ({"n_score_draws": 1}, {"smoothing": None}):
        plain = FlowAnomalyDetector(**{**QUICK, "max_iter": 10, **params}).fit(X)
        np.testing.assert_array_equal(plain.kernel_offsets_, np.zeros((1, 3)))
        np.testing.assert_array_equal(plain.score_samples(X[:20]), plain._log_likelihood(X[:20]))


def test_detector_pickled_before_kernel_averaged_scores_loads_with_plain_scores(auto_detector):
    state = auto_detector.__getstate__()
    for name in ("n_score_draws", "kernel_offsets_"):
        state.pop(name)
    old = FlowAnomalyDetector.__new__(FlowAnomalyDetector)
    old.__setstate__(state)
    assert old.get_params()["n_score_draws"] == 1
    X = _normal(20, 5)
    np.testing.assert_array_equal(old.score_samples(X), auto_detector._log_likelihood(X))
    clone(old)


def test_bad_input(auto_detector):
    with pytest.raises(ValueError, match="NaN"):
        FlowAnomalyDetector(**QUICK).fit(np.array([[np.nan, 0, 0]] * 5))
    with pytest.raises(ValueError, match="X has 2 features"):
        auto_detector.predict(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="minimum of 3"):
        FlowAnomalyDetector(**QUICK).fit(np.zeros((2, 3)))


def test_pipeline_with_spectral_features_finds_abnormal_windows():
    from sigflow.preprocessing import SpectralFeatures, sliding_windows

    fs = 100.0
    rng = np.random.default_rng(10)
    t = np.arange(120_000) / fs
    normal = np.sin(2 * np.pi * (6 + 0.5 * np.sin(0.01 * t)) * t) + 0.3 * rng.normal(size=t.size)
    W = np.ascontiguousarray(sliding_windows(normal, 256, 128))
    bursts = np.array(W[:40])
    bursts += np.sin(2 * np.pi * 22 * np.arange(256) / fs)  # a 22 Hz component: abnormal
    pipe = make_pipeline(
        SpectralFeatures(fs, bands=((1, 4), (4, 8), (8, 13), (13, 30), (30, 45)), nperseg=128),
        StandardScaler(),
        FlowAnomalyDetector(**QUICK),
    ).fit(W[40:])
    scores = pipe.score_samples(np.vstack([W[:400], bursts]))
    y = np.r_[np.zeros(400), np.ones(40)]
    assert roc_auc_score(y, -scores) > 0.95
    assert np.mean(pipe.predict(bursts) == -1) > 0.8


def test_auto_threshold_warns_when_too_few_rows_calibrate_it():
    import warnings

    tiny = {**QUICK, "n_blocks": 2, "hidden_layer_sizes": (8, 8), "max_iter": 20}
    # 300 rows hold out 60 for calibration: too few for the 1 % guarantee
    X = _normal(300, 4)
    with pytest.warns(CalibrationWarning, match="calibrated on only 60 held-out rows") as rec:
        det = FlowAnomalyDetector(**tiny).fit(X)
    assert issubclass(CalibrationWarning, UserWarning)
    # it names the threshold and its neighbours, so that one far row setting it shows, and
    # the floor of the p-values, under any cut at 1 %
    message = str(rec[0].message)
    cal = det.calibration_scores_
    assert det.offset_ == cal[0]
    for value in (cal[0], cal[1], np.median(cal)):
        assert f"{value:.4g}" in message
    assert "score_pvalues cannot fall below 1 / 61 = 0.0164" in message
    assert det.score_pvalues(X).min() == pytest.approx(1 / 61)
    # it names the user's line, also through scikit-learn's Pipeline and cross-validation
    with pytest.warns(CalibrationWarning) as rec:
        make_pipeline(StandardScaler(), FlowAnomalyDetector(**tiny)).fit(_normal(300, 4))
        cross_val_score(FlowAnomalyDetector(**tiny), _normal(600, 4), cv=2,
                        scoring=lambda est, X, y=None: 0.0)
    assert {r.filename for r in rec} == {__file__}
    # in joblib's worker threads no line of the user's is on the stack: scikit-learn's
    # line that called fit, not the standard library's pool
    import joblib

    with pytest.warns(CalibrationWarning) as rec, joblib.parallel_backend("threading"):
        cross_val_score(FlowAnomalyDetector(**tiny), _normal(600, 4), cv=2, n_jobs=2,
                        scoring=lambda est, X, y=None: 0.0)
    assert all(os.sep + "sklearn" + os.sep in r.filename for r in rec), [r.filename for r in rec]
    with pytest.warns(CalibrationWarning, match="only 78 held-out rows.*1 / 79 = 1.3 %"):
        FlowAnomalyDetector(**tiny).fit(_normal(390, 4))
    # 500 rows hold out 100; 395 hold out 79, whose 1.25 % is not worth an alarm; and a
    # fixed contamination needs no calibration guarantee
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="contamination='auto'")
        FlowAnomalyDetector(**tiny).fit(_normal(500, 4))
        FlowAnomalyDetector(**tiny).fit(_normal(395, 4))  # 79 held out
        FlowAnomalyDetector(**{**tiny, "contamination": 0.05}).fit(_normal(300, 4))


def test_detector_refines_with_its_own_batch_size():
    # FlowDensityEstimator refines with 1,024 rows per step; the detector keeps batch_size,
    # as its outlier benchmarks were run
    assert FlowAnomalyDetector().finetune_batch_size is None
    det = FlowAnomalyDetector(
        **{**QUICK, "max_iter": 5, "finetune_iter": 2, "batch_size": 48, "smoothing": None}
    ).fit(_normal(400, 3))
    assert det.finetune_stats_["batch_size"] == 48


@pytest.mark.parametrize("contamination", ["auto", 0.01])
def test_far_rows_are_refused_wherever_the_split_puts_them(contamination):
    # Only the flow's training rows were checked, so the same data were refused or accepted
    # by random_state; accepted, the far calibration row set the threshold alone (offset_
    # about -1e31, a detector that flags nothing).
    X = _normal(300, 3)
    X[7] = [1e16, 0.0, 0.0]
    params = {**QUICK, "max_iter": 5, "smoothing": None, "n_score_draws": 1}
    for seed in range(6):
        det = FlowAnomalyDetector(**{**params, "random_state": seed},
                                  contamination=contamination)
        with pytest.raises(ValueError, match=r"1 training row\(s\) \(indices \[7\]\)"):
            det.fit(X)


def test_a_new_row_without_density_is_an_outlier_with_a_finite_threshold():
    # A row far beyond float64's reach scores the lowest float (its log-likelihood
    # overflows; -inf would stop scikit-learn's metrics); the threshold stays finite, so
    # that decision_function is finite and negative for that row.
    params = {**QUICK, "max_iter": 20, "smoothing": None, "n_score_draws": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 60 calibration rows: fewer than 99
        det = FlowAnomalyDetector(**params).fit(_normal(300, 3))
    assert np.isfinite(det.offset_)
    decision = det.decision_function(np.vstack([_normal(5, 5), np.full((1, 3), 1e200)]))
    assert np.isfinite(decision).all() and decision[5] < 0
    # a finite row at the largest float standardises to inf; it scores lowest, not NaN
    big = np.zeros((1, 3))
    big[0, 1] = np.finfo(np.float64).max
    lowest = np.finfo(np.float64).min
    assert det.score_samples(big).tolist() == [lowest]
    assert det.predict(big).tolist() == [-1]
    X = np.vstack([_normal(5, 6), big])
    assert roc_auc_score([1, 1, 1, 1, 1, 0], det.decision_function(X)) == 1.0
    assert (det.score_pvalues(big) < 0.05).all()


def test_few_calibration_rows_put_the_threshold_at_their_lowest_score():
    # Below 99 calibration rows no conformal order statistic exists; the lowest score is the
    # threshold (a new normal score falls below it with probability 1 / (n + 1)). The
    # linearly interpolated 1 % quantile had put it 41 % of the way to one far outlier.
    X = _normal(300, 2)
    cal_row = np.random.RandomState(0).permutation(300)[0]  # the fit's own split
    X[cal_row] = [1e3, 0.0, 1.0]
    params = {**QUICK, "max_iter": 20, "smoothing": None, "n_score_draws": 1}
    with pytest.warns(UserWarning, match=r"lowest of their scores, \S+ \(the next lowest \S+, "
                      r"the median \S+\), which flags about 1 / 61") as rec:
        det = FlowAnomalyDetector(**{**params, "random_state": 0}).fit(X)
    cal = det.calibration_scores_
    assert len(cal) == 60 and det.offset_ == cal[0]
    # the far row shows in the warning: its score, far under the next lowest
    assert f"scores, {cal[0]:.4g} (the next lowest {cal[1]:.4g}," in str(rec[0].message)
    assert cal[0] < cal[1] - 100 * (np.median(cal) - cal[1])
    clean = _normal(300, 2)
    clean[cal_row] = clean[(cal_row + 1) % 300]
    with pytest.warns(UserWarning, match="1 / 61"):
        det = FlowAnomalyDetector(**{**params, "random_state": 0}).fit(clean)
    assert det.offset_ == det.calibration_scores_[0]


def test_auto_threshold_is_the_conformal_order_statistic():
    # offset_ is c_(k), k = floor(0.01 (n_cal + 1)): a new normal score then falls below it
    # with probability k / (n_cal + 1) <= 1 %; c_(k+1) would break that guarantee.
    X = np.random.default_rng(0).normal(size=(1000, 2))
    det = FlowAnomalyDetector(n_blocks=1, hidden_layer_sizes=(8,), max_iter=5,
                              finetune_iter=0, n_score_draws=1, random_state=0).fit(X)
    cal = det.calibration_scores_
    k = int(np.floor(0.01 * (len(cal) + 1)))
    assert len(cal) == 200 and k == 2
    assert det.offset_ == cal[k - 1]
    assert np.sum(cal < det.offset_) == k - 1


def test_calibration_rows_do_not_reach_the_flow():
    # The conformal guarantee needs calibration rows the flow never saw: changing them must
    # leave the fitted flow, hence every score of a new sample, unchanged.
    X = np.random.default_rng(0).normal(size=(300, 2))
    params = dict(n_blocks=1, hidden_layer_sizes=(8,), max_iter=5, finetune_iter=0,
                  n_score_draws=1, contamination=0.05, random_state=0)
    cal = np.random.RandomState(0).permutation(300)[:60]  # the fit's own split
    X2 = X.copy()
    X2[cal] += 3.0
    new = np.random.default_rng(1).normal(size=(20, 2))
    np.testing.assert_array_equal(FlowAnomalyDetector(**params).fit(X).score_samples(new),
                                  FlowAnomalyDetector(**params).fit(X2).score_samples(new))


# --- tests added from mutation testing of sigflow/estimators (each kills a surviving mutant) --
_TINY = dict(n_blocks=1, method="fm", hidden_layer_sizes=(8,), max_iter=5, finetune_iter=0,
             smoothing=None, n_score_draws=1)


@pytest.fixture(scope="module")
def tiny_detector():
    X = np.random.default_rng(0).normal(size=(300, 2))
    return FlowAnomalyDetector(**_TINY, random_state=0).fit(X), X


def test_pvalue_of_a_calibration_score_counts_itself(tiny_detector):
    # ties count as at least as extreme (duplicate rows of discrete data have tied scores)
    det, _ = tiny_detector
    cal = det.calibration_scores_
    assert len(np.unique(cal)) == len(cal)
    n = len(cal)
    np.testing.assert_allclose(det._pvalues(cal), (2.0 + np.arange(n)) / (n + 1))


def test_detector_follows_its_random_state(tiny_detector):
    det, X = tiny_detector
    again = FlowAnomalyDetector(**_TINY, random_state=0).fit(X)
    other = FlowAnomalyDetector(**_TINY, random_state=1).fit(X)
    np.testing.assert_array_equal(again.score_samples(X[:20]), det.score_samples(X[:20]))
    assert not np.array_equal(other.score_samples(X[:20]), det.score_samples(X[:20]))


def test_quantile_threshold_is_finite_with_minus_infinite_or_nan_scores():
    # one training row without density must not make offset_ NaN
    import math

    from sigflow.estimators._anomaly import _finite_quantile

    for bad in (-np.inf, np.nan):
        q = _finite_quantile(np.array([bad, 0.0, 1.0, 2.0, 3.0]), 0.1)
        assert math.isfinite(q) and q < 0.0
