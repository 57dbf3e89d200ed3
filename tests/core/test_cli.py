"""The command line, end to end (in-process where possible: a new process costs seconds of imports)."""

import subprocess
import sys

import pandas as pd
import pytest

from hti_bench.cli import main

SMALL = "gaussian-path[n_samples=20]"


def run_quietly(results, *args):
    """Exit status of ``hti-bench run ARGS`` writing to ``results``, without a progress bar."""
    return main(["run", *args, "--results", str(results), "--no-progress"])


def test_help_is_fast_and_lists_commands():
    out = subprocess.run([sys.executable, "-m", "hti_bench", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("list", "run", "leaderboard", "check"):
        assert cmd in out.stdout


def test_list_shows_tasks_surrogates(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "semicircles",
        "moons-dropout",
        "gaussian-path",
        "quantile",
        "noisy-regression",
        "tensor",
        "mccann",
        "mixture",
        "nearest-anchor",
        "hypernetwork",
        "stn",
        "delta-stn",
        "anchored-delta-stn",
        "mfm",
        "transport-spline",
        "weight-interpolation",
        "loss-conditional",
    ):
        assert name in out
    assert "needs options: task 'tensor' needs path=FILE" in out


def test_run_then_leaderboard(tmp_path, capsys):
    res = tmp_path / "res"
    assert (
        run_quietly(res, "-t", "gaussian-path[n_samples=30]", "-s", "mccann", "-s", "mixture", "--seeds", "0", "1") == 0
    )
    out = capsys.readouterr().out
    assert "== gaussian-path[n_samples=30] ==" in out and "4 runs done" in out
    board = pd.read_csv(res / "leaderboard.csv")
    assert set(board["surrogate"]) == {"mccann", "mixture"}
    assert board.set_index("surrogate").loc["mccann", "rank"] == 1
    assert main(["leaderboard", "--results", str(res)]) == 0
    assert "mccann" in capsys.readouterr().out
    assert main(["leaderboard", "--results", str(res), "--by-lambda"]) == 0
    out = capsys.readouterr().out
    assert "W₂ at each held-out λ" in out and "(noise floor)" in out and "0.25" in out


def test_unknown_names_exit_2_with_a_hint(tmp_path, capsys):
    assert main(["run", "-t", "semicircle", "--results", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Unknown task 'semicircle'. Did you mean 'semicircles'?" in err
    assert main(["run", "-t", "semicircles", "-s", "nearest", "--results", str(tmp_path)]) == 2
    assert "Did you mean 'nearest-anchor'?" in capsys.readouterr().err


def test_check_command_runs_the_contract(capsys):
    assert main(["check", "mixture"]) == 0
    assert "ok   mixture check_sample_shape" in capsys.readouterr().out


def test_check_task_runs_the_task_contract_and_refuses_a_bad_spec(capsys):
    assert main(["check", "--task", "gaussian-path[n_samples=8]"]) == 0
    assert "ok   gaussian-path[n_samples=8] check_task_outputs" in capsys.readouterr().out
    assert main(["check", "--task", "gaussian-pat"]) == 2
    assert "Did you mean 'gaussian-path'?" in capsys.readouterr().err
    assert main(["check", "--task", "gaussian-path[epochs=2]"]) == 2
    assert "Unknown option for task 'gaussian-path' 'epochs'" in capsys.readouterr().err
    assert main(["check"]) == 2 and main(["check", "mixture", "--task", "gaussian-path"]) == 2
    assert "name one surrogate" in capsys.readouterr().err


def test_offline_wandb_logs_each_unit_without_a_server(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    res = tmp_path / "res"
    assert run_quietly(res, "-t", SMALL, "-s", "mixture", "--seeds", "0", "--wandb", "offline") == 0
    df = pd.read_csv(res / "results.csv")
    run_ids = df["wandb_run_id"].dropna().unique()
    assert len(run_ids) == 1
    assert list((tmp_path / "wandb").glob(f"offline-run-*-{run_ids[0]}/run-{run_ids[0]}.wandb"))


def test_broken_plugin_is_reported_by_run(tmp_path, capsys, monkeypatch):
    from hti_bench.harness import registry

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "bad.py").write_text("raise RuntimeError('plugin exploded')\n")
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(folder))
    registry.refresh()
    try:
        assert run_quietly(tmp_path / "res", "-t", SMALL, "-s", "mixture", "--seeds", "0") == 0
    finally:
        registry.refresh()
    assert "plugin 'bad' not loaded" in capsys.readouterr().err


def test_leaderboard_takes_several_tasks_and_names_an_unknown_one(tmp_path, capsys):
    res = tmp_path / "res"
    assert run_quietly(res, "-t", SMALL, "-t", "semicircles[n_samples=20]", "-s", "mixture", "--seeds", "0") == 0
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(res), "-t", SMALL, "-t", "semicircles[n_samples=20]"]) == 0
    out = capsys.readouterr().out
    assert "== gaussian-path[n_samples=20] ==" in out and "== semicircles[n_samples=20] ==" in out
    assert main(["leaderboard", "--results", str(res), "-t", "semicircles[n_samples=20]"]) == 0
    assert "gaussian-path" not in capsys.readouterr().out
    assert main(["leaderboard", "--results", str(res), "-t", "semicircle"]) == 2
    assert "Did you mean 'semicircles[n_samples=20]'?" in capsys.readouterr().err


def test_run_and_sweep_share_jobs_and_wandb_options():
    from hti_bench.cli import _parser

    parser = _parser()
    for argv in (["run"], ["sweep", "x.yaml"]):
        args = parser.parse_args(argv + ["-j", "3", "--wandb", "offline"])
        assert args.jobs == "3" and args.wandb == "offline"
        assert parser.parse_args(argv).wandb is None  # resolved by one rule: $HTI_BENCH_WANDB, else disabled


def test_wandb_default_is_the_same_rule_everywhere(monkeypatch):
    from hti_bench.errors import ConfigError
    from hti_bench.harness.tracking import default_mode

    monkeypatch.delenv("HTI_BENCH_WANDB", raising=False)
    assert default_mode() == "disabled"
    monkeypatch.setenv("HTI_BENCH_WANDB", "offline")
    assert default_mode() == "offline"
    monkeypatch.setenv("HTI_BENCH_WANDB", "offlne")
    with pytest.raises(ConfigError, match="not a wandb mode"):
        default_mode()


def test_sweep_passes_jobs_and_search_seed_and_refuses_the_removed_spellings(tmp_path, capsys, monkeypatch):
    from hti_bench.sweeping import controller

    seen = {}

    def fake_run_sweep(path, **kw):
        seen.update(kw)
        raise SystemExit(0)  # stop before any work: only the parsed options matter here

    monkeypatch.setattr(controller, "run_sweep", fake_run_sweep)
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "program: hti_bench/sweeping/program.py\nmethod: grid\nmetric: {name: w2, goal: minimize}\n"
        "parameters:\n  task: {value: gaussian-path}\n  surrogate: {value: mccann}\n  seed: {value: 0}\n"
        "command:\n  - ${env}\n  - ${interpreter}\n  - -m\n  - hti_bench.sweeping.program\n  - ${args}\n"
    )
    with pytest.raises(SystemExit):
        main(["sweep", str(sweep), "-j", "2", "--search-seed", "7", "--results", str(tmp_path / "r")])
    assert seen["jobs"] == "2" and seen["search_seed"] == 7  # run_sweep reads "2" or "auto"
    for old in (["--workers", "2"], ["--seed", "7"]):  # the 0.1 spellings are gone, not silently ignored
        with pytest.raises(SystemExit) as exit_:
            main(["sweep", str(sweep), *old, "--results", str(tmp_path / "r")])
        assert exit_.value.code == 2 and f"unrecognized arguments: {' '.join(old)}" in capsys.readouterr().err
