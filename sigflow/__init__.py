"""sigflow: flow-based density estimation and anomaly detection for signals.

scikit-learn estimators backed by a torch flow core (continuous normalizing
flows trained by Local Flow Matching, flow matching or JKO-iFlow),
numba-accelerated signal preprocessing, and an ECG workflow built on wfdb.

Subpackages are imported lazily, so ``import sigflow.preprocessing`` does not
import torch.

Examples
--------
>>> import numpy as np
>>> from sigflow import FlowDensityEstimator
>>> X = np.random.default_rng(0).normal(size=(500, 2))
>>> est = FlowDensityEstimator(max_iter=50, random_state=0).fit(X)  # doctest: +SKIP
>>> est.score_samples(X[:3]).shape  # doctest: +SKIP
(3,)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0.dev0"

_LAZY = {
    "FlowDensityEstimator": "sigflow.estimators",
    "FlowAnomalyDetector": "sigflow.estimators",
}
_SUBMODULES = {"flows", "preprocessing", "ecg", "estimators", "cli"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"sigflow.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'sigflow' has no attribute {name!r}")


def __dir__():
    return __all__
