"""webhook.serve.kopf_glue: the kopf internals it names still exist, and the empty-patch fix."""

from __future__ import annotations

import copy

import kopf
import pytest

from webhook.serve import kopf_glue
from webhook.serve.kopf_glue import Patch, skip_copy_of_empty_patches


@pytest.fixture(autouse=True)
def patched() -> None:
    skip_copy_of_empty_patches()
    skip_copy_of_empty_patches()  # idempotent: a second call does not wrap twice


def test_empty_patch_is_empty_without_copying_the_object(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_copy(_: object) -> object:
        raise AssertionError("the object was deep-copied for an empty patch")

    monkeypatch.setattr(copy, "deepcopy", no_copy)
    patch = Patch(body=kopf.Body({"metadata": {"name": "p"}, "spec": {"x": 1}}))
    assert patch.as_json_patch() == []


def test_a_real_patch_still_gives_its_operations() -> None:
    patch = Patch(body=kopf.Body({"metadata": {"name": "p"}, "spec": {"x": 1}}))
    patch["spec"] = {"x": 2}
    assert patch.as_json_patch() == [{"op": "replace", "path": "/spec/x", "value": 2}]


def test_every_kopf_private_name_the_glue_uses_still_exists() -> None:
    """kopf==1.45.* is pinned; a newer minor that moves these fails here, not in production."""
    for name in kopf_glue.__all__:
        assert getattr(kopf_glue, name) is not None, name
    for method in kopf_glue.WEBHOOK_SERVER_PRIVATES:
        assert callable(getattr(kopf.WebhookServer, method, None)), method
    assert callable(getattr(kopf_glue.Patch, "as_json_patch", None))
    assert hasattr(kopf_glue.ResourceMemories, "recall_memo")
    assert isinstance(kopf_glue.ResourceMemories()._items, dict)
