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


def test_filters_refuse_parameters_changed_since_fit():
    # they kept filtering with the filter designed in fit, whatever set_params had changed
    from sigflow.preprocessing import BandpassFilter, BaselineWanderRemover, NotchFilter

    X = np.random.default_rng(4).normal(size=(3, 1000))
    for fitted, change in ((BandpassFilter(fs=250.0), {"high": 20.0}),
                           (NotchFilter(fs=250.0), {"freq": 60.0}),
                           (BaselineWanderRemover(fs=250.0), {"fs": 500.0})):
        fitted.fit(X)
        same = fitted.transform(X)
        np.testing.assert_array_equal(fitted.set_params(**fitted.get_params()).transform(X), same)
        with pytest.raises(ValueError, match="changed since fit"):
            fitted.set_params(**change).transform(X)
        assert not np.array_equal(fitted.fit(X).transform(X), same)  # fitted again: new filter


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


def test_transformers_refuse_text_in_object_arrays_and_dataframes():
    # object arrays, pandas string and categorical columns have dtype kind "O": the kind
    # alone let digit strings through, to be parsed into numbers
    import datetime

    from sigflow.preprocessing import NotchFilter, WindowFeatures

    X = np.random.default_rng(3).normal(size=(4, 64)).round(2)
    inputs = {"text or bytes": [X.astype(str).astype(object), X.astype(bytes).astype(object)],
              "dates": [np.full((4, 64), datetime.date(2020, 1, 1), dtype=object)]}
    pd = pytest.importorskip("pandas")
    inputs["text or bytes"] += [pd.DataFrame(X.astype(str)).astype("string"),
                                pd.DataFrame(X.astype(str)).astype("category")]
    mixed = pd.DataFrame(X)
    mixed[63] = mixed[63].astype(str)  # one text column among numbers
    inputs["text or bytes"].append(mixed)
    for what, cases in inputs.items():
        for case in cases:
            for transformer in (WindowFeatures(), NotchFilter(fs=250.0)):
                with pytest.raises(ValueError, match=f"X must be numeric, got {what}"):
                    transformer.fit(case)
    # numbers stored as objects or categories are numbers, as scikit-learn takes them
    expected = WindowFeatures().fit_transform(X)
    for case in (X.astype(object), pd.DataFrame(X).astype(object),
                 pd.DataFrame(X).astype("category"), pd.DataFrame(X).astype("Float64")):
        np.testing.assert_array_equal(WindowFeatures().fit_transform(case), expected)
