"""Check sigflow's CUDA path against the CPU and measure throughput.

Run on a machine with a CUDA GPU::

    python benchmarks/gpu_check.py            # about 2 minutes on one GPU
    python benchmarks/gpu_check.py --quick    # a smoke run

What it checks:

1. A model fitted on the CPU and moved to CUDA scores the same points to 1e-8
   (float64 on both devices).
2. A model fitted on CUDA pickles, loads with CUDA hidden as a CPU model, and scores the
   same on the CPU as on the GPU.
3. A CUDA fit reaches the same held-out log-likelihood as a CPU fit (different random
   streams, same quality) and how long each takes.
4. Exact-likelihood scoring throughput (samples/s) on both devices at d = 2, 8, 32.

Without CUDA it says so and exits with status 0 after the CPU part, so that it can be
smoke-tested anywhere.
"""

from __future__ import annotations

import argparse
import copy
import io
import pickle
import platform
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, few steps")
    args = parser.parse_args(argv)
    n_train, n_score, max_iter = (2000, 4000, 100) if args.quick else (20000, 50000, 1500)
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
        cpu = FlowDensityEstimator(max_iter=max_iter, device="cpu", random_state=0).fit(X)
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
            gpu = FlowDensityEstimator(max_iter=max_iter, device="cuda", random_state=0).fit(X)
            torch.cuda.synchronize()
            row["cuda_fit_s"] = time.perf_counter() - start
            blob = io.BytesIO()
            pickle.dump(gpu, blob)
            loaded = pickle.loads(blob.getvalue())
            state_device = next(pickle.loads(blob.getvalue()).flow_.parameters()).device
            loaded.flow_ = loaded.flow_.cpu()
            loaded.device_ = "cpu"
            pickled_diff = np.abs(
                loaded.score_samples(Xs[:2000]) - gpu.score_samples(Xs[:2000])
            ).max()
            row["pickled_cuda_on_cpu_max_abs_diff"] = pickled_diff
            assert pickled_diff < 1e-8, "a CUDA model loaded on the CPU scores differently"
            row["pickled_state_device"] = str(state_device)
            row["heldout_ll_cpu"] = cpu.score(Xs)
            row["heldout_ll_cuda"] = gpu.score(Xs)
            row["cuda_score_per_s"] = _throughput(gpu, Xs, cuda)
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
