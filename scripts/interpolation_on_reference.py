"""Score the interpolation baselines on a published HTI data set in the paper's [T, N, D+C] layout.

Validation only (the suite never needs these files). For the two-moons dropout set of the HTI paper:

    .venv/bin/python scripts/interpolation_on_reference.py path/to/moons_dropout.npz --anchors 0 5 10

reports W₂² per class (POT emd2, squared Euclidean cost), averaged over classes and held-out λ: the
paper's 'W.D.' protocol. The file holds `data` [T, N, D+C] (one categorical condition column),
`lambdas` [T] and `y_dim`.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from hti_bench.clock import Hyperparameter
from hti_bench.data import AnchorSet
from hti_bench.metrics import per_condition_wasserstein
from hti_bench.registry import make_surrogate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help=".npz with data [T, N, D+1], lambdas [T], y_dim")
    p.add_argument("--anchors", type=int, nargs="+", required=True, help="indices of the anchor λ in `lambdas`")
    p.add_argument("--surrogates", nargs="+", default=["mccann", "mixture", "nearest-anchor"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = p.parse_args()

    z = np.load(args.path)
    data, lams, d = torch.tensor(z["data"]), [float(v) for v in z["lambdas"]], int(z["y_dim"])
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
    print(f"{args.path}: anchors λ={[lams[i] for i in args.anchors]}, held out {[lams[t] for t in heldout]}, {n} samples per class")
    for name in args.surrogates:
        per_seed = []
        for seed in args.seeds:
            s = make_surrogate(name).fit(anchors, seed=seed)
            per_seed.append(np.mean([
                per_condition_wasserstein(s.sample(lams[t], conds, n, seed=seed), per_class(t)).mean()["w2sq"]
                for t in heldout
            ]))
        print(f"  {name:<15} W2^2 per class: {np.mean(per_seed):.3f} (std over {len(per_seed)} seeds {np.std(per_seed):.3f})")


if __name__ == "__main__":
    main()
