"""Typed dataclass trees from YAML mappings, rejecting what they do not know.

nanoGPT's configurator made a typo an error instead of a silent default; this does the same
for nested dataclasses. Every error names the dotted key, so callers can prefix the file.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is wrong; ``key`` is the dotted path, ``message`` what is wrong."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and types recursively."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(_join(prefix, str(unknown[0])), f"unknown key (known: {known})")
    values = {}
    for name, value in data.items():
        values[name] = coerce(hints[name], value, _join(prefix, name))
    try:
        instance = cls(**values)
    except ConfigError as exc:
        raise ConfigError(_join(prefix, exc.key), exc.message) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(prefix, str(exc)) from None
    return instance


def coerce(annotation: Any, value: Any, key: str) -> Any:
    """Check ``value`` against a type annotation, converting only where lossless."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(option, value, key)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(key, errors[0] if errors else f"invalid value {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value is False and "off" in allowed:  # YAML 1.1 reads a bare `off` as false
            return "off"
        if value is True and "on" in allowed:
            return "on"
        if value not in allowed:
            raise ConfigError(key, f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {value!r}")
        (item_type, *_) = typing.get_args(annotation) or (Any,)
        items = [coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, key)
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as text
            value = _number_or_text(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(key, f"expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(key, f"expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {value!r}")
    return value


def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def parse_scalar(text: str) -> Any:
    """Parse a command-line value the way YAML would (``0.001``, ``true``, ``[1, 2]``), and
    numbers in any form Python prints them (``1e-05``). ``None`` is null like ``null`` and
    ``~``: W&B's ``${args}`` writes a sweep parameter's null value as ``--key=None``."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value == "None":
        return None
    if isinstance(value, str):  # YAML 1.1 reads 1e-05 (Python's str of a small float) as text
        return _number_or_text(value)
    return value


def override(instance: T, dotted: str, text: str) -> T:
    """Return a copy of a dataclass tree with ``dotted`` set from command-line ``text``."""
    head, _, rest = dotted.partition(".")
    names = {f.name for f in dataclasses.fields(instance)}  # type: ignore[arg-type]
    if head not in names:
        raise ConfigError(dotted, f"unknown key (known: {', '.join(sorted(names))})")
    current = getattr(instance, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(dotted, f"{head} has no sub-keys")
        try:
            new_value = override(current, rest, text)
        except ConfigError as exc:
            raise ConfigError(_join(head, exc.key), exc.message) from None
    else:
        if dataclasses.is_dataclass(current):
            raise ConfigError(dotted, "is a section; set one of its keys")
        hint = typing.get_type_hints(type(instance))[head]
        new_value = coerce(hint, parse_scalar(text), dotted)
    try:
        return dataclasses.replace(instance, **{head: new_value})  # type: ignore[type-var]
    except ConfigError as exc:
        raise ConfigError(dotted, exc.message) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(dotted, str(exc)) from None


def to_dict(instance: Any) -> dict[str, Any]:
    """Plain nested dict of a dataclass tree (tuples become lists, for YAML)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(instance))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
