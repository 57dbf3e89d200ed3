"""The contracts as importable checks: what every surrogate and every task must do.

- :mod:`hti_bench.testing.surrogates`: ``check_surrogate(MySurrogate)`` and the tiny tasks the checks fit
  on (``hti-bench check NAME``, ``tests/contract/test_surrogates.py``);
- :mod:`hti_bench.testing.tasks`: ``check_task("moons-dropout[epochs=2]")`` (``hti-bench check --task SPEC``,
  ``tests/contract/test_tasks.py``).

Each check raises with a message that says what broke and how to fix it; ``check_surrogate`` and
``check_task`` run them all and return every failure, not just the first.
"""

from hti_bench.testing.surrogates import CHECKS, check_surrogate, run_check
from hti_bench.testing.tasks import TASK_CHECKS, TaskUnderCheck, check_task, run_task_check

# The entry points; the tiny tasks and the cache-key probes are imported from their modules.
__all__ = ["CHECKS", "TASK_CHECKS", "TaskUnderCheck", "check_surrogate", "check_task", "run_check", "run_task_check"]
