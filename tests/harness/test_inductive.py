"""The inductive mode: surrogates fitted on some conditions and scored on conditions they never saw
(the HTI paper's forecasting protocol), for ``quantile`` and ``tensor``; results record the mode and
the leaderboard keeps the two modes apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hti_bench.errors import ConfigError
from hti_bench.harness.leaderboard import leaderboard
from hti_bench.harness.registry import make_task
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import build_anchor_set, evaluate

LAMBDAS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])


def continuous_tensor(n=60, seed=0):
    """[T, N, 1 + 1]: y = (1 + λ)·x + 0.1·ε at N distinct scalar conditions x (one row each)."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-1, 1, n)).astype(np.float32)
    eps = rng.standard_normal(n)
    return np.stack([np.column_stack([(1 + lam) * x + 0.1 * eps, x]) for lam in LAMBDAS]).astype(np.float32)


@pytest.fixture
def tensor_file(tmp_path):
    path = tmp_path / "cont.npz"
    np.savez(path, data=continuous_tensor(), lambdas=LAMBDAS, y_dim=1)
    return path


def anchor_rows(task):
    return {tuple(r.tolist()) for r in build_anchor_set(task, seed=0).conditions}


def test_tensor_row_ranges_fit_on_some_conditions_and_score_on_others(tensor_file):
    task = make_task(f"tensor[path={tensor_file},fit_rows=:40,score_rows=-20:]")
    assert task.mode == "inductive"
    scored = {tuple(r.tolist()) for r in task.eval_conditions()}
    assert len(scored) == 20 and len(anchor_rows(task)) == 40
    assert not scored & anchor_rows(task), "no scored condition is in the anchor data"
    assert make_task(f"tensor[path={tensor_file}]").mode == "transductive"
    # without fit_rows: every condition not scored
    assert len(anchor_rows(make_task(f"tensor[path={tensor_file},score_rows=-20:]"))) == 40


def test_inductive_rows_are_scored_and_recorded_as_such(tensor_file):
    task = make_task(f"tensor[path={tensor_file},fit_rows=:40,score_rows=-20:,n_samples=1]")
    from hti_bench.harness.registry import surrogate_classes
    from hti_bench.specs import format_spec

    for name in ("nearest-anchor", "mccann", "direct"):  # direct: a conditional model, fitted at 40 x only
        result = evaluate(task, format_spec(name, surrogate_classes()[name].test_config), seed=0)
        assert result.status == "ok", (name, result.error)
        assert {r["mode"] for r in result.rows} == {"inductive"}


def test_bad_row_ranges_say_what_is_wrong(tmp_path, tensor_file):
    with pytest.raises(ConfigError, match="not a row range"):
        make_task(f"tensor[path={tensor_file},score_rows=abc]")
    with pytest.raises(ConfigError, match="selects no row"):
        make_task(f"tensor[path={tensor_file},score_rows=100:]")
    with pytest.raises(ConfigError, match="needs score_rows"):
        make_task(f"tensor[path={tensor_file},fit_rows=:10]")
    with pytest.raises(ConfigError, match="share 10 condition"):
        make_task(f"tensor[path={tensor_file},fit_rows=:50,score_rows=-20:]")
    # a categorical file whose score rows hold every class leaves nothing unseen to fit on
    label = np.repeat(np.arange(3), 10).astype(np.float32)
    data = np.stack([np.column_stack([label + lam, label]) for lam in LAMBDAS]).astype(np.float32)
    path = tmp_path / "cat.npz"
    np.savez(path, data=data, lambdas=LAMBDAS, y_dim=1)
    with pytest.raises(ConfigError, match="share|no condition outside"):
        make_task(f"tensor[path={path},score_rows=0:30]")


def test_quantile_inductive_fits_on_the_first_windows_and_scores_the_last():
    task = make_task(
        "quantile[epochs=1,hidden=8,heldout=(0.5,),mode=inductive,n_fit=300,n_eval=30]", cache=TargetCache()
    )
    x = task._windows[0]
    assert torch.equal(task.eval_conditions(), x[-30:])
    anchors = build_anchor_set(task, seed=0)
    assert torch.equal(anchors.conditions, x[:300]) and not anchors.eval_mask.any()
    result = evaluate(task, "mccann", seed=0)
    assert result.status == "ok" and {r["mode"] for r in result.rows} == {"inductive"}
    with pytest.raises(ConfigError, match="Did you mean 'inductive'"):
        make_task("quantile[mode=inductiv]")
    with pytest.raises(ConfigError, match="has 2270 windows"):
        make_task("quantile[mode=inductive,n_fit=2200,n_eval=180]").all_conditions()


def test_the_leaderboard_never_mixes_modes(tensor_file):
    rows = []
    for spec in (f"tensor[path={tensor_file}]", f"tensor[path={tensor_file},score_rows=-20:]"):
        task = make_task(spec)
        for name in ("nearest-anchor", "mccann"):
            rows += evaluate(task, name, seed=0).rows
    import pandas as pd

    board = leaderboard(pd.DataFrame(rows))
    assert len(board) == 4 and set(board["mode"]) == {"transductive", "inductive"}
    for _, group in board.groupby("task"):
        assert group["mode"].nunique() == 1 and sorted(group["rank"].tolist()) == [1, 2]
    assert board["n_tasks_ranked"].eq(1).all(), "mean ranks are within a mode"
