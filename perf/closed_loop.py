"""Cost of the closed-loop metric (a benchmark): one surrogate driving every held-out λ's episodes.

    .venv/bin/python perf/closed_loop.py                    # cancer and reacher, every surrogate
    .venv/bin/python perf/closed_loop.py -t cancer -s mccann -s cfm

Per (task, surrogate): fit on the anchors of seed 0 (untimed here; ``perf/surrogates.py`` times
fits), then the closed loop at every held-out λ exactly as the harness runs it
(:meth:`hti_bench.tasks.control.base.PolicyTask.closed_loop_metrics`, the anchor oracle answering at
new states). Rows: ``closed_loop_seconds``, all held-out λ together, goal ≤ 60 s on this machine's
cores, and ``sample_calls_per_second`` (the policy queries one closed loop makes, one per
day or step of the episodes still running). Surrogates that cannot answer at new states get no row;
the skip is printed. The anchor policies come from the target cache (trained first if missing, untimed).

``--from-results DIR`` records the same row from a finished ``hti-bench run`` instead of refitting: the
harness times every closed loop it runs (the ``closed_loop_seconds`` column); the row is the median
over the run's seeds of their sum over held-out λ.

Per task also ``cold_training_seconds``: the PPO training time of every target policy a run needs
(anchors, held-out and their seed twins), as the target cache recorded it when it trained them;
goal ≤ 30 min on 2 cores. Missing when some target is not in the cache yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import perftools as perf
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
    p.add_argument("--from-results", metavar="DIR", help="read the closed-loop times of a finished run instead")
    p.add_argument("--csv", default=str(perf.PERF_CSV))
    args = p.parse_args()
    if args.from_results:
        from_results(args.from_results, args.csv, args.task, args.cache)
        return
    names = args.surrogate or sorted(n for n in surrogate_classes() if n != "slow-shift")
    for spec in args.task or ["cancer", "reacher"]:
        task = make_task(spec, cache=TargetCache(args.cache))
        rows = training_rows(task)
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
            print(
                f"{task.spec} {name}: {seconds:.1f} s for {len(task.heldout)} held-out λ, {calls} queries "
                f"({calls / seconds:.0f}/s){'' if seconds <= GOAL_SECONDS else '  ✗ over the goal'}",
                flush=True,
            )
            rows += [
                closed_loop_row(f"{task.spec} {name}", seconds),
                perf.row(BENCH, f"{task.spec} {name}", "sample_calls_per_second", calls / seconds, "calls/s"),
            ]
        perf.record(rows, args.csv)


def training_rows(task) -> list[dict]:
    """The cold PPO training of every target a run of ``task`` needs, as its cache recorded it ([] when
    some target is not cached yet)."""
    recorded = [task.cache.train_seconds(task, lam, seed) for lam, seed in target_networks(task)]
    if not recorded or any(r != r for r in recorded):
        return []
    total = sum(recorded)
    print(f"{task.spec}: {len(recorded)} target policies, {total:.0f} s of PPO training (recorded)", flush=True)
    return [perf.at_most(BENCH, f"{task.spec} targets", "cold_training_seconds", total, "s", TRAINING_GOAL_SECONDS)]


def closed_loop_row(case: str, seconds: float, repeats: int = 1) -> dict:
    return perf.at_most(BENCH, case, "closed_loop_seconds", seconds, "s", GOAL_SECONDS, repeats=repeats)


def from_results(folder: str, csv: str, tasks: list[str] | None, cache: str | None) -> None:
    """The closed-loop rows of a finished run: per (task, surrogate), the median over seeds of the
    seconds the harness timed at every held-out λ together."""
    from hti_bench.harness.results import ResultsStore

    df = ResultsStore(folder).load()
    df = df[df["closed_loop_seconds"].notna() & df["status"].eq("ok")]
    if tasks:
        df = df[df["task"].isin(tasks)]
    per_seed = df.groupby(["task", "surrogate", "seed"])["closed_loop_seconds"].sum()
    rows = [row for spec in sorted(set(df["task"])) for row in training_rows(make_task(spec, cache=TargetCache(cache)))]
    for (task, surrogate), seconds in per_seed.groupby(level=[0, 1]):
        value = float(seconds.median())
        print(f"{task} {surrogate}: {value:.1f} s (median of {len(seconds)} seeds)", flush=True)
        rows.append(closed_loop_row(f"{task} {surrogate}", value, repeats=len(seconds)))
    perf.record(rows, csv)


if __name__ == "__main__":
    main()
