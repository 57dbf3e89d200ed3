"""Several hyperparameters at once: tasks of d = 2 axes end to end, the barycenter, vector-λ
best response, and the skip reasons of one-dimensional surrogates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from baselines.barycenter import barycenter
from hti_bench.errors import ConfigError
from hti_bench.harness.registry import make_surrogate, make_task
from hti_bench.harness.results import SCHEMA_VERSION, parse_anchors
from hti_bench.harness.runner import run
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import build_anchor_set, evaluate
from hti_bench.view import TaskView

BEST_RESPONSE = frozenset({"training_loss", "architecture"})


def _sqrtm(a: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(a)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def bures_barycenter(covs: list[np.ndarray], weights: list[float], iterations: int = 200) -> np.ndarray:
    """The W₂ barycenter's covariance of centred Gaussians: the fixed point S = Σ w (S½ Σ S½)½
    (Álvarez-Esteban et al. 2016's iteration, which converges to it)."""
    s = sum(w * c for w, c in zip(weights, covs))
    for _ in range(iterations):
        root = _sqrtm(s)
        inv = np.linalg.inv(root)
        inner = sum(w * _sqrtm(root @ c @ root) for w, c in zip(weights, covs))
        s = inv @ inner @ inner @ inv
    return s


def test_a_two_hyperparameter_task_declares_its_space_and_refuses_bad_points():
    task = make_task("gaussian-plane")
    assert task.d == 2 and task.hyperparameters.names == ("a", "b")
    assert len(task.anchors) == 9 and (0.5, 0.5) in task.anchors  # grid:3x3 over the box
    with pytest.raises(ConfigError, match="hyperparameters"):
        task.hyperparameters.axis  # noqa: B018 (a task of several hyperparameters has no single axis)
    assert len(make_task("gaussian-plane[design=sobol:7]").anchors) == 7
    with pytest.raises(ConfigError, match="convex hull"):
        make_task("gaussian-plane[anchors=[[0,0],[1,0],[0,1]],heldout=[[0.9,0.9]]]")
    with pytest.raises(ConfigError, match="also an anchor"):
        make_task("gaussian-plane[heldout=[[0.5,0.5]]]")
    with pytest.raises(ConfigError, match="b=2.0 is outside"):
        make_task("gaussian-plane[heldout=[[0.5,2.0]]]")
    with pytest.raises(ConfigError, match="unknown anchor design"):
        make_task("gaussian-plane[design=lattice:9]").anchors  # noqa: B018
    with pytest.raises(ConfigError, match="point of 2 values"):
        make_task("gaussian-plane[heldout=[0.5]]")


def test_held_out_points_from_a_design_leave_out_the_anchors_and_draw_a_heat_map(tmp_path):
    task = make_task("gaussian-plane[heldout=grid:5x5]")
    assert len(task.heldout) == 25 - 9  # the 3×3 anchors sit on the 5×5 grid and are left out
    assert not set(task.heldout) & set(task.anchors)
    assert (0.25, 0.75) in task.heldout and (0.0, 0.25) in task.heldout
    with pytest.raises(ConfigError, match="for tasks of several hyperparameters"):
        make_task("gaussian-path[heldout=grid:5x5]").heldout
    run([task.spec], ["nearest-anchor"], seeds=[0], results_dir=tmp_path, jobs=1, progress=False)
    from hti_bench.harness.plots import HEAT_MAP_POINTS, plot_lambda_plane

    df = pd.read_csv(tmp_path / "results.csv")
    assert df.lambda_point.nunique() == 16 >= HEAT_MAP_POINTS
    assert plot_lambda_plane(df, tmp_path / "plane.png").stat().st_size > 0


def test_the_barycenter_of_gaussians_is_the_bures_barycenter():
    gen = torch.Generator().manual_seed(0)
    covs = [
        np.array([[1.0, 0.6], [0.6, 0.8]]),
        np.array([[0.3, -0.2], [-0.2, 1.5]]),
        np.array([[2.0, 0.0], [0.0, 0.2]]),
    ]
    means = [np.array([0.0, 0.0]), np.array([3.0, 1.0]), np.array([-1.0, 2.0])]
    weights = [0.5, 0.3, 0.2]
    n = 1500
    sets = []
    for m, c in zip(means, covs):
        z = torch.randn(n, 2, generator=gen, dtype=torch.float64).numpy()
        sets.append(torch.as_tensor(m + z @ np.linalg.cholesky(c).T, dtype=torch.float32))
    out = barycenter(torch.stack(sets), weights).double().numpy()
    expected_cov = bures_barycenter(covs, weights)
    expected_mean = sum(w * m for w, m in zip(weights, means))
    assert np.abs(out.mean(0) - expected_mean).max() < 0.08
    assert np.abs(np.cov(out.T) - expected_cov).max() < 0.1 * np.abs(expected_cov).max()
    # the mixture of the same sets (what the mixture baseline answers) is far from it: the test can fail
    mix = np.cov(torch.cat([s[: int(w * n)] for s, w in zip(sets, weights)]).double().numpy().T)
    assert np.abs(mix - expected_cov).max() > 0.5 * np.abs(expected_cov).max()
    # With two sets the barycenter is the displacement interpolation (mccann) of the exact coupling.
    from hti_bench.toolkit.transport import exact_coupling

    plan = exact_coupling(sets[0][:300], sets[1][:300])
    mccann = 0.7 * sets[0][:300][plan.rows] + 0.3 * sets[1][:300][plan.cols]
    two = barycenter(torch.stack([sets[0][:300], sets[1][:300]]), (0.7, 0.3))
    assert torch.allclose(torch.sort(two[:, 0]).values, torch.sort(mccann[:, 0]).values, atol=1e-3)


def test_one_output_dimension_uses_the_exact_quantile_average():
    a = torch.tensor([[0.0], [1.0], [2.0]])
    b = torch.tensor([[10.0], [30.0], [20.0]])
    out = barycenter(torch.stack([a, b]), (0.75, 0.25))
    assert torch.allclose(out[:, 0], torch.tensor([2.5, 5.75, 9.0]))


def test_gaussian_plane_end_to_end_the_barycenter_is_at_the_floor_and_rows_carry_the_point(tmp_path):
    results = run(
        ["gaussian-plane"],
        ["nearest-anchor", "mixture", "barycenter", "mccann", "transport-spline"],
        seeds=[0],
        results_dir=tmp_path,
        jobs=1,
        progress=False,
    )
    df = pd.read_csv(tmp_path / "results.csv")
    ok = df[df.status == "ok"]
    assert set(ok.surrogate) == {"nearest-anchor", "mixture", "barycenter"}
    assert (df.d == 2).all() and (df.schema_version == SCHEMA_VERSION).all()
    assert set(ok.lambda_heldout) == set(range(6))  # the point's index; the point itself beside it
    assert {"lambda_a", "lambda_b", "lambda_point", "anchor_distance"} <= set(df.columns)
    assert ok[ok.lambda_heldout == 4].lambda_point.iloc[0] == "0.5;0.3"
    assert len(parse_anchors(df.anchors.iloc[0])) == 9 and parse_anchors(df.anchors.iloc[0])[0] == (0.0, 0.0)
    w2 = ok.groupby("surrogate").w2.mean()
    floor = ok.floor_w2.mean()
    assert w2["barycenter"] < 1.2 * floor  # exact here: a plane of Gaussians
    assert w2["barycenter"] < w2["mixture"] < w2["nearest-anchor"]
    skipped = df[df.surrogate.isin(["mccann", "transport-spline"])]
    assert (skipped.status == "skipped").all()
    assert skipped.error.str.contains("one-dimensional: the task has 2 hyperparameters").all()
    assert results is not None
    # figures: the plane and error against distance, not the 1-D λ axis
    from hti_bench.harness.plots import plot_results

    names = {p.name for p in plot_results(tmp_path)}
    assert {"w2_plane_gaussian-plane.png", "w2_vs_distance_gaussian-plane.png"} <= names
    assert not any(n.startswith("w2_vs_lambda") for n in names)
    from hti_bench.harness.leaderboard import by_lambda

    assert "0.5;0.3" in by_lambda(df).columns


def test_cfm_on_a_plane_flows_along_the_segment_from_the_nearest_anchor():
    task = make_task("gaussian-plane")
    anchors = build_anchor_set(task, seed=0)
    conditions = task.eval_conditions().float()
    fitted = {
        name: make_surrogate(name).fit(anchors, None, seed=0)
        for name in ("cfm[steps=600,solver=rk4,step_size=0.05]", "nearest-anchor")
    }
    w2 = {name: np.mean([evaluate_w2(task, s, lam, conditions) for lam in task.heldout]) for name, s in fitted.items()}
    cfm, nearest = w2["cfm[steps=600,solver=rk4,step_size=0.05]"], w2["nearest-anchor"]
    # the flow has to move the nearest anchor's samples most of the way: a D×d field applied wrongly
    # (a transposed or missing direction) stays at the start anchor or overshoots
    assert cfm < 0.6 * nearest, f"cfm {cfm:.3f} against nearest-anchor {nearest:.3f}"
    with pytest.raises(ConfigError, match="per_interval=False"):
        make_surrogate("cfm[per_interval=True,steps=5]").fit(anchors, None, seed=0)


def test_mfm_on_a_plane_bends_the_edges_paths_and_is_cfm_under_the_euclidean_metric():
    task = make_task("gaussian-plane")
    anchors = build_anchor_set(task, seed=0)
    conditions = task.eval_conditions().float()
    lam = task.heldout[0]
    fast = "steps=30,solver=rk4,step_size=0.1"
    # G = I: stage 1 is skipped and every draw is cfm[coupling=exact]'s, on the plane as on a line
    euclid = make_surrogate(f"mfm[metric=euclidean,{fast}]").fit(anchors, None, seed=0)
    plain = make_surrogate(f"cfm[coupling=exact,{fast}]").fit(anchors, None, seed=0)
    assert torch.equal(euclid.sample(lam, conditions, 50, seed=3), plain.sample(lam, conditions, 50, seed=3))
    mfm = make_surrogate("mfm[steps=600,path_steps=50,solver=rk4,step_size=0.05]").fit(anchors, None, seed=0)
    # a 3×3 grid triangulates into 8 triangles: 16 edges, each trained both ways, each with bent paths
    assert mfm.path_net_ is not None and len(mfm.edges_) == 32
    assert mfm.interpolant(len(mfm.edges_) - 1, 0.5).shape == (anchors.n_conditions, anchors.n_samples, 2)
    nearest = make_surrogate("nearest-anchor").fit(anchors, None, seed=0)
    w2 = {
        name: np.mean([evaluate_w2(task, s, lam, conditions) for lam in task.heldout])
        for name, s in (("mfm", mfm), ("nearest", nearest))
    }
    assert w2["mfm"] < 0.6 * w2["nearest"], w2
    with pytest.raises(ValueError, match="outside|hull"):
        mfm.sample((5.0, 5.0), conditions, 4, seed=0)


def evaluate_w2(task, surrogate, lam, conditions):
    from hti_bench.scoring import score_panel

    out = surrogate.sample(lam, conditions, task.n_samples, seed=1)
    return score_panel(out, task.sample(lam, conditions, task.n_samples, 7)).mean()["w2"]


def test_barycenter_is_skipped_with_the_reason_on_one_hyperparameter():
    task = make_task("gaussian-path")
    result = evaluate(task, "barycenter", 0)
    assert result.status == "skipped" and "that is mccann" in result.error


def test_the_anchor_oracle_answers_at_new_states_on_a_plane():
    task = make_task("gaussian-plane")
    anchors = build_anchor_set(task, 0)
    view = TaskView(task)
    import dataclasses

    anchors = dataclasses.replace(anchors, oracle=view.anchor_samples)
    model = make_surrogate("barycenter").fit(anchors, view, seed=0)
    out = model.sample((0.5, 0.3), torch.tensor([[1.0], [1.5]]), 7, 0)  # row 1.5 was never an anchor condition
    assert out.shape == (2, 7, 2) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="outside"):
        make_surrogate("mixture").fit(anchors, view).sample((1.5, 0.3), anchors.conditions, 3, 0)


@pytest.fixture(scope="module")
def ridge2(tmp_path_factory):
    import os

    os.environ["HTI_BENCH_CACHE"] = str(tmp_path_factory.mktemp("ridge2-cache"))
    task = make_task("noisy-regression-2d", cache=TargetCache())
    return task, build_anchor_set(task, seed=0)


def test_the_two_penalty_ridge_task_is_what_it_claims(ridge2):
    task, _ = ridge2
    x, y = task.training_data()
    net = task.build_network()
    lam = (2.0, 0.5)
    torch.manual_seed(0)
    with torch.no_grad():
        mc = torch.stack(
            [task.per_example_loss(net, (x, y), torch.tensor([lam] * len(y))).mean() for _ in range(400)]
        ).mean()
    w = net.weight.detach()[0]
    exact = ((x @ w - y) ** 2).mean() + 2.0 * w[:2].pow(2).sum() + 0.5 * w[2] ** 2
    assert abs(float(mc) - float(exact)) < 0.02 * float(exact)
    for a in task.anchors[:3]:
        assert (
            float((task.network(a).weight.detach()[0] - task.best_response(a)).norm() / task.best_response(a).norm())
            < 0.2
        )


def test_a_vector_lambda_hypernetwork_approaches_the_closed_form_best_response(ridge2):
    task, anchors = ridge2
    view = TaskView(task, BEST_RESPONSE)
    untrained = make_surrogate("hypernetwork[epochs=1,lr=0.01]").fit(anchors, TaskView(task, BEST_RESPONSE), seed=0)
    trained = make_surrogate("hypernetwork[epochs=600,lr=0.01]").fit(anchors, view, seed=0)
    for lam in task.heldout:
        best = task.best_response(lam)
        err = float((trained.weights(lam)["weight"][0] - best).norm() / best.norm())
        assert err < 0.08, f"hypernetwork at λ={lam}: {err:.3f} from the two-penalty ridge solution"
        assert float((untrained.weights(lam)["weight"][0] - best).norm() / best.norm()) > 3 * err
    # The two axes matter separately: swapping them changes the answer as the closed form does.
    a, b = trained.weights((0.3, 3.0))["weight"][0], trained.weights((3.0, 0.3))["weight"][0]
    assert float((a - b).norm()) > 0.5 * float((task.best_response((0.3, 3.0)) - task.best_response((3.0, 0.3))).norm())


def test_vector_lambda_stn_and_delta_stn_respond_along_both_axes(ridge2):
    task, anchors = ridge2

    def error(model, lam):
        best = task.best_response(lam)
        return float((model.weights(lam)["weight"][0] - best).norm() / best.norm())

    def nearest_error(lam):
        best = task.best_response(lam)
        net = task.network(task.anchors[anchors.nearest(lam)])
        return float((net.weight.detach()[0] - best).norm() / best.norm())

    baseline = np.mean([nearest_error(lam) for lam in task.heldout])
    for spec in ("stn[epochs=300,lr=0.01]", "delta-stn[epochs=300,lr=0.01]"):
        model = make_surrogate(spec).fit(anchors, TaskView(task, BEST_RESPONSE), seed=0)
        assert len(model.sigmas_[-1]) == 2  # one perturbation scale per hyperparameter
        ours = np.mean([error(model, lam) for lam in task.heldout])
        assert ours < 0.7 * baseline, f"{spec}: mean error {ours:.3f}, the nearest anchor's network {baseline:.3f}"
    # Δ-STN at its centre (the middle of the anchors' box) is exactly its w0
    d = make_surrogate("delta-stn[epochs=5,lr=0.01]").fit(anchors, TaskView(task, BEST_RESPONSE), seed=0)
    general = dict(zip(d.net_.generator.names, d.net_.generator.general_parameters()))
    assert torch.equal(d.weights((1.0, 1.0))["weight"], general["weight"].detach())
    assert not torch.equal(d.weights((0.3, 3.0))["weight"], general["weight"].detach())


def test_tuning_leaves_out_anchors_inside_the_others_hull_never_a_corner():
    from hti_bench.errors import LeakError
    from hti_bench.sweeping.tuning import GuardedStore, validation_folds

    task = make_task("gaussian-plane")
    folds = validation_folds(task)
    left_out = {f.validation[0] for f in folds}
    assert left_out == {(0.0, 0.5), (0.5, 0.0), (0.5, 0.5), (0.5, 1.0), (1.0, 0.5)}  # the 3×3 grid minus corners
    assert all(len(f.anchors) == 8 and f.validation[0] not in f.anchors for f in folds)
    guarded = GuardedStore(None, task.heldout, task.spec)
    with pytest.raises(LeakError, match="held-out"):
        guarded.train_seconds(task, task.heldout[0], 0)


def test_weight_interpolation_on_a_plane_is_the_barycentric_soup_of_the_anchor_networks(ridge2):
    task, anchors = ridge2
    view = TaskView(task, frozenset({"architecture"}))
    soup = make_surrogate("weight-interpolation").fit(anchors, view, seed=0)
    for lam in task.heldout:
        vertices, weights = anchors.simplex(lam)
        by_hand = sum(w * task.network(anchors.lambdas[i]).weight.detach() for i, w in zip(vertices, weights))
        assert torch.allclose(soup.weights(lam)["weight"], by_hand, atol=1e-6)
    corner = anchors.lambdas[4]
    assert torch.equal(soup.weights(corner)["weight"], task.network(corner).weight.detach())
    with pytest.raises(ConfigError, match="use path=linear"):
        make_surrogate("weight-interpolation[path=spherical]").fit(anchors, view, seed=0)
