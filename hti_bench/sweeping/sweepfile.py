"""Loading a wandb sweep file and checking it against the W&B schema *and* this project's registries.

A sweep file is an unchanged W&B sweep config (``program``/``command``, ``method``, ``metric``,
``parameters``, ``early_terminate``, ``run_cap``). Before a single run starts, :func:`load_sweep`
refuses, with the file's name and one clear message: bad YAML (with line and column), anything the
``sweeps`` package's JSON schema rejects (unknown method, bad distribution), a metric the program
does not log, a parameter that is neither a program key nor a parameter of every surrogate in the
sweep, and task or surrogate names that do not resolve (with the closest match).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hti_bench.clock import CLOCK_PARAM
from hti_bench.errors import ConfigError, HTIBenchError, unknown_name_message
from hti_bench.specs import format_spec, parse_spec
from hti_bench.sweeping.engine import import_sweeps
from hti_bench.sweeping.program import METRIC, PROGRAM_KEYS, unknown_parameter

#: Metrics the program logs at every step; a sweep may optimise any of them (all lower-is-better).
LOGGED_METRICS = ("w2", "w1", "w2sq", "w2_seed")

METHODS = ("grid", "random", "bayes")


@dataclass(frozen=True)
class SweepFile:
    """A checked sweep file."""

    path: Path
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def method(self) -> str:
        return str(self.config["method"])

    @property
    def metric(self) -> str:
        return str(self.config.get("metric", {}).get("name", METRIC))

    @property
    def goal(self) -> str:
        return str(self.config.get("metric", {}).get("goal", "minimize"))

    @property
    def digest(self) -> str:
        """Identifies the search itself: the same file content resumes the same sweep state."""
        blob = json.dumps(self.config, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    def planned_runs(self) -> int | None:
        """Runs the sweep proposes in all: the grid's size (capped by run_cap), else run_cap or None."""
        cap = self.config.get("run_cap")
        if self.method != "grid":
            return int(cap) if cap else None
        size = 1
        for spec in self.config["parameters"].values():
            size *= len(_grid_values(spec))
        return min(size, int(cap)) if cap else size


def _grid_values(spec: dict[str, Any]) -> list[Any]:
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    if spec.get("distribution") == "int_uniform":
        return list(range(int(spec["min"]), int(spec["max"]) + 1))
    if spec.get("distribution") == "q_uniform":
        q = float(spec.get("q", 1))
        return [spec["min"] + i * q for i in range(int(math.ceil((spec["max"] - spec["min"]) / q)))]
    return [None]


def _candidates(where: str, key: str, spec: Any) -> list[Any]:
    """Every value a parameter can take that can be listed (value/values; a range gives its ends)."""
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where}: parameter {key!r} must be a mapping such as {{value: …}} or {{values: […]}}, got {spec!r}."
        )
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return list(spec["values"])
    return [
        spec[k]
        for k in ("min", "max")
        if k in spec and spec.get("distribution") not in ("log_uniform", "q_log_uniform", "inv_log_uniform")
    ]


def load_sweep(path: str | Path) -> SweepFile:
    """Read and check a sweep file; raises :class:`ConfigError` naming the file and the problem."""
    import yaml

    path = Path(path)
    where = f"Sweep file {path}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist.")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where} is not valid YAML{at}: {problem}.") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{where} must hold a mapping (method, metric, parameters, …), got {type(config).__name__}.")
    if config.get("method") not in METHODS:
        raise ConfigError(unknown_name_message("sweep method", str(config.get("method")), METHODS, f"in {path}"))
    if not isinstance(config.get("parameters"), dict) or not config["parameters"]:
        raise ConfigError(f"{where} has no parameters.")
    violations = import_sweeps().schema_violations_from_proposed_config(config)
    if violations:
        raise ConfigError(f"{where} does not follow the W&B sweep schema: " + "; ".join(dict.fromkeys(violations)))
    sweep = SweepFile(path=path, config=config)
    _check_metric(where, config)
    _check_command(where, config)
    _check_parameters(where, config["parameters"])
    return sweep


def _check_metric(where: str, config: dict[str, Any]) -> None:
    metric = config.get("metric")
    if metric is None:
        if config["method"] == "bayes" or config.get("early_terminate"):
            raise ConfigError(
                f"{where}: bayes search and early termination need a metric, e.g. metric: {{name: {METRIC}, goal: minimize}}."
            )
        return
    if metric.get("name") not in LOGGED_METRICS:
        raise ConfigError(
            unknown_name_message(
                "metric", str(metric.get("name")), LOGGED_METRICS, f"the metrics the sweep program logs; in {where}"
            )
        )
    if metric.get("goal", "minimize") != "minimize":
        raise ConfigError(
            f"{where}: the metric {metric['name']} is an error (lower is better); its goal must be minimize."
        )


def _check_command(where: str, config: dict[str, Any]) -> None:
    command = config.get("command")
    if command is None:
        return
    if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
        raise ConfigError(f"{where}: command must be a list of strings (use a block list, '- ${{env}}').")
    if "${args}" not in command:
        raise ConfigError(
            f"{where}: command must pass the run's parameters with ${{args}} (the program reads --key=value)."
        )


def _check_parameters(where: str, params: dict[str, Any]) -> None:
    from hti_bench.harness.registry import make_task
    from hti_bench.harness.sandbox import lookup
    from hti_bench.sweeping.program import designed_anchors, spaced_anchors

    for key in ("task", "surrogate"):
        if key not in params:
            raise ConfigError(f"{where}: parameters must include {key!r}.")
    values = {key: _candidates(where, key, spec) for key, spec in params.items()}
    for key in ("task", "surrogate"):
        spec = params[key]
        if "value" not in spec and "values" not in spec:
            raise ConfigError(
                f"{where}: parameter {key!r} must be given as value or values (names), not a distribution."
            )
        for v in values[key]:
            if not isinstance(v, str):
                raise ConfigError(f"{where}: {key} values must be names (text), got {v!r}.")
    extra = [k for k in params if k not in PROGRAM_KEYS]
    try:
        tasks = [make_task(t) for t in values["task"]]
        surrogates = [parse_spec(s) for s in values["surrogate"]]
        entries = {name: lookup.entry(name) for name, _ in surrogates}  # unknown: the names, the closest match
        for key in extra:
            for name, _ in surrogates:
                valid = {**entries[name].params, CLOCK_PARAM: ""}
                if key not in valid:
                    raise unknown_parameter(key, name, valid)
        # Every listed surrogate parameter value must build (catches a string where a number goes).
        specs = [format_spec(name, base) for name, base in surrogates]
        specs += [
            format_spec(name, {**base, key: v}) for name, base in surrogates for key in extra for v in values[key]
        ]
        lookup.resolve_many(specs)
        for n in values.get("n_anchors", []):
            for task in tasks:
                make_task(spaced_anchors(task.spec, int(n)))
        for design in values.get("design", []):
            for task in tasks:
                make_task(designed_anchors(task.spec, str(design))).anchors  # noqa: B018 (builds the design)
    except HTIBenchError as err:
        raise ConfigError(f"{where}: {err}") from None
    for key in ("seed", "seeds"):
        for v in values.get(key, []):
            if isinstance(v, bool) or not isinstance(v, (int, list)):
                raise ConfigError(f"{where}: {key} values must be integers, got {v!r}.")
