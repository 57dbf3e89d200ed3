"""Nearest anchor: answer with the outputs of the anchor network closest to λ on the task's clock.

Exact only when p(y | x, λ) does not depend on λ; it is the floor every surrogate must beat.
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

    def interpolate(self, k: int, s: float, cond: int, n: int, generator: torch.Generator) -> Tensor:
        # Ties (s = 0.5) go to the lower anchor, so the answer never depends on float rounding of s.
        nearest = k if s <= 0.5 else k + 1
        return draw(self.anchors_.samples[nearest, cond], n, generator)

    def interpolate_many(self, k: int, s: float, index: Tensor, n: int, generator: torch.Generator) -> Tensor:
        nearest = k if s <= 0.5 else k + 1
        return draw_many(self.anchors_.samples[nearest][index], n, generator)
