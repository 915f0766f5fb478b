"""Shared test configuration: reference data location and device markers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_data_dir() -> Path | None:
    """Return the reference data folder named by ``SIGFLOW_SHARED_DATA``, or None."""
    value = os.environ.get("SIGFLOW_SHARED_DATA")
    if not value:
        return None
    path = Path(value)
    return path if path.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    """The reference data folder; skips the test when it is not available."""
    path = shared_data_dir()
    if path is None:
        pytest.skip(
            "reference data not available: set SIGFLOW_SHARED_DATA to the shared data folder"
        )
    return path


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is a dependency
        has_cuda = False
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(skip_cuda)


def pytest_configure(config):
    # The suite's models are tiny: one torch thread runs it faster (88 s against 146 s on two
    # cores) and keeps it steady when other jobs share the cores, where intra-op threads
    # waiting for each other had made single tests 30 times slower. Code paths are the same.
    import torch

    torch.set_num_threads(1)
