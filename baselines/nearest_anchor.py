"""Nearest anchor: answer with the outputs of the anchor network closest to λ on the task's clock.

With several hyperparameters, "closest" is Euclidean in unit clock time (each axis's clock time, its
range rescaled to [0, 1]). Exact only when p(y | x, λ) does not depend on λ; it is the floor every surrogate must beat.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from hti_bench.toolkit.interpolation import AnchorInterpolator
from hti_bench.toolkit.transport import draw, draw_many


class NearestAnchor(AnchorInterpolator):
    name: ClassVar[str] = "nearest-anchor"
    description: ClassVar[str] = "Samples of the anchor closest to λ on the clock (no interpolation)."
    supports_multi: ClassVar[bool] = True

    def interpolate(self, k: int, s: float, cond: int, n: int, generator: torch.Generator) -> Tensor:
        # Ties (s = 0.5) go to the lower anchor, so the answer never depends on float rounding of s.
        nearest = k if s <= 0.5 else k + 1
        return draw(self.anchors_.samples[nearest, cond], n, generator)

    def interpolate_many(self, k: int, s: float, index: Tensor, n: int, generator: torch.Generator) -> Tensor:
        nearest = k if s <= 0.5 else k + 1
        return draw_many(self.anchors_.samples[nearest][index], n, generator)

    def interpolate_point(self, lam: tuple[float, ...], index: Tensor, n: int, generator: torch.Generator) -> Tensor:
        return draw_many(self.anchors_.samples[self.anchors_.nearest(lam)][index], n, generator)
