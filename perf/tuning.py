"""What the tuned track costs: ``hti-bench tune`` on the default suite, end to end (a benchmark).

    .venv/bin/python perf/tuning.py --results /tmp/tuned          # warm target cache, -j 2
    .venv/bin/python perf/tuning.py --results DIR --default       # also time the default run

Runs ``hti-bench tune -j JOBS`` (every surrogate on the default tasks, 8 trials each, seeds 0 1 2) in a
subprocess on the target cache given (``$HTI_BENCH_CACHE`` by default; warm it with ``hti-bench run``
first: the targets' training is the end-to-end benchmark's business), and records its wall time
(goal: ≤ 45 min on 2 cores), peak resident memory of the process tree, and from the studies
it wrote: the trials run, the total fit seconds of all trials, and the seconds of the largest
(task, surrogate) study. ``--default`` also times ``hti-bench run`` into the same results folder, so
the folder ends with both tracks and the ratio of the two costs is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import perftools as perf
from end_to_end import measure

GOAL_SECONDS = 45 * 60


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", required=True, help="Results folder (must not hold a tuning/ folder yet).")
    p.add_argument("--jobs", default="2")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--default", action="store_true", help="Also time the default hti-bench run.")
    p.add_argument("--csv", default=str(perf.PERF_CSV))
    args = p.parse_args(argv)

    results = Path(args.results)
    if (results / "tuning").exists():
        raise SystemExit(f"{results}/tuning exists: a measurement needs a results folder that has not been tuned")
    env = {**os.environ, "WANDB_MODE": "disabled"}
    case = f"default suite, --jobs {args.jobs}, {args.trials} trials"
    rows = []
    tune = [
        sys.executable,
        "-m",
        "hti_bench",
        "tune",
        "--no-progress",
        "--no-figures",
        "--results",
        str(results),
        "-j",
        str(args.jobs),
        "--trials",
        str(args.trials),
    ]
    wall, peak, code = measure(tune, env)
    print(f"hti-bench tune: {wall:.0f} s, peak RSS {peak / 2**30:.2f} GiB, exit {code}", flush=True)
    if code:
        raise SystemExit("hti-bench tune failed; nothing recorded")
    studies = [json.loads(f.read_text()) for f in sorted((results / "tuning" / "studies").glob("*.json"))]
    fit = [float(s["tuning_fit_seconds"]) for s in studies]
    trials = sum(len(s["trials"]) for s in studies)
    rows += [
        perf.row(
            "tuning", case, "tune_wall_seconds", wall, "s", goal=f"≤ {GOAL_SECONDS} s", meets_goal=wall <= GOAL_SECONDS
        ),
        perf.row("tuning", case, "tune_peak_rss_gib", peak / 2**30, "GiB"),
        perf.row("tuning", case, "studies", len(studies), "(task, surrogate)"),
        perf.row("tuning", case, "trials", trials, "trials"),
        perf.row("tuning", case, "trial_fit_seconds_total", sum(fit), "s"),
        perf.row("tuning", case, "largest_study_fit_seconds", max(fit, default=float("nan")), "s"),
    ]
    if args.default:
        run = [
            sys.executable,
            "-m",
            "hti_bench",
            "run",
            "--no-progress",
            "--results",
            str(results),
            "-j",
            str(args.jobs),
        ]
        default_wall, _, code = measure(run, env)
        print(f"hti-bench run: {default_wall:.0f} s, exit {code}", flush=True)
        if not code:
            rows += [
                perf.row("tuning", case, "default_run_wall_seconds", default_wall, "s"),
                perf.row("tuning", case, "tune_over_default_run", wall / default_wall, "x"),
            ]
    perf.record(rows, args.csv)
    print(f"{len(rows)} rows → {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
