"""The ``sigflow`` command line: flag abnormal heartbeats in WFDB records or EDF files.

``sigflow detect RECORD... [--train RECORD...] [--out DIR] [--device ...]`` learns what the
beats of the training records look like (by default the records themselves, without labels)
and writes, per record, a CSV with one row per beat and a PNG of the trace coloured by
anomaly score. ``sigflow demo`` runs the same job on the synthetic example records shipped
with sigflow and prints AUROC and average precision against their labels.
"""

from __future__ import annotations

import argparse
import csv
import math
import numbers
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# Share of labelled normal beats flagged above which the summary says the threshold does not
# carry over to the scored records (it is set for about 1 %).
FALSE_ALARM_NOTE = 0.05
#: The summary notes a low recall below this share of flagged abnormal beats.
LOW_RECALL_NOTE = 0.5

# detect_r_peaks's methods, spelt here so that --help needs no import of sigflow.ecg
_R_PEAK_METHODS = ("pan_tompkins", "gqrs", "xqrs")

CSV_COLUMNS = ("record", "sample", "time_s", "label", "score", "pvalue", "flag", "threshold")

_EPILOG = """\
output, per record (in --out):
  RECORD.csv  one row per beat: record, sample (R-peak sample index in the record),
              time_s, label (AAMI class N/S/V/F/Q when the record has beat annotations,
              else empty), score
              (log-likelihood of the beat under the model: higher is more normal), pvalue
              (conformal p-value: small means unlike the training beats), flag (1 when the
              score is below the threshold), threshold (the detector's score threshold,
              set for about 1 % false alarms on normal beats like the training beats; on
              other patients' records it is often many more; --contamination F flags a
              share F of the training beats instead)
  RECORD.png  the ECG trace with beats coloured by anomaly score = threshold - score
              (> 0: flagged, red; the same colour scale for every record of a run); by
              default the 60 s around the beat with the highest anomaly score (the whole record
              when shorter); --plot-start/--plot-duration choose the span (needs
              matplotlib: pip install "sigflow[plot]")
  files of an earlier run are not replaced: the run stops before reading the
  records unless --overwrite is given

examples:
  sigflow demo
  sigflow detect mitdb/100 mitdb/101 --out results
  sigflow detect mitdb/200 --train mitdb/101 mitdb/106 --normal-only
"""


def _int_at_least(text, low, what):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def _positive_int(text):
    return _int_at_least(text, 1, "a positive integer")


def _non_negative_int(text):
    return _int_at_least(text, 0, "an integer >= 0")


def _check_annotation(annotation):
    """``annotation`` (an annotator name: letters, digits, ``_``) or None (also ``"none"``);
    else ValueError."""
    if isinstance(annotation, str) and annotation.lower() == "none":
        return None
    if annotation is not None and not (
        isinstance(annotation, str) and re.fullmatch(r"\w+", annotation, re.ASCII)
    ):
        raise ValueError(
            f"annotation must be the extension of an annotation file (letters, digits and _, "
            f"without the dot: 'atr', 'qrs') or None, got {annotation!r}"
        )
    return annotation


def _annotation_extension(text):
    try:
        return _check_annotation(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an annotation file extension (letters, digits and _, without "
            "the dot: atr, qrs), or 'none'"
        ) from None


def _float_above(text, low, strict, what):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < low or (strict and value == low):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def _positive_float(text):
    return _float_above(text, 0.0, True, "a positive number")


def _non_negative_float(text):
    return _float_above(text, 0.0, False, "a number >= 0")


#: Seconds of a record the PNG shows unless told otherwise: half an hour of MIT-BIH in one
#: figure is a solid block of trace.
PLOT_SPAN_S = 60.0


def _check_span(start, end):
    """``(start, end)`` in seconds as floats (None: a record's ends); else ValueError."""
    for value, name, least in ((start, "start", ">= 0"), (end, "end", "> 0")):
        if value is not None and not (
            isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and (value > 0 or (value == 0 and name == "start"))
        ):
            raise ValueError(f"{name} must be None or a time in seconds {least}, got {value!r}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"--end ({end:g} s) must be after --start ({start:g} s)")
    return (None if start is None else float(start)), (None if end is None else float(end))


def _contamination(text):
    if text.strip().lower() == "auto":
        return "auto"
    value = _positive_float(text)
    if value > 0.5:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 'auto' or a fraction of the training beats in (0, 0.5]"
        )
    return value


def _plot_duration(text):
    if text.strip().lower() == "all":
        return math.inf
    return _positive_float(text)


def _plot_span(length, times, anomaly, start, duration):
    """``(start, duration or None)`` of the span to draw (see ``--plot-start``)."""
    duration = PLOT_SPAN_S if duration is None else duration
    if start is None:
        if length <= duration or not len(times):
            return 0.0, None if math.isinf(duration) else duration
        finite = np.where(np.isfinite(anomaly), anomaly, np.inf)  # -inf log-likelihood: top
        top = float(times[int(np.argmax(finite))])
        start = min(max(top - duration / 2, 0.0), length - duration)
    return start, None if math.isinf(duration) else duration


def _seed(text):
    value = _int_at_least(text, 0, "an integer from 0 to 2**32 - 1")
    if value > 2**32 - 1:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**32 - 1, got {value}")
    return value


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="sigflow",
        description="Flow-based anomaly detection for ECG heartbeats in WFDB records or EDF "
        "files.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from sigflow import __version__

    parser.add_argument("--version", action="version", version=f"sigflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{detect,demo}")

    def common(p, finetune_default):
        p.add_argument("--out", default="sigflow-out", help="output folder (default: %(default)s)")
        p.add_argument(
            "--device",
            default="auto",
            help="'auto' (CUDA when available), 'cpu' or 'cuda' (default: %(default)s)",
        )
        p.add_argument(
            "--lead", default=None,
            help="lead to analyse, by name or channel index; every record must have it "
            "(default: MLII, or channel 0 with a warning where a record lacks MLII)",
        )
        p.add_argument(
            "--r-peaks", choices=_R_PEAK_METHODS, default="pan_tompkins",
            help="R-peak detector for records without beat annotations (EDF files, say): "
            "pan_tompkins is fast, gqrs (PhysioNet's GQRS) misses fewer beats in difficult "
            "records at 20-35 times the time (default: %(default)s)",
        )
        p.add_argument(
            "--seed", type=_seed, default=0, help="random seed (default: %(default)s)"
        )
        p.add_argument(
            "--max-iter",
            type=_positive_int,
            default=None,
            help="optimisation steps per flow block (default: the detector's default)",
        )
        p.add_argument(
            "--finetune-iter",
            type=_non_negative_int,
            default=None,
            help="steps of the likelihood refinement of all blocks together; 0 skips it and "
            f"fits several times faster (default: {finetune_default})",
        )
        p.add_argument(
            "--contamination", type=_contamination, default="auto", metavar="{auto,FRACTION}",
            help="where the threshold lies: 'auto' flags about 1 %% of beats like the "
            "training beats (when these include abnormal ones, as they do without "
            "--normal-only, a record with more abnormal beats than that gets most of them "
            "unflagged); a fraction in (0, 0.5], e.g. 0.1, flags that share of the training "
            "beats, for an expected share of abnormal beats (default: %(default)s)",
        )
        p.add_argument(
            "--start", type=_non_negative_float, default=None, metavar="SECONDS",
            help="analyse every record from this time on (default: its beginning); the "
            "CSV's samples and times and the PNG's time axis still count from the record's "
            "beginning",
        )
        p.add_argument(
            "--end", type=_positive_float, default=None, metavar="SECONDS",
            help="analyse every record up to this time, a sample at it excluded (default: its end)",
        )
        p.add_argument("--no-plot", action="store_true", help="do not write PNG plots")
        p.add_argument(
            "--overwrite", action="store_true",
            help="replace the CSV and PNG files of an earlier run in --out (an earlier PNG is "
            "removed when this run draws none; without --overwrite, a run that would replace "
            "either stops before reading the records)",
        )
        p.add_argument(
            "--plot-start", type=_non_negative_float, default=None,
            help="start of the span the PNG shows, in seconds (default: the span is centred "
            "on the beat with the highest anomaly score)",
        )
        p.add_argument(
            "--plot-duration", type=_plot_duration, default=None,
            help=f"length of the span the PNG shows, in seconds, or 'all' for the whole "
            f"record (default: {PLOT_SPAN_S:g}; longer spans crowd the beats)",
        )
        p.add_argument(
            "-q", "--quiet", action="store_true",
            help="no progress bars (they are left out anyway when the output is not a "
            "terminal, e.g. redirected to a log file)",
        )

    detect = sub.add_parser(
        "detect",
        help="flag abnormal beats in WFDB records or EDF files",
        description="Fit a flow detector on the beats of the training records (default: the "
        "records themselves, unsupervised) and score every beat of each record.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    detect.add_argument(
        "records", nargs="+", metavar="RECORD",
        help="WFDB record path without extension, or an EDF/BDF file (.edf, .bdf)",
    )
    detect.add_argument(
        "--train", nargs="+", metavar="RECORD", help="records to learn normal beats from"
    )
    detect.add_argument(
        "--annotation", default="atr", metavar="EXT", type=_annotation_extension,
        help="extension of the annotation files that label the beats, e.g. qrs for "
        "PhysioNet's afdb, whose .atr files mark rhythms only; 'none' ignores annotations "
        "and detects the beats (default: %(default)s)",
    )
    detect.add_argument(
        "--normal-only",
        action="store_true",
        help="learn only from beats annotated as normal (N) in the training records",
    )
    common(detect, "the detector's default with --normal-only, else 0: on unlabelled "
           "beats the refinement also learns the abnormal ones")
    demo = sub.add_parser(
        "demo",
        help="run the whole job on the synthetic example records shipped with sigflow",
        description="Detect abnormal beats in sigflow's synthetic example ECG records "
        "(no labels used for fitting) and print AUROC / average precision.",
    )
    common(demo, "0: the demo fits on unlabelled beats, and the refinement would also "
         "learn the abnormal ones")
    return parser


def _is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _progress(iterable, quiet, desc):
    if quiet:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)


def _record_part(record, start, end):
    """The part of ``record`` from ``start`` to ``end`` seconds (None: its ends): the
    samples at ``start`` and after it, before ``end`` (half-open, like wfdb's ``sampfrom``
    and ``sampto``), at least one; None when ``start`` is past the record's end."""
    if start is None and end is None:
        return record
    # rounded first: 0.35 s x 360 Hz is 125.99999999999999 in floating point, not sample 126
    sampfrom = 0 if start is None else math.floor(round(start * record.fs, 9))
    if sampfrom >= record.n_samples:
        return None
    sampto = None if end is None else min(max(math.ceil(round(end * record.fs, 9)),
                                              sampfrom + 1), record.n_samples)
    return record.part(sampfrom, sampto)


def _segment(records, lead, quiet, desc, r_peaks="pan_tompkins", annotation="atr",
             start=None, end=None, stream=None):
    """Load each record once; return ``[(record, beats)]``, the paths of those records and
    the names of the records left out. ``lead=None`` analyses MLII, or channel 0 (with a
    warning) where a record lacks it; a named lead must exist. ``r_peaks`` detects the beats
    of records without beat annotations (in ``RECORD.annotation``; None: every record's).
    ``start``/``end``: the part of each record to analyse (seconds); a record that ends
    before ``start`` is left out with a message on ``stream``."""
    from sigflow.ecg import load_record, segment_beats
    from sigflow.ecg._channels import resolve_channels
    from sigflow.ecg._edf import is_edf_path, signal_names
    from sigflow.ecg._record import record_name

    out, paths, left_out = [], [], []

    def part(record):
        cut = _record_part(record, start, end)
        if cut is None:
            print(f"skipping {record.name} ({path}): it lasts {record.duration:g} s, and "
                  f"--start {start:g} s is past its end", file=stream or sys.stdout)
            left_out.append(record.name)
        return cut

    for path in _progress(records, quiet, desc):
        if lead is not None and is_edf_path(path):
            # an EDF file's other signals may have other rates: read the lead alone
            names = signal_names(path)[0] if Path(path).is_file() else None
            try:
                if names is not None:
                    resolve_channels([lead], names, len(names), path)
            except ValueError:
                raise ValueError(
                    f"record {record_name(path)} ({path}) has no lead {lead!r}; its leads: "
                    f"{', '.join(names)} (--lead)"
                ) from None
            record = part(load_record(path, channels=[lead], annotation=annotation))
            if record is not None:
                out.append((record, segment_beats(record, lead=0, detector=r_peaks)))
                paths.append(path)
            continue
        record = part(load_record(path, annotation=annotation))
        if record is None:
            continue
        if lead is not None and record.lead_index(lead) is None:
            raise ValueError(
                f"record {record.name} ({path}) has no lead {lead!r}; its leads: "
                f"{', '.join(record.leads)} (--lead)"
            )
        out.append((record, segment_beats(record, lead=lead, detector=r_peaks)))
        paths.append(path)
    return out, paths, left_out


def _same_names(paths, names, prefix, suffix):
    """A ValueError naming the records of ``paths`` that share a record name, if any."""
    same = sorted({name for name in names if names.count(name) > 1})
    if same:
        raise ValueError(
            prefix
            + ", ".join(f"{name} ({', '.join(str(r) for r, n in zip(paths, names) if n == name)})"
                        for name in same)
            + suffix
        )


def _drop_beatless(loaded, stream, what):
    """``loaded`` without the records that have no beats, each skipped with a message."""
    kept = []
    for record, beats in loaded:
        if len(beats):
            kept.append((record, beats))
        else:
            print(
                f"skipping {what} {beats.record} ({record.path or record.name}): no beats found "
                f"in lead {beats.lead} (flat or missing signal, or too short)",
                file=stream,
            )
    return kept


def _refuse_overwrite(out, names):
    """FileExistsError naming the files of ``names`` that a run would replace in ``out`` (a
    run owns both files of a record: a new CSV beside an earlier PNG would disagree)."""
    existing = [out / f"{name}{suffix}" for name in names for suffix in (".csv", ".png")]
    existing = [str(path) for path in existing if path.exists()]
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise FileExistsError(
            f"{existing[0]}{more} exist from an earlier run and would be replaced; pass "
            "--overwrite (overwrite=True) to replace them, or choose another --out folder"
        )


def run_detection(
    records,
    *,
    train=None,
    normal_only=False,
    out="sigflow-out",
    device="auto",
    lead=None,
    seed=0,
    plot=True,
    quiet=False,
    max_iter=None,
    finetune_iter=None,
    stream=None,
    plot_start=None,
    plot_duration=None,
    overwrite=False,
    r_peaks="pan_tompkins",
    annotation="atr",
    contamination="auto",
    start=None,
    end=None,
):
    """Fit a beat detector and write one CSV (and PNG) per record.

    Records without any beat (a flat lead, say) are skipped with a message on ``stream``
    and get no CSV; a ValueError names the records when none has beats to score or to
    train on. ``lead=None`` analyses MLII, or channel 0 (with a warning) in a record that
    lacks it; a lead given by name or index must exist in every record (ValueError).
    Records given twice (by record name) are a ValueError, among the records to score and
    among the training records alike. Output files that already exist (an earlier run's CSV
    or PNG of a record) are a FileExistsError before any record is read, unless
    ``overwrite=True``, which replaces them (an earlier PNG is removed when no new one is
    drawn, so that no PNG disagrees with its CSV). ``r_peaks`` is the
    R-peak detector of records without beat annotations (:func:`sigflow.ecg.detect_r_peaks`);
    ``annotation`` is the extension of the annotation files that hold the beat labels
    (``"atr"``; ``"qrs"`` for PhysioNet's afdb, whose ``.atr`` files mark rhythms only), or
    None to detect the beats of every record. ``contamination`` is the detector's
    (:class:`sigflow.FlowAnomalyDetector`): ``"auto"`` sets the threshold for about 1 % false
    alarms on beats like the training beats, a float flags that fraction of them.
    ``start`` and ``end`` (seconds; None: the record's ends) limit every record, scored or
    trained on, to that part (:meth:`sigflow.ecg.ECGRecord.part`); the CSV's samples and
    times and the PNG's time axis still count from each record's beginning.

    The PNG shows ``plot_duration`` seconds (default :data:`PLOT_SPAN_S`; ``math.inf``:
    the whole record) from ``plot_start``, or centred on the beat with the highest anomaly
    score when ``plot_start`` is None; every record's colours use one scale.

    Returns a dict with the fitted detector, the per-record results and the output paths,
    and the names of the skipped records (``"skipped"``: no beats, or ended before
    ``start``). A result's ``"beats"`` count their samples from the part analysed (its
    record's ``start``), where the CSV counts from the record's beginning.
    """
    from sigflow.ecg import make_beat_detector

    stream = stream or sys.stdout
    records = [os.path.expanduser(os.fspath(r)) for r in records]  # a quoted "~/..."
    train = None if train is None else [os.path.expanduser(os.fspath(r)) for r in train]
    annotation = _check_annotation(annotation)
    start, end = _check_span(start, end)
    if annotation is None and normal_only:
        raise ValueError("--normal-only needs the beat annotations that --annotation none "
                         "(annotation=None) leaves unread")
    if not str(out).strip():
        raise ValueError("the output folder (--out) must not be empty")
    out = Path(os.path.expanduser(os.fspath(out)))
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is an existing file, not a folder (--out)")
    # before any record is read: a missing record, then an earlier run's files (the
    # names come from the paths)
    from sigflow.ecg._record import annotation_file, record_name, require_record_files

    for path in [*records, *(train or [])]:
        require_record_files(path)
        ann_file = annotation_file(path, annotation)
        if annotation not in (None, "atr") and not os.path.isfile(ann_file):
            # a typo must not turn an annotated record into a detected one without a word
            raise FileNotFoundError(
                f"annotation file not found: {ann_file} (--annotation {annotation}); "
                "'atr' files are optional, others must exist"
            )
    if not overwrite:
        _refuse_overwrite(out, [record_name(p) for p in records])
    loaded, loaded_paths, past_end = _segment(records, lead, quiet, "reading records", r_peaks,
                                              annotation, start, end, stream)
    _same_names(loaded_paths, [b.record for _, b in loaded],
                f"records with the same name would write the same files in {out}: ",
                "; score them in separate runs or with different --out folders")
    scored = _drop_beatless(loaded, stream, "record")
    if not scored:
        raise ValueError(
            "no beats found in any record to score: "
            + ", ".join([str(b.record) for _, b in loaded] + past_end)
        )
    if plot and plot_start is not None:  # before the fit, not after it
        spans = [(r.start / r.fs, (r.start + r.n_samples) / r.fs) for r, _ in scored]
        if not any(t0 <= plot_start < t1 for t0, t1 in spans):
            what = "part of a record" if start is not None or end is not None else "record"
            raise ValueError(
                f"--plot-start {plot_start:g} s is outside every {what} to score ("
                + ", ".join(f"{t0:g}-{t1:g} s" for t0, t1 in spans[:5])
                + (", ..." if len(spans) > 5 else "") + ")"
            )
    if train:
        train_loaded, train_paths, _ = _segment(train, lead, quiet, "reading training records",
                                                r_peaks, annotation, start, end, stream)
        _same_names(train_paths, [b.record for _, b in train_loaded],
                    "training records given twice (by record name): ",
                    "; their beats would be learnt twice, and the detector's calibration rows "
                    "would have copies among its training rows")
        train_beats = [b for _, b in _drop_beatless(train_loaded, stream, "training record")]
        train_names = [str(b.record) for _, b in train_loaded]
    else:
        train_beats = [b for _, b in scored]
        train_names = [str(b.record) for _, b in loaded]
    if not train_beats:
        raise ValueError("no training beats found in the records: " + ", ".join(train_names))
    X_train = np.concatenate([b.features for b in train_beats])
    if normal_only:
        labels = np.concatenate([b.labels for b in train_beats])
        if not np.any(labels != ""):
            raise ValueError(
                "--normal-only needs beat annotations in the training records: "
                + ", ".join(str(b.record) for b in train_beats)
            )
        X_train = X_train[labels == "N"]
        if not len(X_train):
            raise ValueError(
                "--normal-only: no beat annotated as normal (N) in the training records: "
                + ", ".join(str(b.record) for b in train_beats)
            )
    out.mkdir(parents=True, exist_ok=True)
    fit_start = time.perf_counter()
    params = {} if max_iter is None else {"max_iter": max_iter}
    if finetune_iter is None and not normal_only:
        # The likelihood refinement sharpens the flow on whatever it is fitted to; on beats
        # that include the abnormal ones it learns those too (on the shipped example: average
        # precision 0.81 without it, 0.61 with it), so it runs only on known-normal beats.
        finetune_iter = 0
    if finetune_iter is not None:
        params["finetune_iter"] = finetune_iter
    detector = make_beat_detector(
        device=device, random_state=seed, verbose=int(not quiet), contamination=contamination,
        **params
    )
    detector.fit(X_train)
    print(
        f"fitted on {len(X_train)} beats from {len(train_beats)} record(s) in "
        f"{time.perf_counter() - fit_start:.1f} s",
        file=stream,
    )
    flow_det = detector[-1]
    results = []
    for record, b in _progress(scored, quiet, "scoring"):
        Xt = detector[:-1].transform(b.features)
        score = flow_det.score_samples(Xt)
        pvalue = flow_det._pvalues(score)  # score_pvalues(Xt) without scoring Xt again
        flag = (score < flow_det.offset_).astype(int)
        csv_path = out / f"{b.record}.csv"
        # an earlier run's PNG (overwrite=True) is replaced below or removed, never left
        # beside a CSV it does not match
        (out / f"{b.record}.png").unlink(missing_ok=True)
        with open(csv_path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for i in range(len(b)):
                writer.writerow(
                    (
                        b.record,
                        int(record.start + b.samples[i]),  # in the whole record
                        f"{(record.start + b.samples[i]) / b.fs:.3f}",
                        b.labels[i],
                        f"{score[i]:.6g}",
                        f"{pvalue[i]:.6g}",
                        int(flag[i]),
                        f"{flow_det.offset_:.6g}",
                    )
                )
        results.append(
            {
                "beats": b,
                "score": score,
                "pvalue": pvalue,
                "flag": flag,
                "csv": csv_path,
                "png": None,
            }
        )
        print(f"{b.record}: {len(b)} beats, {int(flag.sum())} flagged -> {csv_path}", file=stream)
    if plot and results:
        # one colour scale for the run: a colour means the same score in every record
        anomaly = np.concatenate([flow_det.offset_ - r["score"] for r in results])
        for (record, _), r in zip(scored, results, strict=True):  # results follow scored
            r["png"] = _plot(record, r["beats"], r["score"], flow_det.offset_, out,
                             plot_start, plot_duration, anomaly)
    skipped = [b.record for _, b in loaded if not len(b)] + past_end
    return {"detector": detector, "results": results, "skipped": skipped,
            "contamination": contamination, "normal_only": bool(normal_only)}


def _plot_figure(record, beats, score, offset, start=0.0, duration=None, run_anomaly=None):
    """The trace of the channel the beats come from, beats coloured by anomaly score
    (on the colour scale of ``run_anomaly``, all records' anomaly scores, when given)."""
    from sigflow.ecg import plot_scores, score_color_norm

    channel = beats.channel
    if channel is None:  # Beats made without a channel index: find the lead by name
        channel = record.lead_index(beats.lead)
        channel = 0 if channel is None else channel
    units = record.units[channel] if channel < len(record.units) else ""
    return plot_scores(
        record.signal[:, channel],
        record.fs,
        beats.samples,
        offset - score,
        threshold=0.0,
        labels=beats.labels if np.any(beats.labels != "") else None,
        lead=beats.lead,
        units=units or None,
        start=start,
        duration=duration,
        title=f"{beats.record}: anomaly score = threshold - log-likelihood, flagged above 0 "
        f"(threshold {offset:.4g})",
        norm=None if run_anomaly is None else score_color_norm(run_anomaly, 0.0),
        t0=record.start / record.fs,
    )


def _plot(record, beats, score, offset, out, start=None, duration=None, run_anomaly=None):
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("matplotlib is not installed: no PNG (pip install 'sigflow[plot]')", file=sys.stderr)
        return None
    import matplotlib.pyplot as plt

    length = record.signal.shape[0] / record.fs
    t0 = record.start / record.fs  # a part of the record (--start): times count from 0 s
    if start is not None and not t0 <= start < t0 + length:
        what = "the part analysed" if record.start else "the record"
        print(f"{beats.record}: no PNG, --plot-start {start:g} s is outside {what} "
              f"({t0:g} s to {t0 + length:g} s)", file=sys.stderr)
        return None
    start, duration = _plot_span(length, beats.times, offset - score,
                                 None if start is None else start - t0, duration)
    fig = _plot_figure(record, beats, score, offset, start, duration, run_anomaly)
    path = out / f"{beats.record}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _summary(results, stream, contamination="auto", normal_only=False):
    """AUROC and average precision of abnormal (S, V, F) against N beats, where labelled.

    Q beats (paced, fusion of paced and normal, unclassifiable) are left out, as AAMI EC57
    evaluations leave them out: a paced beat is neither normal nor an arrhythmia here.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.concatenate([r["beats"].labels for r in results])
    score = np.concatenate([r["score"] for r in results])
    flag = np.concatenate([r["flag"] for r in results])
    known = np.isin(labels, ("N", "S", "V", "F"))
    n_q = int(np.sum(labels == "Q"))
    abnormal = known & (labels != "N")
    if not known.any() or abnormal[known].all() or not abnormal.any():
        print("no labels with both normal and abnormal beats: no AUROC", file=stream)
        return None
    y = abnormal[known].astype(int)
    auroc = roc_auc_score(y, -score[known])
    ap = average_precision_score(y, -score[known])
    line = f"AUROC {auroc:.3f}  average precision {ap:.3f}"
    for cls in ("S", "V", "F"):
        sel = known & ((labels == "N") | (labels == cls))
        if np.any(labels[sel] == cls):
            line += f"  AUROC N vs {cls} {roc_auc_score(labels[sel] == cls, -score[sel]):.3f}"
    if n_q:
        line += f"  ({n_q} Q beats left out, as in AAMI EC57)"
    print(line, file=stream)
    normal = known & ~abnormal
    print(
        f"flagged {int(flag[normal].sum())} of {int(normal.sum())} normal "
        f"and {int(flag[abnormal].sum())} of {int(abnormal.sum())} abnormal beats",
        file=stream,
    )
    if contamination == "auto":
        how = "set for about 1 % false alarms on beats like the training beats"
        expected = 0.01
    else:
        how = f"set to flag {100 * contamination:g} % of the training beats"
        expected = contamination
    false_alarms = float(flag[normal].mean()) if normal.any() else 0.0
    if false_alarms > max(FALSE_ALARM_NOTE, 2 * expected):
        print(
            f"note: {100 * false_alarms:.0f} % of the normal beats are flagged; the threshold "
            f"was {how}: these records' normal beats differ from those (other patients, or "
            "too few training beats). Rank by score or p-value rather than trusting the "
            "flags, or train on more records (or on these records themselves)",
            file=stream,
        )
    recall = float(flag[abnormal].mean())
    if recall < LOW_RECALL_NOTE:
        if normal_only:
            why = ("; most abnormal beats score like normal ones. Rank by score or p-value (the "
                   "AUROC above), or pass --contamination F to flag a larger share F of the "
                   "training beats and more abnormal beats with them")
        else:
            why = (", which include the abnormal ones (no --normal-only), so a record with "
                   "more abnormal beats than that keeps most of them unflagged. Rank by score "
                   "or p-value (the AUROC above), pass --contamination with the share of "
                   "abnormal beats you expect, or train on normal beats (--train ... "
                   "--normal-only)")
        print(f"note: {100 * recall:.0f} % of the abnormal beats are flagged. The threshold "
              f"is {how}{why}", file=stream)
    return {"auroc": auroc, "average_precision": ap}


def main(argv=None):
    """The command line as a function: parse ``argv`` (default: ``sys.argv[1:]``), run, and
    return the exit status (0, or 1 after an error message). The ``sigflow`` script runs it
    through :func:`console_main`."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    options = dict(
        out=args.out,
        device=args.device,
        lead=args.lead,
        seed=args.seed,
        plot=not args.no_plot,
        plot_start=args.plot_start,
        plot_duration=args.plot_duration,
        # progress bars only on a terminal: redirected to a log, they are lines of \r updates
        quiet=args.quiet or not _is_terminal(sys.stderr),
        max_iter=args.max_iter,
        finetune_iter=args.finetune_iter,
        overwrite=args.overwrite,
        r_peaks=args.r_peaks,
        contamination=args.contamination,
        start=args.start,
        end=args.end,
    )
    try:
        if args.command == "demo":
            from sigflow.ecg import example_records

            records = example_records()
            print(f"sigflow demo: {len(records)} synthetic example records", file=sys.stdout)
            run = run_detection(records, **options)
        else:
            run = run_detection(
                args.records, train=args.train, normal_only=args.normal_only,
                annotation=args.annotation,
                **options,
            )
        _summary(run["results"], sys.stdout, run["contamination"], run["normal_only"])
    except (OSError, ValueError) as exc:
        print(f"sigflow: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as a command line gives them: one line, no Python source location."""
    print(f"sigflow: warning: {message}", file=sys.stderr if file is None else file)


def console_main():
    """The ``sigflow`` console script: :func:`main`, with warnings shown as one line each
    (``sigflow: warning: ...``) instead of Python's file, line and source text, which named
    scikit-learn's pipeline for the detector's warnings."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console_main())
