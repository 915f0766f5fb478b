"""Plots of ECG traces and beat anomaly scores (matplotlib, optional)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_scores", "plot_score_histogram", "score_color_norm"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "sigflow's plots need matplotlib: pip install sigflow[plot]"
        ) from exc
    return plt


def _spread(values):
    """A robust scale of ``values`` (interquartile range, else range, else 1)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 1.0
    q25, q75 = np.percentile(finite, [25, 75])
    spread = q75 - q25 if q75 > q25 else np.ptp(finite)
    return float(spread) if spread > 0 else 1.0


#: Scores beyond this size are drawn as infinite: a detector gives a row whose
#: log-likelihood overflows the lowest float64 (not -inf, which scikit-learn's metrics
#: refuse), and a score as large as that overflows any arithmetic of the axes.
_INFINITE_SCORE = 1e300


def _as_scores(scores):
    """``scores`` as a flat float array, those beyond :data:`_INFINITE_SCORE` infinite."""
    scores = np.asarray(scores, dtype=float).ravel()
    huge = np.abs(scores) > _INFINITE_SCORE
    if huge.any():
        scores = np.where(huge, np.copysign(np.inf, scores), scores)
    return scores


def _round2(v):
    """``v`` to two significant digits."""
    if v == 0 or not np.isfinite(v):
        return v
    digits = 1 - int(np.floor(np.log10(abs(v))))
    try:
        return round(v, digits)
    except OverflowError:  # near the largest float
        return v


def _asinh_axis(ax, which, centre, width, lo, hi):
    """Make ``ax``'s x or y axis linear within ``width`` of ``centre`` and logarithmic
    beyond (``asinh``), with ticks at ``centre`` and ``centre +- width * 10**k`` (rounded)."""
    from matplotlib.ticker import FixedLocator

    def forward(v):
        return np.arcsinh((np.asarray(v, dtype=float) - centre) / width)

    def inverse(u):
        return centre + width * np.sinh(u)

    getattr(ax, f"set_{which}scale")("function", functions=(forward, inverse))
    candidates = [centre]
    reach = max(abs(hi - centre), abs(centre - lo), width)
    for k in range(40):  # bounded: scores near the largest float overflow any product
        step = width * 10.0**k
        if not step <= reach or not np.isfinite(step):
            break
        candidates += [centre + step, centre - step]
    span = float(forward(hi + width) - forward(lo - width))
    ticks = []
    for t in candidates:  # centre first, then outwards; none closer than a sixth of the axis
        if lo - width <= t <= hi + width and all(
            abs(float(forward(t) - forward(k))) >= span / 6 for k in ticks
        ):
            ticks.append(t)
    ticks = sorted(_round2(t) for t in ticks)
    getattr(ax, f"{which}axis").set_major_locator(FixedLocator(ticks))


def score_color_norm(scores, threshold=None):
    """The colour scale of :func:`plot_scores` for ``scores`` (one record's or a run's).

    Colours follow the rank of a score among ``scores``: with a threshold, the beats below
    it spread over the lower half of a diverging colour map (blue, lightest nearest the
    threshold) and those above over the upper half (red), so that a colour means flagged or
    not, moderately unusual beats stand out from typical ones, and one extreme beat does
    not squash the others into one colour. Without a threshold, the median is the middle.
    Pass the scale made from all records of a run to each ``plot_scores`` call (``norm=``)
    so that a colour means the same score in every record.

    Parameters
    ----------
    scores : array-like
        Anomaly scores, higher = more abnormal.
    threshold : float, default=None
        The score above which a beat is flagged.

    Returns
    -------
    norm : matplotlib.colors.Normalize
        Maps a score to [0, 1]; 0.5 at the threshold.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.ecg import score_color_norm
    >>> norm = score_color_norm(np.r_[np.arange(99.0), 1e4], threshold=50.0)  # doctest: +SKIP
    >>> float(norm(50.0)), float(norm(25.0)) < 0.5 < float(norm(60.0))  # doctest: +SKIP
    (0.5, True)
    """
    from matplotlib.colors import FuncNorm

    scores = _as_scores(scores)
    finite = np.unique(scores[np.isfinite(scores)])
    centre = float(threshold) if threshold is not None else (
        float(np.median(finite)) if finite.size else 0.0)
    below = finite[finite < centre]
    above = finite[finite > centre]
    if not below.size:
        below = np.array([centre - _spread(scores)])
    if not above.size:
        above = np.array([centre + _spread(scores)])
    knots = np.concatenate([below, [centre], above])
    levels = np.concatenate([
        0.5 * np.arange(below.size) / max(below.size, 1),
        [0.5],
        0.5 + 0.5 * np.arange(1, above.size + 1) / above.size,
    ])

    def forward(v):
        return np.interp(np.asarray(v, dtype=float), knots, levels)

    def inverse(u):
        return np.interp(np.asarray(u, dtype=float), levels, knots)

    norm = FuncNorm((forward, inverse), vmin=float(knots[0]), vmax=float(knots[-1]))
    norm.centre = centre  # for the colour bar's ticks
    return norm


def _colorbar_ticks(norm):
    """Score values at even steps of the colour scale (rounded), and its centre."""
    ticks = {_round2(float(norm.inverse(u))) for u in (0.0, 0.25, 0.75, 1.0)}
    ticks.add(_round2(getattr(norm, "centre", float(norm.inverse(0.5)))))
    return sorted(ticks)


def plot_scores(signal, fs, samples, scores, *, threshold=None, labels=None, start=0.0,
                duration=None, lead="", title=None, ax=None, units="mV",
                score_label="anomaly score", norm=None, t0=0.0):
    """Plot an ECG trace with each beat coloured by its anomaly score.

    Parameters
    ----------
    signal : array-like of shape (n_samples,)
        One ECG lead.
    fs : float
        Sampling frequency in Hz.
    samples : array-like of int, shape (n_beats,)
        R-peak sample index of each beat.
    scores : array-like of shape (n_beats,)
        Anomaly score of each beat, higher = more abnormal (for sigflow and
        scikit-learn detectors, pass ``-decision_function(X)`` or
        ``-score_samples(X)``).
    threshold : float, default=None
        Score above which a beat is flagged (a dashed line on the score
        panel; flagged beats are ringed on the trace).
    labels : array-like of str, default=None
        Known beat classes, written above abnormal beats (not ``"N"``).
    start, duration : float, default=0.0, None
        The time span to draw, in seconds (all of it by default); a start beyond
        the signal is a ValueError.
    lead : str, default=""
        Lead name for the axis label.
    title : str, default=None
        Figure title.
    ax : sequence of two matplotlib Axes, default=None
        Axes for the trace and the score panel; a new figure when None.
    units : str or None, default="mV"
        Physical units of ``signal`` for the axis label (e.g. a record's
        ``units[channel]``); None or ``""`` leaves them out.
    score_label : str, default="anomaly score"
        What ``scores`` are, for the colour bar and the score panel's axis.
    norm : matplotlib.colors.Normalize, default=None
        The colour scale; by default :func:`score_color_norm` of ``scores``: diverging
        around the threshold (blue below, red above), compressed logarithmically far from
        it. The score panel uses the same compression (an ``asinh`` axis).
    t0 : float, default=0.0
        Time of ``signal[0]`` in seconds, which the time axis adds: ``record.start / fs``
        for a part of a record (``start`` still counts from ``signal[0]``).

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.ecg import make_synthetic_ecg, plot_scores
    >>> sig, fs, ann = make_synthetic_ecg(duration=10, v_rate=0.2, random_state=0)
    >>> scores = (ann["symbol"] == "V").astype(float)
    >>> fig = plot_scores(sig, fs, ann["sample"], scores, threshold=0.5)  # doctest: +SKIP
    """
    plt = _pyplot()
    x = np.asarray(signal, dtype=float).ravel()
    samples = np.asarray(samples, dtype=np.int64).ravel()
    scores = _as_scores(scores)
    if samples.shape != scores.shape:
        raise ValueError(f"samples and scores differ in length: {len(samples)} != {len(scores)}")
    if not max(start, 0) * fs < x.shape[0]:
        raise ValueError(f"start={start:g} s is beyond the signal ({x.shape[0] / fs:g} s)")
    lo = int(max(start, 0) * fs)
    hi = x.shape[0] if duration is None else int(min((start + duration) * fs, x.shape[0]))
    t = t0 + np.arange(lo, hi) / fs
    sel = (samples >= lo) & (samples < hi)
    if ax is None:
        fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(12, 5), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
    else:
        ax0, ax1 = ax
        fig = ax0.figure
    ax0.plot(t, x[lo:hi], color="0.3", lw=0.7)
    if norm is None:
        norm = score_color_norm(scores, threshold)
    pts = ax0.scatter(t0 + samples[sel] / fs, x[samples[sel]], c=scores[sel], cmap="coolwarm",
                      norm=norm, s=25, zorder=3, edgecolors="0.2", linewidths=0.3)
    if threshold is not None:
        flag = sel & (scores > threshold)
        ax0.scatter(t0 + samples[flag] / fs, x[samples[flag]], s=140, facecolors="none",
                    edgecolors="red", lw=1.2, zorder=4, label="flagged")
        ax1.axhline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold:.3g}")
        if flag.any():
            ax0.legend(loc="best", framealpha=0.8)
    if labels is not None:
        labels = np.asarray(labels).astype(str).ravel()
        for s, lab in zip(samples[sel], labels[sel], strict=True):
            if lab not in ("N", ""):
                ax0.annotate(lab, (t0 + s / fs, x[s]), xytext=(0, 8), textcoords="offset points",
                             ha="center", fontsize=8, color="C3")
        ax0.margins(y=0.15)  # room for the labels above the tallest beats
    bar = fig.colorbar(pts, ax=[ax0, ax1], label=score_label, pad=0.01)
    bar.set_ticks(_colorbar_ticks(norm))
    bar.ax.tick_params(labelsize=8)
    ax1.plot(t0 + samples[sel] / fs, scores[sel], ".-", color="0.4", lw=0.6, ms=4)
    shown = scores[sel][np.isfinite(scores[sel])]
    if shown.size and np.ptp(shown) > 0:
        # the score panel compressed like the colours: the threshold and the normal beats
        # stay visible beside a beat thousands of units above them
        centre = float(threshold) if threshold is not None else float(np.median(shown))
        width = max(float(np.median(np.abs(shown - centre))) / 3, _spread(shown))
        _asinh_axis(ax1, "y", centre, width, min(shown.min(), centre),
                    max(shown.max(), centre))
    if units:
        ax0.set_ylabel(f"{lead} ({units})" if lead else str(units))
    else:
        ax0.set_ylabel(lead or "")
    ax1.set_ylabel(score_label)
    ax1.set_xlabel("time (s)")
    if title:
        ax0.set_title(title)
    return fig


def plot_score_histogram(scores, labels=None, *, threshold=None, bins=50, title=None, ax=None):
    """Histogram of beat anomaly scores, by class when labels are known.

    The score axis is linear within about the interquartile range of the scores and
    logarithmic beyond (``asinh``), and the bins are even on it, so that a few extreme
    beats do not put all the others into one bin; the counts are on a log axis, so that
    classes of a few beats show beside thousands without being blown up to their size.

    Parameters
    ----------
    scores : array-like of shape (n_beats,)
        Anomaly scores, higher = more abnormal.
    labels : array-like of str, default=None
        Beat classes (e.g. AAMI ``"N"``, ``"S"``, ``"V"``); one histogram
        per class, its size in the legend. Empty strings count as unlabelled.
    threshold : float, default=None
        Decision threshold, drawn as a dashed line.
    bins : int, default=50
        Number of bins (shared by all classes).
    title : str, default=None
        Axes title.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure when None.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.ecg import plot_score_histogram
    >>> rng = np.random.default_rng(0)
    >>> scores = np.r_[rng.normal(0, 1, 500), rng.normal(4, 1, 50)]
    >>> labels = np.r_[["N"] * 500, ["V"] * 50]
    >>> fig = plot_score_histogram(scores, labels, threshold=2.5)  # doctest: +SKIP
    """
    plt = _pyplot()
    scores = _as_scores(scores)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    finite = np.isfinite(scores)
    if threshold is not None:
        centre = float(threshold)
    else:
        centre = float(np.median(scores[finite])) if finite.any() else 0.0
    width = _spread(scores)
    edges = bins
    if finite.any() and np.ptp(scores[finite]) > 0:
        # bins even on the asinh axis
        u = np.arcsinh((scores[finite] - centre) / width)
        edges = centre + width * np.sinh(np.linspace(u.min(), u.max(), int(bins) + 1))
    if labels is None or all(str(v) == "" for v in np.asarray(labels).ravel()):
        ax.hist(scores[finite], bins=edges, color="C0", alpha=0.8,
                label=f"all beats (n={finite.sum()})")
    else:
        labels = np.asarray(labels).astype(str).ravel()
        if labels.shape != scores.shape:
            raise ValueError("scores and labels differ in length")
        order = [c for c in ("N", "S", "V", "F", "Q") if c in set(labels)]
        order += sorted(set(labels) - set(order))
        for i, c in enumerate(order):
            m = finite & (labels == c)
            ax.hist(scores[m], bins=edges, histtype="stepfilled", alpha=0.45,
                    color=f"C{i}", label=f"{c or 'unlabelled'} (n={m.sum()})")
    ax.set_ylabel("beats")
    ax.set_yscale("log")
    if finite.any() and np.ptp(scores[finite]) > 0:
        _asinh_axis(ax, "x", centre, width, scores[finite].min(), scores[finite].max())
    if threshold is not None:
        ax.axvline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set_xlabel("anomaly score (higher = more abnormal)")
    ax.legend()
    if title:
        ax.set_title(title)
    return fig
