"""Figures of a results store: ``hti-bench plot``.

PNG at 150 dpi, under ``<results>/figures`` by default, one module per figure family:

- :mod:`~hti_bench.harness.plots.lambda_curves`: ``w2_vs_lambda_<task>.png``, W₂ at each held-out λ,
  one line per surrogate (mean over seeds, band: 95 % Student-t interval over seeds, as the
  leaderboard's ``w2_ci95``), the noise and seed-to-seed floors, the anchors as dotted lines, λ on the
  task's clock (anchors and clock from the rows: results of schema version < 3 have neither, and their
  figure has no anchor lines and a linear λ axis);
- :mod:`~hti_bench.harness.plots.plane`: for a task of several hyperparameters, in place of the λ
  curve, ``w2_plane_<task>.png`` (W₂ over the λ plane, a panel per surrogate) and
  ``w2_vs_distance_<task>.png`` (W₂ against the distance to the nearest anchor);
- :mod:`~hti_bench.harness.plots.ranking`: ``leaderboard.png``, per task, mean W₂ of every ranked
  surrogate, best first, with 95 % CIs;
- :mod:`~hti_bench.harness.plots.cost`: ``cost_vs_accuracy.png``, per task, mean W₂ against the wall
  time of ``fit()``;
- :mod:`~hti_bench.harness.plots.critical_difference`: ``critical_difference_<track>.png``, Demšar's
  critical-difference diagram of mean ranks across the tasks, per track (default, tuned);
- :mod:`~hti_bench.harness.plots.samples`: ``samples_<task>.png``, for tasks with 2-D outputs, the
  held-out network's and each surrogate's samples at the middle held-out λ (stored by
  ``hti-bench run`` under ``<results>/samples``).

What they share (colours, style, the PNG writer, labels, log axes) is in
:mod:`~hti_bench.harness.plots.common`; :func:`plot_results` here draws them all.

``<task>`` is :func:`hti_bench.harness.results.safe_name` of the task, as for ``leaderboard_<task>.csv``.
Surrogates that train on the task's own loss (best response) are drawn dashed and starred. Every
surrogate keeps one colour across all figures. Figures are drawn on standalone Agg figures (no
pyplot state, no global style change), and seaborn and matplotlib are imported only when plotting.
Everything comes from the results folder: no task is built, and neither the registry nor torch is
imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hti_bench.errors import ConfigError, ResultsError
from hti_bench.harness.leaderboard import leaderboard
from hti_bench.harness.plots.common import surrogate_palette
from hti_bench.harness.plots.cost import plot_cost_vs_accuracy
from hti_bench.harness.plots.critical_difference import plot_critical_difference
from hti_bench.harness.plots.lambda_curves import plot_w2_vs_lambda
from hti_bench.harness.plots.plane import HEAT_MAP_POINTS, dimension, plot_lambda_plane, plot_w2_vs_distance
from hti_bench.harness.plots.ranking import plot_leaderboard
from hti_bench.harness.plots.samples import plot_samples
from hti_bench.harness.results import ResultsStore, safe_name
from hti_bench.specs import format_spec, parse_spec

__all__ = ["HEAT_MAP_POINTS", "plot_lambda_plane", "plot_results", "plot_w2_vs_lambda"]


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
        if dimension(rows) > 1:
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
