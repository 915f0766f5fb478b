"""Warnings that point at the user's line, however deep inside sigflow they are raised."""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` for :func:`warnings.warn` that names the first caller outside sigflow.

    Call it in the ``warnings.warn`` call itself. A fixed level is right for one call path
    only: a warning of :func:`sigflow.ecg.load_record` read through ``load_beats`` pointed at
    sigflow's own code.
    """
    frame = sys._getframe(1)  # the function that warns
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level
