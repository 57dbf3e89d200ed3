"""Speed of the batched cancer simulator (a benchmark): simulated days per second.

    .venv/bin/python perf/ghaffari.py            # batch 16, 10 timed days per regime

Per action regime, on a batch of episodes stepped together (seeds 0…B−1, fresh episodes):

- ``treated``: constant (D, v_M) = (1, 1), the kind of policy PPO converges to (the day is barely stiff);
- ``random``: uniform actions in the bounds, an untrained policy's regime;
- ``untreated``: (0, 0), timed from day 25 on, once the tumour has grown: the stiffest days
  (DTRGym's own RK23 takes ~1,300 steps a day there, docs/evidence/ghaffari_spec.md §5).

Rows: ``days_per_second`` (episode-days over wall time, the numba-compiled integrator; the first
call's compilation is untimed) and ``rhs_calls_per_day``. These set the
PPO budgets of the ``cancer`` task.
"""

from __future__ import annotations

import argparse

import numpy as np
import perftools as perf

from hti_bench.tasks.control.ghaffari import ACTION_HIGH, GhaffariBatch

BENCH = "ghaffari"


def regime(name: str, batch: int, days: int) -> tuple[float, float]:
    """(episode-days per second, right-hand-side calls per episode-day) of one regime."""
    env = GhaffariBatch()
    env.reset(list(range(batch)))
    rng = np.random.default_rng(0)
    if name == "untreated":
        for _ in range(25):
            env.step(np.zeros((batch, 2)))  # untimed: let the tumour grow to where the days turn stiff
        env.rhs_calls = 0
    calls0 = env.rhs_calls

    def go() -> None:
        for _ in range(days):
            if name == "treated":
                a = np.ones((batch, 2))
            elif name == "random":
                a = rng.uniform(0, 1, (batch, 2)) * ACTION_HIGH
            else:
                a = np.zeros((batch, 2))
            env.step(a)

    sec, _, _ = perf.timed(go, 1)
    return batch * days / sec, (env.rhs_calls - calls0) / (batch * days)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--csv", default=str(perf.PERF_CSV))
    args = p.parse_args()
    warm = GhaffariBatch()
    warm.reset([0])
    warm.step(np.ones((1, 2)))  # load (or compile) the numba kernel outside the timings
    rows = []
    for name in ("treated", "random", "untreated"):
        speed, calls = regime(name, args.batch, args.days)
        case = f"{name} batch={args.batch}"
        print(f"{case}: {speed:,.1f} days/s, {calls:,.0f} RHS calls per day", flush=True)
        rows += [
            perf.row(BENCH, case, "days_per_second", speed, "days/s"),
            perf.row(BENCH, case, "rhs_calls_per_day", calls, "calls"),
        ]
    perf.record(rows, args.csv)


if __name__ == "__main__":
    main()
