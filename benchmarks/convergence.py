"""Convergence of block-wise flows (``lfm``, ``jko``) on data with a known density.

For eight Gaussians in 2D (20,000 training points) and an 8-dimensional Gaussian mixture
(30,000 training points) this script fits ``FlowDensityEstimator`` with ``method="lfm"`` and
``method="jko"``, then measures on held-out data, after each block ``k``, the KL gap
``KL(p || q_k) = E[log p] - E[log q_k]`` of the model made of the first ``k`` blocks and a
Gaussian (``FlowDensityEstimator.convergence_path``). It prints

* the gap after each block against the total Ornstein-Uhlenbeck time ``T_k = h_1 + ... + h_k``,
* the fitted decay rate ``c`` of ``gap_k ~ gap_0 exp(-c T_k)`` (least squares on the log gap),
* the number of blocks needed for eps = 0.1, 0.03, 0.01 (observed, and predicted by the fit
  with the geometric step schedule continued),
* the final NLL gap and the training function evaluations (NFE, counted as evaluations of a
  velocity network on a minibatch of ``--batch-size`` points; pushes of the training set and
  the held-out early-stopping checks are converted to the same unit),
* a single-block maximum-likelihood CNF (zuko ``CNF``, adaptive dopri5 + adjoint, exact trace)
  trained within a wall-clock budget, with the NFE at which it first reaches each gap of ours.

A plot is saved to ``benchmarks/convergence.png``. Run (about 10 minutes on 2 CPU cores)::

    OMP_NUM_THREADS=1 python benchmarks/convergence.py

``--max-iter-jko``, ``--max-iter-lfm``, ``--hidden`` and ``--zuko-seconds`` trade time for accuracy.
The per-block picture is of the blocks as trained one after another (``finetune_iter=0``);
``--finetune-iter N`` adds, for each method, the gap and training NFE of the same blocks after
``N`` steps of the estimators' maximum-likelihood refinement of all blocks together.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from density import machine
from scipy.special import logsumexp

from sigflow import FlowDensityEstimator
from sigflow.flows import evaluations_per_step

HERE = Path(__file__).resolve().parent
EPSILONS = (0.1, 0.03, 0.01)


# ---------------------------------------------------------------------------- data
class GaussianMixture:
    """Mixture of Gaussians with diagonal covariances: samples and exact log-density."""

    def __init__(self, means, stds, weights=None):
        self.means = np.asarray(means, dtype=float)
        self.stds = np.asarray(stds, dtype=float) * np.ones_like(self.means)
        k = len(self.means)
        self.weights = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, float)

    def sample(self, n, rng):
        comp = rng.choice(len(self.means), size=n, p=self.weights)
        return self.means[comp] + self.stds[comp] * rng.standard_normal((n, self.means.shape[1]))

    def log_density(self, X):
        diff = (X[:, None, :] - self.means[None]) / self.stds[None]
        log_comp = (
            -0.5 * (diff**2).sum(-1) - np.log(self.stds).sum(-1)[None]
            - 0.5 * X.shape[1] * math.log(2 * math.pi)
        )
        return logsumexp(log_comp + np.log(self.weights)[None], axis=1)


def eight_gaussians():
    angles = np.arange(8) * np.pi / 4
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
    return GaussianMixture(means, 0.25)


def mixture_8d():
    rng = np.random.default_rng(8)
    means = rng.normal(0.0, 1.5, size=(5, 8))
    stds = rng.uniform(0.4, 1.0, size=(5, 8))
    return GaussianMixture(means, stds, weights=[0.3, 0.25, 0.2, 0.15, 0.1])


DATASETS = {"8gaussians-2d": (eight_gaussians, 20_000), "gmm-8d": (mixture_8d, 30_000)}


# ---------------------------------------------------------------------------- fitting
def training_nfe(est, n_train, batch_size):
    """Cumulative training NFE after each block (minibatch evaluations of a velocity net).

    Counts the optimisation steps, the pushes of the training and held-out rows through
    each trained block, and the held-out early-stopping checks (up to 2,048 rows each),
    all converted to evaluations on a minibatch of ``batch_size`` rows.
    """
    evals_per_step = evaluations_per_step(est.ode_solver) * est.n_ode_steps
    check_rows = min(2048, int(est.validation_fraction * n_train))
    total, out = 0.0, [0.0]
    for stats in est.block_stats_:
        per_iter = evals_per_step if stats["kind"] == "jko" else 1
        total += stats["n_iter"] * per_iter + stats["nfe_push"] * n_train / batch_size
        total += stats.get("n_checks", 0) * evals_per_step * check_rows / batch_size
        out.append(total)
    return out


def refinement_nfe(stats, est, n_val, batch_size):
    """Training NFE of the likelihood refinement: its steps (of ``stats["batch_size"]`` rows,
    ``batch_size`` for refinements that did not record it) and its held-out checks (up to
    2,048 rows through every block, with twice the solver steps), in evaluations on a
    minibatch of ``batch_size`` rows."""
    evals_per_step = evaluations_per_step(est.ode_solver) * est.n_ode_steps
    per_check = 2 * evals_per_step * len(est.block_stats_) * min(2048, n_val) / batch_size
    rows = stats.get("batch_size", batch_size) / batch_size
    return stats.get("n_iter", 0) * stats.get("nfe_per_step", 0) * rows + stats.get(
        "n_checks", 0) * per_check


def fit_decay(rows):
    """Least-squares fit of log gap = a - c * T over the rows with a finite OU time."""
    T = np.array([r["ou_time"] for r in rows])
    gap = np.array([r["kl_gap"] for r in rows])
    keep = np.isfinite(T)
    y = np.log(np.maximum(gap[keep], 1e-4))
    slope, intercept = np.polyfit(T[keep], y, 1)
    return -slope, intercept


def blocks_needed(rows, rate, intercept, est, eps):
    observed = next((r["block"] for r in rows if r["kl_gap"] <= eps), None)
    predicted = None
    if rate > 0:
        T = 0.0
        for k in range(1, 200):
            T += est.step_size * est.step_size_ratio ** (k - 1)
            if intercept - rate * T <= math.log(eps):
                predicted = k
                break
    return observed, predicted


def run_method(method, dist, X, X_test, log_p_test, args, seed):
    params = dict(
        method=method, n_blocks=args.n_blocks, hidden_layer_sizes=tuple(args.hidden),
        max_iter=args.max_iter_jko if method == "jko" else args.max_iter_lfm,
        batch_size=args.batch_size, random_state=seed, device="cpu", finetune_iter=0,
    )
    for name in ("step_size", "step_size_ratio"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    start = time.perf_counter()
    est = FlowDensityEstimator(**params).fit(X)
    elapsed = time.perf_counter() - start
    rows = est.convergence_path(X_test, log_density=log_p_test)
    nfe = training_nfe(est, len(X), args.batch_size)
    for row, n in zip(rows, nfe, strict=True):
        row["train_nfe"] = n
    rate, intercept = fit_decay(rows)
    diff = log_p_test - est.score_samples(X_test)
    out = {
        "method": method, "est": est, "rows": rows, "time_s": elapsed, "rate": rate,
        "intercept": intercept, "gap": rows[-1]["kl_gap"],
        "gap_se": float(np.std(diff) / math.sqrt(len(diff))),
        "needed": {eps: blocks_needed(rows, rate, intercept, est, eps) for eps in EPSILONS},
    }
    if args.finetune_iter:
        out["refined"] = refine(est, X, X_test, log_p_test, args, seed, nfe[-1])
    return out


def refine(est, X, X_test, log_p_test, args, seed, block_nfe):
    """The same blocks refined together by maximum likelihood (``finetune_iter`` steps, as
    ``FlowDensityEstimator`` does after block training), on the estimator's standardised
    training data with 10 % held out for its early stopping."""
    from sigflow.flows import TrainingResult, finetune_flow

    refined = copy.deepcopy(est)
    flow = refined.flow_.to(torch.float32)
    g = torch.Generator().manual_seed(seed + 1)
    Xs = torch.as_tensor((X - est.location_) / est.scale_, dtype=torch.float32)
    order = torch.randperm(len(Xs), generator=g)
    n_val = len(Xs) // 10
    # the estimator's own configuration (rows per step, learning rate, penalties, scoring
    # steps ...), with this run's number of steps
    config = est._training_config()
    config.finetune_iter, config.verbose = args.finetune_iter, 0
    config.probes = None if est.probes_ is None else est.probes_.to(torch.float32)
    start = time.perf_counter()
    result = TrainingResult(flow=flow)
    finetune_flow(result, Xs[order[n_val:]], Xs[order[:n_val]], config, g)
    elapsed = time.perf_counter() - start
    refined.flow_ = flow.to(torch.float64)
    refined.n_ode_steps_ = refined.flow_.n_steps
    diff = log_p_test - refined.score_samples(X_test)
    stats = result.finetune_stats
    return {
        "gap": float(np.mean(diff)), "gap_se": float(np.std(diff) / math.sqrt(len(diff))),
        "n_iter": stats["n_iter"], "time_s": elapsed,
        "train_nfe": block_nfe + refinement_nfe(stats, est, n_val, args.batch_size),
    }


def make_data(name, args):
    """The data set ``name``: its distribution, training sample and test sample (seeded)."""
    make, n_train = DATASETS[name]
    dist = make()
    rng = np.random.default_rng(args.seed)
    return dist, dist.sample(n_train, rng), dist.sample(args.n_test, rng)


def run_defaults(method, X, X_test, log_p_test, seed):
    """``FlowDensityEstimator(method=method)`` exactly as a user gets it (every default,
    including its own validation split and likelihood refinement): final gap and training NFE."""
    start = time.perf_counter()
    est = FlowDensityEstimator(method=method, random_state=seed, device="cpu").fit(X)
    elapsed = time.perf_counter() - start
    diff = log_p_test - est.score_samples(X_test)
    stats = est.finetune_stats_ or {}
    block_nfe = training_nfe(est, len(X), est.batch_size)[-1]
    refine_nfe = refinement_nfe(
        stats, est, int(est.validation_fraction * len(X)), est.batch_size
    )
    return {
        "method": method, "gap": float(np.mean(diff)),
        "gap_se": float(np.std(diff) / math.sqrt(len(diff))), "time_s": elapsed,
        "train_nfe": block_nfe + refine_nfe, "finetune_iter": stats.get("n_iter"),
        "block_iters": [b["n_iter"] for b in est.block_stats_],
    }


def run_zuko(X, X_test, log_p_test, args, seed):
    """Single-block CNF by maximum likelihood; held-out gap against cumulative training NFE."""
    import zuko

    torch.manual_seed(seed)  # zuko initialises from the global RNG; this script owns it
    mean, scale = X.mean(0), X.std(0)
    Xs = torch.as_tensor((X - mean) / scale, dtype=torch.float32)
    Xt = torch.as_tensor((X_test[: args.zuko_test] - mean) / scale, dtype=torch.float32)
    log_jac = -np.log(scale).sum()
    ref = float(np.mean(log_p_test[: args.zuko_test]))
    flow = zuko.flows.CNF(X.shape[1], hidden_features=tuple(args.hidden))
    counter = [0]
    flow.transform.ode.register_forward_hook(lambda m, i, o: counter.__setitem__(0, counter[0] + 1))
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    curve, train_time, step = [], 0.0, 0
    while train_time < args.zuko_seconds and counter[0] < args.zuko_max_nfe:
        start = time.perf_counter()
        idx = torch.randint(0, len(Xs), (args.batch_size,), generator=g)
        loss = -flow().log_prob(Xs[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        train_time += time.perf_counter() - start
        step += 1
        if step % args.zuko_eval_every == 0:
            nfe_train = counter[0]
            with torch.no_grad():
                ll = float(flow().log_prob(Xt).mean()) + log_jac
            counter[0] = nfe_train  # evaluation is not training
            curve.append({"step": step, "train_nfe": nfe_train, "gap": ref - ll,
                          "time_s": train_time})
            if args.zuko_verbose:
                print(f"zuko CNF step {step}: train NFE {nfe_train:,}, held-out gap "
                      f"{ref - ll:.4f}, {train_time:.0f} s", flush=True)
    return {"curve": curve, "steps": step, "time_s": train_time}


def first_nfe_reaching(curve, gap):
    return next((c["train_nfe"] for c in curve if c["gap"] <= gap), None)


# ---------------------------------------------------------------------------- report
def fmt_blocks(pair, n_blocks):
    observed, predicted = pair
    obs = str(observed) if observed is not None else f">{n_blocks}"
    pred = str(predicted) if predicted is not None else "-"
    return f"{obs} ({pred})"


def report(results, args):
    lines = []
    threads = os.environ.get("OMP_NUM_THREADS")
    lines.append(
        f"Command: `{'' if threads is None else f'OMP_NUM_THREADS={threads} '}python "
        f"{' '.join(shlex.quote(a) for a in sys.argv)}` ({date.today().isoformat()}, "
        f"{machine()}, {torch.get_num_threads()} torch thread(s))."
    )
    lines.append("")
    lines.append("Gap after each block: held-out `E[log p] - E[log q_k]` (nats), `q_k` = first k "
                 "blocks + N(0, I); `T` = total OU time.")
    lines.append("")
    for name, res in results.items():
        for r in res["methods"]:
            cells = " | ".join(
                f"{row['kl_gap']:.3f} (T={row['ou_time']:.2f})"
                if np.isfinite(row["ou_time"]) else f"{row['kl_gap']:.3f} (free)"
                for row in r["rows"]
            )
            lines.append(f"- {name} `{r['method']}`: {cells}")
    lines.append("")
    lines.append(
        "| data | method | final NLL gap (nats, ±s.e.) | decay rate c | blocks for eps=0.1 | "
        "0.03 | 0.01 | train NFE | fit time (s) | zuko CNF NFE to same gap | NFE ratio |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    milestones = []
    for name, res in results.items():
        zuko = res["zuko"]
        for r in res["methods"]:
            total = r["rows"][-1]["train_nfe"]
            z = first_nfe_reaching(zuko["curve"], r["gap"])
            last = zuko["curve"][-1] if zuko["curve"] else {"train_nfe": 0}
            ztxt = f"{z:,}" if z is not None else f"not reached in {last['train_nfe']:,}"
            ratio = f"{z / total:.1f}x" if z is not None else f">{last['train_nfe'] / total:.2f}x"
            needed = [fmt_blocks(r["needed"][eps], args.n_blocks) for eps in EPSILONS]
            lines.append(
                f"| {name} | {r['method']} | {r['gap']:.3f} ± {r['gap_se']:.3f} | "
                f"{r['rate']:.2f} | {' | '.join(needed)} | {total:,.0f} | {r['time_s']:.0f} | "
                f"{ztxt} | {ratio} |"
            )
            if "refined" in r:
                ref = r["refined"]
                z = first_nfe_reaching(zuko["curve"], ref["gap"])
                ztxt = f"{z:,}" if z is not None else f"not reached in {last['train_nfe']:,}"
                ratio = (f"{z / ref['train_nfe']:.1f}x" if z is not None
                         else f">{last['train_nfe'] / ref['train_nfe']:.2f}x")
                lines.append(
                    f"| {name} | {r['method']} + refinement ({ref['n_iter']} steps) | "
                    f"{ref['gap']:.3f} ± {ref['gap_se']:.3f} | | | | | "
                    f"{ref['train_nfe']:,.0f} | {r['time_s'] + ref['time_s']:.0f} | "
                    f"{ztxt} | {ratio} |"
                )
        best = min((c["gap"] for c in zuko["curve"]), default=float("nan"))
        marks = zuko["curve"][:: max(1, len(zuko["curve"]) // 8)] + zuko["curve"][-1:]
        milestones.append(f"- {name} zuko CNF held-out gap at training NFE: " + ", ".join(
            f"{c['gap']:.3f} @ {c['train_nfe']:,}" for c in marks))
        lines.append(
            f"| {name} | zuko CNF | best {best:.3f} | | | | | "
            f"{zuko['curve'][-1]['train_nfe'] if zuko['curve'] else 0:,} | "
            f"{zuko['time_s']:.0f} ({zuko['steps']} steps) | | |"
        )
    return "\n".join(lines + [""] + milestones)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(5.5 * len(results), 8), squeeze=False)
    colors = {"lfm": "C0", "jko": "C1"}
    for col, (name, res) in enumerate(results.items()):
        ax = axes[0, col]
        for r in res["methods"]:
            rows = r["rows"]
            T = np.array([row["ou_time"] for row in rows])
            gap = np.maximum([row["kl_gap"] for row in rows], 1e-4)
            ok = np.isfinite(T)
            ax.semilogy(T[ok], gap[ok], "o-", color=colors[r["method"]], label=r["method"])
            if not ok.all():
                ax.semilogy([T[ok][-1] + 0.5], [gap[-1]], "s", color=colors[r["method"]],
                            label=f"{r['method']} + free block")
            grid = np.linspace(0, T[ok].max(), 50)
            ax.semilogy(grid, np.exp(r["intercept"] - r["rate"] * grid), ":",
                        color=colors[r["method"]], label=f"fit c={r['rate']:.2f}")
        for eps in EPSILONS:
            ax.axhline(eps, color="grey", lw=0.5)
        ax.set_xlabel("total OU time T_k = h_1 + ... + h_k")
        ax.set_ylabel("KL gap after k blocks (nats)")
        ax.set_title(name)
        ax.legend(fontsize=8)
        ax = axes[1, col]
        for r in res["methods"]:
            nfe = [row["train_nfe"] for row in r["rows"]][1:]
            gap = np.maximum([row["kl_gap"] for row in r["rows"]][1:], 1e-4)
            ax.loglog(nfe, gap, "o-", color=colors[r["method"]], label=f"{r['method']} (per block)")
            if "refined" in r:
                ref = r["refined"]
                ax.loglog([nfe[-1], ref["train_nfe"]], [gap[-1], max(ref["gap"], 1e-4)], "--",
                          color=colors[r["method"]])
                ax.loglog([ref["train_nfe"]], [max(ref["gap"], 1e-4)], "*",
                          color=colors[r["method"]], markersize=12,
                          label=f"{r['method']} + refinement ({ref['n_iter']} steps)")
        curve = res["zuko"]["curve"]
        if curve:
            ax.loglog([c["train_nfe"] for c in curve], np.maximum([c["gap"] for c in curve], 1e-4),
                      "-", color="C2", label="zuko CNF (max. likelihood)")
        ax.set_xlabel("training NFE (minibatch evaluations)")
        ax.set_ylabel("held-out NLL gap (nats)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"saved {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-blocks", type=int, default=6)
    parser.add_argument("--max-iter-jko", type=int, default=200)
    parser.add_argument("--max-iter-lfm", type=int, default=1000)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--step-size", type=float, default=None, help="default: the estimator's")
    parser.add_argument("--step-size-ratio", type=float, default=None)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--zuko-seconds", type=float, default=120.0)
    parser.add_argument("--zuko-eval-every", type=int, default=10)
    parser.add_argument("--zuko-test", type=int, default=2000)
    parser.add_argument("--zuko-max-nfe", type=float, default=float("inf"),
                        help="also stop the CNF once its training NFE reach this budget")
    parser.add_argument("--zuko-verbose", action="store_true",
                        help="print the CNF's held-out gap at every evaluation")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--methods", nargs="*", default=["lfm", "jko"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=str(HERE / "convergence.png"))
    parser.add_argument(
        "--finetune-iter", type=int, default=0,
        help="also refine the trained blocks together by maximum likelihood for this many "
             "steps and report the refined gap and NFE (the per-block picture is always of "
             "the blocks before refinement)",
    )
    parser.add_argument(
        "--replot", nargs="+", default=None, metavar="JSON",
        help="only draw the plot from results saved with --json (methods and CNF curves of "
             "several runs are merged per data set)",
    )
    parser.add_argument(
        "--as-estimator", action="store_true",
        help="only fit FlowDensityEstimator(method=...) with all its defaults (its own "
             "validation split and refinement) and print its gap and training NFE",
    )
    args = parser.parse_args(argv)
    if args.as_estimator:
        torch.set_num_threads(1)
        for name in args.datasets:
            dist, X, X_test = make_data(name, args)
            for method in args.methods:
                r = run_defaults(method, X, X_test, dist.log_density(X_test), args.seed)
                print(f"{name} {method} (estimator defaults): gap {r['gap']:.4f} +- "
                      f"{r['gap_se']:.4f}, train NFE {r['train_nfe']:,.0f}, refinement steps "
                      f"{r['finetune_iter']}, steps per block {r['block_iters']}, "
                      f"fit {r['time_s']:.0f} s", flush=True)
        return
    if args.replot:
        merged = {}
        for path in args.replot:
            with open(path) as fh:
                for name, res in json.load(fh).items():
                    into = merged.setdefault(name, {"methods": [], "zuko": {"curve": []}})
                    into["methods"] += res["methods"]
                    if res["zuko"]["curve"]:
                        into["zuko"] = res["zuko"]
        plot(merged, args.plot)
        return
    torch.set_num_threads(1)
    results = {}
    for name in args.datasets:
        dist, X, X_test = make_data(name, args)
        log_p_test = dist.log_density(X_test)
        methods = []
        for method in args.methods:
            r = run_method(method, dist, X, X_test, log_p_test, args, args.seed)
            print(f"{name} {method}: gap {r['gap']:.4f} rate {r['rate']:.3f} "
                  f"time {r['time_s']:.0f}s", flush=True)
            if "refined" in r:
                print(f"{name} {method} + refinement: gap {r['refined']['gap']:.4f} "
                      f"({r['refined']['n_iter']} steps, {r['refined']['time_s']:.0f}s, "
                      f"train NFE {r['refined']['train_nfe']:,.0f})", flush=True)
            methods.append(r)
        zuko = run_zuko(X, X_test, log_p_test, args, args.seed) if args.zuko_seconds > 0 else {
            "curve": [], "steps": 0, "time_s": 0.0}
        if zuko["curve"]:
            print(f"{name} zuko: last gap {zuko['curve'][-1]['gap']:.4f} after "
                  f"{zuko['curve'][-1]['train_nfe']} NFE", flush=True)
        results[name] = {"methods": methods, "zuko": zuko}
    print(report(results, args))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1,
                      default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
