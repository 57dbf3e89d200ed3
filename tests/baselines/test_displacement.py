"""What the interpolation baselines are exact for: McCann on a W₂ geodesic (an affine Gaussian path),
every interpolator at the anchors, the mixture and nearest-anchor rules as stated."""

import pytest
import torch

from hti_bench.harness.registry import make_surrogate
from hti_bench.harness.unit import build_anchor_set
from hti_bench.scoring import per_condition_wasserstein
from hti_bench.tasks.gaussian_path import GaussianPath
from hti_bench.toolkit.transport import exact_coupling


@pytest.fixture(scope="module")
def gaussian():
    task = GaussianPath(n_samples=400)
    return task, build_anchor_set(task, seed=0)


def score(surrogate, task, lam):
    conds = task.eval_conditions()
    truth = task.sample(lam, conds, task.n_samples, seed=99)
    return per_condition_wasserstein(surrogate.sample(lam, conds, task.n_samples, seed=1), truth).mean()["w2"]


def test_mccann_is_exact_on_an_affine_gaussian_path(gaussian):
    task, anchors = gaussian
    mccann = make_surrogate("mccann").fit(anchors)
    conds = task.eval_conditions()
    for lam in (0.25, 0.75):
        out = mccann.sample(lam, conds, task.n_samples, seed=1)
        mean, scale = task.moments(lam, conds)
        assert torch.allclose(out.mean(1), mean, atol=0.06)
        assert torch.allclose(out.std(1).mean(-1), scale, atol=0.04)
    # ... and beats the other two at every held-out λ
    for lam in (0.25, 0.75):
        w = {n: score(make_surrogate(n).fit(anchors), task, lam) for n in ("mccann", "mixture", "nearest-anchor")}
        assert w["mccann"] < w["mixture"] and w["mccann"] < w["nearest-anchor"]


def test_interpolators_return_the_anchor_at_anchor_lambdas(gaussian):
    task, anchors = gaussian
    conds = task.eval_conditions()
    for name in ("mccann", "mixture", "nearest-anchor"):
        s = make_surrogate(name).fit(anchors)
        for k, lam in enumerate(task.anchors):
            out = s.sample(lam, conds, anchors.n_samples, seed=0)
            got = torch.sort(out[..., 0], dim=1).values
            want = torch.sort(anchors.samples[k, ..., 0], dim=1).values
            assert torch.allclose(got, want), f"{name} at anchor λ={lam}"


def test_mixture_draws_the_upper_anchor_with_probability_s(gaussian):
    task, anchors = gaussian
    s = make_surrogate("mixture").fit(anchors)
    out = s.sample(0.125, task.eval_conditions()[:1], 4000, seed=0)[0]  # s = 0.25 in [0, 0.5]
    upper = set(map(tuple, anchors.samples[1, 0].tolist()))
    frac = sum(tuple(p) in upper for p in out.tolist()) / len(out)
    assert frac == pytest.approx(0.25, abs=0.03)


def test_nearest_anchor_switches_at_the_clock_midpoint(gaussian):
    task, anchors = gaussian
    s = make_surrogate("nearest-anchor").fit(anchors)
    c = task.eval_conditions()[:1]
    lower = set(map(tuple, anchors.samples[0, 0].tolist()))
    assert all(tuple(p) in lower for p in s.sample(0.24, c, 50, seed=0)[0].tolist())
    assert not any(tuple(p) in lower for p in s.sample(0.26, c, 50, seed=0)[0].tolist())


def test_one_dimensional_coupling_sorts_and_matches_emd():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(60, 1, generator=g), torch.randn(60, 1, generator=g) * 2 + 1
    plan = exact_coupling(a, b)
    paired = b[plan.cols][torch.argsort(plan.rows)]
    assert torch.equal(torch.argsort(a[:, 0]), torch.argsort(paired[:, 0]))  # monotone
    cost_sorted = ((a[plan.rows] - b[plan.cols]) ** 2).sum()
    plan2 = exact_coupling(torch.cat([a, torch.zeros(60, 1)], 1), torch.cat([b, torch.zeros(60, 1)], 1))
    cost_emd = ((a[plan2.rows] - b[plan2.cols]) ** 2).sum()
    assert cost_sorted == pytest.approx(float(cost_emd), rel=1e-5)


def test_unknown_condition_is_a_clear_error(gaussian):
    task, anchors = gaussian
    s = make_surrogate("mccann").fit(anchors)
    with pytest.raises(ValueError, match=r"condition 0 \(\[7.0\]\) is not among the anchor conditions"):
        s.sample(0.3, torch.tensor([[7.0]]), 5, seed=0)


@pytest.mark.parametrize("name", ["mccann", "mixture", "nearest-anchor"])
def test_batched_query_draws_what_the_per_condition_loop_draws_from(gaussian, name):
    # sample() answers all conditions in one batched draw; each condition's rows must still be
    # distinct rows of that condition's own set, as the per-condition interpolate() gives them.
    task, anchors = gaussian
    s = make_surrogate(name).fit(anchors)
    conds = task.eval_conditions()
    index = anchors.index_of(conds)
    k, frac = anchors.locate(0.3)
    batched = s.sample(0.3, conds, 150, seed=3)
    for c, i in enumerate(index.tolist()):
        loop = s.interpolate(k, frac, i, anchors.n_samples, torch.Generator().manual_seed(0))  # every point (n = N)
        allowed = set(map(tuple, loop.tolist()))
        if name == "mixture":
            allowed = set(map(tuple, anchors.samples[k, i].tolist())) | set(
                map(tuple, anchors.samples[k + 1, i].tolist())
            )
        rows = list(map(tuple, batched[c].tolist()))
        assert all(r in allowed for r in rows) and len(set(rows)) == len(rows), f"{name}, condition {c}"
    more = s.sample(0.3, conds, anchors.n_samples + 7, seed=3)  # more than the set: with repeats
    assert more.shape == (len(conds), anchors.n_samples + 7, anchors.samples.shape[-1])
