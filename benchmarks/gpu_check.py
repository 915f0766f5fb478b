"""Check sigflow's CUDA path against the CPU and measure throughput.

Run on a machine with a CUDA GPU::

    python benchmarks/gpu_check.py --quick    # a smoke run: about 30 s of CPU, then CUDA
    python benchmarks/gpu_check.py            # about 5 minutes: three default CPU fits of
                                              # 40-70 s each, three CUDA fits, scoring

``sigflow`` must be importable: installed (``pip install -e .``), or run as
``PYTHONPATH=$PWD python benchmarks/gpu_check.py`` from the repository root.

What it checks (a failed check is reported and the run goes on, so that one run gives every
figure; the exit status is 1 when any check failed):

1. A model fitted on the CPU and moved to CUDA scores the same points to 1e-8
   (float64 on both devices).
2. A model fitted on CUDA pickles, loads in a fresh process with CUDA hidden
   (``CUDA_VISIBLE_DEVICES=""``, as on a CPU-only machine) as a CPU model, with a
   ``RuntimeWarning`` that says so, and scores the same there as on the GPU.
3. A CUDA fit reaches about the same held-out log-likelihood as a CPU fit (different
   random streams, same quality: within 0.1 nats per row, 1.0 with ``--quick``, whose tiny
   fits differ by up to 0.7 nats between seeds at d = 32).
4. Scores in float32 on CUDA agree with float64 (relative 1e-4), and after the model is
   moved back to the CPU its float32 scores are the CPU's (no stale converted copy).
5. At d = 2, a second CUDA fit with the same ``random_state`` gives identical scores (the
   estimators promise that; nondeterministic CUDA kernels would break it).
6. Exact-likelihood scoring throughput (samples/s) on both devices at d = 2, 8, 32, and
   on CUDA at 4,096, 32,768 and 131,072 rows per solve (the estimators use 32,768).

The full run fits with the estimator's defaults (20,000 rows per dimension); ``--quick``
fits tiny models. Each dimension's results are printed as soon as they are measured, and
the table at the end. Without CUDA it says so and exits with status 0 after the CPU part
(check 2 then runs on the CPU model), so that it can be smoke-tested anywhere.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from sigflow import FlowDensityEstimator
from sigflow.estimators import _base


def _mixture(n, d, seed):
    """``n`` rows of one four-component mixture in ``d`` dimensions (the same centres for
    every ``seed``, so that rows of another seed are held-out rows of the same data)."""
    centres = np.random.default_rng(0).normal(scale=3.0, size=(4, d))
    rng = np.random.default_rng(seed + 1)
    return centres[rng.integers(0, 4, n)] + rng.normal(size=(n, d))


def _throughput(est, X, device):
    model = copy.deepcopy(est)
    model.flow_ = model.flow_.to(device)
    model.device_ = str(device)
    model.score_samples(X[:256])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.score_samples(X)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(X) / (time.perf_counter() - start)


_LOAD_ON_CPU = """
import json, pickle, sys, warnings
import numpy as np, torch
assert not torch.cuda.is_available(), "CUDA should be hidden in this process"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with open(sys.argv[1], "rb") as f:
        model = pickle.load(f)
np.save(sys.argv[3], model.score_samples(np.load(sys.argv[2])))
print(json.dumps({"device_": model.device_,
                  "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}))
"""


def _scores_in_a_cpu_only_process(model, X):
    """Pickle ``model``, load it in a fresh process that sees no GPU, score ``X`` there;
    return the scores and what the process saw (``device_``, warnings)."""
    with tempfile.TemporaryDirectory() as folder:
        paths = [os.path.join(folder, name) for name in ("model.pkl", "X.npy", "scores.npy")]
        with open(paths[0], "wb") as f:
            pickle.dump(model, f)
        np.save(paths[1], X)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run([sys.executable, "-c", _LOAD_ON_CPU, *paths], env=env,
                              capture_output=True, text=True, timeout=600)
        if done.returncode:
            raise RuntimeError(f"loading the pickled model on the CPU failed:\n{done.stderr}")
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  loaded with CUDA hidden: {seen}", flush=True)
        return np.load(paths[2]), seen


class _Checks:
    """Checks that report and go on: a GPU run should give every figure."""

    def __init__(self):
        self.failed = []

    def __call__(self, ok, what):
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failed.append(what)
        return ok


def _rel_diff(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, few steps")
    args = parser.parse_args(argv)
    n_train, n_score = (2000, 4000) if args.quick else (20000, 50000)
    params = {"random_state": 0}
    if args.quick:
        params.update(max_iter=100, finetune_iter=50)
    has_cuda = torch.cuda.is_available()
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, "
        f"CPU threads {torch.get_num_threads()}, CUDA: "
        f"{torch.cuda.get_device_name(0) if has_cuda else 'not available'}"
    )
    check = _Checks()
    tolerance_ll = 1.0 if args.quick else 0.1
    rows = []
    for d in (2, 8, 32):
        print(f"d = {d}", flush=True)
        X = _mixture(n_train, d, 0)
        Xs = _mixture(n_score, d, 1)
        start = time.perf_counter()
        cpu = FlowDensityEstimator(device="cpu", **params).fit(X)
        cpu_fit = time.perf_counter() - start
        row = {
            "d": d,
            "cpu_fit_s": cpu_fit,
            "cpu_score_per_s": _throughput(cpu, Xs, torch.device("cpu")),
            "heldout_ll_cpu": cpu.score(Xs),
        }
        if has_cuda:
            cuda = torch.device("cuda")
            moved = copy.deepcopy(cpu)
            moved.flow_ = moved.flow_.to(cuda)
            moved.device_ = "cuda"
            diff = np.abs(moved.score_samples(Xs[:2000]) - cpu.score_samples(Xs[:2000])).max()
            row["cpu_vs_cuda_max_abs_diff"] = diff
            check(diff < 1e-8, f"1. CPU model moved to CUDA scores the same ({diff:.3g})")
            start = time.perf_counter()
            gpu = FlowDensityEstimator(device="cuda", **params).fit(X)
            torch.cuda.synchronize()
            row["cuda_fit_s"] = time.perf_counter() - start
            row["cuda_device_"] = gpu.device_
            on_gpu = gpu.score_samples(Xs[:2000])
            on_cpu, seen = _scores_in_a_cpu_only_process(gpu, Xs[:2000])
            pickled_diff = np.abs(on_cpu - on_gpu).max()
            row["pickled_cuda_on_cpu_max_abs_diff"] = pickled_diff
            check(pickled_diff < 1e-8 and seen["device_"] == "cpu"
                  and any("RuntimeWarning" in w and "not available" in w
                          for w in seen["warnings"]),
                  f"2. CUDA model loaded where CUDA is hidden: device_ {seen['device_']}, "
                  f"a warning, same scores ({pickled_diff:.3g})")
            row["heldout_ll_cuda"] = gpu.score(Xs)
            gap = abs(row["heldout_ll_cuda"] - row["heldout_ll_cpu"])
            check(gap < tolerance_ll, f"3. held-out log-likelihood CPU {row['heldout_ll_cpu']:.4f}"
                  f", CUDA {row['heldout_ll_cuda']:.4f} (within {tolerance_ll})")
            fast = copy.deepcopy(gpu).set_params(inference_dtype="float32")
            f32 = fast.score_samples(Xs[:2000])
            rel = _rel_diff(f32, on_gpu)
            fast.flow_.to("cpu")  # in place, as a user might move it
            fast.device_ = "cpu"
            back = fast.score_samples(Xs[:2000])
            ref = copy.deepcopy(fast).set_params(inference_dtype="float64").score_samples(
                Xs[:2000])
            check(rel < 1e-4 and _rel_diff(back, ref) < 1e-4,
                  f"4. float32 on CUDA against float64 ({rel:.2g}), and on the CPU after a "
                  f"move ({_rel_diff(back, ref):.2g})")
            if d == 2:
                again = FlowDensityEstimator(device="cuda", **params).fit(X)
                repeat = again.score_samples(Xs[:2000])
                check(np.array_equal(repeat, on_gpu),
                      "5. a second CUDA fit with the same random_state scores the same "
                      f"(max abs diff {np.abs(repeat - on_gpu).max():.3g})")
            row["cuda_score_per_s"] = _throughput(gpu, Xs, cuda)
            for chunk in (4096, 32768, 131072):  # rows per solve (estimators._SCORE_CHUNK)
                default, _base._SCORE_CHUNK = _base._SCORE_CHUNK, chunk
                try:
                    rate = _throughput(gpu, np.concatenate([Xs] * 3), cuda)
                finally:
                    _base._SCORE_CHUNK = default
                row[f"cuda_score_per_s_chunk_{chunk}"] = rate
                print(f"  CUDA scoring, {chunk} rows per solve: {rate:.0f} samples/s",
                      flush=True)
        else:  # the CPU-only load path, on the CPU model
            on_cpu, _ = _scores_in_a_cpu_only_process(cpu, Xs[:2000])
            row["pickled_on_cpu_max_abs_diff"] = np.abs(
                on_cpu - cpu.score_samples(Xs[:2000])
            ).max()
            check(row["pickled_on_cpu_max_abs_diff"] < 1e-8,
                  "2. the pickled model scores the same in a process with CUDA hidden")
        rows.append(row)
        print(row, flush=True)
    print(
        "\n| d | CPU fit (s) | CPU score (samples/s) | CUDA fit (s) | CUDA score (samples/s) "
        "| max abs diff CPU vs CUDA | held-out LL CPU | held-out LL CUDA |"
    )
    print("|---|---|---|---|---|---|---|---|")
    nan = float("nan")
    for r in rows:
        print(
            f"| {r['d']} | {r['cpu_fit_s']:.1f} | {r['cpu_score_per_s']:.0f} | "
            f"{r.get('cuda_fit_s', nan):.1f} | {r.get('cuda_score_per_s', nan):.0f} | "
            f"{r.get('cpu_vs_cuda_max_abs_diff', nan):.2g} | {r['heldout_ll_cpu']:.4f} | "
            f"{r.get('heldout_ll_cuda', nan):.4f} |"
        )
    if not has_cuda:
        print("\nCUDA is not available: only the CPU part ran.")
    if check.failed:
        print(f"\n{len(check.failed)} check(s) failed:", *check.failed, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
