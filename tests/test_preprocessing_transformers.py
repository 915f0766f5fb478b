"""WindowFeatures, SpectralFeatures, the filters: definitions, scipy agreement, sklearn checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from sigflow.preprocessing import (
    SPECTRAL_FEATURES,
    WINDOW_FEATURES,
    BandpassFilter,
    BaselineWanderRemover,
    NotchFilter,
    SpectralFeatures,
    WindowFeatures,
    bandpass_filter,
    notch_filter,
    remove_baseline_wander,
    sliding_windows,
    welch_psd,
    window_features,
)

BANDS = ((0.5, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0), (30.0, 45.0))


@parametrize_with_checks(
    [
        WindowFeatures(),
        WindowFeatures(features=("kurtosis", "mean"), constant_fill=None),
        SpectralFeatures(fs=100.0),
        SpectralFeatures(fs=100.0, bands=((0.0, 25.0), (25.0, 50.0)), nperseg=2,
                         features=("relative_band_power", "spectral_slope")),
        BandpassFilter(fs=100.0),
        BaselineWanderRemover(fs=100.0),
        NotchFilter(fs=250.0),  # the default 50 Hz notch needs fs > 100
    ]
)
# scikit-learn's check data are windows of a few samples, whose coarse bins leave the EEG
# bands empty: the warning about it is right there and not what these checks are about
@pytest.mark.filterwarnings("ignore:bands .* hold no bin:UserWarning")
def test_sklearn_compatible(estimator, check):
    check(estimator)


def row_reference(P, f, bands):
    """One row's features, written out loop by loop from the SpectralFeatures docstring."""
    df = f[1] - f[0]
    total = P.sum() * df
    p = P / P.sum()
    out = {}
    out["band_power"] = [sum(P[k] * df for k in range(len(f)) if lo <= f[k] < hi)
                         for lo, hi in bands]
    out["relative_band_power"] = [b / total for b in out["band_power"]]
    out["spectral_entropy"] = -sum(q * np.log(q) for q in p if q > 0) / np.log(len(p))
    centroid = float(np.dot(f, p))
    out["spectral_centroid"] = centroid
    out["spectral_spread"] = np.sqrt(sum((f[k] - centroid) ** 2 * p[k] for k in range(len(f))))
    for q in (50, 90, 95):
        cum = 0.0
        for k in range(len(f)):
            cum += p[k]
            if cum >= q / 100:
                break
        out[f"spectral_edge_{q}"] = f[k]
    out["dominant_frequency"] = f[int(np.argmax(P))]
    out["spectral_flatness"] = np.exp(np.mean(np.log(P))) / np.mean(P) if (P > 0).all() else 0.0
    keep = (f > 0) & (P > 0)
    out["spectral_slope"] = np.polyfit(np.log10(f[keep]), np.log10(P[keep]), 1)[0]
    return np.concatenate([np.atleast_1d(out[name]) for name in SPECTRAL_FEATURES])


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(64, 600),
    colour=st.sampled_from([0.0, 1.0, 2.0]),
    nperseg=st.sampled_from([None, 64]),
)
def test_spectral_features_follow_their_definitions(seed, n, colour, nperseg):
    rng = np.random.default_rng(seed)
    fs = 100.0
    white = rng.normal(size=(4, n))
    # Coloured noise 1/f**colour (in power) by spectral shaping.
    spec = np.fft.rfft(white, axis=1)
    f_full = np.fft.rfftfreq(n, 1 / fs)
    spec[:, 1:] /= f_full[1:] ** (colour / 2)
    X = np.fft.irfft(spec, n=n, axis=1) + 3.0
    sf = SpectralFeatures(fs=fs, bands=BANDS, nperseg=nperseg)
    F = sf.fit_transform(X)
    f, P = scipy.signal.welch(X, fs=fs, nperseg=min(256, n) if nperseg is None else nperseg)
    ref = np.stack([row_reference(P[i], f, BANDS) for i in range(len(X))])
    assert F.shape == ref.shape == (4, len(sf.get_feature_names_out()))
    np.testing.assert_allclose(F, ref, rtol=1e-8, atol=1e-10)


def test_spectral_features_on_sines():
    fs, n = 256.0, 1024
    t = np.arange(n) / fs
    X = np.stack([2.0 * np.sin(2 * np.pi * f0 * t) for f0 in (2.0, 6.0, 10.0, 20.0, 40.0)])
    sf = SpectralFeatures(fs=fs).fit(X)
    F = sf.transform(X)
    names = list(sf.get_feature_names_out())
    col = {name: F[:, i] for i, name in enumerate(names)}
    np.testing.assert_allclose(col["dominant_frequency"], [2, 6, 10, 20, 40])
    # Each sine sits in its own default band with nearly all the power A**2 / 2 = 2.
    band_cols = [c for c in names if c.startswith("band_power_")]
    rel = np.stack([col["relative_" + c] for c in band_cols], axis=1)
    np.testing.assert_array_equal(np.argmax(rel, axis=1), np.arange(5))
    assert (rel.max(axis=1) > 0.95).all()
    np.testing.assert_allclose(np.stack([col[c] for c in band_cols], 1).max(1), 2.0, rtol=0.05)
    assert (col["spectral_entropy"] < 0.3).all() and (col["spectral_flatness"] < 0.01).all()
    np.testing.assert_allclose(col["spectral_centroid"], [2, 6, 10, 20, 40], atol=0.5)
    assert names[:2] == ["band_power_0.5_4", "band_power_4_8"]


def test_spectral_features_edge_cases():
    X = np.vstack([np.full(64, 5.0), np.random.default_rng(0).normal(size=64)])
    F = SpectralFeatures(fs=100.0).fit_transform(X)
    assert np.isfinite(F).all()
    np.testing.assert_array_equal(F[0], 0.0)  # zero power after detrending: all zeros
    Xi = np.random.default_rng(1).integers(-50, 50, size=(5, 128))
    np.testing.assert_allclose(SpectralFeatures(fs=100.0).fit_transform(Xi),
                               SpectralFeatures(fs=100.0).fit_transform(Xi.astype(float)))
    X32 = np.random.default_rng(2).normal(size=(3, 100)).astype(np.float32)
    assert SpectralFeatures(fs=100.0).fit_transform(X32).dtype == np.float64


def test_spectral_features_with_a_single_bin_use_the_documented_bin_width():
    # nperseg=1: one bin at 0 Hz, df = fs / nperseg; all the power is in it
    X = np.random.default_rng(3).normal(size=(4, 16)) + 2.0
    fs = 10.0
    sf = SpectralFeatures(fs=fs, bands=((0.0, 5.0),), nperseg=1, detrend=False)
    F = sf.fit_transform(X)
    col = dict(zip(sf.get_feature_names_out(), F.T))
    _, P = scipy.signal.welch(X, fs=fs, nperseg=1, detrend=False)
    np.testing.assert_allclose(col["band_power_0_5"], P[:, 0] * fs, rtol=1e-12)
    np.testing.assert_allclose(col["relative_band_power_0_5"], 1.0, rtol=1e-12)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"fs": 0.0}, "fs must be a positive"),
        ({"fs": 50.0}, "fs / 2"),  # default bands reach 45 Hz
        ({"fs": 100.0, "bands": ((10.0, 5.0),)}, "lo < hi"),
        ({"fs": 100.0, "bands": ()}, "non-empty"),
        ({"fs": 100.0, "bands": ((1.0, 2.0), (1.0, 2.0))}, "must not repeat"),
        ({"fs": 100.0, "bands": ((0.1 + 0.2, 5.0), (0.3, 5.0))}, "must not repeat"),
        ({"fs": 100.0, "features": ("spectral_kurtosis",)}, "features must be"),
        ({"fs": 100.0, "nperseg": 65}, "nperseg must be in"),
        ({"fs": 100.0, "nperseg": 32, "noverlap": 32}, "noverlap"),
        ({"fs": 100.0, "detrend": "median"}, "detrend"),
    ],
)
def test_spectral_features_errors(params, match):
    X = np.random.default_rng(0).normal(size=(3, 64))
    with pytest.raises(ValueError, match=match):
        SpectralFeatures(**params).fit(X)


def test_spectral_feature_names_tell_close_bands_apart():
    X = np.random.default_rng(0).normal(size=(3, 64))
    sf = SpectralFeatures(fs=100.0, features=("band_power",),
                          bands=((10.00001, 20.0), (10.000011, 20.0))).fit(X)
    names = sf.get_feature_names_out()
    assert len(set(names)) == 2, names
    assert SpectralFeatures(fs=100.0).fit(X).get_feature_names_out()[0] == "band_power_0.5_4"


def test_spectral_features_low_rate_without_band_features():
    # The default bands reach 45 Hz; at 50 Hz they only matter to the band powers.
    fs = 50.0
    t = np.arange(256) / fs
    X = np.stack([np.sin(2 * np.pi * f * t) for f in (3.125, 9.375)])
    sf = SpectralFeatures(fs=fs, features=("dominant_frequency", "spectral_centroid")).fit(X)
    np.testing.assert_allclose(sf.transform(X)[:, 0], [3.125, 9.375])
    bad = r"fs / 2 = 25; got \[\(13\.0, 30\.0\), \(30\.0, 45\.0\)\]"  # plain floats
    with pytest.raises(ValueError, match=bad):
        SpectralFeatures(fs=fs, features=("relative_band_power",)).fit(X)


def test_spectral_features_rejects_nan_and_wrong_width():
    X = np.random.default_rng(0).normal(size=(3, 64))
    sf = SpectralFeatures(fs=100.0).fit(X)
    with pytest.raises(ValueError, match="64 features"):
        sf.transform(X[:, :32])
    X[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sf.transform(X)


FS = 360.0
T = np.arange(3600) / FS


@pytest.mark.parametrize(
    ("func", "transformer", "sos"),
    [
        (lambda x, **k: bandpass_filter(x, FS, 0.5, 40.0, **k), BandpassFilter(FS),
         scipy.signal.butter(4, [0.5, 40.0], "bandpass", fs=FS, output="sos")),
        # an odd order: one section has zeros in its coefficients, which scipy's default
        # padding leaves out
        (lambda x, **k: remove_baseline_wander(x, FS, order=3, **k),
         BaselineWanderRemover(FS, order=3),
         scipy.signal.butter(3, 0.5, "highpass", fs=FS, output="sos")),
        (lambda x, **k: remove_baseline_wander(x, FS, **k), BaselineWanderRemover(FS),
         scipy.signal.butter(2, 0.5, "highpass", fs=FS, output="sos")),
        (lambda x, **k: notch_filter(x, FS, 60.0, **k), NotchFilter(FS, freq=60.0),
         scipy.signal.tf2sos(*scipy.signal.iirnotch(60.0, 30.0, fs=FS))),
    ],
)
def test_filters_match_scipy_sosfiltfilt(func, transformer, sos):
    X = np.random.default_rng(0).normal(size=(3, T.size)) + 0.3 * np.sin(2 * np.pi * 0.2 * T)
    ref = scipy.signal.sosfiltfilt(sos, X, axis=1)
    np.testing.assert_allclose(func(X), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(func(X.T, axis=0), ref.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(clone(transformer).fit_transform(X), ref, rtol=1e-10, atol=1e-12)


def test_filters_do_their_job():
    ecg_like = np.sin(2 * np.pi * 8.0 * T)
    wander = 1.5 * np.sin(2 * np.pi * 0.05 * T) + 0.2 * T
    mains = 0.5 * np.sin(2 * np.pi * 50.0 * T)
    inner = slice(720, -720)
    y = remove_baseline_wander(ecg_like + wander, FS)
    assert np.abs(y[inner] - ecg_like[inner]).max() < 0.05
    assert np.abs(notch_filter(ecg_like + mains, FS, 50.0)[inner] - ecg_like[inner]).max() < 0.02
    y = bandpass_filter(ecg_like + wander + 0.5 * np.sin(2 * np.pi * 120.0 * T), FS, 1.0, 40.0)
    assert np.abs(y[inner] - ecg_like[inner]).max() < 0.05
    pipe = make_pipeline(BaselineWanderRemover(FS), NotchFilter(FS), SpectralFeatures(FS))
    assert pipe.fit_transform(np.vstack([ecg_like + wander] * 3)).shape[0] == 3


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: bandpass_filter(x, FS, 40.0, 0.5), "low < high"),
        (lambda x: bandpass_filter(x, FS, 0.5, 180.0), "fs / 2"),
        (lambda x: bandpass_filter(x, FS, 0.0, 40.0), "0 < low"),
        (lambda x: bandpass_filter(x, FS, 0.5, 40.0, order=0), "order must be >= 1"),
        (lambda x: remove_baseline_wander(x, FS, cutoff=-1.0), "cutoff"),
        (lambda x: remove_baseline_wander(x, 0.0), "fs must be a positive"),
        (lambda x: notch_filter(x, FS, freq=200.0), "freq"),
        (lambda x: notch_filter(x, FS, quality=0.0), "quality"),
        (lambda x: notch_filter(x, FS, freq="50"), "real number"),
        (lambda x: bandpass_filter(x[:0], FS, 0.5, 40.0), "no samples"),
        (lambda x: notch_filter(np.zeros((3, 0)), FS), "no samples"),
        (lambda x: bandpass_filter(np.where(T < 1, np.nan, x), FS, 0.5, 40.0), "NaN"),
        (lambda x: BandpassFilter(FS, low=50.0, high=10.0).fit(x[None]), "low < high"),
        (lambda x: NotchFilter(FS, freq=500.0).fit(x[None]), "freq"),
        (lambda x: BaselineWanderRemover(FS, order=1.5).fit(x[None]), "order must be an int"),
    ],
)
def test_filter_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.sin(T))


def test_filters_short_rows_and_dtypes():
    X = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    for est in (BandpassFilter(100.0), BaselineWanderRemover(100.0), NotchFilter(250.0)):
        Y = est.fit_transform(X)
        assert Y.shape == X.shape and Y.dtype == np.float64 and np.isfinite(Y).all()
    Xi = np.arange(50).reshape(1, 50) % 7
    np.testing.assert_allclose(NotchFilter(250.0).fit_transform(Xi),
                               NotchFilter(250.0).fit_transform(Xi.astype(float)))


@pytest.mark.parametrize(
    "filt",
    [BandpassFilter(fs=128.0, low=1.0, high=40.0), BaselineWanderRemover(fs=128.0),
     NotchFilter(fs=128.0, freq=50.0)],
    ids=lambda f: type(f).__name__,
)
def test_filters_keep_feature_names_and_support_set_output(filt):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 256))
    names = np.array([f"t{i}" for i in range(256)], dtype=object)
    # one-to-one on columns: the names go through unchanged
    fitted = clone(filt).fit(pd.DataFrame(X, columns=names))
    assert list(fitted.get_feature_names_out()) == list(names)
    assert list(clone(filt).fit(X).get_feature_names_out()) == [f"x{i}" for i in range(256)]
    out = clone(filt).set_output(transform="pandas").fit_transform(pd.DataFrame(X, columns=names))
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(names)
    np.testing.assert_allclose(out.to_numpy(), clone(filt).fit_transform(X))
    # in a Pipeline with SpectralFeatures
    features = ("dominant_frequency", "spectral_entropy")
    pipe = make_pipeline(clone(filt), SpectralFeatures(fs=128.0, features=features))
    plain = pipe.fit_transform(X)
    assert list(pipe.get_feature_names_out()) == list(features)
    df = pipe.set_output(transform="pandas").fit_transform(X)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == list(features)
    np.testing.assert_allclose(df.to_numpy(), plain)


def test_window_features_transformer_matches_the_function():
    rng = np.random.default_rng(0)
    W = rng.normal(3.0, 2.0, size=(40, 64))
    W[5] = 7.0  # a flat window
    W[6, :] = np.r_[np.zeros(63), 1.0]
    ref = window_features(W, 64, 1)[:, 0, :]
    assert np.isnan(ref[5, [WINDOW_FEATURES.index("skewness"),
                            WINDOW_FEATURES.index("kurtosis")]]).all()
    F = WindowFeatures().fit(W).transform(W)
    others = np.arange(40) != 5
    np.testing.assert_allclose(F[others], ref[others], rtol=1e-12, atol=1e-12)
    expected = np.where(np.isnan(ref[5]), 0.0, ref[5])
    np.testing.assert_allclose(F[5], expected, rtol=1e-12, atol=1e-12)
    kept = WindowFeatures(constant_fill=None).fit_transform(W)
    np.testing.assert_array_equal(np.isnan(kept), np.isnan(ref))
    filled = WindowFeatures(features=("kurtosis",), constant_fill=-3.0).fit_transform(W)
    assert filled[5, 0] == -3.0
    assert list(WindowFeatures().fit(W).get_feature_names_out()) == list(WINDOW_FEATURES)


@pytest.mark.parametrize("scale", [1e-160, 1e90, 1e150])
def test_window_features_transformer_shape_statistics_at_any_scale(scale):
    # m4 overflows (1e90) or var**2 underflows (1e-160) in the plain statistics, which then
    # are NaN; filled, a row with a clear spread got skewness and kurtosis 0.
    row = np.array([[1.0, -1.0, 0.0, 0.3]])
    ref = WindowFeatures(("skewness", "kurtosis")).fit_transform(row)
    np.testing.assert_allclose(ref, [[-0.29593137, -1.06280915]], rtol=1e-7)
    got = WindowFeatures(("std", "skewness", "kurtosis")).fit_transform(scale * row)
    np.testing.assert_allclose(got[:, 1:], ref, rtol=1e-12)
    assert got[0, 0] == pytest.approx(0.71894019 * scale, rel=1e-7)


@pytest.mark.parametrize(("params", "match"), [
    ({"constant_fill": float("nan")}, "constant_fill must be None or a finite number"),
    ({"constant_fill": "zero"}, "constant_fill must be None or a finite number"),
    ({"features": ("mean", "median")}, "unknown window feature"),
])
def test_window_features_transformer_errors(params, match):
    with pytest.raises(ValueError, match=match):
        WindowFeatures(**params).fit(np.ones((3, 8)))


def test_a_flat_window_reaches_the_detector():
    # The windows a detector should flag (a flat-lined lead) must not stop the pipeline.
    from sigflow import FlowAnomalyDetector

    rng = np.random.default_rng(1)
    t = np.arange(40_000) / 100.0
    x = np.sin(2 * np.pi * 1.2 * t) + 0.1 * rng.normal(size=t.size)
    x[30_000:30_400] = 0.5  # flat line
    from sigflow.preprocessing import sliding_windows

    W = sliding_windows(x, 200, 200)
    pipe = make_pipeline(
        WindowFeatures(features=("std", "skewness", "kurtosis", "line_length")),
        FlowAnomalyDetector(n_blocks=2, hidden_layer_sizes=(16, 16), max_iter=60,
                            finetune_iter=0, random_state=0),
    ).fit(W[:120])
    score = pipe.score_samples(W)
    assert np.isfinite(score).all()
    assert np.argsort(score)[:2].tolist() in ([150, 151], [151, 150])


@pytest.mark.parametrize("make", [
    lambda: WindowFeatures(),
    lambda: SpectralFeatures(fs=100.0, nperseg=64),
])
def test_transformers_work_in_row_chunks_with_the_same_numbers(make, monkeypatch):
    # Overlapping windows (a view) were copied whole, with temporaries several times that:
    # 2.5 GB for a 1e7-sample signal in windows of 256 every 8 samples. Row chunks bound it.
    from sigflow.preprocessing import _validation

    signal = np.random.default_rng(3).normal(size=20_000).cumsum()
    windows = sliding_windows(signal, 256, 8)
    whole = make().fit(windows).transform(windows)
    monkeypatch.setattr(_validation, "TRANSFORM_CHUNK", 256 * 37)  # 37 rows per chunk
    chunked = make().fit(windows).transform(windows)
    np.testing.assert_allclose(chunked, whole, rtol=1e-13, atol=0)  # BLAS blocking: ulps
    assert chunked.shape[0] == windows.shape[0] > 37


def test_spectral_features_refuse_a_sampling_rate_changed_since_fit():
    # transform read fs live while freqs_ and the segment length came from fit: after
    # set_params(fs=500) a 10 Hz tone still came out at 10 Hz
    x = np.sin(2 * np.pi * 10 * np.arange(512) / 250.0)[None].repeat(3, axis=0)
    sf = SpectralFeatures(fs=250.0, nperseg=256, features=("dominant_frequency",)).fit(x)
    assert sf.transform(x)[0, 0] == pytest.approx(10.0, abs=1.0)
    with pytest.raises(ValueError, match="changed since fit"):
        sf.set_params(fs=500.0).transform(x)
    assert sf.fit(x).transform(x)[0, 0] == pytest.approx(20.0, abs=2.0)


@pytest.mark.parametrize("fs", [True, "250", b"250"])
def test_a_sampling_rate_must_be_a_number(fs):
    x = np.zeros((2, 64))
    with pytest.raises(ValueError, match="fs must be a positive number"):
        SpectralFeatures(fs=fs).fit(x)
    with pytest.raises(ValueError, match="fs must be a positive number"):
        welch_psd(x, fs=fs, nperseg=32)


def test_finite_samples_whose_window_sums_overflow_raise():
    # a shifted sum of 1e308 and -1e308 overflowed to -inf, and the NaN check found nothing
    # to report: a silently wrong mean
    x = np.zeros(100)
    x[:2] = [1e308, -1e308]
    with pytest.raises(ValueError, match="sums over its windows overflow"):
        window_features(x, 100, 1)
    mean = window_features(x / 1e10, 100, 1, features=("mean",))  # 1e298: no overflow
    assert abs(float(mean[0, 0])) <= 1e-12 * 1e298


# --- several channels per row ----------------------------------------------------------------


def _two_channel_windows(n_windows=40, width=250, fs=250.0):
    """Windows of a 2-channel signal, side by side in each row, and each channel's windows."""
    rng = np.random.default_rng(7)
    t = np.arange(n_windows * width) / fs
    X = np.column_stack([np.sin(2 * np.pi * 7 * t) + 0.3 * rng.normal(size=t.size),
                         np.sin(2 * np.pi * 21 * t) + np.sin(2 * np.pi * 0.3 * t)])
    W = sliding_windows(X, width=width, step=width // 2, axis=0)  # (n, 2, width)
    return W.reshape(len(W), -1), [np.ascontiguousarray(W[:, c]) for c in range(2)]


@pytest.mark.parametrize("make", [
    lambda c: WindowFeatures(n_channels=c),
    lambda c: SpectralFeatures(fs=250.0, n_channels=c, nperseg=128),
    lambda c: BandpassFilter(fs=250.0, low=1.0, high=40.0, n_channels=c),
    lambda c: BaselineWanderRemover(fs=250.0, n_channels=c),
    lambda c: NotchFilter(fs=250.0, freq=50.0, n_channels=c),
])
def test_several_channels_per_row_are_each_channel_on_its_own(make):
    # a row holding two channels' windows gives each channel's output side by side, as if
    # each channel had been transformed alone (a filter does not run across the join)
    rows, channels = _two_channel_windows()
    both = make(2).fit(rows)
    alone = [make(1).fit(ch) for ch in channels]
    expected = np.hstack([t.transform(ch) for t, ch in zip(alone, channels)])
    np.testing.assert_allclose(both.transform(rows), expected, rtol=1e-12, atol=1e-12)
    if not isinstance(both, (BandpassFilter, BaselineWanderRemover, NotchFilter)):
        names = alone[0].get_feature_names_out()
        assert list(both.get_feature_names_out()) == (
            [f"ch0_{n}" for n in names] + [f"ch1_{n}" for n in names])
    else:  # one-to-one: the input columns
        assert len(both.get_feature_names_out()) == rows.shape[1]
    with pytest.raises(ValueError, match="do not split into n_channels=3"):
        make(3).fit(rows[:, :-1])
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="n_channels must be a positive integer"):
            make(bad).fit(rows)


def test_spectral_features_segment_length_is_per_channel():
    rows, _ = _two_channel_windows(width=100)
    assert SpectralFeatures(fs=250.0, n_channels=2).fit(rows).nperseg_ == 100  # not 200
    with pytest.raises(ValueError, match=r"nperseg must be in \[1, 100\]"):
        SpectralFeatures(fs=250.0, n_channels=2, nperseg=150).fit(rows)


def test_bands_without_a_bin_are_warned_about_in_fit():
    # 1,000 Hz in windows of 256 samples: bins 3.9 Hz apart, so (8.5, 11.5) holds none and
    # its power would be 0 for every window without a word
    X = np.random.default_rng(0).normal(size=(4, 256))
    bands = ((0.5, 4.0), (8.5, 11.5), (12.0, 30.0))
    with pytest.warns(UserWarning, match=r"bands \[\(8\.5, 11\.5\)\] hold no bin.*"
                      r"3\.906 Hz apart \(nperseg=256 at fs=1000\)") as rec:
        sf = SpectralFeatures(fs=1000.0, bands=bands).fit(X)
    assert len(rec) == 1 and rec[0].filename == __file__
    assert np.all(sf.transform(X)[:, 1] == 0.0)  # what the warning says
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # enough bins (nperseg = 2 fs), or no band feature asked for: no warning
        SpectralFeatures(fs=100.0, bands=bands, nperseg=200).fit(
            np.random.default_rng(0).normal(size=(4, 200)))
        SpectralFeatures(fs=1000.0, bands=bands, features=("spectral_centroid",)).fit(X)


def test_default_bands_above_nyquist_say_how_to_go_on():
    X = np.random.default_rng(0).normal(size=(4, 64))
    with pytest.raises(ValueError, match=r"hi <= fs / 2 = 32.*\(30.0, 45.0\).*default bands "
                       r"are EEG's.*pass bands="):
        SpectralFeatures(fs=64.0).fit(X)
    with pytest.raises(ValueError, match=r"hi <= fs / 2 = 32") as err:
        SpectralFeatures(fs=64.0, bands=((1.0, 40.0),)).fit(X)
    assert "default bands" not in str(err.value)
    SpectralFeatures(fs=64.0, features=("spectral_centroid",)).fit(X)
