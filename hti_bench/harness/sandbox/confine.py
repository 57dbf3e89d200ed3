"""Operating-system confinement of a sandbox process: what it may read, write and reach.

A sandbox confines *itself*, right after it is forked from the template and before it imports any
surrogate code, with two unprivileged Linux mechanisms (no root, no setuid helper):

- **Landlock** (through the ``landlockpy`` binding): every file-system access is denied except reading
  the Python installation, the suite's own package, the surrogate plugin folders and a few device and
  CPU-description files, and writing the sandbox's private scratch folder. Also denied: TCP bind and
  connect (Landlock ABI ≥ 4), signals to processes outside the sandbox and abstract Unix sockets
  (ABI ≥ 6), and ptrace of anything outside it (every ABI), which also closes ``/proc/<pid>/mem``.
- **A user and network namespace** (``unshare(CLONE_NEWUSER | CLONE_NEWNET)``): the sandbox sees one
  loopback device that is down, so no packet of any protocol leaves it.

Measured on the project's machine (kernel 6.18, Landlock ABI 7): both together cost 2–4 ms per
sandbox. docs/design.md ("Sealed units") says why these and not bubblewrap or a mount namespace.

:func:`policy` computes the paths in the scorer's process (which knows where the target cache and the
results are, and refuses a policy that would let the sandbox read them); :func:`confine` applies it in
the sandbox. Where the kernel offers no Landlock, :func:`confine` returns without confining and says why:
the run then records ``sealed = false`` on its rows.
"""

from __future__ import annotations

import ctypes
import functools
import os
import site
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: Files a sandbox may read besides its code: what libc, torch (cpuinfo) and OpenMP look at.
SYSTEM_READ = (
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
    "/proc/cpuinfo",
    "/sys/devices/system/cpu",
    "/etc/localtime",
)

#: What CUDA opens, allowed where it exists (read, write, ioctl) so that a sandbox can use a GPU. Not yet
#: exercised on a GPU machine: the project's machines have none.
GPU_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0", "/dev/nvidia1")
GPU_READ = ("/proc/driver/nvidia", "/sys/devices", "/sys/bus/pci")

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Policy:
    """What one sandbox may touch: ``read`` (and execute) these trees, ``write`` these, nothing else."""

    read: tuple[str, ...]
    write: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())  # why this policy would not seal (then nothing is sealed)


def python_roots() -> list[Path]:
    """The installation trees imports come from: the interpreter's prefixes and the site folders."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    try:
        roots.update(site.getsitepackages())
    except AttributeError:  # a virtualenv of the old kind
        pass
    user = site.getusersitepackages()
    if user and os.path.isdir(user):
        roots.add(user)
    return [Path(r).resolve() for r in roots if r and os.path.isdir(r)]


def policy(code: list[Path], scratch: Path, secrets: list[Path]) -> Policy:
    """The policy of a sandbox that runs code from ``code`` (package and plugin folders), may write only
    ``scratch``, and must not reach any of ``secrets`` (the target cache, the results folder, the home
    folder).

    It may read the Python installation and every folder on ``sys.path`` (a ``.pth`` line or
    ``PYTHONPATH`` may add some outside it), except that a folder on ``sys.path`` that holds a secret (a
    checkout whose ``results/`` lies inside it) is narrowed to its Python packages and modules. A tree
    it must read to import code that still holds a secret is a problem, and :func:`confine` then
    refuses to call the sandbox sealed."""
    read, problems = _readable(tuple(str(p) for p in code), tuple(str(p) for p in secrets), tuple(sys.path))
    return Policy(read=read, write=(str(scratch),), problems=problems)


@functools.lru_cache(maxsize=64)
def _readable(code: tuple[str, ...], secret_paths: tuple[str, ...], path: tuple[str, ...]) -> tuple[tuple, tuple]:
    """:func:`policy`'s read list and problems (kept per process: listing a folder on ``sys.path`` that
    holds a secret, such as ``/tmp``, costs tens of milliseconds)."""
    secrets = [Path(p).resolve() for p in secret_paths]

    def holds_secret(root: Path) -> bool:
        return any(s == root or root in s.parents for s in secrets)

    read = [*python_roots(), *(Path(p).resolve() for p in code)]
    for entry in path:
        folder = Path(entry or ".").resolve()
        if not folder.is_dir() or any(folder == r or r in folder.parents for r in read):
            continue
        if not holds_secret(folder):
            read.append(folder)
            continue
        read += [
            p
            for p in folder.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists() or p.suffix == ".py") and not holds_secret(p)
        ]
    problems = [
        f"{secret} lies inside {root}, which a sandbox must read to import code"
        for root in read
        for secret in secrets
        if secret == root or root in secret.parents
    ]
    return tuple(dict.fromkeys(str(p) for p in read)), tuple(problems)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when it has none (or ``landlockpy`` is missing)."""
    try:
        import landlockpy
    except ImportError:
        return 0
    try:
        return int(landlockpy.abi_version())
    except OSError:
        return 0


def _network_namespace() -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return f"no network namespace ({os.strerror(ctypes.get_errno())})"
    return "network namespace"


def confine(rules: Policy) -> tuple[bool, str]:
    """Confine this process (which must be single-threaded: a fresh fork) by ``rules``, for good.

    Returns (sealed, how): ``sealed`` is False, with the reason in ``how``, when the system offers no
    Landlock or the policy has a problem; the caller records it on every row of the unit.
    """
    if rules.problems:
        return False, "not confined: " + "; ".join(rules.problems)
    abi = landlock_abi()
    if abi < 1:
        return False, "not confined: this kernel offers no Landlock (or landlockpy is not installed)"
    import landlockpy as ll

    # The namespace first: unshare(CLONE_NEWUSER) needs a process that Landlock has not yet restricted.
    net = _network_namespace()
    read = ll.AccessFS.READ_FILE | ll.AccessFS.READ_DIR | ll.AccessFS.EXECUTE
    with ll.Ruleset(scoped=ll.Scope.ABSTRACT_UNIX_SOCKET | ll.Scope.SIGNAL) as ruleset:
        for path in (*rules.read, *SYSTEM_READ, *GPU_READ):
            if os.path.exists(path):
                ruleset.allow_path(path, read if os.path.isdir(path) else ll.AccessFS.READ_FILE)
        device = ll.AccessFS.READ_FILE | ll.AccessFS.WRITE_FILE | ll.AccessFS.IOCTL_DEV
        for path in (*rules.write, "/dev/null", *GPU_DEVICES):
            if os.path.exists(path):
                ruleset.allow_path(path, ll.fs_for_abi(abi) if os.path.isdir(path) else device)
        ruleset.restrict()
        handled_net = bool(ruleset.handled_net)
    how = f"landlock ABI {abi}, " + net + (", TCP denied" if handled_net else "")
    return True, how
