"""Surrogate names for the scorer, without importing a plugin into it; and the surrogate ``evaluate`` scores.

Discovery imports plugin files; a file's import runs its code. So in a sealed run each plugin file is
imported in a sandbox of its own (the suite's own ``baselines/`` and ``methods/`` share one), which
describes the one class it defines (:func:`catalog`), and a
name is resolved to its canonical spec in a sandbox that imports only that name's file
(:func:`resolve`). One plugin therefore cannot change another's description, parameters or code, and
none runs in the scorer. Descriptions are kept per process, keyed by each file's size and modification
time, so a process describes each file once.

:func:`open_surrogate` turns a name into what :func:`hti_bench.harness.unit.evaluate` fits and samples:
a :class:`~hti_bench.harness.sandbox.outside.SealedSurrogate` in a fresh sandbox.

With ``--unsealed`` these are the registry's in-process answers (:mod:`hti_bench.harness.registry`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hti_bench.errors import PluginError, UnknownNameError, unknown_name_message
from hti_bench.harness.registry import BrokenPlugin, builtin_plugin_dirs, plugin_dirs, plugin_files
from hti_bench.harness.sandbox.outside import (
    LocalSurrogate,
    RemoteError,
    Sandbox,
    SealedSurrogate,
    open_in,
    sealing_enabled,
)
from hti_bench.specs import parse_spec

if TYPE_CHECKING:
    from hti_bench.surrogate import Surrogate
    from hti_bench.task import Task


@dataclass(frozen=True)
class Entry:
    """A discovered surrogate class, as its sandbox described it (:func:`hti_bench.harness.sandbox.inside.describe_class`)."""

    name: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def requires(self) -> frozenset[str]:
        return frozenset(self.meta.get("requires", ()))

    @property
    def params(self) -> dict[str, Any]:
        """Constructor parameters and their defaults (a list in the description is a tuple default)."""
        return {k: _tuples(v) for k, v in self.meta.get("params", {}).items()}

    @property
    def search_space(self) -> dict[str, dict[str, Any]]:
        """What tuning searches, in W&B sweep syntax (the class's ``search_space``)."""
        return {k: dict(v) for k, v in self.meta.get("search_space", {}).items()}


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Resolved:
    """A surrogate spec as its own class reads it: canonical ``spec`` (defaults dropped, keys sorted)."""

    spec: str
    name: str
    requires: frozenset[str]
    uses_training_loss: bool


_DESCRIBED: dict[tuple[str, int, int], dict[str, Any] | str] = {}
_RESOLVED: dict[str, Resolved] = {}  # by canonical spec: what this process resolved
_ASKED: dict[str, Resolved] = {}  # by the spec as asked


def resolved(spec: str) -> Resolved | None:
    """What :func:`resolve` answered for the canonical ``spec`` in this process, if it did."""
    return _RESOLVED.get(spec)


def _builtin(source: str) -> bool:
    """Whether ``source`` is one of the suite's own plugin files (``baselines/``, ``methods/``)."""
    return os.path.dirname(source) in {str(d) for d in builtin_plugin_dirs()}


def _stamp(source: str) -> tuple[str, int, int]:
    try:
        st = os.stat(source)
        return source, st.st_mtime_ns, st.st_size
    except OSError:
        return source, 0, 0  # an entry point: described once per process


def described() -> dict[tuple[str, int, int], dict[str, Any] | str]:
    """What this process's sandboxes said of each plugin file (to hand a worker, :func:`learn`)."""
    return dict(_DESCRIBED)


def learn(known: dict[tuple[str, int, int], dict[str, Any] | str]) -> None:
    """Take descriptions another process of this run made (a worker from its parent), so that this one
    does not describe the same files again; a file changed since is described anew (the key holds its
    size and modification time)."""
    _DESCRIBED.update(known)


def _describe(sources: list[str], builtin: set[str]) -> None:
    """Describe each of ``sources`` not yet described: the suite's own plugin files together in one
    sandbox (they are the suite's code), every other file in a sandbox of its own."""
    todo = [s for s in sources if _stamp(s) not in _DESCRIBED]
    groups = [[s for s in todo if s in builtin]] + [[s] for s in todo if s not in builtin]
    for group in [g for g in groups if g]:
        with Sandbox() as box:
            for source in group:
                try:
                    header, _ = box.call("describe", source)
                    _DESCRIBED[_stamp(source)] = dict(header["class"])
                except RemoteError as err:
                    line = err.line
                    _DESCRIBED[_stamp(source)] = (
                        line.split(": ", 1)[-1] if line.startswith("hti_bench.errors.") else line
                    )


def catalog() -> tuple[dict[str, Entry], list[BrokenPlugin]]:
    """Every loadable surrogate by name, and the plugins that did not load (with why). Raises
    :class:`PluginError` for two classes of one name."""
    if not sealing_enabled():
        from hti_bench.harness import registry
        from hti_bench.harness.sandbox.inside import describe_class

        classes = registry.surrogate_classes()
        found = {n: Entry(n, registry.surrogate_source(n), describe_class(c)) for n, c in classes.items()}
        return found, registry.broken_plugins()
    sources, broken = plugin_files()
    _describe(sources, {s for s in sources if _builtin(s)})
    found: dict[str, Entry] = {}
    for source in sources:
        described = _DESCRIBED[_stamp(source)]
        stem = source.split(" = ")[0].removeprefix("entry point ") if source.startswith("entry point ") else ""
        label = stem or os.path.splitext(os.path.basename(source))[0]
        if isinstance(described, str):
            broken.append(BrokenPlugin(label, source, described))
            continue
        name = described.get("name")
        if not isinstance(name, str) or not name:
            broken.append(BrokenPlugin(str(described.get("class_name")), source, "class attribute 'name' is not set"))
            continue
        if name in found:
            raise PluginError(
                f"Duplicate surrogate name '{name}': defined in {found[name].source} and in {source}. "
                "Rename one of them (the 'name' class attribute)."
            )
        found[name] = Entry(name, source, described)
    return dict(sorted(found.items())), broken


def names() -> list[str]:
    """Every loadable surrogate's name, sorted."""
    return list(catalog()[0])


def entry(name: str) -> Entry:
    """The surrogate called ``name``; raises :class:`UnknownNameError` (with the closest name) or
    :class:`PluginError` (its file did not load)."""
    found, broken = catalog()
    if name in found:
        return found[name]
    for b in broken:
        if b.name == name:
            raise PluginError(f"Surrogate plugin '{name}' ({b.source}) failed to load: {b.error}")
    raise UnknownNameError(
        unknown_name_message("surrogate", name, found, "discovered in " + ", ".join(map(str, plugin_dirs())))
    )


def resolve(spec: str, d: int = 1) -> Resolved:
    """``spec`` read by its own class: canonical, its parameters checked (:class:`ConfigError` if bad)."""
    if spec in _ASKED:
        return _ASKED[spec]
    return resolve_many([spec], d)[0]


def resolve_many(specs: list[str], d: int = 1) -> list[Resolved]:
    """:func:`resolve` for many specs; the specs of one plugin share a sandbox, and the suite's own
    surrogates one more."""
    if not sealing_enabled():
        from hti_bench.harness.registry import make_surrogate

        local = []
        for spec in specs:
            s = make_surrogate(spec)
            local.append(Resolved(s.spec, s.name, frozenset(s.requires), bool(s.uses_training_loss())))
        _RESOLVED.update({r.spec: r for r in local})
        return local
    names = [parse_spec(spec)[0] for spec in specs]
    sources = {name: entry(name).source for name in names}
    # The suite's own surrogates share one sandbox (their code is the suite's); any other, one of its own.
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault("" if _builtin(sources[name]) else name, []).append(i)
    out: list[Resolved | None] = [None] * len(specs)
    for indices in groups.values():
        with Sandbox() as box:
            for i in indices:
                header = open_in(box, sources[names[i]], specs[i], d)
                out[i] = Resolved(
                    str(header["spec"]), names[i], frozenset(header["requires"]), bool(header["uses_training_loss"])
                )
    done = [r for r in out if r is not None]
    _RESOLVED.update({r.spec: r for r in done})
    _ASKED.update(zip(specs, done))
    return done


def open_surrogate(spec: str | Surrogate, task: Task, *, quiet: bool = False) -> LocalSurrogate | SealedSurrogate:
    """The surrogate ``evaluate`` scores: sealed in a sandbox for a name (unless ``--unsealed``), in
    this process for an instance. Raises for an unknown name or a bad parameter."""
    from hti_bench.surrogate import Surrogate

    if isinstance(spec, Surrogate):
        spec.validate_params()
        return LocalSurrogate(spec)
    if not sealing_enabled():
        from hti_bench.harness.registry import make_surrogate

        return LocalSurrogate(make_surrogate(spec))
    return SealedSurrogate(entry(parse_spec(spec)[0]).source, spec, task, quiet=quiet)
