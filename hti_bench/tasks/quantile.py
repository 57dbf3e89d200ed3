"""``quantile``: an MLP quantile forecaster trained with the pinball loss at level τ (the HTI paper's
forecasting experiment, §5).

Windows of 12 past values predict the next 3 (the paper's setting). Each window is made relative to
its last value and scaled by the series' typical 3-step change, so a trending series (CO₂) becomes
stationary. The first 80 % of the windows train the networks; the conditions x surrogates are scored
at are 64 windows spread over the last 20 % (plus 192 training-period windows the anchors also
cover, for surrogates that learn from many x). The output is the deterministic 3-step forecast, so
per-condition W₁ = W₂ = the Euclidean distance between the surrogate's forecast and the held-out
network's, averaged over windows; ``n_samples`` copies of each forecast are stored only because the
harness compares sample sets.

Data: the weekly Mauna Loa CO₂ series that ships inside statsmodels (no download), or any ETT-format
CSV the user has (``quantile[csv=PATH/ETTm2.csv]``, column ``OT`` by default), the paper's data set.
Task metrics: ``pinball`` (the mean pinball loss at τ of the forecast against the true future) and
``coverage`` (the share of true values below the forecast; τ for a calibrated forecaster).

λ is τ on a logit clock: for roughly Gaussian residuals the τ-quantile moves with Φ⁻¹(τ) ≈ logit(τ)/1.7.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from hti_bench.clock import Clock, HyperparameterSpace, Point
from hti_bench.errors import ConfigError
from hti_bench.task import TrainedTask, TrainedTaskConfig, option

SERIES = ("co2",)


@dataclasses.dataclass(frozen=True)
class QuantileConfig(TrainedTaskConfig):
    anchors: tuple[float, ...] = option((0.01, 0.99), "Anchor quantile levels (the paper's).")
    heldout: tuple[float, ...] = option((0.1, 0.25, 0.5, 0.75, 0.9), "Held-out quantile levels.", cache=False)
    # Two anchors leave nothing to leave out, so tuning scores its trials at these (never held out).
    validation: tuple[float, ...] = option(
        (0.05, 0.35, 0.65, 0.95), "Validation quantile levels (tuning only).", cache=False
    )
    n_samples: int = option(4, "Copies of each (deterministic) forecast.", cache=False)
    epochs: int = option(60, "Training epochs per network.")
    series: str = option("co2", "Built-in series: co2 (statsmodels' weekly Mauna Loa CO₂).")
    csv: str = option("", "Path to an ETT-format CSV (date column + value columns); overrides series.")
    column: str = option("OT", "Column of the CSV to forecast.")
    lookback: int = option(12, "Past steps the forecaster sees.")
    horizon: int = option(3, "Steps it forecasts.")
    hidden: int = option(64, "Width of the MLP's two hidden layers.")
    n_eval: int = option(64, "Evaluation windows (from the last 20 % of the series).", cache=False)
    n_fit: int = option(192, "Extra training-period windows the anchor data covers.", cache=False)
    mode: str = option(
        "transductive",
        "transductive: score n_eval windows spread over the last 20 %, the anchor "
        "data covering them too; inductive: fit on the first n_fit windows only and score the last "
        "n_eval (the paper's protocol: n_fit=1200, n_eval=180).",
        cache=False,
    )


def pinball(pred: Tensor, target: Tensor, tau: Tensor) -> Tensor:
    """Pinball (quantile) loss per element: max(τ e, (τ − 1) e), e = target − pred."""
    err = target - pred
    return torch.maximum(tau * err, (tau - 1) * err)


class Quantile(TrainedTask):
    name: ClassVar[str] = "quantile"
    description: ClassVar[str] = (
        "MLP quantile forecaster (12 → 3 steps) trained with the pinball loss at level τ (paper §5)."
    )
    Config = QuantileConfig
    in_default_suite: ClassVar[bool] = False
    hyperparameters: ClassVar[HyperparameterSpace] = HyperparameterSpace.single("tau", 0.01, 0.99, Clock.LOGIT)

    @property
    def output_dim(self) -> int:
        return int(self.config.horizon)

    @property
    def condition_dim(self) -> int:
        return int(self.config.lookback)

    # ------------------------------------------------------------------ data

    @cached_property
    def _series(self) -> np.ndarray:
        c = self.config
        if c.csv:
            values = load_ett_column(c.csv, c.column)
        else:
            if c.series not in SERIES:
                from hti_bench.errors import unknown_name_message

                raise ConfigError(unknown_name_message("series for task 'quantile'", c.series, SERIES))
            from statsmodels.datasets import co2

            frame = co2.load_pandas().data
            values = frame["co2"].interpolate().bfill().to_numpy(dtype=np.float64)  # 59 missing weeks
        need = c.lookback + c.horizon + 10
        if len(values) < need:
            raise ConfigError(f"task 'quantile': the series has {len(values)} values, fewer than the {need} needed")
        return values

    @cached_property
    def _windows(self) -> tuple[Tensor, Tensor, int]:
        """(x, y, n_train): every window relative to its last value, scaled."""
        c = self.config
        v = self._series
        width = c.lookback + c.horizon
        idx = np.arange(len(v) - width + 1)[:, None] + np.arange(width)[None, :]
        w = v[idx]
        last = w[:, c.lookback - 1 : c.lookback]
        rel = w - last
        n_train = int(0.8 * len(w))
        scale = float(np.std(rel[:n_train, c.lookback :])) or 1.0
        rel = rel / scale
        x = torch.as_tensor(rel[:, : c.lookback], dtype=torch.float32)
        y = torch.as_tensor(rel[:, c.lookback :], dtype=torch.float32)
        return x, y, n_train

    def training_data(self) -> Sequence[Tensor]:
        x, y, n_train = self._windows
        return x[:n_train], y[:n_train]

    def _spread(self, lo: int, hi: int, n: int) -> np.ndarray:
        return np.unique(np.linspace(lo, hi - 1, max(1, int(n))).round().astype(int))

    @property
    def mode(self) -> str:
        return self.config.mode

    def _eval_index(self) -> np.ndarray:
        x, _, n_train = self._windows
        if self.mode == "inductive":
            return np.arange(max(0, x.shape[0] - int(self.config.n_eval)), x.shape[0])
        return self._spread(n_train, x.shape[0], self.config.n_eval)

    def eval_conditions(self) -> Tensor:
        return self._windows[0][self._eval_index()]

    def fit_conditions(self) -> Tensor:
        x, _, n_train = self._windows
        if self.mode == "inductive":
            n_fit, n_eval = int(self.config.n_fit), int(self.config.n_eval)
            if n_fit + n_eval > x.shape[0]:
                raise ConfigError(
                    f"task 'quantile': the inductive mode fits on the first n_fit={n_fit} windows and "
                    f"scores the last n_eval={n_eval}, but the series has {x.shape[0]} windows"
                )
            return x[:n_fit]
        return x[self._spread(0, n_train, self.config.n_fit)]

    # ------------------------------------------------------------------ network and loss

    def build_network(self) -> nn.Module:
        c = self.config
        return nn.Sequential(
            nn.Linear(c.lookback, c.hidden),
            nn.ReLU(),
            nn.Linear(c.hidden, c.hidden),
            nn.ReLU(),
            nn.Linear(c.hidden, c.horizon),
        )

    def per_example_loss(self, network: nn.Module, batch: Sequence[Tensor], lam: Tensor) -> Tensor:
        """Pinball loss at each example's own τ, averaged over the forecast horizon."""
        x, y = batch[0], batch[1]
        return pinball(network(x), y, lam.reshape(-1, 1)).mean(dim=1)

    def sample_network(self, network: nn.Module, conditions: Tensor, n: int, generator: torch.Generator) -> Tensor:
        pred = network(torch.as_tensor(conditions, dtype=torch.float32))
        return pred[:, None, :].expand(-1, n, -1).clone()

    def metrics(self, lam: Point, conditions: Tensor, samples: Tensor) -> dict[str, float]:
        x, y, _ = self._windows
        ev = self.eval_conditions()
        if conditions.shape != ev.shape or not torch.equal(conditions, ev):
            return {}
        truth = y[self._eval_index()]
        forecast = samples.mean(dim=1)
        (tau,) = self.hyperparameters.check(lam)
        return {
            "pinball": float(pinball(forecast, truth, torch.tensor(tau)).mean()),
            "coverage": float((truth <= forecast).float().mean()),
        }


def load_ett_column(path: str, column: str) -> np.ndarray:
    """One column of an ETT-format CSV (``date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT``) as floats."""
    import pandas as pd

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"task 'quantile': ETT file {file} does not exist")
    try:
        frame = pd.read_csv(file)
    except Exception as err:
        raise ConfigError(f"task 'quantile': {file} cannot be read as CSV: {err}") from None
    if column not in frame.columns:
        raise ConfigError(
            f"task 'quantile': {file} has no column {column!r}; columns: {', '.join(map(str, frame.columns))}"
        )
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise ConfigError(f"task 'quantile': column {column!r} of {file} has {bad} missing or non-numeric values")
    return values
