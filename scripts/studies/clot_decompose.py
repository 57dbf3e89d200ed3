"""Where CLOT's error on a deterministic task comes from: the map's endpoint, or the path's shape.

    python scripts/studies/clot_decompose.py [--task quantile] [--spec clot] [--seeds 0 1 2] [--csv FILE]

CLOT never reads the upper anchor's output at a query condition: it predicts it, T_k(y_k | x), and reads
its answer off a path from y_k to that prediction. On a task whose outputs are deterministic (one point
per condition, so W₁ = W₂ = the distance between the points) its held-out error therefore splits into
two measurable parts, each against McCann (the straight line between the two anchors' own outputs on the
task's clock, exact endpoints):

- ``endpoint_error``: mean distance between T_k(y_k | x) and the upper anchor's output, at the eval
  conditions (the map's error, which no path shape removes);
- ``straight_to_own_endpoint``: the straight line to CLOT's own endpoint, read at the held-out times
  (what the map's error alone costs);
- ``path_to_true_endpoint``: CLOT's own path (its amortised spline under its potential) between the two
  anchors' true outputs (what the path's shape alone costs; = McCann for a straight path);
- ``w2``: CLOT's held-out score, as the harness computes it.

One interval (two anchors) only. Fits run with one torch thread, so a seed's numbers repeat exactly.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hti_bench.harness.registry import make_surrogate, make_task
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import draw_inputs


def decompose(task_spec: str, spec: str, seed: int) -> dict[str, float]:
    task = make_task(task_spec, cache=TargetCache())
    inputs = draw_inputs(task, seed)
    a = inputs.anchors
    if a.n_anchors != 2:
        raise SystemExit(f"{task_spec}: {a.n_anchors} anchors; the decomposition is for one interval (two anchors)")
    if not bool((a.samples - a.samples[:, :, :1]).abs().max() < 1e-6):
        raise SystemExit(f"{task_spec}: outputs are not deterministic (the samples of a condition differ)")
    hp = a.space.axis
    t0, t1 = hp.to_time(a.lambdas[0][0]), hp.to_time(a.lambdas[1][0])
    cond = a.conditions[a.eval_mask]
    y0, y1 = a.samples[0][a.eval_mask][:, 0], a.samples[1][a.eval_mask][:, 0]

    def dist(p: torch.Tensor, q: torch.Tensor) -> float:
        return float((p - q).norm(dim=-1).mean())

    clot = make_surrogate(spec)
    start = time.perf_counter()
    clot.fit(a, seed=seed)
    seconds = time.perf_counter() - start
    end = clot.sample(hp.from_time(t0 + (1 - 1e-4) * (t1 - t0)), cond, 1, 0)[:, 0]
    with torch.no_grad():  # CLOT's path family between the true endpoints, in its standardised units
        z0, z1 = (y0 - clot.y_mean_) / clot.y_scale_, (y1 - clot.y_mean_) / clot.y_scale_
        x = clot.encoder_(cond)
        phi = clot._phi(z0, z1, x) if clot.curved_ else z0.new_zeros(z0.shape[0], clot.spline_nodes, z0.shape[1])
    w2, straight, path, mccann = [], [], [], []
    for ref in inputs.references:
        s = (hp.to_time(ref.lam[0]) - t0) / (t1 - t0)
        truth = ref.samples[:, 0]
        w2.append(dist(clot.sample(ref.lam, cond, 1, 0)[:, 0], truth))
        straight.append(dist((1 - s) * y0 + s * end, truth))
        with torch.no_grad():
            q = torch.maximum(torch.minimum(clot.path_.at(z0, z1, phi, s), clot.hi_), clot.lo_)
        path.append(dist(q * clot.y_scale_ + clot.y_mean_, truth))
        mccann.append(dist((1 - s) * y0 + s * y1, truth))
    return {
        "task": task_spec,
        "spec": spec,
        "seed": seed,
        "w2": float(np.mean(w2)),
        "endpoint_error": dist(end, y1),
        "straight_to_own_endpoint": float(np.mean(straight)),
        "path_to_true_endpoint": float(np.mean(path)),
        "mccann_w2": float(np.mean(mccann)),
        "fit_seconds": seconds,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="quantile")
    p.add_argument("--spec", nargs="+", default=["clot"], help="CLOT specs to decompose")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--csv", type=Path, help="append the rows to this CSV (rows already there are kept)")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for spec in args.spec:
        for seed in args.seeds:
            row = decompose(args.task, spec, seed)
            rows.append(row)
            print(
                f"{spec} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)),
                flush=True,
            )
    if args.csv:
        old = pd.read_csv(args.csv) if args.csv.exists() else pd.DataFrame()
        tmp = args.csv.with_suffix(".tmp")
        pd.concat([old, pd.DataFrame(rows)], ignore_index=True).to_csv(tmp, index=False)
        tmp.replace(args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
