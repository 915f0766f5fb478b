"""sigflow.ecg: EDF, EDF+ and BDF files, checked against EDFlib (pyedflib) and WFDB records."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from sigflow.ecg import RecordFormatError, example_records, load_beats, load_record

pyedflib = pytest.importorskip(
    "pyedflib", reason="pyedflib (EDFlib) writes the reference files; pip install -e '.[dev]'"
)
from pyedflib import highlevel  # noqa: E402

_TYPES = {
    "edf": pyedflib.FILETYPE_EDF, "edf+": pyedflib.FILETYPE_EDFPLUS,
    "bdf": pyedflib.FILETYPE_BDF, "bdf+": pyedflib.FILETYPE_BDFPLUS,
}


def _write(path, signals, headers, kind):
    highlevel.write_edf(str(path), signals, headers, file_type=_TYPES[kind])
    return str(path)


def _polygraph(tmp_path, kind):
    """Two ECG leads at 360 Hz and SpO2 at 1 Hz, as a Holter or a polysomnograph exports."""
    rng = np.random.default_rng(0)
    top = 2 ** 23 - 1 if kind.startswith("bdf") else 2 ** 15 - 1
    signals = [rng.uniform(-4.9, 4.9, 7200), np.cumsum(rng.normal(size=7200)) * 0.01,
               95 + rng.normal(size=20)]
    headers = [highlevel.make_signal_header(name, unit, fs, lo, hi, -top - 1, top)
               for name, unit, fs, lo, hi in (("MLII", "mV", 360, -5, 5),
                                              ("V1", "mV", 360, -5, 5),
                                              ("SpO2", "%", 1, 0, 100))]
    ext = kind.rstrip("+")
    return _write(tmp_path / f"holter.{ext}", signals, headers, kind), signals


@pytest.mark.parametrize("kind", ["edf", "edf+", "bdf", "bdf+"])
def test_edf_signals_equal_edflibs_in_physical_units(tmp_path, kind):
    path, truth = _polygraph(tmp_path, kind)
    reference, _, _ = highlevel.read_edf(path)  # EDFlib's own reader
    with pytest.warns(UserWarning, match=r"signals at 360 Hz are read; left out at other "
                                         r"rates: SpO2 \(1 Hz\)"):
        rec = load_record(path)
    assert rec.name == "holter" and rec.fs == 360.0 and rec.path == path
    assert rec.leads == ["MLII", "V1"] and rec.units == ["mV", "mV"]
    assert rec.signal.shape == (7200, 2) and rec.signal.dtype == np.float64
    assert not rec.has_annotations  # EDF+'s annotation signal is not a lead
    for k in range(2):
        np.testing.assert_allclose(rec.signal[:, k], reference[k], rtol=0, atol=1e-12)
        # and the values written, to within one step of the 16- or 24-bit scale
        lsb = 10 / (2 ** (24 if kind.startswith("bdf") else 16) - 1)
        assert np.abs(rec.signal[:, k] - truth[k]).max() <= 1.01 * lsb
    spo2 = load_record(path, channels=["spo2"])  # a name in any case
    assert spo2.fs == 1.0 and spo2.leads == ["SpO2"] and spo2.units == ["%"]
    np.testing.assert_allclose(spo2.signal[:, 0], reference[2], rtol=0, atol=1e-12)
    v1 = load_record(path, channels=[1])
    np.testing.assert_array_equal(v1.signal[:, 0], rec.signal[:, 1])
    assert load_record(path, channels=["1"]).leads == ["V1"]  # digits: an index


def test_edf_channel_errors_name_the_signals(tmp_path):
    path, _ = _polygraph(tmp_path, "edf+")
    with pytest.raises(ValueError, match=r"different sampling rates \(MLII 360 Hz, SpO2 1 Hz\)"):
        load_record(path, channels=["MLII", "SpO2"])
    with pytest.raises(ValueError, match=r"EDF file .* has no lead 'II'; its 3 channel\(s\): "
                                         r"\['MLII', 'V1', 'SpO2'\]"):
        load_record(path, channels=["II"])
    with pytest.raises(ValueError, match="index 3 is out of range"):
        load_record(path, channels=[3])
    with pytest.raises(ValueError, match="distinct channels"):
        load_record(path, channels=[0, "mlii"])
    with pytest.raises(ValueError, match="from local files only"):
        load_record("holter.edf", pn_dir="somedb")
    with pytest.raises(FileNotFoundError, match="EDF file not found"):
        load_record(tmp_path / "missing.EDF")


def _edit(path, offset, text):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(text)


def test_malformed_edf_files_are_clear_errors(tmp_path):
    path, _ = _polygraph(tmp_path, "edf+")
    size = len(open(path, "rb").read())
    cut = tmp_path / "cut.edf"
    cut.write_bytes(open(path, "rb").read()[: size - 100])
    with pytest.raises(RecordFormatError, match=r"truncated: the header lists 20 data records"):
        load_record(cut)
    _edit(cut, 236, b"-1      ")  # "unknown" (a recording not closed): the whole records
    with pytest.warns(UserWarning, match="left out at other rates"):
        assert load_record(cut).n_samples == 19 * 360
    gaps = tmp_path / "gaps.edf"
    shutil.copy(path, gaps)
    _edit(gaps, 192, b"EDF+D")
    with pytest.raises(RecordFormatError, match="discontinuous EDF\\+D"):
        load_record(gaps)
    junk = tmp_path / "junk.edf"
    junk.write_bytes(b"not an EDF file" * 40)
    with pytest.raises(RecordFormatError, match="neither EDF"):
        load_record(junk)
    junk.write_bytes(b"0")
    with pytest.raises(RecordFormatError, match="shorter than the 256-byte header"):
        load_record(junk)
    flat = tmp_path / "flat.edf"
    shutil.copy(path, flat)
    # the first signal's physical maximum (after 256 header bytes, 3 + 1 labels of 16,
    # transducers of 80 and units of 8, and 4 physical minima of 8) equal to its minimum
    _edit(flat, 256 + 4 * (16 + 80 + 8 + 8), b"-5      ")
    with pytest.raises(RecordFormatError, match="signal MLII maps digital .* not a scale"):
        load_record(flat)


def _as_edf(record_path, folder):
    """The WFDB record as an EDF file of the same digital samples, with its annotations
    under the WFDB convention for EDF records (``name.edf.atr``)."""
    import wfdb

    rec = wfdb.rdrecord(record_path, physical=False)
    gain, base = float(rec.adc_gain[0]), int(rec.baseline[0])
    lo, hi = -32768, 32767
    header = highlevel.make_signal_header(
        rec.sig_name[0], rec.units[0], rec.fs, (lo - base) / gain, (hi - base) / gain, lo, hi
    )
    name = record_path.replace("\\", "/").rsplit("/", 1)[-1]
    path = str(folder / f"{name}.edf")
    highlevel.write_edf(path, rec.d_signal[:, :1].T.astype(np.int32), [header], digital=True,
                        file_type=_TYPES["edf"])
    shutil.copy(record_path + ".atr", path + ".atr")
    return path


def test_an_edf_copy_of_a_record_gives_its_beats(tmp_path):
    wfdb_path = example_records()[0]
    edf_path = _as_edf(wfdb_path, tmp_path)
    a, b = load_record(wfdb_path), load_record(edf_path)
    assert b.name == a.name and b.fs == a.fs and b.leads == a.leads
    np.testing.assert_allclose(b.signal, a.signal, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(b.ann_samples, a.ann_samples)
    np.testing.assert_array_equal(b.ann_symbols, a.ann_symbols)
    (Xa, ya, _), (Xb, yb, _) = load_beats([wfdb_path]), load_beats([edf_path])
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_allclose(Xb, Xa, rtol=1e-7, atol=1e-9)


def test_a_part_of_an_edf_file_is_the_part_of_its_record(tmp_path):
    wfdb_path = example_records()[0]
    edf_path = _as_edf(wfdb_path, tmp_path)
    for kw in (dict(sampfrom=10_000, sampto=30_000), dict(sampfrom=50_000)):
        a, b = load_record(wfdb_path, **kw), load_record(edf_path, **kw)
        assert a.start == b.start == kw["sampfrom"]
        np.testing.assert_allclose(b.signal, a.signal, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(b.ann_samples, a.ann_samples)
        np.testing.assert_array_equal(b.ann_symbols, a.ann_symbols)
    with pytest.raises(ValueError, match=r"has 54000 samples: sampfrom=0, sampto=60000"):
        load_record(edf_path, sampto=60_000)


def test_sigflow_detect_reads_edf_files(tmp_path):
    from sigflow.cli import run_detection

    edf_path = _as_edf(example_records()[0], tmp_path)
    common = dict(plot=False, quiet=True, max_iter=2, finetune_iter=0, stream=io.StringIO())
    by_lead = run_detection([edf_path], lead="mlii", out=tmp_path / "a", **common)
    default = run_detection([edf_path], out=tmp_path / "b", **common)
    wfdb_run = run_detection(example_records()[:1], out=tmp_path / "c", **common)
    for run in (by_lead, default):
        beats = run["results"][0]["beats"]
        assert beats.record == "synth01"
        np.testing.assert_array_equal(beats.samples, wfdb_run["results"][0]["beats"].samples)
    assert (tmp_path / "a" / "synth01.csv").exists()


def test_warnings_point_at_the_callers_line(tmp_path):
    # A fixed stacklevel named sigflow's own code when the record was read through
    # load_beats or segment_beats: the warnings now name the first line outside sigflow.
    path, _ = _polygraph(tmp_path, "edf")
    for call in (lambda: load_record(path), lambda: load_beats([path])):
        with pytest.warns(UserWarning) as caught:
            call()
        assert {w.filename for w in caught} == {__file__}


def test_sigflow_detect_names_an_edf_files_leads(tmp_path, capsys):
    from sigflow.cli import main

    path, _ = _polygraph(tmp_path, "edf+")
    argv = ["detect", path, "--out", str(tmp_path / "out"), "--max-iter", "2", "-q"]
    assert main([*argv, "--lead", "II"]) == 1
    err = capsys.readouterr().err
    assert f"record holter ({path}) has no lead 'II'; its leads: MLII, V1, SpO2 (--lead)" in err
    assert main([*argv, "--lead", "spo2"]) == 1
    assert "lead SpO2 is sampled at 1 Hz, too slowly to show a QRS complex" in \
        capsys.readouterr().err
    assert not (tmp_path / "out").exists()
