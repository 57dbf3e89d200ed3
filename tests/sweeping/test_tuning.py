"""Leak-free tuning: the validation folds, the clock as a harness choice, the search spaces, the tuned
track (equal to a plain run of the chosen configuration), resuming, and the sweep that runs it."""

import math
from typing import ClassVar

import pytest
import torch
import yaml

from hti_bench.errors import ConfigError, LeakError
from hti_bench.harness.registry import make_surrogate, make_task, surrogate_classes
from hti_bench.harness.results import ResultsStore
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import evaluate
from hti_bench.surrogate import Surrogate
from hti_bench.sweeping import tuning
from hti_bench.sweeping.tuning import Fold, fold_task, search_space, tune, tuned_unit, validation_folds
from hti_bench.tasks.gaussian_path import GaussianPath

SMALL = "gaussian-path[n_samples=24]"


# ------------------------------------------------------------------------------------------ the folds


def test_three_anchors_leave_the_interior_one_out_and_four_give_two_folds():
    assert validation_folds(make_task("gaussian-path")) == (Fold(((0.0,), (1.0,)), ((0.5,),)),)
    four = make_task("gaussian-path[anchors=(0.0,0.4,0.6,1.0),heldout=(0.25,0.75)]")
    assert validation_folds(four) == (
        Fold(((0.0,), (0.6,), (1.0,)), ((0.4,),)),
        Fold(((0.0,), (0.4,), (1.0,)), ((0.6,),)),
    )


def test_two_anchors_use_the_tasks_validation_lambdas_or_say_what_to_do():
    task = make_task("gaussian-path[anchors=(0.0,1.0),heldout=(0.25,0.75),validation=(0.4,0.6)]")
    assert validation_folds(task) == (Fold(((0.0,), (1.0,)), ((0.4,), (0.6,))),)
    fold = fold_task(task, validation_folds(task)[0])
    assert fold.anchors == ((0.0,), (1.0,)) and fold.heldout == ((0.4,), (0.6,)) and fold.validation == ()
    # a fold's name writes one hyperparameter's λ as bare numbers, as it always has
    assert "anchors=(0.0, 1.0)" in fold.spec and "heldout=(0.4, 0.6)" in fold.spec
    with pytest.raises(ConfigError, match="declares no validation"):
        validation_folds(make_task("gaussian-path[anchors=(0.0,1.0),heldout=(0.25,0.75)]"))
    # A task with 3 anchors may add validation λ: one more fold, on all anchors.
    both = make_task("gaussian-path[validation=(0.1,0.9)]")
    assert validation_folds(both) == (
        Fold(((0.0,), (1.0,)), ((0.5,),)),
        Fold(((0.0,), (0.5,), (1.0,)), ((0.1,), (0.9,))),
    )
    # The quantile task (2 anchors, the paper's) declares its own.
    assert validation_folds(make_task("quantile"))[0].validation == ((0.05,), (0.35,), (0.65,), (0.95,))


@pytest.mark.parametrize(
    "validation, message", [((0.25,), "also an anchor or a held-out"), ((1.0,), "strictly between")]
)
def test_validation_lambdas_never_coincide_with_held_out_or_anchors(validation, message):
    with pytest.raises(ConfigError, match=message):
        make_task(f"gaussian-path[anchors=(0.0,1.0),heldout=(0.25,0.75),validation={validation}]")


# ------------------------------------------------------------------------------------------ no leakage


def test_tuning_never_samples_a_held_out_lambda(monkeypatch, tmp_path):
    """The held-out networks are made unavailable during tuning: tuning still completes."""
    task = make_task(SMALL)
    real = GaussianPath.sample

    def guarded(self, lam, conditions, n, seed):
        if any(math.isclose(lam[0], h[0]) for h in task.heldout):
            raise LeakError(f"held-out λ={lam} reached during tuning")
        return real(self, lam, conditions, n, seed)

    monkeypatch.setattr(GaussianPath, "sample", guarded)
    study = tune(task, "mccann", trials=3, results_dir=tmp_path)
    assert [t.status for t in study.trials] == ["ok"] * len(study.trials) and len(study.trials) == 3
    # The guard is on the right door: scoring the tuned choice does need the held-out λ.
    with pytest.raises(LeakError):
        tuned_unit(task, study, 0, ResultsStore(tmp_path))


def test_a_fold_task_refuses_the_held_out_networks(tmp_path):
    task = make_task("noisy-regression", cache=TargetCache(tmp_path))
    fold = fold_task(task, validation_folds(task)[0])
    with pytest.raises(LeakError, match="held-out"):
        fold.network(task.heldout[0])


# ------------------------------------------------------------------------------------------ the clock


class ClockProbe(Surrogate):
    """Records the clock the harness handed it."""

    name: ClassVar[str] = "clock-probe"
    seen: ClassVar[list] = []

    def fit(self, anchors, task=None, *, seed=0):
        ClockProbe.seen.append((anchors.space.axis.clock.value, task.hyperparameters.axis.clock.value, anchors.times))
        self.anchors_ = anchors
        return self

    def sample(self, lam, conditions, n, seed):
        k, _ = self.anchors_.locate(lam)
        return self.anchors_.samples[k][self.anchors_.index_of(conditions)][:, :n]


def test_the_clock_is_applied_by_the_harness_and_recorded():
    ClockProbe.seen.clear()
    probe = ClockProbe()
    probe.clock = "logit"
    result = evaluate(make_task(SMALL), probe, 0)
    clock, view_clock, times = ClockProbe.seen[0]
    assert clock == view_clock == "logit" and times[1] == 0.0 and times[0] == pytest.approx(-times[2])
    assert result.status == "ok" and {r["clock"] for r in result.rows} == {"logit"}
    assert result.surrogate == "clock-probe[clock=logit]"


def test_a_clock_that_cannot_read_the_range_skips_with_the_reason_and_bad_names_fail_early(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(size=(3, 60, 2)), np.zeros((3, 60, 1))], axis=2)
    np.savez(tmp_path / "signed.npz", data=data, lambdas=np.array([-1.0, 0.0, 1.0]), y_dim=2)
    task = make_task(f"tensor[path={tmp_path / 'signed.npz'},anchors=(-1.0,1.0)]")
    skipped = evaluate(task, "mccann[clock=log]", 0)
    assert skipped.status == "skipped" and "cannot use the log clock" in skipped.error
    assert [c.value for c in task.hyperparameters.axis.clocks()] == ["identity"]
    assert make_surrogate("mccann[clock=logit]").spec == "mccann[clock=logit]"
    with pytest.raises(ConfigError, match="Did you mean 'log'"):
        make_surrogate("mccann[clock=logg]")
    penalty = make_task("reward-weighting").hyperparameters.axis
    assert [c.value for c in penalty.clocks()] == ["identity", "log"]  # logit cannot read [0, 10]


def test_nearest_anchor_on_a_logit_clock_picks_other_anchors():
    """The moons-dropout anchors 0 / 0.5 / 0.99: on the identity clock λ = 0.8 is nearest 0.99; on the
    logit clock (λ = 0 read as 0.00099) every held-out λ in (0.1, 0.9) is nearest 0.5."""
    hp = make_task("moons-dropout").hyperparameters.axis
    logit = hp.with_clock("logit")
    times = [logit.to_time(a) for a in (0.0, 0.5, 0.99)]
    for lam in (0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9):
        t = logit.to_time(lam)
        assert min(range(3), key=lambda k: abs(times[k] - t)) == 1
    assert abs(hp.to_time(0.8) - 0.99) < abs(hp.to_time(0.8) - 0.5)


# ------------------------------------------------------------------------------------------ search spaces


def test_every_surrogate_declares_a_search_space_the_engine_accepts_and_that_builds():
    from hti_bench.sweeping.sweepfile import import_sweeps

    sweeps = import_sweeps()
    task = make_task("gaussian-path")
    for name, cls in surrogate_classes().items():
        assert set(cls.search_space) <= set(cls.default_params()), name
        assert "clock" not in cls.search_space and "steps" not in cls.search_space, name
        space = search_space(task, name)
        assert space["clock"] == {"values": ["identity", "log", "logit"]}
        config = {"method": "random", "metric": {"name": "score", "goal": "minimize"}, "parameters": space}
        assert not sweeps.schema_violations_from_proposed_config(config), name
        for key, spec in cls.search_space.items():
            for value in spec.get("values", [spec.get("min"), spec.get("max")]):
                tuning.trial_spec(task, name, {key: value})  # raises for a value the surrogate refuses


def test_parameters_fixed_in_the_name_are_not_searched():
    task = make_task("gaussian-path")
    assert "matcher" not in search_space(task, "cfm[matcher=sb]") and "lr" in search_space(task, "cfm[matcher=sb]")
    assert search_space(task, "mccann[clock=identity]") == {}
    # Parameters a name always shows (name_parameters) are searched when at their default.
    canonical = make_surrogate("clot").spec
    assert canonical == "clot[metric=euclidean,potential=True]"
    assert {"metric", "potential", "lr", "clock"} <= set(search_space(task, canonical))
    assert "matcher" in search_space(task, make_surrogate("cfm").spec)
    assert tuning.trial_spec(task, canonical, {"metric": "learned"}) == "clot[metric=learned,potential=True]"


# ------------------------------------------------------------------------------------------ the tuned track


def test_tuned_rows_equal_a_plain_run_of_the_chosen_configuration(tmp_path):
    task = make_task(SMALL)
    study = tune(task, "transport-spline", trials=8, results_dir=tmp_path)
    # A space of 2 boundaries × 3 clocks is enumerated: 6 configurations, the default among them.
    assert len(study.trials) == 6 and study.trials[0].spec == "transport-spline"
    assert study.best.score == min(t.score for t in study.trials)
    rows = tuned_unit(task, study, 1, ResultsStore(tmp_path))
    plain = evaluate(task, study.best.spec, 1).rows
    assert [r["w2"] for r in rows] == pytest.approx([r["w2"] for r in plain], abs=0, rel=0)
    assert {(r["track"], r["surrogate"], r["config"]) for r in rows} == {("tuned", "transport-spline", study.best.spec)}
    assert rows[0]["tuning_trials"] == 6 and rows[0]["tuning_score"] == study.best.score
    stored = ResultsStore(tmp_path).load()
    assert set(stored["track"]) == {"tuned"}  # trial units live in tuning/, not in the leaderboard's store


def test_tuning_resumes_after_a_kill_without_refitting_or_changing_its_choice(tmp_path, monkeypatch):
    task = make_task(SMALL)
    done = []

    def killed_after_two(trial):
        done.append(trial.spec)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(
            task,
            "cfm[steps=20,batch_size=32,hidden=(16,16)]",
            trials=4,
            results_dir=tmp_path,
            on_trial=killed_after_two,
        )
    import hti_bench.harness.unit as unit

    fits = []
    real_evaluate = unit.evaluate
    monkeypatch.setattr(unit, "evaluate", lambda *a, **k: fits.append(1) or real_evaluate(*a, **k))
    resumed = tune(task, "cfm[steps=20,batch_size=32,hidden=(16,16)]", trials=4, results_dir=tmp_path)
    assert [t.spec for t in resumed.trials[:2]] == done and len(fits) == 2  # only trials 3 and 4 were fitted
    monkeypatch.undo()
    fresh = tune(task, "cfm[steps=20,batch_size=32,hidden=(16,16)]", trials=4, results_dir=tmp_path / "fresh")
    assert [(t.spec, t.score) for t in fresh.trials] == [(t.spec, t.score) for t in resumed.trials]
    assert all(t.spec.startswith("cfm[") for t in fresh.trials) and len({t.spec for t in fresh.trials}) == 4


def test_a_trial_that_crashes_is_a_failed_trial_and_tuning_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("HTI_BENCH_UNSEALED", "1")  # the class patched below runs in this process
    task = make_task(SMALL)
    cls = surrogate_classes()["mccann"]
    real = cls.fit

    def fit(self, anchors, view=None, *, seed=0):
        if self.clock == "log":
            raise RuntimeError("boom")
        return real(self, anchors, view, seed=seed)

    monkeypatch.setattr(cls, "fit", fit)
    study = tune(task, "mccann", trials=8, results_dir=tmp_path)
    states = {t.spec: t.status for t in study.trials}
    assert states["mccann[clock=log]"] == "failed" and states["mccann"] == "ok"
    assert study.best is not None and study.best.spec != "mccann[clock=log]"


# ------------------------------------------------------------------------------------------ the sweep


def test_hti_bench_tune_writes_both_tracks_side_by_side(tmp_path, capsys):
    from hti_bench.cli import main

    results = tmp_path / "results"
    chosen = ["-t", SMALL, "-s", "mccann", "-s", "nearest-anchor"]
    where = ["--seeds", "0", "1", "--results", str(results), "--no-progress"]
    assert main(["run", *chosen, *where]) == 0
    tune = ["tune", *chosen, "--trials", "3", *where, "--no-figures", "-j", "1"]
    assert main(tune) == 0
    out = capsys.readouterr().out
    assert "tuned track" in out and "default track" in out
    board = ResultsStore(results).write_tables()[1]
    tuned = board[board["track"] == "tuned"].set_index("surrogate")
    assert set(tuned.index) == {"mccann", "nearest-anchor"} and tuned["n_seeds"].eq(2).all()
    assert tuned["tuning_fit_seconds"].notna().all() and tuned["config"].str.startswith(tuple(tuned.index)).all()
    # Running it again resumes: nothing new is fitted, the rows are the same.
    before = ResultsStore(results).load()
    assert main(tune) == 0
    after = ResultsStore(results).load()
    assert len(after) == len(before) and after["w2"].tolist() == before["w2"].tolist()


def test_the_shipped_tune_sweep_files_match_what_the_cli_runs():
    from pathlib import Path

    from hti_bench.harness.registry import default_tasks
    from hti_bench.sweeping.sweepfile import load_sweep

    root = Path(__file__).resolve().parents[2] / "sweeps"
    shipped = load_sweep(root / "tune.yaml").config
    expected = tuning.tune_sweep_config(sorted(default_tasks()), sorted(set(surrogate_classes()) - {"slow-shift"}))
    assert shipped["parameters"] == expected["parameters"]
    twin = load_sweep(root / "leaderboard_tuned.yaml").config["parameters"]
    board = yaml.safe_load((root / "leaderboard.yaml").read_text())["parameters"]
    assert twin["task"] == board["task"] and twin["surrogate"] == board["surrogate"]
    assert twin["tune"]["value"] >= 8


def test_tuning_seeds_torch_like_a_plain_run():
    """A trial is a plain unit of its fold task: the same seed gives the same score twice."""
    task = make_task(SMALL)
    fold = fold_task(task, validation_folds(task)[0])
    a = evaluate(fold, "mccann[clock=log]", 3).rows[0]["w2"]
    torch.manual_seed(123)
    assert evaluate(fold, "mccann[clock=log]", 3).rows[0]["w2"] == a
