"""The pre-warmed template every sandbox is forked from.

Starting a Python process and importing torch takes seconds; forking one that already did takes
milliseconds. So each scoring process (the run's process, or each worker of ``--jobs N``) starts one
*template* process, which imports torch, the suite's surrogate toolkit and the task modules, runs no
kernel (forking a process whose OpenMP pool is running can deadlock the child) and holds nothing of any
task. For every unit the scorer asks the template to fork a *sandbox*; the sandbox confines itself
(:mod:`hti_bench.harness.sandbox.confine`), imports the one surrogate it runs, and talks to the scorer over a
socket pair the scorer made. A sandbox lives for one unit, so no state carries from one unit to the next.

Why not ``multiprocessing``'s forkserver, which does the same: its server listens on a named socket in
``/tmp``, which a sandbox could connect to (Landlock before ABI 9 does not mediate connecting to a named
Unix socket) and ask for an unconfined process; and it inherits the scorer's environment and working
folder. Here the template listens only on an anonymous socket pair, and starts with a scrubbed
environment in an empty folder.

The control protocol (``SOCK_SEQPACKET``, one message per request): ``fork`` with a JSON
configuration and the sandbox's end of a socket pair as an ancillary file descriptor, answered with the
new pid; ``wait`` with a pid, answered with its exit status once it ended; ``attach`` with a socket as
an ancillary file descriptor, another control connection (a worker process of the same run shares its
parent's template this way, instead of starting its own).

The template serves as soon as the essentials are imported (torch, the suite's contracts), and imports
the rest of :data:`PRELOAD` one module at a time while no request waits: a short-lived process (``hti-bench
list``) never waits for what it does not use, and a run's sandboxes find everything imported by the time
its first unit is fitted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from multiprocessing.connection import Connection
from typing import Any

#: What the template imports before it serves: enough to import and describe a plugin file.
ESSENTIAL = ("torch", "numpy", "landlockpy", "hti_bench.scoring", "hti_bench.harness.sandbox.inside")
#: What it imports next, one at a time while idle, so that a sandbox never pays for them (a missing
#: optional one is skipped: a sandbox that needs it imports it itself, and fails, as unsealed would).
#: A name ending in ``.*`` is every module of that package: the surrogate toolkit, and the tasks (a
#: surrogate that declares capabilities receives an anchor-only copy of its task, whose class must unpickle).
PRELOAD = (
    "hti_bench.toolkit.*",
    "torch._dynamo",  # imported by an optimizer's first step(): 1.4 s and 800 modules, paid once here
    "scipy.optimize",
    "scipy.spatial",
    "scipy.interpolate",
    "ot",
    "torchdiffeq",
    "torchcfm.conditional_flow_matching",
    "hti_bench.tasks.*",
    "hti_bench.harness.registry:preload_builtin_plugins",  # the suite's own plugin files (its own code)
)

#: Environment variables a template (and so every sandbox) keeps; everything else is dropped, so that
#: no path to the target cache or the results reaches a sandbox through its environment.
KEPT_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "PYTHONHASHSEED",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONWARNINGS",
    "CUDA_VISIBLE_DEVICES",
)

#: How long the template must go without a request before it imports the next module of :data:`PRELOAD`.
IDLE_S = 0.25

_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from hti_bench.harness.sandbox.template import serve; serve(int(sys.argv[2]), int(sys.argv[3]))"
)


class TemplateError(RuntimeError):
    """The template process could not be started, or stopped answering."""


class Template:
    """The scorer's handle on a template process: :meth:`fork` a sandbox, :meth:`wait` for its end.

    ``Template()`` starts one; ``Template(control=sock)`` uses the one a socket from :meth:`attach`
    (in another process of the run) reaches."""

    def __init__(self, control: socket.socket | None = None) -> None:
        self._lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.folder = ""
        if control is not None:
            self._control = control
            return
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.folder = tempfile.mkdtemp(prefix="hti-template-")
        env = {k: v for k, v in os.environ.items() if k in KEPT_ENV}
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # a sandbox cannot write next to the code anyway
        paths = [p for p in sys.path if p]
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps(paths), str(theirs.fileno()), str(os.getpid())],
            pass_fds=[theirs.fileno()],
            env=env,
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self._control.fileno() >= 0

    def attach(self) -> socket.socket:
        """Another control connection to this template, for a worker process of the run: pass the
        returned socket to it, which builds ``Template(control=sock)``."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                socket.send_fds(self._control, [json.dumps({"op": "attach"}).encode()], [theirs.fileno()])
                if self._control.recv(64) != b"attached":
                    raise TemplateError("the sandbox template refused another connection")
        except OSError as err:
            ours.close()
            raise TemplateError(f"the sandbox template stopped answering ({err})") from None
        finally:
            theirs.close()
        return ours

    def fork(self, config: dict[str, Any]) -> tuple[int, Connection]:
        """A new sandbox with ``config`` (see :func:`hti_bench.harness.sandbox.inside.main`): its pid, and the
        scorer's end of its connection."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock:
                socket.send_fds(self._control, [json.dumps({"op": "fork", **config}).encode()], [theirs.fileno()])
                reply = self._control.recv(64)
        except OSError as err:
            ours.close()
            raise TemplateError(f"the sandbox template stopped answering ({err})") from None
        finally:
            theirs.close()
        if not reply:
            ours.close()
            self._control.close()
            raise TemplateError("the sandbox template exited")
        return int(reply), Connection(ours.detach())

    def wait(self, pid: int) -> int:
        """Wait for the sandbox ``pid`` to end and return its ``waitpid`` status (-1 if unknown)."""
        try:
            with self._lock:
                self._control.send(json.dumps({"op": "wait", "pid": int(pid)}).encode())
                reply = self._control.recv(64)
            return int(reply) if reply else -1
        except (OSError, ValueError):
            return -1

    def close(self) -> None:
        try:
            self._control.close()
        finally:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
            if self.folder:
                import shutil

                shutil.rmtree(self.folder, ignore_errors=True)


def describe_status(status: int) -> str:
    """A sandbox's ``waitpid`` status in words."""
    if status < 0:
        return "its exit status is unknown"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (out of memory?)" if sig == signal.SIGKILL else ""
        return f"it was killed by {name}{hint}"
    return f"it exited with code {os.WEXITSTATUS(status)}"


# ---------------------------------------------------------------------------------------- the template's side


def serve(control_fd: int, parent_pid: int) -> None:
    """The template process: fork a sandbox per request until the scorer goes away, importing the rest
    of :data:`PRELOAD` while no request waits."""
    import importlib
    import select

    from hti_bench.harness.lifetime import die_with_parent

    die_with_parent(parent_pid)
    for name in ESSENTIAL:
        _import(importlib, name)
    first = socket.socket(fileno=control_fd)
    controls = [first]
    pending = list(PRELOAD)
    waiting: dict[int, list[socket.socket]] = {}  # pid → the connections that asked to wait for it
    ended: dict[int, int] = {}  # pid → waitpid status, reaped before anyone asked
    while first in controls:
        # Preloading waits for a quiet moment (no request for IDLE_S): a burst of requests (a run resolving
        # its names) is never held up behind a second-long import.
        ready, _, _ = select.select(controls, [], [], IDLE_S if pending else 0.02 if waiting else None)
        for control in ready:
            try:
                data, fds, _flags, _addr = socket.recv_fds(control, 65536, 1)
            except OSError:
                data, fds = b"", []
            if not data:  # that scorer process is gone
                controls.remove(control)
                control.close()
                continue
            request = json.loads(data.decode())
            op = request["op"]
            if op == "attach":
                controls.append(socket.socket(fileno=fds[0]))
                control.send(b"attached")
            elif op == "wait":
                waiting.setdefault(int(request["pid"]), []).append(control)
            else:
                _fork(request, fds, controls, control)
        _reap(waiting, ended)  # every sandbox that ended, whether or not anyone waits for it
        if pending and not ready:
            name = pending.pop(0)
            if name.endswith(".*"):
                pending[:0] = _modules_of(importlib, name[:-2])
            else:
                _import(importlib, name)


def _fork(request: dict[str, Any], fds: list[int], controls: list[socket.socket], control: socket.socket) -> None:
    import gc

    # Everything the template holds goes to the collector's permanent generation: a sandbox's collections
    # then never walk (and so never copy, page by page) the memory it shares with the template.
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # the sandbox: it keeps nothing of the template's connections
        for c in controls:
            c.close()
        code = 1
        try:
            from hti_bench.harness.sandbox.inside import main

            code = main(fds[0], request)
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    control.send(str(pid).encode())


def _reap(waiting: dict[int, list[socket.socket]], ended: dict[int, int]) -> None:
    """Collect the sandboxes that ended, and answer whoever waits for them (-1 for a pid that is no
    child of this template)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        ended[pid] = status
    while len(ended) > 4096:  # statuses nobody asked for (sandboxes closed normally)
        ended.pop(next(iter(ended)))
    for pid in list(waiting):
        if pid not in ended:
            try:
                os.waitpid(pid, os.WNOHANG)  # still running: answered later
                continue
            except ChildProcessError:
                ended[pid] = -1
        status = ended.pop(pid)
        for control in waiting.pop(pid):
            try:
                control.send(str(status).encode())
            except OSError:
                pass


def _import(importlib: Any, name: str) -> None:
    """Import ``name``, or call ``module:function`` (a preloading step that is not an import)."""
    module, _, function = name.partition(":")
    try:
        loaded = importlib.import_module(module)
        if function:
            getattr(loaded, function)()
    except Exception:  # an optional dependency: the sandbox that needs it imports it itself
        pass


def _modules_of(importlib: Any, package: str) -> list[str]:
    import pkgutil

    try:
        pkg = importlib.import_module(package)
    except Exception:
        return []
    return [info.name for info in pkgutil.walk_packages(pkg.__path__, prefix=package + ".")]
