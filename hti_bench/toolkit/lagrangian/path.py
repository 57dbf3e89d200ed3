"""Paths between two points: a cubic spline through learned interior nodes, discretised at P points.

Shapes: B paths, P points along each path, D output dimensions, C condition columns. Conditions are
the *source's* x throughout (a map carries x through unchanged).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn


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
