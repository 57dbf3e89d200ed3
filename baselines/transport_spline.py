"""Transport splines: per-condition particle trajectories through *all* anchors, smoothed by a cubic spline.

Within each condition x the anchor samples are paired by exact optimal transport between consecutive
anchors (the couplings ``mccann`` uses) and the pairings are chained, so particle j is one trajectory
y_j(t_0), …, y_j(t_K-1) across every anchor. Each trajectory is then interpolated by a cubic spline in
clock time, and the answer at λ is the cloud of trajectory positions at t = clock(λ). This is the
transport spline of Chewi, Clancy, Le Gouic, Rigollet, Stepaniants & Stromme ("Fast and smooth
interpolation on Wasserstein space", AISTATS 2021): where ``mccann`` bends at every anchor (piecewise-
geodesic), the spline is C² in time, so a path that curves across anchors is followed more closely.

The spline is linear in its knot values, so it is fitted once: the weights w_k(t) with
y(t) = Σ_k w_k(t) y(t_k) come from SciPy's ``CubicSpline`` on the identity. ``boundary='natural'``
(zero curvature at the end anchors, the paper's choice) is linear interpolation with two anchors, so
it then equals ``mccann`` sample for sample; it reproduces a path exactly only when the path is
linear in the clock. ``boundary='not-a-knot'`` reproduces any cubic-in-clock path exactly from four
or more anchors (a cubic has four coefficients; three anchors give the interpolating parabola).

No training: fitting is one OT problem per (interval, condition), as for ``mccann``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from torch import Tensor

from hti_bench.anchors import AnchorSet
from hti_bench.clock import Point
from hti_bench.errors import check_choice
from hti_bench.surrogate import Surrogate
from hti_bench.toolkit.transport import draw, draw_many, exact_coupling
from hti_bench.view import TaskView

BOUNDARIES = ("natural", "not-a-knot")


class TransportSpline(Surrogate):
    name: ClassVar[str] = "transport-spline"
    description: ClassVar[str] = (
        "Per-condition OT particle trajectories through all anchors, cubic spline in clock time."
    )
    one_dimensional_reason: ClassVar[str] = "its spline runs through the anchors in their order along one λ clock"
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "boundary": {"values": ["natural", "not-a-knot"]},
    }
    references: ClassVar[tuple[str, ...]] = (
        "Chewi et al., Fast and smooth interpolation on Wasserstein space, AISTATS 2021",
    )

    def __init__(self, *, boundary: str = "natural") -> None:
        """
        Parameters
        ----------
        boundary : 'natural' | 'not-a-knot'
            The cubic spline's end conditions (SciPy's ``bc_type``): zero second derivative at the
            first and last anchor, or a single cubic across the first two and last two intervals.
        """
        self.boundary = boundary

    def check_params(self) -> None:
        check_choice("boundary", self.boundary, BOUNDARIES)

    def fit(self, anchors: AnchorSet, task: TaskView | None = None, *, seed: int = 0) -> TransportSpline:
        self.check_params()
        self.anchors_ = anchors
        times = np.asarray(anchors.times, dtype=np.float64)
        eye = np.eye(anchors.n_anchors)
        self.spline_ = CubicSpline(times, eye, bc_type=self.boundary, axis=0)
        # Per condition: trajectories (K, P, D) and their weights (P,). P = n with a permutation plan.
        self.paths_: list[tuple[Tensor, Tensor]] = [self._trajectories(anchors, i) for i in range(anchors.n_conditions)]
        counts = {p.shape[1] for p, _ in self.paths_}
        uniform = all(bool(torch.all(w == w[0])) for _, w in self.paths_)
        # Every condition a permutation of equal size (the usual case): stacked, so a query over many
        # conditions is one weighted sum and one batched draw.
        self.stacked_ = torch.stack([p for p, _ in self.paths_]) if len(counts) == 1 and uniform else None
        return self

    @staticmethod
    def _trajectories(anchors: AnchorSet, cond: int) -> tuple[Tensor, Tensor]:
        """Chain the consecutive exact couplings of one condition into (K, P, D) trajectories.

        The first coupling's support pairs start the trajectories (with its masses as weights, as
        ``mccann`` draws them); each later anchor continues a trajectory from its current sample to the
        partner carrying most of that sample's mass (with equal sample counts the plan is a
        permutation, so this is the plan itself).
        """
        samples = anchors.samples[:, cond]
        first = exact_coupling(samples[0], samples[1])
        index = [first.rows, first.cols]
        for k in range(1, anchors.n_anchors - 1):
            plan = exact_coupling(samples[k], samples[k + 1])
            dense = torch.zeros(samples.shape[1], samples.shape[1], dtype=torch.float64)
            dense[plan.rows, plan.cols] = plan.mass.double()
            index.append(dense.argmax(dim=1)[index[-1]])
        paths = torch.stack([samples[k][idx] for k, idx in enumerate(index)])
        return paths, first.mass

    def weights(self, lam: Point) -> Tensor:
        """The spline's weights on the K anchors at λ: the answer is Σ_k w_k · (trajectory at anchor k)."""
        self.anchors_.locate(lam)  # refuses λ outside the anchor range
        t = self.anchors_.space.axis.to_time(self.anchors_.space.check(lam)[0])
        return torch.as_tensor(self.spline_(t), dtype=torch.float32)

    def positions(self, lam: Point, cond: int) -> Tensor:
        """Every trajectory of anchor condition ``cond`` at λ: (P, D)."""
        self.check_fitted()
        paths, _ = self.paths_[cond]
        return torch.einsum("k,kpd->pd", self.weights(lam), paths)

    def sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        w = self.weights(lam)
        index = self.anchors_.lookup(conditions)
        if bool((index < 0).any()):  # open conditions: the trajectories of just the query rows, from the oracle
            local, index = self.anchors_.restrict(conditions, seed)
            return type(self)(**self.get_params()).fit(local)._draw(w, index, int(n), seed)
        return self._draw(w, index, int(n), seed)

    def _draw(self, w: Tensor, index: Tensor, n: int, seed: int) -> Tensor:
        gen = self.generator(seed)
        if self.stacked_ is not None:
            return draw_many(torch.einsum("k,ckpd->cpd", w, self.stacked_[index]), int(n), gen)
        out = []
        for i in index.tolist():
            paths, mass = self.paths_[i]
            out.append(draw(torch.einsum("k,kpd->pd", w, paths), int(n), gen, weights=mass))
        return torch.stack(out)
