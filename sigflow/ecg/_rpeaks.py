"""R-peak detection and its evaluation against reference annotations."""

from __future__ import annotations

import warnings

import numba as nb
import numpy as np

from .._warnings import user_stacklevel
from ._filters import bandpass_ecg

__all__ = ["detect_r_peaks", "rpeak_accuracy"]

_THR = 0.25  # threshold between the noise and signal levels
_TWIN = 0.36  # T-wave rejection window (s)
# Absolute floor of the QRS slope (per sample) relative to the signal's largest magnitude: a
# constant signal leaves only float rounding noise (about 1e-16 of it) after the band-pass,
# which the adaptive threshold would otherwise take for beats; the weakest QRS candidates of
# the MIT-BIH records are about 1e-5 of it.
_FLOOR = 1e-9
# Lowest signal level, as a fraction of the record's typical level (the upper quartile of
# its per-second largest candidates, so that up to three quarters of the record may be
# without beats; both in the squared slope the detector thresholds, so 0.01 is a tenth in
# amplitude). The level adapts over 10 s; in a longer stretch that holds noise only (an
# electrode off, an amplifier resting) it would fall to the noise and take noise for beats,
# about 1.4 per second. QRS complexes a tenth of the record's typical size are still found.
_LEVEL_FLOOR = 0.01
# Search-back passes: a gap longer than 1.66 median RR gets its best candidate above half the
# threshold, and the two shorter gaps are searched again, up to this many times (one pass
# found one of several small beats in a row: MIT-BIH 203's runs of small ventricular beats).
_SEARCH_BACK_PASSES = 5
# The detectors of detect_r_peaks(method=...) (and segment_beats(detector=...)).
METHODS = ("pan_tompkins", "gqrs", "xqrs")
# Refined detections closer than this (s) are one beat: the refractory period, which no RR
# interval undercuts. (At 0.15 s the 26 MIT-BIH records lose 18 fewer beats, but get pairs of
# detections 0.153 s apart, one beat counted twice.)
_MERGE_S = 0.2


def _running_level(values, positions, n_samples, fs, window_s):
    """Median of ``values`` (at ``positions``) over a sliding time window, per sample."""
    if len(values) == 0:
        return np.zeros(n_samples)
    half = window_s * fs / 2
    lo = np.searchsorted(positions, positions - half)
    hi = np.searchsorted(positions, positions + half)
    level = _window_medians(np.ascontiguousarray(values, dtype=np.float64), lo, hi)
    grid = np.arange(n_samples)
    return np.interp(grid, positions, level)


@nb.njit(cache=True)
def _window_medians(values, lo, hi):
    """``median(values[lo[i]:hi[i]])`` for every i (a Python loop of np.median calls took
    40 % of the detection's time on long recordings)."""
    out = np.empty(lo.shape[0])
    for i in range(lo.shape[0]):
        out[i] = np.median(values[lo[i]:hi[i]])
    return out


def _pan_tompkins(x, fs, refractory=0.2):
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import find_peaks

    n = x.shape[0]
    qrs = bandpass_ecg(x, fs, low=5.0, high=15.0, order=2)
    energy = np.gradient(qrs) ** 2
    mwi = uniform_filter1d(energy, size=max(int(round(0.12 * fs)), 1), mode="nearest")
    dist = max(int(round(refractory * fs)), 1)
    cand, _ = find_peaks(mwi, distance=dist)
    scale = float(np.max(np.abs(x))) if n else 0.0
    cand = cand[mwi[cand] > (_FLOOR * scale) ** 2]
    if len(cand) == 0:
        return cand
    heights = mwi[cand]
    # Signal level: running median of the largest candidate in each second.
    step = int(fs)
    seg = cand // step
    top = {}
    for c, h, s in zip(cand, heights, seg, strict=True):
        if s not in top or h > mwi[top[s]]:
            top[s] = c
    top_pos = np.array(sorted(top.values()))
    level = _running_level(mwi[top_pos], top_pos, n, fs, window_s=10.0)
    level = np.maximum(level, _LEVEL_FLOOR * np.percentile(mwi[top_pos], 75))
    noise = _running_level(heights, cand, n, fs, window_s=10.0)
    noise = np.minimum(noise, 0.5 * level)
    thr = noise + _THR * (level - noise)
    keep = heights > thr[cand]
    peaks = list(cand[keep])
    # Search back in long gaps with a halved threshold, again in the gaps that leaves.
    if len(peaks) > 2:
        med = np.median(np.diff(peaks))
        for _ in range(_SEARCH_BACK_PASSES):
            extra = []
            for a, b in zip(peaks[:-1], peaks[1:], strict=True):
                if b - a > 1.66 * med:
                    inside = cand[(cand > a + dist) & (cand < b - dist)]
                    if len(inside):
                        best = inside[np.argmax(mwi[inside])]
                        if mwi[best] > 0.5 * thr[best]:
                            extra.append(best)
            if not extra:
                break
            peaks = sorted(peaks + extra)
    peaks = np.asarray(peaks, dtype=np.int64)
    # T-wave rejection: a peak within 360 ms of the previous one with less than
    # half its maximal slope is a T wave.
    slope = np.abs(np.gradient(qrs))
    half_win = max(int(round(0.075 * fs)), 1)

    def max_slope(p):
        return slope[max(p - half_win, 0): p + half_win + 1].max()

    out = []
    for p in peaks:
        if out and p - out[-1] < _TWIN * fs and max_slope(p) < 0.5 * max_slope(out[-1]):
            continue
        out.append(p)
    return np.asarray(out, dtype=np.int64)


def _typical_peak(x, fs, window_s=2.0):
    """The size of a typical R wave in a filtered ECG: the median of the largest
    ``|x - median(x)|`` of the 2-s windows that hold a beat, those whose largest value is at
    least a fifth of the 90th percentile of all windows' (the largest value in the signal if
    it is shorter than 2 s). Windows without beats (an electrode off, over most of a record)
    and a few of large artifacts do not move it."""
    a = np.abs(x - np.median(x))
    width = max(int(round(window_s * fs)), 1)
    n = a.shape[0] // width
    if n == 0:
        return float(a.max())
    peaks = a[: n * width].reshape(n, width).max(axis=1)
    return float(np.median(peaks[peaks >= 0.2 * np.percentile(peaks, 90)]))


def _refine_to_peak(x, peaks, fs, radius=0.1):
    """Move each detection to the R-wave extremum of the filtered signal."""
    if len(peaks) == 0:
        return peaks
    r = max(int(round(radius * fs)), 1)
    n = x.shape[0]
    idx = np.clip(peaks[:, None] + np.arange(-r, r + 1)[None, :], 0, n - 1)
    win = x[idx]
    # Dominant polarity of the record's QRS complexes.
    amax = win[np.arange(len(peaks)), np.argmax(np.abs(win), axis=1)]
    sign = 1.0 if np.median(amax) >= 0 else -1.0
    refined = idx[np.arange(len(peaks)), np.argmax(sign * win, axis=1)]
    refined = np.unique(refined)
    # Merge detections that collapsed onto nearby samples.
    return _merge_close(refined, _MERGE_S * fs)


@nb.njit(cache=True)
def _merge_close(sorted_peaks, min_gap):
    """Keep the first of each run of detections, each later one only when it lies more than
    ``min_gap`` samples after the last one kept (not merely after its predecessor, which in a
    chain 1000, 1060, 1130 at a 72-sample gap would drop the beat at 1130)."""
    n = sorted_peaks.shape[0]
    out = np.empty(n, dtype=sorted_peaks.dtype)
    m = 0
    for i in range(n):
        if m == 0 or sorted_peaks[i] - out[m - 1] > min_gap:
            out[m] = sorted_peaks[i]
            m += 1
    return out[:m].copy()


def detect_r_peaks(signal, fs, *, method="pan_tompkins"):
    """Detect R peaks in a single-lead ECG.

    Parameters
    ----------
    signal : array-like of shape (n_samples,)
        One ECG lead in physical units.
    fs : float
        Sampling frequency in Hz.
    method : {"pan_tompkins", "gqrs", "xqrs"}, default="pan_tompkins"
        ``"pan_tompkins"``: a vectorised Pan-Tompkins detector (5-15 Hz
        band-pass, squared derivative, 120 ms integration, adaptive threshold
        from running medians, search-back in long gaps, T-wave rejection); fast.
        ``"gqrs"``: :func:`wfdb.processing.gqrs_detect`, PhysioNet's GQRS, on the
        0.5-40 Hz filtered lead scaled to an R wave of about 1 (its thresholds are
        in millivolts, so a record in microvolts gets the same beats); 20-35
        times slower, and fewer missed beats on difficult records
        (``benchmarks/rpeaks_mitdb.py``).
        ``"xqrs"``: :func:`wfdb.processing.xqrs_detect` (slower, pure Python).
        Either way each detection is moved to the R-wave extremum (of the
        record's dominant polarity) of the 0.5-40 Hz filtered signal within
        100 ms.

    Returns
    -------
    peaks : ndarray of int64
        Sorted sample indices of the R peaks. Empty, with a warning, for a signal shorter
        than 2 seconds: the detector's threshold is learnt from the first 2 seconds.
        Empty for a constant (flat) signal: ``"pan_tompkins"`` ignores slopes below
        1e-9 of the signal's largest magnitude (float rounding noise, not beats).
        Invalid samples (NaN, +inf, -inf) are replaced by the median of the valid ones.

    Examples
    --------
    >>> from sigflow.ecg import detect_r_peaks, make_synthetic_ecg
    >>> sig, fs, ann = make_synthetic_ecg(duration=30, random_state=0)
    >>> peaks = detect_r_peaks(sig, fs)
    >>> abs(len(peaks) - len(ann["sample"])) <= 1
    True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(
            f"signal must be one lead of shape (n_samples,), got shape {x.shape}; "
            "pass one column of a multichannel record, e.g. record.signal[:, 0]"
        )
    if x.size < 2 * fs:
        warnings.warn(
            f"the signal lasts {x.size / fs:.2f} s, shorter than the 2 s the R-peak detector "
            "needs to set its threshold; no peaks are returned",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        return np.zeros(0, dtype=np.int64)
    finite = np.isfinite(x)
    if not finite.all():
        # NaN and +-inf alike are invalid samples: bridge them with the median
        x = np.where(finite, x, float(np.median(x[finite])) if finite.any() else 0.0)
    filtered = bandpass_ecg(x, fs, low=0.5, high=40.0)
    if method == "pan_tompkins":
        peaks = _pan_tompkins(x, fs)
    elif method == "gqrs":
        from wfdb.processing import gqrs_detect

        # GQRS's amplitude thresholds are in millivolts: give it the filtered lead scaled
        # to a typical R wave of about 1 (the same beats from a record in mV or in uV). The
        # typical R wave is measured over the 2-s windows that hold beats: neither a few
        # seconds of a large artifact (a quantile of all samples was moved by them, and GQRS
        # then missed beats throughout the record) nor an electrode off over most of the
        # record (a median over all windows was) moves it.
        size = _typical_peak(filtered, fs)
        if not size > _FLOOR * float(np.max(np.abs(x))):
            return np.zeros(0, dtype=np.int64)  # a flat lead
        peaks = np.asarray(gqrs_detect(filtered / size, fs=fs), dtype=np.int64)
    else:
        from wfdb.processing import xqrs_detect

        peaks = np.asarray(xqrs_detect(x, fs, verbose=False), dtype=np.int64)
    return _refine_to_peak(filtered, np.asarray(peaks, dtype=np.int64), fs)


def rpeak_accuracy(reference, detected, fs, tolerance=0.15):
    """Sensitivity and positive predictivity of R-peak detections.

    Reference beats and detections are paired one to one, each pair within
    ``tolerance`` seconds, as many pairs as possible (a maximum matching: in time
    order, each reference beat takes the earliest unpaired detection inside its
    window, which no other pairing beats when all windows have the same width).
    Pairing each beat with its nearest detection instead can lose a pair where
    beats come closer than twice the tolerance (fast rhythms, couplets).

    Parameters
    ----------
    reference, detected : array-like of int
        Sample indices of the reference beats and of the detections.
    fs : float
        Sampling frequency in Hz.
    tolerance : float, default=0.15
        Matching window in seconds (150 ms, as in the AAMI EC57 practice).

    Returns
    -------
    result : dict
        ``"sensitivity"`` (TP / n_reference), ``"ppv"`` (positive
        predictivity, TP / n_detected), and the counts ``"tp"``, ``"fn"``,
        ``"fp"``.

    Examples
    --------
    >>> from sigflow.ecg import rpeak_accuracy
    >>> rpeak_accuracy([100, 400, 700], [102, 399, 1000], fs=360)["sensitivity"]
    0.6666666666666666
    """
    ref = np.sort(np.asarray(reference, dtype=np.int64).ravel())
    det = np.sort(np.asarray(detected, dtype=np.int64).ravel())
    tol = tolerance * fs
    tp = j = 0
    for r in ref:
        while j < len(det) and det[j] < r - tol:
            j += 1  # too early for this beat, so for every later one: a false positive
        if j < len(det) and det[j] <= r + tol:
            tp += 1
            j += 1
    fn = len(ref) - tp
    fp = len(det) - tp
    return {
        "sensitivity": tp / len(ref) if len(ref) else float("nan"),
        "ppv": tp / len(det) if len(det) else float("nan"),
        "tp": tp,
        "fn": fn,
        "fp": fp,
    }
