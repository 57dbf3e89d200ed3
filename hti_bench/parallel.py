"""Running units in parallel worker processes (``hti-bench run --jobs N``).

Why processes: the networks trained and fitted here are small, so one process with many torch threads
leaves cores idle between short kernels; N single-threaded processes keep them busy (see the
README's performance table for the measured ratio). The parent stays the only writer of the results
store and the only caller of the tracker, so the resume guarantees of the serial path hold: a unit is
stored atomically when its rows come back, whichever worker computed them.

What travels: a unit is ``(task spec, surrogate spec, seed)`` plus the anchor set and references the
parent built for that (task, seed), so anchors are drawn once and every worker scores against the same
samples as a serial run. Workers rebuild tasks from their specs and load target networks from the
shared cache (whose per-entry lock makes concurrent training of one network happen once).

A worker that dies (segfault, out of memory) breaks the pool; its units and the ones beside it are
retried one by one in fresh single-worker pools, and a unit that kills its worker again becomes a
failed row with that reason while the run continues.
"""

from __future__ import annotations

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


def _init_worker(threads: int, cache_root: str) -> None:
    import warnings

    import torch

    global _CACHE_ROOT
    torch.set_num_threads(max(int(threads), 1))
    os.environ["HTI_BENCH_SCORING_WORKERS"] = str(max(int(threads), 1))  # see hti_bench.metrics
    _CACHE_ROOT = cache_root
    warnings.filterwarnings("ignore", category=UserWarning)


def _task(spec: str) -> Any:
    from hti_bench.registry import make_task
    from hti_bench.targets import TargetCache

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


def _unit(task_spec: str, spec: str, seed: int, anchors: Any, references: Any, clouds: bool) -> tuple[list, dict]:
    from hti_bench.runner import evaluate_unit

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

    def units(self, batches: Iterator[tuple[list[UnitKey], Any, Any, bool]],
              on_done: Callable[[UnitKey, list, dict], None]) -> None:
        """Run every unit; ``batches`` yields (units of one task and seed, anchors, references, clouds?).

        Batches are pulled lazily, so the workers start on the first (task, seed) while the parent
        draws the next one's anchors. ``on_done(key, rows, clouds)`` is called in the parent, once per
        unit; ``rows`` is None for a unit whose worker died twice.
        """
        pending: dict[Future, tuple[UnitKey, Any, Any, bool]] = {}
        broken: list[tuple[UnitKey, Any, Any, bool]] = []

        def collect(block: bool) -> None:
            if not pending:
                return
            done, _ = wait(list(pending), timeout=None if block else 0, return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                try:
                    rows, clouds = fut.result()
                except BrokenProcessPool:
                    broken.append(job)
                    continue
                on_done(job[0], rows, clouds)

        for keys, anchors, references, clouds in batches:
            for key in keys:
                job = (key, anchors, references, clouds)
                try:
                    pending[self._pool.submit(_unit, key[0], key[1], key[2], anchors, references, clouds)] = job
                except BrokenProcessPool:
                    broken.append(job)
            collect(block=False)
        while pending:
            collect(block=True)
        if broken:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = self._new_pool(self.jobs)
            for job in broken:
                on_done(job[0], *self._retry_alone(job))

    def _retry_alone(self, job: tuple[UnitKey, Any, Any, bool]) -> tuple[list | None, dict]:
        key, anchors, references, clouds = job
        with self._new_pool(1) as pool:
            try:
                return pool.submit(_unit, *key, anchors, references, clouds).result()
            except BrokenProcessPool:
                return None, {}  # the caller turns this into failed rows with the reason


def _as_done(futures: list[Future]) -> Iterator[Future]:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from done

