"""webhook.bounds: the nesting bound of untrusted JSON, and the counts that let most
documents skip the walk."""

from __future__ import annotations

import copy
import json
from typing import Any

import kopf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kopf import Resource

from devtools.reviews import admission_review
from webhook import bounds
from webhook.serve.kopf_glue import EphemeralMemories, Insights, serve_admission_request


def nested(depth: int) -> bytes:
    """A document ``depth`` arrays deep, the innermost one empty."""
    return b"[" * depth + b"]" * depth


def nested_objects(depth: int, leaf: bytes = b"1") -> bytes:
    """``depth`` objects, each the only value of the one around it, the last holding ``leaf``."""
    return b'{"a":' * depth + leaf + b"}" * depth


def wrapped(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


def depth_of(value: Any) -> int:
    """Containers on the deepest path (the reference the bound is stated in)."""
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


AT_BOUND = [
    nested(bounds.MAX_DEPTH),
    nested_objects(bounds.MAX_DEPTH),
    nested_objects(bounds.MAX_DEPTH - 1, b"[]"),
    b'[{"a":' * (bounds.MAX_DEPTH // 2) + b"1" + b"}]" * (bounds.MAX_DEPTH // 2),
]


@pytest.mark.parametrize("text", AT_BOUND, ids=["arrays", "objects", "objects-array", "mixed"])
def test_a_document_at_the_bound_is_accepted_whatever_its_containers(text: bytes) -> None:
    assert bounds.loads(text) is not None


@pytest.mark.parametrize("depth", [bounds.MAX_DEPTH + 1, bounds.MAX_DEPTH + 2, 1_000, 100_000])
def test_an_array_past_the_bound_is_too_deep(depth: int) -> None:
    with pytest.raises(bounds.TooDeep):
        bounds.loads(nested(depth))


@pytest.mark.parametrize("leaf", [b"1", b"[]", b"{}"])
def test_objects_past_the_bound_are_too_deep_whatever_they_hold(leaf: bytes) -> None:
    with pytest.raises(bounds.TooDeep):
        bounds.loads(nested_objects(bounds.MAX_DEPTH + 1, leaf))


def test_a_wide_document_past_the_bound_is_caught_by_the_walk() -> None:
    """Enough containers that the counts cannot tell, and one path one level too deep:
    the parser passes it (201 arrays), the walk refuses it."""
    wide = [{"a": [1]} for _ in range(300)]
    text = json.dumps([wide, wrapped([], bounds.MAX_DEPTH)]).encode()
    assert not bounds.shallow_by_count(text)
    with pytest.raises(bounds.TooDeep):
        bounds.loads(text)


def test_brackets_in_strings_cannot_hide_depth() -> None:
    """A string of pairs lowers nothing: each ``{}`` there is also an opener."""
    cover = json.dumps("{}" * 500 + "[]" * 500)
    deep = "[" * (bounds.MAX_DEPTH + 1) + cover + "]" * (bounds.MAX_DEPTH + 1)
    with pytest.raises(bounds.TooDeep):
        bounds.loads(deep.encode())


def test_many_shallow_containers_are_walked_and_accepted() -> None:
    """Past the count, the walk decides: 10,000 siblings are 2 levels, not 10,001."""
    wide = json.dumps([{"a": [1]} for _ in range(10_000)]).encode()
    assert not bounds.shallow_by_count(wide)
    assert len(bounds.loads(wide)) == 10_000


def test_a_small_document_is_shallow_by_count() -> None:
    assert bounds.shallow_by_count(b'{"a":{"b":[1,{}]},"c":{}}')


@pytest.mark.parametrize(
    "text", [b"", b'{"a": NaN}', b"[1,]", b"{} {}", b'"\\ud800"', b'{"a":"\xff"}']
)
def test_what_is_not_one_json_document_is_invalid_json(text: bytes) -> None:
    with pytest.raises(bounds.InvalidJson):
        bounds.loads(text)


def test_big_integers_are_read_exactly() -> None:
    assert bounds.loads(b"[123456789012345678901234567890]") == [123456789012345678901234567890]


def test_a_later_duplicate_key_wins_as_in_the_apiserver() -> None:
    assert bounds.loads(b'{"cpu":"64","cpu":"1"}') == {"cpu": "1"}


async def test_an_update_at_the_bound_gets_kopfs_answer_from_a_deep_stack() -> None:
    """kopf diffs old against new on every UPDATE (a frame per level): at the deepest
    review accepted, from a stack 300 frames deeper than a server's, it still answers."""
    registry = kopf.OperatorRegistry()

    @kopf.on.validate("batch", "v1", "jobs", id="jobs", registry=registry)
    async def handler(**_: Any) -> None:
        pass

    insights = Insights()
    insights.webhook_resources.add(
        Resource(group="batch", version="v1", plural="jobs", namespaced=True, verbs=["update"])
    )
    old = {"metadata": {"uid": "u", "name": "j", "namespace": "ns"}, "spec": "OLD"}
    new = {**old, "spec": "NEW"}
    review = admission_review(
        new, operation="UPDATE", old=old, resource=("batch", "v1", "jobs"), kind="Job", user="u"
    )
    below = bounds.MAX_DEPTH - 3  # request, object, spec
    text = (
        json.dumps(review)
        .encode()
        .replace(b'"OLD"', nested(below))
        .replace(b'"NEW"', nested_objects(below - 1, b"[]"))
    )
    parsed = bounds.loads(text)
    assert depth_of(parsed) == bounds.MAX_DEPTH

    async def at_depth(frames: int) -> Any:
        if frames:
            return await at_depth(frames - 1)
        copy.deepcopy(parsed)
        repr(parsed)
        return await serve_admission_request(
            parsed,
            webhook="jobs",
            settings=kopf.OperatorSettings(),
            memories=EphemeralMemories(),
            memobase=kopf.Memo(),
            registry=registry,
            insights=insights,
            indices={},
        )

    response = await at_depth(300)
    assert response["response"]["allowed"] is True


json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(alphabet='{}[]"\\ab')
)
json_trees = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(json_trees, st.integers(1, 12))
def test_the_counts_never_call_a_too_deep_document_shallow(value: Any, limit: int) -> None:
    text = json.dumps(value, separators=(",", ":")).encode()
    if bounds.shallow_by_count(text, limit):
        assert depth_of(value) <= limit


@settings(max_examples=300, deadline=None)
@given(json_trees)
def test_loads_accepts_exactly_the_documents_within_the_bound(value: Any) -> None:
    deep = wrapped(value, bounds.MAX_DEPTH - 8)
    text = json.dumps(deep).encode()
    if depth_of(deep) <= bounds.MAX_DEPTH:
        assert bounds.loads(text) == deep
    else:
        with pytest.raises(bounds.TooDeep):
            bounds.loads(text)
