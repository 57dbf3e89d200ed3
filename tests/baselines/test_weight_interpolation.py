"""weight-interpolation: the anchor network at each anchor, the ridge closed form in between, weight matching
that undoes a planted permutation, and the skip on tasks without networks."""

import pytest
import torch

from hti_bench.errors import ConfigError
from hti_bench.harness.registry import make_surrogate, make_task
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import build_anchor_set
from hti_bench.scoring import per_condition_wasserstein
from hti_bench.tasks.beta_vae import BetaVAE
from hti_bench.toolkit.weights import Group, hidden_groups, permute, verified_groups, weight_matching
from hti_bench.view import TaskView

ARCH = frozenset({"architecture"})


@pytest.fixture(scope="module")
def ridge(tmp_path_factory):
    import os

    os.environ["HTI_BENCH_CACHE"] = str(tmp_path_factory.mktemp("ridge-cache"))
    task = make_task("noisy-regression", cache=TargetCache())
    return task, build_anchor_set(task, seed=0)


def test_on_the_ridge_task_its_error_is_the_closed_form_one(ridge):
    """The best response is w*(λ) = (XᵀX/N + λI)⁻¹Xᵀy/N, so interpolating the anchors' weights on the
    clock errs by |x·((1 − s)w*(λ_k) + s w*(λ_k+1) − w*(λ))| at each input x: the measured W₂ must be
    that, up to how far the trained networks themselves are from w* (the triangle inequality's slack)."""
    task, anchors = ridge
    x = task.eval_conditions()

    def off(lam):  # |x·(w_trained(λ) − w*(λ))| per input: how far the trained network is from w*
        return (x @ (task.network(lam).weight[0].detach() - task.best_response(lam))).abs()

    for spec in ("weight-interpolation", "weight-interpolation[path=spherical]"):
        surrogate = make_surrogate(spec).fit(anchors, TaskView(task, ARCH), seed=0)
        for lam in task.heldout:
            k, s = anchors.locate(lam)
            lo, hi = anchors.lambdas[k], anchors.lambdas[k + 1]
            interp = (1 - s) * task.best_response(lo) + s * task.best_response(hi)
            closed_form = float((x @ (interp - task.best_response(lam))).abs().mean())
            slack = float(((1 - s) * off(lo) + s * off(hi) + off(lam)).mean())
            measured = float(
                per_condition_wasserstein(surrogate.sample(lam, x, 8, 0), task.sample(lam, x, 8, 0)).mean()["w2"]
            )
            assert closed_form > 3 * slack  # the test can tell the two apart
            assert abs(measured - closed_form) <= slack, (
                f"{spec} at λ={lam}: {measured:.4f} vs closed form {closed_form:.4f}"
            )


def test_at_each_anchor_it_is_that_anchor_network(tiny_moons):
    anchors = build_anchor_set(tiny_moons, seed=0)
    conds = tiny_moons.eval_conditions()
    for spec in ("weight-interpolation", "weight-interpolation[align=True,path=spherical]"):
        surrogate = make_surrogate(spec).fit(anchors, TaskView(tiny_moons, ARCH), seed=0)
        for lam in tiny_moons.anchors:
            want = tiny_moons.sample_network(tiny_moons.network(lam), conds, 16, torch.Generator().manual_seed(3))
            assert torch.equal(surrogate.sample(lam, conds, 16, seed=3), want), f"{spec} at λ={lam}"


def test_weight_matching_undoes_a_planted_permutation(tiny_moons):
    net = tiny_moons.network(0.5)
    conds = tiny_moons.eval_conditions()

    def probe(network):
        return tiny_moons.sample_network(network, conds, 2, torch.Generator().manual_seed(0))

    groups = verified_groups(tiny_moons.build_network().eval(), probe)
    assert [(g.producer, g.consumer) for g in groups] == [("l1", "l2"), ("l2", "l3")]
    a = {k: v.detach().clone() for k, v in net.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    b = permute(a, groups, {g: torch.randperm(g.size, generator=gen) for g in groups})
    assert not torch.equal(b["l1.weight"], a["l1.weight"])
    aligned = permute(b, groups, weight_matching(a, b, groups))
    assert all(torch.equal(aligned[k], a[k]) for k in a)


def test_only_layers_that_feed_each_other_are_permuted():
    vae = BetaVAE().build_network()
    # enc: 64 → h → 2·latent, dec: latent → h → 64; the encoder's output feeds the decoder only
    # through the reparameterisation, so it is not a candidate.
    assert hidden_groups(vae) == [
        Group("enc.0", "enc.2", vae.enc[0].out_features),
        Group("dec.0", "dec.2", vae.dec[0].out_features),
    ]


def test_tasks_without_networks_are_skipped_with_the_reason():
    reason = make_surrogate("weight-interpolation").skip(TaskView(make_task("gaussian-path"), ARCH))
    assert reason and "architecture" in reason


@pytest.mark.parametrize(
    "spec, match",
    [
        ("weight-interpolation[path=lineer]", "Did you mean 'linear'"),
        ("weight-interpolation[align=3]", "True or False"),
    ],
)
def test_bad_options_list_the_choices(spec, match):
    with pytest.raises(ConfigError, match=match):
        make_surrogate(spec).validate_params()
