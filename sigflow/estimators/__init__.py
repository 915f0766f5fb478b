"""scikit-learn estimators on the flow core."""

from ._anomaly import CalibrationWarning, FlowAnomalyDetector
from ._base import cv_bandwidth, loo_log_likelihood
from ._density import FlowDensityEstimator

__all__ = [
    "CalibrationWarning",
    "FlowAnomalyDetector",
    "FlowDensityEstimator",
    "cv_bandwidth",
    "loo_log_likelihood",
]
