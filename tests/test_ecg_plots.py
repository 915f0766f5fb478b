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


def test_colours_split_at_the_threshold_and_survive_an_extreme_beat():
    # Limits at the 1st-99th percentiles on a linear map let one extreme beat put all the
    # others into one colour, and the same colour meant flagged in one record and not in
    # another. Colours now follow the rank on each side of the threshold.
    from sigflow.ecg import score_color_norm

    rng = np.random.default_rng(0)
    normal = np.clip(rng.normal(0.0, 1.0, 500), -3.0, 2.9)
    scores = np.r_[normal, 4.0, 6.0, 2e4, -np.inf, np.nan]
    norm = score_color_norm(scores, threshold=3.0)
    assert float(norm(3.0)) == pytest.approx(0.5)
    c = np.asarray(norm(np.sort(normal)))
    assert np.all(np.diff(c) >= 0) and c.max() < 0.5  # unflagged: the lower half, in order
    assert c[-1] - c[0] > 0.4  # the normal beats span most of it despite the 2e4 one
    assert 0.5 < float(norm(4.0)) < float(norm(6.0)) < float(norm(2e4)) <= 1.0
    # one scale for a run: a second record's beats get the colours of their scores
    other = score_color_norm(np.r_[normal, 5.0], threshold=3.0)
    assert float(other(3.0)) == 0.5 and float(other(5.0)) > 0.5
    # without a threshold the median is the middle
    assert float(score_color_norm(normal)(np.median(normal))) == pytest.approx(0.5, abs=0.01)


def test_score_histogram_spreads_the_bulk_beside_extreme_scores():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    scores = np.r_[rng.normal(0, 1, 1000), [5e4, 8e4]]
    labels = np.r_[["N"] * 1000, ["V", "V"]]
    fig = plot_score_histogram(scores, labels, threshold=3.0, bins=50)
    ax = fig.axes[0]
    n_patch = [p for p in ax.patches if p.get_label().startswith("N")][0]
    heights = n_patch.get_path().vertices[:, 1]
    assert np.count_nonzero(heights > 0.5) >= 2 * 10  # the 1000 beats fill many bins, not one
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "beats"
    plt.close(fig)


def test_plots_of_scores_near_the_largest_float_return():
    # the tick loop of the compressed axes overflowed to inf and never ended
    import matplotlib.pyplot as plt

    scores = np.array([0.0, 1.0, 2.0, 5e307, -1e308])
    sig = np.zeros(3600)
    fig = plot_scores(sig, 360.0, np.array([100, 900, 1700, 2500, 3300]), scores,
                      threshold=1.5)
    plt.close(fig)
    plt.close(plot_score_histogram(scores, threshold=1.5))


def test_a_score_near_the_largest_float_is_drawn_as_infinite(tmp_path):
    # a detector gives a row whose log-likelihood overflows the lowest float64, so its
    # anomaly score (threshold - score) is about 1.8e308: rounding the colour bar's ticks
    # overflowed, and the histogram put every beat in one bin
    import warnings

    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fs = 360.0
    samples = np.arange(1, 51) * 360
    anomaly = np.r_[rng.normal(size=49), 0.0 - np.finfo(np.float64).min]
    signal = np.sin(np.arange(52 * 360) / fs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way
        fig = plot_scores(signal, fs, samples, anomaly, threshold=0.0)
        fig.savefig(tmp_path / "scores.png")
        fig2 = plot_score_histogram(-anomaly, threshold=0.0)
        fig2.savefig(tmp_path / "hist.png")
    counts = [patch.get_height() for patch in fig2.axes[0].patches]
    assert sum(c > 0 for c in counts) > 3  # the finite scores spread over several bins
    plt.close("all")
