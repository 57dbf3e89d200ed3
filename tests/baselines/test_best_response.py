"""Best-response baselines: hypernetwork, STN, Δ-STN, anchored Δ-STN, and their machinery."""

import pytest
import torch

from hti_bench.errors import ConfigError
from hti_bench.harness.registry import make_surrogate, make_task
from hti_bench.harness.runner import run
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import build_anchor_set
from hti_bench.toolkit.best_response import FunctionalNetwork, HyperGenerator, LambdaAxis, StructuredResponse
from hti_bench.view import TaskView

#: What the best-response surrogates declare; the harness builds their view with it.
BEST_RESPONSE = frozenset({"training_loss", "architecture"})


def relative_error(w, target):
    return float((w - target).norm() / target.norm())


def test_the_ridge_task_is_what_it_claims(ridge):
    task, _ = ridge
    # The input-noise loss, averaged over many noise draws, is the ridge objective.
    x, y = task.training_data()
    net = task.build_network()
    lam = 2.0
    torch.manual_seed(0)
    with torch.no_grad():
        mc = torch.stack(
            [task.per_example_loss(net, (x, y), torch.full((len(y),), lam)).mean() for _ in range(400)]
        ).mean()
    w = net.weight.detach()[0]
    exact = ((x @ w - y) ** 2).mean() + lam * w.pow(2).sum()
    assert abs(float(mc) - float(exact)) < 0.02 * float(exact)
    # and its trained anchors land on the closed form
    for lam in task.anchors:
        assert relative_error(task.network(lam).weight.detach()[0], task.best_response(lam)) < 0.2


def test_hypernetwork_weights_approach_the_closed_form_best_response(ridge):
    task, anchors = ridge
    untrained = make_surrogate("hypernetwork[epochs=1,lr=0.01]").fit(anchors, TaskView(task, BEST_RESPONSE), seed=0)
    trained = make_surrogate("hypernetwork[epochs=1000,lr=0.01]").fit(anchors, TaskView(task, BEST_RESPONSE), seed=0)
    for lam in task.heldout:
        best = task.best_response(lam)
        err = relative_error(trained.weights(lam)["weight"][0], best)
        assert err < 0.06, f"hypernetwork at λ={lam}: {err:.3f} from the ridge solution"
        assert relative_error(untrained.weights(lam)["weight"][0], best) > 3 * err


def test_delta_stn_is_exactly_w0_at_the_centre(ridge):
    task, anchors = ridge
    d = make_surrogate("delta-stn[epochs=20,lr=0.01,center=1.0]").fit(anchors, TaskView(task, BEST_RESPONSE), seed=0)
    general = dict(zip(d.net_.generator.names, d.net_.generator.general_parameters()))
    for name, w in d.weights(1.0).items():
        assert torch.equal(w, general[name].detach())
    assert not torch.equal(d.weights(3.0)["weight"], general["weight"].detach())


def test_delta_stn_response_matches_the_finite_difference_of_the_best_response(ridge):
    task, anchors = ridge
    d = make_surrogate("delta-stn[epochs=300,lr=0.01,center=1.0,tune_scale=False,sigma0=0.1]").fit(
        anchors, TaskView(task, BEST_RESPONSE), seed=0
    )
    assert relative_error(d.weights(1.0)["weight"][0], task.best_response(1.0)) < 0.05
    h = 1e-3
    slope = (d.weights(1 + h)["weight"][0] - d.weights(1 - h)["weight"][0]) / (2 * h)
    truth = (task.best_response(1 + h) - task.best_response(1 - h)) / (2 * h)
    assert float(torch.nn.functional.cosine_similarity(slope, truth, dim=0)) > 0.97
    assert relative_error(slope, truth) < 0.15


def test_stn_is_close_to_the_best_response_near_its_centre(ridge):
    task, anchors = ridge
    stn = make_surrogate("stn[epochs=300,lr=0.01,center=1.0]").fit(anchors, TaskView(task, BEST_RESPONSE), seed=0)
    assert relative_error(stn.weights(1.0)["weight"][0], task.best_response(1.0)) < 0.1
    assert 0 < stn.sigmas_[-1] and len(stn.sigmas_) > 10  # the scale was tuned


def test_anchored_delta_stn_is_the_anchor_network_at_each_anchor(ridge):
    task, anchors = ridge
    a = make_surrogate("anchored-delta-stn[epochs=30,lr=0.01]").fit(anchors, TaskView(task, BEST_RESPONSE), seed=0)
    for lam in task.anchors[:-1]:
        assert torch.equal(a.weights(lam)["weight"], task.network(lam).weight.detach())
    out = a.sample(task.anchors[0], task.eval_conditions(), 3, seed=0)
    expected = task.network(task.anchors[0])(task.eval_conditions()).detach()
    assert torch.allclose(out[:, 0], expected)
    # between anchors it moves towards the best response
    for lam in task.heldout:
        pred = a.sample(lam, task.eval_conditions(), 1, seed=0)[:, 0, 0]
        truth = task.eval_conditions() @ task.best_response(lam)
        assert float((pred - truth).abs().mean()) < 0.25 * float(truth.abs().mean())


# ------------------------------------------------------------------------------ machinery


def _moons_network():
    from hti_bench.tasks.moons_dropout import MoonsDropout

    task = MoonsDropout(cache=TargetCache(), hidden=16, diffusion_steps=10)
    return task, task.build_network()


def test_per_example_weights_give_the_same_outputs_as_looping_over_lambda():
    torch.manual_seed(0)
    task, net = _moons_network()
    fnet = FunctionalNetwork(net, HyperGenerator(net, 8, 4, torch.Generator().manual_seed(0))).eval()
    groups, k = 5, 3
    h = torch.linspace(-1, 1, groups)[:, None]
    y, t, label = (
        torch.randn(groups * k, 2),
        torch.randint(0, 10, (groups * k,)),
        torch.randint(0, 2, (groups * k,)).float(),
    )
    with fnet.at(h):
        batched = fnet(y, t, label)
    looped = []
    for g in range(groups):
        rows = slice(g * k, (g + 1) * k)
        with fnet.at(h[g : g + 1]):
            looped.append(fnet(y[rows], t[rows], label[rows]))
    assert torch.allclose(batched, torch.cat(looped), atol=1e-6)


def test_linearised_output_is_the_first_order_taylor_term():
    torch.manual_seed(0)
    task, net = _moons_network()
    response = StructuredResponse(net, 1, torch.Generator().manual_seed(0))
    for v in response.bottleneck:
        torch.nn.init.normal_(v, std=0.3)  # a nonzero response
    fnet = FunctionalNetwork(net, response).eval()
    y, t, label = torch.randn(4, 2), torch.randint(0, 10, (4,)), torch.tensor([0.0, 1, 0, 1])
    tangent = torch.tensor([[0.7], [-0.2], [1.0], [0.4]])
    with fnet.at(torch.zeros(4, 1), linearize=tangent):
        lin = fnet(y, t, label)
    eps = 1e-3
    with fnet.at(eps * tangent):
        plus = fnet(y, t, label)
    with fnet.at(-eps * tangent):
        minus = fnet(y, t, label)
    with fnet.at(torch.zeros(4, 1)):
        base = fnet(y, t, label)
    assert torch.allclose(lin, base + (plus - minus) / (2 * eps), atol=1e-3)


def test_linearised_output_at_one_point_equals_the_per_example_jvp():
    # Δ-STN's centred inputs (every row at h = 0) take a single-network JVP; it must give the values
    # of the general path, one JVP over per-example weight sets.
    from torch.func import jvp

    torch.manual_seed(1)
    task, net = _moons_network()
    response = StructuredResponse(net, 1, torch.Generator().manual_seed(0))
    for v in response.bottleneck:
        torch.nn.init.normal_(v, std=0.3)
    fnet = FunctionalNetwork(net, response).eval()
    groups, k = 5, 3
    y, t, label = (
        torch.randn(groups * k, 2),
        torch.randint(0, 10, (groups * k,)),
        torch.randint(0, 2, (groups * k,)).float(),
    )
    h, tangent = torch.zeros(groups, 1), torch.randn(groups, 1)
    with fnet.at(h, linearize=tangent):
        fast = fnet(y, t, label)
    out, lin = jvp(lambda hh: fnet._apply(fnet.weights(hh), (y, t, label), {}), (h,), (tangent,))
    assert torch.allclose(fast, out + lin, atol=1e-6)

    # a generator without an analytic direction: the one-point path differentiates it with jvp
    class NoDirection(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, hh):
            return self.inner(hh)

    with FunctionalNetwork(net, NoDirection(response)).eval().at(h, linearize=tangent) as other:
        assert torch.allclose(other(y, t, label), fast, atol=1e-6)
    # the gradient reaches the response parameters and the tangent alike
    tangent.requires_grad_(True)
    with fnet.at(h, linearize=tangent):
        fnet(y, t, label).square().sum().backward()
    assert tangent.grad is not None and response.bottleneck[0].grad is not None


def test_linearised_output_of_a_network_with_several_outputs():
    # beta-vae's network returns (logits, μ, log σ²) of different widths: each output gets its own term.
    from torch.func import jvp

    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.a, self.b = torch.nn.Linear(3, 8), torch.nn.Linear(8, 5), torch.nn.Linear(8, 2)

        def forward(self, x):
            h = torch.tanh(self.body(x))
            return self.a(h), self.b(h)

    torch.manual_seed(2)
    net = TwoHeads()
    response = StructuredResponse(net, 1, torch.Generator().manual_seed(0))
    for v in response.bottleneck:
        torch.nn.init.normal_(v, std=0.3)
    fnet = FunctionalNetwork(net, response)
    x, h, tangent = torch.randn(12, 3), torch.zeros(4, 1), torch.randn(4, 1)
    with fnet.at(h, linearize=tangent):
        a, b = fnet(x)
    out, lin = jvp(lambda hh: fnet._apply(fnet.weights(hh), (x,), {}), (h,), (tangent,))
    assert a.shape == (12, 5) and b.shape == (12, 2)
    assert torch.allclose(a, out[0] + lin[0], atol=1e-6) and torch.allclose(b, out[1] + lin[1], atol=1e-6)


def test_lambda_axis_round_trips_and_stays_in_range():
    task = make_task("noisy-regression", cache=TargetCache())
    axis = LambdaAxis(task.hyperparameters.axis, 0.1, 10.0)
    assert axis.s_of_lam(0.1) == pytest.approx(-1) and axis.s_of_lam(10.0) == pytest.approx(1)
    assert axis.s_of_lam(1.0) == pytest.approx(0, abs=1e-6)
    lam, s = axis.perturbed(torch.tensor(0.0), torch.tensor(50.0), 1000, torch.Generator().manual_seed(0))
    assert lam.min() >= task.hyperparameters.axis.low and lam.max() <= task.hyperparameters.axis.high
    t = axis.t_of_s(s)
    assert torch.allclose(axis.lam(t), lam)


# ------------------------------------------------------------------------------ harness


def test_best_response_surrogates_skip_tasks_without_a_loss_and_record_costs(tmp_path):
    summary = run(
        tasks=["gaussian-path", "noisy-regression[epochs=20]"],
        surrogates=["hypernetwork[epochs=2]", "mccann"],
        seeds=[0],
        results_dir=tmp_path,
        progress=False,
    )
    rows = summary.results
    skipped = rows[(rows.task == "gaussian-path") & (rows.surrogate.str.startswith("hypernetwork"))]
    assert (skipped.status == "skipped").all() and skipped.error.str.contains("training loss").all()
    trained = rows[rows.task.str.startswith("noisy-regression")]
    assert (trained.status == "ok").all()
    assert (trained.anchor_train_seconds > 0).all()
    assert rows[rows.task == "gaussian-path"].anchor_train_seconds.isna().all()
    board = summary.leaderboard.set_index(["task", "surrogate"])
    assert bool(board.loc[("noisy-regression[epochs=20]", "hypernetwork[epochs=2]"), "uses_training_loss"])
    assert not bool(board.loc[("noisy-regression[epochs=20]", "mccann"), "uses_training_loss"])


@pytest.mark.parametrize(
    "spec, match",
    [
        ("hypernetwork[lambda_draws=500]", "lambda_draws must be between 1 and batch_size"),
        ("hypernetwork[epochs=0]", "epochs must be > 0"),
        ("hypernetwork[rank=0]", "rank must be ≥ 1"),
        ("hypernetwork[rank=100000000]", "output-layer parameters"),
        ("stn[center=50.0]", r"center=50.0 must lie in the anchor range"),
        ("stn[sigma0=0]", "sigma0 must be > 0"),
        ("delta-stn[sample_response=linaer]", "Did you mean 'linear'"),
        ("anchored-delta-stn[blend=mccan]", "Did you mean 'mccann'"),
        ("anchored-delta-stn[spread=-1]", "spread must be > 0"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(ridge, spec, match):
    task, anchors = ridge
    with pytest.raises(ConfigError, match=match):
        make_surrogate(spec).fit(anchors, TaskView(task, BEST_RESPONSE), seed=0)


def test_fit_without_a_trained_task_says_what_it_needs():
    task = make_task("gaussian-path")
    anchors = build_anchor_set(task, seed=0)
    with pytest.raises(ConfigError, match="needs a trained task"):
        make_surrogate("stn").fit(anchors, None)
    assert "training loss" in make_surrogate("stn").skip(task)
