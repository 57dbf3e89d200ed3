"""A batched L-BFGS: many independent small minimisations at once.

``torch.optim.LBFGS`` on a summed objective would share one curvature memory and one line search
across all points, coupling problems that are independent (the HTI reference code solves each
point's c-transform on its own, with jaxopt's L-BFGS). Here every row of ``x`` keeps its own history,
direction and step length; only the function evaluations are batched.
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


class _GroupRule:
    """Per group (ids 0 … n − 1), the ungrouped stopping rule of one line search: all rows accepted,
    or ``accept_fraction`` of the active ones. Inactive rows count as accepted from the start, so
    one count of accepted rows per group per trial decides it."""

    def __init__(self, groups: Tensor, n: int, active: Tensor, accept_fraction: float) -> None:
        self.groups, self.n = groups, n
        size = self._count(torch.ones_like(active))
        inactive = self._count(~active)
        self.size, self.inactive = size, inactive
        self.needed = accept_fraction * (size - inactive)

    def _count(self, mask: Tensor) -> Tensor:
        return torch.zeros(self.n, dtype=torch.float64, device=mask.device).index_add_(
            0, self.groups, mask.to(torch.float64)
        )

    def done(self, accepted: Tensor) -> Tensor:
        """(B,): whether the row's group has stopped searching."""
        count = self._count(accepted)
        return ((count == self.size) | (count - self.inactive >= self.needed))[self.groups]


def _tail_values(
    f_rows: Callable[[Tensor, Tensor], Tensor],
    proj: Callable[[Tensor], Tensor],
    x: Tensor,
    d: Tensor,
    t: Tensor,
    val: Tensor,
    searching: Tensor,
    shrink: float,
    n_steps: int,
) -> list[Tensor]:
    """f at the next ``n_steps`` backtracking steps t, t·shrink, … of the rows still searching, in one
    evaluation of f on those rows only: one (B,) tensor per step (inf for the other rows). The steps
    are formed by the same float operations as one trial at a time, so the points are the same."""
    rows = torch.nonzero(searching).squeeze(1)
    steps = [t.index_select(0, rows)]
    for _ in range(n_steps - 1):
        steps.append(steps[-1] * shrink)
    xs, ds = x.index_select(0, rows)[:, None], d.index_select(0, rows)[:, None]
    points = proj((xs + torch.stack(steps, 1)[..., None] * ds).reshape(len(rows) * n_steps, -1))
    values = f_rows(points, rows.repeat_interleave(n_steps)).reshape(len(rows), n_steps)
    out = []
    for k in range(n_steps):
        v = torch.full_like(val, math.inf)
        out.append(v.index_copy_(0, rows, values[:, k]))
    return out


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
    ``f_rows(z_rows, rows)``, if given, evaluates f on the rows ``rows`` (a sorted 1-D index, rows may
    repeat) only, i.e. ``f(z)[rows]`` for ``z_rows = z[rows]``: once fewer than ``rows_below`` of the
    rows are still searching, the line search evaluates just those (the others' values could not
    change anything), and several of their next backtracking steps in one evaluation (up to
    ``rows_below`` of a full batch), then applies them one by one with the usual rule: the same
    steps are accepted as one trial per evaluation, in fewer, larger evaluations.
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
        rule = _GroupRule(groups, n_groups, active, accept_fraction) if groups is not None else None
        trials, done = 0, False
        while trials < max_linesearch and not done:
            searching = ~accepted & ~stopped
            n_searching = int(searching.sum())
            with torch.no_grad():
                if f_rows is not None and 0 < n_searching < rows_below * len(searching):
                    values = _tail_values(
                        f_rows,
                        proj,
                        x,
                        d,
                        t,
                        val,
                        searching,
                        shrink,
                        min(max_linesearch - trials, max(1, int(rows_below * len(searching)) // n_searching)),
                    )
                else:
                    values = [f(proj(x + t[:, None] * d))]
            for v in values:  # the trials in backtracking order, each with the rule as if evaluated alone
                ok = (v <= val + c1 * t * slope) & torch.isfinite(v) & ~(accepted | stopped)
                accepted = accepted | ok
                trials += 1
                if rule is None:
                    done = bool(accepted.all()) or float((accepted & active).sum()) >= accept_fraction * float(
                        active.sum()
                    )
                else:
                    stopped = stopped | rule.done(accepted)
                    done = bool(stopped.all())
                if done:
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
