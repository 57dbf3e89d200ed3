"""The reference's c-transform solver, re-implemented in PyTorch as a measuring device (not used by CLOT).

The reference solves each point's c-transform with jaxopt's L-BFGS (``jaxopt.LBFGS`` as its
``CTransformLBFGS`` configures it): memory 10 with the γ-scaled initial inverse Hessian, a backtracking
line search that needs the strong Wolfe conditions (c1 = 1e-4, c2 = 0.9), shrinks the step by 0.66 up
to 30 times, starts from 1 and then from 1.5× the last step (restarting at 1 below 1e-6), and, when the
search fails, keeps its last, tiny trial step and carries on; a point stops when its gradient norm is
≤ ``tol`` (or not finite). The objective clips its argument to the box, and the spline amortiser is
re-run at every trial point (its output held constant for the gradient). The algorithm is the one
jaxopt documents (Nocedal & Wright, Numerical Optimization, Algorithms 7.4 and 3.1); written from that,
not from jaxopt's code.

``scripts/parity/clot_parity_e2e.py --port-ctransform jaxopt`` swaps it into CLOT, so the port can be run with
the reference's solver and the effect of the solver on W₂² measured apart from everything else;
``scripts/parity/clot_parity.py`` checks it against the reference's own c-transform solutions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def lbfgs(
    objective: Callable[[Tensor], Tensor],
    z0: Tensor,
    *,
    max_iter: int,
    tol: float = 1e-5,
    history: int = 10,
    maxls: int = 30,
    decrease: float = 0.66,
    increase: float = 1.5,
    max_step: float = 1.0,
    min_step: float = 1e-6,
    c1: float = 1e-4,
    c2: float = 0.9,
) -> tuple[Tensor, Tensor]:
    """Minimise the rows of ``objective`` (z (B, D) → (B,), rows independent) from ``z0``, each row on its
    own as above. Returns (solutions (B, D), iterations per row (B,))."""

    def value_grad(z: Tensor) -> tuple[Tensor, Tensor]:
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            v = objective(z)
            (g,) = torch.autograd.grad(v.sum(), z)
        return v.detach(), g.detach()

    z = z0.detach().clone()
    b, d = z.shape
    v, g = value_grad(z)
    s_hist, y_hist = z.new_zeros(b, history, d), z.new_zeros(b, history, d)
    rho = z.new_zeros(b, history)
    gamma, step = z.new_ones(b), z.new_full((b,), max_step)
    iters = torch.zeros(b, dtype=torch.long)
    active = torch.isfinite(g).all(-1) & (g.norm(dim=-1) > tol)
    for k in range(int(max_iter)):
        if not bool(active.any()):
            break
        start = k % history
        order = [(start + i) % history for i in range(history)]
        r, alphas = -g, {}
        for i in reversed(order):  # two-loop recursion: newest pair first
            alphas[i] = rho[:, i] * (s_hist[:, i] * r).sum(-1)
            r = r - alphas[i][:, None] * y_hist[:, i]
        r = gamma[:, None] * r
        for i in order:
            beta = rho[:, i] * (y_hist[:, i] * r).sum(-1)
            r = r + (alphas[i] - beta)[:, None] * s_hist[:, i]
        p = r
        slope = (g * p).sum(-1)
        t = torch.where(step <= min_step, torch.full_like(step, max_step), step * increase).clamp(max=max_step)
        done = torch.zeros(b, dtype=torch.bool)
        failed = torch.zeros(b, dtype=torch.bool)
        z_new, v_new, g_new = z.clone(), v.clone(), g.clone()
        for ls in range(int(maxls)):
            cand = z + t[:, None] * p
            vc, gc = value_grad(cand)
            e1 = (vc - (v + c1 * t * slope)).clamp(min=0).nan_to_num(nan=float("inf"))
            e2 = ((gc * p).sum(-1).abs() - c2 * slope.abs()).clamp(min=0).nan_to_num(nan=float("inf"))
            searching = ~(done | failed)
            z_new = torch.where(searching[:, None], cand, z_new)
            v_new = torch.where(searching, vc, v_new)
            g_new = torch.where(searching[:, None], gc, g_new)
            done = done | (searching & (torch.maximum(e1, e2) <= 0))
            failed = failed | (searching & ~done & (ls + 1 == maxls))
            t = torch.where(done | failed, t, t * decrease)
            if bool((done | failed | ~active).all()):
                break
        s, y = z_new - z, g_new - g
        sy = (s * y).sum(-1)
        upd = active[:, None]
        s_hist[:, start] = torch.where(upd, s, s_hist[:, start])
        y_hist[:, start] = torch.where(upd, y, y_hist[:, start])
        rho[:, start] = torch.where(active, torch.where(sy == 0, torch.zeros_like(sy), 1.0 / sy), rho[:, start])
        yy = (y * y).sum(-1)
        gamma = torch.where(active, torch.where(yy > 0, sy / yy, torch.ones_like(yy)), gamma)
        z = torch.where(upd, z_new, z)
        v = torch.where(active, v_new, v)
        g = torch.where(upd, g_new, g)
        step = torch.where(active, t, step)
        iters = iters + active.long()
        active = active & torch.isfinite(g).all(-1) & (g.norm(dim=-1) > tol)
    return z, iters


def clot_ctransform(clot, y: Tensor, x: Tensor, groups: Tensor) -> Tensor:
    """A drop-in for ``CLOT._ctransform_all`` with the reference's solver: per interval, from T_k(y),
    the objective z ↦ c(y, clip(z)) − g_k(clip(z)), the path re-predicted at every z."""
    from hti_bench.toolkit.lagrangian import path_cost

    lo, hi = clot.lo_, clot.hi_

    def clip(z: Tensor) -> Tensor:
        return torch.maximum(torch.minimum(z, hi), lo)

    out = []
    ks = torch.unique_consecutive(groups).tolist()
    sizes = torch.unique_consecutive(groups, return_counts=True)[1].tolist()
    for k, yk, xk in zip(ks, y.split(sizes), x.split(sizes)):
        with torch.no_grad():
            init = clot.T_[k](yk, xk)

        def objective(z: Tensor, k: int = k, yk: Tensor = yk, xk: Tensor = xk) -> Tensor:
            zc = clip(z)
            if clot.curved_:
                with torch.no_grad():
                    phi = clot._phi(yk, zc, xk)
            else:
                phi = zc.new_zeros(zc.shape[0], clot.spline_nodes, zc.shape[1])
            return (
                path_cost(clot.path_, clot.geometry_, clot.potential_, yk, zc, phi, xk, clot.cost)
                - clot.g_[k](zc, xk)[:, 0]
            )

        solution, _ = lbfgs(objective, init, max_iter=int(clot.ctransform_iters))
        out.append(clip(solution))
    return torch.cat(out)
