"""sigflow.ecg.make_beat_detector: an unfitted scikit-learn pipeline."""

from __future__ import annotations

import pytest


def test_make_beat_detector_is_an_unfitted_pipeline():
    pytest.importorskip("torch")
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted

    from sigflow.ecg import make_beat_detector

    det = make_beat_detector(n_blocks=2, random_state=3)
    assert isinstance(det, Pipeline)
    assert [name for name, _ in det.steps] == ["scale", "detector"]
    params = det.get_params()
    assert params["detector__n_blocks"] == 2
    assert params["detector__random_state"] == 3
    assert params["detector__contamination"] == "auto"
    assert type(det[-1]).__name__ == "FlowAnomalyDetector"
    with pytest.raises(NotFittedError):
        check_is_fitted(det[-1])
    assert clone(det).get_params()["detector__n_blocks"] == 2
