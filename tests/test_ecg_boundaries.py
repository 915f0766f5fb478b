"""sigflow.ecg: boundaries and edge cases of beat segmentation, R-peak detection, record
loading and filtering (window edges, exact feature values against a plain reimplementation,
run lengths, rounding of rescaled annotations, filter padding against scipy)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from sigflow.ecg import (
    ECGRecord,
    RecordFormatError,
    bandpass_ecg,
    detect_r_peaks,
    example_records,
    load_beats,
    load_record,
    make_synthetic_ecg,
    rpeak_accuracy,
    segment_beats,
)

# --- beat segmentation ------------------------------------------------------------------------


def _reference_features(rec, window=(0.25, 0.45), n_morphology=24, local_beats=10,
                        adapt=True):
    """The features segment_beats documents, computed beat by beat with plain loops: the
    kept beats (window inside the record, no invalid sample in it), and their features."""
    fs = rec.fs
    raw = np.asarray(rec.signal[:, 0], dtype=np.float64)
    bad = ~np.isfinite(raw)
    idx = np.arange(len(raw))
    raw = raw.copy()
    raw[bad] = np.interp(idx[bad], idx[~bad], raw[~bad])
    x = bandpass_ecg(raw, fs, low=0.5, high=40.0)
    samples = np.sort(rec.ann_samples)
    before, after = round(window[0] * fs), round(window[1] * fs)
    keep = np.array([s - before >= 0 and s + after <= len(x)
                     and not bad[s - before: s + after].any() for s in samples])
    length = before + after
    edges = [int(round(length * k / n_morphology)) for k in range(n_morphology + 1)]
    q = round(0.06 * fs)
    morph, ptp = [], []
    for s in samples[keep]:
        w = x[s - before: s + after]
        morph.append([w[edges[k]: edges[k + 1]].mean() for k in range(n_morphology)])
        qrs = w[before - q: before + q + 1]
        ptp.append(qrs.max() - qrs.min())
    morph, ptp = np.array(morph), np.array(ptp)
    scale = np.median(ptp)
    morph = morph / scale
    template = np.median(morph, axis=0)
    corr = np.array([np.corrcoef(m, template)[0, 1] for m in morph])
    amp = np.log(ptp / scale)
    rr = np.diff(samples) / fs
    med = np.median(rr)
    n = len(samples)
    pre = np.array([rr[i - 1] if i > 0 else med for i in range(n)])
    post = np.array([rr[i] if i < n - 1 else med for i in range(n)])
    local = np.full(n, med)
    for i in range(2, n):
        prev = [rr[i - 1 - k] if i - 1 - k >= 0 else med for k in range(1, local_beats + 1)]
        local[i] = np.median(prev)
    if adapt:
        rhythm = np.column_stack([np.log(pre / med), np.log(post / med), np.log(pre / local),
                                  np.log(post / pre), np.log(local / med)])[keep]
        spread = 1.4826 * np.median(np.abs(rhythm - np.median(rhythm, axis=0)), axis=0)
        rhythm = rhythm / np.maximum(spread, 0.02)
        morph = morph - template
    else:
        rhythm = np.column_stack([pre, post, local, post / pre, np.full(n, med)])[keep]
    return samples[keep], np.column_stack([morph, amp, corr, rhythm])


def _cut_record():
    """Part of an example record cut so that its first and last beats lie closer to the ends
    than the window (0.25 s before, 0.45 s after), with a NaN gap and unsorted annotations."""
    whole = load_record(example_records()[0])
    s = whole.ann_samples
    # start 60 samples before the 3rd beat (< 90: it is cut), end 100 samples after the 60th
    rec = whole.part(int(s[2]) - 60, int(s[59]) + 100)
    signal = rec.signal.copy()
    signal[5000:5040, 0] = np.nan
    order = np.random.default_rng(0).permutation(len(rec.ann_samples))
    return dataclasses.replace(rec, signal=signal, ann_samples=rec.ann_samples[order],
                               ann_symbols=rec.ann_symbols[order])


@pytest.mark.parametrize("adapt", [True, False])
def test_features_match_a_plain_reimplementation(adapt):
    # every documented feature, exactly, on a record whose end beats and a beat at a gap are
    # left out (the median beat, the scales and the spreads come from the kept beats only;
    # the rhythm from all of them)
    rec = _cut_record()
    with pytest.warns(UserWarning, match="invalid"):
        beats = segment_beats(rec, adapt=adapt, local_beats=3)
    samples, expected = _reference_features(rec, local_beats=3, adapt=adapt)
    assert len(samples) < len(rec.ann_samples) - 2  # both ends and the gap cost beats
    np.testing.assert_array_equal(beats.samples, samples)
    np.testing.assert_allclose(beats.features, expected, rtol=1e-9, atol=1e-9)
    assert np.all(np.diff(beats.samples) > 0)


def test_features_with_few_bins_and_an_uneven_window():
    # bin edges are rounded (not floored) and the window is [R - pre, R + post)
    rec = load_record(example_records()[1]).part(0, 20_000)
    beats = segment_beats(rec, window=(0.1, 0.2), n_morphology=7, local_beats=1)
    samples, expected = _reference_features(rec, window=(0.1, 0.2), n_morphology=7,
                                            local_beats=1)
    np.testing.assert_array_equal(beats.samples, samples)
    np.testing.assert_allclose(beats.features, expected, rtol=1e-9, atol=1e-9)


def _record_with_beats(samples, n=7200, fs=360.0):
    sig, _, _ = make_synthetic_ecg(duration=n / fs, fs=fs, random_state=1)
    return ECGRecord(name="edge", signal=sig[:n, None], fs=fs, leads=["MLII"],
                     ann_samples=np.asarray(samples), ann_symbols=np.full(len(samples), "N"))


def test_a_window_that_just_fits_keeps_its_beat():
    # window (0.25, 0.45) at 360 Hz: 90 samples before the R peak, 162 from it on; a beat at
    # 90 or at n - 162 fits exactly, one sample further out does not
    n = 7200
    kept = segment_beats(_record_with_beats([90, 1000, 2000, 3000, n - 162], n)).samples
    np.testing.assert_array_equal(kept, [90, 1000, 2000, 3000, n - 162])
    cut = segment_beats(_record_with_beats([89, 1000, 2000, 3000, n - 161], n)).samples
    np.testing.assert_array_equal(cut, [1000, 2000, 3000])


@pytest.mark.parametrize("offset, kept", [(-91, True), (-90, False), (161, False), (162, True)])
def test_an_invalid_sample_drops_a_beat_only_inside_its_window(offset, kept):
    # the window of the beat at 3000 is samples 2910 ... 3161
    rec = _record_with_beats([1000, 2000, 3000, 4000, 5000])
    signal = rec.signal.copy()
    signal[3000 + offset, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        beats = segment_beats(dataclasses.replace(rec, signal=signal))
    assert (3000 in beats.samples) == kept
    assert {1000, 2000, 4000, 5000} <= set(beats.samples.tolist())


def test_a_flat_stretch_drops_only_the_beats_whose_window_touches_it():
    # 0.25 s at 360 Hz is 90 samples of one value; the stretch ends just before the window of
    # the beat at 3000 (2910), and starts just after the window of the beat at 2000 (... 2161)
    rec = _record_with_beats([1000, 2000, 3000, 4000])
    signal = rec.signal.copy()
    signal[2162:2910, 0] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        beats = segment_beats(dataclasses.replace(rec, signal=signal))
    np.testing.assert_array_equal(beats.samples, [1000, 2000, 3000, 4000])  # none touched
    signal[2910, 0] = 0.0  # one sample more reaches the window of the beat at 3000
    with pytest.warns(UserWarning, match="1 of 4 beats lie in flat stretches"):
        beats = segment_beats(dataclasses.replace(rec, signal=signal))
    np.testing.assert_array_equal(beats.samples, [1000, 2000, 4000])


@pytest.mark.parametrize("fs", [360.0, 250.0])
def test_a_flat_stretch_is_a_quarter_second_of_one_value_or_more(fs):
    # 0.25 s of one value is flat (90 samples at 360 Hz, 62.5 rounded up to 63 at 250 Hz);
    # one sample less is a quantised baseline or the top of an R wave
    n_flat = int(np.ceil(0.25 * fs))
    rec = _record_with_beats([int(fs * k) for k in (3, 6, 9, 12)], n=int(15 * fs), fs=fs)
    start = int(6 * fs) + 5  # inside the window of the beat at 6 s only
    for length, dropped in ((n_flat - 1, False), (n_flat, True)):
        signal = rec.signal.copy()
        signal[start: start + length, 0] = signal[start - 1, 0]  # one value, length + 1 times
        signal[start - 1, 0] += 1.0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            beats = segment_beats(dataclasses.replace(rec, signal=signal))
        assert (int(6 * fs) not in beats.samples) == dropped
        assert any("flat stretches" in str(w.message) for w in caught) == dropped
        assert len(beats) == 4 - dropped


def test_the_longest_window_and_the_slowest_rate_are_accepted():
    rec = load_record(example_records()[0]).part(0, 10_000)
    # 90 + 162 samples: one bin per sample is the finest morphology
    beats = segment_beats(rec, n_morphology=252)
    assert beats.features.shape[1] == 252 + 7
    # one sample after the R peak is a window
    assert segment_beats(rec, window=(0.1, 1 / 360), n_morphology=2).features.shape[1] == 9
    # 50 Hz is the slowest rate an ECG lead is read at
    sig, fs, ann = make_synthetic_ecg(duration=30, fs=50.0, random_state=0)
    slow = ECGRecord(name="slow", signal=sig[:, None], fs=fs, leads=["MLII"],
                     ann_samples=ann["sample"], ann_symbols=np.asarray(ann["symbol"]))
    assert len(segment_beats(slow, n_morphology=4)) > 20
    with pytest.raises(ValueError, match="too slowly"):
        segment_beats(dataclasses.replace(slow, fs=49.9), n_morphology=4)


def test_a_single_morphology_bin_has_no_shape_to_correlate():
    # one bin per beat: every beat, and the median beat, is a constant, so the correlation
    # with the median beat is 0 (not 0 / 0)
    rec = load_record(example_records()[0]).part(0, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        beats = segment_beats(rec, n_morphology=1)
    corr = beats.features[:, beats.feature_names.index("template_corr")]
    np.testing.assert_array_equal(corr, 0.0)
    assert np.isfinite(beats.features).all()


def test_a_flat_lead_with_only_rhythm_annotations_is_not_annotated():
    rec = ECGRecord(name="flat", signal=np.zeros((3600, 1)), fs=360.0, leads=["MLII"],
                    ann_samples=np.array([10, 2000]), ann_symbols=np.array(["+", "~"]))
    with pytest.warns(UserWarning, match="flat"):
        beats = segment_beats(rec)
    assert len(beats) == 0 and not beats.annotated
    with pytest.warns(UserWarning, match="flat"):
        beats = segment_beats(dataclasses.replace(rec, ann_symbols=np.array(["+", "N"])))
    assert beats.annotated


def test_load_beats_accepts_records_of_different_names():
    # three records, three groups; a name given twice is refused even among others
    X, y, groups = load_beats(example_records())
    assert sorted(set(groups.tolist())) == ["synth01", "synth02", "synth03"]
    paths = example_records()
    with pytest.raises(ValueError, match="same name"):
        load_beats([paths[0], paths[1], paths[0]])


def test_fill_gaps_interpolates_linearly_and_leaves_an_all_invalid_lead():
    from sigflow.ecg._beats import _fill_gaps

    x = np.array([np.nan, 1.0, np.nan, np.nan, 4.0, np.inf, 8.0, np.nan])
    filled, bad = _fill_gaps(x)
    np.testing.assert_array_equal(filled, [1.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 8.0])
    np.testing.assert_array_equal(bad, ~np.isfinite(x))
    allbad = np.full(5, np.nan)
    filled, bad = _fill_gaps(allbad)
    assert bad.all() and np.isnan(filled).all()


def _runs_reference(x, min_run):
    mask = np.zeros(len(x), dtype=bool)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[j + 1] == x[i]:
            j += 1
        if j - i + 1 >= min_run:
            mask[i: j + 1] = True
        i = j + 1
    return mask


def test_flat_samples_are_the_runs_of_at_least_min_run_equal_values():
    from sigflow.ecg._beats import _flat_samples

    np.testing.assert_array_equal(_flat_samples(np.array([2.0, 2.0, 2.0]), 3), [True] * 3)
    np.testing.assert_array_equal(_flat_samples(np.array([2.0, 2.0]), 3), [False] * 2)
    np.testing.assert_array_equal(_flat_samples(np.array([1.0, 2, 2, 2, 3, 3]), 3),
                                  [False, True, True, True, False, False])
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = rng.integers(0, 3, rng.integers(0, 30)).astype(float)
        for min_run in (1, 2, 3, 4):
            np.testing.assert_array_equal(_flat_samples(x, min_run), _runs_reference(x, min_run))


def test_rhythm_of_repeated_or_single_samples():
    from sigflow.ecg._beats import _rhythm

    # intervals of 0 have no median to scale by: 1 s stands in, and each interval is at
    # least 1 ms (its log is finite)
    pre, post, local, med = _rhythm(np.array([5, 5, 5, 5]), 360.0, local_beats=2)
    assert med == 1.0
    np.testing.assert_array_equal(pre, [1.0, 1e-3, 1e-3, 1e-3])
    np.testing.assert_array_equal(post, [1e-3, 1e-3, 1e-3, 1.0])
    # the third beat: the one interval before its own, made up with the median
    np.testing.assert_array_equal(local, [1.0, 1.0, 0.5, 1e-3])
    pre, post, local, med = _rhythm(np.array([100]), 360.0, local_beats=3)
    assert med == 1.0 and pre.tolist() == post.tolist() == local.tolist() == [1.0]


# --- R-peak detection -------------------------------------------------------------------------


def test_rpeak_accuracy_tolerance_is_inclusive_and_empty_sets_are_nan():
    # 0.15 s at 360 Hz is exactly 54 samples: detections at 54 samples either side match
    res = rpeak_accuracy([1000, 2000], [946, 2054], fs=360)
    assert (res["tp"], res["fn"], res["fp"]) == (2, 0, 0)
    res = rpeak_accuracy([1000, 2000], [945, 2055], fs=360)
    assert (res["tp"], res["fn"], res["fp"]) == (0, 2, 2)
    res = rpeak_accuracy([], [10], fs=360)
    assert np.isnan(res["sensitivity"]) and res["ppv"] == 0.0 and res["fp"] == 1
    res = rpeak_accuracy([10], [], fs=360)
    assert np.isnan(res["ppv"]) and res["sensitivity"] == 0.0 and res["fn"] == 1


def test_detections_exactly_the_merge_gap_apart_are_one_beat():
    from sigflow.ecg._rpeaks import _merge_close

    det = np.array([0, 72, 144, 216], dtype=np.int64)
    np.testing.assert_array_equal(_merge_close(det, 72.0), [0, 144])
    np.testing.assert_array_equal(_merge_close(det, 71.0), det)


def test_refinement_reaches_the_last_sample_and_follows_the_dominant_polarity():
    from sigflow.ecg._rpeaks import _refine_to_peak

    fs = 360.0
    x = np.zeros(2000)
    x[1999] = 1.0  # the R wave at the very last sample
    x[500] = 1.0
    np.testing.assert_array_equal(_refine_to_peak(x, np.array([480, 1990]), fs), [500, 1999])
    # negative R waves with smaller positive waves beside them: the troughs are the peaks
    y = np.zeros(4000)
    for r in (500, 1500, 2500):
        y[r] = -1.0
        y[r + 20] = 0.6
    np.testing.assert_array_equal(_refine_to_peak(y, np.array([510, 1510, 2510]), fs),
                                  [500, 1500, 2500])
    np.testing.assert_array_equal(_refine_to_peak(-y, np.array([510, 1510, 2510]), fs),
                                  [500, 1500, 2500])
    # a beat whose S wave is deeper than its R wave, in a record of upright R waves: its peak
    # is its R wave, the polarity of the record, not its largest magnitude
    z = np.zeros(4000)
    z[[500, 1500, 2500, 3500]] = 1.0
    z[3520] = -1.5
    np.testing.assert_array_equal(
        _refine_to_peak(z, np.array([505, 1505, 2505, 3510]), fs), [500, 1500, 2500, 3500])


@pytest.mark.parametrize("method", ["pan_tompkins", "gqrs"])
def test_an_inverted_lead_gives_the_same_peaks(method):
    # the band-pass is linear and the refinement follows the dominant polarity
    sig, fs, ann = make_synthetic_ecg(duration=30, random_state=2)
    np.testing.assert_array_equal(detect_r_peaks(-sig, fs, method=method),
                                  detect_r_peaks(sig, fs, method=method))


@pytest.mark.parametrize("method", ["pan_tompkins", "gqrs"])
def test_a_dc_offset_does_not_change_the_peaks(method):
    # a lead stored with a large offset (raw converter units, a baseline far from zero): the
    # band-pass removes it, and the flat-signal floor (relative to the largest magnitude)
    # must stay far below the QRS slopes
    sig, fs, ann = make_synthetic_ecg(duration=30, random_state=6)
    peaks = detect_r_peaks(sig, fs, method=method)
    assert rpeak_accuracy(ann["sample"], peaks, fs)["sensitivity"] >= 0.98
    for offset in (500.0, -2000.0):
        np.testing.assert_array_equal(detect_r_peaks(sig + offset, fs, method=method), peaks)
    # nor does the scale (the thresholds are relative: the slope floor compares squared
    # slopes with a squared magnitude), whatever the unit
    for factor in (1e3, 1e-3, 1e-9):
        np.testing.assert_array_equal(detect_r_peaks(sig * factor, fs, method=method), peaks)


def test_one_small_beat_between_two_normal_ones_is_found_by_the_search_back():
    # a beat at 45 % of the usual amplitude falls under the detection threshold; the gap it
    # leaves (two RR intervals, more than 1.66 median RR) is searched again at half of it
    sig, fs, ann = make_synthetic_ecg(duration=30, random_state=7, noise=0.01)
    s = ann["sample"]
    x = sig.copy()
    lo, hi = (s[14] + s[15]) // 2, (s[15] + s[16]) // 2
    x[lo:hi] *= 0.45
    res = rpeak_accuracy(s, detect_r_peaks(x, fs), fs, tolerance=0.05)
    assert (res["tp"], res["fn"], res["fp"]) == (len(s), 0, 0)


def test_two_seconds_are_enough_and_nan_is_bridged_with_the_median():
    sig, fs, ann = make_synthetic_ecg(duration=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detect_r_peaks(sig[: int(2 * fs)], fs)  # exactly 2 s: no warning
    # NaN samples become the median of the valid ones, the same as writing it there
    x = sig + 3.0  # a median far from zero
    gap = slice(1000, 1100)
    bridged = x.copy()
    bridged[gap] = np.median(np.r_[x[: gap.start], x[gap.stop:]])
    nan = x.copy()
    nan[gap] = np.nan
    np.testing.assert_array_equal(detect_r_peaks(nan, fs), detect_r_peaks(bridged, fs))


def test_an_unknown_method_is_refused_whatever_the_signal():
    # a signal too short for the detector still gets its arguments checked
    for n in (100, 3600):
        with pytest.raises(ValueError, match="method must be one of"):
            detect_r_peaks(np.zeros(n), 360, method="pan-tompkins")


def test_running_level_is_the_median_over_the_window():
    from sigflow.ecg._rpeaks import _running_level

    rng = np.random.default_rng(0)
    positions = np.sort(rng.choice(5000, 60, replace=False))
    values = rng.normal(size=60)
    fs, window_s = 100.0, 3.0
    half = window_s * fs / 2
    level = _running_level(values, positions, 5000, fs, window_s)
    at = np.array([np.median(values[(positions >= p - half) & (positions < p + half)])
                   for p in positions])
    np.testing.assert_allclose(level[positions], at)
    np.testing.assert_allclose(level, np.interp(np.arange(5000), positions, at))


def test_typical_peak_is_the_median_of_the_windows_with_beats():
    from sigflow.ecg._rpeaks import _typical_peak

    fs = 10.0  # 2-s windows of 20 samples
    x = np.zeros(200)
    sizes = [0.01, 0.02, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 0.05]
    for k, v in enumerate(sizes):
        x[20 * k + 5] = v
    # the 90th percentile is 6.1: windows under 1.22 hold no beat; the median of the rest
    assert _typical_peak(x, fs) == np.median([2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    # shorter than a window: its largest deviation from the median
    assert _typical_peak(np.array([1.0, 1.0, 1.0, -2.0, 1.5]), fs) == 3.0


# --- filtering --------------------------------------------------------------------------------


def _scipy_filtfilt(x, fs, low, high, order=2):
    from scipy.signal import butter, sosfiltfilt

    if low is not None and high is not None:
        sos = butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    elif low is not None:
        sos = butter(order, low, btype="highpass", fs=fs, output="sos")
    else:
        sos = butter(order, high, btype="lowpass", fs=fs, output="sos")
    reach = int(np.ceil(fs * max(2.0, 1.0 / low))) if low is not None else 0
    padlen = min(max(3 * (2 * len(sos) + 1), reach), len(x) - 1)
    return sosfiltfilt(sos, x, axis=0, padtype="even", padlen=padlen)


@pytest.mark.parametrize("fs, low, high, n", [
    (360.0, 0.5, 40.0, 5000),   # 2 s of even padding
    (360.0, 0.2, 40.0, 5000),   # 1 / low = 5 s of padding
    (360.0, 2.0, 40.0, 5000),   # 1 / low = 0.5 s: still 2 s of padding
    (80.0, 0.5, 40.0, 1000),    # high at Nyquist: a high-pass only
    (360.0, None, 40.0, 3000),  # a low-pass only
    (360.0, 0.5, None, 3000),   # a high-pass only
    (360.0, 0.5, 40.0, 50),     # shorter than the padding
])
def test_bandpass_is_scipys_zero_phase_butterworth_with_even_padding(fs, low, high, n):
    x = np.random.default_rng(0).normal(size=n).cumsum()
    np.testing.assert_allclose(bandpass_ecg(x, fs, low=low, high=high),
                               _scipy_filtfilt(x, fs, low, None if high == fs / 2 else high),
                               rtol=1e-10, atol=1e-10)


def test_bandpass_filters_each_column_and_copies_without_a_band():
    x = np.random.default_rng(1).normal(size=(2000, 3))
    y = bandpass_ecg(x, 360.0)
    assert y.shape == x.shape
    for j in range(3):
        np.testing.assert_allclose(y[:, j], bandpass_ecg(x[:, j], 360.0), rtol=1e-12, atol=1e-12)
    same = bandpass_ecg(x, 360.0, low=None, high=None)
    np.testing.assert_array_equal(same, x)
    assert not np.shares_memory(same, x)
    assert bandpass_ecg(np.ones(1), 360.0).shape == (1,)


# --- record loading ---------------------------------------------------------------------------


def test_lead_index_bounds_and_case():
    rec = ECGRecord(name="r", signal=np.zeros((10, 2)), fs=360.0, leads=["MLII", "V5"])
    assert rec.lead_index(1) == 1 and rec.lead_index(np.int64(0)) == 0
    assert rec.lead_index(2) is None and rec.lead_index(-1) is None
    assert rec.lead_index(" v5 ") == 1 and rec.lead_index("mlii") == 0
    assert rec.lead_index("1") == 1 and rec.lead_index("2") is None


def test_a_part_keeps_the_annotations_in_its_half_open_range_and_owns_its_samples():
    rec = ECGRecord(name="r", signal=np.arange(1000.0)[:, None], fs=100.0, leads=["MLII"],
                    ann_samples=np.array([99, 100, 199, 200]),
                    ann_symbols=np.array(["N", "V", "A", "F"]), start=7)
    part = rec.part(100, 200)
    np.testing.assert_array_equal(part.ann_samples, [0, 99])
    np.testing.assert_array_equal(part.ann_symbols, ["V", "A"])
    assert part.start == 107 and part.signal[0, 0] == 100.0
    assert not np.shares_memory(part.signal, rec.signal)
    assert rec.part(999).n_samples == 1
    with pytest.raises(ValueError, match="has 1000 samples"):
        rec.part(1000)
    with pytest.raises(ValueError, match="must be greater"):
        rec.part(5, 5)


def test_rescaled_annotations_round_to_the_nearest_sample_and_stay_inside():
    import wfdb

    from sigflow.ecg._record import _annotations_at

    # 250 Hz annotations on a 360 Hz record: samples x 1.44
    ann = wfdb.Annotation("r", "atr", sample=np.array([1, 2, 3, 5, 6]),
                          symbol=["N"] * 5, fs=250)
    samples, _ = _annotations_at(ann, 360.0, 100, "r.atr")
    np.testing.assert_array_equal(samples, [1, 3, 4, 7, 9])  # 1.44 2.88 4.32 7.2 8.64
    # a sample at the record's length is outside it
    ann = wfdb.Annotation("r", "atr", sample=np.array([0, 9, 10]), symbol=["N"] * 3, fs=360)
    with pytest.warns(UserWarning, match="1 of 3 annotations lie outside"):
        samples, _ = _annotations_at(ann, 360.0, 10, "r.atr")
    np.testing.assert_array_equal(samples, [0, 9])
    # the n_read samples from start are [start, start + n_read)
    ann = wfdb.Annotation("r", "atr", sample=np.array([0, 3, 4, 5, 6]), symbol=["N"] * 5,
                          fs=360)
    samples, _ = _annotations_at(ann, 360.0, 10, "r.atr", start=0, n_read=5)
    np.testing.assert_array_equal(samples, [0, 3, 4])
    samples, _ = _annotations_at(ann, 360.0, 10, "r.atr", start=3, n_read=2)
    np.testing.assert_array_equal(samples, [0, 1])


def test_part_up_to_the_record_end_is_the_whole_tail():
    rec = ECGRecord(name="r", signal=np.arange(100.0)[:, None], fs=10.0, leads=["MLII"])
    np.testing.assert_array_equal(rec.part(0, 100).signal, rec.signal)
    with pytest.raises(ValueError, match="has 100 samples"):
        rec.part(0, 101)


@pytest.mark.parametrize("layout", ["frames", "offset"])
def test_a_signal_file_one_sample_short_is_truncated(tmp_path, layout):
    # the expected size counts every sample of a frame and the file's byte offset
    rng = np.random.default_rng(0)
    n_frames = 1800
    if layout == "frames":  # MLII at 2 samples per frame, V1 at 1: 3 samples per frame
        data = rng.integers(-500, 500, size=(n_frames, 3)).astype("<i2").tobytes()
        header = (f"r 2 180 {n_frames}\nr.dat 16x2 200/mV 16 0 0 0 0 MLII\n"
                  "r.dat 16x1 200/mV 16 0 0 0 0 V1\n")
    else:  # 24 bytes before the samples
        values = rng.integers(-500, 500, size=n_frames).astype("<i2")
        data = bytes(24) + values.tobytes()
        header = f"r 1 360 {n_frames}\nr.dat 16+24 200/mV 16 0 0 0 0 MLII\n"
    (tmp_path / "r.hea").write_text(header)
    (tmp_path / "r.dat").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = load_record(tmp_path / "r")
    assert rec.n_samples == n_frames
    if layout == "offset":
        np.testing.assert_allclose(rec.signal[:, 0], values / 200)
    (tmp_path / "r.dat").write_bytes(data[:-2])
    with pytest.raises(RecordFormatError, match=r"truncated WFDB signal file .*r\.dat"):
        load_record(tmp_path / "r")
