"""sliding_windows and window_features against numpy/scipy, on random and adversarial inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from sigflow.preprocessing import (
    WINDOW_FEATURES,
    sliding_windows,
    window_features,
    window_times,
)

SETTINGS = settings(max_examples=40, deadline=None)


def reference_features(x, width, step):
    """numpy/scipy on materialised windows; shift-invariant moments on recentred windows.

    std/var/skewness/kurtosis do not change when a constant is subtracted, and the
    recentred windows (minus their first sample) are the well-conditioned input for numpy
    and scipy, whose own one-pass mean would otherwise dominate the error for big offsets.
    """
    W = np.lib.stride_tricks.sliding_window_view(x, width, axis=-1)[..., ::step, :]
    C = W - W[..., :1]
    with np.errstate(all="ignore"):
        return {
            "mean": W.mean(-1),
            "std": C.std(-1),
            "var": C.var(-1),
            "min": W.min(-1),
            "max": W.max(-1),
            # rms**2 = mean**2 + var, without squaring the mean (1e-201 squared is 0 and
            # 1e200 squared inf; the variance of such windows under- or overflows all the same)
            "rms": np.hypot(W.mean(-1), C.std(-1)),
            "ptp": np.ptp(W, axis=-1),
            "line_length": np.abs(np.diff(W, axis=-1)).sum(-1),
            "zero_crossings": np.diff(W < 0, axis=-1).sum(-1).astype(float),
            "skewness": scipy.stats.skew(C, axis=-1),
            "kurtosis": scipy.stats.kurtosis(C, axis=-1),
        }, W


def assert_matches(x, width, step, features):
    got = window_features(x, width, step, features=features)
    ref, W = reference_features(np.asarray(x, dtype=np.float64), width, step)
    scale = np.abs(W).max(-1)
    spread = np.ptp(W, axis=-1)
    for j, name in enumerate(features):
        g, r = got[..., j], ref[name]
        if name in ("skewness", "kurtosis"):
            # Only well-conditioned windows carry information; constant ones must be NaN.
            ok = spread > 1e-6 * scale
            np.testing.assert_allclose(g[ok], r[ok], rtol=1e-9, atol=1e-9, err_msg=name)
            assert np.isnan(g[spread == 0]).all(), name
        elif name in ("std", "var"):
            atol = 1e-12 * (spread if name == "std" else spread**2)
            np.testing.assert_allclose(g, r, rtol=1e-9, atol=atol.max(), err_msg=name)
        else:
            np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-12 * scale.max(), err_msg=name)


@st.composite
def signal_and_windows(draw, ndim=1):
    n = draw(st.integers(1, 300))
    width = draw(st.integers(1, n))
    step = draw(st.integers(1, 2 * width + 3))
    kind = draw(st.sampled_from(["normal", "offset", "integers", "constant", "spiky", "tiny"]))
    shape = (n,) if ndim == 1 else (draw(st.integers(1, 3)), n)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "normal":
        x = rng.normal(size=shape)
    elif kind == "offset":  # large DC offset, small signal: the classic cancellation trap
        x = 1e8 + rng.normal(size=shape)
    elif kind == "integers":
        x = rng.integers(-5, 6, size=shape)
    elif kind == "constant":
        x = np.full(shape, draw(st.sampled_from([0.0, -3.5, 1e12])))
    elif kind == "spiky":
        x = rng.normal(size=shape) * 1e-3
        x[..., rng.integers(0, n)] = 1e6
    else:
        x = rng.normal(size=shape) * 1e-200
    return x, width, step


@SETTINGS
@given(signal_and_windows())
def test_sliding_windows_is_numpy_view(args):
    x, width, step = args
    W = sliding_windows(x, width, step)
    ref = np.lib.stride_tricks.sliding_window_view(x, width)[::step]
    np.testing.assert_array_equal(W, ref)
    assert np.shares_memory(W, x)


def test_sliding_windows_axis_and_dtype():
    x = np.arange(2 * 10 * 3, dtype=np.float32).reshape(2, 10, 3)
    W = sliding_windows(x, 4, 3, axis=1)
    assert W.shape == (2, 3, 3, 4) and W.dtype == np.float32
    np.testing.assert_array_equal(W[1, 2, 0], x[1, 6:10, 0])
    assert not W.flags.writeable


@SETTINGS
@given(signal_and_windows(), st.data())
def test_window_features_match_numpy_scipy(args, data):
    x, width, step = args
    features = tuple(data.draw(st.permutations(WINDOW_FEATURES)))[: data.draw(st.integers(1, 11))]
    assert_matches(x, width, step, features)


@SETTINGS
@given(signal_and_windows(ndim=2), st.sampled_from([(8, 4), (32, 8), (64, 16), (256, 32)]))
def test_blocked_moments_match_numpy(args, shape):
    """The blocked path (gcd(width, step) >= 4) on multichannel signals, adversarial kinds."""
    x, _, _ = args
    width, step = shape
    x = np.concatenate([x, x[..., ::-1] * 3.0] * (width // x.shape[-1] + 1), axis=-1)
    assert_matches(x, width, step, ("mean", "std", "var", "min", "max", "rms", "ptp"))
    assert_matches(x, width, step, ("std", "mean"))
    assert_matches(x, width, step, ("mean", "std"))  # the branch-free write


def test_window_features_shapes_axis_and_dtypes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 500, 2))
    F = window_features(x, 100, 50, features=("mean", "kurtosis"), axis=1)
    assert F.shape == (3, 2, 9, 2) and F.dtype == np.float64
    np.testing.assert_allclose(F[2, 1, 4, 0], x[2, 200:300, 1].mean(), rtol=1e-12)
    x32 = rng.normal(size=1000).astype(np.float32)
    np.testing.assert_allclose(
        window_features(x32, 64, 32, ("std",))[:, 0],
        sliding_windows(x32.astype(np.float64), 64, 32).std(-1),
        rtol=1e-12,
    )
    xi = rng.integers(-100, 100, size=1000, dtype=np.int16)
    np.testing.assert_allclose(
        window_features(xi, 50, 10, ("mean", "zero_crossings")),
        window_features(xi.astype(np.float64), 50, 10, ("mean", "zero_crossings")),
    )
    assert window_features(np.ones((0, 10)), 5, 1).shape == (0, 6, 11)


def test_constant_windows_give_nan_skewness_and_kurtosis():
    F = window_features(np.full(100, 7.0), 10, 5, features=("std", "skewness", "kurtosis"))
    assert (F[:, 0] == 0).all() and np.isnan(F[:, 1:]).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 11, "step": 1}, "longer than the signal"),
        ({"width": 0, "step": 1}, "width must be >= 1"),
        ({"width": 3, "step": 0}, "step must be >= 1"),
        ({"width": 3, "step": -2}, "step must be >= 1"),
        ({"width": 3.0, "step": 1}, "width must be an integer"),
        ({"width": 3, "step": 1, "features": ("mean", "median")}, "unknown window feature"),
        ({"width": 3, "step": 1, "features": ("mean", "mean")}, "must not repeat"),
        ({"width": 3, "step": 1, "features": ()}, "at least one"),
        ({"width": 3, "step": 1, "axis": 2}, "out of bounds"),
    ],
)
def test_window_features_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        window_features(np.arange(10.0), **kwargs)


@pytest.mark.parametrize(("width", "step"), [(8, 4), (5, 3)])  # blocked and direct paths
@pytest.mark.parametrize("where", [0, 12, 21])  # first window, middle, after the last window
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_window_features_reject_non_finite(width, step, where, bad):
    x = np.arange(22.0)
    x[where] = bad
    features = ("mean", "std") if width == 8 else WINDOW_FEATURES
    with pytest.raises(ValueError, match="NaN or infinity"):
        window_features(x, width, step, features=features)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_window_features_reject_non_finite_between_windows(bad):
    # step > width leaves samples that no window reads; the NaN policy covers them too
    x = np.arange(100.0)
    x[15] = bad
    with pytest.raises(ValueError, match="NaN or infinity"):
        window_features(x, 10, 20, features=("mean", "std"))


@pytest.mark.parametrize("shape", [(0,), (3, 0)])
def test_empty_time_axis_gets_the_documented_error(shape):
    with pytest.raises(ValueError, match="longer than the signal"):
        window_features(np.zeros(shape), 1, 1)


def test_window_features_step_beyond_int64():
    x = np.arange(10.0)
    F = window_features(x, 4, 10**20, features=("mean",))
    np.testing.assert_array_equal(F, [[1.5]])
    with pytest.raises(ValueError, match="NaN or infinity"):  # the unread tail is still checked
        window_features(np.where(x == 9, np.nan, x), 4, 10**20, features=("mean",))


def test_sliding_windows_reject_object_arrays():
    with pytest.raises(ValueError, match="dtype object"):
        sliding_windows(np.array([1, 2, 3], dtype=object), 2, 1)


def test_window_errors_for_sliding_windows_and_complex():
    with pytest.raises(ValueError, match="longer than the signal"):
        sliding_windows(np.arange(5), 6, 1)
    with pytest.raises(ValueError, match="step must be >= 1"):
        sliding_windows(np.arange(5), 2, 0)
    with pytest.raises(ValueError, match="real-valued"):
        window_features(np.ones(10, dtype=complex), 2, 1)


@SETTINGS
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 50),
       st.sampled_from([1.0, 250.0, 360.0, 0.5]))
def test_window_times_are_the_times_of_the_windows_rows(n, width, step, fs):
    # a signal of its own sample times, cut by sliding_windows: each window holds the times
    # window_times gives for its start, middle and end
    if width > n:
        with pytest.raises(ValueError, match="longer than the signal"):
            window_times(n, width, step, fs)
        return
    W = sliding_windows(np.arange(n) / fs, width, step)
    np.testing.assert_allclose(window_times(n, width, step, fs), W[:, 0], rtol=1e-12)
    np.testing.assert_allclose(window_times(n, width, step, fs, "end"), W[:, -1], rtol=1e-12)
    np.testing.assert_allclose(window_times(n, width, step, fs, where="center"), W.mean(axis=1),
                               rtol=1e-12, atol=1e-12)
    assert len(window_features(np.zeros(n), width, step, ("mean",))) == len(W)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_samples": 0}, "n_samples must be >= 1"),
    ({"width": 2.5}, "width must be an integer"),
    ({"step": 0}, "step must be >= 1"),
    ({"fs": 0.0}, "fs must be a positive finite number"),
    ({"fs": float("nan")}, "fs must be a positive finite number"),
    ({"fs": True}, "fs must be a positive finite number"),
    ({"where": "middle"}, "where must be one of"),
    ({"where": ["start"]}, "where must be one of"),
])
def test_window_times_errors(kwargs, match):
    args = {"n_samples": 100, "width": 10, "step": 5, "fs": 10.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        window_times(**args)


def test_channels_first_windows_side_by_side():
    # the README's recipe for (n_channels, n_samples) input keeps each row one time span
    X = np.arange(2 * 1000).reshape(2, 1000)
    rows = sliding_windows(X, 100, 50, axis=1).swapaxes(0, 1).reshape(19, -1)
    start = window_times(1000, 100, 50).astype(int)
    np.testing.assert_array_equal(rows[:, 0], start)
    np.testing.assert_array_equal(rows[:, 100], 1000 + start)
