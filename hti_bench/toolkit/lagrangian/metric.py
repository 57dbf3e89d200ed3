"""Riemannian metrics G(q | x) of the Lagrangian cost: Euclidean, the eigenvalue-budget neural metric
(the HTI paper's K_θ), NLOT's metric, and a metric tabulated on a grid.

Shapes: B paths, P points along each path, D output dimensions, C condition columns. Conditions are
the *source's* x throughout (a map carries x through unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hti_bench.toolkit.lagrangian.grid import _GridBox, cell_coefficients
from hti_bench.toolkit.nets import FiLMMLP

if TYPE_CHECKING:
    from hti_bench.toolkit.lagrangian.potential import GridPotential


def givens_rotation(angles: Tensor, dim: int) -> Tensor:
    """R = G_(0,1)(θ_0) · G_(0,2)(θ_1) · … · G_(D−2,D−1)(θ_last), batched: angles (B, D(D−1)/2) → (B, D, D).

    Givens(i, j, θ) is the identity except cos θ at (i, i) and (j, j), −sin θ at (i, j), sin θ at (j, i).
    Right-multiplying by it mixes columns i and j only, so R is built column-wise without a D×D matmul
    per angle.
    """
    return givens_matrix(torch.cos(angles), torch.sin(angles), dim)


def givens_matrix(cos: Tensor, sin: Tensor, dim: int) -> Tensor:
    """:func:`givens_rotation` from the angles' cosines and sines, (B, D(D−1)/2) each."""
    batch = cos.shape[0]
    eye = torch.eye(dim, dtype=cos.dtype, device=cos.device).expand(batch, dim, dim)
    cols = [eye[:, :, c] for c in range(dim)]
    m = 0
    for i in range(dim):
        for j in range(i + 1, dim):
            c, s = cos[:, m, None], sin[:, m, None]
            ci, cj = cols[i], cols[j]
            cols[i], cols[j] = ci * c + cj * s, cj * c - ci * s
            m += 1
    return torch.stack(cols, dim=-1)


def unit_angle(y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """(cos θ, sin θ) of θ = atan2(y, x), as (x, y) / ‖(x, y)‖ (cos = 1, sin = 0 at the origin, as atan2's 0).

    The same numbers as ``cos(atan2(y, x))`` and ``sin(atan2(y, x))`` without the three transcendental
    functions, which dominate the metric at large D (D(D−1)/2 angles per point).
    """
    r = torch.hypot(x, y)
    pos = r > 0
    r = torch.where(pos, r, torch.ones_like(r))
    return torch.where(pos, x / r, torch.ones_like(r)), y / r


@lru_cache(maxsize=16)
def _givens_stages(dim: int) -> tuple[Tensor, list[int], list[Tensor], list[Tensor], list[Tensor]]:
    """The Givens pairs of :func:`givens_rotation` grouped into stages of disjoint pairs.

    Pair (i, j) goes to stage 2i + j. Two pairs that share an index then sit in different stages, in
    the order of the product (lexicographic), so applying the stages one after another, each one
    vectorised over its disjoint pairs, is the same product: 3D − 5 stages instead of D(D−1)/2 steps.
    Returns (order, sizes, first, second, both): the angle indices stage after stage, the number of
    pairs per stage, and per stage the first and second coordinates of its pairs and both together.
    """
    pairs = [(i, j) for i in range(dim) for j in range(i + 1, dim)]
    stages: dict[int, list[tuple[int, int, int]]] = {}
    for m, (i, j) in enumerate(pairs):
        stages.setdefault(2 * i + j, []).append((i, j, m))
    groups = [stages[key] for key in sorted(stages)]
    order = torch.tensor([m for g in groups for _, _, m in g], dtype=torch.long)
    first = [torch.tensor([i for i, _, _ in g], dtype=torch.long) for g in groups]
    second = [torch.tensor([j for _, j, _ in g], dtype=torch.long) for g in groups]
    return order, [len(g) for g in groups], first, second, [torch.cat([f, t]) for f, t in zip(first, second)]


def givens_apply(cos: Tensor, sin: Tensor, v: Tensor) -> Tensor:
    """R v for R = :func:`givens_matrix` (cos, sin), without forming R: (B, D(D−1)/2) twice, (B, D) → (B, D).

    Applies the rotations right to left, stage by stage (:func:`_givens_stages`): G(i, j, θ) maps
    (v_i, v_j) to (cos θ v_i − sin θ v_j, sin θ v_i + cos θ v_j). Works on v transposed (D, B), so a
    stage reads and writes whole rows, and on the angles in stage order, so a stage's cosines and
    sines are one contiguous slice (``split``: one gradient node for all of them).
    """
    dim = v.shape[-1]
    if dim < 2:
        return v
    if dim == 2:
        c, s = cos[:, 0], sin[:, 0]
        v0, v1 = v[:, 0], v[:, 1]
        return torch.stack([c * v0 - s * v1, s * v0 + c * v1], -1)
    order, sizes, first, second, both = _givens_stages(dim)
    dev = v.device
    order = order.to(dev)
    # (angles, B), stage after stage
    cos, sin = cos.index_select(1, order).T.split(sizes), sin.index_select(1, order).T.split(sizes)
    vt = v.T.contiguous()
    for k in range(len(sizes) - 1, -1, -1):
        vi, vj = vt.index_select(0, first[k].to(dev)), vt.index_select(0, second[k].to(dev))
        c, s = cos[k], sin[k]
        new = torch.cat([torch.addcmul(c * vi, s, vj, value=-1), torch.addcmul(s * vi, c, vj)])
        vt = vt.index_copy(0, both[k].to(dev), new)
    return vt.T


class Metric(nn.Module):
    """G(q | x), symmetric positive definite, given as eigenvalues e (B, D) and a rotation R (B, D, D)
    with G = Rᵀ diag(e) R. ``quad(q, v, x)`` = vᵀ G(q | x) v."""

    learnable = False

    def quad(self, q: Tensor, v: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def state(self, x: Tensor) -> dict[str, Tensor]:
        """What :meth:`quad` needs besides (q, v) at fixed conditions x (B, C), computed once (the
        c-transform evaluates the metric at many q for the same x). Every tensor has one row per row
        of x, so the state of a subset of points is the same subset of rows."""
        return {"x": x}

    def quad_state(self, q: Tensor, v: Tensor, state: dict[str, Tensor]) -> Tensor:
        """:meth:`quad` with the conditions' :meth:`state`."""
        return self.quad(q, v, state["x"])

    def prepare(self, x: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """``quad`` at fixed conditions x (B, C): (q, v) ↦ vᵀ G(q | x) v."""
        state = self.state(x)
        return lambda q, v: self.quad_state(q, v, state)

    def matrix(self, q: Tensor, x: Tensor) -> Tensor:
        """G itself, (B, D, D) (for tests and plots; the action uses :meth:`quad`)."""
        raise NotImplementedError


class EuclideanMetric(Metric):
    """K_I: G = I."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def quad(self, q: Tensor, v: Tensor, x: Tensor) -> Tensor:
        return (v * v).sum(-1)

    def matrix(self, q: Tensor, x: Tensor) -> Tensor:
        return torch.eye(self.dim, device=q.device).expand(q.shape[0], self.dim, self.dim)


class _NeuralMetric(Metric):
    learnable = True

    def __init__(self, dim: int, n_out: int, cond_dim: int, n_classes: int | None, hidden: int = 128) -> None:
        super().__init__()
        self.dim = dim
        self.net = FiLMMLP(dim, n_out, [hidden, hidden], cond_dim, n_classes, act=nn.LeakyReLU, embed=32)

    def eig_cos_sin(
        self, q: Tensor, x: Tensor, film: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Eigenvalues (B, D) and the cosines and sines (B, D(D−1)/2 each) of the Givens angles of G(q | x)."""
        raise NotImplementedError

    def eig_rot(self, q: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        e, cos, sin = self.eig_cos_sin(q, x)
        return e, givens_matrix(cos, sin, self.dim)

    def _quad(self, q: Tensor, v: Tensor, x: Tensor, film: tuple[Tensor, Tensor] | None) -> Tensor:
        e, cos, sin = self.eig_cos_sin(q, x, film)
        rv = givens_apply(cos, sin, v)
        return (e * rv * rv).sum(-1)

    def quad(self, q: Tensor, v: Tensor, x: Tensor) -> Tensor:
        return self._quad(q, v, x, None)

    def state(self, x: Tensor) -> dict[str, Tensor]:
        gamma, beta = self.net.film(x)
        return {"x": x, "gamma": gamma, "beta": beta}

    def quad_state(self, q: Tensor, v: Tensor, state: dict[str, Tensor]) -> Tensor:
        return self._quad(q, v, state["x"], (state["gamma"], state["beta"]))

    def matrix(self, q: Tensor, x: Tensor) -> Tensor:
        e, rot = self.eig_rot(q, x)
        return rot.transpose(1, 2) @ torch.diag_embed(e) @ rot

    def entries2(self, q: Tensor, x: Tensor, film: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """D = 2 only: (G00, G01, G11) at each point, (B, 3), in closed form (R = [[c, −s], [s, c]])."""
        e, cos, sin = self.eig_cos_sin(q, x, film)
        c, s = cos[:, 0], sin[:, 0]
        cc, ss, cs = c * c, s * s, c * s
        return torch.stack([e[:, 0] * cc + e[:, 1] * ss, cs * (e[:, 1] - e[:, 0]), e[:, 0] * ss + e[:, 1] * cc], -1)


class EigenBudgetMetric(_NeuralMetric):
    """K_θ (CLOT): e = e_min + softmax(o_0:D) · (budget/D) · (e_max − e_min), R from Givens angles.

    With the defaults (e_min 0.1, e_max 1, budget D) the eigenvalues lie in [0.1, 1] and the trace is
    fixed at 0.1·D + 0.9, which rules out the degenerate metric G → 0 that would make every transport
    free. Any D: D = 2 uses one angle from atan2(o_3, o_2); D > 2 uses D(D−1)/2 angles, two raw outputs
    each.
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        n_classes: int | None,
        e_min: float = 0.1,
        e_max: float = 1.0,
        budget: float | None = None,
        temp: float = 1.0,
    ) -> None:
        n_angles = dim * (dim - 1) // 2
        super().__init__(dim, dim + 2 * n_angles, cond_dim, n_classes)
        self.e_min, self.e_max, self.temp = e_min, e_max, temp
        self.budget = float(dim if budget is None else budget)

    def eig_cos_sin(
        self, q: Tensor, x: Tensor, film: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        o = self.net(q, x, film)
        d = self.dim
        e = self.e_min + F.softmax(self.temp * o[:, :d], dim=-1) * (self.budget / d) * (self.e_max - self.e_min)
        e = e.clamp(self.e_min, self.e_max)
        pairs = o[:, d:].reshape(o.shape[0], -1, 2)
        cos, sin = unit_angle(pairs[..., 1], pairs[..., 0])  # θ = atan2(o_odd, o_even)
        return e, cos, sin


class NLOTMetric(_NeuralMetric):
    """The fixed-eigenvalue metric of neural Lagrangian OT (Pooladian et al., 2024): G = Rᵀ diag(1, 0.1) R
    with θ = atan2(o_0, o_1). Two-dimensional outputs only."""

    def __init__(self, dim: int, cond_dim: int, n_classes: int | None) -> None:
        if dim != 2:
            raise ValueError(f"the NLOT metric is defined for D = 2 outputs only, got D = {dim}")
        super().__init__(dim, 2, cond_dim, n_classes)
        self.register_buffer("eig", torch.tensor([1.0, 0.1]))

    def eig_cos_sin(
        self, q: Tensor, x: Tensor, film: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        o = self.net(q, x, film)
        cos, sin = unit_angle(o[:, :1], o[:, 1:2])  # θ = atan2(o_0, o_1)
        return self.eig.expand(q.shape[0], 2), cos, sin


class GridMetric(Metric, _GridBox):
    """A neural metric tabulated on a grid over a box, per class, read by bilinear interpolation.

    Same idea as :class:`GridPotential`, for the metric: with D = 2 and categorical x, G(q | x) depends
    on nothing continuous but q, yet the c-transform's line searches evaluate the metric network at
    every path point tens of times per step (a large share of a K_θ fit on CPU; see
    ``perf/clot_fit.py`` and docs/evidence/performance.md). The three entries
    of G are tabulated from the network and :meth:`refresh` re-tabulates after each metric update.
    Bilinear weights are a convex combination, so the interpolated G stays symmetric positive definite
    with the same trace. Gradients flow to q (the c-transform needs them), not to the network: the
    metric itself is trained on the network directly.
    """

    learnable = False

    def __init__(
        self, metric: _NeuralMetric, lo: Tensor, hi: Tensor, n_classes: int | None, resolution: int = 192
    ) -> None:
        super().__init__()
        if metric.dim != 2:
            raise ValueError("GridMetric tabulates two-dimensional outputs only")
        self.dim, self.n_classes, self.resolution = 2, n_classes, int(resolution)
        self.source = [metric]  # a list, so the network's parameters are not registered twice
        g0 = torch.linspace(float(lo[0]), float(hi[0]), self.resolution)
        g1 = torch.linspace(float(lo[1]), float(hi[1]), self.resolution)
        mesh = torch.stack(torch.meshgrid(g0, g1, indexing="xy"), -1).reshape(-1, 2)
        self.register_buffer("mesh", mesh.to(lo.device))
        self._set_box(lo, hi)
        self.register_buffer(
            "table", torch.zeros(1, 3 * (n_classes or 1), self.resolution, self.resolution, device=lo.device)
        )
        self.version = 0
        self._fused_key: tuple[int, int] | None = None
        self._fused = self.table
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        metric, r, n = self.source[0], self.resolution, self.mesh.shape[0]
        tables = []
        for c in range(self.n_classes or 1):
            # One class's (γ, β), broadcast over the mesh rather than computed at every mesh point.
            x = torch.full((1, 1 if self.n_classes else 0), float(c), device=self.mesh.device)
            gamma, beta = metric.net.film(x)
            tables.append(metric.entries2(self.mesh, x.expand(n, -1), (gamma.expand(n, -1), beta.expand(n, -1))))
        nodes = torch.cat(tables).reshape(-1, r, r, 3)  # (classes, R, R, 3)
        self.table.copy_(nodes.permute(0, 3, 1, 2).reshape(1, -1, r, r))
        self.cells = cell_coefficients(nodes)  # what the lookups read
        self.version += 1

    def _classes(self, x: Tensor) -> Tensor | None:
        return self._offsets(x[:, 0].long()) if self.n_classes else None

    def _entries(self, q: Tensor, x: Tensor) -> Tensor:
        """(B, 3): G00, G01, G11 at each point q (B, 2) of condition x (B, C)."""
        return self._read(self.cells, q, self._classes(x))

    @staticmethod
    def _quad(g: Tensor, v: Tensor) -> Tensor:
        """vᵀGv from the entries g (B, ≥ 3) = (G00, G01, G11, …)."""
        v0, v1 = v[:, 0], v[:, 1]
        return g[:, 0] * v0 * v0 + 2 * g[:, 1] * v0 * v1 + g[:, 2] * v1 * v1

    def quad(self, q: Tensor, v: Tensor, x: Tensor) -> Tensor:
        return self._quad(self._entries(q, x), v)

    def state(self, x: Tensor) -> dict[str, Tensor]:
        return {"offsets": self._classes(x)} if self.n_classes else {}

    def quad_state(self, q: Tensor, v: Tensor, state: dict[str, Tensor]) -> Tensor:
        return self._quad(self._read(self.cells, q, state.get("offsets")), v)

    def fused_table(self, potential: GridPotential) -> Tensor:
        """Cell coefficients of G00, G01, G11 and Û side by side, (classes·R², 4·4), for one lookup of
        both at the same points (rebuilt after each :meth:`refresh`)."""
        key = (id(potential), self.version)
        if self._fused_key != key:
            n = self.cells.shape[0]
            self._fused = torch.cat([self.cells.reshape(n, 4, 3), potential.cells.reshape(n, 4, 1)], 2).reshape(n, 16)
            self._fused_key = key
        return self._fused

    def matrix(self, q: Tensor, x: Tensor) -> Tensor:
        g = self._entries(q, x)
        return torch.stack([torch.stack([g[:, 0], g[:, 1]], -1), torch.stack([g[:, 1], g[:, 2]], -1)], -2)


METRICS = ("euclidean", "learned", "nlot")


def make_metric(name: str, dim: int, cond_dim: int, n_classes: int | None) -> Metric:
    if name == "euclidean":
        return EuclideanMetric(dim)
    if name == "learned":
        return EigenBudgetMetric(dim, cond_dim, n_classes)
    if name == "nlot":
        return NLOTMetric(dim, cond_dim, n_classes)
    raise ValueError(f"Unknown metric {name!r}; valid: {', '.join(METRICS)}")
