"""Check sigflow's CUDA path against the CPU and measure throughput.

Run on a machine with a CUDA GPU::

    python benchmarks/gpu_check.py            # about 2 minutes on one GPU
    python benchmarks/gpu_check.py --quick    # a smoke run

What it checks:

1. A model fitted on the CPU and moved to CUDA scores the same points to 1e-8
   (float64 on both devices).
2. A model fitted on CUDA pickles, loads in a fresh process with CUDA hidden
   (``CUDA_VISIBLE_DEVICES=""``, as on a CPU-only machine) as a CPU model, and scores the
   same there as on the GPU.
3. A CUDA fit reaches the same held-out log-likelihood as a CPU fit (different random
   streams, same quality) and how long each takes.
4. Exact-likelihood scoring throughput (samples/s) on both devices at d = 2, 8, 32.

The full run fits with the estimator's defaults (20,000 rows per dimension); ``--quick``
fits tiny models. Each dimension's results are printed as soon as they are measured, and
the table at the end. Without CUDA it says so and exits with status 0 after the CPU part
(check 2 then runs on the CPU model), so that it can be smoke-tested anywhere.
"""

from __future__ import annotations

import argparse
import copy
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


def _mixture(n, d, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(4, d))
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
import pickle, sys, warnings
import numpy as np, torch
assert not torch.cuda.is_available(), "CUDA should be hidden in this process"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with open(sys.argv[1], "rb") as f:
        model = pickle.load(f)
print("device_ after loading:", model.device_, "| warnings:", [str(w.message) for w in caught])
np.save(sys.argv[3], model.score_samples(np.load(sys.argv[2])))
"""


def _scores_in_a_cpu_only_process(model, X):
    """Pickle ``model``, load it in a fresh process that sees no GPU, score ``X`` there."""
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
        print("  " + done.stdout.strip(), flush=True)
        return np.load(paths[2])


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
    rows = []
    for d in (2, 8, 32):
        X = _mixture(n_train, d, 0)
        Xs = _mixture(n_score, d, 1)
        start = time.perf_counter()
        cpu = FlowDensityEstimator(device="cpu", **params).fit(X)
        cpu_fit = time.perf_counter() - start
        row = {
            "d": d,
            "cpu_fit_s": cpu_fit,
            "cpu_score_per_s": _throughput(cpu, Xs, torch.device("cpu")),
        }
        if has_cuda:
            cuda = torch.device("cuda")
            moved = copy.deepcopy(cpu)
            moved.flow_ = moved.flow_.to(cuda)
            moved.device_ = "cuda"
            diff = np.abs(moved.score_samples(Xs[:2000]) - cpu.score_samples(Xs[:2000])).max()
            row["cpu_vs_cuda_max_abs_diff"] = diff
            assert diff < 1e-8, f"CPU and CUDA scores of the same model differ by {diff:.3g}"
            start = time.perf_counter()
            gpu = FlowDensityEstimator(device="cuda", **params).fit(X)
            torch.cuda.synchronize()
            row["cuda_fit_s"] = time.perf_counter() - start
            on_cpu = _scores_in_a_cpu_only_process(gpu, Xs[:2000])
            pickled_diff = np.abs(on_cpu - gpu.score_samples(Xs[:2000])).max()
            row["pickled_cuda_on_cpu_max_abs_diff"] = pickled_diff
            assert pickled_diff < 1e-8, "a CUDA model loaded on the CPU scores differently"
            row["heldout_ll_cpu"] = cpu.score(Xs)
            row["heldout_ll_cuda"] = gpu.score(Xs)
            row["cuda_score_per_s"] = _throughput(gpu, Xs, cuda)
        else:  # the CPU-only load path, on the CPU model
            on_cpu = _scores_in_a_cpu_only_process(cpu, Xs[:2000])
            row["pickled_on_cpu_max_abs_diff"] = np.abs(
                on_cpu - cpu.score_samples(Xs[:2000])
            ).max()
            assert row["pickled_on_cpu_max_abs_diff"] < 1e-8
        rows.append(row)
        print(row, flush=True)
    print(
        "\n| d | CPU fit (s) | CPU score (samples/s) | CUDA fit (s) | CUDA score (samples/s) "
        "| max abs diff CPU vs CUDA |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['d']} | {r['cpu_fit_s']:.1f} | {r['cpu_score_per_s']:.0f} | "
            f"{r.get('cuda_fit_s', float('nan')):.1f} | "
            f"{r.get('cuda_score_per_s', float('nan')):.0f} | "
            f"{r.get('cpu_vs_cuda_max_abs_diff', float('nan')):.2g} |"
        )
    if not has_cuda:
        print("\nCUDA is not available: only the CPU part ran.")


if __name__ == "__main__":
    main()
