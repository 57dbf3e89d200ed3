"""Metrics, the density potential, spline paths and the action of a path.

Shapes: B paths, P points along each path, D output dimensions, C condition columns. Conditions are
the *source's* x throughout (a map carries x through unchanged).
"""

from __future__ import annotations

import math
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
    batch = angles.shape[0]
    eye = torch.eye(dim, dtype=angles.dtype, device=angles.device).expand(batch, dim, dim)
    cols = [eye[:, :, c] for c in range(dim)]
    m = 0
    for i in range(dim):
        for j in range(i + 1, dim):
            c, s = torch.cos(angles[:, m])[:, None], torch.sin(angles[:, m])[:, None]
            ci, cj = cols[i], cols[j]
            cols[i], cols[j] = ci * c + cj * s, cj * c - ci * s
            m += 1
    return torch.stack(cols, dim=-1)


class Metric(nn.Module):
    """G(q | x), symmetric positive definite, given as eigenvalues e (B, D) and a rotation R (B, D, D)
    with G = Rᵀ diag(e) R. ``quad(q, v, x)`` = vᵀ G(q | x) v."""

    learnable = False

    def quad(self, q: Tensor, v: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

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

    def eig_rot(self, q: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def quad(self, q: Tensor, v: Tensor, x: Tensor) -> Tensor:
        e, rot = self.eig_rot(q, x)
        rv = torch.einsum("bij,bj->bi", rot, v)
        return (e * rv * rv).sum(-1)

    def matrix(self, q: Tensor, x: Tensor) -> Tensor:
        e, rot = self.eig_rot(q, x)
        return rot.transpose(1, 2) @ torch.diag_embed(e) @ rot


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

    def eig_rot(self, q: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        o = self.net(q, x)
        d = self.dim
        e = self.e_min + F.softmax(self.temp * o[:, :d], dim=-1) * (self.budget / d) * (self.e_max - self.e_min)
        e = e.clamp(self.e_min, self.e_max)
        pairs = o[:, d:].reshape(o.shape[0], -1, 2)
        angles = torch.atan2(pairs[..., 1], pairs[..., 0])
        return e, givens_rotation(angles, d)


class NLOTMetric(_NeuralMetric):
    """The fixed-eigenvalue metric of neural Lagrangian OT (Pooladian et al., 2024): G = Rᵀ diag(1, 0.1) R
    with θ = atan2(o_0, o_1). Two-dimensional outputs only."""

    def __init__(self, dim: int, cond_dim: int, n_classes: int | None) -> None:
        if dim != 2:
            raise ValueError(f"the NLOT metric is defined for D = 2 outputs only, got D = {dim}")
        super().__init__(dim, 2, cond_dim, n_classes)
        self.register_buffer("eig", torch.tensor([1.0, 0.1]))

    def eig_rot(self, q: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        o = self.net(q, x)
        angles = torch.atan2(o[:, 0], o[:, 1])[:, None]
        return self.eig.expand(q.shape[0], 2), givens_rotation(angles, 2)


class GridMetric(Metric):
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
        self.register_buffer("lo", lo.detach().float().clone())
        self.register_buffer("hi", hi.detach().float().clone())
        self.register_buffer("table", torch.zeros(1, 3 * (n_classes or 1), self.resolution, self.resolution,
                                                  device=lo.device))
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        metric, r, tables = self.source[0], self.resolution, []
        for c in range(self.n_classes or 1):
            x = torch.full((self.mesh.shape[0], 1 if self.n_classes else 0), float(c), device=self.mesh.device)
            g = metric.matrix(self.mesh, x)  # (R², 2, 2)
            tables += [g[:, 0, 0].reshape(r, r), g[:, 0, 1].reshape(r, r), g[:, 1, 1].reshape(r, r)]
        self.table.copy_(torch.stack(tables)[None])

    def _entries(self, q: Tensor, x: Tensor) -> Tensor:
        """(B, 3): G00, G01, G11 at each point q (B, 2) of condition x (B, C)."""
        u = 2 * (q - self.lo) / (self.hi - self.lo) - 1
        out = F.grid_sample(self.table, u.reshape(1, 1, -1, 2), mode="bilinear", padding_mode="border",
                            align_corners=True)[0, :, 0, :]  # (3·classes, B)
        out = out.reshape(-1, 3, q.shape[0])
        if self.n_classes:
            c = x[:, 0].long()
            return out[c, :, torch.arange(q.shape[0], device=q.device)]
        return out[0].T

    def quad(self, q: Tensor, v: Tensor, x: Tensor) -> Tensor:
        g = self._entries(q, x)
        return g[:, 0] * v[:, 0] ** 2 + 2 * g[:, 1] * v[:, 0] * v[:, 1] + g[:, 2] * v[:, 1] ** 2

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


class KDEPotential(nn.Module):
    """Û(q | x) = α · log(p̂(q | x) + ε), a conditional Gaussian KDE over pooled anchor outputs.

    Categorical x: p̂ = (1/N_c) Σ_{i: c_i = c} φ_h(q − y_i), an exact class mask (the support is stored
    per class, padded, so a query only meets its own class's points). Continuous x: Nadaraya–Watson,
    p̂ = Σ_i φ_h(q − y_i) φ_hx(x − x_i) / Σ_j φ_hx(x − x_j). No x: a plain KDE. Computed in log space
    (logsumexp) so that narrow bandwidths do not underflow, with squared distances from matrix
    products (``torch.cdist``'s backward is several times slower on CPU).
    """

    def __init__(self, support_y: Tensor, support_x: Tensor, categorical: bool, bandwidth: float,
                 cond_bandwidth: float, alpha: float, eps: float = 1e-8) -> None:
        super().__init__()
        if not bandwidth > 0 or not cond_bandwidth > 0:
            raise ValueError(f"bandwidths must be > 0, got bandwidth={bandwidth}, cond_bandwidth={cond_bandwidth}")
        support_y, support_x = support_y.float(), support_x.float()
        self.categorical, self.h, self.hx, self.alpha = categorical, float(bandwidth), float(cond_bandwidth), float(alpha)
        self.log_eps = math.log(eps)
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
        else:
            self.register_buffer("ys", support_y)
            self.register_buffer("xs", support_x)

    def _log_kernel(self, u2: Tensor, h: float, d: int) -> Tensor:
        return -0.5 * u2 / h**2 - 0.5 * d * math.log(2 * math.pi * h**2)

    @staticmethod
    def _sq_dist(q: Tensor, y: Tensor) -> Tensor:
        """‖q_p − y_n‖² for q (B, P, D) and y (B, N, D) or (N, D) → (B, P, N)."""
        qq = (q * q).sum(-1, keepdim=True)
        if y.ndim == 2:
            return (qq + (y * y).sum(-1)[None, None, :] - 2 * q @ y.T).clamp_min(0)
        return (qq + (y * y).sum(-1)[:, None, :] - 2 * q @ y.transpose(1, 2)).clamp_min(0)

    def log_density(self, q: Tensor, x: Tensor) -> Tensor:
        """log p̂(q | x): q (B, P, D), x (B, C) → (B, P)."""
        d = q.shape[-1]
        if self.categorical:
            c = x[:, 0].long()
            logk = self._log_kernel(self._sq_dist(q, self.ys[c]), self.h, d) + self.log_valid[c][:, None, :]
            return torch.logsumexp(logk, -1) - self.log_count[c][:, None]
        logk = self._log_kernel(self._sq_dist(q, self.ys), self.h, d)
        if self.xs.shape[1] == 0:
            return torch.logsumexp(logk, -1) - math.log(self.ys.shape[0])
        x2 = ((x * x).sum(-1, keepdim=True) + (self.xs * self.xs).sum(-1)[None] - 2 * x @ self.xs.T).clamp_min(0)
        log_w = self._log_kernel(x2, self.hx, x.shape[-1])  # (B, N)
        log_norm = torch.logsumexp(log_w, -1).clamp_min(math.log(1e-8))
        return torch.logsumexp(logk + log_w[:, None, :], -1) - log_norm[:, None]

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        """Û: (B, P, D), (B, C) → (B, P)."""
        lp = self.log_density(q, x)
        return self.alpha * torch.logaddexp(lp, torch.full_like(lp, self.log_eps))


class GridPotential(nn.Module):
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
        self.register_buffer("lo", lo.detach().float().clone())
        self.register_buffer("hi", hi.detach().float().clone())
        self.categorical = kde.categorical

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        """Û: (B, P, D), (B, C) → (B, P)."""
        b, p, _ = q.shape
        u = 2 * (q - self.lo) / (self.hi - self.lo) - 1  # grid_sample wants [−1, 1], x = column (q0)
        out = torch.nn.functional.grid_sample(
            self.table, u.reshape(1, 1, b * p, 2), mode="bilinear", padding_mode="border", align_corners=True
        )[0, :, 0, :]  # (classes, B·P)
        if self.categorical:
            c = x[:, 0].long().repeat_interleave(p)
            return out.gather(0, c[None]).reshape(b, p)
        return out[0].reshape(b, p)


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

    @property
    def n_params(self) -> int:
        return self.num_nodes

    def points(self, y0: Tensor, y1: Tensor, phi: Tensor) -> tuple[Tensor, Tensor]:
        """Positions and velocities at the quadrature points: (B, P, D) each."""
        s = self.s[None, :, None]
        q = (1 - s) * y0[:, None] + s * y1[:, None] + torch.einsum("pf,bfd->bpd", self.val, phi)
        v = (y1 - y0)[:, None] + torch.einsum("pf,bfd->bpd", self.der, phi)
        return q, v

    def grid_points(self, y0: Tensor, y1: Tensor, phi: Tensor) -> Tensor:
        """Positions at the P + 1 uniform nodes s = 0, 1/P, …, 1 (for the reference cost form)."""
        s = self.grid[None, :, None]
        return (1 - s) * y0[:, None] + s * y1[:, None] + torch.einsum("pf,bfd->bpd", self.grid_val, phi)

    def at(self, y0: Tensor, y1: Tensor, phi: Tensor, s: float) -> Tensor:
        """γ(s) for one fraction s: (B, D)."""
        val, _ = spline_matrices(self.num_nodes, torch.tensor([float(s)]))
        return (1 - s) * y0 + s * y1 + torch.einsum("f,bfd->bd", val[0].to(phi.device), phi)


# ------------------------------------------------------------------------------------------- action


COSTS = ("paper", "reference")


def _reference_length(path: SplinePath, metric: Metric, potential: KDEPotential | None, y0: Tensor, y1: Tensor,
                      phi: Tensor, x: Tensor) -> Tensor:
    """E = Σ_i [√(Δ_iᵀ G(γ_i) Δ_i) − Û(γ_i)] over the P segments of a uniform grid: (B,)."""
    b, d = y0.shape
    xr = x.repeat_interleave(path.num_points, 0) if x.shape[1] else x.new_zeros(b * path.num_points, 0)
    g = path.grid_points(y0, y1, phi)
    nodes, delta = g[:, :-1], g[:, 1:] - g[:, :-1] + 1e-6
    length = metric.quad(nodes.reshape(-1, d), delta.reshape(-1, d), xr).clamp_min(1e-12).sqrt().reshape(b, -1)
    u = potential(nodes, x) if potential is not None else 0.0
    return (length - u).sum(-1)


def path_cost(
    path: SplinePath, metric: Metric, potential: KDEPotential | None, y0: Tensor, y1: Tensor, phi: Tensor,
    x: Tensor, form: str = "paper",
) -> Tensor:
    """Cost of moving y0 → y1 along the spline φ, per path: (B,).

    ``paper``: the action ∫₀¹ [½ q̇ᵀ G(q | x) q̇ − Û(q | x)] ds by the midpoint rule.
    ``reference``: the HTI reference code's form ½ E², E = Σ_i [√(Δ_iᵀ G(γ_i) Δ_i) − Û(γ_i)] over the
    P segments of a uniform grid (the potential inside the squared length and summed without ds;
    PAPER.md trap 1).
    """
    if form == "paper":
        b, d = y0.shape
        xr = x.repeat_interleave(path.num_points, 0) if x.shape[1] else x.new_zeros(b * path.num_points, 0)
        q, v = path.points(y0, y1, phi)
        kinetic = 0.5 * metric.quad(q.reshape(-1, d), v.reshape(-1, d), xr).reshape(b, -1)
        u = potential(q, x) if potential is not None else 0.0
        return (kinetic - u).mean(-1)
    if form == "reference":
        return 0.5 * _reference_length(path, metric, potential, y0, y1, phi, x) ** 2
    raise ValueError(f"Unknown cost form {form!r}; valid: {', '.join(COSTS)}")


def path_energy(
    path: SplinePath, metric: Metric, potential: KDEPotential | None, y0: Tensor, y1: Tensor, phi: Tensor,
    x: Tensor, form: str = "paper",
) -> Tensor:
    """What the spline amortiser minimises: the action (``paper``), or E rather than ½E² (``reference``)."""
    if form == "reference":
        return _reference_length(path, metric, potential, y0, y1, phi, x)
    return path_cost(path, metric, potential, y0, y1, phi, x, form)
