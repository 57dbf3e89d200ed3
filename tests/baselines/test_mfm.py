"""Metric flow matching (baselines/mfm.py) and its data metrics (hti_bench/toolkit/manifold.py)."""

import numpy as np
import pytest
import torch

from hti_bench.errors import ConfigError
from hti_bench.harness.registry import make_surrogate
from hti_bench.harness.unit import build_anchor_set
from hti_bench.scoring import per_condition_wasserstein
from hti_bench.tasks.gaussian_path import GaussianPath
from hti_bench.tasks.semicircles import CENTRES, Semicircles
from hti_bench.toolkit.manifold import LANDMetric, RBFMetric, kinetic_energy, scott_bandwidth

FAST = "steps=800,batch_size=256,hidden=(64,64,64),solver=rk4,step_size=0.02"
TINY = "steps=40,path_steps=20,batch_size=64,hidden=(32,32),path_hidden=(32,32),solver=rk4,step_size=0.1,rbf_steps=20"


def w2(samples, reference):
    return float(per_condition_wasserstein(samples, reference).mean()["w2"])


def circle_distance(points, conditions):
    """Mean distance of each condition's points (M, n, 2) to its class's semicircle (the data support)."""
    cls = conditions[:, 0].long().numpy()
    r = np.linalg.norm(np.asarray(points, dtype=np.float64) - CENTRES[cls][:, None, :], axis=-1)
    return float(np.abs(r - 1.0).mean())


# --------------------------------------------------------------------------------- the euclidean limit


def test_a_euclidean_metric_is_cfm_with_exact_coupling():
    """metric=euclidean skips stage 1 (φ ≡ 0): the same network and draws as cfm[coupling=exact]."""
    task = GaussianPath(n_samples=300)
    anchors = build_anchor_set(task, seed=0)
    mfm = make_surrogate(f"mfm[metric=euclidean,{FAST}]").fit(anchors, seed=0)
    cfm = make_surrogate(f"cfm[coupling=exact,{FAST}]").fit(anchors, seed=0)
    assert mfm.path_net_ is None
    conds = task.eval_conditions()
    for lam in task.heldout:
        a, b = mfm.sample(lam, conds, 300, seed=1), cfm.sample(lam, conds, 300, seed=1)
        assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())
        truth = task.sample(lam, conds, 300, seed=99)
        # Tolerance from the measured noise: W₂ between two independent 300-sample draws of the truth.
        floor = w2(task.sample(lam, conds, 300, seed=98), truth)
        assert abs(w2(a, truth) - w2(b, truth)) < 0.25 * floor, (lam, w2(a, truth), w2(b, truth), floor)
        assert w2(a, truth) < floor + 0.08, (lam, w2(a, truth), floor)


# --------------------------------------------------------------------------------- data on a curve


@pytest.fixture(scope="module")
def semicircles():
    task = Semicircles()
    anchors = build_anchor_set(task, seed=0)
    mfm = make_surrogate(f"mfm[{FAST}]").fit(anchors, seed=0)
    cfm = make_surrogate(f"cfm[coupling=exact,{FAST}]").fit(anchors, seed=0)
    return task, anchors, mfm, cfm


def test_land_paths_stay_closer_to_the_data_than_straight_ones(semicircles):
    """Between anchors the semicircles data lie on arcs; LAND's geodesic paths follow them, cfm's straight
    paths (the same exact pairs, s = ½) cut the chord: measured here ≈ 0.3 from the arc vs ≈ 0.1."""
    task, anchors, mfm, _ = semicircles
    conds = anchors.conditions
    assert mfm.path_energy_["bent"] < 0.5 * mfm.path_energy_["straight"], mfm.path_energy_
    for k in range(anchors.n_anchors - 1):
        bent = mfm.interpolant(k, 0.5)
        y0, y1 = mfm.interpolant(k, 0.0), mfm.interpolant(k, 1.0)
        straight = 0.5 * (y0 + y1)
        # The interpolant's ends are the paired anchor samples themselves.
        assert torch.allclose(y0, anchors.samples[k], atol=1e-4)
        assert torch.allclose(torch.sort(y1, dim=1).values, torch.sort(anchors.samples[k + 1], dim=1).values, atol=1e-4)
        d_bent, d_straight = circle_distance(bent, conds), circle_distance(straight, conds)
        assert d_bent < 0.6 * d_straight, (k, d_bent, d_straight)


def test_land_samples_between_anchors_stay_closer_to_the_data_than_cfm(semicircles):
    task, _, mfm, cfm = semicircles
    conds = task.eval_conditions()
    for lam in task.heldout:
        d_mfm = task.metrics(lam, conds, mfm.sample(lam, conds, 100, seed=1))["circle_distance"]
        d_cfm = task.metrics(lam, conds, cfm.sample(lam, conds, 100, seed=1))["circle_distance"]
        assert d_mfm < 0.8 * d_cfm, (lam, d_mfm, d_cfm)


# --------------------------------------------------------------------------------- the other settings


@pytest.mark.parametrize(
    "extra",
    [
        "metric=rbf",
        "metric_data=pooled",
        "metric=rbf,metric_data=pooled",
        "bandwidth=0.3,coupling=independent,sigma=0.1",
    ],
)
def test_other_metric_settings_fit_and_sample(extra):
    task = GaussianPath(n_samples=24)
    anchors = build_anchor_set(task, seed=0)
    mfm = make_surrogate(f"mfm[{TINY},{extra}]").fit(anchors, seed=0)
    out = mfm.sample(task.heldout[0], task.eval_conditions(), 16, seed=0)
    assert out.shape == (3, 16, 2) and torch.isfinite(out).all()
    assert mfm.path_energy_["bent"] <= mfm.path_energy_["straight"]  # the straight paths are a candidate


@pytest.mark.parametrize(
    "spec, match",
    [
        ("mfm[metric=lnd]", r"Did you mean 'land'\?.*Available: euclidean, land, rbf"),
        ("mfm[metric_data=all]", r"Available: condition, pooled"),
        ("mfm[coupling=sorted]", r"Available: exact, independent, row"),
        ("mfm[solver=rk45]", "solver"),
        ("mfm[rho=0.0]", "rho must be > 0"),
        ("mfm[alpha=-1.0]", "alpha must be > 0"),
        ("mfm[bandwidth=0.0]", "bandwidth must be > 0"),
        ("mfm[sigma=-0.1]", "sigma must be ≥ 0"),
        ("mfm[path_steps=0]", "path_steps must be ≥ 1"),
        ("mfm[n_centers=0]", "n_centers must be ≥ 1"),
        ("mfm[path_hidden=()]", "path_hidden must be a non-empty tuple"),
        ("mfm[device=gpu0]", "device must be"),
    ],
)
def test_bad_parameters_are_refused_before_training(spec, match):
    with pytest.raises(ConfigError, match=match):
        make_surrogate(spec)


# --------------------------------------------------------------------------------- the metrics


def test_land_is_cheap_along_the_data_and_dear_across_or_away_from_it():
    line = torch.stack([torch.linspace(-2, 2, 200), torch.zeros(200)], -1)[None]  # data on the x-axis
    metric = LANDMetric(line, 0.2, rho=1e-3)
    group = torch.zeros(3, dtype=torch.long)
    at = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.5]])
    step = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    along, across, away = kinetic_energy(metric, at[:, None], step[:, None], group)[:, 0].tolist()
    assert along < 0.01 * across and across == pytest.approx(away, rel=0.05) and away == pytest.approx(1e3, rel=0.01)
    # h against the direct sum it is computed from by matrix products.
    y = torch.tensor([[0.3, 0.1]])
    w = torch.exp(-((line[0] - y) ** 2).sum(-1) / (2 * 0.2**2))
    direct = (w[:, None] * (line[0] - y) ** 2).sum(0)
    assert torch.allclose(metric.local_variance(y[None], group[:1])[0, 0], direct, rtol=1e-4, atol=1e-6)


def test_rbf_height_is_one_on_the_data_and_falls_away_from_it():
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(2, 300, 2, generator=gen) * torch.tensor([1.0, 0.05])  # two groups, thin clouds
    metric = RBFMetric.fit(points, n_centers=20, kappa=1.0, rho=1e-3, gen=gen)
    on = metric.height(points[1][None], torch.ones(1, dtype=torch.long))
    off = metric.height(torch.tensor([[[0.0, 2.0]]]), torch.ones(1, dtype=torch.long))
    # ≈ 1 on the data (measured: mean 0.94, RMS error 0.25, worst at the clouds' sparse tails); ≈ 0 off it.
    assert metric.fit_error < 0.1 and 0.85 < float(on.median()) < 1.15 and float(off) < 0.05


def test_scott_bandwidth_follows_its_formula():
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(1, 1000, 3, generator=gen) * 2.0
    expected = float(points[0].std(0).mean()) * 1000 ** (-1 / 7)
    assert float(scott_bandwidth(points)[0]) == pytest.approx(expected, rel=1e-5)
    assert float(scott_bandwidth(torch.ones(1, 10, 2))[0]) > 0  # identical points: a floor, not zero
