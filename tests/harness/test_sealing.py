"""Sealed units: a plugin that tries to read, rig or reach what it is scored against gets nothing.

The plugins in ``cheaters/`` do what a dishonest or careless method author would: walk the caller's
stack frames for the task and its held-out networks, patch the scorer on import, read the environment
and the file system for the target cache, phone home, change torch's global state. Run beside two
honest surrogates, each must end as failed rows with its reason, or as an honest score, and the honest
surrogates' rows must equal those of a run without the cheaters: serially, with worker processes,
through the sweep program and through ``hti-bench check``.
"""

import math
import os
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch

from hti_bench.harness import registry
from hti_bench.harness.runner import run
from hti_bench.harness.sandbox import lookup
from hti_bench.harness.sandbox.confine import landlock_abi
from hti_bench.harness.sandbox.outside import UNSEALED_ENV, Sandbox
from hti_bench.scoring import ConditionScores

CHEATERS = Path(__file__).parent / "cheaters"
TINY = "moons-dropout[epochs=1,n_train=256,hidden=16,diffusion_steps=10,n_samples=24,anchors=(0.0,0.5,0.9),heldout=(0.25,0.7)]"
HONEST = ["mccann", "nearest-anchor"]
#: Columns that differ between two runs of the same unit whatever the sealing (times and dates).
VOLATILE = {"fit_seconds", "sample_seconds", "closed_loop_seconds", "run_date", "wandb_run_id", "git_rev"}

#: What each cheater's rows say (failed), or None for an honest score (ok).
EXPECTED = {
    "frame-walker": "fit: hti_bench.errors.LeakError: task 'moons-dropout' in a sandbox has the anchor networks only",
    "environ-reader": "PermissionError: [Errno 13] Permission denied: '/proc/self/environ'",
    "file-hunter": "FileNotFoundError: walked the file system and found no .pt or .ckpt file",
    "phone-home": "fit: ",  # an OSError: no network in the sandbox
    "rigger": None,
    "global-state": None,
}


def test_this_machine_can_seal():
    """The kernel offers Landlock (the rest of this module relies on it; see docs/design.md)."""
    assert landlock_abi() >= 1
    with Sandbox() as box:
        assert box.sealed, box.how
        assert "landlock" in box.how and "network namespace" in box.how


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    yield server
    server.close()


@pytest.fixture
def cheaters(tmp_path, monkeypatch, listener):
    folder = tmp_path / "cheaters"
    shutil.copytree(CHEATERS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    phone = folder / "phone_home.py"
    phone.write_text(phone.read_text().replace("PORT = 0", f"PORT = {listener.getsockname()[1]}"))
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(folder))
    registry.refresh()
    yield sorted(EXPECTED)
    registry.refresh()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One target cache for the module's runs (the baseline is built before any per-test fixture)."""
    return tmp_path_factory.mktemp("target-cache")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, cache):
    """The honest surrogates' rows from a run without any cheater."""
    folder = tmp_path_factory.mktemp("baseline")
    return run(tasks=[TINY], surrogates=HONEST, seeds=[0], results_dir=folder, cache_dir=cache, progress=False).results


def comparable(rows: pd.DataFrame) -> pd.DataFrame:
    keep = sorted(c for c in rows.columns if c not in VOLATILE)
    return rows[rows.surrogate.isin(HONEST)][keep].sort_values(["surrogate", "lambda_heldout"]).reset_index(drop=True)


def assert_cheaters_got_nothing(rows: pd.DataFrame, names) -> None:
    for name in names:
        mine = rows[rows.surrogate == name]
        assert len(mine) == 2, (name, mine)
        expected = EXPECTED[name]
        if expected is None:
            assert (mine.status == "ok").all(), (name, list(mine.error))
        else:
            assert (mine.status == "failed").all() and mine.w2.isna().all(), (name, list(mine.status))
            assert mine.error.str.contains(expected, regex=False).all(), (name, list(mine.error))
    rigged = rows[rows.surrogate == "rigger"]
    if len(rigged):
        assert (rigged.w2 > 50).all(), "the garbage answers (every sample 100) were scored honestly"
        assert (rigged.floor_w2 > 0).all()
    assert rows.sealed.astype(bool).all()


@pytest.mark.parametrize("jobs", [1, 2])
def test_cheaters_get_nothing_and_change_no_other_row(cheaters, baseline, cache, tmp_path, listener, jobs):
    summary = run(
        cache_dir=cache,
        tasks=[TINY],
        surrogates=[*cheaters, *HONEST],
        seeds=[0],
        results_dir=tmp_path / "res",
        progress=False,
        jobs=jobs,
    )
    rows = summary.results
    assert_cheaters_got_nothing(rows, cheaters)
    pd.testing.assert_frame_equal(comparable(rows), comparable(baseline))
    with pytest.raises(TimeoutError):
        listener.accept()  # nothing phoned home
    assert ConditionScores.mean.__module__ == "hti_bench.scoring"  # the rigger never ran here


def test_the_sweep_program_seals_too(cheaters, baseline, cache, tmp_path):
    from hti_bench.sweeping.program import execute, parse_config

    rows = []
    for name in ["frame-walker", "rigger", *HONEST]:
        outcome = execute(
            parse_config({"task": TINY, "surrogate": name, "seed": 0}), results_dir=tmp_path, cache_dir=cache
        )
        rows += outcome.rows
    rows = pd.DataFrame(rows)
    assert_cheaters_got_nothing(rows, ["frame-walker", "rigger"])
    pd.testing.assert_frame_equal(comparable(rows), comparable(baseline), check_dtype=False)


def test_the_catalog_and_name_checks_never_import_a_plugin_here(cheaters):
    """Discovery describes each plugin file in a sandbox of its own: the rigger's import-time patch never
    reaches this process, and names still resolve (with the closest match for a typo)."""
    found, broken = lookup.catalog()
    assert set(EXPECTED) <= set(found) and broken == []
    assert found["frame-walker"].requires == {"architecture", "training_loss"}
    steps = found["cfm"].params["steps"]
    assert lookup.resolve(f"cfm[steps={steps}]").spec == lookup.resolve("cfm").spec  # a default is dropped
    from hti_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="Unknown parameter of surrogate 'mccann' 'ot'"):
        lookup.resolve("mccann[ot=emd]")
    from hti_bench.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="Did you mean 'rigger'"):
        lookup.entry("riger")
    assert ConditionScores.mean.__module__ == "hti_bench.scoring"
    assert "hti_bench_plugins.cheaters.rigger" not in __import__("sys").modules


def test_unsealed_the_rigger_falsifies_every_row(tmp_path, cache, monkeypatch):
    """Why sealing exists: the same run with --unsealed lets one plugin zero every score, its own and mccann's."""
    original = ConditionScores.mean
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(CHEATERS / "rigger.py", folder)
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(folder))
    monkeypatch.setenv(UNSEALED_ENV, "1")
    registry.refresh()
    try:
        rows = run(
            tasks=[TINY],
            surrogates=["rigger", "mccann"],
            seeds=[0],
            results_dir=tmp_path,
            cache_dir=cache,
            progress=False,
        ).results
    finally:
        ConditionScores.mean = original
        registry.refresh()
    assert (rows.w2 == 0).all() and not rows.sealed.astype(bool).any()


def test_a_sandbox_that_dies_is_a_failed_row_with_how(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "dies.py").write_text(
        "import os, signal\nfrom hti_bench.surrogate import Surrogate\n\n\n"
        "class Dies(Surrogate):\n    name = 'dies'\n\n"
        "    def fit(self, anchors, task=None, *, seed=0):\n        os.kill(os.getpid(), signal.SIGKILL)\n\n"
        "    def sample(self, lam, conditions, n, seed):\n        raise AssertionError\n"
    )
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(folder))
    rows = run(tasks=["gaussian-path"], surrogates=["dies", "mccann"], seeds=[0], results_dir=tmp_path, progress=False)
    rows = rows.results
    dead = rows[rows.surrogate == "dies"]
    assert (dead.status == "failed").all()
    assert dead.error.str.contains(
        "fit: SandboxError: the surrogate's process ended without answering: it was killed by SIGKILL"
    ).all()
    assert (rows[rows.surrogate == "mccann"].status == "ok").all()


def test_a_sandbox_cannot_read_outside_its_code(tmp_path):
    from hti_bench.harness.sandbox.outside import RemoteError

    secret = tmp_path / "secret.py"
    secret.write_text("held_out = 0.25\n")
    with Sandbox() as box:
        assert box.sealed
        with pytest.raises(RemoteError) as failure:
            box.call("describe", str(secret))
    assert failure.value.line.startswith("PermissionError: [Errno 13] Permission denied")
    assert not os.path.exists(box.scratch)  # removed with the sandbox
    with open(secret) as fh:  # this process reads it: the sandbox was refused, not the file missing
        assert "0.25" in fh.read()


def test_samples_come_back_as_plain_arrays_and_are_checked():
    from hti_bench.harness.sandbox import wire

    class Pipe:
        def __init__(self):
            self.buffers = []

        def send_bytes(self, data):
            self.buffers.append(bytes(data))

        def recv_bytes(self):
            return self.buffers.pop(0)

    pipe = Pipe()
    out = torch.randn(3, 4, 2, dtype=torch.float64)
    wire.send_to_scorer(pipe, {"ok": True}, (out, torch.ones(2, dtype=torch.bfloat16)))
    header, (got, half) = wire.receive_from_sandbox(pipe)
    assert header == {"ok": True} and torch.equal(got, out) and got.dtype == torch.float64
    assert half.dtype == torch.bfloat16 and torch.equal(half, torch.ones(2, dtype=torch.bfloat16))
    for bad in (b"\x80\x04 a pickle", b'{"arrays": [["object", [1]]]}', b'{"arrays": [["float32", [10000, 100000]]]}'):
        pipe.buffers = [bad]
        with pytest.raises(wire.WireError):
            wire.receive_from_sandbox(pipe)
    pipe.buffers = [b'{"arrays": [["float32", [2]]]}', b"\x00" * 5]  # 5 bytes for 2 float32
    with pytest.raises(wire.WireError, match="5 bytes"):
        wire.receive_from_sandbox(pipe)
    assert math.isfinite(float(got.sum()))


def test_hti_bench_check_runs_the_plugin_sealed(cheaters, capsys):
    """``hti-bench check``: the class checks run in a sandbox, the harness-scoring checks through the
    sealed harness here. The frame walker's scored check fails with the refusal; the rigger is scored
    honestly (garbage of the right shape is a valid answer) and rigs nothing here."""
    from hti_bench.cli import main

    assert main(["check", "frame-walker"]) == 1
    out = capsys.readouterr().out
    assert "check_scored_by_the_harness" in out and "anchor networks only" in out
    main(["check", "rigger"])  # it fails check_outside_range, honestly: it answers anywhere
    assert "ok   rigger check_scored_by_the_harness" in capsys.readouterr().out
    assert ConditionScores.mean.__module__ == "hti_bench.scoring"


def test_where_nothing_can_be_sealed_the_run_says_so_and_every_row_is_marked(tmp_path, monkeypatch, capsys):
    """A plugin folder that holds the target cache cannot be both readable (its code) and sealed off (the
    cache): the run warns once, loudly, records sealed = false, and the leaderboard printout marks it."""
    from hti_bench.cli import main

    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(folder))
    monkeypatch.setenv("HTI_BENCH_CACHE", str(folder / "cache"))
    with pytest.warns(RuntimeWarning, match="UNSEALED: .*lies inside"):
        code = main(["run", "-t", "gaussian-path", "-s", "mccann", "--seeds", "0", "--results", str(tmp_path / "r")])
    assert code == 0
    rows = pd.read_csv(tmp_path / "r" / "results.csv")
    assert (rows.status == "ok").all() and not rows.sealed.astype(bool).any()
    main(["leaderboard", "--results", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert "mccann †" in out and "† ran unsealed" in out
