"""The density potential Û(q | x) of the Lagrangian: a conditional KDE of the anchor outputs, exact or
tabulated on a grid.

Shapes: B paths, P points along each path, D output dimensions, C condition columns. Conditions are
the *source's* x throughout (a map carries x through unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from hti_bench.toolkit.lagrangian.grid import _GridBox, cell_coefficients


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
    subnormal numbers makes ``exp`` several times slower on CPU (narrow bandwidths put most of the
    support there).
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

    def __init__(
        self,
        support_y: Tensor,
        support_x: Tensor,
        categorical: bool,
        bandwidth: float,
        cond_bandwidth: float,
        alpha: float,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if not bandwidth > 0 or not cond_bandwidth > 0:
            raise ValueError(f"bandwidths must be > 0, got bandwidth={bandwidth}, cond_bandwidth={cond_bandwidth}")
        support_y, support_x = support_y.float(), support_x.float()
        self.categorical, self.h, self.hx, self.alpha = (
            categorical,
            float(bandwidth),
            float(cond_bandwidth),
            float(alpha),
        )
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
    cost of CLOT on CPU: source points × path points × support points kernel terms per evaluation). Outside the box the border value is used. The interpolation
    error is O(cell²) and a test bounds it against the exact KDE.

    With continuous conditions Û also depends on x, but a task queries a fixed, often small, set of
    condition rows (the anchors were run on them; CLOT's c-transform never moves x). Given those rows
    as ``conditions`` (M, C), one table is made per row and each x reads the table of the row it
    equals; an x that equals none of them (a query at new conditions) is answered by the exact KDE.
    """

    def __init__(
        self, kde: KDEPotential, lo: Tensor, hi: Tensor, resolution: int = 192, conditions: Tensor | None = None
    ) -> None:
        super().__init__()
        if kde.ys.shape[-1] != 2:
            raise ValueError("GridPotential tabulates two-dimensional outputs only")
        if conditions is not None and kde.categorical:
            raise ValueError("conditions are for continuous x; categorical x is tabulated per class")
        self.alpha = kde.alpha
        g0 = torch.linspace(float(lo[0]), float(hi[0]), resolution)
        g1 = torch.linspace(float(lo[1]), float(hi[1]), resolution)
        mesh = torch.stack(torch.meshgrid(g0, g1, indexing="xy"), -1).reshape(1, -1, 2)  # row = q1, column = q0
        if conditions is not None:
            rows = conditions.to(kde.ys.device, torch.float32)
        elif kde.categorical:
            rows = torch.arange(kde.ys.shape[0], dtype=torch.float32, device=kde.ys.device)[:, None]
        else:
            rows = torch.zeros(1, 0, device=kde.ys.device)
        with torch.no_grad():
            tables = [
                kde(mesh.to(kde.ys.device), rows[c : c + 1]).reshape(resolution, resolution).cpu()
                for c in range(rows.shape[0])
            ]
        self.register_buffer("table", torch.stack(tables)[None])  # (1, tables, H, W)
        self.register_buffer("cells", cell_coefficients(self.table[0, :, :, :, None]))  # what the lookups read
        self.resolution = int(resolution)
        self._set_box(lo, hi)
        self.categorical = kde.categorical
        self.by_row = conditions is not None
        if self.by_row:
            self.register_buffer("conditions", rows.cpu())
            self.kde = kde  # for conditions outside the table

    def _rows(self, x: Tensor) -> Tensor | None:
        """With ``conditions``: the table each row of x reads, or None when some x is not tabulated."""
        table = self.conditions.to(x.device)
        dist, idx = torch.cdist(x.to(table.dtype), table, compute_mode="donot_use_mm_for_euclid_dist").min(-1)
        return idx if bool((dist <= 1e-5 * (1 + table.abs().max())).all()) else None

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        """Û: (B, P, D), (B, C) → (B, P)."""
        return self.apply_state(q, self.state(x))

    def state(self, x: Tensor) -> dict[str, Tensor]:
        if not self.by_row:
            return {"classes": x[:, 0].long()} if self.categorical else {}
        rows = self._rows(x)
        if rows is not None:
            return {"classes": rows}
        # Flat keys, one row per row of x, like every state (callers slice them by row).
        return {f"exact.{k}": t for k, t in self.kde.state(x).items()}

    def apply_state(self, q: Tensor, state: dict[str, Tensor]) -> Tensor:
        if "classes" not in state and any(k.startswith("exact.") for k in state):
            return self.kde.apply_state(q, {k[6:]: t for k, t in state.items()})
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
