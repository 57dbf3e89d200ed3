"""Cost of the closed-loop metric (a benchmark): one surrogate driving every held-out λ's episodes.

    .venv/bin/python benchmarks/closed_loop.py                    # cancer and reacher, every surrogate
    .venv/bin/python benchmarks/closed_loop.py -t cancer -s mccann -s cfm

Per (task, surrogate): fit on the anchors of seed 0 (untimed here; ``benchmarks/surrogates.py`` times
fits), then the closed loop at every held-out λ exactly as the harness runs it
(:meth:`hti_bench.tasks.control.base.PolicyTask.closed_loop_metrics`, the anchor oracle answering at
new states). Rows: ``closed_loop_seconds``, all held-out λ together, goal ≤ 60 s on this machine's
cores (issue 19), and ``sample_calls_per_second`` (the policy queries one closed loop makes, one per
day or step of the episodes still running). Surrogates that cannot answer at new states get no row;
the skip is printed. The anchor policies come from the target cache (trained first if missing, untimed).

Per task also ``cold_training_seconds``: the PPO training time of every target policy a run needs
(anchors, held-out and their seed twins), as the target cache recorded it when it trained them;
goal ≤ 30 min on 2 cores (issue 19). Missing when some target is not in the cache yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import perf
import torch

from hti_bench.errors import OpenConditionError
from hti_bench.harness.registry import make_surrogate, make_task, surrogate_classes
from hti_bench.harness.targets import TargetCache, target_networks
from hti_bench.harness.unit import build_anchor_set, describe
from hti_bench.view import TaskView, seal

BENCH = "closed_loop"
GOAL_SECONDS = 60.0
TRAINING_GOAL_SECONDS = 1800.0


def measure(task, name: str) -> tuple[float, int] | str:
    """(seconds of the closed loop at every held-out λ, policy queries made), or why it did not run."""
    surrogate = make_surrogate(name)
    view = TaskView(task, requires=surrogate.requires)
    reason = surrogate.skip(view)
    if reason:
        return f"skipped: {reason}"
    anchors = dataclasses.replace(build_anchor_set(task, 0), oracle=view.anchor_samples)
    torch.manual_seed(0)
    try:
        surrogate.fit(anchors, view, seed=0)
    finally:
        seal(view)
    calls = 0

    def act(states, n, seed):
        nonlocal calls
        calls += 1
        return surrogate.sample(lam, states, n, seed)

    start = time.perf_counter()
    for lam in task.heldout:
        task.closed_loop_metrics(lam, act, 0)
    return time.perf_counter() - start, calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-t", "--task", action="append", help="task spec (repeatable; default cancer and reacher)")
    p.add_argument("-s", "--surrogate", action="append", help="surrogate (repeatable; default every one)")
    p.add_argument("--cache", default=None, help="target cache (default $HTI_BENCH_CACHE or ~/.cache/hti-bench)")
    p.add_argument("--csv", default=str(perf.PERF_CSV))
    args = p.parse_args()
    names = args.surrogate or sorted(n for n in surrogate_classes() if n != "slow-shift")
    for spec in args.task or ["cancer", "reacher"]:
        cache = TargetCache(args.cache)
        task = make_task(spec, cache=cache)
        rows = []
        recorded = [cache.train_seconds(task, lam, seed) for lam, seed in target_networks(task)]
        if all(r == r for r in recorded):
            total = sum(recorded)
            print(f"{task.spec}: {len(recorded)} target policies, {total:.0f} s of PPO training (recorded)", flush=True)
            rows.append(perf.row(BENCH, f"{task.spec} targets", "cold_training_seconds", total, "s",
                                 goal=f"≤ {TRAINING_GOAL_SECONDS:g} s", meets_goal=total <= TRAINING_GOAL_SECONDS))
        task.prepare(task.anchors)
        for name in names:
            try:
                out = measure(task, name)
            except OpenConditionError as err:
                out = f"cannot answer at new states: {err}"
            except Exception as err:  # a benchmark reports, it does not stop
                out = f"failed: {describe(err)}"
            if isinstance(out, str):
                print(f"{task.spec} {name}: {out}", flush=True)
                continue
            seconds, calls = out
            ok = seconds <= GOAL_SECONDS
            print(f"{task.spec} {name}: {seconds:.1f} s for {len(task.heldout)} held-out λ, {calls} queries "
                  f"({calls / seconds:.0f}/s){'' if ok else '  ✗ over the goal'}", flush=True)
            case = f"{task.spec} {name}"
            rows += [perf.row(BENCH, case, "closed_loop_seconds", seconds, "s", goal=f"≤ {GOAL_SECONDS:g} s",
                              meets_goal=ok),
                     perf.row(BENCH, case, "sample_calls_per_second", calls / seconds, "calls/s")]
        perf.record(rows, args.csv)


if __name__ == "__main__":
    main()
