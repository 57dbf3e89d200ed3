"""Which differences are real: the paired tests, Holm's correction, the leaderboard marks and the
critical-difference comparison across tasks."""

import math

import numpy as np
import pandas as pd
import pytest

from hti_bench.harness.leaderboard import leaderboard
from hti_bench.harness.significance import critical_difference, holm, nemenyi_q, pairwise


def rows(task, surrogate, values, track="default"):
    """One row per (seed, λ) unit: values[seed][j] is W₂ at the j-th λ."""
    out = []
    for seed, per_lam in enumerate(values):
        for lam, w2 in zip((0.25, 0.5, 0.75, 0.9), per_lam):
            out.append(
                {
                    "task": task,
                    "track": track,
                    "surrogate": surrogate,
                    "config": surrogate,
                    "seed": seed,
                    "lambda_heldout": lam,
                    "status": "ok",
                    "error": "",
                    "w2": w2,
                    "w1": w2,
                    "w2sq": w2**2,
                    "floor_w2": 0.0,
                    "seed_floor_w2": np.nan,
                    "fit_seconds": 1.0,
                    "sample_seconds": 0.1,
                    "anchor_train_seconds": np.nan,
                    "uses_training_loss": False,
                }
            )
    return out


def test_holm_matches_its_definition():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, math.nan]).tolist()[0] == 0.5 and math.isnan(holm([0.5, math.nan])[1])


def test_a_consistent_difference_is_significant_and_noise_is_not():
    r = np.random.default_rng(0)
    base = r.uniform(0.5, 1.0, size=(5, 4))
    df = pd.DataFrame(
        rows("t", "good", base)
        + rows("t", "bad", base + 0.2 + r.uniform(0, 0.01, (5, 4)))
        + rows("t", "same", base + r.normal(0, 0.05, (5, 4)))
    )
    pairs = pairwise(df).set_index(["a", "b"])
    assert pairs.loc[("bad", "good"), "n_units"] == 20
    # 20 units, all favouring 'good': the exact two-sided signed-rank p is 2 / 2^20.
    assert pairs.loc[("bad", "good"), "p_value"] == pytest.approx(2 / 2**20)
    assert bool(pairs.loc[("bad", "good"), "significant"]) and pairs.loc[("bad", "good"), "better"] == "good"
    assert not bool(pairs.loc[("good", "same"), "significant"]) and pairs.loc[("good", "same"), "better"] == ""
    board = leaderboard(df).set_index("surrogate")
    assert bool(board.loc["good", "tied_with_best"]) and bool(board.loc["same", "tied_with_best"])
    assert not bool(board.loc["bad", "tied_with_best"]) and board.loc["bad", "p_vs_best"] < 0.05


def test_pairs_use_only_shared_ok_units_and_tracks_are_apart():
    a = rows("t", "a", [[1.0, 1.0, 1.0, 1.0]] * 3)
    b = rows("t", "b", [[2.0, 2.0, 2.0, 2.0]] * 3)
    b[0]["status"] = "failed"
    tuned = rows("t", "a", [[0.5] * 4] * 3, track="tuned")
    pairs = pairwise(pd.DataFrame(a + b + tuned))
    assert len(pairs) == 1 and pairs.iloc[0]["n_units"] == 11 and pairs.iloc[0]["track"] == "default"


def test_nemenyi_q_is_demsars_table():
    assert [nemenyi_q(k) for k in (2, 3, 5, 10)] == pytest.approx([1.960, 2.343, 2.728, 3.164], abs=1e-3)


def test_critical_difference_of_mean_ranks():
    # 3 surrogates on 6 tasks: 'x' always first, 'y' second, 'z' third; CD = 2.343 √(3·4 / 36) = 1.353.
    data = []
    for t in range(6):
        for s, w in (("x", 1.0), ("y", 2.0), ("z", 3.0)):
            data += rows(f"task{t}", s, [[w + 0.01 * t] * 4] * 2)
    board = leaderboard(pd.DataFrame(data))
    cd = critical_difference(board)
    assert cd.ranks == {"x": 1.0, "y": 2.0, "z": 3.0} and cd.n_tasks == 6
    assert cd.cd == pytest.approx(2.343 * math.sqrt(12 / 36), rel=1e-3)
    assert cd.cliques == (("x", "y"), ("y", "z"))  # x and z are 2 > CD apart
    assert critical_difference(board[board["task"] == "task0"]) is None  # one task: no comparison


def test_both_tracks_side_by_side_with_the_trivial_answer():
    from hti_bench.harness.leaderboard import tracks, tracks_markdown

    data = []
    for surrogate, default, tuned in (
        ("nearest-anchor", 1.2, 1.0),
        ("mccann", 0.9, 0.8),
        ("m", 0.7, 0.5),
        ("n", 0.6, 0.85),
    ):
        data += rows("t", surrogate, [[default] * 4] * 3)
        tuned_rows = rows("t", surrogate, [[tuned] * 4] * 3, track="tuned")
        for r in tuned_rows:
            r["config"] = f"{surrogate}[clock=logit]"
        data += tuned_rows
    board = leaderboard(pd.DataFrame(data))
    assert board["trivial_w2"].to_numpy() == pytest.approx(
        [0.8] * len(board)
    )  # mccann, tuned: the better trivial answer
    beats = board.set_index(["track", "surrogate"])["beats_trivial"]
    assert beats[("tuned", "m")] and not beats[("tuned", "n")] and beats[("default", "n")]
    table = tracks(board).set_index("surrogate")
    assert list(table.index) == ["m", "mccann", "n", "nearest-anchor"]  # by tuned rank
    assert table.loc["n", "default_rank"] == "1" and table.loc["m", "tuned_rank"] == "1"
    assert table.loc["m", "tuned_config"] == "m[clock=logit]"
    text = tracks_markdown(board)
    assert "(trivial answer: W₂ 0.800)" in text and "| m | 0.700 (2) | 0.500 (1) | `m[clock=logit]` |" in text


def test_results_readme_documents_the_significance_columns():
    from pathlib import Path

    from hti_bench.harness.significance import significance_markdown

    text = (Path(__file__).resolve().parents[2] / "results" / "README.md").read_text()
    assert significance_markdown() in text, (
        "regenerate results/README.md's significance.csv table from hti_bench.harness.significance.significance_markdown()"
    )
