"""Paths between two points: a cubic spline through learned interior nodes, discretised at P points.

Shapes: B paths, P points along each path, D output dimensions, C condition columns. Conditions are
the *source's* x throughout (a map carries x through unchanged).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

#: Spline families: ``c2``, cubic splines that are C² at the knots; ``reference``, the family of the HTI
#: authors' code, whose spline library (stochman 0.3.0) writes the second-derivative continuity row at
#: a knot t as (0, 0, 6t, 2) instead of (0, 0, 2, 6t): its 15-dimensional space is not C² (docs/evidence/parity.md).
BASES = ("c2", "reference")


def _constraints(num_nodes: int) -> np.ndarray:
    """The (2 + 3(P − 1)) × 4P linear constraints on the global-s polynomial coefficients of P = num_nodes − 1
    cubic pieces: value 0 at s = 0 and s = 1, and value, slope and curvature continuous at each interior knot."""
    pieces = num_nodes - 1
    knots = np.linspace(0.0, 1.0, num_nodes)

    def mono(t: float, deriv: int) -> np.ndarray:
        return [np.array([1, t, t * t, t**3]), np.array([0, 1, 2 * t, 3 * t * t]), np.array([0, 0, 2, 6 * t])][deriv]

    rows = [np.zeros(4 * pieces), np.zeros(4 * pieces)]
    rows[0][0:4] = mono(0.0, 0)
    rows[1][4 * (pieces - 1) :] = mono(1.0, 0)
    for deriv in range(3):
        for j in range(1, pieces):
            r = np.zeros(4 * pieces)
            r[4 * (j - 1) : 4 * j] = mono(knots[j], deriv)
            r[4 * j : 4 * j + 4] = -mono(knots[j], deriv)
            rows.append(r)
    return np.array(rows)


def _reference_constraints(num_nodes: int) -> Tensor:
    """The constraints of the ``reference`` family: those of :func:`_constraints` with the curvature row
    (0, 0, 6t, 2), in the reference's float32 arithmetic (knots, powers and products rounded to float32 as
    they are computed), so that its SVD yields the same basis vectors."""
    pieces = num_nodes - 1
    t = torch.linspace(0, 1, num_nodes, dtype=torch.float32)[1:-1]
    rows = torch.zeros(2 + 3 * (pieces - 1), 4 * pieces, dtype=torch.float32)
    rows[0, 0] = 1.0
    rows[1, -4:] = 1.0
    for deriv in range(3):
        for i in range(pieces - 1):
            ti = t[i]
            fill = [
                torch.stack([ti**0, ti, ti**2, ti**3]),
                torch.stack([0 * ti, ti**0, 2.0 * ti, 3.0 * ti**2]),
                torch.stack([0 * ti, 0 * ti, 6.0 * ti, 2.0 + 0 * ti]),
            ][deriv]
            r = 2 + deriv * (pieces - 1) + i
            rows[r, 4 * i : 4 * i + 4] = fill
            rows[r, 4 * i + 4 : 4 * i + 8] = -fill
    return rows


@lru_cache(maxsize=8)
def _spline_null_basis(num_nodes: int, basis: str = "c2") -> np.ndarray:
    """(4·P × F) basis of the splines on P = num_nodes − 1 uniform pieces of [0, 1] that vanish at 0 and 1
    and meet the knot constraints of ``basis`` (F = num_nodes free parameters).

    ``reference`` also reproduces the reference code's very basis vectors, not only their span, so that
    spline parameters φ mean the same path in both codes: the same constraint rows in the same order,
    in float32, through the same SVD routine (torch's), as stochman computes it.
    """
    if basis not in BASES:
        raise ValueError(f"Unknown spline basis {basis!r}; valid: {', '.join(BASES)}")
    if basis == "reference":
        _, sing, vh = torch.linalg.svd(_reference_constraints(num_nodes), full_matrices=True)
        return vh.T[:, sing.numel() :].double().numpy()
    _, sing, vt = np.linalg.svd(_constraints(num_nodes))
    rank = int((sing > 1e-10).sum())
    return vt[rank:].T


def spline_matrices(num_nodes: int, s: Tensor, basis: str = "c2") -> tuple[Tensor, Tensor]:
    """Evaluation matrices (len(s), F) of the spline offset and its derivative at the points ``s``."""
    coeffs = _spline_null_basis(num_nodes, basis)
    pieces = num_nodes - 1
    s_np = s.detach().double().cpu().numpy()
    val, der = np.zeros((len(s_np), coeffs.shape[1])), np.zeros((len(s_np), coeffs.shape[1]))
    for i, si in enumerate(s_np):
        p = min(max(int(np.floor(si * pieces)), 0), pieces - 1)
        block = coeffs[4 * p : 4 * p + 4]
        val[i] = np.array([1, si, si * si, si**3]) @ block
        der[i] = np.array([0, 1, 2 * si, 3 * si * si]) @ block
    return torch.tensor(val, dtype=torch.float32), torch.tensor(der, dtype=torch.float32)


class SplinePath(nn.Module):
    """γ(s) = (1 − s) y0 + s y1 + spline(s; φ), φ of shape (B, F, D); the offset is 0 at both ends.
    ``basis`` picks the spline family (:data:`BASES`)."""

    def __init__(self, num_nodes: int = 15, num_points: int = 16, basis: str = "c2") -> None:
        super().__init__()
        self.num_nodes, self.num_points, self.basis = num_nodes, num_points, basis
        mids = (torch.arange(num_points) + 0.5) / num_points  # midpoint rule for the action integral
        val, der = spline_matrices(num_nodes, mids, basis)
        self.register_buffer("s", mids)
        self.register_buffer("val", val)
        self.register_buffer("der", der)
        grid = torch.linspace(0, 1, num_points + 1)
        gval, _ = spline_matrices(num_nodes, grid, basis)
        self.register_buffer("grid", grid)
        self.register_buffer("grid_val", gval)
        # Transposed evaluation matrices, for one (B·D, F) @ (F, ·) product per path batch.
        self.register_buffer("val_der_t", torch.cat([val, der]).T.contiguous())  # (F, 2P)
        self.register_buffer("grid_val_t", gval.T.contiguous())  # (F, P + 1)

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
        val, _ = spline_matrices(self.num_nodes, torch.tensor([float(s)]), self.basis)
        return (1 - s) * y0 + s * y1 + torch.einsum("f,bfd->bd", val[0].to(phi.device), phi)
