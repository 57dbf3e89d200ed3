"""The task contract: a named family of target networks indexed by λ, a point of a hyperparameter space.

Read the :class:`Task` docstring to add a task; tasks that train a network subclass
:class:`TrainedTask`, whose networks are trained and kept by the target cache it is given
(:class:`hti_bench.harness.targets.TargetCache`, which trains with PyTorch Lightning). Surrogates
never receive a task: they get its :class:`~hti_bench.view.TaskView`.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from hti_bench.clock import Clock, Hyperparameter, HyperparameterSpace, Point, as_point, stored_form
from hti_bench.errors import ConfigError, check_choice, unknown_name_message
from hti_bench.specs import format_spec


class NetworkStore(Protocol):
    """Where a :class:`TrainedTask` gets its networks: trains one on first request and keeps it.

    :class:`hti_bench.harness.targets.TargetCache` is the implementation (Lightning training, a
    checked and atomic on-disk cache); the task only needs these two methods.
    """

    def get_or_train(self, task: TrainedTask, lam: Point, seed: int) -> nn.Module:
        """The network of ``task`` trained at λ with training seed ``seed``, in eval mode."""

    def train_seconds(self, task: TrainedTask, lam: Point, seed: int) -> float:
        """What training that network took, in seconds (NaN if unknown)."""


def option(default: Any, help: str, *, cache: bool = True) -> Any:
    """A documented task-config field. ``cache=False`` marks fields that do not change the trained
    networks (sample counts, devices), so changing them keeps the cached targets."""
    return dataclasses.field(default=default, metadata={"help": help, "cache": cache})


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Fields every task has. Subclass it (frozen dataclass, every field made with :func:`option`)."""

    # A one-hyperparameter task's λ may be given as bare numbers (``anchors=(0.1, 0.5)``); every other
    # part of the suite reads them as points, through Task.anchors / heldout / validation.
    anchors: tuple[float, ...] = option((), "Anchor values of λ the surrogates see.")
    heldout: tuple[float, ...] = option((), "Held-out values of λ the surrogates are scored at.", cache=False)
    validation: tuple[float, ...] = option(
        (),
        "Validation λ for tuning (needed with 2 anchors; with more, scored beside the left-out anchor): "
        "trained like anchors, used only to score tuning trials; never given to a surrogate as anchors, never "
        "scored in the leaderboard.",
        cache=False,
    )
    n_samples: int = option(500, "Output samples per condition, at anchors and held-out λ.", cache=False)


class Task(ABC):
    """Base class of every task: a family of target networks p_θλ(y | x) indexed by λ.

    A task declares
    - ``hyperparameters``: the :class:`~hti_bench.clock.HyperparameterSpace` λ lives in, d named axes
      with their ranges and clocks; a task of one hyperparameter declares a one-axis space,
      ``HyperparameterSpace.single("dropout", 0.0, 0.99, Clock.LOGIT)``. Every λ the task takes and
      gives (anchors, held-out, validation, the ``lam`` of ``sample``, ``metrics``, ``network``…) is a
      :data:`~hti_bench.clock.Point`, a tuple of d floats, also for d = 1 (``(0.3,)``); read a
      one-axis task's value as ``(lam,) = self.hyperparameters.check(lam)``, which also accepts a
      bare number where a user typed one;
    - ``anchors`` and ``heldout``: the λ values surrogates see and are scored at (from its config);
      a task with only 2 anchors also declares ``validation`` λ, whose networks tuning scores its
      trials on (a task with ≥ 3 anchors is tuned by leaving one interior anchor out instead:
      :mod:`hti_bench.sweeping.tuning`);
    - ``condition_dim`` C, ``categorical`` (one integer class-id column) and ``output_dim`` D.
      ``hyperparameters``, ``output_dim`` and ``condition_dim`` are abstract properties; a task whose
      value does not depend on its options declares it as a class attribute instead
      (``output_dim: ClassVar[int] = 2``), which satisfies the abstract one, and a property only where
      the value is computed from ``self.config`` (or the data);
    - ``eval_conditions()``: the condition rows x (M, C) surrogates are scored at, and
      ``fit_conditions()``: extra rows anchor data also covers (default: none);
    - ``sample(lam, conditions, n, seed)``: n draws of y ~ p_θλ(y | x) per condition row, shape
      (M, n, D), from the network trained at λ (or the true process for a synthetic task);
    - optionally ``metrics(lam, conditions, samples)``: task-specific scores of a sample set, reported
      beside the Wasserstein error (e.g. NLL under an analytic density);
    - optionally ``closed_loop = True`` and :meth:`closed_loop_metrics`: scores of a policy that acts
      from the states it visits (the surrogate, queried at conditions no anchor network was run on),
      e.g. an episode return; the harness also scores the held-out network and the nearest anchor's
      that way (:class:`hti_bench.tasks.control.base.PolicyTask` is the implementation);
    - ``capabilities``: what best-response surrogates may use. ``"training_loss"`` and
      ``"architecture"`` mean the task exposes :meth:`TrainedTask.build_network` and a per-example,
      λ-aware :meth:`TrainedTask.per_example_loss`. Tasks without them explain why in
      ``capability_notes``.

    Configuration is a frozen dataclass ``Config`` (subclass of :class:`TaskConfig`); a task is built
    from keyword overrides, ``MoonsDropout(epochs=50)``, or by name, ``moons-dropout[epochs=50]``
    (:func:`hti_bench.harness.registry.make_task`). Unknown keys are refused with the valid ones listed.
    ``cache`` is where a task that trains networks gets them (a :class:`NetworkStore`, given explicitly;
    tasks that train nothing ignore it). Constructors do no work: training happens in :meth:`prepare`
    or on the first :meth:`sample` at a λ.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    in_default_suite: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset()
    capability_notes: ClassVar[dict[str, str]] = {}
    categorical: ClassVar[bool] = False
    closed_loop: ClassVar[bool] = False

    def __init__(self, *, cache: NetworkStore | None = None, **overrides: Any) -> None:
        self._cache = cache
        fields = {f.name: f for f in dataclasses.fields(self.Config)}
        for key in overrides:
            if key not in fields:
                raise ConfigError(unknown_name_message(f"option for task '{self.name}'", key, fields))
        values = {}
        for key, value in overrides.items():
            default = fields[key].default
            if isinstance(default, tuple) and isinstance(value, (list, tuple, int, float)):
                value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
                # A list of points (anchors of several hyperparameters, from YAML or a name) becomes a tuple of tuples.
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            values[key] = value
        try:
            self.config = self.Config(**values)
        except TypeError as err:
            raise ConfigError(f"Invalid options for task '{self.name}': {err}") from None
        if "validation" not in overrides and self.config.validation:
            self._drop_colliding_default_validation()
        if "mode" in fields:
            try:
                check_choice("mode", self.config.mode, ["transductive", "inductive"])
            except ConfigError as err:
                raise ConfigError(f"task '{self.name}': {err}") from None
        self._validate_lambdas()

    def _drop_colliding_default_validation(self) -> None:
        # A task's *default* validation λ suit its default anchors and held-out λ; with other anchors
        # or held-out λ, the defaults that coincide with them or leave the anchor range are dropped
        # (validation given explicitly is checked, never edited).
        anchors, heldout = self.anchors, self.heldout
        kept = tuple(
            v for v in self.validation if self._inside_hull(v) and not any(_same(v, u) for u in anchors + heldout)
        )
        if kept != self.validation:
            # Written back as the user would write it (one hyperparameter as bare numbers): the spec is the task's name.
            self.config = dataclasses.replace(self.config, validation=tuple(stored_form(v) for v in kept))

    # ------------------------------------------------------------------ declared by subclasses

    @property
    @abstractmethod
    def hyperparameters(self) -> HyperparameterSpace:
        """The box λ lives in: d named axes, each with its range and clock (one axis for a task of one
        hyperparameter: ``HyperparameterSpace.single(name, low, high, clock)``). Every λ the task takes
        and gives is a point of it, a tuple of d floats."""

    @property
    def d(self) -> int:
        """How many hyperparameters λ has."""
        return self.hyperparameters.d

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """D, the dimension of one output y."""

    @property
    @abstractmethod
    def condition_dim(self) -> int:
        """C, the number of columns of a condition row x."""

    @abstractmethod
    def eval_conditions(self) -> Tensor:
        """Condition rows (M, C) at which surrogates are scored."""

    @abstractmethod
    def sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        """n draws of y ~ p_θλ(y | x) per condition row at the point λ: shape (M, n, D), float32."""

    # ------------------------------------------------------------------ defaults

    def fit_conditions(self) -> Tensor:
        """Extra condition rows (M', C) anchor data covers beyond ``eval_conditions`` (default none)."""
        return torch.empty(0, self.condition_dim)

    def prepare(self, lambdas: Iterable[Point], progress: Callable[[str], None] | None = None) -> None:
        """Make every network at ``lambdas`` ready (train or load from cache). No-op by default."""

    def floor_sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        """A second, independent sample set at λ for the finite-sample noise floor (default: another
        :meth:`sample` call; tasks with a fixed stored set resample it instead)."""
        return self.sample(lam, conditions, n, seed)

    def seed_twin_sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor | None:
        """n draws per condition from a second target at λ that differs only in its training seed,
        or None when the task has no training randomness (analytic tasks). The harness scores the
        held-out network against it: the *seed-to-seed* noise floor, below which no surrogate can be
        judged."""
        return None

    def metrics(self, lam: Point, conditions: Tensor, samples: Tensor) -> dict[str, float]:
        """Task-specific metrics of ``samples`` (M, n, D) at λ; lower is better unless documented."""
        return {}

    def closed_loop_metrics(self, lam: Point, act: Callable[[Tensor, int, int], Tensor], seed: int) -> dict[str, float]:
        """Scores at λ of the policy ``act(states (B, C), n, seed) -> (B, n, D)`` acting in closed loop,
        for run seed ``seed`` (the same episodes for every ``act``); only for tasks with
        ``closed_loop = True``. Higher is better unless documented."""
        raise NotImplementedError(f"task '{self.name}' has no closed loop")

    # ------------------------------------------------------------------ provided

    @property
    def cache(self) -> NetworkStore | None:
        """The store this task's networks come from (None for a task built without one)."""
        return self._cache

    @property
    def anchors(self) -> tuple[Point, ...]:
        """The anchor λ, points (increasing on one axis; from the ``design`` option when the config of a
        task that has one lists none)."""
        values = self.config.anchors
        if not values and getattr(self.config, "design", ""):
            values = self.hyperparameters.design(self.config.design, getattr(self.config, "design_box", None) or None)
        return self._points(values, "anchors")

    @property
    def heldout(self) -> tuple[Point, ...]:
        """The held-out λ. A task with a ``design`` option (several hyperparameters) also takes a design
        name here (``heldout=grid:9x9``, ``sobol:N``): its points over the anchor design's box, anchors
        left out, so an analytic task can be scored densely enough for a heat map of its error over the
        plane."""
        values = self.config.heldout
        if isinstance(values, str):
            if "design" not in {f.name for f in dataclasses.fields(self.config)}:
                raise ConfigError(
                    f"task '{self.name}': heldout={values!r} is a design of points, for tasks of "
                    "several hyperparameters (those with a design option); list the held-out values of λ instead"
                )
            anchors = self.anchors
            points = self.hyperparameters.design(values, getattr(self.config, "design_box", None) or None)
            values = tuple(p for p in points if not any(_same(p, a) for a in anchors))
        return self._points(values, "heldout")

    @property
    def validation(self) -> tuple[Point, ...]:
        """Validation λ (tuning only; see :class:`TaskConfig`)."""
        return self._points(self.config.validation, "validation")

    def _points(self, values: Sequence[Any], what: str) -> tuple[Point, ...]:
        space, out = self.hyperparameters, []
        for v in values:
            try:
                point = as_point(v)
            except (TypeError, ValueError):
                point = ()
            if len(point) != space.d:
                raise ConfigError(
                    f"task '{self.name}': each of its {what} is a point of {space.d} values "
                    f"({', '.join(space.names)}), got {v!r}"
                )
            out.append(point)
        return tuple(out)

    @property
    def n_samples(self) -> int:
        return int(self.config.n_samples)

    @property
    def spec(self) -> str:
        """The task's name with every option that differs from its default: ``moons-dropout[epochs=50]``."""
        default = self.Config()
        changed = {
            f.name: getattr(self.config, f.name)
            for f in dataclasses.fields(self.config)
            if getattr(self.config, f.name) != getattr(default, f.name)
        }
        return format_spec(self.name, changed)

    def _inside_hull(self, point: Any) -> bool:
        try:
            self.hyperparameters.simplex(self.anchors, point)
        except ValueError:
            return False
        return True

    def _check_ranges(self, where: str) -> None:
        for lam in self.anchors + self.heldout + self.validation:
            try:
                self.hyperparameters.check(lam)
            except ValueError as err:
                raise ConfigError(f"{where}: {err}") from None

    def _validate_lambdas(self) -> None:
        """Anchors: at least d + 1, distinct (increasing on one axis); every held-out and validation point
        strictly new and inside the anchors (between them on one axis, in their convex hull on the
        clocks otherwise): HTI interpolates."""
        space, where = self.hyperparameters, f"task '{self.name}'"
        anchors, heldout = self.anchors, self.heldout
        shown = ", ".join(space.label(a) for a in anchors)
        try:
            space.check_anchors(anchors)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        if not heldout:
            raise ConfigError(f"{where}: has no held-out {space.name} to score surrogates at (anchors {shown}).")
        self._check_ranges(where)
        for what, points, others in (
            ("held-out", heldout, anchors),
            ("validation", self.validation, anchors + heldout),
        ):
            for p in points:
                if not self._inside_hull(p):
                    raise ConfigError(
                        f"{where}: {what} {space.describe(p)} must lie strictly between the anchors ({shown}): "
                        "inside their range, or their convex hull on the clocks (HTI interpolates)."
                    )
                if any(_same(p, o) for o in others):
                    raise ConfigError(
                        f"{where}: {what} {space.describe(p)} is also an anchor"
                        + (
                            " or a held-out value: tuning on it would score trials on what the leaderboard scores "
                            "(or on what the surrogates see)."
                            if what == "validation"
                            else ""
                        )
                        + "; it must lie strictly between the anchors, never on one."
                    )
        if len({space.label(h) for h in heldout}) != len(heldout):
            raise ConfigError(f"{where}: held-out points must be distinct, got {heldout}.")
        if self.n_samples < 1:
            raise ConfigError(f"{where}: n_samples must be ≥ 1, got {self.n_samples}.")

    @property
    def mode(self) -> str:
        """How the scored conditions relate to the anchor data: ``"transductive"`` (the default: the
        anchor networks' outputs at the scored conditions are part of the anchor data) or
        ``"inductive"`` (the anchor data covers ``fit_conditions()`` only; surrogates answer at the
        scored conditions through the anchor oracle or their own conditional model, as in the HTI
        paper's forecasting protocol). Tasks that offer the inductive mode override this."""
        return "transductive"

    def all_conditions(self) -> tuple[Tensor, Tensor]:
        """(conditions, eval_mask) of the anchor data: the eval rows followed by the fit-only rows,
        duplicates dropped; in the inductive mode the fit rows alone (none of them scored), and never
        an eval row."""
        ev, fit = self.eval_conditions().float(), self.fit_conditions().float()
        seen = {tuple(r.tolist()) for r in ev}
        extra = [r for r in fit if tuple(r.tolist()) not in seen]
        if self.mode == "inductive":
            if not extra:
                raise ConfigError(
                    f"task '{self.name}' in the inductive mode has no fit conditions outside the scored ones"
                )
            rows = torch.stack(extra)
            return rows, torch.zeros(rows.shape[0], dtype=torch.bool)
        rows = torch.cat([ev, torch.stack(extra)]) if extra else ev
        mask = torch.zeros(rows.shape[0], dtype=torch.bool)
        mask[: ev.shape[0]] = True
        return rows, mask

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


@dataclasses.dataclass(frozen=True)
class TrainedTaskConfig(TaskConfig):
    """Fields of every task that trains its target networks."""

    epochs: int = option(100, "Training epochs of each target network.")
    batch_size: int = option(128, "Training minibatch size.")
    lr: float = option(1e-3, "Adam learning rate.")
    model_seed: int = option(0, "Seed of target-network training (the same for every λ).")
    accelerator: str = option("cpu", "Lightning accelerator for target training: cpu, gpu or auto.", cache=False)


class TrainedTask(Task):
    """A task whose target networks are trained at each λ with PyTorch Lightning, and cached.

    Subclasses provide the architecture, the data, a per-example loss that takes a per-example λ, and
    the network's own output mechanism; the base class trains, caches and loads. The same three
    hooks serve best-response surrogates (hypernetworks, STN), which train one model over many λ.

    - :meth:`build_network` → ``nn.Module``: the architecture, untrained. It must accept λ per
      example where λ enters the forward pass (e.g. a dropout rate), so one batch may mix λ values.
    - :meth:`training_data` → tuple of tensors with equal first dimension: the training set.
    - :meth:`per_example_loss` ``(network, batch, lam)`` → (B,): the loss of each example of
      ``batch`` (a tuple from ``training_data``) at its own λ, ``lam`` of shape (B,) for one
      hyperparameter and (B, d) for several (a tensor of per-example values, not points). Call
      ``network`` only through its forward, on inputs whose rows are the batch's examples in order
      (B rows, or B·k rows grouped example by example, e.g. k noise draws per example): the
      best-response surrogates pass a network whose weights differ per example
      (:class:`hti_bench.toolkit.best_response.FunctionalNetwork`), and they draw the loss's randomness from
      torch's global generator, seeded for you.
    - :meth:`sample_network` ``(network, conditions, n, generator)`` → (M, n, D): the trained
      network's outputs, in eval mode.
    """

    Config: ClassVar[type[TaskConfig]] = TrainedTaskConfig
    capabilities: ClassVar[frozenset[str]] = frozenset({"training_loss", "architecture"})

    def __init__(self, *, cache: NetworkStore | None = None, **overrides: Any) -> None:
        super().__init__(cache=cache, **overrides)
        self._networks: dict[tuple[float, int], nn.Module] = {}

    @abstractmethod
    def build_network(self) -> nn.Module:
        """The untrained target architecture."""

    @abstractmethod
    def training_data(self) -> Sequence[Tensor]:
        """The training set, as tensors sharing their first dimension."""

    @abstractmethod
    def per_example_loss(self, network: nn.Module, batch: Sequence[Tensor], lam: Tensor) -> Tensor:
        """Loss of each example at its own λ: shape (B,)."""

    @abstractmethod
    def sample_network(self, network: nn.Module, conditions: Tensor, n: int, generator: torch.Generator) -> Tensor:
        """Outputs of a trained network, shape (M, n, D)."""

    def train_target(self, lam: Point, seed: int) -> nn.Module | None:
        """Train the target at λ yourself and return it in eval mode, or return None (the default) to
        have the target cache train :meth:`build_network` on :meth:`per_example_loss` with Lightning.
        Tasks whose targets come from another learner (PPO for the policy tasks) override it; the
        cache still keys, checks, stores and locks the result like any target."""
        return None

    def cache_signature(self) -> dict[str, Any]:
        """What identifies a trained network besides λ and seed: the name and every cache-relevant option."""
        return {
            "task": self.name,
            "config": {
                f.name: getattr(self.config, f.name)
                for f in dataclasses.fields(self.config)
                if f.metadata.get("cache", True) and f.name not in ("anchors", "heldout", "model_seed")
            },
        }

    def network(self, lam: Point, seed: int | None = None) -> nn.Module:
        """The network trained at λ (from the cache, or trained now and cached), in eval mode.

        The harness's own access: surrogates reach anchor networks only, through
        :meth:`hti_bench.view.TaskView.anchor_network`.
        """
        lam = self.hyperparameters.point(lam)
        seed = self.config.model_seed if seed is None else int(seed)
        key = (lam, seed)
        if key not in self._networks:
            self._networks[key] = self._store().get_or_train(self, lam, seed)
        return self._networks[key]

    def train_seconds(self, lam: Point, seed: int | None = None) -> float:
        """What training the network at λ took (recorded by the cache; NaN if unknown)."""
        seed = self.config.model_seed if seed is None else int(seed)
        return float(self._store().train_seconds(self, self.hyperparameters.point(lam), seed))

    def _store(self) -> NetworkStore:
        if self._cache is None:
            raise ConfigError(
                f"task '{self.name}' was built without a target cache, so it has nowhere to get its networks: "
                "build it with make_task(spec, cache=TargetCache(folder)) (hti_bench.harness) or pass cache=… "
                "to its constructor"
            )
        return self._cache

    def prepare(self, lambdas: Iterable[Point], progress: Callable[[str], None] | None = None) -> None:
        for lam in lambdas:
            if progress:
                progress(f"{self.name}: {self.hyperparameters.describe(lam)}")
            self.network(lam)

    @property
    def twin_seed(self) -> int:
        """Training seed of the second network at each held-out λ (the seed-to-seed floor)."""
        return int(self.config.model_seed) + 1

    def sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        return self._sample_net(self.network(lam), conditions, n, seed)

    def seed_twin_sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor | None:
        return self._sample_net(self.network(lam, seed=self.twin_seed), conditions, n, seed)

    def _sample_net(self, net: nn.Module, conditions: Tensor, n: int, seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            out = self.sample_network(net, torch.as_tensor(conditions, dtype=torch.float32), n, gen)
        return out.float()


def _same(a: Any, b: Any) -> bool:
    return all(math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b))


# Re-exported so task modules need one import line.
__all__ = [
    "Clock",
    "Hyperparameter",
    "HyperparameterSpace",
    "NetworkStore",
    "Point",
    "Task",
    "TaskConfig",
    "TrainedTask",
    "TrainedTaskConfig",
    "option",
]
