"""What every figure shares: one colour per surrogate, the look, the PNG writer, labels and log axes."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hti_bench.harness.fsutil import atomic_write_bytes

DPI = 150
#: column → (legend name, grey, dash pattern) of the floors
FLOOR = {
    "floor_w2": ("noise floor", "0.45", (0, (5, 3))),
    "seed_floor_w2": ("seed-to-seed floor", "0.2", (0, (8, 3, 2, 3))),
}


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


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The look of every figure (seaborn's whitegrid, small fonts), for the ``with`` block that draws it."""
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


def new_figure(**kwargs: Any) -> Any:
    """A standalone Agg figure: no pyplot state to leak between figures or into a caller's session."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI` to ``path`` atomically (a reader never sees half a file)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def wrap(text: str, width: int = 70) -> str:
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


def is_best_response(values: pd.Series) -> bool:
    """Whether a ``uses_training_loss`` column says true (it reads back from CSV as bool or text)."""
    return bool(values.astype(str).str.lower().eq("true").any())


def surrogate_label(surrogate: str, best_response: bool) -> str:
    """The legend name: starred when the surrogate trains on the task's own loss."""
    return f"{surrogate} *" if best_response else surrogate


def wide_range(values: Any) -> bool:
    """Whether positive values span enough orders of magnitude that a log axis reads better."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return len(v) > 1 and v.max() / v.min() > 30


def log_axis(axis: Any, lo: float, hi: float) -> None:
    """A log scale written as plain numbers (0.02, not 2 × 10⁻²): ticks at 1, 2 and 5 × 10ᵏ when the
    data ``lo``..``hi`` span at most 3 decades, at the powers of ten beyond."""
    from matplotlib.ticker import LogLocator

    axis.axes.set_yscale("log") if axis.axis_name == "y" else axis.axes.set_xscale("log")
    wide = np.isfinite(lo) and np.isfinite(hi) and lo > 0 and hi / lo > 1e3
    axis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(plain_formatter())
    axis.set_minor_formatter(null_formatter())


def plain_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:g}")


def null_formatter() -> Any:
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def ranked(board: pd.DataFrame, task: str) -> pd.DataFrame:
    """The leaderboard rows of ``task`` that have a rank, best first."""
    sub = board[(board["task"] == task) & board["rank"].notna()].copy()
    return sub.sort_values(["rank", "surrogate"], kind="stable")
