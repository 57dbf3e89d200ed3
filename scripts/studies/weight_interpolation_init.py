"""Does weight interpolation depend on the anchors sharing an initialisation?

The suite trains every λ's network from one seed (``model_seed``), so its anchors share their
initialisation and data order. This script scores ``weight-interpolation`` (W₂ at every held-out λ,
seeds of the evaluation draws 0–2) four ways on each trained task:

- *shared init*: the suite's anchors, as the leaderboard sees them;
- *distinct inits*: anchor k trained from training seed 100 + k instead (another initialisation and
  data order per anchor; the held-out networks are the suite's own);

each without and with weight matching (``align=True``). Beside them: ``mccann`` on the same anchors'
outputs, the reference an outputs-only user has.

    .venv/bin/python scripts/studies/weight_interpolation_init.py                 # every trained task
    .venv/bin/python scripts/studies/weight_interpolation_init.py -t moons-dropout

Networks are trained into the target cache (``--cache``) as needed. Rows go to
``results/weight_interpolation_init.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

from hti_bench.harness.registry import make_surrogate, make_task
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import build_anchor_set
from hti_bench.scoring import per_condition_wasserstein
from hti_bench.task import TrainedTask
from hti_bench.view import TaskView

TRAINED = ("moons-dropout", "quantile", "beta-vae", "reward-weighting", "noisy-regression")


class DistinctInitView:
    """A TaskView whose anchor networks come from other training seeds (one per anchor)."""

    def __init__(self, task: TrainedTask, seeds: dict[float, int]) -> None:
        self._view = TaskView(task, frozenset({"architecture"}))
        self._task, self._seeds = task, seeds

    def anchor_network(self, lam: tuple[float, ...]):
        net = self._task.build_network()
        net.load_state_dict(self._task.network(lam, seed=self._seeds[tuple(lam)]).state_dict())
        return net.eval()

    def __getattr__(self, name):
        return getattr(self._view, name)


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(per_condition_wasserstein(a, b).mean()["w2"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-t", "--task", action="append", help="Trained task (repeatable; default: all).")
    p.add_argument("--cache", default=None, help="Target cache (default $HTI_BENCH_CACHE).")
    p.add_argument(
        "--csv", default=str(Path(__file__).resolve().parents[2] / "results" / "weight_interpolation_init.csv")
    )
    args = p.parse_args(argv)
    rows = []
    for spec in args.task or TRAINED:
        task = make_task(spec, cache=TargetCache(args.cache))
        seeds = {lam: 100 + k for k, lam in enumerate(task.anchors)}
        conds = task.eval_conditions()
        for seed in (0, 1, 2):
            anchors = build_anchor_set(task, seed=seed)
            views = {"shared": TaskView(task, frozenset({"architecture"})), "distinct": DistinctInitView(task, seeds)}
            for init, view in views.items():
                for align in (False, True):
                    s = make_surrogate(f"weight-interpolation[align={align}]").fit(anchors, view, seed=seed)
                    for lam in task.heldout:
                        truth = task.sample(lam, conds, task.n_samples, seed=1000 + seed)
                        rows.append(
                            {
                                "task": task.spec,
                                "init": init,
                                "align": align,
                                "seed": seed,
                                "lam": lam[0],
                                "w2": distance(s.sample(lam, conds, task.n_samples, seed=seed), truth),
                            }
                        )
            mccann = make_surrogate("mccann").fit(anchors)
            for lam in task.heldout:
                truth = task.sample(lam, conds, task.n_samples, seed=1000 + seed)
                rows.append(
                    {
                        "task": task.spec,
                        "init": "shared",
                        "align": "mccann",
                        "seed": seed,
                        "lam": lam[0],
                        "w2": distance(mccann.sample(lam, conds, task.n_samples, seed=seed), truth),
                    }
                )
        print(f"{task.spec}: done", flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.csv, index=False)
    table = frame.assign(align=frame["align"].astype(str)).pivot_table(
        index="task", columns=["init", "align"], values="w2", aggfunc="mean"
    )
    print(table.round(3).to_string())
    print(f"rows written to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
