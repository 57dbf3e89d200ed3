"""The run loop: tasks × surrogates × seeds → results store → leaderboard.

This is the library behind ``hti-bench run``. All names are resolved and every surrogate's parameters
validated before anything trains, so a typo fails in a second, not after the targets. Units are scored
by :mod:`hti_bench.harness.unit`, in this process or in worker processes (:mod:`hti_bench.harness.pool`);
this process is the only writer of the results store either way, one atomic file per unit, so an
interrupted run resumes without losing or duplicating a row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hti_bench.clock import Point
from hti_bench.harness.pool import WorkerPool, resolve_jobs
from hti_bench.harness.registry import default_tasks, make_task
from hti_bench.harness.results import ResultsStore
from hti_bench.harness.sandbox import lookup
from hti_bench.harness.targets import TargetCache, prepare_targets, target_networks
from hti_bench.harness.unit import UnitResult, draw_inputs, evaluate, failed, stored_clouds
from hti_bench.task import Task

DEFAULT_SEEDS = (0, 1, 2)

UnitKey = tuple[str, str, int]  # task spec, surrogate spec, seed


@dataclass
class RunSummary:
    """What :func:`run` did."""

    units_run: int = 0
    units_cached: int = 0
    rows_failed: int = 0
    rows_skipped: int = 0
    seconds: float = 0.0
    targets_trained: int = 0
    targets_loaded: int = 0
    leaderboard: Any = None
    results: Any = None
    failures: list[str] = field(default_factory=list)


def resolve(
    tasks: Sequence[str] | None, surrogates: Sequence[str] | None, cache: TargetCache | None = None
) -> tuple[list[Task], list[str]]:
    """Build every task (with ``cache``) and surrogate named (all of them when None); raises before any work."""
    task_objs = [make_task(t, cache=cache) for t in (tasks or default_tasks())]
    specs = list(surrogates) if surrogates else lookup.names()
    # Names and parameters are checked now, each by its own class in a sandbox (never imported here).
    return task_objs, [r.spec for r in lookup.resolve_many(specs)]


def run(
    tasks: Sequence[str] | None = None,
    surrogates: Sequence[str] | None = None,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    results_dir: str | Path = "results",
    cache_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    tracker: Callable[[list[dict[str, Any]]], str | None] | None = None,
    jobs: int | str = 1,
) -> RunSummary:
    """Run surrogates on tasks for each seed, store the rows and regenerate the leaderboard.

    Parameters
    ----------
    tasks, surrogates : names like ``moons-dropout[epochs=50]`` and ``mccann``; None means the default
        suite (every task with ``in_default_suite``) and every discovered surrogate.
    seeds : run seeds; each draws new anchor and reference samples and refits every surrogate.
    results_dir : the results store; units already stored (ok or skipped) are not re-run.
    cache_dir : trained target networks; default ``$HTI_BENCH_CACHE`` or ``~/.cache/hti-bench``.
    force : re-run stored units too (their rows are replaced, never duplicated).
    tracker : called with each unit's rows (e.g. to log them to wandb); returns a run id or None.
    jobs : worker processes (``"auto"``: one per core). With more than one, target networks are trained
        and units fitted in parallel; the rows are the same as a serial run's up to floating-point
        rounding, and this process still writes every unit.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    cache = TargetCache(cache_dir)
    task_objs, specs = resolve(tasks, surrogates, cache)
    store = ResultsStore(results_dir)
    summary = RunSummary()

    plan: list[tuple[Task, list[tuple[str, int]]]] = []
    for task in task_objs:
        todo = [(spec, seed) for seed in seeds for spec in specs if force or not store.has_unit(task.spec, spec, seed)]
        summary.units_cached += len(seeds) * len(specs) - len(todo)
        plan.append((task, todo))
    tasks_by_spec = {task.spec: task for task, _ in plan}
    total = sum(len(todo) for _, todo in plan)
    bar = tqdm(total=total, desc="hti-bench", unit="run", disable=not progress, dynamic_ncols=True)

    def store_unit(result: UnitResult) -> None:
        rows = result.rows
        if tracker is not None:
            run_id = tracker(rows)
            for row in rows:
                row["wandb_run_id"] = run_id or ""
        store.write_unit(rows, samples=stored_clouds(result))
        summary.units_run += 1
        for row in rows:
            if row["status"] == "failed":
                summary.rows_failed += 1
                summary.failures.append(f"{row['task']} {row['surrogate']} seed={row['seed']}: {row['error']}")
            elif row["status"] == "skipped":
                summary.rows_skipped += 1
        bar.update(1)

    n_jobs = resolve_jobs(jobs)
    if n_jobs > 1 and total > 1:
        _run_parallel(plan, tasks_by_spec, cache, min(n_jobs, total), store_unit, bar, progress)
    else:
        for task, todo in plan:
            if todo:
                prepare_targets(task, progress)
            for seed in sorted({s for _, s in todo}):
                bar.set_postfix_str(f"{task.name} seed={seed}: anchor and reference samples")
                inputs = draw_inputs(task, seed)
                for spec in [spec for spec, s in todo if s == seed]:
                    bar.set_postfix_str(f"{task.spec} {spec} seed={seed}")
                    store_unit(evaluate(task, spec, seed, inputs))
    bar.close()
    summary.targets_trained, summary.targets_loaded = cache.trained, cache.hits
    summary.results, summary.leaderboard = store.write_tables()
    summary.seconds = time.perf_counter() - start
    return summary


# ---------------------------------------------------------------------------------------- parallel

#: A unit whose worker died is tried once more, in a fresh worker, before it becomes a failed row: a
#: worker killed for the memory its neighbours used deserves a second chance, a segfault does not get a third.
UNIT_ATTEMPTS = 2


def _run_parallel(
    plan: list[tuple[Task, list[tuple[str, int]]]],
    tasks_by_spec: dict[str, Task],
    cache: TargetCache,
    workers: int,
    store_unit: Callable[[UnitResult], None],
    bar: Any,
    progress: bool,
) -> None:
    """Targets, then every (task, seed)'s inputs and units, in ``workers`` processes.

    A (task, seed)'s anchor set and references are drawn in a worker (sampling the held-out networks
    and their floors is a large share of a run) and shipped with each of its units. Units wait here and
    go out one per idle worker, longest first by the fit time the same (task, surrogate) took on an
    earlier seed of this run (kinds not seen yet first of all), so no long fit runs alone at the end.
    """
    from tqdm.auto import tqdm

    root = str(cache.root)
    with WorkerPool(workers, quiet=True) as pool:
        nets = [
            (task.spec, lam, seed)
            for task, todo in plan
            if todo
            for lam, seed in target_networks(task)
            if not cache.paths(task, lam, seed)[0].exists()
        ]
        tbar = tqdm(total=len(nets), desc="targets", unit="net", leave=False, disable=not progress or not nets)

        def trained(event: Any) -> None:
            if event.kind != "done":
                what = "its worker died" if event.kind == "died" else event.value
                raise RuntimeError(f"training target network {event.job[1:]} failed: {what}")
            cache.trained += bool(event.value)  # counted here so the summary reads as a serial run's would
            tbar.update(1)

        pool.run([(("train", *net), _train_job, (*net, root)) for net in nets], trained)
        tbar.close()
        bar.set_postfix_str(f"{workers} workers")

        groups = [
            (task.spec, seed, [(spec, s) for spec, s in todo if s == seed])
            for task, todo in plan
            for seed in sorted({s for _, s in todo})
        ]
        waiting = [("inputs", spec, seed) for spec, seed, _ in groups]
        units = {(spec, seed): todo for spec, seed, todo in groups}
        drawn: dict[tuple[str, int], Any] = {}  # (task spec, seed) → its inputs
        ready: list[UnitKey] = []  # units whose inputs are drawn
        cost: dict[tuple[str, str], float] = {}
        attempts: dict[UnitKey, int] = {}

        def submit_next() -> None:
            while pool.idle and (waiting or ready):
                if waiting:  # inputs first: they unlock units for every worker
                    job = waiting.pop(0)
                    pool.submit(job, _inputs_job, job[1], job[2], root)
                    continue
                key = ready.pop(_longest_first(ready, cost))
                attempts[key] = attempts.get(key, 0) + 1
                pool.submit(("unit", *key), _unit_job, *key, drawn[(key[0], key[2])], root, lookup.described())

        submit_next()
        while pool.busy:
            for event in pool.events():
                kind, job = event.kind, event.job
                if job[0] == "inputs":
                    keys = [(job[1], spec, seed) for spec, seed in units[job[1:]]]
                    if kind == "done":
                        drawn[job[1:]] = event.value
                        ready.extend(keys)
                    elif kind != "report":
                        why = "its worker died" if kind == "died" else event.value
                        for key in keys:
                            store_unit(
                                failed(
                                    tasks_by_spec[key[0]],
                                    key[1],
                                    key[2],
                                    f"drawing the anchor and reference samples failed: {why}",
                                )
                            )
                    continue
                key = job[1:]
                if kind == "done":
                    result = event.value
                    cost[key[:2]] = result.fit_seconds if math.isfinite(result.fit_seconds) else 0.0
                    store_unit(result)
                elif kind == "died" and attempts[key] < UNIT_ATTEMPTS:
                    ready.append(key)
                elif kind in ("died", "failed"):
                    why = (
                        (
                            f"worker process died while running this unit (exit code {event.value}; "
                            "crash or out of memory)"
                        )
                        if kind == "died"
                        else event.value
                    )
                    store_unit(failed(tasks_by_spec[key[0]], key[1], key[2], why))
            submit_next()


def _longest_first(keys: Sequence[UnitKey], cost: dict[tuple[str, str], float]) -> int:
    """Index of the unit to hand out next: the largest known fit time of its (task, surrogate), kinds
    not seen yet first; ties keep submission order (max() returns the first)."""
    return max(range(len(keys)), key=lambda i: cost.get(keys[i][:2], math.inf))


# Jobs run in the workers (module-level, so they pickle by name). Each worker keeps the tasks it
# built, with the shared cache, whose per-entry lock makes concurrent training of one network happen once.
_TASKS: dict[str, Task] = {}


def _task(spec: str, cache_root: str) -> Task:
    if spec not in _TASKS:
        _TASKS[spec] = make_task(spec, cache=TargetCache(cache_root))
    return _TASKS[spec]


def _train_job(task_spec: str, lam: Point, model_seed: int, cache_root: str, report: Any = None) -> bool:
    task = _task(task_spec, cache_root)
    before = task.cache.trained
    task.network(lam, seed=model_seed)
    return task.cache.trained > before


def _inputs_job(task_spec: str, seed: int, cache_root: str, report: Any = None) -> Any:
    return draw_inputs(_task(task_spec, cache_root), seed)


def _unit_job(
    task_spec: str, spec: str, seed: int, inputs: Any, cache_root: str, described: Any, report: Any = None
) -> UnitResult:
    lookup.learn(described)  # the parent's descriptions of the plugin files: no sandbox per file here
    return evaluate(_task(task_spec, cache_root), spec, seed, inputs, quiet=True)  # as quiet as its worker
