"""The default ``hti-bench run``, end to end: cold cache, warm cache, peak memory (a benchmark).

    .venv/bin/python perf/end_to_end.py                  # cold once, warm once, --jobs auto
    .venv/bin/python perf/end_to_end.py --warm-repeats 3 --compare-jobs 1

Each measurement runs ``hti-bench run`` (the README's first command, after set-up) in a subprocess with a
fresh results folder, ``WANDB_MODE=disabled`` and:
- cold: an empty target cache, so every target network is trained (what a new user waits for);
- warm: the cache the cold run filled, so networks load and every surrogate is refitted;
- stored: the warm run's results folder again, so every unit is read back (a resumed run).
Peak memory is the largest *sum* of resident memory over the run's whole process tree (the CLI and its
worker processes), sampled every 0.2 s from /proc, so parallel workers are counted together.
Goals (2 CPU cores): cold ≤ 15 min, warm ≤ 3 min, peak RSS ≤ 4 GiB.
``--compare-jobs 1`` also times a warm run in one process, for the ratio the worker pool buys.
``--compare-unsealed K`` times K warm runs sealed (the default) and K with ``--unsealed``, alternating
(sealed, unsealed, unsealed, sealed, …: drift of the machine falls on both), for what sealing costs
(goal: sealed ≤ 1.10 × unsealed), and checks that the two give the same scores, row for row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import perftools as perf

GOALS = {"cold": 15 * 60, "warm": 3 * 60}
RSS_GOAL_GIB = 4.0


def _tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * page
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """(wall seconds, peak tree RSS bytes, exit code) of one command."""
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_bytes(proc.pid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode:
        print(err[-3000:], file=sys.stderr)
    return wall, peak, proc.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", default="auto", help="--jobs of the measured runs.")
    p.add_argument("--warm-repeats", type=int, default=1)
    p.add_argument("--compare-jobs", default=None, metavar="N", help="Also time a warm run with --jobs N.")
    p.add_argument("--skip-cold", action="store_true", help="Reuse --cache as is (must be filled).")
    p.add_argument("--cache", default=None, help="Target cache to use (default: a fresh temporary one).")
    p.add_argument("--run-args", default="", help="Extra arguments for hti-bench run, e.g. '-t semicircles'.")
    p.add_argument("--csv", default=str(perf.PERF_CSV))
    p.add_argument("--keep", action="store_true", help="Keep the scratch folder (results, cache) for inspection.")
    p.add_argument(
        "--compare-unsealed", type=int, default=0, metavar="K", help="Also K warm runs sealed and K --unsealed."
    )
    args = p.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="hti-e2e-"))
    cache = Path(args.cache) if args.cache else scratch / "cache"
    env = {**os.environ, "WANDB_MODE": "disabled", "HTI_BENCH_CACHE": str(cache)}
    exe = [sys.executable, "-m", "hti_bench", "run", "--no-progress", *args.run_args.split()]
    case = f"hti-bench run {args.run_args}" if args.run_args else "default suite"
    rows = []

    def run_once(label: str, results: Path, jobs: str, extra: tuple[str, ...] = ()) -> tuple[float, int]:
        wall, peak, code = measure([*exe, "--results", str(results), "--jobs", str(jobs), *extra], env)
        print(f"{label:<8} --jobs {jobs}: {wall:7.1f} s, peak RSS {peak / 2**30:.2f} GiB, exit {code}", flush=True)
        if code:
            raise SystemExit(f"hti-bench run failed ({label}); nothing recorded")
        return wall, peak

    try:
        peaks = []
        if not args.skip_cold:
            if cache.exists() and any(cache.iterdir()):
                raise SystemExit(f"{cache} is not empty: a cold run needs an empty cache (or pass --skip-cold)")
            wall, peak = run_once("cold", scratch / "cold", args.jobs)
            peaks.append(peak)
            rows.append(
                perf.at_most("end_to_end", f"{case}, --jobs {args.jobs}", "cold_seconds", wall, "s", GOALS["cold"])
            )
        warm = []
        for i in range(args.warm_repeats):
            wall, peak = run_once("warm", scratch / f"warm{i}", args.jobs)
            warm.append(wall)
            peaks.append(peak)
        if warm:  # --warm-repeats 0: only the comparisons asked for
            med = statistics.median(warm)
            rows.append(
                perf.at_most(
                    "end_to_end",
                    f"{case}, --jobs {args.jobs}",
                    "warm_seconds",
                    med,
                    "s",
                    GOALS["warm"],
                    repeats=len(warm),
                )
            )
            wall, _ = run_once("stored", scratch / "warm0", args.jobs)
            rows.append(perf.row("end_to_end", f"{case}, --jobs {args.jobs}", "stored_seconds", wall, "s"))
        if peaks:
            rows.append(
                perf.at_most(
                    "end_to_end",
                    f"{case}, --jobs {args.jobs}",
                    "peak_rss_gib",
                    max(peaks) / 2**30,
                    "GiB",
                    RSS_GOAL_GIB,
                    repeats=len(peaks),
                )
            )
        if args.compare_jobs is not None:
            wall, peak = run_once("warm", scratch / "compare", args.compare_jobs)
            rows.append(
                perf.at_most(
                    "end_to_end", f"{case}, --jobs {args.compare_jobs}", "warm_seconds", wall, "s", GOALS["warm"]
                )
            )
            rows.append(
                perf.row("end_to_end", f"{case}, --jobs {args.compare_jobs}", "peak_rss_gib", peak / 2**30, "GiB")
            )
            print(f"warm --jobs {args.compare_jobs} / --jobs {args.jobs}: {wall / med:.2f}×")
        if args.compare_unsealed:
            rows += _sealing_cost(run_once, scratch, args.jobs, args.compare_unsealed, case)
    finally:
        perf.record(rows, args.csv)
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"rows written to {args.csv}")
    return 0


#: What two runs of the same units share whatever the sealing: every column but times, dates and the flag.
_VOLATILE = {"fit_seconds", "sample_seconds", "closed_loop_seconds", "run_date", "git_rev", "sealed", "wandb_run_id"}


def _sealing_cost(run_once: Any, scratch: Path, jobs: str, pairs: int, case: str) -> list[dict[str, Any]]:
    """Warm runs sealed and unsealed, alternating; their medians, ratio, and whether the scores agree."""
    import pandas as pd

    times: dict[str, list[float]] = {"sealed": [], "unsealed": []}
    tables: dict[str, pd.DataFrame] = {}
    order = [m for i in range(pairs) for m in (("sealed", "unsealed") if i % 2 == 0 else ("unsealed", "sealed"))]
    for i, mode in enumerate(order):
        folder = scratch / f"{mode}{i}"
        wall, _ = run_once(mode, folder, jobs, ("--unsealed",) if mode == "unsealed" else ())
        times[mode].append(wall)
        table = pd.read_csv(folder / "results.csv")
        keep = sorted(c for c in table.columns if c not in _VOLATILE)
        tables.setdefault(mode, table[keep].sort_values(["task", "surrogate", "seed", "lambda_heldout"]))
        assert table["sealed"].astype(str).str.lower().eq("true" if mode == "sealed" else "false").all()
    sealed, unsealed = statistics.median(times["sealed"]), statistics.median(times["unsealed"])
    same = tables["sealed"].reset_index(drop=True).equals(tables["unsealed"].reset_index(drop=True))
    print(f"sealed / unsealed: {sealed:.1f} s / {unsealed:.1f} s = {sealed / unsealed:.3f}; same scores: {same}")
    where = f"{case}, --jobs {jobs}"
    return [
        perf.row("end_to_end", f"{where}, sealed", "warm_seconds", sealed, "s", repeats=pairs),
        perf.row("end_to_end", f"{where}, --unsealed", "warm_seconds", unsealed, "s", repeats=pairs),
        perf.at_most("end_to_end", where, "sealed_over_unsealed", sealed / unsealed, "×", 1.10, repeats=pairs),
        perf.row("end_to_end", where, "sealed_rows_equal_unsealed", float(same), "bool"),
    ]


if __name__ == "__main__":
    sys.exit(main())
