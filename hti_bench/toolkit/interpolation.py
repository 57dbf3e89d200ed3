"""Shared machinery of surrogates that answer from anchor samples at the query conditions.

Subclasses implement :meth:`AnchorInterpolator.interpolate` for one condition and one anchor
interval (and, to run on tasks of several hyperparameters, :meth:`AnchorInterpolator.interpolate_simplex`
for the anchor simplex around a point); this class does the bookkeeping: storing the anchors, finding
the anchors around λ (:meth:`~hti_bench.anchors.AnchorSet.simplex`: on one hyperparameter the enclosing
interval on the clock, otherwise the enclosing simplex and its barycentric weights), finding each
query condition among the anchor conditions (or, for rows the anchor networks were not run on,
running them there through the anchor oracle and preparing those rows afresh), and seeding.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from hti_bench.clock import Point
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

    def interpolate_simplex(
        self, vertices: tuple[int, ...], weights: tuple[float, ...], index: Tensor, n: int, generator: torch.Generator
    ) -> Tensor:
        """Several hyperparameters: n samples (C, n, D) for each anchor condition index in ``index`` at the point whose
        barycentric weights over the anchors ``vertices`` (indices into the anchor set, the Delaunay
        simplex around it in unit clock time) are ``weights``. Implement it and set
        ``supports_multi = True`` to run on tasks of several hyperparameters."""
        raise NotImplementedError(f"{type(self).__name__} has no interpolate_simplex (supports_multi = False)")

    def interpolate_point(self, lam: Point, index: Tensor, n: int, generator: torch.Generator) -> Tensor:
        """Several hyperparameters: samples (C, n, D) at the point λ. The default finds the anchor simplex around λ and calls
        :meth:`interpolate_simplex`; override for a rule that is not simplex-based (nearest anchor)."""
        vertices, weights = self.anchors_.simplex(lam)
        return self.interpolate_simplex(vertices, weights, index, n, generator)

    def sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        # Refuses a λ outside the anchors' range (their hull) before any work.
        vertices, weights = self.anchors_.simplex(lam)
        if self.anchors_.d == 1:  # a line: the interval's own interpolation, at clock fraction s

            def answer(model: AnchorInterpolator, index: Tensor) -> Tensor:
                return model.interpolate_many(vertices[0], weights[1], index, int(n), self.generator(seed))
        else:

            def answer(model: AnchorInterpolator, index: Tensor) -> Tensor:
                return model.interpolate_point(lam, index, int(n), self.generator(seed))

        index = self.anchors_.lookup(conditions)
        if bool((index >= 0).all()):
            return answer(self, index)
        # Open conditions: the same method on an anchor set of just the query rows, from the oracle.
        local, index = self.anchors_.restrict(conditions, seed)
        shadow = copy.copy(self)
        shadow.anchors_ = local
        shadow.prepare(local)
        return answer(shadow, index)
