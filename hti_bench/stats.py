"""Small statistics shared by the leaderboard, the figures and the tasks (no torch: reading results and
drawing figures must not import it)."""

from __future__ import annotations

import math

import numpy as np


def ci95(values) -> float:
    """Half-width of the 95 % Student-t interval of the mean of the finite ``values``; NaN for fewer
    than 2 (the leaderboard's intervals over seeds, the closed loop's over episodes)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan")
    from scipy import stats

    return float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
