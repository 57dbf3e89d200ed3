"""Shared machinery of surrogates that answer from anchor samples at the query conditions.

Subclasses implement :meth:`AnchorInterpolator.interpolate` for one condition and one anchor
interval; this class does the bookkeeping: storing the anchors, locating λ on the clock, finding each
query condition among the anchor conditions (or, for rows the anchor networks were not run on,
running them there through the anchor oracle and preparing those rows afresh), and seeding.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from hti_bench.surrogate import Surrogate

if TYPE_CHECKING:
    from typing import Self

    from hti_bench.anchors import AnchorSet
    from hti_bench.view import TaskView


class AnchorInterpolator(Surrogate):
    """Base of the interpolation baselines: nothing is learned; answers are built from anchor samples."""

    def fit(self, anchors: AnchorSet, task: TaskView | None = None, *, seed: int = 0) -> Self:
        self.anchors_ = anchors
        self.prepare(anchors)
        return self

    def prepare(self, anchors: AnchorSet) -> None:
        """Precompute per-interval state (e.g. couplings). Default: nothing."""

    @abstractmethod
    def interpolate(self, k: int, s: float, cond: int, n: int, generator: torch.Generator) -> Tensor:
        """n samples (n, D) at clock fraction s of interval k for anchor condition index ``cond``."""

    def interpolate_many(self, k: int, s: float, index: Tensor, n: int, generator: torch.Generator) -> Tensor:
        """n samples for each anchor condition index in ``index`` (C,) → (C, n, D). Default: one
        :meth:`interpolate` per condition; override with a batched version when queries over many
        conditions should not pay a Python loop (quantile has 64 evaluation conditions of 4 samples)."""
        return torch.stack([self.interpolate(k, s, int(i), n, generator) for i in index])

    def sample(self, lam: float, conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        k, s = self.anchors_.locate(lam)
        index = self.anchors_.lookup(conditions)
        if bool((index >= 0).all()):
            return self.interpolate_many(k, s, index, int(n), self.generator(seed))
        # Open conditions: the same method on an anchor set of just the query rows, from the oracle.
        local, index = self.anchors_.restrict(conditions, seed)
        shadow = copy.copy(self)
        shadow.anchors_ = local
        shadow.prepare(local)
        return shadow.interpolate_many(k, s, index, int(n), self.generator(seed))
