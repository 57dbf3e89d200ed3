"""Tables on a grid over a box, read by bilinear interpolation: what makes the metric and the
potential cheap to evaluate at every path point when they depend on q alone (D = 2, categorical x)."""

from __future__ import annotations

import torch
from torch import Tensor


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
        return self.resolution == other.resolution and torch.equal(self.lo, other.lo) and torch.equal(self.hi, other.hi)

    def _offsets(self, classes: Tensor | None) -> Tensor | None:
        return None if classes is None else classes * (self.resolution * self.resolution)

    def _read(self, table: Tensor, q: Tensor, offsets: Tensor | None) -> Tensor:
        """(N, C) values at points q (N, 2) from a table of cell coefficients (:func:`cell_coefficients`)."""
        return _Bilinear.apply(self._pixels(q), table, offsets, self.resolution)
