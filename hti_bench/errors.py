"""Exceptions raised by the harness, and the "did you mean" helper every name lookup uses."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HTIBenchError(Exception):
    """Base class of every error the harness raises on purpose."""


class UnknownNameError(HTIBenchError, KeyError):
    """A task or surrogate name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(HTIBenchError, ValueError):
    """A malformed specification, configuration or parameter."""


class PluginError(HTIBenchError):
    """A surrogate plugin that cannot be loaded, or two plugins with the same name."""


class ResultsError(HTIBenchError):
    """A results file that cannot be read or does not follow the schema."""


class LeakError(HTIBenchError):
    """A surrogate asked for something it may not see: a network or output at a λ that is not an anchor,
    the task's training loss or data outside ``fit()``, or a capability it did not declare."""


class NotOnViewError(LeakError, AttributeError):
    """An attribute a :class:`~hti_bench.view.TaskView` does not offer (the task object, its cache, its
    held-out λ …); an ``AttributeError`` too, so ``hasattr``/``getattr(view, name, default)`` work."""


class OpenConditionError(HTIBenchError, ValueError):
    """A surrogate asked to answer at condition rows the anchor networks were not run on, where it cannot:
    it was fitted without an anchor oracle, or its method needs the anchor rows themselves. Harness
    metrics that query new conditions (closed-loop rollouts, inductive scoring) are skipped with this
    reason instead of failing the surrogate's other scores."""


def unknown_name_message(kind: str, name: str, available: Iterable[str], where: str = "") -> str:
    """Format ``Unknown <kind> 'x'. Did you mean 'y'? Available: a, b, c (<where>)``."""
    names = sorted(set(available))
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(names) if names else "(none)"
    suffix = f" ({where})" if where else ""
    return f"Unknown {kind} '{name}'.{hint} Available: {listing}{suffix}"


def check_positive(owner: object, keys: Iterable[str], *, integer: bool = False) -> None:
    """Raise :class:`ConfigError` for any attribute of ``owner`` named in ``keys`` that is not > 0
    (``integer``: not an integer ≥ 1, e.g. a step count)."""
    for key in keys:
        value = getattr(owner, key)
        try:
            ok = int(value) >= 1 if integer else float(value) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"{key} must be {'≥ 1' if integer else '> 0'}, got {value!r}")


def check_choice(parameter: str, value: object, choices: Iterable[str]) -> None:
    """Raise :class:`ConfigError` naming the valid choices and the closest one if ``value`` is not one."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(
            unknown_name_message(f"{parameter}", str(value), choices).replace("Unknown ", "Unknown value for ", 1)
        )
