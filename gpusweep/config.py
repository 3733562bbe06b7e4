"""The sweep file: W&B's own sweep YAML plus our ``isolation:`` block, validated up front.

Everything that can be wrong with a sweep file is found here, before any trial starts, and
reported as one :class:`~gpusweep.errors.BadInput` naming the file, the key and the problem.
The W&B part is checked by W&B's own schema (``sweeps``), with clearer messages of ours in
front for the mistakes people make most.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from gpusweep.errors import BadInput
from gpusweep.isolation import IsolationConfig
from gpusweep.typedconfig import ConfigError, from_dict

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
METHODS = ("grid", "random", "bayes")
GRID_TYPES = ("categorical", "constant", "int_uniform", "q_uniform")
OUR_KEYS = ("isolation",)


@dataclass(frozen=True)
class Metric:
    name: str
    goal: Literal["minimize", "maximize"] = "minimize"

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` is better than ``b``."""
        return a < b if self.goal == "minimize" else a > b


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file."""

    path: str
    raw: dict[str, Any]  # the file as written, isolation block included
    engine: dict[str, Any]  # what W&B's engine sees: raw without our keys
    isolation: IsolationConfig
    method: str
    metric: Metric | None
    command: list[str]
    program: str | None
    run_cap: int | None
    name: str | None
    project: str | None
    entity: str | None

    @property
    def early_terminate(self) -> dict[str, Any] | None:
        return self.engine.get("early_terminate")


def load_sweep(path: str) -> SweepSpec:
    """Read, validate and return the sweep file at ``path`` (raises BadInput)."""
    raw = _read_yaml(path)
    return parse_sweep(raw, path)


def parse_sweep(raw: Any, path: str = "<sweep>") -> SweepSpec:
    """Validate an already-parsed sweep mapping (raises BadInput naming ``path``)."""
    if not isinstance(raw, dict):
        raise BadInput(path, "", "a sweep file must be a YAML mapping")
    try:
        isolation = from_dict(IsolationConfig, raw.get("isolation"), "isolation")
    except ConfigError as exc:
        raise BadInput(path, exc.key, exc.message) from None
    engine = {k: copy.deepcopy(v) for k, v in raw.items() if k not in OUR_KEYS}

    method = engine.get("method")
    if method is None:
        raise BadInput(path, "method", f"missing; one of {', '.join(METHODS)}")
    if method not in METHODS:
        raise BadInput(path, "method", f"unknown method {method!r}; one of {', '.join(METHODS)}")
    _check_parameters(path, engine.get("parameters"), method)
    metric = _check_metric(path, engine, method)
    _check_early_terminate(path, engine.get("early_terminate"))
    run_cap = engine.get("run_cap")
    if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int)
                                or run_cap < 1):
        raise BadInput(path, "run_cap", f"must be a positive integer, got {run_cap!r}")
    _check_param_names(path, isolation, engine["parameters"])
    project = engine.get("project")
    if project is not None and (not isinstance(project, str) or project_problem(project)):
        raise BadInput(path, "project", f"{project!r}: "
                       f"{project_problem(str(project)) or 'must be a string'}")
    command = _check_command(path, engine.get("command"))
    program = engine.get("program")
    if "${program}" in command:
        _check_program(path, program)
    _check_schema(path, engine)
    if method == "grid":
        _check_grid_size(path, engine["parameters"])
    return SweepSpec(
        path=path,
        raw=raw,
        engine=engine,
        isolation=isolation,
        method=method,
        metric=metric,
        command=command,
        program=program,
        run_cap=run_cap,
        name=engine.get("name"),
        project=engine.get("project"),
        entity=engine.get("entity"),
    )


WANDB_PROJECT_FORBIDDEN = set("/\\#?%:")  # what W&B refuses in a project name


def project_problem(name: str) -> str | None:
    """Why W&B would refuse this project name (each trial would lose its run), or None."""
    bad = sorted(WANDB_PROJECT_FORBIDDEN & set(name))
    if bad:
        return f"a W&B project name cannot contain {' '.join(bad)}"
    if not name.strip() or len(name) > 128:
        return "a W&B project name has 1 to 128 characters"
    return None


def _read_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise BadInput(path, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(path, "", f"cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(path, where, f"YAML syntax error: {problem}") from None


def _check_parameters(path: str, parameters: Any, method: str, prefix: str = "parameters") -> None:
    if not isinstance(parameters, dict) or not parameters:
        raise BadInput(path, prefix, "must be a non-empty mapping of parameter names")
    for name, spec in parameters.items():
        key = f"{prefix}.{name}"
        if not isinstance(name, str):
            raise BadInput(path, key, f"parameter names must be strings, got {name!r}")
        if not isinstance(spec, dict):
            raise BadInput(path, key, "must be a mapping such as {values: [...]} or {value: x}")
        if "parameters" in spec:
            _check_parameters(path, spec["parameters"], method, f"{key}.parameters")
            continue
        if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
            raise BadInput(path, f"{key}.values", "must be a non-empty list")
        low, high = spec.get("min"), spec.get("max")
        if _is_number(low) and _is_number(high) and low >= high:
            raise BadInput(path, key, f"min {low} must be less than max {high}")
        if method == "grid" and _distribution(spec) not in GRID_TYPES:
            raise BadInput(
                path, key, f"grid search needs values, value, int_uniform or q_uniform, "
                f"not {_distribution(spec)}"
            )


def param_names(parameters: dict[str, Any], prefix: str = "") -> list[str]:
    """Every parameter's dotted name (nested ``parameters:`` blocks give ``a.b``)."""
    names = []
    for name, spec in parameters.items():
        if isinstance(spec, dict) and "parameters" in spec:
            names += param_names(spec["parameters"], f"{prefix}{name}.")
        else:
            names.append(f"{prefix}{name}")
    return names


def _check_param_names(path: str, isolation: IsolationConfig, parameters: dict) -> None:
    """The params the isolation block acts on must exist: a typo would silently turn the
    OOM back-off or the memory model off."""
    names = param_names(parameters)
    used = []
    if isolation.oom.retry:
        used.append(("isolation.oom.key", isolation.oom.key))
    if isolation.fit.features:
        used += [(f"isolation.fit.features[{i}]", f)
                 for i, f in enumerate(isolation.fit.features)]
        if isolation.fit.policy == "shrink":
            used.append(("isolation.fit.key", isolation.fit.key or isolation.oom.key))
    for key, name in used:
        if name not in names:
            raise BadInput(path, key, f"{name!r} is not a parameter of this sweep "
                           f"(parameters: {', '.join(names)})")
    shrink_key = isolation.fit.key or isolation.oom.key
    if isolation.fit.policy == "shrink" and shrink_key not in isolation.fit.features:
        raise BadInput(path, "isolation.fit.key", f"{shrink_key!r} must be one of "
                       "isolation.fit.features: shrinking a param the model does not fit on "
                       "cannot change its prediction")


def _distribution(spec: dict[str, Any]) -> str:
    if "distribution" in spec:
        return str(spec["distribution"])
    if "values" in spec:
        return "categorical"
    if "value" in spec:
        return "constant"
    if isinstance(spec.get("min"), int) and isinstance(spec.get("max"), int):
        return "int_uniform"
    return "uniform"


def _check_metric(path: str, engine: dict[str, Any], method: str) -> Metric | None:
    metric = engine.get("metric")
    needs = method == "bayes" or "early_terminate" in engine
    if metric is None:
        if needs:
            who = "bayes search" if method == "bayes" else "early_terminate (hyperband)"
            raise BadInput(path, "metric", f"missing; {who} needs metric.name and metric.goal")
        return None
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
        raise BadInput(path, "metric.name", "missing; the metric the trial reports")
    goal = metric.get("goal", "minimize")
    if goal not in ("minimize", "maximize"):
        raise BadInput(path, "metric.goal", f"must be minimize or maximize, got {goal!r}")
    return Metric(metric["name"], goal)


def _check_early_terminate(path: str, early: Any) -> None:
    if early is None:
        return
    if not isinstance(early, dict) or early.get("type") != "hyperband":
        raise BadInput(path, "early_terminate.type", "only hyperband is supported")
    if "min_iter" not in early and not ("max_iter" in early and "s" in early):
        raise BadInput(path, "early_terminate", "hyperband needs min_iter, or max_iter and s")
    for key in ("min_iter", "max_iter", "s"):
        value = early.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise BadInput(path, f"early_terminate.{key}", f"must be a positive integer, got "
                           f"{value!r}")
    eta = early.get("eta", 3)
    if not _is_number(eta) or eta <= 1:
        raise BadInput(path, "early_terminate.eta", f"must be a number > 1, got {eta!r}")


def _check_command(path: str, command: Any) -> list[str]:
    if command is None:
        return list(DEFAULT_COMMAND)
    if not isinstance(command, list) or not command:
        raise BadInput(path, "command", "must be a non-empty list of argv tokens")
    for i, token in enumerate(command):
        if not isinstance(token, (str, int, float)):
            raise BadInput(path, f"command[{i}]", f"must be a string, got {token!r}")
    return [str(token) for token in command]


def _check_program(path: str, program: Any) -> None:
    if not isinstance(program, str) or not program:
        raise BadInput(path, "program", "missing; the command uses ${program}")
    if not os.path.isfile(program):
        raise BadInput(
            path, "program", f"{program!r} not found (relative to the current directory "
            f"{os.getcwd()}, as with wandb agent)"
        )
    if not os.access(program, os.R_OK):
        raise BadInput(path, "program", f"{program!r} is not readable")


def _check_schema(path: str, engine: dict[str, Any]) -> None:
    """W&B's own JSON schema; its first complaint, pinned on a parameter when it is one."""
    violations = _schema_violations(engine)
    if not violations:
        return
    if not _schema_violations(dict(engine, parameters={"_": {"value": 1}})):
        for name, spec in engine["parameters"].items():  # then one parameter is wrong
            if _schema_violations(dict(engine, parameters={name: spec})):
                raise BadInput(path, f"parameters.{name}",
                               f"not a valid W&B parameter: {spec!r}{_text_number_hint(spec)}")
    raise BadInput(path, "", f"not a valid W&B sweep: {violations[0]}")


def _schema_violations(engine: dict[str, Any]) -> list[str]:
    from gpusweep.engine import package

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return package().schema_violations_from_proposed_config(engine)


def _text_number_hint(spec: Any) -> str:
    """YAML 1.1 reads ``1e-5`` (no dot) as a string: say so, it is the usual cause."""
    if not isinstance(spec, dict):
        return ""
    for key, value in spec.items():
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                continue
            return f" ({key}: {value!r} is text to YAML; write it with a dot, e.g. 1.0e-5)"
    return ""


MAX_GRID = 100_000  # W&B's engine enumerates the grid up front: beyond this it hangs


def grid_size(parameters: dict[str, Any]) -> int:
    """How many points a grid sweep has, counted as W&B's engine enumerates them (nested
    parameter blocks multiply too)."""
    size = 1
    for spec in parameters.values():
        if "parameters" in spec:
            size *= grid_size(spec["parameters"])
            continue
        kind = _distribution(spec)
        if kind == "categorical":
            size *= len(spec["values"])
        elif kind == "int_uniform":
            size *= int(spec["max"]) - int(spec["min"]) + 1
        elif kind == "q_uniform":  # the engine takes np.arange(min, max, q)
            size *= max(1, math.ceil((spec["max"] - spec["min"]) / spec.get("q", 1.0)))
    return size


def _check_grid_size(path: str, parameters: dict[str, Any]) -> None:
    size = grid_size(parameters)
    if size > MAX_GRID:
        raise BadInput(path, "parameters", f"the grid has {size:,} points (more than "
                       f"{MAX_GRID:,}); use values lists, or method random")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
