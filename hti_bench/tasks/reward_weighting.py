"""``reward-weighting``: a stochastic policy for a 2-D point mass, trained with reward
r_task + λ·r_penalty; λ weighs the action (effort) penalty (the HTI paper's reward-weighting
experiments, in an environment written in torch so it trains on CPU in seconds).

Environment: state x = (position p, velocity v, goal g) ∈ ℝ⁶; action a ∈ ℝ² is a force;
v ← v + Δt·a, p ← p + Δt·v, Δt = 0.1, 20 steps. Per step r_task = −‖p − g‖² and r_penalty = −‖a‖².
Policy: a Gaussian π(a | x) = N(μ(x), diag σ(x)²) from an MLP. It is trained by differentiating the
λ-weighted return through the (differentiable) dynamics with reparameterised actions, plus an
entropy bonus that keeps the policy stochastic (a maximum-entropy objective; without it the optimal
policy is deterministic). Each training episode starts from its own state and carries its own λ:
that is the per-example, λ-aware loss.

Output distribution given x: the policy's action distribution at state x (D = 2). Larger λ gives
smaller, more cautious actions. Task metric ``step_reward``: the λ-weighted one-step reward
−‖p' − g‖² − λ‖a‖² of the surrogate's actions executed from each evaluation state (the surrogate
answers at fixed states only, so a full episode under its actions cannot be rolled out).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from hti_bench.clock import Clock, Hyperparameter, HyperparameterSpace, Point
from hti_bench.task import TrainedTask, TrainedTaskConfig, option

DT = 0.1


class GaussianPolicy(nn.Module):
    """x (6) → MLP → (μ, log σ) of a 2-D Gaussian; log σ clamped to [−5, 1]."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(6, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 4)
        )

    def forward(self, state: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.body(state).chunk(2, dim=-1)
        return mean, log_std.clamp(-5.0, 1.0)


def step(state: Tensor, action: Tensor) -> Tensor:
    """One step of the point mass: state (B, 6) = (p, v, g), action (B, 2)."""
    p, v, g = state[:, 0:2], state[:, 2:4], state[:, 4:6]
    v = v + DT * action
    p = p + DT * v
    return torch.cat([p, v, g], dim=1)


@dataclasses.dataclass(frozen=True)
class RewardWeightingConfig(TrainedTaskConfig):
    anchors: tuple[float, ...] = option((0.1, 1.0, 3.0), "Anchor penalty weights λ.")
    heldout: tuple[float, ...] = option((0.3, 0.6, 1.5, 2.2), "Held-out penalty weights.", cache=False)
    n_samples: int = option(200, "Actions sampled per state.", cache=False)
    epochs: int = option(20, "Training epochs (passes over the start states).")
    batch_size: int = option(256, "Episodes per training step.")
    n_train: int = option(2048, "Training episodes' start states.")
    horizon: int = option(20, "Steps per episode.")
    entropy: float = option(0.02, "Entropy bonus weight α (keeps the policy stochastic).")
    hidden: int = option(64, "Hidden width of the policy MLP.")
    n_eval: int = option(24, "Evaluation states.", cache=False)


class RewardWeighting(TrainedTask):
    name: ClassVar[str] = "reward-weighting"
    description: ClassVar[str] = "Gaussian policy for a 2-D point mass; λ = weight of the action penalty in the reward."
    Config = RewardWeightingConfig
    in_default_suite: ClassVar[bool] = False
    hyperparameters: ClassVar[HyperparameterSpace] = HyperparameterSpace.single("penalty", 0.0, 10.0, Clock.IDENTITY)
    output_dim: ClassVar[int] = 2
    condition_dim: ClassVar[int] = 6

    def _states(self, n: int, seed: int, moving: bool) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        p = torch.rand(n, 2, generator=gen) * 2 - 1
        g = torch.rand(n, 2, generator=gen) * 2 - 1
        v = (torch.rand(n, 2, generator=gen) - 0.5) if moving else torch.zeros(n, 2)
        return torch.cat([p, v, g], dim=1)

    def training_data(self) -> Sequence[Tensor]:
        return (self._states(int(self.config.n_train), 0, moving=False),)

    def eval_conditions(self) -> Tensor:
        return self._states(int(self.config.n_eval), 1, moving=True)

    def build_network(self) -> nn.Module:
        return GaussianPolicy(int(self.config.hidden))

    def per_example_loss(self, network: nn.Module, batch: Sequence[Tensor], lam: Tensor) -> Tensor:
        """Negative λ-weighted return of one episode from each start state, minus the entropy bonus."""
        state = batch[0]
        effort_weight, speed_weight = self._weights(lam)
        loss = torch.zeros(state.shape[0], device=state.device)
        for _ in range(int(self.config.horizon)):
            mean, log_std = network(state)
            action = mean + log_std.exp() * torch.randn_like(mean)
            state = step(state, action)
            dist = (state[:, 0:2] - state[:, 4:6]).pow(2).sum(dim=1)
            cost = dist + effort_weight * action.pow(2).sum(dim=1)
            if speed_weight is not None:
                cost = cost + speed_weight * state[:, 2:4].pow(2).sum(dim=1)
            loss = loss + DT * cost - self.config.entropy * DT * log_std.sum(dim=1)
        return loss

    def _weights(self, lam: Tensor) -> tuple[Tensor, Tensor | None]:
        """(effort weight (B,), speed weight (B,) or None) of each example's λ."""
        return lam.reshape(-1), None

    def sample_network(self, network: nn.Module, conditions: Tensor, n: int, generator: torch.Generator) -> Tensor:
        mean, log_std = network(torch.as_tensor(conditions, dtype=torch.float32))
        eps = torch.randn(mean.shape[0], n, 2, generator=generator)
        return mean[:, None, :] + log_std.exp()[:, None, :] * eps

    def metrics(self, lam: Point, conditions: Tensor, samples: Tensor) -> dict[str, float]:
        m, n, _ = samples.shape
        states = conditions.repeat_interleave(n, dim=0)
        actions = samples.reshape(m * n, 2)
        after = step(states, actions)
        effort_weight, speed_weight = self._weights(torch.as_tensor(lam, dtype=torch.float64).reshape(1, -1))
        reward = -(after[:, 0:2] - after[:, 4:6]).pow(2).sum(dim=1) - float(effort_weight[0]) * actions.pow(2).sum(
            dim=1
        )
        if speed_weight is not None:
            reward = reward - float(speed_weight[0]) * after[:, 2:4].pow(2).sum(dim=1)
        return {"step_reward": float(reward.mean())}


@dataclasses.dataclass(frozen=True)
class RewardWeighting2DConfig(RewardWeightingConfig):
    anchors: tuple = option((), "Anchor points (effort, speed); empty: the points of `design`.")
    design: str = option(
        "grid:3x3",
        "Anchor design when `anchors` is empty: grid:<n>x<m> or sobol:<N> (corners included), over the whole box.",
        cache=False,
    )
    heldout: tuple = option(
        ((0.3, 0.5), (0.3, 1.5), (1.0, 0.5), (1.0, 1.5), (0.2, 1.0), (1.8, 1.0)),
        "Held-out points (effort, speed).",
        cache=False,
    )


class RewardWeighting2D(RewardWeighting):
    """Two reward weights at once: r = r_task + λ_effort·r_effort + λ_speed·r_speed, the second
    penalising the point mass's speed −‖v‖² after each step. Effort makes the policy push less;
    speed makes it brake (actions against the current velocity), so the two weights move the action
    distribution in different directions (measured in docs/evidence/leaderboards.md, "Several hyperparameters": effort
    3.5× and speed 1.6× the seed-to-seed floor per grid step)."""

    name: ClassVar[str] = "reward-weighting-2d"
    description: ClassVar[str] = (
        "Gaussian policy for a 2-D point mass; λ = (effort, speed) weights of two reward penalties (2 hyperparameters)."
    )
    Config = RewardWeighting2DConfig

    # Effort on a log clock: the 1-D task's anchors 0.1, 1, 3 already say its effect is logarithmic.
    hyperparameters: ClassVar[HyperparameterSpace] = HyperparameterSpace(
        (Hyperparameter("effort", 0.1, 3.0, Clock.LOG), Hyperparameter("speed", 0.0, 2.0, Clock.IDENTITY))
    )

    def _weights(self, lam: Tensor) -> tuple[Tensor, Tensor | None]:
        lam = lam.reshape(-1, 2)
        return lam[:, 0], lam[:, 1]
