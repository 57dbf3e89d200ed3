"""The ``reacher`` task: gymnasium's MuJoCo Reacher-v4 with the paper's control-weighted reward, PPO
targets behind VecNormalize, and its closed loop. Tiny budgets."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from hti_bench.errors import ConfigError
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import evaluate
from support import TINY_POLICY

pytest.importorskip("mujoco")
pytest.importorskip("stable_baselines3")

from hti_bench.tasks.reacher import ENV_ID, Reacher  # noqa: E402

TINY = dict(TINY_POLICY, anchors=(1.0, 5.0), heldout=(3.0,), ppo_steps=256)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return Reacher(cache=TargetCache(tmp_path_factory.mktemp("reacher-cache")), **TINY)


def test_the_reward_is_the_distance_reward_plus_lambda_times_the_control_reward(task):
    import gymnasium as gym

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = gym.make(ENV_ID)
    plain.reset(seed=7)
    actions = np.array([[0.5, -0.3], [1.5, 0.2], [0.0, 0.0]])  # the second is outside the box: MuJoCo clamps it
    infos = [plain.step(a)[4] for a in actions]
    for lam in (0.0, 1.0, 4.0):
        env = task.episodes(lam)
        env.reset([7])
        for a, info in zip(actions, infos):
            _, reward, _ = env.step(a[None])
            assert reward[0] == pytest.approx(info["reward_dist"] + lam * info["reward_ctrl"], abs=1e-12)


def test_episodes_last_50_steps_and_repeat_with_their_seeds(task):
    env = task.episodes(1.0)
    first = env.reset([0, 1, 2])
    assert first.shape == (3, 11) and np.allclose(env.reset([0, 1, 2]), first)
    assert not np.allclose(first[0], first[1])
    for t in range(50):
        _, _, ended = env.step(np.zeros((3, 2)))
        assert ended.all() == (t == 49)


def test_bad_options_give_clear_errors(task):
    with pytest.raises(ConfigError, match="gamma must be a discount factor"):
        Reacher(gamma=1.5)
    with pytest.raises(ConfigError, match="n_envs must be a positive integer"):
        Reacher(n_envs=0)
    with pytest.raises(ConfigError, match="outside the task's range"):
        Reacher(heldout=(12.0,))


def test_targets_carry_their_observation_normalisation_and_the_closed_loop_runs(task):
    net = task.network(1.0)
    assert not torch.allclose(net.obs_var, torch.ones(11)), "VecNormalize's statistics froze into the policy"
    assert float(net.obs_clip) == 10.0
    conds = task.eval_conditions()
    assert conds.shape[1] == 11 and conds.shape[0] >= 10
    (row,) = evaluate(task, "mccann", seed=0).rows
    assert row["status"] == "ok", row["error"]
    assert math.isfinite(row["metric_return"]) and math.isfinite(row["ref_metric_return"])
    assert row["metric_episode_steps"] == row["ref_metric_episode_steps"] == 50


@pytest.mark.slow  # a minute of PPO on 2 cores: the quick tests above cover the task's plumbing
def test_on_a_small_budget_policies_beat_random_and_lambda_changes_their_behaviour(tmp_path):
    """40k PPO steps (≈ 15 s a policy): both anchors' policies score far above uniform random torques,
    and the λ = 5 policy spends less control effort than the λ = 1 policy. At the default 2·10⁵
    steps the effort falls ≈ 6× from λ = 1 to λ = 5."""
    task = Reacher(
        cache=TargetCache(tmp_path),
        ppo_steps=40_960,
        anchors=(1.0, 5.0),
        heldout=(3.0,),
        behaviour_episodes=2,
        closed_loop_episodes=8,
    )

    def split(act):
        at1 = task.closed_loop_metrics(1.0, act, seed=0)["return"]
        at5 = task.closed_loop_metrics(5.0, act, seed=0)["return"]
        effort = (at1 - at5) / 4.0  # Σ‖a‖² over the episode (the same episodes at both λ)
        return at1, effort

    gen = torch.Generator().manual_seed(0)
    random1, _ = split(lambda s, n, sd: (torch.rand(s.shape[0], 1, 2, generator=gen) * 2 - 1).expand(-1, n, -1))
    (ret1, effort1), (ret5, effort5) = (
        split(lambda s, n, sd, lam=lam: task.sample(lam, s, n, sd)) for lam in (1.0, 5.0)
    )
    assert random1 < -30
    assert min(ret1, ret5) > random1 + 20, (ret1, ret5, random1)
    assert 0 < effort5 < 0.9 * effort1, (effort1, effort5)
