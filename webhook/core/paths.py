"""Field paths with list and map wildcards, and a bounded walk of an object — pure.

The kind table (:mod:`webhook.core.kinds`) says where a workload keeps its pod templates
in this small language::

    path  := seg ("." seg)*
    seg   := "*" | name index*           "*" is every value of a map (binds its key)
    name  := [A-Za-z0-9_/-]+ | '"' [^"]* '"'     quote keys holding dots: "a.b/c"
    index := "[" ("*" | digits) "]"      "[*]" is every item of a list (binds its index)

``spec.pytorchReplicaSpecs.*.template`` reaches every replica's template and binds the
role name (the map key); ``spec.tasks[*].template`` every Volcano task's, binding its
index. :func:`parse` reads a path in one left-to-right pass (linear time, no
backtracking) and refuses anything over :data:`MAX_PATH_LENGTH` characters or
:data:`MAX_STEPS` steps; :func:`walk` yields at most :data:`MAX_MATCHES` matches and
then fails, so a hostile object with a million map entries costs a bounded amount of
work and ends in an error naming the field, never in a silent partial check.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.fields import InvalidObject, type_name

__all__ = [
    "MAX_MATCHES",
    "MAX_PATH_LENGTH",
    "MAX_STEPS",
    "InvalidPath",
    "Match",
    "Path",
    "Step",
    "StepKind",
    "format_key",
    "parse",
    "walk",
]

MAX_PATH_LENGTH = 512
MAX_STEPS = 32
MAX_MATCHES = 512
"""More pod sets than this in one object is refused: no real workload has them."""
_MAX_INDEX_DIGITS = 6
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_/-")


class InvalidPath(ValueError):
    """A path that does not parse; says where (a configuration error at start)."""

    def __init__(self, path: str, position: int, reason: str) -> None:
        super().__init__(f"path {path!r}: {reason} at character {position + 1}")
        self.path = path
        self.position = position
        self.reason = reason


class StepKind(enum.Enum):
    KEY = "key"  # one map key
    INDEX = "index"  # one list item
    ITEMS = "items"  # every list item: [*]
    VALUES = "values"  # every map value: *


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    key: str = ""
    index: int = 0


@dataclass(frozen=True, slots=True)
class Path:
    """A parsed path; ``text`` is what was written."""

    text: str
    steps: tuple[Step, ...]

    @property
    def wildcards(self) -> int:
        return sum(1 for s in self.steps if s.kind in (StepKind.ITEMS, StepKind.VALUES))

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Match:
    """One value a path reached: where it is (``spec.tasks[1]``) and what the wildcards bound."""

    value: Any
    field: str
    bindings: tuple[str | int, ...] = ()
    """Map keys and list indexes the wildcards took, outermost first."""


def parse(text: str) -> Path:
    """Parse a path; raises :class:`InvalidPath` naming the position of the first error."""
    if not isinstance(text, str):
        raise InvalidPath(repr(text), 0, "a path must be a string")
    if len(text) > MAX_PATH_LENGTH:
        raise InvalidPath(text[:40] + "...", MAX_PATH_LENGTH, "longer than 512 characters")
    if not text:
        raise InvalidPath(text, 0, "empty path")
    steps: list[Step] = []
    i, n = 0, len(text)
    while True:
        # One segment: "*", or a name followed by any number of [..] indexes.
        if i < n and text[i] == "*":
            steps.append(Step(StepKind.VALUES))
            i += 1
        else:
            key, i = _name(text, i)
            steps.append(Step(StepKind.KEY, key=key))
            while i < n and text[i] == "[":
                step, i = _index(text, i)
                steps.append(step)
        if len(steps) > MAX_STEPS:
            raise InvalidPath(text, i, f"more than {MAX_STEPS} steps")
        if i == n:
            return Path(text, tuple(steps))
        if text[i] != ".":
            raise InvalidPath(text, i, f"expected '.' or '[', got {text[i]!r}")
        i += 1
        if i == n:
            raise InvalidPath(text, i - 1, "a path cannot end with '.'")


def _name(text: str, i: int) -> tuple[str, int]:
    n = len(text)
    if i < n and text[i] == '"':
        end = text.find('"', i + 1)
        if end < 0:
            raise InvalidPath(text, i, "unterminated quoted key")
        return text[i + 1 : end], end + 1
    start = i
    while i < n and text[i] in _NAME_CHARS:
        i += 1
    if i == start:
        got = repr(text[i]) if i < n else "the end"
        raise InvalidPath(text, i, f"expected a key, '*' or a quoted key, got {got}")
    return text[start:i], i


def _index(text: str, i: int) -> tuple[Step, int]:
    close = text.find("]", i + 1, i + 2 + _MAX_INDEX_DIGITS)
    if close < 0:
        raise InvalidPath(text, i, "expected '[*]' or '[N]' (at most 6 digits)")
    inner = text[i + 1 : close]
    if inner == "*":
        return Step(StepKind.ITEMS), close + 1
    if not inner or not inner.isascii() or not inner.isdigit():
        raise InvalidPath(text, i + 1, f"expected '*' or a list index, got {inner!r}")
    return Step(StepKind.INDEX, index=int(inner)), close + 1


def format_key(key: str) -> str:
    """A map key as it is written in a path: quoted when it is not a plain name."""
    if key and all(c in _NAME_CHARS for c in key):
        return key
    return f'"{key}"'


def _join(field: str, key: str) -> str:
    shown = format_key(key)
    return f"{field}.{shown}" if field else shown


def walk(value: Any, path: Path, field: str = "", limit: int = MAX_MATCHES) -> Iterator[Match]:
    """Every value ``path`` reaches in ``value``; absent fields reach nothing.

    ``field`` is where ``value`` sits (for the matches' names and the errors). A step
    through a field of the wrong type (a list where a map belongs, a role map that is a
    string) raises :class:`~webhook.core.fields.InvalidObject` naming the field; more than
    ``limit`` matches raise it too.
    """
    for count, match in enumerate(_walk(value, path.steps, 0, field, ()), start=1):
        if count > limit:
            raise InvalidObject(
                field or path.text,
                f"{path.text} reaches more than {limit} entries; refusing to check so many",
            )
        yield match


def _walk(
    value: Any, steps: tuple[Step, ...], at: int, field: str, bound: tuple[str | int, ...]
) -> Iterator[Match]:
    # Recursion depth is bounded by MAX_STEPS, the fan-out by the caller's limit.
    while at < len(steps):
        if value is None:
            return
        step = steps[at]
        if step.kind is StepKind.KEY:
            if type(value) is not dict and not isinstance(value, Mapping):
                raise InvalidObject(
                    field or "<object>", f"expected an object, got {type_name(value)}"
                )
            value = value.get(step.key)
            field = _join(field, step.key)
        elif step.kind is StepKind.INDEX:
            if not isinstance(value, list):
                raise InvalidObject(field, f"expected a list, got {type_name(value)}")
            if step.index >= len(value):
                return
            value = value[step.index]
            field = f"{field}[{step.index}]"
        elif step.kind is StepKind.ITEMS:
            if not isinstance(value, list):
                raise InvalidObject(field, f"expected a list, got {type_name(value)}")
            for index, item in enumerate(value):
                yield from _walk(item, steps, at + 1, f"{field}[{index}]", (*bound, index))
            return
        else:  # VALUES
            if type(value) is not dict and not isinstance(value, Mapping):
                raise InvalidObject(
                    field, f"expected a map of names to objects, got {type_name(value)}"
                )
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidObject(f"{field}.{key!r}", "keys must be strings")
                yield from _walk(item, steps, at + 1, _join(field, key), (*bound, key))
            return
        at += 1
    if value is not None:
        yield Match(value, field, bound)
