"""Fixtures shared by the tests of the best-response baselines."""

import os

import pytest

from hti_bench.harness.registry import make_task
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import build_anchor_set


@pytest.fixture(scope="module")
def ridge(tmp_path_factory):
    """The ridge task (noisy-regression), trained once per test module, and its anchor set."""
    # Module-scoped, so it sets its own cache (the autouse fixture is per test).
    os.environ["HTI_BENCH_CACHE"] = str(tmp_path_factory.mktemp("ridge-cache"))
    task = make_task("noisy-regression", cache=TargetCache())
    return task, build_anchor_set(task, seed=0)
