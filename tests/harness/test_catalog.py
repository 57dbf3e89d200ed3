"""The listing cache of ``hti-bench list`` (hti_bench/harness/catalog.py): same output, renewed when it must be.

The listings run in subprocesses through a wrapper that reports whether torch was imported: a listing
that imports torch was rebuilt, one that does not came from the catalog.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hti_bench.cli import main
from hti_bench.harness import catalog

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "methods" / "template_surrogate.py"

# Runs the command line in-process and says on stderr whether torch ended up imported.
WRAPPER = """
import sys
from hti_bench.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print("TORCH-IMPORTED" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
sys.exit(code)
"""


def hti(env, *args):
    """(stdout, whether torch was imported) of ``hti-bench ARGS``."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] in ("TORCH-IMPORTED", "NO-TORCH"), proc.stderr
    return proc.stdout, "TORCH-IMPORTED" in proc.stderr


def plugin_text(name, description):
    text = TEMPLATE.read_text()
    text = text.replace('name: ClassVar[str] = "my-method"', f'name: ClassVar[str] = "{name}"')
    return text.replace(
        'description: ClassVar[str] = "Template: lower anchor\'s samples, shifted along the mean path."',
        f"description: ClassVar[str] = {description!r}",
    )


@pytest.fixture
def env(tmp_path):
    """A temporary cache folder and plugin folder (with one broken plugin), for subprocesses."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "exploding.py").write_text("raise RuntimeError('plugin exploded')\n")
    env = dict(os.environ)
    env["HTI_BENCH_CACHE"] = str(tmp_path / "cache")
    env["HTI_BENCH_PLUGIN_PATH"] = str(plugins)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def catalog_files(env):
    return sorted((Path(env["HTI_BENCH_CACHE"]) / "catalog").glob("*.json"))


def test_cached_listing_is_the_fresh_one_without_importing_torch(env):
    fresh, torch_loaded = hti(env, "list")
    assert torch_loaded and len(catalog_files(env)) == 1
    assert "mccann" in fresh and "Broken plugins (not loaded):" in fresh
    assert "exploding" in fresh and "RuntimeError: plugin exploded" in fresh

    cached, torch_loaded = hti(env, "list")
    assert not torch_loaded
    assert cached == fresh  # the broken plugin, with its error, included

    tasks, torch_loaded = hti(env, "list", "tasks")
    surrogates, torch_loaded_too = hti(env, "list", "surrogates")
    assert not torch_loaded and not torch_loaded_too
    assert tasks + surrogates == fresh

    refreshed, torch_loaded = hti(env, "list", "tasks", "--refresh")
    assert torch_loaded and refreshed == tasks
    after, torch_loaded = hti(env, "list")  # the surrogates section was kept
    assert not torch_loaded and after == fresh


def test_catalog_is_renewed_when_a_plugin_is_added_changed_or_removed(env):
    plugins = Path(env["HTI_BENCH_PLUGIN_PATH"])
    before, _ = hti(env, "list", "surrogates")
    assert "catalog-probe" not in before

    (plugins / "probe.py").write_text(plugin_text("catalog-probe", "first version"))
    added, torch_loaded = hti(env, "list", "surrogates")
    assert torch_loaded and "catalog-probe" in added and "first version" in added

    (plugins / "probe.py").write_text(plugin_text("catalog-probe", "second, longer version"))
    changed, torch_loaded = hti(env, "list", "surrogates")
    assert torch_loaded and "second, longer version" in changed and "first version" not in changed

    (plugins / "probe.py").unlink()
    removed, torch_loaded = hti(env, "list", "surrogates")
    assert torch_loaded and removed == before

    again, torch_loaded = hti(env, "list", "surrogates")
    assert not torch_loaded and again == before
    assert len(catalog_files(env)) == 1  # rewritten in place, not one file per state


def test_corrupt_or_malformed_catalog_is_rebuilt_not_an_error(env):
    fresh, _ = hti(env, "list")
    [path] = catalog_files(env)
    good = json.loads(path.read_text())

    path.write_bytes(b'{"format": 1, "fingerprint": "\xff truncated')
    out, torch_loaded = hti(env, "list")
    assert torch_loaded and out == fresh
    assert json.loads(path.read_text())["fingerprint"] == good["fingerprint"]  # rewritten

    # Valid JSON, current fingerprint, but entries that cannot be printed: rebuilt too.
    path.write_text(json.dumps({**good, "tasks": [{"bogus": 1}], "plugins": {"surrogates": 3, "broken": []}}))
    out, torch_loaded = hti(env, "list")
    assert torch_loaded and out == fresh
    assert json.loads(path.read_text()) == good

    out, torch_loaded = hti(env, "list")
    assert not torch_loaded and out == fresh


def test_help_and_import_do_not_import_torch(env):
    for args in (["--help"], *([cmd, "--help"] for cmd in ("list", "run", "leaderboard", "sweep", "plot", "check"))):
        out, torch_loaded = hti(env, *args)
        assert "usage: hti-bench" in out and not torch_loaded, args
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, hti_bench; print('torch' in sys.modules)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == "False"


def test_fingerprint_follows_plugin_files_and_the_plugin_path(tmp_path, monkeypatch):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(plugins))
    first = catalog.fingerprint()
    assert catalog.fingerprint() == first

    (plugins / "extra.py").write_text("X = 1\n")
    added = catalog.fingerprint()
    (plugins / "notes.txt").write_text("not a plugin")
    assert catalog.fingerprint() == added  # only *.py files are plugins
    (plugins / "extra.py").write_text("X = 22\n")
    changed = catalog.fingerprint()
    os.utime(plugins / "extra.py", ns=(0, 0))  # same size, other mtime
    touched = catalog.fingerprint()
    (plugins / "extra.py").unlink()
    assert len({first, added, changed, touched}) == 4
    assert catalog.fingerprint() == first

    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", os.pathsep.join([str(plugins), str(other)]))
    assert catalog.fingerprint() != first


def test_fingerprint_follows_a_missing_plugin_folder_and_the_packaged_one(tmp_path, monkeypatch):
    from hti_bench.harness import registry

    later = tmp_path / "later"  # on the path before it exists: reported broken, so its creation counts
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(later))
    missing = catalog.fingerprint()
    later.mkdir()
    assert catalog.fingerprint() != missing

    packaged = tmp_path / "builtin"  # as in a wheel: the packaged copies are searched, and fingerprinted
    (packaged / "baselines").mkdir(parents=True)
    (packaged / "methods").mkdir()
    monkeypatch.setattr(registry, "PACKAGED_PLUGINS", packaged)
    empty = catalog.fingerprint()
    (packaged / "methods" / "extra.py").write_text("X = 1\n")
    assert catalog.fingerprint() != empty


def test_unwritable_cache_only_means_no_catalog(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("HTI_BENCH_CACHE", str(blocker))  # the cache folder cannot be created
    assert not catalog.save(catalog.fingerprint(), {"tasks": []})
    assert main(["list", "tasks"]) == 0
    assert "semicircles" in capsys.readouterr().out
