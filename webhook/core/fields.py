"""Typed reads of fields out of decoded objects, each failure naming the field — pure.

Objects come from JSON or YAML and may hold anything: a list where a map belongs, a
string replica count, ``true`` for a number. Every reader here either returns the type it
promises or raises :class:`InvalidObject` with the field's path, so a hostile object is a
clear error (a deny, a ``check`` error), never a traceback or a silent allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "InvalidObject",
    "optional_int",
    "optional_list",
    "optional_map",
    "optional_str",
    "type_name",
]


class InvalidObject(ValueError):
    """The object is not a well-formed Kubernetes object of a kind we read; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def type_name(value: object) -> str:
    """How a decoded value is named in an error: "an object", "a list", "int"."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def optional_map(value: object, field: str) -> Mapping[str, Any] | None:
    """A map, or None when absent; anything else is an error naming ``field``."""
    if value is None:
        return None
    if type(value) is not dict and not isinstance(value, Mapping):
        raise InvalidObject(field, f"expected an object, got {type_name(value)}")
    return value


def optional_list(value: object, field: str) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidObject(field, f"expected a list, got {type_name(value)}")
    return value


def optional_str(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidObject(field, f"expected a string, got {type_name(value)}")
    return value


def optional_int(value: object, field: str) -> int | None:
    """A non-negative integer, or None; ``"4"``, ``true``, ``2.5`` and ``-1`` are errors."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidObject(field, f"expected an integer, got {value!r}")
    if value < 0:
        raise InvalidObject(field, f"must not be negative, got {value}")
    return value
