"""Data-manifold metrics: Riemannian metrics G(y) built from a finite sample of the data, cheap enough to
evaluate along paths inside a training loop (metric flow matching, ``baselines/mfm.py``).

Both metrics are diagonal and large away from the data, so a path of least kinetic energy
∫ ẏᵀ G(y) ẏ dt bends towards the data instead of cutting straight across a gap (Kapusniak et al., NeurIPS
2024; Arvanitidis et al., 2016 for LAND):

- :class:`LANDMetric` (locally adaptive normal distribution): G(y) = diag(h(y) + ρ)^-α with
  h_d(y) = Σ_n exp(−‖y − y_n‖² / 2γ²) (y_{n,d} − y_d)², a kernel-weighted, unnormalised local variance
  per coordinate. Moving along a coordinate in which the nearby data spread is cheap; far from all data
  h → 0 and G → ρ^-α, the dearest it gets.
- :class:`RBFMetric`: G(y) = (h(y) + ρ)^-α · I with h(y) = Σ_k W_k exp(−λ_k ‖y − c_k‖² / 2), centres c_k
  from k-means, λ_k = 1 / (2 (κ σ_k)²) from each cluster's spread σ_k, and weights W_k ≥ 0 fitted so that
  h ≈ 1 on the data.

Each metric holds G independent *groups* of N points (shape (G, N, D)), e.g. one per anchor interval and
condition, and is evaluated at blocks of points (B, r, D), the r points of block b in group ``group[b]``
(one gather of a group's points serves a whole block). Nothing here draws from
the global RNG: k-means starts from a subset drawn with the caller's generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Smallest kernel bandwidth and cluster spread used, in the points' units: degenerate groups (every
#: point identical, e.g. a deterministic network's copies) give a zero spread.
MIN_SCALE = 1e-4


def scott_bandwidth(points: Tensor) -> Tensor:
    """Scott's rule per group: γ = σ̂ · N^(−1/(D+4)), σ̂ the per-coordinate standard deviation of the
    group's N points averaged over the D coordinates; (G, N, D) → (G,)."""
    _, n, d = points.shape
    spread = points.std(dim=1).mean(dim=-1) if n > 1 else torch.zeros(points.shape[0], device=points.device)
    return (spread * float(n) ** (-1.0 / (d + 4))).clamp_min(MIN_SCALE)


def _gather(table: Tensor, group: Tensor) -> Tensor:
    return table.index_select(0, group)


class LANDMetric:
    """G(y) = diag(h(y) + ρ)^-α, h the LAND local variance of the group's points with bandwidth γ."""

    def __init__(self, points: Tensor, gamma: Tensor | float, *, rho: float, alpha: float = 1.0) -> None:
        self.points = points.detach()
        g = points.shape[0]
        self.gamma = torch.as_tensor(gamma, dtype=points.dtype, device=points.device).expand(g).clone()
        self.rho, self.alpha = float(rho), float(alpha)
        self._sq = self.points**2  # (G, N, D)
        self._norm = self._sq.sum(-1)  # (G, N)

    def local_variance(self, y: Tensor, group: Tensor) -> Tensor:
        """h(y), shape (B, r, D), for blocks of r points y (B, r, D), block b in group ``group[b]``."""
        pts = _gather(self.points, group)  # (B, N, D)
        # ‖y − y_n‖² and Σ_n w_n (y_n − y)² expanded into matrix products: no (B, r, N, D) difference
        # tensor, and one gather of the points per block rather than per point.
        cross = torch.bmm(y, pts.transpose(1, 2))  # (B, r, N)
        dist = (_gather(self._norm, group)[:, None, :] - 2 * cross + (y**2).sum(-1, keepdim=True)).clamp_min(0.0)
        w = torch.exp(-dist / (2 * _gather(self.gamma, group)[:, None, None] ** 2))  # (B, r, N)
        first = torch.bmm(w, pts)  # Σ w y_n
        second = torch.bmm(w, _gather(self._sq, group))  # Σ w y_n²
        return (second - 2 * y * first + y**2 * w.sum(-1, keepdim=True)).clamp_min(0.0)

    def __call__(self, y: Tensor, group: Tensor) -> Tensor:
        """The diagonal of G(y), shape (B, r, D)."""
        return (self.local_variance(y, group) + self.rho) ** -self.alpha


class RBFMetric:
    """G(y) = (h(y) + ρ)^-α · I, h an RBF network with k-means centres fitted to ≈ 1 on the group's points."""

    def __init__(self, centres: Tensor, precision: Tensor, weights: Tensor, *, rho: float, alpha: float = 1.0) -> None:
        self.centres, self.precision, self.weights = centres, precision, weights  # (G, C, D), (G, C), (G, C)
        self.rho, self.alpha = float(rho), float(alpha)
        self.fit_error: float | None = None

    @classmethod
    def fit(
        cls,
        points: Tensor,
        *,
        n_centers: int,
        kappa: float,
        rho: float,
        alpha: float = 1.0,
        steps: int = 300,
        lr: float = 1e-2,
        kmeans_iters: int = 25,
        gen: torch.Generator | None = None,
    ) -> RBFMetric:
        """k-means (Lloyd, from a random subset of each group's points), spreads, then the weights W ≥ 0
        by Adam on mean (1 − h(y_n))² over the points (a small non-negative least-squares problem)."""
        points = points.detach()
        g, n, d = points.shape
        c = max(1, min(int(n_centers), n))
        start = torch.rand(g, n, generator=gen).argsort(dim=1)[:, :c].to(points.device)
        centres = torch.gather(points, 1, start[:, :, None].expand(g, c, d)).clone()

        def assign(centres: Tensor) -> tuple[Tensor, Tensor]:
            label = torch.cdist(points, centres).argmin(-1)  # (G, N)
            counts = torch.zeros(g, c, device=points.device).scatter_add_(
                1, label, torch.ones_like(label, dtype=points.dtype)
            )
            return label, counts

        for _ in range(int(kmeans_iters)):
            label, counts = assign(centres)
            sums = torch.zeros_like(centres).scatter_add_(1, label[:, :, None].expand(g, n, d), points)
            centres = torch.where(counts[:, :, None] > 0, sums / counts.clamp_min(1)[:, :, None], centres)
        label, counts = assign(centres)
        sq = ((points - torch.gather(centres, 1, label[:, :, None].expand(g, n, d))) ** 2).mean(-1)  # (G, N)
        sigma = (torch.zeros(g, c, device=points.device).scatter_add_(1, label, sq) / counts.clamp_min(1)).sqrt()
        # A cluster with one point (or identical points) has no spread: give it its group's median spread.
        ok = (counts > 1) & (sigma > MIN_SCALE)
        fallback = torch.stack(
            [s[m].median() if bool(m.any()) else points.new_tensor(MIN_SCALE) for s, m in zip(sigma, ok)]
        )
        sigma = torch.where(ok, sigma, fallback[:, None]).clamp_min(MIN_SCALE)
        precision = 1.0 / (2 * (float(kappa) * sigma) ** 2)
        phi = torch.exp(-0.5 * precision[:, None, :] * torch.cdist(points, centres) ** 2)  # (G, N, C)
        weights = torch.full((g, c), 1.0 / c, device=points.device, requires_grad=True)
        opt = torch.optim.Adam([weights], lr=float(lr))
        for _ in range(int(steps)):
            loss = ((1 - torch.bmm(phi, weights[:, :, None]).squeeze(-1)) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                weights.clamp_(min=1e-4)
        out = cls(centres, precision, weights.detach(), rho=rho, alpha=alpha)
        with torch.no_grad():
            out.fit_error = float(((1 - torch.bmm(phi, out.weights[:, :, None]).squeeze(-1)) ** 2).mean())
        return out

    def height(self, y: Tensor, group: Tensor) -> Tensor:
        """h(y), shape (B, r, 1), for blocks of r points y (B, r, D), block b in group ``group[b]``."""
        centres = _gather(self.centres, group)  # (B, C, D)
        dist = (
            (centres**2).sum(-1)[:, None, :] - 2 * torch.bmm(y, centres.transpose(1, 2)) + (y**2).sum(-1, keepdim=True)
        ).clamp_min(0.0)  # (B, r, C)
        phi = torch.exp(-0.5 * _gather(self.precision, group)[:, None, :] * dist)
        return (phi * _gather(self.weights, group)[:, None, :]).sum(-1, keepdim=True)

    def __call__(self, y: Tensor, group: Tensor) -> Tensor:
        """The diagonal of G(y), shape (B, r, 1) (the same in every coordinate)."""
        return (self.height(y, group) + self.rho) ** -self.alpha


def kinetic_energy(metric: LANDMetric | RBFMetric, y: Tensor, velocity: Tensor, group: Tensor) -> Tensor:
    """‖ẏ‖²_G(y) = Σ_d G_d(y) ẏ_d² for blocks of points y and velocities (B, r, D); shape (B, r)."""
    return (metric(y, group) * velocity**2).sum(-1)
