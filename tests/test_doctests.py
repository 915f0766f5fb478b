"""The examples in the docstrings run and show what they say they show.

Every module whose examples take seconds is run here, so a change that makes an example
wrong fails the suite. The two estimators' class examples fit default models (minutes in
all); run them with ``pytest --doctest-modules sigflow/estimators``.
"""

from __future__ import annotations

import doctest
import importlib
import io

import pytest

FAST_MODULES = [
    "sigflow",
    "sigflow.flows._diagnostics",
    "sigflow.flows._divergence",
    "sigflow.flows._flow",
    "sigflow.flows._jko",
    "sigflow.flows._ode",
    "sigflow.flows._training",
    "sigflow.flows._velocity",
    "sigflow.preprocessing",
    "sigflow.preprocessing._filters",
    "sigflow.preprocessing._spectral",
    "sigflow.preprocessing._welch",
    "sigflow.preprocessing._window_features",
    "sigflow.preprocessing._windows",
    "sigflow.ecg",
    "sigflow.ecg._aami",
    "sigflow.ecg._beats",
    "sigflow.ecg._detector",
    "sigflow.ecg._example_data",
    "sigflow.ecg._filters",
    "sigflow.ecg._plots",
    "sigflow.ecg._record",
    "sigflow.ecg._rpeaks",
    "sigflow.ecg._synthetic",
    "sigflow.estimators._base",
]


@pytest.mark.parametrize("name", FAST_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=report.write)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, report.getvalue()
