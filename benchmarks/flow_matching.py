"""Flow-matching training: sigflow against torchcfm, same data, same steps, same evaluation.

Run from the repository root::

    python benchmarks/flow_matching.py                          # eight Gaussians and gmm8
    python benchmarks/flow_matching.py --quick                  # small sizes, a smoke test
    python benchmarks/flow_matching.py --datasets gmm8 --steps 3400 --threads 2

torchcfm is the reference implementation of conditional flow matching (Tong et al., 2024).
Both libraries train a velocity network by flow matching on the same standardised training
set, batch size and number of Adam steps, in this process:

* **torchcfm** as its examples do: ``ConditionalFlowMatcher(sigma=0)`` (straight paths from
  N(0, I) to the data, as sigflow's ``"fm"``), its ``MLP(dim, w=64, time_varying=True)``
  (three hidden SELU layers of 64; time enters as an input), Adam at a constant learning rate
  of 1e-3;
* **sigflow** ``FlowDensityEstimator(method="fm")`` (one free block) and ``method="lfm"``
  (the default: 3 Ornstein-Uhlenbeck blocks and a free block), both with
  ``finetune_iter=0`` (flow matching only, no maximum-likelihood refinement) and
  ``validation_fraction=0`` (no early stopping, so exactly the steps asked for);
  its default network (two hidden SiLU layers of 64 with time features in every layer) and
  learning-rate schedule. ``lfm`` gets the same total number of steps, split over its
  blocks.

Training speed is the fit time divided by the number of steps (sigflow's fit also
standardises the data and pushes the training set through each block; torchcfm's loop does
neither). Quality is the held-out gap ``E_p[log p - log q]`` (nats, >= 0, 0 is the limit;
the datasets of ``benchmarks/density.py``, whose log-densities are known), with every model's
exact log-likelihood computed the same way: sigflow's fixed-step RK4 with ``--eval-steps``
steps per block and the exact divergence in float64 (for torchcfm's network the divergence
comes from autograd, ``d`` backward passes). The torchcfm network runs from noise (``t=0``)
to data (``t=1``); it is evaluated as the field ``v(x, t) = -u(x, 1 - t)`` from data to noise.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch
from density import DATASETS, Standardised, draw_data, machine, score_with_steps
from torch import nn

from sigflow import FlowDensityEstimator
from sigflow.flows import FlowBlock, standard_normal_log_prob


class ReversedField(nn.Module):
    """A torchcfm network ``u(x, s)`` (noise at ``s=0``, data at ``s=1``) as sigflow's
    data-to-noise field ``v(x, t) = -u(x, 1 - t)``."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t):
        s = torch.full((x.shape[0], 1), 1.0 - float(t), dtype=x.dtype, device=x.device)
        return -self.net(torch.cat([x, s], dim=1))


def train_torchcfm(Z, steps, batch_size, seed, lr=1e-3):
    """torchcfm's conditional flow matching on standardised rows ``Z`` (float32 tensor)."""
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher
    from torchcfm.models.models import MLP

    torch.manual_seed(seed)  # torchcfm draws t and builds its network from the global RNG
    dim = Z.shape[1]
    net = MLP(dim, w=64, time_varying=True)
    matcher = ConditionalFlowMatcher(sigma=0.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x1 = Z[torch.randint(0, Z.shape[0], (batch_size,), generator=gen)]
        x0 = torch.randn(batch_size, dim, generator=gen)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        vt = net(torch.cat([xt, t[:, None]], dim=-1))
        loss = torch.mean((vt - ut) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return net, losses


def torchcfm_log_prob(net, Zt, eval_steps, chunk=4096):
    """Exact log-density (standardised units) of a torchcfm network: RK4, autograd trace."""
    block = FlowBlock(ReversedField(net).double())
    out = []
    for part in torch.split(torch.as_tensor(Zt, dtype=torch.float64), chunk):
        z, logdet, _ = block.push(part, logdet=True, n_steps=eval_steps, solver="rk4")
        out.append((standard_normal_log_prob(z) + logdet).detach().numpy())
    return np.concatenate(out)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def run_dataset(name, args):
    dist, X, Xt, log_p = draw_data(name, args)
    print(f"{name}: d={dist.dim}, {len(X)} train, {len(Xt)} test, {args.steps} steps, "
          f"batch {args.batch_size}", flush=True)
    rows = []

    def record(model, fit, log_q, extra):
        gap = float(np.mean(log_p - log_q))
        se = float(np.std(log_p - log_q) / math.sqrt(len(Xt)))
        row = {"dataset": name, "d": dist.dim, "model": model, "gap": gap, "se": se, **fit,
               **extra}
        rows.append(row)
        print(f"  {model:22s} gap {gap:7.4f} ± {se:.4f}  fit {fit['fit_s']:6.1f} s  "
              f"{1000 * fit['fit_s'] / fit['steps']:6.2f} ms/step  {extra}", flush=True)

    std = Standardised(X)
    Z = torch.as_tensor(std(X), dtype=torch.float32)
    t0, c0 = time.perf_counter(), time.process_time()
    net, losses = train_torchcfm(Z, args.steps, args.batch_size, args.seed)
    fit = {"fit_s": time.perf_counter() - t0, "fit_cpu": time.process_time() - c0,
           "steps": args.steps}
    log_q = torchcfm_log_prob(net, std(Xt), args.eval_steps) + std.log_jac
    record("torchcfm CFM", fit, log_q,
           {"params": n_params(net), "final loss": round(float(np.mean(losses[-100:])), 4)})

    for method in ("fm", "lfm"):
        n_blocks = 1 if method == "fm" else 4
        per_block = max(1, args.steps // n_blocks)
        est = FlowDensityEstimator(
            method=method, max_iter=per_block, finetune_iter=0, validation_fraction=0.0,
            batch_size=args.batch_size, random_state=args.seed,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        est.fit(X)
        fit = {"fit_s": time.perf_counter() - t0, "fit_cpu": time.process_time() - c0,
               "steps": est.n_iter_}
        log_q = score_with_steps(est, Xt, args.eval_steps)
        default_gap = float(np.mean(log_p - est.score_samples(Xt)))
        record(f"sigflow {method}", fit, log_q,
               {"params": n_params(est.flow_.blocks[0]) * len(est.flow_.blocks),
                "blocks": len(est.flow_.blocks),
                f"gap rk4x{est.flow_.n_steps}": round(default_gap, 4)})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["eight_gaussians", "gmm8"],
                        choices=list(DATASETS))
    parser.add_argument("--steps", type=int, default=4000, help="Adam steps for every model")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--eval-steps", type=int, default=16,
                        help="RK4 steps per block for every model's log-likelihood")
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true",
                        help="3,000 training points, 1,000 test points, 400 steps")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n_test, args.steps = min(args.n_test, 1000), min(args.steps, 400)
    import torchcfm

    print("machine:", machine(), f"torchcfm {torchcfm.__version__}", flush=True)
    print("command: python", " ".join(sys.argv), flush=True)
    # Untimed warm-ups: the first training in a process pays torch's one-off costs (about
    # 0.9 s here), which would otherwise fall on whichever model is timed first.
    warm = torch.randn(600, 2, generator=torch.Generator().manual_seed(0))
    train_torchcfm(warm, 20, 128, 0)
    FlowDensityEstimator(method="fm", max_iter=20, finetune_iter=0, validation_fraction=0.0,
                         batch_size=128, random_state=0).fit(warm.numpy())
    rows = []
    for name in args.datasets:
        rows += run_dataset(name, args)

    print(f"\n| dataset | d | model | steps | gap (nats, RK4 x {args.eval_steps}) | fit (s) "
          "| fit CPU (s) | ms / step | notes |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    skip = {"dataset", "d", "model", "gap", "se", "fit_s", "fit_cpu", "steps"}
    for r in rows:
        notes = ", ".join(f"{k} {v}" for k, v in r.items() if k not in skip)
        print(f"| {r['dataset']} | {r['d']} | {r['model']} | {r['steps']} "
              f"| {r['gap']:.4f} ± {r['se']:.4f} | {r['fit_s']:.1f} | {r['fit_cpu']:.1f} "
              f"| {1000 * r['fit_s'] / r['steps']:.2f} | {notes} |")
    print("\nRatios (torchcfm / sigflow; > 1 means sigflow is faster or closer):")
    for name in args.datasets:
        by = {r["model"]: r for r in rows if r["dataset"] == name}
        ref = by["torchcfm CFM"]
        for model in ("sigflow fm", "sigflow lfm"):
            r = by[model]
            speed = (ref["fit_s"] / ref["steps"]) / (r["fit_s"] / r["steps"])
            print(f"  {name} {model}: time per step {speed:.2f}x, gap {ref['gap'] / r['gap']:.2f}x")


if __name__ == "__main__":
    main()
