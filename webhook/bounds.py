"""Bounds on untrusted input, shared by the webhook server and ``nodelimits check``.

Python's parsers and everything that walks their result afterwards (kopf's diff of an
UPDATE, ``repr`` in an error message) recurse: a 100k-deep JSON array was a RecursionError
traceback and a 500 (issue 12, finding 9), the same in a file a RecursionError and exit 1
(finding 10), and libyaml's loader overflows the C stack and kills the process. So nesting
is bounded before anything recurses into it. No real Kubernetes object comes near the bound
(a Pod's managedFields, the deepest part, is about 15 levels).
"""

from __future__ import annotations

from typing import Any

import pydantic_core

__all__ = ["MAX_DEPTH", "InvalidJson", "TooDeep", "check_depth", "loads", "shallow_by_count"]

MAX_DEPTH = 200
"""Deepest nesting of objects and arrays accepted, counting the document itself as 1.
What recurses afterwards stays far from Python's 1,000 frames at this depth: kopf's diff of
an UPDATE takes a frame per level, ``copy.deepcopy`` two (tests/unit/test_bounds.py)."""


class InvalidJson(ValueError):
    """Not one JSON document (the parser's own words, with line and column)."""


class TooDeep(ValueError):
    """Input nested deeper than :data:`MAX_DEPTH`."""

    def __init__(self) -> None:
        super().__init__(f"nested deeper than {MAX_DEPTH} levels")


def check_depth(value: object, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`TooDeep` if ``value`` (decoded JSON: dicts, lists, scalars) nests
    deeper than ``limit``. Iterative, linear in the size of ``value``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        kind = type(node)
        if kind is dict:
            children = node.values()
        elif kind is list:
            children = node
        else:
            continue
        if depth > limit:
            raise TooDeep
        for child in children:
            child_kind = type(child)
            if child_kind is dict or child_kind is list:
                push((child, depth + 1))


def shallow_by_count(text: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when the JSON ``text`` cannot nest deeper than ``limit``, told from byte counts
    (C speed) instead of a walk of the decoded value.

    On a path from the document down, every container but the last holds the next, so
    depth <= non-empty containers + 1, and non-empty containers <= openers - ``{}`` - ``[]``.
    Brackets inside strings only raise the bound: a ``{`` there adds an opener, a ``{}``
    there an opener and a pair. A ``{}`` is never half a string (after a real ``{`` comes
    space, ``"`` or ``}``; a ``{`` in a string is followed by string or its closing ``"``).
    False says only "walk to find out"."""
    openers = text.count(b"{") + text.count(b"[")
    if openers < limit:  # most reviews: the pairs need not be counted
        return True
    return openers - text.count(b"{}") - text.count(b"[]") < limit


def loads(text: bytes) -> Any:
    """JSON with bounded nesting: :class:`TooDeep` instead of a RecursionError later from
    whatever walks the result, :class:`InvalidJson` for anything else wrong.

    pydantic-core's parser (jiter: 194k instructions for a 4.4 KB Pod review, the
    stdlib's 341k) refuses on its own past about 200 levels, by a count of its own (201
    arrays pass, an object holding a scalar 201 deep does not); the counts, or the walk
    where they cannot tell, make the bound :data:`MAX_DEPTH` exactly."""
    try:
        value = pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError as exc:
        if str(exc).startswith("recursion limit exceeded"):
            raise TooDeep from None
        raise InvalidJson(str(exc)) from None
    if not shallow_by_count(text):
        check_depth(value)
    return value
