"""welch_psd against scipy.signal.welch, with rocket-fft and with the scipy.fft fallback."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigflow.preprocessing import _welch, welch_psd


@pytest.fixture(params=["rocket-fft", "scipy.fft"])
def backend(request, monkeypatch):
    if request.param == "rocket-fft":
        if not _welch._HAS_ROCKET:
            pytest.skip("rocket-fft is not installed")
    else:
        monkeypatch.setenv("SIGFLOW_NO_ROCKET_FFT", "1")
    return request.param


def assert_same_as_scipy(x, **kwargs):
    f, p = welch_psd(x, **kwargs)
    f_ref, p_ref = scipy.signal.welch(np.asarray(x, dtype=np.float64), **kwargs)
    assert p.shape == p_ref.shape and p.dtype == np.float64
    np.testing.assert_allclose(f, f_ref, rtol=1e-12)
    # FFT rounding is relative to the signal energy, not to each bin: bins far below
    # eps * energy are rounding noise in both implementations.
    energy = float(np.mean(np.square(x, dtype=np.float64))) if np.size(x) else 0.0
    fs = kwargs.get("fs", 1.0)
    atol = 1e-13 * energy * max(1.0, 1.0 / fs) * kwargs.get("nperseg", 256)
    np.testing.assert_allclose(p, p_ref, rtol=1e-9, atol=atol)


@st.composite
def welch_case(draw):
    n = draw(st.integers(1, 400))
    nperseg = draw(st.integers(1, n))
    noverlap = draw(st.one_of(st.none(), st.integers(0, nperseg - 1)))
    rows = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["normal", "offset", "ramp", "integers", "sine", "zeros"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = np.arange(n)
    if kind == "normal":
        x = rng.normal(size=(rows, n))
    elif kind == "offset":
        x = 1e6 + rng.normal(size=(rows, n))
    elif kind == "ramp":
        x = 3.0 * t + rng.normal(size=(rows, n))
    elif kind == "integers":
        x = rng.integers(-1000, 1000, size=(rows, n))
    elif kind == "sine":
        x = np.sin(2 * np.pi * 0.1 * t) + 1e-9 * rng.normal(size=(rows, n))
    else:
        x = np.zeros((rows, n))
    kwargs = {
        "fs": draw(st.sampled_from([1.0, 250.0, 0.37])),
        "nperseg": nperseg,
        "noverlap": noverlap,
        "window": draw(st.sampled_from(["hann", "hamming", "boxcar", ("tukey", 0.25)])),
        "detrend": draw(st.sampled_from(["constant", "linear", False])),
        "scaling": draw(st.sampled_from(["density", "spectrum"])),
    }
    return x, kwargs


# The backend fixture only sets an environment variable that must hold for every example.
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(welch_case())
def test_welch_matches_scipy(backend, case):
    x, kwargs = case
    assert_same_as_scipy(x, **kwargs)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_welch_axis_batch_shape(backend, axis):
    x = np.random.default_rng(1).normal(size=(40, 30, 50))
    assert_same_as_scipy(x, nperseg=16, noverlap=5, axis=axis)


def test_welch_dtypes_and_window_array(backend):
    rng = np.random.default_rng(2)
    x32 = rng.normal(size=(3, 300)).astype(np.float32)
    f, p = welch_psd(x32, nperseg=64)
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, scipy.signal.welch(x32.astype(np.float64), nperseg=64)[1],
                               rtol=1e-9)
    xi = rng.integers(0, 4096, size=500)  # 12-bit ADC counts
    assert_same_as_scipy(xi, nperseg=100, fs=360.0)
    win = scipy.signal.windows.kaiser(50, 8.0)
    assert_same_as_scipy(rng.normal(size=400), nperseg=50, window=win, noverlap=10)


@pytest.mark.parametrize("detrend", ["constant", "linear"])
def test_welch_large_offset_costs_no_precision(backend, detrend):
    # Detrending removes the offset, so the exact PSD is that of the signal without it
    # (``(x + c) - c`` is exact in floating point, Sterbenz). A plain running sum for the
    # mean lost about 3e-10 (relative) at an offset of 1e6.
    x = np.random.default_rng(4).normal(size=(2, 4096))
    for offset in (1e4, 1e6, 1e8):
        shifted = x + offset
        exact = scipy.signal.welch(shifted - offset, fs=360.0, nperseg=256, detrend=detrend)[1]
        p = welch_psd(shifted, fs=360.0, nperseg=256, detrend=detrend)[1]
        assert np.max(np.abs(p - exact)) / exact.max() < 1e-13, offset


def test_welch_backends_agree():
    x = np.random.default_rng(3).normal(size=(7, 1000))
    _, fast = welch_psd(x, nperseg=128, detrend="linear")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIGFLOW_NO_ROCKET_FFT", "1")
        _, slow = welch_psd(x, nperseg=128, detrend="linear")
    np.testing.assert_allclose(fast, slow, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nperseg": 101}, "larger than the signal"),
        ({"nperseg": 0}, "nperseg must be >= 1"),
        ({"nperseg": 10, "noverlap": 10}, "noverlap"),
        ({"nperseg": 10, "noverlap": -1}, "noverlap must be >= 0"),
        ({"nperseg": 10, "window": np.ones(9)}, "length nperseg"),
        ({"fs": 0.0}, "fs must be a positive"),
        ({"fs": -1.0}, "fs must be a positive"),
        ({"detrend": "quadratic"}, "detrend"),
        ({"detrend": ["linear"]}, "detrend"),
        ({"scaling": "psd"}, "scaling"),
        ({"window": np.zeros(50)}, r"sum\(window\*\*2\) is 0"),
        ({"window": np.r_[np.nan, np.ones(49)]}, "NaN or infinity"),
        ({"window": np.r_[np.ones(25), -np.ones(25)], "scaling": "spectrum"}, "sums to zero"),
        ({"axis": 1}, "out of bounds"),
    ],
)
def test_welch_errors(kwargs, match):
    kwargs = {"nperseg": 50, **kwargs}
    with pytest.raises(ValueError, match=match):
        welch_psd(np.arange(100.0), **kwargs)


@pytest.mark.parametrize("where", [0, 50, 99])  # covered by segments, and the unused tail
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_welch_rejects_non_finite(backend, where, bad):
    x = np.random.default_rng(4).normal(size=(2, 100))
    x[1, where] = bad
    with pytest.raises(ValueError, match="NaN or infinity"):
        welch_psd(x, nperseg=32, noverlap=0)  # 3 segments: samples 96..99 are unused


def test_welch_empty_time_axis_gets_the_documented_error():
    with pytest.raises(ValueError, match="larger than the signal"):
        welch_psd(np.zeros((3, 0)), nperseg=1)


def test_welch_complex_rejected():
    with pytest.raises(ValueError, match="real-valued"):
        welch_psd(np.ones(300, dtype=complex))
