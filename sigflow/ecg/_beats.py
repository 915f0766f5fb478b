"""Heartbeats of a record: positions, AAMI labels, morphology and rhythm features."""

from __future__ import annotations

import numbers
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._warnings import user_stacklevel
from ._aami import aami_class
from ._filters import bandpass_ecg
from ._record import ECGRecord, load_record
from ._rpeaks import METHODS, detect_r_peaks

__all__ = ["Beats", "load_beats", "segment_beats"]

# Lowest sampling rate (Hz) at which beats are looked for: a QRS complex lasts 60-120 ms, a
# few samples at 50 Hz. A lead sampled more slowly is not an ECG (SpO2 at 1 Hz, say).
MIN_ECG_FS = 50.0

_RHYTHM_ADAPTED = ("log_pre_rr_rec", "log_post_rr_rec", "log_pre_rr_local", "log_post_pre",
                   "log_local_rr_rec")
_RHYTHM_RAW = ("pre_rr", "post_rr", "local_rr", "post_pre_ratio", "record_rr")
_SHAPE = ("qrs_amplitude", "template_corr")
_DETECTORS = METHODS
# floor of the per-record rhythm spread (log units, about 2 % of an RR interval): keeps very
# regular records from blowing up timing jitter
_RHYTHM_MIN_SPREAD = 0.02
#: Seconds of one repeated value that make a flat stretch: beats whose window touches one
#: are left out. The longest runs in the MIT-BIH records are 0.03 s, except where the
#: amplifier clipped (0.47 and 0.74 s, at the converter's limits).
FLAT_RUN_S = 0.25


@dataclass
class Beats:
    """The beats of one record and their features.

    Attributes
    ----------
    features : ndarray of shape (n_beats, n_features)
        Beat features (see :func:`segment_beats`), float64.
    labels : ndarray of str, shape (n_beats,)
        AAMI classes ``"N"``, ``"S"``, ``"V"``, ``"F"``, ``"Q"``; ``""`` when
        the record has no beat annotations (the beats were detected).
    symbols : ndarray of str, shape (n_beats,)
        The MIT-BIH annotation symbols (``""`` for detected beats).
    samples : ndarray of int64, shape (n_beats,)
        Sample index of each beat's R peak (or annotation).
    record : str
        Record name.
    fs : float
        Sampling frequency in Hz.
    lead : str
        Name of the lead the beats come from.
    feature_names : list of str
        One name per column of ``features``.
    annotated : bool
        True when the beats come from annotations, False when detected.
    channel : int or None
        Column of the record's signal the beats come from (None when unknown).

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.ecg import Beats
    >>> beats = Beats(
    ...     features=np.zeros((2, 1)), labels=np.array(["N", "V"]),
    ...     symbols=np.array(["N", "V"]), samples=np.array([360, 720]),
    ...     record="demo", fs=360.0, lead="MLII", feature_names=["x"])
    >>> len(beats), beats.times
    (2, array([1., 2.]))

    :func:`segment_beats` and :func:`load_beats` make them from records.
    """

    features: np.ndarray
    labels: np.ndarray
    symbols: np.ndarray
    samples: np.ndarray
    record: str
    fs: float
    lead: str
    feature_names: list[str] = field(default_factory=list)
    annotated: bool = True
    channel: int | None = None

    @property
    def times(self) -> np.ndarray:
        """Beat times in seconds from the record start."""
        return self.samples / self.fs

    def __len__(self) -> int:
        return int(self.samples.shape[0])


DEFAULT_LEAD = "MLII"


def _choose_lead(rec: ECGRecord, lead) -> int:
    """The channel of ``lead``; ``None``: MLII, or channel 0 with a warning where the record
    lacks it. A lead asked for by name or index must exist (a typo must not give another
    lead's beats)."""
    idx = rec.lead_index(DEFAULT_LEAD if lead is None else lead)
    if idx is None and lead is not None:
        raise ValueError(
            f"record {rec.name} has no lead {lead!r}; its leads: {', '.join(rec.leads)} "
            f"(lead=None analyses {DEFAULT_LEAD}, or channel 0 where a record lacks it)"
        )
    if idx is None:
        idx = 0
        warnings.warn(
            f"record {rec.name} has no lead {DEFAULT_LEAD!r} (leads: {', '.join(rec.leads)}); "
            f"using channel 0 ({rec.leads[0]})",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return idx


def _check_local_beats(local_beats):
    if (isinstance(local_beats, bool) or not isinstance(local_beats, numbers.Integral)
            or local_beats < 1):
        raise ValueError(f"local_beats must be a positive integer, got {local_beats!r}")


def _check_window(window):
    """``(pre, post)`` seconds as floats, with 0 <= pre and 0 < post, both finite."""
    try:
        pre, post = window
    except (TypeError, ValueError):
        raise ValueError(
            f"window must be a pair (pre, post) of seconds before and after the R peak, "
            f"got {window!r}"
        ) from None
    ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)
             for v in (pre, post))
    if not ok or pre < 0 or post <= 0:
        raise ValueError(
            "window must be (pre, post): seconds before (>= 0) and after (> 0) the R peak, "
            f"got {window!r}"
        )
    return float(pre), float(post)


def _rhythm(samples, fs, local_beats):
    """Pre/post RR, local RR (median of the previous RRs) and record median RR."""
    n = len(samples)
    rr = np.diff(samples) / fs
    med = float(np.median(rr)) if len(rr) else 1.0
    if not np.isfinite(med) or med <= 0:
        med = 1.0
    pre = np.full(n, med)
    post = np.full(n, med)
    if n > 1:
        pre[1:] = rr
        post[:-1] = rr
    local = np.full(n, med)
    for i in range(2, n):
        # RR intervals before this beat's own pre-RR: rr[i-1-k] for k = 1..local_beats
        lo = max(0, i - 1 - local_beats)
        previous = rr[lo: i - 1]
        if previous.size < local_beats:
            # the first beats of a record: the intervals there are, made up to local_beats
            # with the record's median (the median of one interval, say a premature beat's,
            # made the third beat of a record its most abnormal one)
            previous = np.concatenate([previous, np.full(local_beats - previous.size, med)])
        local[i] = np.median(previous)
    eps = 1e-3
    pre = np.maximum(pre, eps)
    post = np.maximum(post, eps)
    return pre, post, np.maximum(local, eps), med


def _fill_gaps(x):
    """``x`` with non-finite samples linearly interpolated, and the mask of those samples.

    WFDB gives invalid samples as NaN in physical units; a zero-phase filter would spread
    one of them over the whole lead.
    """
    bad = ~np.isfinite(x)
    if not bad.any() or bad.all():  # all invalid: nothing to bridge (no beats, see caller)
        return x, bad
    idx = np.arange(x.shape[0])
    filled = x.copy()
    filled[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    return filled, bad


def _flat_samples(x, min_run):
    """Mask of the samples of ``x`` inside runs of at least ``min_run`` equal values."""
    n = x.shape[0]
    mask = np.zeros(n, dtype=bool)
    if n < min_run:
        return mask
    change = np.flatnonzero(np.diff(x) != 0) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    long = ends - starts >= min_run
    if long.any():
        edges = np.zeros(n + 1, dtype=np.int64)
        np.add.at(edges, starts[long], 1)
        np.add.at(edges, ends[long], -1)
        mask = np.cumsum(edges[:-1]) > 0
    return mask


def _bin_windows(x, samples, before, after, n_bins):
    offsets = np.arange(-before, after)
    idx = np.clip(samples[:, None] + offsets[None, :], 0, x.shape[0] - 1)
    win = x[idx]
    edges = np.linspace(0, len(offsets), n_bins + 1).round().astype(int)
    counts = np.diff(edges)
    return np.add.reduceat(win, edges[:-1], axis=1) / counts, win


def segment_beats(record, *, lead=None, use_annotations=True, detector="pan_tompkins",
                  window=(0.25, 0.45), n_morphology=24, local_beats=10, adapt=True):
    """Find the beats of a record and describe each by morphology and rhythm.

    The lead is filtered (0.5-40 Hz zero-phase Butterworth band-pass). Beats
    are the record's beat annotations (non-beat symbols dropped) or, without
    annotations, the detected R peaks (:func:`detect_r_peaks`). Every beat
    gets one row, except beats whose ``window`` runs past the record's ends
    (at most one or two per record: their shape is incomplete) and beats at
    invalid samples or in flat stretches (left out with a warning).

    Features (``adapt=True``, the default, designed for unseen patients):

    - ``n_morphology`` morphology values: the filtered beat from ``window[0]``
      s before to ``window[1]`` s after the R peak, averaged into equal bins,
      divided by the record's median QRS peak-to-peak amplitude, minus the
      record's median beat (so a beat is described by how it differs from
      that patient's typical beat);
    - ``qrs_amplitude``: log ratio of the beat's QRS peak-to-peak amplitude
      to the record median; ``template_corr``: correlation of the beat with
      the record's median beat;
    - rhythm: log ratios of the pre-RR and post-RR intervals to the record's
      median RR, of the pre-RR to the local RR (median of the previous
      ``local_beats`` intervals, made up with the record's median RR for the
      first beats of a record), of post-RR to pre-RR (prematurity and
      compensatory pause), and of the local RR to the record median; each
      divided by its robust spread over the record (1.4826 x median absolute
      deviation, at least 0.02), so prematurity is measured against how
      irregular that patient's rhythm is (a short RR means more in a
      regular sinus rhythm than in atrial fibrillation).

    With ``adapt=False``, the morphology is the amplitude-normalised beat
    itself and the rhythm features are the intervals in seconds.

    No labels are used: the adaptation is unsupervised.

    Parameters
    ----------
    record : str, path-like or ECGRecord
        A WFDB record path without extension, an EDF/BDF file, or a record
        already loaded with :func:`load_record`.
    lead : str, int or None, default=None
        Lead name (in any case) or channel index; it must exist (ValueError
        naming the record's leads). None: MLII, or channel 0 with a warning
        where the record lacks MLII.
    use_annotations : bool, default=True
        Use the beat annotations when present; False always detects R peaks.
        A record whose annotations hold no beat labels (only rhythm or noise
        annotations such as ``"+"``) falls back to detection with a warning.
    detector : {"pan_tompkins", "gqrs", "xqrs"}, default="pan_tompkins"
        R-peak detector for records without beat annotations.
    window : (float, float), default=(0.25, 0.45)
        Seconds before (``>= 0``) and after (``> 0``) the R peak covered by
        the morphology.
    n_morphology : int, default=24
        Number of morphology bins (at most the number of samples in ``window``).
    local_beats : int, default=10
        Number of previous RR intervals forming the local rhythm (a positive
        integer).
    adapt : bool, default=True
        Express features relative to the record's median beat and median RR.

    Returns
    -------
    beats : Beats
        Features, AAMI labels, symbols, sample indices and feature names.

    Notes
    -----
    Invalid samples (NaN or infinite, as WFDB reads gaps in a recording) are bridged by
    linear interpolation before filtering, and beats whose morphology window touches one
    are left out with a warning; their neighbours' RR intervals are measured as usual. A
    lead without any finite sample, or a flat one (a single value throughout), gives no
    beats, with a warning, even where the record's annotations list some.

    Examples
    --------
    >>> from sigflow.ecg import example_records, segment_beats
    >>> beats = segment_beats(example_records()[0])
    >>> beats.features.shape[1], len(beats.feature_names)
    (31, 31)
    >>> sorted(set(beats.labels.tolist()))
    ['N', 'S', 'V']
    """
    _check_local_beats(local_beats)
    pre_s, post_s = _check_window(window)
    if detector not in _DETECTORS:
        raise ValueError(f"detector must be one of {_DETECTORS}, got {detector!r}")
    rec = record if isinstance(record, ECGRecord) else load_record(os.fspath(record))
    ch = _choose_lead(rec, lead)
    fs = rec.fs
    if fs < MIN_ECG_FS:
        raise ValueError(
            f"record {rec.name}: lead {rec.leads[ch]} is sampled at {fs:g} Hz, too slowly to "
            f"show a QRS complex (an ECG needs {MIN_ECG_FS:g} Hz or more): is it an ECG lead?"
        )
    before, after = int(round(pre_s * fs)), int(round(post_s * fs))
    if after < 1:
        raise ValueError(
            f"window={window} covers no sample after the R peak at {fs:g} Hz "
            f"(record {rec.name}): window[1] must be at least {0.5 / fs:.3g} s"
        )
    if (not isinstance(n_morphology, (int, np.integer)) or isinstance(n_morphology, bool)
            or not 1 <= n_morphology <= before + after):
        raise ValueError(
            f"n_morphology must be an integer from 1 to the {before + after} samples of "
            f"window={window} at {fs:g} Hz, got {n_morphology!r}"
        )
    raw, invalid = _fill_gaps(np.asarray(rec.signal[:, ch], dtype=np.float64))
    n_features = n_morphology + len(_SHAPE) + len(_RHYTHM_ADAPTED)
    names = [f"morph_{i:02d}" for i in range(n_morphology)] + list(_SHAPE)
    names += list(_RHYTHM_ADAPTED if adapt else _RHYTHM_RAW)
    annotated = bool(use_annotations and rec.has_annotations)
    flat = not invalid.all() and np.ptp(raw[~invalid]) == 0
    if invalid.all() or flat:  # nothing to describe, annotated or not
        why = "is flat (one value throughout)" if flat else "holds no finite sample"
        warnings.warn(
            f"record {rec.name}: lead {rec.leads[ch]} {why}, so it has no beats",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        annotated = annotated and bool((aami_class(rec.ann_symbols) != "").any())
        none = np.zeros(0, dtype="<U1")
        return Beats(np.zeros((0, n_features)), none, none, np.zeros(0, dtype=np.int64),
                     rec.name, fs, rec.leads[ch], names, annotated, ch)
    x = bandpass_ecg(raw, fs, low=0.5, high=40.0)

    if annotated:
        cls = aami_class(rec.ann_symbols)
        keep = cls != ""
        if not keep.any():
            # e.g. rhythm-only annotation files ('+' with "(AFIB" notes, PhysioNet afdb/vfdb)
            found = sorted(set(rec.ann_symbols.tolist()))
            warnings.warn(
                f"record {rec.name}: its annotations hold no beat labels ("
                f"{len(rec.ann_symbols)} annotations, symbols: "
                f"{', '.join(repr(v) for v in found[:10]) or 'none'}); detecting R peaks "
                "instead (beats get empty labels)",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
            annotated = False
    if annotated:
        samples = rec.ann_samples[keep].astype(np.int64)
        symbols = rec.ann_symbols[keep].astype(str)
        labels = cls[keep]
    else:
        samples = detect_r_peaks(raw, fs, method=detector)
        symbols = np.full(len(samples), "", dtype="<U1")
        labels = np.full(len(samples), "", dtype="<U1")
    order = np.argsort(samples, kind="stable")
    samples, symbols, labels = samples[order], symbols[order], labels[order]
    repeated = np.flatnonzero(np.diff(samples) == 0) + 1
    if repeated.size:
        # one beat annotated twice (on two channels, say): a second beat at the same
        # sample would be a row of its own with an RR interval of 0, which also skews the
        # record's rhythm features (normalised by their spread over all beats)
        differ = int((symbols[repeated] != symbols[repeated - 1]).sum())
        warnings.warn(
            f"record {rec.name}: {repeated.size} beat annotation(s) repeat the sample of the "
            "one before (e.g. sample "
            f"{int(samples[repeated[0]])}); each beat is kept once, with its first label"
            + (f" ({differ} of them had a different label)" if differ else ""),
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        first = np.ones(len(samples), dtype=bool)
        first[repeated] = False
        samples, symbols, labels = samples[first], symbols[first], labels[first]

    # Beats whose window runs past the record's ends are left out: the missing part of their
    # shape was the edge sample repeated, which made the last beat of most MIT-BIH records
    # (0.3-0.45 s before the end) the record's most abnormal one.
    valid = (samples - before >= 0) & (samples + after <= x.shape[0])
    # Beats whose window touches an invalid sample (their shape is interpolation) or a flat
    # stretch (a lead off or a clipped amplifier: no QRS to describe, and features such as
    # the QRS amplitude at their floor would pull a detector's fit) are left out.
    flat_run = max(int(np.ceil(FLAT_RUN_S * fs)), 3)
    flat_samples = _flat_samples(raw, flat_run) & ~invalid
    for mask, where in (
        (invalid, f"at invalid (NaN or infinite) samples of lead {rec.leads[ch]}"),
        (flat_samples, f"in flat stretches of lead {rec.leads[ch]} (one value for "
                       f"{FLAT_RUN_S:g} s or more: the lead off or the signal clipped)"),
    ):
        if not (mask.any() and len(samples)):
            continue
        bad_before = np.concatenate([[0], np.cumsum(mask)])
        lo = np.clip(samples - before, 0, len(mask))
        hi = np.clip(samples + after, 0, len(mask))
        hit = valid & (bad_before[hi] - bad_before[lo] > 0)
        if hit.any():
            valid &= ~hit
            warnings.warn(
                f"record {rec.name}: {int(hit.sum())} of {len(samples)} beats lie "
                f"{where} and are left out",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
    if not valid.any():
        return Beats(np.zeros((0, n_features)), labels[:0], symbols[:0], samples[:0],
                     rec.name, fs, rec.leads[ch], names, annotated, ch)

    morph, win = _bin_windows(x, samples, before, after, n_morphology)
    q = max(int(round(0.06 * fs)), 1)
    qrs = win[:, max(before - q, 0): before + q + 1]
    ptp = qrs.max(axis=1) - qrs.min(axis=1)
    scale = float(np.median(ptp[valid]))
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    morph = morph / scale
    template = np.median(morph[valid], axis=0)
    mc = morph - morph.mean(axis=1, keepdims=True)
    tc = template - template.mean()
    denom = np.linalg.norm(mc, axis=1) * np.linalg.norm(tc)
    corr = np.divide(mc @ tc, denom, out=np.zeros(len(morph)), where=denom > 0)
    amp = np.log(np.maximum(ptp, 1e-6 * scale) / scale)

    pre, post, local, med = _rhythm(samples, fs, local_beats)
    if adapt:
        morph = morph - template
        rhythm = np.column_stack([np.log(pre / med), np.log(post / med), np.log(pre / local),
                                  np.log(post / pre), np.log(local / med)])
        ref = rhythm[valid]
        mad = np.median(np.abs(ref - np.median(ref, axis=0)), axis=0)
        rhythm = rhythm / np.maximum(1.4826 * mad, _RHYTHM_MIN_SPREAD)
    else:
        rhythm = np.column_stack([pre, post, local, post / pre, np.full(len(pre), med)])
    features = np.column_stack([morph, amp, corr, rhythm]).astype(np.float64)
    return Beats(features[valid], labels[valid], symbols[valid], samples[valid], rec.name, fs,
                 rec.leads[ch], names, annotated, ch)


def load_beats(records, *, lead=None, return_samples=False, **kwargs):
    """Beat features, AAMI labels and record groups from WFDB records (or EDF files).

    Parameters
    ----------
    records : str, path-like, ECGRecord, or a list of them
        WFDB record paths without extension (as :func:`wfdb.rdrecord` takes
        them), e.g. ``["mitdb/101", "mitdb/106"]``, or EDF/BDF files
        (``"holter.edf"``; see :func:`load_record`).
    lead : str, int or None, default=None
        Lead to use, by name or channel index; every record must have it.
        None: MLII, or channel 0 with a warning in a record without MLII
        (MIT-BIH 102 and 104 have none; in 114 MLII is channel 1 and is
        found by name).
    return_samples : bool, default=False
        Also return each beat's R-peak sample index.
    **kwargs
        Passed to :func:`segment_beats` (``use_annotations``, ``detector``,
        ``window``, ``n_morphology``, ``local_beats``, ``adapt``).

    Returns
    -------
    X : ndarray of shape (n_beats, n_features), float64
        Beat features, ready for a detector.
    y : ndarray of str, shape (n_beats,)
        AAMI classes; ``""`` for beats of records without beat annotations.
    groups : ndarray of str, shape (n_beats,)
        Record name of each beat (for ``GroupKFold``); records that share a name are a
        ``ValueError``, since their beats would form one group.
    samples : ndarray of int64, shape (n_beats,)
        R-peak sample index within its record; only with ``return_samples``.

    See Also
    --------
    segment_beats : the beats of one record, with feature names.

    Examples
    --------
    >>> from sigflow.ecg import example_records, load_beats
    >>> X, y, groups = load_beats(example_records())
    >>> X.shape[0] == y.shape[0] == groups.shape[0]
    True
    >>> sorted(set(y.tolist()))
    ['N', 'S', 'V']
    """
    if isinstance(records, (str, os.PathLike, ECGRecord)):
        records = [records]
    parts = [segment_beats(r, lead=lead, **kwargs) for r in records]
    names = [b.record for b in parts]
    same = sorted({name for name in names if names.count(name) > 1})
    if same:  # their beats would form one group: one patient, to GroupKFold
        raise ValueError(
            f"records with the same name would be one group: {', '.join(same)} "
            f"(records {', '.join(str(r) for r, n in zip(records, names) if n in same)}); "
            "give each record once, under its own name"
        )
    if not parts:
        raise ValueError("no records given")
    X = np.concatenate([b.features for b in parts], axis=0)
    y = np.concatenate([b.labels.astype("<U1") for b in parts])
    groups = np.concatenate([np.full(len(b), b.record) for b in parts]).astype(str)
    if return_samples:
        samples = np.concatenate([b.samples for b in parts]).astype(np.int64)
        return X, y, groups, samples
    return X, y, groups
