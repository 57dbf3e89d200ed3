"""``hti-bench``: a thin command line over :mod:`hti_bench.runner` and :mod:`hti_bench.registry`.

Heavy imports (torch, Lightning, POT) happen inside the subcommands, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hti-bench",
        description="Benchmark surrogates for Hyperparameter Trajectory Inference.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ls = sub.add_parser("list", help="List tasks and surrogates (and plugins that failed to load).")
    ls.add_argument("what", nargs="?", choices=["all", "tasks", "surrogates"], default="all")

    run = sub.add_parser(
        "run",
        help="Run surrogates on tasks and write the results and leaderboard.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="With no arguments: every discovered surrogate on the default tasks, seeds 0 1 2, on CPU.",
    )
    run.add_argument("-t", "--task", action="append", metavar="TASK", help="Task, e.g. 'moons-dropout[epochs=250]' (repeatable; default: the default suite).")
    run.add_argument("-s", "--surrogate", action="append", metavar="SURROGATE", help="Surrogate, e.g. 'mccann' (repeatable; default: all).")
    run.add_argument("--seeds", type=int, nargs="+", metavar="SEED", default=[0, 1, 2], help="Run seeds.")
    run.add_argument("--results", default="results", metavar="DIR", help="Results folder.")
    run.add_argument("--cache", default=None, metavar="DIR", help="Target-network cache (default $HTI_BENCH_CACHE or ~/.cache/hti-bench).")
    run.add_argument("--force", action="store_true", help="Re-run units already in the results store (rows are replaced, not duplicated).")
    run.add_argument("--wandb", default=os.environ.get("HTI_BENCH_WANDB", "disabled"), choices=["disabled", "offline", "online"], help="Log each unit to wandb.")
    run.add_argument("--no-progress", action="store_true", help="No progress bars.")

    lb = sub.add_parser("leaderboard", help="Rebuild results.csv and leaderboard.csv from the stored runs and print it.")
    lb.add_argument("--results", default="results", metavar="DIR", help="Results folder.")
    lb.add_argument("-t", "--task", default=None, metavar="TASK", help="Only this task.")
    lb.add_argument("--by-lambda", action="store_true", help="Also print W₂ at each held-out λ (mean over seeds).")

    pl = sub.add_parser(
        "plot",
        help="Draw the figures of a results folder (W₂ vs λ, leaderboard, cost vs accuracy, sample clouds).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Writes PNGs and prints their paths. Exit code 2 when there is nothing to plot.",
    )
    pl.add_argument("--results", default="results", metavar="DIR", help="Results folder.")
    pl.add_argument("--out", default=None, metavar="DIR", help="Where the figures go (default: <results>/figures).")
    pl.add_argument("-t", "--task", action="append", metavar="TASK", help="Only this task (repeatable; default: all).")

    ck = sub.add_parser("check", help="Run the surrogate contract checks on one surrogate.")
    ck.add_argument("surrogate", metavar="SURROGATE")
    return p


def _cmd_list(what: str) -> int:
    from hti_bench import errors, registry

    if what in ("all", "tasks"):
        print("Tasks (* = in the default suite):")
        for name, cls in registry.task_classes().items():
            star = "*" if cls.in_default_suite else " "
            caps = ",".join(sorted(cls.capabilities)) or "outputs only"
            print(f" {star} {name:<16} {cls.description}")
            try:
                task = cls()
            except errors.HTIBenchError as err:  # a task that needs options, e.g. tensor[path=…]
                print(f"     needs options: {err}")
                continue
            hp = task.hyperparameter
            print(
                f"     {hp.name} ∈ [{hp.low}, {hp.high}] ({hp.clock.value} clock); anchors {list(task.anchors)}; "
                f"held out {list(task.heldout)}; D={task.output_dim}, C={task.condition_dim}; offers: {caps}"
            )
    if what in ("all", "surrogates"):
        print("Surrogates:")
        for name, cls in registry.surrogate_classes().items():
            needs = f" [needs: {', '.join(sorted(cls.requires))}]" if cls.requires else ""
            print(f"   {name:<16} {cls.description}{needs}")
            print(f"     from {registry.surrogate_source(name)}")
        broken = registry.broken_plugins()
        if broken:
            print("Broken plugins (not loaded):")
            for b in broken:
                print(f"   {b.name:<16} {b.source}: {b.error}")
    return 0


def _print_board(board, task: str | None = None) -> None:  # noqa: ANN001
    import pandas as pd

    if task is not None:
        board = board[board["task"] == task]
    if board.empty:
        print("(no results yet: run `hti-bench run`)")
        return
    cols = ["rank", "surrogate", "w2_mean", "w2_ci95", "w2sq_mean", "w1_mean", "floor_w2_mean", "seed_floor_w2_mean", "n_seeds", "fit_seconds", "status"]
    cols += [c for c in board.columns if c.startswith("metric_") and c.endswith("_mean")]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60):
        for name, group in board.groupby("task", sort=False):
            group = group.copy()
            uses_loss = group.get("uses_training_loss", pd.Series(False, index=group.index)).astype(bool)
            group.loc[uses_loss, "surrogate"] = group.loc[uses_loss, "surrogate"] + " *"
            print(f"\n== {name} ==")
            print(group[[c for c in cols if c in group.columns]].dropna(axis=1, how="all").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            if uses_loss.any():
                cost = pd.to_numeric(group.get("anchor_train_seconds"), errors="coerce").max()
                anchors = f"; the anchor networks took {cost:.1f} s to train" if cost == cost else ""
                print(f"* trains on the task's own loss (best response), not on anchor outputs{anchors}")
        if task is None and board["task"].nunique() > 1 and "mean_rank" in board.columns:
            ranks = board.drop_duplicates("surrogate").dropna(subset=["mean_rank"])
            ranks = ranks.sort_values(["mean_rank", "surrogate"])[["surrogate", "mean_rank", "n_tasks_ranked"]]
            print("\n== mean rank over the tasks each surrogate is ranked on (skipped tasks do not count) ==")
            print(ranks.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


def _cmd_run(args: argparse.Namespace) -> int:
    from hti_bench.registry import broken_plugins
    from hti_bench.runner import run
    from hti_bench.tracking import wandb_tracker

    for b in broken_plugins():
        print(f"hti-bench: warning: plugin '{b.name}' not loaded ({b.source}): {b.error}", file=sys.stderr)

    summary = run(
        tasks=args.task,
        surrogates=args.surrogate,
        seeds=args.seeds,
        results_dir=args.results,
        cache_dir=args.cache,
        force=args.force,
        progress=not args.no_progress,
        tracker=wandb_tracker(args.wandb),
    )
    _print_board(summary.leaderboard)
    print(
        f"\n{summary.units_run} runs done, {summary.units_cached} already stored; "
        f"{summary.rows_failed} failed and {summary.rows_skipped} skipped rows; targets trained "
        f"{summary.targets_trained}, loaded {summary.targets_loaded}; {summary.seconds:.1f} s. "
        f"Leaderboard: {os.path.join(args.results, 'leaderboard.csv')}; figures: hti-bench plot --results {args.results}"
    )
    for line in summary.failures[:10]:
        print(f"  failed: {line}")
    return 0


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from hti_bench.results import ResultsStore

    results, board = ResultsStore(args.results).write_tables()
    _print_board(board, args.task)
    if args.by_lambda:
        import pandas as pd

        from hti_bench.results import by_lambda

        table = by_lambda(results)
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            for name, group in table.groupby(level="task", sort=False):
                if args.task is None or name == args.task:
                    print(f"\n== {name}: W₂ at each held-out λ ==")
                    print(group.droplevel("task").dropna(axis=1, how="all").to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from hti_bench.plots import plot_results

    paths = plot_results(args.results, args.out, args.task)
    for path in paths:
        print(path)
    if not paths:
        print("(no figure: no task has an ok result to draw)", file=sys.stderr)
    return 0


def _cmd_check(name: str) -> int:
    from hti_bench.registry import make_surrogate
    from hti_bench.testing import check_surrogate

    surrogate = make_surrogate(name)
    failures = check_surrogate(type(surrogate), verbose=True)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from hti_bench.errors import HTIBenchError

    try:
        if args.command == "list":
            return _cmd_list(args.what)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "leaderboard":
            return _cmd_leaderboard(args)
        if args.command == "plot":
            return _cmd_plot(args)
        if args.command == "check":
            return _cmd_check(args.surrogate)
    except HTIBenchError as err:
        print(f"hti-bench: error: {err}", file=sys.stderr)
        return 2
    return 2
