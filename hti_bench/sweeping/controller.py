"""``hti-bench sweep``: a W&B sweep run on this machine, with no server.

Proposals come from the ``sweeps`` package — the engine W&B's own servers and local controller use —
so grid, random and bayes search and hyperband early stopping behave as they do online. Runs go to
N worker processes; each imports the stack once and calls the sweep program in-process through
``WANDB_SWEEP_PARAM_PATH``, exactly as an agent would launch it, minus the start-up of a fresh process per run.

State lives beside the results, one JSON file per run, each written by an atomic rename::

    <results>/sweeps/<file stem>-<config digest>/
        sweep.yaml        the config this state belongs to (a changed file is a new sweep)
        runs/run-0007.json  name, parameters, state, per-seed history, summary, error
        params/run-0007.yaml  the WANDB_SWEEP_PARAM_PATH file the run read
        stop/run-0007     present when hyperband asked the run to stop
        controller.lock   held (flock) while a controller runs this sweep

Resuming is re-running the same command: finished, skipped and stopped runs are kept (and fed back to
the search), a run that was in flight when the controller died (SIGKILL, machine stop) or that failed
is run again under its own name, and units already in the results store are read back rather than
re-fitted — so nothing is half-recorded or recorded twice. Results rows are one file per
(task, surrogate, seed) unit and merges keep one row per key, so controllers and workers writing at
once lose nothing; a second controller on the *same* sweep is refused while the first holds the lock.
Proposals are deterministic given ``--search-seed`` (random and numpy's global generators are re-seeded from
it and the number of runs so far before each proposal).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hti_bench.errors import HTIBenchError
from hti_bench.harness.fsutil import atomic_write_bytes
from hti_bench.harness.pool import WorkerPool
from hti_bench.sweeping.sweepfile import SweepFile, import_sweeps, load_sweep

#: Run states that are final: kept on resume. ``failed`` and in-flight ``running`` runs are re-run.
KEPT = ("finished", "skipped", "stopped")


@dataclass
class RunRecord:
    """One proposed run of a sweep, as stored in ``runs/<name>.json``."""

    name: str
    config: dict[str, Any]  # W&B form: {key: {"value": v}}
    state: str = "running"
    history: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    attempts: int = 0
    started: float = 0.0
    finished: float = 0.0

    @property
    def params(self) -> dict[str, Any]:
        return {k: v["value"] for k, v in self.config.items()}

    def metric(self, name: str) -> float | None:
        value = self.summary.get(name)
        return float(value) if isinstance(value, (int, float)) and value == value else None

    def sweep_run(self) -> Any:
        """This run as the ``sweeps`` engine sees it."""
        sweeps = import_sweeps()
        state = {"running": "running", "failed": "failed"}.get(self.state, "finished")
        numbers = {k: v for k, v in self.summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return sweeps.SweepRun(
            name=self.name,
            config=self.config,
            state=sweeps.RunState(state),
            history=self.history,
            summary_metrics=numbers,
        )


def _plain(value: Any) -> Any:
    """numpy scalars (what the engine proposes) → Python values, so YAML and JSON can write them."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class SweepState:
    """The on-disk state of one sweep (see the module docstring)."""

    def __init__(self, sweep: SweepFile, results_dir: str | os.PathLike[str]) -> None:
        self.sweep = sweep
        self.root = Path(results_dir) / "sweeps" / f"{sweep.name}-{sweep.digest}"
        for sub in ("runs", "params", "stop"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        target = self.root / "sweep.yaml"
        if not target.exists():
            shutil.copyfile(sweep.path, target)
        self._lock_file: Any = None

    def lock(self) -> None:
        """Hold this sweep's lock for the life of the process (released by the OS if it dies)."""
        handle = open(self.root / "controller.lock", "a+")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise HTIBenchError(
                f"Sweep {self.root} is being run by another controller ({holder}); wait for it or stop it. "
                "Different sweeps may share a results folder."
            ) from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._lock_file = handle

    def unlock(self) -> None:
        """Release the lock now; the same process may resume the sweep straight after (GC is not prompt)."""
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def load(self) -> list[RunRecord]:
        records = []
        for path in sorted((self.root / "runs").glob("run-*.json")):
            try:
                records.append(RunRecord(**json.loads(path.read_text())))
            except (ValueError, TypeError) as err:
                raise HTIBenchError(
                    f"Sweep run record {path} is unreadable ({err}); delete it to re-run that run."
                ) from None
        return records

    def save(self, record: RunRecord) -> None:
        atomic_write_bytes(
            self.root / "runs" / f"{record.name}.json", json.dumps(_plain(asdict(record)), indent=1).encode()
        )

    def params_path(self, record: RunRecord) -> Path:
        import yaml

        path = self.root / "params" / f"{record.name}.yaml"
        atomic_write_bytes(path, yaml.safe_dump(_plain(record.config), sort_keys=True).encode())
        return path

    def stop_path(self, name: str) -> Path:
        return self.root / "stop" / name


# ---------------------------------------------------------------------------------------------------
# the job a worker runs


def _sweep_job(params_path: str, stop_path: str, report: Callable[[Any], None]) -> dict[str, Any]:
    """One sweep run, in a worker of :class:`~hti_bench.harness.pool.WorkerPool`: the sweep program,
    in-process, reading its parameters from ``WANDB_SWEEP_PARAM_PATH`` exactly as under an agent."""
    import wandb

    from hti_bench.sweeping import program

    os.environ["WANDB_SWEEP_PARAM_PATH"] = params_path
    wandb.teardown()  # wandb reads WANDB_SWEEP_PARAM_PATH once per session: start a fresh one per run
    try:
        outcome = program.sweep_run((), report=report, should_stop=lambda: os.path.exists(stop_path))
    except HTIBenchError as err:
        return {"state": "failed", "summary": {}, "error": f"configuration: {err}"}
    except Exception as err:  # noqa: BLE001 - a run's crash is its failure, the worker lives on
        return {"state": "failed", "summary": {}, "error": f"{type(err).__name__}: {err}"[:500]}
    return {"state": outcome.state, "summary": program._jsonable([outcome.summary])[0], "error": outcome.error}


# ---------------------------------------------------------------------------------------------------
# the controller


@dataclass
class SweepSummary:
    """What a controller invocation did (and the sweep's state when it ended)."""

    state_dir: Path
    records: list[RunRecord]
    started: int = 0
    seconds: float = 0.0
    exhausted: bool = False

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.records)

    def best(self, metric: str) -> RunRecord | None:
        scored = [r for r in self.records if r.state in ("finished", "stopped") and r.metric(metric) is not None]
        return min(scored, key=lambda r: r.metric(metric)) if scored else None  # type: ignore[arg-type,return-value]


def _seed_engines(search_seed: int, n_runs: int) -> None:
    import random

    import numpy as np

    from hti_bench.harness.unit import derive_seed

    value = derive_seed("sweep", search_seed, n_runs)
    random.seed(value)  # random search draws from the stdlib generator
    np.random.seed(value)  # bayes from numpy's global one


def run_sweep(
    path: str | os.PathLike[str],
    jobs: int | str = 1,
    count: int | None = None,
    results_dir: str | os.PathLike[str] = "results",
    cache_dir: str | os.PathLike[str] | None = None,
    search_seed: int = 0,
    threads: int | None = None,
    wandb_mode: str | None = None,
    progress: bool = True,
    on_event: Callable[[str, RunRecord], None] | None = None,
) -> SweepSummary:
    """Run (or resume) the sweep in ``path`` with ``jobs`` local worker processes (``"auto"``: one per core).

    ``count`` caps the runs *started* by this call (like ``wandb agent --count``); the file's
    ``run_cap`` caps the sweep. ``search_seed`` fixes random and bayes proposals. ``threads`` is
    torch's intra-op threads per worker (default: the CPU count divided among the workers).
    ``wandb_mode`` defaults to :func:`hti_bench.harness.tracking.default_mode`. Returns when the search
    is exhausted, the caps are reached, or (on Ctrl-C) after the runs in flight are abandoned — they are
    re-run on resume.
    """
    from tqdm.auto import tqdm

    from hti_bench.harness.pool import resolve_jobs
    from hti_bench.harness.tracking import default_mode

    jobs = resolve_jobs(jobs)
    sweep = load_sweep(path)
    sweeps = import_sweeps()
    engine_config = sweeps.SweepConfig(sweep.config)  # fills the schema's defaults (metric impute, …)
    state = SweepState(sweep, results_dir)
    state.lock()
    records = {r.name: r for r in state.load()}
    redo = [r for r in records.values() if r.state not in KEPT]
    run_cap = sweep.config.get("run_cap")
    early = sweep.config.get("early_terminate")
    start = time.perf_counter()
    summary = SweepSummary(state_dir=state.root, records=[])

    env = {
        "HTI_BENCH_RESULTS": str(Path(results_dir).resolve()),
        "WANDB_MODE": wandb_mode or default_mode(),
        "WANDB_SILENT": "true",
    }
    if cache_dir is not None:
        env["HTI_BENCH_CACHE"] = str(Path(cache_dir).resolve())
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)

    planned = sweep.planned_runs()
    bar = tqdm(total=planned, desc=f"sweep {sweep.name}", unit="run", disable=not progress, dynamic_ncols=True)
    bar.update(sum(r.state in KEPT for r in records.values()))

    shown = [""]

    def show() -> None:
        running = sum(r.state == "running" for r in records.values())
        failed = sum(r.state == "failed" for r in records.values())
        done = SweepSummary(state.root, list(records.values()))
        best = done.best(sweep.metric)
        text = f"running {running}, failed {failed}"
        if best is not None:
            params = ", ".join(f"{k}={v}" for k, v in best.params.items() if k not in ("seed", "seeds"))
            text += f", best {sweep.metric}={best.metric(sweep.metric):.4g} ({params})"
        if text != shown[0]:
            shown[0] = text
            bar.set_postfix_str(text)

    def propose() -> RunRecord | None:
        nonlocal exhausted
        if redo:
            return redo.pop(0)
        if exhausted or (count is not None and summary.started >= count) or (run_cap and len(records) >= int(run_cap)):
            return None
        _seed_engines(search_seed, len(records))
        suggestion = sweeps.next_run(engine_config, [r.sweep_run() for r in records.values()])
        if suggestion is None:
            exhausted = True
            return None
        name = f"run-{len(records):04d}"
        return RunRecord(name=name, config=_plain(dict(suggestion.config)))

    exhausted = False
    pool = WorkerPool(jobs, threads=threads, env=env)
    try:
        while True:
            while pool.idle:
                record = propose()
                if record is None:
                    break
                state.stop_path(record.name).unlink(missing_ok=True)
                record.state, record.error, record.history = "running", "", []
                record.attempts += 1
                record.started = time.time()
                records[record.name] = record
                state.save(record)
                pool.submit(record.name, _sweep_job, str(state.params_path(record)), str(state.stop_path(record.name)))
                summary.started += 1
                if on_event is not None:
                    on_event("started", record)
            if not pool.busy:
                break
            show()
            for event in pool.events(timeout=1.0):
                record = records[event.job]
                if event.kind == "report":
                    record.history.append(event.value)
                    record.summary = dict(event.value)
                    state.save(record)
                    if early:
                        stop = {
                            r.name for r in sweeps.stop_runs(engine_config, [r.sweep_run() for r in records.values()])
                        }
                        for other in stop:
                            state.stop_path(other).touch()
                    continue
                if event.kind == "done":
                    record.state = event.value["state"]
                    record.summary = event.value["summary"] or record.summary
                    record.error = event.value["error"]
                else:  # the job raised outside the program's own handling, or its worker died
                    record.state = "failed"
                    record.error = (
                        f"worker process died (exit code {event.value})" if event.kind == "died" else str(event.value)
                    )
                record.finished = time.time()
                state.save(record)
                if record.state in KEPT:
                    bar.update(1)
                if on_event is not None:
                    on_event("done", record)
    except KeyboardInterrupt:
        print("\nhti-bench sweep: interrupted; runs in flight will be re-run when you resume.")
    finally:
        pool.close()
        show()
        bar.close()
        state.unlock()
    summary.records = sorted(records.values(), key=lambda r: r.name)
    summary.exhausted = exhausted
    summary.seconds = time.perf_counter() - start
    return summary
