"""Boundaries of the preprocessing kernels: samples no window reads, chunk edges, ties,
half-open bands, negative rows, features asked for alone. Each test catches a plausible
bug that the other preprocessing tests let through."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats

from sigflow.preprocessing import (
    WINDOW_FEATURES,
    SpectralFeatures,
    WindowFeatures,
    welch_psd,
    window_features,
)


# ---------------------------------------------------------------- welch_psd
@pytest.mark.parametrize("where", [96, 97, 98, 99])  # every sample after the last segment
def test_welch_rejects_nan_at_every_unread_sample(where):
    """Samples after the last segment are checked from the first one on (sample 96)."""
    x = np.random.default_rng(4).normal(size=(2, 100))
    x[1, where] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        welch_psd(x, nperseg=32, noverlap=0)  # segments cover 0..95


@pytest.mark.parametrize("fs", [np.inf, -np.inf, np.nan])
def test_welch_and_spectral_features_reject_non_finite_fs(fs):
    """A non-finite fs is the documented ValueError (an infinite one would divide by zero
    deeper down or give zeros)."""
    x = np.random.default_rng(0).normal(size=(2, 64))
    with pytest.raises(ValueError, match="fs must be a positive"):
        welch_psd(x, fs=fs, nperseg=32)
    with pytest.raises(ValueError, match="fs must be a positive"):
        SpectralFeatures(fs=fs, features=("spectral_centroid",)).fit(x)


# ---------------------------------------------------------------- window_features
def _reference(x, width, step):
    W = np.lib.stride_tricks.sliding_window_view(x, width, axis=-1)[..., ::step, :]
    return {
        "mean": W.mean(-1), "std": W.std(-1), "var": W.var(-1), "min": W.min(-1),
        "max": W.max(-1), "rms": np.sqrt((W**2).mean(-1)), "ptp": np.ptp(W, axis=-1),
        "line_length": np.abs(np.diff(W, axis=-1)).sum(-1),
        "zero_crossings": np.diff(W < 0, axis=-1).sum(-1).astype(float),
        "skewness": scipy.stats.skew(W, axis=-1), "kurtosis": scipy.stats.kurtosis(W, axis=-1),
    }


@pytest.mark.parametrize("features", [("ptp",), ("mean", "ptp"), ("std", "ptp", "rms")])
def test_blocked_path_ptp_without_min_or_max(features):
    """On the blocked path (gcd(width, step) >= 4) ptp needs the block extremes
    even when neither min nor max is requested."""
    x = np.random.default_rng(5).normal(size=(2, 400))
    got = window_features(x, 16, 8, features=features)
    ref = _reference(x, 16, 8)
    for j, name in enumerate(features):
        np.testing.assert_allclose(got[..., j], ref[name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("feature", WINDOW_FEATURES)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_direct_kernel_rejects_non_finite_inside_a_window_for_each_single_feature(
        feature, bad):
    """With a single feature that needs no centred moments (mean, min, ...), the
    direct kernel's only finiteness check is on the window sum."""
    x = np.arange(22.0)
    x[7] = bad  # inside windows 1 and 2 (width 5, step 3: gcd 1, the direct kernel)
    with pytest.raises(ValueError, match="NaN or infinity"):
        window_features(x, 5, 3, features=(feature,))


@pytest.mark.parametrize(("width", "step"), [(10, 11), (10, 12), (8, 9)])
def test_nan_in_the_gap_between_windows_is_refused(width, step):
    """With step = width + 1 the single sample between two windows is read by no
    kernel; the NaN policy still covers it."""
    x = np.arange(100.0)
    x[width] = np.nan  # first sample after window 0, before window 1
    with pytest.raises(ValueError, match="NaN or infinity"):
        window_features(x, width, step, features=("mean", "std"))


@pytest.mark.parametrize(("width", "step", "features"), [
    (8, 4, ("mean", "std")),  # blocked kernels, the branch-free write
    (8, 4, ("mean", "std", "var", "min", "max", "rms", "ptp")),  # blocked, general write
    (8, 3, WINDOW_FEATURES),  # direct kernel
])
def test_window_features_past_the_first_chunk_of_windows(width, step, features):
    """The kernels split each row's windows into chunks of 1024; windows at
    the chunk boundaries (1023, 1024, 2047, ...) must be computed like any other."""
    x = np.random.default_rng(6).normal(size=(2, 9000))
    got = window_features(x, width, step, features=features)
    ref = _reference(x, width, step)
    assert got.shape[1] > 2 * 1024
    for j, name in enumerate(features):
        np.testing.assert_allclose(got[..., j], ref[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_transformer_shape_statistics_of_negative_rows_match_scipy():
    """Rows are scaled by their largest magnitude; scaling by the largest value
    (negative for a negative row) flips the sign of the skewness."""
    X = -np.random.default_rng(7).exponential(size=(5, 50)) - 1.0  # every sample < 0
    X[0, :25] *= -0.01  # a row whose maximum is small and positive
    got = WindowFeatures(features=("skewness", "kurtosis")).fit_transform(X)
    np.testing.assert_allclose(got[:, 0], scipy.stats.skew(X, axis=1), rtol=1e-9)
    np.testing.assert_allclose(got[:, 1], scipy.stats.kurtosis(X, axis=1), rtol=1e-9)


# ---------------------------------------------------------------- SpectralFeatures
def _two_equal_bins():
    # nperseg=2, boxcar, no detrending: every segment [1, 0] or [0, 1] has |X_0| = |X_1| = 1,
    # so the PSD's two bins (0 Hz and Nyquist, neither doubled) are exactly equal.
    X = np.tile([1.0, 0.0], (3, 8))
    return SpectralFeatures(fs=100.0, nperseg=2, window="boxcar", detrend=False,
                            features=("spectral_edge_50", "dominant_frequency")), X


def test_spectral_edge_on_an_exact_tie_is_the_lower_bin():
    """The edge is the smallest f_k with cumulative share >= q (not > q)."""
    sf, X = _two_equal_bins()
    np.testing.assert_array_equal(sf.fit_transform(X)[:, 0], 0.0)


def test_dominant_frequency_on_a_tie_is_the_lowest_bin():
    """The lowest of equally large bins, as the docstring says."""
    sf, X = _two_equal_bins()
    np.testing.assert_array_equal(sf.fit_transform(X)[:, 1], 0.0)


def test_band_whose_only_bin_is_its_upper_edge_is_warned_about():
    """Bands are half-open [lo, hi): a bin at hi is not in the band, whose power is
    then 0 and must be warned about."""
    X = np.random.default_rng(0).normal(size=(4, 100))
    bands = ((10.5, 11.0), (1.0, 5.0))  # bins 1 Hz apart: (10.5, 11) holds only 11 at hi
    with pytest.warns(UserWarning, match=r"bands \[\(10\.5, 11\.0\)\] hold no bin"):
        sf = SpectralFeatures(fs=100.0, bands=bands, nperseg=100,
                              features=("band_power",)).fit(X)
    np.testing.assert_array_equal(sf.transform(X)[:, 0], 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SpectralFeatures(fs=100.0, bands=((10.5, 11.5),), nperseg=100,
                         features=("band_power",)).fit(X)
