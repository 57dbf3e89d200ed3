"""The HTI paper's forecasting experiment on its own data: CLOT (the port) and McCann on ETTm2 quantiles.

    python scripts/reproduce_quantile.py PATH/quantile_data_new.pt [--specs clot ...] [--seeds 0 1 2] [--csv FILE]

(``--csv`` merges the rows into the file.)

``quantile_data_new.pt`` ships in the authors' repository (``NLOT/data/``; not needed by the suite, not
shipped with it): ``[7, 1380, 15]``, the MLP forecasters at τ = 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99 on 1,380
sliding windows, each row ``[history (12) | forecast (3)]`` in raw ETTm2 "OT" units. As the paper: anchors
τ = 0.01 and 0.99, one interval; the surrogate is queried at windows 1200–1379 and scored by the MSE against
the τ network's forecast (mean over the 3 steps and the windows, then over the 5 held-out τ; the paper's
K_θ − Û 0.608, K_I − Û 0.572 in the authors' development runs). The surrogate is fitted on every window's
anchor forecasts (a deployed anchor network can be run on any window; the paper's CLOT trained on
windows 0–1199 only). Each fit is read on two clocks: the reference's, s = (τ − 0.01) / 0.98 (``identity``),
and the suite's ``logit``; with one interval the clock does not enter the fit. ``mean distance`` is the
suite's W₂ for a deterministic output.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hti_bench.anchors import AnchorSet
from hti_bench.clock import Clock, Hyperparameter
from hti_bench.harness.registry import make_surrogate

TAUS = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
FIRST_EVAL = 1200


def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.load(path, map_location="cpu", weights_only=False)
    data = torch.as_tensor(data, dtype=torch.float32)
    if data.shape[0] != len(TAUS) or data.shape[2] != 15:
        raise SystemExit(
            f"{path}: expected [7, N, 15] (τ × windows × [history 12 | forecast 3]), got {tuple(data.shape)}"
        )
    return data[0, :, :12], data[:, :, 12:]  # conditions (N, 12), forecasts (7, N, 3)


def scores(pred: torch.Tensor, true: torch.Tensor) -> tuple[float, float]:
    return float(((pred - true) ** 2).mean()), float((pred - true).norm(dim=-1).mean())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", type=Path)
    p.add_argument("--specs", nargs="+", default=["clot"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--csv", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    x, y = load(args.path)
    n = x.shape[0]
    mask = torch.arange(n) >= FIRST_EVAL
    # Some windows repeat an earlier window's history (and so its forecasts): one condition row each.
    rows_x, inverse = torch.unique(x, dim=0, return_inverse=True)
    first = torch.full((len(rows_x),), n, dtype=torch.long).scatter_reduce(0, inverse, torch.arange(n), "amin")
    eval_rows = torch.zeros(len(rows_x), dtype=torch.bool).index_fill(0, inverse[mask], True)
    anchors = AnchorSet(
        Hyperparameter("tau", 0.01, 0.99, Clock.LOGIT),
        (0.01, 0.99),
        rows_x,
        y[[0, -1]][:, first, None, :],
        eval_rows,
        categorical=False,
    )
    held = [i for i, t in enumerate(TAUS) if 0.01 < t < 0.99]
    clocks = {c: Hyperparameter("tau", 0.01, 0.99, c) for c in (Clock.IDENTITY, Clock.LOGIT)}
    rows = []

    def frac(clock: Clock, tau: float) -> float:
        hp = clocks[clock]
        return (hp.to_time(tau) - hp.to_time(0.01)) / (hp.to_time(0.99) - hp.to_time(0.01))

    lo, hi = y[0][mask], y[-1][mask]
    for clock in clocks:
        mse, dist = zip(
            *[scores((1 - frac(clock, TAUS[i])) * lo + frac(clock, TAUS[i]) * hi, y[i][mask]) for i in held]
        )
        rows.append(
            {
                "spec": "mccann",
                "seed": None,
                "clock": clock.value,
                "mse": np.mean(mse),
                "mean_distance": np.mean(dist),
                "fit_seconds": 0.0,
            }
        )
        print(
            f"mccann on the {clock.value} clock: MSE {np.mean(mse):.3f}, mean distance {np.mean(dist):.3f}", flush=True
        )
    for spec in args.specs:
        for seed in args.seeds:
            model = make_surrogate(spec)
            start = time.perf_counter()
            model.fit(anchors, seed=seed)
            seconds = time.perf_counter() - start
            for clock in clocks:
                # The query λ whose logit-clock fraction is this clock's fraction of τ: the same path point.
                hp = anchors.space.axis
                out = []
                for i in held:
                    lam = hp.from_time(hp.to_time(0.01) + frac(clock, TAUS[i]) * (hp.to_time(0.99) - hp.to_time(0.01)))
                    out.append(scores(model.sample((lam,), x[mask], 1, seed)[:, 0], y[i][mask]))
                mse, dist = zip(*out)
                rows.append(
                    {
                        "spec": spec,
                        "seed": seed,
                        "clock": clock.value,
                        "mse": np.mean(mse),
                        "mean_distance": np.mean(dist),
                        "fit_seconds": seconds,
                    }
                )
                print(
                    f"{spec} seed {seed} on the {clock.value} clock: MSE {np.mean(mse):.3f}, mean distance "
                    f"{np.mean(dist):.3f} (fit {seconds:.0f} s)",
                    flush=True,
                )
    if args.csv:  # merged into what the file holds: a (spec, seed, clock) row measured again replaces the old one
        frame = pd.DataFrame(rows)
        if args.csv.exists():
            frame = pd.concat([pd.read_csv(args.csv), frame], ignore_index=True)
        frame = frame.drop_duplicates(["spec", "seed", "clock"], keep="last")
        tmp = args.csv.with_suffix(".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
