"""Wasserstein barycenter of the anchors around λ: McCann's interpolation for several hyperparameters.

Per condition x, the answer at λ is the W₂ barycenter of the sample sets of the anchor simplex that
contains λ (its Delaunay triangle in unit clock time), each vertex weighted by λ's barycentric
coordinate: argmin_ν Σ_v w_v W₂²(ν, μ_v) (Agueh & Carlier, "Barycenters in the Wasserstein space",
SIAM J. Math. Anal. 2011). With two anchors this is the displacement interpolation (mccann); for
Gaussian vertices it is the Gaussian whose covariance solves the Bures fixed point
S = Σ_v w_v (S^½ Σ_v S^½)^½, which is what tests/harness/test_hyperparameter_points.py checks it against. It is exact
when the true path is a W₂ "plane", e.g. location–scale families whose parameters are affine in the
clocks.

Computed with POT's free-support barycenter (``ot.lp.free_support_barycenter``: Cuturi & Doucet 2014,
the fixed-point iteration of Álvarez-Esteban et al. 2016 with exact OT), on as many support points as
each anchor has samples, started at the heaviest vertex's samples. For one output dimension the exact
rule is used instead: the barycenter's quantile function is the weighted mean of the vertices'.
On a task of one hyperparameter it is mccann and is skipped there.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from hti_bench.errors import ConfigError
from hti_bench.toolkit.interpolation import AnchorInterpolator
from hti_bench.toolkit.transport import draw_many
from hti_bench.view import TaskView


class Barycenter(AnchorInterpolator):
    name: ClassVar[str] = "barycenter"
    description: ClassVar[str] = (
        "Per-condition W2 barycenter of the anchor simplex around λ, barycentric weights "
        "(McCann for several hyperparameters; POT free-support)."
    )
    supports_multi: ClassVar[bool] = True
    references: ClassVar[tuple[str, ...]] = (
        "Agueh & Carlier, Barycenters in the Wasserstein space, SIAM J. Math. Anal. 2011",
        "Cuturi & Doucet, Fast computation of Wasserstein barycenters, ICML 2014",
    )
    test_config: ClassVar[dict] = {"iterations": 10}

    def __init__(self, *, iterations: int = 100, tol: float = 1e-7) -> None:
        self.iterations = iterations
        self.tol = tol

    def check_params(self) -> None:
        if int(self.iterations) < 1:
            raise ConfigError(f"iterations must be ≥ 1, got {self.iterations}")
        if not float(self.tol) > 0:
            raise ConfigError(f"tol must be > 0, got {self.tol}")

    def skip(self, task: TaskView) -> str | None:
        if task.d == 1:
            return (
                "with one hyperparameter the barycenter of the two anchors around λ is their displacement "
                "interpolation: that is mccann"
            )
        return super().skip(task)

    def interpolate(self, k: int, s: float, cond: int, n: int, generator: torch.Generator) -> Tensor:
        # One hyperparameter (called directly; the harness skips it there): the two anchors' barycenter.
        support = barycenter(
            self.anchors_.samples[[k, k + 1], cond], (1.0 - s, s), iterations=int(self.iterations), tol=float(self.tol)
        )
        return draw_many(support[None], n, generator)[0]

    def interpolate_simplex(
        self, vertices: tuple[int, ...], weights: tuple[float, ...], index: Tensor, n: int, generator: torch.Generator
    ) -> Tensor:
        support = torch.stack(
            [
                barycenter(
                    self.anchors_.samples[vertices, int(i)],
                    weights,
                    iterations=int(self.iterations),
                    tol=float(self.tol),
                )
                for i in index
            ]
        )
        return draw_many(support, n, generator)


def barycenter(
    sets: Tensor, weights: tuple[float, ...] | Tensor, *, iterations: int = 100, tol: float = 1e-7
) -> Tensor:
    """The W₂ barycenter, weighted by ``weights`` (V,), of V uniform sample sets ``sets`` (V, N, D):
    N support points (N, D). Vertices of weight 0 are dropped; one of weight 1 is returned as it is."""
    w = np.asarray(weights, dtype=np.float64)
    keep = w > 1e-12
    sets, w = sets[torch.as_tensor(keep)], w[keep] / w[keep].sum()
    if len(w) == 1:
        return sets[0].clone()
    if sets.shape[-1] == 1:
        # One dimension: quantile functions average (exact; sorted samples are the empirical quantiles).
        ordered = torch.sort(sets[..., 0], dim=1).values.double()
        return (torch.as_tensor(w)[:, None] * ordered).sum(0).float()[:, None]
    import ot

    n = sets.shape[1]
    uniform = np.full(n, 1.0 / n)
    locations = [s.double().numpy() for s in sets]
    start = locations[int(np.argmax(w))]
    out = ot.lp.free_support_barycenter(
        locations, [uniform] * len(locations), start, b=uniform, weights=w, numItermax=iterations, stopThr=tol
    )
    return torch.as_tensor(np.asarray(out), dtype=torch.float32)
