"""Spectral features of windows (rows) as a scikit-learn transformer."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from .._warnings import user_stacklevel
from ._validation import (
    _channel_feature_names,
    _check_n_channels,
    _refuse_non_numeric,
    _row_chunks,
)
from ._welch import _check_fs, welch_psd

#: Feature names accepted by :class:`SpectralFeatures`, in their default order.
SPECTRAL_FEATURES = (
    "band_power",
    "relative_band_power",
    "spectral_entropy",
    "spectral_centroid",
    "spectral_spread",
    "spectral_edge_50",
    "spectral_edge_90",
    "spectral_edge_95",
    "dominant_frequency",
    "spectral_flatness",
    "spectral_slope",
)
_EDGES = {"spectral_edge_50": 0.5, "spectral_edge_90": 0.9, "spectral_edge_95": 0.95}
_BAND_FEATURES = frozenset(("band_power", "relative_band_power"))
_DEFAULT_BANDS = ((0.5, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0), (30.0, 45.0))


class SpectralFeatures(TransformerMixin, BaseEstimator):
    r"""Spectral features of each row, a window of a signal sampled at ``fs``.

    Each row is turned into a one-sided power spectral density ``P(f_k)`` by
    Welch's method (:func:`welch_psd`), on bins ``f_k = k * df``,
    ``df = fs / nperseg``, ``k = 0 .. nperseg // 2``. With the total power
    ``T = sum_k P_k df`` and the normalised spectrum ``p_k = P_k / sum_j P_j``
    the features are (libraries disagree on these, so here they are exactly):

    ``band_power`` (one column per band ``(lo, hi)``)
        ``sum(P_k df for lo <= f_k < hi)``, rectangle rule, units V**2. A band
        narrower than ``df`` may hold no bin and then has power 0.
    ``relative_band_power`` (one column per band)
        band power divided by ``T`` (bins of every frequency, 0 to Nyquist).
    ``spectral_entropy``
        ``-sum_k p_k log(p_k) / log(K)`` over all ``K`` bins (0 log 0 = 0):
        Shannon entropy normalised to [0, 1]; 0 when ``K == 1``.
    ``spectral_centroid``
        ``sum_k f_k p_k`` (Hz).
    ``spectral_spread``
        ``sqrt(sum_k (f_k - centroid)**2 p_k)`` (Hz).
    ``spectral_edge_50``, ``spectral_edge_90``, ``spectral_edge_95``
        smallest ``f_k`` with ``sum_{j <= k} p_j >= q`` for q = 0.5, 0.9, 0.95.
    ``dominant_frequency``
        ``f_k`` of the largest ``P_k`` (the lowest such bin on ties).
    ``spectral_flatness``
        geometric over arithmetic mean of ``P_k`` over all bins
        (Wiener entropy, in [0, 1]; 0 as soon as one bin has zero power).
    ``spectral_slope``
        least-squares slope of ``log10 P_k`` against ``log10 f_k`` over the
        bins with ``f_k > 0`` and ``P_k > 0`` (the power-law exponent, about -1
        for 1/f noise); 0 when fewer than two such bins exist.

    A row with zero total power (constant after detrending) gets 0 for every
    feature except the (zero) band powers. Output is float64.

    Parameters
    ----------
    fs : float
        Sampling frequency of the rows (Hz), > 0.
    bands : tuple of (float, float), default=EEG delta to gamma
        ``((0.5, 4), (4, 8), (8, 13), (13, 30), (30, 45))``; each band needs
        ``0 <= lo < hi``, and ``hi <= fs / 2`` when ``features`` include the band
        powers (without them, any rate will do).
    features : tuple of str, default=all features above
        Which features to return, in this order (band features expand to one
        column per band).
    nperseg : int, optional
        Welch segment length; default ``min(256, width)``, where ``width`` is one channel's
        window (``n_features_in_ // n_channels``), which it must not exceed. The bins lie
        ``fs / nperseg`` apart whatever the rate (3.9 Hz at 1,000 Hz with 256), and the
        frequency features (dominant frequency, spectral edges) fall on them: for a finer
        grid pass a larger ``nperseg`` (``int(2 * fs)`` for 0.5 Hz) with windows at least as
        long. :meth:`fit` warns about bands that hold no bin (their power is always 0).
    noverlap : int, optional
        Welch overlap; default ``nperseg // 2``.
    window : str, tuple or array_like, default="hann"
        Welch window (see :func:`welch_psd`).
    detrend : {"constant", "linear", False}, default="constant"
        Per-segment detrending (see :func:`welch_psd`).
    n_channels : int, default=1
        Windows per row: a row holds the windows of ``n_channels`` channels side by side,
        each ``n_features_in_ // n_channels`` samples long (``nperseg`` counts samples of
        one channel); the features are computed per channel and output channel by channel
        (``ch0_...``, ``ch1_...``). See :class:`WindowFeatures` for how to build such rows.

    Attributes
    ----------
    n_features_in_ : int
        Samples per row seen in :meth:`fit` (of all channels together).
    feature_names_in_ : ndarray of str
        Column names, when ``X`` given to :meth:`fit` had string column names.
    nperseg_ : int
        The Welch segment length used.
    freqs_ : ndarray of shape (nperseg_ // 2 + 1,)
        Frequencies of the PSD bins.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.preprocessing import SpectralFeatures
    >>> fs = 128.0
    >>> t = np.arange(512) / fs
    >>> X = np.stack([np.sin(2 * np.pi * f * t) for f in (6.0, 10.0, 20.0)])
    >>> sf = SpectralFeatures(fs=fs, features=("dominant_frequency", "spectral_centroid"))
    >>> sf.fit_transform(X)[:, 0]
    array([ 6., 10., 20.])
    >>> list(sf.get_feature_names_out())
    ['dominant_frequency', 'spectral_centroid']
    """

    def __init__(self, fs, bands=_DEFAULT_BANDS, features=SPECTRAL_FEATURES, nperseg=None,
                 noverlap=None, window="hann", detrend="constant", n_channels=1):
        self.fs = fs
        self.bands = bands
        self.features = features
        self.nperseg = nperseg
        self.noverlap = noverlap
        self.window = window
        self.detrend = detrend
        self.n_channels = n_channels

    def fit(self, X, y=None):
        """Check the parameters against the window length of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_windows, n_samples_per_window)
            Windows as rows (at least 2 samples each).
        y : None
            Ignored.

        Returns
        -------
        self : SpectralFeatures
        """
        _refuse_non_numeric(X)
        X = validate_data(self, X, dtype=np.float64, ensure_min_features=2)
        fs = _check_fs(self.fs)
        _, width = _check_n_channels(self.n_channels, X.shape[1])
        if width < 2:
            raise ValueError(f"each channel's window needs at least 2 samples, got {width} "
                             f"({X.shape[1]} columns, n_channels={self.n_channels})")
        if self.nperseg is None:
            nperseg = min(256, width)
        elif isinstance(self.nperseg, numbers.Integral) and not isinstance(self.nperseg, bool):
            nperseg = int(self.nperseg)
            if not 1 <= nperseg <= width:
                raise ValueError(f"nperseg must be in [1, {width}] (the window length), "
                                 f"got {nperseg}")
        else:
            raise ValueError(f"nperseg must be None or an integer, got {self.nperseg!r}")
        features = self._check_features()
        bands = self._checked_bands(fs, features)
        self.nperseg_ = nperseg
        self.freqs_ = np.fft.rfftfreq(nperseg, d=1.0 / fs)
        if _BAND_FEATURES.intersection(features):
            _warn_empty_bands(bands, self.freqs_, fs, nperseg)
        # Run once on one window so that bad window/detrend/noverlap values fail in fit.
        self._psd(X[:1, :width])
        return self

    def transform(self, X):
        """Spectral features of every row.

        Parameters
        ----------
        X : array-like of shape (n_windows, n_features_in_)
            Windows as rows.

        Returns
        -------
        F : ndarray of shape (n_windows, n_features_out)
            Columns named by :meth:`get_feature_names_out`.
        """
        check_is_fitted(self)
        _refuse_non_numeric(X)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        fs = _check_fs(self.fs)
        n_channels, width = _check_n_channels(self.n_channels, X.shape[1])
        nperseg = min(256, width) if self.nperseg is None else self.nperseg  # as fit
        if nperseg != self.nperseg_ or not np.array_equal(
            self.freqs_, np.fft.rfftfreq(self.nperseg_, d=1.0 / fs)
        ):
            raise ValueError(
                "fs, nperseg or n_channels changed since fit (set_params after fit): fit "
                "again, so that freqs_ and the features agree"
            )
        features = self._check_features()
        bands = self._checked_bands(fs, features)
        # in row chunks: the windows' copy, their spectra and the features' temporaries
        # are each several times the output, for every row at once
        chunks = []
        for rows in _row_chunks(X.shape[0], X.shape[1]):
            windows = X[rows].reshape(-1, width)  # one channel's window per row
            F = _spectral_features(self._psd(windows), self.freqs_, fs / self.nperseg_, bands,
                                   features)
            chunks.append(F.reshape(rows.stop - rows.start, -1))
        return np.concatenate(chunks)  # validate_data leaves at least one row

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns.

        Parameters
        ----------
        input_features : array-like of str, optional
            Only checked against the input names seen in :meth:`fit`.

        Returns
        -------
        names : ndarray of str objects
            ``band_power_<lo>_<hi>`` and ``relative_band_power_<lo>_<hi>`` for
            the band features, the feature name otherwise.
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features)
        names = []
        for feature in self._check_features():
            if feature in ("band_power", "relative_band_power"):
                names.extend(f"{feature}_{_band_name(lo, hi)}" for lo, hi in self.bands)
            else:
                names.append(feature)
        n_channels, _ = _check_n_channels(self.n_channels, self.n_features_in_)
        return np.asarray(_channel_feature_names(names, n_channels), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    def _psd(self, X):
        _, psd = welch_psd(X, fs=float(self.fs), nperseg=self.nperseg_, noverlap=self.noverlap,
                           window=self.window, detrend=self.detrend, axis=-1)
        return psd

    def _check_features(self):
        features = self.features
        if isinstance(features, str):
            features = (features,)
        features = tuple(features)
        unknown = [f for f in features if f not in SPECTRAL_FEATURES]
        if unknown or not features or len(set(features)) != len(features):
            raise ValueError(f"features must be distinct names from {SPECTRAL_FEATURES}, "
                             f"got {self.features!r}")
        return features

    def _checked_bands(self, fs, features):
        """``bands`` as an (n, 2) array; against ``fs / 2`` only when ``features`` use them
        (a low sampling rate needs no band below Nyquist for, say, the centroid alone)."""
        try:
            bands = np.asarray(self.bands, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"bands must be pairs (lo, hi), got {self.bands!r}") from None
        if bands.ndim != 2 or bands.shape[1] != 2 or bands.shape[0] == 0:
            raise ValueError(f"bands must be a non-empty sequence of (lo, hi) pairs, "
                             f"got {self.bands!r}")
        nyquist = fs / 2.0 if _BAND_FEATURES.intersection(features) else np.inf
        bad = ~((bands[:, 0] >= 0) & (bands[:, 0] < bands[:, 1]) & (bands[:, 1] <= nyquist))
        if bad.any():
            default = (" (the default bands are EEG's delta to gamma, up to 45 Hz: pass "
                       "bands= for this rate, or features= without the band powers)"
                       if np.array_equal(bands, np.asarray(_DEFAULT_BANDS)) else "")
            raise ValueError(f"each band needs 0 <= lo < hi <= fs / 2 = {fs / 2.0:g}; "
                             f"got {[tuple(b) for b in bands[bad].tolist()]}{default}")
        names = [_band_name(lo, hi) for lo, hi in bands]
        if len(set(names)) < len(names):  # exact repeats, or bands within 12 digits
            raise ValueError(f"bands must not repeat (to 12 significant digits, which name "
                             f"their columns), got {self.bands!r}")
        return bands


def _warn_empty_bands(bands, freqs, fs, nperseg):
    """A warning for bands that hold no bin of the spectrum: their power would be 0 for
    every window, a column that looks like a measurement and is none."""
    empty = [(float(lo), float(hi)) for lo, hi in bands
             if not np.any((freqs >= lo) & (freqs < hi))]
    if empty:
        warnings.warn(
            f"bands {empty} hold no bin of the spectrum, whose bins lie fs / nperseg = "
            f"{fs / nperseg:.4g} Hz apart (nperseg={nperseg} at fs={fs:g}): their band powers "
            "are 0 for every window. Use longer windows and a larger nperseg, or wider bands",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _band_name(lo, hi):
    return f"{float(lo):.12g}_{float(hi):.12g}"


def _spectral_features(psd, freqs, df, bands, features):
    """The feature matrix of :class:`SpectralFeatures` from PSD rows (see its docstring);
    ``df = fs / nperseg`` is the bin width (also with a single bin)."""
    n_rows, n_bins = psd.shape
    power = psd.sum(axis=1)
    zero = power <= 0.0
    safe = np.where(zero, 1.0, power)
    p = psd / safe[:, None]
    p[zero] = 0.0
    total = power * df
    columns = []
    for feature in features:
        if feature in ("band_power", "relative_band_power"):
            for lo, hi in bands:
                in_band = (freqs >= lo) & (freqs < hi)
                band = psd[:, in_band].sum(axis=1) * df
                if feature == "band_power":
                    columns.append(band)
                else:
                    columns.append(np.where(zero, 0.0, band / np.where(zero, 1.0, total)))
        elif feature == "spectral_entropy":
            with np.errstate(divide="ignore", invalid="ignore"):
                plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
            columns.append(-plogp.sum(axis=1) / np.log(n_bins) if n_bins > 1
                           else np.zeros(n_rows))
        elif feature == "spectral_centroid":
            columns.append(p @ freqs)
        elif feature == "spectral_spread":
            centroid = p @ freqs
            dev = (freqs[None, :] - centroid[:, None]) ** 2
            columns.append(np.sqrt((p * dev).sum(axis=1)))
        elif feature in _EDGES:
            cum = np.cumsum(p, axis=1)
            # Rounding can leave cum[:, -1] a hair under 1: never point past the last bin.
            idx = np.minimum(np.argmax(cum >= _EDGES[feature], axis=1), n_bins - 1)
            idx = np.where(cum[:, -1] >= _EDGES[feature], idx, n_bins - 1)
            columns.append(np.where(zero, 0.0, freqs[idx]))
        elif feature == "dominant_frequency":
            columns.append(np.where(zero, 0.0, freqs[np.argmax(psd, axis=1)]))
        elif feature == "spectral_flatness":
            with np.errstate(divide="ignore"):
                logs = np.log(np.where(psd > 0, psd, 1.0))
            geo = np.exp(logs.mean(axis=1))
            flat = geo / (safe / n_bins)
            columns.append(np.where(zero | (psd <= 0).any(axis=1), 0.0, flat))
        else:  # spectral_slope
            columns.append(_loglog_slope(psd, freqs))
    return np.column_stack(columns).astype(np.float64, copy=False)


def _loglog_slope(psd, freqs):
    """Least-squares slope of log10 P on log10 f per row, over bins with f > 0 and P > 0."""
    mask = (psd > 0) & (freqs[None, :] > 0)
    lf = np.log10(np.where(freqs > 0, freqs, 1.0))[None, :]
    lp = np.log10(np.where(mask, psd, 1.0))
    m = mask.sum(axis=1).astype(np.float64)
    safe_m = np.maximum(m, 1.0)
    mean_f = (mask * lf).sum(axis=1) / safe_m
    mean_p = (mask * lp).sum(axis=1) / safe_m
    cf = np.where(mask, lf - mean_f[:, None], 0.0)
    sxx = (cf * cf).sum(axis=1)
    sxy = (cf * (lp - mean_p[:, None])).sum(axis=1)
    ok = (m >= 2) & (sxx > 0)
    return np.where(ok, sxy / np.where(ok, sxx, 1.0), 0.0)
