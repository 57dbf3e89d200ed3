"""Leaderboard files (mean rank, per-task CSVs), stored sample clouds and ``hti-bench plot``."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from hti_bench.cli import main
from hti_bench.harness.leaderboard import leaderboard
from hti_bench.harness.results import ResultsStore, safe_name
from support import row

TRICKY = ("tensor[path=../data/x.npz]", "tensor[path='../data/x.npz']")


def fabricated_rows():
    """Two tasks, three surrogates, two seeds, two held-out λ; 'c' is skipped on t2 and best-response."""
    rows = []
    w2 = {("t1", "a"): 1.0, ("t1", "b"): 2.0, ("t1", "c"): 3.0, ("t2", "a"): 5.0, ("t2", "b"): 1.0}
    for (task, surrogate), value in w2.items():
        for seed in (0, 1):
            for lam in (0.25, 0.75):
                r = row(surrogate, seed, lam, value + 0.1 * seed + lam, task=task)
                r["uses_training_loss"] = surrogate == "c"
                rows.append(r)
    for seed in (0, 1):
        for lam in (0.25, 0.75):
            r = row("c", seed, lam, math.nan, status="skipped", task="t2")
            r.update(error="needs the training loss", uses_training_loss=True)
            rows.append(r)
    return rows


def store_with(tmp_path, rows):
    store = ResultsStore(tmp_path)
    units = {}
    for r in rows:
        units.setdefault((r["task"], r["surrogate"], r["seed"]), []).append(r)
    for unit in units.values():
        store.write_unit(unit)
    return store


def test_mean_rank_over_the_tasks_where_the_surrogate_is_ranked():
    board = leaderboard(pd.DataFrame(fabricated_rows()))
    ranks = board.set_index(["task", "surrogate"])["rank"]
    assert ranks[("t1", "a")] == 1 and ranks[("t1", "b")] == 2 and ranks[("t1", "c")] == 3
    assert ranks[("t2", "b")] == 1 and ranks[("t2", "a")] == 2 and pd.isna(ranks[("t2", "c")])
    by = board.drop_duplicates("surrogate").set_index("surrogate")
    assert by.loc["a", "mean_rank"] == 1.5 and by.loc["a", "n_tasks_ranked"] == 2  # (1 + 2) / 2
    assert by.loc["b", "mean_rank"] == 1.5 and by.loc["b", "n_tasks_ranked"] == 2  # (2 + 1) / 2
    assert by.loc["c", "mean_rank"] == 3.0 and by.loc["c", "n_tasks_ranked"] == 1  # t2 skipped: not counted
    # the same on every row of a surrogate
    assert board.groupby("surrogate")["mean_rank"].nunique().eq(1).all()


def test_leaderboard_columns_are_documented_in_the_results_readme():
    from pathlib import Path

    from hti_bench.harness.leaderboard import LEADERBOARD_COLUMNS, leaderboard_markdown

    board = leaderboard(pd.DataFrame(fabricated_rows()))
    undocumented = [c for c in board.columns if c not in LEADERBOARD_COLUMNS and not c.startswith("metric_")]
    assert not undocumented
    text = (Path(__file__).resolve().parents[2] / "results" / "README.md").read_text()
    assert leaderboard_markdown() in text, (
        "regenerate results/README.md's leaderboard table from leaderboard_markdown()"
    )


def test_safe_name_is_readable_stable_and_collision_free():
    assert safe_name("moons-dropout") == "moons-dropout"
    assert safe_name("moons-dropout[epochs=250]").startswith("moons-dropout_epochs=250-")
    names = [safe_name(t) for t in TRICKY]
    assert names[0] != names[1]
    for name in names + [safe_name(".."), safe_name('a/b\\c(d),"e"')]:
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._=-")
        assert name.strip(".")
    assert safe_name(TRICKY[0]) == safe_name(TRICKY[0])  # stable


def test_per_task_leaderboards_written_and_stale_ones_removed(tmp_path):
    rows = fabricated_rows()
    for task in TRICKY:  # two tasks that sanitise alike but must get two files
        rows += [row("a", 0, 0.5, 1.0, task=task), row("b", 0, 0.5, 2.0, task=task)]
    store = store_with(tmp_path, rows)
    (tmp_path / "leaderboard_my-notes.csv").write_text("not,ours\n1,2\n")
    _, board = store.write_tables()
    files = sorted(p.name for p in tmp_path.glob("leaderboard_*.csv"))
    assert len(files) == 5 and "leaderboard_t1.csv" in files and "leaderboard_my-notes.csv" in files
    t1 = pd.read_csv(tmp_path / "leaderboard_t1.csv")
    assert list(t1["surrogate"]) == ["a", "b", "c"] and set(t1["task"]) == {"t1"}
    assert list(t1.columns) == list(board.columns)
    for task in TRICKY:
        got = pd.read_csv(store.task_leaderboard_path(task))
        assert set(got["task"]) == {task} and len(got) == 2

    for path in store.runs.glob("*.csv"):  # drop t2 and the tricky tasks from the store
        if pd.read_csv(path)["task"].iloc[0] != "t1":
            path.unlink()
    store.write_tables()
    files = sorted(p.name for p in tmp_path.glob("leaderboard_*.csv"))
    assert files == ["leaderboard_my-notes.csv", "leaderboard_t1.csv"]  # the user's file stays


def fake_clouds(task="t1", surrogate="a", seed=0, m=3, n=50):
    rng = np.random.default_rng(seed)
    return {
        "task": task,
        "surrogate_spec": surrogate,
        "seed": seed,
        "hyperparameter": "lambda",
        "lam": 0.5,
        "conditions": np.arange(m, dtype=np.float32)[:, None],
        "surrogate": rng.normal(size=(m, n, 2)).astype(np.float32),
        "reference": rng.normal(size=(m, n, 2)).astype(np.float32),
    }


def test_write_unit_stores_sample_clouds_and_a_write_failure_only_warns(tmp_path, monkeypatch):
    import hti_bench.harness.results as results_mod

    store = ResultsStore(tmp_path)
    store.write_unit([row(lam=0.25), row(lam=0.75)], samples=fake_clouds())
    (loaded,) = store.load_samples()
    assert loaded["surrogate"].shape == (3, 50, 2) and loaded["surrogate"].dtype == np.float32
    assert loaded["task"] == "t1" and loaded["seed"] == 0 and loaded["lam"] == 0.5
    assert store.samples_path("t1", "a", 0).stem == store.unit_path("t1", "a", 0).stem

    real = results_mod.atomic_write_bytes

    def unwritable(path, data):
        if path.suffix == ".npz":
            raise PermissionError(f"[Errno 13] Permission denied: '{path}'")
        real(path, data)

    monkeypatch.setattr(results_mod, "atomic_write_bytes", unwritable)
    with pytest.warns(UserWarning, match="not stored.*Permission denied"):
        path = store.write_unit([row(seed=1, lam=0.25)], samples=fake_clouds(seed=1))
    assert path.exists() and store.has_unit("t", "a", 1)
    with pytest.warns(UserWarning, match="not stored.*lack keys"):
        store.write_unit([row(seed=2)], samples={"task": "t"})
    assert store.has_unit("t", "a", 2)


def test_evaluate_unit_survives_a_surrogate_whose_samples_cannot_be_kept(monkeypatch):
    from hti_bench.harness import unit
    from hti_bench.harness.registry import make_task

    task = make_task("gaussian-path[n_samples=16]")
    inputs = unit.draw_inputs(task, 0)
    clouds = unit.evaluate(task, "mccann", 0, inputs).clouds.as_dict()
    assert clouds["surrogate"].shape == (3, 16, 2) and clouds["lam"] == task.heldout[1][0]  # clouds keep the one value
    monkeypatch.setattr(unit, "CLOUD_CONDITIONS", "not a number")  # slicing fails inside _clouds
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = unit.evaluate(task, "mccann", 0, inputs)
    assert all(r["status"] == "ok" for r in result.rows) and result.clouds is None
    assert any("not kept" in str(w.message) for w in caught)
    assert unit.evaluate(task, "mccann", 0).rows[0]["status"] == "ok"  # inputs drawn when not given


def check_png(path, min_side=300):
    from matplotlib.image import imread

    assert path.exists() and path.stat().st_size > 5000, path
    image = imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= min_side, image.shape
    assert image[..., :3].std() > 0.01  # not blank


def test_plot_command_on_fabricated_results(tmp_path, capsys):
    rows = fabricated_rows() + [row("a", 0, 0.5, 1.0, task=TRICKY[0])]
    store = store_with(tmp_path / "res", rows)
    store.write_samples(fake_clouds("t1", "a", 0))
    store.write_samples(fake_clouds("t1", "b", 1))
    out = tmp_path / "figs"
    assert main(["plot", "--results", str(store.root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    names = sorted(p.name for p in out.glob("*.png"))
    assert sorted(p.split("/")[-1] for p in printed) == names
    # The critical-difference diagram compares a and b over t1 and t2 (c is skipped on t2; the third
    # task ranks a alone).
    assert names == sorted(
        [
            "cost_vs_accuracy.png",
            "critical_difference_default.png",
            "leaderboard.png",
            "samples_t1.png",
            "w2_vs_lambda_t1.png",
            "w2_vs_lambda_t2.png",
            f"w2_vs_lambda_{safe_name(TRICKY[0])}.png",
        ]
    )
    for name in names:
        check_png(out / name)
    assert main(["plot", "--results", str(store.root), "-t", "t2"]) == 0
    assert sorted(p.name for p in (store.root / "figures").glob("*.png")) == [
        "cost_vs_accuracy.png",
        "leaderboard.png",
        "w2_vs_lambda_t2.png",
    ]


def test_plot_is_a_command():
    from hti_bench.cli import _parser

    assert "plot" in _parser().format_help()


def test_plot_without_results_says_so_and_exits_2(tmp_path, capsys):
    assert main(["plot", "--results", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "nothing to plot" in err and "Traceback" not in err
    store_with(tmp_path / "res", [row()])
    assert main(["plot", "--results", str(tmp_path / "res"), "-t", "moons"]) == 2
    assert "No results for task 'moons'" in capsys.readouterr().err


def test_run_stores_sample_clouds_and_plots_end_to_end(tmp_path, capsys):
    from hti_bench.harness.runner import run

    res = tmp_path / "res"
    task = "gaussian-path[n_samples=64]"
    summary = run(tasks=[task], surrogates=["mccann", "mixture"], seeds=[0, 1], results_dir=res, progress=False)
    assert summary.units_run == 4 and summary.rows_failed == 0
    clouds = ResultsStore(res).load_samples(task)
    assert len(clouds) == 4
    for c in clouds:
        assert c["surrogate"].shape == c["reference"].shape == (3, 64, 2)  # 3 classes ≤ 4 conditions
        assert c["conditions"].shape == (3, 1) and c["lam"] == 0.75 and c["surrogate"].dtype == np.float32
    assert (res / f"leaderboard_{safe_name(task)}.csv").exists()
    assert main(["plot", "--results", str(res)]) == 0
    figures = sorted(p.name for p in (res / "figures").glob("*.png"))
    assert f"samples_{safe_name(task)}.png" in figures and len(figures) == 4
    for name in figures:
        check_png(res / "figures" / name)


# ---------------------------------------------------------------------------------------------- no torch, no registry

_TORCH_PROBE = """
import runpy, sys
sys.argv = ["hti-bench", *sys.argv[1:]]
try:
    runpy.run_module("hti_bench", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print("TORCH_IMPORTED=" + str("torch" in sys.modules))
sys.exit(code)
"""


def _run_without_torch(*args):
    """``python -m hti_bench ARGS`` in a fresh interpreter; (exit code, output, whether torch was imported)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])), MPLBACKEND="Agg"
    )
    proc = subprocess.run(
        [sys.executable, "-c", _TORCH_PROBE, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("TORCH_IMPORTED="), proc.stdout + proc.stderr
    return proc.returncode, proc.stdout + proc.stderr, lines[-1] == "TORCH_IMPORTED=True"


def test_leaderboard_and_plot_of_stored_results_never_import_torch(tmp_path):
    from hti_bench.harness.registry import make_task
    from hti_bench.harness.results import format_anchors
    from hti_bench.harness.runner import run

    res = tmp_path / "res"
    task = "gaussian-path[n_samples=40]"
    run(tasks=[task], surrogates=["mccann", "mixture"], seeds=[0], results_dir=res, progress=False)
    stored = ResultsStore(res).load()  # the rows carry what the figures need
    built = make_task(task)
    assert set(stored["anchors"]) == {format_anchors(built.anchors)}
    assert set(stored["clock"]) == {built.hyperparameters.axis.clock.value}

    code, out, torch_imported = _run_without_torch("leaderboard", "--results", str(res))
    assert code == 0 and "mccann" in out, out
    assert not torch_imported, "hti-bench leaderboard imported torch"
    code, out, torch_imported = _run_without_torch(
        "plot", "--results", str(res), "-t", "gaussian-path[ n_samples = 40 ]"
    )
    assert code == 0 and f"w2_vs_lambda_{safe_name(task)}.png" in out, out
    assert not torch_imported, "hti-bench plot imported torch"
    # the probe does see torch when a command imports it
    code, out, torch_imported = _run_without_torch("check", "mccann")
    assert torch_imported, out


def _drawn_axes(monkeypatch):
    """Replace the figure writer so a test can look at what was drawn: returns the list of axes drawn."""
    from hti_bench.harness.plots import lambda_curves

    drawn = []
    monkeypatch.setattr(lambda_curves, "save", lambda fig, path: drawn.append(fig.axes[0]) or path)
    return drawn


def test_w2_vs_lambda_takes_anchors_and_clock_from_the_rows(tmp_path, monkeypatch):
    from hti_bench.harness.plots import plot_w2_vs_lambda

    drawn = _drawn_axes(monkeypatch)
    rows = [row("a", seed, lam, 1.0 + lam) for seed in (0, 1) for lam in (0.25, 0.75)]
    for r in rows:
        r.update(anchors="0.1;0.5;0.9", clock="logit")
    plot_w2_vs_lambda(pd.DataFrame(rows), tmp_path / "w2.png")
    (ax,) = drawn
    assert ax.get_xscale() == "logit"
    assert [lam for lam in ax.get_xticks() if lam in (0.1, 0.5, 0.9)] == [0.1, 0.5, 0.9]
    anchor_lines = [
        line
        for line in ax.get_lines()
        if len(set(np.atleast_1d(line.get_xdata()))) == 1 and np.atleast_1d(line.get_xdata())[0] in (0.1, 0.5, 0.9)
    ]
    assert len(anchor_lines) == 3
    assert "logit clock" in ax.get_xlabel()


def test_w2_vs_lambda_of_an_old_results_file_has_no_anchors_and_a_linear_axis(tmp_path, monkeypatch):
    """Schema 2 rows carry neither anchors nor clock: no task is built to find them."""
    from hti_bench.harness.plots import plot_w2_vs_lambda

    drawn = _drawn_axes(monkeypatch)
    rows = [row("a", seed, lam, 1.0 + lam, task="moons-dropout") for seed in (0, 1) for lam in (0.25, 0.75)]
    store = ResultsStore(tmp_path)
    store.runs.mkdir(parents=True)
    for seed in (0, 1):
        old = pd.DataFrame([r for r in rows if r["seed"] == seed]).drop(columns=["anchors", "clock"])
        old["schema_version"] = 2
        old.to_csv(store.unit_path("moons-dropout", "a", seed), index=False)
    loaded = store.load()
    assert loaded["anchors"].isna().all() and loaded["clock"].isna().all()
    plot_w2_vs_lambda(loaded, tmp_path / "w2.png")
    (ax,) = drawn
    assert ax.get_xscale() == "linear" and "clock" not in ax.get_xlabel()
    assert not [line for line in ax.get_lines() if len(set(np.atleast_1d(line.get_xdata()))) == 1]
    assert sorted(ax.get_xticks()) == [0.25, 0.75]


def test_w2_vs_lambda_refuses_a_malformed_anchors_cell_or_clock(tmp_path):
    from hti_bench.errors import ResultsError
    from hti_bench.harness.plots import plot_w2_vs_lambda

    good = [row("a", 0, lam, 1.0) for lam in (0.25, 0.75)]
    with pytest.raises(ResultsError, match="Malformed anchors"):
        plot_w2_vs_lambda(
            pd.DataFrame([dict(r, anchors="0.1,0.9", clock="identity") for r in good]), tmp_path / "x.png"
        )
    with pytest.raises(ResultsError, match="clock 'sqrt'"):
        plot_w2_vs_lambda(pd.DataFrame([dict(r, anchors="0.1;0.9", clock="sqrt") for r in good]), tmp_path / "x.png")


def test_plot_selects_a_task_by_its_spec_without_building_it(tmp_path, capsys, monkeypatch):
    import sys

    stored = "moons-dropout[epochs=50,hidden=16]"
    store_with(tmp_path, [row("a", 0, lam, 1.0, task=task) for lam in (0.25, 0.75) for task in (stored, "t1")])
    monkeypatch.setitem(sys.modules, "hti_bench.harness.registry", None)  # importing it now fails
    assert main(["plot", "--results", str(tmp_path), "-t", "moons-dropout[hidden=16, epochs=50]"]) == 0
    printed = capsys.readouterr().out
    assert f"w2_vs_lambda_{safe_name(stored)}.png" in printed and "w2_vs_lambda_t1.png" not in printed
    assert main(["plot", "--results", str(tmp_path), "-t", "moons-dropout[epochs=51,hidden=16]"]) == 2
    err = capsys.readouterr().err
    assert "No results for task 'moons-dropout[epochs=51,hidden=16]'" in err and f"{stored}, t1" in err
    assert main(["plot", "--results", str(tmp_path), "-t", "t1[", "-t", "t1"]) == 2  # not a spec: exact match only
    assert "No results for task 't1['" in capsys.readouterr().err


def test_unreadable_sample_files_are_skipped_with_a_warning(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_samples(fake_clouds())
    (store.samples / "broken.npz").write_bytes(b"\x00\x01garbage")
    with pytest.warns(UserWarning, match="broken.npz skipped"):
        (loaded,) = store.load_samples()
    assert loaded["task"] == "t1"
