"""scikit-learn estimators on the flow core."""

from ._anomaly import FlowAnomalyDetector
from ._density import FlowDensityEstimator

__all__ = ["FlowAnomalyDetector", "FlowDensityEstimator"]
