"""Reading WFDB records (and EDF/BDF files) into a small, explicit container."""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .._warnings import user_stacklevel
from ._channels import resolve_channels
from ._edf import is_edf_path, read_edf

__all__ = ["ECGRecord", "RecordFormatError", "load_record"]

# Bytes used by ``n`` samples in the WFDB storage formats wfdb can write.
_BITS_PER_SAMPLE = {
    "8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16,
    "212": 12, "310": 32 / 3, "311": 32 / 3,
}


@contextlib.contextmanager
def _quiet_wfdb():
    """Silence wfdb's own pandas deprecation warnings (``inplace=``), not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")
        yield


def _import_wfdb():
    """Import wfdb (its module-level pandas deprecation warnings silenced)."""
    with _quiet_wfdb():
        import wfdb
    return wfdb


class RecordFormatError(ValueError):
    """A WFDB record (header, signal or annotation file) or an EDF file is malformed or
    truncated.

    The message names the offending file.
    """


@dataclass
class ECGRecord:
    """An ECG record in physical units with its beat annotations.

    Attributes
    ----------
    name : str
        Record name (the file stem, e.g. ``"101"``).
    signal : ndarray of shape (n_samples, n_channels)
        Signals in physical units (usually mV), float64.
    fs : float
        Sampling frequency in Hz.
    leads : list of str
        Lead (signal) names, one per column of ``signal``; ``"ch<i>"`` for a column the
        header leaves unnamed.
    units : list of str
        Physical units, one per column of ``signal``; ``""`` where the header gives none.
    ann_samples : ndarray of int or None
        Sample indices of the annotations (all symbols, beat and non-beat),
        or None when the record has no annotation file.
    ann_symbols : ndarray of str or None
        Annotation symbols (MIT-BIH codes such as ``"N"``, ``"V"``, ``"+"``).
    path : str
        The record path without extension (or the PhysioNet record name).
    start : int, default=0
        Index in the whole record of ``signal[0]``: ``sampfrom`` of a part read with
        :func:`load_record`; ``ann_samples`` count from it too.

    Examples
    --------
    >>> import numpy as np
    >>> from sigflow.ecg import ECGRecord
    >>> rec = ECGRecord(name="demo", signal=np.zeros((720, 1)), fs=360.0, leads=["MLII"])
    >>> rec
    ECGRecord(name='demo', n_samples=720, fs=360, leads=['MLII'], annotations=none)
    >>> rec.duration, rec.has_annotations, rec.lead_index("mlii")
    (2.0, False, 0)

    :func:`load_record` reads one from WFDB files.
    """

    name: str
    signal: np.ndarray
    fs: float
    leads: list[str]
    units: list[str] = field(default_factory=list)
    ann_samples: np.ndarray | None = None
    ann_symbols: np.ndarray | None = None
    path: str = ""
    start: int = 0

    @property
    def n_samples(self) -> int:
        """Number of samples per channel."""
        return int(self.signal.shape[0])

    @property
    def duration(self) -> float:
        """Record duration in seconds."""
        return self.n_samples / self.fs

    @property
    def has_annotations(self) -> bool:
        """Whether an annotation file was read with the record (it may hold no beat labels,
        only rhythm or noise marks; :func:`segment_beats` then detects R peaks)."""
        return self.ann_samples is not None

    def lead_index(self, lead: str | int | None) -> int | None:
        """Column index of ``lead`` (a name or an index), or None when absent.

        A string of digits that names no lead is taken as an index, as a command line
        gives it (``--lead 1``).
        """
        if lead is None:
            return None
        if isinstance(lead, (int, np.integer)):
            return int(lead) if 0 <= int(lead) < len(self.leads) else None
        for i, name in enumerate(self.leads):
            if name.strip().upper() == str(lead).strip().upper():
                return i
        if str(lead).strip().isdigit():
            return self.lead_index(int(str(lead).strip()))
        return None

    def part(self, sampfrom, sampto=None) -> ECGRecord:
        """The record's samples ``sampfrom, ..., sampto - 1`` (to the end with None), with
        the annotations among them; samples count from ``sampfrom``, which adds to
        ``start``. The same as ``load_record(path, sampfrom=..., sampto=...)`` of the
        record's files.

        >>> import numpy as np
        >>> from sigflow.ecg import ECGRecord
        >>> rec = ECGRecord(name="demo", signal=np.zeros((720, 1)), fs=360.0, leads=["MLII"],
        ...                 ann_samples=np.array([100, 460]), ann_symbols=np.array(["N", "V"]))
        >>> half = rec.part(360)
        >>> half.start, half.n_samples, half.ann_samples, half.ann_symbols
        (360, 360, array([100]), array(['V'], dtype='<U1'))
        """
        sampfrom, sampto = _check_range(sampfrom, sampto)
        sampto = _range_end(sampfrom, sampto, self.n_samples, f"record {self.name}")
        ann_samples, ann_symbols = self.ann_samples, self.ann_symbols
        if ann_samples is not None:
            inside = (ann_samples >= sampfrom) & (ann_samples < sampto)
            ann_samples = ann_samples[inside] - sampfrom
            ann_symbols = None if ann_symbols is None else ann_symbols[inside]
        # a copy: a view would keep the whole record's samples alive with the part
        return replace(self, signal=self.signal[sampfrom:sampto].copy(),
                       ann_samples=ann_samples, ann_symbols=ann_symbols,
                       start=self.start + sampfrom)

    def __repr__(self) -> str:
        n_ann = "none" if self.ann_samples is None else len(self.ann_samples)
        return (
            f"ECGRecord(name={self.name!r}, n_samples={self.n_samples}, fs={self.fs:g}, "
            f"leads={self.leads}, annotations={n_ann}"
            + (f", start={self.start}" if self.start else "") + ")"
        )


def _check_local_files(path: str, *, segment_of: str | None = None) -> None:
    """Raise a clear error for a missing header or a truncated signal file.

    A multi-segment record (its header lists segments) is checked segment by segment;
    ``segment_of`` names the multi-segment header a segment comes from.
    """
    wfdb = _import_wfdb()

    header = path + ".hea"
    if not os.path.isfile(header):
        where = f" (a segment named in {segment_of})" if segment_of else _path_hint(path)
        raise FileNotFoundError(f"WFDB header file not found: {header}{where}")
    try:
        with _quiet_wfdb():
            head = wfdb.rdheader(path)
    except Exception as exc:  # wfdb raises several types for bad headers
        raise RecordFormatError(f"malformed WFDB header {header}: {exc}") from exc
    if head.n_sig in (None, 0) or head.fs in (None, 0):
        raise RecordFormatError(f"malformed WFDB header {header}: no signals or no sampling rate")
    if getattr(head, "seg_name", None) is not None:
        if segment_of is not None:
            raise RecordFormatError(
                f"malformed WFDB header {header}: a segment of the multi-segment record "
                f"{segment_of} is itself multi-segment"
            )
        fixed = not head.seg_len or int(head.seg_len[0] or 0) != 0  # no layout segment
        if fixed and "~" in head.seg_name:
            raise RecordFormatError(
                f"multi-segment WFDB record {header} has null segments ('~') but no layout "
                "segment (a first segment of length 0): wfdb cannot join its segments"
            )
        folder = os.path.dirname(path)
        for seg in head.seg_name:
            if seg and seg != "~":  # "~": a null segment (a gap), no files
                _check_local_files(os.path.join(folder, seg), segment_of=header)
        return
    if head.sig_len in (None, 0) or head.file_name is None:
        return
    folder = os.path.dirname(path)
    per_file: dict[str, list[int]] = {}
    for i, fname in enumerate(head.file_name):
        per_file.setdefault(fname, []).append(i)
    for fname, idx in per_file.items():
        dat = os.path.join(folder, fname)
        if not os.path.isfile(dat):
            raise FileNotFoundError(f"WFDB signal file not found: {dat} (named in {header})")
        fmt = str(head.fmt[idx[0]])
        bits = _BITS_PER_SAMPLE.get(fmt)
        if bits is None:
            continue
        spf = head.samps_per_frame or [1] * head.n_sig
        per_frame = sum(int(spf[i] or 1) for i in idx)
        offset = int((head.byte_offset or [0] * head.n_sig)[idx[0]] or 0)
        expected = offset + math.ceil(head.sig_len * per_frame * bits / 8)
        found = os.path.getsize(dat)
        # Formats 212/310/311 pack samples in groups; allow the final partial group. The
        # others are byte-aligned: any byte short is a truncated file.
        if found + (3 if fmt in ("212", "310", "311") else 0) < expected:
            raise RecordFormatError(
                f"truncated WFDB signal file {dat}: expected {expected} bytes for "
                f"{head.sig_len} samples (format {fmt}), found {found}"
            )


def _check_annotation_end(ann_file):
    """Raise for a local annotation file that was cut short.

    A WFDB (MIT-format) annotation file ends with a zero 16-bit word, the end-of-file
    marker. :func:`wfdb.rdann` does not check for it: a file cut at an even byte count
    loads silently with only the annotations before the cut (half of MIT-BIH 101.atr gives
    932 of its 1,874 beats, the last at 14.6 minutes of 30), and the beats after it would
    be missing from every result.
    """
    size = os.path.getsize(ann_file)
    end = b""
    if size >= 2:
        with open(ann_file, "rb") as f:
            f.seek(size - 2)
            end = f.read(2)
    if size % 2 or end != b"\0\0":
        raise RecordFormatError(
            f"truncated WFDB annotation file {ann_file}: it does not end with the end-of-file "
            f"marker (a zero 16-bit word; {size} bytes), so annotations after the cut would be "
            "missing; copy the file again, or pass annotation=None to read the signal alone"
        )


def _annotations_at(ann, fs, n_samples, ann_file, start=0, n_read=None):
    """Annotation sample indices at the record's rate ``fs`` and their symbols.

    An annotation file may carry its own sampling frequency (``ann.fs``); its sample
    numbers are then rescaled to ``fs`` (rounded to the nearest sample). Annotations
    outside the signal, ``[0, n_samples)``, are dropped with a warning. When only the
    ``n_read`` samples from ``start`` were read, the annotations among them are kept,
    counted from ``start``.
    """
    samples = np.asarray(ann.sample, dtype=np.int64)
    symbols = np.asarray(ann.symbol, dtype=object).astype(str)
    ann_fs = getattr(ann, "fs", None)
    if ann_fs is not None and np.isfinite(float(ann_fs)) and float(ann_fs) > 0:
        ann_fs = float(ann_fs)
        if not math.isclose(ann_fs, fs, rel_tol=1e-9):
            samples = np.rint(samples * (fs / ann_fs)).astype(np.int64)
    inside = (samples >= 0) & (samples < n_samples)
    if not inside.all():
        warnings.warn(
            f"annotation file {ann_file}: {int((~inside).sum())} of {len(samples)} annotations "
            f"lie outside the record's {n_samples} samples and are dropped",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        samples, symbols = samples[inside], symbols[inside]
    if start or (n_read is not None and n_read < n_samples):
        end = start + (n_samples - start if n_read is None else n_read)
        read = (samples >= start) & (samples < end)
        samples, symbols = samples[read] - start, symbols[read]
    return samples, symbols


def _raise_download_error(exc, pn_dir, what):
    """Raise a ConnectionError for a download from PhysioNet that failed (no network, say):
    requests' errors are OSErrors, and not a sign of a malformed record."""
    if pn_dir is not None and isinstance(exc, PermissionError):  # HTTP 401/403 (wfdb)
        raise PermissionError(
            f"PhysioNet refused to send {what}: {exc}; a credentialed database needs its "
            "files downloaded with an account first (then read the local files)"
        ) from exc
    if pn_dir is not None and isinstance(exc, OSError):
        raise ConnectionError(
            f"could not download {what} from PhysioNet: {exc}; check the network connection, "
            "or download the database (wfdb.dl_database) and read local files"
        ) from exc


def _read_header(wfdb, record, pn_dir):
    """``wfdb.rdheader`` of ``record``: a missing file stays a FileNotFoundError, a failed
    download becomes a ConnectionError/PermissionError, anything else a RecordFormatError."""
    try:
        with _quiet_wfdb():
            return wfdb.rdheader(record, pn_dir=pn_dir)
    except FileNotFoundError:
        raise
    except Exception as exc:
        shown = f"{pn_dir}/{record}" if pn_dir else record
        _raise_download_error(exc, pn_dir, f"the header {shown}.hea")
        raise RecordFormatError(f"could not read WFDB header {shown}.hea: {exc}") from exc


def _channel_indices(wfdb, path, pn_dir, channels):
    """``channels`` (indices or lead names) as indices, checked against the record's header."""
    where = f"{pn_dir}/{path}" if pn_dir else path

    header = _read_header(wfdb, path, pn_dir)
    segments = getattr(header, "seg_name", None)
    if segments:
        # a multi-segment header names no signals: channels are those of its layout
        # segment (a first segment of length 0), else of its (fixed-layout) segments
        first = next((seg for seg in segments if seg and seg != "~"), None)
        if first is not None:
            header = _read_header(wfdb, os.path.join(os.path.dirname(path), first), pn_dir)
    n_sig = int(header.n_sig)
    names = [str(v) for v in (getattr(header, "sig_name", None) or [])]
    return resolve_channels(channels, names, n_sig, f"record {where}")


def record_name(path) -> str:
    """The name :func:`load_record` gives the record at ``path``: the file stem of an EDF
    file, else the last part of the WFDB record path (without ``.hea``/``.dat``)."""
    path = os.path.expanduser(os.fspath(path))
    if is_edf_path(path):
        return Path(path).stem
    if path.endswith((".hea", ".dat")):
        path = path[:-4]
    return Path(path).name


def _path_hint(path) -> str:
    """What a record path without a header may have meant, as "; ..." (or "")."""
    stem, ext = os.path.splitext(path.rstrip("/" + os.sep))
    if (ext or stem != path) and os.path.isfile(stem + ".hea"):
        return f"; did you mean the record {stem}? (a record path has no extension)"
    if os.path.isdir(path):
        names = sorted(f[:-4] for f in os.listdir(path) if f.endswith(".hea"))
        example = (f", e.g. {os.path.join(path, names[0])}" + (f" ({len(names)} records)"
                   if len(names) > 1 else "")) if names else ""
        return f"; {path} is a folder: pass the records in it{example}"
    if os.path.isfile(path):
        return ("; that file exists: a WFDB record is named without extension (its .hea "
                "header and .dat signal files beside it), and EDF/BDF files need the .edf or "
                ".bdf extension")
    return ""


def annotation_file(path, annotation) -> str:
    """The annotation file ``load_record(path, annotation=annotation)`` reads:
    ``RECORD.annotation`` for a WFDB record, ``FILE.edf.annotation`` for an EDF file."""
    path = os.path.expanduser(os.fspath(path))
    if not is_edf_path(path) and path.endswith((".hea", ".dat")):
        path = path[:-4]
    return f"{path}.{annotation}"


def require_record_files(path) -> None:
    """Raise the :class:`FileNotFoundError` :func:`load_record` raises for a local record
    that is not there (no EDF file, or no WFDB header), without reading anything."""
    path = os.path.expanduser(os.fspath(path))
    if is_edf_path(path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"EDF file not found: {path}")
        return
    if path.endswith((".hea", ".dat")):
        path = path[:-4]
    if not os.path.isfile(path + ".hea"):
        raise FileNotFoundError(f"WFDB header file not found: {path}.hea{_path_hint(path)}")


def load_record(path, pn_dir=None, channels=None, *, annotation="atr", sampfrom=0,
                sampto=None):
    """Read a WFDB record or an EDF/BDF file, in physical units, with its annotations.

    Parameters
    ----------
    path : str or path-like
        Record path without extension (as :func:`wfdb.rdrecord` takes it),
        e.g. ``"data/mitdb/101"``. With ``pn_dir``, the record name only
        (e.g. ``"101"``). A multi-segment record is read as one record
        (samples of null segments are NaN). A path ending in ``.edf`` or ``.bdf``
        is read as EDF, EDF+ (continuous) or BDF: by default its signals at the
        file's highest sampling rate (the others are left out with a warning;
        ``channels`` picks signals that share a rate); its annotations are WFDB
        ones in ``path.atr`` (the WFDB convention for EDF records, e.g.
        ``r01.edf.atr``), since EDF+ text annotations do not carry beat labels.
    pn_dir : str, default=None
        PhysioNet database directory (e.g. ``"mitdb"``) to stream the record
        from instead of local files; needs network access.
    channels : list of int or str, default=None
        Channels to read, by index or by lead name (``["MLII"]``, in any case; a string
        of digits that names no lead is an index), in that order; all by default. A
        channel the header does not list raises ``ValueError`` naming the record's leads.
    annotation : str or None, default="atr"
        Annotation file extension. The annotations are read when the file
        exists (always tried with ``pn_dir``); None skips them. When the
        annotation file states its own sampling frequency, its sample numbers
        are rescaled to the record's; annotations outside the
        signal are dropped with a warning.
    sampfrom, sampto : int, default=0 and None
        Read only the samples ``sampfrom, ..., sampto - 1`` (to the end with None), as
        :func:`wfdb.rdrecord` does: a part of a long (Holter) record. The record's
        ``signal``, annotations (those within the part) and so its beats count their
        samples from ``sampfrom``, which the record keeps as ``start``.

    Returns
    -------
    record : ECGRecord
        Signals (n_samples, n_channels) in physical units, sampling rate, lead
        names and annotations (None when there are none).

    Raises
    ------
    FileNotFoundError
        When the header or a signal file is missing (the message names it).
    RecordFormatError
        When a file is malformed or truncated (the message names it), including an
        annotation file that lacks its end-of-file marker and a discontinuous EDF+D file.
    ConnectionError
        When a download from PhysioNet (``pn_dir``) fails, e.g. without a network.
    ValueError
        When ``channels`` names a channel the record lacks, or EDF signals of different
        rates; for an EDF file with ``pn_dir`` (EDF files are read from local files).

    Examples
    --------
    >>> from sigflow.ecg import example_records, load_record
    >>> rec = load_record(example_records()[0])
    >>> rec.leads, rec.fs
    (['MLII'], 360.0)
    >>> rec.signal.ndim
    2
    """
    wfdb = _import_wfdb()

    path = os.fspath(path)
    if pn_dir is None:
        path = os.path.expanduser(path)  # a quoted "~/..." (wfdb does not expand it)
    sampfrom, sampto = _check_range(sampfrom, sampto)
    if is_edf_path(path):
        return _load_edf(wfdb, path, pn_dir, channels, annotation, sampfrom, sampto)
    dat_path = path.endswith(".dat")
    if path.endswith((".hea", ".dat")):
        path = path[:-4]
    name = Path(path).name  # what record_name gives for the path as the user wrote it
    if pn_dir is None:
        try:
            _check_local_files(path)
        except FileNotFoundError as exc:
            if dat_path and not os.path.isfile(path + ".hea"):
                raise FileNotFoundError(
                    f"{exc}; a .dat path is read as the record of the same name, and a "
                    "record's signal file may have another name: pass the record's .hea "
                    "path or its name"
                ) from None
            raise
    if channels is not None:
        channels = _channel_indices(wfdb, path, pn_dir, channels)
    n_total = None
    if sampfrom or sampto is not None:  # a part: check it against the record's length
        n_total = _record_length(wfdb, path, pn_dir)
        sampto = _range_end(sampfrom, sampto, n_total, f"record {name}")
    try:
        with _quiet_wfdb():
            # m2s: a multi-segment record is read as one record (gaps as NaN)
            rec = wfdb.rdrecord(path, channels=channels, physical=True, pn_dir=pn_dir,
                                m2s=True, sampfrom=sampfrom, sampto=sampto)
    except FileNotFoundError:
        raise
    except Exception as exc:
        where = f"{pn_dir}/{path}" if pn_dir else path
        _raise_download_error(exc, pn_dir, f"the record {where}")
        raise RecordFormatError(f"could not read WFDB record {where} (.hea/.dat): {exc}") from exc
    signal = rec.p_signal
    if signal is None or signal.ndim != 2 or signal.shape[0] == 0:
        raise RecordFormatError(f"WFDB record {path} has no signal samples")
    if rec.sig_len and signal.shape[0] != rec.sig_len:
        raise RecordFormatError(
            f"truncated WFDB signal for {path}: header says {rec.sig_len} samples, "
            f"read {signal.shape[0]}"
        )
    signal = np.asarray(signal, dtype=np.float64)
    per_frame = [int(v or 1) for v in (getattr(rec, "samps_per_frame", None) or [])]
    if max(per_frame, default=1) > 1:
        # wfdb averages the samples of each frame (smooth_frames): such leads lose their
        # higher rate, which a user should know about before reading their beats
        sig_names = rec.sig_name or [f"ch{i}" for i in range(len(per_frame))]
        fast = [f"{sig_names[i]} ({k} per frame)" for i, k in enumerate(per_frame) if k > 1]
        warnings.warn(
            f"record {name} stores more than one sample per frame for {', '.join(fast)}; "
            f"they are read averaged over each frame, at the frame rate {float(rec.fs):g} Hz "
            "(the rate of its annotations)",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    ann_samples, ann_symbols = _read_annotations(
        wfdb, path, pn_dir, annotation, float(rec.fs),
        signal.shape[0] if n_total is None else n_total, sampfrom, signal.shape[0],
    )
    return ECGRecord(
        name=name,
        signal=signal,
        fs=float(rec.fs),
        start=sampfrom,
        # lead names and units are optional in a header; wfdb gives None for a missing one
        leads=[f"ch{i}" if s is None or not str(s).strip() else str(s)
               for i, s in enumerate(rec.sig_name or [None] * signal.shape[1])],
        units=["" if u is None else str(u) for u in (rec.units or [])],
        ann_samples=ann_samples,
        ann_symbols=ann_symbols,
        path=path,
    )


def _read_annotations(wfdb, path, pn_dir, annotation, fs, n_samples, start=0, n_read=None):
    """Sample indices and symbols of the annotation file ``path.annotation``, or Nones
    (those of the ``n_read`` samples from ``start`` when only they were read)."""
    if annotation is None:
        return None, None
    ann_file = f"{path}.{annotation}"
    if pn_dir is None and not os.path.isfile(ann_file):
        return None, None
    if pn_dir is None:
        _check_annotation_end(ann_file)
    try:
        with _quiet_wfdb():
            ann = wfdb.rdann(path, annotation, pn_dir=pn_dir)
    except Exception as exc:
        if pn_dir is not None and "404" in str(exc):
            return None, None
        _raise_download_error(exc, pn_dir, f"the annotations {pn_dir}/{ann_file}")
        raise RecordFormatError(f"malformed WFDB annotation file {ann_file}: {exc}") from exc
    return _annotations_at(ann, fs, n_samples, ann_file, start, n_read)


def _load_edf(wfdb, path, pn_dir, channels, annotation, sampfrom=0, sampto=None):
    """:func:`load_record` of an EDF/BDF file, with WFDB annotations in ``path.annotation``."""
    if pn_dir is not None:
        raise ValueError(
            f"EDF files are read from local files only; download {path} from {pn_dir} first "
            "and pass its path without pn_dir"
        )
    require_record_files(path)
    signal, fs, leads, units = read_edf(path, channels)  # the whole file: no partial reads
    ann_samples, ann_symbols = _read_annotations(
        wfdb, path, None, annotation, fs, signal.shape[0]
    )
    record = ECGRecord(
        name=record_name(path), signal=signal, fs=fs, leads=leads, units=units,
        ann_samples=ann_samples, ann_symbols=ann_symbols, path=path,
    )
    return record if not sampfrom and sampto is None else record.part(sampfrom, sampto)


def _check_range(sampfrom, sampto):
    """``sampfrom`` (an int >= 0) and ``sampto`` (None or an int > sampfrom) as ints."""
    for value, what in ((sampfrom, "sampfrom"), (sampto, "sampto")):
        if value is None and what == "sampto":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"{what} must be a sample index (an integer >= 0), got {value!r}")
    sampfrom = int(sampfrom)
    if sampto is not None:
        sampto = int(sampto)
        if sampto <= sampfrom:
            raise ValueError(f"sampto ({sampto}) must be greater than sampfrom ({sampfrom})")
    return sampfrom, sampto


def _range_end(sampfrom, sampto, n_total, what):
    """``sampto`` (None: the end), checked against a record of ``n_total`` samples."""
    if sampfrom >= n_total or (sampto is not None and sampto > n_total):
        raise ValueError(
            f"{what} has {n_total} samples: sampfrom={sampfrom}, sampto={sampto} lies beyond "
            "its end"
        )
    return n_total if sampto is None else sampto


def _record_length(wfdb, path, pn_dir):
    """Samples per signal of a WFDB record, from its header."""
    header = _read_header(wfdb, path, pn_dir)
    if not header.sig_len:
        raise RecordFormatError(
            f"WFDB header {path}.hea states no length, which reading a part (sampfrom, "
            "sampto) needs"
        )
    return int(header.sig_len)
