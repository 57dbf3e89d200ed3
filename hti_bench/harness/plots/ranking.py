"""``leaderboard.png``: per task, the mean W₂ of every ranked surrogate, best on top, with 95 % CIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hti_bench.harness.plots.common import (
    FLOOR,
    new_figure,
    ranked,
    save,
    style,
    surrogate_label,
    surrogate_palette,
    wrap,
)


def _unranked_note(board: pd.DataFrame, task: str, width: int) -> str:
    sub = board[(board["task"] == task) & board["rank"].isna()]
    if sub.empty:
        return ""
    parts = [f"{s} ({str(st).split(':')[0]})" for s, st in zip(sub["surrogate"], sub["status"])]
    return wrap("not shown: " + ", ".join(parts), width)


def plot_leaderboard(board: pd.DataFrame, path: Path, palette: dict[str, Any] | None = None) -> Path | None:
    """One panel per task: mean W₂ of each ranked surrogate, best on top, error bars = 95 % CI over seeds,
    the floors as vertical lines. Skipped and failed surrogates are left out (named under the panel)."""
    tasks = list(dict.fromkeys(board["task"]))
    if not tasks:
        return None
    palette = palette or surrogate_palette(board["surrogate"].unique())
    heights = [max(len(ranked(board, t)), 1) * 0.32 + 1.1 for t in tasks]
    with style():
        fig = new_figure(figsize=(8.0, sum(heights) + 0.35 * len(tasks)), layout="constrained")
        axes = fig.subplots(len(tasks), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
        for ax, task in zip(axes, tasks):
            sub = ranked(board, task)
            ax.set_title(wrap(task, 80), loc="left")
            note = _unranked_note(board, task, 110)
            if sub.empty:
                ax.text(0.5, 0.5, "no surrogate has an ok result", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            y = np.arange(len(sub))
            mean = sub["w2_mean"].to_numpy(dtype=float)
            ci = np.nan_to_num(sub["w2_ci95"].to_numpy(dtype=float), nan=0.0)
            labels = [surrogate_label(s, bool(b)) for s, b in zip(sub["surrogate"], sub["uses_training_loss"])]
            colours = [palette.get(s, "C0") for s in sub["surrogate"]]
            hatches = ["//" if bool(b) else None for b in sub["uses_training_loss"]]
            bars = ax.barh(
                y, mean, xerr=ci, color=colours, height=0.7, capsize=3, error_kw={"elinewidth": 1, "ecolor": "0.2"}
            )
            for bar, hatch in zip(bars, hatches):
                if hatch:
                    bar.set_hatch(hatch)
                    bar.set_edgecolor("white")
            ax.set_yticks(y, labels)
            ax.set_ylim(len(sub) - 0.5, -0.5)  # best on top
            right = float(np.nanmax(mean + ci))
            for col, (name, colour, dash) in (
                ("floor_w2_mean", FLOOR["floor_w2"]),
                ("seed_floor_w2_mean", FLOOR["seed_floor_w2"]),
            ):
                floor = pd.to_numeric(sub[col], errors="coerce").mean()
                if np.isfinite(floor):
                    ax.axvline(floor, linestyle=dash, color=colour, linewidth=1.3, label=f"{name} {floor:.3g}")
                    right = max(right, floor)
            for yi, m, c in zip(y, mean, ci):
                text = f"{m:.3g}" + (f" ± {c:.2g}" if c > 0 else "")
                ax.text(m + c + right * 0.01, yi, text, va="center", ha="left", fontsize=7.5, color="0.15")
            ax.set_xlim(0, right * 1.22)
            xlabel = "mean W₂ over seeds and held-out λ (error bar: 95 % CI over seeds)"
            ax.set_xlabel(xlabel + (f"\n{note}" if note else ""))
            ax.grid(axis="y", visible=False)
            if ax.get_legend_handles_labels()[0]:  # best on top has the shortest bars: top right is free
                ax.legend(loc="upper right", frameon=True, framealpha=0.9)
        if board["uses_training_loss"].astype(bool).any():
            fig.suptitle(
                "* hatched: trains on the task's own loss (best response)",
                x=0.99,
                ha="right",
                fontsize=7.5,
                fontweight="normal",
            )
        return save(fig, path)
