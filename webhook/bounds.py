"""Bounds on untrusted input, shared by the webhook server and ``nodelimits check``.

Python's parsers and everything that walks their result afterwards (kopf's diff of an
UPDATE, ``repr`` in an error message) recurse: a 100k-deep JSON array was a RecursionError
traceback and a 500 (issue 12, finding 9), the same in a file a RecursionError and exit 1
(finding 10), and libyaml's loader overflows the C stack and kills the process. So nesting
is bounded before anything recurses into it. No real Kubernetes object comes near the bound
(a Pod's managedFields, the deepest part, is about 15 levels).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "TooDeep", "check_depth", "loads"]

MAX_DEPTH = 128
"""Deepest nesting of objects and arrays accepted, counting the document itself as 1."""


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


def loads(text: str | bytes) -> Any:
    """``json.loads`` with bounded nesting: :class:`TooDeep` instead of a RecursionError
    (from the parser itself, or later from whatever walks the result)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeep from None
    check_depth(value)
    return value
