"""Figures of a task of several hyperparameters: ``w2_plane_<task>.png`` (the error over the λ plane)
and ``w2_vs_distance_<task>.png`` (the error against the distance to the nearest anchor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hti_bench.harness.plots.common import new_figure, save, style, surrogate_palette, wrap
from hti_bench.harness.results import parse_anchors


def dimension(rows: pd.DataFrame) -> int:
    """How many hyperparameters a task's rows have (1 for files of schema version < 7)."""
    if "d" not in rows.columns:
        return 1
    d = pd.to_numeric(rows["d"], errors="coerce").dropna()
    return int(d.max()) if len(d) else 1


def _axes_of(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(axis names, their clocks) of a task of several hyperparameters, from its rows."""
    names = str(rows["hyperparameter"].dropna().iloc[-1]).split(";")
    clocks = str(rows["clock"].dropna().iloc[-1]).split(";") if "clock" in rows.columns else []
    if len(clocks) != len(names):
        clocks = ["identity"] * len(names)
    return names, clocks


#: Held-out points from which the λ-plane figure draws a heat map (``heldout=grid:9x9`` on an analytic task).
HEAT_MAP_POINTS = 12


def plot_lambda_plane(results: pd.DataFrame, path: Path) -> Path | None:
    """Error over the λ plane of one task of two hyperparameters: a panel per surrogate, each held-out
    point coloured by its W₂ (mean over seeds; one colour scale for all panels, best surrogate first),
    the anchors marked ×; with :data:`HEAT_MAP_POINTS` points or more, a heat map interpolated linearly
    between them. Axes on the task's clocks. None when there is no ok row."""
    ok = results[results["status"] == "ok"].copy()
    if ok.empty:
        return None
    task = str(ok["task"].iloc[0])
    (xname, yname), (xclock, yclock) = _axes_of(results)
    cols = {"x": f"lambda_{xname}", "y": f"lambda_{yname}"}
    if not set(cols.values()) <= set(ok.columns):
        return None
    for col in ("w2", "floor_w2", *cols.values()):
        ok[col] = pd.to_numeric(ok[col], errors="coerce")
    means = ok.groupby(["surrogate", cols["x"], cols["y"]], as_index=False)["w2"].mean()
    order = list(means.groupby("surrogate")["w2"].mean().sort_values().index)
    anchors = [a for a in _anchor_points(results) if len(a) == 2]
    floor = float(ok["floor_w2"].mean())
    n = len(order)
    ncols = min(n, 4)
    nrows = (n + ncols - 1) // ncols
    with style():
        from matplotlib.colors import Normalize

        fig = new_figure(figsize=(3.2 * ncols + 1.2, 3.2 * nrows + 0.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        norm = Normalize(vmin=min(floor, float(means["w2"].min())), vmax=float(means["w2"].max()))
        scatter = None
        for i, (ax, surrogate) in enumerate(zip(axes, order)):
            sub = means[means["surrogate"] == surrogate]
            dense = len(sub) >= HEAT_MAP_POINTS
            if dense:
                # Enough points for a heat map: linear between the held-out points (their Delaunay
                # triangles), nothing drawn outside their hull.
                ax.tricontourf(
                    sub[cols["x"]], sub[cols["y"]], sub["w2"], levels=12, cmap="viridis", norm=norm, zorder=1
                )
            scatter = ax.scatter(
                sub[cols["x"]],
                sub[cols["y"]],
                c=sub["w2"],
                cmap="viridis",
                norm=norm,
                s=14 if dense else 140,
                edgecolors="0.2",
                linewidths=0.5,
                zorder=3,
            )
            for _, r in sub.iterrows() if not dense else ():
                ax.annotate(
                    f"{r['w2']:.3g}",
                    (r[cols["x"]], r[cols["y"]]),
                    xytext=(0, 8),
                    textcoords="offset points",
                    ha="center",
                    fontsize=6.5,
                    color="0.2",
                )
            if anchors:
                ax.scatter(
                    [a[0] for a in anchors],
                    [a[1] for a in anchors],
                    marker="x",
                    color="black",
                    s=30,
                    linewidths=1.2,
                    zorder=4,
                    label="anchor",
                    clip_on=False,
                )
            for axis, clock in ((ax.xaxis, xclock), (ax.yaxis, yclock)):
                if clock in ("log", "logit"):
                    (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)(clock)
            ax.set_title(wrap(f"{surrogate} (mean {sub['w2'].mean():.3g})", 30), fontsize=8.5, loc="left")
            ax.set_xlabel(xname)
            ax.set_ylabel(yname if i % ncols == 0 else "")
        for ax in axes[n:]:
            ax.set_visible(False)
        if scatter is not None:
            bar = fig.colorbar(scatter, ax=list(axes[:n]), shrink=0.85)
            bar.set_label(f"W₂ to the held-out network (noise floor {floor:.3g})")
        n_seeds = ok["seed"].nunique()
        fig.suptitle(
            wrap(
                f"{task}: W₂ over the plane of ({xname}, {yname}); × anchors; mean over {n_seeds} "
                f"seed{'s' if n_seeds != 1 else ''}",
                90,
            ),
            x=0.02,
            ha="left",
            fontsize=10,
            fontweight="bold",
        )
        return save(fig, path)


def _anchor_points(rows: pd.DataFrame) -> tuple[Any, ...]:
    cells = rows["anchors"].dropna().astype(str) if "anchors" in rows.columns else pd.Series([], dtype=str)
    cells = cells[cells.str.strip() != ""]
    return parse_anchors(cells.iloc[-1]) if len(cells) else ()


def plot_w2_vs_distance(results: pd.DataFrame, path: Path, palette: dict[str, Any] | None = None) -> Path | None:
    """How error grows away from the anchors: W₂ of each held-out point (mean over seeds) against its
    distance to the nearest anchor in unit clock time, a line per surrogate. None without ok rows."""
    import seaborn as sns

    ok = results[results["status"] == "ok"].copy()
    if ok.empty or "anchor_distance" not in ok.columns:
        return None
    task = str(ok["task"].iloc[0])
    for col in ("w2", "floor_w2", "anchor_distance"):
        ok[col] = pd.to_numeric(ok[col], errors="coerce")
    means = ok.groupby(["surrogate", "lambda_heldout"], as_index=False)[["w2", "floor_w2", "anchor_distance"]].mean()
    palette = palette or surrogate_palette(means["surrogate"].unique())
    order = means.groupby("surrogate")["w2"].mean().sort_values().index
    with style():
        fig = new_figure(figsize=(7.5, 4.2))
        ax = fig.subplots()
        for surrogate in order:
            sub = means[means["surrogate"] == surrogate].sort_values("anchor_distance")
            sns.lineplot(
                data=sub,
                x="anchor_distance",
                y="w2",
                ax=ax,
                color=palette.get(surrogate),
                label=surrogate,
                marker="o",
                errorbar=None,
            )
        floor = means.groupby("anchor_distance")["floor_w2"].mean()
        ax.plot(floor.index, floor.to_numpy(), linestyle="--", color="0.4", label="noise floor")
        ax.set_xlabel("distance of the held-out point to the nearest anchor (unit clock time)")
        ax.set_ylabel("W₂ to the held-out network")
        ax.set_ylim(bottom=0)
        ax.set_title(
            wrap(
                f"{task}: error against distance from the anchors (mean over seeds; points at equal distance averaged)"
            ),
            loc="left",
        )
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return save(fig, path)
