"""Figures of a results store: ``hti-bench plot``.

Five kinds, PNG at 150 dpi, under ``<results>/figures`` by default:

- ``w2_vs_lambda_<task>.png``: W₂ at each held-out λ, one line per surrogate (mean over seeds, band:
  95 % Student-t interval over seeds, as the leaderboard's ``w2_ci95``), the noise and seed-to-seed
  floors, the anchors as dotted lines, λ on the task's clock (anchors and clock from the rows: results
  of schema version < 3 have neither, and their figure has no anchor lines and a linear λ axis);
- ``leaderboard.png``: per task, mean W₂ of every ranked surrogate, best first, with 95 % CIs;
- ``cost_vs_accuracy.png``: per task, mean W₂ against the wall time of ``fit()``;
- ``critical_difference_<track>.png``: Demšar's critical-difference diagram of mean ranks across the
  tasks, per track (default, tuned);
- ``samples_<task>.png``: for tasks with 2-D outputs, the held-out network's and each surrogate's
  samples at the middle held-out λ (stored by ``hti-bench run`` under ``<results>/samples``).

``<task>`` is :func:`hti_bench.harness.results.safe_name` of the task, as for ``leaderboard_<task>.csv``.
Surrogates that train on the task's own loss (best response) are drawn dashed and starred. Every
surrogate keeps one colour across all figures. Figures are drawn on standalone Agg figures (no
pyplot state, no global style change), and seaborn and matplotlib are imported only when plotting.
Everything comes from the results folder: no task is built, and neither the registry nor torch is
imported.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hti_bench.clock import Clock
from hti_bench.errors import ConfigError, ResultsError
from hti_bench.harness.fsutil import atomic_write_bytes
from hti_bench.harness.leaderboard import leaderboard
from hti_bench.harness.results import ResultsStore, parse_anchors, safe_name
from hti_bench.specs import format_spec, parse_spec
from hti_bench.stats import ci95

DPI = 150
#: column → (legend name, grey, dash pattern) of the floors
_FLOOR = {
    "floor_w2": ("noise floor", "0.45", (0, (5, 3))),
    "seed_floor_w2": ("seed-to-seed floor", "0.2", (0, (8, 3, 2, 3))),
}


def plot_results(
    results_dir: str | Path = "results", out_dir: str | Path | None = None, tasks: Sequence[str] | None = None
) -> list[Path]:
    """Draw every figure of the results store at ``results_dir`` into ``out_dir`` (default
    ``<results>/figures``), for ``tasks`` only if given; returns the paths written.

    Raises :class:`~hti_bench.errors.ResultsError` when there is nothing to plot (no results, or none
    of a named task), which the command line reports without a traceback.
    """
    store = ResultsStore(results_dir)
    out = Path(out_dir) if out_dir is not None else store.root / "figures"
    results = store.load()
    if results.empty:
        raise ResultsError(
            f"No results in {store.root}: nothing to plot. Run `hti-bench run --results {store.root}` first."
        )
    # These figures draw the default track; the tuned track's rows share surrogate names with it.
    results = results[results["track"].fillna("default") == "default"]
    names = _select_tasks(results, tasks)
    palette = surrogate_palette(results["surrogate"].unique())  # of every task: the same colours with -t
    results = results[results["task"].isin(names)]
    board = leaderboard(results)
    units = set(zip(results["task"], results["surrogate"], results["seed"].astype(int)))
    clouds = [c for c in store.load_samples() if (c["task"], c["surrogate_spec"], int(c["seed"])) in units]

    written: list[Path] = []
    for task in names:
        rows = results[results["task"] == task]
        if _dimension(rows) > 1:
            paths = [
                plot_lambda_plane(rows, out / f"w2_plane_{safe_name(task)}.png"),
                plot_w2_vs_distance(rows, out / f"w2_vs_distance_{safe_name(task)}.png", palette),
            ]
        else:
            paths = [plot_w2_vs_lambda(rows, out / f"w2_vs_lambda_{safe_name(task)}.png", palette)]
        written.extend(p for p in paths if p is not None)
    for fn, name in ((plot_leaderboard, "leaderboard.png"), (plot_cost_vs_accuracy, "cost_vs_accuracy.png")):
        path = fn(board, out / name, palette)
        if path is not None:
            written.append(path)
    full = leaderboard(store.load()[lambda d: d["task"].isin(names)])  # both tracks, for the rank comparison
    for track in sorted(set(full["track"])):
        path = plot_critical_difference(full, out / f"critical_difference_{track}.png", track)
        if path is not None:
            written.append(path)
    for task in names:
        task_clouds = [c for c in clouds if c["task"] == task]
        if task_clouds:
            path = plot_samples(task_clouds, out / f"samples_{safe_name(task)}.png", board, palette)
            if path is not None:
                written.append(path)
    return written


def _select_tasks(results: pd.DataFrame, tasks: Sequence[str] | None) -> list[str]:
    """The stored task names that ``tasks`` asks for (every stored task when it is empty).

    A name matches a stored task name exactly, or after both are normalised by
    :func:`~hti_bench.specs.parse_spec` and :func:`~hti_bench.specs.format_spec` (options sorted, values
    in one spelling): ``moons-dropout[hidden=16, epochs=50]`` finds ``moons-dropout[epochs=50,hidden=16]``.
    No task is built (plotting never imports the registry or torch), so default options are unknown: a
    name that spells out a default does not match a stored name that leaves it out. Raises
    :class:`~hti_bench.errors.ResultsError`, listing the stored task names, when a name matches none.
    """
    stored = sorted(results["task"].unique())
    if not tasks:
        return stored
    by_spec: dict[str, list[str]] = {}
    for name in stored:
        spec = _normal_spec(name)
        if spec is not None:
            by_spec.setdefault(spec, []).append(name)
    chosen = []
    for name in tasks:
        if name in stored:
            chosen.append(name)
            continue
        spec = _normal_spec(name)
        matches = by_spec.get(spec, []) if spec is not None else []
        if not matches:
            raise ResultsError(f"No results for task {name!r}. Tasks with results: {', '.join(stored)}.")
        chosen.extend(matches)
    return list(dict.fromkeys(chosen))


def _normal_spec(name: str) -> str | None:
    """``name`` as :func:`~hti_bench.specs.format_spec` spells it (options sorted), or None when it is
    not of the form ``NAME[key=value,...]`` (such a name can only match exactly)."""
    try:
        return format_spec(*parse_spec(name))
    except ConfigError:
        return None


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


def surrogate_palette(surrogates: Any) -> dict[str, Any]:
    """One colour per surrogate, the same in every figure of a run (sorted names → colours)."""
    import seaborn as sns

    names = sorted(set(map(str, surrogates)))
    if len(names) <= 10:
        colours = sns.color_palette("tab10", len(names))
    elif len(names) <= 20:  # the ten dark tab20 colours first, then their light partners
        tab20 = sns.color_palette("tab20", 20)
        colours = (tab20[0::2] + tab20[1::2])[: len(names)]
    else:
        colours = sns.color_palette("husl", len(names))
    return dict(zip(names, colours))


# ---------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _style() -> Iterator[None]:
    import matplotlib
    import seaborn as sns

    with (
        sns.axes_style("whitegrid"),
        matplotlib.rc_context(
            {
                "font.size": 9,
                "axes.titlesize": 10,
                "axes.labelsize": 9,
                "legend.fontsize": 8,
                "xtick.labelsize": 8,
                "ytick.labelsize": 8,
                "axes.titleweight": "bold",
            }
        ),
    ):
        yield


def _figure(**kwargs: Any) -> Any:
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _wrap(text: str, width: int = 70) -> str:
    """``text`` in lines of at most ``width`` characters, broken after spaces, commas, ``[`` or ``/``
    where possible (task names have no spaces: ``tensor[path=../x.npz,n_samples=1000]``)."""
    lines: list[str] = []
    line = ""
    for token in re.split(r"(?<=[ ,\[/])", text):
        while len(token) > width:  # a token longer than a line: hard breaks
            if line:
                lines.append(line)
                line = ""
            lines.append(token[:width])
            token = token[width:]
        if len(line) + len(token) > width and line:
            lines.append(line)
            line = ""
        line += token
    if line:
        lines.append(line)
    return "\n".join(s.rstrip() for s in lines) or text


def _is_best_response(values: pd.Series) -> bool:
    return bool(values.astype(str).str.lower().eq("true").any())


def _label(surrogate: str, best_response: bool) -> str:
    return f"{surrogate} *" if best_response else surrogate


def _wide_range(values: Any) -> bool:
    """Whether positive values span enough orders of magnitude that a log axis reads better."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return len(v) > 1 and v.max() / v.min() > 30


# ---------------------------------------------------------------------------------------------- figures


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

    with _style():
        fig = _figure(figsize=(8.5, 4.6))
        ax = fig.subplots()
        log_y = _wide_range(pd.concat([ok["w2"], ok["floor_w2"], ok["seed_floor_w2"]]))
        band_alpha = 0.15 if len(order) <= 5 else 0.08  # many overlapping bands: fainter, lines stay legible
        any_br = False
        for surrogate in order:
            sub = ok[ok["surrogate"] == surrogate]
            br = _is_best_response(sub["uses_training_loss"])
            any_br |= br
            sns.lineplot(
                data=sub,
                x="lambda_heldout",
                y="w2",
                errorbar=_t_interval,
                err_kws={"alpha": band_alpha},
                ax=ax,
                color=palette.get(surrogate),
                label=_label(surrogate, br),
                marker="*" if br else "o",
                markersize=9 if br else 5,
                linestyle="--" if br else "-",
                linewidth=1.6,
            )
        for col, (name, colour, dash) in _FLOOR.items():
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
            _log_axis(ax.yaxis, positive.min(), positive.max())
        else:
            ax.set_ylim(bottom=0)
        lams = sorted(ok["lambda_heldout"].unique())
        if len(lams) <= 12:
            ax.set_xticks(sorted(set(lams) | set(anchors)))
            ax.tick_params(axis="x", labelrotation=45 if len(set(lams) | set(anchors)) > 8 else 0)
            ax.xaxis.set_major_formatter(_plain_formatter())
            ax.xaxis.set_minor_formatter(_null_formatter())
        ax.set_xlabel(f"held-out {hp}" + (f" ({clock} clock)" if clock != "identity" else ""))
        ax.set_ylabel("W₂ to the held-out network")
        n_seeds = ok["seed"].nunique()
        ax.set_title(_wrap(f"{task}: W₂ at each held-out {hp}"), loc="left", pad=14)
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
        return _save(fig, path)


def _dimension(rows: pd.DataFrame) -> int:
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
    with _style():
        from matplotlib.colors import Normalize

        fig = _figure(figsize=(3.2 * ncols + 1.2, 3.2 * nrows + 0.6), layout="constrained")
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
            ax.set_title(_wrap(f"{surrogate} (mean {sub['w2'].mean():.3g})", 30), fontsize=8.5, loc="left")
            ax.set_xlabel(xname)
            ax.set_ylabel(yname if i % ncols == 0 else "")
        for ax in axes[n:]:
            ax.set_visible(False)
        if scatter is not None:
            bar = fig.colorbar(scatter, ax=list(axes[:n]), shrink=0.85)
            bar.set_label(f"W₂ to the held-out network (noise floor {floor:.3g})")
        n_seeds = ok["seed"].nunique()
        fig.suptitle(
            _wrap(
                f"{task}: W₂ over the plane of ({xname}, {yname}); × anchors; mean over {n_seeds} "
                f"seed{'s' if n_seeds != 1 else ''}",
                90,
            ),
            x=0.02,
            ha="left",
            fontsize=10,
            fontweight="bold",
        )
        return _save(fig, path)


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
    with _style():
        fig = _figure(figsize=(7.5, 4.2))
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
            _wrap(
                f"{task}: error against distance from the anchors (mean over seeds; points at equal distance averaged)"
            ),
            loc="left",
        )
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return _save(fig, path)


def _t_interval(values: Any) -> tuple[float, float]:
    """The 95 % Student-t interval of the mean over seeds, as ``w2_ci95`` of the leaderboard: with the
    usual 2 to 5 seeds a bootstrap interval (seaborn's ``("ci", 95)``) is far too narrow."""
    v = np.asarray(values, dtype=float)
    mean = float(np.nanmean(v)) if len(v) else float("nan")
    half = ci95(v)
    return (mean - half, mean + half) if np.isfinite(half) else (mean, mean)


def _labels(sub: pd.DataFrame, brs: Sequence[bool]) -> list[str]:
    return [_label(s, b) for s, b in zip(sub["surrogate"], brs)]


def _log_axis(axis: Any, lo: float, hi: float) -> None:
    """A log scale written as plain numbers (0.02, not 2 × 10⁻²): ticks at 1, 2 and 5 × 10ᵏ when the
    data ``lo``..``hi`` span at most 3 decades, at the powers of ten beyond."""
    from matplotlib.ticker import LogLocator

    axis.axes.set_yscale("log") if axis.axis_name == "y" else axis.axes.set_xscale("log")
    wide = np.isfinite(lo) and np.isfinite(hi) and lo > 0 and hi / lo > 1e3
    axis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(_plain_formatter())
    axis.set_minor_formatter(_null_formatter())


def _plain_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:g}")


def _null_formatter() -> Any:
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def _ranked(board: pd.DataFrame, task: str) -> pd.DataFrame:
    sub = board[(board["task"] == task) & board["rank"].notna()].copy()
    return sub.sort_values(["rank", "surrogate"], kind="stable")


def _unranked_note(board: pd.DataFrame, task: str, width: int) -> str:
    sub = board[(board["task"] == task) & board["rank"].isna()]
    if sub.empty:
        return ""
    parts = [f"{s} ({str(st).split(':')[0]})" for s, st in zip(sub["surrogate"], sub["status"])]
    return _wrap("not shown: " + ", ".join(parts), width)


def plot_leaderboard(board: pd.DataFrame, path: Path, palette: dict[str, Any] | None = None) -> Path | None:
    """One panel per task: mean W₂ of each ranked surrogate, best on top, error bars = 95 % CI over seeds,
    the floors as vertical lines. Skipped and failed surrogates are left out (named under the panel)."""
    tasks = list(dict.fromkeys(board["task"]))
    if not tasks:
        return None
    palette = palette or surrogate_palette(board["surrogate"].unique())
    heights = [max(len(_ranked(board, t)), 1) * 0.32 + 1.1 for t in tasks]
    with _style():
        fig = _figure(figsize=(8.0, sum(heights) + 0.35 * len(tasks)), layout="constrained")
        axes = fig.subplots(len(tasks), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
        for ax, task in zip(axes, tasks):
            sub = _ranked(board, task)
            ax.set_title(_wrap(task, 80), loc="left")
            note = _unranked_note(board, task, 110)
            if sub.empty:
                ax.text(0.5, 0.5, "no surrogate has an ok result", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            y = np.arange(len(sub))
            mean = sub["w2_mean"].to_numpy(dtype=float)
            ci = np.nan_to_num(sub["w2_ci95"].to_numpy(dtype=float), nan=0.0)
            labels = [_label(s, bool(b)) for s, b in zip(sub["surrogate"], sub["uses_training_loss"])]
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
                ("floor_w2_mean", _FLOOR["floor_w2"]),
                ("seed_floor_w2_mean", _FLOOR["seed_floor_w2"]),
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
        return _save(fig, path)


_LEADER = {"arrowstyle": "-", "color": "0.6", "linewidth": 0.6}  # label → point, when a label was moved


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
    with _style():
        fig = _figure(figsize=(8.0, 1.4 + depth), layout="constrained")
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
        return _save(fig, path)


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
    tasks = [t for t in dict.fromkeys(board["task"]) if len(_ranked(board, t))]
    if not tasks:
        return None
    palette = palette or surrogate_palette(board["surrogate"].unique())
    ncols = min(2, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    with _style():
        fig = _figure(figsize=(6.4 * ncols, 4.6 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(tasks) :]:
            ax.set_axis_off()
        panels = []
        for ax, task in zip(axes, tasks):
            sub = _ranked(board, task)
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
                name, colour, dash = _FLOOR["floor_w2"]
                ax.axhline(floor, linestyle=dash, color=colour, linewidth=1.2, label=f"{name} {floor:.3g}", zorder=1)
                ax.legend(loc="upper right", frameon=True, framealpha=0.9)
            lo, hi = fit.min(), fit.max()
            _log_axis(ax.xaxis, lo, hi)
            # room on the right for the labels of the rightmost points (≈ 1.15 % of the axis per character)
            right_chars = max(len(t) for t, x in zip(_labels(sub, brs), fit) if x >= hi / 2)
            frac = min(0.45, 0.0115 * right_chars + 0.04)
            decades = math.log10(hi / lo) + 0.4
            ax.set_xlim(lo / 2.5, hi * 10 ** max(0.5, frac * decades / (1 - frac)))
            if _wide_range(np.r_[mean, floor]):
                _log_axis(ax.yaxis, float(np.nanmin(mean)), float(np.nanmax(mean)))
            else:
                top = float(np.nanmax(mean + ci))
                ax.set_ylim(0, top * 1.12 if top > 0 else 1)
            ax.set_title(_wrap(task, 60), loc="left")
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
        return _save(fig, path)


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
        columns.append((_wrap(title, 22), np.asarray(c["surrogate"], dtype=float), palette.get(s, "C0")))

    ncols = len(columns)
    size = 2.0
    with _style():
        fig = _figure(figsize=(size * ncols + 0.6, size * m + 0.8), layout="constrained")
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
            _wrap(f"{task}: samples at {hp} = {lam:g} (held out), seed {seed}, {n} per condition", 110),
            fontsize=10,
            fontweight="bold",
        )
        return _save(fig, path)
