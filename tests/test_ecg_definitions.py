"""sigflow.ecg: R peaks, beat features and the band-pass checked against their definitions
(tests that kill mutants the rest of the suite let through)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import scipy.signal

from sigflow.ecg import (
    bandpass_ecg,
    detect_r_peaks,
    example_records,
    load_record,
    make_synthetic_ecg,
    rpeak_accuracy,
    segment_beats,
)


# ---------------- R peaks
def test_inverted_lead_peaks_sit_on_the_r_wave():
    rec = load_record(example_records()[0])
    peaks = detect_r_peaks(-rec.signal[:, 0], rec.fs)
    assert rpeak_accuracy(rec.ann_samples, peaks, rec.fs, tolerance=0.02)["sensitivity"] >= 0.95


@pytest.mark.parametrize("seconds", [1.0, 1.99])
def test_signals_under_two_seconds_warn_and_give_nothing(seconds):
    sig, fs, _ = make_synthetic_ecg(duration=10, random_state=0)
    with pytest.warns(UserWarning, match="shorter than the 2 s"):
        assert detect_r_peaks(sig[: int(seconds * fs)], fs).size == 0


def test_detection_with_gaps_ignores_a_dc_offset():
    sig, fs, ann = make_synthetic_ecg(duration=60, random_state=1)
    x = sig.copy()
    for a in (10, 25, 40):
        x[int(a * fs): int((a + 1) * fs)] = np.nan
    ref = detect_r_peaks(x, fs)
    np.testing.assert_array_equal(detect_r_peaks(x + 5.0, fs), ref)


def test_a_long_noise_stretch_a_hundredth_of_the_qrs_gets_no_peaks():
    sig, fs, _ = make_synthetic_ecg(duration=120, random_state=4)
    a, b = int(30 * fs), int(90 * fs)
    x = sig.copy()
    x[a:b] = np.random.default_rng(0).normal(0.0, np.ptp(sig) / 100, b - a)
    peaks = detect_r_peaks(x, fs)
    assert not np.any((peaks > a + fs) & (peaks < b - fs))


def test_tall_t_waves_after_large_beats_are_rejected():
    sig, fs, ann = make_synthetic_ecg(duration=120, random_state=0, noise=0.01)
    t = np.arange(len(sig)) / fs
    x, R = sig.copy(), np.ptp(sig)
    for s in ann["sample"][::5]:  # every 5th beat: a 3x QRS and a tall T wave 300 ms later
        x[s - int(0.06 * fs): s + int(0.06 * fs)] *= 3.0
        x += 1.5 * R * np.exp(-0.5 * ((t - s / fs - 0.3) / 0.03) ** 2)
    res = rpeak_accuracy(ann["sample"], detect_r_peaks(x, fs), fs)
    assert res["fp"] == 0 and res["fn"] == 0, res


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["108", "203"])
def test_no_two_detections_within_the_refractory_period(shared_data, name):
    rec = load_record(shared_data / "mitdb" / name)
    peaks = detect_r_peaks(rec.signal[:, rec.lead_index("MLII")], rec.fs)
    assert np.diff(peaks).min() > 0.2 * rec.fs


# ---------------- beat features against their documented definition
def _reference(rec, samples, keep, before, after, n_bins, local_beats=10):
    x = bandpass_ecg(rec.signal[:, 0], rec.fs)
    q = max(round(0.06 * rec.fs), 1)
    edges = np.linspace(0, before + after, n_bins + 1).round().astype(int)
    idx = np.clip(samples[:, None] + np.arange(-before, after)[None], 0, len(x) - 1)
    win = x[idx]
    morph = np.stack([win[:, a:b].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], 1)
    ptp = np.ptp(win[:, before - q: before + q + 1], axis=1)
    scale = np.median(ptp[keep])
    morph /= scale
    tmpl = np.median(morph[keep], axis=0)
    corr = np.array([np.corrcoef(m, tmpl)[0, 1] for m in morph])
    amp = np.log(ptp / scale)
    rr = np.diff(samples) / rec.fs
    med = np.median(rr)
    pre, post = np.r_[med, rr], np.r_[rr, med]
    def local_rr(i):  # the previous intervals, made up to local_beats with the median
        previous = rr[max(0, i - 1 - local_beats): i - 1]
        return np.median(np.r_[previous, np.full(local_beats - len(previous), med)])

    local = np.array([med if i < 2 else local_rr(i) for i in range(len(samples))])
    rh = np.column_stack([np.log(pre / med), np.log(post / med), np.log(pre / local),
                          np.log(post / pre), np.log(local / med)])
    mad = np.median(np.abs(rh[keep] - np.median(rh[keep], 0)), 0)
    rh /= np.maximum(1.4826 * mad, 0.02)
    return np.column_stack([morph - tmpl, amp, corr, rh])[keep]


def test_features_follow_their_definition():
    rec = load_record(example_records()[2])
    beats = segment_beats(rec)
    s = rec.ann_samples
    ref = _reference(rec, s, np.ones(len(s), bool), 90, 162, 24)
    np.testing.assert_allclose(beats.features, ref, rtol=1e-7, atol=1e-9)


def test_record_statistics_use_only_the_beats_kept():
    rec = load_record(example_records()[2])
    sig = rec.signal.copy()
    a, b = len(sig) // 4, len(sig) // 4 + int(40 * rec.fs)  # 40 s lead off
    sig[a:b, 0] = 0.0
    rec2 = dataclasses.replace(rec, signal=sig)
    with pytest.warns(UserWarning, match="flat stretches"):
        beats = segment_beats(rec2)
    s = rec.ann_samples
    keep = ~((s + 162 > a) & (s - 90 < b))
    ref = _reference(rec2, s, keep, 90, 162, 24)
    np.testing.assert_allclose(beats.features, ref, rtol=1e-7, atol=1e-9)


def test_a_clipped_stretch_of_0_4_s_drops_its_beat():
    # MIT-BIH's clipped stretches last up to 0.47 s
    rec = load_record(example_records()[0])
    s = rec.ann_samples[20]
    sig = rec.signal.copy()
    sig[s - 20: s - 20 + int(0.4 * rec.fs), 0] = sig[:, 0].max()
    with pytest.warns(UserWarning, match="flat stretches"):
        beats = segment_beats(dataclasses.replace(rec, signal=sig))
    assert s not in beats.samples


def test_features_with_gaps_ignore_a_dc_offset():
    rec = load_record(example_records()[0])
    sig = rec.signal.copy()
    for a in (5000, 20000, 40000):
        sig[a: a + 300, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f0 = segment_beats(dataclasses.replace(rec, signal=sig)).features
        f1 = segment_beats(dataclasses.replace(rec, signal=sig + 3.0)).features
    np.testing.assert_allclose(f1, f0, atol=1e-6)


def test_annotation_order_does_not_matter():
    rec = load_record(example_records()[1])
    perm = np.random.default_rng(0).permutation(len(rec.ann_samples))
    shuffled = dataclasses.replace(rec, ann_samples=rec.ann_samples[perm],
                                   ann_symbols=rec.ann_symbols[perm])
    a, b = segment_beats(rec), segment_beats(shuffled)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.features, b.features)


def test_bandpass_ecg_is_scipys_sosfiltfilt():
    # padded by even extension over 2 s (at 0.5 Hz), not scipy's odd one of 15 samples
    x = np.random.default_rng(0).normal(size=(3000, 2))
    sos = scipy.signal.butter(2, [0.5, 40.0], btype="bandpass", fs=360, output="sos")
    np.testing.assert_allclose(bandpass_ecg(x, 360),
                               scipy.signal.sosfiltfilt(sos, x, axis=0, padtype="even",
                                                        padlen=720),
                               rtol=1e-12, atol=1e-12)


def test_beats_near_the_record_ends():
    # A beat whose window runs past the end is left out: its missing part had been the edge
    # sample repeated, and the last beat of most MIT-BIH records was their most abnormal.
    rec = load_record(example_records()[0])
    full = segment_beats(rec)
    s = int(full.samples[len(full) // 2])
    for cut_after, kept in ((0.2, False), (0.6, True)):
        end = s + int(cut_after * rec.fs)
        inside = rec.ann_samples < end
        short = segment_beats(dataclasses.replace(rec, signal=rec.signal[:end],
                                                  ann_samples=rec.ann_samples[inside],
                                                  ann_symbols=rec.ann_symbols[inside]))
        assert (short.samples[-1] == s) == kept and short.samples[-1] <= s


def test_the_filter_keeps_the_last_beats_of_a_record():
    # The beats of a record's last second, filtered with the record cut there, against the
    # same beats filtered inside the whole record. scipy's default padding (an odd extension
    # of 15 samples) was off by 4-5 % of the beat's size (median) and up to 49 %.
    rec = load_record(example_records()[0])
    x, fs = rec.signal[:, 0], rec.fs
    whole = bandpass_ecg(x, fs)
    errors = []
    for s in rec.ann_samples[10:-10:7]:
        lo, hi = s - int(0.25 * fs), s + int(0.45 * fs)
        for cut_after in (0.5, 0.6, 0.8, 1.0):
            cut = bandpass_ecg(x[: s + int(cut_after * fs)], fs)
            errors.append(np.abs(cut[lo:hi] - whole[lo:hi]).max() / np.ptp(whole[lo:hi]))
    assert np.median(errors) < 0.02 and max(errors) < 0.1



