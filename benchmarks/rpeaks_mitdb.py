"""R-peak detection on MIT-BIH: sigflow's detector against wfdb's XQRS and GQRS.

Protocol
--------
* Records: every MIT-BIH record in ``$SIGFLOW_SHARED_DATA/mitdb`` (default
  ``../shared/data/mitdb``), channel 0 (MLII in all but 102 and 104), the whole record.
* Reference: the annotated beats (every symbol with an AAMI class, N/S/V/F/Q), matched one to
  one with the detections within 150 ms (:func:`sigflow.ecg.rpeak_accuracy`, the AAMI EC57
  practice). Reported per record and pooled: sensitivity (Se), positive predictivity (+P),
  false negatives and positives, and the detection time.
* Detectors, in the same process on the same signals: ``detect_r_peaks(method=
  "pan_tompkins")`` (sigflow's default, what records without annotations and EDF files go
  through) and ``detect_r_peaks(method="gqrs")`` (GQRS on the filtered, scaled lead, then
  sigflow's refinement to the R extremum), and wfdb's ``xqrs_detect`` and ``gqrs_detect`` as
  they come, on the signal in millivolts (the peers).

Usage::

    python benchmarks/rpeaks_mitdb.py                 # all records found
    python benchmarks/rpeaks_mitdb.py --records 105 108 203 --detectors sigflow
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from sigflow.ecg import AAMI_MAP, detect_r_peaks, load_record, rpeak_accuracy

ROOT = Path(__file__).resolve().parents[1]


def _data_dir(arg):
    if arg:
        return Path(arg)
    shared = os.environ.get("SIGFLOW_SHARED_DATA")
    return Path(shared) / "mitdb" if shared else ROOT.parent / "shared" / "data" / "mitdb"


def _detectors():
    from wfdb.processing import gqrs_detect, xqrs_detect

    def xqrs(x, fs):
        return np.asarray(xqrs_detect(x, fs, verbose=False), dtype=np.int64)

    def gqrs(x, fs):
        return np.asarray(gqrs_detect(x, fs=fs), dtype=np.int64)

    return {"sigflow": lambda x, fs: detect_r_peaks(x, fs),
            "sigflow-gqrs": lambda x, fs: detect_r_peaks(x, fs, method="gqrs"),
            "wfdb-xqrs": xqrs, "wfdb-gqrs": gqrs}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder of the MIT-BIH records")
    parser.add_argument("--records", nargs="+", help="record names (default: all found)")
    parser.add_argument("--detectors", nargs="+",
                        default=["sigflow", "sigflow-gqrs", "wfdb-xqrs", "wfdb-gqrs"])
    parser.add_argument("--tolerance", type=float, default=0.15, help="seconds (default 0.15)")
    args = parser.parse_args(argv)
    folder = _data_dir(args.data)
    names = args.records or sorted(p.stem for p in folder.glob("*.hea"))
    if not names:
        sys.exit(f"no MIT-BIH records in {folder}; set SIGFLOW_SHARED_DATA or pass --data")
    detectors = {k: v for k, v in _detectors().items() if k in args.detectors}
    print(f"# {len(names)} records from {folder}; python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    totals = {k: {"tp": 0, "fn": 0, "fp": 0, "time": 0.0} for k in detectors}
    print("| record | beats | " + " | ".join(f"{k} Se / +P (FN, FP)" for k in detectors) + " |")
    print("|---|---:|" + "---:|" * len(detectors))
    for name in names:
        rec = load_record(folder / name)
        beats = np.isin(rec.ann_symbols, list(AAMI_MAP))
        ref = rec.ann_samples[beats]
        x = rec.signal[:, 0]
        cells = []
        for key, detect in detectors.items():
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                peaks = detect(x, rec.fs)
            totals[key]["time"] += time.perf_counter() - start
            acc = rpeak_accuracy(ref, peaks, rec.fs, tolerance=args.tolerance)
            for c in ("tp", "fn", "fp"):
                totals[key][c] += acc[c]
            cells.append(f"{acc['sensitivity']:.4f} / {acc['ppv']:.4f} ({acc['fn']}, {acc['fp']})")
        print(f"| {name} | {len(ref)} | " + " | ".join(cells) + " |", flush=True)
    cells = []
    for t in totals.values():
        se = t["tp"] / (t["tp"] + t["fn"])
        ppv = t["tp"] / (t["tp"] + t["fp"])
        cells.append(f"**{se:.4f} / {ppv:.4f}** ({t['fn']}, {t['fp']})")
    first = next(iter(totals.values()))
    n_ref = first["tp"] + first["fn"]
    print(f"| all | {n_ref} | " + " | ".join(cells) + " |")
    print("| time (s) | | " + " | ".join(f"{t['time']:.1f}" for t in totals.values()) + " |")


if __name__ == "__main__":
    main()
