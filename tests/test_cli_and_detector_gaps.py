"""Boundaries of the beat detector's defaults, EDF/BDF reading, channel choice, AAMI classes
and the ``sigflow detect`` option checks and CSV output.

The EDF files here are written byte by byte from the specification (Kemp et al. 1992), so
that each header field and each digital sample is known, and the physical values expected
are worked out by hand from the linear map of the header.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from sigflow.ecg import RecordFormatError, load_record


# ---------------- the detector's defaults
def test_beat_detector_defaults_are_the_documented_ones():
    pytest.importorskip("torch")
    from sklearn.preprocessing import RobustScaler

    from sigflow.ecg import make_beat_detector

    det = make_beat_detector()
    assert isinstance(det.named_steps["scale"], RobustScaler)
    params = det.named_steps["detector"].get_params()
    assert params["n_blocks"] == 2 and tuple(params["hidden_layer_sizes"]) == (32, 32)
    assert params["max_iter"] == 300 and params["contamination"] == "auto"
    assert params["smoothing"] is None
    # the caller's parameters win over the defaults
    mine = make_beat_detector(n_blocks=5, max_iter=7, hidden_layer_sizes=(8,),
                              smoothing="cv", contamination=0.2)
    params = mine.named_steps["detector"].get_params()
    assert params["n_blocks"] == 5 and params["max_iter"] == 7
    assert tuple(params["hidden_layer_sizes"]) == (8,)
    assert params["smoothing"] == "cv" and params["contamination"] == 0.2


# ---------------- EDF files written from the specification
def _field(text, width):
    text = str(text)
    assert len(text) <= width, text
    return text.ljust(width).encode("latin-1")


def _edf(path, signals, *, n_records, duration=1.0, bdf=False, reserved="", ns=None,
         header_bytes=None, version=None, n_records_field=None):
    """Write an EDF (or BDF) file. ``signals``: dicts with label, units, physical and digital
    ranges, n_per_record and ``digital``, the integers of all data records in turn."""
    ns = len(signals) if ns is None else ns
    header_bytes = 256 * (len(signals) + 1) if header_bytes is None else header_bytes
    head = (b"\xffBIOSEMI" if bdf else _field("0", 8)) if version is None else version
    head += _field("X X X X", 80) + _field("Startdate X X X X", 80)
    head += _field("01.01.00", 8) + _field("00.00.00", 8) + _field(header_bytes, 8)
    head += _field(reserved, 44)
    head += _field(n_records if n_records_field is None else n_records_field, 8)
    head += _field(f"{duration:g}", 8) + _field(ns, 4)
    assert len(head) == 256
    fields = (("label", 16), ("transducer", 80), ("units", 8), ("pmin", 8), ("pmax", 8),
              ("dmin", 8), ("dmax", 8), ("prefiltering", 80), ("n_per_record", 8),
              ("reserved", 32))
    for name, width in fields:
        for s in signals:
            head += _field(s.get(name, ""), width)
    body = b""
    width = 3 if bdf else 2
    for r in range(n_records):
        for s in signals:
            n = s["n_per_record"]
            chunk = np.asarray(s["digital"][r * n:(r + 1) * n], dtype=np.int64)
            if bdf:
                u = chunk & 0xFFFFFF
                body += np.column_stack([u & 0xFF, (u >> 8) & 0xFF, u >> 16]).astype(
                    np.uint8).tobytes()
            else:
                body += chunk.astype("<i2").tobytes()
            assert len(chunk) * width == n * width
    path.write_bytes(head + body)
    return str(path)


def _ecg_signal(digital, n_per_record, label="ECG", **kw):
    return dict(label=label, units="mV", pmin=-5, pmax=5, dmin=-500, dmax=500,
                n_per_record=n_per_record, digital=digital, **kw)


def _annotations(n_records, n_per_record=8):
    # an EDF+ annotation signal: its bytes are text, here empty (zeros)
    return dict(label="EDF Annotations", pmin=-1, pmax=1, dmin=-32768, dmax=32767,
                n_per_record=n_per_record, digital=np.zeros(n_records * n_per_record))


def test_edf_physical_values_follow_the_headers_linear_map(tmp_path):
    # digital [-500, 500] -> physical [-5, 5] mV: 0.01 mV per step; [0, 1000] -> [-2, 3]
    d = np.array([-500, -1, 0, 1, 250, 500, 17, -33])
    other = dict(label="V1", units="uV", pmin=-2, pmax=3, dmin=0, dmax=1000, n_per_record=4,
                 digital=np.array([0, 1000, 200, 500, 1, 999, 600, 300]))
    path = _edf(tmp_path / "lin.edf", [_ecg_signal(d, 4), other], n_records=2, duration=0.5)
    rec = load_record(path)
    assert rec.fs == 8.0 and rec.leads == ["ECG", "V1"] and rec.units == ["mV", "uV"]
    np.testing.assert_allclose(rec.signal[:, 0], d / 100.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rec.signal[:, 1], -2 + other["digital"] * 5 / 1000, rtol=0,
                               atol=1e-12)


def test_edf_annotation_signal_before_the_ecg_is_skipped_by_position(tmp_path):
    # EDF+ puts the annotation signal anywhere; the ECG's bytes are after its bytes
    d = np.arange(-40, 40) * 5
    path = _edf(tmp_path / "annfirst.edf", [_annotations(4), _ecg_signal(d, 20)],
                n_records=4, reserved="EDF+C")
    rec = load_record(path)
    assert rec.leads == ["ECG"] and rec.fs == 20.0
    np.testing.assert_allclose(rec.signal[:, 0], d / 100.0, rtol=0, atol=1e-12)
    # a BDF+ file labels it "BDF Annotations"; here at the ECG's rate, and not a lead
    ann = dict(_annotations(4, 20), label="BDF Annotations")
    path = _edf(tmp_path / "annfirst.bdf", [ann, _ecg_signal(d, 20)], n_records=4, bdf=True,
                reserved="BDF+C")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = load_record(path)
    assert rec.leads == ["ECG"]
    np.testing.assert_allclose(rec.signal[:, 0], d / 100.0, rtol=0, atol=1e-12)


def test_bdf_negative_samples_keep_their_sign(tmp_path):
    d = np.array([-8388608, -1, 0, 1, 8388607, -4194304, 123456, -654321])
    s = dict(label="ECG", units="uV", pmin=-8388608, pmax=8388607, dmin=-8388608,
             dmax=8388607, n_per_record=8, digital=d)
    rec = load_record(_edf(tmp_path / "s.bdf", [s], n_records=1, bdf=True))
    np.testing.assert_allclose(rec.signal[:, 0], d, rtol=0, atol=1e-6)


def test_edf_unnamed_signals_are_named_by_channel_as_wfdb_records_are(tmp_path):
    d = np.zeros(10)
    path = _edf(tmp_path / "blank.edf", [_ecg_signal(d, 10, label=""),
                                         _ecg_signal(d, 10, label="")], n_records=1)
    assert load_record(path).leads == ["ch0", "ch1"]


def test_discontinuous_bdf_is_refused_like_edf(tmp_path):
    path = _edf(tmp_path / "gaps.bdf", [_ecg_signal(np.zeros(20), 10)], n_records=2,
                bdf=True, reserved="BDF+D")
    with pytest.raises(RecordFormatError, match="discontinuous"):
        load_record(path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(duration=0), "data record duration is 0 s"),
        (dict(n_per_record=0), "has 0 samples per data record"),
        (dict(dmax=-500), "not a scale"),
        (dict(pmin="nan"), "physical min"),
        (dict(n_records_field=0), "holds no data record"),
        (dict(n_records_field=-2), "-2 data records"),
        (dict(header_bytes=1024), "header size is 1024 bytes"),
        (dict(ns=0, header_bytes=256), ": 0 signals$"),
        (dict(version=b"1       "), "neither EDF"),
        (dict(version=b"0.1     "), "neither EDF"),  # "0" and spaces, nothing else
        (dict(version=b"\xffBIOSEMX"), "neither EDF"),
    ],
)
def test_malformed_edf_headers_are_format_errors(tmp_path, change, match):
    change = dict(change)
    sig = _ecg_signal(np.zeros(20, dtype=int), 10)
    for key in ("n_per_record", "dmax", "pmin"):
        if key in change:
            sig[key] = change.pop(key)
    n_per = max(sig["n_per_record"], 1)
    sig["digital"] = np.zeros(2 * n_per, dtype=int)
    if sig["n_per_record"] == 0:
        sig["digital"] = np.zeros(0, dtype=int)
    path = _edf(tmp_path / "bad.edf", [sig], n_records=2, **change)
    with pytest.raises(RecordFormatError, match=match):
        load_record(path)


def test_an_edf_file_of_annotations_only_is_a_format_error(tmp_path):
    path = _edf(tmp_path / "notes.edf", [_annotations(3)], n_records=3, reserved="EDF+C")
    with pytest.raises(RecordFormatError, match="annotations only, no signal"):
        load_record(path)


def test_edf_signal_headers_cut_short_are_a_format_error(tmp_path):
    path = _edf(tmp_path / "ok.edf", [_ecg_signal(np.zeros(20), 10)] * 2, n_records=1)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(data[:256 + 300])
    with pytest.raises(RecordFormatError, match="cut short"):
        load_record(cut)


def test_a_zero_record_duration_is_an_error_on_the_command_line(tmp_path, capsys):
    # --lead reads an EDF file's signal names first; the duration must not divide by zero
    from sigflow.cli import main

    path = _edf(tmp_path / "zero.edf", [_ecg_signal(np.zeros(20), 10)], n_records=2,
                duration=0)
    assert main(["detect", path, "--lead", "ECG", "--out", str(tmp_path / "o"), "-q"]) == 1
    assert "data record duration is 0 s" in capsys.readouterr().err


# ---------------- channels by index or name
def test_channels_by_name_take_the_first_of_equal_names(tmp_path):
    a, b = np.arange(10) * 3, -np.arange(10)
    path = _edf(tmp_path / "two.edf", [_ecg_signal(a, 10), _ecg_signal(b, 10)], n_records=1)
    first = load_record(path, channels=" ecg ")  # a name in any case, spaces around it
    np.testing.assert_allclose(first.signal[:, 0], a / 100.0)
    second = load_record(path, channels=1)  # a lone index, not in a list
    np.testing.assert_allclose(second.signal[:, 0], b / 100.0)
    assert load_record(path, channels=np.int64(0)).leads == ["ECG"]
    assert load_record(path, channels=[" 1 "]).signal[3, 0] == pytest.approx(-0.03)


# ---------------- AAMI classes
def test_aami_class_of_an_array_with_non_beats():
    from sigflow.ecg import aami_class

    got = aami_class(np.array([["N", "+"], ["~", "V"], ["|", "/"]]))
    assert got.tolist() == ["N", "", "", "V", "", "Q"]
    assert aami_class(["x", "A"]).tolist() == ["", "S"] and aami_class([]).tolist() == []
    assert aami_class(["F", "f"]).tolist() == ["F", "Q"]


# ---------------- sigflow detect: option checks
def _refused(main, capsys, argv):
    """Whether the command line refuses ``argv`` while parsing (exit status 2)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    capsys.readouterr()
    return exc.value.code == 2


@pytest.mark.parametrize(
    "option",
    [["--contamination", "0.5"], ["--contamination", " AUTO "], ["--contamination", "1e-3"],
     ["--seed", str(2**32 - 1)], ["--seed", "0"], ["--annotation", "NONE"],
     ["--annotation", "qrs_2"], ["--start", "0"], ["--plot-start", "0"],
     ["--plot-duration", " All "], ["--finetune-iter", "0"], ["--max-iter", "1"],
     ["--end", "1e-3"]],
)
def test_options_at_their_bounds_are_accepted(tmp_path, capsys, option):
    # accepted options reach the check of the records, which names the missing one
    from sigflow.cli import main

    missing = str(tmp_path / "nope")
    assert main(["detect", missing, *option, "--out", str(tmp_path / "o")]) == 1
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option",
    [["--contamination", "0.5000001"], ["--contamination", "-0.1"],
     ["--contamination", "inf"], ["--contamination", "nan"], ["--end", "0"], ["--end", "-1"],
     ["--end", "inf"], ["--start", "-0.001"], ["--start", "nan"], ["--plot-start", "-1"],
     ["--plot-start", "inf"], ["--plot-duration", "-2"], ["--plot-duration", "inf"],
     ["--annotation", "atr.gz"], ["--annotation", "atr "], ["--annotation", "é"]],
)
def test_options_past_their_bounds_are_refused(tmp_path, capsys, option):
    from sigflow.cli import main

    assert _refused(main, capsys, ["detect", str(tmp_path / "nope"), *option])


def test_the_span_to_analyse_is_checked_before_any_record(tmp_path):
    from sigflow.cli import _check_span, run_detection

    assert _check_span(0, 5) == (0.0, 5.0) and _check_span(None, 0.5) == (None, 0.5)
    assert _check_span(np.float32(1.5), None) == (1.5, None)
    missing = [str(tmp_path / "nope")]
    for start, end, match in ((None, 0, "end must be None or a time in seconds > 0"),
                              (-1, None, "start must be"), (True, None, "start must be"),
                              (None, True, "end must be"), (float("inf"), None, "start"),
                              (None, float("nan"), "end"), ("3", None, "start"),
                              (5, 5, r"--end \(5 s\) must be after --start \(5 s\)"),
                              (5, 4.5, "must be after")):
        with pytest.raises(ValueError, match=match):
            run_detection(missing, start=start, end=end, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_the_part_of_a_record_holds_the_samples_from_start_up_to_end():
    # sample k covers [k / fs, (k + 1) / fs): the part holds the samples that meet
    # [start, end), whole-record sample numbers kept in its start
    from sigflow.cli import _record_part
    from sigflow.ecg import example_records

    rec = load_record(example_records()[0])  # 54000 samples at 360 Hz (150 s)
    cut = _record_part(rec, 10.0, 20.001)  # 20.0 s is sample 7200, 20.0028 s is 7201
    assert (cut.start, cut.start + cut.n_samples) == (3600, 7201)
    cut = _record_part(rec, 10.001, 20.0)  # sample 3600 covers 10.001 s; 7200 starts at 20 s
    assert (cut.start, cut.start + cut.n_samples) == (3600, 7200)
    np.testing.assert_array_equal(cut.signal, rec.signal[3600:7200])
    cut = _record_part(rec, 100.0, 1000.0)  # past the end: up to the record's end
    assert (cut.start, cut.n_samples) == (36000, 18000)
    assert _record_part(rec, None, 1000.0).n_samples == 54000
    last = _record_part(rec, 149.999, None)  # the last sample lies at 149.9972 s
    assert (last.start, last.n_samples) == (53999, 1)
    assert _record_part(rec, 150.0, None) is None  # no sample at or after 150 s
    assert _record_part(rec, None, None) is rec


# ---------------- sigflow detect: the CSV
def _rows(path):
    import csv

    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        return next(reader), list(reader)


@pytest.mark.filterwarnings("ignore:contamination='auto' is calibrated on only")
def test_csv_rows_are_the_records_beats_scores_and_threshold(tmp_path, monkeypatch):
    # a record and an output folder given from the home folder ("~/..."), a part of it
    # analysed: the CSV holds one row per beat with whole-record samples, the annotation's
    # AAMI class, and the detector's own numbers
    import shutil

    from sigflow.cli import run_detection
    from sigflow.ecg import aami_class, example_records

    src = example_records()[0]
    home = tmp_path / "home"
    (home / "recs").mkdir(parents=True)
    for ext in (".hea", ".dat", ".atr"):
        shutil.copy(src + ext, home / "recs" / f"synth01{ext}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.chdir(tmp_path)  # where a "~" taken literally would be made
    stream = io.StringIO()
    run = run_detection(["~/recs/synth01"], out="~/out", start=30, end=90, plot=False,
                        quiet=True, max_iter=2, finetune_iter=0, device="cpu", stream=stream)
    assert run["skipped"] == []
    header, rows = _rows(home / "out" / "synth01.csv")
    assert header == ["record", "sample", "time_s", "label", "score", "pvalue", "flag",
                      "threshold"]
    result, det = run["results"][0], run["detector"][-1]
    beats = result["beats"]
    assert len(rows) == len(beats) > 50
    assert {r[0] for r in rows} == {"synth01"}
    samples = np.array([int(r[1]) for r in rows])
    np.testing.assert_array_equal(samples, 30 * 360 + beats.samples)
    assert [r[2] for r in rows] == [f"{s / 360:.3f}" for s in samples]
    whole = load_record(src)
    symbol = dict(zip(whole.ann_samples.tolist(), whole.ann_symbols.tolist()))
    assert [r[3] for r in rows] == [aami_class(symbol[s]) for s in samples.tolist()]
    assert {r[3] for r in rows} >= {"N", "V"}
    score = np.array([float(r[4]) for r in rows])
    np.testing.assert_allclose(score, result["score"], rtol=5e-6)
    pvalue = np.array([float(r[5]) for r in rows])
    np.testing.assert_allclose(pvalue, result["pvalue"], rtol=5e-6)
    # flagged: a score below the threshold; with few calibration beats the threshold is the
    # lowest of their scores, and that beat, scored here too, is not below it
    assert np.sum(result["score"] == det.offset_) == 1
    np.testing.assert_array_equal([int(r[6]) for r in rows],
                                  (result["score"] < det.offset_).astype(int))
    assert {r[7] for r in rows} == {f"{det.offset_:.6g}"}
    n_flagged = sum(int(r[6]) for r in rows)
    assert (f"synth01: {len(rows)} beats, {n_flagged} flagged -> "
            f"{home / 'out' / 'synth01.csv'}") in stream.getvalue()
    assert not (tmp_path / "~").exists()


# ---------------- sigflow detect: parts of records, training records, the plot span
def test_training_records_are_cut_to_the_same_part_and_short_records_skipped(tmp_path):
    from sigflow.cli import run_detection
    from sigflow.ecg import example_records, segment_beats

    score, train = example_records()[:2]
    # a 20 s EDF recording ends before --start 30 s: left out, and listed as skipped
    short = _edf(tmp_path / "short.edf", [_ecg_signal(np.zeros(7200, dtype=int), 360)],
                 n_records=20)
    stream = io.StringIO()
    run = run_detection([score, short], train=[train], start=30, end=90, plot=False,
                        quiet=True, max_iter=2, finetune_iter=0, contamination=0.1,
                        out=tmp_path / "o", stream=stream)
    assert run["skipped"] == ["short"]
    assert "skipping short" in stream.getvalue()
    n_train = len(segment_beats(load_record(train).part(30 * 360, 90 * 360)))
    assert f"fitted on {n_train} beats from 1 record(s)" in stream.getvalue()
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["synth01.csv"]


def test_normal_only_needs_annotated_training_records(tmp_path):
    import shutil

    from sigflow.cli import run_detection
    from sigflow.ecg import example_records

    src = example_records()[1]
    (tmp_path / "plain").mkdir()
    for ext in (".hea", ".dat"):  # no .atr: the beats are detected, unlabelled
        shutil.copy(src + ext, tmp_path / "plain" / f"synth02{ext}")
    with pytest.raises(ValueError, match="--normal-only needs beat annotations in the "
                                         "training records: synth02"):
        run_detection([example_records()[0]], train=[str(tmp_path / "plain" / "synth02")],
                      normal_only=True, out=tmp_path / "o", quiet=True, stream=io.StringIO())
    assert not (tmp_path / "o").exists()


def test_a_plot_start_at_the_end_of_the_part_is_outside_it(tmp_path):
    # the part analysed is [30 s, 90 s): 90 s is its end, not a time in it
    from sigflow.cli import run_detection
    from sigflow.ecg import example_records

    with pytest.raises(ValueError, match=r"--plot-start 90 s is outside every part of a "
                                         r"record to score \(30-90 s\)"):
        run_detection(example_records()[:1], start=30, end=90, plot_start=90,
                      out=tmp_path / "o", quiet=True, stream=io.StringIO())
    assert not (tmp_path / "o").exists()
    # --end alone also makes a part: [0 s, 60 s)
    with pytest.raises(ValueError, match=r"--plot-start 75 s is outside every part of a "
                                         r"record to score \(0-60 s\)"):
        run_detection(example_records()[:1], end=60, plot_start=75, out=tmp_path / "o",
                      quiet=True, stream=io.StringIO())


def test_plot_of_a_part_refuses_a_start_at_its_end(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from types import SimpleNamespace

    from sigflow.cli import _plot
    from sigflow.ecg import example_records

    part = load_record(example_records()[0]).part(3600, 36000)  # 10 s to 100 s
    beats = SimpleNamespace(record="p", times=np.zeros(0))
    for start in (100.0, 9.99):
        assert _plot(part, beats, np.zeros(0), 0.0, tmp_path, start=start) is None
        assert (f"p: no PNG, --plot-start {start:g} s is outside the part analysed "
                "(10 s to 100 s)") in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ---------------- the summary's notes at their thresholds
def _summary_text(n_normal_flagged, n_abnormal_flagged, contamination="auto"):
    from types import SimpleNamespace

    from sigflow.cli import _summary

    labels = np.array(["N"] * 100 + ["V"] * 10)
    score = np.r_[np.zeros(100), -np.arange(1.0, 11.0)]
    flag = np.r_[np.arange(100) < n_normal_flagged, np.arange(10) < n_abnormal_flagged]
    stream = io.StringIO()
    _summary([{"beats": SimpleNamespace(labels=labels), "score": score,
               "flag": flag.astype(int)}], stream, contamination)
    return stream.getvalue()


def test_summary_notes_start_past_their_thresholds():
    # false alarms: noted above 5 % and above twice the share the threshold was set for
    assert "normal beats are flagged" not in _summary_text(5, 10)
    assert "note: 6 % of the normal beats are flagged" in _summary_text(6, 10)
    assert "normal beats are flagged" not in _summary_text(8, 10, 0.04)
    assert "note: 9 % of the normal beats are flagged" in _summary_text(9, 10, 0.04)
    # recall: noted below half of the abnormal beats
    assert "abnormal beats are flagged" not in _summary_text(0, 5)
    assert "note: 40 % of the abnormal beats are flagged" in _summary_text(0, 4)
    assert "flagged 6 of 100 normal and 4 of 10 abnormal beats" in _summary_text(6, 4)


def test_summary_without_normal_beats_gives_no_auroc():
    from types import SimpleNamespace

    from sigflow.cli import _summary

    for labels in (["V", "S", "V", "F"], ["N", "N", "Q", "N"], ["", "", "", ""]):
        stream = io.StringIO()
        result = {"beats": SimpleNamespace(labels=np.array(labels)),
                  "score": np.array([0.0, -1.0, -2.0, -3.0]), "flag": np.zeros(4, int)}
        assert _summary([result], stream) is None
        assert stream.getvalue() == "no labels with both normal and abnormal beats: no AUROC\n"


def test_a_beat_annotation_file_asked_for_by_name_must_exist(tmp_path, capsys):
    # the shipped records have .atr files only: --annotation qrs names a missing file
    from sigflow.cli import main
    from sigflow.ecg import example_records

    record = example_records()[0]
    assert main(["detect", record, "--annotation", "qrs", "--out", str(tmp_path / "o")]) == 1
    assert f"annotation file not found: {record}.qrs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # 'none' in any case reads no annotation file, so --normal-only has no labels
    assert main(["detect", record, "--annotation", "NONE", "--normal-only", "--out",
                 str(tmp_path / "o")]) == 1
    assert "--normal-only needs the beat annotations" in capsys.readouterr().err


def test_the_part_of_a_record_is_exact_at_times_on_a_sample():
    # 0.35 s x 360 Hz is 125.99999999999999 and 1.1 s x 360 Hz 396.00000000000006 in
    # floating point: --start 0.35 begins at sample 126 (at 0.35 s), not at the one before,
    # and --end 1.1 stops before sample 396 (at 1.1 s), as --end 1.0 stops before sample 360
    from sigflow.cli import _record_part
    from sigflow.ecg import example_records

    rec = load_record(example_records()[0])
    for start, end, first, stop in ((0.35, 1.1, 126, 396), (0.175, 1.0, 63, 360),
                                    (1.15, 2.0, 414, 720)):
        cut = _record_part(rec, start, end)
        assert (cut.start, cut.start + cut.n_samples) == (first, stop), (start, end)
