"""Sweeps: the shipped sweep files, the sweep program, the offline controller (parallel, resumable,
early stopping) and the refusal of malformed sweep files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hti_bench import cli
from hti_bench.errors import ConfigError, HTIBenchError
from hti_bench.harness import registry
from hti_bench.harness.results import KEY, ResultsStore
from hti_bench.specs import format_spec, parse_spec
from hti_bench.sweeping import program
from hti_bench.sweeping.controller import run_sweep
from hti_bench.sweeping.sweepfile import import_sweeps, load_sweep

ROOT = Path(__file__).resolve().parents[2]
SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.yaml"))
TINY_TASK = "noisy-regression[epochs=3,n_train=64]"
#: The tiny task of sweep files over tasks of several hyperparameters.
TINY_MULTI_TASK = "gaussian-plane[n_samples=24]"

# A plugin for controller tests: the template's mean-shift surrogate, with a fit that takes `delay`
# seconds (so a controller can be killed mid-run) and a `scale` that makes it worse away from 1.
SLOW_PLUGIN = (
    (ROOT / "methods" / "template_surrogate.py")
    .read_text()
    .replace('"my-method"', '"slow-shift"')
    .replace(
        "        self.anchors_ = anchors\n",
        "        import time\n        time.sleep(self.delay)\n        self.anchors_ = anchors\n",
    )
    .replace(
        "def __init__(self, *, scale: float = 1.0) -> None:",
        "def __init__(self, *, scale: float = 1.0, delay: float = 0.0) -> None:\n        self.delay = delay",
    )
)


@pytest.fixture
def slow_plugin(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "slow_shift.py").write_text(SLOW_PLUGIN)
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(folder))
    registry.refresh()
    assert "slow-shift" in registry.surrogate_classes()
    yield
    monkeypatch.delenv("HTI_BENCH_PLUGIN_PATH")
    registry.refresh()


def write_sweep(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def grid(tasks, surrogates, seeds=(0, 1), **extra) -> dict:
    params = {
        "task": {"values": list(tasks)},
        "surrogate": {"values": list(surrogates)},
        "seed": {"values": list(seeds)},
    }
    params.update({k: v if isinstance(v, dict) else {"value": v} for k, v in extra.items()})
    return {"method": "grid", "metric": {"name": "w2", "goal": "minimize"}, "parameters": params}


def stable(results: pd.DataFrame) -> pd.DataFrame:
    """Rows without the columns that legitimately differ between runs (times, dates, provenance)."""
    drop = [c for c in results.columns if "seconds" in c or c in ("run_date", "git_rev", "wandb_run_id")]
    return results.drop(columns=drop).sort_values(list(KEY)).reset_index(drop=True)


# --------------------------------------------------------------------------------- shipped sweep files


@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.stem for p in SWEEP_FILES])
def test_sweep_file_is_valid_and_one_point_runs(path, tmp_path):
    sweeps = import_sweeps()
    sweep = load_sweep(path)  # W&B schema + every task, surrogate and parameter resolved
    assert sweeps.schema_violations_from_proposed_config(sweep.config) == []
    assert sweep.config["command"][-1] == "${args}" and "hti_bench.sweeping.program" in sweep.config["command"]
    assert sweep.planned_runs() and sweep.planned_runs() > 1
    # The first point the W&B engine proposes, on a tiny task with the surrogate's test budget.
    point = sweeps.next_run(sweeps.SweepConfig(sweep.config), [])
    params = {k: v["value"] for k, v in point.config.items()}
    name, base = parse_spec(params["surrogate"])
    budget = registry.surrogate_classes()[name].test_config
    extra = {k: v for k, v in params.items() if k not in program.PROGRAM_KEYS}
    tiny = TINY_MULTI_TASK if registry.make_task(params["task"]).d > 1 else TINY_TASK
    params.update(
        task=tiny,
        surrogate=format_spec(name, {**base, **budget}),
        **{k: v for k, v in extra.items() if k not in budget},
    )
    for k in [k for k in extra if k in budget]:
        params.pop(k)
    if "seeds" in params:
        params["seeds"] = 2
    rc = program.parse_config(params)
    outcome = program.execute(rc, results_dir=tmp_path)
    assert outcome.state == "finished", outcome.error
    assert len(outcome.history) == len(rc.seeds) and all(h["w2"] == h["w2"] for h in outcome.history)
    assert ResultsStore(tmp_path).load()["status"].eq("ok").all()


def test_leaderboard_sweeps_cover_every_task_and_surrogate():
    params = load_sweep(ROOT / "sweeps" / "leaderboard.yaml").config["parameters"]
    classes = {t: cls for t, cls in registry.task_classes().items() if t != "tensor"}  # tensor needs a user file
    multi = {t for t, cls in classes.items() if cls().d > 1}
    assert set(params["task"]["values"]) == set(classes) - multi
    assert set(params["surrogate"]["values"]) == set(registry.surrogate_classes()) - {"slow-shift"}
    # The multi-hyperparameter leaderboard: every task of d > 1 axes, every surrogate that runs there.
    params = load_sweep(ROOT / "sweeps" / "leaderboard_multi.yaml").config["parameters"]
    assert multi and set(params["task"]["values"]) == multi
    assert set(params["surrogate"]["values"]) == {
        n for n, c in registry.surrogate_classes().items() if c.supports_multi
    }


# --------------------------------------------------------------------------------- the program


def test_program_config_errors_come_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'lr'"):
        program.parse_config({"task": "gaussian-path", "surrogate": "cfm", "lrr": 0.1})
    with pytest.raises(HTIBenchError, match="Did you mean 'mccann'"):
        program.parse_config({"task": "gaussian-path", "surrogate": "mcann"})
    with pytest.raises(ConfigError, match="lacks 'task'"):
        program.parse_config({"surrogate": "mccann"})
    with pytest.raises(ConfigError, match="not both"):
        program.parse_config({"task": "gaussian-path", "surrogate": "mccann", "seed": 1, "seeds": 2})
    with pytest.raises(ConfigError, match="at least 2"):
        program.parse_config({"task": "gaussian-path", "surrogate": "mccann", "n_anchors": 1})
    rc = program.parse_config({"task": "gaussian-path", "surrogate": "cfm", "lr": 0.01, "seeds": [3, 4], "_wandb": {}})
    assert rc.surrogate == "cfm[lr=0.01,matcher=plain]" and rc.seeds == (3, 4)
    assert program.parse_config({"task": "gaussian-path", "surrogate": "mccann", "seeds": 3}).seeds == (0, 1, 2)


def test_n_anchors_spaces_anchors_on_the_task_clock():
    rc = program.parse_config({"task": "noisy-regression", "surrogate": "mccann", "n_anchors": 3})
    assert rc.task == "noisy-regression"  # the geometric middle of 0.1 and 10 on the log clock: the defaults
    rc = program.parse_config({"task": "noisy-regression", "surrogate": "mccann", "n_anchors": 5})
    assert rc.task == "noisy-regression[anchors=(0.1, 0.316228, 1.0, 3.162278, 10.0)]"
    rc = program.parse_config({"task": "moons-dropout", "surrogate": "mccann", "n_anchors": 4})
    assert "anchors=(0.0, 0.33, 0.66, 0.99)" in rc.task
    with pytest.raises(ConfigError, match="anchor"):  # 5 anchors on [0, 1] land on the held-out 0.25 and 0.75
        program.parse_config({"task": "semicircles", "surrogate": "mccann", "n_anchors": 5})


def test_program_honours_wandb_sweep_param_path_like_an_agent(tmp_path):
    """The agent's way: CLI ${args} give defaults, WANDB_SWEEP_PARAM_PATH's values win."""
    param_path = tmp_path / "params.yaml"
    param_path.write_text(yaml.safe_dump({"surrogate": {"value": "mixture"}, "seed": {"value": 5}}))
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "WANDB_SWEEP_PARAM_PATH": str(param_path),
        "HTI_BENCH_RESULTS": str(tmp_path / "res"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "hti_bench.sweeping.program", "--task=gaussian-path", "--surrogate=mccann", "--seed=0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    final = json.loads(proc.stdout.strip().splitlines()[-1])
    assert final["state"] == "finished" and final["summary"]["surrogate"] == "mixture"
    results = ResultsStore(tmp_path / "res").load()
    assert set(zip(results["surrogate"], results["seed"])) == {("mixture", 5)}
    # An unknown key fails before any training, listing the valid ones, with exit status 2.
    param_path.write_text(yaml.safe_dump({"lrr": {"value": 0.1}}))
    proc = subprocess.run(
        [sys.executable, "-m", "hti_bench.sweeping.program", "--task=gaussian-path", "--surrogate=cfm"],
        capture_output=True,
        text=True,
        env={**env, "HTI_BENCH_RESULTS": str(tmp_path / "res2")},
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2 and "Did you mean 'lr'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "res2").exists()


# --------------------------------------------------------------------------------- the controller


def test_two_workers_give_the_same_rows_as_one(tmp_path):
    path = write_sweep(
        tmp_path / "tiny.yaml", grid(["gaussian-path", TINY_TASK], ["mccann", "mixture", "hypernetwork[epochs=2]"])
    )
    one = run_sweep(path, jobs=1, results_dir=tmp_path / "one", threads=1, progress=False, wandb_mode="disabled")
    two = run_sweep(path, jobs=2, results_dir=tmp_path / "two", threads=1, progress=False, wandb_mode="disabled")
    assert one.exhausted and two.exhausted and len(one.records) == len(two.records) == 12
    assert {r.state for r in two.records} == {"finished", "skipped"}  # hypernetwork skips gaussian-path
    a, b = ResultsStore(tmp_path / "one").load(), ResultsStore(tmp_path / "two").load()
    assert len(a) == 12 * 2  # two held-out λ per unit
    pd.testing.assert_frame_equal(stable(a), stable(b))
    # Each run got its own configuration (wandb reads the param file once per session: not reused).
    assert sorted(map(str, (r.params for r in two.records))) == sorted(map(str, (r.params for r in one.records)))
    # Resuming an exhausted sweep starts nothing and changes nothing.
    again = run_sweep(path, jobs=2, results_dir=tmp_path / "two", threads=1, progress=False, wandb_mode="disabled")
    assert again.started == 0 and len(again.records) == 12


def test_killed_sweep_resumes_with_every_run_recorded_once(tmp_path, slow_plugin):
    config = grid(
        ["gaussian-path"], ["slow-shift[delay=1.5]", "slow-shift[delay=1.5,scale=2.0]", "mccann"], seeds=(0, 1)
    )
    path = write_sweep(tmp_path / "kill.yaml", config)
    results = tmp_path / "res"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hti_bench",
            "sweep",
            str(path),
            "-j",
            "2",
            "--results",
            str(results),
            "--no-progress",
            "--no-figures",
            "--threads",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    runs = results / "sweeps"
    deadline = time.time() + 120
    finished = []
    while time.time() < deadline:
        records = [json.loads(p.read_text()) for p in runs.glob("*/runs/run-*.json")] if runs.exists() else []
        finished = [r for r in records if r["state"] == "finished"]
        if finished and any(r["state"] == "running" for r in records):
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the controller and its workers, as a machine stop would
    proc.wait(timeout=30)
    assert finished, "the controller never finished a run before the deadline"
    records = [json.loads(p.read_text()) for p in runs.glob("*/runs/run-*.json")]
    assert any(r["state"] == "running" for r in records) and len(records) < 6

    summary = run_sweep(path, jobs=2, results_dir=results, threads=1, progress=False, wandb_mode="disabled")
    assert summary.exhausted
    assert len(summary.records) == 6 and {r.state for r in summary.records} == {"finished"}
    assert len({json.dumps(r.params, sort_keys=True) for r in summary.records}) == 6  # no run proposed twice
    stored = ResultsStore(results).load()
    assert len(stored) == 6 * 2 and not stored.duplicated(list(KEY)).any()
    units = {(s, int(seed)) for s, seed in zip(stored["surrogate"], stored["seed"])}
    assert len(units) == 6
    assert len(list((results / "runs").glob("*.csv"))) == 6  # one file per unit, none half-written


def test_hyperband_stops_bad_configurations_early(tmp_path, slow_plugin):
    config = {
        "method": "grid",
        "metric": {"name": "w2", "goal": "minimize"},
        "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2},
        "parameters": {
            "task": {"value": "gaussian-path"},
            "surrogate": {"value": "slow-shift"},
            "scale": {"values": [1.0, 6.0, 1.2, 8.0]},
            "seeds": {"value": 3},
        },
    }
    path = write_sweep(tmp_path / "hb.yaml", config)
    summary = run_sweep(path, jobs=1, results_dir=tmp_path / "res", threads=1, progress=False, wandb_mode="disabled")
    by_scale = {r.params["scale"]: r for r in summary.records}
    assert by_scale[1.0].state == "finished" and len(by_scale[1.0].history) == 3
    stopped = [r for r in summary.records if r.state == "stopped"]
    assert stopped, [(r.params, r.state, r.history) for r in summary.records]
    for r in stopped:
        assert len(r.history) < 3 and r.params["scale"] > 2  # only the bad ones, before their last seed
    best = summary.best("w2")
    assert best is not None and best.params["scale"] in (1.0, 1.2)


def test_random_search_is_deterministic_given_the_seed(tmp_path):
    config = {
        "method": "random",
        "run_cap": 4,
        "metric": {"name": "w2", "goal": "minimize"},
        "parameters": {
            "task": {"value": "gaussian-path"},
            "surrogate": {"value": "cfm"},
            "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
            "steps": {"values": [5, 6, 7, 8, 9, 10]},
            "batch_size": {"value": 16},
            "solver": {"value": "euler"},
            "hidden": {"value": [8]},
        },
    }
    path = write_sweep(tmp_path / "random.yaml", config)
    kw = dict(jobs=1, threads=1, progress=False, wandb_mode="disabled")
    a = run_sweep(path, results_dir=tmp_path / "a", search_seed=3, **kw)
    b = run_sweep(path, results_dir=tmp_path / "b", search_seed=3, **kw)
    c = run_sweep(path, results_dir=tmp_path / "c", search_seed=4, **kw)
    assert [r.params for r in a.records] == [r.params for r in b.records]
    assert [r.params for r in a.records] != [r.params for r in c.records]
    assert len(a.records) == 4 and all(r.state == "finished" for r in a.records), [r.error for r in a.records]


def test_second_controller_on_the_same_sweep_is_refused(tmp_path):
    from hti_bench.sweeping.controller import SweepState

    path = write_sweep(tmp_path / "s.yaml", grid(["gaussian-path"], ["mccann"]))
    first = SweepState(load_sweep(path), tmp_path / "res")
    first.lock()
    code = textwrap.dedent(f"""
        from hti_bench.sweeping.controller import SweepState
        from hti_bench.sweeping.sweepfile import load_sweep
        SweepState(load_sweep({str(path)!r}), {str(tmp_path / "res")!r}).lock()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "being run by another controller" in proc.stderr
    with pytest.raises(HTIBenchError):  # the same process, a second handle: refused too
        SweepState(load_sweep(path), tmp_path / "res").lock()
    first.unlock()  # what run_sweep does on return, so a resume in the same process is not refused
    SweepState(load_sweep(path), tmp_path / "res").lock()


# --------------------------------------------------------------------------------- malformed files


MALFORMED = {
    "bad-yaml": ("method: grid\nparameters:\n  task: {values: [a, b]\n", "not valid YAML at line"),
    "unknown-method": (
        "method: gird\nparameters:\n  task: {value: gaussian-path}\n  surrogate: {value: mccann}\n",
        "Did you mean 'grid'",
    ),
    "bad-distribution": (
        "method: random\nparameters:\n  task: {value: gaussian-path}\n  surrogate: {value: cfm}\n  lr: {distribution: unifrm, min: 0.1, max: 1}\n",
        "does not follow the W&B sweep schema",
    ),
    "unknown-parameter": (
        "method: grid\nparameters:\n  task: {value: gaussian-path}\n  surrogate: {value: cfm}\n  lrr: {values: [0.1]}\n",
        "Unknown sweep parameter 'lrr'. Did you mean 'lr'",
    ),
    "unknown-surrogate": (
        "method: grid\nparameters:\n  task: {value: gaussian-path}\n  surrogate: {values: [mcann]}\n",
        "Did you mean 'mccann'",
    ),
    "unknown-task": (
        "method: grid\nparameters:\n  task: {value: moons}\n  surrogate: {value: mccann}\n",
        "Unknown task 'moons'",
    ),
    "unknown-metric": (
        "method: bayes\nmetric: {name: loss, goal: minimize}\nparameters:\n  task: {value: gaussian-path}\n  surrogate: {value: cfm}\n  lr: {min: 0.001, max: 0.1}\n",
        "Unknown metric 'loss'",
    ),
    "bad-value": (
        "method: grid\nparameters:\n  task: {value: gaussian-path}\n  surrogate: {value: cfm}\n  matcher: {values: [plain, ot]}\n",
        "matcher",
    ),
    "not-a-mapping": ("- method\n- grid\n", "must hold a mapping"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_sweep_file_gives_one_clear_error(case, tmp_path, capsys):
    text, expected = MALFORMED[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    code = cli.main(["sweep", str(path), "--results", str(tmp_path / "res"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and str(path) in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()  # nothing started


def test_missing_sweep_file(tmp_path, capsys):
    assert cli.main(["sweep", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------------- from W&B


class _FakeRun:
    def __init__(self, summary):
        self.summary = summary


class _FakeApi:
    """The slice of wandb.Api the leaderboard reads: runs(path) → objects with a summary mapping."""

    def __init__(self, runs):
        self._runs, self.paths = runs, []

    def runs(self, path):
        self.paths.append(path)
        return self._runs


def test_leaderboard_from_wandb_rebuilds_the_same_tables(tmp_path, monkeypatch, capsys):
    from hti_bench.harness.runner import run
    from hti_bench.harness.tracking import ROWS_SUMMARY_KEY, results_from_wandb, rows_json

    local = run(
        tasks=["gaussian-path"],
        surrogates=["mccann", "mixture", "hypernetwork"],
        seeds=[0, 1],
        results_dir=tmp_path / "local",
        progress=False,
    )
    rows = local.results.to_dict("records")
    units = {}
    for row in rows:
        units.setdefault((row["task"], row["surrogate"], row["seed"]), []).append(row)
    older = [dict(r, w2=99.0, run_date="2000-01-01T00:00:00+00:00") for r in units[("gaussian-path", "mccann", 0)]]
    runs = [_FakeRun({ROWS_SUMMARY_KEY: rows_json(u)}) for u in units.values()]
    runs += [_FakeRun({ROWS_SUMMARY_KEY: rows_json(older)}), _FakeRun({"w2": 0.1})]  # a stale duplicate, a foreign run
    api = _FakeApi(runs)
    n_runs, n_units = results_from_wandb("me/hti", str(tmp_path / "remote"), api=api)
    assert api.paths == ["me/hti"] and n_runs == len(units) + 1 and n_units == len(units)
    remote, _ = ResultsStore(tmp_path / "remote").write_tables()
    pd.testing.assert_frame_equal(stable(remote), stable(local.results), check_dtype=False)  # the newer rows won
    # Through the CLI, with wandb.Api replaced.
    import wandb

    monkeypatch.setattr(wandb, "Api", lambda **kw: api)
    assert cli.main(["leaderboard", "--from-wandb", "me/hti", "--results", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert f"{len(units)} units" in out and "mccann" in out
    assert (tmp_path / "cli" / "leaderboard.csv").exists()
    assert cli.main(["leaderboard", "--from-wandb", "nope", "--results", str(tmp_path / "cli")]) == 2
