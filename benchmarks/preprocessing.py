"""Benchmark sigflow.preprocessing against numpy and scipy in one process, on the same data.

Run from the repository root::

    python benchmarks/preprocessing.py            # full sizes of issue 4
    python benchmarks/preprocessing.py --quick    # small sizes, a smoke test

It prints a Markdown table: the time of each peer and of sigflow (best of ``--repeat``
runs after a warm-up call), their ratio, the memory-bandwidth floor (one ``np.sum`` pass
over the input, a lower bound for any method that reads the data once), the first call
in this process (numba compile or cache load) and the first call in a fresh process
whose numba cache is warm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numba
import numpy as np
import scipy
import scipy.signal
import sklearn

from sigflow.preprocessing import _welch, welch_psd, window_features


def best_time(func, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def first_call_times():
    """Imports and first calls in this process (compile, or load from numba's cache)."""
    t0 = time.perf_counter()
    window_features(np.random.default_rng(0).normal(size=4096), 256, 32, ("mean", "std"))
    t1 = time.perf_counter()
    welch_psd(np.random.default_rng(0).normal(size=(8, 1024)), nperseg=256)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


_FRESH = """
import json, time
t0 = time.perf_counter()
import numpy as np
from sigflow.preprocessing import welch_psd, window_features
t1 = time.perf_counter()
window_features(np.random.default_rng(0).normal(size=4096), 256, 32, ("mean", "std"))
t2 = time.perf_counter()
welch_psd(np.random.default_rng(0).normal(size=(8, 1024)), nperseg=256)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "window_features": t2 - t1, "welch_psd": t3 - t2}))
"""


def fresh_process_times():
    out = subprocess.run([sys.executable, "-c", _FRESH], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_window_stats(rng, n_samples, repeat):
    x = rng.normal(size=n_samples) + 10.0
    W = np.lib.stride_tricks.sliding_window_view(x, 256)[::32]

    def numpy_stats():
        return W.mean(axis=-1), W.std(axis=-1)

    def ours():
        return window_features(x, 256, 32, ("mean", "std"))

    ref, got = numpy_stats(), ours()
    err = max(np.max(np.abs(got[:, 0] - ref[0]) / np.abs(ref[0])),
              np.max(np.abs(got[:, 1] - ref[1]) / ref[1]))
    t_np = best_time(numpy_stats, repeat)
    t_us = best_time(ours, repeat)
    t_floor = best_time(lambda: np.sum(x), repeat)
    return (f"window mean+std, {n_samples:,} samples, width 256, step 32",
            "numpy sliding_window_view", t_np, t_us, t_floor, err)


def bench_welch(rng, n_rows, repeat, with_fallback):
    X = rng.normal(size=(n_rows, 1024))
    # The first large call in a process costs scipy 3-4 times a later one (fresh memory for
    # its temporaries): that call is a warm-up, as sigflow's first call below is, and the
    # best of at least two timed calls counts.
    _, p_ref = scipy.signal.welch(X, nperseg=256)
    t_sp = best_time(lambda: scipy.signal.welch(X, nperseg=256), max(2, repeat))
    _, p = welch_psd(X, nperseg=256)
    err = float(np.max(np.abs(p - p_ref) / p_ref))
    t_us = best_time(lambda: welch_psd(X, nperseg=256), repeat)
    t_floor = best_time(lambda: np.sum(X), repeat)
    backend = "rocket-fft" if _welch._use_rocket() else "scipy.fft fallback"
    rows = [(f"welch_psd {n_rows:,} x 1,024, nperseg 256 ({backend})",
             "scipy.signal.welch", t_sp, t_us, t_floor, err)]
    if with_fallback and _welch._use_rocket():
        os.environ["SIGFLOW_NO_ROCKET_FFT"] = "1"
        try:
            welch_psd(X[:8], nperseg=256)  # warm-up (compile/load) of the fallback kernels
            _, p = welch_psd(X, nperseg=256)
            err_fb = float(np.max(np.abs(p - p_ref) / p_ref))
            t_fb = best_time(lambda: welch_psd(X, nperseg=256), repeat)
        finally:
            del os.environ["SIGFLOW_NO_ROCKET_FFT"]
        rows.append((f"welch_psd {n_rows:,} x 1,024 (scipy.fft fallback, for the choice)",
                     "scipy.signal.welch", t_sp, t_fb, t_floor, err_fb))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    n_samples = 1_000_000 if args.quick else 10_000_000
    welch_rows = (2_000, 10_000) if args.quick else (20_000, 100_000)

    first_wf, first_welch = first_call_times()  # also the warm-up calls
    rows = [bench_window_stats(rng, n_samples, args.repeat)]
    for n_rows in welch_rows:
        rows.extend(bench_welch(rng, n_rows, args.repeat, with_fallback=n_rows == welch_rows[0]))

    fresh = fresh_process_times()

    print("| task | peer | peer (s) | sigflow (s) | ratio | bandwidth floor (s) | max rel. err |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for task, peer, t_peer, t_ours, t_floor, err in rows:
        print(f"| {task} | {peer} | {t_peer:.3f} | {t_ours:.4f} | {t_ours / t_peer:.3f}x "
              f"| {t_floor:.4f} | {err:.1e} |")
    print()
    print(f"First call in this process (compile or cache load): window_features "
          f"{first_wf:.2f} s, welch_psd {first_welch:.2f} s.")
    print(f"Fresh process, warm numba cache: import of sigflow.preprocessing "
          f"{fresh['import']:.2f} s, first window_features {fresh['window_features']:.3f} s, "
          f"first welch_psd {fresh['welch_psd']:.3f} s.")
    try:
        from importlib.metadata import version

        rocket = version("rocket-fft")
    except Exception:  # pragma: no cover - optional
        rocket = "not installed"
    print(f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"numba {numba.__version__} ({numba.get_num_threads()} threads), rocket-fft {rocket}, "
          f"scikit-learn {sklearn.__version__}; load average before the run "
          f"{os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
