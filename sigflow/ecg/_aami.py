"""AAMI EC57 beat classes from MIT-BIH annotation symbols."""

from __future__ import annotations

import numpy as np

__all__ = ["AAMI_CLASSES", "AAMI_MAP", "aami_class"]

#: The five AAMI classes, in the conventional order.
AAMI_CLASSES = ("N", "S", "V", "F", "Q")

#: MIT-BIH beat symbol -> AAMI class. Symbols not listed are not beats.
AAMI_MAP = {
    **dict.fromkeys(("N", "L", "R", "e", "j"), "N"),
    **dict.fromkeys(("A", "a", "J", "S"), "S"),
    **dict.fromkeys(("V", "E"), "V"),
    "F": "F",
    **dict.fromkeys(("/", "f", "Q"), "Q"),
}


def aami_class(symbols):
    """Map MIT-BIH annotation symbols to AAMI classes.

    Parameters
    ----------
    symbols : str or array-like of str
        MIT-BIH annotation symbols.

    Returns
    -------
    classes : str or ndarray of str
        ``"N"``, ``"S"``, ``"V"``, ``"F"`` or ``"Q"`` for beat symbols and
        ``""`` for non-beat symbols (rhythm changes ``+``, noise ``~``,
        artefacts ``|``, ...). A scalar in, a scalar out.

    Examples
    --------
    >>> from sigflow.ecg import aami_class
    >>> aami_class(["N", "A", "V", "+", "/"]).tolist()
    ['N', 'S', 'V', '', 'Q']
    >>> aami_class("L")
    'N'
    """
    if isinstance(symbols, str):
        return AAMI_MAP.get(symbols, "")
    out = [AAMI_MAP.get(str(s), "") for s in np.asarray(symbols, dtype=object).ravel()]
    return np.asarray(out, dtype="<U1")
