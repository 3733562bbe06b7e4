"""A trial's params by dotted name: a literal ``"train.batch_size"`` key (W&B's flat form,
what ``${args}`` turns into ``--train.batch_size=64``), else nested ``{train: {batch_size}}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MISSING = object()


def get(params: Mapping[str, Any], name: str) -> Any:
    """The value of ``name``, or :data:`MISSING`."""
    if name in params:
        return params[name]
    node: Any = params
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def number(params: Mapping[str, Any], name: str) -> float | None:
    """A finite numeric param as a float (booleans are not numbers here), else None."""
    value = get(params, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def replace(params: Mapping[str, Any], name: str, value: Any) -> dict[str, Any]:
    """A copy of ``params`` with one param replaced, in the form it was found in."""
    copy = dict(params)
    if name in copy or "." not in name:
        copy[name] = value
        return copy
    head, rest = name.split(".", 1)
    inner = copy.get(head)
    copy[head] = replace(inner if isinstance(inner, Mapping) else {}, rest, value)
    return copy


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted names: ``{model: {hidden: 8}}`` -> ``{model.hidden: 8}``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def varied_params(flat: Sequence[Mapping[str, Any]]) -> list[str]:
    """Param names whose value differs between trials, in first-seen order."""
    names: list[str] = []
    for params in flat:
        names += [k for k in params if k not in names]
    return [k for k in names if len({repr(p.get(k)) for p in flat}) > 1]
