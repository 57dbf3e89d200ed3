"""Which differences on the leaderboard are real: paired tests per task, critical differences across tasks.

- **Per task** (:func:`pairwise`): every two surrogates of a track are compared on the units they
  share, a unit being one (seed, held-out λ) row scored ok for both; the test is the two-sided
  Wilcoxon signed-rank test on the paired differences of W₂ (``scipy.stats.wilcoxon``, exact for
  small samples), and the p-values of a task and track are Holm-corrected over all its pairs. A pair
  is *significant* when its corrected p is below ``alpha`` (0.05). Rows of one seed share its anchor
  draws, so the units are not fully independent: read a p-value as a guide, not a guarantee.
- The leaderboard's ``p_vs_best`` is each surrogate's p against the task's rank-1 surrogate, Holm-
  corrected over those comparisons; ``tied_with_best`` marks those not significantly worse.
- **Across tasks** (:func:`critical_difference`): Demšar's (JMLR 2006) comparison of mean ranks over
  the tasks every compared surrogate is ranked on. Two surrogates differ significantly when their mean
  ranks differ by more than the Nemenyi critical difference CD = q_α √(k(k + 1) / 6N) (k surrogates,
  N tasks; q_α from the studentized range, ``scipy.stats.studentized_range``, over √2). The figure
  (:func:`hti_bench.harness.plots.critical_difference.plot_critical_difference`) joins surrogates
  within one CD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

ALPHA = 0.05

#: Columns of ``significance.csv``.
SIGNIFICANCE_COLUMNS: dict[str, str] = {
    "task": "Task name.",
    "track": "default or tuned.",
    "a": "First surrogate.",
    "b": "Second surrogate.",
    "n_units": "(seed, held-out λ) units both scored ok: the pairs tested.",
    "mean_diff": "Mean over those units of W₂(a) − W₂(b) (negative: a is better).",
    "p_value": "Two-sided Wilcoxon signed-rank p-value of the paired differences (1 when all are zero; NaN for no unit).",
    "p_holm": "p_value Holm-corrected over every pair of the task and track.",
    "significant": "p_holm < 0.05.",
    "better": "The better surrogate when significant (by mean W₂), else empty.",
}


def _wilcoxon(diff: np.ndarray) -> float:
    from scipy.stats import wilcoxon

    diff = diff[np.isfinite(diff)]
    if len(diff) == 0:
        return math.nan
    if np.allclose(diff, 0.0, atol=0.0, rtol=0.0):
        return 1.0
    return float(wilcoxon(diff).pvalue)


def holm(p_values: Any) -> np.ndarray:
    """Holm's step-down correction of a family of p-values (NaN left as NaN)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.where(np.isfinite(p))[0]
    order = idx[np.argsort(p[idx], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def pairwise(results: pd.DataFrame, metric: str = "w2", alpha: float = ALPHA) -> pd.DataFrame:
    """Every pair of surrogates of each (task, track), tested on their shared units (module docstring)."""
    if results.empty:
        return pd.DataFrame(columns=list(SIGNIFICANCE_COLUMNS))
    df = results[results["status"] == "ok"].copy()
    if "track" not in df.columns:
        df["track"] = "default"
    df["track"] = df["track"].fillna("default")
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    out = []
    for (task, track), group in df.groupby(["task", "track"], sort=True):
        table = group.pivot_table(index=["seed", "lambda_heldout"], columns="surrogate", values=metric, aggfunc="mean")
        rows = []
        for a, b in combinations(sorted(table.columns), 2):
            both = table[[a, b]].dropna()
            diff = (both[a] - both[b]).to_numpy(dtype=float)
            rows.append(
                {
                    "task": task,
                    "track": track,
                    "a": a,
                    "b": b,
                    "n_units": len(diff),
                    "mean_diff": float(diff.mean()) if len(diff) else math.nan,
                    "p_value": _wilcoxon(diff),
                }
            )
        if not rows:
            continue
        corrected = holm([r["p_value"] for r in rows])
        for r, p in zip(rows, corrected):
            r["p_holm"] = float(p)
            r["significant"] = bool(p < alpha) if math.isfinite(p) else False
            r["better"] = (r["a"] if r["mean_diff"] < 0 else r["b"]) if r["significant"] else ""
        out += rows
    return pd.DataFrame(out, columns=list(SIGNIFICANCE_COLUMNS))


def versus_best(board: pd.DataFrame, pairs: pd.DataFrame) -> pd.Series:
    """Per leaderboard row, the p-value of its comparison with its task and track's rank-1 surrogate,
    Holm-corrected over those k − 1 comparisons (a comparison with a control: a smaller family than
    all pairs, whose correction ``p_holm`` carries). NaN for the best itself and for unranked rows."""
    lookup = {(r.task, r.track, r.a, r.b): r.p_value for r in pairs.itertuples()}
    out = pd.Series(math.nan, index=board.index, dtype=float)
    for (task, track), group in board.groupby(["task", "track"], sort=False):
        best = group[group["rank"] == 1]
        if best.empty:
            continue
        top = str(best["surrogate"].iloc[0])
        others = group[group["rank"].notna() & (group["surrogate"] != top)]
        raw = [lookup.get((task, track, *sorted([top, str(s)])), math.nan) for s in others["surrogate"]]
        out.loc[others.index] = holm(raw)
    return out


@dataclass(frozen=True)
class CriticalDifference:
    """Demšar's comparison of mean ranks: ``ranks`` (surrogate → mean rank, best first), the critical
    difference ``cd`` at ``alpha`` over ``n_tasks`` tasks, and ``cliques``: maximal groups of surrogates
    whose mean ranks lie within one CD (not significantly different)."""

    track: str
    ranks: dict[str, float]
    n_tasks: int
    cd: float
    alpha: float
    cliques: tuple[tuple[str, ...], ...]


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """q_α of the Nemenyi test for k surrogates: the studentized range's 1 − α quantile over √2
    (1.960 for k = 2, 2.343 for 3, 3.164 for 10: Demšar's Table 5)."""
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(board: pd.DataFrame, track: str = "default", alpha: float = ALPHA) -> CriticalDifference | None:
    """The critical-difference comparison of a track's surrogates over the tasks on which every one of
    them has a rank: surrogates skipped or failed on a task are left out, and tasks too few surrogates
    are ranked on are dropped first (fewest first) so that at least two remain. None with fewer than 2
    tasks or 2 surrogates."""
    sub = board[(board.get("track", "default") == track) & board["rank"].notna()] if len(board) else board
    if sub.empty:
        return None
    table = sub.pivot_table(index="task", columns="surrogate", values="w2_mean", aggfunc="first")
    # The comparison needs every surrogate on every task: drop the task with the fewest ranked surrogates
    # until at least two surrogates are ranked on all that remain.
    while True:
        full = table.loc[:, table.notna().all()]
        if full.shape[1] >= 2 or table.shape[0] <= 2:
            break
        table = table.drop(index=table.notna().sum(axis=1).idxmin())
    table = full
    if table.shape[0] < 2 or table.shape[1] < 2:
        return None
    ranks = table.rank(axis=1, method="average").mean().sort_values()
    k, n = table.shape[1], table.shape[0]
    cd = nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n))
    names, values = list(ranks.index), ranks.to_numpy(dtype=float)
    cliques: list[tuple[str, ...]] = []
    for i in range(k):
        j = i
        while j + 1 < k and values[j + 1] - values[i] <= cd:
            j += 1
        group = tuple(names[i : j + 1])
        if len(group) > 1 and not any(set(group) <= set(c) for c in cliques):
            cliques.append(group)
    return CriticalDifference(
        track=track,
        ranks={s: float(v) for s, v in ranks.items()},
        n_tasks=n,
        cd=float(cd),
        alpha=alpha,
        cliques=tuple(cliques),
    )


def significance_markdown() -> str:
    """The column table of ``significance.csv`` for ``results/README.md``."""
    lines = ["| column | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in SIGNIFICANCE_COLUMNS.items()]
    return "\n".join(lines)
