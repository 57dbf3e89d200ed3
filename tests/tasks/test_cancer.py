"""The ``cancer`` task: PPO targets through the cache, behaviour-policy conditions, and the closed-loop
metric the harness computes with it (ceiling, nearest anchor, skip and failure paths). Tiny budgets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hti_bench.errors import ConfigError, LeakError, OpenConditionError
from hti_bench.harness.registry import make_task
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import draw_inputs, evaluate
from hti_bench.surrogate import Surrogate
from hti_bench.tasks.cancer import Cancer
from hti_bench.tasks.control.ghaffari import GhaffariBatch, Noise, nk_penalty
from hti_bench.view import TaskView
from support import TINY_POLICY

pytest.importorskip("stable_baselines3")

#: PPO runs one 2 × 64-step rollout: enough to exercise training and the cache, not to learn.
TINY = dict(TINY_POLICY, anchors=(0.0, 10.0), heldout=(5.0,), ppo_steps=128, max_days=12)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return TargetCache(tmp_path_factory.mktemp("cancer-cache"))


@pytest.fixture(scope="module")
def task(cache):
    return Cancer(cache=cache, **TINY)


class HeldOutPolicy(Surrogate):
    """Test-only cheat: samples the held-out target itself (the harness's task, closed over)."""

    name = "held-out-policy"

    def __init__(self, *, task=None, nan_at_new_states=False, refuse_new_states=False):
        self.task = task
        self.nan_at_new_states = nan_at_new_states
        self.refuse_new_states = refuse_new_states

    def fit(self, anchors, task=None, *, seed=0):
        self.anchors_ = anchors
        return self

    def sample(self, lam, conditions, n, seed):
        new = bool((self.anchors_.lookup(conditions) < 0).any())
        if new and self.refuse_new_states:
            raise OpenConditionError("this surrogate answers at the anchor states only")
        out = self.task.sample(lam, conditions, n, seed)
        return out * math.nan if new and self.nan_at_new_states else out


def test_the_shaped_reward_is_the_base_reward_plus_lambda_times_the_nk_penalty(task):
    seeds, actions = [3, 4], np.array([[1.0, 1.0], [0.5, 0.0]])
    plain = GhaffariBatch(Noise(), 12)
    plain.reset(seeds)
    obs, base, _, _ = plain.step(actions)
    for lam in (0.0, 2.5, 10.0):
        env = task.episodes(lam)
        env.reset(seeds)
        _, shaped, _ = env.step(actions)
        assert np.allclose(shaped, base + lam * nk_penalty(obs, plain.first_obs))


def test_bad_options_give_clear_errors(cache):
    with pytest.raises(ConfigError, match="obs_noise.*\\[0, 1\\]|noise level 'obs'"):
        Cancer(cache=cache, obs_noise=2.0)
    with pytest.raises(ConfigError, match="max_days must be a positive integer"):
        Cancer(cache=cache, max_days=0)
    with pytest.raises(ConfigError, match="closed_loop_action.*mean"):
        Cancer(cache=cache, closed_loop_action="meen")
    with pytest.raises(ConfigError, match="ppo_steps must be a positive integer"):
        Cancer(cache=cache, ppo_steps=0)
    with pytest.raises(ConfigError, match="option for task 'cancer'.*obs_noise"):
        make_task("cancer[obs_nois=0.1]")
    with pytest.raises(ConfigError, match="outside the task's range"):
        Cancer(cache=cache, heldout=(11.0,))


def test_a_missing_package_is_named_with_the_install_step(cache, monkeypatch):
    task = Cancer(cache=cache, **TINY)
    monkeypatch.setattr(Cancer, "requires_packages", ("stable_baselines3", "not_a_real_package_xyz"))
    with pytest.raises(ConfigError, match="needs not_a_real_package_xyz: install .*rl extra"):
        task.train_target(0.0, 0)


def test_targets_are_ppo_policies_kept_by_the_cache(task, cache):
    net = task.network(0.0)
    assert cache.trained >= 1
    again = Cancer(cache=cache, **TINY).network(0.0)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    out = task.sample(0.0, task.eval_conditions(), 5, seed=0)
    low, high = torch.tensor(task.action_low), torch.tensor(task.action_high)
    assert out.shape == (task.eval_conditions().shape[0], 5, 2)
    assert ((out >= low) & (out <= high)).all(), "executed actions are clipped to the action box"


def test_conditions_are_the_behaviour_policys_states(task):
    conds = task.eval_conditions()
    states = task.behaviour_states()
    assert conds.shape[1] == 7 and 1 <= conds.shape[0] <= TINY["n_conditions"]
    assert torch.unique(conds, dim=0).shape[0] == conds.shape[0]
    assert all(any(torch.equal(c, s) for s in states) for c in conds)
    assert torch.equal(conds, Cancer(cache=task.cache, **TINY).eval_conditions()), "conditions are reproducible"


def test_the_oracle_answers_at_new_states_and_refuses_held_out_policies(task):
    view = TaskView(task, requires=frozenset({"architecture"}))
    new = task.eval_conditions()[:3] + 0.05
    out = view.anchor_samples(new, 4, seed=0)
    assert out.shape == (2, 3, 4, 2) and torch.isfinite(out).all()
    with pytest.raises(LeakError, match="not an anchor"):
        view.anchor_network(5.0)
    with pytest.raises(LeakError, match="training loss"):
        TaskView(task, requires=frozenset({"training_loss"})).per_example_loss(None, (), torch.zeros(1))


def test_a_rollout_under_the_held_out_policys_own_samples_reproduces_its_return(task):
    inputs = draw_inputs(task, seed=0)
    result = evaluate(task, HeldOutPolicy(task=task), seed=0, inputs=inputs)
    (row,) = result.rows
    assert row["status"] == "ok", row["error"]
    assert row["metric_return"] == row["ref_metric_return"]
    assert row["metric_episode_steps"] == row["ref_metric_episode_steps"] > 0
    assert math.isfinite(row["nearest_metric_return"]) and row["closed_loop_seconds"] > 0
    # the ceiling is the held-out policy's own closed loop, on the same seeds
    direct = task.closed_loop_metrics(5.0, lambda s, n, sd: task.sample(5.0, s, n, sd), 0)
    assert direct["return"] == row["ref_metric_return"]


def test_a_surrogate_that_cannot_answer_at_new_states_gets_the_metric_skipped_with_its_reason(task):
    (row,) = evaluate(task, HeldOutPolicy(task=task, refuse_new_states=True), seed=0).rows
    assert row["status"] == "ok" and row["w2"] >= 0, "its fixed-state scores still count"
    assert "closed loop skipped" in row["metric_note"] and "anchor states only" in row["metric_note"]
    assert "metric_return" not in row or math.isnan(row["metric_return"])


def test_a_crashed_rollout_becomes_a_failed_row_with_the_reason(task):
    (row,) = evaluate(task, HeldOutPolicy(task=task, nan_at_new_states=True), seed=0).rows
    assert row["status"] == "failed"
    assert "closed loop at nk_weight=5.0" in row["error"] and "not finite" in row["error"]


@pytest.mark.parametrize("name", ["nearest-anchor", "mccann"])
def test_suite_surrogates_drive_the_closed_loop_through_the_oracle_without_held_out_networks(task, name, monkeypatch):
    inputs = draw_inputs(task, seed=0)  # the harness's own use of the held-out policy: references
    real = task.network

    def anchors_only(lam, seed=None):
        if any(math.isclose(task.hyperparameters.check(lam)[0], h[0]) for h in task.heldout):
            raise LeakError(f"held-out λ={lam} reached")
        return real(lam, seed)

    monkeypatch.setattr(task, "network", anchors_only)
    (row,) = evaluate(task, name, seed=0, inputs=inputs).rows
    assert row["status"] == "ok", row["error"]
    assert row["metric_note"] == "" and math.isfinite(row["metric_return"])


def test_on_a_small_budget_policies_beat_random_and_lambda_changes_their_behaviour(tmp_path):
    """16k PPO steps (≈ 7 s a policy): both anchors' policies are far better than random actions, and
    the λ = 10 policy lets the NK cells deviate less than the λ = 0 policy (the behaviour λ rewards).
    At the default 10⁵ steps: base return 119.4 / 119.2, NK penalty sum −3.43 / −1.27 (λ = 0 / 10)."""
    task = Cancer(
        cache=TargetCache(tmp_path), ppo_steps=16_384, anchors=(0.0, 10.0), heldout=(5.0,), closed_loop_episodes=8
    )

    def returns(act):
        base = task.closed_loop_metrics(0.0, act, seed=0)["return"]
        shaped = task.closed_loop_metrics(10.0, act, seed=0)["return"]
        return base, (shaped - base) / 10.0  # the base return and the NK penalty sum of the same episodes

    def policy(lam):
        return lambda s, n, sd: task.sample(lam, s, n, sd)

    gen = torch.Generator().manual_seed(0)

    def uniform(s, n, sd):  # one uniform action per state, whatever the closed loop's averaging
        return (torch.rand(s.shape[0], 1, 2, generator=gen) * torch.tensor([10.0, 8.0])).expand(-1, n, -1)

    random_base, _ = returns(uniform)
    (base0, pen0), (base10, pen10) = returns(policy(0.0)), returns(policy(10.0))
    assert random_base < -80
    assert min(base0, base10) > random_base + 150, (base0, base10, random_base)
    assert pen10 > 0.8 * pen0 and pen10 < 0, (pen0, pen10)  # penalties are ≤ 0: the λ = 10 policy's is smaller
