"""Warnings that point at the user's line, however deep inside sigflow they are raised."""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# frames of these packages stand between the user and sigflow when an estimator runs in a
# Pipeline, GridSearchCV or cross_val_score (joblib runs the folds, in worker processes or
# threads of the standard library's pools)
_PASS_THROUGH = ("sklearn", "joblib")
_STDLIB_POOLS = ("multiprocessing", "concurrent.futures", "threading")


def _skipped_dirs() -> tuple[str, ...]:
    dirs = [_PACKAGE_DIR]
    for name in _PASS_THROUGH:
        module = sys.modules.get(name)  # only packages already imported can be on the stack
        if module is not None and getattr(module, "__file__", None):
            dirs.append(os.path.dirname(os.path.abspath(module.__file__)) + os.sep)
    for name in _STDLIB_POOLS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            path = os.path.abspath(module.__file__)  # a package's folder, or threading.py
            dirs.append(os.path.dirname(path) + os.sep if path.endswith("__init__.py")
                        else path)
    return tuple(dirs)


def user_stacklevel() -> int:
    """The ``stacklevel`` for :func:`warnings.warn` that names the user's line: the first
    caller outside sigflow, scikit-learn, joblib and the standard library's process and
    thread pools; where there is none (a joblib worker runs the fit), the first caller
    outside sigflow (scikit-learn's line that called it).

    Call it in the ``warnings.warn`` call itself. A fixed level is right for one call path
    only: a warning of :func:`sigflow.ecg.load_record` read through ``load_beats`` pointed at
    sigflow's own code, and an estimator's warning in a ``Pipeline`` at scikit-learn's.
    """
    skipped = _skipped_dirs()
    frame = sys._getframe(1)  # the function that warns
    level, outside_sigflow = 1, None
    while frame is not None:
        name = frame.f_code.co_filename
        path = os.path.abspath(name)
        # "<frozen runpy>" and the like start a worker process: no user's line
        if not (name.startswith("<frozen") or path.startswith(skipped)):
            return level
        if outside_sigflow is None and not path.startswith(_PACKAGE_DIR):
            outside_sigflow = level
        frame = frame.f_back
        level += 1
    return outside_sigflow if outside_sigflow is not None else 1
