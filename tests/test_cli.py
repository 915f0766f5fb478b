"""The ``sigflow`` command line, end to end on the shipped synthetic records."""

from __future__ import annotations

import contextlib
import csv
import io
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from sigflow.cli import CSV_COLUMNS, _record_part, main, run_detection
from sigflow.ecg import example_records, load_record, segment_beats


def test_help_explains_both_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "detect" in out and "demo" in out and "RECORD.csv" in out


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "sigflow.cli", "detect", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--train" in result.stdout and "--out" in result.stdout


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_detect_writes_a_csv_and_png_per_record(tmp_path, capsys):
    records = example_records()[:2]
    code = main(
        [
            "detect",
            *records,
            "--out",
            str(tmp_path),
            "--max-iter",
            "40",
            "--finetune-iter",
            "20",
            "-q",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "AUROC" in out
    for record in records:
        name = record.replace("\\", "/").rsplit("/", 1)[-1]
        rows = _read(tmp_path / f"{name}.csv")
        assert tuple(rows[0].keys()) == CSV_COLUMNS
        beats = segment_beats(record)
        assert len(rows) == len(beats)
        np.testing.assert_array_equal([int(r["sample"]) for r in rows], beats.samples)
        assert [r["label"] for r in rows] == beats.labels.tolist()
        p = np.array([float(r["pvalue"]) for r in rows])
        assert np.all((p > 0) & (p <= 1))
        flags = np.array([int(r["flag"]) for r in rows])
        assert set(np.unique(flags)) <= {0, 1}
        threshold = {float(r["threshold"]) for r in rows}
        assert len(threshold) == 1  # the detector's one threshold, on every row
        scores = np.array([float(r["score"]) for r in rows])
        thr = threshold.pop()
        clear = np.abs(scores - thr) > 1e-4 * abs(thr)  # both written with 6 digits
        np.testing.assert_array_equal(flags[clear], scores[clear] < thr)
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detect_with_training_records_normal_only(tmp_path):
    train, test = example_records()[:2], example_records()[2]
    code = main(
        [
            "detect",
            test,
            "--train",
            *train,
            "--normal-only",
            "--out",
            str(tmp_path),
            "--max-iter",
            "40",
            "--finetune-iter",
            "0",
            "--no-plot",
            "-q",
        ]
    )
    assert code == 0
    name = test.replace("\\", "/").rsplit("/", 1)[-1]
    assert (tmp_path / f"{name}.csv").exists()
    assert not (tmp_path / f"{name}.png").exists()


def test_demo_runs_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--max-iter", "40", "--finetune-iter", "0", "--no-plot", "-q"]) == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "average precision" in out
    assert len(list((tmp_path / "sigflow-out").glob("*.csv"))) == len(example_records())


def test_missing_record_is_a_clear_error(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "nope"), "--out", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err
    assert "sigflow: error:" in err and "nope" in err


def test_records_with_the_same_name_are_refused_before_any_work(tmp_path, capsys):
    record = example_records()[0]
    out = tmp_path / "out"
    assert main(["detect", record, record, "--out", str(out), "-q", "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert "same name would write the same files" in err and "synth01" in err
    assert not out.exists()


def test_an_earlier_runs_files_are_not_replaced_without_overwrite(tmp_path, capsys):
    # Results of an earlier run (a CSV someone has annotated, say) must not be lost to a
    # second run into the same folder: it stops before reading the records and names the
    # files; a run owns both files of a record, so with --no-plot an earlier PNG counts too.
    record = example_records()[0]
    name = record.replace("\\", "/").rsplit("/", 1)[-1]
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{name}.png").write_bytes(b"earlier plot")
    argv = ["detect", record, "--out", str(out), "--max-iter", "2", "-q"]
    for extra in ([], ["--no-plot"]):
        assert main([*argv, *extra]) == 1
        err = capsys.readouterr().err
        assert f"{out / name}.png exist from an earlier run" in err and "--overwrite" in err
        assert sorted(p.name for p in out.iterdir()) == [f"{name}.png"]  # nothing written
    # --overwrite without a plot: the new CSV, and no earlier PNG left to disagree with it
    assert main([*argv, "--no-plot", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{name}.csv"]
    csv_before = (out / f"{name}.csv").read_bytes()
    (out / f"{name}.csv").write_bytes(b"edited")
    assert main([*argv, "--no-plot"]) == 1
    assert f"{out / name}.csv exist" in capsys.readouterr().err
    assert (out / f"{name}.csv").read_bytes() == b"edited"
    assert main([*argv, "--no-plot", "--overwrite"]) == 0
    assert (out / f"{name}.csv").read_bytes() == csv_before
    (out / f"{name}.png").write_bytes(b"earlier plot")
    with pytest.raises(FileExistsError, match="and 1 more exist"):
        run_detection([record], out=out, max_iter=2, quiet=True, stream=io.StringIO())
    # both checks come before any record is read, a missing record first: its name (the
    # last part of the path) says nothing about whether it exists
    (out / "missing.csv").write_bytes(b"earlier")
    with pytest.raises(FileNotFoundError, match="missing.hea"):
        run_detection([record, str(tmp_path / "missing")], out=out, quiet=True)


def test_refinement_runs_only_on_known_normal_training_beats(tmp_path):
    # unlabelled training beats include abnormal ones, which a likelihood refinement would
    # learn too: the command line leaves it out unless the training beats are known normal
    record = example_records()[:1]
    common = dict(out=tmp_path, plot=False, quiet=True, max_iter=5, stream=io.StringIO())
    unsupervised = run_detection(record, **common)["detector"][-1]
    assert unsupervised.finetune_iter == 0 and unsupervised.finetune_stats_ is None
    explicit = run_detection(record, finetune_iter=3, overwrite=True, **common)["detector"][-1]
    assert explicit.finetune_iter == 3 and explicit.finetune_stats_["n_iter"] <= 3


# --- records without beats, multi-segment records, plot channel, option checks --------------

_FAST = ["--max-iter", "2", "--finetune-iter", "0", "--no-plot", "-q"]


def _write_record(folder, name, signal, fs=360.0, *, leads=None, units=None, ann=None):
    """A real WFDB record written with wfdb (``ann``: samples and symbols for ``.atr``)."""
    import warnings

    signal = np.asarray(signal, dtype=np.float64).reshape(len(signal), -1)
    n = signal.shape[1]
    with warnings.catch_warnings():  # wfdb's own pandas deprecation warnings
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")
        import wfdb

        wfdb.wrsamp(name, fs=fs, units=units or ["mV"] * n, sig_name=leads or ["MLII"] * n,
                    p_signal=signal, fmt=["16"] * n, adc_gain=[200.0] * n, baseline=[0] * n,
                    write_dir=str(folder))
        if ann is not None:
            wfdb.wrann(name, "atr", np.asarray(ann[0]), symbol=list(ann[1]),
                       write_dir=str(folder))
    return str(folder / name)


def _ecg(duration=40, seed=0):
    from sigflow.ecg import make_synthetic_ecg

    return make_synthetic_ecg(duration=duration, v_rate=0.1, random_state=seed)


@pytest.mark.parametrize("lead", ["zeros", "annotated zeros", "nan"])
def test_a_record_without_beats_is_skipped(tmp_path, capsys, lead):
    sig, fs, ann = _ecg()
    good = _write_record(tmp_path, "good", sig, fs, ann=(ann["sample"], ann["symbol"]))
    if lead == "zeros":
        flat = _write_record(tmp_path, "flat", np.zeros(int(10 * fs)), fs)
    else:  # annotated, and the lead flat or all invalid (WFDB's gaps): the annotations
        # must not make beats of it, which would join the fit and its calibration
        value = 0.0 if lead == "annotated zeros" else np.nan
        flat = _write_record(tmp_path, "flat", np.full(len(sig), value), fs,
                             ann=(ann["sample"], ann["symbol"]))
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["detect", good, flat, "--out", str(out), *_FAST]) == 0
    why = {"nan": "holds no finite sample", "annotated zeros": "is flat"}.get(lead, "is flat")
    assert any(f"lead MLII {why}" in str(w.message) for w in caught)
    stdout = capsys.readouterr().out
    assert "skipping record flat" in stdout and "no beats found" in stdout
    assert "from 1 record(s)" in stdout
    assert (out / "good.csv").exists() and not (out / "flat.csv").exists()
    assert len(_read(out / "good.csv")) == len(ann["sample"])


def test_no_beats_at_all_is_a_clear_error(tmp_path, capsys):
    sig, fs, _ = _ecg(20)
    good = _write_record(tmp_path, "good", sig, fs)
    flat1 = _write_record(tmp_path, "flat1", np.zeros(int(10 * fs)), fs)
    flat2 = _write_record(tmp_path, "flat2", np.full(int(10 * fs), 1.5), fs)
    assert main(["detect", flat1, flat2, "--out", str(tmp_path / "o1"), *_FAST]) == 1
    err = capsys.readouterr().err
    assert "no beats found in any record to score: flat1, flat2" in err
    assert "Traceback" not in err and not (tmp_path / "o1").exists()
    assert main(["detect", good, "--train", flat1, "--out", str(tmp_path / "o2"), *_FAST]) == 1
    err = capsys.readouterr().err
    assert "no training beats found in the records: flat1" in err


def test_an_empty_output_folder_name_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["detect", example_records()[0], "--out", "", *_FAST]) == 1
    assert "output folder (--out) must not be empty" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_training_records_given_twice_are_refused(tmp_path, capsys):
    record = example_records()[0]
    out = tmp_path / "out"
    argv = ["detect", example_records()[1], "--train", record, record, "--out", str(out)]
    assert main([*argv, *_FAST]) == 1
    err = capsys.readouterr().err
    assert "training records given twice (by record name): synth01" in err
    assert not out.exists()


def test_a_named_lead_must_exist_and_the_default_falls_back(tmp_path, capsys):
    sig, fs, ann = _ecg()
    v5 = _write_record(tmp_path, "v5", sig, fs, leads=["V5"], ann=(ann["sample"], ann["symbol"]))
    for lead in ("V1", "7"):  # by name and by index
        assert main(["detect", v5, "--lead", lead, "--out", str(tmp_path / "o"), *_FAST]) == 1
        err = capsys.readouterr().err
        assert f"record v5 ({v5}) has no lead '{lead}'; its leads: V5 (--lead)" in err
    assert not (tmp_path / "o").exists()
    with pytest.warns(UserWarning, match="has no lead 'MLII'.*using channel 0 \\(V5\\)"):
        assert main(["detect", v5, "--out", str(tmp_path / "o"), *_FAST]) == 0
    assert main(["detect", v5, "--lead", "0", "--out", str(tmp_path / "o"), "--overwrite",
                 *_FAST]) == 0


def test_detect_reads_a_multi_segment_record(tmp_path, capsys):
    sig, fs, ann = _ecg()
    half = len(sig) // 2
    _write_record(tmp_path, "seg0", sig[:half], fs)
    _write_record(tmp_path, "seg1", sig[half:], fs)
    (tmp_path / "multi.hea").write_text(
        f"multi/2 1 {fs:g} {len(sig)}\nseg0 {half}\nseg1 {len(sig) - half}\n"
    )
    out = tmp_path / "out"
    assert main(["detect", str(tmp_path / "multi"), "--out", str(out), *_FAST]) == 0
    rows = _read(out / "multi.csv")
    assert abs(len(rows) - len(ann["sample"])) <= 1  # detected: no annotation file
    capsys.readouterr()
    # a multi-segment record that cannot be read is a one-line error, not a traceback
    (tmp_path / "bad.hea").write_text(f"bad/2 1 {fs:g} {2 * half}\nseg0 {half}\nnope {half}\n")
    assert main(["detect", str(tmp_path / "bad"), "--out", str(out), *_FAST]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sigflow: error:") and "nope.hea" in err and "Traceback" not in err


def test_plot_draws_the_channel_of_the_beats_in_its_units():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import dataclasses

    import matplotlib.pyplot as plt

    from sigflow.cli import _plot_figure
    from sigflow.ecg import load_record

    rec = load_record(example_records()[0])
    # two channels with the same name, in microvolts; the second is the one analysed
    signal = np.column_stack([np.zeros(rec.n_samples), rec.signal[:, 0] * 1000])
    rec = dataclasses.replace(rec, signal=signal, leads=["ECG", "ECG"], units=["uV", "uV"])
    beats = segment_beats(rec, lead="1")
    assert beats.channel == 1
    score = np.zeros(len(beats))
    fig = _plot_figure(rec, beats, score, 1.0)
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), rec.signal[:, 1])
    assert fig.axes[0].get_ylabel() == "ECG (uV)"
    plt.close(fig)


def test_out_pointing_at_a_file_is_a_one_line_error(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("")
    assert main(["detect", example_records()[0], "--out", str(target), *_FAST]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is an existing file, not a folder" in err
    assert str(target) in err


@pytest.mark.parametrize(
    "option, value, match",
    [("--max-iter", "0", "positive integer"), ("--max-iter", "-5", "positive integer"),
     ("--max-iter", "abc", "not an integer"), ("--finetune-iter", "-1", "integer >= 0"),
     ("--seed", "-1", "0 to 2\\*\\*32 - 1"), ("--seed", str(2**32), "0 to 2\\*\\*32 - 1")],
)
def test_bad_numbers_are_refused_before_reading_records(tmp_path, capsys, option, value, match):
    # the record does not exist: the option is checked first
    with pytest.raises(SystemExit) as exc:
        main(["detect", str(tmp_path / "nope"), option, value, "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err
    import re

    assert re.search(match, err) and "nope" not in err


def test_device_help_shows_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "'cpu' or 'cuda' (default: auto)" in out


def test_summary_leaves_q_beats_out_as_aami_does():

    from sigflow.cli import _summary

    labels = np.array(["N"] * 6 + ["V"] * 2 + ["Q"] * 3)
    score = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, -5.0, -6.0, -9.0, 9.0, -9.0])
    flag = score < -1
    results = [{"beats": SimpleNamespace(labels=labels), "score": score, "flag": flag}]
    out = io.StringIO()
    got = _summary(results, out)
    assert got["auroc"] == 1.0 and got["average_precision"] == 1.0  # Q would spoil both
    text = out.getvalue()
    assert "3 Q beats left out" in text
    assert "flagged 0 of 6 normal and 2 of 2 abnormal beats" in text


def test_summary_notes_a_threshold_that_does_not_carry_over():

    from sigflow.cli import _summary

    labels = np.array(["N"] * 90 + ["V"] * 10)
    score = np.r_[np.linspace(-10, 0, 90), np.full(10, -50.0)]
    stream = io.StringIO()
    for n_flagged, noted in ((4, False), (9, True)):  # of 90 normal beats: 4.4 %, 10 %
        flag = np.r_[np.arange(90) < n_flagged, np.ones(10, bool)].astype(int)
        result = {"beats": SimpleNamespace(labels=labels), "score": score, "flag": flag}
        stream.seek(0), stream.truncate()
        _summary([result], stream)
        assert ("note: 10 % of the normal beats are flagged" in stream.getvalue()) == noted


def test_plot_span_options(tmp_path):
    record = example_records()[0]
    code = main(["detect", record, "--out", str(tmp_path), "--max-iter", "20",
                 "--plot-start", "10", "--plot-duration", "5", "-q"])
    assert code == 0
    name = record.replace("\\", "/").rsplit("/", 1)[-1]
    assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # beyond every record: an error before the fit (it had come after the fit and the
    # scores, as a message and no PNG)
    code = main(["detect", record, "--out", str(tmp_path / "late"), "--max-iter", "20",
                 "--plot-start", "150", "-q"])  # the record lasts 150 s
    assert code == 1
    assert not (tmp_path / "late").exists()
    # beyond some records only: theirs get no PNG, with a message, the others theirs
    from sigflow.cli import _plot

    short = load_record(record).part(0, 36000)  # the first 100 s of the record
    beats = SimpleNamespace(record="short", times=np.zeros(0))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert _plot(short, beats, np.zeros(0), 0.0, tmp_path, start=120.0) is None
    assert "short: no PNG, --plot-start 120 s is outside the record (0 s to 100 s)" in (
        stderr.getvalue())
    for bad in (["--plot-duration", "0"], ["--plot-start", "-1"], ["--plot-duration", "nan"]):
        with pytest.raises(SystemExit):
            main(["detect", record, "--out", str(tmp_path), *bad])


def test_the_default_plot_span_is_a_minute_around_the_most_abnormal_beat():
    # Half an hour of MIT-BIH in one figure was a solid block of trace: the PNG now shows
    # PLOT_SPAN_S seconds centred on the beat with the highest anomaly score.
    import math

    from sigflow.cli import PLOT_SPAN_S, _plot_duration, _plot_span

    times = np.arange(0.5, 1800.0, 0.8)
    anomaly = np.zeros(len(times))
    anomaly[1000] = 50.0  # at 800.5 s
    assert _plot_span(1800.0, times, anomaly, None, None) == (800.5 - PLOT_SPAN_S / 2,
                                                             PLOT_SPAN_S)
    anomaly[1000], anomaly[2] = 0.0, np.inf  # a beat without density is the top one...
    assert _plot_span(1800.0, times, anomaly, None, None) == (0.0, PLOT_SPAN_S)  # ...clamped
    anomaly[2], anomaly[-1] = 0.0, 9.0
    assert _plot_span(1800.0, times, anomaly, None, 100.0) == (1700.0, 100.0)
    assert _plot_span(1800.0, times, anomaly, 12.0, None) == (12.0, PLOT_SPAN_S)  # as asked
    assert _plot_span(40.0, times[:50], anomaly[:50], None, None) == (0.0, PLOT_SPAN_S)
    assert _plot_span(1800.0, times, anomaly, None, _plot_duration("all")) == (0.0, None)
    assert math.isinf(_plot_duration("ALL")) and _plot_duration("5") == 5.0


def test_detection_pvalues_are_the_detectors(tmp_path):
    run = run_detection(example_records()[:1], out=tmp_path, max_iter=20, plot=False,
                        quiet=True, stream=io.StringIO())
    det, result = run["detector"], run["results"][0]
    X = det[:-1].transform(result["beats"].features)
    np.testing.assert_array_equal(result["pvalue"], det[-1].score_pvalues(X))
    np.testing.assert_array_equal(result["score"], det[-1].score_samples(X))


def test_r_peaks_option_detects_the_beats_of_unannotated_records(tmp_path):
    from sigflow.ecg import make_synthetic_ecg

    # noisy enough that the two detectors disagree on some beats
    sig, fs, _ = make_synthetic_ecg(duration=40, noise=0.3, v_rate=0.1, random_state=0)
    path = _write_record(tmp_path, "noisy", sig, fs)  # no annotations: detected beats
    common = dict(plot=False, quiet=True, max_iter=2, stream=io.StringIO())
    runs = {m: run_detection([path], out=tmp_path / m, r_peaks=m, **common)
            for m in ("pan_tompkins", "gqrs")}
    record = load_record(path)
    for method, run in runs.items():
        expected = segment_beats(record, detector=method).samples
        np.testing.assert_array_equal(run["results"][0]["beats"].samples, expected)
    assert len(runs["gqrs"]["results"][0]["beats"]) != len(runs["pan_tompkins"]["results"][0]
                                                           ["beats"])
    with pytest.raises(SystemExit):
        main(["detect", path, "--r-peaks", "nope"])


def test_the_command_shows_warnings_as_one_line_each(tmp_path):
    # Python's format named scikit-learn's pipeline.py and printed its source line for the
    # detector's own warning; the script prints "sigflow: warning: ..." instead.
    result = subprocess.run(
        [sys.executable, "-m", "sigflow.cli", "detect", example_records()[0], "--out",
         str(tmp_path), "--max-iter", "2", "--no-plot", "-q"],
        capture_output=True, text=True, check=True,
    )
    assert "sigflow: warning: contamination='auto' is calibrated on only" in result.stderr
    assert "pipeline.py" not in result.stderr and "UserWarning" not in result.stderr


def test_r_peaks_choices_are_the_detectors_methods():
    # spelt twice so that `sigflow --help` does not import sigflow.ecg (and numba)
    from sigflow.cli import _R_PEAK_METHODS
    from sigflow.ecg._rpeaks import METHODS

    assert _R_PEAK_METHODS == METHODS


def test_beat_labels_from_another_annotation_file(tmp_path, capsys):
    # some databases keep beat labels in another file (PhysioNet afdb: .qrs; its .atr holds
    # rhythms only): --annotation picks it, and 'none' ignores annotations altogether
    import shutil

    src = example_records()[0]
    for ext in (".hea", ".dat"):
        shutil.copy(src + ext, tmp_path / f"synth01{ext}")
    shutil.copy(src + ".atr", tmp_path / "synth01.qrs")
    record = str(tmp_path / "synth01")
    annotated = _read(_detect_one(main, [record, "--annotation", "qrs"], tmp_path / "qrs"))
    reference = _read(_detect_one(main, [src], tmp_path / "atr"))
    assert [r["label"] for r in annotated] == [r["label"] for r in reference]
    assert {r["label"] for r in annotated} >= {"N", "V"}
    for argv, out in (([record], "default"), ([src, "--annotation", "none"], "none")):
        detected = _read(_detect_one(main, argv, tmp_path / out))  # no .atr / not read
        assert {r["label"] for r in detected} == {""}
        assert abs(len(detected) - len(reference)) <= 0.02 * len(reference)
    capsys.readouterr()
    for bad in (".atr", "a/b", ""):
        with pytest.raises(SystemExit):
            main(["detect", record, "--annotation", bad])
        assert "not an annotation file extension" in capsys.readouterr().err
    assert main(["detect", record, "--annotation", "none", "--normal-only",
                 "--out", str(tmp_path / "x")]) == 1
    assert "--normal-only needs the beat annotations" in capsys.readouterr().err


def _detect_one(main, argv, out):
    assert main(["detect", *argv, "--out", str(out), *_FAST]) == 0
    (csv_path,) = out.glob("*.csv")
    return csv_path


def test_contamination_sets_the_share_of_flagged_training_beats(tmp_path, capsys):
    # unlabelled training beats include the abnormal ones: "auto" (about 1 % false alarms
    # on beats like them) leaves most abnormal beats of a record with more unflagged, and
    # --contamination sets the share flagged instead
    records = example_records()
    argv = ["detect", *records, "--out", str(tmp_path), *_FAST, "--overwrite"]
    assert main([*argv, "--contamination", "0.1"]) == 0
    rows = [row for path in tmp_path.glob("*.csv") for row in _read(path)]
    share = np.mean([int(row["flag"]) for row in rows])
    assert 0.08 <= share <= 0.12
    capsys.readouterr()
    for bad in ("0", "0.6", "x"):
        with pytest.raises(SystemExit):
            main([*argv, "--contamination", bad])
        assert "--contamination" in capsys.readouterr().err


def test_summary_notes_when_most_abnormal_beats_are_not_flagged():

    from sigflow.cli import _summary

    labels = np.array(["N"] * 90 + ["V"] * 10)
    score = np.r_[np.zeros(90), -np.arange(1.0, 11.0)]
    results = [{"beats": SimpleNamespace(labels=labels), "score": score,
                "flag": (score < -8.5).astype(int)}]  # 2 of 10 abnormal beats flagged
    for contamination, normal_only, expected in (
        ("auto", False, "1 % false alarms on beats like the training beats, which include the "
                        "abnormal ones"),
        ("auto", True, "beats like the training beats; most abnormal beats score like normal"),
        (0.02, False, "set to flag 2 % of the training beats"),
    ):
        stream = io.StringIO()
        _summary(results, stream, contamination, normal_only)
        assert "note: 20 % of the abnormal beats are flagged" in stream.getvalue()
        assert expected in stream.getvalue() and "--contamination" in stream.getvalue()
    results[0]["flag"] = (score < -4.5).astype(int)  # 6 of 10: no note
    stream = io.StringIO()
    _summary(results, stream)
    assert "note" not in stream.getvalue()
    # normal beats flagged: noted against the share the threshold was set for
    results[0]["flag"] = np.r_[np.arange(90) < 9, np.ones(10)].astype(int)  # 10 % of N
    for contamination, noted in (("auto", True), (0.02, True), (0.1, False)):
        stream = io.StringIO()
        _summary(results, stream, contamination)
        assert ("note: 10 % of the normal beats are flagged" in stream.getvalue()) == noted


def test_no_progress_bars_when_the_output_is_not_a_terminal(tmp_path, capsys):
    # redirected to a log, tqdm's bars are lines of carriage-return updates
    argv = ["detect", example_records()[0], "--out", str(tmp_path), "--max-iter", "2",
            "--finetune-iter", "0", "--no-plot"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "it/s" not in err and "reading records" not in err


def test_an_annotation_file_asked_for_must_exist(tmp_path, capsys):
    # a mistyped --annotation ran R-peak detection and wrote unlabelled beats without a word
    record = example_records()[0]
    assert main(["detect", record, "--annotation", "qsr", "--out", str(tmp_path), *_FAST]) == 1
    err = capsys.readouterr().err
    assert f"annotation file not found: {record}.qsr" in err and not list(tmp_path.iterdir())
    # also for a record given by its header, and for a training record
    assert main(["detect", record + ".hea", "--annotation", "qsr", "--out", str(tmp_path),
                 *_FAST]) == 1
    assert f"{record}.qsr" in capsys.readouterr().err
    assert main(["detect", record, "--train", str(tmp_path / "missing"), "--out",
                 str(tmp_path), *_FAST]) == 1
    assert "missing.hea" in capsys.readouterr().err
    # the API takes "none" as the command line does
    run = run_detection([record], out=tmp_path / "none", annotation="none", plot=False,
                        quiet=True, max_iter=2, stream=io.StringIO())
    assert {str(label) for label in run["results"][0]["beats"].labels} == {""}


def test_a_part_of_each_record_keeps_the_records_sample_numbers(tmp_path, capsys):
    # --start/--end analyse a part of every record; the CSV's samples and times still count
    # from the record's beginning, so that they match its annotations and other tools
    record = example_records()[0]
    fs = load_record(record).fs
    whole = _read(_detect_one(main, [record], tmp_path / "whole"))
    part = _read(_detect_one(main, [record, "--start", "30", "--end", "90"], tmp_path / "part"))
    samples = np.array([int(row["sample"]) for row in part])
    assert samples.min() >= 30 * fs and samples.max() < 90 * fs
    inner = [int(row["sample"]) for row in whole if 31 * fs <= int(row["sample"]) < 89 * fs]
    assert set(inner) <= set(samples.tolist())
    by_sample = {int(row["sample"]): row for row in whole}
    for row in part:
        assert float(row["time_s"]) == pytest.approx(int(row["sample"]) / fs, abs=1e-3)
        if int(row["sample"]) in by_sample:
            assert row["label"] == by_sample[int(row["sample"])]["label"]
    # the PNG of the part, its span given in the record's time
    out = tmp_path / "png"
    argv = ["detect", record, "--start", "30", "--end", "90", "--out", str(out), "-q",
            "--max-iter", "2", "--finetune-iter", "0"]
    assert main([*argv, "--plot-start", "40", "--plot-duration", "10"]) == 0
    assert (out / "synth01.png").stat().st_size > 0
    capsys.readouterr()
    for outside in ("10", "95"):  # before and after the part: refused before the fit
        assert main([*argv, "--plot-start", outside, "--overwrite"]) == 1
        assert (f"--plot-start {outside} s is outside every part of a record to score "
                "(30-90 s)") in capsys.readouterr().err
    # a record that ends before --start is left out with a message, the others scored
    short = tmp_path / "short"
    short.mkdir()
    load = load_record(record).part(0, 36000)  # 100 s
    import wfdb

    wfdb.wrsamp("short", fs=fs, units=["mV"], sig_name=["MLII"], p_signal=load.signal,
                fmt=["16"], adc_gain=[200.0], baseline=[0], write_dir=str(short))
    argv = ["detect", record, str(short / "short"), "--start", "120", "--out",
            str(tmp_path / "mixed"), *_FAST]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "skipping short" in printed and "it lasts 100 s, and --start 120 s is past its end" in (
        printed)
    assert sorted(p.name for p in (tmp_path / "mixed").iterdir()) == ["synth01.csv"]
    for bad, message in ((["--start", "200"], "no beats found in any record to score: synth01"),
                         (["--start", "50", "--end", "40"], "--end (40 s) must be after")):
        assert main(["detect", record, "--out", str(tmp_path / "bad"), *_FAST, *bad]) == 1
        assert message in capsys.readouterr().err
    # times between samples: the samples at and after --start, up to and at --end
    cut = _record_part(load_record(record), 10.0014, 10.002)
    assert cut.start == int(10.0014 * fs) and cut.n_samples == 1
