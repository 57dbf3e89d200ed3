"""The contracts as importable checks: what every surrogate and every task must do.

- :mod:`hti_bench.testing.surrogates`: ``check_surrogate(MySurrogate)`` and the tiny tasks the checks fit
  on (``hti-bench check NAME``, ``tests/contract/test_surrogates.py``);
- :mod:`hti_bench.testing.tasks`: ``check_task("moons-dropout[epochs=2]")`` (``hti-bench check --task SPEC``,
  ``tests/contract/test_tasks.py``).

Each check raises with a message that says what broke and how to fix it; ``check_surrogate`` and
``check_task`` run them all and return every failure, not just the first.
"""

from hti_bench.testing.surrogates import (
    CHECKS,
    OpenGaussian,
    check_surrogate,
    open_task,
    run_check,
    tiny_moons_dropout,
    tiny_task,
)
from hti_bench.testing.tasks import (
    KNOWN_CAPABILITIES,
    TASK_CHECKS,
    KeyProbe,
    TaskUnderCheck,
    check_task,
    run_task_check,
    target_key,
    target_keys_in_new_process,
)

__all__ = [
    "CHECKS",
    "KNOWN_CAPABILITIES",
    "TASK_CHECKS",
    "KeyProbe",
    "OpenGaussian",
    "TaskUnderCheck",
    "check_surrogate",
    "check_task",
    "open_task",
    "run_check",
    "run_task_check",
    "target_key",
    "target_keys_in_new_process",
    "tiny_moons_dropout",
    "tiny_task",
]
