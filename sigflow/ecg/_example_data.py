"""Locate the synthetic example records shipped with sigflow."""

from __future__ import annotations

from pathlib import Path

__all__ = ["example_records"]


def _data_dir() -> Path:
    try:
        from importlib.resources import files

        folder = Path(str(files("sigflow._example_data")))
        if folder.is_dir():
            return folder
    except ModuleNotFoundError:
        pass
    # A source checkout run without installing (the folder is mapped at install time).
    folder = Path(__file__).resolve().parents[2] / "data"
    if folder.is_dir():
        return folder
    raise FileNotFoundError(
        "sigflow's example ECG records were not found; reinstall sigflow, or regenerate them "
        "with `python -m sigflow.ecg.synthetic --out data`"
    )


def example_records():
    """Paths of the synthetic example ECG records shipped with sigflow.

    Three 150-second single-lead (``MLII``) records at 360 Hz made by
    :func:`make_synthetic_ecg`, with MIT-BIH beat annotations (``N``,
    supraventricular premature ``A`` and ventricular ``V`` beats). They
    work from any working directory and from a regular (non-editable)
    install.

    Returns
    -------
    paths : list of str
        Record paths without extension, ready for :func:`load_record`,
        :func:`load_beats` or :func:`wfdb.rdrecord`.

    Examples
    --------
    >>> from sigflow.ecg import example_records
    >>> [p.rsplit("/", 1)[-1].rsplit("\\\\", 1)[-1] for p in example_records()]
    ['synth01', 'synth02', 'synth03']
    """
    folder = _data_dir()
    names = sorted(p.stem for p in folder.glob("*.hea"))
    return [str(folder / name) for name in names]
