"""Old module paths of hti-bench 0.1, kept importable for one release with a ``DeprecationWarning``.

The package was regrouped (run machinery in :mod:`hti_bench.harness`, the building blocks of
surrogates in :mod:`hti_bench.toolkit`). A plugin written against the old flat layout, e.g.
``from hti_bench.flows import FlowData``, still imports: a meta-path finder answers the old name with
the new module (the same module object, so ``isinstance`` checks and monkeypatching keep working) and
warns once with the new name. Nothing is imported until an old name is asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module → its home since 0.2
MOVED: dict[str, str] = {
    "hti_bench.data": "hti_bench.anchors",
    "hti_bench.metrics": "hti_bench.scoring",
    "hti_bench.runner": "hti_bench.harness.runner",
    "hti_bench.parallel": "hti_bench.harness.pool",
    "hti_bench.targets": "hti_bench.harness.targets",
    "hti_bench.registry": "hti_bench.harness.registry",
    "hti_bench.results": "hti_bench.harness.results",
    "hti_bench.plots": "hti_bench.harness.plots",
    "hti_bench.tracking": "hti_bench.harness.tracking",
    "hti_bench.provenance": "hti_bench.harness.provenance",
    "hti_bench.catalog": "hti_bench.harness.catalog",
    "hti_bench.fsutil": "hti_bench.harness.fsutil",
    "hti_bench.interpolation": "hti_bench.toolkit.interpolation",
    "hti_bench.transport": "hti_bench.toolkit.transport",
    "hti_bench.nets": "hti_bench.toolkit.nets",
    "hti_bench.flows": "hti_bench.toolkit.flows",
    "hti_bench.optim": "hti_bench.toolkit.training",
    "hti_bench.response": "hti_bench.toolkit.best_response",
    "hti_bench.stn": "hti_bench.toolkit.best_response",
    "hti_bench.lagrangian": "hti_bench.toolkit.lagrangian",
    "hti_bench.lagrangian.geometry": "hti_bench.toolkit.lagrangian",
    "hti_bench.lagrangian.lbfgs": "hti_bench.toolkit.lagrangian.lbfgs",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec):  # noqa: ANN201
        warnings.warn(
            f"{self.old} moved to {self.new} in hti-bench 0.2; the old name stops working in 0.3.",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new)

    def exec_module(self, module: object) -> None:
        """The new module is already executed."""


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None):  # noqa: ANN201
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(fullname, new))


def install() -> None:
    """Put the alias finder first on ``sys.meta_path`` (once): before the path finder, which would
    otherwise load a second copy of a module whose file still sits under an aliased package."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
