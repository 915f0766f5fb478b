"""Regenerate sigflow's shipped synthetic ECG records.

Usage::

    python -m sigflow.ecg.synthetic --out data

writes ``synth01``, ``synth02`` and ``synth03`` (``.hea``, ``.dat``, ``.atr``)
into ``--out``. The records are determined by the fixed seeds in
``sigflow.ecg.EXAMPLE_RECORDS``, so the command reproduces the shipped files.
"""

from __future__ import annotations

import argparse

from ._synthetic import EXAMPLE_RECORDS, write_synthetic_record

__all__ = ["main"]


def main(argv=None):
    """Write the example records; returns the list of record paths."""
    parser = argparse.ArgumentParser(
        prog="python -m sigflow.ecg.synthetic",
        description="Write sigflow's synthetic example ECG records (WFDB format).",
    )
    parser.add_argument("--out", default="data", help="output folder (default: data)")
    parser.add_argument("--records", nargs="*", default=sorted(EXAMPLE_RECORDS),
                        help="which example records to write (default: all)")
    args = parser.parse_args(argv)
    paths = []
    for name in args.records:
        if name not in EXAMPLE_RECORDS:
            parser.error(f"unknown record {name!r}; choose from {sorted(EXAMPLE_RECORDS)}")
        paths.append(write_synthetic_record(name, args.out, **EXAMPLE_RECORDS[name]))
        print(paths[-1])
    return paths


if __name__ == "__main__":  # pragma: no cover
    main()
