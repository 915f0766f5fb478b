"""sigflow.ecg: plots return matplotlib Figures (Agg backend)."""

from __future__ import annotations

import numpy as np
import pytest

from sigflow.ecg import load_record, make_synthetic_ecg, plot_score_histogram, plot_scores

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


@pytest.fixture
def record():
    from sigflow.ecg import example_records

    return load_record(example_records()[0])


def test_plot_scores(record, tmp_path):
    from matplotlib.figure import Figure

    from sigflow.ecg import aami_class

    n = len(record.ann_samples)
    scores = (record.ann_symbols != "N").astype(float) + np.linspace(0, 0.1, n)
    fig = plot_scores(record.signal[:, 0], record.fs, record.ann_samples, scores, threshold=0.5,
                      labels=aami_class(record.ann_symbols), start=10, duration=20, lead="MLII",
                      title="synth01")
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "trace.png")
    assert (tmp_path / "trace.png").stat().st_size > 1000
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_plot_scores_length_mismatch(record):
    with pytest.raises(ValueError, match="length"):
        plot_scores(record.signal[:, 0], record.fs, record.ann_samples, [0.0, 1.0])


@pytest.mark.parametrize("with_labels", [True, False])
def test_plot_score_histogram(with_labels):
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0, 1, 300), rng.normal(4, 1, 30), [np.inf]]
    labels = np.r_[["N"] * 300, ["V"] * 30, ["N"]] if with_labels else None
    fig = plot_score_histogram(scores, labels, threshold=2.0, title="scores")
    assert isinstance(fig, Figure)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_plot_scores_units(record):
    import matplotlib.pyplot as plt

    x, fs, s = record.signal[:, 0], record.fs, record.ann_samples
    scores = np.zeros(len(s))
    fig = plot_scores(x, fs, s, scores, lead="ECG")
    assert fig.axes[0].get_ylabel() == "ECG (mV)"  # the default stays mV
    plt.close(fig)
    fig = plot_scores(x * 1000, fs, s, scores, lead="ECG", units="uV")
    assert fig.axes[0].get_ylabel() == "ECG (uV)"
    plt.close(fig)
    fig = plot_scores(x, fs, s, scores, lead="ECG", units=None)
    assert fig.axes[0].get_ylabel() == "ECG"
    plt.close(fig)


def test_plot_scores_names_its_scores():
    sig, fs, ann = make_synthetic_ecg(duration=10, random_state=0)
    fig = plot_scores(sig, fs, ann["sample"], np.zeros(len(ann["sample"])),
                      score_label="threshold - log-likelihood")
    assert fig.axes[1].get_ylabel() == "threshold - log-likelihood"
    assert fig.axes[-1].get_ylabel() == "threshold - log-likelihood"  # the colour bar


def test_plot_scores_refuses_a_start_beyond_the_signal():
    sig, fs, ann = make_synthetic_ecg(duration=10, random_state=0)
    with pytest.raises(ValueError, match="beyond the signal"):
        plot_scores(sig, fs, ann["sample"], np.zeros(len(ann["sample"])), start=10.0)
