"""Score any surrogates on a published HTI data set in the paper's [T, N, D+C] layout.

Validation only (the suite never needs these files). For the two-moons dropout set of the HTI paper:

    .venv/bin/python scripts/surrogates_on_reference.py path/to/moons_dropout.npz --anchors 0 5 10 \
        --surrogates mccann mixture nearest-anchor cfm direct lambda-flow --csv docs/reference_moons.csv

reports, per surrogate, W₂² per class (POT emd2, squared Euclidean cost) averaged over classes and
held-out λ — the paper's 'W.D.' protocol for CLOT — and W₂² on the pooled classes, the protocol of the
authors' CFM and Direct baselines in their development code (Direct 0.450, CFM 0.397 W₂², ± standard
error over 20 models; pooling both moons favours them), with mean and 95 % t-interval over seeds and the
median fit time. The file holds `data` [T, N, D+C] (one categorical condition column), `lambdas` [T]
and `y_dim`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hti_bench.anchors import AnchorSet
from hti_bench.clock import Hyperparameter
from hti_bench.harness.registry import make_surrogate
from hti_bench.scoring import per_condition_wasserstein, wasserstein


def ci95(values: np.ndarray) -> float:
    from scipy import stats

    if len(values) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help=".npz with data [T, N, D+1], lambdas [T], y_dim")
    p.add_argument("--anchors", type=int, nargs="+", required=True, help="indices of the anchor λ in `lambdas`")
    p.add_argument("--surrogates", nargs="+", default=["mccann", "mixture", "nearest-anchor"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--csv", default=None, help="write one row per (surrogate, seed) here")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    z = np.load(args.path)
    data, lams, d = torch.tensor(z["data"]).float(), [float(v) for v in z["lambdas"]], int(z["y_dim"])
    if data.ndim != 3 or data.shape[2] != d + 1:
        raise SystemExit(f"{args.path}: expected data [T, N, D+1] with one condition column, got {tuple(data.shape)}")
    labels = data[0, :, d]
    classes = sorted(set(labels.tolist()))
    sizes = {int((labels == c).sum()) for c in classes}
    if len(sizes) != 1:
        raise SystemExit(f"{args.path}: classes have different sizes {sizes}; this script needs equal ones")

    def per_class(t: int) -> torch.Tensor:
        return torch.stack([data[t, labels == c, :d] for c in classes])

    conds = torch.tensor(classes, dtype=torch.float32)[:, None]
    hp = Hyperparameter("lambda", lams[0], lams[-1])
    anchors = AnchorSet(hp, [lams[i] for i in args.anchors], conds, torch.stack([per_class(i) for i in args.anchors]),
                        torch.ones(len(classes), dtype=torch.bool), categorical=True)
    heldout = [t for t in range(len(lams)) if t not in args.anchors and lams[args.anchors[0]] < lams[t] < lams[args.anchors[-1]]]
    n = sizes.pop()
    print(f"{args.path}: anchors λ={[lams[i] for i in args.anchors]}, held out {[lams[t] for t in heldout]}, "
          f"{n} samples per class, {torch.get_num_threads()} threads")
    rows = []
    for name in args.surrogates:
        for seed in args.seeds:
            start = time.perf_counter()
            s = make_surrogate(name).fit(anchors, seed=seed)
            fit = time.perf_counter() - start
            per, pooled = [], []
            for t in heldout:
                pred, ref = s.sample(lams[t], conds, n, seed=seed), per_class(t)
                per.append(per_condition_wasserstein(pred, ref).mean()["w2sq"])
                pooled.append(wasserstein(pred.reshape(-1, d), ref.reshape(-1, d), p=2) ** 2)
            rows.append({"surrogate": s.spec, "seed": seed, "w2sq_per_class": float(np.mean(per)),
                         "w2sq_pooled": float(np.mean(pooled)), "fit_seconds": fit})
            if args.csv:  # after every fit, atomically, so a long run loses nothing when interrupted
                Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).to_csv(Path(args.csv).with_suffix(".tmp"), index=False)
                Path(args.csv).with_suffix(".tmp").replace(args.csv)
        g = pd.DataFrame([r for r in rows if r["surrogate"] == s.spec])
        print(f"  {s.spec:<40} W2^2 per class {g.w2sq_per_class.mean():.3f} ± {ci95(g.w2sq_per_class.to_numpy()):.3f}"
              f"   pooled {g.w2sq_pooled.mean():.3f} ± {ci95(g.w2sq_pooled.to_numpy()):.3f}"
              f"   fit {g.fit_seconds.median():.1f} s (median of {len(g)})", flush=True)


if __name__ == "__main__":
    main()
