"""AAMI EC57 beat classes from WFDB annotation symbols."""

from __future__ import annotations

import numpy as np

__all__ = ["AAMI_CLASSES", "AAMI_MAP", "aami_class"]

#: The five AAMI classes, in the conventional order.
AAMI_CLASSES = ("N", "S", "V", "F", "Q")

#: WFDB beat symbol -> AAMI class, for the 19 annotation codes that WFDB counts as beats
#: (its ``isqrs``), as WFDB's own AAMI map assigns them: the 15 of MIT-BIH, and the
#: bundle branch block beat ``B`` and the supraventricular escape beat ``n`` (N), the R-on-T
#: premature ventricular contraction ``r`` (V) and the beat left unclassified while
#: learning ``?`` (Q), which other databases use. Symbols not listed are not beats.
AAMI_MAP = {
    **dict.fromkeys(("N", "L", "R", "B", "e", "j", "n"), "N"),
    **dict.fromkeys(("A", "a", "J", "S"), "S"),
    **dict.fromkeys(("V", "E", "r"), "V"),
    "F": "F",
    **dict.fromkeys(("/", "f", "Q", "?"), "Q"),
}


def aami_class(symbols):
    """Map WFDB annotation symbols (MIT-BIH's and the other beat codes) to AAMI classes.

    Parameters
    ----------
    symbols : str or array-like of str
        WFDB annotation symbols (:data:`AAMI_MAP` lists the beat codes).

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
