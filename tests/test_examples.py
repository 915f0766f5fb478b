"""The scripts under examples/ run end to end (``--quick``: tiny fits, seconds each)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script, *args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="examples/ is not installed with the package")
@pytest.mark.slow
def test_ecg_anomaly_detection_example(tmp_path):
    out = _run("ecg_anomaly_detection.py", cwd=tmp_path)
    assert "AUROC" in out and "N vs V" in out
    assert (tmp_path / "ecg_scores.png").stat().st_size > 0
    assert (tmp_path / "ecg_histogram.png").stat().st_size > 0


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="examples/ is not installed with the package")
def test_ecg_anomaly_detection_example_needs_two_records(tmp_path):
    from sigflow.ecg import example_records

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "ecg_anomaly_detection.py"), "--quick",
         example_records()[0]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 2 and "give at least two records" in done.stderr


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="examples/ is not installed with the package")
@pytest.mark.slow
def test_ecg_grid_search_example(tmp_path):
    out = _run("ecg_grid_search.py", cwd=tmp_path)
    assert "2 candidates x 2 folds" in out and "best:" in out


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="examples/ is not installed with the package")
@pytest.mark.slow
def test_jko_2d_blocks_example(tmp_path):
    png = tmp_path / "blocks.png"
    out = _run("jko_2d_blocks.py", "--out", str(png), cwd=tmp_path)
    assert png.stat().st_size > 0
    assert out.count("KL gap") == 3  # the data and the two blocks
    # by default in the working folder, as the other examples write, not into examples/
    _run("jko_2d_blocks.py", cwd=tmp_path)
    assert (tmp_path / "jko_2d_blocks.png").stat().st_size > 0


@pytest.mark.shared_data
@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="examples/ is not installed with the package")
@pytest.mark.slow
def test_ucr_ecg5000_example(tmp_path, shared_data):
    out = _run("ucr_ecg5000.py", "--data", str(shared_data / "ecg5000"), cwd=tmp_path)
    assert "292 normal training beats; 4500 test beats, 1873 abnormal" in out
    assert out.count("  0.") >= 10  # an AUROC and an AP for each of the five rows


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="examples/ is not installed with the package")
@pytest.mark.slow
def test_ucr_ecg5000_example_names_missing_data(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "ucr_ecg5000.py"), "--quick", "--data", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode != 0 and "ECG5000_TRAIN.txt not found" in done.stderr
    # the UCR archive's text files are read as well as the packed test beats
    rng = np.random.default_rng(0)
    for name, n in (("ECG5000_TRAIN.txt", 60), ("ECG5000_TEST.txt", 40)):
        classes = rng.integers(1, 3, n)
        np.savetxt(tmp_path / name, np.column_stack([classes, rng.normal(size=(n, 140))]))
    out = _run("ucr_ecg5000.py", "--data", str(tmp_path), "--components", "3", cwd=tmp_path)
    assert "normal training beats; 40 test beats" in out
