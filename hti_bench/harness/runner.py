"""Running the benchmark: tasks × surrogates × seeds → results store → leaderboard.

This is the library behind ``hti-bench run``; sweep programs and notebooks call :func:`run` too.
All names are resolved before anything trains, so a typo fails in a second, not after the targets.
"""

from __future__ import annotations

import hashlib
import math
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hti_bench.anchors import AnchorSet
from hti_bench.harness import provenance as prov
from hti_bench.harness.pool import resolve_jobs
from hti_bench.harness.registry import default_tasks, make_surrogate, make_task, surrogate_classes
from hti_bench.harness.results import SCHEMA_VERSION, ResultsStore, format_anchors
from hti_bench.harness.targets import TargetCache
from hti_bench.scoring import per_condition_wasserstein
from hti_bench.surrogate import Surrogate
from hti_bench.task import Task, TrainedTask

DEFAULT_SEEDS = (0, 1, 2)

#: Sample clouds kept per unit of a 2-D task (for ``hti-bench plot``): the first conditions, samples each.
CLOUD_CONDITIONS = 4
CLOUD_SAMPLES = 500


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (task, seed, purpose, λ): independent streams per purpose."""
    blob = "\x00".join(repr(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little") & 0x7FFFFFFF


@dataclass
class Reference:
    """What the harness keeps, per held-out λ, to score surrogates: never shown to them."""

    lam: float
    samples: Tensor
    floor: dict[str, float]
    ref_metrics: dict[str, float]
    seed_floor: dict[str, float] = field(default_factory=dict)


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


def build_anchor_set(task: Task, seed: int) -> AnchorSet:
    """Anchor networks' outputs at every condition, drawn with seeds derived from the run seed."""
    conditions, eval_mask = task.all_conditions()
    samples = torch.stack(
        [task.sample(lam, conditions, task.n_samples, derive_seed(task.spec, seed, "anchor", lam)) for lam in task.anchors]
    )
    return AnchorSet(
        hyperparameter=task.hyperparameter,
        lambdas=task.anchors,
        conditions=conditions,
        samples=samples,
        eval_mask=eval_mask,
        categorical=task.categorical,
    )


def build_references(task: Task, seed: int) -> list[Reference]:
    """Held-out networks' samples at the eval conditions, their noise floor and their task metrics."""
    conds = task.eval_conditions().float()
    out = []
    for lam in task.heldout:
        ref = task.sample(lam, conds, task.n_samples, derive_seed(task.spec, seed, "reference", lam))
        twin = task.floor_sample(lam, conds, task.n_samples, derive_seed(task.spec, seed, "floor", lam))
        floor = per_condition_wasserstein(twin, ref).mean()
        other = task.seed_twin_sample(lam, conds, task.n_samples, derive_seed(task.spec, seed, "seed-floor", lam))
        seed_floor = per_condition_wasserstein(other, ref).mean() if other is not None else {}
        out.append(Reference(lam, ref, floor, task.metrics(lam, conds, ref), seed_floor))
    return out


def _base_row(task: Task, surrogate: Surrogate | type[Surrogate], spec: str, seed: int, lam: float) -> dict[str, Any]:
    return {
        "task": task.spec,
        "surrogate": spec,
        "seed": int(seed),
        "lambda_heldout": float(lam),
        "hyperparameter": task.hyperparameter.name,
        "anchors": format_anchors(task.anchors),
        "clock": task.hyperparameter.clock.value,
        "status": "ok",
        "error": "",
        "w1": math.nan, "w2": math.nan, "w2sq": math.nan,
        "floor_w1": math.nan, "floor_w2": math.nan, "floor_w2sq": math.nan,
        "seed_floor_w1": math.nan, "seed_floor_w2": math.nan, "seed_floor_w2sq": math.nan,
        "n_conditions": int(task.eval_conditions().shape[0]),
        "n_samples": task.n_samples,
        "fit_seconds": math.nan, "sample_seconds": math.nan,
        "uses_training_loss": surrogate.uses_training_loss(),
        "anchor_train_seconds": anchor_train_seconds(task),
        **prov.provenance(),
        "run_date": "",
        "schema_version": SCHEMA_VERSION,
    }


def anchor_train_seconds(task: Task) -> float:
    """What training the anchors cost (sum of the cache's recorded times), NaN for untrained tasks."""
    if not isinstance(task, TrainedTask):
        return math.nan
    from hti_bench.harness.targets import default_cache

    cache = task.cache or default_cache()
    return float(sum(cache.train_seconds(task, lam, task.config.model_seed) for lam in task.anchors))


def _describe(err: BaseException) -> str:
    line = traceback.format_exception_only(type(err), err)[-1].strip()
    return line.replace("\n", " ")[:500]


def evaluate_unit(
    task: Task,
    spec: str,
    seed: int,
    anchors: AnchorSet,
    references: Sequence[Reference],
    samples: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Fit one surrogate for one seed and score it at every held-out λ. Never raises for plugin faults:
    a crash, a NaN or a wrong shape becomes a failed row with the reason.

    ``samples``: pass an empty dict to get sample clouds for figures. For a task with 2-D outputs it is
    filled (see :data:`hti_bench.harness.results.SAMPLE_KEYS`) with the surrogate's and the held-out network's
    samples at the middle held-out λ, for the first :data:`CLOUD_CONDITIONS` conditions and at most
    :data:`CLOUD_SAMPLES` samples each; it stays empty otherwise (other tasks, or that λ failed).
    Store both with ``ResultsStore.write_unit(rows, samples=samples)``.
    """
    surrogate = make_surrogate(spec)
    spec = surrogate.spec  # canonical form: defaults dropped, keys sorted
    rows = [_base_row(task, surrogate, spec, seed, ref.lam) for ref in references]
    for row, ref in zip(rows, references):
        row.update({f"floor_{k}": v for k, v in ref.floor.items()})
        row.update({f"seed_floor_{k}": v for k, v in ref.seed_floor.items()})
        row.update({f"ref_metric_{k}": v for k, v in ref.ref_metrics.items()})

    reason = surrogate.skip(task)
    if reason:
        for row in rows:
            row.update(status="skipped", error=reason)
        return _stamp(rows)

    torch.manual_seed(seed)
    start = time.perf_counter()
    try:
        surrogate.fit(anchors, task if surrogate.requires else None, seed=seed)
    except Exception as err:  # a plugin fault: record it and carry on with the next unit
        for row in rows:
            row.update(status="failed", error=f"fit: {_describe(err)}")
        return _stamp(rows)
    fit_seconds = time.perf_counter() - start

    conds = task.eval_conditions().float()
    expected = (conds.shape[0], task.n_samples, task.output_dim)
    cloud_at = len(references) // 2 if samples is not None and task.output_dim == 2 else -1
    for i, (row, ref) in enumerate(zip(rows, references)):
        row["fit_seconds"] = fit_seconds
        start = time.perf_counter()
        try:
            out = surrogate.sample(ref.lam, conds, task.n_samples, derive_seed(task.spec, seed, "sample", ref.lam))
            row["sample_seconds"] = time.perf_counter() - start
            out = torch.as_tensor(out)
            if tuple(out.shape) != expected:
                raise ValueError(f"sample() returned shape {tuple(out.shape)}, expected (M, n, D) = {expected}")
            if not torch.isfinite(out).all():
                bad = int((~torch.isfinite(out)).any(dim=-1).sum())
                raise ValueError(f"sample() returned {bad} non-finite samples (NaN or inf)")
            row.update(per_condition_wasserstein(out, ref.samples).mean())
            row.update({f"metric_{k}": v for k, v in task.metrics(ref.lam, conds, out).items()})
        except Exception as err:
            row.update(status="failed", error=f"sample at {task.hyperparameter.name}={ref.lam}: {_describe(err)}")
            continue
        if i == cloud_at:
            _keep_cloud(samples, task, spec, seed, ref, conds, out)
    return _stamp(rows)


def _keep_cloud(
    samples: dict[str, Any], task: Task, spec: str, seed: int, ref: Reference, conds: Tensor, out: Tensor
) -> None:
    """Fill ``samples`` with a few conditions' clouds; a fault here warns and never fails the unit."""
    m, n = CLOUD_CONDITIONS, CLOUD_SAMPLES
    try:
        samples.update(
            task=task.spec,
            surrogate_spec=spec,
            seed=int(seed),
            hyperparameter=task.hyperparameter.name,
            lam=float(ref.lam),
            conditions=conds[:m].detach().cpu().numpy().astype("float32"),
            surrogate=out[:m, :n].detach().cpu().float().numpy(),
            reference=torch.as_tensor(ref.samples)[:m, :n].detach().cpu().float().numpy(),
        )
    except Exception as err:
        samples.clear()
        warnings.warn(f"sample clouds of {task.spec} {spec} seed={seed} not kept: {_describe(err)}", stacklevel=2)


def _stamp(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    date = prov.now()
    for row in rows:
        row["run_date"] = date
    return rows


def resolve(
    tasks: Sequence[str] | None, surrogates: Sequence[str] | None
) -> tuple[list[Task], list[str]]:
    """Build every task and surrogate named (all of them when None); raises before any work."""
    task_objs = [make_task(t) for t in (tasks or default_tasks())]
    specs = list(surrogates) if surrogates else list(surrogate_classes())
    specs = [make_surrogate(s).spec for s in specs]  # validates names and parameters now
    return task_objs, specs


def prepare_targets(task: Task, cache: TargetCache, progress: bool = False) -> None:
    """Train (or load) every network a task's units need: anchors, held-out and their seed twins."""
    if not isinstance(task, TrainedTask):
        return
    from tqdm.auto import tqdm

    task.cache = cache
    nets = [(lam, None) for lam in task.anchors + task.heldout] + [(lam, task.twin_seed) for lam in task.heldout]
    for lam, model_seed in tqdm(nets, desc=f"targets {task.name}", unit="net", leave=False, disable=not progress):
        task.network(lam, seed=model_seed)


def _target_jobs(task: Task, cache: TargetCache) -> list[tuple[str, float, int | None]]:
    """The (task spec, λ, model seed) of every network a task's units need that is not cached yet."""
    if not isinstance(task, TrainedTask):
        return []
    task.cache = cache
    nets = [(lam, None) for lam in task.anchors + task.heldout] + [(lam, task.twin_seed) for lam in task.heldout]
    jobs = []
    for lam, model_seed in nets:
        seed = task.config.model_seed if model_seed is None else model_seed
        if not cache.paths(task, lam, seed)[0].exists():
            jobs.append((task.spec, lam, model_seed))
    return jobs


def _count_target(cache: TargetCache, trained: bool) -> None:
    # Workers train into the shared cache; count here so the summary reads as a serial run's would.
    if trained:
        cache.trained += 1


def _failed_rows(task: Task, spec: str, seed: int, reason: str) -> list[dict[str, Any]]:
    surrogate = make_surrogate(spec)
    rows = [_base_row(task, surrogate, spec, seed, lam) for lam in task.heldout]
    for row in rows:
        row.update(status="failed", error=reason)
    return _stamp(rows)


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
        and units fitted in parallel (:mod:`hti_bench.harness.pool`); the rows are the same as a serial
        run's up to floating-point rounding, and this process still writes every unit.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    task_objs, specs = resolve(tasks, surrogates)
    store = ResultsStore(results_dir)
    cache = TargetCache(cache_dir)
    summary = RunSummary()

    plan = []
    for task in task_objs:
        todo = [
            (spec, seed)
            for seed in seeds
            for spec in specs
            if force or not store.has_unit(task.spec, spec, seed)
        ]
        summary.units_cached += len(seeds) * len(specs) - len(todo)
        plan.append((task, todo))

    total = sum(len(todo) for _, todo in plan)
    bar = tqdm(total=total, desc="hti-bench", unit="run", disable=not progress, dynamic_ncols=True)
    tasks_by_spec = {task.spec: task for task, _ in plan}

    def store_unit(key: tuple[str, str, int], rows: list[dict[str, Any]] | None, clouds: dict[str, Any]) -> None:
        task, spec, seed = tasks_by_spec[key[0]], key[1], key[2]
        if rows is None:
            rows = _failed_rows(task, spec, seed, "worker process died while running this unit (crash or out of memory)")
        if tracker is not None:
            run_id = tracker(rows)
            for row in rows:
                row["wandb_run_id"] = run_id or ""
        store.write_unit(rows, samples=clouds)
        summary.units_run += 1
        for row in rows:
            if row["status"] == "failed":
                summary.rows_failed += 1
                summary.failures.append(f"{row['task']} {row['surrogate']} seed={seed}: {row['error']}")
            elif row["status"] == "skipped":
                summary.rows_skipped += 1
        bar.update(1)

    def batches():  # (units of one task and seed, anchors, references, keep clouds?)
        for task, todo in plan:
            for seed in sorted({s for _, s in todo}):
                bar.set_postfix_str(f"{task.name} seed={seed}: anchor and reference samples")
                anchors, references = build_anchor_set(task, seed), build_references(task, seed)
                yield [(task.spec, spec, s) for spec, s in todo if s == seed], anchors, references, True

    n_jobs = resolve_jobs(jobs)
    if n_jobs > 1 and total > 1:
        from hti_bench.harness.pool import UnitPool

        with UnitPool(min(n_jobs, total), cache.root) as pool:
            nets = [job for task, todo in plan if todo for job in _target_jobs(task, cache)]
            tbar = tqdm(total=len(nets), desc="targets", unit="net", leave=False, disable=not progress or not nets)
            pool.train(nets, lambda trained: (tbar.update(1), _count_target(cache, trained)))
            tbar.close()
            for task, _ in plan:
                task.cache = cache
            bar.set_postfix_str(f"{n_jobs} workers")
            groups = [(task.spec, seed, [(task.spec, spec, s) for spec, s in todo if s == seed])
                      for task, todo in plan for seed in sorted({s for _, s in todo})]
            pool.units(groups, store_unit)
    else:
        for task, todo in plan:
            if todo:
                prepare_targets(task, cache, progress)
        for keys, anchors, references, clouds in batches():
            for key in keys:
                bar.set_postfix_str(f"{key[0]} {key[1]} seed={key[2]}")
                samples: dict[str, Any] = {}
                rows = evaluate_unit(tasks_by_spec[key[0]], key[1], key[2], anchors, references, samples=samples)
                store_unit(key, rows, samples)
    bar.close()
    summary.targets_trained, summary.targets_loaded = cache.trained, cache.hits
    summary.results, summary.leaderboard = store.write_tables()
    summary.seconds = time.perf_counter() - start
    return summary
