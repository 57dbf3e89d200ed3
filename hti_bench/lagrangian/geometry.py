"""Metrics, the density potential, spline paths and the action of a path.

Shapes: B paths, P points along each path, D output dimensions, C condition columns. Conditions are
the *source's* x throughout (a map carries x through unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hti_bench.nets import FiLMMLP

# ------------------------------------------------------------------------------------------ metrics


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

    def eig_cos_sin(self, q: Tensor, x: Tensor, film: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
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

    def __init__(self, dim: int, cond_dim: int, n_classes: int | None, e_min: float = 0.1, e_max: float = 1.0,
                 budget: float | None = None, temp: float = 1.0) -> None:
        n_angles = dim * (dim - 1) // 2
        super().__init__(dim, dim + 2 * n_angles, cond_dim, n_classes)
        self.e_min, self.e_max, self.temp = e_min, e_max, temp
        self.budget = float(dim if budget is None else budget)

    def eig_cos_sin(self, q: Tensor, x: Tensor, film: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
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

    def eig_cos_sin(self, q: Tensor, x: Tensor, film: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        o = self.net(q, x, film)
        cos, sin = unit_angle(o[:, :1], o[:, 1:2])  # θ = atan2(o_0, o_1)
        return self.eig.expand(q.shape[0], 2), cos, sin


def cell_coefficients(values: Tensor) -> Tensor:
    """Bilinear cell coefficients of node values (K, R, R, C) (rows along q1, columns along q0):
    (K·R·R, 4·C), row (k, i, j) = (a, b, c, d) of the cell whose lower corner is node (i, j), so that
    the value at fractions (fx, fy) of that cell is a + b·fx + c·fy + d·fx·fy. Cells of the last row
    and column have zero slopes (no lookup lands in them: corners are clamped to R − 2)."""
    a = values
    b, c, d = torch.zeros_like(values), torch.zeros_like(values), torch.zeros_like(values)
    b[:, :, :-1] = values[:, :, 1:] - values[:, :, :-1]
    c[:, :-1] = values[:, 1:] - values[:, :-1]
    d[:, :-1, :-1] = values[:, 1:, 1:] - values[:, 1:, :-1] - values[:, :-1, 1:] + values[:, :-1, :-1]
    k, r, _, ch = values.shape
    return torch.stack([a, b, c, d], 3).reshape(k * r * r, 4 * ch)


class _Bilinear(torch.autograd.Function):
    """Bilinear lookup in tables of cell coefficients (:func:`cell_coefficients`), differentiable in
    the points only.

    Point n reads the table block ``offset[n]`` (a multiple of R·R, e.g. its class) at pixel
    coordinates ``pix`` (N, 2) = (column, row), clamped to the border. The same numbers as
    ``F.grid_sample`` with ``align_corners=True`` and border padding (whose gradient is zero outside
    the box too), but it reads only the point's own table (grid_sample interpolates every channel of
    every class and the caller keeps one), gathers a cell's coefficients for all C channels as one
    row, and its backward is one product with the slopes it computed in the forward pass.
    """

    @staticmethod
    def forward(ctx, pix: Tensor, table: Tensor, offset: Tensor | None, res: int) -> Tensor:  # type: ignore[override]
        limit = float(res - 1)
        grad = ctx.needs_input_grad[0]
        inside = ((pix >= 0) & (pix <= limit)).to(pix.dtype) if grad else None  # the clamp's derivative
        pix = pix.clamp(0.0, limit)
        corner = pix.floor().clamp_(max=limit - 1)
        frac = pix - corner
        cell = (corner @ corner.new_tensor([1.0, float(res)])).long()  # exact: R² < 2²⁴
        if offset is not None:
            cell = cell + offset
        a, b, c, d = table.index_select(0, cell).reshape(pix.shape[0], 4, -1).unbind(1)
        fx, fy = frac[:, :1], frac[:, 1:]
        slope_x = torch.addcmul(b, d, fy)  # ∂/∂ column
        out = torch.addcmul(torch.addcmul(a, c, fy), fx, slope_x)
        if grad:
            slope_y = torch.addcmul(c, d, fx)  # ∂/∂ row
            ctx.save_for_backward(slope_x * inside[:, :1], slope_y * inside[:, 1:])
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        gx, gy = ctx.saved_tensors
        return torch.stack([(grad * gx).sum(-1), (grad * gy).sum(-1)], -1), None, None, None


class _GridBox:
    """The box and resolution a grid table covers, and the pixel coordinates of points in it."""

    lo: Tensor
    hi: Tensor
    resolution: int

    def _set_box(self, lo: Tensor, hi: Tensor) -> None:
        self.register_buffer("lo", lo.detach().float().clone())
        self.register_buffer("hi", hi.detach().float().clone())
        scale = (self.resolution - 1) / (self.hi - self.lo)
        self.register_buffer("pix_scale", scale)
        self.register_buffer("pix_shift", -self.lo * scale)

    def _pixels(self, q: Tensor) -> Tensor:
        return torch.addcmul(self.pix_shift, q, self.pix_scale)  # (q − lo)·(R − 1)/(hi − lo)

    def same_grid(self, other: _GridBox) -> bool:
        return (self.resolution == other.resolution and torch.equal(self.lo, other.lo)
                and torch.equal(self.hi, other.hi))

    def _offsets(self, classes: Tensor | None) -> Tensor | None:
        return None if classes is None else classes * (self.resolution * self.resolution)

    def _read(self, table: Tensor, q: Tensor, offsets: Tensor | None) -> Tensor:
        """(N, C) values at points q (N, 2) from a table of cell coefficients (:func:`cell_coefficients`)."""
        return _Bilinear.apply(self._pixels(q), table, offsets, self.resolution)


class GridMetric(Metric, _GridBox):
    """A neural metric tabulated on a grid over a box, per class, read by bilinear interpolation.

    Same idea as :class:`GridPotential`, for the metric: with D = 2 and categorical x, G(q | x) depends
    on nothing continuous but q, yet the c-transform's line searches evaluate the metric network at
    every path point tens of times per step (≈ 40 % of a K_θ fit on CPU, measured). The three entries
    of G are tabulated from the network and :meth:`refresh` re-tabulates after each metric update.
    Bilinear weights are a convex combination, so the interpolated G stays symmetric positive definite
    with the same trace. Gradients flow to q (the c-transform needs them), not to the network: the
    metric itself is trained on the network directly.
    """

    learnable = False

    def __init__(self, metric: _NeuralMetric, lo: Tensor, hi: Tensor, n_classes: int | None, resolution: int = 192) -> None:
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
        self.register_buffer("table", torch.zeros(1, 3 * (n_classes or 1), self.resolution, self.resolution,
                                                  device=lo.device))
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


# ---------------------------------------------------------------------------------------- potential


def _kernel_scores(q: Tensor, yt: Tensor, bias: Tensor) -> Tensor:
    """s[b, p, n] = q[b, p]·yt[:, n] + bias[n]: yt (D, N) or one per row (B, D, N); bias (N,), (B, N)."""
    b, p, d = q.shape
    if yt.ndim == 3:
        return torch.baddbmm(bias[:, None, :] if bias.ndim == 2 else bias, q, yt)
    if bias.ndim == 1:
        return torch.addmm(bias, q.reshape(b * p, d), yt).reshape(b, p, -1)
    return (q.reshape(b * p, d) @ yt).reshape(b, p, -1).add_(bias[:, None, :])


class _KernelLogSumExp(torch.autograd.Function):
    """logsumexp_n(q·yt_n + bias_n) over a KDE's support, (B, P), differentiable in q only.

    Its gradient is the softmax-weighted mean of the yt_n, which the forward pass forms from the
    exponentials it already holds (one (B·P × N) × (N × D) product), so the backward pass is a
    broadcast product instead of a second pass over the B × P × N scores; the scores are
    exponentiated in place. Scores more than 80 below a row's maximum are raised to −80 first: their
    terms (< 2e-35 each, against a sum ≥ 1) vanish in float32 either way, but computing them as
    subnormal numbers makes ``exp`` about 8× slower on CPU (narrow bandwidths put most of the support
    there).
    """

    @staticmethod
    def forward(ctx, q: Tensor, yt: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        scores = _kernel_scores(q, yt, bias)
        top = scores.amax(-1, keepdim=True)
        empty = ~torch.isfinite(top[..., 0])  # rows without support (all −inf)
        top = torch.where(empty[..., None], torch.zeros_like(top), top)
        weights = scores.sub_(top).clamp_(min=-80.0).exp_()
        total = weights.sum(-1)
        if ctx.needs_input_grad[0]:
            mean = (weights @ yt.transpose(-1, -2)) / total[..., None]  # (B, P, D)
            ctx.save_for_backward(mean)
        lse = total.log() + top[..., 0]
        return lse.masked_fill_(empty, -math.inf) if bool(empty.any()) else lse

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (mean,) = ctx.saved_tensors
        return grad[..., None] * mean, None, None


class KDEPotential(nn.Module):
    """Û(q | x) = α · log(p̂(q | x) + ε), a conditional Gaussian KDE over pooled anchor outputs.

    Categorical x: p̂ = (1/N_c) Σ_{i: c_i = c} φ_h(q − y_i), an exact class mask (the support is stored
    per class, padded, so a query only meets its own class's points). Continuous x: Nadaraya–Watson,
    p̂ = Σ_i φ_h(q − y_i) φ_hx(x − x_i) / Σ_j φ_hx(x − x_j). No x: a plain KDE. Computed in log space
    (logsumexp) so that narrow bandwidths do not underflow.

    The log kernel −‖q − y_i‖²/2h² is split as q·y_i/h² − ‖y_i‖²/2h² − ‖q‖²/2h²: the last term does
    not depend on i, so it leaves the logsumexp, and everything that depends on the support (and on x
    alone) is a per-support-point bias added by the same matrix product that forms q·y_i. One product
    and one logsumexp per evaluation, instead of a distance matrix and several passes over it.
    """

    def __init__(self, support_y: Tensor, support_x: Tensor, categorical: bool, bandwidth: float,
                 cond_bandwidth: float, alpha: float, eps: float = 1e-8) -> None:
        super().__init__()
        if not bandwidth > 0 or not cond_bandwidth > 0:
            raise ValueError(f"bandwidths must be > 0, got bandwidth={bandwidth}, cond_bandwidth={cond_bandwidth}")
        support_y, support_x = support_y.float(), support_x.float()
        self.categorical, self.h, self.hx, self.alpha = categorical, float(bandwidth), float(cond_bandwidth), float(alpha)
        self.log_eps = math.log(eps)
        inv = 1.0 / self.h**2
        if categorical:
            classes = support_x[:, 0].long()
            n_classes = int(classes.max()) + 1
            counts = torch.bincount(classes, minlength=n_classes)
            width = int(counts.max())
            padded = torch.zeros(n_classes, width, support_y.shape[1])
            valid = torch.zeros(n_classes, width, dtype=torch.bool)
            for c in range(n_classes):
                rows = support_y[classes == c]
                padded[c, : len(rows)] = rows
                valid[c, : len(rows)] = True
            self.register_buffer("ys", padded)  # (classes, N_c, D)
            self.register_buffer("log_valid", torch.where(valid, 0.0, -math.inf))
            self.register_buffer("log_count", torch.log(counts.clamp_min(1).float()))
            self.register_buffer("ys_t", (padded * inv).transpose(1, 2).contiguous())  # (classes, D, N_c): y/h²
            self.register_buffer("bias", -0.5 * inv * (padded * padded).sum(-1) + self.log_valid)  # (classes, N_c)
        else:
            self.register_buffer("ys", support_y)
            self.register_buffer("xs", support_x)
            self.register_buffer("ys_t", (support_y * inv).T.contiguous())  # (D, N): y/h²
            self.register_buffer("bias", -0.5 * inv * (support_y * support_y).sum(-1))  # (N,)

    @staticmethod
    def _log_norm(h: float, d: int) -> float:
        return 0.5 * d * math.log(2 * math.pi * h**2)

    def _log_kernel(self, u2: Tensor, h: float, d: int) -> Tensor:
        return -0.5 * u2 / h**2 - self._log_norm(h, d)

    @staticmethod
    def _sq_dist(q: Tensor, y: Tensor) -> Tensor:
        """‖q_p − y_n‖² for q (B, P, D) and y (B, N, D) or (N, D) → (B, P, N)."""
        qq = (q * q).sum(-1, keepdim=True)
        if y.ndim == 2:
            return (qq + (y * y).sum(-1)[None, None, :] - 2 * q @ y.T).clamp_min(0)
        return (qq + (y * y).sum(-1)[:, None, :] - 2 * q @ y.transpose(1, 2)).clamp_min(0)

    def _conditional(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        """What depends on x alone: (support term (y/h²)ᵀ, per-row bias over the support, offset (B,)).

        log p̂(q | x) = logsumexp_i(q·(y_i/h²) + bias_i) − ‖q‖²/2h² + offset.
        """
        d = self.ys.shape[-1]
        if self.categorical:
            c = x[:, 0].long()
            return self.ys_t[c], self.bias[c], -self.log_count[c] - self._log_norm(self.h, d)
        const = x.new_full((x.shape[0],), -self._log_norm(self.h, d))
        if self.xs.shape[1] == 0:
            return self.ys_t, None, const - math.log(self.ys.shape[0])
        x2 = ((x * x).sum(-1, keepdim=True) + (self.xs * self.xs).sum(-1)[None] - 2 * x @ self.xs.T).clamp_min(0)
        log_w = self._log_kernel(x2, self.hx, x.shape[-1])  # (B, N)
        log_norm = torch.logsumexp(log_w, -1).clamp_min(math.log(1e-8))
        return self.ys_t, log_w + self.bias, const - log_norm

    def _log_density(self, q: Tensor, pieces: tuple[Tensor, Tensor | None, Tensor]) -> Tensor:
        yt, bias, offset = pieces
        if bias is None:
            bias = self.bias
        if yt.requires_grad or bias.requires_grad:  # not in CLOT: the support and x are data
            lse = torch.logsumexp(_kernel_scores(q, yt, bias), -1)
        else:
            lse = _KernelLogSumExp.apply(q, yt, bias)
        return lse - (0.5 / self.h**2) * (q * q).sum(-1) + offset[:, None]

    def log_density(self, q: Tensor, x: Tensor) -> Tensor:
        """log p̂(q | x): q (B, P, D), x (B, C) → (B, P)."""
        return self._log_density(q, self._conditional(x))

    def _potential(self, lp: Tensor) -> Tensor:
        return self.alpha * torch.logaddexp(lp, torch.full_like(lp, self.log_eps))

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        """Û: (B, P, D), (B, C) → (B, P)."""
        return self._potential(self.log_density(q, x))

    def state(self, x: Tensor) -> dict[str, Tensor]:
        """The pieces of Û(· | x) that depend on x alone, one row per row of x (see :meth:`Metric.state`)."""
        yt, bias, offset = self._conditional(x)
        state = {"offset": offset}
        if yt.ndim == 3:
            state["yt"] = yt
        if bias is not None:
            state["bias"] = bias
        return state

    def apply_state(self, q: Tensor, state: dict[str, Tensor]) -> Tensor:
        """Û: q (B, P, D) with the conditions' :meth:`state` → (B, P)."""
        pieces = (state.get("yt", self.ys_t), state.get("bias"), state["offset"])
        return self._potential(self._log_density(q, pieces))

    def prepare(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """Û(· | x) at fixed conditions x (B, C): q (B, P, D) ↦ (B, P), the x-only pieces computed once."""
        state = self.state(x)
        return lambda q: self.apply_state(q, state)


class GridPotential(nn.Module, _GridBox):
    """A :class:`KDEPotential` tabulated on a regular grid over a box and read by bilinear interpolation.

    For two-dimensional outputs with categorical (or no) conditions the potential does not depend on
    anything continuous but q, so it can be computed once, at ``resolution``² points per class, instead
    of against every support point at every path point of every c-transform iteration (the dominant
    cost of CLOT on CPU, PAPER.md §9). Outside the box the border value is used. The interpolation
    error is O(cell²) and a test bounds it against the exact KDE.
    """

    def __init__(self, kde: KDEPotential, lo: Tensor, hi: Tensor, resolution: int = 192) -> None:
        super().__init__()
        if kde.ys.shape[-1] != 2:
            raise ValueError("GridPotential tabulates two-dimensional outputs only")
        self.alpha = kde.alpha
        g0 = torch.linspace(float(lo[0]), float(hi[0]), resolution)
        g1 = torch.linspace(float(lo[1]), float(hi[1]), resolution)
        mesh = torch.stack(torch.meshgrid(g0, g1, indexing="xy"), -1).reshape(1, -1, 2)  # row = q1, column = q0
        n_classes = kde.ys.shape[0] if kde.categorical else 1
        with torch.no_grad():
            tables = []
            for c in range(n_classes):
                x = torch.full((1, 1), float(c))
                tables.append(kde(mesh.to(kde.ys.device), x.to(kde.ys.device)).reshape(resolution, resolution).cpu())
        self.register_buffer("table", torch.stack(tables)[None])  # (1, classes, H, W)
        self.register_buffer("cells", cell_coefficients(self.table[0, :, :, :, None]))  # what the lookups read
        self.resolution = int(resolution)
        self._set_box(lo, hi)
        self.categorical = kde.categorical

    def _classes(self, x: Tensor, p: int) -> Tensor | None:
        return self._offsets(x[:, 0].long().repeat_interleave(p)) if self.categorical else None

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        """Û: (B, P, D), (B, C) → (B, P)."""
        b, p, d = q.shape
        return self._read(self.cells, q.reshape(b * p, d), self._classes(x, p)).reshape(b, p)

    def state(self, x: Tensor) -> dict[str, Tensor]:
        return {"classes": x[:, 0].long()} if self.categorical else {}

    def apply_state(self, q: Tensor, state: dict[str, Tensor]) -> Tensor:
        b, p, d = q.shape
        offsets = self._offsets(state["classes"].repeat_interleave(p)) if "classes" in state else None
        return self._read(self.cells, q.reshape(b * p, d), offsets).reshape(b, p)

    def prepare(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """Û(· | x) at fixed conditions x: q (B, P, D) ↦ (B, P)."""
        state = self.state(x)
        return lambda q: self.apply_state(q, state)


def scott_bandwidth(y: Tensor) -> float:
    """Scott's rule for a Gaussian KDE, averaged over dimensions: σ · n^(−1/(D+4))."""
    n, d = y.shape
    return float(y.std(0).mean()) * n ** (-1.0 / (d + 4))


# ------------------------------------------------------------------------------------------ splines


@lru_cache(maxsize=8)
def _spline_null_basis(num_nodes: int) -> np.ndarray:
    """(4·P × F) basis of cubic splines on P = num_nodes − 1 uniform pieces of [0, 1] that vanish at 0 and 1
    and are C² at the interior knots (F = num_nodes free parameters), as in stochman's CubicSpline."""
    pieces = num_nodes - 1
    knots = np.linspace(0.0, 1.0, num_nodes)

    def mono(s: float, deriv: int) -> np.ndarray:
        return [np.array([1, s, s * s, s**3]), np.array([0, 1, 2 * s, 3 * s * s]), np.array([0, 0, 2, 6 * s])][deriv]

    rows = []
    r = np.zeros(4 * pieces)
    r[0:4] = mono(0.0, 0)
    rows.append(r)
    r = np.zeros(4 * pieces)
    r[4 * (pieces - 1):] = mono(1.0, 0)
    rows.append(r)
    for j in range(1, pieces):
        for deriv in range(3):
            r = np.zeros(4 * pieces)
            r[4 * (j - 1): 4 * j] = mono(knots[j], deriv)
            r[4 * j: 4 * j + 4] = -mono(knots[j], deriv)
            rows.append(r)
    _, sing, vt = np.linalg.svd(np.array(rows))
    rank = int((sing > 1e-10).sum())
    return vt[rank:].T


def spline_matrices(num_nodes: int, s: Tensor) -> tuple[Tensor, Tensor]:
    """Evaluation matrices (len(s), F) of the spline offset and its derivative at the points ``s``."""
    basis = _spline_null_basis(num_nodes)
    pieces = num_nodes - 1
    s_np = s.detach().double().cpu().numpy()
    val, der = np.zeros((len(s_np), basis.shape[1])), np.zeros((len(s_np), basis.shape[1]))
    for i, si in enumerate(s_np):
        p = min(int(si * pieces), pieces - 1)
        block = basis[4 * p: 4 * p + 4]
        val[i] = np.array([1, si, si * si, si**3]) @ block
        der[i] = np.array([0, 1, 2 * si, 3 * si * si]) @ block
    return torch.tensor(val, dtype=torch.float32), torch.tensor(der, dtype=torch.float32)


class SplinePath(nn.Module):
    """γ(s) = (1 − s) y0 + s y1 + spline(s; φ), φ of shape (B, F, D); the offset is 0 at both ends."""

    def __init__(self, num_nodes: int = 15, num_points: int = 16) -> None:
        super().__init__()
        self.num_nodes, self.num_points = num_nodes, num_points
        mids = (torch.arange(num_points) + 0.5) / num_points  # midpoint rule for the action integral
        val, der = spline_matrices(num_nodes, mids)
        self.register_buffer("s", mids)
        self.register_buffer("val", val)
        self.register_buffer("der", der)
        grid = torch.linspace(0, 1, num_points + 1)
        gval, _ = spline_matrices(num_nodes, grid)
        self.register_buffer("grid", grid)
        self.register_buffer("grid_val", gval)
        # Transposed evaluation matrices, for one (B·D, F) @ (F, ·) product per path batch.
        self.register_buffer("val_der_t", torch.cat([val, der]).T.contiguous())  # (F, 2P)
        self.register_buffer("grid_val_t", gval.T.contiguous())  # (F, P + 1)

    @property
    def n_params(self) -> int:
        return self.num_nodes

    @staticmethod
    def _offsets(mat_t: Tensor, phi: Tensor) -> Tensor:
        """Spline offsets: φ (B, F, D) through matᵀ (F, K) → (B, K, D), as one matrix product."""
        b, f, d = phi.shape
        return (phi.transpose(1, 2).reshape(b * d, f) @ mat_t).reshape(b, d, -1).transpose(1, 2)

    def points(self, y0: Tensor, y1: Tensor, phi: Tensor) -> tuple[Tensor, Tensor]:
        """Positions and velocities at the quadrature points: (B, P, D) each."""
        s, p = self.s[None, :, None], self.num_points
        off = self._offsets(self.val_der_t, phi)
        q = (1 - s) * y0[:, None] + s * y1[:, None] + off[:, :p]
        v = (y1 - y0)[:, None] + off[:, p:]
        return q, v

    def grid_points(self, y0: Tensor, y1: Tensor, phi: Tensor) -> Tensor:
        """Positions at the P + 1 uniform nodes s = 0, 1/P, …, 1 (for the reference cost form)."""
        s = self.grid[None, :, None]
        return (1 - s) * y0[:, None] + s * y1[:, None] + self._offsets(self.grid_val_t, phi)

    def at(self, y0: Tensor, y1: Tensor, phi: Tensor, s: float) -> Tensor:
        """γ(s) for one fraction s: (B, D)."""
        val, _ = spline_matrices(self.num_nodes, torch.tensor([float(s)]))
        return (1 - s) * y0 + s * y1 + torch.einsum("f,bfd->bd", val[0].to(phi.device), phi)


# ------------------------------------------------------------------------------------------- action


COSTS = ("paper", "reference")


class PreparedCost:
    """y1 ↦ :func:`path_cost` (or :func:`path_energy` with ``energy``) of y0 → y1 along the spline φ,
    for many y1 at fixed (y0, φ, x); build it with :func:`prepare_cost`.

    Everything that does not depend on the end point is computed once: the start's share of the path
    and the spline offsets, the metric's and the potential's pieces that depend on x alone. A tabulated
    metric and a tabulated potential on the same grid are read by one lookup. :meth:`take` restricts
    it to some of its rows (paths), for evaluations that only need those (a line search's tail).
    """

    def __init__(self, path: SplinePath, metric: Metric, potential: nn.Module | None, form: str, energy: bool,
                 rows: dict[str, Tensor], points: dict[str, Tensor], fused: Tensor | None) -> None:
        self.path, self.metric, self.potential, self.form, self.energy = path, metric, potential, form, energy
        self.rows, self.points, self.fused = rows, points, fused  # per path, per path point, shared

    def take(self, idx: Tensor) -> PreparedCost:
        """The same cost for the paths ``idx`` only (a 1-D index)."""
        p = self.path.num_points
        pts = (idx[:, None] * p + torch.arange(p, device=idx.device)).reshape(-1)
        return PreparedCost(self.path, self.metric, self.potential, self.form, self.energy,
                            {k: v.index_select(0, idx) for k, v in self.rows.items()},
                            {k: v.index_select(0, pts) for k, v in self.points.items()}, self.fused)

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
    path: SplinePath, metric: Metric, potential: nn.Module | None, y0: Tensor, phi: Tensor, x: Tensor,
    form: str = "paper", energy: bool = False,
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
    if isinstance(metric, GridMetric) and isinstance(potential, GridPotential) and metric.same_grid(potential) \
            and metric.cells.shape[0] == potential.cells.shape[0] and bool(metric.n_classes) == potential.categorical:
        points = metric.state(xr)  # the class offsets of the points, shared by both tables
        return PreparedCost(path, metric, potential, form, energy, rows, points, metric.fused_table(potential))
    points = {f"met.{k}": t for k, t in metric.state(xr).items()}
    if potential is not None:
        rows.update({f"pot.{k}": t for k, t in potential.state(x).items()})
    return PreparedCost(path, metric, potential, form, energy, rows, points, None)


def path_cost(
    path: SplinePath, metric: Metric, potential: nn.Module | None, y0: Tensor, y1: Tensor, phi: Tensor,
    x: Tensor, form: str = "paper",
) -> Tensor:
    """Cost of moving y0 → y1 along the spline φ, per path: (B,).

    ``paper``: the action ∫₀¹ [½ q̇ᵀ G(q | x) q̇ − Û(q | x)] ds by the midpoint rule.
    ``reference``: the HTI reference code's form ½ E², E = Σ_i [√(Δ_iᵀ G(γ_i) Δ_i) − Û(γ_i)] over the
    P segments of a uniform grid (the potential inside the squared length and summed without ds;
    PAPER.md trap 1).
    """
    return prepare_cost(path, metric, potential, y0, phi, x, form)(y1)


def path_energy(
    path: SplinePath, metric: Metric, potential: nn.Module | None, y0: Tensor, y1: Tensor, phi: Tensor,
    x: Tensor, form: str = "paper",
) -> Tensor:
    """What the spline amortiser minimises: the action (``paper``), or E rather than ½E² (``reference``)."""
    return prepare_cost(path, metric, potential, y0, phi, x, form, energy=True)(y1)
