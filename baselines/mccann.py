"""McCann displacement interpolation per condition: ((1 − s) y0 + s T(y0))# μ_k, T the optimal map.

Within each condition x, the anchor-k and anchor-(k+1) samples are paired by exact optimal transport
for the squared Euclidean cost (POT's network simplex; a sort in one dimension) and every pair is
moved a fraction s along its straight line. This is the W₂ geodesic between the two empirical
measures: exact when the true λ-path is a constant-speed W₂ geodesic on the task's clock (location–
scale families with parameters affine in the clock), and for deterministic outputs it is linear
interpolation of the two anchors' predictions (McCann, "A convexity principle for interacting
gases", Advances in Mathematics, 1997). In one dimension it equals per-quantile interpolation.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from hti_bench.anchors import AnchorSet
from hti_bench.toolkit.interpolation import AnchorInterpolator
from hti_bench.toolkit.transport import Coupling, draw, draw_many, exact_coupling


class McCann(AnchorInterpolator):
    name: ClassVar[str] = "mccann"
    description: ClassVar[str] = "Per-condition W2 displacement interpolation between neighbouring anchors (exact OT)."
    one_dimensional_reason: ClassVar[str] = (
        "it interpolates between two neighbouring anchors; `barycenter` is its form for several hyperparameters"
    )
    references: ClassVar[tuple[str, ...]] = ("McCann, A convexity principle for interacting gases, Adv. Math. 1997",)

    def prepare(self, anchors: AnchorSet) -> None:
        # One exact OT problem per (interval, condition), solved once here so sampling is a gather.
        self.couplings_: dict[tuple[int, int], Coupling] = {
            (k, i): exact_coupling(anchors.samples[k, i], anchors.samples[k + 1, i])
            for k in range(anchors.n_anchors - 1)
            for i in range(anchors.n_conditions)
        }
        # Permutation plans (equal sample counts, the usual case): each interval's paired endpoints
        # stacked over conditions, so a query over many conditions is one batched draw.
        self.paired_: dict[int, tuple[Tensor, Tensor]] = {}
        for k in range(anchors.n_anchors - 1):
            plans = [self.couplings_[(k, i)] for i in range(anchors.n_conditions)]
            m = plans[0].rows.shape[0]
            if all(p.rows.shape[0] == m and bool(torch.all(p.mass == p.mass[0])) for p in plans):
                self.paired_[k] = (
                    torch.stack([anchors.samples[k, i][p.rows] for i, p in enumerate(plans)]),
                    torch.stack([anchors.samples[k + 1, i][p.cols] for i, p in enumerate(plans)]),
                )

    def interpolate(self, k: int, s: float, cond: int, n: int, generator: torch.Generator) -> Tensor:
        plan = self.couplings_[(k, cond)]
        y0 = self.anchors_.samples[k, cond][plan.rows]
        y1 = self.anchors_.samples[k + 1, cond][plan.cols]
        return draw((1.0 - s) * y0 + s * y1, n, generator, weights=plan.mass)

    def interpolate_many(self, k: int, s: float, index: Tensor, n: int, generator: torch.Generator) -> Tensor:
        if k not in self.paired_:
            return super().interpolate_many(k, s, index, n, generator)
        y0, y1 = self.paired_[k]
        return draw_many((1.0 - s) * y0[index] + s * y1[index], n, generator)
