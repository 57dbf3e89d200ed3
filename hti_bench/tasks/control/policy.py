"""A policy as a target network, and PPO training with stable-baselines3.

The target network of a policy task is :class:`PolicyNetwork`: the actor of a stable-baselines3 PPO
``MlpPolicy`` (an MLP to the mean of a diagonal Gaussian, a state-independent log standard deviation),
with the observation normalisation it was trained under frozen into buffers, and the action bounds.
It is a plain ``nn.Module`` so that the target cache stores its state dict like any target's, and the
surrogates that read anchor networks (``weight-interpolation``) can. Its output distribution at a
state is what the policy executes: a Gaussian draw clipped to the action bounds (what
stable-baselines3 does when it acts).

:func:`train_ppo` trains it: stable-baselines3's ``PPO`` with its defaults unless a task overrides
them, on a vectorised environment the task builds, optionally behind ``VecNormalize`` of the observations (its
running statistics become the network's buffers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


class PolicyNetwork(nn.Module):
    """A Gaussian policy π(a | s): normalise s, MLP (tanh) → mean; log σ a parameter; clip a to bounds."""

    def __init__(
        self, obs_dim: int, low: Sequence[float], high: Sequence[float], hidden: Sequence[int] = (64, 64)
    ) -> None:
        super().__init__()
        act_dim = len(low)
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.Tanh()]
            width = int(h)
        self.body = nn.Sequential(*layers)
        self.mean = nn.Linear(width, act_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_var", torch.ones(obs_dim))
        self.register_buffer("obs_clip", torch.tensor(math.inf))
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def normalise(self, obs: Tensor) -> Tensor:
        """The observation as the policy was trained on it (VecNormalize's ε = 1e-8)."""
        z = (obs - self.obs_mean) / torch.sqrt(self.obs_var + 1e-8)
        return z.clamp(-self.obs_clip, self.obs_clip)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log σ), each (B, A), of the unclipped Gaussian at each observation row."""
        mean = self.mean(self.body(self.normalise(obs.float())))
        return mean, self.log_std.expand_as(mean)

    @torch.no_grad()
    def act(self, obs: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n executed actions per observation row, (B, n, A): Gaussian draws clipped to the bounds."""
        mean, log_std = self(obs)
        eps = torch.randn(mean.shape[0], int(n), mean.shape[1], generator=generator)
        a = mean[:, None, :] + log_std.exp()[:, None, :] * eps
        return torch.maximum(torch.minimum(a, self.high), self.low)


def from_sb3(model: Any, hidden: Sequence[int], obs_rms: Any = None, clip_obs: float = math.inf) -> PolicyNetwork:
    """The actor of a trained stable-baselines3 PPO ``MlpPolicy`` as a :class:`PolicyNetwork`."""
    policy = model.policy
    space = model.action_space
    net = PolicyNetwork(int(np.prod(model.observation_space.shape)), space.low.tolist(), space.high.tolist(), hidden)
    linears = [m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    ours = [m for m in net.body if isinstance(m, nn.Linear)]
    if len(linears) != len(ours):
        raise ValueError(f"the PPO actor has {len(linears)} hidden layers, the policy network {len(ours)}")
    with torch.no_grad():
        for src, dst in zip(linears, ours):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        net.mean.weight.copy_(policy.action_net.weight)
        net.mean.bias.copy_(policy.action_net.bias)
        net.log_std.copy_(policy.log_std)
        if obs_rms is not None:
            net.obs_mean.copy_(torch.as_tensor(obs_rms.mean, dtype=torch.float32))
            net.obs_var.copy_(torch.as_tensor(obs_rms.var, dtype=torch.float32))
            net.obs_clip.fill_(float(clip_obs))
    return net.eval()


def train_ppo(
    make_env: Callable[[int], Any],
    *,
    steps: int,
    seed: int,
    hidden: Sequence[int] = (64, 64),
    normalize: bool = False,
    ppo: dict[str, Any] | None = None,
) -> tuple[PolicyNetwork, dict[str, Any]]:
    """Train a PPO policy for ``steps`` environment steps on ``make_env(seed)`` (a stable-baselines3
    ``VecEnv``), with SB3's PPO defaults updated by ``ppo``; returns the policy and what training did
    (seconds, steps, steps per second)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    env = make_env(int(seed))
    kwargs = dict(ppo or {})
    if normalize:
        # Observations only, clipped at 10: the paper's Reacher policies' statistics (norm_reward False).
        env = VecNormalize(env, norm_obs=True, norm_reward=False, clip_obs=10.0, gamma=float(kwargs.get("gamma", 0.99)))
    policy_kwargs = {"net_arch": {"pi": list(hidden), "vf": list(hidden)}}
    model = PPO("MlpPolicy", env, seed=int(seed), device="cpu", verbose=0, policy_kwargs=policy_kwargs, **kwargs)
    start = time.perf_counter()
    model.learn(total_timesteps=int(steps), progress_bar=False)
    seconds = time.perf_counter() - start
    net = from_sb3(model, hidden, env.obs_rms if normalize else None, 10.0 if normalize else math.inf)
    env.close()
    done = int(model.num_timesteps)
    return net, {"ppo_seconds": seconds, "ppo_steps": done, "steps_per_second": done / max(seconds, 1e-9)}
