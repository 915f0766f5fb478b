"""Per-window statistics computed in one parallel pass, without materialising the windows."""

from __future__ import annotations

import math
import numbers

import numba as nb
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from ._parallel import ForkAwareKernel
from ._validation import (
    _as_real_signal,
    _channel_feature_names,
    _check_int,
    _check_n_channels,
    _raise_nonfinite,
    _refuse_non_numeric,
    _row_chunks,
    _rows_last,
)

#: Feature names accepted by :func:`window_features`, in their kernel code order.
WINDOW_FEATURES = (
    "mean",
    "std",
    "var",
    "min",
    "max",
    "rms",
    "ptp",
    "line_length",
    "zero_crossings",
    "skewness",
    "kurtosis",
)
_CODE = {name: i for i, name in enumerate(WINDOW_FEATURES)}
# Features the blocked kernel derives from per-block (shift, mean, M2, min, max) summaries.
_BLOCKABLE = frozenset(("mean", "std", "var", "min", "max", "rms", "ptp"))
# scipy.stats.skew/kurtosis return NaN when m2 <= (eps * mean)**2; so do we.
_EPS = float(np.finfo(np.float64).eps)
# Reassociation lets LLVM vectorise the sums; no nnan/ninf, so NaN and inf still propagate.
_FM = {"reassoc", "contract"}


# Windows (or blocks) per parallel task: large enough to amortise the task and the row
# look-ups, small enough to balance two to a few dozen threads.
_CHUNK = 1024


@nb.njit(cache=True, inline="always")
def _write_features(codes, o, w, mean, m2, m3, m4, mn, mx, ll, zc, width):
    var = m2 / width
    for j in range(codes.shape[0]):
        c = codes[j]
        if c == 0:
            o[w, j] = mean
        elif c == 1:
            o[w, j] = math.sqrt(var)
        elif c == 2:
            o[w, j] = var
        elif c == 3:
            o[w, j] = mn
        elif c == 4:
            o[w, j] = mx
        elif c == 5:
            o[w, j] = math.hypot(mean, math.sqrt(var))  # no overflow of mean**2
        elif c == 6:
            o[w, j] = mx - mn
        elif c == 7:
            o[w, j] = ll
        elif c == 8:
            o[w, j] = zc
        elif c == 9:
            if var <= (_EPS * mean) ** 2:
                o[w, j] = np.nan
            else:
                o[w, j] = (m3 / width) / var**1.5
        else:
            if var <= (_EPS * mean) ** 2:
                o[w, j] = np.nan
            else:
                o[w, j] = (m4 / width) / (var * var) - 3.0


def _make_direct_kernel(parallel):
    loop = nb.prange if parallel else range  # serial in forked children

    @nb.njit(parallel=parallel, cache=True, fastmath=_FM)
    def _direct_kernel(x, width, step, n_win, codes, out, finite):
        """Every feature, window by window: two passes over each window (it stays in L1)."""
        need_mom = False
        need_hi = False
        need_ll = False
        need_zc = False
        need_mm = False
        for j in range(codes.shape[0]):
            c = codes[j]
            if c == 1 or c == 2 or c == 5 or c == 9 or c == 10:
                need_mom = True
            if c == 9 or c == 10:
                need_hi = True
            if c == 7:
                need_ll = True
            if c == 8:
                need_zc = True
            if c == 3 or c == 4 or c == 6:
                need_mm = True
        n_rows = x.shape[0]
        n_chunks = (n_win + _CHUNK - 1) // _CHUNK
        for task in loop(n_rows * n_chunks):
            r = task // n_chunks
            w0 = (task - r * n_chunks) * _CHUNK
            xr = x[r]
            o = out[r]
            ok = True
            for w in range(w0, min(w0 + _CHUNK, n_win)):
                seg = xr[w * step : w * step + width]  # contiguous 1-D slice: vectorisable loops
                # Pass 1: sum shifted by the first sample (keeps a DC offset out of the rounding
                # error), extremes, line length, zero crossings.
                shift = seg[0]
                acc = 0.0
                for k in range(width):
                    acc += seg[k] - shift
                mn = np.inf
                mx = -np.inf
                if need_mm:
                    for k in range(width):
                        mn = min(mn, seg[k])
                        mx = max(mx, seg[k])
                ll = 0.0
                if need_ll:
                    for k in range(1, width):
                        ll += abs(seg[k] - seg[k - 1])
                zc = 0.0
                if need_zc:
                    for k in range(1, width):
                        if (seg[k] < 0.0) != (seg[k - 1] < 0.0):
                            zc += 1.0
                ok = ok and math.isfinite(acc) and math.isfinite(ll)
                d = acc / width
                # Pass 2: centred moments around the window mean.
                m2 = 0.0
                m3 = 0.0
                m4 = 0.0
                if need_hi:
                    for k in range(width):
                        e = (seg[k] - shift) - d
                        e2 = e * e
                        m2 += e2
                        m3 += e2 * e
                        m4 += e2 * e2
                elif need_mom:
                    for k in range(width):
                        e = (seg[k] - shift) - d
                        m2 += e * e
                ok = ok and math.isfinite(m2) and math.isfinite(m3) and math.isfinite(m4)
                _write_features(codes, o, w, shift + d, m2, m3, m4, mn, mx, ll, zc, width)
            finite[task] = ok

    return _direct_kernel


_direct_kernel = ForkAwareKernel(_make_direct_kernel)


def _make_block_summaries(parallel):
    loop = nb.prange if parallel else range  # serial in forked children

    @nb.njit(parallel=parallel, cache=True, fastmath=_FM)
    def _block_summaries(x, g, n_blk, need_mm, shift, dmean, m2, bmin, bmax, finite):
        """Summaries of the blocks ``[b*g, (b+1)*g)``: shift, mean - shift, centred M2, min, max."""
        n_rows = x.shape[0]
        n_chunks = (n_blk + _CHUNK - 1) // _CHUNK
        for task in loop(n_rows * n_chunks):
            r = task // n_chunks
            b0 = (task - r * n_chunks) * _CHUNK
            xr = x[r]
            shr = shift[r]
            dr = dmean[r]
            qr = m2[r]
            ok = True
            for b in range(b0, min(b0 + _CHUNK, n_blk)):
                seg = xr[b * g : (b + 1) * g]
                # One pass with the block's first sample as shift: M2 = S2 - S1**2 / g. As k0 is
                # one of the samples, (k0 - mean)**2 <= M2, so S2 <= (g + 1) * M2 and the
                # cancellation costs at most a factor g + 1 in relative error (~1e-14 at g = 32).
                k0 = seg[0]
                acc = 0.0
                acc2 = 0.0
                for k in range(g):
                    e = seg[k] - k0
                    acc += e
                    acc2 += e * e
                d = acc / g
                q = max(acc2 - acc * d, 0.0)
                shr[b] = k0
                dr[b] = d
                qr[b] = q
                ok = ok and math.isfinite(acc) and math.isfinite(q)
                if need_mm:
                    lo = np.inf
                    hi = -np.inf
                    for k in range(g):
                        lo = min(lo, seg[k])
                        hi = max(hi, seg[k])
                    bmin[r, b] = lo
                    bmax[r, b] = hi
            finite[task] = ok

    return _block_summaries


_block_summaries = ForkAwareKernel(_make_block_summaries)


def _make_block_combine(parallel):
    loop = nb.prange if parallel else range  # serial in forked children

    @nb.njit(parallel=parallel, cache=True, fastmath=_FM)
    def _block_combine(
        shift, dmean, m2, bmin, bmax, g, per_win, blk_step, n_win, need_mm, codes, out
    ):
        """Merge ``per_win`` consecutive block summaries into window statistics.

        Block means are kept as ``shift + d`` with ``shift`` a data sample, and the window's
        centred M2 is ``sum M2_b + g * sum (m_b - m_w)**2`` with every difference taken
        between shifts first (exact for nearby values), so large offsets do not leak into
        the variance: the result is as accurate as a two-pass computation over the window.
        """
        n_rows = shift.shape[0]
        width = g * per_win
        # The most common request gets a branch-free write.
        mean_std = codes.shape[0] == 2 and codes[0] == 0 and codes[1] == 1
        n_chunks = (n_win + _CHUNK - 1) // _CHUNK
        for task in loop(n_rows * n_chunks):
            r = task // n_chunks
            w0 = (task - r * n_chunks) * _CHUNK
            shr = shift[r]
            dr = dmean[r]
            qr = m2[r]
            o = out[r]
            for w in range(w0, min(w0 + _CHUNK, n_win)):
                b0 = w * blk_step
                ref = shr[b0]
                acc = 0.0
                for j in range(b0, b0 + per_win):
                    acc += (shr[j] - ref) + dr[j]
                dm = acc / per_win
                q = 0.0
                between = 0.0
                for j in range(b0, b0 + per_win):
                    e = ((shr[j] - ref) + dr[j]) - dm
                    q += qr[j]
                    between += e * e
                mn = np.inf
                mx = -np.inf
                if need_mm:
                    for j in range(b0, b0 + per_win):
                        mn = min(mn, bmin[r, j])
                        mx = max(mx, bmax[r, j])
                if mean_std:
                    o[w, 0] = ref + dm
                    o[w, 1] = math.sqrt((q + g * between) / width)
                else:
                    _write_features(codes, o, w, ref + dm, q + g * between, 0.0, 0.0, mn, mx, 0.0,
                                    0.0, width)

    return _block_combine


_block_combine = ForkAwareKernel(_make_block_combine)


def window_features(x, width, step, features=WINDOW_FEATURES, axis=-1):
    """Statistics of every window of a signal, computed in parallel without copying windows.

    The windows are those of :func:`sliding_windows` (``width`` samples, hop
    ``step``). All arithmetic is float64; each window's centred moments are
    computed around its own mean (two-pass accuracy), so a large DC offset does
    not degrade ``std``, ``skewness`` or ``kurtosis``.

    For a window ``w`` of ``n = width`` samples, with ``m = mean(w)`` and
    ``m_k = mean((w - m)**k)``:

    ============== ==========================================================
    ``mean``       ``m``
    ``var``        ``m_2`` (population variance, ``ddof=0`` as in numpy)
    ``std``        ``sqrt(m_2)``
    ``min``/``max`` smallest / largest sample
    ``rms``        ``sqrt(mean(w**2))``
    ``ptp``        ``max - min`` (peak to peak)
    ``line_length`` ``sum(abs(diff(w)))`` over the ``n - 1`` pairs inside the window
    ``zero_crossings`` number of pairs ``(w[i], w[i+1])`` with ``(w[i] < 0) != (w[i+1] < 0)``
                   (zero counts as positive; subtract the mean first for mean crossings)
    ``skewness``   ``m_3 / m_2**1.5`` (biased, as ``scipy.stats.skew``)
    ``kurtosis``   ``m_4 / m_2**2 - 3`` (Fisher, biased, as ``scipy.stats.kurtosis``)
    ============== ==========================================================

    ``skewness`` and ``kurtosis`` are NaN for a (numerically) constant window,
    ``m_2 <= (eps * m)**2``, the rule scipy uses.

    Parameters
    ----------
    x : array_like
        Real signal, 1-D or multichannel; integer, bool and float32 inputs are
        converted to float64.
    width : int
        Samples per window, ``1 <= width <= x.shape[axis]``.
    step : int
        Hop between window starts, ``>= 1``.
    features : tuple of str, default=all of the above
        Which statistics to return, in this order.
    axis : int, default=-1
        The time axis.

    Returns
    -------
    F : ndarray of shape ``batch_shape + (n_windows, len(features))``, float64
        ``batch_shape`` is ``x.shape`` without ``axis`` (empty for a 1-D signal)
        and ``n_windows = (x.shape[axis] - width) // step + 1``.

    Raises
    ------
    ValueError
        For a window longer than the signal, a non-positive ``width`` or
        ``step``, an unknown or repeated feature name, a complex input, NaN
        or infinity anywhere in ``x`` (NaN policy: error; nothing is imputed),
        or finite samples so large that a window's sums overflow float64 (a
        variance from spreads near 1e154, a kurtosis from near 1e77): divide
        the signal by a constant first.

    Notes
    -----
    Mean/std/var/min/max/rms/ptp use a blocked algorithm when
    ``g = gcd(width, step) >= 4``: one pass summarises blocks of ``g`` samples
    and each window merges its ``width // g`` block summaries (Chan et al.),
    so every sample is read once however much the windows overlap. The other
    features are computed window by window.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.preprocessing import window_features
    >>> x = np.sin(np.linspace(0, 20 * np.pi, 2000))
    >>> F = window_features(x, width=200, step=100, features=("mean", "std", "zero_crossings"))
    >>> F.shape
    (19, 3)
    >>> bool(np.allclose(F[:, 1], np.sqrt(0.5), atol=1e-2))
    True
    """
    x = _as_real_signal(x)
    width = _check_int(width, "width")
    step = _check_int(step, "step")
    features = _check_features(features)
    rows, batch_shape = _rows_last(x, axis)
    n = rows.shape[1]
    if width > n:
        raise ValueError(f"window width {width} is longer than the signal ({n} samples)")
    # a step beyond the signal gives the same single window and keeps step within int64
    step = min(step, n)
    n_win = (n - width) // step + 1
    codes = np.array([_CODE[f] for f in features], dtype=np.int64)
    out = np.empty((rows.shape[0], n_win, len(features)), dtype=np.float64)
    g = math.gcd(width, step)
    if rows.shape[0] and set(features) <= _BLOCKABLE and step < width and g >= 4:
        need_mm = bool({"min", "max", "ptp"} & set(features))
        n_blk = ((n_win - 1) * step + width) // g
        shape = (rows.shape[0], n_blk)
        shift, dmean, m2 = np.empty(shape), np.empty(shape), np.empty(shape)
        bmin = np.empty(shape if need_mm else (1, 1))
        bmax = np.empty(shape if need_mm else (1, 1))
        finite = np.empty(rows.shape[0] * -(-n_blk // _CHUNK), dtype=np.bool_)
        _block_summaries(rows, g, n_blk, need_mm, shift, dmean, m2, bmin, bmax, finite)
        if not finite.all():
            _raise_nonfinite_or_overflow(rows)
        _block_combine(shift, dmean, m2, bmin, bmax, g, width // g, step // g, n_win, need_mm,
                       codes, out)
        if not np.isfinite(out).all():  # finite blocks whose merged moments overflow
            _raise_nonfinite_or_overflow(rows)
    elif rows.shape[0]:
        finite = np.empty(rows.shape[0] * -(-n_win // _CHUNK), dtype=np.bool_)
        _direct_kernel(rows, width, step, n_win, codes, out, finite)
        if not finite.all():
            _raise_nonfinite_or_overflow(rows)
    # Samples after the last window, and between windows when ``step > width``, are not
    # read by the kernels; the NaN policy covers them too.
    _raise_nonfinite(rows if step > width else rows[:, (n_win - 1) * step + width:])
    return out.reshape(batch_shape + (n_win, len(features)))


def _raise_nonfinite_or_overflow(rows):
    """The kernels' sums were not finite: the input holds NaN or infinity (the documented
    error), or finite samples near the largest float whose sums overflow."""
    _raise_nonfinite(rows)
    raise ValueError(
        "x is finite, but sums over its windows overflow float64 (samples near "
        f"{np.abs(rows).max():.3g}); divide the signal by a constant first (the statistics "
        "scale with it)"
    )


def _check_features(features):
    if isinstance(features, str):
        features = (features,)
    try:
        features = tuple(features)
    except TypeError:
        raise ValueError(f"features must be a tuple of names, got {features!r}") from None
    if not features:
        raise ValueError("features must name at least one statistic")
    unknown = [f for f in features if f not in _CODE]
    if unknown:
        raise ValueError(f"unknown window feature(s) {unknown}; choose from {WINDOW_FEATURES}")
    if len(set(features)) != len(features):
        raise ValueError(f"features must not repeat a name, got {features}")
    return features


class WindowFeatures(TransformerMixin, BaseEstimator):
    """Statistics of each row, a window of a signal: :func:`window_features` as a transformer.

    Rows in, the same number of rows out, one column per feature, so windows from
    :func:`sliding_windows` go straight into a ``Pipeline`` (beside
    :class:`SpectralFeatures` in a ``FeatureUnion``, say) and on to an estimator.

    Skewness and kurtosis are undefined for a constant row; :func:`window_features` and
    ``scipy.stats`` give NaN there (also for a row constant to float64's resolution of its
    mean: ``m2 <= (eps * mean)**2``), which estimators that refuse NaN (scikit-learn's and
    sigflow's) would refuse, at the very windows a detector should flag (a flat-lined
    lead). Here they are ``constant_fill`` instead; the row's ``std`` (0, or below that
    resolution) still tells it apart. Both are computed on each row divided by its largest
    magnitude, which they do not depend on, so rows of any finite size get their values.

    Parameters
    ----------
    features : str or tuple of str, default=WINDOW_FEATURES
        Statistics to compute, in output order; see :func:`window_features`.
    constant_fill : float or None, default=0.0
        Skewness and (excess) kurtosis of a constant row; None keeps NaN.
    n_channels : int, default=1
        Windows per row: a row holds the windows of ``n_channels`` channels side by side,
        each ``n_features_in_ // n_channels`` samples long (``sliding_windows(X, width,
        step, axis=0).reshape(n_windows, -1)`` for a signal ``X`` of shape ``(n_samples,
        n_channels)``). The statistics are computed per channel, output channel by channel
        (``ch0_mean, ch0_std, ..., ch1_mean, ...``).

    Attributes
    ----------
    n_features_in_ : int
        Samples per row seen in :meth:`fit` (of all channels together).
    feature_names_in_ : ndarray of str
        Input column names, when ``X`` had them.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.preprocessing import WindowFeatures, sliding_windows
    >>> x = np.r_[np.sin(np.linspace(0, 40 * np.pi, 2000)), np.zeros(400)]  # then flat
    >>> W = sliding_windows(x, width=200, step=200)
    >>> F = WindowFeatures(features=("std", "kurtosis")).fit_transform(W)
    >>> F.shape, bool(np.isfinite(F).all())
    ((12, 2), True)
    >>> F[-1]  # the flat window: no spread, kurtosis filled with 0
    array([0., 0.])

    Two channels, their windows side by side in each row:

    >>> X = np.column_stack([x, 2 * x])  # (n_samples, n_channels)
    >>> W2 = sliding_windows(X, width=200, step=200, axis=0).reshape(12, -1)  # (12, 2 * 200)
    >>> wf = WindowFeatures(features=("std",), n_channels=2).fit(W2)
    >>> F2 = wf.transform(W2)  # channel 1 is twice channel 0
    >>> bool(np.allclose(F2[:, 1], 2 * F2[:, 0])), list(wf.get_feature_names_out())
    (True, ['ch0_std', 'ch1_std'])
    """

    def __init__(self, features=WINDOW_FEATURES, constant_fill=0.0, n_channels=1):
        self.features = features
        self.constant_fill = constant_fill
        self.n_channels = n_channels

    def fit(self, X, y=None):
        """Check the parameters and record the window length.

        Parameters
        ----------
        X : array-like of shape (n_windows, n_samples_per_window)
            Windows as rows.
        y : None
            Ignored.

        Returns
        -------
        self : WindowFeatures
        """
        _refuse_non_numeric(X)
        X = validate_data(self, X, dtype=np.float64)
        self._checked()
        _check_n_channels(self.n_channels, X.shape[1])
        return self

    def transform(self, X):
        """Statistics of every row.

        Parameters
        ----------
        X : array-like of shape (n_windows, n_features_in_)
            Windows as rows, finite.

        Returns
        -------
        F : ndarray of shape (n_windows, len(features))
            Columns named by :meth:`get_feature_names_out`.
        """
        check_is_fitted(self)
        _refuse_non_numeric(X)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        features, fill = self._checked()
        n_channels, width = _check_n_channels(self.n_channels, X.shape[1])
        F = np.empty((X.shape[0], n_channels * len(features)))
        # in row chunks: windows from sliding_windows overlap, and a contiguous copy of all
        # of them at once can be many times the signal's size
        for rows in _row_chunks(X.shape[0], X.shape[1]):
            windows = X[rows].reshape(-1, width)  # one channel's window per row
            F[rows] = self._statistics(windows, features, fill).reshape(
                -1, n_channels * len(features)
            )
        return F

    @staticmethod
    def _statistics(X, features, fill):
        shape = [j for j, name in enumerate(features) if name in ("skewness", "kurtosis")]
        rest = [j for j in range(len(features)) if j not in shape]
        F = np.empty((X.shape[0], len(features)))
        if rest:
            F[:, rest] = window_features(X, X.shape[1], 1,
                                         features=tuple(features[j] for j in rest))[:, 0, :]
        if shape:
            # Both are scale-free: computed on rows scaled to a largest magnitude of 1 they
            # cannot overflow (|x| ~ 1e90: m4 = inf) or underflow (|x| ~ 1e-160: var**2 = 0),
            # so NaN is left only where scipy's rule finds the row constant.
            big = np.abs(X).max(axis=1, keepdims=True)
            big[big == 0] = 1.0
            S = window_features(X / big, X.shape[1], 1,
                                features=tuple(features[j] for j in shape))[:, 0, :]
            if fill is not None:
                S[np.isnan(S)] = fill
            F[:, shape] = S
        return F

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: the feature names.

        Parameters
        ----------
        input_features : array-like of str, optional
            Only checked against the input names seen in :meth:`fit`.

        Returns
        -------
        names : ndarray of str objects
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features)
        n_channels, _ = _check_n_channels(self.n_channels, self.n_features_in_)
        return np.asarray(_channel_feature_names(_check_features(self.features), n_channels),
                          dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    def _checked(self):
        features = _check_features(self.features)
        fill = self.constant_fill
        if fill is not None and (
            isinstance(fill, bool) or not isinstance(fill, numbers.Real)
            or not math.isfinite(fill)
        ):
            raise ValueError(f"constant_fill must be None or a finite number, got {fill!r}")
        return features, None if fill is None else float(fill)
