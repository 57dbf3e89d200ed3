import os

import pytest

# No test talks to W&B or writes into the user's cache.
os.environ.setdefault("WANDB_MODE", "disabled")
# CLI runs in tests stay in-process (tests/harness/test_pool.py covers worker pools).
os.environ.setdefault("HTI_BENCH_JOBS", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HTI_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "target-cache"))
    monkeypatch.delenv("HTI_BENCH_PLUGIN_PATH", raising=False)


@pytest.fixture
def tiny_moons():
    """A trained task small enough to train in about a second."""
    from hti_bench.testing.surrogates import tiny_moons_dropout

    return tiny_moons_dropout(epochs=2, n_samples=32)
