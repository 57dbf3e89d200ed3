"""The scorer's side of a sandbox: start one, talk to it, and the surrogate :func:`hti_bench.harness.unit.evaluate` scores.

:class:`Sandbox` is one sandbox process seen from the scorer: :meth:`Sandbox.call` sends a request and
reads the answer, serving the sandbox's own requests (the anchor oracle) in between.
:class:`SealedSurrogate` is what ``evaluate`` fits and samples in a sealed run: it has the few methods
``evaluate`` calls, each a request to the sandbox. :class:`LocalSurrogate` has the same methods over a
surrogate in this process (``--unsealed``, or an instance a plugin's own test passes).

The scorer checks what comes back: samples are plain arrays of a known dtype and size
(:mod:`hti_bench.harness.sandbox.wire`), an anchor-oracle request must name an anchor exactly, and a plugin may
not answer for another surrogate's name.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import math
import os
import shutil
import signal
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from hti_bench.errors import ConfigError, LeakError, OpenConditionError, PluginError
from hti_bench.harness.sandbox import wire
from hti_bench.harness.sandbox.template import Template, TemplateError, describe_status

if TYPE_CHECKING:
    from hti_bench.anchors import AnchorSet
    from hti_bench.surrogate import Surrogate
    from hti_bench.task import Task
    from hti_bench.view import TaskView

#: Set to 1 (``hti-bench … --unsealed``) to run surrogates in the scorer's process, for debugging a plugin.
UNSEALED_ENV = "HTI_BENCH_UNSEALED"

#: The most values (M · n · D) one anchor-oracle request may ask for.
MAX_ORACLE_VALUES = 50_000_000


def sealing_enabled(env: dict[str, str] | None = None) -> bool:
    """Whether surrogates run in sandboxes (the default) rather than in the scorer's process; ``env``
    (a worker's environment) overrides this process's."""
    value = {**os.environ, **(env or {})}.get(UNSEALED_ENV, "")
    return value.strip().lower() not in ("1", "true", "yes")


class RemoteError(Exception):
    """An exception raised in a sandbox (or its death): ``line`` is what a failed row says, exactly the
    line the same exception gives unsealed."""

    def __init__(self, line: str, message: str = "") -> None:
        super().__init__(message or line)
        self.line = line


class RemoteOpenConditionError(RemoteError, OpenConditionError):
    """A sandboxed surrogate could not answer at new condition rows (see :class:`OpenConditionError`)."""


# ---------------------------------------------------------------------------------------- the template

_TEMPLATE: Template | None = None
_WARNED: set[str] = set()


def template() -> Template:
    """This process's template: the one :func:`share` named, or one started on first use (and again if
    it died)."""
    global _TEMPLATE
    if _TEMPLATE is None or not _TEMPLATE.alive():
        if _TEMPLATE is not None:
            _TEMPLATE.close()
        _TEMPLATE = Template()
        atexit.register(_TEMPLATE.close)
    return _TEMPLATE


def share(control: Any) -> None:
    """Use the template of another process of this run (its :meth:`Template.attach` socket): a worker
    forks its sandboxes from its parent's template instead of starting one. If that template goes away,
    :func:`template` starts one of this process's own."""
    global _TEMPLATE
    _TEMPLATE = Template(control=control)


def code_folders() -> list[Path]:
    """What a sandbox may read besides the Python installation: the suite's package and the plugin folders."""
    import hti_bench
    from hti_bench.harness.registry import plugin_dirs

    return [Path(hti_bench.__file__).resolve().parent, *(d for d in plugin_dirs() if d.is_dir())]


def secret_folders(extra: list[Path] | tuple[Path, ...] = ()) -> list[Path]:
    """Folders a sandbox must never read: the target cache, the results, the home folder, and ``extra``."""
    from hti_bench.harness.fsutil import default_cache_dir

    out = [default_cache_dir(), Path(os.environ.get("HTI_BENCH_RESULTS", "results")), Path.home(), *extra]
    return [Path(p).resolve() for p in out]


def warn_once(how: str) -> None:
    """Say loudly, once per process, that sandboxes are not confined."""
    if how not in _WARNED:
        _WARNED.add(how)
        warnings.warn(
            f"UNSEALED: surrogates run in separate processes but {how}. Rows are recorded with sealed = false.",
            RuntimeWarning,
            stacklevel=3,
        )


class Sandbox:
    """One sandbox process, from the scorer's side. Close it (or use ``with``) when the unit is done."""

    def __init__(self, *, secrets: list[Path] | tuple[Path, ...] = (), quiet: bool = False) -> None:
        from hti_bench.harness.sandbox.confine import policy

        self.scratch = tempfile.mkdtemp(prefix="hti-sandbox-")
        rules = policy(code_folders(), Path(self.scratch), secret_folders(secrets))
        config = {
            "scratch": self.scratch,
            "read": list(rules.read),
            "problems": list(rules.problems),
            "threads": torch.get_num_threads(),
            "quiet": quiet,
            "scoring_workers": os.environ.get("HTI_BENCH_SCORING_WORKERS", ""),
        }
        self.pid = -1
        self.conn: Any = None
        self.busy = False  # a request is out and its answer not read
        try:
            try:
                self.pid, self.conn = template().fork(config)
            except TemplateError:  # a template that died (e.g. killed for memory): one fresh try
                self.pid, self.conn = template().fork(config)
            header, _ = self._next()
        except BaseException:
            self.close()
            raise
        self.sealed = bool(header.get("sealed")) and header.get("kind") == "hello"
        self.how = str(header.get("how", ""))
        if not self.sealed:
            warn_once(self.how or "the sandbox could not confine itself")

    def _next(self) -> tuple[dict[str, Any], list[Tensor]]:
        try:
            return wire.receive_from_sandbox(self.conn)
        except (EOFError, OSError):
            raise RemoteError(f"SandboxError: the surrogate's process ended without answering: {self._end()}") from None
        except wire.WireError as err:
            self.kill()
            raise RemoteError(f"SandboxError: {err}") from None

    def _end(self) -> str:
        if self.pid > 0:
            status = template().wait(self.pid)
            self.pid = -1
            return describe_status(status)
        return "its exit status is unknown"

    def call(self, *request: Any, server: Any = None) -> tuple[dict[str, Any], list[Tensor]]:
        """Send ``request``, serve the sandbox's requests with ``server(header, tensors)`` meanwhile, and
        return the answer. Raises :class:`RemoteError` for an error the sandbox reports, or its death."""
        try:
            wire.send_to_sandbox(self.conn, request)
        except OSError:
            raise RemoteError(f"SandboxError: the surrogate's process is gone: {self._end()}") from None
        self.busy = True
        while True:
            header, tensors = self._next()
            self.busy = header.get("kind") == "request"
            if header.get("kind") == "request":
                try:
                    answer = (True, server(header, tensors)) if server else (False, "nothing to ask here")
                except (LeakError, ValueError, TypeError) as err:
                    answer = (False, str(err))
                wire.send_to_sandbox(self.conn, answer)
                continue
            if header.get("ok") is True:
                return header, tensors
            line, message = str(header.get("error", "")), str(header.get("message", ""))
            if header.get("config"):
                raise ConfigError(message)
            if header.get("open"):
                raise RemoteOpenConditionError(line, message or line.split(": ", 1)[-1])
            raise RemoteError(line, message)

    def kill(self) -> None:
        if self.pid > 0:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """End the sandbox and remove its scratch folder; the template reaps it. An idle sandbox is told
        to exit (not waited for: a process of torch's size takes milliseconds to tear down); one still
        working on a request whose answer nobody will read is killed."""
        if self.conn is not None:
            try:
                if self.busy:
                    self.kill()
                else:
                    wire.send_to_sandbox(self.conn, ("close",))
            except OSError:
                pass
            self.conn.close()
            self.conn = None
        self.pid = -1
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------- surrogates


class LocalSurrogate:
    """A surrogate run in the scorer's process (``--unsealed``, or an instance a test hands
    ``evaluate``), with the methods ``evaluate`` calls."""

    sealed = False
    how = "unsealed: the surrogate ran in the scorer's process"

    def __init__(self, surrogate: Surrogate) -> None:
        self.inner = surrogate
        self.spec = surrogate.spec
        self.requires = frozenset(surrogate.requires)
        self.clock = surrogate.clock

    def uses_training_loss(self) -> bool:
        return bool(self.inner.uses_training_loss())

    def multi_skip_reason(self, d: int) -> str | None:
        return self.inner.multi_skip_reason(d)

    def skip(self, view: TaskView) -> str | None:
        return self.inner.skip(view)

    def fit(self, anchors: AnchorSet, view: TaskView, seed: int) -> None:
        from hti_bench.view import seal

        torch.manual_seed(seed)
        try:
            self.inner.fit(anchors, view, seed=seed)
        finally:
            seal(view)  # the training data and loss end with fit()

    def sample(self, lam: Any, conditions: Tensor, n: int, seed: int) -> Tensor:
        return torch.as_tensor(self.inner.sample(lam, conditions, n, seed))

    def close(self) -> None:
        pass


def open_in(box: Sandbox, source: str, spec: str, d: int) -> dict[str, Any]:
    """Build the surrogate ``spec`` (defined by ``source``) in ``box`` and return what it says of itself
    (canonical spec, requires, clock …). Raises :class:`ConfigError` for a bad parameter, and
    :class:`PluginError` for a source that does not load or a class that answers for another name."""
    from hti_bench.specs import parse_spec

    try:
        header, _ = box.call("open", source, spec, d)
    except RemoteError as err:
        raise PluginError(f"surrogate plugin {source}: {err.line}") from None
    name = parse_spec(spec)[0]
    if header.get("name") != name:  # a plugin may answer for itself only
        raise PluginError(f"{source} was asked for surrogate '{name}' but built '{header.get('name')}'")
    return header


class SealedSurrogate:
    """The surrogate ``spec`` (defined by ``source``) in a fresh sandbox, seen from the scorer: the
    methods ``evaluate`` calls, each a request. Raises :class:`ConfigError` for a bad parameter and
    :class:`PluginError` for a source that does not load, as building it in-process would."""

    def __init__(self, source: str, spec: str, task: Task, *, quiet: bool = False) -> None:
        self.task = task
        root = getattr(getattr(task, "cache", None), "root", None)
        self.box = Sandbox(secrets=[Path(root)] if root else [], quiet=quiet)
        self.sealed, self.how = self.box.sealed, self.box.how
        try:
            header = open_in(self.box, source, spec, task.d)
        except BaseException:
            self.box.close()
            raise
        self.spec = str(header["spec"])
        self.requires = frozenset(str(r) for r in header["requires"])
        self.clock = str(header.get("clock") or "")
        self._uses_loss = bool(header["uses_training_loss"])
        self._multi_skip = header.get("multi_skip")

    def uses_training_loss(self) -> bool:
        return self._uses_loss

    def multi_skip_reason(self, d: int) -> str | None:
        return str(self._multi_skip) if self._multi_skip else None

    def _info(self, view: TaskView) -> dict[str, Any]:
        return {
            "name": view.name,
            "space": view.hyperparameters,
            "anchors": tuple(view.anchors),
            "output_dim": view.output_dim,
            "condition_dim": view.condition_dim,
            "categorical": view.categorical,
            "capabilities": sorted(view.capabilities),
            "capability_notes": dict(view.capability_notes),
        }

    def skip(self, view: TaskView) -> str | None:
        header, _ = self.box.call("skip", self._info(view))
        return str(header["reason"]) if header.get("reason") else None

    def fit(self, anchors: AnchorSet, view: TaskView, seed: int) -> None:
        needs = self.requires & frozenset(self.task.capabilities)
        task_copy = anchor_only_copy(self.task) if needs else None
        anchors = dataclasses.replace(anchors, oracle=None)  # the sandbox wires in its own, which asks here
        self.box.call("fit", anchors, self._info(view), int(seed), task_copy, server=self._serve)

    def sample(self, lam: Any, conditions: Tensor, n: int, seed: int) -> Tensor:
        _header, tensors = self.box.call("sample", lam, conditions, n, seed, server=self._serve)
        if len(tensors) != 1:
            raise RemoteError(f"SandboxError: the sandbox answered sample() with {len(tensors)} arrays")
        return tensors[0]

    def _serve(self, header: dict[str, Any], tensors: list[Tensor]) -> Tensor:
        """The anchor oracle, for the sandbox: an anchor network run on new rows. Anything else is refused."""
        task = self.task
        if header.get("op") != "anchor_sample" or len(tensors) != 1:
            raise LeakError(f"the scorer answers only anchor_sample requests, not {header.get('op')!r}")
        try:
            lam = tuple(float(v) for v in header["lam"])
            n, seed = int(header["n"]), int(header["seed"])
        except (KeyError, TypeError, ValueError):
            raise LeakError("a malformed anchor_sample request") from None
        if lam not in task.anchors:
            raise LeakError(f"λ={lam} is not an anchor of task '{task.name}': the oracle runs anchor networks only")
        conditions = tensors[0]
        if conditions.ndim != 2 or conditions.shape[1] != task.condition_dim:
            raise ValueError(f"anchor_sample needs conditions of shape (M, {task.condition_dim})")
        if n < 1 or math.prod((conditions.shape[0], n, task.output_dim)) > MAX_ORACLE_VALUES:
            raise ValueError(f"anchor_sample asked for {n} samples at {conditions.shape[0]} rows: too many")
        return task.sample(lam, conditions.float(), n, seed)

    def close(self) -> None:
        self.box.close()


def anchor_only_copy(task: Task) -> Task:
    """What a surrogate that declared capabilities gets of its task in the sandbox: a shallow copy that
    knows no held-out or validation λ, holds the anchor networks only, and has no cache (asking it for
    any other network is refused)."""
    from hti_bench.task import TrainedTask

    clone = copy.copy(task)
    clone.config = dataclasses.replace(task.config, heldout=(), validation=())
    if isinstance(task, TrainedTask):
        seed = int(task.config.model_seed)
        clone._networks = {(lam, seed): task.network(lam) for lam in task.anchors}
    clone._cache = _AnchorsOnly(task.name)
    return clone


class _AnchorsOnly:
    """The cache of an anchor-only copy: it has nothing, so every network it is asked for is refused."""

    def __init__(self, name: str) -> None:
        self.name = name

    def get_or_train(self, task: Any, lam: Any, seed: int) -> Any:
        raise LeakError(f"task '{self.name}' in a sandbox has the anchor networks only (asked for λ={lam})")

    def train_seconds(self, task: Any, lam: Any, seed: int) -> float:
        return math.nan
