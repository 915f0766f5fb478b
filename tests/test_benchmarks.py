"""The benchmark scripts run (``--quick``: small sizes, seconds each), so that a change in
the library does not leave one broken until the next measurement. ``gpu_check.py`` above
all: it runs on a lent CUDA machine with minutes of device time, where a crash would waste
them; without CUDA it runs its CPU part (the fits, the scoring rates, the pickle loaded in
a process with CUDA hidden) and says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.skipif(not BENCHMARKS.is_dir(),
                                reason="benchmarks/ is not installed with the package")


def _run(script, *args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_gpu_check_runs_its_cpu_part(tmp_path):
    import torch

    out = _run("gpu_check.py", "--quick", cwd=tmp_path)
    assert "| d | CPU fit (s) |" in out
    for d in (2, 8, 32):
        assert f"\n| {d} | " in out
    if not torch.cuda.is_available():
        assert "CUDA is not available: only the CPU part ran" in out


@pytest.mark.slow
@pytest.mark.parametrize("script, peer", [("preprocessing.py", None),
                                          ("flow_matching.py", "torchcfm"),
                                          ("training_step.py", None)])
def test_benchmark_runs(script, peer, tmp_path):
    if peer is not None:  # the benchmark peers come with the dev extra
        pytest.importorskip(peer, reason=f"{script} compares with {peer}: pip install -e '.[dev]'")
    out = _run(script, "--quick", cwd=tmp_path)
    assert out.strip()
    assert not list(tmp_path.iterdir())  # prints its table, writes nothing
