"""The base class of the reinforcement-learning tasks: :class:`PolicyTask`.

A policy task's target at λ is a PPO policy trained with a λ-weighted reward; its output distribution
at a state is the action distribution the policy executes there (:class:`~.policy.PolicyNetwork`). It
is scored twice:

- at fixed states, like every task: the states a *behaviour policy* visits (the paper drives its
  episodes with the policy of the last anchor, an anchor network, so no held-out λ shapes them), with
  the Wasserstein panel between the surrogate's actions and the held-out policy's;
- in closed loop (:meth:`PolicyTask.closed_loop_metrics`): episodes in which the surrogate picks every
  action from the state it is in, for the same environment seeds as the held-out policy, scored by
  the λ-shaped return. The harness rolls out the held-out policy itself (the ceiling) and the nearest
  anchor's policy (the trivial answer) on those seeds too.

The executed action is the mean of ``closed_loop_draws`` draws at each state (``closed_loop_action =
"mean"``, the default; the paper evaluates its policies deterministically, by their mean action) or
one draw (``"sample"``), clipped to the action bounds: a surrogate's output outside them is what an
actuator would clip, and the targets' own draws are clipped the same way (stable-baselines3 clips its
samples). The rule is the same for the surrogate and for the policies it is compared with.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from hti_bench.errors import ConfigError, check_choice
from hti_bench.stats import ci95
from hti_bench.task import Point, TaskConfig, TrainedTask, option

#: ``act(states (B, C), n, seed) -> (B, n, D)``: n draws of the acting policy's action at each state.
Act = Callable[[Tensor, int, int], Tensor]


class Episodes(Protocol):
    """A batch of episodes stepped together, with the λ-shaped reward (what a closed loop drives)."""

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Start one episode per seed; the first observations (E, C)."""

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance every running episode; (observations (E, C), shaped rewards (E,), ended (E,)).
        Ended episodes get reward 0 and stay ended."""


@dataclasses.dataclass(frozen=True)
class PolicyTaskConfig(TaskConfig):
    """Fields of every policy task."""

    model_seed: int = option(0, "PPO seed of the target policies (the same for every λ).")
    ppo_steps: int = option(100_000, "Environment steps of PPO training per target policy.")
    n_envs: int = option(8, "Environments PPO collects from in parallel.")
    ppo_n_steps: int = option(256, "PPO rollout length per environment (n_steps; the batch is n_envs × it).")
    hidden: tuple[int, ...] = option((64, 64), "Hidden widths of the policy MLP (stable-baselines3's default).")
    behaviour_episodes: int = option(
        20, "Episodes driven by the behaviour policy (the last anchor's) to collect the evaluation states.", cache=False
    )
    behaviour_seed: int = option(1, "Seed of the behaviour episodes and of their actions.", cache=False)
    n_conditions: int = option(
        100, "Evaluation states, spread evenly over the behaviour episodes' states.", cache=False
    )
    closed_loop_episodes: int = option(
        16, "Closed-loop episodes per held-out λ (the same seeds for every policy).", cache=False
    )
    closed_loop_action: str = option(
        "mean",
        "What a closed loop executes: the mean of closed_loop_draws draws "
        "('mean') or one draw ('sample'), clipped to the action bounds.",
        cache=False,
    )
    closed_loop_draws: int = option(16, "Draws averaged per state when closed_loop_action is 'mean'.", cache=False)


class PolicyTask(TrainedTask):
    """A task whose targets are PPO policies trained with a λ-weighted reward (see the module docstring).

    Subclasses give the environment:

    - ``obs_dim``, ``action_low``, ``action_high``: the observation size and the action box;
    - :meth:`vec_env` ``(lam, seed)``: a stable-baselines3 ``VecEnv`` with the λ-shaped reward, to train on;
    - :meth:`episodes` ``(lam)``: an :class:`Episodes` batch with the same reward, for the closed loop
      and the behaviour episodes;
    - optionally ``normalize`` (train behind ``VecNormalize``; its statistics freeze into the policy),
      :meth:`ppo_kwargs` (PPO settings beyond stable-baselines3's defaults), and ``behaviour_anchor``
      and ``behaviour_action`` (which anchor policy collects the evaluation states, and how it acts).

    The targets train through the target cache like every task's (:meth:`train_target`); surrogates
    may read their architecture and the anchor policies (``architecture``), not a training loss: PPO's
    objective is not a per-example loss of the policy's weights.
    """

    Config: ClassVar[type[TaskConfig]] = PolicyTaskConfig
    in_default_suite: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({"architecture"})
    capability_notes: ClassVar[dict[str, str]] = {
        "training_loss": "the targets are trained by PPO on environment returns, which is not a per-example, "
        "λ-aware loss of the policy's weights that a best-response method could differentiate"
    }
    closed_loop: ClassVar[bool] = True
    normalize: ClassVar[bool] = False
    #: Which anchor's policy drives the behaviour episodes, and whether it executes one draw of its
    #: action ("sample", the paper's cancer data) or its mean ("mean", its Reacher data).
    behaviour_anchor: ClassVar[int] = -1
    behaviour_action: ClassVar[str] = "sample"
    #: The packages the task's environment and training need (checked before a policy trains).
    requires_packages: ClassVar[tuple[str, ...]] = ("stable_baselines3", "gymnasium")

    obs_dim: ClassVar[int]
    action_low: ClassVar[tuple[float, ...]]
    action_high: ClassVar[tuple[float, ...]]

    def __init__(self, *, cache: Any = None, **overrides: Any) -> None:
        super().__init__(cache=cache, **overrides)
        c = self.config
        where = f"task '{self.name}'"
        for key in (
            "ppo_steps",
            "n_envs",
            "ppo_n_steps",
            "behaviour_episodes",
            "n_conditions",
            "closed_loop_episodes",
            "closed_loop_draws",
        ):
            value = getattr(c, key)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        if not c.hidden or not all(isinstance(h, int) and h >= 1 for h in c.hidden):
            raise ConfigError(f"{where}: hidden must be positive layer widths, e.g. (64, 64), got {c.hidden!r}")
        try:
            check_choice("closed_loop_action", c.closed_loop_action, ["mean", "sample"])
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        self._conditions: Tensor | None = None

    # ------------------------------------------------------------------ the environment

    @abstractmethod
    def vec_env(self, lam: Point, seed: int) -> Any:
        """A stable-baselines3 ``VecEnv`` of ``n_envs`` episodes with the λ-shaped reward, seeded by ``seed``."""

    @abstractmethod
    def episodes(self, lam: Point) -> Episodes:
        """A fresh batch of episodes with the λ-shaped reward."""

    def ppo_kwargs(self) -> dict[str, Any]:
        """PPO settings beyond stable-baselines3's defaults (the rollout length by default)."""
        return {"n_steps": int(self.config.ppo_n_steps)}

    # ------------------------------------------------------------------ the target contract

    @property
    def output_dim(self) -> int:
        return len(self.action_low)

    @property
    def condition_dim(self) -> int:
        return int(self.obs_dim)

    def build_network(self) -> nn.Module:
        from hti_bench.tasks.control.policy import PolicyNetwork

        return PolicyNetwork(self.obs_dim, self.action_low, self.action_high, self.config.hidden)

    def check_packages(self) -> None:
        """Raise :class:`~hti_bench.errors.ConfigError` naming what to install when a package the task
        needs is missing (they are in requirements.txt and the ``rl`` extra)."""
        import importlib.util

        missing = [m for m in self.requires_packages if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"task '{self.name}' needs {', '.join(missing)}: install hti-bench with its requirements "
                "(pip install -r requirements.txt) or the rl extra (pip install 'hti-bench[rl]')"
            )

    def train_target(self, lam: Point, seed: int) -> nn.Module:
        from hti_bench.tasks.control.policy import train_ppo

        self.check_packages()
        # Small MLPs step faster on one thread, and parallel sweep workers then do not oversubscribe.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            net, _ = train_ppo(
                lambda s: self.vec_env(lam, s),
                steps=int(self.config.ppo_steps),
                seed=int(seed),
                hidden=self.config.hidden,
                normalize=self.normalize,
                ppo=self.ppo_kwargs(),
            )
        finally:
            torch.set_num_threads(threads)
        return net

    def training_data(self) -> Sequence[Tensor]:
        raise NotImplementedError(self.capability_notes["training_loss"])

    def per_example_loss(self, network: nn.Module, batch: Sequence[Tensor], lam: Tensor) -> Tensor:
        raise NotImplementedError(self.capability_notes["training_loss"])

    def sample_network(self, network: nn.Module, conditions: Tensor, n: int, generator: torch.Generator) -> Tensor:
        return network.act(conditions, n, generator)

    # ------------------------------------------------------------------ conditions

    def eval_conditions(self) -> Tensor:
        """``n_conditions`` of the states the behaviour policy (an anchor's) visits, spread evenly."""
        if self._conditions is None:
            states = self.behaviour_states()
            pick = np.unique(
                np.linspace(0, states.shape[0] - 1, min(self.config.n_conditions, states.shape[0])).round()
            )
            rows = torch.unique(states[torch.as_tensor(pick, dtype=torch.long)], dim=0, sorted=False)
            self._conditions = rows
        return self._conditions.clone()

    def behaviour_states(self) -> Tensor:
        """Every state of ``behaviour_episodes`` episodes driven by the ``behaviour_anchor``'s policy (one
        draw of its action, or its mean, per ``behaviour_action``), episode by episode."""
        c = self.config
        lam = self.anchors[self.behaviour_anchor]
        gen = torch.Generator().manual_seed(int(c.behaviour_seed))
        seeds = [int(c.behaviour_seed) * 100_003 + i for i in range(int(c.behaviour_episodes))]
        env = self.episodes(lam)
        obs = env.reset(seeds)
        running = np.ones(len(seeds), dtype=bool)
        visited: list[list[np.ndarray]] = [[] for _ in seeds]
        net = self.network(lam)
        while running.any():
            for i in np.flatnonzero(running):
                visited[i].append(obs[i].copy())
            with torch.no_grad():
                states = torch.as_tensor(obs, dtype=torch.float32)
                if self.behaviour_action == "mean":
                    mean, _ = net(states)
                    action = torch.maximum(torch.minimum(mean, net.high), net.low).numpy()
                else:
                    action = net.act(states, 1, gen)[:, 0].numpy()
            obs, _, ended = env.step(action)
            running &= ~ended
        return torch.as_tensor(np.concatenate([np.stack(v) for v in visited]), dtype=torch.float32)

    # ------------------------------------------------------------------ closed loop

    def closed_loop_seeds(self, seed: int) -> list[int]:
        """The environment seeds of run seed ``seed``'s closed-loop episodes (the same at every λ, so
        the environment's noise is common to every policy compared)."""
        e = int(self.config.closed_loop_episodes)
        return [int(seed) * e + i for i in range(e)]

    def rollout(self, lam: Point, act: Act, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Closed-loop episodes at λ in which ``act`` picks every action: (shaped returns (E,), steps (E,)).

        The episodes are :meth:`closed_loop_seeds` of ``seed``; the draws of ``act`` at step t get a
        seed derived from (``seed``, t), so two calls with the same ``act`` give the same episodes.
        Raises ``ValueError`` when ``act`` returns a wrong shape or a non-finite action."""
        c = self.config
        draws = int(c.closed_loop_draws) if c.closed_loop_action == "mean" else 1
        low, high = np.asarray(self.action_low), np.asarray(self.action_high)
        env = self.episodes(lam)
        seeds = self.closed_loop_seeds(seed)
        obs = env.reset(seeds)
        returns = np.zeros(len(seeds))
        steps = np.zeros(len(seeds), dtype=np.int64)
        running = np.ones(len(seeds), dtype=bool)
        action = np.zeros((len(seeds), self.output_dim))
        t = 0
        while running.any():
            rows = np.flatnonzero(running)
            states = torch.as_tensor(obs[rows], dtype=torch.float32)
            out = torch.as_tensor(act(states, draws, (int(seed) * 1_000_003 + 7919 * t) % 2**31))
            if tuple(out.shape) != (rows.size, draws, self.output_dim):
                raise ValueError(
                    f"step {t}: the actions have shape {tuple(out.shape)}, expected "
                    f"{(rows.size, draws, self.output_dim)}"
                )
            a = out.double().mean(dim=1).numpy()
            if not np.isfinite(a).all():
                raise ValueError(
                    f"step {t}: the policy's action at {int((~np.isfinite(a)).any(1).sum())} state(s) "
                    "is not finite (NaN or inf)"
                )
            action[rows] = np.clip(a, low, high)
            obs, reward, ended = env.step(action)
            returns[rows] += reward[rows]
            steps[rows] += 1
            running &= ~ended
            t += 1
        return returns, steps

    def closed_loop_metrics(self, lam: Point, act: Act, seed: int) -> dict[str, float]:
        """The closed-loop metrics of ``act`` at λ: ``return`` (mean shaped return over the episodes;
        higher is better), ``return_ci95`` (half-width of its 95 % t-interval over episodes) and
        ``episode_steps`` (mean episode length)."""
        returns, steps = self.rollout(lam, act, seed)
        return {"return": float(returns.mean()), "return_ci95": ci95(returns), "episode_steps": float(steps.mean())}
