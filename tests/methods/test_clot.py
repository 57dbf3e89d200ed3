"""CLOT's pieces (hti_bench.toolkit.lagrangian) and the CLOT surrogate (methods/clot.py)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from hti_bench.anchors import AnchorSet
from hti_bench.clock import Hyperparameter
from hti_bench.harness.registry import make_surrogate
from hti_bench.toolkit.lagrangian import (
    EigenBudgetMetric,
    EuclideanMetric,
    GridMetric,
    GridPotential,
    KDEPotential,
    NLOTMetric,
    SplinePath,
    givens_apply,
    givens_rotation,
    path_cost,
    path_energy,
    prepare_cost,
    spline_matrices,
    unit_angle,
)
from hti_bench.toolkit.lagrangian.lbfgs import batched_lbfgs
from hti_bench.toolkit.nets import FiLMMLP


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_eigen_budget_metric_is_spd_with_fixed_trace(dim):
    torch.manual_seed(0)
    metric = EigenBudgetMetric(dim, cond_dim=1, n_classes=3)
    for p in metric.parameters():  # move away from the identity-like initialisation
        torch.nn.init.normal_(p, std=0.5)
    q, x = torch.randn(64, dim), torch.randint(0, 3, (64, 1)).float()
    g = metric.matrix(q, x)
    assert torch.allclose(g, g.transpose(1, 2), atol=1e-5)
    eig = torch.linalg.eigvalsh(g)
    assert (eig >= 0.1 - 1e-4).all() and (eig <= 1.0 + 1e-4).all()
    trace = torch.diagonal(g, dim1=1, dim2=2).sum(-1)
    assert torch.allclose(trace, torch.full_like(trace, 0.1 * dim + 0.9), atol=1e-4)
    v = torch.randn(64, dim)
    assert torch.allclose(metric.quad(q, v, x), torch.einsum("bi,bij,bj->b", v, g, v), atol=1e-4)


@pytest.mark.parametrize("dim", [2, 4, 7])
def test_givens_rotation_is_orthogonal(dim):
    angles = torch.randn(10, dim * (dim - 1) // 2) * 3
    r = givens_rotation(angles, dim)
    eye = torch.eye(dim).expand(10, dim, dim)
    assert torch.allclose(r @ r.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(10), atol=1e-5)
    c, s = math.cos(0.3), math.sin(0.3)  # D = 2: the textbook rotation
    assert torch.allclose(givens_rotation(torch.tensor([[0.3]]), 2)[0], torch.tensor([[c, -s], [s, c]]), atol=1e-6)


def test_nlot_metric_has_fixed_eigenvalues_and_needs_two_dimensions():
    m = NLOTMetric(2, 1, 2)
    g = m.matrix(torch.randn(5, 2), torch.zeros(5, 1))
    assert torch.allclose(torch.linalg.eigvalsh(g), torch.tensor([0.1, 1.0]).expand(5, 2), atol=1e-5)
    with pytest.raises(ValueError, match="D = 2 outputs only"):
        NLOTMetric(3, 1, 2)


def test_spline_offset_vanishes_at_the_ends_and_is_c2():
    s = torch.tensor([0.0, 1.0])
    val, _ = spline_matrices(15, s)
    assert val.abs().max() < 1e-6
    phi = torch.randn(15)
    eps = 1e-4
    for knot in [k / 14 for k in range(1, 14)]:
        left, dl = spline_matrices(15, torch.tensor([knot - eps]))
        right, dr = spline_matrices(15, torch.tensor([knot + eps]))
        assert float((left - right)[0] @ phi) == pytest.approx(0.0, abs=1e-2)
        assert float((dl - dr)[0] @ phi) == pytest.approx(0.0, abs=5e-2)


def test_straight_euclidean_cost_is_half_squared_distance():
    path = SplinePath(15, 10)
    y0, y1 = torch.randn(20, 3), torch.randn(20, 3)
    phi = torch.zeros(20, 15, 3)
    cost = path_cost(path, EuclideanMetric(3), None, y0, y1, phi, torch.zeros(20, 0))
    assert torch.allclose(cost, 0.5 * ((y1 - y0) ** 2).sum(-1), atol=1e-5)
    ref = path_cost(path, EuclideanMetric(3), None, y0, y1, phi, torch.zeros(20, 0), form="reference")
    assert torch.allclose(ref, 0.5 * ((y1 - y0) ** 2).sum(-1), rtol=1e-3)
    bent = path_cost(path, EuclideanMetric(3), None, y0, y1, torch.randn(20, 15, 3), torch.zeros(20, 0))
    assert (bent > cost).all()  # any detour costs more


def test_kde_potential_matches_direct_computation():
    torch.manual_seed(1)
    ys, xs = torch.randn(300, 2), torch.randint(0, 3, (300, 1)).float()
    h, alpha = 0.3, 0.7
    kde = KDEPotential(ys, xs, categorical=True, bandwidth=h, cond_bandwidth=1.0, alpha=alpha)
    q, x = torch.randn(4, 5, 2), torch.tensor([[0.0], [1.0], [2.0], [1.0]])
    for b in range(4):
        sup = ys[xs[:, 0] == x[b, 0]]
        d2 = ((q[b][:, None, :] - sup[None]) ** 2).sum(-1)
        dens = torch.exp(-0.5 * d2 / h**2).mean(-1) / (2 * math.pi * h**2)
        assert torch.allclose(kde(q[b : b + 1], x[b : b + 1])[0], alpha * torch.log(dens + 1e-8), atol=1e-4)
    # continuous x: Nadaraya–Watson
    xc = torch.randn(300, 2)
    nw = KDEPotential(ys, xc, categorical=False, bandwidth=h, cond_bandwidth=0.5, alpha=1.0)
    xq = torch.randn(1, 2)
    wx = torch.exp(-0.5 * ((xq - xc) ** 2).sum(-1) / 0.25) / (2 * math.pi * 0.25)
    ky = torch.exp(-0.5 * ((q[0][:, None] - ys[None]) ** 2).sum(-1) / h**2) / (2 * math.pi * h**2)
    direct = torch.log((ky * wx).sum(-1) / wx.sum() + 1e-8)
    assert torch.allclose(nw(q[:1], xq)[0], direct, atol=1e-4)


def test_grid_potential_approximates_the_kde():
    torch.manual_seed(2)
    ys, xs = torch.randn(400, 2), torch.randint(0, 2, (400, 1)).float()
    kde = KDEPotential(ys, xs, True, 0.3, 1.0, 1.0)
    grid = GridPotential(kde, torch.tensor([-3.0, -3.0]), torch.tensor([3.0, 3.0]), 192)
    q, x = torch.rand(50, 6, 2) * 5 - 2.5, torch.randint(0, 2, (50, 1)).float()
    exact, approx = kde(q, x), grid(q, x)
    on_manifold = exact > -5
    assert (approx - exact)[on_manifold].abs().max() < 0.02
    assert (approx - exact).abs().mean() < 0.01


def test_grid_potential_per_condition_row_approximates_the_kde_and_falls_back_off_the_table():
    # Continuous x: one table per tabulated condition row; any other x gets the exact KDE.
    torch.manual_seed(3)
    rows = torch.randn(5, 3)
    xs = rows.repeat_interleave(80, 0)
    ys = torch.randn(400, 2) + xs[:, :2]
    kde = KDEPotential(ys, xs, False, 0.3, 1.0, 1.0)
    grid = GridPotential(kde, torch.tensor([-4.0, -4.0]), torch.tensor([4.0, 4.0]), 192, conditions=rows)
    q = torch.rand(50, 6, 2) * 6 - 3
    x = rows[torch.randint(0, 5, (50,))]
    exact, approx = kde(q, x), grid(q, x)
    assert not torch.equal(exact, approx)  # read from the tables
    on_manifold = exact > -5
    assert (approx - exact)[on_manifold].abs().max() < 0.02
    assert (approx - exact).abs().mean() < 0.01
    elsewhere = x + 0.1
    assert torch.equal(grid(q, elsewhere), kde(q, elsewhere))
    state = grid.state(x)  # the row-sliceable state the path cost uses
    assert torch.equal(grid.apply_state(q[:7], {k: t[:7] for k, t in state.items()}), approx[:7])


def test_clot_tabulates_the_potential_for_few_continuous_conditions():
    from methods.clot import GRID_MAX_CONDITIONS

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=g)
    y = torch.randn(2, 3, 30, 2, generator=g) + torch.tensor([0.0, 1.0])[:, None, None, None]
    anchors = AnchorSet(Hyperparameter("lam", 0.0, 1.0), (0.0, 1.0), x, y, torch.ones(3, dtype=torch.bool))
    quick = "steps=2,spline_pretrain=2,spline_iters=2,hidden=(16, 16),spline_hidden=32,kde_support=64"
    tabulated = make_surrogate(f"clot[{quick},potential_grid=32]").fit(anchors, seed=0)
    assert isinstance(tabulated.potential_, GridPotential) and tabulated.potential_.by_row
    assert tabulated.sample(0.5, x, 5, seed=0).shape == (3, 5, 2)
    assert isinstance(make_surrogate(f"clot[{quick},potential_grid=0]").fit(anchors, seed=0).potential_, KDEPotential)
    assert GRID_MAX_CONDITIONS >= 24  # reward-weighting's 24 states


def random_metric(seed, n_classes):
    """A learned metric on 2-D outputs of ``n_classes`` classes, its weights drawn after ``torch.manual_seed(seed)``
    (the global generator goes on from there)."""
    torch.manual_seed(seed)
    metric = EigenBudgetMetric(2, cond_dim=1, n_classes=n_classes)
    for p in metric.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return metric


def test_grid_metric_matches_the_network_and_follows_its_updates():
    metric = random_metric(seed=4, n_classes=2)
    lo, hi = torch.tensor([-3.0, -3.0]), torch.tensor([3.0, 3.0])
    grid = GridMetric(metric, lo, hi, n_classes=2, resolution=192)
    q, x = torch.rand(300, 2) * 5 - 2.5, torch.randint(0, 2, (300, 1)).float()
    exact, approx = metric.matrix(q, x), grid.matrix(q, x)
    assert (approx - exact).abs().max() < 0.02
    eig = torch.linalg.eigvalsh(approx)  # a convex combination of SPD matrices with one trace
    assert (eig > 0.1 - 1e-4).all()
    assert torch.allclose(torch.diagonal(approx, dim1=1, dim2=2).sum(-1), torch.full((300,), 1.1), atol=1e-4)
    v = torch.randn(300, 2)
    assert torch.allclose(grid.quad(q, v, x), torch.einsum("bi,bij,bj->b", v, approx, v), atol=1e-5)
    q.requires_grad_(True)  # the c-transform differentiates costs with respect to positions
    (g,) = torch.autograd.grad(grid.quad(q, v, x).sum(), q)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with torch.no_grad():
        for p in metric.parameters():
            p.add_(0.2)
    stale = grid.matrix(q.detach(), x)
    grid.refresh()
    assert (grid.matrix(q.detach(), x) - metric.matrix(q.detach(), x)).abs().max() < 0.02
    assert (stale - metric.matrix(q.detach(), x)).abs().max() > 0.02


def test_batched_lbfgs_solves_independent_quadratics():
    torch.manual_seed(3)
    a = torch.randn(40, 3, 3)
    a = a @ a.transpose(1, 2) + 0.5 * torch.eye(3)
    b = torch.randn(40, 3)
    x = batched_lbfgs(
        lambda z: 0.5 * torch.einsum("bi,bij,bj->b", z, a, z) - (b * z).sum(-1), torch.zeros(40, 3), max_iter=30
    )
    assert torch.allclose(x, torch.linalg.solve(a, b), atol=1e-3)


def gaussian_shift_anchors(n=300, shift=(1.5, -1.0)):
    g = torch.Generator().manual_seed(0)
    y0 = torch.randn(1, n, 2, generator=g)
    y1 = torch.randn(1, n, 2, generator=g) + torch.tensor(shift)
    return AnchorSet(
        Hyperparameter("lam", 0.0, 1.0),
        (0.0, 1.0),
        torch.zeros(1, 1),
        torch.stack([y0, y1]),
        torch.ones(1, dtype=torch.bool),
        categorical=True,
    )


def three_anchors_two_classes(n, g):
    """Anchors at λ = 0, 0.5, 1 of two classes, n 2-D Gaussian samples each (drawn from ``g``), centred
    at the anchor's index."""
    y = torch.randn(3, 2, n, 2, generator=g) + torch.arange(3.0)[:, None, None, None]
    return AnchorSet(
        Hyperparameter("lam", 0.0, 1.0),
        (0.0, 0.5, 1.0),
        torch.tensor([[0.0], [1.0]]),
        y,
        torch.ones(2, dtype=torch.bool),
        categorical=True,
    )


def test_euclidean_clot_learns_the_exact_ot_map_between_shifted_gaussians():
    # W2-optimal map from N(0, I) to N(m, I) is y ↦ y + m; CLOT with K_I and no potential must find it.
    anchors = gaussian_shift_anchors()
    clot = make_surrogate(
        "clot[metric=euclidean,potential=False,steps=400,batch_size=128,ctransform_iters=3,hidden=(32, 32)]"
    ).fit(anchors, seed=0)
    y = torch.randn(200, 2)
    mapped = clot.T_[0]((y - clot.y_mean_) / clot.y_scale_, torch.zeros(200, 1)) * clot.y_scale_ + clot.y_mean_
    err = (mapped - (y + torch.tensor([1.5, -1.0]))).norm(dim=-1)
    assert err.median() < 0.25, f"median map error {err.median():.3f}"
    mid = clot.sample(0.5, torch.zeros(1, 1), 300, seed=0)[0]
    assert torch.allclose(mid.mean(0), torch.tensor([0.75, -0.5]), atol=0.2)


def test_inference_at_an_anchor_returns_that_anchors_samples():
    anchors = gaussian_shift_anchors(n=100)
    clot = make_surrogate("clot[metric=euclidean,potential=False,steps=5,hidden=(8, 8)]").fit(anchors)
    for k, lam in enumerate(anchors.lambdas):
        out = clot.sample(lam, torch.zeros(1, 1), 100, seed=0)[0]
        assert torch.equal(torch.sort(out[:, 0]).values, torch.sort(anchors.samples[k, 0, :, 0]).values)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("clot[metric=riemann]", "Unknown value for metric 'riemann'. Available: euclidean, learned, nlot"),
        ("clot[metric=learnd]", "Did you mean 'learned'?"),
        ("clot[bandwidth=-0.1]", "bandwidth must be > 0"),
        ("clot[cost=lagrange]", "Unknown value for cost 'lagrange'"),
        ("clot[start=middle]", "Unknown value for start 'middle'"),
        ("clot[steps=0]", "steps must be ≥ 1"),
        ("clot[schedule=linear]", "Unknown value for schedule 'linear'"),
    ],
)
def test_bad_parameters_give_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_surrogate(spec).fit(gaussian_shift_anchors(n=20))


def test_nlot_metric_refuses_other_output_dimensions():
    y = torch.randn(2, 1, 10, 3)
    anchors = AnchorSet(
        Hyperparameter("lam", 0.0, 1.0), (0.0, 1.0), torch.zeros(1, 1), y, torch.ones(1, dtype=torch.bool), True
    )
    with pytest.raises(ValueError, match="metric='nlot' is defined for D = 2 outputs only; this task has D = 3"):
        make_surrogate("clot[metric=nlot]").fit(anchors)


# ---------------------------------------------------------------- fast paths against plain references


@pytest.mark.parametrize("dim", [2, 3, 5, 8])
def test_staged_givens_apply_equals_the_rotation_matrix(dim):
    torch.manual_seed(dim)
    angles, v = torch.randn(30, dim * (dim - 1) // 2) * 3, torch.randn(30, dim)
    expected = torch.einsum("bij,bj->bi", givens_rotation(angles, dim), v)
    assert torch.allclose(givens_apply(angles.cos(), angles.sin(), v), expected, atol=1e-5)


def test_unit_angle_is_cos_and_sin_of_atan2():
    y, x = torch.randn(200) * 3, torch.randn(200) * 3
    y[:3], x[:3] = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, -2.0, 0.0])  # origin, π, π/2
    c, s = unit_angle(y, x)
    theta = torch.atan2(y, x)
    assert torch.allclose(c, theta.cos(), atol=1e-6) and torch.allclose(s, theta.sin(), atol=1e-6)


def test_categorical_film_table_equals_the_per_row_network():
    torch.manual_seed(0)
    net = FiLMMLP(2, 3, [16, 16], 1, 4)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    y, x = torch.randn(50, 2), torch.randint(0, 4, (50, 1)).float()
    rows = net.film.net(x.reshape(-1).long())  # the conditioner run on every row, as before the table
    gamma, beta = rows.chunk(2, -1)
    direct = net.out(net.body(net.act(gamma * net.first(y) + beta)))
    assert torch.allclose(net(y, x), direct, atol=1e-6)
    assert torch.allclose(net(y, x, net.film(x)), direct, atol=1e-6)


def _plain_log_density(kde, q, x):
    """The KDE by its definition: log-kernels from distances, then logsumexp (autograd throughout)."""
    d, h = q.shape[-1], kde.h
    if kde.categorical:
        c = x[:, 0].long()
        u2 = ((q[:, :, None, :] - kde.ys[c][:, None]) ** 2).sum(-1)
        logk = -0.5 * u2 / h**2 - 0.5 * d * math.log(2 * math.pi * h**2) + kde.log_valid[c][:, None, :]
        return torch.logsumexp(logk, -1) - kde.log_count[c][:, None]
    u2 = ((q[:, :, None, :] - kde.ys[None, None]) ** 2).sum(-1)
    logk = -0.5 * u2 / h**2 - 0.5 * d * math.log(2 * math.pi * h**2)
    x2 = ((x[:, None, :] - kde.xs[None]) ** 2).sum(-1)
    log_w = -0.5 * x2 / kde.hx**2 - 0.5 * x.shape[1] * math.log(2 * math.pi * kde.hx**2)
    return torch.logsumexp(logk + log_w[:, None], -1) - torch.logsumexp(log_w, -1)[:, None]


@pytest.mark.parametrize("categorical, h", [(True, 0.3), (True, 0.05), (False, 0.4), (False, 0.1)])
def test_kde_value_and_gradient_match_the_plain_formula(categorical, h):
    torch.manual_seed(5)
    ys = torch.randn(300, 2)
    xs = torch.randint(0, 3, (300, 1)).float() if categorical else torch.randn(300, 3)
    kde = KDEPotential(ys, xs, categorical, h, 0.7, 1.0)
    q = (torch.randn(20, 6, 2) * 1.5).requires_grad_(True)
    x = torch.randint(0, 3, (20, 1)).float() if categorical else torch.randn(20, 3)
    w = torch.randn(20, 6)
    fast, plain = kde.log_density(q, x), _plain_log_density(kde, q, x)
    (g_fast,), (g_plain,) = torch.autograd.grad((fast * w).sum(), q), torch.autograd.grad((plain * w).sum(), q)
    tol = 1e-4 / h**2  # float32 rounding of exponents of size ‖q‖‖y‖/h²
    assert (fast - plain).abs().max() < tol
    assert (g_fast - g_plain).abs().max() < 10 * tol
    assert torch.equal(kde.prepare(x)(q.detach()), kde(q.detach(), x))


def test_grid_lookup_matches_grid_sample_with_its_gradient():
    metric = random_metric(seed=6, n_classes=3)
    lo, hi = torch.tensor([-3.0, -2.0]), torch.tensor([3.0, 2.5])
    grid = GridMetric(metric, lo, hi, n_classes=3, resolution=40)
    q = (torch.rand(300, 2) * 8 - 4).requires_grad_(True)  # partly outside the box: border values, zero slope
    x = torch.randint(0, 3, (300, 1)).float()
    u = 2 * (q - lo) / (hi - lo) - 1
    sampled = torch.nn.functional.grid_sample(
        grid.table, u.reshape(1, 1, -1, 2), mode="bilinear", padding_mode="border", align_corners=True
    )[0, :, 0, :]
    expected = sampled.reshape(3, 3, -1)[x[:, 0].long(), :, torch.arange(300)]
    got = grid._entries(q, x)
    w = torch.randn(300, 3)
    (g_got,), (g_exp,) = torch.autograd.grad((got * w).sum(), q), torch.autograd.grad((expected * w).sum(), q)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(g_got, g_exp, atol=1e-4)


@pytest.mark.parametrize("form", ["paper", "reference"])
def test_fused_grid_lookup_and_prepared_cost_equal_the_separate_pieces(form):
    metric = random_metric(seed=7, n_classes=2)
    lo, hi = torch.tensor([-3.0, -3.0]), torch.tensor([3.0, 3.0])
    grid = GridMetric(metric, lo, hi, n_classes=2, resolution=64)
    kde = KDEPotential(torch.randn(200, 2), torch.randint(0, 2, (200, 1)).float(), True, 0.3, 1.0, 0.5)
    pot = GridPotential(kde, lo, hi, 64)
    path = SplinePath(15, 8)
    y0, y1, phi, x = (
        torch.randn(30, 2),
        torch.randn(30, 2),
        torch.randn(30, 15, 2) * 0.1,
        torch.randint(0, 2, (30, 1)).float(),
    )

    def separate(y1):  # the cost written out from the pieces, without the fused lookup
        xr = x.repeat_interleave(path.num_points, 0)
        if form == "paper":
            q, v = path.points(y0, y1, phi)
            kinetic = 0.5 * grid.quad(q.reshape(-1, 2), v.reshape(-1, 2), xr).reshape(30, -1)
            return (kinetic - pot(q, x)).mean(-1)
        g = path.grid_points(y0, y1, phi)
        nodes, delta = g[:, :-1], g[:, 1:] - g[:, :-1] + 1e-6
        length = grid.quad(nodes.reshape(-1, 2), delta.reshape(-1, 2), xr).clamp_min(1e-12).sqrt().reshape(30, -1)
        return 0.5 * (length - pot(nodes, x)).sum(-1) ** 2

    y1.requires_grad_(True)
    fused = path_cost(path, grid, pot, y0, y1, phi, x, form)
    plain = separate(y1)
    assert torch.allclose(fused, plain, rtol=1e-5, atol=1e-6)
    (g_f,), (g_p,) = torch.autograd.grad(fused.sum(), y1), torch.autograd.grad(plain.sum(), y1)
    assert torch.allclose(g_f, g_p, rtol=1e-4, atol=1e-5)
    prepared = prepare_cost(path, grid, pot, y0, phi, x, form)
    assert torch.allclose(prepared(y1), fused, rtol=1e-6, atol=1e-7)
    if form == "reference":  # the amortiser's loss is E, not ½E²
        energy = path_energy(path, grid, pot, y0, y1, phi, x, form)
        assert torch.allclose(0.5 * energy**2, fused, rtol=1e-5)


def test_grouped_lbfgs_moves_every_row_as_separate_calls_do():
    torch.manual_seed(8)
    a = torch.randn(60, 2, 2)
    a = a @ a.transpose(1, 2) + 0.2 * torch.eye(2)
    a[:20] *= 100  # a stiff group: its first trial steps overshoot and its line search runs longer
    b = torch.randn(60, 2)

    def f(z, rows=slice(None)):  # independent non-quadratic problems: curvature and line searches differ
        return (
            0.5 * torch.einsum("bi,bij,bj->b", z, a[rows], z) - (b[rows] * z).sum(-1) + 0.3 * torch.cos(3 * z).sum(-1)
        )

    x0 = torch.randn(60, 2)
    kw = dict(max_iter=4, accept_fraction=0.6, max_step=2.0)
    groups = torch.arange(3).repeat_interleave(20)
    together = batched_lbfgs(f, x0, groups=groups, **kw)
    apart = torch.cat(
        [
            batched_lbfgs(lambda z, r=slice(20 * k, 20 * k + 20): f(z, r), x0[20 * k : 20 * k + 20], **kw)
            for k in range(3)
        ]
    )
    assert torch.allclose(together, apart, atol=1e-5)
    # evaluating only the rows still searching, once few are, moves no row differently
    calls = []

    def f_rows(z, rows):
        calls.append(len(rows))
        return f(z, rows)

    tail = batched_lbfgs(f, x0, groups=groups, f_rows=f_rows, rows_below=0.9, **kw)
    assert calls and max(calls) < 60
    assert torch.allclose(tail, together, atol=1e-6)
    # without groups the line search stops on the batch's acceptance, so some rows end elsewhere
    assert not torch.allclose(batched_lbfgs(f, x0, **kw), apart, atol=1e-5)


def test_clot_batched_ctransform_equals_one_interval_at_a_time():
    g = torch.Generator().manual_seed(0)
    anchors = three_anchors_two_classes(60, g)
    clot = make_surrogate(
        "clot[steps=6,batch_size=32,spline_pretrain=4,spline_every=3,spline_iters=2,"
        "hidden=(16, 16),spline_hidden=32,kde_support=64,path_points=6,metric_grid=32,"
        "potential_grid=32]"
    ).fit(anchors, seed=0)
    for m in (clot.g_, clot.T_):
        m.requires_grad_(True)
    ys = torch.randn(64, 2, generator=g)
    xs = torch.randint(0, 2, (64, 1), generator=g).float()
    groups = torch.arange(2).repeat_interleave(32)
    together = clot._ctransform_all(ys, xs, groups)
    apart = torch.cat([clot._ctransform(k, ys[32 * k : 32 * k + 32], xs[32 * k : 32 * k + 32]) for k in range(2)])
    assert torch.allclose(together, apart, atol=1e-5)


@pytest.mark.parametrize("kind", ["grid", "kde-categorical", "kde-continuous", "euclidean"])
@pytest.mark.parametrize("form", ["paper", "reference"])
def test_prepared_cost_on_a_subset_of_rows_equals_those_rows_of_the_full_cost(kind, form):
    torch.manual_seed(9)
    lo, hi = torch.tensor([-3.0, -3.0]), torch.tensor([3.0, 3.0])
    categorical = kind != "kde-continuous"
    ys = torch.randn(200, 2)
    xs = torch.randint(0, 2, (200, 1)).float() if categorical else torch.randn(200, 3)
    kde = KDEPotential(ys, xs, categorical, 0.3, 1.0, 0.5)
    if kind == "grid":
        metric = EigenBudgetMetric(2, cond_dim=1, n_classes=2)
        metric, potential = GridMetric(metric, lo, hi, n_classes=2, resolution=64), GridPotential(kde, lo, hi, 64)
    elif kind == "euclidean":
        metric, potential = EuclideanMetric(2), None
    else:
        metric, potential = (
            EigenBudgetMetric(2, cond_dim=1 if categorical else 3, n_classes=2 if categorical else None),
            kde,
        )
    path = SplinePath(15, 7)
    n = 40
    y0, y1, phi = torch.randn(n, 2), torch.randn(n, 2), torch.randn(n, 15, 2) * 0.1
    x = torch.randint(0, 2, (n, 1)).float() if categorical else torch.randn(n, 3)
    cost = prepare_cost(path, metric, potential, y0, phi, x, form)
    rows = torch.tensor([0, 3, 4, 17, 39])
    with torch.no_grad():
        assert torch.allclose(cost.take(rows)(y1[rows]), cost(y1)[rows], rtol=1e-5, atol=1e-6)


def test_clot_fit_benchmark_quick_writes_perf_rows(tmp_path):
    # Smoke test of perf/clot_fit.py: tiny sizes, a synthetic stand-in for the paper's data.
    root = Path(__file__).resolve().parents[2]
    csv = tmp_path / "perf.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(root / "perf" / "clot_fit.py"), "--quick", "--repeats", "1", "--csv", str(csv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pd.read_csv(csv, keep_default_na=False)
    assert set(rows.benchmark) == {"clot_fit"}
    assert all(case.endswith("(quick)") for case in rows.case)  # never replaces the real figures
    ref = rows[rows.quantity == "fit_seconds"].iloc[0]
    assert ref.case.startswith("reference two-moons, paper budget") and ref.goal == "≤ 300 s" and ref.threads == 1
    assert {"fit_seconds", "w2sq", "exponent"} <= set(rows.quantity)
    assert len(rows[rows.quantity == "exponent"]) == 3  # N (default, full batch) and D
    tensor = rows[rows.case.str.startswith("tensor 3×1000×10")]
    assert len(tensor) == 1 and tensor.goal.iloc[0] == "≤ 120 s"


@pytest.mark.parametrize("metric", ["euclidean", "learned"])
def test_the_default_clot_is_scale_free(metric):
    """The same problem with outputs in other units (× 10, shifted) gives the same samples, scaled back:
    every default (bandwidth, α, box, step sizes) is stated relative to the anchors' spread. Short fits:
    over hundreds of steps a learned metric's fit is chaotic (a 1e-6 relative change of the data moves
    its answer as much as a change of units does), which would hide what this test looks for."""
    from hti_bench.scoring import per_condition_wasserstein

    anchors = gaussian_shift_anchors(n=120)
    scale, shift = 10.0, torch.tensor([3.0, -7.0])
    moved = AnchorSet(
        anchors.space,
        anchors.lambdas,
        anchors.conditions,
        anchors.samples * scale + shift,
        anchors.eval_mask,
        categorical=True,
    )
    spec = f"clot[metric={metric},steps=40,batch_size=64,hidden=(16, 16),spline_hidden=32,spline_pretrain=10,spline_iters=5]"
    a = make_surrogate(spec).fit(anchors, seed=3).sample(0.4, torch.zeros(1, 1), 120, seed=1)
    b = make_surrogate(spec).fit(moved, seed=3).sample(0.4, torch.zeros(1, 1), 120, seed=1)
    assert (b - shift).abs().max() > 1.0  # the units did change
    gap = per_condition_wasserstein((b - shift) / scale, a).mean()["w2"]
    spread = per_condition_wasserstein(anchors.samples[0], anchors.samples[1]).mean()["w2"]
    assert gap < 0.01 * spread, (gap, spread)  # standardise=False: 0.14 (0.07 of the spread)


def test_reference_options_shared_init_and_metric_targets():
    # The reference's step-0 state (every interval's g_k, T_k from one set of weights) and its metric
    # step (c-transform re-solved with the updated potentials), used by the parity runs.
    g = torch.Generator().manual_seed(0)
    anchors = three_anchors_two_classes(30, g)
    quick = (
        "steps=1,lr=1e-20,spline_pretrain=1,spline_iters=1,hidden=(8, 8),spline_hidden=16,kde_support=32,"
        "potential_grid=16,metric_grid=16,metric=learned,metric_targets=resolve"
    )

    def same(model):
        return all(
            torch.allclose(a, b)
            for nets in (model.g_, model.T_)
            for a, b in zip(nets[0].parameters(), nets[1].parameters())
        )

    assert same(make_surrogate(f"clot[{quick},shared_init=True]").fit(anchors, seed=0))
    assert not same(make_surrogate(f"clot[{quick}]").fit(anchors, seed=0))
    with pytest.raises(Exception, match="metric_targets"):
        make_surrogate("clot[metric_targets=later]").fit(anchors, seed=0)


@pytest.mark.parametrize("schedule, final", [("constant", 1.0), ("cosine", 0.05)])
def test_schedule_sets_the_learning_rate_the_fit_ends_at(schedule, final, monkeypatch):
    # constant: the reference code's fixed step; cosine: decayed to 5 % of it by the last step.
    from hti_bench.toolkit import training

    lrs: dict[int, list[float]] = {}
    real = training.step

    def spy(opt, loss, **kw):
        real(opt, loss, **kw)
        lrs.setdefault(id(opt), []).append(opt.param_groups[0]["lr"])

    monkeypatch.setattr(training, "step", spy)
    quick = (
        "steps=8,lr=1e-3,spline_pretrain=1,spline_iters=1,hidden=(8, 8),spline_hidden=16,kde_support=32,"
        f"potential_grid=16,ctransform_iters=1,schedule={schedule}"
    )
    make_surrogate(f"clot[{quick}]").fit(gaussian_shift_anchors(n=20), seed=0)
    dual = next(v for v in lrs.values() if len(v) == 8)  # (g_k, T_k): one step per fit step; the amortiser's: 2
    assert dual[0] < 1e-3 if schedule == "cosine" else dual[0] == 1e-3
    assert dual[-1] == pytest.approx(final * 1e-3, rel=1e-6)
