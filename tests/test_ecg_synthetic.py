"""sigflow.ecg: the synthetic ECG generator and the shipped example records."""

from __future__ import annotations

import numpy as np
import pytest

from sigflow.ecg import (
    EXAMPLE_RECORDS,
    example_records,
    load_record,
    make_synthetic_ecg,
    write_synthetic_record,
)
from sigflow.ecg.synthetic import main


def test_seeded_and_deterministic():
    a = make_synthetic_ecg(duration=30, s_rate=0.1, v_rate=0.1, random_state=3)
    b = make_synthetic_ecg(duration=30, s_rate=0.1, v_rate=0.1, random_state=3)
    c = make_synthetic_ecg(duration=30, s_rate=0.1, v_rate=0.1, random_state=4)
    assert np.array_equal(a[0], b[0])
    assert np.array_equal(a[2]["sample"], b[2]["sample"])
    assert not np.array_equal(a[0], c[0])


def test_rhythm_of_injected_beats():
    sig, fs, ann = make_synthetic_ecg(duration=600, heart_rate=60, hrv=0.02, s_rate=0.1,
                                      v_rate=0.1, random_state=0)
    sym, t = ann["symbol"], ann["sample"] / fs
    assert sig.shape == (int(600 * fs),)
    assert {"N", "A", "V"} == set(sym.tolist())
    rr = np.diff(t)
    pre, post = rr[:-1], rr[1:]
    s = sym[1:-1]
    normal = np.median(rr[(sym[1:] == "N") & (sym[:-1] == "N")])
    assert 0.9 < normal < 1.1
    # premature beats come early
    assert np.all(pre[s == "A"] < 0.85 * normal)
    assert np.all(pre[s == "V"] < 0.8 * normal)
    # V: compensatory pause (pre + post about two normal RR); A: no pause
    assert np.median((pre + post)[s == "V"]) == pytest.approx(2 * normal, rel=0.1)
    assert np.median((pre + post)[s == "A"]) < 1.8 * normal


def test_ventricular_beats_are_wide_and_have_no_p_wave():
    sig, fs, ann = make_synthetic_ecg(duration=120, v_rate=0.15, noise=0.0, baseline_wander=0.0,
                                      random_state=1)
    smp, sym = ann["sample"], ann["symbol"]

    def width(i):  # samples above half the QRS peak, around the R peak
        seg = np.abs(sig[smp[i] - 40: smp[i] + 40])
        return int((seg > 0.5 * seg.max()).sum())

    wn = np.median([width(i) for i in np.flatnonzero(sym == "N")[1:-1]])
    wv = np.median([width(i) for i in np.flatnonzero(sym == "V")])
    assert wv > 1.5 * wn


def test_example_records_regenerate_exactly(tmp_path):
    paths = main(["--out", str(tmp_path)])
    assert [p.rsplit("/", 1)[-1] for p in paths] == sorted(EXAMPLE_RECORDS)
    for shipped in example_records():
        name = shipped.rsplit("/", 1)[-1]
        for ext in (".dat", ".atr"):
            new = (tmp_path / (name + ext)).read_bytes()
            old = open(shipped + ext, "rb").read()
            if ext == ".dat" and new != old:
                # float rounding on another platform may move a sample by one ADC unit
                a, b = load_record(tmp_path / name), load_record(shipped)
                assert np.abs(a.signal - b.signal).max() <= 1 / 200 + 1e-9
            else:
                assert new == old, f"{name}{ext} differs from the shipped file"


def test_write_synthetic_record_round_trip(tmp_path):
    path = write_synthetic_record("rt", tmp_path, duration=20, v_rate=0.1, random_state=5)
    sig, fs, ann = make_synthetic_ecg(duration=20, v_rate=0.1, random_state=5)
    rec = load_record(path)
    assert rec.fs == fs and rec.leads == ["MLII"]
    assert np.abs(rec.signal[:, 0] - sig).max() <= 0.5 / 200 + 1e-9  # one ADC step at 200/mV
    assert np.array_equal(rec.ann_samples, ann["sample"])
    assert rec.ann_symbols.tolist() == ann["symbol"].tolist()


def test_example_records_content():
    paths = example_records()
    assert len(paths) == 3
    total = 0
    for p in paths:
        rec = load_record(p)
        assert rec.leads == ["MLII"] and rec.fs == 360.0
        assert 120 <= rec.duration <= 180
        assert {"N", "A", "V"} == set(rec.ann_symbols.tolist())
        for ext in (".hea", ".dat", ".atr"):
            total += len(open(p + ext, "rb").read())
    assert total < 1_000_000


@pytest.mark.parametrize("duration", [1 / 360, 0.01, 1.0])
def test_a_recording_too_short_for_a_beat_has_no_annotations(tmp_path, duration):
    sig, fs, ann = make_synthetic_ecg(duration=duration, random_state=0)
    assert sig.shape == (round(duration * 360),) and np.isfinite(sig).all()
    assert ann["sample"].dtype == np.int64 and ann["sample"].shape == (0,)
    assert ann["symbol"].shape == (0,)
    # written without an .atr (WFDB has no empty one), and a stale one is not left behind
    write_synthetic_record("short", tmp_path, duration=20, random_state=0)
    path = write_synthetic_record("short", tmp_path, duration=duration, random_state=0)
    rec = load_record(path)
    assert rec.signal.shape == (len(sig), 1) and not rec.has_annotations


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"duration": 0}, "duration must be a positive number"),
        ({"duration": float("nan")}, "duration must be a positive number"),
        ({"duration": 0.001}, "holds no sample"),
        ({"fs": -360.0}, "fs must be a positive number"),
        ({"heart_rate": 0}, "heart_rate must be a positive number"),
        ({"v_rate": -0.1}, "v_rate must be a non-negative number"),
        ({"s_rate": 0.6, "v_rate": 0.6}, "s_rate \\+ v_rate must be at most 1"),
        ({"noise": float("inf")}, "noise must be a non-negative number"),
    ],
)
def test_make_synthetic_ecg_rejects_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_ecg(**{"duration": 10, **params})
