"""The leaderboard: per task and surrogate, the mean, spread and 95 % interval of the scores, the rank,
the costs, and the mean rank across tasks, computed from the results table (never edited by hand).
:meth:`hti_bench.harness.results.ResultsStore.write_tables` writes it; ``hti-bench leaderboard`` prints it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hti_bench.stats import ci95

#: Columns of ``leaderboard.csv`` (and of each ``leaderboard_<task>.csv``) → meaning; a test keeps the
#: table in ``results/README.md`` equal to :func:`leaderboard_markdown`.
LEADERBOARD_COLUMNS: dict[str, str] = {
    "task": "Task name, as in the results.",
    "track": "default (each surrogate as named) or tuned (configuration chosen on the anchors by hti-bench tune); "
    "ranks and mean ranks are within a track.",
    "mode": "transductive or inductive (see the results' `mode`); a task's two modes are separate tasks (the inductive "
    "one's name carries its option), and mean ranks are within a mode.",
    "rank": "Rank of the surrogate within the task and track by `w2_mean` (1 = best, ties share the lower rank); "
    "empty for surrogates with no ok row (skipped or failed).",
    "surrogate": "Surrogate name with its parameters.",
    "config": "The configuration fitted: the surrogate name on the default track, the one tuning chose on the tuned track.",
    "w2_mean": "Mean W₂ over every ok (seed, held-out λ) row.",
    "w2_std": "Standard deviation of W₂ over those rows.",
    "w2_ci95": "Half-width of the 95 % Student-t interval over seeds, each seed first averaged over the held-out λ.",
    "w2sq_mean": "Mean W₂² (the HTI paper's 'W.D.').",
    "w2sq_ci95": "95 % CI half-width of W₂², as for `w2_ci95`.",
    "w1_mean": "Mean W₁.",
    "energy_mean": "Mean energy distance.",
    "mmd_mean": "Mean Gaussian-kernel MMD (median-heuristic bandwidth on the held-out network's samples).",
    "sw2_mean": "Mean sliced W₂, for outputs with D > 8 (NaN otherwise).",
    **{
        f"{m}_{stat}": f"{what} of {name}, as for W₂."
        for m, name in (("energy", "the energy distance"), ("mmd", "MMD"), ("sw2", "sliced W₂"))
        for stat, what in (("std", "Standard deviation"), ("ci95", "95 % CI half-width"))
    },
    **{
        f"floor_{m}_mean": f"Mean noise floor of {name}."
        for m, name in (("energy", "the energy distance"), ("mmd", "MMD"), ("sw2", "sliced W₂"))
    },
    "floor_w2_mean": "Mean noise floor of W₂ over the same rows.",
    "seed_floor_w2_mean": "Mean seed-to-seed floor of W₂ (NaN for tasks without training randomness).",
    "w1_std": "Standard deviation of W₁.",
    "w1_ci95": "95 % CI half-width of W₁.",
    "w2sq_std": "Standard deviation of W₂².",
    "n_seeds": "Seeds with at least one ok row.",
    "n_rows": "Ok rows averaged.",
    "n_failed": "Failed rows (not averaged).",
    "fit_seconds": "Mean over seeds of the wall time of fit().",
    "sample_seconds": "Mean wall time of sample() at one held-out λ (all conditions).",
    "anchor_train_seconds": "What training the task's anchor networks cost (NaN for tasks that train nothing).",
    "tuning_fit_seconds": "Tuned track: total fit() seconds of the tuning trials (mean over seeds' rows; NaN on the default track).",
    "uses_training_loss": "Whether the surrogate trains on the task's loss (best response; starred in the printout).",
    "sealed": "Whether every row ran sealed (in a confined sandbox, hti_bench.harness.sandbox); False marks rows run with "
    "--unsealed or where the system offered no confinement (a dagger in the printout): trust them less.",
    "status": "ok, `partial: N failed rows`, or `skipped: reason` / `failed: reason` when no row is ok.",
    "p_vs_best": "Two-sided Wilcoxon signed-rank p-value of the surrogate's W₂ against the task and track's rank-1 "
    "surrogate, paired on the (seed, held-out λ) units both scored, Holm-corrected over the comparisons with the "
    "best (hti_bench.harness.significance); empty for the best and for unranked rows.",
    "tied_with_best": "True when the difference to the rank-1 surrogate is not significant (p_vs_best ≥ 0.05), "
    "and for the best itself; the printout marks these with '='.",
    "trivial_w2": "The task's clock-aware trivial answer: the lower `w2_mean` of nearest-anchor and mccann on the "
    "tuned track (each on its validation-chosen clock); NaN when the task has no tuned track.",
    "beats_trivial": "Whether `w2_mean` is below `trivial_w2`: a method only works on a task if it beats the trivial "
    "answer; False where `trivial_w2` is NaN.",
    "mean_rank": "The surrogate's mean `rank` over every task of the row's mode where it has one (the same on each of its rows). "
    "Tasks it was skipped on or failed count neither way, so compare it together with `n_tasks_ranked`, and "
    "only between surrogates run on the same tasks.",
    "n_tasks_ranked": "Tasks `mean_rank` averages over.",
}


#: The clock-aware trivial baselines every method must beat on a task (on the tuned track: their clock chosen).
TRIVIAL = ("nearest-anchor", "mccann")


def leaderboard(results: pd.DataFrame) -> pd.DataFrame:
    """Per task and surrogate: mean, std and 95 % CI of W₂ (and W₁, W₂², task metrics), rank, costs.

    ``*_mean`` and ``*_std`` are over every ok (seed, held-out λ) row. ``*_ci95`` is the half-width of
    the 95 % t-interval over seeds, each seed first averaged over the held-out λ (the HTI paper's
    protocol: held-out λ of one seed are not independent replicates). ``rank`` orders each task by
    ``w2_mean`` (1 = best); surrogates with no ok row have no rank and say why in ``status``.
    ``mean_rank`` is each surrogate's mean rank over the ``n_tasks_ranked`` tasks where it has a rank
    (tasks where it was skipped or failed do not count). Columns: :data:`LEADERBOARD_COLUMNS`, with
    ``metric_<name>_mean`` for task metrics.
    """
    if results.empty:
        return pd.DataFrame(columns=list(LEADERBOARD_COLUMNS))
    # metric_* are the surrogate's; ref_metric_* (the held-out network's: the ceiling of a closed-loop
    # return) and nearest_metric_* (the nearest anchor's) are the same on every row of a task, the
    # yardsticks to read metric_* against.
    metric_cols = [
        c for c in results.columns if c.startswith(("metric_", "ref_metric_", "nearest_metric_")) and c != "metric_note"
    ]
    panel = [c for c in ("energy", "mmd", "sw2") if c in results.columns]
    value_cols = ["w2", "w1", "w2sq", *panel, *metric_cols]
    out = []
    results = results.copy()
    if "track" not in results.columns:
        results["track"] = "default"
    if "config" not in results.columns:
        results["config"] = results["surrogate"]
    if "mode" not in results.columns:
        results["mode"] = "transductive"
    results["mode"] = results["mode"].fillna("transductive").replace("", "transductive")
    results["track"] = results["track"].fillna("default")
    results["config"] = results["config"].fillna(results["surrogate"])
    for (task, track, surrogate), group in results.groupby(["task", "track", "surrogate"], sort=True):
        ok = group[group["status"] == "ok"]
        configs = group["config"].dropna().unique()
        row: dict[str, Any] = {
            "task": task,
            "track": track,
            "mode": str(group["mode"].iloc[0]),
            "surrogate": surrogate,
            "config": configs[0] if len(configs) == 1 else "; ".join(sorted(map(str, configs))),
        }
        for col in value_cols:
            vals = pd.to_numeric(ok[col], errors="coerce")
            per_seed = vals.groupby(ok["seed"]).mean().to_numpy(dtype=float)
            row[f"{col}_mean"] = float(vals.mean()) if len(vals) else float("nan")
            if col in ("w2", "w1", "w2sq", *panel):
                row[f"{col}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
                row[f"{col}_ci95"] = ci95(per_seed)
        row["floor_w2_mean"] = float(pd.to_numeric(ok["floor_w2"]).mean()) if len(ok) else float("nan")
        for col in panel:
            row[f"floor_{col}_mean"] = (
                float(pd.to_numeric(ok[f"floor_{col}"], errors="coerce").mean()) if len(ok) else float("nan")
            )
        row["seed_floor_w2_mean"] = (
            float(pd.to_numeric(ok["seed_floor_w2"], errors="coerce").mean()) if len(ok) else float("nan")
        )
        row["n_seeds"] = int(ok["seed"].nunique())
        row["n_rows"] = int(len(ok))
        row["n_failed"] = int((group["status"] == "failed").sum())
        row["fit_seconds"] = float(ok.drop_duplicates("seed")["fit_seconds"].mean()) if len(ok) else float("nan")
        row["sample_seconds"] = float(ok["sample_seconds"].mean()) if len(ok) else float("nan")
        row["anchor_train_seconds"] = float(pd.to_numeric(group["anchor_train_seconds"], errors="coerce").max())
        tuning = pd.to_numeric(group.get("tuning_fit_seconds", pd.Series(dtype=float)), errors="coerce")
        row["tuning_fit_seconds"] = float(tuning.mean()) if tuning.notna().any() else float("nan")
        row["uses_training_loss"] = bool(group["uses_training_loss"].astype(str).str.lower().eq("true").any())
        sealed = group["sealed"] if "sealed" in group.columns else pd.Series(False, index=group.index)
        row["sealed"] = bool(sealed.astype(str).str.lower().eq("true").all())
        if len(ok) and not row["n_failed"]:
            row["status"] = "ok"
        elif len(ok):
            row["status"] = f"partial: {row['n_failed']} failed rows"
        else:
            reasons = group["error"].replace("", np.nan).dropna().unique()
            kind = "skipped" if (group["status"] == "skipped").all() else "failed"
            row["status"] = f"{kind}: {reasons[0] if len(reasons) else 'no reason recorded'}"
        out.append(row)
    board = pd.DataFrame(out)
    board["rank"] = board.groupby(["task", "track"])["w2_mean"].rank(method="min").astype("Int64")
    ranks = board["rank"].astype("Float64").groupby([board["track"], board["mode"], board["surrogate"]])
    key = pd.MultiIndex.from_frame(board[["track", "mode", "surrogate"]])
    board["mean_rank"] = ranks.mean().reindex(key).to_numpy(dtype=float)
    board["n_tasks_ranked"] = ranks.count().reindex(key).to_numpy(dtype=int)
    from hti_bench.harness.significance import ALPHA, pairwise, versus_best

    board["p_vs_best"] = versus_best(board, pairwise(results))
    board["tied_with_best"] = board["rank"].notna() & ~(board["p_vs_best"] < ALPHA)
    trivial = board[(board["track"] == "tuned") & board["surrogate"].isin(TRIVIAL)].groupby("task")["w2_mean"].min()
    board["trivial_w2"] = board["task"].map(trivial).astype(float)
    board["beats_trivial"] = board["w2_mean"] < board["trivial_w2"]
    first = [
        "task",
        "track",
        "mode",
        "rank",
        "surrogate",
        "config",
        "w2_mean",
        "w2_std",
        "w2_ci95",
        "w2sq_mean",
        "w2sq_ci95",
        "w1_mean",
        "floor_w2_mean",
        "seed_floor_w2_mean",
    ]
    rest = [c for c in board.columns if c not in first]
    board = board[first + rest]
    return board.sort_values(["task", "track", "rank", "surrogate"], na_position="last", kind="stable").reset_index(
        drop=True
    )


def tracks(board: pd.DataFrame) -> pd.DataFrame:
    """Both tracks side by side, one row per (task, surrogate): W₂ and rank on each ('=': not significantly
    worse than that track's best), the configuration tuning chose, what tuning cost, and whether the tuned
    surrogate beats the task's trivial answer (``trivial_w2``). Ordered by tuned rank, then default rank."""
    if board.empty:
        return pd.DataFrame()

    def rank_text(sub: pd.DataFrame) -> pd.Series:
        return pd.Series(
            [
                f"{int(r)}{'=' if t and r != 1 else ''}" if pd.notna(r) else "–"
                for r, t in zip(sub["rank"], sub["tied_with_best"].astype(bool))
            ],
            index=sub.index,
        )

    parts = {}
    for track in ("default", "tuned"):
        sub = board[board["track"] == track].copy()
        sub["rank_text"] = rank_text(sub)
        parts[track] = sub.set_index(["task", "surrogate"])
    default, tuned = parts["default"], parts["tuned"]
    keys = list(dict.fromkeys(list(tuned.index) + list(default.index)))
    out = []
    for task, surrogate in keys:
        d = default.loc[(task, surrogate)] if (task, surrogate) in default.index else None
        t = tuned.loc[(task, surrogate)] if (task, surrogate) in tuned.index else None
        out.append(
            {
                "task": task,
                "surrogate": surrogate,
                "default_w2": d["w2_mean"] if d is not None else np.nan,
                "default_rank": d["rank_text"] if d is not None else "",
                "tuned_w2": t["w2_mean"] if t is not None else np.nan,
                "tuned_rank": t["rank_text"] if t is not None else "",
                "tuned_config": t["config"] if t is not None else "",
                "tuning_fit_seconds": t["tuning_fit_seconds"] if t is not None else np.nan,
                "trivial_w2": (t if t is not None else d)["trivial_w2"],
                "beats_trivial": bool(t["beats_trivial"]) if t is not None else bool(d["beats_trivial"]),
                "_order": (
                    t["rank"] if t is not None and pd.notna(t["rank"]) else 1e9,
                    d["rank"] if d is not None and pd.notna(d["rank"]) else 1e9,
                ),
            }
        )
    table = pd.DataFrame(out)
    table = table.sort_values(["task", "_order"], kind="stable").drop(columns="_order")
    return table.reset_index(drop=True)


def tracks_markdown(board: pd.DataFrame) -> str:
    """:func:`tracks` as one Markdown table per task (the tables of docs/evidence/leaderboards.md)."""
    table = tracks(board)
    if table.empty:
        return "(no results)"
    blocks = []
    for task, sub in table.groupby("task", sort=True):
        trivial = sub["trivial_w2"].dropna()
        head = f"**{task}**" + (f" (trivial answer: W₂ {trivial.iloc[0]:.3f})" if len(trivial) else "")
        lines = [
            head,
            "",
            "| surrogate | default W₂ (rank) | tuned W₂ (rank) | tuned configuration | tuning fit s | beats trivial |",
            "|---|---|---|---|---|---|",
        ]
        for r in sub.itertuples():
            dw = f"{r.default_w2:.3f} ({r.default_rank})" if np.isfinite(r.default_w2) else "skipped"
            tw = (
                f"{r.tuned_w2:.3f} ({r.tuned_rank})"
                if np.isfinite(r.tuned_w2)
                else ("skipped" if r.tuned_config else "–")
            )
            cost = f"{r.tuning_fit_seconds:.0f}" if np.isfinite(r.tuning_fit_seconds) else ""
            config = f"`{r.tuned_config}`" if r.tuned_config and np.isfinite(r.tuned_w2) else ""
            beats = (
                ("yes" if r.beats_trivial else "no") if np.isfinite(r.trivial_w2) and np.isfinite(r.tuned_w2) else ""
            )
            lines.append(f"| {r.surrogate} | {dw} | {tw} | {config} | {cost} | {beats} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def by_lambda(results: pd.DataFrame, value: str = "w2") -> pd.DataFrame:
    """``value`` at each held-out λ: one row per (task, surrogate), one column per λ, the mean over
    seeds of the ok rows; per task, ``(noise floor)`` and ``(seed-to-seed floor)`` rows hold the floors. Where a method is good
    and where it degrades (near or far from its anchors, or an STN's centre) shows here."""
    ok = results[results["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame()
    ok[value] = pd.to_numeric(ok[value], errors="coerce")
    ok["lambda_heldout"] = pd.to_numeric(ok["lambda_heldout"])
    key = "lambda_heldout"
    if "d" in ok.columns and (pd.to_numeric(ok["d"], errors="coerce") > 1).any():
        # Points of several hyperparameters are columns "a;b"; with them, one hyperparameter's λ are columns of
        # their text too (lambda_point: repr of the value), one-hyperparameter tasks first, then each task's
        # points in its held-out order.
        ok["λ"] = ok["lambda_point"].astype(str)
        key = "λ"
    table = ok.pivot_table(index=["task", "surrogate"], columns=key, values=value, aggfunc="mean", sort=False)
    floor = ok.pivot_table(index="task", columns=key, values=f"floor_{value}", aggfunc="mean", sort=False)
    floor.index = pd.MultiIndex.from_tuples([(t, "(noise floor)") for t in floor.index], names=["task", "surrogate"])
    parts = [table, floor]
    seed_col = f"seed_floor_{value}"
    if seed_col in ok.columns and pd.to_numeric(ok[seed_col], errors="coerce").notna().any():
        ok[seed_col] = pd.to_numeric(ok[seed_col], errors="coerce")
        seed = ok.pivot_table(index="task", columns=key, values=seed_col, aggfunc="mean", sort=False)
        seed.index = pd.MultiIndex.from_tuples(
            [(t, "(seed-to-seed floor)") for t in seed.index], names=["task", "surrogate"]
        )
        parts.append(seed)
    out = pd.concat(parts).sort_index()
    if key == "λ":
        order = ok.assign(_d=pd.to_numeric(ok["d"], errors="coerce").fillna(1)).sort_values(["_d", "lambda_heldout"])
        out = out[list(dict.fromkeys(order["λ"]))]
    else:
        out = out[sorted(out.columns)]
    return out


def leaderboard_markdown() -> str:
    """The leaderboard column table of ``results/README.md``, from :data:`LEADERBOARD_COLUMNS`."""
    lines = ["| column | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in LEADERBOARD_COLUMNS.items()]
    lines += [
        "| `metric_<name>_mean` | Mean of a task metric of the surrogate's samples over the ok rows "
        "(closed-loop tasks: `metric_return_mean`, the return of the episodes it drove). |",
        "| `ref_metric_<name>_mean`, `nearest_metric_<name>_mean` | The same for the held-out networks' own samples "
        "(closed loop: the held-out policy, the ceiling) and for the nearest anchor's policy (the trivial answer). |",
    ]
    return "\n".join(lines)
