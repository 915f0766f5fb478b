"""sigflow.preprocessing: the numba kernels in forked worker processes."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from sigflow.preprocessing import SpectralFeatures, WindowFeatures, welch_psd, window_features

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork start method here"
)

X = np.random.default_rng(0).normal(size=(3, 6000))


def _features(_):
    windows = np.lib.stride_tricks.sliding_window_view(X[0], 512)[::128]
    return (
        window_features(X, 256, 64),
        window_features(X, 256, 64, features=("mean", "std")),  # the blocked kernels
        welch_psd(X, nperseg=256)[1],
        WindowFeatures().fit_transform(windows),
        SpectralFeatures(fs=100.0, nperseg=128).fit_transform(windows),
    )


def test_kernels_work_in_children_forked_after_the_parent_used_them():
    # numba's OpenMP layer is not fork-safe: a child forked after the parent ran a parallel
    # kernel was terminated or hung at its first parallel region (multiprocessing pools,
    # torch DataLoader workers). Forked children now run the serial versions.
    expected = _features(None)  # the parent runs the parallel kernels first
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map_async(_features, range(2)).get(timeout=300)
    for got in results:
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
