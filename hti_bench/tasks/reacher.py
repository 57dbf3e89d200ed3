"""``reacher``: PPO policies for MuJoCo's two-joint Reacher arm, λ = the weight of the control cost in the
reward (the HTI paper's Reacher experiment).

Environment: gymnasium's ``Reacher-v4`` (the version the paper used; gymnasium 1.4 still ships it,
with the ``mujoco`` package from PyPI): an 11-D observation (joint cosines and sines, the target, joint
velocities, fingertip − target), a 2-D torque in [−1, 1]², 50 steps an episode. Reward
``reward_dist + λ·reward_ctrl`` from the environment's own terms (−‖fingertip − target‖ before the
step, −‖a‖² of the action), the paper's wrapper; λ ∈ [1, 5], anchors 1 and 5, held-out 2, 3, 4 (the
paper's), validation 1.5 and 4.5 for tuning (two anchors leave none to leave out).

``Reacher-v5`` differs (distance after the step, a 10-D observation, its own weights); v4 is used so the
numbers read like the paper's. Targets: PPO behind ``VecNormalize`` (observations only, clipped at
10, as the paper's policies), whose statistics freeze into the policy network. Conditions: the
states of episodes driven by the λ = 1 anchor policy's mean action (the paper's data collection).
Outputs: the executed torque at the state (D = 2). Closed-loop metric: the shaped return of episodes
driven by the surrogate (:class:`~hti_bench.tasks.control.base.PolicyTask`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from hti_bench.clock import Clock, HyperparameterSpace, Point
from hti_bench.errors import ConfigError
from hti_bench.task import option
from hti_bench.tasks.control.base import PolicyTask, PolicyTaskConfig

ENV_ID = "Reacher-v4"


@dataclasses.dataclass(frozen=True)
class ReacherConfig(PolicyTaskConfig):
    anchors: tuple[float, ...] = option((1.0, 5.0), "Anchor control-cost weights λ (the paper's).")
    heldout: tuple[float, ...] = option((2.0, 3.0, 4.0), "Held-out control-cost weights (the paper's).", cache=False)
    validation: tuple[float, ...] = option(
        (1.5, 4.5), "Validation λ for tuning (two anchors leave none to leave out).", cache=False
    )
    n_samples: int = option(100, "Torques drawn per state.", cache=False)
    ppo_steps: int = option(200_000, "Environment steps of PPO training per target policy.")
    gamma: float = option(
        0.9, "PPO discount factor γ (rl-baselines3-zoo's tuned Reacher value; see the module docstring)."
    )
    ppo_n_steps: int = option(512, "PPO rollout length per environment (n_steps; the batch is n_envs × it).")
    behaviour_episodes: int = option(
        20, "Episodes driven by the λ = 1 anchor policy to collect the evaluation states.", cache=False
    )


class Reacher(PolicyTask):
    name: ClassVar[str] = "reacher"
    description: ClassVar[str] = (
        "PPO policies for MuJoCo Reacher-v4; λ = weight of the control cost in the reward; closed-loop return."
    )
    Config = ReacherConfig
    obs_dim: ClassVar[int] = 11
    action_low: ClassVar[tuple[float, ...]] = (-1.0, -1.0)
    action_high: ClassVar[tuple[float, ...]] = (1.0, 1.0)
    normalize: ClassVar[bool] = True
    requires_packages: ClassVar[tuple[str, ...]] = ("stable_baselines3", "gymnasium", "mujoco")
    behaviour_anchor: ClassVar[int] = 0
    behaviour_action: ClassVar[str] = "mean"

    def __init__(self, *, cache: Any = None, **overrides: Any) -> None:
        super().__init__(cache=cache, **overrides)
        gamma = self.config.gamma
        if not (isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and 0.0 < float(gamma) <= 1.0):
            raise ConfigError(f"task 'reacher': gamma must be a discount factor in (0, 1], got {gamma!r}")

    hyperparameters: ClassVar[HyperparameterSpace] = HyperparameterSpace.single(
        "control_weight", 0.0, 10.0, Clock.IDENTITY
    )

    def ppo_kwargs(self) -> dict[str, Any]:
        return {**super().ppo_kwargs(), "gamma": float(self.config.gamma)}

    def vec_env(self, lam: Point, seed: int) -> Any:
        (lam,) = self.hyperparameters.check(lam)
        from stable_baselines3.common.vec_env import DummyVecEnv

        env = DummyVecEnv([lambda: _shaped_env(float(lam))] * int(self.config.n_envs))
        env.seed(int(seed))
        return env

    def episodes(self, lam: Point) -> _Episodes:
        self.check_packages()
        return _Episodes(self.hyperparameters.check(lam)[0])


def _shaped_env(lam: float) -> Any:
    """``Reacher-v4`` whose reward is reward_dist + λ·reward_ctrl (the paper's wrapper)."""
    import gymnasium as gym

    class ControlWeighted(gym.Wrapper):
        def step(self, action):
            obs, _, terminated, truncated, info = self.env.step(action)
            return obs, float(info["reward_dist"] + lam * info["reward_ctrl"]), terminated, truncated, info

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium flags v4 as superseded by v5; v4 is the paper's
        return ControlWeighted(gym.make(ENV_ID))


class _Episodes:
    """E Reacher episodes stepped together (MuJoCo steps in microseconds; a loop over envs is enough)."""

    def __init__(self, lam: float) -> None:
        self.lam = lam
        self.envs: list[Any] = []

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        while len(self.envs) < len(seeds):
            self.envs.append(_shaped_env(self.lam))
        self.envs = self.envs[: len(seeds)]
        self.done = np.zeros(len(seeds), dtype=bool)
        self.obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(self.envs, seeds)]).astype(np.float32)
        return self.obs.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        actions = np.asarray(actions, dtype=np.float64)
        reward = np.zeros(len(self.envs))
        for i in np.flatnonzero(~self.done):
            obs, r, terminated, truncated, _ = self.envs[i].step(actions[i])
            self.obs[i] = obs
            reward[i] = r
            self.done[i] = terminated or truncated
        return self.obs.copy(), reward, self.done.copy()
