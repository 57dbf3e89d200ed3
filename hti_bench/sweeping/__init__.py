"""Sweeps: one program per sweep run, an offline controller, and W&B's own agents for many machines.

- :mod:`hti_bench.sweeping.program` — the sweep *program*: reads its configuration from
  ``wandb.config`` (so ``wandb agent`` and ``WANDB_SWEEP_PARAM_PATH`` drive it unchanged), runs one
  (task, surrogate, parameters, seeds) and writes its rows to the results store.
- :mod:`hti_bench.sweeping.sweepfile` — loading and checking ``sweeps/*.yaml`` before anything runs.
- :mod:`hti_bench.sweeping.controller` — ``hti-bench sweep``: proposes runs with the ``sweeps``
  package (the engine W&B's servers use) and runs them in local worker processes, no server needed.
"""
