"""Per-block convergence diagnostics: how far the data pushed through k blocks is from N(0, I)."""

from __future__ import annotations

import math
import numbers

import torch

from ._flow import standard_normal_log_prob

__all__ = ["convergence_diagnostics", "sliced_wasserstein_to_normal"]


# Rows per push in :func:`convergence_diagnostics`.
DIAGNOSTIC_CHUNK = 8192


def _check_n_projections(n_projections):
    if (
        isinstance(n_projections, bool)
        or not isinstance(n_projections, numbers.Integral)
        or n_projections < 1
    ):
        raise ValueError(f"n_projections must be a positive integer, got {n_projections!r}")
    return int(n_projections)


def sliced_wasserstein_to_normal(z, *, n_projections=128, generator=None):
    """Sliced Wasserstein-2 distance between the rows of ``z`` and ``N(0, I)``.

    ``sqrt(mean_theta W_2^2(theta^T z, N(0, 1)))`` over random unit directions ``theta``;
    each one-dimensional distance compares the sorted projections with the normal quantiles
    at ``(i - 1/2) / n``. For a finite sample of ``N(0, I)`` itself the value is small but
    not zero (about ``n**-0.5``).

    Parameters
    ----------
    z : torch.Tensor of shape (n_samples, dim)
    n_projections : int, default=128
    generator : torch.Generator, optional
        Draws the directions; ``None`` uses a fixed seed (0), so the value is deterministic.

    Returns
    -------
    float

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import sliced_wasserstein_to_normal
    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(5000, 3, generator=g, dtype=torch.float64)
    >>> near, far = sliced_wasserstein_to_normal(z), sliced_wasserstein_to_normal(3 + z)
    >>> near < 0.05 < 1.0 < far
    True
    """
    n_projections = _check_n_projections(n_projections)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    n, dim = z.shape
    # drawn where the generator lives (a CUDA generator draws CUDA tensors), used on the CPU
    theta = torch.randn(n_projections, dim, generator=generator, dtype=torch.float64,
                        device=generator.device).cpu()
    theta = theta / theta.norm(dim=1, keepdim=True)
    z = z.detach().to(device="cpu", dtype=torch.float64)
    levels = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    quantiles = torch.special.ndtri(levels).unsqueeze(1)
    total = 0.0
    # 16 directions at a time: all of them at once hold n x n_projections values several
    # times over (1.3 GB for 320,000 rows)
    for directions in torch.split(theta, 16):
        proj, _ = torch.sort(z @ directions.T, dim=0)  # (n, <= 16)
        total += float(((proj - quantiles) ** 2).sum())
    return math.sqrt(total / (n * n_projections)) if n else float("nan")


@torch.no_grad()  # floats out: no graph to keep
def convergence_diagnostics(flow, X, *, log_density=None, probes=None, n_projections=128,
                            generator=None, n_blocks=None):
    """How close the data pushed through the first ``k`` blocks is to ``N(0, I)``, for each k.

    The model after ``k`` blocks is ``q_k(x) = N(T_k...T_1(x); 0, I) * prod_j |det dT_j|``
    (the first ``k`` blocks followed directly by the Gaussian). Since KL divergence is
    invariant under the bijection ``T_k...T_1``, ``KL(p || q_k) = KL(T_k...T_1#p || N(0, I))``:
    the quantity a Wasserstein gradient flow toward ``N(0, I)`` decreases, block after block.

    Parameters
    ----------
    flow : Flow
    X : torch.Tensor of shape (n_samples, dim)
        Samples of the data distribution, in the flow's input coordinates (for the
        estimators: standardised).
    log_density : torch.Tensor of shape (n_samples,), optional
        The true log-density of each row of ``X`` in the same coordinates; adds ``kl_gap``.
    probes : torch.Tensor, optional
        Hutchinson probes for the divergence; exact when ``None``.
    n_projections : int, default=128
        Directions of the sliced Wasserstein distance.
    generator : torch.Generator, optional
        Draws the directions (``None``: a fixed seed, so results are deterministic).
    n_blocks : int, optional
        Only the first ``n_blocks`` blocks.

    Returns
    -------
    list of dict
        One dict per ``k = 0 .. K`` (``k = 0``: the data itself) with keys ``block`` (k),
        ``latent_nll`` (``E[-log N(z_k)]``), ``nll`` (``E[-log q_k(x)]``),
        ``sliced_wasserstein`` (of ``z_k`` to ``N(0, I)``), ``nfe`` (function evaluations per
        sample so far; with ``"dopri5"``, whose steps depend on the rows pushed together,
        the mean over the row chunks, weighted by their rows) and, when ``log_density`` is
        given, ``kl_gap`` (``E[log p(x)] - E[log q_k(x)]``, an estimate of ``KL(p || q_k)``).

    Examples
    --------
    >>> import torch
    >>> from sigflow.flows import Flow, FlowBlock, VelocityMLP, convergence_diagnostics
    >>> g = torch.Generator().manual_seed(0)
    >>> flow = Flow([FlowBlock(VelocityMLP(2, (8,), generator=g)) for _ in range(2)])
    >>> rows = convergence_diagnostics(flow, torch.randn(500, 2, generator=g))
    >>> [row["block"] for row in rows], sorted(rows[0])
    ([0, 1, 2], ['block', 'latent_nll', 'nfe', 'nll', 'sliced_wasserstein'])
    """
    n_projections = _check_n_projections(n_projections)  # before the pushes, not after
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    z = X
    logdet = torch.zeros(X.shape[0], dtype=X.dtype, device=X.device)
    nfe = 0
    rows = []
    blocks = list(flow.blocks)[:n_blocks]
    workspace = {}
    for k in range(len(blocks) + 1):
        if k > 0:
            # in row chunks: one push of all rows holds every solver stage for all of them
            # (about 5 KB per row at d = 8); only z and the log-determinant are kept
            pushed = [
                blocks[k - 1].push(
                    chunk, logdet=True, n_steps=flow.n_steps, solver=flow.solver,
                    probes=probes, workspace=workspace,
                )
                for chunk in torch.split(z, DIAGNOSTIC_CHUNK)
            ]
            if pushed:
                z = torch.cat([p[0] for p in pushed])
                logdet = logdet + torch.cat([p[1] for p in pushed])
                counts = {p[2] for p in pushed}
                if len(counts) == 1:
                    nfe += counts.pop()
                else:  # adaptive steps depend on the rows: the mean per row over the chunks
                    nfe += sum(p[2] * p[0].shape[0] for p in pushed) / z.shape[0]
            else:  # no rows: the count of one push
                nfe += blocks[k - 1].push(
                    z, logdet=True, n_steps=flow.n_steps, solver=flow.solver, probes=probes
                )[2]
        log_q = standard_normal_log_prob(z) + logdet
        generator.set_state(state)  # the same directions for every k
        row = {
            "block": k,
            "latent_nll": float(-standard_normal_log_prob(z).mean()),
            "nll": float(-log_q.mean()),
            "sliced_wasserstein": sliced_wasserstein_to_normal(
                z, n_projections=n_projections, generator=generator
            ),
            "nfe": nfe,
        }
        if log_density is not None:
            row["kl_gap"] = float((log_density.to(log_q) - log_q).mean())
        rows.append(row)
    return rows
