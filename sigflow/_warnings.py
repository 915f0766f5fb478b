"""Warnings that point at the user's line, however deep inside sigflow they are raised."""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# frames of these packages stand between the user and sigflow when an estimator runs in a
# Pipeline, GridSearchCV or cross_val_score (joblib runs the folds)
_PASS_THROUGH = ("sklearn", "joblib")


def _skipped_dirs() -> tuple[str, ...]:
    dirs = [_PACKAGE_DIR]
    for name in _PASS_THROUGH:
        module = sys.modules.get(name)  # only packages already imported can be on the stack
        if module is not None and getattr(module, "__file__", None):
            dirs.append(os.path.dirname(os.path.abspath(module.__file__)) + os.sep)
    return tuple(dirs)


def user_stacklevel() -> int:
    """The ``stacklevel`` for :func:`warnings.warn` that names the user's line: the first
    caller outside sigflow, scikit-learn and joblib (the outermost frame if there is none,
    as in a joblib worker process).

    Call it in the ``warnings.warn`` call itself. A fixed level is right for one call path
    only: a warning of :func:`sigflow.ecg.load_record` read through ``load_beats`` pointed at
    sigflow's own code, and an estimator's warning in a ``Pipeline`` at scikit-learn's.
    """
    skipped = _skipped_dirs()
    frame = sys._getframe(1)  # the function that warns
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        skipped
    ):
        frame = frame.f_back
        level += 1
    return level
