"""``w2_vs_lambda_<task>.png``: W₂ at each held-out λ of a task of one hyperparameter, on its clock."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hti_bench.clock import Clock
from hti_bench.errors import ResultsError
from hti_bench.harness.plots.common import (
    FLOOR,
    is_best_response,
    log_axis,
    new_figure,
    null_formatter,
    plain_formatter,
    save,
    style,
    surrogate_label,
    surrogate_palette,
    wide_range,
    wrap,
)
from hti_bench.harness.results import parse_anchors
from hti_bench.stats import ci95


def _task_axis(rows: pd.DataFrame) -> tuple[tuple[float, ...], str]:
    """(anchors, clock) of one task, read from its rows' ``anchors`` and ``clock`` columns.

    Plotting never builds a task to look them up. Rows of a results file older than schema version 3
    have neither: their figure is drawn without anchor lines, on the identity (linear) λ axis. When
    the rows of a task disagree (it was re-run after its defaults changed), the newest row with a
    value wins and a warning says so. A malformed anchors cell or an unknown clock raises
    :class:`~hti_bench.errors.ResultsError`.
    """
    task = str(rows["task"].iloc[0]) if len(rows) else "?"
    if "run_date" in rows.columns:
        rows = rows.sort_values("run_date", kind="stable")
    anchors: tuple[float, ...] = ()
    clock = Clock.IDENTITY.value
    for col in ("anchors", "clock"):
        if col not in rows.columns:
            continue
        cells = rows[col].dropna().astype(str).str.strip()
        cells = cells[cells != ""]
        if cells.empty:
            continue
        if cells.nunique() > 1:
            warnings.warn(
                f"rows of task {task} disagree on {col} ({', '.join(sorted(cells.unique()))}); "
                f"the figure uses the newest, {cells.iloc[-1]}",
                stacklevel=2,
            )
        if col == "anchors":
            anchors = parse_anchors(cells.iloc[-1])
        else:
            try:
                clock = Clock(cells.iloc[-1]).value
            except ValueError:
                valid = ", ".join(c.value for c in Clock)
                raise ResultsError(
                    f"Task {task} has clock {cells.iloc[-1]!r} in its results; valid: {valid}."
                ) from None
    return anchors, clock


def plot_w2_vs_lambda(results: pd.DataFrame, path: Path, palette: dict[str, Any] | None = None) -> Path | None:
    """W₂ vs held-out λ for one task's rows (ok rows only); None when it has no ok row.

    The anchors (dotted lines) and the λ axis's scale (the task's clock: identity, log or logit) come
    from the rows' ``anchors`` and ``clock`` columns. Rows of schema version < 3 lack them: the figure
    then has no anchor lines and a linear (identity) λ axis.
    """
    import seaborn as sns

    ok = results[results["status"] == "ok"].copy()
    if ok.empty:
        return None
    task = str(ok["task"].iloc[0])
    hp = str(ok["hyperparameter"].iloc[0])
    anchors, clock = _task_axis(results)
    palette = palette or surrogate_palette(ok["surrogate"].unique())
    for col in ("lambda_heldout", "w2", "floor_w2", "seed_floor_w2"):
        ok[col] = pd.to_numeric(ok[col], errors="coerce")
    order = ok.groupby("surrogate")["w2"].mean().sort_values().index  # legend: best first

    with style():
        fig = new_figure(figsize=(8.5, 4.6))
        ax = fig.subplots()
        log_y = wide_range(pd.concat([ok["w2"], ok["floor_w2"], ok["seed_floor_w2"]]))
        band_alpha = 0.15 if len(order) <= 5 else 0.08  # many overlapping bands: fainter, lines stay legible
        any_br = False
        for surrogate in order:
            sub = ok[ok["surrogate"] == surrogate]
            br = is_best_response(sub["uses_training_loss"])
            any_br |= br
            sns.lineplot(
                data=sub,
                x="lambda_heldout",
                y="w2",
                errorbar=_t_interval,
                err_kws={"alpha": band_alpha},
                ax=ax,
                color=palette.get(surrogate),
                label=surrogate_label(surrogate, br),
                marker="*" if br else "o",
                markersize=9 if br else 5,
                linestyle="--" if br else "-",
                linewidth=1.6,
            )
        for col, (name, colour, dash) in FLOOR.items():
            floor = ok.groupby("lambda_heldout")[col].mean().dropna()
            if len(floor) and log_y and not (floor > 0).any():  # a zero floor has no place on a log axis
                ax.plot([], [], linestyle=dash, color=colour, linewidth=1.4, label=f"{name} = 0 (off the log axis)")
            elif len(floor):
                ax.plot(floor.index, floor.to_numpy(), linestyle=dash, color=colour, linewidth=1.4, label=name)
        for i, lam in enumerate(anchors):
            ax.axvline(lam, linestyle=(0, (1, 2)), color="0.35", linewidth=1.3, label="anchor λ" if i == 0 else None)
            ax.annotate(
                "anchor",
                (lam, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
                color="0.35",
            )
        ax.grid(axis="x", visible=False)  # vertical lines are the anchors
        if clock in ("log", "logit"):
            ax.set_xscale(clock)
        if log_y:
            positive = pd.concat([ok["w2"], ok["seed_floor_w2"]]).pipe(lambda v: v[v > 0])
            log_axis(ax.yaxis, positive.min(), positive.max())
        else:
            ax.set_ylim(bottom=0)
        lams = sorted(ok["lambda_heldout"].unique())
        if len(lams) <= 12:
            ax.set_xticks(sorted(set(lams) | set(anchors)))
            ax.tick_params(axis="x", labelrotation=45 if len(set(lams) | set(anchors)) > 8 else 0)
            ax.xaxis.set_major_formatter(plain_formatter())
            ax.xaxis.set_minor_formatter(null_formatter())
        ax.set_xlabel(f"held-out {hp}" + (f" ({clock} clock)" if clock != "identity" else ""))
        ax.set_ylabel("W₂ to the held-out network")
        n_seeds = ok["seed"].nunique()
        ax.set_title(wrap(f"{task}: W₂ at each held-out {hp}"), loc="left", pad=14)
        note = f"lines: mean over {n_seeds} seed{'s' if n_seeds != 1 else ''}" + (
            "; bands: 95 % t-interval over seeds" if n_seeds > 1 else ""
        )
        if any_br:
            note += "\n* dashed: trains on the task's own loss"
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
            title=note,
            title_fontsize=7.5,
            alignment="left",
        )
        return save(fig, path)


def _t_interval(values: Any) -> tuple[float, float]:
    """The 95 % Student-t interval of the mean over seeds, as ``w2_ci95`` of the leaderboard: with the
    usual 2 to 5 seeds a bootstrap interval (seaborn's ``("ci", 95)``) is far too narrow."""
    v = np.asarray(values, dtype=float)
    mean = float(np.nanmean(v)) if len(v) else float("nan")
    half = ci95(v)
    return (mean - half, mean + half) if np.isfinite(half) else (mean, mean)
