"""Cost of one likelihood-refinement step, by how the network is evaluated and differentiated.

Run from the repository root::

    python benchmarks/training_step.py                  # d = 2 and 8, batches 16 and 512
    python benchmarks/training_step.py --quick          # a smoke test

A step of the refinement (``finetune_flow``) pushes a batch through every block with the
fixed-step solver (4 blocks x 4 RK4 steps x 4 evaluations = 64 network evaluations, each with
its exact divergence), adds the solver's error indicator, backpropagates and takes an Adam
step. Three ways of doing the same arithmetic are timed in this process on the same flow and
the same batches, in alternating rounds (the median round is reported, so that a change in
the machine's load affects all three alike):

* ``per-call``: the network seen as a generic module (no ``prepared``): every evaluation
  gathers the weights and builds the trace matrix again, and plain autograd records about
  twenty nodes per evaluation (the way steps were computed before commit 5a1ff91, except for
  the ``nn.ParameterList`` slicing that commit also removed);
* ``prepared``: weights, transposes, trace matrix and time biases gathered once per solve,
  plain autograd (``fused=False``);
* ``fused``: as ``prepared``, and each evaluation differentiated through one autograd node
  with a hand-written backward (``fused=True``, what the refinement uses).

A step at batch 16 costs almost what one at batch 512 does when the step is bound by
per-operation overhead rather than arithmetic; the ratio of the two shows which it is.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from sigflow.flows import Flow, FlowBlock, VelocityMLP, flow_nll_terms

VARIANTS = ("per-call", "prepared", "fused")


class _PerCall(torch.nn.Module):
    """The network as a generic module: one full network call per evaluation."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t):
        return self.net(x, t)

    def forward_with_divergence(self, x, t):
        return self.net.forward_with_divergence(x, t)


def _flow(dim, wrap, seed=0):
    g = torch.Generator().manual_seed(seed)
    nets = [VelocityMLP(dim, (64, 64), generator=g) for _ in range(4)]
    return Flow([FlowBlock(_PerCall(n) if wrap else n) for n in nets], n_steps=4)


def _stepper(dim, batch, variant, seed=0):
    """A function doing one refinement step (with a solver penalty; its weight does not change
    the cost)."""
    flow = _flow(dim, wrap=variant == "per-call", seed=seed)
    params = list(flow.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-4)
    data = torch.randn(20_000, dim, generator=torch.Generator().manual_seed(seed + 1))
    gen = torch.Generator().manual_seed(seed + 2)

    def one_step():
        idx = torch.randint(0, len(data), (batch,), generator=gen)
        nll, _, error, _ = flow_nll_terms(
            flow, data[idx], solver_error=True, kinetic=False, fused=variant == "fused"
        )
        loss = nll.mean() + 10.0 * error.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        one_step()
    return one_step


def step_times(dim, batch, n_steps, rounds):
    """Median seconds per step of each variant, the variants timed in alternation."""
    steppers = {v: _stepper(dim, batch, v) for v in VARIANTS}
    times = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant, one_step in steppers.items():
            start = time.perf_counter()
            for _ in range(n_steps):
                one_step()
            times[variant].append((time.perf_counter() - start) / n_steps)
    return {v: statistics.median(t) for v, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 512])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of alternating variants; the median round is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="d = 2, batch 16, 3 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.dims, args.batches, args.steps, args.rounds = [2], [16], 2, 1
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} thread(s), Python {platform.python_version()}, "
          f"load average at start {load:.1f}; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print("| d | batch | per-call (ms) | prepared (ms) | fused (ms) | per-call / fused |")
    print("|---:|---:|---:|---:|---:|---:|")
    for dim in args.dims:
        for batch in args.batches:
            ms = {v: 1e3 * t for v, t in step_times(dim, batch, args.steps, args.rounds).items()}
            print(f"| {dim} | {batch} | {ms['per-call']:.1f} | {ms['prepared']:.1f} | "
                  f"{ms['fused']:.1f} | {ms['per-call'] / ms['fused']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
