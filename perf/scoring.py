"""Per-condition Wasserstein scoring: throughput and scaling (a benchmark, not a test).

    PYTHONPATH=. .venv/bin/python perf/scoring.py             # full run, ~10 min on 2 cores
    PYTHONPATH=. .venv/bin/python perf/scoring.py --quick     # smoke test, seconds
    PYTHONPATH=. .venv/bin/python perf/scoring.py --csv /tmp/perf.csv --repeats 5

Writes rows (benchmark ``scoring``) to results/perf.csv through ``perf/perftools.py``:

- throughput, 1,000 conditions × 256 samples (both sides), D = 2 and D = 64: the pre-change
  per-condition loop (two ``ot.emd2`` per condition, kept below as ``old_loop``), the new exact
  path (``per_condition_wasserstein``, automatic workers, and on one worker), their ratio and
  largest relative difference, the old loop's cost split per condition (cost matrix, emd2 for W₂,
  emd2 for W₁), and the approximate batched Sinkhorn on CPU (timed on fewer conditions, its time
  extrapolated linearly, with its largest relative error against the exact values). D = 1: the
  batched sort, exact only in one dimension.
- the whole metric panel (``score_panel``: W₁, W₂, energy distance, MMD, and sliced W₂ above
  D = 8) on the same 1,000 × 256 clouds, D = 2 (goal ≤ 3 s) and D = 64, with the share of the kernel
  metrics alone. ``--panel`` runs only these rows.
- scaling of the exact path on one worker: seconds per condition against samples per condition N
  (D = 2) and against the output dimension D (N = 256), one row per point and the fitted exponent.

Data: per condition, two Gaussian clouds with random means and scales (the reference a little
wider and shifted), so W₁ and W₂ are neither zero nor dominated by one condition. Timings are
medians over ``--repeats`` (the slow old loop and Sinkhorn use fewer; the row says how many).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import perftools as perf  # noqa: E402

from hti_bench.scoring import NUM_ITER_MAX, per_condition_wasserstein, resolve_workers, score_panel  # noqa: E402

BENCH = "scoring"
GOAL_SECONDS = 2.0
PANEL_GOAL_SECONDS = 3.0


def clouds(conditions: int, n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(samples, reference), each (conditions, n, dim)."""
    r = np.random.default_rng(seed)
    mean = r.normal(0.0, 1.0, (conditions, 1, dim))
    scale = r.uniform(0.5, 1.5, (conditions, 1, 1))
    x = mean + scale * r.standard_normal((conditions, n, dim))
    y = mean + 0.2 + 1.1 * scale * r.standard_normal((conditions, n, dim))
    return x, y


def old_loop(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The implementation before this change, verbatim: (W₁, W₂) per condition, one loop."""
    import ot

    m = x.shape[0]
    w1, w2 = np.empty(m), np.empty(m)
    for i in range(m):
        sq = ot.dist(x[i], y[i], metric="sqeuclidean")
        w2[i] = np.sqrt(max(float(ot.emd2([], [], sq, numItermax=NUM_ITER_MAX)), 0.0))
        w1[i] = max(float(ot.emd2([], [], np.sqrt(sq), numItermax=NUM_ITER_MAX)), 0.0)
    return w1, w2


def old_split(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Median milliseconds per condition of the old loop's three steps."""
    import time

    import ot

    times: dict[str, list[float]] = {"cost_matrix": [], "emd2_w2": [], "emd2_w1": []}
    for i in range(x.shape[0]):
        t0 = time.perf_counter()
        sq = ot.dist(x[i], y[i], metric="sqeuclidean")
        t1 = time.perf_counter()
        ot.emd2([], [], sq, numItermax=NUM_ITER_MAX)
        t2 = time.perf_counter()
        ot.emd2([], [], np.sqrt(sq), numItermax=NUM_ITER_MAX)
        t3 = time.perf_counter()
        times["cost_matrix"].append(t1 - t0)
        times["emd2_w2"].append(t2 - t1)
        times["emd2_w1"].append(t3 - t2)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def throughput(
    conditions: int, n: int, dim: int, repeats: int, old_repeats: int, sinkhorn_conditions: int, split_conditions: int
) -> list[dict]:
    case = f"{conditions}x{n} D={dim}"
    x, y = clouds(conditions, n, dim, seed=dim)
    rows = []
    say = print
    if dim == 1:
        sec, _, _ = perf.timed(lambda: per_condition_wasserstein(x, y, method="sort"), repeats, warmup=1)
        say(f"{case}: sort {sec:.4f} s")
        return [perf.row(BENCH, case, "sort_seconds_w1_w2", sec, "s", repeats=repeats)]

    workers = resolve_workers(conditions, n, n)
    # interleaved in one process: old loop, new exact (auto workers), new exact on one worker
    old_sec, _, (o1, o2) = perf.timed(lambda: old_loop(x, y), old_repeats)
    say(f"{case}: old loop {old_sec:.2f} s ({old_repeats} repeats)", flush=True)
    new_sec, _, new = perf.timed(lambda: per_condition_wasserstein(x, y), repeats, warmup=1)
    say(f"{case}: exact {new_sec:.3f} s on {workers} worker(s)", flush=True)
    one_sec, _, one = perf.timed(lambda: per_condition_wasserstein(x, y, workers=1), repeats)
    say(f"{case}: exact, one worker {one_sec:.3f} s", flush=True)
    diff = max(max_rel(new.w1, o1), max_rel(new.w2, o2), max_rel(one.w1, o1), max_rel(one.w2, o2))
    goal = dict(goal=f"≤ {GOAL_SECONDS:g} s", meets_goal=new_sec <= GOAL_SECONDS) if dim == 2 else {}
    rows += [
        perf.row(BENCH, case, "old_loop_seconds_w1_w2", old_sec, "s", repeats=old_repeats),
        perf.row(BENCH, case, "exact_seconds_w1_w2", new_sec, "s", repeats=repeats, **goal),
        perf.row(BENCH, case, "exact_workers", workers, "processes"),
        perf.row(BENCH, case, "exact_one_worker_seconds_w1_w2", one_sec, "s", repeats=repeats),
        perf.row(BENCH, case, "speedup_exact_vs_old", old_sec / new_sec, "x"),
        perf.row(BENCH, case, "speedup_exact_one_worker_vs_old", old_sec / one_sec, "x"),
        perf.row(BENCH, case, "exact_max_rel_diff_vs_old", diff, "relative"),
    ]
    split = old_split(x[:split_conditions], y[:split_conditions])
    say(f"{case}: old loop per condition " + ", ".join(f"{k} {v:.2f} ms" for k, v in split.items()), flush=True)
    rows += [
        perf.row(BENCH, case, f"old_ms_per_condition_{k}", v, "ms", repeats=split_conditions) for k, v in split.items()
    ]

    # Sinkhorn on CPU: slow there, so timed on the first conditions and extrapolated linearly
    k = min(sinkhorn_conditions, conditions)
    sk_reps = 1
    sk_sec, _, sk = perf.timed(lambda: per_condition_wasserstein(x[:k], y[:k], method="sinkhorn"), sk_reps)
    err1, err2 = max_rel(sk.w1, o1[:k]), max_rel(sk.w2, o2[:k])
    bias2 = float(np.mean((sk.w2 - o2[:k]) / o2[:k]))
    say(f"{case}: sinkhorn {sk_sec:.2f} s for {k} conditions; max rel error W1 {err1:.3g}, W2 {err2:.3g}", flush=True)
    rows += [
        perf.row(BENCH, case, "sinkhorn_cpu_conditions_timed", k, "conditions"),
        perf.row(BENCH, case, "sinkhorn_cpu_seconds_w1_w2_timed", sk_sec, "s", repeats=sk_reps),
        perf.row(BENCH, case, "sinkhorn_cpu_seconds_w1_w2_extrapolated", sk_sec * conditions / k, "s", repeats=sk_reps),
        perf.row(BENCH, case, "sinkhorn_max_rel_error_w1", err1, "relative"),
        perf.row(BENCH, case, "sinkhorn_max_rel_error_w2", err2, "relative"),
        perf.row(BENCH, case, "sinkhorn_mean_rel_error_w2", bias2, "relative"),
    ]
    return rows


def panel(conditions: int, n: int, dims: tuple[int, ...], repeats: int) -> list[dict]:
    """The whole metric panel, and its kernel part alone, per sample set pair."""
    from hti_bench.scoring import _kernel_metrics

    rows = []
    for dim in dims:
        case = f"{conditions}x{n} D={dim}"
        x, y = clouds(conditions, n, dim, seed=dim)
        sec, _, _ = perf.timed(lambda: score_panel(x, y), repeats, warmup=1)
        kernel, _, _ = perf.timed(lambda: _kernel_metrics(x, y, None), repeats)
        print(f"{case}: panel {sec:.3f} s (energy + MMD {kernel:.3f} s)", flush=True)
        goal = dict(goal=f"≤ {PANEL_GOAL_SECONDS:g} s", meets_goal=sec <= PANEL_GOAL_SECONDS) if dim == 2 else {}
        rows += [
            perf.row(BENCH, case, "panel_seconds", sec, "s", repeats=repeats, **goal),
            perf.row(BENCH, case, "panel_energy_mmd_seconds", kernel, "s", repeats=repeats),
        ]
    return rows


def scaling(points: list[tuple[int, int, int]], vary: str, repeats: int) -> list[dict]:
    """points: (N, D, conditions); seconds per condition of the exact path on one worker."""
    rows, sizes, secs = [], [], []
    for n, dim, conditions in points:
        x, y = clouds(conditions, n, dim, seed=n + dim)
        reps = repeats if n * n * conditions <= 4_000_000 else 1
        sec, _, _ = perf.timed(lambda: per_condition_wasserstein(x, y, workers=1), reps)
        per = sec / conditions
        print(f"scaling N={n} D={dim}: {per:.4f} s per condition ({conditions} conditions, {reps} repeats)", flush=True)
        rows.append(perf.row(BENCH, f"scaling N={n} D={dim}", "exact_seconds_per_condition", per, "s", repeats=reps))
        sizes.append(n if vary == "N" else dim)
        secs.append(per)
    label = f"scaling vs N (D={points[0][1]})" if vary == "N" else f"scaling vs D (N={points[0][0]})"
    exponent = perf.fitted_exponent(sizes, secs)
    print(f"{label}: time ∝ {vary}^{exponent:.2f}")
    rows.append(perf.row(BENCH, label, "fitted_exponent", exponent, "exponent"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    p.add_argument("--csv", default=str(perf.PERF_CSV), help="perf table to merge the rows into")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (Sinkhorn); default: torch's")
    p.add_argument("--panel", action="store_true", help="only the metric-panel rows")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    reps = max(1, args.repeats)
    rows: list[dict] = []
    if args.quick:
        conditions, n, dims = 12, 64, (1, 2, 64)
        old_reps, sk_conditions, split_conditions = 1, 4, 4
        n_points = [(n_, 2, 2) for n_ in (50, 100, 200)]
        d_points = [(64, d, 2) for d in (2, 8, 64)]
    else:
        conditions, n, dims = 1000, 256, (1, 2, 64)
        old_reps, sk_conditions, split_conditions = 1, 10, 50
        n_points = [(250, 2, 16), (500, 2, 8), (1000, 2, 4), (2000, 2, 2), (4000, 2, 1)]
        d_points = [(256, d, 16) for d in (2, 4, 8, 16, 32, 64)]
    if not args.panel:
        for dim in dims:
            rows += throughput(conditions, n, dim, reps, old_reps, sk_conditions, split_conditions)
    rows += panel(conditions, n, (2, 64), reps)
    if not args.panel:
        rows += scaling(n_points, "N", reps)
        rows += scaling(d_points, "D", reps)
    path = perf.record(rows, args.csv)
    print(f"{len(rows)} rows → {path}")


if __name__ == "__main__":
    main()
