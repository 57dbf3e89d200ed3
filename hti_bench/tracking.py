"""Optional experiment tracking with wandb (off by default; offline needs no server)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

MODES = ("disabled", "offline", "online")


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
        run_id = run.id
        run.finish()
        return run_id

    return track
