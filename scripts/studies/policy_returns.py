"""The target policies of a policy task (``cancer``, ``reacher``): closed-loop return at every λ, and
what λ changes in their behaviour. Trains what the target cache lacks.

    .venv/bin/python scripts/studies/policy_returns.py cancer
    .venv/bin/python scripts/studies/policy_returns.py "reacher[ppo_steps=40960]"

Per policy (anchors, held-out λ and their seed twins): its shaped return at its own λ (± 95 % interval over
the task's closed-loop episodes, run seed 0), and, from the same episodes scored at the lowest and highest λ
of the task, the split of the return into its base part and the λ-weighted term: cancer's NK-penalty sum,
reacher's control effort Σ‖a‖².
"""

import sys

import torch

from hti_bench.harness.registry import make_task
from hti_bench.harness.targets import TargetCache

#: What the λ-weighted term of each task's reward measures (its sum over an episode, sign flipped to ≥ 0).
TERM = {"cancer": "NK deviation", "reacher": "control effort"}


def main() -> None:
    task = make_task(sys.argv[1], cache=TargetCache())
    (lo,), (hi,) = task.anchors[0], task.anchors[-1]
    print(
        f"{task.spec}: each policy's return at its own λ, and its episodes scored at λ = {lo} and {hi} "
        f"(run seed 0, {task.config.closed_loop_episodes} episodes)"
    )
    for lam in sorted(task.anchors + task.heldout):
        seeds = (task.config.model_seed, task.twin_seed) if lam in task.heldout else (task.config.model_seed,)
        for seed in seeds:
            net = task.network(lam, seed=seed)

            def act(states, n, sd, net=net):
                return task.sample_network(net, states, n, torch.Generator().manual_seed(sd))

            own = task.closed_loop_metrics(lam, act, 0)
            at_lo, at_hi = (task.closed_loop_metrics((v,), act, 0)["return"] for v in (lo, hi))
            term = (at_lo - at_hi) / (hi - lo)  # the episodes' Σ of the λ-weighted term, negated
            base = at_lo + lo * term
            kind = "anchor" if lam in task.anchors else ("held-out" if seed == task.config.model_seed else "twin")
            print(
                f"λ={lam[0]:5.2f} {kind:8s} return {own['return']:8.2f} ± {own['return_ci95']:.2f}   base {base:8.2f}   "
                f"{TERM.get(task.name, 'λ term')} {term:7.3f}   steps {own['episode_steps']:5.1f}   "
                f"trained in {task.train_seconds(lam, seed):.0f} s"
            )


if __name__ == "__main__":
    main()
