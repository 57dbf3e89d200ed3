"""Worker processes: the one pool behind ``hti-bench run --jobs N`` and the sweep controller.

Why processes: the networks trained and fitted here are small, so one process with many torch threads
leaves cores idle between short kernels; N single-threaded processes keep them busy (docs/evidence/performance.md
has the measured ratio). The parent stays the only writer of the results store and the only caller of
the tracker, so the resume guarantees of the serial path hold.

:class:`WorkerPool` runs N spawned processes (spawn, not fork: forking a process that already ran torch
kernels can deadlock in OpenMP). Each worker has its own inbox, so the parent knows which job every
worker holds and hands out at most one at a time (the caller decides the order). A job is a module-level
function called as ``fn(*args, report=callback)``; ``report(payload)`` sends progress to the parent
while the job runs (a sweep run's per-seed metric). The parent reads :class:`Event` s: ``report``,
``done`` (the return value), ``failed`` (the job raised: the message) and ``died`` (its worker died: the
exit code; the worker is replaced, so a segfault or an out-of-memory kill costs one job, never the run).

Workers die with the run, always: the first thing a worker does, before any heavy import, is ask the
kernel to kill it when its parent dies (Linux ``PR_SET_PDEATHSIG``) and exit at once if the parent is
already gone (the signal only covers deaths after the request).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hti_bench.harness.lifetime import die_with_parent


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


@dataclass(frozen=True)
class Event:
    """What the pool tells its caller: ``kind`` is report, done, failed or died; ``value`` the report's
    payload, the job's return value, the error message, or the dead worker's exit code."""

    kind: str
    job: Any
    value: Any


def _worker(
    index: int,
    inbox: Any,
    outbox: Any,
    parent_pid: int,
    threads: int,
    env: dict[str, str],
    quiet: bool,
    template: Any = None,
) -> None:
    die_with_parent(parent_pid)  # first: before torch's import, which takes seconds on a busy machine
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.environ.update(env)
    os.environ["HTI_BENCH_SCORING_WORKERS"] = str(threads)  # N workers scoring at once share the cores
    if quiet:
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning)
    import torch

    torch.set_num_threads(threads)
    if template is not None:  # sandboxes are forked from the parent's template (hti_bench.harness.sandbox)
        from hti_bench.harness.sandbox.outside import share

        share(template)
    while True:
        item = inbox.get()
        if item is None:
            return
        job, fn, args = item
        try:
            value = fn(*args, report=lambda payload, job=job: outbox.put(Event("report", job, payload)))
        except Exception as err:  # the job's failure, not the worker's: report it and take the next job
            import traceback

            line = traceback.format_exception_only(type(err), err)[-1].strip().replace("\n", " ")[:500]
            outbox.put(Event("failed", job, line))
            continue
        outbox.put(Event("done", job, value))


def _template_connection(env: dict[str, str]) -> Any:
    """A connection to this process's sandbox template for a new worker (None when the run is unsealed):
    one template serves the whole run, so no worker imports torch twice."""
    from hti_bench.harness.sandbox.outside import sealing_enabled, template

    if not sealing_enabled(env):
        return None
    return template().attach()


class WorkerPool:
    """``workers`` spawned processes with ``threads`` torch threads each (default: the cores shared out).

    ``env`` is set in each worker before anything is imported; ``quiet`` silences ``UserWarning`` s in
    the workers (Lightning's and torch's advice, repeated per fit, would drown the progress bar).
    """

    def __init__(
        self, workers: int, *, threads: int | None = None, env: dict[str, str] | None = None, quiet: bool = False
    ) -> None:
        self.size = int(workers)
        self.threads = int(threads) if threads else max(available_cores() // self.size, 1)
        self.env = dict(env or {})
        self.quiet = quiet
        self._ctx = mp.get_context("spawn")
        self._outbox = self._ctx.Queue()
        self._procs: list[Any] = [None] * self.size
        self._templates: list[Any] = [None] * self.size  # each worker's connection to the run's sandbox template
        self._inboxes: list[Any] = [None] * self.size
        self._jobs: list[Any] = [None] * self.size  # the job each worker holds
        self._held = [False] * self.size
        for i in range(self.size):
            self._start(i)

    def _start(self, i: int) -> None:
        self._inboxes[i] = self._ctx.Queue()
        if self._templates[i] is not None:
            self._templates[i].close()
        self._templates[i] = _template_connection(self.env)
        self._procs[i] = self._ctx.Process(
            target=_worker,
            args=(
                i,
                self._inboxes[i],
                self._outbox,
                os.getpid(),
                self.threads,
                self.env,
                self.quiet,
                self._templates[i],
            ),
            daemon=True,
        )
        self._procs[i].start()
        self._jobs[i], self._held[i] = None, False

    # ------------------------------------------------------------------ the caller's side

    @property
    def idle(self) -> int:
        """Workers holding no job."""
        return self._held.count(False)

    @property
    def busy(self) -> int:
        return self._held.count(True)

    def submit(self, job: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Hand ``fn(*args, report=…)`` to an idle worker; ``job`` identifies it in the events."""
        i = self._held.index(False)  # ValueError when none is idle: the caller must check `idle`
        self._jobs[i], self._held[i] = job, True
        self._inboxes[i].put((job, fn, args))

    def events(self, timeout: float = 1.0) -> list[Event]:
        """The events available within ``timeout`` seconds (at least one, unless the time runs out)."""
        got: list[Event] = []
        try:
            got.append(self._outbox.get(timeout=timeout))
            while True:
                got.append(self._outbox.get_nowait())
        except queue.Empty:
            pass
        out = []
        for event in got:
            held = [i for i, job in enumerate(self._jobs) if self._held[i] and job == event.job]
            if not held:
                continue  # a job already reported as died
            if event.kind in ("done", "failed"):
                self._jobs[held[0]], self._held[held[0]] = None, False
            out.append(event)
        return out + self._dead()

    def run(
        self, jobs: Iterator[tuple[Any, Callable[..., Any], tuple]] | list, on_event: Callable[[Event], None]
    ) -> None:
        """Run every ``(job, fn, args)`` of ``jobs`` in submission order, calling ``on_event`` in this
        process for each event; returns when all have ended (done, failed or died)."""
        pending = list(jobs)
        pending.reverse()
        while pending or self.busy:
            while pending and self.idle:
                job, fn, args = pending.pop()
                self.submit(job, fn, *args)
            for event in self.events():
                on_event(event)

    def _dead(self) -> list[Event]:
        """Workers that died: a ``died`` event for the job each held; each worker is replaced."""
        out = []
        for i, proc in enumerate(self._procs):
            if proc.exitcode is not None:
                if self._held[i]:
                    out.append(Event("died", self._jobs[i], proc.exitcode))
                self._start(i)
        return out

    def close(self) -> None:
        """Ask every worker to stop, wait a little, then kill the ones still running a job."""
        for inbox in self._inboxes:
            try:
                inbox.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.time() + 10
        for proc in self._procs:
            proc.join(max(0.1, deadline - time.time()) if not self.busy else 0.1)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for control in self._templates:
            if control is not None:
                control.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
