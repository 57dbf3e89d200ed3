"""Wall time of one CLOT fit, median over repeats (a benchmark, not a test).

    .venv/bin/python benchmarks/clot_fit.py PATH/moons_dropout.npz --repeats 3 \
        --spec "clot[metric=euclidean,potential=True,cost=reference,bandwidth=0.2,alpha=0.01,ctransform_iters=5]"

Data in the HTI paper's [T, N, D + 1] layout (anchors: first, middle, last λ). Prints the machine's
thread count, each repeat and the median, and appends a row to --csv if given.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hti_bench.clock import Hyperparameter
from hti_bench.data import AnchorSet
from hti_bench.registry import make_surrogate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path")
    p.add_argument("--spec", default="clot")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--csv", default=None)
    args = p.parse_args()
    z = np.load(args.path)
    data, lams, d = torch.tensor(z["data"]).float(), [float(v) for v in z["lambdas"]], int(z["y_dim"])
    labels = data[0, :, d]
    classes = sorted(set(labels.tolist()))
    idx = [0, len(lams) // 2, len(lams) - 1]
    samples = torch.stack([torch.stack([data[t, labels == c, :d] for c in classes]) for t in idx])
    anchors = AnchorSet(Hyperparameter("lambda", lams[0], lams[-1]), [lams[i] for i in idx],
                        torch.tensor(classes)[:, None].float(), samples, torch.ones(len(classes), dtype=torch.bool), True)
    times = []
    for seed in range(args.repeats):
        start = time.perf_counter()
        make_surrogate(args.spec).fit(anchors, seed=seed)
        times.append(time.perf_counter() - start)
        print(f"repeat {seed}: {times[-1]:.1f} s", flush=True)
    med = statistics.median(times)
    print(f"{args.spec} on {Path(args.path).name}: median fit {med:.1f} s over {len(times)} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.node()})")
    if args.csv:
        row = {"benchmark": "clot_fit", "spec": args.spec, "data": Path(args.path).name, "median_s": med,
               "repeats": len(times), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "machine": platform.node(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        path = Path(args.csv)
        pd.DataFrame([row]).to_csv(path, mode="a", header=not path.exists(), index=False)


if __name__ == "__main__":
    main()
