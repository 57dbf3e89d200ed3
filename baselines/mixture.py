"""Mixture interpolation: (1 − s) μ_k + s μ_k+1, the straight line in density space.

Each draw comes from the upper anchor with probability s (s = clock fraction of λ in its interval).
With several hyperparameters: the mixture of the anchor simplex around λ (its Delaunay triangle in
unit clock time), each vertex weighted by λ's barycentric coordinate.

Exact when λ mixes two fixed behaviours (ε-greedy policies); bimodal wherever mass moves, which is
why displacement interpolation beats it on most HTI tasks: for a point mass moving from a to b the
mixture is √(s(1 − s))·|b − a| away in W₂, where displacement interpolation is exact.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from hti_bench.toolkit.interpolation import AnchorInterpolator
from hti_bench.toolkit.transport import draw, draw_many


class Mixture(AnchorInterpolator):
    name: ClassVar[str] = "mixture"
    description: ClassVar[str] = "Mixture of the two neighbouring anchors' samples, weight s on the upper one."
    supports_multi: ClassVar[bool] = True

    def interpolate(self, k: int, s: float, cond: int, n: int, generator: torch.Generator) -> Tensor:
        # Each of the n draws picks the upper anchor with probability s (a Binomial(n, s) count).
        upper = int((torch.rand(n, generator=generator) < s).sum())
        lower = n - upper
        parts = []
        if lower:
            parts.append(draw(self.anchors_.samples[k, cond], lower, generator))
        if upper:
            parts.append(draw(self.anchors_.samples[k + 1, cond], upper, generator))
        out = torch.cat(parts)
        return out[torch.randperm(n, generator=generator)]

    def interpolate_many(self, k: int, s: float, index: Tensor, n: int, generator: torch.Generator) -> Tensor:
        # Slot j takes the upper anchor with probability s; each side's slots read that side's own
        # random permutation in order, so draws stay without replacement within each anchor's set.
        lower, upper = self.anchors_.samples[k][index], self.anchors_.samples[k + 1][index]
        pick = torch.rand(len(index), n, 1, generator=generator) < s
        return torch.where(pick, draw_many(upper, n, generator), draw_many(lower, n, generator))

    def interpolate_simplex(
        self, vertices: tuple[int, ...], weights: tuple[float, ...], index: Tensor, n: int, generator: torch.Generator
    ) -> Tensor:
        # Slot j takes vertex v with probability weights[v]: one categorical draw per slot.
        parts = torch.stack([draw_many(self.anchors_.samples[v][index], n, generator) for v in vertices])
        pick = torch.multinomial(
            torch.tensor(weights, dtype=torch.float64), len(index) * n, replacement=True, generator=generator
        ).reshape(len(index), n)
        return parts.gather(0, pick[None, :, :, None].expand(1, -1, -1, parts.shape[-1]))[0]
