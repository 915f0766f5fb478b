"""sigflow.ecg: beat segmentation, features and load_beats."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from sigflow.ecg import Beats, example_records, load_beats, load_record, segment_beats


def test_load_beats_shapes_and_labels():
    paths = example_records()
    X, y, groups = load_beats(paths)
    n = sum(int(len(load_record(p).ann_samples)) for p in paths)
    assert X.shape == (n, 31) and X.dtype == np.float64
    assert y.shape == groups.shape == (n,)
    assert np.isfinite(X).all()
    assert sorted(set(y.tolist())) == ["N", "S", "V"]
    assert sorted(set(groups.tolist())) == ["synth01", "synth02", "synth03"]


def test_load_beats_single_record_and_samples():
    path = example_records()[0]
    X, y, groups, samples = load_beats(path, return_samples=True)
    rec = load_record(path)
    assert np.array_equal(samples, rec.ann_samples)
    assert (y == "V").sum() == (rec.ann_symbols == "V").sum()
    assert (y == "S").sum() == (rec.ann_symbols == "A").sum()


def test_segment_beats_feature_names_and_times():
    beats = segment_beats(example_records()[1])
    assert isinstance(beats, Beats)
    assert len(beats.feature_names) == beats.features.shape[1]
    assert beats.feature_names[:2] == ["morph_00", "morph_01"]
    assert "log_pre_rr_local" in beats.feature_names
    assert np.allclose(beats.times, beats.samples / 360.0)
    assert beats.annotated and beats.lead == "MLII"


def test_rhythm_features_separate_premature_beats():
    beats = segment_beats(example_records()[1])
    f = beats.features[:, beats.feature_names.index("log_pre_rr_local")]
    lab = beats.labels
    assert f[lab == "S"].max() < np.percentile(f[lab == "N"], 5)
    pause = beats.features[:, beats.feature_names.index("log_post_pre")]
    assert np.median(pause[lab == "V"]) > 0.3  # compensatory pause after V


def test_morphology_separates_ventricular_beats():
    beats = segment_beats(example_records()[2])
    morph = beats.features[:, : 24]
    dist = np.linalg.norm(morph, axis=1)  # distance to the record's median beat
    lab = beats.labels
    assert dist[lab == "V"].min() > np.percentile(dist[lab == "N"], 95)
    # the median normal beat is near the record template
    assert np.median(dist[lab == "N"]) < 0.5 * np.median(dist[lab == "V"])


def test_adaptation_makes_records_comparable():
    """Per-record adaptation: normal beats of different 'patients' overlap."""
    X, y, groups = load_beats(example_records())
    Xr, _, _ = load_beats(example_records(), adapt=False)
    names = sorted(set(groups.tolist()))

    def spread(Z):  # between-record spread of the normal-beat means / within-record spread
        means = np.array([Z[(groups == g) & (y == "N")].mean(axis=0) for g in names])
        within = np.mean([Z[(groups == g) & (y == "N")].std(axis=0) for g in names], axis=0)
        return np.mean(means.std(axis=0) / (within + 1e-9))

    assert spread(X) < 0.5 * spread(Xr)


def test_detected_beats_without_annotations():
    path = example_records()[0]
    ann = segment_beats(path)
    det = segment_beats(path, use_annotations=False)
    assert not det.annotated and set(det.labels.tolist()) == {""}
    assert set(det.symbols.tolist()) == {""}
    assert abs(len(det) - len(ann)) <= 1
    # features of matched beats are close (the detector lands on the R wave)
    j = np.abs(det.samples[None, :] - ann.samples[:, None]).argmin(axis=1)
    close = np.abs(det.samples[j] - ann.samples) <= 3
    assert close.mean() > 0.95
    assert np.median(np.abs(det.features[j[close]] - ann.features[close])) < 0.05


def test_feature_options():
    path = example_records()[0]
    b = segment_beats(path, n_morphology=10, window=(0.2, 0.3), local_beats=5)
    assert b.features.shape[1] == 10 + 2 + 5
    raw = segment_beats(path, adapt=False)
    assert "pre_rr" in raw.feature_names
    pre = raw.features[:, raw.feature_names.index("pre_rr")]
    assert 0.5 < np.median(pre) < 1.5  # seconds


def test_invalid_samples_drop_only_the_beats_they_touch():
    import dataclasses

    rec = load_record(example_records()[0])
    clean = segment_beats(rec)
    signal = rec.signal.copy()
    lead = rec.lead_index("MLII")
    gap = slice(len(signal) // 2, len(signal) // 2 + 200)  # 0.56 s of invalid samples
    signal[gap, lead] = np.nan
    signal[gap.stop + 3000, lead] = np.inf  # and one isolated bad sample
    bad = np.zeros(len(signal), dtype=bool)
    bad[gap] = True
    bad[gap.stop + 3000] = True
    with pytest.warns(UserWarning, match=r"beats lie at invalid \(NaN or infinite\) samples"):
        gappy = segment_beats(dataclasses.replace(rec, signal=signal))
    before, after = round(0.25 * rec.fs), round(0.45 * rec.fs)
    touched = np.array([bad[max(s - before, 0): s + after].any() for s in clean.samples])
    assert 1 <= touched.sum() < 10
    assert np.array_equal(gappy.samples, clean.samples[~touched])
    assert np.array_equal(gappy.labels, clean.labels[~touched])
    assert np.isfinite(gappy.features).all()
    # beats far from the bad samples keep their description (the median beat and the
    # scales move a little with the beats left out)
    far = np.array([np.abs(s - np.flatnonzero(bad)).min() > 5 * rec.fs for s in gappy.samples])
    kept = clean.features[~touched]
    assert far.sum() > 0.8 * len(far)
    assert np.median(np.abs(gappy.features[far] - kept[far])) < 0.02


def test_a_beat_annotated_twice_is_one_beat_with_a_warning():
    # annotation files that label each beat on two channels repeat every sample: each beat
    # was two rows, every other RR interval 0, and the record's rhythm scale with it
    import dataclasses

    rec = load_record(example_records()[0])
    clean = segment_beats(rec)
    symbols = rec.ann_symbols.copy()
    twice = dataclasses.replace(
        rec, ann_samples=np.concatenate([rec.ann_samples, rec.ann_samples]),
        ann_symbols=np.concatenate([rec.ann_symbols, symbols]),
    )
    n_repeated = len(rec.ann_samples)
    with pytest.warns(UserWarning, match=rf"{n_repeated} beat annotation\(s\) repeat"):
        beats = segment_beats(twice)
    np.testing.assert_array_equal(beats.samples, clean.samples)
    np.testing.assert_array_equal(beats.labels, clean.labels)
    np.testing.assert_allclose(beats.features, clean.features)
    # the first label of a beat is kept, and a disagreement is counted
    beat = np.flatnonzero(np.isin(rec.ann_samples, clean.samples))[0]
    second = dataclasses.replace(rec, ann_samples=np.r_[rec.ann_samples, rec.ann_samples[beat]],
                                 ann_symbols=np.r_[rec.ann_symbols, ["V"]])
    with pytest.warns(UserWarning, match="1 of them had a different label"):
        np.testing.assert_array_equal(segment_beats(second).symbols, clean.symbols)


@pytest.mark.parametrize("value", [0.0, "clip"])
def test_beats_at_flat_stretches_are_left_out_with_a_warning(value):
    # A lead off (zeros) or an amplifier clipped at its top for a while: annotated beats
    # there have no QRS, and their features at the floor pulled a detector's threshold.
    import dataclasses

    rec = load_record(example_records()[0])
    clean = segment_beats(rec)
    lead = rec.lead_index("MLII")
    signal = rec.signal.copy()
    flat = slice(len(signal) // 3, len(signal) // 3 + int(10 * rec.fs))
    signal[flat, lead] = signal[:, lead].max() if value == "clip" else value
    with pytest.warns(UserWarning, match=r"beats lie in flat stretches of lead MLII"):
        beats = segment_beats(dataclasses.replace(rec, signal=signal))
    before, after = round(0.25 * rec.fs), round(0.45 * rec.fs)
    touched = (clean.samples + after > flat.start) & (clean.samples - before < flat.stop)
    assert touched.sum() >= 10
    assert np.array_equal(beats.samples, clean.samples[~touched])
    amp = beats.features[:, beats.feature_names.index("qrs_amplitude")]
    assert amp.min() > np.log(0.2)  # no beat without a QRS is described
    # a short run of one value (the top of a clipped R wave, a quantised baseline) is kept
    signal = rec.signal.copy()
    signal[flat.start: flat.start + int(0.2 * rec.fs), lead] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short = segment_beats(dataclasses.replace(rec, signal=signal))
    assert np.array_equal(short.samples, clean.samples)


def test_segment_beats_of_a_lead_without_finite_samples_is_empty_with_a_warning():
    import dataclasses

    rec = load_record(example_records()[0])
    signal = rec.signal.copy()
    signal[:, rec.lead_index("MLII")] = np.nan
    with pytest.warns(UserWarning, match="lead MLII holds no finite sample"):
        beats = segment_beats(dataclasses.replace(rec, signal=signal))
    clean = segment_beats(rec)
    assert len(beats) == 0 and beats.features.shape == (0, clean.features.shape[1])
    assert beats.feature_names == clean.feature_names and beats.annotated
    assert beats.lead == "MLII" and beats.channel == clean.channel


@pytest.mark.parametrize("n_morphology", [0, 253, 2.5, True])
def test_segment_beats_rejects_bad_morphology_bins(n_morphology):
    # the default window is 0.7 s: 252 samples at 360 Hz
    with pytest.raises(ValueError, match="n_morphology must be an integer from 1 to the 252"):
        segment_beats(example_records()[0], n_morphology=n_morphology)


def test_load_beats_refuses_records_that_share_a_name(tmp_path):
    # two patients saved under the same record name would be one GroupKFold group
    import shutil

    for folder, src in (("pA", example_records()[0]), ("pB", example_records()[1])):
        (tmp_path / folder).mkdir()
        for ext in (".hea", ".dat", ".atr"):
            shutil.copy(src + ext, tmp_path / folder / ("ecg" + ext))
        (tmp_path / folder / "ecg.hea").write_text(
            (tmp_path / folder / "ecg.hea").read_text().replace(
                src.rsplit("/", 1)[-1], "ecg"
            )
        )
    paths = [tmp_path / "pA" / "ecg", tmp_path / "pB" / "ecg"]
    assert [load_record(p).name for p in paths] == ["ecg", "ecg"]
    with pytest.raises(ValueError, match="same name would be one group: ecg"):
        load_beats(paths)
    X, _, groups = load_beats(paths[:1])
    assert set(groups) == {"ecg"} and len(X) > 0


def test_segment_beats_of_a_flat_annotated_lead_is_empty_with_a_warning():
    import dataclasses

    rec = load_record(example_records()[0])
    assert rec.has_annotations
    flat = dataclasses.replace(rec, signal=np.full_like(rec.signal, 0.25))
    with pytest.warns(UserWarning, match="lead MLII is flat"):
        beats = segment_beats(flat)
    assert len(beats) == 0 and beats.annotated


def test_load_beats_rejects_empty():
    with pytest.raises(ValueError, match="no records"):
        load_beats([])


@pytest.mark.shared_data
def test_mitdb_two_records(shared_data):
    names = ["106", "119"]
    X, y, groups = load_beats([shared_data / "mitdb" / n for n in names])
    assert set(groups.tolist()) == set(names)
    assert np.isfinite(X).all()
    # V beats of these two records are far from their record's median beat
    dist = np.linalg.norm(X[:, :24], axis=1)
    assert np.median(dist[y == "V"]) > 3 * np.median(dist[y == "N"])


# --- records whose annotations hold no beat labels, parameter checks -----------------------


def _write_record(folder, name, signal, fs, *, ann_samples=None, ann_symbols=None, aux=None):
    """A real WFDB record (``.hea``/``.dat``, optional ``.atr``) written with wfdb."""
    import warnings

    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim == 1:
        signal = signal[:, None]
    n_sig = signal.shape[1]
    with warnings.catch_warnings():  # wfdb's own pandas deprecation warnings
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")
        import wfdb

        wfdb.wrsamp(name, fs=fs, units=["mV"] * n_sig,
                    sig_name=[f"ECG{i + 1}" for i in range(n_sig)], p_signal=signal,
                    fmt=["16"] * n_sig, adc_gain=[200.0] * n_sig, baseline=[0] * n_sig,
                    write_dir=str(folder))
        if ann_samples is not None:
            wfdb.wrann(name, "atr", np.asarray(ann_samples), symbol=list(ann_symbols),
                       aux_note=aux, write_dir=str(folder))
    return str(folder / name)


def test_rhythm_only_annotations_fall_back_to_detection(tmp_path):
    # PhysioNet afdb/vfdb annotation files hold rhythm changes ('+' with "(AFIB") only
    from sigflow.ecg import make_synthetic_ecg

    sig, fs, ann = make_synthetic_ecg(duration=30, random_state=0)
    path = _write_record(tmp_path, "af1", sig, fs, ann_samples=[10, 5000],
                         ann_symbols=["+", "+"], aux=["(N", "(AFIB"])
    rec = load_record(path)
    assert rec.has_annotations and len(rec.ann_samples) == 2
    with pytest.warns(UserWarning, match=r"record af1: its annotations hold no beat labels"):
        beats = segment_beats(rec, lead=0)
    assert not beats.annotated
    assert abs(len(beats) - len(ann["sample"])) <= 1
    assert set(beats.labels.tolist()) == {""} and set(beats.symbols.tolist()) == {""}
    # the same beats as for a record without annotations
    assert np.array_equal(beats.samples, segment_beats(rec, lead=0, use_annotations=False).samples)
    with pytest.warns(UserWarning, match="no beat labels"):
        X, y, groups = load_beats([path], lead=0)
    assert len(X) == len(beats) and set(y.tolist()) == {""} and set(groups.tolist()) == {"af1"}


@pytest.mark.parametrize("local_beats", [0, -3, 2.5, True, "10"])
def test_segment_beats_rejects_bad_local_beats(local_beats):
    with pytest.raises(ValueError, match=r"local_beats must be a positive integer"):
        segment_beats(example_records()[0], local_beats=local_beats)


@pytest.mark.parametrize("window", [(-0.1, 0.3), (0.2, 0.0), (0.2, -0.1), (0.2,), 0.5,
                                    (0.2, float("nan")), ("a", 0.3)])
def test_segment_beats_rejects_bad_window(window):
    with pytest.raises(ValueError, match=r"window must be"):
        segment_beats(example_records()[0], window=window)


def test_segment_beats_window_limits():
    path = example_records()[0]
    # nothing before the R peak is a valid window (it starts at the R peak)
    beats = segment_beats(path, window=(0, 0.2), n_morphology=12)
    assert beats.features.shape[1] == 12 + 2 + 5 and np.isfinite(beats.features).all()
    with pytest.raises(ValueError, match=r"covers no sample after the R peak"):
        segment_beats(path, window=(0.2, 0.001), n_morphology=4)


def test_segment_beats_rejects_an_unknown_detector_even_with_annotations():
    with pytest.raises(ValueError, match=r"detector must be one of"):
        segment_beats(example_records()[0], detector="foo")


def test_beats_know_their_channel():
    import dataclasses

    rec = load_record(example_records()[0])
    two = dataclasses.replace(rec, signal=np.column_stack([rec.signal[:, 0] * 0.5,
                                                           rec.signal[:, 0]]),
                              leads=["ECG", "ECG"], units=["mV", "mV"])
    assert segment_beats(two, lead=1).channel == 1
    assert segment_beats(two, lead=0).channel == 0
    assert segment_beats(rec).channel == 0


def test_local_rr_is_the_median_of_the_intervals_before_the_pre_rr():
    from sigflow.ecg._beats import _rhythm

    fs = 360.0
    rr = np.array([1.0, 0.9, 1.1, 0.8, 1.2, 0.3, 1.7, 1.0, 0.95, 1.05])  # a premature 0.3 s
    samples = np.round(np.concatenate([[0.0], np.cumsum(rr)]) * fs).astype(np.int64)
    pre, post, local, _ = _rhythm(samples, fs, local_beats=3)
    r = np.diff(samples) / fs
    med = np.median(r)
    for i in range(2, len(samples)):
        # beat i's own pre-RR is r[i - 1]; its local rhythm, the 3 intervals before that one,
        # made up to 3 with the record's median RR at the start of the record
        previous = r[max(0, i - 4): i - 1]
        previous = np.r_[previous, np.full(3 - len(previous), med)]
        assert local[i] == np.median(previous), i
    # the third beat's local rhythm is not the one premature interval before its own
    samples = np.round(np.cumsum(np.r_[0.0, 0.4, 1.0, 1.0, 1.0, 1.0, 1.0]) * fs).astype(int)
    _, _, local, med = _rhythm(samples, fs, local_beats=3)
    assert local[2] == med == 1.0
    np.testing.assert_allclose(pre[1:], r)
    np.testing.assert_allclose(post[:-1], r)


def test_a_lead_asked_for_must_exist():
    # a typo'd lead gave channel 0's beats with only a warning, which a batch script with
    # warnings filtered would never see; only the default (MLII) falls back
    rec = load_record(example_records()[0])
    for lead in ("V9", 5, "5"):
        with pytest.raises(ValueError, match=r"has no lead .*; its leads: MLII"):
            segment_beats(rec, lead=lead)
        with pytest.raises(ValueError, match=r"has no lead"):
            load_beats(example_records()[:1], lead=lead)
    assert segment_beats(rec, lead="mlii").lead == segment_beats(rec, lead=0).lead == "MLII"
    renamed = dataclasses.replace(rec, leads=["V1"])
    with pytest.warns(UserWarning, match="has no lead 'MLII'.*using channel 0 \\(V1\\)"):
        assert segment_beats(renamed).lead == "V1"
