"""A batched L-BFGS: many independent small minimisations at once.

``torch.optim.LBFGS`` on a summed objective would share one curvature memory and one line search
across all points (PAPER.md §3.8), coupling problems that are independent. Here every row of ``x``
keeps its own history, direction and step length; only the function evaluations are batched.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def _value_and_grad(f: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        val = f(x)
        (grad,) = torch.autograd.grad(val.sum(), x)
    return val.detach(), grad.detach()


def _groups_done(groups: Tensor, n: int, accepted: Tensor, active: Tensor, accept_fraction: float) -> Tensor:
    """Per group (ids 0 … n − 1), the ungrouped stopping rule: all rows accepted, or ``accept_fraction``
    of the active ones."""
    masks = torch.stack([~accepted, accepted & active, active], 1).to(torch.float64)
    waiting, found, searching = torch.zeros(n, 3, dtype=torch.float64, device=groups.device).index_add_(0, groups, masks).unbind(1)
    return (waiting == 0) | (found >= accept_fraction * searching)


def batched_lbfgs(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    max_iter: int = 10,
    history: int = 5,
    tol: float = 1e-5,
    max_linesearch: int = 12,
    shrink: float = 0.66,
    c1: float = 1e-4,
    max_step: float | None = None,
    project: Callable[[Tensor], Tensor] | None = None,
    accept_fraction: float = 1.0,
    groups: Tensor | None = None,
    f_rows: Callable[[Tensor, Tensor], Tensor] | None = None,
    rows_below: float = 0.5,
) -> Tensor:
    """Minimise ``f`` row by row: f maps x (B, D) to per-row values (B,), rows independent.

    Two-loop L-BFGS per row with a backtracking Armijo line search (decrease factor ``shrink``, as in
    the reference's jaxopt settings). ``project`` (e.g. clipping to a box) is applied after each step;
    ``max_step`` caps the length of a step. Rows whose gradient norm falls below ``tol`` stop moving.
    The batch's line search ends once ``accept_fraction`` of the active rows found a decrease; the
    others stay put for that iteration. Below 1 this saves most of the function evaluations: near
    their optimum a few rows never pass Armijo in float32 and would keep the whole batch searching.
    ``groups`` (B,) of ids 0 … G − 1 stacks G separate batches into one: the line search's stopping
    rule is applied per group (a group that has stopped keeps its rows where they are while the
    others search on), so every row moves exactly as in a separate call on its own group, while each
    function evaluation covers all groups at once.
    ``f_rows(z_rows, rows)``, if given, evaluates f on the rows ``rows`` (a sorted 1-D index) only,
    i.e. ``f(z)[rows]`` for ``z_rows = z[rows]``: once fewer than ``rows_below`` of the rows are still
    searching, the line search evaluates just those (the others' values could not change anything).
    Returns the minimisers, detached.
    """
    proj = project or (lambda z: z)
    n_groups = int(groups.max()) + 1 if groups is not None else 1
    x = proj(x0.detach().clone())
    val, grad = _value_and_grad(f, x)
    hist_s: list[Tensor] = []
    hist_y: list[Tensor] = []
    hist_rho: list[Tensor] = []
    for _ in range(max_iter):
        gnorm = grad.norm(dim=-1)
        active = gnorm > tol
        if not bool(active.any()):
            break
        q = grad.clone()
        alphas = []
        for s, y, rho in zip(reversed(hist_s), reversed(hist_y), reversed(hist_rho)):
            a = rho * (s * q).sum(-1)
            q = q - a[:, None] * y
            alphas.append(a)
        if hist_s:
            s, y = hist_s[-1], hist_y[-1]
            gamma = (s * y).sum(-1) / (y * y).sum(-1).clamp_min(1e-12)
            r = gamma.clamp_min(0)[:, None] * q
        else:
            r = q / gnorm.clamp_min(1e-12)[:, None]  # first step: unit length along −∇f
        for s, y, rho, a in zip(hist_s, hist_y, hist_rho, reversed(alphas)):
            b = rho * (y * r).sum(-1)
            r = r + (a - b)[:, None] * s
        d = -r
        slope = (d * grad).sum(-1)
        bad = ~(slope < 0) | ~torch.isfinite(slope)  # not a descent direction: fall back to −∇f
        d = torch.where(bad[:, None], -grad, d)
        slope = torch.where(bad, -(grad * grad).sum(-1), slope)
        if max_step is not None:
            scale = (max_step / d.norm(dim=-1).clamp_min(1e-12)).clamp(max=1.0)
            d, slope = d * scale[:, None], slope * scale
        d = d * active[:, None]

        t = torch.ones_like(val)
        accepted = ~active
        stopped = torch.zeros_like(active)  # rows of groups whose line search has ended
        for _ in range(max_linesearch):
            trial = proj(x + t[:, None] * d)
            searching = ~accepted & ~stopped
            with torch.no_grad():
                if f_rows is not None and float(searching.sum()) < rows_below * len(searching):
                    rows = torch.nonzero(searching).squeeze(1)
                    v = torch.full_like(val, math.inf)
                    if len(rows):
                        v[rows] = f_rows(trial.index_select(0, rows), rows)
                else:
                    v = f(trial)
            ok = (v <= val + c1 * t * slope) & torch.isfinite(v) & ~accepted & ~stopped
            accepted = accepted | ok
            if groups is None:
                if bool(accepted.all()) or float((accepted & active).sum()) >= accept_fraction * float(active.sum()):
                    break
            else:
                stopped = stopped | _groups_done(groups, n_groups, accepted, active, accept_fraction)[groups]
                if bool(stopped.all()):
                    break
            t = torch.where(accepted, t, t * shrink)
        t = torch.where(accepted & active, t, torch.zeros_like(t))
        x_new = proj(x + t[:, None] * d)
        val_new, grad_new = _value_and_grad(f, x_new)
        s, y = x_new - x, grad_new - grad
        sy = (s * y).sum(-1)
        rho = torch.where(sy > 1e-10, 1.0 / sy.clamp_min(1e-10), torch.zeros_like(sy))  # skip bad curvature pairs
        hist_s.append(s)
        hist_y.append(y)
        hist_rho.append(rho)
        if len(hist_s) > history:
            hist_s.pop(0), hist_y.pop(0), hist_rho.pop(0)
        x, val, grad = x_new, val_new, grad_new
    return x.detach()
