"""Start-up time of the command line, in fresh processes, median over repeats (a benchmark, not a test).

    PYTHONPATH=. .venv/bin/python perf/startup.py --repeats 7 [--csv results/perf.csv]

Times, as ``python -m hti_bench …`` subprocesses of this interpreter running this checkout:
``hti-bench --help``; ``hti-bench list`` cold (the listing catalog removed before each run, so every
plugin and task is imported) and warm (printed from the catalog); ``python -c "import hti_bench"``;
and ``python -c "import torch"`` for reference. Also the cost of the catalog's fingerprint, in this
process. The runs are interleaved (one of each case per round) so that drift in the machine's load
hits every case alike. The catalog goes to a temporary cache folder, never the user's.
Writes the medians as rows of the perf table (``perf/perftools.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import perftools as perf  # noqa: E402

GOAL_S = 2.0


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return seconds, proc.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7, help="Runs of each case (the median is kept; at least 5).")
    p.add_argument("--csv", default=str(perf.PERF_CSV), metavar="PATH", help="Perf table to merge the rows into.")
    args = p.parse_args()
    repeats = max(args.repeats, 5)

    py = sys.executable
    hti = [py, "-m", "hti_bench"]
    cases = {  # name: (command, remove the catalog first?)
        "hti-bench --help": (hti + ["--help"], False),
        "hti-bench list (cold: no catalog)": (hti + ["list"], True),
        "hti-bench list (warm: catalog)": (hti + ["list"], False),
        'python -c "import hti_bench"': ([py, "-c", "import hti_bench"], False),
        'python -c "import torch" (reference)': ([py, "-c", "import torch"], False),
    }
    goals = {"hti-bench --help", "hti-bench list (cold: no catalog)", "hti-bench list (warm: catalog)"}

    with tempfile.TemporaryDirectory(prefix="hti-bench-startup-") as tmp:
        env = dict(os.environ)
        env["HTI_BENCH_CACHE"] = tmp
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        catalog_dir = Path(tmp) / "catalog"

        _, reference = run_once(hti + ["list", "--refresh"], env)  # also warms the OS file cache
        times: dict[str, list[float]] = {name: [] for name in cases}
        for r in range(repeats):
            for name, (cmd, cold) in cases.items():
                if cold:
                    shutil.rmtree(catalog_dir, ignore_errors=True)
                elif name.startswith("hti-bench list") and not any(catalog_dir.glob("*.json")):
                    run_once(cmd, env)  # a warm run needs the catalog in place
                seconds, out = run_once(cmd, env)
                if name.startswith("hti-bench list") and out != reference:
                    raise SystemExit(f"{name}: the listing differs from a fresh one; the catalog is wrong")
                times[name].append(seconds)
            print(f"round {r + 1}/{repeats}: " + ", ".join(f"{times[n][-1]:.2f}" for n in cases), flush=True)

        os.environ["HTI_BENCH_CACHE"] = tmp  # the fingerprint, in this process (registry already imported)
        from hti_bench.harness import catalog

        catalog.fingerprint()
        fp_median, _, _ = perf.timed(catalog.fingerprint, repeats=max(repeats, 20))

    rows = []
    for name, values in times.items():
        med = statistics.median(values)
        goal = f"< {GOAL_S:g} s" if name in goals else ""
        rows.append(
            perf.row(
                "startup",
                name,
                "wall time",
                med,
                "s",
                goal=goal,
                meets_goal=(med < GOAL_S) if goal else None,
                repeats=len(values),
            )
        )
        print(f"{name:<40} median {med:6.3f} s   ({', '.join(f'{v:.2f}' for v in values)})")
    rows.append(
        perf.row("startup", "catalog fingerprint (in process)", "time", fp_median * 1e3, "ms", repeats=max(repeats, 20))
    )
    print(f"{'catalog fingerprint (in process)':<40} median {fp_median * 1e3:6.2f} ms")
    print(f"rows merged into {perf.record(rows, args.csv)}")


if __name__ == "__main__":
    main()
