"""Shared input checks for the preprocessing functions (no numba, no torch)."""

from __future__ import annotations

import math
import numbers

import numpy as np


def _check_int(value, name, minimum=1):
    """Return ``value`` as a Python int, raising ValueError unless it is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _as_real_signal(x, name="x"):
    """Convert ``x`` to a real floating array (bool and integer inputs become float64).

    float32 and float64 are kept as they are; callers cast to float64 where they compute.
    Complex input raises ValueError: every function here is defined for real signals.
    """
    x = np.asarray(x)
    if x.dtype.kind == "c":
        raise ValueError(f"{name} must be real-valued, got a complex array")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    if x.dtype.kind != "f" or x.dtype.itemsize > 8:
        x = x.astype(np.float64)
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension")
    return x


def _rows_last(x, axis):
    """Move ``axis`` last and flatten the rest: (2-D float64 C-contiguous rows, batch shape)."""
    axis = _check_axis(axis, x.ndim)
    moved = np.moveaxis(x, axis, -1)
    batch_shape = moved.shape[:-1]
    # math.prod, not -1: numpy cannot infer the batch size of a signal with no samples
    rows = np.ascontiguousarray(
        moved.reshape(math.prod(batch_shape), moved.shape[-1]), dtype=np.float64
    )
    return rows, batch_shape


#: Input elements per chunk of the transformers' ``transform``: windows from
#: ``sliding_windows`` are a view whose rows overlap, and a contiguous copy of all of them
#: (or a temporary as large) can be many times the signal.
TRANSFORM_CHUNK = 1 << 21


def _row_chunks(n_rows, width):
    """Slices of at most :data:`TRANSFORM_CHUNK` elements' worth of rows (at least one)."""
    step = max(TRANSFORM_CHUNK // max(width, 1), 1)
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def _refuse_non_numeric(X, name="X"):
    """The functions' dtype rule for the transformers: ``validate_data(dtype=float64)``
    would turn dates, durations and digit strings into numbers without a word.

    Refused: numpy dates, durations, text and bytes; object arrays and DataFrame columns
    (object, pandas string or categorical) that hold text, bytes, dates or durations.
    Object arrays of plain numbers pass, as scikit-learn takes them.
    """
    dtypes = getattr(X, "dtypes", None)  # a DataFrame: each column's
    if dtypes is not None and hasattr(X, "iloc") and getattr(X, "ndim", 2) == 2:
        columns = [(d, X.iloc[:, i]) for i, d in enumerate(dtypes)]
    else:
        array = X if isinstance(X, np.ndarray) else np.asarray(X)
        columns = [(array.dtype, array)]
    for dtype, values in columns:
        what = _non_numeric(dtype, values)
        if what:
            raise ValueError(f"{name} must be numeric, got {what}")


_KIND_NAMES = {"m": "durations", "M": "dates", "U": "text", "S": "bytes", "V": "raw bytes"}


def _non_numeric(dtype, values):
    """What non-numeric values a column (or array) of ``dtype`` holds, or None."""
    kind = getattr(dtype, "kind", "O")
    if kind in _KIND_NAMES:
        return _KIND_NAMES[kind]
    categories = getattr(dtype, "categories", None)  # pandas categorical: its categories
    if categories is not None:
        return _non_numeric(categories.dtype, np.asarray(categories, dtype=object))
    if kind != "O":
        return None
    # object values (or an extension dtype such as pandas' string): look at their types
    # (a set of them: a loop over the values in Python took 0.3 s for 1.4 million)
    types = set(map(type, np.asarray(values, dtype=object).ravel()))
    if any(issubclass(t, (str, bytes)) for t in types):
        return "text or bytes"
    if any(issubclass(t, (np.datetime64, np.timedelta64)) or (
        not issubclass(t, numbers.Number) and hasattr(t, "isoformat")
    ) for t in types):  # datetime, date, time, pandas Timestamp
        return "dates"
    return None


def _check_axis(axis, ndim):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ValueError(f"axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
    return int(axis) % ndim


def _raise_nonfinite(x, name="x"):
    """Raise the documented NaN/infinity error when ``x`` holds a non-finite value."""
    if not np.isfinite(x).all():
        raise ValueError(
            f"{name} contains NaN or infinity; sigflow.preprocessing does not impute: "
            "remove or interpolate missing samples first"
        )


def _check_n_channels(n_channels, n_columns):
    """``(n_channels, samples per channel)`` for rows of ``n_columns``: the rows hold
    ``n_channels`` windows of equal length side by side (channel by channel)."""
    if isinstance(n_channels, bool) or not isinstance(n_channels, numbers.Integral) or (
        n_channels < 1
    ):
        raise ValueError(f"n_channels must be a positive integer, got {n_channels!r}")
    n_channels = int(n_channels)
    if n_columns % n_channels:
        raise ValueError(
            f"rows of {n_columns} samples do not split into n_channels={n_channels} windows "
            "of equal length (a row holds the channels' windows side by side)"
        )
    return n_channels, n_columns // n_channels


def _channel_feature_names(names, n_channels):
    """``names`` once per channel, ``ch<c>_<name>``, channel by channel (as they are)."""
    if n_channels == 1:
        return list(names)
    return [f"ch{c}_{name}" for c in range(n_channels) for name in names]
