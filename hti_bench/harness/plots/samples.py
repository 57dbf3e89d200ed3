"""``samples_<task>.png``: the held-out network's and each surrogate's samples of a 2-D task at one λ."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hti_bench.harness.plots.common import new_figure, save, style, surrogate_palette, wrap


def _condition_label(cond: np.ndarray) -> str:
    cond = np.asarray(cond).ravel()
    if len(cond) <= 3:
        return "x = " + ", ".join(f"{v:g}" for v in cond)
    return f"x = [{', '.join(f'{v:.2g}' for v in cond[:3])}, …]"


def plot_samples(
    clouds: Sequence[dict[str, Any]],
    path: Path,
    board: pd.DataFrame | None = None,
    palette: dict[str, Any] | None = None,
) -> Path | None:
    """Rows = conditions (≤ 4), first column = the held-out network's samples, then one column per
    surrogate (best first when ``board`` ranks them), all at the middle held-out λ and the lowest stored
    seed; axis limits shared within a row."""
    if not clouds:
        return None
    seed = min(int(c["seed"]) for c in clouds)
    by_surrogate: dict[str, dict[str, Any]] = {}
    for c in sorted(clouds, key=lambda c: int(c["seed"])):
        by_surrogate.setdefault(str(c["surrogate_spec"]), c)  # each surrogate's lowest seed
    names = sorted(by_surrogate)
    if board is not None and len(board):
        task = str(clouds[0]["task"])
        rank = board[board["task"] == task].set_index("surrogate")["rank"]
        names.sort(key=lambda s: (float(rank.get(s)) if pd.notna(rank.get(s, np.nan)) else math.inf, s))
    palette = palette or surrogate_palette(names)
    first = next(c for c in clouds if int(c["seed"]) == seed)
    reference = np.asarray(first["reference"], dtype=float)
    m = reference.shape[0]
    columns = [("held-out network\n(reference)", reference, "0.15")]
    for s in names:
        c = by_surrogate[s]
        title = s if int(c["seed"]) == seed else f"{s}\n(seed {int(c['seed'])})"
        columns.append((wrap(title, 22), np.asarray(c["surrogate"], dtype=float), palette.get(s, "C0")))

    ncols = len(columns)
    size = 2.0
    with style():
        fig = new_figure(figsize=(size * ncols + 0.6, size * m + 0.8), layout="constrained")
        axes = fig.subplots(m, ncols, squeeze=False)
        for i in range(m):
            clouds_i = [col[1][i] for col in columns if i < col[1].shape[0]]
            everything = np.concatenate(clouds_i, axis=0)
            everything = everything[np.isfinite(everything).all(axis=1)]
            lo = np.percentile(everything, 0.5, axis=0)
            hi = np.percentile(everything, 99.5, axis=0)
            pad = (hi - lo) * 0.08 + 1e-9
            for j, (title, cloud, colour) in enumerate(columns):
                ax = axes[i, j]
                if i < cloud.shape[0]:
                    ax.scatter(
                        cloud[i, :, 0], cloud[i, :, 1], s=2, alpha=0.45, color=colour, linewidths=0, rasterized=True
                    )
                ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
                ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
                ax.tick_params(labelsize=6.5)
                if j:
                    ax.set_yticklabels([])
                if i < m - 1:
                    ax.set_xticklabels([])
                if i == 0:
                    ax.set_title(title, fontsize=8.5)
                if j == 0:
                    ax.set_ylabel(_condition_label(first["conditions"][i]), fontsize=8.5)
        task, hp, lam = str(first["task"]), str(first["hyperparameter"]), float(first["lam"])
        n = reference.shape[1]
        fig.suptitle(
            wrap(f"{task}: samples at {hp} = {lam:g} (held out), seed {seed}, {n} per condition", 110),
            fontsize=10,
            fontweight="bold",
        )
        return save(fig, path)
