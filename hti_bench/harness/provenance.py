"""Where a result came from: versions, git revision, device, time."""

from __future__ import annotations

import functools
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import torch

from hti_bench.harness.registry import PACKAGED_PLUGINS, PROJECT_ROOT


def package_version() -> str:
    try:
        return version("hti-bench")
    except PackageNotFoundError:
        return "0+unknown"


@functools.lru_cache(maxsize=None)  # one entry per command: the revision is read once per process
def _git(*args: str) -> str:
    """The output of ``git ARGS`` in the project's checkout, stripped."""
    return subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def git_revision() -> str:
    """Short revision of the project checkout, ``-dirty`` if it has uncommitted changes; else unknown.

    Only a checkout of hti-bench itself counts: an installed wheel lives in site-packages, which may sit
    inside some other repository (a project with its venv in its folder), whose revision says nothing
    about the code that ran; then the package version is the record.
    """
    if PACKAGED_PLUGINS.is_dir() or not (PROJECT_ROOT / ".git").exists():
        return "unknown"
    try:
        rev = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def provenance() -> dict[str, str]:
    return {
        "hti_bench_version": package_version(),
        "git_rev": git_revision(),
        "torch_version": torch.__version__,
        "device": device(),
    }
