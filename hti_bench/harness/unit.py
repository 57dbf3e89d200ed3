"""How one unit is scored: the only place a surrogate is fitted, sampled and scored.

A *unit* is (task, surrogate, seed). :func:`draw_inputs` draws what its fit and its scoring need
from the run seed: the :class:`~hti_bench.anchors.AnchorSet` (anchor networks' outputs, the surrogate's
only data) and one :class:`Reference` per held-out λ (the held-out network's samples and its floors,
which the surrogate never sees). :func:`evaluate` builds the surrogate from its name, validates it,
hands it a :class:`~hti_bench.view.TaskView` (never the task), fits, samples at every held-out λ,
scores, and returns a :class:`UnitResult`. The run loop, the worker processes, the sweep program and
the contract checks all call these functions; none of them scores a unit another way.

``evaluate`` never raises for a plugin's fault: an exception (a refused request of the view
included), a NaN or a wrong shape becomes a failed row with the reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
import traceback
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from hti_bench.anchors import AnchorSet
from hti_bench.clock import HyperparameterSpace, Point, stored_form
from hti_bench.errors import ConfigError, OpenConditionError
from hti_bench.harness import provenance as prov
from hti_bench.harness.results import SCHEMA_VERSION, ResultsStore, format_anchors
from hti_bench.harness.sandbox.lookup import open_surrogate
from hti_bench.harness.sandbox.outside import RemoteError, sealing_enabled
from hti_bench.harness.targets import prepare_targets
from hti_bench.scoring import PANEL, score_panel
from hti_bench.surrogate import Surrogate
from hti_bench.task import Task, TrainedTask
from hti_bench.view import TaskView

#: Sample clouds kept per unit of a 2-D task (for ``hti-bench plot``): the first conditions, samples each.
CLOUD_CONDITIONS = 4
CLOUD_SAMPLES = 500

#: Inputs kept per process (:func:`draw_inputs` with ``reuse=True``): a sweep's grid visits the same
#: (task, seed) once per surrogate, and drawing the held-out networks' samples is a large share of a unit.
INPUTS_KEPT = 8


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (task, seed, purpose, λ): independent streams per purpose.
    Pass λ as :func:`~hti_bench.clock.stored_form` writes it, so that a one-axis point draws what a
    bare value of one hyperparameter always drew."""
    blob = "\x00".join(repr(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class Reference:
    """What the harness keeps, per held-out λ, to score surrogates: never shown to them."""

    lam: Point
    samples: Tensor
    floor: dict[str, float]
    ref_metrics: dict[str, float]
    seed_floor: dict[str, float] = field(default_factory=dict)
    nearest_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitInputs:
    """What one (task, seed) gives every surrogate: the anchor set, and the references to score at."""

    anchors: AnchorSet
    references: tuple[Reference, ...]


@dataclass(frozen=True)
class SampleClouds:
    """A few conditions' samples of the surrogate and of the held-out network at one λ, for figures."""

    task: str
    surrogate_spec: str
    seed: int
    hyperparameter: str
    lam: float  # the held-out value of the task's one hyperparameter (clouds are kept on 1-D tasks only)
    conditions: Any  # numpy (m, C)
    surrogate: Any  # numpy (m, n, D)
    reference: Any  # numpy (m, n, D)

    def as_dict(self) -> dict[str, Any]:
        """The mapping :meth:`hti_bench.harness.results.ResultsStore.write_unit` stores."""
        return dict(vars(self))


@dataclass
class UnitResult:
    """What scoring one unit gave: one row per held-out λ (the results schema), and sample clouds for
    2-D tasks (None otherwise, or when they could not be kept)."""

    task: str
    surrogate: str
    seed: int
    rows: list[dict[str, Any]]
    clouds: SampleClouds | None = None

    @property
    def status(self) -> str:
        """``ok`` (every row), ``skipped``, ``failed`` (no ok row) or ``partial`` (some rows failed)."""
        states = {r["status"] for r in self.rows}
        if states == {"ok"}:
            return "ok"
        if states == {"skipped"}:
            return "skipped"
        return "partial" if "ok" in states else "failed"

    @property
    def error(self) -> str:
        """The first reason a row failed or was skipped ('' when every row is ok)."""
        return next((str(r["error"]) for r in self.rows if r["status"] != "ok"), "")

    @property
    def fit_seconds(self) -> float:
        values = [float(r["fit_seconds"]) for r in self.rows if isinstance(r.get("fit_seconds"), (int, float))]
        return max((v for v in values if math.isfinite(v)), default=math.nan)

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]]) -> UnitResult:
        """A unit read back from the results store."""
        rows = list(rows)
        first = rows[0]
        return cls(str(first["task"]), str(first["surrogate"]), int(first["seed"]), rows)


# ---------------------------------------------------------------------------------------- inputs


def build_anchor_set(task: Task, seed: int) -> AnchorSet:
    """Anchor networks' outputs at every condition, drawn with seeds derived from the run seed."""
    conditions, eval_mask = task.all_conditions()
    samples = torch.stack(
        [
            task.sample(lam, conditions, task.n_samples, derive_seed(task.spec, seed, "anchor", stored_form(lam)))
            for lam in task.anchors
        ]
    )
    return AnchorSet(
        space=task.hyperparameters,
        lambdas=task.anchors,
        conditions=conditions,
        samples=samples,
        eval_mask=eval_mask,
        categorical=task.categorical,
    )


def build_references(task: Task, seed: int) -> tuple[Reference, ...]:
    """Held-out networks' samples at the eval conditions, their noise floor and their task metrics; for
    a closed-loop task also the closed-loop metrics of the held-out network (the ceiling) and of the
    nearest anchor's network (the trivial answer), on the episodes every surrogate gets."""
    conds = task.eval_conditions().float()
    out = []
    for lam in task.heldout:
        key = stored_form(lam)
        ref = task.sample(lam, conds, task.n_samples, derive_seed(task.spec, seed, "reference", key))
        twin = task.floor_sample(lam, conds, task.n_samples, derive_seed(task.spec, seed, "floor", key))
        floor = score_panel(twin, ref).mean()
        other = task.seed_twin_sample(lam, conds, task.n_samples, derive_seed(task.spec, seed, "seed-floor", key))
        seed_floor = score_panel(other, ref).mean() if other is not None else {}
        ref_metrics, nearest = task.metrics(lam, conds, ref), {}
        if task.closed_loop:
            ref_metrics.update(task.closed_loop_metrics(lam, _acting(task, lam), seed))
            nearest = task.closed_loop_metrics(lam, _acting(task, nearest_anchor(task, lam)), seed)
        out.append(Reference(lam, ref, floor, ref_metrics, seed_floor, nearest))
    return tuple(out)


def nearest_anchor(task: Task, lam: Point) -> Point:
    """The anchor closest to λ in unit clock time (the first in the task's order on a tie: on one axis
    the lower one)."""
    return task.anchors[task.hyperparameters.nearest(task.anchors, lam)]


def _acting(task: Task, lam: Point) -> Any:
    """The target network at λ as a closed-loop policy (harness-side: it may be a held-out network)."""
    return lambda states, n, seed: task.sample(lam, states, n, seed)


_INPUTS: OrderedDict[tuple[str, int], UnitInputs] = OrderedDict()


def draw_inputs(task: Task, seed: int, *, reuse: bool = False) -> UnitInputs:
    """The anchor set and references of (task, seed). ``reuse`` keeps the last :data:`INPUTS_KEPT` in
    this process (the same seed always draws the same samples, so reusing changes no number)."""
    key = (task.spec, int(seed))
    if reuse and key in _INPUTS:
        _INPUTS.move_to_end(key)
        return _INPUTS[key]
    inputs = UnitInputs(build_anchor_set(task, seed), build_references(task, seed))
    if reuse:
        _INPUTS[key] = inputs
        while len(_INPUTS) > INPUTS_KEPT:
            _INPUTS.popitem(last=False)
    return inputs


# ---------------------------------------------------------------------------------------- scoring


def evaluate(
    task: Task,
    spec: str | Surrogate,
    seed: int,
    inputs: UnitInputs | None = None,
    *,
    clouds: bool = True,
    quiet: bool = False,
) -> UnitResult:
    """Fit the surrogate ``spec`` (a name like ``cfm[steps=30]``, or an unfitted instance) for one seed
    and score it at every held-out λ of ``task``.

    ``inputs`` defaults to :func:`draw_inputs` of (task, seed). With ``clouds``, a task with 2-D outputs
    also gets the surrogate's and the held-out network's samples at the middle held-out λ (the first
    :data:`CLOUD_CONDITIONS` conditions, at most :data:`CLOUD_SAMPLES` samples each).
    A name runs *sealed*: its code in a sandbox process of its own (:mod:`hti_bench.harness.sandbox`), unless
    ``--unsealed`` (``HTI_BENCH_UNSEALED=1``); an instance runs in this process (a plugin's own tests),
    and its rows say ``sealed = false``. ``quiet`` silences the sandbox's ``UserWarning`` s.
    Raises only for a bad name or parameter (before anything trains); plugin faults become rows.
    """
    surrogate = open_surrogate(spec, task, quiet=quiet)
    try:
        return _evaluate(task, surrogate, seed, inputs if inputs is not None else draw_inputs(task, seed), clouds)
    finally:
        surrogate.close()


def _evaluate(task: Task, surrogate: Any, seed: int, inputs: UnitInputs, clouds: bool) -> UnitResult:
    spec = surrogate.spec  # canonical form: defaults dropped, keys sorted
    references = inputs.references
    base = dict(uses_training_loss=surrogate.uses_training_loss(), sealed=surrogate.sealed)
    rows = [_base_row(task, spec, seed, ref.lam, i, **base) for i, ref in enumerate(references)]
    for row, ref in zip(rows, references):
        row.update({f"floor_{k}": v for k, v in ref.floor.items() if k in PANEL})
        row.update({f"seed_floor_{k}": v for k, v in ref.seed_floor.items() if k in PANEL})
        row.update({f"ref_metric_{k}": v for k, v in ref.ref_metrics.items()})
        row.update({f"nearest_metric_{k}": v for k, v in ref.nearest_metrics.items()})
    result = UnitResult(task.spec, spec, int(seed), rows)

    try:
        space = applied_space(task, surrogate)
    except ConfigError as err:  # a clock that cannot read this task's range: the surrogate does not apply
        for row in rows:
            row.update(status="skipped", error=str(err))
        return _stamp(result)
    for row in rows:
        row["clock"] = space.clock_label
    anchors = inputs.anchors
    if space != anchors.space:
        anchors = dataclasses.replace(anchors, space=space)
    view = TaskView(task, requires=surrogate.requires, space=space)
    anchors = dataclasses.replace(anchors, oracle=view.anchor_samples)
    try:
        reason = surrogate.multi_skip_reason(task.d) or surrogate.skip(view)
    except Exception as err:  # a plugin fault, like any other
        _fail(rows, f"skip: {describe(err)}")
        return _stamp(result)
    if reason:
        for row in rows:
            row.update(status="skipped", error=reason)
        return _stamp(result)

    start = time.perf_counter()
    try:
        surrogate.fit(anchors, view, seed)
    except Exception as err:  # a plugin fault: record it and carry on with the next unit
        _fail(rows, f"fit: {describe(err)}")
        return _stamp(result)
    fit_seconds = time.perf_counter() - start

    conds = task.eval_conditions().float()
    expected = (conds.shape[0], task.n_samples, task.output_dim)
    # Clouds are figures of one hyperparameter's path (a plane of held-out points has its heat map).
    cloud_at = len(references) // 2 if clouds and task.output_dim == 2 and task.d == 1 else -1
    where = task.hyperparameters.describe
    for i, (row, ref) in enumerate(zip(rows, references)):
        row["fit_seconds"] = fit_seconds
        start = time.perf_counter()
        try:
            out = surrogate.sample(
                ref.lam, conds, task.n_samples, derive_seed(task.spec, seed, "sample", stored_form(ref.lam))
            )
            row["sample_seconds"] = time.perf_counter() - start
            if tuple(out.shape) != expected:
                raise ValueError(f"sample() returned shape {tuple(out.shape)}, expected (M, n, D) = {expected}")
            if not torch.isfinite(out).all():
                bad = int((~torch.isfinite(out)).any(dim=-1).sum())
                raise ValueError(f"sample() returned {bad} non-finite samples (NaN or inf)")
            row.update(score_panel(out, ref.samples).mean())
            row.update({f"metric_{k}": v for k, v in task.metrics(ref.lam, conds, out).items()})
        except OpenConditionError as err:
            # Inductive scoring asks at conditions outside the anchor data: a surrogate that cannot answer
            # there does not apply (in the transductive mode it has no excuse: a failed row, below).
            if task.mode == "inductive":
                row.update(status="skipped", error=f"inductive mode: {err}")
            else:
                row.update(status="failed", error=f"sample at {where(ref.lam)}: {describe(err)}")
            continue
        except Exception as err:
            row.update(status="failed", error=f"sample at {where(ref.lam)}: {describe(err)}")
            continue
        if task.closed_loop:
            _closed_loop(task, surrogate, seed, ref.lam, row)
        if i == cloud_at:
            result.clouds = _clouds(task, spec, seed, ref, conds, out)
    return _stamp(result)


def _closed_loop(task: Task, surrogate: Any, seed: int, lam: Point, row: dict[str, Any]) -> None:
    """The surrogate's closed-loop metrics at λ into ``row``: skipped with the reason (in
    ``metric_note``) when it cannot answer at new states, a failed row when the rollout crashes."""

    def act(states: Tensor, n: int, sample_seed: int) -> Tensor:
        return surrogate.sample(lam, states, n, sample_seed)

    start = time.perf_counter()
    try:
        metrics = task.closed_loop_metrics(lam, act, seed)
    except OpenConditionError as err:
        row["metric_note"] = f"closed loop skipped: {err}"
        return
    except Exception as err:
        row.update(status="failed", error=f"closed loop at {task.hyperparameters.describe(lam)}: {describe(err)}")
        return
    finally:
        row["closed_loop_seconds"] = time.perf_counter() - start
    row.update({f"metric_{k}": v for k, v in metrics.items()})


def applied_space(task: Task, surrogate: Any) -> HyperparameterSpace:
    """The task's hyperparameter space on the clock the surrogate's name asks for (``clock=…``, every
    axis on it; default the task's own). Raises :class:`~hti_bench.errors.ConfigError` when that clock
    cannot read the task's range."""
    space = task.hyperparameters
    return space.with_clock(surrogate.clock) if surrogate.clock else space


def run_unit(task: Task, spec: str, seed: int, store: ResultsStore, *, force: bool = False) -> UnitResult:
    """One unit's result: read back from ``store`` if it holds it (unless ``force``), else its targets
    trained, the unit evaluated and stored now (inputs reused within this process). The sweep program's
    per-seed step."""
    if not force and store.has_unit(task.spec, spec, seed):
        return UnitResult.from_rows(store.read_unit(task.spec, spec, seed).to_dict("records"))
    prepare_targets(task)
    result = evaluate(task, spec, seed, draw_inputs(task, seed, reuse=True))
    store.write_unit(result.rows, samples=stored_clouds(result))
    return result


def stored_clouds(result: UnitResult) -> dict[str, Any]:
    """What :meth:`~hti_bench.harness.results.ResultsStore.write_unit` stores of the unit's clouds: an
    empty mapping (which removes a stale cloud of the same unit from an earlier run) when it has none."""
    return result.clouds.as_dict() if result.clouds is not None else {}


def failed(task: Task, spec: str, seed: int, reason: str) -> UnitResult:
    """The unit as failed rows with ``reason``, without fitting (e.g. its worker process died); ``spec``
    is the canonical spec the run resolved (:func:`hti_bench.harness.sandbox.lookup.resolve_many`)."""
    from hti_bench.harness.sandbox import lookup

    known = lookup.resolved(spec)
    uses_training_loss = known.uses_training_loss if known else False
    rows = [
        _base_row(task, spec, seed, lam, i, uses_training_loss=uses_training_loss, sealed=sealing_enabled())
        for i, lam in enumerate(task.heldout)
    ]
    _fail(rows, reason)
    return _stamp(UnitResult(task.spec, spec, int(seed), rows))


def describe(err: BaseException) -> str:
    """One line naming an exception and its message (what a failed row's ``error`` says); for an
    exception raised in a sandbox, the line the sandbox wrote, so that a row reads the same sealed or not."""
    if isinstance(err, RemoteError):
        return err.line.replace("\n", " ")[:500]
    line = traceback.format_exception_only(type(err), err)[-1].strip()
    return line.replace("\n", " ")[:500]


def anchor_train_seconds(task: Task) -> float:
    """What training the anchors cost (sum of the cache's recorded times), NaN for untrained tasks."""
    if not isinstance(task, TrainedTask):
        return math.nan
    return float(sum(task.train_seconds(lam) for lam in task.anchors))


def _base_row(
    task: Task, spec: str, seed: int, lam: Point, index: int, *, uses_training_loss: bool, sealed: bool
) -> dict[str, Any]:
    space = task.hyperparameters
    # The results schema: one hyperparameter keys a row by λ's value; several by the point's index in
    # the held-out list (the key stays one number), the point in lambda_point and lambda_<axis>.
    by_value = task.d == 1
    return {
        "task": task.spec,
        "track": "default",
        "surrogate": spec,
        "config": spec,
        "seed": int(seed),
        "lambda_heldout": float(lam[0]) if by_value else float(index),
        "hyperparameter": space.name,
        "anchors": format_anchors(task.anchors),
        "clock": space.clock_label,
        "d": task.d,
        "lambda_point": space.label(lam),
        **({} if by_value else {f"lambda_{axis}": float(v) for axis, v in zip(space.names, lam)}),
        "anchor_distance": space.distance(nearest_anchor(task, lam), lam),
        "mode": task.mode,
        "status": "ok",
        "error": "",
        **{f"{prefix}{metric}": math.nan for prefix in ("", "floor_", "seed_floor_") for metric in PANEL},
        "mmd_bandwidth": math.nan,
        "n_conditions": int(task.eval_conditions().shape[0]),
        "n_samples": task.n_samples,
        "fit_seconds": math.nan,
        "sample_seconds": math.nan,
        "closed_loop_seconds": math.nan,
        "metric_note": "",
        "uses_training_loss": bool(uses_training_loss),
        "sealed": bool(sealed),
        "anchor_train_seconds": anchor_train_seconds(task),
        "tuning_trials": math.nan,
        "tuning_fit_seconds": math.nan,
        "tuning_score": math.nan,
        **prov.provenance(),
        "run_date": "",
        "schema_version": SCHEMA_VERSION,
    }


def _fail(rows: list[dict[str, Any]], reason: str) -> None:
    for row in rows:
        row.update(status="failed", error=reason)


def _clouds(task: Task, spec: str, seed: int, ref: Reference, conds: Tensor, out: Tensor) -> SampleClouds | None:
    """A few conditions' clouds; a fault here warns and never fails the unit."""
    m, n = CLOUD_CONDITIONS, CLOUD_SAMPLES
    try:
        return SampleClouds(
            task=task.spec,
            surrogate_spec=spec,
            seed=int(seed),
            hyperparameter=task.hyperparameters.axis.name,
            lam=float(ref.lam[0]),
            conditions=conds[:m].detach().cpu().numpy().astype("float32"),
            surrogate=out[:m, :n].detach().cpu().float().numpy(),
            reference=torch.as_tensor(ref.samples)[:m, :n].detach().cpu().float().numpy(),
        )
    except Exception as err:
        warnings.warn(f"sample clouds of {task.spec} {spec} seed={seed} not kept: {describe(err)}", stacklevel=2)
        return None


def _stamp(result: UnitResult) -> UnitResult:
    date = prov.now()
    for row in result.rows:
        row["run_date"] = date
    return result
