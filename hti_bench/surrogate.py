"""The surrogate contract. Read the :class:`Surrogate` docstring before writing a plugin."""

from __future__ import annotations

import inspect
import numbers
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from hti_bench.clock import CLOCK_PARAM, Clock, Point
from hti_bench.errors import ConfigError, check_choice
from hti_bench.specs import format_spec

if TYPE_CHECKING:
    from typing import Self

    from hti_bench.anchors import AnchorSet
    from hti_bench.view import TaskView


class Surrogate(ABC):
    """Base class of every surrogate: the plugin author's guide.

    A surrogate learns, from networks trained at a few *anchor* values of the hyperparameters λ, how the
    conditional output distribution p(y | x, λ) moves with λ, and answers for λ it has not seen.

    λ is always a *point* (:data:`hti_bench.clock.Point`): a tuple of d floats, one per axis of the
    task's :class:`~hti_bench.clock.HyperparameterSpace`, also on a task of one hyperparameter, where
    it is a 1-tuple such as ``(0.3,)``. The anchors are points, ``sample`` receives a point, and
    ``anchors.simplex(λ)`` finds the anchors around any point (for one hyperparameter, the enclosing
    interval on the clock). Write ``sample`` once for every d; a method that is one-dimensional by
    nature leaves ``supports_multi`` False.

    Writing one
    -----------
    Copy ``methods/template_surrogate.py`` to ``methods/<your_name>.py`` (one surrogate class per
    file; files starting ``template_`` or ``_`` are not loaded), set ``name``, and implement two
    methods. ``hti-bench list`` shows it, ``hti-bench check <name>`` runs the contract checks on it,
    and ``hti-bench run -s <name>`` runs it. Plugins in another installed package register a class
    under the entry-point group ``hti_bench.surrogates``.

    ``__init__(self, *, a=1, b="x")``
        Keyword arguments with defaults, stored unchanged as attributes of the same name, and nothing
        else: no validation, no work. The harness builds instances from names like
        ``mysurrogate[a=2]`` and reads parameters back with :meth:`get_params`.

    ``check_params(self)`` (optional)
        Raise :class:`~hti_bench.errors.ConfigError` for parameter values that cannot work (a negative
        step count, an unknown choice; :func:`hti_bench.errors.check_choice` lists the valid ones).
        It must not need data. The harness calls it, through :meth:`validate_params`, before anything
        trains: for every name on the command line and every value of a sweep file before the sweep
        starts. Type checks against the defaults come free (an integer parameter refuses ``"abc"``).

    ``fit(self, anchors, task, *, seed=0) -> self``
        ``anchors`` is an :class:`~hti_bench.anchors.AnchorSet`: the hyperparameter space
        (``anchors.space``), the anchor points, condition rows x of shape (M, C) and output samples of
        shape (K, M, n, D). ``task`` is a :class:`~hti_bench.view.TaskView`: the task's name, its
        hyperparameter space (``hyperparameters``, with each axis's range and clock), anchors and
        dimensions, and, for surrogates that declare ``requires``, its architecture, the anchor
        networks, its training data and per-example loss. Never a held-out network: the view refuses.
        Draw all randomness from ``seed``. Store learned state in attributes ending in ``_``. A second
        call replaces the first. Return ``self``.

    ``sample(self, lam, conditions, n, seed) -> Tensor``
        Draw n samples of y ~ p̂(y | x, λ=lam) for each row of ``conditions`` (shape (M', C)) at the
        point ``lam`` (a tuple of d floats); return a float tensor of shape (M', n, D). The same
        ``seed`` must give the same samples. For λ outside the anchors' range (their convex hull)
        raise ``ValueError`` unless ``supports_extrapolation`` is True. Interpolate in clock time,
        never in raw λ: ``anchors.simplex(λ)`` (the anchors around λ and its barycentric weights),
        ``anchors.nearest(λ)``, ``anchors.unit(λ)`` and ``anchors.unit_points`` (each axis's clock
        time rescaled to [0, 1]) do it for you, and raise ``ValueError`` outside the anchors.

    The clock is the harness's business, not yours: every surrogate's name also takes
    ``clock=identity|log|logit`` (e.g. ``mccann[clock=logit]``), and the harness then hands ``fit``
    an AnchorSet and a view whose space has every axis on that clock. Read clocks only through
    ``anchors.space`` (or ``task.hyperparameters``) and the AnchorSet's tools, and you support it for
    free; never hard-code a task's clock.

    ``skip(self, task) -> str | None`` (optional)
        Why the surrogate cannot run on this task (a :class:`~hti_bench.view.TaskView`), or None.

    Class attributes
    ----------------
    name : str
        Registry name, lower case with dashes, unique across ``baselines/`` and ``methods/``.
    description : str
        One line for ``hti-bench list``.
    requires : frozenset of str
        Capabilities the task must offer: ``"architecture"`` (build the task's network, sample it,
        read the anchor networks) and ``"training_loss"`` (the training data and the per-example,
        λ-aware loss; best-response methods). Where a task lacks one, the harness skips the surrogate
        there with the reason; the leaderboard marks surrogates that use the training loss; the view
        refuses what was not declared.
    supports_extrapolation : bool
        Whether ``sample`` answers outside [λ_0, λ_K-1].
    supports_multi : bool
        Whether the surrogate runs on tasks of several hyperparameters (``task.d`` of 2 or more). True
        for a surrogate written with the tools that work for every d (``anchors.simplex``,
        ``anchors.nearest``, ``anchors.unit_points``). False (the default) for a method that is
        one-dimensional by nature, one that needs the order of a line (``anchors.times``,
        ``anchors.locate``: the clock interval around λ, and ``anchors.space.axis``, which raise on
        several hyperparameters): the harness skips it on those tasks, with
        :attr:`one_dimensional_reason` as the reason.
    one_dimensional_reason : str
        Why a surrogate without ``supports_multi`` is one-dimensional, shown in its skipped rows
        (default: it has not been written for several hyperparameters).
    name_parameters : tuple of str
        Parameters always written into the surrogate's name (others appear when not at their
        default), e.g. ``("metric", "potential")`` gives ``clot[metric=learned,potential=True]``.
    test_config : dict
        Constructor arguments that make the surrogate fast enough for the contract test (a few
        seconds on a tiny task).
    search_space : dict
        What ``hti-bench tune`` searches, beside your defaults: a few key parameters in W&B sweep
        parameter syntax, pasteable into a sweep file, e.g. ``{"lr": {"distribution":
        "log_uniform_values", "min": 3e-4, "max": 1e-2}, "hidden": {"values": [[64, 64], [128, 128]]}}``.
        Keep iteration budgets (steps, epochs) out of it: tuning compares methods at equal cost. The
        clock is added by the harness; don't list it. Empty (the default): only the clock is tuned.
    references : tuple of str
        Citations.

    The toolkit
    -----------
    Helpers for writing ``fit`` and ``sample``, all public:

    - on ``self``: :meth:`check_sample_args` (fitted? n ≥ 1?), :meth:`check_fitted`,
      :meth:`generator` (a seeded ``torch.Generator``);
    - on the anchors: :meth:`AnchorSet.simplex <hti_bench.anchors.AnchorSet.simplex>` (λ → the
      anchors around it and its barycentric weights, ``ValueError`` outside them),
      :meth:`AnchorSet.nearest <hti_bench.anchors.AnchorSet.nearest>`, ``AnchorSet.unit_points``;
      for one hyperparameter also :meth:`AnchorSet.locate <hti_bench.anchors.AnchorSet.locate>` (λ →
      anchor interval and clock fraction) and ``AnchorSet.times`` (anchors on the clock);
      :meth:`AnchorSet.index_of <hti_bench.anchors.AnchorSet.index_of>` (query conditions → anchor rows);
    - :mod:`hti_bench.toolkit`: ``transport`` (``draw``, ``draw_many``, ``exact_coupling``),
      ``interpolation.AnchorInterpolator`` (a base for surrogates built from anchor samples),
      ``nets`` (``FiLMMLP``, ``ConditionEncoder``, ``seeded``, ``resolve_device``), ``training``
      (``train_loop``, ``step``, ``adam``, ``cosine``: the one training-loop helper), ``flows``
      (``FlowData``, ``TimeMLP``, ``integrate``, ``make_matcher``), ``best_response`` and
      ``lagrangian``;
    - :func:`hti_bench.testing.check_surrogate`: the contract checks, as one call.

    What the harness does for you
    -----------------------------
    It validates parameters before anything trains, times ``fit`` and ``sample``, checks the shape
    and finiteness of what ``sample`` returns, and turns an exception (a refused request of the view
    included), a NaN or a wrong shape into a *failed* result row with the reason, so one broken
    surrogate never stops a run. It scores samples by per-condition Wasserstein distance against the
    network actually trained at the held-out λ (:mod:`hti_bench.scoring`).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    supports_extrapolation: ClassVar[bool] = False
    supports_multi: ClassVar[bool] = False
    one_dimensional_reason: ClassVar[str] = "it is written for one hyperparameter (supports_multi = False)"
    name_parameters: ClassVar[tuple[str, ...]] = ()
    test_config: ClassVar[dict[str, Any]] = {}
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}
    references: ClassVar[tuple[str, ...]] = ()
    #: The clock the harness applies ('' = the task's own); set from the name, never by the plugin.
    clock: str = ""

    @abstractmethod
    def fit(self, anchors: AnchorSet, task: TaskView | None = None, *, seed: int = 0) -> Self:
        """Learn from the anchor networks' outputs (and what the task view offers)."""

    @abstractmethod
    def sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        """Return samples of shape (M', n, D) of p̂(y | x, λ=lam) at each condition row; ``lam`` is a
        point, a tuple of d floats."""

    def check_params(self) -> None:
        """Optional: raise :class:`~hti_bench.errors.ConfigError` for bad parameter values, without data."""

    # ------------------------------------------------------------------ provided for you

    def validate_params(self) -> None:
        """What the harness calls before anything trains: each parameter's type against its default,
        then :meth:`check_params`. Any failure is a :class:`~hti_bench.errors.ConfigError` naming the
        surrogate."""
        for key, default in self.default_params().items():
            problem = _type_problem(getattr(self, key, default), default)
            if problem:
                raise ConfigError(f"parameter {key!r} of surrogate '{self.name}' {problem}")
        try:
            if self.clock:
                check_choice("clock", self.clock, [c.value for c in Clock])
            self.check_params()
        except ConfigError as err:
            raise ConfigError(f"surrogate '{self.name}': {err}") from None
        except (ValueError, TypeError) as err:
            raise ConfigError(f"surrogate '{self.name}': {err}") from None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """Constructor keyword arguments and their defaults, read from ``__init__``'s signature."""
        sig = inspect.signature(cls.__init__)
        out = {}
        for p in list(sig.parameters.values())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[p.name] = None if p.default is inspect.Parameter.empty else p.default
        return out

    def get_params(self) -> dict[str, Any]:
        """Current constructor parameters (the attributes ``__init__`` stored)."""
        return {k: getattr(self, k, v) for k, v in self.default_params().items()}

    @property
    def spec(self) -> str:
        """The surrogate's name with its parameters, as it appears in results: ``mccann[ot=emd]``."""
        defaults = self.default_params()
        shown = {k: v for k, v in self.get_params().items() if k in self.name_parameters or v != defaults.get(k)}
        if self.clock:
            shown[CLOCK_PARAM] = self.clock
        return format_spec(self.name, shown)

    @classmethod
    def multi_skip_reason(cls, d: int) -> str | None:
        """Why the harness skips this surrogate on a task of ``d`` hyperparameters (None: it runs)."""
        # The one place a surrogate's declared dimension meets the task's: past one axis a line's order is gone.
        if d > 1 and not cls.supports_multi:
            return f"one-dimensional: the task has {d} hyperparameters and {cls.one_dimensional_reason}"
        return None

    @classmethod
    def uses_training_loss(cls) -> bool:
        return "training_loss" in cls.requires

    def skip(self, task: TaskView) -> str | None:
        """Return why this surrogate cannot run on ``task``, or None if it can.

        The default compares ``requires`` with ``task.capabilities``. Override to add conditions
        (e.g. an output dimension the method does not support); always return a reason a user can act
        on, never an empty string.
        """
        missing = sorted(set(self.requires) - set(task.capabilities))
        if missing:
            why = task.capability_notes.get(missing[0], "")
            return (
                f"needs the task's {', '.join(m.replace('_', ' ') for m in missing)}, which task "
                f"'{task.name}' does not provide" + (f" ({why})" if why else "")
            )
        return None

    def check_sample_args(self, n: int) -> None:
        """What every ``sample`` checks first: fitted, and at least one sample asked for."""
        self.check_fitted()
        if int(n) < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")

    def check_fitted(self) -> None:
        """Raise ``RuntimeError`` unless ``fit`` has stored learned state (attributes ending in ``_``)."""
        fitted = [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]
        if not fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(anchors) first.")

    @staticmethod
    def generator(seed: int) -> torch.Generator:
        """A CPU ``torch.Generator`` seeded with ``seed``."""
        return torch.Generator().manual_seed(int(seed))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


def _type_problem(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot stand where ``default`` does (None: it can). Lenient where YAML and
    ``name[key=value]`` parsing are: an integral float for an int, an int for a float, a list for a tuple."""
    if default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"must be True or False, got {value!r}"
    if isinstance(default, numbers.Integral):
        ok = isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer())
        return None if ok and not isinstance(value, bool) else f"must be an integer, got {value!r}"
    if isinstance(default, numbers.Real):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return None if ok else f"must be a number, got {value!r}"
    if isinstance(default, str):
        return None if isinstance(value, str) else f"must be text, got {value!r}"
    if isinstance(default, tuple):
        return None if isinstance(value, (tuple, list)) else f"must be a tuple, got {value!r}"
    return None
