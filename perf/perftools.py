"""Shared plumbing of the performance benchmarks (``perf/*.py``): timing, the perf table.

Every benchmark writes its figures as rows of ``results/perf.csv`` through :func:`record`. A row is
one measured quantity of one case; re-measuring a (benchmark, case, quantity) replaces its row, so the
file always holds the latest figure of each, with the machine, torch version, thread count and date it
was measured on. ``perf/report.py`` renders the file into docs/evidence/performance.md's tables.

Timings are medians over repeats (:func:`timed`); ratios are formed from numbers measured in the same
process, never across runs, because these machines are noisy.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PERF_CSV = Path("results") / "perf.csv"

COLUMNS = [
    "benchmark",
    "case",
    "quantity",
    "value",
    "unit",
    "goal",
    "meets_goal",
    "repeats",
    "threads",
    "torch",
    "machine",
    "date",
    "git_rev",
    "command",
]
KEY = ["benchmark", "case", "quantity"]


def machine() -> str:
    """``host (N cores, CPU model)``: enough to tell two machines' numbers apart."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.node()} ({cores} cores, {cpu})"


def timed(fn: Callable[[], Any], repeats: int = 3, warmup: int = 0) -> tuple[float, list[float], Any]:
    """Run ``fn`` ``warmup`` times untimed then ``repeats`` times; (median seconds, all times, last result)."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(max(int(repeats), 1)):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


def fitted_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """Slope of log(seconds) against log(size) by least squares: time ∝ size^exponent."""
    pts = [(math.log(s), math.log(t)) for s, t in zip(sizes, seconds) if s > 0 and t > 0]
    if len(pts) < 2:
        return math.nan
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else math.nan


def row(
    benchmark: str,
    case: str,
    quantity: str,
    value: float,
    unit: str,
    *,
    goal: str = "",
    meets_goal: bool | None = None,
    repeats: int = 1,
) -> dict[str, Any]:
    """One perf row, stamped with this process's machine, torch version, threads, date and command.

    ``goal`` is the target as text (``"≤ 2 s"``, ``"≥ 1000×"``); ``meets_goal`` says whether ``value``
    reaches it (None where there is no goal).
    """
    import torch

    from hti_bench.harness.provenance import provenance

    return {
        "benchmark": benchmark,
        "case": case,
        "quantity": quantity,
        "value": float(value),
        "unit": unit,
        "goal": goal,
        "meets_goal": "" if meets_goal is None else bool(meets_goal),
        "repeats": int(repeats),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_rev": provenance().get("git_rev", ""),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]) if sys.argv and sys.argv[0] else "",
    }


def at_most(
    benchmark: str, case: str, quantity: str, value: float, unit: str, limit: float, *, repeats: int = 1
) -> dict[str, Any]:
    """A :func:`row` whose goal is an upper bound, ``≤ limit unit``, met when ``value`` is within it."""
    return row(
        benchmark, case, quantity, value, unit, goal=f"≤ {limit:g} {unit}", meets_goal=value <= limit, repeats=repeats
    )


def record(rows: Iterable[dict[str, Any]], path: str | Path = PERF_CSV) -> Path:
    """Merge ``rows`` into the perf table at ``path``: same (benchmark, case, quantity) → replaced.

    Written atomically (temporary file + rename), so an interrupted benchmark never leaves a torn
    table. A file that is not a perf table is refused with its name rather than overwritten.
    """
    import pandas as pd

    from hti_bench.errors import ResultsError
    from hti_bench.harness.fsutil import atomic_write_bytes

    path = Path(path)
    new = pd.DataFrame(list(rows), columns=COLUMNS)
    if path.exists():
        try:
            old = pd.read_csv(path, dtype={"meets_goal": object, "goal": object}, keep_default_na=False)
        except Exception as err:  # noqa: BLE001 - any parse failure means the same thing here
            raise ResultsError(f"{path}: not a readable perf table ({err})") from err
        missing = [c for c in KEY + ["value"] if c not in old.columns]
        if missing:
            raise ResultsError(
                f"{path}: not a perf table (missing columns {missing}); move it away or pass another path"
            )
        new_keys = set(map(tuple, new[KEY].astype(str).values.tolist()))
        keep = [tuple(k) not in new_keys for k in old[KEY].astype(str).values.tolist()]
        new = pd.concat([old[keep], new], ignore_index=True)
    new = new.reindex(columns=COLUMNS)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, new.to_csv(index=False).encode())
    return path
