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


def _readme_block(heading):
    """The first Python block of the README section ``heading`` (a ``## `` line's text)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("heading", [
    "Preprocessing (numba, no torch)",
    pytest.param("ECG: from WFDB records to flagged heartbeats", marks=pytest.mark.slow),
    "The torch core (`sigflow.flows`)",
])
def test_readme_examples_run(heading, tmp_path, monkeypatch):
    # the README's own code must run as written (the density and anomaly sections fit
    # default models for minutes; their numbers are measured in benchmarks/RESULTS.md)
    import warnings

    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor may it warn, where a user would read alarm
        exec(compile(_readme_block(heading), f"README.md: {heading}", "exec"), {})
    if heading.startswith("ECG"):
        assert (tmp_path / "beats.png").stat().st_size > 0
