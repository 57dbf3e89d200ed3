"""``cancer``: PPO treatment policies for the Ghaffari cancer model, λ = the weight of the natural-killer
(NK) cell term in the reward (the HTI paper's cancer experiment).

Environment: DTRGym's ``GhaffariCancerEnv-continuous`` with its default (paper) noise, re-implemented
in :mod:`hti_bench.tasks.control.ghaffari`: a 7-D noisy log-observation of the tumour and immune cell
populations, a 2-D action (radiation dose in [0, 10], chemotherapy infusion in [0, 8]) per day, at most
200 days. Reward r + λ·(−|ln N / ln N₀ − 1|), the paper's NK shaping, λ ∈ [0, 10]; anchors 0, 5, 10
and held-out 1–4, 6–9, as in the paper.

Targets: PPO (stable-baselines3) policies, 10⁵ steps each by default (the paper trained 5·10⁵; 10⁵
steps already reach the paper's λ = 0 return, 120 vs 119; training times in docs/evidence/performance.md). No
observation normalisation, as in the paper. Conditions: the states of 20 episodes driven by the
λ = 10 anchor policy (one draw of its action executed per state, as the paper's data collection).
Outputs: the policy's executed action at the state (D = 2). Closed-loop metric: the shaped return of
episodes driven by the surrogate (:class:`~hti_bench.tasks.control.base.PolicyTask`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from hti_bench.clock import Clock, HyperparameterSpace, Point
from hti_bench.errors import ConfigError
from hti_bench.task import option
from hti_bench.tasks.control.base import PolicyTask, PolicyTaskConfig

#: Bounds and sizes of the environment (from DTRGym 0.1.0; see hti_bench.tasks.control.ghaffari).
_OBS_DIM = 7
_ACTION_LOW = (0.0, 0.0)
_ACTION_HIGH = (10.0, 8.0)


@dataclasses.dataclass(frozen=True)
class CancerConfig(PolicyTaskConfig):
    anchors: tuple[float, ...] = option((0.0, 5.0, 10.0), "Anchor NK weights λ (the paper's).")
    heldout: tuple[float, ...] = option(
        (1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0), "Held-out NK weights (the paper's).", cache=False
    )
    n_samples: int = option(100, "Actions drawn per state.", cache=False)
    max_days: int = option(200, "Episode length limit in days (DTRGym's max_t).")
    obs_noise: float = option(0.2, "Observation noise level (DTRGym's default, the paper's).")
    state_noise: float = option(0.5, "Initial-state noise level (DTRGym's default, the paper's).")
    pkpd_noise: float = option(0.1, "Model-parameter noise level (DTRGym's default, the paper's).")


class Cancer(PolicyTask):
    name: ClassVar[str] = "cancer"
    description: ClassVar[str] = (
        "PPO treatment policies for the Ghaffari cancer model (DTRGym); "
        "λ = weight of the NK-cell term in the reward; closed-loop return."
    )
    Config = CancerConfig
    obs_dim: ClassVar[int] = _OBS_DIM
    action_low: ClassVar[tuple[float, ...]] = _ACTION_LOW
    action_high: ClassVar[tuple[float, ...]] = _ACTION_HIGH

    def __init__(self, *, cache: Any = None, **overrides: Any) -> None:
        super().__init__(cache=cache, **overrides)
        c = self.config
        if not (isinstance(c.max_days, int) and c.max_days >= 1):
            raise ConfigError(f"task 'cancer': max_days must be a positive integer (days), got {c.max_days!r}")
        try:
            self._noise()
        except ValueError as err:
            raise ConfigError(f"task 'cancer': {err}") from None

    hyperparameters: ClassVar[HyperparameterSpace] = HyperparameterSpace.single("nk_weight", 0.0, 10.0, Clock.IDENTITY)

    def _noise(self) -> Any:
        from hti_bench.tasks.control.ghaffari import Noise

        c = self.config
        return Noise(obs=c.obs_noise, state=c.state_noise, pkpd=c.pkpd_noise)

    def vec_env(self, lam: Point, seed: int) -> Any:
        (lam,) = self.hyperparameters.check(lam)
        from hti_bench.tasks.control.ghaffari import vec_env

        return vec_env(
            int(self.config.n_envs), float(lam), int(seed), noise=self._noise(), max_t=int(self.config.max_days)
        )

    def episodes(self, lam: Point) -> _ShapedEpisodes:
        return _ShapedEpisodes(self.hyperparameters.check(lam)[0], self._noise(), int(self.config.max_days))


class _ShapedEpisodes:
    """A batch of cancer episodes with the paper's shaped reward r + λ·nk_penalty."""

    def __init__(self, lam: float, noise: Any, max_t: int) -> None:
        from hti_bench.tasks.control.ghaffari import GhaffariBatch

        self.lam = lam
        self.sim = GhaffariBatch(noise, max_t)

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        return self.sim.reset(list(seeds))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from hti_bench.tasks.control.ghaffari import nk_penalty

        running = ~self.sim.done
        obs, r, terminated, truncated = self.sim.step(actions)
        reward = np.where(running, r + self.lam * nk_penalty(obs, self.sim.first_obs), 0.0)
        return obs, reward, self.sim.done.copy()
