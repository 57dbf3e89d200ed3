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
    for name in ("semicircles", "moons-dropout", "gaussian-path", "mccann", "mixture", "nearest-anchor"):
        assert name in out


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


def test_unknown_names_exit_2_with_a_hint(tmp_path, capsys):
    assert main(["run", "-t", "semicircle", "--results", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Unknown task 'semicircle'. Did you mean 'semicircles'?" in err
    assert main(["run", "-t", "semicircles", "-s", "nearest", "--results", str(tmp_path)]) == 2
    assert "Did you mean 'nearest-anchor'?" in capsys.readouterr().err


def test_check_command_runs_the_contract(capsys):
    assert main(["check", "mixture"]) == 0
    assert "ok   mixture check_sample_shape" in capsys.readouterr().out
