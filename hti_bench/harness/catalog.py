"""The listing cache ("catalog") that lets ``hti-bench list`` answer without importing torch.

Why it exists: a truthful ``hti-bench list`` must import every plugin file (to find its surrogate, or
the error that makes it broken) and instantiate every task class (to print its hyperparameter,
anchors, held-out values, D and C). Those modules import torch, whose import alone is most of the
command's time (``perf/startup.py`` measures both paths). The answer only changes when the files or the environment behind it do, so
it is kept, like ``__pycache__``, as data in ``<cache>/catalog/list-<key>.json`` (``<cache>`` is
:func:`hti_bench.harness.fsutil.default_cache_dir`: ``$HTI_BENCH_CACHE`` or ``~/.cache/hti-bench``), stamped
with a :func:`fingerprint` of everything the answer could depend on:

* every file of the ``hti_bench`` package (path, mtime_ns, size), ``__pycache__`` aside;
* every ``*.py`` file directly in each plugin folder searched (:func:`hti_bench.harness.registry.plugin_dirs`:
  the checkout's ``baselines/`` and ``methods/`` or, in a wheel, their packaged copies, then
  ``$HTI_BENCH_PLUGIN_PATH``), and the folder list itself, a folder that cannot be read (missing, or
  not a folder) by its error;
* ``$HTI_BENCH_PLUGIN_PATH`` and ``$PYTHONPATH`` as text, ``sys.executable`` and the Python version;
* the installed distributions: every ``*.dist-info``/``*.egg-info``/``*.egg-link``/``*.pth`` entry of
  every ``sys.path`` folder, by name (a dist-info name carries its version) and mtime_ns. This covers
  the entry points of ``hti_bench.surrogates``/``hti_bench.tasks`` (they are read from those folders,
  which pip replaces on every install) and the version of every dependency, and costs a few
  ``listdir`` calls instead of importing :mod:`importlib.metadata` (a noticeable import on its own).

The fingerprint is computed before anything is imported, so a file changed during a listing leaves a
catalog that no longer matches. A listing with the same fingerprint is printed from the file, by the
same functions that print a fresh one, so the output is identical either way; a missing, corrupt or
unreadable catalog is ignored and rewritten, a catalog that cannot be written is simply not kept,
and ``hti-bench list --refresh`` imports everything regardless. Only ``list`` uses the catalog: every
other command discovers plugins as before.

What the fingerprint cannot see (run ``--refresh`` after such a change): an edit that keeps a file's
size and mtime (as for ``__pycache__``); code a plugin or task imports from elsewhere than the package
and the top level of the plugin folders (a helper package in a sub-folder, a module on ``$PYTHONPATH``
or in the working folder, the source of an editable install behind an entry point), data files they
read, and environment variables other than the two above.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FORMAT = 2  # bump when the layout of the file changes (2: surrogates' "multi")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the whole hti_bench package
_METADATA_SUFFIXES = (".dist-info", ".egg-info", ".egg-link", ".pth")
_ENV = ("HTI_BENCH_PLUGIN_PATH", "PYTHONPATH")

TASKS_HEADER = "Tasks (* = in the default suite):"
SURROGATES_HEADER = "Surrogates:"
BROKEN_HEADER = "Broken plugins (not loaded):"


# --- the key --------------------------------------------------------------------------------------


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _package_files(add: Callable[..., None]) -> None:
    for root, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(root, name)
            add("package", os.path.relpath(path, PACKAGE_DIR), _stat(path))


def _plugin_files(add: Callable[..., None]) -> None:
    from hti_bench.harness.registry import plugin_dirs  # cheap: registry imports no torch

    for folder in plugin_dirs():
        add("plugins", str(folder))
        try:
            names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".py"))
        except OSError as err:
            add("unreadable", str(err))
            continue
        for name in names:
            add("plugin", name, _stat(os.path.join(folder, name)))


def _distributions(add: Callable[..., None]) -> None:
    # sys.path itself is not part of the key: with ``python -m`` it starts with the working folder,
    # which would make every folder its own catalog. A folder without metadata adds nothing.
    for entry in sys.path:
        folder = entry or os.getcwd()
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(_METADATA_SUFFIXES))
        except NotADirectoryError:  # a zip file on sys.path
            add("zip", folder, _stat(folder))
            continue
        except OSError:
            continue
        for name in names:
            add("dist", folder, name, _stat(os.path.join(folder, name)))


def fingerprint() -> str:
    """A hash of everything a listing could depend on (see the module docstring); a few ms."""
    h = hashlib.sha256()

    def add(*parts: Any) -> None:
        h.update(repr(parts).encode("utf-8", "backslashreplace"))
        h.update(b"\n")

    add("format", FORMAT, sys.executable, sys.version, str(PACKAGE_DIR))
    for var in _ENV:
        add("env", var, os.environ.get(var))
    _package_files(add)
    _plugin_files(add)
    _distributions(add)
    return h.hexdigest()


def catalog_path() -> Path:
    """Where the catalog of this interpreter, package copy and plugin path lives.

    One file per such combination, so two checkouts or virtual environments that share a cache
    folder do not keep overwriting each other's catalog.
    """
    from hti_bench.harness.fsutil import default_cache_dir

    where = repr((sys.executable, str(PACKAGE_DIR), *(os.environ.get(v, "") for v in _ENV)))
    key = hashlib.sha256(where.encode("utf-8", "backslashreplace")).hexdigest()[:16]
    return default_cache_dir() / "catalog" / f"list-{key}.json"


# --- the file -------------------------------------------------------------------------------------


def load(fp: str, path: Path | None = None) -> dict[str, Any]:
    """The sections (``tasks``, ``plugins``) stored under fingerprint ``fp``; ``{}`` when there are none.

    A missing, unreadable, corrupt or stale file all read as empty: the caller rebuilds and rewrites.
    """
    path = catalog_path() if path is None else path
    try:
        data = json.loads(path.read_bytes())
    except Exception:  # noqa: BLE001 - any failure to read means "no catalog"
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("fingerprint") != fp:
        return {}
    return {k: data[k] for k in ("tasks", "plugins") if k in data}


def save(fp: str, sections: dict[str, Any], path: Path | None = None) -> bool:
    """Write the catalog atomically; False (and nothing else) when it cannot be written."""
    from hti_bench.harness.fsutil import atomic_write_bytes

    path = catalog_path() if path is None else path
    data = {"format": FORMAT, "fingerprint": fp, "python": sys.executable, "package": str(PACKAGE_DIR), **sections}
    try:
        atomic_write_bytes(path, json.dumps(data, indent=1).encode())
    except OSError:
        return False
    return True


# --- collecting (imports everything) --------------------------------------------------------------


def collect_tasks() -> Iterator[dict[str, Any]]:
    """One entry per task class, as it is printed (values kept as the text they print as)."""
    from hti_bench import errors
    from hti_bench.clock import stored_form
    from hti_bench.harness import registry

    for name, cls in registry.task_classes().items():
        entry: dict[str, Any] = {
            "name": name,
            "default": bool(cls.in_default_suite),
            "description": str(cls.description),
            "offers": ",".join(sorted(cls.capabilities)) or "outputs only",
        }
        try:
            task = cls()
        except errors.HTIBenchError as err:  # a task that needs options, e.g. tensor[path=…]
            entry["needs_options"] = str(err)
            yield entry
            continue
        space = task.hyperparameters
        entry.update(
            hyperparameter=space.name,
            low=";".join(str(a.low) for a in space.axes),
            high=";".join(str(a.high) for a in space.axes),
            clock=space.clock_label,
            ranges=" × ".join(f"{a.name} ∈ [{a.low}, {a.high}] ({a.clock.value} clock)" for a in space.axes),
            # As a user writes them: one hyperparameter's λ as bare numbers.
            anchors=str([stored_form(p) for p in task.anchors]),
            heldout=str([stored_form(p) for p in task.heldout]),
            validation=str([stored_form(p) for p in task.validation]) if task.validation else "",
            D=str(task.output_dim),
            C=str(task.condition_dim),
        )
        yield entry


def collect_plugins() -> dict[str, Any]:
    """The surrogates (description, requires, whether they run on several hyperparameters, source) and
    the broken plugins (source, error).

    Discovery is redone first, so what is stored matches the files that were fingerprinted.
    """
    from hti_bench.harness import registry
    from hti_bench.harness.sandbox import lookup

    registry.refresh()
    found, broken_plugins = lookup.catalog()  # each plugin file described in a sandbox of its own
    surrogates = [
        {
            "name": name,
            "description": str(e.meta.get("description", "")),
            "requires": sorted(e.requires),
            "multi": bool(e.meta.get("supports_multi")),
            "source": e.source,
        }
        for name, e in found.items()
    ]
    broken = [{"name": b.name, "source": b.source, "error": b.error} for b in broken_plugins]
    return {"surrogates": surrogates, "broken": broken}


# --- printing (the same for a fresh and a cached listing) -----------------------------------------


def task_lines(entry: dict[str, Any]) -> list[str]:
    star = "*" if entry["default"] else " "
    lines = [f" {star} {entry['name']:<16} {entry['description']}"]
    if "needs_options" in entry:
        lines.append(f"     needs options: {entry['needs_options']}")
    else:
        e = entry
        lines.append(
            f"     {e.get('ranges') or e['hyperparameter'] + ' ∈ [' + e['low'] + ', ' + e['high'] + '] (' + e['clock'] + ' clock)'}; "
            f"anchors {e['anchors']}; "
            f"held out {e['heldout']}; "
            + (f"validation {e['validation']}; " if e.get("validation") else "")
            + f"D={e['D']}, C={e['C']}; offers: {e['offers']}"
        )
    return lines


def plugin_lines(plugins: dict[str, Any]) -> list[str]:
    """The surrogates section after its header, broken plugins included."""
    lines = []
    for s in plugins["surrogates"]:
        needs = f" [needs: {', '.join(s['requires'])}]" if s["requires"] else ""
        one_d = " [one hyperparameter only]" if not s.get("multi", False) else ""
        lines.append(f"   {s['name']:<16} {s['description']}{needs}{one_d}")
        lines.append(f"     from {s['source']}")
    if plugins["broken"]:
        lines.append(BROKEN_HEADER)
        lines.extend(f"   {b['name']:<16} {b['source']}: {b['error']}" for b in plugins["broken"])
    return lines


def _cached_lines(section: str, value: Any) -> list[str] | None:
    """The printed lines of a cached section, or None when it is malformed (then it is rebuilt)."""
    try:
        if section == "tasks":
            if not isinstance(value, list):
                return None
            return [TASKS_HEADER] + [line for entry in value for line in task_lines(entry)]
        if not isinstance(value, dict) or not all(isinstance(value.get(k), list) for k in ("surrogates", "broken")):
            return None
        return [SURROGATES_HEADER] + plugin_lines(value)
    except Exception:  # noqa: BLE001 - a hand-edited or truncated entry: treat as absent
        return None


def print_listing(what: str = "all", refresh: bool = False) -> None:
    """Print ``hti-bench list [what]``: from the catalog when it is current, else by importing."""
    sections = {"all": ["tasks", "plugins"], "tasks": ["tasks"], "surrogates": ["plugins"]}[what]
    fp = fingerprint()
    path = catalog_path()
    cached = load(fp, path)
    rendered = {k: lines for k, v in cached.items() if (lines := _cached_lines(k, v)) is not None}
    if refresh:  # rebuild what is asked for; a current section that is not asked for is kept
        rendered = {k: v for k, v in rendered.items() if k not in sections}
    cached = {k: cached[k] for k in rendered}  # a malformed section is dropped, and rebuilt if wanted
    dirty = False
    for section in sections:
        if section in rendered:
            print("\n".join(rendered[section]))
            continue
        dirty = True
        if section == "tasks":
            print(TASKS_HEADER)
            entries = []
            for entry in collect_tasks():  # printed as they come, as before the catalog existed
                entries.append(entry)
                print("\n".join(task_lines(entry)))
            cached["tasks"] = entries
        else:
            print(SURROGATES_HEADER)
            cached["plugins"] = collect_plugins()
            for line in plugin_lines(cached["plugins"]):
                print(line)
    if dirty:
        save(fp, cached, path)
