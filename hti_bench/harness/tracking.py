"""Optional experiment tracking with wandb (off by default; offline needs no server)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

MODES = ("disabled", "offline", "online")


def default_mode() -> str:
    """The wandb mode when none is given, the same for ``hti-bench run`` and ``hti-bench sweep``:
    ``$HTI_BENCH_WANDB`` if set, else ``disabled`` (nothing is logged unless asked for)."""
    mode = os.environ.get("HTI_BENCH_WANDB", "").strip() or "disabled"
    if mode not in MODES:
        from hti_bench.errors import ConfigError

        raise ConfigError(f"HTI_BENCH_WANDB={mode!r} is not a wandb mode; valid: {', '.join(MODES)}.")
    return mode


def wandb_tracker(mode: str, project: str = "hti-bench") -> Callable[[list[dict[str, Any]]], str | None] | None:
    """A callback logging each unit's rows as one wandb run, or None when ``mode`` is disabled."""
    if mode not in MODES:
        raise ValueError(f"Unknown wandb mode {mode!r}; valid: {', '.join(MODES)}.")
    if mode == "disabled":
        return None
    import wandb

    def track(rows: list[dict[str, Any]]) -> str | None:
        first = rows[0]
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", project),
            mode=mode,
            name=f"{first['task']}|{first['surrogate']}|seed={first['seed']}",
            config={"task": first["task"], "surrogate": first["surrogate"], "seed": first["seed"]},
            reinit="finish_previous",
        )
        for row in rows:
            run.log({k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        ok = [r for r in rows if r["status"] == "ok"]
        if ok:
            run.summary["w2_mean"] = sum(r["w2"] for r in ok) / len(ok)
        run.summary["status"] = "ok" if len(ok) == len(rows) else rows[-1]["status"]
        run.summary[ROWS_SUMMARY_KEY] = rows_json(rows)
        run_id = run.id
        run.finish()
        return run_id

    return track


#: Where each wandb run keeps its result rows (a JSON list), so the tables can be rebuilt from W&B.
ROWS_SUMMARY_KEY = "hti_bench/rows"


def rows_json(rows: list[dict[str, Any]]) -> str:
    """Result rows as JSON: numpy scalars made plain, NaN and inf as null."""

    def fix(v: Any) -> Any:
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return json.dumps([{k: fix(v) for k, v in row.items()} for row in rows])


def results_from_wandb(path: str, results_dir: str, api: Any = None) -> tuple[int, int]:
    """Rebuild a results store from the runs of a W&B project ``ENTITY/PROJECT`` (public API).

    Every run whose summary holds ``hti_bench/rows`` (sweep runs, and ``hti-bench run --wandb``) is
    written as units of the store in ``results_dir``; the same unit seen twice keeps the newest row,
    exactly as local results merge. Returns (runs read, units written).
    """
    import pandas as pd

    from hti_bench.errors import HTIBenchError
    from hti_bench.harness.results import ResultsStore, upgrade

    if path.count("/") != 1 or not all(path.split("/")):
        raise HTIBenchError(f"--from-wandb takes ENTITY/PROJECT, got {path!r}.")
    if api is None:
        import wandb

        try:
            api = wandb.Api(timeout=60)
        except Exception as err:  # no credentials, no network
            raise HTIBenchError(f"Cannot reach the W&B API for {path}: {err}") from None
    store = ResultsStore(results_dir)
    n_runs, rows = 0, []
    try:
        runs = list(api.runs(path))
    except Exception as err:
        raise HTIBenchError(f"Cannot list the runs of W&B project {path}: {err}") from None
    for run in runs:
        blob = run.summary.get(ROWS_SUMMARY_KEY) if hasattr(run.summary, "get") else None
        if not blob:
            continue
        n_runs += 1
        rows.extend(json.loads(blob) if isinstance(blob, str) else blob)
    if not rows:
        return n_runs, 0
    df = upgrade(pd.DataFrame(rows))  # rows logged by an older hti-bench lack the newer columns
    df["run_date"] = df["run_date"].fillna("")
    df = df.sort_values("run_date", kind="stable")
    units = 0
    for _, unit in df.groupby(["task", "surrogate", "seed"], sort=True):
        unit = unit.drop_duplicates(["lambda_heldout"], keep="last")
        store.write_unit(unit.to_dict("records"))
        units += 1
    return n_runs, units
