"""Density estimation on data with a known density: sigflow against scikit-learn and zuko.

Run from the repository root::

    python benchmarks/density.py                       # every dataset, full sizes
    python benchmarks/density.py --quick               # small sizes and budgets, a smoke test
    python benchmarks/density.py --datasets eight_gaussians gmm8
    python benchmarks/density.py --throughput-only     # scoring rates at d = 2, 8, 32 only
    python benchmarks/density.py --datasets gmm8 --models sigflow-lfm \
        --sigflow-params '{"hidden_layer_sizes": [128, 128]}' --train-gap   # a labelled variant

For every dataset the script draws an independent training and test set from a
distribution whose log-density ``log p`` is known and reports, for every model ``q``,
the gap ``E_p[log p(x) - log q(x)]`` = ``NLL - true entropy`` = ``KL(p || q)`` in nats
(mean over the test set; >= 0 up to Monte-Carlo error, 0 is the limit), with the fit and
score times. All models run in this process on the same data:

* sigflow ``FlowDensityEstimator(method="lfm")`` and ``(method="fm")``, default
  parameters (only ``random_state`` set; ``--sigflow-params`` overrides some, for labelled
  extra rows, and ``--train-gap`` adds the gap on the first 5,000 training points, which
  tells underfitting from overfitting; about a tenth of them are rows the estimator held
  out for early stopping, so it somewhat overstates the gap on the rows it trained on);
* scikit-learn ``GaussianMixture`` (full covariances, ``n_components`` chosen by BIC on a
  small grid) and ``KernelDensity`` (Gaussian kernel on standardised features, bandwidth
  chosen by 3-fold ``GridSearchCV`` on all training points);
* zuko ``NSF`` and ``CNF`` with zuko's default architectures, trained by maximum
  likelihood (Adam, batch 512, learning rate 1e-3 decayed by a cosine schedule over the
  budget) for the **same CPU time** (``time.process_time``) as sigflow's LFM fit on that
  dataset; CPU time rather than wall clock, because on a shared machine the wall clock
  depends on the other jobs (the number of Adam steps each got is printed). zuko's CNF
  trains with a Hutchinson trace and tolerances 1e-4 (FFJORD's practice) and is
  evaluated with its exact trace and its default tolerances (atol 1e-6, rtol 1e-5).

The throughput section reports exact-likelihood scoring rates (samples/s) of the trained
models at d = 2, 8, 32 (eight Gaussians and the 8- and 32-dimensional mixtures) and the
ratio of sigflow's rate to zuko's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time

import numpy as np
import scipy
import sklearn
import torch
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity

from sigflow import FlowDensityEstimator

# --------------------------------------------------------------------------- datasets

_CIRCLE = np.array(
    [(1, 0), (-1, 0), (0, 1), (0, -1)]
    + [(a / math.sqrt(2), b / math.sqrt(2)) for a in (1, -1) for b in (1, -1)]
)


class EightGaussians:
    """FFJORD's eight Gaussians: centres 4 c / 1.414 (c on the unit circle), std 0.5 / 1.414."""

    dim = 2
    centres = 4.0 * _CIRCLE / 1.414
    std = 0.5 / 1.414

    def sample(self, n, rng):
        k = rng.integers(0, 8, n)
        return self.centres[k] + self.std * rng.normal(size=(n, 2))

    def log_prob(self, x):
        d2 = ((x[:, None, :] - self.centres[None]) ** 2).sum(-1)
        return (
            logsumexp(-0.5 * d2 / self.std**2, axis=1)
            - math.log(8)
            - math.log(2 * math.pi * self.std**2)
        )


class Checkerboard:
    """FFJORD's checkerboard: uniform on 8 of the 16 squares of side 2 in [-4, 4]^2."""

    dim = 2

    def sample(self, n, rng):
        x1 = rng.random(n) * 4 - 2
        x2 = rng.random(n) - rng.integers(0, 2, n) * 2 + np.floor(x1) % 2
        return np.stack([x1, x2], 1) * 2

    def log_prob(self, x):
        cell = np.floor(x / 2).sum(1)
        inside = (np.abs(x) <= 4).all(1) & (cell % 2 == 0)
        return np.where(inside, -math.log(32.0), -np.inf)


class RandomGaussianMixture:
    """A seeded mixture of ``n_components`` full-covariance Gaussians in ``dim`` dimensions.

    Means: standard normal draws scaled so that typical distances between means are about
    6, redrawn until every pair is at least 4 apart; covariances ``Q diag(s^2) Q^T`` with a
    random rotation ``Q`` and standard deviations ``s`` uniform in [0.5, 1]; weights
    Dirichlet(5). The components overlap a little but are well separated.
    """

    def __init__(self, dim, n_components=8, seed=0):
        rng = np.random.default_rng(seed)
        self.dim = dim
        while True:
            means = rng.normal(size=(n_components, dim)) * 6.0 / math.sqrt(2 * dim)
            dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
            if dist[np.triu_indices(n_components, 1)].min() >= 4.0:
                break
        self.means = means
        self.weights = rng.dirichlet(np.full(n_components, 5.0))
        self.chols = []
        for _ in range(n_components):
            q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
            s = rng.uniform(0.5, 1.0, dim)
            self.chols.append(q * s)  # covariance q diag(s^2) q^T
        self.chols = np.array(self.chols)
        self.log_dets = np.array([2 * np.log(np.abs(np.linalg.det(c))) for c in self.chols])

    def sample(self, n, rng):
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        eps = rng.normal(size=(n, self.dim))
        return self.means[k] + np.einsum("nij,nj->ni", self.chols[k], eps)

    def log_prob(self, x):
        out = []
        for m, c, ld, w in zip(self.means, self.chols, self.log_dets, self.weights):
            z = np.linalg.solve(c, (x - m).T).T
            norm = 0.5 * ld + 0.5 * self.dim * math.log(2 * math.pi)
            out.append(math.log(w) - 0.5 * (z**2).sum(1) - norm)
        return logsumexp(np.stack(out, 1), axis=1)


DATASETS = {
    "eight_gaussians": (lambda: EightGaussians(), 20_000),
    "checkerboard": (lambda: Checkerboard(), 20_000),
    "gmm8": (lambda: RandomGaussianMixture(8, seed=8), 30_000),
    "gmm16": (lambda: RandomGaussianMixture(16, seed=16), 30_000),
    "gmm32": (lambda: RandomGaussianMixture(32, seed=32), 30_000),
}

# --------------------------------------------------------------------------- models


class Standardised:
    """Fit a model on standardised features and return log-densities in the data's units."""

    def __init__(self, X):
        self.mean, self.scale = X.mean(0), X.std(0)
        self.log_jac = -np.log(self.scale).sum()

    def __call__(self, X):
        return (X - self.mean) / self.scale


def fit_sigflow(X, method, seed, params=None):
    est = FlowDensityEstimator(method=method, random_state=seed, **(params or {}))
    est.fit(X)
    def score(Z):
        return est.score_samples(Z)

    score.estimator = est
    return score, {"blocks": len(est.block_stats_), "steps": est.n_iter_}


def score_with_steps(est, X, n_steps):
    """``est.score_samples(X)`` with ``n_steps`` solver steps per block instead of its own."""
    default = est.flow_.n_steps
    try:
        est.flow_.n_steps = n_steps
        return est.score_samples(X)
    finally:
        est.flow_.n_steps = default


def fine_ode_gap(est, Xt, log_p, n=1000, n_steps=16):
    """The gap with ``n_steps`` RK4 steps per block on ``n`` test points: is the default solver
    accurate, or does its discretisation error move the reported gap?"""
    fine = score_with_steps(est, Xt[:n], n_steps)
    coarse = est.score_samples(Xt[:n])
    return float(np.mean(log_p[:n] - fine)), float(np.mean(log_p[:n] - coarse))


def fit_gmm(X, seed, grid=(1, 2, 4, 8, 12, 16)):
    best, best_bic = None, np.inf
    for k in grid:
        gm = GaussianMixture(k, covariance_type="full", random_state=seed, n_init=1).fit(X)
        bic = gm.bic(X)
        if bic < best_bic:
            best, best_bic = gm, bic
    return best.score_samples, {"n_components": best.n_components}


def fit_kde(X, seed):
    """KernelDensity with the bandwidth of the best 3-fold cross-validated likelihood on all
    training rows. (Cross-validating on a subsample chooses the width for the subsample's
    size, which is too wide for the whole set: a 5,000-row subsample doubled the gap on
    eight Gaussians, 0.030 against 0.013.)"""
    std = Standardised(X)
    Xs = std(X)
    # Scott's factor on standardised data, then a grid around it
    scott = len(Xs) ** (-1.0 / (X.shape[1] + 4))
    grid = {"bandwidth": scott * np.logspace(-1, 0.5, 10)}
    search = GridSearchCV(KernelDensity(kernel="gaussian"), grid, cv=3).fit(Xs)
    kde = KernelDensity(kernel="gaussian", bandwidth=search.best_params_["bandwidth"]).fit(Xs)
    return (lambda Z: kde.score_samples(std(Z)) + std.log_jac), {
        "bandwidth": round(float(search.best_params_["bandwidth"]), 4)
    }


def _zuko_modules(flow, name):
    return [m for m in flow.modules() if type(m).__name__ == name]


def fit_zuko(X, kind, budget_s, seed, batch_size=512, lr=1e-3):
    """Maximum-likelihood training of a zuko flow for ``budget_s`` seconds of CPU time."""
    import zuko

    std = Standardised(X)
    torch.manual_seed(seed)  # zuko builds its networks from the global RNG
    dim = X.shape[1]
    flow = zuko.flows.NSF(dim) if kind == "nsf" else zuko.flows.CNF(dim)
    ffj = _zuko_modules(flow, "FFJTransform")
    for m in ffj:  # training: Hutchinson trace, looser tolerances (FFJORD's practice)
        m.exact, m.atol, m.rtol = False, 1e-4, 1e-4
    data = torch.as_tensor(std(X), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    steps, start = 0, time.process_time()
    flow.train()
    while True:
        frac = (time.process_time() - start) / budget_s
        if frac >= 1:
            break
        for g in opt.param_groups:
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        idx = torch.randint(0, len(data), (batch_size,), generator=gen)
        loss = -flow().log_prob(data[idx]).mean()
        if not torch.isfinite(loss):
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    flow.eval()
    for m in ffj:
        m.exact, m.atol, m.rtol = True, 1e-6, 1e-5

    def score(Z):
        out = []
        with torch.no_grad():
            for chunk in torch.split(torch.as_tensor(std(Z), dtype=torch.float32), 4096):
                out.append(flow().log_prob(chunk).double().numpy())
        return np.concatenate(out) + std.log_jac

    return score, {"steps": steps}


# --------------------------------------------------------------------------- running


def draw_data(name, args):
    """The distribution, training set, test set and the test set's true log-density."""
    make, n_train = DATASETS[name]
    dist = make()
    if args.quick:
        n_train = min(n_train, 3000)
    X = dist.sample(n_train, np.random.default_rng(args.seed))
    Xt = dist.sample(args.n_test, np.random.default_rng(args.seed + 1000))
    return dist, X, Xt, dist.log_prob(Xt)


def run_dataset(name, args):
    dist, X, Xt, log_p = draw_data(name, args)
    rows = []

    def record(model, fit, extra_budget=None):
        t0, c0 = time.perf_counter(), time.process_time()
        score, info = fit()
        fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        log_q = score(Xt)
        score_s = time.perf_counter() - t0
        finite = np.isfinite(log_q)
        gap = float(np.mean(log_p - log_q)) if finite.all() else float("inf")
        # on the points of sigflow's finely solved gap, for a like-for-like ratio
        info["gap_1000"] = round(float(np.mean(log_p[:1000] - log_q[:1000])), 4)
        rate = _median_rate(score, Xt)
        if hasattr(score, "estimator"):
            est = score.estimator
            fine, coarse = fine_ode_gap(est, Xt, log_p)
            info["gap_1000_rk4x16"] = round(fine, 4)
            info["gap_1000_default"] = round(coarse, 4)
            if args.train_gap:
                Xs = X[:5000]
                info["train_gap_5000"] = round(
                    float(np.mean(dist.log_prob(Xs) - est.score_samples(Xs))), 4
                )
            info["rate_float32"] = round(_float32_rate(est, Xt))  # beside the float64 default
        row = {
            "dataset": name, "d": dist.dim, "model": model, "gap": gap, "fit_s": fit_s,
            "fit_cpu": fit_cpu,
            "score_s": score_s, "rate": rate, "info": info,
        }
        rows.append(row)
        print(
            f"  {model:16s} gap {gap:8.4f}  fit {fit_s:7.1f} s (cpu {fit_cpu:7.1f} s)  "
            f"score {score_s:6.2f} s first call, {row['rate']:9.0f}/s warm  {info}",
            flush=True,
        )
        return row

    print(f"{name}: d={dist.dim}, {len(X)} train, {len(Xt)} test", flush=True)
    models = args.models
    budget = 30.0
    if "sigflow-lfm" in models:
        budget = record(
            "sigflow-lfm", lambda: fit_sigflow(X, "lfm", args.seed, args.sigflow_params)
        )["fit_cpu"]
    if "sigflow-fm" in models:
        record("sigflow-fm", lambda: fit_sigflow(X, "fm", args.seed, args.sigflow_params))
    if "gmm" in models:
        record("GaussianMixture", lambda: fit_gmm(X, args.seed))
    if "kde" in models:
        record("KernelDensity", lambda: fit_kde(X, args.seed))
    if args.zuko_budget is not None:
        budget = args.zuko_budget
    if "zuko-nsf" in models:
        record("zuko-NSF", lambda: fit_zuko(X, "nsf", budget, args.seed))
    if "zuko-cnf" in models:
        record("zuko-CNF", lambda: fit_zuko(X, "cnf", budget, args.seed))
    return rows


def _median_rate(score, Xt, repeats=3):
    """Rows per second of ``score(Xt)``: the median of ``repeats`` timings after a warm-up
    (a single timing of a few seconds moved by a factor 2-3 with the machine's load)."""
    score(Xt[:100])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        score(Xt)
        times.append(time.perf_counter() - t0)
    return len(Xt) / float(np.median(times))


def _float32_rate(est, Xt):
    """:func:`_median_rate` of a sigflow estimator scoring in float32, the precision zuko
    computes in; the estimator keeps its own precision afterwards."""
    dtype = est.inference_dtype
    est.set_params(inference_dtype="float32")
    try:
        return _median_rate(est.score_samples, Xt)
    finally:
        est.set_params(inference_dtype=dtype)


def throughput_only(args):
    """Scoring rates without the full fits: sigflow's cost per sample is fixed by its solver
    and network (it does not depend on training), so a briefly trained model is timed;
    zuko's NSF likewise; zuko's CNF uses an adaptive solver whose cost grows as its field
    is trained, so the short training here makes its rate an upper bound (favours zuko).
    Each rate is the median of three timings of the whole test set."""
    budget = args.zuko_budget or 20.0
    print(f"throughput only: sigflow-lfm defaults with max_iter=20, finetune_iter=0; "
          f"zuko trained {budget:.0f} s")
    print("| d | sigflow-lfm | sigflow-lfm float32 | zuko-CNF | zuko-NSF | lfm / CNF "
          "| lfm float32 / CNF | lfm / NSF | sigflow NFE |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("eight_gaussians", "gmm8", "gmm32"):
        dist = DATASETS[name][0]()
        X = dist.sample(5000, np.random.default_rng(args.seed))
        Xt = dist.sample(args.n_test, np.random.default_rng(args.seed + 1000))
        est = FlowDensityEstimator(max_iter=20, finetune_iter=0, random_state=args.seed).fit(X)
        rates = {"lfm": _median_rate(est.score_samples, Xt)}
        nfe = est.flow_.last_nfe
        rates["lfm32"] = _float32_rate(est, Xt)
        for kind in ("cnf", "nsf"):
            score, _ = fit_zuko(X, kind, budget, args.seed)
            rates[kind] = _median_rate(score, Xt)
        lfm, lfm32, cnf, nsf = rates["lfm"], rates["lfm32"], rates["cnf"], rates["nsf"]
        print(f"| {dist.dim} | {lfm:.0f} | {lfm32:.0f} | {cnf:.0f} | {nsf:.0f} "
              f"| {lfm / cnf:.1f}x | {lfm32 / cnf:.1f}x | {lfm / nsf:.2f}x | {nfe} |", flush=True)


def machine():
    cpu = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                   if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    import zuko

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} cores ({cpu}), torch threads {torch.get_num_threads()}, "
        f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"scikit-learn {sklearn.__version__}, zuko {zuko.__version__}; "
        f"load average at start {load:.1f}; {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument(
        "--models", nargs="+",
        default=["sigflow-lfm", "sigflow-fm", "gmm", "kde", "zuko-nsf", "zuko-cnf"],
    )
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="3,000 training points, 1,000 test")
    parser.add_argument("--zuko-budget", type=float, default=None,
                        help="CPU seconds of training for zuko (default: sigflow-lfm's fit)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--sigflow-params", type=json.loads, default=None,
                        help="JSON dict of FlowDensityEstimator parameters for sigflow's rows "
                             "(a labelled variant; default: the estimator's defaults)")
    parser.add_argument("--train-gap", action="store_true",
                        help="also report sigflow's gap on the first 5,000 training points")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the scoring-throughput table, with briefly trained models")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n_test = min(args.n_test, 1000)
    print("machine:", machine(), flush=True)
    print("command: python", shlex.join(sys.argv), flush=True)
    if args.throughput_only:
        throughput_only(args)
        return
    rows = []
    for name in args.datasets:
        rows += run_dataset(name, args)

    print("\n| dataset | d | model | gap (nats) | fit (s) | fit CPU (s) | score, first call (s) "
          "| notes |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for r in rows:
        notes = ", ".join(f"{k} {v}" for k, v in r["info"].items())
        print(f"| {r['dataset']} | {r['d']} | {r['model']} | {r['gap']:.4f} | {r['fit_s']:.1f} "
              f"| {r['fit_cpu']:.1f} "
              f"| {r['score_s']:.2f} | {notes} |")

    print("\nExact-likelihood scoring throughput (samples/s, trained models, the test set; "
          "median of three timings after a warm-up; sigflow in float64 and float32, zuko in "
          "float32):")
    print("| d | sigflow-lfm | sigflow-lfm float32 | sigflow-fm | zuko-CNF | zuko-NSF "
          "| lfm / CNF | lfm float32 / CNF | lfm / NSF |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.datasets:
        by = {r["model"]: r["rate"] for r in rows if r["dataset"] == name}
        if "sigflow-lfm" not in by:
            continue
        d = next(r["d"] for r in rows if r["dataset"] == name)

        def fmt(key, by=by):
            return f"{by[key]:.0f}" if key in by else "-"

        def ratio(key, by=by):
            return f"{by['sigflow-lfm'] / by[key]:.1f}x" if key in by else "-"

        lfm32 = next(r["info"]["rate_float32"] for r in rows
                     if r["dataset"] == name and r["model"] == "sigflow-lfm")
        ratio32 = f"{lfm32 / by['zuko-CNF']:.1f}x" if "zuko-CNF" in by else "-"
        print(f"| {d} ({name}) | {fmt('sigflow-lfm')} | {lfm32} | {fmt('sigflow-fm')} "
              f"| {fmt('zuko-CNF')} | {fmt('zuko-NSF')} | {ratio('zuko-CNF')} | {ratio32} "
              f"| {ratio('zuko-NSF')} |")

    print("\nGap ratios to zuko-NSF (sigflow gap / NSF gap, < 1 is better; 'rk4x16': sigflow's "
          "gap with 16 RK4 steps per block on the first 1,000 test points, free of the default "
          "solver's error, over NSF's gap on the same points):")
    for name in args.datasets:
        by = {r["model"]: r for r in rows if r["dataset"] == name}
        if "zuko-NSF" in by and by["zuko-NSF"]["gap"] > 0:
            nsf, nsf_1000 = by["zuko-NSF"]["gap"], by["zuko-NSF"]["info"]["gap_1000"]
            nsf_1000 = nsf_1000 if nsf_1000 > 0 else float("nan")
            parts = [
                f"{m} {by[m]['gap'] / nsf:.2f} "
                f"(rk4x16 {by[m]['info']['gap_1000_rk4x16'] / nsf_1000:.2f})"
                for m in ("sigflow-lfm", "sigflow-fm") if m in by
            ]
            print(f"  {name}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
