"""kopf keeps a memo per object UID for every non-CREATE admission request and only a
watch ever frees it (reference/kopf.md §6.3); an admission-only process never watches.
:class:`EphemeralMemories` must keep nothing, through kopf's own request path."""

from __future__ import annotations

import uuid
from typing import Any

import kopf
import pytest
from kopf import Memo, OperatorRegistry, Resource

from devtools.reviews import admission_review
from webhook.serve.kopf_glue import (
    EphemeralMemories,
    Insights,
    ResourceMemories,
    serve_admission_request,
)

UPDATES = 5000


async def _updates(memories: ResourceMemories, count: int = UPDATES) -> None:
    registry = OperatorRegistry()
    seen: list[Any] = []

    @kopf.on.validate("batch", "v1", "jobs", id="jobs", registry=registry)
    async def handler(memo: Any, **_: Any) -> None:
        seen.append(memo)

    insights = Insights()
    insights.webhook_resources.add(
        Resource(group="batch", version="v1", plural="jobs", namespaced=True, verbs=["create"])
    )
    settings = kopf.OperatorSettings()
    for i in range(count):
        obj = {"metadata": {"uid": str(uuid.uuid4()), "name": f"j{i}", "namespace": "ns"}}
        review = admission_review(
            obj,
            operation="UPDATE",
            old=obj,
            resource=("batch", "v1", "jobs"),
            kind="Job",
            user="u",
            identify=False,
        )
        response = await serve_admission_request(
            review,
            webhook="jobs",
            settings=settings,
            memories=memories,
            memobase=Memo(),
            registry=registry,
            insights=insights,
            indices={},
        )
        assert response["response"]["allowed"] is True
    assert len(seen) == count  # the handler ran, with a memo, every time


async def test_kopf_memories_retain_one_memo_per_updated_uid() -> None:
    """The leak EphemeralMemories exists for (if kopf fixes it, this test says so)."""
    memories = ResourceMemories()
    await _updates(memories, 500)
    assert len(memories._items) == 500


async def test_ephemeral_memories_retain_nothing_after_5000_updates() -> None:
    memories = EphemeralMemories()
    await _updates(memories)
    assert memories.retained() == 0


@pytest.mark.parametrize("ephemeral", [True, False])
async def test_ephemeral_memories_never_store_even_when_asked(ephemeral: bool) -> None:
    memories = EphemeralMemories()
    body = {"metadata": {"uid": "u-1"}}
    first = await memories.recall_memo(body, memobase=Memo(), ephemeral=ephemeral)
    second = await memories.recall_memo(body, memobase=Memo(), ephemeral=ephemeral)
    assert first is not second  # a fresh memo each time: nothing kept between reviews
    assert memories.retained() == 0
