"""The surrogate contract. Read the :class:`Surrogate` docstring before writing a plugin."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from hti_bench.specs import format_spec

if TYPE_CHECKING:
    from typing import Self

    from hti_bench.anchors import AnchorSet
    from hti_bench.task import Task


class Surrogate(ABC):
    """Base class of every surrogate: the plugin author's guide.

    A surrogate learns, from networks trained at a few *anchor* values of a hyperparameter λ, how the
    conditional output distribution p(y | x, λ) moves with λ, and answers for λ it has not seen.

    Writing one
    -----------
    Copy ``methods/template_surrogate.py`` to ``methods/<your_name>.py`` (one surrogate class per
    file; files starting ``template_`` or ``_`` are not loaded), set ``name``, and implement two
    methods. ``hti-bench list`` shows it, ``hti-bench run -s <name>`` runs it, and the contract test
    (``pytest tests/test_surrogate_contract.py -k <name>``) checks it. Plugins in another installed
    package register a class under the entry-point group ``hti_bench.surrogates``.

    ``__init__(self, *, a=1, b="x")``
        Keyword arguments with defaults, stored unchanged as attributes of the same name, and nothing
        else: no validation, no work (validate in ``fit``). The harness builds instances from names
        like ``mysurrogate[a=2]``, and reads parameters back with :meth:`get_params`.

    ``fit(self, anchors, task=None, *, seed=0) -> self``
        ``anchors`` is an :class:`~hti_bench.anchors.AnchorSet`: anchor λ values, condition rows x of
        shape (M, C) and output samples of shape (K, M, n, D). ``task`` is the
        :class:`~hti_bench.task.Task`; only surrogates that declare ``requires`` may use more of it
        than its metadata (its training loss and architecture). Draw all randomness from ``seed``.
        Store learned state in attributes ending in ``_``. A second call replaces the first. Return
        ``self``.

    ``sample(self, lam, conditions, n, seed) -> Tensor``
        Draw n samples of y ~ p̂(y | x, λ=lam) for each row of ``conditions`` (shape (M', C)); return
        a float tensor of shape (M', n, D). The same ``seed`` must give the same samples. For λ
        outside the anchor range raise ``ValueError`` unless ``supports_extrapolation`` is True.
        Interpolate on the task's clock, ``anchors.hyperparameter.to_time(λ)``; ``anchors.locate``
        does it for you.

    Class attributes
    ----------------
    name : str
        Registry name, lower case with dashes, unique across ``baselines/`` and ``methods/``.
    description : str
        One line for ``hti-bench list``.
    requires : frozenset of str
        Capabilities the task must offer, e.g. ``{"training_loss"}`` for best-response methods that
        train on the task's own loss. Where a task lacks one, the harness skips the surrogate there
        with the reason, and the leaderboard marks surrogates that use the training loss.
    supports_extrapolation : bool
        Whether ``sample`` answers outside [λ_0, λ_K-1].
    name_parameters : tuple of str
        Parameters always written into the surrogate's name (others appear when not at their
        default), e.g. ``("metric", "potential")`` gives ``clot[metric=learned,potential=True]``.
    test_config : dict
        Constructor arguments that make the surrogate fast enough for the contract test (a few
        seconds on a tiny task).
    references : tuple of str
        Citations.

    What the harness does for you
    -----------------------------
    It times ``fit`` and ``sample``, checks the shape and finiteness of what ``sample`` returns, and
    turns an exception, a NaN or a wrong shape into a *failed* result row with the reason, so one
    broken surrogate never stops a run. It scores samples by per-condition Wasserstein distance
    against the network actually trained at the held-out λ (:mod:`hti_bench.scoring`).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    supports_extrapolation: ClassVar[bool] = False
    name_parameters: ClassVar[tuple[str, ...]] = ()
    test_config: ClassVar[dict[str, Any]] = {}
    references: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def fit(self, anchors: AnchorSet, task: Task | None = None, *, seed: int = 0) -> Self:
        """Learn from the anchor networks' outputs (and, if ``requires`` says so, the task)."""

    @abstractmethod
    def sample(self, lam: float, conditions: Tensor, n: int, seed: int) -> Tensor:
        """Return samples of shape (M', n, D) of p̂(y | x, λ=lam) at each condition row."""

    def check_params(self) -> None:
        """Optional: raise :class:`~hti_bench.errors.ConfigError` for bad parameter values, without data.

        Sweep files are checked with it for every listed value before any run starts, so a typo in
        one value of a 100-run grid fails at once. The default checks nothing; ``fit`` must validate
        anyway (it may call this).
        """

    # ------------------------------------------------------------------ provided for you

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
        shown = {
            k: v
            for k, v in self.get_params().items()
            if k in self.name_parameters or v != defaults.get(k)
        }
        return format_spec(self.name, shown)

    @classmethod
    def uses_training_loss(cls) -> bool:
        return "training_loss" in cls.requires

    def skip(self, task: Task) -> str | None:
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

    def _check_sample_args(self, n: int) -> None:
        """What every ``sample`` checks first: fitted, and at least one sample asked for."""
        self._check_fitted()
        if int(n) < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")

    def _check_fitted(self) -> None:
        fitted = [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]
        if not fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(anchors) first.")

    @staticmethod
    def _generator(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(int(seed))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"
