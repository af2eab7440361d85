"""webhook.serve.kopf_glue: the kopf internals it names still exist, and the empty-patch fix."""

from __future__ import annotations

import copy
import functools

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


def _review(group: str, version: str, plural: str) -> dict[str, object]:
    return {"request": {"resource": {"group": group, "version": version, "resource": plural}}}


async def test_resources_discovery_did_not_find_are_served_once_it_is_done() -> None:
    """As kopf's resource observer does at start: revise from what discovery found, then set
    ready_resources. A CRD installed later (not found) is still routed to its handler."""
    registry = kopf.OperatorRegistry()

    async def handler(**_: object) -> None:
        pass

    for group, version, plural in [("", "v1", "pods"), ("kubeflow.org", "v1", "pytorchjobs")]:
        kopf.on.validate(group, version, plural, id=plural, registry=registry)(handler)
    insights = kopf_glue.serving_insights(
        [("", "v1", "pods", "Pod", True), ("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob", True)]
    )
    discovered = kopf_glue.Resource(
        "", "v1", "pods", kind="Pod", namespaced=True, subresources=frozenset({"resize"})
    )
    with pytest.raises(kopf_glue.UnknownResourceError):  # nothing before discovery
        kopf_glue.find_resource(request=_review("", "v1", "pods"), insights=insights)
    kopf_glue.revise_resources(
        resources=[discovered], insights=insights, registry=registry, group=None
    )
    insights.ready_resources.set()

    found = kopf_glue.find_resource(request=_review("", "v1", "pods"), insights=insights)
    assert found is discovered  # discovery's own details kept
    late = kopf_glue.find_resource(
        request=_review("kubeflow.org", "v1", "pytorchjobs"),
        insights=insights,
    )
    assert (late.group, late.version, late.plural, late.kind) == (
        "kubeflow.org",
        "v1",
        "pytorchjobs",
        "PyTorchJob",
    )
    with pytest.raises(kopf_glue.UnknownResourceError):  # not registered: still a 404
        kopf_glue.find_resource(request=_review("ray.io", "v1", "rayclusters"), insights=insights)


async def _registries_seen(webhook: str) -> list[int]:
    """The number of webhook handlers in the registry kopf is handed, per call."""
    registry = kopf.OperatorRegistry()
    for plural in ("pods", "jobs", "pytorchjobs"):
        kopf.on.validate("", "v1", plural, id=plural, registry=registry)(_noop)
    seen: list[int] = []

    async def serve(request: object, *, registry: kopf.OperatorRegistry, **_: object) -> object:
        seen.append(len(registry._webhooks.get_all_handlers()))
        return request

    routed = kopf_glue.routed_by_webhook(functools.partial(serve, registry=registry))
    assert await routed({"r": 1}, webhook=webhook) == {"r": 1}
    return seen


async def _noop(**_: object) -> None:
    pass


async def test_kopf_is_handed_only_the_handlers_of_the_path() -> None:
    assert await _registries_seen("jobs") == [1]


async def test_a_path_without_a_handler_keeps_the_full_registry() -> None:
    assert await _registries_seen("nothing-here") == [3]


def test_routing_refuses_a_kopf_that_no_longer_binds_its_registry() -> None:
    async def bare(request: object, **_: object) -> object:
        return request

    with pytest.raises(TypeError, match="partial with a registry"):
        kopf_glue.routed_by_webhook(bare)


def test_a_body_view_is_unwrapped_to_the_dict_it_reads() -> None:
    raw = {"metadata": {"name": "p"}, "spec": {"x": 1}}
    assert kopf_glue.unwrapped(kopf.Body(raw)) is raw


@pytest.mark.parametrize("value", [None, {"a": 1}, "text"])
def test_anything_but_a_view_is_left_as_it_is(value: object) -> None:
    assert kopf_glue.unwrapped(value) is value


def test_a_view_of_a_part_is_left_a_view() -> None:
    spec = kopf.Body({"spec": {"x": 1}}).spec
    assert kopf_glue.unwrapped(spec) is spec
