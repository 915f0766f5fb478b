"""Zero-phase filters for ECG/EEG: band-pass, baseline-wander removal and notch.

Each filter is a function on signals (any shape, ``axis`` is time) and a scikit-learn
transformer on rows (one signal or window per row; the number of rows is kept).
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.signal
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import (
    _as_real_signal,
    _check_axis,
    _check_int,
    _check_n_channels,
    _raise_nonfinite,
    _refuse_non_numeric,
)
from ._welch import _check_fs


def _bandpass_sos(fs, low, high, order):
    fs = _check_fs(fs)
    order = _check_int(order, "order")
    low, high = _check_freq(low, "low"), _check_freq(high, "high")
    if not 0.0 < low < high < fs / 2.0:
        raise ValueError(f"band-pass needs 0 < low < high < fs / 2 = {fs / 2:g}; "
                         f"got low={low:g}, high={high:g}")
    return scipy.signal.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")


def _highpass_sos(fs, cutoff, order):
    fs = _check_fs(fs)
    order = _check_int(order, "order")
    cutoff = _check_freq(cutoff, "cutoff")
    if not 0.0 < cutoff < fs / 2.0:
        raise ValueError(f"cutoff must be in (0, fs / 2 = {fs / 2:g}), got {cutoff:g}")
    return scipy.signal.butter(order, cutoff, btype="highpass", fs=fs, output="sos")


def _notch_sos(fs, freq, quality):
    fs = _check_fs(fs)
    freq = _check_freq(freq, "freq")
    quality = _check_freq(quality, "quality")
    if not 0.0 < freq < fs / 2.0:
        raise ValueError(f"freq must be in (0, fs / 2 = {fs / 2:g}), got {freq:g}")
    if quality <= 0:
        raise ValueError(f"quality must be > 0, got {quality:g}")
    b, a = scipy.signal.iirnotch(freq, quality, fs=fs)
    return scipy.signal.tf2sos(b, a)


def _check_freq(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _filtfilt(sos, x, axis):
    """``sosfiltfilt`` with scipy's default padding, shortened for signals that are too short.

    scipy pads ``3 * (2 * n_sections + 1)`` samples (odd extension) and refuses shorter
    signals; here the pad is cut to ``n - 1`` instead, so short windows are still filtered
    (with stronger edge effects, which any zero-phase filter has on short signals).
    """
    n = x.shape[axis]
    zeros = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    padlen = min(3 * (2 * sos.shape[0] + 1 - zeros), n - 1)
    # scipy's Cython kernel wants writeable buffers: a read-only input is filtered in place
    # when padlen == 0 (one-sample rows), and ``sos_`` is read-only after a memory-mapped
    # joblib load. Copy them in that case only.
    x = np.require(x, requirements="W")
    sos = np.require(sos, dtype=np.float64, requirements="W")
    return scipy.signal.sosfiltfilt(sos, x, axis=axis, padlen=padlen)


def _prepare(x, axis):
    x = _as_real_signal(x).astype(np.float64, copy=False)
    axis = _check_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        raise ValueError(f"x has no samples along axis {axis}")
    _raise_nonfinite(x)
    return x, axis


def bandpass_filter(x, fs, low, high, order=4, axis=-1):
    """Zero-phase Butterworth band-pass filter (second-order sections, forward-backward).

    Parameters
    ----------
    x : array_like
        Real signal(s); computed in float64.
    fs : float
        Sampling frequency (Hz).
    low, high : float
        Pass band edges (Hz), ``0 < low < high < fs / 2``.
    order : int, default=4
        Butterworth order of the one-way design (the forward-backward pass
        squares the magnitude response, doubling the attenuation in dB).
    axis : int, default=-1
        The time axis.

    Returns
    -------
    y : ndarray, float64, same shape as ``x``

    Raises
    ------
    ValueError
        For band edges outside ``(0, fs / 2)``, ``low >= high``, a
        non-positive ``order`` or ``fs``, or NaN/infinity in ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.preprocessing import bandpass_filter
    >>> fs = 360.0
    >>> t = np.arange(3600) / fs
    >>> x = np.sin(2 * np.pi * 10 * t) + np.sin(2 * np.pi * 0.1 * t)
    >>> y = bandpass_filter(x, fs, low=1.0, high=40.0)
    >>> bool(np.abs(y[500:-500] - np.sin(2 * np.pi * 10 * t[500:-500])).max() < 0.05)
    True
    """
    x, axis = _prepare(x, axis)
    return _filtfilt(_bandpass_sos(fs, low, high, order), x, axis)


def remove_baseline_wander(x, fs, cutoff=0.5, order=2, axis=-1):
    """Remove baseline wander with a zero-phase Butterworth high-pass filter.

    Parameters
    ----------
    x : array_like
        Real signal(s); computed in float64.
    fs : float
        Sampling frequency (Hz).
    cutoff : float, default=0.5
        Cut-off (Hz), ``0 < cutoff < fs / 2``; 0.5 Hz is the usual choice for
        ECG (respiration and electrode drift lie below it).
    order : int, default=2
        Butterworth order of the one-way design.
    axis : int, default=-1
        The time axis.

    Returns
    -------
    y : ndarray, float64, same shape as ``x``

    Raises
    ------
    ValueError
        For a cut-off outside ``(0, fs / 2)``, a non-positive ``order`` or
        ``fs``, or NaN/infinity in ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.preprocessing import remove_baseline_wander
    >>> fs = 250.0
    >>> t = np.arange(5000) / fs
    >>> y = remove_baseline_wander(np.sin(2 * np.pi * 8 * t) + 2.0 + 0.5 * t, fs)
    >>> bool(abs(y[1000:-1000].mean()) < 0.01)
    True
    """
    x, axis = _prepare(x, axis)
    return _filtfilt(_highpass_sos(fs, cutoff, order), x, axis)


def notch_filter(x, fs, freq=50.0, quality=30.0, axis=-1):
    """Zero-phase IIR notch (``scipy.signal.iirnotch``) against power-line interference.

    Parameters
    ----------
    x : array_like
        Real signal(s); computed in float64.
    fs : float
        Sampling frequency (Hz).
    freq : float, default=50.0
        Frequency to remove (Hz), ``0 < freq < fs / 2`` (60 in the Americas).
    quality : float, default=30.0
        Quality factor ``freq / bandwidth(-3 dB)``, > 0.
    axis : int, default=-1
        The time axis.

    Returns
    -------
    y : ndarray, float64, same shape as ``x``

    Raises
    ------
    ValueError
        For ``freq`` outside ``(0, fs / 2)``, ``quality <= 0``, ``fs <= 0`` or
        NaN/infinity in ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.preprocessing import notch_filter
    >>> fs = 500.0
    >>> t = np.arange(5000) / fs
    >>> y = notch_filter(np.sin(2 * np.pi * 5 * t) + np.sin(2 * np.pi * 50 * t), fs, freq=50.0)
    >>> bool(np.abs(y[1000:-1000] - np.sin(2 * np.pi * 5 * t[1000:-1000])).max() < 0.05)
    True
    """
    x, axis = _prepare(x, axis)
    return _filtfilt(_notch_sos(fs, freq, quality), x, axis)


class _RowFilter(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Shared fit/transform of the filter transformers: one signal per row.

    Filtering keeps every column (time sample) in place, so the output feature names
    are the input ones (``get_feature_names_out``) and ``set_output`` works.
    """

    _DESIGN_PARAMS = ()  # the parameters the filter's design depends on

    def _design(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _design_params(self):
        return tuple(getattr(self, name) for name in self._DESIGN_PARAMS)

    def fit(self, X, y=None):
        """Design the filter (checks the parameters) and record the row length.

        Parameters
        ----------
        X : array-like of shape (n_signals, n_samples)
            One signal or window per row.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        _refuse_non_numeric(X)
        X = validate_data(self, X, dtype=np.float64)
        _check_n_channels(self.n_channels, X.shape[1])
        self.sos_ = self._design()
        self._fitted_design_params = self._design_params()
        return self

    def transform(self, X):
        """Filter every row (zero phase).

        Parameters
        ----------
        X : array-like of shape (n_signals, n_features_in_)

        Returns
        -------
        Y : ndarray of shape (n_signals, n_features_in_), float64
        """
        check_is_fitted(self)
        _refuse_non_numeric(X)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        fitted = getattr(self, "_fitted_design_params", None)  # None: fitted by an earlier version
        if fitted is not None and fitted != self._design_params():
            raise ValueError(
                f"the parameters of this {type(self).__name__} changed since fit (set_params "
                "after fit): fit again, so that the filter designed in fit (sos_) is the one "
                "its parameters describe"
            )
        n_channels, width = _check_n_channels(self.n_channels, X.shape[1])
        if n_channels == 1:
            return _filtfilt(self.sos_, X, axis=1)
        # each channel's window filtered on its own, not across the joins between them
        return _filtfilt(self.sos_, X.reshape(-1, width), axis=1).reshape(X.shape)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags


class BandpassFilter(_RowFilter):
    """Zero-phase Butterworth band-pass filter applied to every row.

    The transformer form of :func:`bandpass_filter`: rows are signals sampled at
    ``fs``, columns are time; the output has the same shape.

    Each row is filtered on its own, so its ends carry the filter's edge transients
    (for about the period of its lowest frequency). For windows of one longer signal,
    filter the signal with the function first and cut the windows afterwards: a 0.5-Hz
    high-pass applied to 2-s windows left an error of a fifth of the signal's RMS.

    Parameters
    ----------
    fs : float
        Sampling frequency (Hz).
    low : float, default=0.5
        Lower pass-band edge (Hz).
    high : float, default=40.0
        Upper pass-band edge (Hz), ``< fs / 2``.
    order : int, default=4
        Butterworth order of the one-way design.
    n_channels : int, default=1
        Signals per row: a row holds the windows of ``n_channels`` channels side by
        side, each ``n_features_in_ // n_channels`` samples long, and each is filtered on
        its own (not across the joins between them).

    Attributes
    ----------
    sos_ : ndarray of shape (n_sections, 6)
        The filter as second-order sections.
    n_features_in_ : int
        Samples per row seen in :meth:`fit`.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.preprocessing import BandpassFilter
    >>> X = np.random.default_rng(0).normal(size=(4, 1000))
    >>> BandpassFilter(fs=250.0, low=1.0, high=40.0).fit_transform(X).shape
    (4, 1000)
    """

    def __init__(self, fs, low=0.5, high=40.0, order=4, n_channels=1):
        self.n_channels = n_channels
        self.fs = fs
        self.low = low
        self.high = high
        self.order = order

    _DESIGN_PARAMS = ("fs", "low", "high", "order")

    def _design(self):
        return _bandpass_sos(self.fs, self.low, self.high, self.order)


class BaselineWanderRemover(_RowFilter):
    """Remove baseline wander from every row with a zero-phase high-pass filter.

    The transformer form of :func:`remove_baseline_wander`: rows are signals sampled at
    ``fs``, columns are time.

    Each row is filtered on its own, so its ends carry the filter's edge transients
    (for about the period of its lowest frequency). For windows of one longer signal,
    filter the signal with the function first and cut the windows afterwards: a 0.5-Hz
    high-pass applied to 2-s windows left an error of a fifth of the signal's RMS.

    Parameters
    ----------
    fs : float
        Sampling frequency (Hz).
    cutoff : float, default=0.5
        High-pass cut-off (Hz).
    order : int, default=2
        Butterworth order of the one-way design.
    n_channels : int, default=1
        Signals per row: a row holds the windows of ``n_channels`` channels side by
        side, each ``n_features_in_ // n_channels`` samples long, and each is filtered on
        its own (not across the joins between them).

    Attributes
    ----------
    sos_ : ndarray of shape (n_sections, 6)
        The filter as second-order sections.
    n_features_in_ : int
        Samples per row seen in :meth:`fit`.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.preprocessing import BaselineWanderRemover
    >>> X = np.random.default_rng(0).normal(size=(4, 1000)) + 5.0
    >>> Y = BaselineWanderRemover(fs=250.0).fit_transform(X)
    >>> bool(np.abs(Y.mean(axis=1)).max() < 0.1)
    True
    """

    def __init__(self, fs, cutoff=0.5, order=2, n_channels=1):
        self.n_channels = n_channels
        self.fs = fs
        self.cutoff = cutoff
        self.order = order

    _DESIGN_PARAMS = ("fs", "cutoff", "order")

    def _design(self):
        return _highpass_sos(self.fs, self.cutoff, self.order)


class NotchFilter(_RowFilter):
    """Zero-phase IIR notch applied to every row (power-line interference).

    The transformer form of :func:`notch_filter`: rows are signals sampled at ``fs``,
    columns are time.

    Each row is filtered on its own, so its ends carry the notch's edge transients, which
    last about ``3 * quality / (pi * freq)`` seconds (0.6 s for 50 Hz at quality 30). For
    windows of one longer signal, filter the signal with the function first and cut the
    windows afterwards.

    Parameters
    ----------
    fs : float
        Sampling frequency (Hz).
    freq : float, default=50.0
        Frequency to remove (Hz).
    quality : float, default=30.0
        Quality factor ``freq / bandwidth``.
    n_channels : int, default=1
        Signals per row: a row holds the windows of ``n_channels`` channels side by
        side, each ``n_features_in_ // n_channels`` samples long, and each is filtered on
        its own (not across the joins between them).

    Attributes
    ----------
    sos_ : ndarray of shape (1, 6)
        The notch as a second-order section.
    n_features_in_ : int
        Samples per row seen in :meth:`fit`.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.preprocessing import NotchFilter
    >>> X = np.random.default_rng(0).normal(size=(4, 1000))
    >>> NotchFilter(fs=500.0, freq=60.0).fit_transform(X).shape
    (4, 1000)
    """

    def __init__(self, fs, freq=50.0, quality=30.0, n_channels=1):
        self.n_channels = n_channels
        self.fs = fs
        self.freq = freq
        self.quality = quality

    _DESIGN_PARAMS = ("fs", "freq", "quality")

    def _design(self):
        return _notch_sos(self.fs, self.freq, self.quality)
