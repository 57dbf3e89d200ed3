"""Leak-free tuning: every surrogate gets the same number of trials, scored on the anchors only.

The *default track* runs each surrogate as named. The *tuned track* first searches its declared
:attr:`~hti_bench.surrogate.Surrogate.search_space`, plus the clock (every clock that can read the
task's range, applied by the harness: :data:`hti_bench.clock.CLOCK_PARAM`), then refits the best
configuration on all anchors and scores it at the held-out λ like any run. Trials never see a
held-out λ:

- **validation folds** (:func:`validation_folds`). A task with K ≥ 3 anchors is tuned by leaving one
  interior anchor out: fit on the other K − 1, score at the one left out (the trajectory-inference
  field's leave-one-timepoint-out protocol), averaged over the K − 2 interior anchors. A task with 2
  anchors declares ``validation`` λ (:class:`hti_bench.task.TaskConfig`), networks trained and cached
  like anchors, used only here: fit on the anchors, score at the validation λ. A task with more anchors
  may declare validation λ too (``moons-dropout`` and ``semicircles`` do; any task takes
  ``validation=(…)``): they add that fold to the left-out ones. With 3 anchors, leaving one out
  validates at the middle anchor only, from an interval twice as wide as the ones scored, and cannot
  see the clock (docs/evidence/leaderboards.md, "The clock"): validation λ inside the real intervals
  are a closer rehearsal.
- each fold is a task of its own (:func:`fold_task`): the same task with ``anchors`` and ``heldout``
  replaced, so it is fitted and scored by the one scoring path (:func:`hti_bench.harness.unit.evaluate`)
  and its units are stored, for resuming, in ``<results>/tuning/`` (never in the leaderboard's store).
  Its network store is a :class:`GuardedStore` that refuses the real held-out λ outright.
- trial 0 is the surrogate as named (its default configuration on the task's own clock), so tuning can
  only match or beat the default on validation; the others are proposed by W&B's ``sweeps`` engine
  (``random`` or ``bayes``; a finite space no larger than the budget is enumerated instead), seeded
  from (task, surrogate, trial), so a killed run proposes, and reads back, the same trials.

A trial's score is the mean W₂ over its folds and tuning seeds; the lowest wins, ties going to the
earlier trial. The tuned rows (:func:`tuned_unit`) carry ``track=tuned``, the name tuning started from
in ``surrogate``, the chosen configuration in ``config``, and the tuning cost (total fit seconds of
every trial) beside the score.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hti_bench.clock import CLOCK_PARAM, Point, as_point, stored_form
from hti_bench.errors import ConfigError, LeakError
from hti_bench.harness.fsutil import atomic_write_bytes
from hti_bench.harness.registry import make_task
from hti_bench.harness.results import ResultsStore, safe_name
from hti_bench.harness.sandbox import lookup
from hti_bench.specs import format_spec, parse_spec
from hti_bench.task import NetworkStore, Task, TrainedTask

#: The track name of tuned rows.
TUNED = "tuned"

#: Search methods ``hti-bench tune`` offers (the ``sweeps`` engine's).
METHODS = ("random", "bayes")

#: Where tuning keeps its trial units and studies, under the results folder.
TUNING_DIR = "tuning"

#: Proposals drawn per trial at most before a search over a small space is declared exhausted.
PROPOSALS_PER_TRIAL = 20


# ---------------------------------------------------------------------------------------------------
# the validation protocol


@dataclass(frozen=True)
class Fold:
    """One validation split: fit on ``anchors``, score at ``validation`` (all of them anchors or the
    task's validation λ; never a held-out λ)."""

    anchors: tuple[Point, ...]
    validation: tuple[Point, ...]


def validation_folds(task: Task) -> tuple[Fold, ...]:
    """The task's validation folds: leave-one-interior-anchor-out (each anchor inside the hull of the
    others: on a line the interior anchors, on a grid the interior and edge points, never a corner, so
    the fold still interpolates), and one more fold on all anchors scored at its validation λ if it
    declares any (a 2-anchor task must). Raises :class:`ConfigError` for a task with no fold."""
    anchors, space = task.anchors, task.hyperparameters
    inner = []
    for j, a in enumerate(anchors):
        rest = anchors[:j] + anchors[j + 1 :]
        try:
            space.simplex(rest, a)
        except ValueError:
            continue
        inner.append(j)
    folds = [Fold(anchors[:j] + anchors[j + 1 :], (anchors[j],)) for j in inner]
    if task.validation:
        folds.append(Fold(anchors, task.validation))
    if folds:
        return tuple(folds)
    raise ConfigError(
        f"task '{task.spec}' has 2 anchors, so no anchor can be left out for tuning, and declares no "
        f"validation {task.hyperparameters.name}: give it validation=(…) (λ values strictly between the anchors, "
        "not held out), or a third anchor."
    )


class GuardedStore:
    """A network store that refuses the held-out λ: what a fold task trains and loads through."""

    def __init__(self, inner: NetworkStore, forbidden: Sequence[Point], task_name: str) -> None:
        self.inner, self.task_name = inner, task_name
        self.forbidden = tuple(as_point(v) for v in forbidden)

    def _check(self, lam: Any) -> None:
        point = as_point(lam)
        if any(
            len(point) == len(f) and all(math.isclose(a, b, rel_tol=0.0, abs_tol=1e-12) for a, b in zip(point, f))
            for f in self.forbidden
        ):
            raise LeakError(f"tuning asked for the network of '{self.task_name}' at held-out λ={lam}: refused")

    def get_or_train(self, task: TrainedTask, lam: Point, seed: int) -> Any:
        self._check(lam)
        return self.inner.get_or_train(task, lam, seed)

    def train_seconds(self, task: TrainedTask, lam: Point, seed: int) -> float:
        self._check(lam)
        return self.inner.train_seconds(task, lam, seed)


def fold_task(task: Task, fold: Fold) -> Task:
    """``task`` with the fold's anchors and its validation λ as the scored ones, behind a
    :class:`GuardedStore` that refuses ``task``'s held-out λ."""
    name, params = parse_spec(task.spec)
    # Points are written as a user writes them (one hyperparameter as bare numbers), so that a fold's
    # name, and the units stored under it, stay what they always were.
    anchors, heldout = (tuple(stored_form(p) for p in points) for points in (fold.anchors, fold.validation))
    spec = format_spec(name, {**params, "anchors": anchors, "heldout": heldout, "validation": ()})
    cache = task.cache
    guarded = GuardedStore(cache, task.heldout, task.spec) if cache is not None else None
    return make_task(spec, cache=guarded)


# ---------------------------------------------------------------------------------------------------
# the search


def fixed_params(surrogate: str) -> dict[str, Any]:
    """The parameters a name fixes for tuning: those set to a value other than their default (the clock
    included). A parameter the name shows at its default, as ``name_parameters`` always are
    (``cfm[matcher=plain]``), is searched like any other."""
    lookup.resolve(surrogate)  # its name and parameters are valid
    _, params = parse_spec(surrogate)
    defaults = surrogate_defaults(parse_spec(surrogate)[0])
    return {k: v for k, v in params.items() if k == CLOCK_PARAM or k not in defaults or _plain(v) != defaults[k]}


def search_space(task: Task, surrogate: str) -> dict[str, dict[str, Any]]:
    """What tuning searches for ``surrogate`` (a name, perhaps with fixed parameters) on ``task``, in
    W&B sweep parameter syntax: the surrogate's declared space without the parameters its name fixes,
    and the clock over every clock that can read the task's range (unless the name fixes it)."""
    fixed = fixed_params(surrogate)
    declared = lookup.entry(parse_spec(surrogate)[0]).search_space
    space = {k: dict(v) for k, v in declared.items() if k not in fixed}
    if CLOCK_PARAM not in fixed:
        clocks = [c.value for c in task.hyperparameters.clocks()]
        if len({a.clock for a in task.hyperparameters.axes}) > 1:
            clocks = ["", *clocks]  # '' = each axis on the task's own clock, which no single clock reproduces
        if len(clocks) > 1:
            space[CLOCK_PARAM] = {"values": clocks}
    return space


def _finite_size(space: Mapping[str, Mapping[str, Any]]) -> int | None:
    """How many configurations a space of listed values holds (None if any parameter is a distribution)."""
    size = 1
    for spec in space.values():
        if "values" in spec:
            size *= len(spec["values"])
        elif "value" not in spec:
            return None
    return size


def trial_spec(task: Task, surrogate: str, proposal: Mapping[str, Any]) -> str:
    """The canonical surrogate name of a proposal (parameters at their default and the task's own clock
    dropped, so equal configurations share their stored units)."""
    name, fixed = parse_spec(surrogate)
    # YAML and the engine give lists where a default is a tuple: equal configurations must get equal names.
    params = {**fixed, **{k: _plain(v) for k, v in proposal.items()}}
    defaults = surrogate_defaults(name)
    params = {k: v for k, v in params.items() if k not in defaults or v != defaults[k] or k == CLOCK_PARAM}
    own = {a.clock.value for a in task.hyperparameters.axes}
    if params.get(CLOCK_PARAM) == "" or (len(own) == 1 and params.get(CLOCK_PARAM) in own):
        params.pop(CLOCK_PARAM)
    return lookup.resolve(format_spec(name, params)).spec


def surrogate_defaults(name: str) -> dict[str, Any]:
    return lookup.entry(name).params


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def _round(value: Any) -> Any:
    return float(f"{value:.4g}") if isinstance(value, float) else value


@dataclass
class Trial:
    """One configuration tried: its score on the validation folds (NaN if it failed or does not apply)."""

    spec: str
    params: dict[str, Any]
    score: float = math.nan
    status: str = "ok"
    error: str = ""
    fit_seconds: float = 0.0


@dataclass
class Study:
    """What tuning one (task, surrogate) did: the trials in order and the chosen configuration."""

    task: str
    surrogate: str
    method: str
    budget: int
    tune_seeds: tuple[int, ...]
    folds: list[dict[str, Any]]
    trials: list[Trial] = field(default_factory=list)

    @property
    def best(self) -> Trial | None:
        """The lowest-scoring ok trial (the earliest among equals), or None if none is ok."""
        ok = [t for t in self.trials if t.status == "ok" and math.isfinite(t.score)]
        return min(ok, key=lambda t: t.score) if ok else None

    @property
    def fit_seconds(self) -> float:
        """The tuning cost: fit() seconds of every trial unit (a configuration tried twice counts once)."""
        return float(sum(t.fit_seconds for t in self.trials))

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        best = self.best
        out.update(
            best=best.spec if best else None,
            best_score=best.score if best else None,
            tuning_fit_seconds=self.fit_seconds,
        )
        return out


def _score_trial(folds: Sequence[Task], spec: str, seeds: Sequence[int], store: ResultsStore) -> Trial:
    from hti_bench.harness.unit import run_unit

    trial = Trial(spec=spec, params=parse_spec(spec)[1])
    scores: list[float] = []
    for task in folds:
        for seed in seeds:
            result = run_unit(task, spec, seed, store)
            trial.fit_seconds += result.fit_seconds if math.isfinite(result.fit_seconds) else 0.0
            if result.status == "skipped":
                trial.status, trial.error = "skipped", result.error
                return trial
            if result.status != "ok":
                trial.status, trial.error = "failed", result.error
                return trial
            scores.extend(float(r["w2"]) for r in result.rows)
    trial.score = float(sum(scores) / len(scores)) if scores else math.nan
    return trial


def _engine_run(sweeps: Any, name: str, trial: Trial, proposal: Mapping[str, Any]) -> Any:
    score = trial.score if math.isfinite(trial.score) else None
    return sweeps.SweepRun(
        name=name,
        config={k: {"value": v} for k, v in proposal.items()},
        state=sweeps.RunState("finished" if score is not None else "failed"),
        summary_metrics={"score": score} if score is not None else {},
        history=[{"score": score}] if score is not None else [],
    )


def _seed_engines(*parts: Any) -> None:
    import numpy as np

    from hti_bench.harness.unit import derive_seed

    value = derive_seed("tune", *parts)
    random.seed(value)  # the engine's random search draws from the stdlib generator
    np.random.seed(value)  # bayes from numpy's global one


def tune(
    task: Task,
    surrogate: str,
    *,
    trials: int = 8,
    method: str = "random",
    tune_seeds: Sequence[int] = (0,),
    results_dir: str | Path = "results",
    on_trial: Callable[[Trial], None] | None = None,
) -> Study:
    """Search ``surrogate``'s configurations on ``task``'s validation folds (never its held-out λ).

    ``trials`` configurations are scored in all (fewer when the space holds fewer), the first being
    ``surrogate`` as named. Trial units are stored in ``<results_dir>/tuning/``, so calling this again
    after a kill reads back what was done and proposes the same next trials; the study is written to
    ``<results_dir>/tuning/studies/``. Raises :class:`ConfigError` for a bad name, method or budget.
    """
    from hti_bench.harness.targets import prepare_targets
    from hti_bench.sweeping.engine import import_sweeps

    if method not in METHODS:
        raise ConfigError(f"Unknown tuning method {method!r}; valid: {', '.join(METHODS)}.")
    if int(trials) < 1:
        raise ConfigError(f"tuning needs at least 1 trial, got {trials}.")
    surrogate = lookup.resolve(surrogate).spec
    folds = validation_folds(task)
    fold_tasks = [fold_task(task, f) for f in folds]
    space = search_space(task, surrogate)
    store = ResultsStore(Path(results_dir) / TUNING_DIR)
    study = Study(
        task=task.spec,
        surrogate=surrogate,
        method=method,
        budget=int(trials),
        tune_seeds=tuple(int(s) for s in tune_seeds),
        folds=[{k: [stored_form(p) for p in v] for k, v in asdict(f).items()} for f in folds],
    )
    for ft in fold_tasks:
        prepare_targets(ft)

    seen: dict[str, Trial] = {}

    def run(spec: str, proposal: dict[str, Any]) -> Trial:
        if spec not in seen:
            seen[spec] = _score_trial(fold_tasks, spec, study.tune_seeds, store)
            seen[spec].params = dict(proposal)
            study.trials.append(seen[spec])
            if on_trial is not None:
                on_trial(seen[spec])
        return seen[spec]

    first = run(surrogate, {})
    if first.status == "skipped" or not space:
        _save(study, results_dir)
        return study
    size = _finite_size(space)
    sweeps = import_sweeps()
    engine_method = "grid" if size is not None and size <= int(trials) - 1 else method
    config = sweeps.SweepConfig(
        {"method": engine_method, "metric": {"name": "score", "goal": "minimize"}, "parameters": space}
    )
    history: list[Any] = []
    attempts = 0
    while len(study.trials) < int(trials) and attempts < PROPOSALS_PER_TRIAL * int(trials):
        _seed_engines(task.spec, surrogate, len(history))
        suggestion = sweeps.next_run(config, history)
        if suggestion is None:  # a grid is exhausted
            break
        attempts += 1
        raw = {k: v["value"] for k, v in dict(suggestion.config).items()}
        # Four significant digits: a readable name, and no difference a fit could tell.
        proposal = {k: _round(_plain(v)) for k, v in raw.items()}
        try:
            spec = trial_spec(task, surrogate, proposal)
        except ConfigError as err:  # a declared space that proposes an invalid value: that trial fails
            trial = Trial(
                spec=format_spec(parse_spec(surrogate)[0], proposal), params=proposal, status="failed", error=str(err)
            )
            study.trials.append(trial)
        else:
            trial = run(spec, proposal)
        history.append(_engine_run(sweeps, f"trial-{len(history):03d}", trial, raw))
    _save(study, results_dir)
    return study


def study_path(results_dir: str | Path, task: str, surrogate: str) -> Path:
    return Path(results_dir) / TUNING_DIR / "studies" / f"{safe_name(task)}--{safe_name(surrogate)}.json"


def _save(study: Study, results_dir: str | Path) -> None:
    path = study_path(results_dir, study.task, study.surrogate)
    atomic_write_bytes(path, json.dumps(study.as_dict(), indent=1, default=str).encode())


# ---------------------------------------------------------------------------------------------------
# the tuned track


def tuned_unit(task: Task, study: Study, seed: int, store: ResultsStore) -> list[dict[str, Any]]:
    """The tuned track's rows of (task, surrogate, seed): the study's best configuration refitted on all
    anchors and scored at the held-out λ, exactly as ``hti-bench run -s <config>`` would score it.

    Read back when stored with the same configuration; reuses a stored default-track unit of that
    configuration (the same seed draws the same numbers); else evaluated now. Rows carry
    ``track=tuned``, ``surrogate`` the name tuning started from, ``config`` the chosen one, and
    ``tuning_trials``, ``tuning_fit_seconds`` and ``tuning_score``. A study with no ok trial gives
    the default configuration's failed or skipped rows, marked tuned.
    """
    from hti_bench.harness.targets import prepare_targets
    from hti_bench.harness.unit import evaluate

    best = study.best
    config = best.spec if best is not None else study.surrogate
    stored = store.read_unit(task.spec, study.surrogate, seed, track=TUNED)
    if (
        stored is not None
        and store.has_unit(task.spec, study.surrogate, seed, track=TUNED)
        and set(stored["config"].astype(str)) == {config}
    ):
        return stored.to_dict("records")
    if store.has_unit(task.spec, config, seed):
        rows = store.read_unit(task.spec, config, seed).to_dict("records")
    else:
        prepare_targets(task)
        rows = evaluate(task, config, seed, clouds=False).rows
    for row in rows:
        row.update(
            track=TUNED,
            surrogate=study.surrogate,
            config=config,
            tuning_trials=len(study.trials),
            tuning_fit_seconds=study.fit_seconds,
            tuning_score=best.score if best else math.nan,
        )
    store.write_unit(rows)
    return rows


# ---------------------------------------------------------------------------------------------------
# the sweep that runs it


def tune_sweep_config(
    tasks: Sequence[str],
    surrogates: Sequence[str],
    *,
    trials: int = 8,
    method: str = "random",
    tune_seeds: int | Sequence[int] = 1,
    seeds: Sequence[int] = (0, 1, 2),
    name: str = "tune",
) -> dict[str, Any]:
    """The W&B sweep config ``hti-bench tune`` runs: a grid over (task, surrogate), each run tuning one
    pair with ``trials`` trials and scoring the choice on ``seeds`` (what ``sweeps/tune.yaml`` holds)."""
    if method not in METHODS:
        raise ConfigError(f"Unknown tuning method {method!r}; valid: {', '.join(METHODS)}.")
    return {
        "name": name,
        "program": "hti_bench/sweeping/program.py",
        "command": ["${env}", "${interpreter}", "-m", "hti_bench.sweeping.program", "${args}"],
        "method": "grid",
        "metric": {"name": "w2", "goal": "minimize"},
        "parameters": {
            "task": {"values": list(tasks)},
            "surrogate": {"values": list(surrogates)},
            "tune": {"value": int(trials)},
            "tune_method": {"value": method},
            "tune_seeds": {"value": tune_seeds if isinstance(tune_seeds, int) else list(tune_seeds)},
            "seeds": {"value": [int(s) for s in seeds]},
        },
    }
