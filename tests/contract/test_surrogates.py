"""The contract every registered surrogate must meet (hti_bench.testing), one case per check."""

import pytest

from hti_bench.harness.registry import broken_plugins, surrogate_classes
from hti_bench.testing import CHECKS, run_check

SURROGATES = surrogate_classes()


@pytest.mark.parametrize("check", list(CHECKS), ids=list(CHECKS))
@pytest.mark.parametrize("name", list(SURROGATES), ids=list(SURROGATES))
def test_contract(name, check):
    failure = run_check(check, SURROGATES[name])
    assert failure is None, f"{name} fails {check}:\n{failure}"


def test_the_three_baselines_are_registered():
    assert {"nearest-anchor", "mixture", "mccann"} <= set(SURROGATES)


def test_no_shipped_plugin_is_broken():
    assert broken_plugins() == []
