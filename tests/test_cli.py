"""The command line, end to end (in-process where possible: a new process costs seconds of imports)."""

import subprocess
import sys

import pandas as pd

from hti_bench.cli import main


def test_help_is_fast_and_lists_commands():
    out = subprocess.run([sys.executable, "-m", "hti_bench", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("list", "run", "leaderboard", "check"):
        assert cmd in out.stdout


def test_list_shows_tasks_surrogates(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("semicircles", "moons-dropout", "gaussian-path", "quantile", "noisy-regression", "tensor", "mccann",
                 "mixture", "nearest-anchor", "hypernetwork", "stn", "delta-stn", "anchored-delta-stn"):
        assert name in out
    assert "needs options: task 'tensor' needs path=FILE" in out


def test_run_then_leaderboard(tmp_path, capsys):
    res = tmp_path / "res"
    assert main(["run", "-t", "gaussian-path[n_samples=30]", "-s", "mccann", "-s", "mixture",
                 "--seeds", "0", "1", "--results", str(res), "--no-progress"]) == 0
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


def test_offline_wandb_logs_each_unit_without_a_server(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    res = tmp_path / "res"
    assert main(["run", "-t", "gaussian-path[n_samples=20]", "-s", "mixture", "--seeds", "0",
                 "--results", str(res), "--wandb", "offline", "--no-progress"]) == 0
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
        assert main(["run", "-t", "gaussian-path[n_samples=20]", "-s", "mixture", "--seeds", "0",
                     "--results", str(tmp_path / "res"), "--no-progress"]) == 0
    finally:
        registry.refresh()
    assert "plugin 'bad' not loaded" in capsys.readouterr().err
