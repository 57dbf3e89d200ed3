"""Policy targets: a PPO actor copied out of stable-baselines3 acts as SB3's own policy does, and a task
that trains its targets itself (``train_target``) goes through the target cache like any other."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hti_bench.clock import Point
from hti_bench.harness.targets import TargetCache
from hti_bench.tasks.control.policy import PolicyNetwork, train_ppo
from hti_bench.tasks.noisy_regression import NoisyRegression


def _pendulum(seed: int):
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env("Pendulum-v1", n_envs=2, seed=seed)


@pytest.mark.parametrize("normalize", [False, True])
def test_the_copied_actor_is_sb3s_policy(normalize):
    from stable_baselines3 import PPO

    captured = {}

    def make(seed):
        env = _pendulum(seed)
        captured["env"] = env
        return env

    net, info = train_ppo(
        make,
        steps=256,
        seed=0,
        hidden=(16, 16),
        normalize=normalize,
        ppo={"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    )
    assert info["ppo_steps"] >= 256 and info["steps_per_second"] > 0
    obs = torch.randn(32, 3) * 2
    mean, log_std = net(obs)
    # Rebuild SB3's policy from the same weights and compare its Gaussian on the normalised input.
    model = PPO("MlpPolicy", _pendulum(0), policy_kwargs={"net_arch": {"pi": [16, 16], "vf": [16, 16]}}, device="cpu")
    with torch.no_grad():
        linears = [m for m in model.policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
        for src, dst in zip([m for m in net.body if isinstance(m, nn.Linear)], linears):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        model.policy.action_net.weight.copy_(net.mean.weight)
        model.policy.action_net.bias.copy_(net.mean.bias)
        model.policy.log_std.copy_(net.log_std)
        dist = model.policy.get_distribution(net.normalise(obs)).distribution
    assert torch.allclose(mean, dist.mean, atol=1e-6)
    assert torch.allclose(log_std.exp(), dist.stddev, atol=1e-6)
    if normalize:
        assert not torch.allclose(net.obs_var, torch.ones(3)) and math.isclose(float(net.obs_clip), 10.0)
    else:
        assert torch.equal(net.normalise(obs), obs)
    actions = net.act(obs, 50, torch.Generator().manual_seed(0))
    assert actions.shape == (32, 50, 1)
    assert float(actions.min()) >= -2.0 and float(actions.max()) <= 2.0  # clipped to Pendulum's bounds


def test_policy_network_state_dict_round_trips():
    a = PolicyNetwork(3, [-1.0, 0.0], [1.0, 8.0], (8,))
    b = PolicyNetwork(3, [-1.0, 0.0], [1.0, 8.0], (8,))
    b.load_state_dict(a.state_dict())
    obs = torch.randn(4, 3)
    assert torch.equal(a(obs)[0], b(obs)[0])


class SelfTrained(NoisyRegression):
    """A task whose targets come from its own learner (as PPO policies do), not from the Lightning loop."""

    name = "self-trained-test"
    calls: list[tuple[float, int]] = []

    def train_target(self, lam: Point, seed: int) -> nn.Module:
        (value,) = self.hyperparameters.check(lam)
        type(self).calls.append((value, seed))
        net = self.build_network()
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(value)
        return net.eval()


def test_the_cache_trains_through_train_target_and_keeps_the_result(tmp_path):
    SelfTrained.calls.clear()
    task = SelfTrained(cache=TargetCache(tmp_path), epochs=1)
    net = task.network(1.0)
    assert SelfTrained.calls == [(1.0, 0)]
    assert all(torch.all(p == 1.0) for p in net.parameters())
    again = SelfTrained(cache=TargetCache(tmp_path), epochs=1).network(1.0)  # a fresh process's view
    assert SelfTrained.calls == [(1.0, 0)], "a cached target was trained again"
    assert all(torch.all(p == 1.0) for p in again.parameters())
