"""Plugin discovery: folders, template files, broken plugins, duplicates, did-you-mean."""

import os
import shutil
from pathlib import Path

import pytest

from hti_bench.errors import ConfigError, PluginError, UnknownNameError
from hti_bench.harness import registry
from hti_bench.harness.runner import run

ROOT = registry.PROJECT_ROOT


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the project's plugin folders that tests may add files to."""
    shutil.copytree(ROOT / "baselines", tmp_path / "baselines")
    shutil.copytree(ROOT / "methods", tmp_path / "methods")
    monkeypatch.setattr(registry, "PROJECT_ROOT", tmp_path)
    registry.refresh()
    yield tmp_path
    registry.refresh()


def add_plugin_from_template(project, filename, name):
    text = (project / "methods" / "template_surrogate.py").read_text()
    text = text.replace('name: ClassVar[str] = "my-method"', f'name: ClassVar[str] = "{name}"')
    (project / "methods" / filename).write_text(text)
    registry.refresh()


def test_a_copied_template_is_discovered_and_runs(project, tmp_path):
    assert "my-method" not in registry.surrogate_classes()  # template_ files are skipped
    add_plugin_from_template(project, "my_method.py", "my-method")
    assert "my-method" in registry.surrogate_classes()
    summary = run(
        tasks=["gaussian-path[n_samples=40]"],
        surrogates=["my-method", "mccann"],
        seeds=[0],
        results_dir=tmp_path / "res",
        progress=False,
    )
    board = summary.leaderboard.set_index("surrogate")
    assert board.loc["my-method", "status"] == "ok"
    assert board.loc["my-method", "n_rows"] == 2
    assert board.loc["my-method", "w2_mean"] > 0


def test_broken_plugin_is_listed_and_does_not_break_others(project):
    (project / "methods" / "broken.py").write_text("import not_a_real_module_xyz\n")
    registry.refresh()
    broken = {b.name: b for b in registry.broken_plugins()}
    assert "not_a_real_module_xyz" in broken["broken"].error
    assert "mccann" in registry.surrogate_classes()
    with pytest.raises(PluginError, match="failed to load.*not_a_real_module_xyz"):
        registry.make_surrogate("broken")


def test_file_without_exactly_one_surrogate_is_broken(project):
    (project / "methods" / "empty.py").write_text("X = 1\n")
    registry.refresh()
    assert any(b.name == "empty" and "exactly one" in b.error for b in registry.broken_plugins())


def test_duplicate_names_are_an_error_naming_both_files(project):
    add_plugin_from_template(project, "dup_a.py", "dup")
    add_plugin_from_template(project, "dup_b.py", "dup")
    with pytest.raises(PluginError, match=r"Duplicate surrogate name 'dup'.*dup_a\.py.*dup_b\.py"):
        registry.surrogate_classes()


def test_plugin_path_env_adds_a_folder(tmp_path, monkeypatch):
    folder = tmp_path / "extra"
    folder.mkdir()
    text = (ROOT / "methods" / "template_surrogate.py").read_text().replace('"my-method"', '"from-env"')
    (folder / "p.py").write_text(text)
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(folder))
    registry.refresh()
    try:
        assert "from-env" in registry.surrogate_classes()
    finally:
        registry.refresh()


def test_unknown_surrogate_lists_available_and_closest():
    with pytest.raises(UnknownNameError) as info:
        registry.make_surrogate("mcann")
    msg = str(info.value)
    assert "Did you mean 'mccann'?" in msg and "mixture" in msg and "nearest-anchor" in msg


def test_unknown_task_lists_available_and_closest():
    with pytest.raises(
        UnknownNameError, match=r"Unknown task 'moons-dropuot'\. Did you mean 'moons-dropout'\?.*semicircles"
    ):
        registry.make_task("moons-dropuot")


def test_unknown_parameter_is_refused_with_valid_ones():
    with pytest.raises(ConfigError, match=r"Unknown option for task 'moons-dropout' 'epoch'\. Did you mean 'epochs'"):
        registry.make_task("moons-dropout[epoch=3]")
    add = registry.make_surrogate  # surrogates with no parameters accept none
    with pytest.raises(ConfigError, match="Unknown parameter of surrogate 'mccann'"):
        add("mccann[foo=1]")


def test_entry_point_plugins_are_discovered(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("ep_plugin", ROOT / "methods" / "template_surrogate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = type("FromPackage", (module.MeanShift,), {"name": "from-package"})

    class FakeEntryPoint:
        name, value = "from-package", "otherpkg.plugin:FromPackage"

        def load(self):
            return cls

    class Broken(FakeEntryPoint):
        name, value = "broken-ep", "otherpkg.missing:Nope"

        def load(self):
            raise ImportError("No module named 'otherpkg.missing'")

    monkeypatch.setattr(
        registry,
        "entry_points",
        lambda group: [FakeEntryPoint(), Broken()] if group == registry.SURROGATE_GROUP else [],
    )
    registry.refresh()
    try:
        assert registry.surrogate_classes()["from-package"] is cls
        assert "entry point from-package" in registry.surrogate_source("from-package")
        assert any(b.name == "broken-ep" and "otherpkg.missing" in b.error for b in registry.broken_plugins())
    finally:
        registry.refresh()


def test_a_missing_plugin_folder_is_reported_as_broken(tmp_path, monkeypatch):
    missing, a_file = tmp_path / "no-such-folder", tmp_path / "plugin.py"
    a_file.write_text("X = 1\n")
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", f"{missing}{os.pathsep}{a_file}")
    registry.refresh()
    try:
        broken = {b.source: b for b in registry.broken_plugins()}
        assert (
            broken[str(missing)].error == f"plugin folder {missing} does not exist (listed in $HTI_BENCH_PLUGIN_PATH)"
        )
        assert broken[str(missing)].name == "no-such-folder/"
        assert broken[str(a_file)].error == f"plugin folder {a_file} is not a folder (listed in $HTI_BENCH_PLUGIN_PATH)"
        assert "mccann" in registry.surrogate_classes()  # the others load as usual
    finally:
        registry.refresh()


def test_run_warns_about_a_missing_plugin_folder(tmp_path, monkeypatch, capsys):
    from hti_bench.cli import main

    missing = tmp_path / "gone"
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(missing))
    registry.refresh()
    try:
        main(
            [
                "run",
                "-t",
                "gaussian-path[n_samples=16]",
                "-s",
                "mixture",
                "--seeds",
                "0",
                "--no-progress",
                "--results",
                str(tmp_path / "res"),
            ]
        )
    finally:
        registry.refresh()
    assert (
        f"warning: plugin 'gone/' not loaded ({missing}): plugin folder {missing} does not exist"
        in capsys.readouterr().err
    )


def test_packaged_plugin_folders_replace_the_checkouts(tmp_path, monkeypatch):
    """In a wheel the built-in folders are hti_bench/builtin/{baselines,methods}; only those are searched."""
    assert registry.plugin_dirs() == [(ROOT / "baselines").resolve(), (ROOT / "methods").resolve()]  # a checkout
    packaged = tmp_path / "builtin"
    shutil.copytree(ROOT / "baselines", packaged / "baselines")
    shutil.copytree(ROOT / "methods", packaged / "methods")
    monkeypatch.setattr(registry, "PACKAGED_PLUGINS", packaged)
    registry.refresh()
    try:
        assert registry.plugin_dirs() == [(packaged / "baselines").resolve(), (packaged / "methods").resolve()]
        classes = registry.surrogate_classes()  # no duplicate-name error: the checkout's copies are not searched
        assert registry.broken_plugins() == []
        assert {"mccann", "clot"} <= set(classes)
        assert Path(registry.surrogate_source("mccann")).parent == (packaged / "baselines").resolve()
    finally:
        registry.refresh()
