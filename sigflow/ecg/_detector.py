"""A ready-made beat anomaly detector."""

from __future__ import annotations

__all__ = ["make_beat_detector"]


def make_beat_detector(**params):
    """An unfitted detector for beat features: a robust scaler then a flow.

    Parameters
    ----------
    **params
        Parameters of :class:`sigflow.FlowAnomalyDetector` (``method``,
        ``n_blocks``, ``max_iter``, ``device``, ``random_state``, ...),
        overriding the defaults chosen here.

    Returns
    -------
    detector : sklearn.pipeline.Pipeline
        ``RobustScaler`` followed by ``FlowAnomalyDetector``; steps
        ``"scale"`` and ``"detector"`` (grid-search keys such as
        ``detector__n_blocks``). ``score_samples`` is higher for more normal
        beats; ``predict`` returns +1 (normal) or -1 (abnormal).

    Examples
    --------
    >>> from sigflow.ecg import example_records, load_beats, make_beat_detector
    >>> X, y, groups = load_beats(example_records())
    >>> det = make_beat_detector(random_state=0).fit(X[y == "N"])  # doctest: +SKIP
    >>> scores = -det.score_samples(X)  # doctest: +SKIP
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    from sigflow import FlowAnomalyDetector  # imported here: it pulls in torch

    defaults = {"contamination": "auto"}
    defaults.update(params)
    return Pipeline([("scale", RobustScaler()), ("detector", FlowAnomalyDetector(**defaults))])
