"""webhook.server.skip_copy_of_empty_patches: kopf's JSON patch without the wasted copy."""

from __future__ import annotations

import copy

import kopf
import pytest
from kopf._cogs.structs import patches

from webhook.server import skip_copy_of_empty_patches


@pytest.fixture(autouse=True)
def patched() -> None:
    skip_copy_of_empty_patches()
    skip_copy_of_empty_patches()  # idempotent: a second call does not wrap twice


def test_empty_patch_is_empty_without_copying_the_object(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_copy(_: object) -> object:
        raise AssertionError("the object was deep-copied for an empty patch")

    monkeypatch.setattr(copy, "deepcopy", no_copy)
    patch = patches.Patch(body=kopf.Body({"metadata": {"name": "p"}, "spec": {"x": 1}}))
    assert patch.as_json_patch() == []


def test_a_real_patch_still_gives_its_operations() -> None:
    patch = patches.Patch(body=kopf.Body({"metadata": {"name": "p"}, "spec": {"x": 1}}))
    patch["spec"] = {"x": 2}
    assert patch.as_json_patch() == [{"op": "replace", "path": "/spec/x", "value": 2}]
