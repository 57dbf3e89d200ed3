"""The action of a path, ∫ ½ q̇ᵀG(q | x)q̇ − Û(q | x) dt, discretised along a spline: the
Lagrangian cost c(y0, y1 | x) in the paper's and the reference code's forms.

Shapes: B paths, P points along each path, D output dimensions, C condition columns. Conditions are
the *source's* x throughout (a map carries x through unchanged).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hti_bench.toolkit.lagrangian.metric import GridMetric, Metric
from hti_bench.toolkit.lagrangian.path import SplinePath
from hti_bench.toolkit.lagrangian.potential import GridPotential

COSTS = ("paper", "reference")


class PreparedCost:
    """y1 ↦ :func:`path_cost` (or :func:`path_energy` with ``energy``) of y0 → y1 along the spline φ,
    for many y1 at fixed (y0, φ, x); build it with :func:`prepare_cost`.

    Everything that does not depend on the end point is computed once: the start's share of the path
    and the spline offsets, the metric's and the potential's pieces that depend on x alone. A tabulated
    metric and a tabulated potential on the same grid are read by one lookup. :meth:`take` restricts
    it to some of its rows (paths), for evaluations that only need those (a line search's tail).
    """

    def __init__(
        self,
        path: SplinePath,
        metric: Metric,
        potential: nn.Module | None,
        form: str,
        energy: bool,
        rows: dict[str, Tensor],
        points: dict[str, Tensor],
        fused: Tensor | None,
    ) -> None:
        self.path, self.metric, self.potential, self.form, self.energy = path, metric, potential, form, energy
        self.rows, self.points, self.fused = rows, points, fused  # per path, per path point, shared

    def take(self, idx: Tensor) -> PreparedCost:
        """The same cost for the paths ``idx`` only (a 1-D index)."""
        p = self.path.num_points
        pts = (idx[:, None] * p + torch.arange(p, device=idx.device)).reshape(-1)
        return PreparedCost(
            self.path,
            self.metric,
            self.potential,
            self.form,
            self.energy,
            {k: v.index_select(0, idx) for k, v in self.rows.items()},
            {k: v.index_select(0, pts) for k, v in self.points.items()},
            self.fused,
        )

    def _field(self, q: Tensor, v: Tensor) -> tuple[Tensor, Tensor | None]:
        """(vᵀG(q)v (B·P,), Û(q) (B, P) or None) at the points q (B·P, D)."""
        b, p = self.rows["a"].shape[0], self.path.num_points
        if self.fused is not None:
            g = self.metric._read(self.fused, q, self.points.get("offsets"))  # (B·P, 4)
            return self.metric._quad(g, v), g[:, 3].reshape(b, p)
        metric_state = {k[4:]: t for k, t in self.points.items() if k.startswith("met.")}
        quad = self.metric.quad_state(q, v, metric_state)
        if self.potential is None:
            return quad, None
        pot_state = {k[4:]: t for k, t in self.rows.items() if k.startswith("pot.")}
        return quad, self.potential.apply_state(q.reshape(b, p, -1), pot_state)

    def __call__(self, y1: Tensor) -> Tensor:
        a, c = self.rows["a"], self.rows["c"]
        b, p, d = a.shape
        end = y1[:, None]
        if self.form == "paper":
            # q = (1 − s) y0 + s y1 + spline, q̇ = y1 − y0 + spline': a = (1 − s) y0 + spline, c = spline' − y0
            q, v = torch.addcmul(a, self.path.s[None, :, None], end), c + end
            quad, u = self._field(q.reshape(-1, d), v.reshape(-1, d))
            kinetic = 0.5 * quad.reshape(b, p)
            return (kinetic - u).mean(-1) if u is not None else kinetic.mean(-1)
        # E = Σ_i [√(Δ_iᵀ G(γ_i) Δ_i) − Û(γ_i)] over the P segments of the uniform grid; c = ½E². Nodes
        # γ_i = a_i + s_i y1 and steps Δ_i = γ_{i+1} − γ_i + 1e-6 = c_i + (s_{i+1} − s_i) y1.
        grid = self.path.grid[None, :, None]
        nodes = torch.addcmul(a, grid[:, :-1], end)
        delta = torch.addcmul(c, grid[:, 1:] - grid[:, :-1], end)
        quad, u = self._field(nodes.reshape(-1, d), delta.reshape(-1, d))
        length = quad.clamp_min(1e-12).sqrt().reshape(b, p)
        e = (length - u).sum(-1) if u is not None else length.sum(-1)
        return e if self.energy else 0.5 * e**2


def prepare_cost(
    path: SplinePath,
    metric: Metric,
    potential: nn.Module | None,
    y0: Tensor,
    phi: Tensor,
    x: Tensor,
    form: str = "paper",
    energy: bool = False,
) -> PreparedCost:
    """The cost from y0 along φ at conditions x as a function of the end point (:class:`PreparedCost`)."""
    if form not in COSTS:
        raise ValueError(f"Unknown cost form {form!r}; valid: {', '.join(COSTS)}")
    b, d = y0.shape
    p = path.num_points
    xr = x.repeat_interleave(p, 0) if x.shape[1] else x.new_zeros(b * p, 0)
    if form == "paper":
        s = path.s[None, :, None]
        off = path._offsets(path.val_der_t, phi)
        rows = {"a": (1 - s) * y0[:, None] + off[:, :p], "c": off[:, p:] - y0[:, None]}
    else:
        s = path.grid[None, :, None]
        base = (1 - s) * y0[:, None] + path._offsets(path.grid_val_t, phi)
        rows = {"a": base[:, :-1].contiguous(), "c": base[:, 1:] - base[:, :-1] + 1e-6}
    if (
        isinstance(metric, GridMetric)
        and isinstance(potential, GridPotential)
        and metric.same_grid(potential)
        and metric.cells.shape[0] == potential.cells.shape[0]
        and bool(metric.n_classes) == potential.categorical
    ):
        points = metric.state(xr)  # the class offsets of the points, shared by both tables
        return PreparedCost(path, metric, potential, form, energy, rows, points, metric.fused_table(potential))
    points = {f"met.{k}": t for k, t in metric.state(xr).items()}
    if potential is not None:
        rows.update({f"pot.{k}": t for k, t in potential.state(x).items()})
    return PreparedCost(path, metric, potential, form, energy, rows, points, None)


def path_cost(
    path: SplinePath,
    metric: Metric,
    potential: nn.Module | None,
    y0: Tensor,
    y1: Tensor,
    phi: Tensor,
    x: Tensor,
    form: str = "paper",
) -> Tensor:
    """Cost of moving y0 → y1 along the spline φ, per path: (B,).

    ``paper``: the action ∫₀¹ [½ q̇ᵀ G(q | x) q̇ − Û(q | x)] ds by the midpoint rule.
    ``reference``: the HTI reference code's form ½ E², E = Σ_i [√(Δ_iᵀ G(γ_i) Δ_i) − Û(γ_i)] over the
    P segments of a uniform grid (the potential inside the squared length and summed without ds, so
    c(y, y) = ½ (Σ Û)² ≠ 0 and the same α weighs the potential about P× more than in ``paper``).
    """
    return prepare_cost(path, metric, potential, y0, phi, x, form)(y1)


def path_energy(
    path: SplinePath,
    metric: Metric,
    potential: nn.Module | None,
    y0: Tensor,
    y1: Tensor,
    phi: Tensor,
    x: Tensor,
    form: str = "paper",
) -> Tensor:
    """What the spline amortiser minimises: the action (``paper``), or E rather than ½E² (``reference``)."""
    return prepare_cost(path, metric, potential, y0, phi, x, form, energy=True)(y1)
