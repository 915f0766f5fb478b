"""sigflow.ecg.example_records: packaging of the shipped records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sigflow.ecg import example_records

ROOT = Path(__file__).resolve().parents[1]


def test_example_records_from_another_directory(tmp_path):
    code = "from sigflow.ecg import example_records; print(*example_records(), sep='\\n')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    paths = out.stdout.split()
    assert [os.path.basename(p) for p in paths] == ["synth01", "synth02", "synth03"]
    for p in paths:
        for ext in (".hea", ".dat", ".atr"):
            assert os.path.isfile(p + ext)


def test_example_records_are_files():
    for p in example_records():
        assert os.path.isabs(p)


def test_every_subpackage_is_declared():
    """pyproject lists packages explicitly (for the data mapping); none may be forgotten."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "sigflow").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    missing = found - declared
    assert not missing, f"add these packages to [tool.setuptools] packages: {sorted(missing)}"
    assert config["tool"]["setuptools"]["package-dir"]["sigflow._example_data"] == "data"
