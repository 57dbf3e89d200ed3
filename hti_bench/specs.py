"""Parametrised names: ``mccann``, ``clot[metric=learned,potential=True]``, ``moons-dropout[epochs=50]``.

The same syntax names a surrogate or a task on the command line, in sweep files and in the results, so
a row of the leaderboard can be pasted back into ``hti-bench run -s``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from hti_bench.errors import ConfigError

_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[(.*)\])?\s*$")


def _parse_value(text: str) -> Any:
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word is a string
    return value


def _split_top_level(body: str) -> list[str]:
    """Split on commas that are not inside brackets or quotes (values may be tuples)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(body):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p for p in parts if p.strip()]


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``name[k=v,...]`` into the name and a dict of Python values.

    Values are read as Python literals (``1``, ``0.5``, ``True``, ``(64, 64)``, ``'text'``); a bare
    word is a string. Raises :class:`ConfigError` on malformed input.
    """
    match = _SPEC.match(spec)
    if not match:
        raise ConfigError(
            f"Malformed name {spec!r}: expected NAME or NAME[key=value,...], e.g. 'mccann' or "
            "'moons-dropout[epochs=50]'."
        )
    name, body = match.group(1), match.group(2)
    params: dict[str, Any] = {}
    for part in _split_top_level(body or ""):
        if "=" not in part:
            raise ConfigError(f"Malformed parameter {part.strip()!r} in {spec!r}: expected key=value.")
        key, value = part.split("=", 1)
        key = key.strip()
        if not key.isidentifier():
            raise ConfigError(f"Malformed parameter name {key!r} in {spec!r}.")
        if key in params:
            raise ConfigError(f"Parameter {key!r} given twice in {spec!r}.")
        params[key] = _parse_value(value)
    return name, params


def format_spec(name: str, params: Mapping[str, Any]) -> str:
    """Inverse of :func:`parse_spec`: keys sorted, so equal configurations get equal names."""
    if not params:
        return name
    body = ",".join(f"{k}={_format_value(params[k])}" for k in sorted(params))
    return f"{name}[{body}]"


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        # A bare word round-trips; anything that would parse as another type gets quotes.
        return value if _parse_value(value) == value and "," not in value else repr(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)
