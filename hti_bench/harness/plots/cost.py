"""``cost_vs_accuracy.png``: per task, mean W₂ against the wall time of ``fit()``, each point labelled."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hti_bench.harness.plots.common import (
    FLOOR,
    log_axis,
    new_figure,
    ranked,
    save,
    style,
    surrogate_label,
    surrogate_palette,
    wide_range,
    wrap,
)


def _labels(sub: pd.DataFrame, brs: Sequence[bool]) -> list[str]:
    return [surrogate_label(s, b) for s, b in zip(sub["surrogate"], brs)]


_LEADER = {"arrowstyle": "-", "color": "0.6", "linewidth": 0.6}  # label → point, when a label was moved


def _spread_labels(ys: np.ndarray, xs: np.ndarray, min_gap: float, min_dx: float) -> np.ndarray:
    """Vertical label positions (display units) near ``ys`` with labels whose x is closer than ``min_dx``
    at least ``min_gap`` apart: a few sweeps of pushing neighbours apart."""
    pos = ys.astype(float).copy()
    order = np.argsort(pos)
    for _ in range(50):
        moved = False
        for a_i in range(len(order)):
            for b_i in range(a_i + 1, len(order)):
                a, b = order[a_i], order[b_i]
                if abs(xs[a] - xs[b]) >= min_dx:
                    continue
                gap = pos[b] - pos[a]
                if abs(gap) < min_gap:
                    shift = (min_gap - abs(gap)) / 2 + 0.01
                    lo, hi = (a, b) if gap >= 0 else (b, a)
                    pos[lo] -= shift
                    pos[hi] += shift
                    moved = True
        if not moved:
            break
    return pos


def plot_cost_vs_accuracy(board: pd.DataFrame, path: Path, palette: dict[str, Any] | None = None) -> Path | None:
    """One panel per task: mean W₂ (95 % CI) against the mean wall time of ``fit()`` (log scale)."""
    tasks = [t for t in dict.fromkeys(board["task"]) if len(ranked(board, t))]
    if not tasks:
        return None
    palette = palette or surrogate_palette(board["surrogate"].unique())
    ncols = min(2, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    with style():
        fig = new_figure(figsize=(6.4 * ncols, 4.6 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(tasks) :]:
            ax.set_axis_off()
        panels = []
        for ax, task in zip(axes, tasks):
            sub = ranked(board, task)
            fit = np.clip(sub["fit_seconds"].to_numpy(dtype=float), 1e-3, None)
            fit = np.where(np.isfinite(fit), fit, 1e-3)
            mean = sub["w2_mean"].to_numpy(dtype=float)
            ci = np.nan_to_num(sub["w2_ci95"].to_numpy(dtype=float), nan=0.0)
            brs = [bool(b) for b in sub["uses_training_loss"]]
            for x, m, c, s, br in zip(fit, mean, ci, sub["surrogate"], brs):
                ax.errorbar(
                    x,
                    m,
                    yerr=c,
                    fmt="*" if br else "o",
                    markersize=11 if br else 6,
                    capsize=3,
                    color=palette.get(s, "C0"),
                    elinewidth=1,
                    zorder=3,
                )
            floor = pd.to_numeric(sub["floor_w2_mean"], errors="coerce").mean()
            if np.isfinite(floor):
                name, colour, dash = FLOOR["floor_w2"]
                ax.axhline(floor, linestyle=dash, color=colour, linewidth=1.2, label=f"{name} {floor:.3g}", zorder=1)
                ax.legend(loc="upper right", frameon=True, framealpha=0.9)
            lo, hi = fit.min(), fit.max()
            log_axis(ax.xaxis, lo, hi)
            # room on the right for the labels of the rightmost points (≈ 1.15 % of the axis per character)
            right_chars = max(len(t) for t, x in zip(_labels(sub, brs), fit) if x >= hi / 2)
            frac = min(0.45, 0.0115 * right_chars + 0.04)
            decades = math.log10(hi / lo) + 0.4
            ax.set_xlim(lo / 2.5, hi * 10 ** max(0.5, frac * decades / (1 - frac)))
            if wide_range(np.r_[mean, floor]):
                log_axis(ax.yaxis, float(np.nanmin(mean)), float(np.nanmax(mean)))
            else:
                top = float(np.nanmax(mean + ci))
                ax.set_ylim(0, top * 1.12 if top > 0 else 1)
            ax.set_title(wrap(task, 60), loc="left")
            ax.set_xlabel("fit() wall time, s (log; mean over seeds; < 1 ms drawn at 1 ms)")
            ax.set_ylabel("mean W₂ (95 % CI over seeds)")
            panels.append((ax, fit, mean, _labels(sub, brs)))
        # labels beside each point, pushed apart where they would overlap: needs the final layout
        fig.draw_without_rendering()
        fontsize = 7.5
        scale = fig.dpi / 72.0  # display units per point
        for ax, fit, mean, labels in panels:
            disp = ax.transData.transform(np.c_[fit, mean])
            widths = np.array([len(t) * fontsize * 0.6 * scale for t in labels])
            placed = _spread_labels(disp[:, 1], disp[:, 0], fontsize * 1.3 * scale, float(widths.max()) + 8 * scale)
            for x, m, dy, ly, text in zip(fit, mean, disp[:, 1], placed, labels):
                offset = (ly - dy) / scale
                ax.annotate(
                    text,
                    (x, m),
                    xytext=(7, offset),
                    textcoords="offset points",
                    fontsize=fontsize,
                    va="center",
                    ha="left",
                    color="0.1",
                    arrowprops=_LEADER if abs(offset) > fontsize else None,
                )
        return save(fig, path)
