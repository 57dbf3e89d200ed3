"""Sealed units: every surrogate's code runs in a sandbox process that cannot reach what it is scored against.

Two sides. The *scorer* (the run's process, a worker of ``--jobs N``, the sweep program) holds the task,
the held-out networks, their samples and the scoring code, and never imports a surrogate's code. The
*sandbox* (a process forked from a pre-warmed template for one unit, :mod:`~hti_bench.harness.sandbox.template`)
imports the one surrogate it runs, fits and samples it, and holds only anchor material: the anchor set,
the task's metadata, the anchor oracle (answered by the scorer, which runs anchor networks only) and,
for a surrogate that declares capabilities, an anchor-only copy of the task. It confines itself
(:mod:`~hti_bench.harness.sandbox.confine`): no reading of the target cache, the results or the home folder, no
network. Answers come back as plain arrays, checked (:mod:`~hti_bench.harness.sandbox.wire`).

- :mod:`~hti_bench.harness.sandbox.outside`: the scorer's side (:class:`~hti_bench.harness.sandbox.outside.Sandbox`,
  the surrogate ``evaluate`` scores, :func:`~hti_bench.harness.sandbox.outside.open_surrogate`);
- :mod:`~hti_bench.harness.sandbox.inside`: the sandbox's side;
- :mod:`~hti_bench.harness.sandbox.lookup`: surrogate names and specs, resolved in sandboxes.

``--unsealed`` (environment ``HTI_BENCH_UNSEALED=1``) runs surrogates in the scorer's process, for
debugging a plugin; its rows say ``sealed = false``. docs/design.md ("Sealed units") has the threat model.
"""
