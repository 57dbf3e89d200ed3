"""Finding surrogates and tasks by name.

Surrogates are discovered, not listed: every ``*.py`` in the built-in ``baselines/`` and ``methods/``
folders (files starting ``_`` or ``template_`` are skipped), every folder on ``$HTI_BENCH_PLUGIN_PATH``
(``os.pathsep``-separated), and every class registered under the entry-point group
``hti_bench.surrogates`` by another installed package. Each file holds exactly one
:class:`~hti_bench.surrogate.Surrogate` subclass. A file that fails to import, or a plugin folder that
does not exist, is reported as broken, with its error, and the others load as usual; two plugins with
the same name are an error naming both.

The built-in folders are the checkout's top-level ``baselines/`` and ``methods/`` (a source checkout or
an editable install). A wheel (``pip install .``) ships them inside the package, as
``hti_bench/builtin/baselines`` and ``hti_bench/builtin/methods`` (``package-dir`` in pyproject.toml),
so that it installs no top-level ``baselines``/``methods`` package; when that packaged copy exists it
is searched instead, never both. (The test is on the packaged copy, not on the top-level folders: from
a wheel, ``PROJECT_ROOT`` is site-packages, where another distribution may own a ``baselines`` package.)

Tasks are the modules of :mod:`hti_bench.tasks` plus the entry-point group ``hti_bench.tasks``.

Importing this module is cheap (no torch, no :mod:`importlib.metadata`), so the start-up path of the
command line (:mod:`hti_bench.harness.catalog`) can use :func:`plugin_dirs`; discovery itself imports them.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hti_bench.clock import CLOCK_PARAM
from hti_bench.errors import ConfigError, PluginError, UnknownNameError, unknown_name_message
from hti_bench.specs import parse_spec

if TYPE_CHECKING:
    from hti_bench.surrogate import Surrogate
    from hti_bench.task import NetworkStore, Task

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Where a wheel puts the built-in plugin folders; absent in a checkout (see the module docstring).
PACKAGED_PLUGINS = Path(__file__).resolve().parents[1] / "builtin"
BUILTIN_FOLDERS = ("baselines", "methods")
SURROGATE_GROUP = "hti_bench.surrogates"
TASK_GROUP = "hti_bench.tasks"


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin file that could not be loaded, and why."""

    name: str
    source: str
    error: str


@dataclass
class _Discovery:
    surrogates: dict[str, type[Surrogate]]
    sources: dict[str, str]
    broken: list[BrokenPlugin]


_cache: _Discovery | None = None


def entry_points(**params: Any) -> Any:
    """:func:`importlib.metadata.entry_points`, imported on first use (the import alone is a noticeable part of start-up)."""
    from importlib.metadata import entry_points as _entry_points

    return _entry_points(**params)


def builtin_plugin_dirs() -> list[Path]:
    """The built-in plugin folders: the packaged copies in an installed wheel, else the checkout's."""
    root = PACKAGED_PLUGINS if PACKAGED_PLUGINS.is_dir() else PROJECT_ROOT
    return [root / name for name in BUILTIN_FOLDERS]


def plugin_dirs() -> list[Path]:
    """Folders searched for surrogate plugins, in order, without duplicates.

    A folder that does not exist (or is not a folder) is kept: discovery reports it as a broken plugin.
    """
    dirs = builtin_plugin_dirs()
    extra = os.environ.get("HTI_BENCH_PLUGIN_PATH", "")
    dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def _missing_folder(folder: Path) -> BrokenPlugin:
    what = "is not a folder" if folder.exists() else "does not exist"
    builtin = folder in [d.resolve() for d in builtin_plugin_dirs()]
    where = "a built-in plugin folder" if builtin else "listed in $HTI_BENCH_PLUGIN_PATH"
    return BrokenPlugin(f"{folder.name}/", str(folder), f"plugin folder {folder} {what} ({where})")


def _load_file(path: Path, reuse: bool = False) -> Any:
    """Import the plugin file ``path`` (again: discovery sees its current code); with ``reuse``, the
    module already imported from the same file, unchanged since (a sandbox reuses what its template
    preloaded, :func:`preload_builtin_plugins`)."""
    module_name = f"hti_bench_plugins.{path.parent.name}.{path.stem}"
    st = path.stat()
    stamp = (str(path), st.st_mtime_ns, st.st_size)
    if reuse and getattr(sys.modules.get(module_name), "__hti_stamp__", None) == stamp:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    module.__hti_stamp__ = stamp
    return module


def preload_builtin_plugins() -> None:
    """Import the suite's own plugin files (``baselines/``, ``methods/``) into this process: what a
    sandbox template does, so that a sandbox running a built-in surrogate finds its module imported."""
    for folder in builtin_plugin_dirs():
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            if not path.name.startswith(("_", "template_")):
                try:
                    _load_file(path)
                except Exception:  # reported where it is used, by discovery
                    pass


def _abstract_note(module: Any) -> str:
    """Why a file's Surrogate subclasses do not count: the abstract methods they leave unimplemented."""
    from hti_bench.surrogate import Surrogate

    notes = [
        f"{obj.__name__} leaves {', '.join(sorted(obj.__abstractmethods__))} unimplemented"
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Surrogate)
        and obj.__module__ == module.__name__
        and inspect.isabstract(obj)
    ]
    return f" ({'; '.join(notes)})" if notes else ""


def _surrogates_in(module: Any) -> list[type[Surrogate]]:
    from hti_bench.surrogate import Surrogate

    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Surrogate)
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]


def _discover() -> _Discovery:
    from hti_bench.surrogate import Surrogate

    found: dict[str, type[Surrogate]] = {}
    sources: dict[str, str] = {}
    broken: list[BrokenPlugin] = []

    def add(cls: type[Surrogate], source: str) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            broken.append(BrokenPlugin(cls.__name__, source, "class attribute 'name' is not set"))
            return
        if name in found:
            raise PluginError(
                f"Duplicate surrogate name '{name}': defined in {sources[name]} and in {source}. "
                "Rename one of them (the 'name' class attribute)."
            )
        found[name] = cls
        sources[name] = source

    for folder in plugin_dirs():
        if not folder.is_dir():
            broken.append(_missing_folder(folder))
            continue
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith(("_", "template_")):
                continue
            try:
                module = _load_file(path)
            except Exception as err:
                last = traceback.format_exception_only(type(err), err)[-1].strip()
                broken.append(BrokenPlugin(path.stem, str(path), last))
                continue
            classes = _surrogates_in(module)
            if len(classes) != 1:
                what = ", ".join(c.__name__ for c in classes) or "none" + _abstract_note(module)
                broken.append(
                    BrokenPlugin(path.stem, str(path), f"expected exactly one Surrogate subclass, found {what}")
                )
                continue
            add(classes[0], str(path))

    for ep in entry_points(group=SURROGATE_GROUP):
        source = f"entry point {ep.name} = {ep.value}"
        try:
            cls = ep.load()
        except Exception as err:
            broken.append(BrokenPlugin(ep.name, source, traceback.format_exception_only(type(err), err)[-1].strip()))
            continue
        if not (inspect.isclass(cls) and issubclass(cls, Surrogate)):
            broken.append(BrokenPlugin(ep.name, source, "does not point at a Surrogate subclass"))
            continue
        add(cls, source)
    return _Discovery(dict(sorted(found.items())), sources, broken)


def refresh() -> None:
    """Forget what was discovered (after adding a plugin file, or changing the plugin path)."""
    global _cache
    _cache = None


def _discovery() -> _Discovery:
    global _cache
    if _cache is None:
        _cache = _discover()
    return _cache


def surrogate_classes() -> dict[str, type[Surrogate]]:
    """Every loadable surrogate class, by name."""
    return dict(_discovery().surrogates)


def surrogate_source(name: str) -> str:
    return _discovery().sources[name]


def broken_plugins() -> list[BrokenPlugin]:
    """Plugin files that failed to load, with the error."""
    return list(_discovery().broken)


def _check_params(kind: str, name: str, params: dict[str, Any], valid: dict[str, Any]) -> None:
    for key in params:
        if key not in valid:
            raise ConfigError(unknown_name_message(f"parameter of {kind} '{name}'", key, valid))


def make_surrogate(spec: str) -> Surrogate:
    """Build a surrogate from ``name`` or ``name[key=value,...]`` and validate its parameters
    (:meth:`~hti_bench.surrogate.Surrogate.validate_params`), before anything trains.

    This imports every plugin into the calling process: the harness's scoring side never calls it (a
    sealed run resolves names in sandboxes, :mod:`hti_bench.harness.sandbox.lookup`); a plugin's own tests may."""
    name, _params = parse_spec(spec)
    classes = surrogate_classes()
    if name not in classes:
        for b in broken_plugins():
            if b.name == name:
                raise PluginError(f"Surrogate plugin '{name}' ({b.source}) failed to load: {b.error}")
        raise UnknownNameError(
            unknown_name_message("surrogate", name, classes, "discovered in " + ", ".join(map(str, plugin_dirs())))
        )
    return build_surrogate(classes[name], spec)


def build_surrogate(cls: type[Surrogate], spec: str) -> Surrogate:
    """An instance of ``cls`` from ``spec`` (its name with parameters), its parameters validated."""
    name, params = parse_spec(spec)
    clock = params.pop(CLOCK_PARAM, "") if CLOCK_PARAM not in cls.default_params() else ""
    _check_params("surrogate", name, params, {**cls.default_params(), CLOCK_PARAM: ""})
    try:
        surrogate = cls(**params)
    except Exception as err:
        raise ConfigError(f"Error when initialising surrogate '{name}' from {spec!r}: {err}") from err
    if clock:
        surrogate.clock = str(clock)  # the harness applies it (hti_bench.clock)
    surrogate.validate_params()
    return surrogate


def plugin_files() -> tuple[list[str], list[BrokenPlugin]]:
    """Every source discovery would import, without importing any: the plugin files of
    :func:`plugin_dirs` (as paths) and the entry points (as ``entry point NAME = module:attr``), and
    the folders that are missing."""
    sources: list[str] = []
    broken: list[BrokenPlugin] = []
    for folder in plugin_dirs():
        if not folder.is_dir():
            broken.append(_missing_folder(folder))
            continue
        sources += [str(p) for p in sorted(folder.glob("*.py")) if not p.name.startswith(("_", "template_"))]
    sources += list(_entry_point_sources())
    return sources, broken


@functools.lru_cache(maxsize=1)
def _entry_point_sources() -> tuple[str, ...]:
    """The surrogate entry points as sources (read once per process: the installed packages do not
    change while it runs, and reading them costs tens of milliseconds)."""
    return tuple(f"entry point {ep.name} = {ep.value}" for ep in entry_points(group=SURROGATE_GROUP))


def load_source(source: str, reuse: bool = False) -> type[Surrogate]:
    """The one surrogate class ``source`` (a plugin file's path, or an entry point as
    :func:`plugin_files` writes it) defines, importing nothing else (``reuse``: see :func:`_load_file`).
    Raises :class:`PluginError` saying why it holds none."""
    from hti_bench.surrogate import Surrogate

    if source.startswith("entry point "):
        target = source.split(" = ", 1)[1]
        module_name, _, attr = target.partition(":")
        obj: Any = importlib.import_module(module_name.strip())
        for part in attr.strip().split(".") if attr.strip() else []:
            obj = getattr(obj, part)
        if not (inspect.isclass(obj) and issubclass(obj, Surrogate)):
            raise PluginError("does not point at a Surrogate subclass")
        return obj
    module = _load_file(Path(source), reuse=reuse)
    classes = _surrogates_in(module)
    if len(classes) != 1:
        what = ", ".join(c.__name__ for c in classes) or "none" + _abstract_note(module)
        raise PluginError(f"expected exactly one Surrogate subclass, found {what}")
    return classes[0]


def task_classes() -> dict[str, type[Task]]:
    """Every task class, by name: the built-in :mod:`hti_bench.tasks` modules and entry points."""
    import hti_bench.tasks as pkg
    from hti_bench.task import Task

    found: dict[str, type[Task]] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Task)
                and obj.__module__ == module.__name__
                and not inspect.isabstract(obj)
            ):
                found[obj.name] = obj
    for ep in entry_points(group=TASK_GROUP):
        cls = ep.load()
        if cls.name in found and found[cls.name] is not cls:
            raise PluginError(f"Duplicate task name '{cls.name}': built in and entry point {ep.value}.")
        found[cls.name] = cls
    return dict(sorted(found.items()))


def default_tasks() -> list[str]:
    return [name for name, cls in task_classes().items() if cls.in_default_suite]


def make_task(spec: str, cache: NetworkStore | None = None) -> Task:
    """Build a task from ``name`` or ``name[option=value,...]``; ``cache`` (a
    :class:`~hti_bench.harness.targets.TargetCache`) is where a task that trains networks keeps them."""
    name, params = parse_spec(spec)
    classes = task_classes()
    if name not in classes:
        raise UnknownNameError(unknown_name_message("task", name, classes))
    return classes[name](cache=cache, **params)
