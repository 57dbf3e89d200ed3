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
    args = p.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="hti-e2e-"))
    cache = Path(args.cache) if args.cache else scratch / "cache"
    env = {**os.environ, "WANDB_MODE": "disabled", "HTI_BENCH_CACHE": str(cache)}
    exe = [sys.executable, "-m", "hti_bench", "run", "--no-progress", *args.run_args.split()]
    case = f"hti-bench run {args.run_args}" if args.run_args else "default suite"
    rows = []

    def run_once(label: str, results: Path, jobs: str) -> tuple[float, int]:
        wall, peak, code = measure([*exe, "--results", str(results), "--jobs", str(jobs)], env)
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
        med = statistics.median(warm)
        rows.append(
            perf.at_most(
                "end_to_end", f"{case}, --jobs {args.jobs}", "warm_seconds", med, "s", GOALS["warm"], repeats=len(warm)
            )
        )
        wall, _ = run_once("stored", scratch / "warm0", args.jobs)
        rows.append(perf.row("end_to_end", f"{case}, --jobs {args.jobs}", "stored_seconds", wall, "s"))
        peak_gib = max(peaks) / 2**30
        rows.append(
            perf.at_most(
                "end_to_end",
                f"{case}, --jobs {args.jobs}",
                "peak_rss_gib",
                peak_gib,
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
    finally:
        perf.record(rows, args.csv)
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"rows written to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
