"""Sliding windows over a signal as a zero-copy strided view."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._validation import _check_axis, _check_int


def sliding_windows(x, width, step, axis=-1):
    """Cut a signal into (overlapping) windows without copying it.

    Window ``i`` holds samples ``i * step, ..., i * step + width - 1`` of ``x``
    along ``axis``; samples after the last full window are dropped.

    Parameters
    ----------
    x : array_like
        A 1-D signal or a multichannel array; ``axis`` is the time axis.
        Any numeric dtype (bool, integer, float, complex) is accepted and kept
        (no cast); object arrays are rejected.
    width : int
        Samples per window, ``1 <= width <= x.shape[axis]``.
    step : int
        Hop between the starts of consecutive windows, ``>= 1``.
    axis : int, default=-1
        The time axis.

    Returns
    -------
    windows : ndarray
        A read-only view of shape ``x.shape`` with ``axis`` replaced by
        ``n_windows`` and a new last axis of length ``width``, where
        ``n_windows = (x.shape[axis] - width) // step + 1``. It is a view when
        ``x`` is already an ndarray (no copy at all).

    Raises
    ------
    ValueError
        If ``width`` or ``step`` is not a positive integer, or ``width`` is
        longer than the signal.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.preprocessing import sliding_windows
    >>> sliding_windows(np.arange(7), width=3, step=2)
    array([[0, 1, 2],
           [2, 3, 4],
           [4, 5, 6]])
    >>> sliding_windows(np.zeros((2, 1000)), width=256, step=128).shape
    (2, 6, 256)
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension")
    if x.dtype.kind == "O":
        raise ValueError("x must be numeric, got dtype object")
    axis = _check_axis(axis, x.ndim)
    width = _check_int(width, "width")
    step = _check_int(step, "step")
    n = x.shape[axis]
    if width > n:
        raise ValueError(f"window width {width} is longer than the signal ({n} samples)")
    # sliding_window_view appends the window axis last and keeps the rest in place.
    view = np.lib.stride_tricks.sliding_window_view(x, width, axis=axis)
    index = [slice(None)] * x.ndim
    index[axis] = slice(None, None, step)
    return view[tuple(index)]


def window_times(n_samples, width, step, fs=1.0, where="start"):
    """Times of the windows that :func:`sliding_windows` cuts from ``n_samples`` samples.

    Rows of :func:`sliding_windows`, :func:`window_features` and the transformers fed with
    them are windows in this order, so this puts a time on each row (to plot a score
    against, or to map a flagged window back to the recording).

    Parameters
    ----------
    n_samples : int
        Length of the signal along its time axis (``x.shape[axis]``).
    width, step : int
        As given to :func:`sliding_windows`.
    fs : float, default=1.0
        Sampling frequency (Hz): times in seconds; with the default, in samples.
    where : {"start", "center", "end"}, default="start"
        The time of the window's first sample, of its middle (``(width - 1) / 2`` samples
        after the first, half-way between two samples for an even width), or of its last
        sample; sample ``k`` is at ``k / fs``.

    Returns
    -------
    times : ndarray of shape (n_windows,)
        ``(i * step + offset) / fs`` for ``i = 0 .. n_windows - 1``, float64.

    Examples
    --------
    >>> from sigflow.preprocessing import window_times
    >>> window_times(1000, width=250, step=125, fs=250.0)
    array([0. , 0.5, 1. , 1.5, 2. , 2.5, 3. ])
    >>> window_times(7, width=3, step=2, where="center")  # in samples
    array([1., 3., 5.])
    """
    n_samples = _check_int(n_samples, "n_samples")
    width = _check_int(width, "width")
    step = _check_int(step, "step")
    if width > n_samples:
        raise ValueError(f"window width {width} is longer than the signal ({n_samples} samples)")
    if isinstance(fs, bool) or not isinstance(fs, numbers.Real) or not (
            math.isfinite(fs) and fs > 0):
        raise ValueError(f"fs must be a positive finite number, got {fs!r}")
    offsets = {"start": 0.0, "center": (width - 1) / 2.0, "end": float(width - 1)}
    if not isinstance(where, str) or where not in offsets:
        raise ValueError(f"where must be one of {sorted(offsets)}, got {where!r}")
    n_windows = (n_samples - width) // step + 1
    return (np.arange(n_windows, dtype=np.float64) * step + offsets[where]) / float(fs)
