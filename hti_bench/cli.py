"""``hti-bench``: a thin command line over the run machinery (:mod:`hti_bench.harness`).

Heavy imports (torch, Lightning, POT) happen inside the subcommands, so ``--help`` is instant, and
``leaderboard`` and ``plot`` never import torch at all. The same words mean the same thing in every
subcommand: ``-t`` selects tasks (repeatable), ``-j/--jobs`` is the number of worker processes,
``--seeds`` are run seeds, ``--wandb`` defaults to ``$HTI_BENCH_WANDB``, else ``disabled``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

WANDB_MODES = ("disabled", "offline", "online")
WANDB_HELP = "wandb mode of the runs (default: $HTI_BENCH_WANDB, else disabled)."
JOBS_HELP = "Worker processes ('auto': one per core; 1: in this process). Default: $HTI_BENCH_JOBS, else auto."


UNSEALED_HELP = (
    "Run surrogates in this process instead of sealed sandboxes, to debug a plugin (pdb, prints); its rows "
    "say sealed = false and the leaderboard marks them."
)
CACHE_HELP = "Target-network cache (default $HTI_BENCH_CACHE or ~/.cache/hti-bench)."


def _add_local_sweep_options(parser: argparse.ArgumentParser, search_seed_help: str) -> None:
    """The options of a sweep run by local workers: ``sweep``, and ``tune``, which runs as one."""
    parser.add_argument("--cache", default=None, metavar="DIR", help=CACHE_HELP)
    parser.add_argument("--search-seed", type=int, default=None, metavar="S", help=search_seed_help)
    parser.add_argument(
        "--threads", type=int, default=None, metavar="T", help="torch threads per worker (default: cores / workers)."
    )
    parser.add_argument("--wandb", default=None, choices=WANDB_MODES, help=WANDB_HELP)
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    parser.add_argument("--no-figures", action="store_true", help="Do not draw the figures at the end.")
    parser.add_argument("--unsealed", action="store_true", help=UNSEALED_HELP)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hti-bench",
        description="Benchmark surrogates for Hyperparameter Trajectory Inference.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ls = sub.add_parser("list", help="List tasks and surrogates (and plugins that failed to load).")
    ls.add_argument("what", nargs="?", choices=["all", "tasks", "surrogates"], default="all")
    ls.add_argument(
        "--refresh",
        action="store_true",
        help="Import every task and plugin again instead of printing the cached listing (the catalog, kept in the cache folder and renewed whenever a file or package it depends on changes).",
    )

    run = sub.add_parser(
        "run",
        help="Run surrogates on tasks and write the results and leaderboard.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="With no arguments: every discovered surrogate on the default tasks, seeds 0 1 2, on CPU.",
    )
    run.add_argument(
        "-t",
        "--task",
        action="append",
        metavar="TASK",
        help="Task, e.g. 'moons-dropout[epochs=250]' (repeatable; default: the default suite).",
    )
    run.add_argument(
        "-s",
        "--surrogate",
        action="append",
        metavar="SURROGATE",
        help="Surrogate, e.g. 'mccann' (repeatable; default: all).",
    )
    run.add_argument("--seeds", type=int, nargs="+", metavar="SEED", default=[0, 1, 2], help="Run seeds.")
    run.add_argument("--results", default="results", metavar="DIR", help="Results folder.")
    run.add_argument("--cache", default=None, metavar="DIR", help=CACHE_HELP)
    run.add_argument(
        "--force",
        action="store_true",
        help="Re-run units already in the results store (rows are replaced, not duplicated).",
    )
    run.add_argument("--wandb", default=None, choices=WANDB_MODES, help="Log each unit to wandb: " + WANDB_HELP)
    run.add_argument("--no-progress", action="store_true", help="No progress bars.")
    run.add_argument("-j", "--jobs", default=None, metavar="N", help=JOBS_HELP)
    run.add_argument("--unsealed", action="store_true", help=UNSEALED_HELP)

    lb = sub.add_parser(
        "leaderboard", help="Rebuild results.csv and leaderboard.csv from the stored runs and print it."
    )
    lb.add_argument("--results", default="results", metavar="DIR", help="Results folder.")
    lb.add_argument("-t", "--task", action="append", metavar="TASK", help="Only this task (repeatable; default: all).")
    lb.add_argument("--by-lambda", action="store_true", help="Also print W₂ at each held-out λ (mean over seeds).")
    lb.add_argument(
        "--tracks", action="store_true", help="Print the default and tuned tracks side by side, as Markdown."
    )
    lb.add_argument(
        "--from-wandb",
        default=None,
        metavar="ENTITY/PROJECT",
        help="First fetch the result rows of every run in this W&B project (public API) into --results.",
    )

    sw = sub.add_parser(
        "sweep",
        help="Run (or resume) a wandb sweep file on this machine, no W&B server needed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Proposes runs with W&B's own sweep engine (the 'sweeps' package: grid, random, bayes, "
        "hyperband) and runs them in local worker processes. Re-running the same command resumes.",
    )
    sw.add_argument("file", metavar="SWEEP.yaml", help="A wandb sweep file, e.g. sweeps/leaderboard.yaml.")
    sw.add_argument("-j", "--jobs", default=None, metavar="N", help=JOBS_HELP)
    sw.add_argument(
        "--count",
        type=int,
        default=None,
        metavar="K",
        help="Start at most K runs in this call (like wandb agent --count).",
    )
    sw.add_argument(
        "--results", default="results", metavar="DIR", help="Results folder (the sweep's state goes in DIR/sweeps/)."
    )
    _add_local_sweep_options(
        sw,
        search_seed_help="Seed of the search: random and bayes proposals (default 0). "
        "Run seeds are the sweep file's 'seed'/'seeds'.",
    )

    tu = sub.add_parser(
        "tune",
        help="The tuned track: tune every (task, surrogate) with the same leak-free budget, then score it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Each (task, surrogate) gets the same number of trials over the surrogate's search space and "
        "the clock, proposed by W&B's sweeps engine and scored on the task's validation folds (anchors only: "
        "leave one interior anchor out, or the task's validation λ); the best is refitted on all anchors and "
        "scored at the held-out λ as the 'tuned' track. Runs as a local sweep (workers, resume on re-run).",
    )
    tu.add_argument(
        "-t", "--task", action="append", metavar="TASK", help="Task (repeatable; default: the default suite)."
    )
    tu.add_argument(
        "-s",
        "--surrogate",
        action="append",
        metavar="SURROGATE",
        help="Surrogate; parameters in its name stay fixed (repeatable; default: all).",
    )
    tu.add_argument(
        "--trials",
        type=int,
        default=8,
        metavar="K",
        help="Configurations tried per (task, surrogate), the default one included.",
    )
    tu.add_argument(
        "--method", default="random", choices=["random", "bayes"], help="How the sweeps engine proposes trials."
    )
    tu.add_argument("--tune-seeds", type=int, default=1, metavar="N", help="Run seeds 0 … N−1 score each trial.")
    tu.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        default=[0, 1, 2],
        help="Run seeds of the tuned configuration's final score.",
    )
    tu.add_argument("-j", "--jobs", default=None, metavar="N", help=JOBS_HELP)
    tu.add_argument("--results", default="results", metavar="DIR", help="Results folder (trials go in DIR/tuning/).")
    _add_local_sweep_options(tu, search_seed_help=argparse.SUPPRESS)

    pl = sub.add_parser(
        "plot",
        help="Draw the figures of a results folder (W₂ vs λ, leaderboard, cost vs accuracy, sample clouds).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Writes PNGs and prints their paths. Exit code 2 when there is nothing to plot.",
    )
    pl.add_argument("--results", default="results", metavar="DIR", help="Results folder.")
    pl.add_argument("--out", default=None, metavar="DIR", help="Where the figures go (default: <results>/figures).")
    pl.add_argument("-t", "--task", action="append", metavar="TASK", help="Only this task (repeatable; default: all).")

    ck = sub.add_parser(
        "check",
        help="Run the contract checks on one surrogate, or on one task (--task).",
        description="Prints one line per check (ok or FAIL with what to fix); exit code 1 when a check fails, "
        "2 for an unknown name or a malformed spec. A task's checks train its networks on its budget: pass "
        "small options for a quick check, e.g. --task 'moons-dropout[epochs=2]'.",
    )
    ck.add_argument("surrogate", nargs="?", metavar="SURROGATE", help="The surrogate to check.")
    ck.add_argument(
        "-t",
        "--task",
        metavar="TASK",
        help="Check this task instead: a built-in task or one registered under the hti_bench.tasks entry points, "
        "with options, e.g. 'moons-dropout[epochs=2]'.",
    )
    ck.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="Target-network cache of --task (default $HTI_BENCH_CACHE or ~/.cache/hti-bench).",
    )
    ck.add_argument("--unsealed", action="store_true", help=UNSEALED_HELP)
    return p


def _cmd_list(what: str, refresh: bool = False) -> int:
    from hti_bench.harness.catalog import print_listing

    print_listing(what, refresh=refresh)
    return 0


def _print_board(board, tasks: Sequence[str] | None = None) -> None:  # noqa: ANN001
    import pandas as pd

    if tasks:
        board = board[board["task"].isin(list(tasks))]
    if board.empty:
        print("(no results yet: run `hti-bench run`)")
        return
    cols = [
        "rank",
        "surrogate",
        "w2_mean",
        "w2_ci95",
        "w2sq_mean",
        "w1_mean",
        "floor_w2_mean",
        "seed_floor_w2_mean",
        "n_seeds",
        "fit_seconds",
        "status",
    ]
    cols += [c for c in board.columns if c.startswith("metric_") and c.endswith("_mean")]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60):
        tracks = board["track"].nunique() > 1 if "track" in board.columns else False
        keys = ["task", "track"] if "track" in board.columns else ["task"]
        for name, group in board.groupby(keys, sort=False):
            group = group.copy()
            tuned = "track" in group.columns and (group["track"] == "tuned").all()
            if "tied_with_best" in group.columns:  # '=': not significantly worse than the best (Wilcoxon, Holm)
                group["rank"] = [
                    f"{r}{'=' if t and r != 1 else ''}" if pd.notna(r) else ""
                    for r, t in zip(group["rank"], group["tied_with_best"].astype(bool))
                ]
            name = f"{name[0]} ({name[1]} track)" if tracks else (name[0] if isinstance(name, tuple) else name)
            uses_loss = group.get("uses_training_loss", pd.Series(False, index=group.index)).astype(bool)
            group.loc[uses_loss, "surrogate"] = group.loc[uses_loss, "surrogate"] + " *"
            unsealed = ~group.get("sealed", pd.Series(True, index=group.index)).astype(bool)
            group.loc[unsealed, "surrogate"] = group.loc[unsealed, "surrogate"] + " †"
            print(f"\n== {name} ==")
            shown = cols + (["config", "tuning_fit_seconds"] if tuned else [])
            if "trivial_w2" in group.columns and group["trivial_w2"].notna().any():
                shown = shown + ["beats_trivial"]
            print(
                group[[c for c in shown if c in group.columns]]
                .dropna(axis=1, how="all")
                .to_string(index=False, float_format=lambda v: f"{v:.4g}")
            )
            if group["rank"].astype(str).str.endswith("=").any():
                print(
                    "N= : not significantly worse than rank 1 (paired Wilcoxon on (seed, λ) units, Holm-corrected, p ≥ 0.05)"
                )
            if uses_loss.any():
                cost = pd.to_numeric(group.get("anchor_train_seconds"), errors="coerce").max()
                anchors = f"; the anchor networks took {cost:.1f} s to train" if cost == cost else ""
                print(f"* trains on the task's own loss (best response), not on anchor outputs{anchors}")
            if unsealed.any():
                print("† ran unsealed (--unsealed, or no confinement here): its code shared the scorer's process")
        if not tasks and board["task"].nunique() > 1 and "mean_rank" in board.columns:
            keep = [c for c in ("track", "surrogate") if c in board.columns]
            ranks = board.drop_duplicates(keep).dropna(subset=["mean_rank"])
            ranks = ranks.sort_values([*keep[:-1], "mean_rank", "surrogate"])[[*keep, "mean_rank", "n_tasks_ranked"]]
            print("\n== mean rank over the tasks each surrogate is ranked on (skipped tasks do not count) ==")
            print(ranks.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


def _jobs(value: str | None) -> str:
    return value if value is not None else (os.environ.get("HTI_BENCH_JOBS") or "auto")


def _cmd_run(args: argparse.Namespace) -> int:
    from hti_bench.harness.registry import broken_plugins
    from hti_bench.harness.runner import run
    from hti_bench.harness.tracking import default_mode, wandb_tracker

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
        tracker=wandb_tracker(args.wandb or default_mode()),
        jobs=_jobs(args.jobs),
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
    from hti_bench.harness.results import ResultsStore

    if args.from_wandb:
        from hti_bench.harness.tracking import results_from_wandb

        n_runs, n_units = results_from_wandb(args.from_wandb, args.results)
        print(
            f"Read {n_runs} runs with hti-bench rows from W&B project {args.from_wandb}: {n_units} units into {args.results}."
        )
    results, board = ResultsStore(args.results).write_tables()
    known = set(board["task"]) if not board.empty else set()
    for name in args.task or ():
        if name not in known:
            from hti_bench.errors import ResultsError, unknown_name_message

            raise ResultsError(unknown_name_message("task in the results", name, known, f"in {args.results}"))
    if args.tracks:
        from hti_bench.harness.leaderboard import tracks_markdown

        print(tracks_markdown(board[board["task"].isin(args.task)] if args.task else board))
        return 0
    _print_board(board, args.task)
    if args.by_lambda:
        import pandas as pd

        from hti_bench.harness.leaderboard import by_lambda

        table = by_lambda(results)
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            for name, group in table.groupby(level="task", sort=False):
                if not args.task or name in args.task:
                    print(f"\n== {name}: W₂ at each held-out λ ==")
                    print(
                        group.droplevel("task").dropna(axis=1, how="all").to_string(float_format=lambda v: f"{v:.3f}")
                    )
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from hti_bench.harness.results import ResultsStore
    from hti_bench.sweeping.controller import run_sweep
    from hti_bench.sweeping.sweepfile import load_sweep

    sweep = load_sweep(args.file)  # a bad file fails here, before any worker starts
    summary = run_sweep(
        args.file,
        jobs=_jobs(args.jobs),
        count=args.count,
        results_dir=args.results,
        cache_dir=args.cache,
        search_seed=args.search_seed or 0,
        threads=args.threads,
        wandb_mode=args.wandb,
        progress=not args.no_progress,
    )
    results, board = ResultsStore(args.results).write_tables()
    tasks = {r.summary.get("task") for r in summary.records if r.summary.get("task")}
    _print_board(board[board["task"].isin(tasks)] if tasks else board.iloc[:0])
    best = summary.best(sweep.metric)
    counts = ", ".join(
        f"{summary.count(s)} {s}" for s in ("finished", "skipped", "stopped", "failed") if summary.count(s)
    )
    print(
        f"\nSweep {sweep.name}: {len(summary.records)} runs ({counts or 'none'}); {summary.started} started in this call, {summary.seconds:.1f} s."
    )
    if best is not None:
        print(
            f"Best {sweep.metric} = {best.metric(sweep.metric):.4g}: {best.summary.get('task')} {best.summary.get('surrogate')}"
        )
    for record in summary.records:
        if record.state == "failed":
            print(f"  failed {record.name} {record.params}: {record.error}")
    if not summary.exhausted and summary.records and args.count is None:
        print("The sweep stopped before its search was exhausted; run the same command again to resume.")
    print(f"State: {summary.state_dir}. Leaderboard: {os.path.join(args.results, 'leaderboard.csv')}")
    if not args.no_figures and tasks:
        from hti_bench.errors import ResultsError
        from hti_bench.harness.plots import plot_results

        try:  # every task in the store, so the figures match leaderboard.csv
            paths = plot_results(args.results)
            print(f"Figures: {len(paths)} in {os.path.join(args.results, 'figures')}")
        except ResultsError as err:
            print(f"No figures: {err}")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from hti_bench.harness.fsutil import atomic_write_bytes
    from hti_bench.harness.registry import default_tasks, make_task
    from hti_bench.harness.sandbox import lookup
    from hti_bench.sweeping.tuning import tune_sweep_config

    tasks = [make_task(t).spec for t in (args.task or default_tasks())]
    surrogates = [r.spec for r in lookup.resolve_many(args.surrogate or lookup.names())]
    config = tune_sweep_config(
        tasks, surrogates, trials=args.trials, method=args.method, tune_seeds=args.tune_seeds, seeds=args.seeds
    )
    path = os.path.join(args.results, "sweeps", "tune.yaml")
    atomic_write_bytes(Path(path), yaml.safe_dump(config, sort_keys=False).encode())
    print(
        f"Tuning {len(tasks)} tasks × {len(surrogates)} surrogates, {args.trials} trials each ({args.method}); sweep file {path}"
    )
    sweep_args = argparse.Namespace(
        file=path,
        jobs=args.jobs,
        workers=None,
        count=None,
        results=args.results,
        cache=args.cache,
        search_seed=args.search_seed,
        seed=None,
        threads=args.threads,
        wandb=args.wandb,
        no_progress=args.no_progress,
        no_figures=args.no_figures,
    )
    return _cmd_sweep(sweep_args)


def _cmd_plot(args: argparse.Namespace) -> int:
    from hti_bench.harness.plots import plot_results

    paths = plot_results(args.results, args.out, args.task)
    for path in paths:
        print(path)
    if not paths:
        print("(no figure: no task has an ok result to draw)", file=sys.stderr)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from hti_bench.errors import ConfigError

    if (args.surrogate is None) == (args.task is None):
        raise ConfigError("hti-bench check: name one surrogate (hti-bench check NAME) or one task (--task SPEC)")
    if args.task is not None:
        from hti_bench.testing import TaskUnderCheck, check_task

        subject = TaskUnderCheck(args.task, cache_dir=args.cache)
        subject.make()  # an unknown name or option is a usage error (exit 2), not a failed check
        failures = check_task(subject, verbose=True)
        print(f"{len(failures)} of the task checks failed" if failures else "every task check passed")
        return 1 if failures else 0
    from hti_bench.harness.sandbox.outside import sealing_enabled

    if sealing_enabled():
        from hti_bench.testing.surrogates import check_sealed

        return 1 if check_sealed(args.surrogate, verbose=True) else 0
    from hti_bench.harness.registry import make_surrogate
    from hti_bench.testing import check_surrogate

    failures = check_surrogate(type(make_surrogate(args.surrogate)), verbose=True)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from hti_bench.errors import HTIBenchError

    if getattr(args, "unsealed", False):
        from hti_bench.harness.sandbox.outside import UNSEALED_ENV

        os.environ[UNSEALED_ENV] = "1"  # read by this process, its workers and the sweep program alike

    try:
        if args.command == "list":
            return _cmd_list(args.what, args.refresh)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "leaderboard":
            return _cmd_leaderboard(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
        if args.command == "tune":
            return _cmd_tune(args)
        if args.command == "plot":
            return _cmd_plot(args)
        if args.command == "check":
            return _cmd_check(args)
    except HTIBenchError as err:
        print(f"hti-bench: error: {err}", file=sys.stderr)
        return 2
    return 2
