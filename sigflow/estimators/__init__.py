"""scikit-learn estimators on the flow core."""

from ._anomaly import FlowAnomalyDetector
from ._base import cv_bandwidth, loo_log_likelihood
from ._density import FlowDensityEstimator

__all__ = ["FlowAnomalyDetector", "FlowDensityEstimator", "cv_bandwidth", "loo_log_likelihood"]
