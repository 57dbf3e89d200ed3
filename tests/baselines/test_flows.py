"""Flow-matching, direct-regression and λ-conditioned generative baselines."""

import pytest
import torch

from hti_bench.errors import ConfigError
from hti_bench.harness.registry import make_surrogate
from hti_bench.harness.unit import build_anchor_set
from hti_bench.scoring import per_condition_wasserstein
from hti_bench.tasks.gaussian_path import GaussianPath
from hti_bench.toolkit.flows import FlowData, Segments, integrate
from hti_bench.toolkit.transport import exact_coupling

FAST = "steps=800,batch_size=256,hidden=(64,64,64),solver=rk4,step_size=0.02"


def w2_to_truth(surrogate, task, lam, n=300):
    conds = task.eval_conditions()
    truth = task.sample(lam, conds, n, seed=99)
    return float(per_condition_wasserstein(surrogate.sample(lam, conds, n, seed=1), truth).mean()["w2"])


def is_row_of(points, pool):
    """For each row of ``points``, whether it is exactly one of the rows of ``pool``."""
    return (points[:, None, :] == pool[None, :, :]).all(-1).any(1)


@pytest.fixture(scope="module")
def gaussian():
    task = GaussianPath(n_samples=300)
    return task, build_anchor_set(task, seed=0)


def test_cfm_with_exact_coupling_approaches_mccann_on_a_geodesic_family(gaussian):
    task, anchors = gaussian
    cfm = make_surrogate(f"cfm[{FAST}]").fit(anchors, seed=0)
    mccann = make_surrogate("mccann").fit(anchors)
    nearest = make_surrogate("nearest-anchor").fit(anchors)
    for lam in (0.25, 0.75):
        w_cfm, w_mc, w_near = (w2_to_truth(s, task, lam) for s in (cfm, mccann, nearest))
        # McCann is exact here (its error is sampling noise); CFM must come close to it and clearly
        # beat a surrogate that ignores λ.
        assert w_cfm < w_mc + 0.08, (lam, w_cfm, w_mc)
        assert w_cfm < 0.5 * w_near, (lam, w_cfm, w_near)


def test_cfm_handles_unequally_spaced_anchors():
    task = GaussianPath(n_samples=300, anchors=(0.0, 0.1, 1.0), heldout=(0.05, 0.55))
    anchors = build_anchor_set(task, seed=0)
    cfm = make_surrogate(f"cfm[{FAST}]").fit(anchors, seed=0)
    conds = task.eval_conditions()
    for lam in task.heldout:
        mean, _ = task.moments(lam, conds)
        got = cfm.sample(lam, conds, 400, seed=0).mean(1)
        # A velocity not divided by the interval's clock length would land at the wrong mean, off by
        # up to 0.9·|drift| ≈ 1.3 in the long interval.
        assert torch.allclose(got, mean, atol=0.12), (lam, got, mean)
        assert w2_to_truth(cfm, task, lam) < 0.2


@pytest.mark.parametrize("coupling", ["exact", "independent", "row"])
def test_couplings_never_pair_across_conditions(gaussian, coupling):
    _, anchors = gaussian
    data = FlowData(anchors, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    cond, row = data.draw_rows(512, gen)
    a = torch.zeros(512, dtype=torch.long)
    ya, yb = data.pairs(a, a + 1, cond, row, coupling, gen)
    # Each partner must be one of anchor 1's samples of the *same* condition.
    for c in range(anchors.n_conditions):
        sel = cond == c
        others = torch.cat([data.y[1, j] for j in range(anchors.n_conditions) if j != c])
        assert is_row_of(yb[sel], data.y[1, c]).all()
        assert not is_row_of(yb[sel], others).any()
    assert torch.equal(ya, data.y[0, cond, row])


@pytest.mark.parametrize("matcher", ["exact-ot", "sb"])
def test_repairing_matchers_stay_within_one_condition(gaussian, matcher):
    _, anchors = gaussian
    cfm = make_surrogate(f"cfm[matcher={matcher},group_size=16]")
    cfm.coupling_, cfm.sigma_ = cfm._resolved()
    from hti_bench.toolkit.flows import make_matcher

    cfm.matcher_ = make_matcher(matcher, cfm.sigma_)
    data = FlowData(anchors, torch.device("cpu"))
    weights = torch.ones(anchors.n_anchors - 1)
    cfm.edges_ = Segments(data)
    y0, y1, x, k = cfm._batch(data, weights, 128, torch.Generator().manual_seed(0))
    for i in range(len(y0)):
        c = int(x[i, 0])
        assert is_row_of(y0[i : i + 1], data.y[int(k[i]), c]).all()
        assert is_row_of(y1[i : i + 1], data.y[int(k[i]) + 1, c]).all()


def test_exact_partners_are_the_optimal_permutation(gaussian):
    _, anchors = gaussian
    data = FlowData(anchors, torch.device("cpu"))
    perm = data.partners(0, 1, "exact")
    for c in range(anchors.n_conditions):
        y0, y1 = anchors.samples[0, c], anchors.samples[1, c]
        assert sorted(perm[c].tolist()) == list(range(len(y0)))
        cost = ((y0 - y1[perm[c]]) ** 2).sum(-1).mean()
        plan = exact_coupling(y0, y1)
        best = (plan.mass * ((y0[plan.rows] - y1[plan.cols]) ** 2).sum(-1)).sum()
        assert float(cost) == pytest.approx(float(best), rel=1e-6)


@pytest.mark.parametrize("solver", ["dopri5", "rk4", "midpoint"])
def test_integrate_solves_a_linear_ode_in_both_directions(solver):
    y0 = torch.tensor([[1.0, -2.0]])
    field = lambda y, t: -0.5 * y  # noqa: E731
    fwd = integrate(field, y0, 0.0, 1.0, solver=solver, step_size=0.01)
    assert torch.allclose(fwd, y0 * torch.exp(torch.tensor(-0.5)), atol=1e-4)
    back = integrate(field, fwd, 1.0, 0.0, solver=solver, step_size=0.01)
    assert torch.allclose(back, y0, atol=1e-4)


def test_cfm_per_interval_from_the_first_anchor_crosses_intervals(gaussian):
    task, anchors = gaussian
    cfm = make_surrogate(f"cfm[{FAST},per_interval=True,start=first]").fit(anchors, seed=0)
    assert len(cfm.fields_) == anchors.n_anchors - 1
    near = make_surrogate("nearest-anchor").fit(anchors)
    assert w2_to_truth(cfm, task, 0.75) < w2_to_truth(near, task, 0.75)


def test_direct_with_exact_pairs_beats_ignoring_lambda(gaussian):
    task, anchors = gaussian
    direct = make_surrogate("direct[steps=800,hidden=(64,64,64)]").fit(anchors, seed=0)
    near = make_surrogate("nearest-anchor").fit(anchors)
    for lam in (0.25, 0.75):
        assert w2_to_truth(direct, task, lam) < w2_to_truth(near, task, lam)


def test_direct_with_independent_pairs_collapses_to_the_mean(gaussian):
    """The regression's known failure: without a coupling it predicts E[y_b | x], not a distribution."""
    task, anchors = gaussian
    direct = make_surrogate("direct[coupling=independent,steps=600,hidden=(64,64)]").fit(anchors, seed=0)
    out = direct.sample(1.0, task.eval_conditions(), 300, seed=0)
    _, scale = task.moments(1.0, task.eval_conditions())
    assert (out.std(1).mean(-1) < 0.5 * scale).all()


def test_lambda_flow_is_closest_to_the_anchor_it_is_asked_for(gaussian):
    task, anchors = gaussian
    flow = make_surrogate("lambda-flow[steps=1200,hidden=(64,64,64),solver=rk4,step_size=0.05]").fit(anchors, seed=0)
    conds = task.eval_conditions()
    for k, lam in enumerate(task.anchors):
        out = flow.sample(lam, conds, 300, seed=0)
        dists = [
            float(per_condition_wasserstein(out, anchors.samples[j]).mean()["w2"]) for j in range(anchors.n_anchors)
        ]
        assert min(range(len(dists)), key=dists.__getitem__) == k, dists


@pytest.mark.parametrize(
    "spec, match",
    [
        ("cfm[matcher=exact_ot]", "Did you mean 'exact-ot'"),
        ("cfm[coupling=exakt]", "Did you mean 'exact'"),
        ("cfm[matcher=sb,sigma=0.0]", "needs sigma > 0"),
        ("cfm[matcher=exact-ot,coupling=exact]", "re-pairs each minibatch"),
        ("cfm[solver=rk45]", "solver"),
        ("cfm[solver=rk4,step_size=0.0]", "step_size"),
        ("cfm[start=upper]", "start"),
        ("direct[coupling=sorted]", "coupling"),
        ("direct[start=nearest]", "Did you mean"),
        ("lambda-flow[sigma=-1.0]", "sigma"),
        ("lambda-flow[steps=0]", "steps"),
    ],
)
def test_bad_parameters_are_reported_clearly(gaussian, spec, match):
    _, anchors = gaussian
    with pytest.raises(ConfigError, match=match):
        make_surrogate(spec).fit(anchors)
