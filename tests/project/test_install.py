"""Facts about the installation that, when wrong, break Lightning or the README (see README 'Installing')."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_torchvision_is_not_installed():
    # A stray torchvision that does not match torch breaks `import pytorch_lightning` (torchmetrics
    # imports it whenever present); torchdyn/torchcfm must stay installed with --no-deps.
    assert importlib.util.find_spec("torchvision") is None


def test_ci_runs_exactly_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2 and "hti-bench run" in commands[0] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci, f".ci/run must run the README command verbatim: {command}"


# --- a regular (non-editable) install ---------------------------------------------------------------

BUILTIN = {"baselines": "hti_bench/builtin/baselines", "methods": "hti_bench/builtin/methods"}


def source_packages():
    """The packages the source tree holds: every folder of hti_bench with a .py file, and the built-in plugins."""
    found = {
        ".".join(d.relative_to(ROOT).parts)
        for d in [ROOT / "hti_bench", *(ROOT / "hti_bench").rglob("*")]
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
    }
    return found | {dest.replace("/", ".") for dest in BUILTIN.values()}


def test_pyproject_lists_every_package():
    # package-dir (the built-in plugins ship inside hti_bench) rules out packages.find: the list is by hand.
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(config["packages"]) == sorted(source_packages()), (
        "update [tool.setuptools] packages in pyproject.toml"
    )
    assert config["package-dir"] == {dest.replace("/", "."): src for src, dest in BUILTIN.items()}


def _check(proc):
    assert proc.returncode == 0, f"{proc.args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_a_wheel_install_lists_and_runs_every_builtin_surrogate(tmp_path):
    """``pip install .`` (a wheel, not editable) ships the built-in plugins, and they list and run.

    The wheel is built offline from a copy of the sources (no build/ left in the checkout) and installed
    with --no-deps into a fresh venv; the stack is borrowed from this interpreter's site-packages through
    a .pth line, which does not process the .pth files there, so an editable hti_bench is not seen.
    """
    from hti_bench.harness import registry
    from hti_bench.specs import format_spec, parse_spec

    classes = registry.surrogate_classes()
    checkout = [d.resolve() for d in registry.builtin_plugin_dirs()]
    builtin = {n: c for n, c in classes.items() if Path(registry.surrogate_source(n)).parent in checkout}
    assert len(builtin) >= 11, builtin

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "setup.py", "setup.cfg", "MANIFEST.in"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    for name in ("hti_bench", *BUILTIN):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _check(
        subprocess.run(
            [
                *pip,
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "-q",
                "-w",
                str(tmp_path / "dist"),
                str(src),
            ],
            capture_output=True,
            text=True,
        )
    )
    (wheel,) = (tmp_path / "dist").glob("hti_bench-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        shipped = set(zf.namelist())
    assert {n.split("/")[0] for n in shipped if not n.split("/")[0].endswith(".dist-info")} == {"hti_bench"}
    expected = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "hti_bench").rglob("*.py") if "__pycache__" not in p.parts
    }
    expected |= {f"{dest}/{p.name}" for folder, dest in BUILTIN.items() for p in (ROOT / folder).glob("*.py")}
    assert expected <= shipped, f"not in the wheel: {sorted(expected - shipped)}"

    venv = tmp_path / "venv"
    _check(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True))
    python = venv / "bin" / "python"
    _check(
        subprocess.run(
            [*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
            capture_output=True,
            text=True,
        )
    )
    site = Path(
        _check(
            subprocess.run(
                [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True,
                text=True,
            )
        ).strip()
    )
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_hti_bench_test_stack.pth").write_text("".join(f"{p}\n" for p in ours))

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "HTI_BENCH_PLUGIN_PATH", "HTI_BENCH_WANDB", "VIRTUAL_ENV")
    }
    env.update(
        HTI_BENCH_CACHE=str(tmp_path / "cache"),
        WANDB_MODE="disabled",
        WANDB_DIR=str(tmp_path / "wandb"),
        WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"),
    )

    def run(*args):
        return _check(subprocess.run(args, cwd=outside, env=env, capture_output=True, text=True))

    installed = Path(run(python, "-c", "import hti_bench; print(hti_bench.__file__)").strip()).resolve()
    assert installed.is_relative_to(venv.resolve()), f"hti_bench imported from {installed}, not the fresh venv"
    packaged = installed.parent / "builtin"

    listing = run(venv / "bin" / "hti-bench", "list", "surrogates")
    assert "Broken plugins" not in listing, listing
    assert set(re.findall(r"^   (\S+) ", listing, re.M)) == set(builtin), listing
    sources = [Path(s) for s in re.findall(r"^     from (.+)$", listing, re.M)]
    assert len(sources) == len(builtin) and all(s.is_relative_to(packaged) for s in sources), listing

    trained = (
        "moons-dropout[epochs=1,n_train=256,hidden=16,diffusion_steps=10,n_samples=24,"
        "anchors=(0.0,0.5,0.9),heldout=(0.25,0.7)]"
    )
    specs = [arg for name, cls in builtin.items() for arg in ("-s", format_spec(name, cls.test_config))]
    results = tmp_path / "results"
    # gaussian-plane (two hyperparameters) for the surrogates that only run on several
    run(
        venv / "bin" / "hti-bench",
        "run",
        "-t",
        "gaussian-path[n_samples=24]",
        "-t",
        trained,
        "-t",
        "gaussian-plane[n_samples=24]",
        *specs,
        "--seeds",
        "0",
        "--jobs",
        "1",
        "--no-progress",
        "--results",
        str(results),
    )
    board = pd.read_csv(results / "leaderboard.csv")
    board["name"] = [parse_spec(s)[0] for s in board["surrogate"]]
    ok = set(board.loc[board["status"] == "ok", "name"])
    assert ok == set(builtin), board[["task", "surrogate", "status"]].to_string()
