"""Plots of ECG traces and beat anomaly scores (matplotlib, optional)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_scores", "plot_score_histogram"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "sigflow's plots need matplotlib: pip install sigflow[plot]"
        ) from exc
    return plt


def plot_scores(signal, fs, samples, scores, *, threshold=None, labels=None, start=0.0,
                duration=None, lead="", title=None, ax=None, units="mV",
                score_label="anomaly score"):
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
    scores = np.asarray(scores, dtype=float).ravel()
    if samples.shape != scores.shape:
        raise ValueError(f"samples and scores differ in length: {len(samples)} != {len(scores)}")
    if not max(start, 0) * fs < x.shape[0]:
        raise ValueError(f"start={start:g} s is beyond the signal ({x.shape[0] / fs:g} s)")
    lo = int(max(start, 0) * fs)
    hi = x.shape[0] if duration is None else int(min((start + duration) * fs, x.shape[0]))
    t = np.arange(lo, hi) / fs
    sel = (samples >= lo) & (samples < hi)
    if ax is None:
        fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(12, 5), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
    else:
        ax0, ax1 = ax
        fig = ax0.figure
    ax0.plot(t, x[lo:hi], color="0.3", lw=0.7)
    finite = scores[np.isfinite(scores)]
    vmin, vmax = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    if threshold is not None:
        vmax = max(vmax, threshold)
    pts = ax0.scatter(samples[sel] / fs, x[samples[sel]], c=scores[sel], cmap="viridis",
                      vmin=vmin, vmax=vmax, s=25, zorder=3)
    if threshold is not None:
        flag = sel & (scores > threshold)
        ax0.scatter(samples[flag] / fs, x[samples[flag]], s=140, facecolors="none",
                    edgecolors="red", lw=1.2, zorder=4, label="flagged")
        ax1.axhline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold:.3g}")
        if flag.any():
            ax0.legend(loc="upper right")
    if labels is not None:
        labels = np.asarray(labels).astype(str).ravel()
        for s, lab in zip(samples[sel], labels[sel], strict=True):
            if lab not in ("N", ""):
                ax0.annotate(lab, (s / fs, x[s]), xytext=(0, 8), textcoords="offset points",
                             ha="center", fontsize=8, color="C3")
    fig.colorbar(pts, ax=[ax0, ax1], label=score_label, pad=0.01)
    ax1.plot(samples[sel] / fs, scores[sel], ".-", color="0.4", lw=0.6, ms=4)
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

    Parameters
    ----------
    scores : array-like of shape (n_beats,)
        Anomaly scores, higher = more abnormal.
    labels : array-like of str, default=None
        Beat classes (e.g. AAMI ``"N"``, ``"S"``, ``"V"``); one histogram
        (density-normalised) per class. Empty strings count as unlabelled.
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
    scores = np.asarray(scores, dtype=float).ravel()
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    finite = np.isfinite(scores)
    edges = np.histogram_bin_edges(scores[finite], bins=bins) if finite.any() else bins
    if labels is None or all(str(v) == "" for v in np.asarray(labels).ravel()):
        ax.hist(scores[finite], bins=edges, color="C0", alpha=0.8, label="all beats")
    else:
        labels = np.asarray(labels).astype(str).ravel()
        if labels.shape != scores.shape:
            raise ValueError("scores and labels differ in length")
        order = [c for c in ("N", "S", "V", "F", "Q") if c in set(labels)]
        order += sorted(set(labels) - set(order))
        for i, c in enumerate(order):
            m = finite & (labels == c)
            ax.hist(scores[m], bins=edges, density=True, histtype="stepfilled", alpha=0.45,
                    color=f"C{i}", label=f"{c or 'unlabelled'} (n={m.sum()})")
        ax.set_ylabel("density")
    if threshold is not None:
        ax.axvline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set_xlabel("anomaly score (higher = more abnormal)")
    ax.legend()
    if title:
        ax.set_title(title)
    return fig
