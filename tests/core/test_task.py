"""Task definitions: clocks, config validation, the semicircle density, the trained moons task."""

import math

import numpy as np
import pytest
import torch

from hti_bench.clock import Clock, Hyperparameter
from hti_bench.errors import ConfigError
from hti_bench.tasks.gaussian_path import GaussianPath
from hti_bench.tasks.semicircles import Semicircles
from hti_bench.testing.surrogates import tiny_moons_dropout


@pytest.mark.parametrize("clock, lam", [(Clock.IDENTITY, -2.5), (Clock.LOG, 0.03), (Clock.LOGIT, 0.9)])
def test_clock_round_trip(clock, lam):
    assert clock.from_time(clock.to_time(lam)) == pytest.approx(lam)


def test_clock_domain_errors():
    with pytest.raises(ValueError, match="log clock needs"):
        Clock.LOG.to_time(0.0)
    with pytest.raises(ConfigError, match="cannot use the logit clock"):
        Hyperparameter("penalty", 0.0, 10.0, Clock.LOGIT)
    with pytest.raises(ConfigError, match="cannot use the log clock"):
        Hyperparameter("shift", -1.0, 1.0, Clock.LOG)
    with pytest.raises(ConfigError, match="Unknown clock 'lin'"):
        Clock.parse("lin")


def test_a_clock_singular_at_a_range_end_reads_it_clipped():
    hp = Hyperparameter("dropout", 0.0, 0.99, Clock.LOGIT)
    assert hp.clip_low == pytest.approx(0.00099) and hp.clip_high == 0.99
    assert hp.to_time(0.0) == pytest.approx(math.log(0.00099 / (1 - 0.00099)))
    assert hp.to_time(0.5) == 0.0 and hp.from_time(50.0) == 0.99  # from_time stays inside the range
    both = Hyperparameter("t", 0.0, 1.0, Clock.LOGIT)
    assert both.to_time(1.0) == pytest.approx(-both.to_time(0.0))
    assert Hyperparameter("penalty", 0.0, 10.0).clocks() == (Clock.IDENTITY, Clock.LOG)
    assert Hyperparameter("t", 0.0, 1.0).clocks() == (Clock.IDENTITY, Clock.LOG, Clock.LOGIT)
    assert hp.with_clock("identity").to_time(0.3) == 0.3


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"anchors": (0.0,)}, "at least 2 anchors"),
        ({"anchors": (0.5, 0.0)}, "strictly increasing"),
        ({"heldout": (1.5,)}, "outside the task's range"),
        ({"heldout": (0.5,)}, "is also an anchor"),
        ({"anchors": (0.0, 0.5), "heldout": (0.75,)}, "strictly between"),
        ({"n_samples": 0}, "n_samples"),
    ],
)
def test_bad_lambda_configs_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Semicircles(**overrides)


def test_spec_shows_only_changed_options():
    assert Semicircles().spec == "semicircles"
    assert Semicircles(n_samples=50).spec == "semicircles[n_samples=50]"


def test_semicircle_true_samples_score_the_paper_sanity_values():
    # Perfect samples give NLL ≈ H_vM(κ=5) + H_LogN(σ=0.05) ≈ 0.676 − 1.577 ≈ −0.90 (the entropies of the
    # angle and the radius) and C.D. ≈ 0.05·√(2/π) ≈ 0.040 (the mean |log-normal radius − 1|)
    task = Semicircles()
    conds = task.eval_conditions()
    for t in (0.25, 0.75):
        y = task.sample(t, conds, 4000, seed=1)
        m = task.metrics(t, conds, y)
        assert m["nll"] == pytest.approx(-0.90, abs=0.03)
        assert m["circle_distance"] == pytest.approx(0.05 * math.sqrt(2 / math.pi), abs=0.003)


def test_semicircle_density_integrates_to_one():
    task = Semicircles()
    g = np.linspace(-2.5, 2.5, 501)
    xx, yy = np.meshgrid(g, g)
    pts = torch.tensor(np.stack([xx.ravel(), yy.ravel()], -1))
    for cls in range(4):
        logp = task.log_density(0.3, torch.tensor([[float(cls)]]), pts[None])
        mass = float(torch.exp(logp).sum()) * (g[1] - g[0]) ** 2
        assert mass == pytest.approx(1.0, abs=0.01)


def test_semicircle_classes_start_at_origin_and_fan_out():
    task = Semicircles()
    y0 = task.sample(0.0, task.eval_conditions(), 500, seed=0).mean(1)
    assert torch.allclose(y0, torch.zeros(4, 2), atol=0.15)  # E[cos] = I1(5)/I0(5) ≈ 0.89
    y1 = task.sample(1.0, task.eval_conditions(), 500, seed=0).mean(1)
    # t = 1: classes 0/1 at (−2, 0) and classes 2/3 at (2, 0), up to the von Mises spread
    assert y1[0, 0] < -1.5 and y1[2, 0] > 1.5


def test_gaussian_path_moments():
    task = GaussianPath()
    y = task.sample(0.5, task.eval_conditions(), 20000, seed=0)
    mean, scale = task.moments(0.5, task.eval_conditions())
    assert torch.allclose(y.mean(1), mean, atol=0.02)
    assert torch.allclose(y.std(1).mean(-1), scale, atol=0.02)


def test_moons_dropout_exposes_a_per_example_lambda_loss(tiny_moons):
    net = tiny_moons.build_network().train()
    data = tiny_moons.training_data()
    batch = (data[0][:64], data[1][:64])
    torch.manual_seed(0)
    loss = tiny_moons.per_example_loss(net, batch, torch.linspace(0.0, 0.9, 64))
    assert loss.shape == (64,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_moons_dropout_trains_caches_and_samples(tmp_path):
    # A cache of its own: other tests may already have trained the session cache's λ = 0.5 network.
    task = tiny_moons_dropout(epochs=2, n_samples=32, cache_dir=str(tmp_path))
    cache = task.cache
    trained_before = cache.trained
    y = task.sample(0.5, task.eval_conditions(), 40, seed=0)
    assert y.shape == (2, 40, 2) and torch.isfinite(y).all()
    assert torch.equal(y, task.sample(0.5, task.eval_conditions(), 40, seed=0))
    assert cache.trained == trained_before + 1


def test_default_validation_gives_way_to_chosen_lambdas_but_explicit_validation_is_checked():
    from hti_bench.errors import ConfigError
    from hti_bench.tasks.moons_dropout import MoonsDropout

    assert MoonsDropout().validation == ((0.25,), (0.75,))
    # a held-out λ chosen on the default validation λ drops that one, not the user's choice
    assert MoonsDropout(heldout=(0.25, 0.7)).validation == ((0.75,),)
    assert MoonsDropout(anchors=(0.0, 0.3, 0.6), heldout=(0.1,)).validation == ((0.25,),)
    with pytest.raises(ConfigError, match="validation dropout=0.25 is also an anchor or a held-out"):
        MoonsDropout(heldout=(0.25, 0.7), validation=(0.25,))
