"""Reading EDF, EDF+ and BDF recordings (European Data Format) for :func:`load_record`.

EDF (Kemp et al. 1992) stores each signal as 16-bit integers in fixed-length data records
with a linear map to physical units per signal; BDF (BioSemi) is the same with 24-bit
integers; EDF+ adds an "EDF Annotations" signal of time-stamped text. Holters, bedside
monitors and polysomnographs export ECG this way, often next to signals at other rates
(SpO2 at 1 Hz beside ECG at 256 Hz), so a recording is read one sampling rate at a time.

wfdb reads EDF through ``wfdb.io.convert.edf.read_edf`` (wfdb 4.3), but shifts every
sample by up to one digital unit (its baseline, ``digital_max - physical_max * gain + 1``,
truncated to an integer), fails on files whose signals have different rates, and does not
read BDF. This reader follows the specification; ``tests/test_ecg_edf.py`` checks it
against the files and the reader of EDFlib (``pyedflib``).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .._warnings import user_stacklevel
from ._channels import resolve_channels

__all__ = ["is_edf_path", "read_edf", "signal_names"]

_EDF_SUFFIXES = (".edf", ".bdf")
_ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
# widths of the per-signal header fields, each stored for all signals in turn
_SIGNAL_FIELDS = (
    ("label", 16), ("transducer", 80), ("units", 8), ("physical_min", 8),
    ("physical_max", 8), ("digital_min", 8), ("digital_max", 8), ("prefiltering", 80),
    ("n_per_record", 8), ("reserved", 32),
)


def is_edf_path(path) -> bool:
    """Whether ``path`` names an EDF/BDF file (by its extension, in any case)."""
    return os.fspath(path).lower().endswith(_EDF_SUFFIXES)


def _format_error(path, what):
    from ._record import RecordFormatError

    return RecordFormatError(f"malformed EDF file {path}: {what}")


def _number(path, text, what, kind=float):
    try:
        value = kind(text.strip())
    except ValueError:
        raise _format_error(path, f"{what} is {text.strip()!r}, not a number") from None
    if kind is float and not np.isfinite(value):
        raise _format_error(path, f"{what} is {text.strip()!r}")
    return value


def _read_header(path):
    """The main header and the per-signal headers of the EDF/BDF file ``path``."""
    with open(path, "rb") as fh:
        main = fh.read(256)
        if len(main) < 256:
            raise _format_error(path, f"{len(main)} bytes, shorter than the 256-byte header")
        bdf = main[:8] == b"\xffBIOSEMI"
        if not bdf and main[:8].strip() != b"0":
            raise _format_error(
                path, f"version field {main[:8]!r}: neither EDF ('0') nor BDF ('\\xffBIOSEMI')"
            )
        text = main.decode("latin-1")
        header_bytes = _number(path, text[184:192], "the header size", int)
        reserved = text[192:236].strip()
        n_records = _number(path, text[236:244], "the number of data records", int)
        duration = _number(path, text[244:252], "the data record duration")
        ns = _number(path, text[252:256], "the number of signals", int)
        if ns < 1:
            raise _format_error(path, f"{ns} signals")
        if header_bytes != 256 * (ns + 1):
            raise _format_error(
                path, f"the header size is {header_bytes} bytes, not 256 x (1 + {ns} signals)"
            )
        raw = fh.read(256 * ns).decode("latin-1")
    if len(raw) < 256 * ns:
        raise _format_error(path, f"the header of its {ns} signals is cut short")
    signals = [{} for _ in range(ns)]
    pos = 0
    for name, width in _SIGNAL_FIELDS:
        for sig in signals:
            sig[name] = raw[pos:pos + width].strip()
            pos += width
    for i, sig in enumerate(signals):
        where = f"signal {i} ({sig['label'] or 'unnamed'})"
        for name in ("physical_min", "physical_max"):
            sig[name] = _number(path, sig[name], f"the {name.replace('_', ' ')} of {where}")
        for name in ("digital_min", "digital_max", "n_per_record"):
            sig[name] = _number(path, sig[name], f"the {name.replace('_', ' ')} of {where}",
                                int)
        sig["annotation"] = sig["label"] in _ANNOTATION_LABELS
    return {
        "bdf": bdf, "header_bytes": header_bytes, "reserved": reserved,
        "n_records": n_records, "duration": duration, "signals": signals,
    }


def _names_and_rates(head):
    """Labels and sampling rates (Hz) of the header's signals, the EDF+ annotation signal
    left out (NaN rates when the data record duration is not positive)."""
    data = [s for s in head["signals"] if not s["annotation"]]
    duration = head["duration"] if head["duration"] > 0 else float("nan")
    return ([s["label"] or f"ch{k}" for k, s in enumerate(data)],
            [s["n_per_record"] / duration for s in data])


def signal_names(path):
    """Labels and sampling rates (Hz) of the signals of an EDF/BDF file (not the EDF+
    annotation signal), as :func:`read_edf` counts them."""
    return _names_and_rates(_read_header(path))


def read_edf(path, channels=None):
    """Signals of an EDF/EDF+/BDF file in physical units, with their rate, names and units.

    Parameters
    ----------
    path : str
        The file.
    channels : list of int or str, default=None
        Signals by index or label (the "EDF Annotations" signal of EDF+ is not counted).
        By default all the signals at the file's highest sampling rate; signals at other
        rates are then left out with a warning that names them.

    Returns
    -------
    signal : ndarray of shape (n_samples, n_channels), float64
    fs : float
    leads, units : list of str
    """
    head = _read_header(path)
    if head["reserved"].startswith(("EDF+D", "BDF+D")):
        raise _format_error(
            path, "it is a discontinuous EDF+D recording (data records with gaps between "
            "them), which sigflow does not read; export it as continuous EDF+C"
        )
    data = [(i, s) for i, s in enumerate(head["signals"]) if not s["annotation"]]
    if not data:
        raise _format_error(path, "it holds annotations only, no signal")
    if head["duration"] <= 0:
        raise _format_error(path, f"the data record duration is {head['duration']:g} s")
    names, rates = _names_and_rates(head)
    for k, (_, s) in enumerate(data):
        if s["n_per_record"] < 1:
            raise _format_error(path, f"signal {names[k]} has {s['n_per_record']} samples "
                                      "per data record")
        if s["digital_max"] <= s["digital_min"] or s["physical_max"] == s["physical_min"]:
            raise _format_error(
                path, f"signal {names[k]} maps digital [{s['digital_min']}, "
                f"{s['digital_max']}] to physical [{s['physical_min']:g}, "
                f"{s['physical_max']:g}], which is not a scale"
            )
    if channels is None:
        top = max(rates)
        chosen = [k for k, r in enumerate(rates) if r == top]
        left = [f"{names[k]} ({rates[k]:g} Hz)" for k, r in enumerate(rates) if r != top]
    else:
        left = []
        chosen = resolve_channels(channels, names, len(names), f"EDF file {path}")
        if len({rates[k] for k in chosen}) > 1:
            raise ValueError(
                f"channels: the signals of {path} asked for have different sampling rates ("
                + ", ".join(f"{names[k]} {rates[k]:g} Hz" for k in chosen)
                + "); read each rate separately"
            )
    width = 3 if head["bdf"] else 2
    record_bytes = width * sum(s["n_per_record"] for s in head["signals"])
    available = max(os.path.getsize(path) - head["header_bytes"], 0) // record_bytes
    n_records = head["n_records"]
    if n_records == -1:  # "unknown": a recording that was not closed; use what is there
        n_records = available
    elif n_records < 0:
        raise _format_error(path, f"{n_records} data records")
    elif available < n_records:
        raise _format_error(
            path, f"truncated: the header lists {n_records} data records of {record_bytes} "
            f"bytes, the file holds {available} whole ones"
        )
    if n_records == 0:
        raise _format_error(path, "it holds no data record")
    blocks = np.memmap(path, dtype=np.uint8, mode="r", offset=head["header_bytes"],
                       shape=(n_records, record_bytes))
    starts = np.cumsum([0] + [width * s["n_per_record"] for s in head["signals"]])
    columns = []
    for k in chosen:
        index, s = data[k]
        raw = np.ascontiguousarray(blocks[:, starts[index]:starts[index + 1]]).reshape(-1)
        if head["bdf"]:
            b = raw.reshape(-1, 3).astype(np.int32)
            digital = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            digital = (digital ^ 0x800000) - 0x800000  # sign of the 24-bit value
        else:
            digital = raw.view("<i2")
        digital = digital.astype(np.float64)  # digital - digital_min overflows int16
        gain = (s["physical_max"] - s["physical_min"]) / (s["digital_max"] - s["digital_min"])
        columns.append((digital - s["digital_min"]) * gain + s["physical_min"])
    del blocks
    signal = np.stack(columns, axis=1).astype(np.float64, copy=False)
    if left:
        warnings.warn(
            f"EDF file {path}: the signals at {rates[chosen[0]]:g} Hz are read; left out at "
            f"other rates: {', '.join(left)} (read them with channels=; in sigflow detect, "
            "--lead)",
            UserWarning, stacklevel=user_stacklevel(),
        )
    units = [data[k][1]["units"] for k in chosen]
    return signal, float(rates[chosen[0]]), [names[k] for k in chosen], units
