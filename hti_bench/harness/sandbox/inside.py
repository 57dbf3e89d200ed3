"""The sandbox's side: where a surrogate's code runs, and all it can reach.

A sandbox is forked from the template (:mod:`hti_bench.harness.sandbox.template`) for one unit. :func:`main`
scrubs what the template left (working folder, temporary folder), confines the process
(:mod:`hti_bench.harness.sandbox.confine`), says hello (sealed or not, and how), and then answers the scorer's
requests until told to close:

``("call", "hti_bench.module:function", *args)``
    run one of the suite's own functions here (``hti-bench check`` runs its class checks so);
``("describe", source)``
    import the one plugin file (or entry point) ``source`` and describe its class (for the scorer's
    catalog of names; nothing else is imported, so one plugin cannot touch another's description);
``("open", source, spec, d)``
    import ``source`` and build the surrogate from ``spec``: answers its canonical spec, ``requires``,
    clock, whether it uses the training loss, and why it skips a task of ``d`` hyperparameters;
``("skip", info)``, ``("fit", anchors, info, seed, copy)``, ``("sample", λ, conditions, n, seed)``
    the surrogate's own methods, on a :class:`~hti_bench.view.TaskView` built here over a *shell* of
    the task: its metadata (``info``), the anchor oracle (a request back to the scorer, which runs
    only anchor networks), and, when the surrogate declared capabilities the task offers, an
    anchor-only copy of the task (no held-out λ, no network but the anchors', no cache).

Every answer goes back as JSON and raw arrays (:mod:`hti_bench.harness.sandbox.wire`); an exception in the
surrogate is an answer (``ok: false`` with the error line), never the end of the sandbox.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import traceback
from typing import Any

import torch

from hti_bench.harness.sandbox import wire


def _line(err: BaseException) -> str:
    line = traceback.format_exception_only(type(err), err)[-1].strip()
    return line.replace("\n", " ")[:500]


def _json_safe(value: Any) -> Any:
    """``value`` as JSON can carry it (tuples become lists, non-finite floats strings, others repr)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return repr(value)


def describe_class(cls: Any) -> dict[str, Any]:
    """What the scorer's catalog knows of a surrogate class, in JSON."""
    return {
        "name": getattr(cls, "name", None),
        "class_name": cls.__name__,
        "description": str(getattr(cls, "description", "") or ""),
        "doc": (cls.__doc__ or "").strip().split("\n\n")[0],
        "requires": sorted(str(r) for r in getattr(cls, "requires", ())),
        "supports_multi": bool(getattr(cls, "supports_multi", False)),
        "supports_extrapolation": bool(getattr(cls, "supports_extrapolation", False)),
        "params": _json_safe(cls.default_params()),
        "param_types": {k: type(v).__name__ for k, v in cls.default_params().items()},
        "test_config": _json_safe(dict(getattr(cls, "test_config", {}))),
        "search_space": _json_safe(dict(getattr(cls, "search_space", {}))),
        "references": [str(r) for r in getattr(cls, "references", ())],
    }


class _Shell:
    """What a sandbox's :class:`~hti_bench.view.TaskView` wraps in place of the task: its metadata, the
    anchor networks' outputs fetched from the scorer, and the gated methods of an anchor-only copy."""

    def __init__(self, session: Session, info: dict[str, Any], copy: Any = None) -> None:
        self._session = session
        self._copy = copy
        self.name = info["name"]
        self.hyperparameters = info["space"]
        self.anchors = tuple(info["anchors"])
        self.output_dim = info["output_dim"]
        self.condition_dim = info["condition_dim"]
        self.categorical = info["categorical"]
        self.capabilities = frozenset(info["capabilities"])
        self.capability_notes = dict(info["capability_notes"])

    def sample(self, lam: Any, conditions: torch.Tensor, n: int, seed: int) -> torch.Tensor:
        """An anchor network's outputs at new rows: asked of the scorer (which refuses any other λ)."""
        return self._session.ask_scorer(
            {"op": "anchor_sample", "lam": [float(v) for v in lam], "n": int(n), "seed": int(seed)},
            torch.as_tensor(conditions, dtype=torch.float32),
        )

    def __getattr__(self, name: str) -> Any:
        # The gated methods (build_network, per_example_loss, config …): the view lets them through only
        # for a surrogate that declared the capability, and the copy travels only then.
        copy = self._copy
        if copy is None:
            from hti_bench.errors import LeakError

            raise LeakError(f"the task's {name} is not available to this surrogate")
        return getattr(copy, name)


class Session:
    """One sandbox's conversation with the scorer."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.surrogate: Any = None
        self.view: Any = None

    def reply(self, header: dict[str, Any], *arrays: torch.Tensor) -> None:
        wire.send_to_scorer(self.conn, header, arrays)

    def ask_scorer(self, header: dict[str, Any], *arrays: torch.Tensor) -> Any:
        """A request of the sandbox to the scorer (the anchor oracle), answered by a pickle."""
        self.reply({"kind": "request", **header}, *arrays)
        ok, value = wire.receive_from_scorer(self.conn)
        if not ok:
            from hti_bench.errors import LeakError

            raise LeakError(value)
        return value

    def serve(self) -> int:
        while True:
            try:
                request = wire.receive_from_scorer(self.conn)
            except EOFError:
                return 0
            op, args = request[0], request[1:]
            if op == "close":
                return 0
            try:
                header, arrays = getattr(self, "op_" + op)(*args)
            except Exception as err:
                from hti_bench.errors import ConfigError, OpenConditionError

                header = {
                    "ok": False,
                    "error": _line(err),
                    "message": str(err),
                    "open": isinstance(err, OpenConditionError),
                    "config": isinstance(err, ConfigError),
                }
                arrays = ()
            self.reply({"kind": "answer", **header}, *arrays)

    # ------------------------------------------------------------------ requests

    def op_describe(self, source: str) -> tuple[dict[str, Any], tuple]:
        from hti_bench.harness.registry import load_source

        return {"ok": True, "class": describe_class(load_source(source, reuse=True))}, ()

    def op_call(self, function: str, *args: Any) -> tuple[dict[str, Any], tuple]:
        """Run a function of the suite itself (``hti_bench.…:name``, never a plugin's) here, with a target
        cache in the scratch folder; it returns a JSON-able answer. How ``hti-bench check`` runs the
        checks that need a plugin's class, confined."""
        import importlib

        module, _, name = function.partition(":")
        if not module.startswith("hti_bench.") or module.startswith("hti_bench.builtin"):
            raise ValueError(f"a sandbox calls functions of hti_bench only, not {function!r}")
        os.environ["HTI_BENCH_CACHE"] = os.path.join(os.getcwd(), "target-cache")
        return {"ok": True, "value": getattr(importlib.import_module(module), name)(*args)}, ()

    def op_open(self, source: str, spec: str, d: int) -> tuple[dict[str, Any], tuple]:
        from hti_bench.harness.registry import build_surrogate, load_source

        self.surrogate = build_surrogate(load_source(source, reuse=True), spec)
        s = self.surrogate
        return {
            "ok": True,
            "name": s.name,
            "spec": s.spec,
            "requires": sorted(s.requires),
            "clock": s.clock,
            "uses_training_loss": bool(s.uses_training_loss()),
            "multi_skip": s.multi_skip_reason(int(d)),
        }, ()

    def _view(self, info: dict[str, Any], copy: Any = None) -> Any:
        from hti_bench.view import TaskView

        return TaskView(_Shell(self, info, copy), requires=self.surrogate.requires, space=info["space"])

    def op_skip(self, info: dict[str, Any]) -> tuple[dict[str, Any], tuple]:
        return {"ok": True, "reason": self.surrogate.skip(self._view(info))}, ()

    def op_fit(self, anchors: Any, info: dict[str, Any], seed: int, copy: Any) -> tuple[dict[str, Any], tuple]:
        from hti_bench.view import seal

        self.view = self._view(info, copy)
        anchors = dataclasses.replace(anchors, oracle=self.view.anchor_samples)
        torch.manual_seed(seed)
        try:
            self.surrogate.fit(anchors, self.view, seed=seed)
        finally:
            seal(self.view)  # the training data and loss end with fit()
        return {"ok": True}, ()

    def op_sample(self, lam: Any, conditions: torch.Tensor, n: int, seed: int) -> tuple[dict[str, Any], tuple]:
        out = torch.as_tensor(self.surrogate.sample(lam, conditions, n, seed))
        return {"ok": True}, (out,)


def main(fd: int, config: dict[str, Any]) -> int:
    """A sandbox's life, in the process the template just forked; returns its exit code."""
    from multiprocessing.connection import Connection

    from hti_bench.harness.lifetime import die_with_parent
    from hti_bench.harness.sandbox.confine import Policy, confine

    die_with_parent(os.getppid())
    scratch = config["scratch"]
    os.chdir(scratch)
    # Libraries that keep caches under the home folder (matplotlib, torch hub) keep them in the scratch folder.
    os.environ.update(TMPDIR=scratch, HOME=scratch, MPLCONFIGDIR=scratch)
    import tempfile

    tempfile.tempdir = scratch
    if config.get("quiet"):
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning)
    sealed, how = confine(Policy(read=tuple(config["read"]), write=(scratch,), problems=tuple(config["problems"])))
    torch.set_num_threads(int(config["threads"]))
    if config.get("scoring_workers"):
        os.environ["HTI_BENCH_SCORING_WORKERS"] = str(config["scoring_workers"])
    conn = Connection(fd)
    try:
        wire.send_to_scorer(conn, {"kind": "hello", "sealed": sealed, "how": how, "pid": os.getpid()})
        return Session(conn).serve()
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
