"""`run(jobs=N)`: worker processes give the serial run's rows, train each target once, survive crashes."""

import numpy as np
import pytest

from hti_bench.errors import ConfigError
from hti_bench.harness.pool import resolve_jobs
from hti_bench.harness.runner import run

TRAINED = "moons-dropout[epochs=2,n_train=256,hidden=16,diffusion_steps=10,n_samples=32,anchors=(0.0,0.5,0.9),heldout=(0.25,0.7)]"
SURROGATES = ["mccann", "mixture", "cfm[steps=30,batch_size=32,hidden=(16,16)]"]

CRASHER = '''
import os
from hti_bench.surrogate import Surrogate


class Crasher(Surrogate):
    """Kills its own process when fitted on seed 1 (a segfault stand-in)."""

    name = "crasher"
    description = "test plugin"

    def fit(self, anchors, task=None, *, seed=0):
        if seed == 1:
            os.kill(os.getpid(), 9)
        self.anchors_ = anchors
        return self

    def sample(self, lam, conditions, n, seed=0):
        import torch
        k = self.anchors_.samples.shape[0] // 2
        return self.anchors_.samples[k, :conditions.shape[0], :n].clone()
'''


def _rows(summary):
    df = summary.results.sort_values(["task", "surrogate", "seed", "lambda_heldout"]).reset_index(drop=True)
    return df


def test_two_workers_give_the_serial_rows(tmp_path):
    kw = dict(
        tasks=[TRAINED, "semicircles[n_samples=64]"],
        surrogates=SURROGATES,
        seeds=[0, 1],
        progress=False,
        cache_dir=tmp_path / "cache",
    )
    serial = run(results_dir=tmp_path / "serial", jobs=1, **kw)
    parallel = run(results_dir=tmp_path / "parallel", jobs=2, **kw)
    a, b = _rows(serial), _rows(parallel)
    assert len(a) == len(b) == 2 * 2 * 3 * 2 and (a.status == "ok").all() and (b.status == "ok").all()
    assert a[["task", "surrogate", "seed", "lambda_heldout"]].equals(b[["task", "surrogate", "seed", "lambda_heldout"]])
    # same anchors and references; fits may differ by thread-count rounding only
    np.testing.assert_allclose(a.floor_w2, b.floor_w2, rtol=1e-6)
    np.testing.assert_allclose(a.w2, b.w2, rtol=1e-3, atol=1e-4)
    assert parallel.units_run == serial.units_run == 12


def test_workers_train_each_missing_target_once(tmp_path):
    summary = run(
        tasks=[TRAINED],
        surrogates=["mixture", "mccann"],
        seeds=[0],
        results_dir=tmp_path / "r",
        cache_dir=tmp_path / "cache",
        progress=False,
        jobs=2,
    )
    assert summary.targets_trained == 3 + 2 + 2
    files = list((tmp_path / "cache").rglob("*.pt"))
    assert len(files) == 7
    again = run(
        tasks=[TRAINED],
        surrogates=["mixture"],
        seeds=[1],
        results_dir=tmp_path / "r",
        cache_dir=tmp_path / "cache",
        progress=False,
        jobs=2,
    )
    assert again.targets_trained == 0


@pytest.mark.parametrize(
    "unsealed, reason",
    [
        ("", "the surrogate's process ended without answering: it was killed by SIGKILL"),  # the sandbox died
        ("1", "worker process died"),  # unsealed, the plugin kills the worker itself
    ],
)
def test_a_dying_worker_fails_its_unit_and_the_run_goes_on(tmp_path, monkeypatch, unsealed, reason):
    monkeypatch.setenv("HTI_BENCH_UNSEALED", unsealed)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "crasher.py").write_text(CRASHER)
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(plugins))
    from hti_bench.harness import registry

    registry.refresh()
    try:
        summary = run(
            tasks=["semicircles[n_samples=64]"],
            surrogates=["crasher", "mixture"],
            seeds=[0, 1, 2],
            results_dir=tmp_path / "r",
            progress=False,
            jobs=2,
        )
    finally:
        registry.refresh()
    rows = summary.results
    crashed = rows[(rows.surrogate == "crasher") & (rows.seed == 1)]
    assert (crashed.status == "failed").all() and crashed.error.str.contains(reason).all()
    others = rows.drop(crashed.index)
    assert (others.status == "ok").all() and len(others) == 5 * 2
    assert len(list((tmp_path / "r" / "runs").glob("*.csv"))) == 2 * 3  # every unit stored once
    assert not rows.duplicated(["task", "surrogate", "seed", "lambda_heldout"]).any()


@pytest.mark.parametrize("bad", ["0x", "-1", "abc"])
def test_bad_jobs_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="jobs must be"):
        resolve_jobs(bad)
    assert resolve_jobs("auto") >= 1 and resolve_jobs("3") == 3


@pytest.mark.parametrize("when", ["while they start", "while they fit"])
def test_killing_the_run_kills_its_workers(tmp_path, when):
    """With every core busy, SIGKILL the run while its workers are still starting up (importing torch,
    the slowest moment to notice) or once they are fitting: no worker, nor the sandbox template, nor a
    sandbox a worker fits in, may outlive it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from hti_bench.harness.pool import available_cores

    def alive(pids):
        return [
            p for p in pids if os.path.exists(f"/proc/{p}") and "Z" not in open(f"/proc/{p}/stat").read().split()[2]
        ]

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(available_cores())]
    workers: list[int] = []
    try:
        env = {**os.environ, "HTI_BENCH_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "disabled"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hti_bench",
                "run",
                "-t",
                "semicircles",
                "-s",
                "cfm[steps=100000]",
                "--seeds",
                "0",
                "1",
                "--jobs",
                "2",
                "--no-progress",
                "--results",
                str(tmp_path / "r"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def children(parent=proc.pid):
            out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
            return [int(p) for p in out.split()]

        def descendants():
            found, stack = [], children()
            while stack:
                pid = stack.pop()
                found.append(pid)
                stack += children(pid)
            return found

        deadline = time.time() + 180
        while len(children()) < 2 and time.time() < deadline:
            time.sleep(0.05)
        workers = children()
        assert len(workers) >= 2, "the run never started its workers"
        if when == "while they fit":
            time.sleep(20)  # long enough on busy cores for torch's import and the first steps of the fits
            workers = descendants()
            assert len(workers) >= 4, "expected two workers, the sandbox template and the sandboxes fitting"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 120
        left = alive(workers)
        while left and time.time() < deadline:
            time.sleep(0.5)
            left = alive(workers)
        assert not left, f"workers {left} outlived the run ({when})"
    finally:
        for b in burners:
            b.kill()
        for pid in alive(workers):
            os.kill(pid, signal.SIGKILL)  # never leave an orphan behind, even when the test fails


def test_units_are_handed_out_longest_first():
    from hti_bench.harness.runner import _longest_first

    keys = [("t", "mccann", 1), ("t", "clot", 1), ("t", "cfm", 1), ("t", "new", 1), ("u", "clot", 0)]
    cost = {("t", "mccann"): 0.1, ("t", "clot"): 20.0, ("t", "cfm"): 7.0}
    order = []
    while keys:
        order.append(keys.pop(_longest_first(keys, cost)))
    # unseen kinds first (in submission order), then by the fit time an earlier seed took
    assert [k[:2] for k in order] == [("t", "new"), ("u", "clot"), ("t", "clot"), ("t", "cfm"), ("t", "mccann")]
