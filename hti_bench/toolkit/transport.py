"""Per-condition optimal transport between anchor sample sets, and resampling helpers.

Couplings are computed *within* each condition: pairing samples of different x would move mass between
conditions, which no network does. Used by the interpolation baselines and reusable by any plugin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hti_bench.scoring import NUM_ITER_MAX


@dataclass(frozen=True)
class Coupling:
    """A sparse transport plan between sources y0 (n, D) and targets y1 (m, D).

    ``rows[i]`` is paired with ``cols[i]`` carrying ``mass[i]`` (masses sum to 1).
    """

    rows: Tensor
    cols: Tensor
    mass: Tensor


def exact_coupling(y0: Tensor, y1: Tensor) -> Coupling:
    """Optimal coupling of two uniform sample sets for the squared Euclidean cost.

    One dimension: the monotone (sorted) coupling, which is optimal for every convex cost. Otherwise
    POT's exact network simplex; with equal sizes the plan is a permutation.
    """
    import ot

    n, m = y0.shape[0], y1.shape[0]
    if y0.shape[1] == 1 and n == m:
        rows = torch.argsort(y0[:, 0])
        cols = torch.argsort(y1[:, 0])
        return Coupling(rows, cols, torch.full((n,), 1.0 / n))
    a, b = y0.double().numpy(), y1.double().numpy()
    plan = ot.emd(np.full(n, 1.0 / n), np.full(m, 1.0 / m), ot.dist(a, b), numItermax=NUM_ITER_MAX)
    rows, cols = np.nonzero(plan > 1e-12)
    mass = plan[rows, cols]
    return Coupling(torch.as_tensor(rows), torch.as_tensor(cols), torch.as_tensor(mass / mass.sum()))


def draw_many(points: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """n rows of each of C uniform sets ``points`` (C, N, D) → (C, n, D), without replacement while
    n ≤ N: one batched draw (random keys, argsort) instead of a Python loop of :func:`draw`."""
    c, total = points.shape[0], points.shape[1]
    if n > total:
        return torch.stack([draw(p, n, generator) for p in points])
    idx = torch.rand(c, total, generator=generator).argsort(dim=1)[:, :n]
    return points.gather(1, idx[..., None].expand(c, n, points.shape[2]))


def draw(points: Tensor, n: int, generator: torch.Generator, weights: Tensor | None = None) -> Tensor:
    """n rows of ``points`` (N, D): without replacement while possible (uniform weights), else by weight.

    Drawing without replacement keeps a requested sample as close as possible to the set it comes
    from; duplicates would add resampling noise to the score.
    """
    total = points.shape[0]
    if weights is None or bool(torch.allclose(weights, weights[0].expand_as(weights))):
        if n <= total:
            return points[torch.randperm(total, generator=generator)[:n]]
        reps = torch.cat([torch.randperm(total, generator=generator) for _ in range(n // total)])
        extra = torch.randperm(total, generator=generator)[: n - reps.shape[0]]
        return points[torch.cat([reps, extra])]
    idx = torch.multinomial(weights.double(), n, replacement=True, generator=generator)
    return points[idx]
