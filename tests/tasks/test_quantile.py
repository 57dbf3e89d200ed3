"""The quantile forecasting task: pinball loss at τ, CO₂ series, ETT loader."""

import pytest
import torch

from hti_bench.errors import ConfigError
from hti_bench.harness.registry import make_task
from hti_bench.harness.targets import TargetCache
from hti_bench.tasks.quantile import load_ett_column, pinball


def test_higher_tau_gives_higher_forecasts_and_coverage():
    task = make_task("quantile[epochs=8,hidden=16,n_eval=16,n_fit=16]", cache=TargetCache())
    conds = task.eval_conditions()
    low, high = task.sample(0.1, conds, 2, seed=0), task.sample(0.9, conds, 2, seed=0)
    assert (high - low).mean() > 0.5, "the 0.9-quantile forecast should lie well above the 0.1-quantile one"
    assert (high >= low).float().mean() > 0.9
    assert task.metrics(0.1, conds, low)["coverage"] < task.metrics(0.9, conds, high)["coverage"]
    # deterministic forecaster: every copy of a forecast is the same
    assert torch.equal(low[:, 0], low[:, 1])


def test_pinball_loss_is_minimised_by_the_tau_quantile():
    torch.manual_seed(0)
    y = torch.randn(20000)
    grid = torch.linspace(-2, 2, 81)
    losses = torch.stack([pinball(torch.full_like(y, g), y, torch.tensor(0.9)).mean() for g in grid])
    assert abs(float(grid[losses.argmin()]) - float(torch.quantile(y, 0.9))) < 0.06


def test_the_task_trains_on_an_ett_csv(tmp_path):
    path = tmp_path / "ETTm2.csv"
    t = torch.arange(400, dtype=torch.float64)
    ot = (torch.sin(t / 10) + 0.01 * t).tolist()
    path.write_text("date,HUFL,OT\n" + "".join(f"2016-07-01 {i:03d},1.0,{v}\n" for i, v in enumerate(ot)))
    assert load_ett_column(str(path), "OT").shape == (400,)
    task = make_task(f"quantile[csv={path},epochs=2,hidden=8,n_eval=8,n_fit=8]", cache=TargetCache())
    assert task.training_data()[0].shape == (int(0.8 * (400 - 15 + 1)), 12)
    assert task.sample(0.5, task.eval_conditions(), 1, seed=0).shape == (8, 1, 3)


def test_bad_data_is_refused_naming_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_ett_column(str(tmp_path / "missing.csv"), "OT")
    path = tmp_path / "bad.csv"
    path.write_text("date,HUFL\n1,2\n")
    with pytest.raises(ConfigError, match=r"bad.csv has no column 'OT'; columns: date, HUFL"):
        load_ett_column(str(path), "OT")
    path.write_text("date,OT\n1,2\n2,oops\n")
    with pytest.raises(ConfigError, match="1 missing or non-numeric"):
        load_ett_column(str(path), "OT")
    with pytest.raises(ConfigError, match="Did you mean 'co2'"):
        make_task("quantile[series=co3]").training_data()
