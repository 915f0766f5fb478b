"""Signal preprocessing: windows, window statistics, Welch spectra, spectral features, filters.

numba kernels (compiled once, cached on disk) and scikit-learn transformers; this
subpackage does not import torch.

Functions
---------
sliding_windows
    Windows of a signal as a zero-copy view.
window_times
    The time of each of those windows (start, centre or end).
window_features
    Per-window statistics in one parallel pass.
welch_psd
    Welch power spectral density, the numbers of ``scipy.signal.welch``, faster.
bandpass_filter, remove_baseline_wander, notch_filter
    Zero-phase filters.

Transformers (rows in, the same number of rows out)
---------------------------------------------------
WindowFeatures
    The statistics of ``window_features``, one row per window (finite for flat windows).
SpectralFeatures
    Band powers, spectral entropy, centroid, spread, edges, dominant frequency,
    flatness and slope of each window.
BandpassFilter, BaselineWanderRemover, NotchFilter
    The filters, row by row.

Examples
--------
>>> import numpy as np
>>> from sigflow.preprocessing import sliding_windows, window_features, SpectralFeatures
>>> fs = 128.0
>>> x = np.sin(2 * np.pi * 10.0 * np.arange(4096) / fs)
>>> W = sliding_windows(x, width=256, step=128)
>>> W.shape
(31, 256)
>>> window_features(x, width=256, step=128, features=("mean", "std")).shape
(31, 2)
>>> SpectralFeatures(fs=fs, features=("dominant_frequency",)).fit_transform(W)[:2, 0]
array([10., 10.])
"""

from ._filters import (
    BandpassFilter,
    BaselineWanderRemover,
    NotchFilter,
    bandpass_filter,
    notch_filter,
    remove_baseline_wander,
)
from ._spectral import SPECTRAL_FEATURES, SpectralFeatures
from ._welch import welch_psd
from ._window_features import WINDOW_FEATURES, WindowFeatures, window_features
from ._windows import sliding_windows, window_times

__all__ = [
    "SPECTRAL_FEATURES",
    "WINDOW_FEATURES",
    "BandpassFilter",
    "BaselineWanderRemover",
    "NotchFilter",
    "SpectralFeatures",
    "WindowFeatures",
    "bandpass_filter",
    "notch_filter",
    "remove_baseline_wander",
    "sliding_windows",
    "welch_psd",
    "window_features",
    "window_times",
]
