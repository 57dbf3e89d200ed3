"""``critical_difference_<track>.png``: Demšar's critical-difference diagram of mean ranks over the tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hti_bench.harness.plots.common import new_figure, save, style


def plot_critical_difference(board: pd.DataFrame, path: Path, track: str = "default") -> Path | None:
    """Demšar's critical-difference diagram of a track: each surrogate at its mean rank over the tasks
    (:func:`hti_bench.harness.significance.critical_difference`), the CD as a bar, and surrogates whose
    mean ranks lie within one CD of each other joined by a thick line. None with fewer than 2 tasks or
    2 surrogates ranked on all of them."""
    from hti_bench.harness.significance import critical_difference

    cd = critical_difference(board, track)
    if cd is None:
        return None
    names, ranks = list(cd.ranks), np.array(list(cd.ranks.values()))
    k = len(names)
    half = (k + 1) // 2
    step = 0.32
    depth = step * (max(half, k - half) + 1)
    with style():
        fig = new_figure(figsize=(8.0, 1.4 + depth), layout="constrained")
        ax = fig.subplots()
        ax.set_axis_off()
        ax.set_xlim(0.3 - 0.22 * k, k + 0.7 + 0.22 * k)
        ax.set_ylim(-depth - 0.2, 0.9)
        ax.plot([1, k], [0, 0], color="0.1", linewidth=1)
        for r in range(1, k + 1):
            ax.plot([r, r], [0, 0.06], color="0.1", linewidth=1)
            ax.text(r, 0.1, str(r), ha="center", va="bottom", fontsize=8)
        ax.plot([1, 1 + cd.cd], [0.55, 0.55], color="0.1", linewidth=1.5)
        for x in (1, 1 + cd.cd):
            ax.plot([x, x], [0.5, 0.6], color="0.1", linewidth=1)
        ax.text(
            1 + cd.cd / 2,
            0.63,
            f"CD = {cd.cd:.2f} (Nemenyi, α = {cd.alpha:g}, {cd.n_tasks} tasks)",
            ha="center",
            va="bottom",
            fontsize=8,
        )
        for i, (name, r) in enumerate(zip(names, ranks)):
            left = i < half
            y = -step * ((i if left else k - 1 - i) + 1)
            edge = 1 - 0.15 * k if left else k + 0.15 * k
            ax.plot([r, r, edge], [0, y, y], color="0.3", linewidth=0.8)
            ax.text(
                edge + (-0.05 if left else 0.05),
                y,
                f"{name} ({r:.2f})",
                ha="right" if left else "left",
                va="center",
                fontsize=8,
            )
        for j, clique in enumerate(cd.cliques):
            lo, hi = cd.ranks[clique[0]], cd.ranks[clique[-1]]
            y = -0.1 - 0.07 * j
            ax.plot([lo - 0.03, hi + 0.03], [y, y], color="0.0", linewidth=3, solid_capstyle="round")
        ax.set_title(f"mean rank by W₂ over the tasks, {track} track (joined: not significantly different)", loc="left")
        return save(fig, path)
