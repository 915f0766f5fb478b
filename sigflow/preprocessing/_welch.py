"""Welch power spectral density, parallel over rows, matching ``scipy.signal.welch``."""

from __future__ import annotations

import importlib.util
import math
import os

import numba as nb
import numpy as np
import scipy.fft
import scipy.signal

from ._parallel import ForkAwareKernel
from ._validation import _as_real_signal, _check_int, _raise_nonfinite, _rows_last

# FFT back-end, chosen by measurement (benchmarks/preprocessing.py, 2-core AMD EPYC shared
# with other jobs, 20,000 x 1,024 rows, nperseg=256; see benchmarks/RESULTS.md):
# scipy.signal.welch 0.8-2.5 s; chunked scipy.fft.rfft (all threads) between two serial
# numba kernels (detrend + window, |X|^2 averaging) 0.21-0.27 s; rocket-fft's np.fft.rfft
# called inside one numba prange loop over rows 0.08-0.16 s. rocket-fft wins because each
# row's segments go from memory through detrend, window, FFT and averaging while they sit
# in cache, with no large temporary and no round trip through Python. Both back-ends use
# pocketfft/DUCC0 and agree to rounding. rocket-fft is a declared dependency; the chunked
# scipy.fft path is the fallback when it is missing (or when SIGFLOW_NO_ROCKET_FFT=1, which
# the tests use to exercise it).
_HAS_ROCKET = importlib.util.find_spec("rocket_fft") is not None
_FALLBACK_ROWS = 512  # rows per scipy.fft call in the fallback (bounded temporary memory)


def _use_rocket():
    return _HAS_ROCKET and os.environ.get("SIGFLOW_NO_ROCKET_FFT", "") not in ("1", "true")


@nb.njit(cache=True, inline="always")
def _prepare_segment(xr, start, nperseg, win, detrend, seg, tt, tt_ss):
    """Copy one segment into ``seg``: detrended (0 none, 1 constant, 2 linear) and windowed."""
    src = xr[start : start + nperseg]
    if detrend == 0:
        for k in range(nperseg):
            seg[k] = src[k] * win[k]
        return
    # The mean as the first sample plus the mean difference from it: a large offset
    # (a DC level far above the signal's variation) then costs no precision.
    ref = src[0]
    mean = 0.0
    for k in range(nperseg):
        mean += src[k] - ref
    mean /= nperseg
    if detrend == 1:
        for k in range(nperseg):
            seg[k] = ((src[k] - ref) - mean) * win[k]
        return
    # Least-squares line a + b * (t - tbar): b = sum((t - tbar) * x) / sum((t - tbar)**2).
    num = 0.0
    for k in range(nperseg):
        num += tt[k] * ((src[k] - ref) - mean)
    slope = num / tt_ss if tt_ss > 0.0 else 0.0
    for k in range(nperseg):
        seg[k] = ((src[k] - ref) - mean - slope * tt[k]) * win[k]


def _make_welch_rocket(parallel):
    loop = nb.prange if parallel else range  # serial in forked children

    @nb.njit(parallel=parallel, cache=True)
    def _welch_rocket(x, nperseg, hop, n_seg, win, detrend, scale, out):
        """Welch PSD of every row with rocket-fft's rfft inside the parallel loop."""
        n_rows = x.shape[0]
        n_freq = out.shape[1]
        tt = np.arange(nperseg) - (nperseg - 1) / 2.0
        tt_ss = np.sum(tt * tt)
        for r in loop(n_rows):
            xr = x[r]
            segs = np.empty((n_seg, nperseg))
            for s in range(n_seg):
                _prepare_segment(xr, s * hop, nperseg, win, detrend, segs[s], tt, tt_ss)
            spec = np.fft.rfft(segs)  # one batched call per row: all of its segments
            o = out[r]
            for k in range(n_freq):
                acc = 0.0
                for s in range(n_seg):
                    v = spec[s, k]
                    acc += v.real * v.real + v.imag * v.imag
                o[k] = acc * scale[k]

    return _welch_rocket


_welch_rocket = ForkAwareKernel(_make_welch_rocket)


# The fallback kernels are serial on purpose: scipy.fft's worker threads do the parallel
# part, and numba's OpenMP threads spin-waiting between calls would compete with them.
@nb.njit(cache=True)
def _segments(x, nperseg, hop, n_seg, win, detrend, segs):
    tt = np.arange(nperseg) - (nperseg - 1) / 2.0
    tt_ss = np.sum(tt * tt)
    for r in range(x.shape[0]):
        xr = x[r]
        for s in range(n_seg):
            _prepare_segment(xr, s * hop, nperseg, win, detrend, segs[r, s], tt, tt_ss)


@nb.njit(cache=True)
def _average_power(spec, scale, out):
    n_seg = spec.shape[1]
    for r in range(spec.shape[0]):
        o = out[r]
        for k in range(spec.shape[2]):
            acc = 0.0
            for s in range(n_seg):
                v = spec[r, s, k]
                acc += v.real * v.real + v.imag * v.imag
            o[k] = acc * scale[k]


def _welch_fallback(x, nperseg, hop, n_seg, win, detrend, scale, out):
    """Chunked scipy.fft between two numba kernels (used without rocket-fft)."""
    workers = max(1, nb.get_num_threads())
    buf = np.empty((min(_FALLBACK_ROWS, x.shape[0]), n_seg, nperseg))
    for i in range(0, x.shape[0], _FALLBACK_ROWS):
        rows = x[i : i + _FALLBACK_ROWS]
        segs = buf[: rows.shape[0]]
        _segments(rows, nperseg, hop, n_seg, win, detrend, segs)
        spec = scipy.fft.rfft(segs, axis=-1, workers=workers)
        _average_power(spec, scale, out[i : i + _FALLBACK_ROWS])


def welch_psd(x, fs=1.0, nperseg=256, noverlap=None, window="hann", detrend="constant",
              scaling="density", axis=-1):
    """Power spectral density by Welch's method, the numbers of ``scipy.signal.welch``.

    The signal is cut into segments of ``nperseg`` samples overlapping by
    ``noverlap``; each segment is detrended, multiplied by the window and
    Fourier transformed, and the one-sided periodograms are averaged (mean).
    Results agree with ``scipy.signal.welch`` (same arguments, ``nfft=None``,
    ``return_onesided=True``, ``average="mean"``) to about 1e-12 relative; rows
    (every index of the other axes) are processed in parallel with numba.

    Parameters
    ----------
    x : array_like
        Real signal(s); integer, bool and float32 inputs are computed in
        float64, and the result is always float64 (scipy returns float32 for
        float32 input).
    fs : float, default=1.0
        Sampling frequency, > 0.
    nperseg : int, default=256
        Segment length; must not exceed the signal length (scipy would shrink
        it with a warning; we raise).
    noverlap : int, optional
        Overlap between segments, ``0 <= noverlap < nperseg``; default
        ``nperseg // 2``.
    window : str, tuple or array_like, default="hann"
        Anything ``scipy.signal.get_window(window, nperseg)`` accepts
        (periodic window), or an array of length ``nperseg``.
    detrend : {"constant", "linear", False}, default="constant"
        Remove each segment's mean, its least-squares line, or nothing.
    scaling : {"density", "spectrum"}, default="density"
        ``"density"``: V**2/Hz, scaled by ``1 / (fs * sum(window**2))``;
        ``"spectrum"``: V**2, scaled by ``1 / sum(window)**2``. Every bin but
        0 and (for even ``nperseg``) the Nyquist bin is doubled (one-sided).
    axis : int, default=-1
        The time axis.

    Returns
    -------
    freqs : ndarray of shape (nperseg // 2 + 1,)
        Sample frequencies.
    psd : ndarray, float64
        ``x.shape`` with ``axis`` replaced by ``nperseg // 2 + 1`` frequencies.

    Raises
    ------
    ValueError
        For ``nperseg`` larger than the signal or < 1, ``noverlap`` outside
        ``[0, nperseg)``, a window array whose length is not ``nperseg``,
        ``fs <= 0``, an unknown ``detrend`` or ``scaling``, complex input, or
        NaN or infinity in ``x`` (NaN policy: error).

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.preprocessing import welch_psd
    >>> fs = 250.0
    >>> t = np.arange(2500) / fs
    >>> x = np.sin(2 * np.pi * 10.0 * t)
    >>> freqs, psd = welch_psd(x, fs=fs, nperseg=250)
    >>> float(freqs[np.argmax(psd)])
    10.0
    """
    x = _as_real_signal(x)
    fs = _check_fs(fs)
    nperseg = _check_int(nperseg, "nperseg")
    noverlap = nperseg // 2 if noverlap is None else _check_int(noverlap, "noverlap", minimum=0)
    if noverlap >= nperseg:
        raise ValueError(f"noverlap ({noverlap}) must be smaller than nperseg ({nperseg})")
    if isinstance(window, (str, tuple)):
        win = scipy.signal.get_window(window, nperseg)
    else:
        win = np.asarray(window)
        if win.ndim != 1 or win.shape[0] != nperseg:
            raise ValueError(f"window array must be 1-D of length nperseg={nperseg}, "
                             f"got shape {win.shape}")
        if win.dtype.kind not in "biuf":
            raise ValueError("window array must be real-valued")
    win = np.ascontiguousarray(win, dtype=np.float64)
    if not np.isfinite(win).all():
        raise ValueError("window contains NaN or infinity")
    if scaling == "density" and not np.sum(win * win) > 0:
        raise ValueError("sum(window**2) is 0 (a window of zeros, or too small for float64): "
                         "the density scaling divides by it")
    if scaling == "spectrum" and np.sum(win) == 0:
        raise ValueError("window sums to zero: the spectrum scaling divides by sum(window)**2")
    if detrend is False:
        detrend_code = 0
    elif isinstance(detrend, str):
        detrend_code = {"constant": 1, "linear": 2}.get(detrend)
    else:
        detrend_code = None
    if detrend_code is None:
        raise ValueError(f"detrend must be 'constant', 'linear' or False, got {detrend!r}")
    if scaling not in ("density", "spectrum"):
        raise ValueError(f"scaling must be 'density' or 'spectrum', got {scaling!r}")

    rows, batch_shape = _rows_last(x, axis)
    n = rows.shape[1]
    if nperseg > n:
        raise ValueError(f"nperseg ({nperseg}) is larger than the signal ({n} samples)")
    hop = nperseg - noverlap
    n_seg = (n - noverlap) // hop
    n_freq = nperseg // 2 + 1
    if scaling == "density":
        base = 1.0 / (fs * float(np.sum(win * win)))
    else:
        base = 1.0 / float(np.sum(win)) ** 2
    # One-sided doubling and the mean over segments folded into one factor per bin.
    scale = np.full(n_freq, 2.0 * base / n_seg)
    scale[0] = base / n_seg
    if nperseg % 2 == 0:
        scale[-1] = base / n_seg
    out = np.empty((rows.shape[0], n_freq), dtype=np.float64)
    if rows.shape[0]:
        if _use_rocket():
            _welch_rocket(rows, nperseg, hop, n_seg, win, detrend_code, scale, out)
        else:
            _welch_fallback(rows, nperseg, hop, n_seg, win, detrend_code, scale, out)
        if not np.isfinite(out).all():
            # NaN/inf reach every bin of the PSD; tell a non-finite input from an overflow.
            _raise_nonfinite(rows)
        _raise_nonfinite(rows[:, (n_seg - 1) * hop + nperseg:])
    freqs = np.fft.rfftfreq(nperseg, d=1.0 / fs)
    psd = np.moveaxis(out.reshape(batch_shape + (n_freq,)), -1, axis % x.ndim)
    return freqs, psd


def _check_fs(fs):
    if isinstance(fs, (bool, np.bool_, str, bytes)):  # float() would take True and "250"
        raise ValueError(f"fs must be a positive number, got {fs!r}")
    try:
        fs = float(fs)
    except (TypeError, ValueError):
        raise ValueError(f"fs must be a positive number, got {fs!r}") from None
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"fs must be a positive number, got {fs!r}")
    return fs
