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
new pid; ``wait`` with a pid, answered with its exit status once it ended.
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

#: Modules the template imports once, so that a sandbox never pays for them (a missing optional one is
#: skipped: a sandbox that needs it imports it, and fails, like the unsealed run would).
PRELOAD = (
    "torch",
    "torch._dynamo",  # imported by an optimizer's first step(): 1.4 s and 800 modules, paid once here
    "numpy",
    "scipy.optimize",
    "scipy.spatial",
    "scipy.interpolate",
    "ot",
    "torchdiffeq",
    "torchcfm.conditional_flow_matching",
    "landlockpy",
    "hti_bench.scoring",
    "hti_bench.harness.sandbox.inside",
)
#: Packages whose every module is imported too: the surrogate toolkit, and the tasks (a surrogate that
#: declares capabilities receives an anchor-only copy of its task, whose class must unpickle).
PRELOAD_PACKAGES = ("hti_bench.toolkit", "hti_bench.tasks")

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

_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from hti_bench.harness.sandbox.template import serve; serve(int(sys.argv[2]), int(sys.argv[3]))"
)


class TemplateError(RuntimeError):
    """The template process could not be started, or stopped answering."""


class Template:
    """The scorer's handle on its template process: :meth:`fork` a sandbox, :meth:`wait` for its end."""

    def __init__(self) -> None:
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.folder = tempfile.mkdtemp(prefix="hti-template-")
        env = {k: v for k, v in os.environ.items() if k in KEPT_ENV}
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # a sandbox cannot write next to the code anyway
        paths = [p for p in sys.path if p]
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps(paths), str(theirs.fileno()), str(os.getpid())],
            pass_fds=[theirs.fileno()],
            env=env,
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()

    def alive(self) -> bool:
        return self.process.poll() is None

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
            raise TemplateError(f"the sandbox template exited (code {self.process.poll()})")
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
            if self.alive():
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
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
    """The template process: preload, then fork a sandbox per request until the scorer goes away."""
    from hti_bench.harness.lifetime import die_with_parent

    die_with_parent(parent_pid)
    control = socket.socket(fileno=control_fd)
    _preload()
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(control, 65536, 1)
        except OSError:
            return
        if not data:
            return  # the scorer closed its end
        request = json.loads(data.decode())
        if request["op"] == "wait":
            try:
                _pid, status = os.waitpid(int(request["pid"]), 0)
            except ChildProcessError:
                status = -1
            control.send(str(status).encode())
            continue
        pid = os.fork()
        if pid == 0:  # the sandbox
            control.close()
            code = 1
            try:
                from hti_bench.harness.sandbox.inside import main

                code = main(fds[0], request)
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        control.send(str(pid).encode())


def _preload() -> None:
    import importlib
    import pkgutil

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # an optional dependency: the sandbox that needs it imports it itself
            pass
    for package in PRELOAD_PACKAGES:
        try:
            pkg = importlib.import_module(package)
        except Exception:
            continue
        for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
            try:
                importlib.import_module(info.name)
            except Exception:
                pass
