"""sigflow detect: what --normal-only trains on, CSV times, the summary and the PNG colours."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest

from sigflow.ecg import example_records, load_record, segment_beats


# ---------------- CLI
def test_normal_only_fits_on_n_beats_and_keeps_the_refinement(tmp_path, monkeypatch):
    import sigflow.ecg
    from sigflow.cli import run_detection
    from sigflow.ecg import load_beats

    seen = {}
    real = sigflow.ecg.make_beat_detector

    def spy(**params):
        seen.update(params)
        params["finetune_iter"] = 0
        return real(**params)

    monkeypatch.setattr(sigflow.ecg, "make_beat_detector", spy)
    recs = example_records()[:1]
    run = run_detection(recs, normal_only=True, out=tmp_path, plot=False, quiet=True,
                        max_iter=2, stream=io.StringIO())
    assert "finetune_iter" not in seen  # the detector's default refinement
    X, y, _ = load_beats(recs)
    np.testing.assert_allclose(run["detector"][0].center_, np.median(X[y == "N"], axis=0))


def test_csv_time_is_sample_over_fs(tmp_path):
    import csv

    from sigflow.cli import run_detection

    run_detection(example_records()[:1], out=tmp_path, plot=False, quiet=True, max_iter=2,
                  stream=io.StringIO())
    with open(next(tmp_path.glob("*.csv")), newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        assert abs(float(r["time_s"]) - int(r["sample"]) / 360.0) <= 5e-4


def test_summary_per_class_auroc_is_against_n_only():
    from sigflow.cli import _summary

    labels = np.array(["N"] * 5 + ["S"] * 2 + ["V"] * 2)
    score = np.array([0, 1, 2, 3, 4, -1, -2, -9, -8.0])  # V most abnormal, then S
    out = io.StringIO()
    _summary([{"beats": SimpleNamespace(labels=labels), "score": score,
               "flag": score < -5}], out)
    assert "AUROC N vs S 1.000" in out.getvalue() and "AUROC N vs V 1.000" in out.getvalue()


def test_plot_colours_are_threshold_minus_score():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sigflow.cli import _plot_figure

    rec = load_record(example_records()[0])
    beats = segment_beats(rec)
    score = np.linspace(-3, 3, len(beats))
    fig = _plot_figure(rec, beats, score, 1.0)
    col = fig.axes[0].collections[0]
    np.testing.assert_allclose(np.asarray(col.get_array()), 1.0 - score)
    plt.close(fig)


def test_summary_notes_six_percent_false_alarms():
    from sigflow.cli import _summary

    labels = np.array(["N"] * 100 + ["V"] * 10)
    score = np.r_[np.linspace(-10, 0, 100), np.full(10, -50.0)]
    flag = np.r_[np.arange(100) < 6, np.ones(10, bool)].astype(int)
    out = io.StringIO()
    _summary([{"beats": SimpleNamespace(labels=labels), "score": score, "flag": flag}], out)
    assert "note: 6 % of the normal beats are flagged" in out.getvalue()


