"""How much each hyperparameter of a multi-λ task moves its outputs: the evidence that both axes matter.

    .venv/bin/python scripts/studies/axis_effect.py reward-weighting-2d moons-dropout-2d

For every pair of anchors that differ along one axis only (neighbours on the design's grid lines), the
mean per-condition W₂ between their outputs, grouped by the axis that changed; beside it the seed-to-seed
floor (the network at the box's lowest corner against one trained with the next seed), the size below which
a difference is noise. Trains what the target cache lacks (the anchors and one twin).
"""

import sys
from collections import defaultdict

from hti_bench.harness.registry import make_task
from hti_bench.harness.targets import TargetCache
from hti_bench.scoring import score_panel


def main() -> None:
    for spec in sys.argv[1:] or ["reward-weighting-2d", "moons-dropout-2d"]:
        task = make_task(spec, cache=TargetCache())
        space, conds, n = task.hyperparameters, task.eval_conditions().float(), task.n_samples
        samples = {a: task.sample(a, conds, n, 11) for a in task.anchors}
        moved = defaultdict(list)
        for i, a in enumerate(task.anchors):
            for b in task.anchors[i + 1 :]:
                differ = [k for k in range(space.d) if a[k] != b[k]]
                if len(differ) == 1:
                    moved[space.names[differ[0]]].append(score_panel(samples[a], samples[b]).mean()["w2"])
        corner = task.anchors[0]
        twin = task.seed_twin_sample(corner, conds, n, 12)
        floor = score_panel(twin, samples[corner]).mean()["w2"] if twin is not None else float("nan")
        resample = score_panel(task.sample(corner, conds, n, 13), samples[corner]).mean()["w2"]
        print(f"{task.spec}: anchors {task.anchors}")
        print(f"  seed-to-seed floor W2 at {space.describe(corner)}: {floor:.3f} (resampling floor {resample:.3f})")
        for axis, values in moved.items():
            values = sorted(values)
            print(
                f"  one step along {axis}: W2 median {values[len(values) // 2]:.3f}, min {values[0]:.3f}, "
                f"max {values[-1]:.3f} over {len(values)} anchor pairs ({values[len(values) // 2] / floor:.1f}x floor)"
            )


if __name__ == "__main__":
    main()
