"""Per-step cost of the best-response surrogates on a task, by method and λ draws per batch
(a benchmark, not a test).

    .venv/bin/python perf/best_response_step.py --task moons-dropout --repeats 3 \
        --csv results/perf.csv

Each repeat fits ``SPEC[epochs=E]`` and divides the fit's wall time by its optimiser steps; the
median over repeats is printed and appended to --csv. The target networks come from the target cache
(trained first if missing, outside the timing).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from hti_bench.harness.registry import make_surrogate, make_task
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import build_anchor_set
from hti_bench.specs import format_spec, parse_spec
from hti_bench.view import TaskView

DEFAULT_SPECS = (
    "hypernetwork[lambda_draws=16]",
    "hypernetwork[lambda_draws=128]",
    "stn[lambda_draws=16]",
    "stn[lambda_draws=128]",
    "delta-stn[lambda_draws=16]",
    "anchored-delta-stn[lambda_draws=16]",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="moons-dropout")
    p.add_argument("--spec", action="append", default=None, help="surrogate spec (repeatable)")
    p.add_argument("--epochs", type=float, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--csv", default=None)
    args = p.parse_args()
    task = make_task(args.task, cache=TargetCache())
    anchors = build_anchor_set(task, seed=0)
    n_rows = int(task.training_data()[0].shape[0])
    print(f"threads={torch.get_num_threads()} task={task.spec} rows={n_rows}")
    rows = []
    for spec in args.spec or DEFAULT_SPECS:
        name, params = parse_spec(spec)
        full = format_spec(name, {**params, "epochs": args.epochs})
        per_step = []
        for _ in range(args.repeats):
            surrogate = make_surrogate(full)
            start = time.perf_counter()
            surrogate.fit(anchors, TaskView(task, surrogate.requires), seed=0)
            seconds = time.perf_counter() - start
            steps = (
                sum(len(x) for x in surrogate.losses_)
                if isinstance(surrogate.losses_[0], list)
                else len(surrogate.losses_)
            )
            per_step.append(seconds / steps)
        median = statistics.median(per_step)
        print(f"{full}: {', '.join(f'{v * 1e3:.1f}' for v in per_step)} ms/step; median {median * 1e3:.1f} ms")
        rows.append(
            {
                "benchmark": "best_response_step",
                "spec": full,
                "data": task.spec,
                "median_s": median,
                "repeats": args.repeats,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "machine": platform.node() or "unknown",
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )
    if args.csv:
        path = Path(args.csv)
        old = pd.read_csv(path) if path.exists() else None
        pd.concat([old, pd.DataFrame(rows)] if old is not None else [pd.DataFrame(rows)]).to_csv(path, index=False)


if __name__ == "__main__":
    main()
