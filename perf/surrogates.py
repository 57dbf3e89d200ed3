"""Query vs retrain, and fit cost, of every surrogate on every task (a benchmark, not a test).

    .venv/bin/python perf/surrogates.py                 # every task but tensor, every surrogate
    .venv/bin/python perf/surrogates.py -t quantile -s mccann -s cfm --query-repeats 5

HTI exists to avoid retraining, so the figure that matters is the ratio between
- *retrain*: training the task's network at a new λ (the middle held-out value) from scratch with the
  harness's own Lightning training, median over ``--train-repeats`` model seeds, after one untimed
  training (so one-off imports do not count); and
- *query*: one ``surrogate.sample(λ, conditions, n)`` call producing the task's full evaluation set
  (every evaluation condition × ``n_samples``) at that λ, median over ``--query-repeats`` calls,
both measured in this process. Goal: ≥ 1000× for every outputs-only surrogate on every trained task.
Surrogates that run the task's network to answer (best response, weight interpolation: a non-empty
``requires``) get the ratio too, without a goal: their query is the task's own sampler. Analytic tasks
(semicircles, gaussian-path) have no network to retrain: only their query and fit times are reported.

*Fit cost*: one fit per (task, surrogate) at the default budget, seed 0, on this process's torch
threads (all cores). Anchor networks come from the target cache (trained first if missing, untimed).
Surrogates with a stated fit budget get it as the row's goal: seconds (``FIT_GOALS``) or a multiple of
the retrain time (``FIT_RETRAIN_MULTIPLES``, for a loss-trained method whose budget is one anchor
network's training).

Rows go to ``results/perf.csv`` (``--csv``) after each task, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import perftools as perf
import torch

from hti_bench.harness.registry import make_surrogate, make_task, surrogate_classes, task_classes
from hti_bench.harness.targets import TargetCache, train_network
from hti_bench.harness.unit import build_anchor_set, derive_seed
from hti_bench.task import TrainedTask
from hti_bench.view import TaskView

GOAL = 1000.0
#: Fit budgets per unit at default settings, in seconds.
FIT_GOALS = {"transport-spline": 2.0, "weight-interpolation": 2.0, "mfm": 60.0}
#: Fit budgets as a multiple of retraining one network (one anchor network's training).
FIT_RETRAIN_MULTIPLES = {"loss-conditional": 3.0}


def fit_goal(name: str, train_s: float) -> tuple[str, float | None]:
    """(goal text, budget in seconds) of a surrogate's fit, or ("", None) without one."""
    if name in FIT_GOALS:
        return f"≤ {FIT_GOALS[name]:g} s", FIT_GOALS[name]
    if name in FIT_RETRAIN_MULTIPLES and not math.isnan(train_s):
        k = FIT_RETRAIN_MULTIPLES[name]
        return f"≤ {k:g} × retrain ({k * train_s:.1f} s)", k * train_s
    return "", None


def retrain_seconds(task: TrainedTask, lam: float, repeats: int) -> float:
    # Untimed first fit: the first Lightning fit in a process pays one-off imports and set-up
    # (≈ 20 s, perf/training.py), which would flatter every ratio.
    train_network(task, lam, 999)
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        train_network(task, lam, 1000 + seed)  # seeds the cache never uses: a genuine retrain
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-t", "--task", action="append", help="Task spec (repeatable; default: every task but tensor).")
    p.add_argument("-s", "--surrogate", action="append", help="Surrogate spec (repeatable; default: all).")
    p.add_argument("--train-repeats", type=int, default=3)
    p.add_argument("--query-repeats", type=int, default=5)
    p.add_argument("--csv", default=str(perf.PERF_CSV))
    args = p.parse_args(argv)

    tasks = args.task or [name for name in task_classes() if name != "tensor"]
    specs = args.surrogate or list(surrogate_classes())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {perf.machine()}", flush=True)
    for task_spec in tasks:
        task = make_task(task_spec, cache=TargetCache())
        rows = []
        lam = task.heldout[len(task.heldout) // 2]
        conds = task.eval_conditions().float()
        anchors = build_anchor_set(task, 0)  # trains missing anchor networks into the cache first
        train_s = math.nan
        if isinstance(task, TrainedTask):
            train_s = retrain_seconds(task, lam, args.train_repeats)
            rows.append(
                perf.row("query_vs_retrain", task.spec, "retrain_seconds", train_s, "s", repeats=args.train_repeats)
            )
            print(f"{task.spec}: retrain at {task.hyperparameters.describe(lam)}: {train_s:.2f} s", flush=True)
        for spec in specs:
            surrogate = make_surrogate(spec)
            view = TaskView(task, surrogate.requires)
            if surrogate.skip(view):
                continue
            case = f"{task.spec}/{surrogate.spec}"
            start = time.perf_counter()
            surrogate.fit(anchors, view, seed=0)
            fit_s = time.perf_counter() - start
            seed = derive_seed(task.spec, 0, "sample", lam)
            query_s, _, out = perf.timed(lambda: surrogate.sample(lam, conds, task.n_samples, seed), args.query_repeats)
            ok = tuple(torch.as_tensor(out).shape) == (conds.shape[0], task.n_samples, task.output_dim)
            goal, budget = fit_goal(surrogate.name, train_s)
            rows.append(
                perf.row(
                    "fit_cost",
                    case,
                    "fit_seconds",
                    fit_s,
                    "s",
                    goal=goal,
                    meets_goal=None if budget is None else fit_s <= budget,
                )
            )
            rows.append(perf.row("query_vs_retrain", case, "query_seconds", query_s, "s", repeats=args.query_repeats))
            line = (
                f"  {surrogate.spec:<40} fit {fit_s:8.2f} s"
                + (f" ({goal})" if goal else "")
                + f"   query {query_s * 1e3:9.2f} ms"
            )
            if not math.isnan(train_s):
                ratio = train_s / query_s
                # The goal is for surrogates that answer from anchor outputs; those that run the task's
                # network (best response, weight interpolation) pay its sampler on every query.
                outputs_only = not surrogate.requires
                rows.append(
                    perf.row(
                        "query_vs_retrain",
                        case,
                        "speedup",
                        ratio,
                        "×",
                        goal=f"≥ {GOAL:.0f}×" if outputs_only else "",
                        meets_goal=(ratio >= GOAL) if outputs_only else None,
                    )
                )
                line += f"   retrain/query {ratio:10.0f}×" + ("" if outputs_only else " (runs the network)")
            print(line + ("" if ok else "   (WRONG SHAPE)"), flush=True)
        perf.record(rows, args.csv)
    print(f"rows written to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
