"""The run loop: failed rows instead of crashes, resuming without duplicates, names checked first."""

import pandas as pd
import pytest

from hti_bench.errors import UnknownNameError
from hti_bench.harness import registry
from hti_bench.harness.results import KEY, ResultsStore
from hti_bench.harness.runner import run

TASK = "gaussian-path[n_samples=30]"


FAULTY = """
import math

import torch

from hti_bench.surrogate import Surrogate


class Faulty(Surrogate):
    \"\"\"Behaves like a plugin with a bug chosen by ``mode``.\"\"\"

    name = "faulty"
    name_parameters = ("mode",)

    def __init__(self, *, mode: str = "nan") -> None:
        self.mode = mode

    def fit(self, anchors, task=None, *, seed=0):
        if self.mode == "fit-crash":
            raise RuntimeError("boom in fit")
        self.anchors_ = anchors
        return self

    def sample(self, lam, conditions, n, seed):
        m, d = conditions.shape[0], self.anchors_.output_dim
        if self.mode == "nan":
            out = torch.zeros(m, n, d)
            out[0, 0, 0] = math.nan
            return out
        if self.mode == "shape":
            return torch.zeros(m, n + 1, d)
        if self.mode == "sample-crash" and lam[0] > 0.5:
            raise ZeroDivisionError("boom in sample")
        return torch.zeros(m, n, d)
"""

NEEDS_LOSS = """
from hti_bench.surrogate import Surrogate


class NeedsLoss(Surrogate):
    name = "needs-loss"
    requires = frozenset({"training_loss"})

    def fit(self, anchors, task=None, *, seed=0):
        raise AssertionError("must be skipped, never fitted, on an analytic task")

    def sample(self, lam, conditions, n, seed):
        raise AssertionError("unreachable")
"""


@pytest.fixture
def with_test_plugins(tmp_path, monkeypatch):
    """Two plugins in a plugin folder: they run sealed, like any plugin."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "faulty.py").write_text(FAULTY)
    (folder / "needs_loss.py").write_text(NEEDS_LOSS)
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(folder))
    registry.refresh()
    yield
    registry.refresh()


@pytest.mark.parametrize(
    "mode, fragment, failed_rows",
    [
        ("nan", "non-finite samples", 2),
        ("shape", "returned shape (3, 31, 2), expected (M, n, D) = (3, 30, 2)", 2),
        ("fit-crash", "fit: RuntimeError: boom in fit", 2),
        ("sample-crash", "ZeroDivisionError: boom in sample", 1),
    ],
)
def test_faulty_surrogates_become_failed_rows_and_the_run_continues(
    with_test_plugins, tmp_path, mode, fragment, failed_rows
):
    summary = run(
        tasks=[TASK], surrogates=[f"faulty[mode={mode}]", "mccann"], seeds=[0], results_dir=tmp_path, progress=False
    )
    df = summary.results
    bad = df[df["surrogate"] == f"faulty[mode={mode}]"]
    assert (bad["status"] == "failed").sum() == failed_rows
    assert all(fragment in e for e in bad.loc[bad["status"] == "failed", "error"])
    good = df[df["surrogate"] == "mccann"]
    assert (good["status"] == "ok").all() and len(good) == 2
    assert summary.rows_failed == failed_rows


def test_surrogate_needing_the_training_loss_is_skipped_with_reason(with_test_plugins, tmp_path):
    summary = run(tasks=[TASK], surrogates=["needs-loss"], seeds=[0], results_dir=tmp_path, progress=False)
    rows = summary.results
    assert (rows["status"] == "skipped").all()
    assert rows["error"].str.contains("training loss.*gaussian-path.*no network", regex=True).all()
    assert summary.leaderboard.loc[0, "status"].startswith("skipped: needs the task's training loss")


def test_rerun_skips_stored_units_and_never_duplicates(tmp_path):
    first = run(tasks=[TASK], surrogates=["mccann", "mixture"], seeds=[0, 1], results_dir=tmp_path, progress=False)
    assert first.units_run == 4 and first.units_cached == 0
    again = run(tasks=[TASK], surrogates=["mccann", "mixture"], seeds=[0, 1], results_dir=tmp_path, progress=False)
    assert again.units_run == 0 and again.units_cached == 4
    forced = run(tasks=[TASK], surrogates=["mccann"], seeds=[0], results_dir=tmp_path, force=True, progress=False)
    assert forced.units_run == 1
    df = ResultsStore(tmp_path).load()
    assert len(df) == 8 and not df.duplicated(list(KEY)).any()
    pd.testing.assert_frame_equal(
        first.results[first.results.surrogate == "mixture"].reset_index(drop=True),
        df[df.surrogate == "mixture"].reset_index(drop=True),
    )


def test_interrupted_run_resumes_the_missing_units(tmp_path):
    run(tasks=[TASK], surrogates=["mccann", "mixture"], seeds=[0], results_dir=tmp_path, progress=False)
    store = ResultsStore(tmp_path)
    store.unit_path("gaussian-path[n_samples=30]", "mixture", 0).unlink()  # as if killed before writing it
    (tmp_path / "runs" / ".half-written.csv.tmp").write_text("task,surr")  # a crash's leftover temp file
    resumed = run(tasks=[TASK], surrogates=["mccann", "mixture"], seeds=[0], results_dir=tmp_path, progress=False)
    assert resumed.units_run == 1 and resumed.units_cached == 1
    assert len(store.load()) == 4


def test_unknown_names_fail_before_any_work(tmp_path):
    with pytest.raises(UnknownNameError, match="Did you mean 'mixture'"):
        run(tasks=[TASK], surrogates=["mccann", "mixtur"], results_dir=tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()


def test_same_seed_reproduces_scores(tmp_path):
    a = run(tasks=[TASK], surrogates=["mixture"], seeds=[3], results_dir=tmp_path / "a", progress=False).results
    b = run(tasks=[TASK], surrogates=["mixture"], seeds=[3], results_dir=tmp_path / "b", progress=False).results
    assert a["w2"].tolist() == b["w2"].tolist()
    c = run(tasks=[TASK], surrogates=["mixture"], seeds=[4], results_dir=tmp_path / "c", progress=False).results
    assert a["w2"].tolist() != c["w2"].tolist()


def test_trained_tasks_report_the_seed_to_seed_floor(tmp_path):
    summary = run(
        tasks=["noisy-regression[epochs=20]", TASK],
        surrogates=["mccann"],
        seeds=[0],
        results_dir=tmp_path / "res",
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    rows = summary.results
    trained = rows[rows.task.str.startswith("noisy-regression")]
    # deterministic outputs: the finite-sample floor is 0, two training seeds still disagree
    assert (trained.floor_w2 == 0).all()
    assert (trained.seed_floor_w2 > 0).all() and trained.seed_floor_w2.notna().all()
    assert rows[rows.task == TASK].seed_floor_w2.isna().all()
    # the twins are cached next to the networks: anchors + held-out + one twin per held-out λ
    assert summary.targets_trained == 3 + 2 + 2
    again = run(
        tasks=["noisy-regression[epochs=20]"],
        surrogates=["mccann"],
        seeds=[0],
        results_dir=tmp_path / "res2",
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert again.targets_trained == 0
