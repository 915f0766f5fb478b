"""sigflow.preprocessing: band edges, short slopes, the NaN check after the last window and
the shape statistics of a tiny spread, against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import scipy.stats


# ---------------- preprocessing
def test_band_edges_on_bins_are_half_open():
    from sigflow.preprocessing import SpectralFeatures

    fs = 100.0
    X = np.random.default_rng(0).normal(size=(3, 400))
    sf = SpectralFeatures(fs=fs, bands=((1.0, 4.0), (4.0, 8.0)), nperseg=100,
                          features=("band_power",)).fit(X)
    f, P = scipy.signal.welch(X, fs=fs, nperseg=100)
    ref = np.column_stack([P[:, (f >= lo) & (f < hi)].sum(1) * (fs / 100) for lo, hi in
                           ((1.0, 4.0), (4.0, 8.0))])
    np.testing.assert_allclose(sf.transform(X), ref, rtol=1e-10)


def test_slope_through_exactly_two_bins():
    from sigflow.preprocessing import SpectralFeatures

    X = np.random.default_rng(1).normal(size=(4, 64))
    got = SpectralFeatures(fs=100.0, nperseg=4, features=("spectral_slope",)).fit_transform(X)
    f, P = scipy.signal.welch(X, fs=100.0, nperseg=4)
    ref = [np.polyfit(np.log10(f[1:]), np.log10(p[1:]), 1)[0] for p in P]
    np.testing.assert_allclose(got[:, 0], ref, rtol=1e-9)


def test_nan_at_the_first_unread_sample_is_refused():
    from sigflow.preprocessing import window_features

    x = np.arange(22.0)
    x[20] = np.nan  # width 8, step 3: windows end at 19, samples 20 and 21 unread
    with pytest.raises(ValueError, match="NaN or infinity"):
        window_features(x, 8, 3, features=("mean", "zero_crossings"))


def test_skewness_of_tiny_variation_on_a_large_offset():
    from sigflow.preprocessing import window_features

    rng = np.random.default_rng(0)
    x = 1e6 + 1e-7 * rng.exponential(size=400)
    got = window_features(x, 100, 100, features=("skewness",))[:, 0]
    W = x.reshape(4, 100)
    ref = scipy.stats.skew(W - W.mean(axis=1, keepdims=True), axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-3)




@pytest.mark.parametrize("width,step", [(8, 4), (8, 3)])  # the blocked and the direct kernel
def test_overflowing_window_sums_raise_on_both_kernels(width, step):
    from sigflow.preprocessing import window_features

    x = np.tile([1e200, -1e200], 16)
    with pytest.raises(ValueError, match="sums over its windows overflow"):
        window_features(x, width, step)
    # a large mean with a small spread: rms is the mean, not inf (mean**2 overflowed)
    big = np.full(64, 1e200)
    np.testing.assert_allclose(window_features(big, width, step, features=("rms",)), 1e200)


def test_spectral_features_refuse_a_segment_length_changed_since_fit():
    from sigflow.preprocessing import SpectralFeatures

    X = np.random.default_rng(2).normal(size=(3, 512))
    sf = SpectralFeatures(fs=100.0, nperseg=64).fit(X)
    with pytest.raises(ValueError, match="changed since fit"):
        sf.set_params(nperseg=None).transform(X)  # None means 256 at fit, not the fitted 64


@pytest.mark.parametrize("dtype", ["datetime64[s]", "timedelta64[ms]", "<U3"])
def test_transformers_refuse_dates_and_text_like_the_functions(dtype):
    # validate_data(dtype=float64) turned dates and digit strings into numbers silently,
    # where window_features, welch_psd and the filters refuse them
    from sigflow.preprocessing import BandpassFilter, SpectralFeatures, WindowFeatures

    X = np.arange(3 * 64).reshape(3, 64).astype(dtype)
    for transformer in (WindowFeatures(), SpectralFeatures(fs=100.0),
                        BandpassFilter(fs=100.0, low=1.0, high=20.0)):
        with pytest.raises(ValueError, match="X must be numeric"):
            transformer.fit(X)
    fitted = WindowFeatures().fit(np.zeros((3, 64)))
    with pytest.raises(ValueError, match="X must be numeric"):
        fitted.transform(X)
