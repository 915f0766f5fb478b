"""sigflow.ecg: reading WFDB records, clear errors, AAMI classes, lead handling."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from sigflow.ecg import (
    AAMI_CLASSES,
    ECGRecord,
    RecordFormatError,
    aami_class,
    example_records,
    load_beats,
    load_record,
    segment_beats,
)
from sigflow.ecg._record import record_name


def test_load_example_record():
    rec = load_record(example_records()[0])
    assert isinstance(rec, ECGRecord)
    assert rec.name == "synth01"
    assert rec.fs == 360.0
    assert rec.leads == ["MLII"]
    assert rec.signal.shape == (54000, 1)
    assert rec.signal.dtype == np.float64
    assert rec.units == ["mV"]
    # physical units: R waves of about 1 mV, not ADC counts
    assert 0.5 < np.percentile(rec.signal, 99.9) - np.median(rec.signal) < 3.0
    assert rec.has_annotations
    assert rec.ann_samples.shape == rec.ann_symbols.shape
    assert set(rec.ann_symbols) <= {"N", "A", "V"}
    assert "ECGRecord(name='synth01'" in repr(rec)


def test_lead_by_name_index_or_digits():
    rec = load_record(example_records()[0])  # one lead, MLII
    assert rec.lead_index("MLII") == rec.lead_index("mlii ") == rec.lead_index(0) == 0
    assert rec.lead_index("0") == 0  # as a command line passes --lead 0
    assert rec.lead_index("1") is None and rec.lead_index(1) is None
    assert rec.lead_index("V5") is None


def test_load_record_accepts_extension_and_channels():
    path = example_records()[1]
    rec = load_record(path + ".hea", channels=[0])
    assert rec.name == "synth02" and rec.signal.shape[1] == 1
    # lead names in any case and digit strings, as segment_beats and EDF files take them
    for channel in ("mlii", " MLII", "0"):
        np.testing.assert_array_equal(load_record(path, channels=[channel]).signal, rec.signal)
    with pytest.raises(ValueError, match="has no lead 'V1'"):
        load_record(path, channels=["V1"])
    with pytest.raises(ValueError, match="index 1 is out of range"):
        load_record(path, channels=["1"])


def test_record_without_annotations(tmp_path):
    src = example_records()[0]
    for ext in (".hea", ".dat"):
        shutil.copy(src + ext, tmp_path / ("synth01" + ext))
    rec = load_record(tmp_path / "synth01")
    assert rec.ann_samples is None and rec.ann_symbols is None
    X, y, groups = load_beats([tmp_path / "synth01"])
    assert len(X) > 100
    assert set(y.tolist()) == {""}
    assert set(groups.tolist()) == {"synth01"}


def test_missing_header_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.hea"):
        load_record(tmp_path / "nothere")


def test_missing_dat_names_the_file(tmp_path):
    shutil.copy(example_records()[0] + ".hea", tmp_path / "synth01.hea")
    with pytest.raises(FileNotFoundError, match=r"synth01\.dat"):
        load_record(tmp_path / "synth01")


def test_truncated_dat_names_the_file(tmp_path):
    src = example_records()[0]
    shutil.copy(src + ".hea", tmp_path / "synth01.hea")
    data = open(src + ".dat", "rb").read()
    (tmp_path / "synth01.dat").write_bytes(data[: len(data) // 3])
    with pytest.raises(RecordFormatError, match=r"truncated.*synth01\.dat"):
        load_record(tmp_path / "synth01")
    # a byte-aligned format one byte short (format 212 packs two samples in 3 bytes and
    # may end in a partial group); it got wfdb's "Samples were not loaded correctly"
    _write(tmp_path, "r16", load_record(src).signal[:, 0], 360.0)
    data = (tmp_path / "r16.dat").read_bytes()
    (tmp_path / "r16.dat").write_bytes(data[:-1])
    with pytest.raises(RecordFormatError, match=r"truncated.*r16\.dat.*format 16"):
        load_record(tmp_path / "r16")


def test_record_paths_with_a_home_folder_or_a_dat_file(tmp_path, monkeypatch):
    src = example_records()[0]
    for ext in (".hea", ".dat", ".atr"):
        shutil.copy(src + ext, tmp_path / f"synth01{ext}")
    monkeypatch.setenv("HOME", str(tmp_path))
    rec = load_record("~/synth01")  # a quoted ~ reaches Python unexpanded
    assert rec.name == "synth01" and record_name("~/synth01") == "synth01"
    np.testing.assert_array_equal(rec.signal, load_record(src).signal)
    # a .dat path names the record of the same name; a signal file of another name gets a
    # hint to pass the header
    (tmp_path / "synth01.dat").rename(tmp_path / "signals.dat")
    with pytest.raises(FileNotFoundError, match=r"signals\.hea.*pass the record's \.hea path"):
        load_record(tmp_path / "signals.dat")


@pytest.mark.parametrize("odd", [False, True])  # cut at an even or an odd byte
def test_truncated_annotation_file_names_the_file(tmp_path, odd):
    src = example_records()[0]
    for ext in (".hea", ".dat"):
        shutil.copy(src + ext, tmp_path / ("synth01" + ext))
    data = open(src + ".atr", "rb").read()
    cut = len(data) // 4 * 2 + odd  # about half the file
    (tmp_path / "synth01.atr").write_bytes(data[:cut])
    with pytest.raises(RecordFormatError, match=r"truncated WFDB annotation file .*synth01\.atr"):
        load_record(tmp_path / "synth01")
    # the whole file reads, and the signal alone still can
    (tmp_path / "synth01.atr").write_bytes(data)
    assert len(load_record(tmp_path / "synth01").ann_samples) > 100
    (tmp_path / "synth01.atr").write_bytes(data[:cut])
    assert load_record(tmp_path / "synth01", annotation=None).ann_samples is None


def test_malformed_header_names_the_file(tmp_path):
    src = example_records()[0]
    shutil.copy(src + ".dat", tmp_path / "synth01.dat")
    (tmp_path / "synth01.hea").write_text("synth01 1 threehundred 54000\nsynth01.dat bogus line\n")
    with pytest.raises(RecordFormatError, match=r"malformed.*synth01\.hea"):
        load_record(tmp_path / "synth01")


def test_malformed_annotation_names_the_file(tmp_path):
    src = example_records()[0]
    for ext in (".hea", ".dat"):
        shutil.copy(src + ext, tmp_path / ("synth01" + ext))
    (tmp_path / "synth01.atr").write_bytes(b"\x01\x02\x03")
    with pytest.raises(RecordFormatError, match=r"synth01\.atr"):
        load_record(tmp_path / "synth01")


def test_aami_mapping():
    expected = {
        "N": "N", "L": "N", "R": "N", "e": "N", "j": "N",
        "A": "S", "a": "S", "J": "S", "S": "S",
        "V": "V", "E": "V", "F": "F", "/": "Q", "f": "Q", "Q": "Q",
        # WFDB's other beat codes, as its AAMI map assigns them
        "B": "N", "n": "N", "r": "V", "?": "Q",
    }
    symbols = list(expected)
    assert aami_class(symbols).tolist() == [expected[s] for s in symbols]
    for non_beat in ["+", "~", "|", "!", "x", '"', "[", "]", "T", "p", "t", "u", "^", "@"]:
        assert aami_class(non_beat) == ""
    assert AAMI_CLASSES == ("N", "S", "V", "F", "Q")


def test_ecg_does_not_import_torch():
    code = "import sys, sigflow.ecg; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- multi-segment records, annotations at another sampling frequency ------------------------


@contextlib.contextmanager
def _wfdb_quietly():
    """wfdb, its own pandas deprecation warnings silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")
        import wfdb

        yield wfdb


def _write(folder, name, signal, fs, leads=("MLII",), ann=None):
    """A real WFDB record (and its ``.atr`` at ``ann_fs`` when ``ann`` is given)."""
    with _wfdb_quietly() as wfdb:
        signal = np.asarray(signal, dtype=np.float64).reshape(len(signal), -1)
        n = signal.shape[1]
        wfdb.wrsamp(name, fs=fs, units=["mV"] * n, sig_name=list(leads), p_signal=signal,
                    fmt=["16"] * n, adc_gain=[200.0] * n, baseline=[0] * n,
                    write_dir=str(folder))
        if ann is not None:
            samples, symbols, ann_fs = ann
            wfdb.wrann(name, "atr", np.asarray(samples), symbol=list(symbols), fs=ann_fs,
                       write_dir=str(folder))


def _synthetic(duration, fs=360.0):
    from sigflow.ecg import make_synthetic_ecg

    return make_synthetic_ecg(duration=duration, fs=fs, random_state=0)


def _write_two_segments(folder, sig, fs):
    """``sig`` as the multi-segment record ``multi`` of two halves, ``seg0`` and ``seg1``."""
    half = len(sig) // 2
    _write(folder, "seg0", sig[:half], fs)
    _write(folder, "seg1", sig[half:], fs)
    (folder / "multi.hea").write_text(
        f"multi/2 1 {fs:g} {len(sig)}\nseg0 {half}\nseg1 {len(sig) - half}\n"
    )


def test_multi_segment_record_is_read_as_one(tmp_path):
    sig, fs, ann = _synthetic(40)
    _write_two_segments(tmp_path, sig, fs)
    with _wfdb_quietly() as wfdb:
        wfdb.wrann("multi", "atr", ann["sample"], symbol=list(ann["symbol"]),
                   write_dir=str(tmp_path))
    rec = load_record(tmp_path / "multi")
    assert rec.name == "multi" and rec.fs == fs and rec.leads == ["MLII"]
    assert rec.signal.shape == (len(sig), 1)
    np.testing.assert_allclose(rec.signal[:, 0], sig, atol=0.5 / 200 + 1e-12)  # ADC rounding
    assert np.array_equal(rec.ann_samples, ann["sample"])
    assert len(segment_beats(rec)) == len(ann["sample"])


def test_multi_segment_record_with_a_gap(tmp_path):
    # variable layout: a layout segment (length 0), then segments and a null segment '~'
    sig, fs, _ = _synthetic(30)
    half, gap = len(sig) // 2, 720
    _write(tmp_path, "seg0", sig[:half], fs)
    _write(tmp_path, "seg1", sig[half:], fs)
    (tmp_path / "lay.hea").write_text(f"lay 1 {fs:g} 0\n~ 0 200/mV 16 0 0 0 0 MLII\n")
    (tmp_path / "multi.hea").write_text(
        f"multi/4 1 {fs:g} {len(sig) + gap}\nlay 0\nseg0 {half}\n~ {gap}\n"
        f"seg1 {len(sig) - half}\n"
    )
    rec = load_record(tmp_path / "multi")
    assert rec.signal.shape == (len(sig) + gap, 1)
    np.testing.assert_array_equal(load_record(tmp_path / "multi", channels=["MLII"]).signal,
                                  rec.signal)  # the layout segment names the channels
    assert np.isnan(rec.signal[half: half + gap]).all()
    assert np.isfinite(rec.signal[:half]).all() and np.isfinite(rec.signal[half + gap:]).all()


def test_multi_segment_record_errors_name_the_files(tmp_path):
    sig, fs, _ = _synthetic(20)
    _write(tmp_path, "seg0", sig, fs)
    (tmp_path / "multi.hea").write_text(f"multi/2 1 {fs:g} {2 * len(sig)}\nseg0 {len(sig)}\n"
                                        f"seg1 {len(sig)}\n")
    with pytest.raises(FileNotFoundError, match=r"seg1\.hea.*segment named in .*multi\.hea"):
        load_record(tmp_path / "multi")
    (tmp_path / "multi.hea").write_text(f"multi/2 1 {fs:g} {len(sig) + 100}\nseg0 {len(sig)}\n"
                                        "~ 100\n")
    with pytest.raises(RecordFormatError, match=r"multi\.hea has null segments"):
        load_record(tmp_path / "multi")


def test_annotations_at_another_sampling_frequency_are_rescaled(tmp_path):
    # the record at 250 Hz, its annotation file written at 360 Hz (wrann stores fs)
    sig, _, ann = _synthetic(30, fs=360.0)
    from scipy.signal import resample_poly

    x = resample_poly(sig, 25, 36)
    _write(tmp_path, "r250", x, 250.0, ann=(ann["sample"], ann["symbol"], 360))
    rec = load_record(tmp_path / "r250")
    assert rec.fs == 250.0
    expected = np.rint(ann["sample"] * 250 / 360).astype(np.int64)
    inside = expected < rec.n_samples
    assert np.array_equal(rec.ann_samples, expected[inside])
    assert np.array_equal(rec.ann_symbols, np.asarray(ann["symbol"])[inside])
    # the beats sit on the R waves of the 250 Hz signal
    from sigflow.ecg import detect_r_peaks, rpeak_accuracy

    acc = rpeak_accuracy(rec.ann_samples, detect_r_peaks(rec.signal[:, 0], 250.0), 250.0,
                         tolerance=0.02)
    assert acc["sensitivity"] > 0.95


def test_annotations_outside_the_signal_are_dropped_with_a_warning(tmp_path):
    sig, fs, ann = _synthetic(20)
    samples = np.r_[ann["sample"], [len(sig) + 10, len(sig) + 500]]
    _write(tmp_path, "long", sig, fs, ann=(samples, list(ann["symbol"]) + ["N", "V"], None))
    with pytest.warns(UserWarning, match=r"long\.atr: 2 of \d+ annotations lie outside"):
        rec = load_record(tmp_path / "long")
    assert np.array_equal(rec.ann_samples, ann["sample"])
    assert rec.ann_samples.max() < rec.n_samples


# --- MIT-BIH (needs SIGFLOW_SHARED_DATA) ------------------------------------------------------

MITDB_COUNTS = {"101": 1865, "106": 2027, "119": 1987}  # beats among all annotations


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(MITDB_COUNTS))
def test_mitdb_beat_counts(shared_data, name):
    rec = load_record(shared_data / "mitdb" / name)
    assert rec.fs == 360.0 and rec.signal.shape == (650000, 2)
    assert rec.leads[0] == "MLII"
    is_beat = aami_class(rec.ann_symbols) != ""
    assert int(is_beat.sum()) == MITDB_COUNTS[name]
    beats = segment_beats(rec)
    # all but the beats whose window (0.25 s before, 0.45 s after) runs past the record
    s = rec.ann_samples[is_beat]
    assert len(beats) == int(((s >= 90) & (s + 162 <= rec.n_samples)).sum())
    assert MITDB_COUNTS[name] - 2 <= len(beats) <= MITDB_COUNTS[name]
    assert beats.lead == "MLII"
    assert np.isfinite(beats.features).all()


@pytest.mark.shared_data
def test_mitdb_class_counts_match_annotations(shared_data):
    X, y, groups, samples = load_beats([shared_data / "mitdb" / "119"], return_samples=True)
    rec = load_record(shared_data / "mitdb" / "119")
    inside = (rec.ann_samples >= 90) & (rec.ann_samples + 162 <= rec.n_samples)  # windows
    cls = aami_class(rec.ann_symbols[inside])
    for c in AAMI_CLASSES:
        assert (y == c).sum() == (cls == c).sum()
    assert (y == "V").sum() > 400  # record 119: ventricular bigeminy
    assert np.array_equal(samples, rec.ann_samples[inside][cls != ""])


@pytest.mark.shared_data
def test_mitdb_lead_by_name_and_fallback(shared_data):
    # 114: channels swapped, MLII is channel 1 and is found by name
    rec114 = load_record(shared_data / "mitdb" / "114")
    assert rec114.leads == ["V5", "MLII"]
    beats = segment_beats(rec114, lead="MLII")
    assert beats.lead == "MLII" and segment_beats(rec114).lead == "MLII"
    # 102: no MLII at all -> by default channel 0 with a warning; asked for, an error
    rec102 = load_record(shared_data / "mitdb" / "102")
    with pytest.warns(UserWarning, match="no lead 'MLII'.*channel 0"):
        beats = segment_beats(rec102)
    assert beats.lead == "V5"
    with pytest.raises(ValueError, match="no lead 'MLII'; its leads: V5, V2"):
        segment_beats(rec102, lead="MLII")


# --- choosing channels ---------------------------------------------------------------------


def test_load_record_channels_by_index_or_name(tmp_path):
    sig, fs, _ = _synthetic(5)
    two = np.stack([sig, -0.5 * sig], axis=1)
    _write(tmp_path, "two", two, fs, leads=("MLII", "V1"))
    full = load_record(tmp_path / "two")
    assert full.leads == ["MLII", "V1"]
    for channels in (["V1", "MLII"], [1, 0], ["V1", 0]):
        rec = load_record(tmp_path / "two", channels=channels)
        assert rec.leads == ["V1", "MLII"]
        np.testing.assert_array_equal(rec.signal, full.signal[:, [1, 0]])
    assert load_record(tmp_path / "two", channels="V1").leads == ["V1"]


@pytest.mark.parametrize(
    ("channels", "match"),
    [
        (["V5"], r"has no lead 'V5'; its 2 channel\(s\): \['MLII', 'V1'\]"),
        ([2], r"index 2 is out of range .*its 2 channel\(s\)"),
        ([-1], "index -1 is out of range"),
        ([True], "channel indices or lead names, got True"),
        (1.5, "must be a list of channel indices or lead names"),
        ([0, "MLII"], "distinct channels"),
        ([], "at least one"),
    ],
)
def test_load_record_rejects_bad_channels(tmp_path, channels, match):
    # a ValueError about the argument, not a RecordFormatError about the files
    sig, fs, _ = _synthetic(5)
    _write(tmp_path, "two", np.stack([sig, sig], axis=1), fs, leads=("MLII", "V1"))
    with pytest.raises(ValueError, match=match) as info:
        load_record(tmp_path / "two", channels=channels)
    assert not isinstance(info.value, RecordFormatError)


def test_leads_with_several_samples_per_frame_are_read_averaged_with_a_warning(tmp_path):
    # MLII at 2 samples per frame (360 Hz), V1 at 1 (180 Hz, the frame rate): wfdb
    # averages each frame's samples, and the lead's higher rate is lost without a word
    rng = np.random.default_rng(0)
    n_frames = 1800
    mlii = rng.integers(-500, 500, size=(n_frames, 2))
    v1 = rng.integers(-500, 500, size=(n_frames, 1))
    np.column_stack([mlii, v1]).astype("<i2").tofile(tmp_path / "mf.dat")
    (tmp_path / "mf.hea").write_text(
        f"mf 2 180 {n_frames}\nmf.dat 16x2 200/mV 16 0 0 0 0 MLII\n"
        "mf.dat 16x1 200/mV 16 0 0 0 0 V1\n"
    )
    with pytest.warns(UserWarning, match=r"MLII \(2 per frame\).*averaged.*180 Hz"):
        rec = load_record(tmp_path / "mf")
    assert rec.fs == 180.0 and rec.leads == ["MLII", "V1"]
    # (wfdb rounds the average to a digital value)
    np.testing.assert_allclose(rec.signal[:, 0], mlii.mean(axis=1) / 200, atol=0.5 / 200)
    np.testing.assert_allclose(rec.signal[:, 1], v1[:, 0] / 200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_record(tmp_path / "mf", channels=["V1"])  # V1 alone is at its own rate


def test_load_record_channels_of_a_multi_segment_record(tmp_path):
    sig, fs, _ = _synthetic(20)
    _write_two_segments(tmp_path, sig, fs)
    full = load_record(tmp_path / "multi")
    rec = load_record(tmp_path / "multi", channels=[0])
    np.testing.assert_array_equal(rec.signal, full.signal)
    # by name too: a multi-segment header names no signals, its segments do
    np.testing.assert_array_equal(load_record(tmp_path / "multi", channels=["mlii"]).signal,
                                  full.signal)
    with pytest.raises(ValueError, match="index 1 is out of range"):
        load_record(tmp_path / "multi", channels=[1])
    with pytest.raises(ValueError, match="no lead 'V1'.*MLII"):
        load_record(tmp_path / "multi", channels=["V1"])


def test_leads_and_units_a_header_leaves_out_get_names(tmp_path):
    # Lead names (and units) are optional in a WFDB header; wfdb gives None for them, and
    # the record had leads named "None", which `--lead none` then matched.
    sig, fs, _ = _synthetic(10)
    _write(tmp_path, "named", np.stack([sig, sig], axis=1), fs, leads=("MLII", "V1"))
    lines = (tmp_path / "named.hea").read_text().splitlines()
    lines[1:3] = [" ".join(line.split()[:-1]).replace("/mV", "") for line in lines[1:3]]
    (tmp_path / "named.hea").write_text("\n".join(lines) + "\n")
    rec = load_record(tmp_path / "named")
    assert rec.leads == ["ch0", "ch1"]
    assert "None" not in rec.units
    assert rec.lead_index("ch1") == 1 and rec.lead_index("None") is None


def test_record_name_is_the_name_load_record_gives(tmp_path):
    # the command line checks for an earlier run's files by these names before reading
    from sigflow.ecg._record import record_name

    src = example_records()[0]
    shutil.copy(src + ".dat", tmp_path / "synth01.dat")  # the header names its signal file
    for name in ("r.dat", "q.hea", "plain"):  # names that end like a WFDB file: by header
        shutil.copy(src + ".hea", tmp_path / f"{name}.hea")
        path = str(tmp_path / f"{name}.hea")
        assert record_name(path) == load_record(path).name == name
    assert record_name(tmp_path / "plain") == load_record(tmp_path / "plain").name == "plain"


def test_a_refused_download_is_a_permission_error():
    # wfdb raises NetFilePermissionError (a PermissionError) for HTTP 401/403, a database
    # that needs credentials: not a network failure
    from wfdb.io._url import NetFilePermissionError

    from sigflow.ecg._record import _raise_download_error

    with pytest.raises(PermissionError, match="credentialed database") as info:
        _raise_download_error(NetFilePermissionError("403 Forbidden"), "mimic4wdb",
                              "the header mimic4wdb/p100.hea")
    assert not isinstance(info.value, ConnectionError)
    _raise_download_error(ValueError("malformed"), "mitdb", "x")  # not a download error


def test_a_failed_download_is_a_connection_error():
    # without a network wfdb's download fails with requests' errors (OSErrors); they were
    # reported as a malformed record (RecordFormatError)
    try:
        load_record("101", pn_dir="mitdb", channels=[0])
    except ConnectionError as exc:
        assert "could not download the header mitdb/101.hea from PhysioNet" in str(exc)
        assert not isinstance(exc, RecordFormatError)
    else:
        pytest.skip("PhysioNet is reachable from here: nothing fails to download")
    with pytest.raises(ConnectionError, match="could not download the record mitdb/101"):
        load_record("101", pn_dir="mitdb")


def test_a_record_path_without_a_header_says_what_it_may_have_meant(tmp_path):
    src = example_records()[0]
    for ext in (".hea", ".dat", ".atr"):
        shutil.copy(src + ext, tmp_path / f"synth01{ext}")
    record = tmp_path / "synth01"
    cases = {
        tmp_path: rf"{tmp_path} is a folder: pass the records in it, e.g. {record}$",
        f"{record}.atr": rf"did you mean the record {record}\?",
        f"{record}/": rf"did you mean the record {record}\?",
        tmp_path / "nothing": r"nothing\.hea$",
    }
    for path, hint in cases.items():
        with pytest.raises(FileNotFoundError, match=hint):
            load_record(path)
    (tmp_path / "holter").write_bytes(b"0       ")  # an EDF file without its extension
    with pytest.raises(FileNotFoundError, match="EDF/BDF files need the .edf or .bdf extension"):
        load_record(tmp_path / "holter")


def test_a_part_of_a_record_is_its_samples_and_annotations(tmp_path):
    path = example_records()[0]
    full = load_record(path)
    for sampfrom, sampto in ((0, 20_000), (7_777, 30_001), (50_000, None)):
        part = load_record(path, sampfrom=sampfrom, sampto=sampto)
        end = full.n_samples if sampto is None else sampto
        assert part.start == sampfrom and part.n_samples == end - sampfrom
        np.testing.assert_array_equal(part.signal, full.signal[sampfrom:end])
        with _wfdb_quietly() as wfdb:
            ref = wfdb.rdann(path, "atr", sampfrom=sampfrom, sampto=end - 1, shift_samps=True)
        np.testing.assert_array_equal(part.ann_samples, ref.sample)
        np.testing.assert_array_equal(part.ann_symbols, ref.symbol)
        # the part's beats are the whole record's beats within it, counted from sampfrom
        beats = segment_beats(part)
        whole = segment_beats(full).samples
        inside = whole[(whole >= sampfrom + 0.25 * 360) & (whole < end - 0.45 * 360)]
        np.testing.assert_array_equal(beats.samples + sampfrom, inside)
    assert "start=7777" in repr(load_record(path, sampfrom=7_777))
    for bad, message in ((dict(sampfrom=-1), "sampfrom must be a sample index"),
                         (dict(sampfrom=2.5), "sampfrom must be a sample index"),
                         (dict(sampfrom=True), "sampfrom must be a sample index"),
                         (dict(sampfrom=10, sampto=10), r"sampto \(10\) must be greater"),
                         (dict(sampto=54_001), "has 54000 samples"),
                         (dict(sampfrom=54_000), "has 54000 samples")):
        with pytest.raises(ValueError, match=message):
            load_record(path, **bad)


def test_a_part_of_a_multi_segment_record_spans_its_segments(tmp_path):
    sig, fs, _ = _synthetic(20)
    _write_two_segments(tmp_path, sig, fs)
    full = load_record(tmp_path / "multi")
    half = len(sig) // 2
    part = load_record(tmp_path / "multi", sampfrom=half - 500, sampto=half + 700)
    np.testing.assert_array_equal(part.signal, full.signal[half - 500: half + 700])


def test_a_part_of_a_loaded_record_is_the_part_read_from_its_files():
    path = example_records()[0]
    whole = load_record(path)
    for sampfrom, sampto in ((0, 20_000), (7_777, 30_001), (50_000, None)):
        read, cut = load_record(path, sampfrom=sampfrom, sampto=sampto), whole.part(sampfrom,
                                                                                   sampto)
        assert cut.start == read.start == sampfrom
        np.testing.assert_array_equal(cut.signal, read.signal)
        np.testing.assert_array_equal(cut.ann_samples, read.ann_samples)
        np.testing.assert_array_equal(cut.ann_symbols, read.ann_symbols)
    twice = whole.part(10_000).part(5_000, 6_000)  # starts add up
    assert twice.start == 15_000
    np.testing.assert_array_equal(twice.signal, whole.signal[15_000:16_000])
    with pytest.raises(ValueError, match="has 54000 samples"):
        whole.part(0, 60_000)
