"""What a surrogate may see of a task: :class:`TaskView`, narrow and read-only.

A surrogate is scored against the networks trained at held-out λ, so nothing it receives may reach
them. The harness therefore never hands a surrogate the :class:`~hti_bench.task.Task` itself (which can
train or load a network at *any* λ, knows the held-out list and holds the target cache), only a view
that offers:

- always: the task's ``name``, its ``hyperparameters`` (the space: axes' names, ranges, clocks), the ``anchors``,
  ``output_dim``, ``condition_dim``, ``categorical``, ``capabilities`` and ``capability_notes``; and
  the *anchor oracle* :meth:`~TaskView.anchor_samples`, the anchor networks (and only those) run on
  new condition rows: a deployed anchor network can always be run on a new input, which is what a
  closed-loop rollout or an inductive score needs (the harness hands it to surrogates as
  :attr:`hti_bench.anchors.AnchorSet.oracle`);
- with ``"architecture"`` declared in the surrogate's ``requires`` (and offered by the task):
  :meth:`~TaskView.build_network`, :meth:`~TaskView.sample_network`, and the anchor networks,
  :meth:`~TaskView.anchor_network` (a fresh copy each call; any other λ is refused);
- with ``"training_loss"`` declared: the anchors' training budget (``epochs``, ``lr``,
  ``batch_size``), :meth:`~TaskView.training_data` and :meth:`~TaskView.per_example_loss`, during
  ``fit()`` only (afterwards the harness seals them, so no surrogate can train at a λ it is queried at).

Everything else raises :class:`~hti_bench.errors.LeakError` with the reason: asking for a held-out λ's
network, reaching for ``view.task``, ``view.cache`` or ``view.heldout``, calling the loss after
``fit()``, using a capability the surrogate did not declare. The view keeps no reference to the task
among its attributes (its state lives in this module, keyed by the view), so walking a view's
attributes finds no task, cache or held-out network. In-process Python cannot stop deliberate
introspection of the interpreter (``gc``); the view closes every door a plugin is handed.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hti_bench.clock import HyperparameterSpace, Point, as_point
from hti_bench.errors import LeakError, NotOnViewError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from hti_bench.task import Task

#: What each gated method needs the surrogate to have declared in ``requires``.
_NEEDS = {
    "build_network": "architecture",
    "sample_network": "architecture",
    "anchor_network": "architecture",
    "training_data": "training_loss",
    "per_example_loss": "training_loss",
    "epochs": "training_loss",
    "lr": "training_loss",
    "batch_size": "training_loss",
}


@dataclass
class _Hidden:
    """A view's state, kept out of the view object's reach."""

    task: Task
    requires: frozenset[str]
    anchors: tuple[Point, ...]
    space: HyperparameterSpace
    sealed: bool = False
    notes: dict[str, str] = field(default_factory=dict)


_STATE: weakref.WeakKeyDictionary[TaskView, _Hidden] = weakref.WeakKeyDictionary()


def _public() -> list[str]:
    return sorted(n for n in dir(TaskView) if not n.startswith("_"))


class TaskView:
    """A surrogate's read-only view of a task (see the module docstring for what it offers and why).

    Built by the harness for each fit: ``TaskView(task, requires=surrogate.requires)``, with
    ``space=`` the task's hyperparameter space on the clock the surrogate's name chose, if it chose one.
    """

    __slots__ = ("__weakref__",)

    def __init__(
        self,
        task: Task,
        requires: Sequence[str] | frozenset[str] = frozenset(),
        *,
        space: HyperparameterSpace | None = None,
    ) -> None:
        _STATE[self] = _Hidden(
            task=task,
            requires=frozenset(requires),
            anchors=tuple(task.anchors),
            notes=dict(task.capability_notes),
            space=task.hyperparameters if space is None else space,
        )

    # ------------------------------------------------------------------ always offered

    @property
    def name(self) -> str:
        """The task's registry name (without options: those include the held-out λ)."""
        return _STATE[self].task.name

    @property
    def hyperparameters(self) -> HyperparameterSpace:
        """The space of λ: d named axes with their ranges and clocks (one axis for a task of one
        hyperparameter; ``hyperparameters.axis`` reads it), on the clock the harness applies: the task's
        own unless the surrogate's name chose another."""
        return _STATE[self].space

    @property
    def d(self) -> int:
        """How many hyperparameters λ has (λ is always a tuple of d floats)."""
        return self.hyperparameters.d

    @property
    def anchors(self) -> tuple[Point, ...]:
        """The anchor λ, points (tuples of d floats) in the task's order (increasing on one axis)."""
        return _STATE[self].anchors

    @property
    def output_dim(self) -> int:
        return int(_STATE[self].task.output_dim)

    @property
    def condition_dim(self) -> int:
        return int(_STATE[self].task.condition_dim)

    @property
    def categorical(self) -> bool:
        return bool(_STATE[self].task.categorical)

    @property
    def capabilities(self) -> frozenset[str]:
        """What the task offers best-response surrogates: ``training_loss``, ``architecture``."""
        return frozenset(_STATE[self].task.capabilities)

    @property
    def capability_notes(self) -> dict[str, str]:
        """Why the task lacks a capability it does not offer."""
        return dict(_STATE[self].notes)

    def anchor_samples(self, conditions: Tensor, n: int, seed: int) -> Tensor:
        """The anchor oracle: n draws of every anchor network at each condition row (M', C), shape
        (K, M', n, D), anchors in increasing order; draws are fixed by ``seed``. It takes no λ: it can
        only ever run the anchors."""
        import torch

        state = _STATE[self]
        conditions = torch.as_tensor(conditions, dtype=torch.float32)
        if conditions.ndim != 2 or conditions.shape[1] != state.task.condition_dim:
            raise ValueError(
                f"anchor_samples needs conditions of shape (M, {state.task.condition_dim}), got {tuple(conditions.shape)}"
            )
        # One stream per anchor, so adding an anchor does not change the others' draws.
        return torch.stack(
            [
                state.task.sample(lam, conditions, int(n), (int(seed) * 1_000_003 + 7919 * k) % 2**31)
                for k, lam in enumerate(state.anchors)
            ]
        )

    # ------------------------------------------------------------------ "architecture"

    def build_network(self) -> nn.Module:
        """The task's architecture, untrained."""
        return _gate(self, "build_network").build_network()

    def sample_network(self, network: nn.Module, conditions: Tensor, n: int, generator: torch.Generator) -> Tensor:
        """Outputs of ``network`` (the task's architecture, e.g. with generated weights), shape (M, n, D)."""
        return _gate(self, "sample_network").sample_network(network, conditions, n, generator)

    def anchor_network(self, lam: Point) -> nn.Module:
        """A copy of the network trained at the anchor λ, in eval mode; any other λ is refused."""
        task = _gate(self, "anchor_network")
        anchors = _STATE[self].anchors
        matches = [a for a in anchors if _same_point(lam, a)]
        if not matches:
            raise LeakError(
                f"λ={lam} is not an anchor of task '{task.name}' (anchors {', '.join(map(str, anchors))}): "
                "a surrogate may use the anchor networks only"
            )
        anchor = matches[0]
        copy = task.build_network()
        copy.load_state_dict(task.network(anchor).state_dict())
        return copy.eval()

    # ------------------------------------------------------------------ "training_loss"

    @property
    def epochs(self) -> int:
        """Epochs each anchor network was trained for (a best-response method's usual budget)."""
        return int(_gate(self, "epochs", sealed_ok=True).config.epochs)

    @property
    def lr(self) -> float:
        """Learning rate the anchor networks were trained with."""
        return float(_gate(self, "lr", sealed_ok=True).config.lr)

    @property
    def batch_size(self) -> int:
        """Minibatch size the anchor networks were trained with."""
        return int(_gate(self, "batch_size", sealed_ok=True).config.batch_size)

    def training_data(self) -> tuple[Tensor, ...]:
        """A copy of the task's training set (tensors sharing their first dimension); during fit() only."""
        return tuple(t.clone() for t in _gate(self, "training_data").training_data())

    def per_example_loss(self, network: nn.Module, batch: Sequence[Tensor], lam: Tensor) -> Tensor:
        """The task's loss of each example of ``batch`` at its own λ (shape (B,)); during fit() only.
        See :meth:`hti_bench.task.TrainedTask.per_example_loss` for the call contract."""
        return _gate(self, "per_example_loss").per_example_loss(network, batch, lam)

    def __getattr__(self, name: str) -> Any:
        raise NotOnViewError(
            f"a TaskView has no {name!r}: a surrogate sees {', '.join(_public())}. Held-out λ, their networks and "
            "samples, the task object and the target cache are not reachable from a surrogate, by design"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise LeakError(f"a TaskView is read-only (tried to set {name!r})")

    def __reduce__(self) -> Any:
        raise LeakError("a TaskView cannot be pickled or copied: it exists for one fit in one process")

    def __repr__(self) -> str:
        state = _STATE.get(self)
        return f"<TaskView of {state.task.name}>" if state else "<TaskView (released)>"


def _same_point(lam: Any, anchor: Point) -> bool:
    try:
        a, b = as_point(lam), as_point(anchor)
        return len(a) == len(b) and all(
            math.isclose(float(x), float(y), rel_tol=0.0, abs_tol=1e-12) for x, y in zip(a, b)
        )
    except (TypeError, ValueError):
        return False


def _gate(view: TaskView, what: str, sealed_ok: bool = False) -> Any:
    """The task behind ``view``, if the surrogate may use ``what`` now; else :class:`LeakError` saying why.
    A module function, not a method: nothing reachable from the view returns the task."""
    state = _STATE[view]
    need = _NEEDS[what]
    if need not in state.requires:
        raise LeakError(
            f"{what} needs the task's {need.replace('_', ' ')}: declare requires = "
            f"frozenset({{{need!r}, ...}}) on the surrogate (best-response methods do; the leaderboard marks them)"
        )
    if need not in state.task.capabilities:
        note = state.notes.get(need, "")
        raise LeakError(f"task '{state.task.name}' offers no {need.replace('_', ' ')}" + (f" ({note})" if note else ""))
    if state.sealed and need == "training_loss" and not sealed_ok:
        raise LeakError(
            f"{what} is available during fit() only: a surrogate may not train at a λ it is asked to sample"
        )
    return state.task


def seal(view: TaskView) -> None:
    """End the training part of ``view``: called by the harness when ``fit()`` returns."""
    _STATE[view].sealed = True
