"""The sweep program: one sweep run = one (task, surrogate, surrogate parameters, seeds).

Its configuration comes from ``wandb.config``, exactly as a W&B agent provides it: command-line
``--key=value`` arguments (the agent's ``${args}``) are the defaults, and ``wandb.init`` merges
``WANDB_SWEEP_PARAM_PATH`` (``{key: {value: v}}``) over them. So the same program runs under
``wandb agent`` on any machine, under the offline controller (``hti-bench sweep``), and by hand::

    python -m hti_bench.sweeping.program --task=moons-dropout --surrogate=cfm --seed=0

Keys (:data:`PROGRAM_KEYS`); every other key is a parameter of the surrogate, e.g. ``lr=1e-3`` with
``surrogate=cfm`` runs ``cfm[lr=0.001]``. Unknown keys and names fail before anything trains, with
the valid choices listed. Each seed is one unit of the results store, so rows land in the same
``results/runs/`` files ``hti-bench run`` writes and a unit already stored is read, not re-run.

After each seed the program logs ``w2`` (mean W₂ over the held-out λ and the seeds done so far),
``w2_seed``, ``w1`` and ``w2sq`` with ``seeds_done`` as the step; a sweep's hyperband early stopping
therefore counts seeds as iterations and can drop a configuration after its first seed. wandb runs
offline unless the user is logged in (``WANDB_API_KEY`` or a netrc entry) or ``WANDB_MODE`` says
otherwise; the unit's rows go into the run summary (``hti_bench/rows``, JSON) so
``hti-bench leaderboard --from-wandb`` can rebuild the tables from a W&B project.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hti_bench.clock import CLOCK_PARAM
from hti_bench.errors import ConfigError, HTIBenchError, unknown_name_message
from hti_bench.harness.tracking import ROWS_SUMMARY_KEY, rows_json
from hti_bench.specs import format_spec, parse_spec

#: The keys the program itself reads; any other key is a surrogate parameter.
PROGRAM_KEYS: dict[str, str] = {
    "task": "Task name with options, e.g. moons-dropout or quantile[epochs=50] (required).",
    "surrogate": "Surrogate name with options, e.g. cfm or clot[metric=euclidean] (required).",
    "seed": "One run seed (default 0).",
    "seeds": "Several run seeds: a count n (seeds 0 … n−1) or a list. The run logs its metric after "
    "each seed, so hyperband early stopping can end it after the first ones.",
    "n_anchors": "Replace the task's anchors by n anchors evenly spaced on its clock between its first "
    "and last default anchor (anchor-sparsity studies); the held-out λ are unchanged.",
    "design": "Tasks of several hyperparameters: replace the task's anchors by an anchor design, grid:<n>x<m> or "
    "sobol:<N> (corners included), over the box of its default design; the held-out points are unchanged "
    "(the anchor-sparsity study on several hyperparameters).",
    "tune": "Tuned track: first try this many configurations of the surrogate's search space and the clock "
    "on the task's validation folds (anchors only), then score the best at the held-out λ for every seed "
    "(hti_bench.sweeping.tuning). 0 or absent: the surrogate as named (the default track).",
    "tune_method": "How tuning proposes configurations: random (default) or bayes.",
    "tune_seeds": "Run seeds each tuning trial is scored with (a count n or a list; default 1: seed 0).",
}

#: The metric the program logs and sweep files optimise (lower is better).
METRIC = "w2"


@dataclass(frozen=True)
class RunConfig:
    """One sweep run, validated: every name resolved, nothing trained yet."""

    task: str
    surrogate: str
    seeds: tuple[int, ...]
    tune: int = 0
    tune_method: str = "random"
    tune_seeds: tuple[int, ...] = (0,)


@dataclass
class Outcome:
    """What one sweep run did. ``state``: finished, skipped (surrogate does not apply), failed or stopped."""

    state: str
    history: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


# ---------------------------------------------------------------------------------------------------
# configuration


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise ConfigError(f"Sweep parameter {key!r} must be an integer, got {value!r}.")
    return int(value)


def _seeds(cfg: Mapping[str, Any]) -> tuple[int, ...]:
    if "seed" in cfg and "seeds" in cfg:
        raise ConfigError("Give either 'seed' (one seed) or 'seeds' (a count or a list), not both.")
    if "seeds" in cfg:
        value = cfg["seeds"]
        if isinstance(value, (list, tuple)):
            seeds = tuple(_as_int("seeds", v) for v in value)
        else:
            seeds = tuple(range(_as_int("seeds", value)))
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"Sweep parameter 'seeds' must name at least one seed, without repeats; got {value!r}.")
        return seeds
    return (_as_int("seed", cfg.get("seed", 0)),)


def spaced_anchors(task_spec: str, n: int) -> str:
    """``task_spec`` with ``n`` anchors evenly spaced on the task's clock between its first and last."""
    from hti_bench.harness.registry import make_task

    if n < 2:
        raise ConfigError(f"n_anchors must be at least 2 (HTI interpolates between anchors), got {n}.")
    name, params = parse_spec(task_spec)
    task = make_task(task_spec)
    try:
        hp = task.hyperparameters.axis
    except ConfigError:
        raise ConfigError(
            f"n_anchors spaces anchors on one hyperparameter; task '{name}' has {task.d}: use the "
            "sweep parameter design (grid:3x3, sobol:9) instead."
        ) from None
    (first,), (last,) = task.anchors[0], task.anchors[-1]
    t0, t1 = hp.to_time(first), hp.to_time(last)
    inner = [round(hp.from_time(t0 + (t1 - t0) * i / (n - 1)), 6) for i in range(1, n - 1)]
    return format_spec(name, {**params, "anchors": (first, *inner, last)})


def designed_anchors(task_spec: str, design: str) -> str:
    """``task_spec`` (a task of several hyperparameters) with its anchors from the design ``design``."""
    from hti_bench.harness.registry import make_task

    name, params = parse_spec(task_spec)
    task = make_task(task_spec)
    if "design" not in {f.name for f in dataclasses.fields(task.Config)}:
        raise ConfigError(
            f"design is for tasks of several hyperparameters; task '{name}' has {task.d}, and no design "
            "option: use n_anchors."
        )
    params = {k: v for k, v in params.items() if k != "anchors"}
    return format_spec(name, {**params, "design": str(design)})


def unknown_parameter(key: str, surrogate: str, valid: Mapping[str, Any]) -> ConfigError:
    """The error for a sweep key that is neither a program key nor a parameter of ``surrogate``."""
    return ConfigError(
        unknown_name_message("sweep parameter", key, [*PROGRAM_KEYS, *valid])
        + f" (program keys, and the parameters of surrogate '{surrogate}')"
    )


def parse_config(cfg: Mapping[str, Any]) -> RunConfig:
    """Validate a sweep run's configuration and resolve its task and surrogate. Raises before any work.

    Keys starting with ``_`` (wandb's own) are ignored.
    """
    from hti_bench.harness.registry import make_task
    from hti_bench.harness.sandbox import lookup

    # The sweep engine proposes numpy scalars; names must hold plain Python values.
    cfg = {k: (v.item() if hasattr(v, "item") else v) for k, v in cfg.items() if not str(k).startswith("_")}
    for key in ("task", "surrogate"):
        if key not in cfg:
            raise ConfigError(f"Sweep run configuration lacks {key!r}. Program keys: {', '.join(PROGRAM_KEYS)}.")
        if not isinstance(cfg[key], str):
            raise ConfigError(f"Sweep parameter {key!r} must be a name (text), got {cfg[key]!r}.")
    name, params = parse_spec(cfg["surrogate"])
    entry = lookup.entry(name)  # raises the unknown-surrogate message
    valid = {**entry.params, CLOCK_PARAM: ""}
    extra = {k: v for k, v in cfg.items() if k not in PROGRAM_KEYS}
    for key in extra:
        if key not in valid:
            raise unknown_parameter(key, name, valid)
    surrogate = lookup.resolve(format_spec(name, {**params, **extra})).spec
    task = cfg["task"]
    if "n_anchors" in cfg and cfg["n_anchors"] is not None:
        task = spaced_anchors(task, _as_int("n_anchors", cfg["n_anchors"]))
    if cfg.get("design"):
        task = designed_anchors(task, str(cfg["design"]))
    task = make_task(task).spec  # validates anchors against the held-out λ, too
    trials = _as_int("tune", cfg.get("tune") or 0)
    if trials < 0:
        raise ConfigError(f"Sweep parameter 'tune' must be a number of trials ≥ 0, got {trials}.")
    method = str(cfg.get("tune_method", "random"))
    if trials:
        from hti_bench.sweeping.tuning import METHODS, validation_folds

        if method not in METHODS:
            raise ConfigError(unknown_name_message("tune_method", method, METHODS))
        validation_folds(make_task(task))  # a 2-anchor task without validation λ fails here, not mid-sweep
    tune_seeds = _seeds({"seeds": cfg["tune_seeds"]}) if cfg.get("tune_seeds") is not None else (0,)
    return RunConfig(
        task=task, surrogate=surrogate, seeds=_seeds(cfg), tune=trials, tune_method=method, tune_seeds=tune_seeds
    )


# ---------------------------------------------------------------------------------------------------
# running


def _mean(values: Sequence[float]) -> float:
    values = [float(v) for v in values if v == v]
    return sum(values) / len(values) if values else math.nan


def execute(
    rc: RunConfig,
    results_dir: str | os.PathLike[str] = "results",
    cache_dir: str | os.PathLike[str] | None = None,
    report: Callable[[dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Run every seed of ``rc`` (stored units are read back, not re-run) and report after each seed.

    ``should_stop`` is asked before each seed after the first (hyperband); a surrogate crash or NaN
    is a failed row in the store and a ``failed`` outcome here, never an exception.
    """
    from hti_bench.harness.registry import make_task
    from hti_bench.harness.results import ResultsStore
    from hti_bench.harness.targets import TargetCache
    from hti_bench.harness.unit import run_unit

    task = make_task(rc.task, cache=TargetCache(cache_dir))
    store = ResultsStore(results_dir)
    out = Outcome(state="finished")
    study = None
    if rc.tune:
        from hti_bench.sweeping.tuning import tune, tuned_unit

        study = tune(
            task, rc.surrogate, trials=rc.tune, method=rc.tune_method, tune_seeds=rc.tune_seeds, results_dir=results_dir
        )
    per_seed: dict[str, list[float]] = {"w2": [], "w1": [], "w2sq": []}
    for k, seed in enumerate(rc.seeds):
        if k and should_stop is not None and should_stop():
            out.state = "stopped"
            break
        if study is not None:
            rows = tuned_unit(task, study, seed, store)
        else:
            rows = run_unit(task, rc.surrogate, seed, store).rows  # a stored unit is read back, not refitted
        out.rows.extend(rows)
        failed = [r for r in rows if r["status"] == "failed"]
        if failed:
            out.state, out.error = "failed", f"seed {seed}: {failed[0]['error']}"
            break
        ok = [r for r in rows if r["status"] == "ok"]
        if not ok:  # the surrogate does not apply to this task: every row says why
            out.state, out.error = "skipped", str(rows[0]["error"])
            break
        for key in per_seed:
            per_seed[key].append(_mean([r[key] for r in ok]))
        step = {key: _mean(vals) for key, vals in per_seed.items()}
        step.update(w2_seed=per_seed["w2"][-1], seed=float(seed), seeds_done=float(k + 1))
        out.history.append(step)
        if report is not None:
            report(step)
    out.summary = dict(out.history[-1]) if out.history else {}
    out.summary.update(status=out.state, task=rc.task, surrogate=rc.surrogate)
    if study is not None:
        best = study.best
        out.summary.update(
            track="tuned",
            config=best.spec if best else "",
            tuning_trials=float(len(study.trials)),
            tuning_score=best.score if best else math.nan,
            tuning_fit_seconds=study.fit_seconds,
        )
    if out.error:
        out.summary["error"] = out.error
    return out


# ---------------------------------------------------------------------------------------------------
# the command line / wandb side


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """``--key=value`` / ``--key value`` pairs (the agent's ``${args}``), values read as literals."""
    from hti_bench.specs import _parse_value

    out: dict[str, Any] = {}
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or item == "--":
            raise ConfigError(f"Unexpected argument {item!r}: the sweep program takes --key=value pairs.")
        if "=" in item:
            key, value = item[2:].split("=", 1)
        elif i + 1 < len(items) and not items[i + 1].startswith("--"):
            key, value = item[2:], items[i + 1]
            i += 1
        else:
            raise ConfigError(f"Argument {item!r} has no value: use --key=value.")
        key = key.replace("-", "_") if key.replace("-", "_") in PROGRAM_KEYS else key
        out[key] = _parse_value(value)
        i += 1
    return out


def logged_in() -> bool:
    """Whether wandb has credentials here (no network call): ``WANDB_API_KEY`` or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        hosts = netrc.netrc(path).hosts
    except (OSError, netrc.NetrcParseError):
        return False
    base = os.environ.get("WANDB_BASE_URL", "")
    return any("wandb" in host or (base and host in base) for host in hosts)


def wandb_mode() -> str:
    """``WANDB_MODE`` if set; else online when logged in (or under a W&B agent), offline otherwise."""
    mode = os.environ.get("WANDB_MODE", "").strip()
    if mode:
        return mode
    return "online" if logged_in() or os.environ.get("WANDB_SWEEP_ID") else "offline"


def sweep_run(
    argv: Sequence[str] = (),
    report: Callable[[dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    results_dir: str | None = None,
) -> Outcome:
    """One sweep run, from the command line and ``wandb.config``. Raises :class:`HTIBenchError`
    (before any training) on a bad configuration."""
    import wandb

    defaults = parse_args(argv)
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "hti-bench"),
        config=defaults,
        mode=wandb_mode(),
        reinit="finish_previous",
    )
    try:
        rc = parse_config(dict(run.config))
        run.config.update({"task_spec": rc.task, "surrogate_spec": rc.surrogate}, allow_val_change=True)
        run.name = run.name or f"{rc.task}|{rc.surrogate}"

        def step(metrics: dict[str, float]) -> None:
            run.log(metrics, step=int(metrics["seeds_done"]))
            if report is not None:
                report(metrics)

        outcome = execute(
            rc,
            results_dir=results_dir or os.environ.get("HTI_BENCH_RESULTS", "results"),
            report=step,
            should_stop=should_stop,
        )
        run.summary.update({k: v for k, v in outcome.summary.items()})
        run.summary[ROWS_SUMMARY_KEY] = rows_json(outcome.rows)
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish(exit_code=0 if outcome.state != "failed" else 1)
    return outcome


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return json.loads(rows_json(rows))


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 finished, skipped or stopped; 1 failed; 2 bad configuration."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        outcome = sweep_run(argv, report=lambda m: print(json.dumps({"metrics": m}), flush=True))
    except HTIBenchError as err:
        print(f"hti-bench sweep program: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"state": outcome.state, "summary": _jsonable([outcome.summary])[0]}), flush=True)
    return 1 if outcome.state == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
