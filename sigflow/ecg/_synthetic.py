"""Synthetic ECG from the McSharry et al. (2003) wave model, with labelled ectopic beats."""

from __future__ import annotations

import contextlib
import math
import numbers
import os

import numpy as np

from ._record import _import_wfdb, _quiet_wfdb

__all__ = ["make_synthetic_ecg", "write_synthetic_record", "EXAMPLE_RECORDS"]

# McSharry, Clifford, Tarassenko & Smith (2003), "A dynamical model for
# generating synthetic electrocardiogram signals", IEEE TBME 50(3): the PQRST
# waves are Gaussians at angles theta_i (rad) on the unit limit cycle, with
# forcing amplitudes a_i and widths b_i.
_THETA = np.array([-np.pi / 3, -np.pi / 12, 0.0, np.pi / 12, np.pi / 2])
_A = np.array([1.2, -5.0, 30.0, -7.5, 0.75])
_B = np.array([0.25, 0.1, 0.1, 0.1, 0.4])


def _normal_waves():
    """Wave offsets (s), widths (s) and relative peak amplitudes at 60 bpm.

    On the limit cycle the angle advances at omega = 2 pi / RR, so the
    z-equation dz/dt = -sum a_i dtheta_i exp(-dtheta_i^2 / 2 b_i^2) - z
    produces, per wave, a Gaussian bump of peak a_i b_i^2 / omega and width
    b_i / omega seconds centred at theta_i / omega. Solving it in closed form
    beat by beat lets each beat take its own timing and morphology.
    """
    omega = 2 * np.pi
    offsets = _THETA / omega
    widths = _B / omega
    amps = _A * _B**2 / omega
    return offsets, widths, amps / amps[2]


def _rr_tachogram(n_beats, rr_mean, rr_std, lf_hf, rng):
    """RR series with Mayer (0.1 Hz) and respiratory (0.25 Hz) components (McSharry 2003)."""
    n = 256
    while n < 2 * n_beats:
        n *= 2
    f = np.fft.rfftfreq(n, d=rr_mean)
    s1 = np.exp(-((f - 0.1) ** 2) / (2 * 0.01**2))
    s2 = np.exp(-((f - 0.25) ** 2) / (2 * 0.01**2))
    spec = lf_hf * s1 / s1.max() + s2 / s2.max()
    phase = rng.uniform(0, 2 * np.pi, size=f.shape)
    rr = np.fft.irfft(np.sqrt(spec) * np.exp(1j * phase), n=n)[:n_beats]
    rr = (rr - rr.mean()) / (rr.std() + 1e-12)
    return rr_mean + rr_std * rr


def make_synthetic_ecg(duration=150.0, fs=360.0, *, heart_rate=72.0, hrv=0.05, lf_hf=0.5,
                       s_rate=0.0, v_rate=0.0, noise=0.02, baseline_wander=0.1,
                       amplitude=1.2, random_state=None):
    """Generate a single-lead synthetic ECG with labelled normal and ectopic beats.

    Beats follow the PQRST wave model of McSharry et al. (2003): each wave is
    a Gaussian whose timing, width and amplitude come from the model's
    parameters (solved in closed form on the limit cycle, beat by beat). The
    RR intervals have the model's bimodal heart-rate variability spectrum
    (Mayer waves at 0.1 Hz, respiratory sinus arrhythmia at 0.25 Hz), the QT
    interval scales with the square root of RR, and each record gets its own
    random "patient" morphology. Abnormal beats replace normal ones:

    - supraventricular premature ``S`` (symbol ``"A"``): 60-80 % of the
      expected RR, normal QRS, altered P wave, and the rhythm resets (no
      compensatory pause);
    - ventricular ``V`` (symbol ``"V"``): 55-75 % of the expected RR, no P
      wave, a wide, tall QRS with a discordant (inverted) T wave, and a full
      compensatory pause (pre-RR + post-RR = 2 RR).

    Baseline wander (respiratory and slow drift), Gaussian noise and a small
    50 Hz mains component are added.

    Parameters
    ----------
    duration : float, default=150.0
        Length in seconds. Beats are placed from about 0.5 s after the start to 0.5 s
        before the end, so a recording of a second or two may hold none (its
        annotations are then empty).
    fs : float, default=360.0
        Sampling frequency in Hz.
    heart_rate : float, default=72.0
        Mean heart rate in beats per minute.
    hrv : float, default=0.05
        Standard deviation of the normal RR intervals, in seconds.
    lf_hf : float, default=0.5
        Ratio of the low- to high-frequency HRV power.
    s_rate, v_rate : float, default=0.0
        Probability that a beat is a premature supraventricular (S) or a
        ventricular (V) beat.
    noise : float, default=0.02
        Standard deviation of the white noise, in mV.
    baseline_wander : float, default=0.1
        Amplitude of the baseline wander, in mV.
    amplitude : float, default=1.2
        R-wave amplitude of a normal beat, in mV.
    random_state : int, numpy Generator or None, default=None
        Seed; the same seed gives the same signal and annotations.

    Returns
    -------
    signal : ndarray of shape (n_samples,)
        The ECG in mV.
    fs : float
        Sampling frequency in Hz.
    annotations : dict
        ``"sample"`` (int64 R-peak indices) and ``"symbol"`` (MIT-BIH
        symbols ``"N"``, ``"A"``, ``"V"``).

    Examples
    --------
    >>> from sigflow.ecg import make_synthetic_ecg
    >>> sig, fs, ann = make_synthetic_ecg(duration=20, v_rate=0.1, random_state=0)
    >>> sig.shape, fs
    ((7200,), 360.0)
    >>> set(ann["symbol"]) <= {"N", "A", "V"}
    True
    """
    for name, value, low in (("duration", duration, 0.0), ("fs", fs, 0.0),
                             ("heart_rate", heart_rate, 0.0)):
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > low):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    for name, value in (("hrv", hrv), ("lf_hf", lf_hf), ("s_rate", s_rate),
                        ("v_rate", v_rate), ("noise", noise),
                        ("baseline_wander", baseline_wander), ("amplitude", amplitude)):
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    if s_rate + v_rate > 1:
        raise ValueError(f"s_rate + v_rate must be at most 1, got {s_rate} + {v_rate}")
    rng = random_state if isinstance(random_state, np.random.Generator) \
        else np.random.default_rng(random_state)
    n = int(round(duration * fs))
    if n < 1:
        raise ValueError(f"duration={duration} s at fs={fs} Hz holds no sample")
    t = np.arange(n) / fs
    rr_mean = 60.0 / heart_rate
    n_max = int(duration / (0.5 * rr_mean)) + 4
    rr_normal = np.clip(_rr_tachogram(n_max, rr_mean, hrv, lf_hf, rng), 0.4, 2.0)

    # Patient-specific morphology: random scale of each wave's amplitude and width.
    offsets, widths, amps = _normal_waves()
    amps = amps * np.exp(rng.normal(0, [0.2, 0.2, 0.05, 0.2, 0.2]))
    widths = widths * np.exp(rng.normal(0, 0.1, size=5))

    # Beat schedule.
    times, symbols = [], []
    tb = 0.5 + rng.uniform(0, rr_mean)
    k = 0
    prev = "N"
    while tb < duration - 0.5 and k < n_max - 1:
        u = rng.uniform()
        if prev == "N" and times and u < v_rate:
            sym = "V"
        elif prev == "N" and times and u < v_rate + s_rate:
            sym = "A"
        else:
            sym = "N"
        if sym == "N":
            times.append(tb)
            symbols.append("N")
            tb += rr_normal[k]
        else:
            # Premature beat: replace the scheduled normal beat by an early one.
            t_last = times[-1]
            rr_exp = rr_normal[k - 1] if k else rr_mean
            frac = rng.uniform(0.6, 0.8) if sym == "A" else rng.uniform(0.55, 0.75)
            t_ect = t_last + frac * rr_exp
            times.append(t_ect)
            symbols.append(sym)
            # S resets the sinus node; V leaves it alone (compensatory pause).
            tb = t_ect + rr_normal[k] if sym == "A" else t_last + 2 * rr_exp
        prev = sym
        k += 1
    times = np.asarray(times, dtype=np.float64)
    symbols = np.asarray(symbols, dtype="<U1")

    sig = np.zeros(n)
    rr_local = np.diff(np.concatenate([times[:1] - rr_mean, times]))
    for tk, sym, rr in zip(times, symbols, rr_local, strict=True):
        qt = np.sqrt(max(rr, 0.3) / 1.0) if sym != "A" else np.sqrt(rr_mean)
        off = offsets.copy()
        off[4] *= qt
        w = widths.copy()
        a = amps.copy()
        if sym == "A":
            a[0] *= rng.choice([-0.6, 0.5])  # ectopic atrial focus: different P
            off[0] *= 0.85
        elif sym == "V":
            a = np.array([0.0, -0.25, 1.5, -0.6, -0.7]) * np.exp(rng.normal(0, 0.05, 5))
            w = widths * np.array([1.0, 1.5, 2.0, 2.0, 1.3])
            off = offsets * np.array([1.0, 2.0, 1.0, 2.2, 1.1])
        lo = max(int((tk - 0.6) * fs), 0)
        hi = min(int((tk + 0.8) * fs), n)
        tt = t[lo:hi, None] - tk
        sig[lo:hi] += (a * np.exp(-((tt - off) ** 2) / (2 * w**2))).sum(axis=1)
    sig *= amplitude

    # Baseline wander (respiration + slow drift), mains and white noise.
    resp = rng.uniform(0.15, 0.35)
    drift = np.cumsum(rng.normal(0, 1, size=n)) / np.sqrt(fs)
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, 0.1, fs=fs, output="sos")
    # scipy's default padding (3 (2 sections + 1) samples), shortened for very short signals
    drift = sosfiltfilt(sos, drift, padlen=min(3 * (2 * len(sos) + 1), n - 1))
    drift = drift / (np.abs(drift).max() + 1e-12)
    sig += baseline_wander * (np.sin(2 * np.pi * resp * t + rng.uniform(0, 2 * np.pi))
                              + 0.5 * drift)
    sig += 0.1 * noise * np.sin(2 * np.pi * 50.0 * t)
    sig += rng.normal(0, noise, size=n) if noise > 0 else 0.0

    r_peak = np.clip(np.round(times * fs).astype(np.int64), 0, n - 1)
    return sig, float(fs), {"sample": r_peak, "symbol": symbols.astype(str)}


#: The shipped example records: name -> generator arguments.
EXAMPLE_RECORDS = {
    "synth01": dict(duration=150.0, heart_rate=68.0, hrv=0.04, s_rate=0.04, v_rate=0.04,
                    noise=0.015, baseline_wander=0.08, amplitude=1.3, random_state=101),
    "synth02": dict(duration=150.0, heart_rate=80.0, hrv=0.03, s_rate=0.08, v_rate=0.02,
                    noise=0.02, baseline_wander=0.12, amplitude=1.0, random_state=202),
    "synth03": dict(duration=150.0, heart_rate=60.0, hrv=0.06, s_rate=0.05, v_rate=0.10,
                    noise=0.03, baseline_wander=0.15, amplitude=1.6, random_state=303),
}


def write_synthetic_record(name, write_dir=".", **params):
    """Generate a synthetic ECG and write it as a WFDB record with annotations.

    Writes ``name.hea`` and ``name.dat`` (format 212, gain 200 adu/mV, lead
    ``MLII``, like MIT-BIH) and ``name.atr`` (MIT-BIH beat symbols; none when the
    recording is too short to hold a beat).

    Parameters
    ----------
    name : str
        Record name.
    write_dir : str or path-like, default="."
        Folder to write into (created if needed).
    **params
        Passed to :func:`make_synthetic_ecg`.

    Returns
    -------
    path : str
        The record path without extension.

    Examples
    --------
    >>> import tempfile
    >>> from sigflow.ecg import load_record, write_synthetic_record
    >>> folder = tempfile.mkdtemp()
    >>> path = write_synthetic_record("demo", folder, duration=10, random_state=0)
    >>> load_record(path).leads
    ['MLII']
    """
    wfdb = _import_wfdb()

    write_dir = os.fspath(write_dir)
    os.makedirs(write_dir, exist_ok=True)
    sig, fs, ann = make_synthetic_ecg(**params)
    gain, base = 200.0, 1024
    sig = np.clip(sig, (-2048 - base + 1) / gain, (2047 - base) / gain)
    with _quiet_wfdb():
        wfdb.wrsamp(
            name, fs=fs, units=["mV"], sig_name=["MLII"], p_signal=sig[:, None], fmt=["212"],
            adc_gain=[gain], baseline=[base],
            comments=[f"sigflow synthetic ECG (McSharry et al. 2003 wave model): {params}"],
            write_dir=write_dir,
        )
        if len(ann["sample"]):
            wfdb.wrann(name, "atr", ann["sample"], symbol=list(ann["symbol"]), fs=fs,
                       write_dir=write_dir)
    if not len(ann["sample"]):  # WFDB cannot write an empty annotation file
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(write_dir, name + ".atr"))  # not a stale one either
    return os.path.join(write_dir, name)
