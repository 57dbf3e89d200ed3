"""Running units in parallel worker processes (``hti-bench run --jobs N``).

Why processes: the networks trained and fitted here are small, so one process with many torch threads
leaves cores idle between short kernels; N single-threaded processes keep them busy (see the
README's performance table for the measured ratio). The parent stays the only writer of the results
store and the only caller of the tracker, so the resume guarantees of the serial path hold: a unit is
stored atomically when its rows come back, whichever worker computed them.

What travels: a unit is ``(task spec, surrogate spec, seed)`` plus the anchor set and references that
one worker drew for that (task, seed), with the serial run's seeds, so every unit of a (task, seed) is
scored against the same samples as in a serial run. Workers rebuild tasks from their specs and load target networks from the
shared cache (whose per-entry lock makes concurrent training of one network happen once).

A worker that dies (segfault, out of memory) breaks the pool; its units and the ones beside it are
retried one by one in fresh single-worker pools, and a unit that kills its worker again becomes a
failed row with that reason while the run continues.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

UnitKey = tuple[str, str, int]  # task spec, surrogate spec, seed

_TASKS: dict[str, Any] = {}
_CACHE_ROOT: str | None = None


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_jobs(jobs: int | str | None) -> int:
    """``"auto"``/None/0 → the usable cores; otherwise the integer, at least 1."""
    if jobs in (None, "auto", 0, "0"):
        return available_cores()
    from hti_bench.errors import ConfigError

    try:
        n = int(jobs)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(f"jobs must be an integer ≥ 1 or 'auto', got {jobs!r}")
    return n


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies, so no orphan keeps going."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(threads: int, cache_root: str) -> None:
    import warnings

    import torch

    global _CACHE_ROOT
    die_with_parent()  # an interrupted `hti-bench run` must not leave workers fitting in the background
    torch.set_num_threads(max(int(threads), 1))
    os.environ["HTI_BENCH_SCORING_WORKERS"] = str(max(int(threads), 1))  # see hti_bench.scoring
    _CACHE_ROOT = cache_root
    warnings.filterwarnings("ignore", category=UserWarning)


def _task(spec: str) -> Any:
    from hti_bench.harness.registry import make_task
    from hti_bench.harness.targets import TargetCache

    if spec not in _TASKS:
        task = make_task(spec)
        task.cache = TargetCache(_CACHE_ROOT)
        _TASKS[spec] = task
    return _TASKS[spec]


def _train(task_spec: str, lam: float, model_seed: int | None) -> tuple[bool, float]:
    task = _task(task_spec)
    before = task.cache.trained
    task.network(lam, seed=model_seed)
    return task.cache.trained > before, lam


def _inputs(task_spec: str, seed: int) -> tuple[Any, Any]:
    from hti_bench.harness.runner import build_anchor_set, build_references

    task = _task(task_spec)
    return build_anchor_set(task, seed), build_references(task, seed)


def _unit(task_spec: str, spec: str, seed: int, anchors: Any, references: Any, clouds: bool) -> tuple[list, dict]:
    from hti_bench.harness.runner import evaluate_unit

    samples: dict[str, Any] | None = {} if clouds else None
    rows = evaluate_unit(_task(task_spec), spec, seed, anchors, references, samples=samples)
    return rows, samples or {}


class UnitPool:
    """A pool of ``jobs`` spawned worker processes, each with ``cores // jobs`` torch threads."""

    def __init__(self, jobs: int, cache_root: str) -> None:
        self.jobs = int(jobs)
        self.cache_root = str(cache_root)
        self.threads = max(available_cores() // self.jobs, 1)
        self._pool = self._new_pool(self.jobs)

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        # spawn, not fork: forking a process that already ran torch kernels can deadlock in OpenMP.
        return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                   initargs=(self.threads, self.cache_root))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> UnitPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def train(self, jobs: Sequence[tuple[str, float, int | None]], on_done: Callable[[bool], None]) -> None:
        """Train (or load) target networks ``(task spec, λ, model seed)`` in the workers; blocks until done."""
        futures = [self._pool.submit(_train, *job) for job in jobs]
        for fut in _as_done(futures):
            trained, _ = fut.result()
            on_done(trained)

    def units(self, groups: Sequence[tuple[str, int, list[UnitKey]]],
              on_done: Callable[[UnitKey, list | None, dict], None]) -> None:
        """Run every unit; ``groups`` holds (task spec, seed, that task and seed's units).

        A group's anchor set and references are drawn first, in a worker (sampling the held-out
        networks and their floors is a large share of a run: kept serial it left the workers idle),
        and shipped with each of its units. ``on_done(key, rows, clouds)`` is called in this process,
        once per unit; ``rows`` is None for a unit whose worker died twice.

        Units wait here, not in the executor's queue, and at most one per worker is handed out at a
        time: longest first, by the fit time the same (task, surrogate) took on an earlier seed of
        this run (kinds not yet seen first of all). Otherwise the last unit of the queue, often a
        long fit, ran alone while the other workers idled (≈ 14 s of a 258 s default run).
        """
        pending: dict[Future, tuple[str, Any]] = {}
        broken: list[tuple[str, Any]] = []
        ready: list[tuple[UnitKey, Any, Any, bool]] = []
        cost: dict[tuple[str, str], float] = {}
        running = [0]

        def submit(kind: str, job: Any) -> None:
            try:
                fut = self._pool.submit(_inputs, job[0], job[1]) if kind == "inputs" else \
                    self._pool.submit(_unit, *job[0], *job[1:])
            except BrokenProcessPool:
                broken.append((kind, job))
                return
            pending[fut] = (kind, job)
            running[0] += kind == "unit"

        def pump() -> None:
            while ready and running[0] < self.jobs and not broken:
                submit("unit", ready.pop(_longest_first([job[0] for job in ready], cost)))

        def finished(kind: str, job: Any, result: Any) -> None:
            if kind == "inputs":
                anchors, references = result
                ready.extend((key, anchors, references, True) for key in job[2])
            else:
                rows = result[0]
                seconds = [float(r["fit_seconds"]) for r in rows or [] if isinstance(r.get("fit_seconds"), (int, float))]
                cost[job[0][:2]] = max([t for t in seconds if math.isfinite(t)], default=0.0)
                on_done(job[0], *result)

        for group in groups:
            submit("inputs", group)
        while pending or (ready and not broken):
            pump()
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                kind, job = pending.pop(fut)
                running[0] -= kind == "unit"
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    broken.append((kind, job))
                    continue
                finished(kind, job, result)
        broken.extend(("unit", job) for job in ready)  # never handed out: the pool broke first
        if broken:
            # The pool is gone; each affected job runs alone, so a crash is pinned on its cause.
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = self._new_pool(self.jobs)
            for kind, job in broken:
                if kind == "inputs":
                    result = self._alone(_inputs, job[0], job[1])
                    if result is None:
                        for key in job[2]:
                            on_done(key, None, {})
                        continue
                    for key in job[2]:
                        on_done(key, *(self._alone(_unit, *key, *result, True) or (None, {})))
                else:
                    on_done(job[0], *(self._alone(_unit, *job[0], *job[1:]) or (None, {})))

    def _alone(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` in a fresh one-worker pool; None if that worker dies too."""
        with self._new_pool(1) as pool:
            try:
                return pool.submit(fn, *args).result()
            except BrokenProcessPool:
                return None


def _longest_first(keys: Sequence[UnitKey], cost: dict[tuple[str, str], float]) -> int:
    """Index of the unit to hand out next: the largest known fit time of its (task, surrogate), kinds
    not seen yet first; ties keep submission order (max() returns the first)."""
    return max(range(len(keys)), key=lambda i: cost.get(keys[i][:2], math.inf))


def _as_done(futures: list[Future]) -> Iterator[Future]:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from done

