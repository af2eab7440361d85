"""webhook.serve.guard: a review that does not match its path's handler exactly is a 400,
never an allow (issue 12, finding 9: each case below was answered ``allowed: true``)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from devtools.builders import container, pod
from devtools.reviews import admission_review
from webhook.serve.guard import check_review
from webhook.serve.handlers import HANDLERS
from webhook.serve.kopf_glue import WebhookError

SPECS = {h.id: h for h in HANDLERS}


def review(operation: str = "CREATE", **extra: Any) -> dict[str, Any]:
    obj = pod(container(cpu="999"))
    old = copy.deepcopy(obj) if operation == "UPDATE" else None
    return admission_review(obj, operation=operation, old=old, **extra)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(r: dict[str, Any]) -> None:
        node = r["request"]
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        node[last] = value

    return change


MISMATCHES = {
    "operation create": _set("operation", "create"),
    "operation Create": _set("operation", "Create"),
    "operation 'CREATE '": _set("operation", "CREATE "),
    "operation empty": _set("operation", ""),
    "operation DELETE": _set("operation", "DELETE"),
    "resource apps/v1 deployments": _set(
        "resource", {"group": "apps", "version": "v1", "resource": "deployments"}
    ),
    "object.kind ConfigMap": _set("object.kind", "ConfigMap"),
    "object.kind pod": _set("object.kind", "pod"),
    "object.kind PodList": _set("object.kind", "PodList"),
    "object.apiVersion v2": _set("object.apiVersion", "v2"),
    "request.kind Deployment": _set("kind", {"group": "", "version": "v1", "kind": "Deployment"}),
    "subResource status": _set("subResource", "status"),
    "spec null": _set("object.spec", None),
    "spec a list": _set("object.spec", []),
    "object missing": _set("object", None),
}


@pytest.mark.parametrize("change", MISMATCHES.values(), ids=MISMATCHES.keys())
def test_review_that_does_not_match_the_pods_handler_is_a_400(
    change: Callable[[dict[str, Any]], None],
) -> None:
    r = review()
    check_review(r, "pods", SPECS)  # the unchanged review passes
    change(r)
    with pytest.raises(WebhookError):
        check_review(r, "pods", SPECS)


def test_update_on_the_resize_path_without_the_subresource_is_a_400() -> None:
    r = review("UPDATE", sub_resource="resize")
    check_review(r, "pods-resize", SPECS)
    del r["request"]["subResource"]
    with pytest.raises(WebhookError, match="subresource resize"):
        check_review(r, "pods-resize", SPECS)


def test_update_without_its_old_object_is_a_400() -> None:
    r = review("UPDATE")
    check_review(r, "pods", SPECS)
    r["request"]["oldObject"] = None
    with pytest.raises(WebhookError, match="oldObject"):
        check_review(r, "pods", SPECS)


def test_old_object_of_another_kind_is_a_400() -> None:
    r = review("UPDATE")
    r["request"]["oldObject"]["kind"] = "ConfigMap"
    with pytest.raises(WebhookError, match="oldObject"):
        check_review(r, "pods", SPECS)


@pytest.mark.parametrize("spec", HANDLERS, ids=lambda h: h.id)
def test_every_handler_accepts_what_the_apiserver_sends_it(spec: Any) -> None:
    api = f"{spec.group}/{spec.version}" if spec.group else spec.version
    obj = {"apiVersion": api, "kind": spec.object_kind, "metadata": {"name": "x"}, "spec": {}}
    if spec.id == "podtemplates":  # no spec: the pod is at template (the apiserver sends that)
        obj = {**obj, "template": obj.pop("spec")}
    for operation in sorted(spec.operations):
        r = admission_review(
            obj,
            operation=operation,
            old=obj if operation == "UPDATE" else None,
            resource=(spec.group, spec.version, spec.plural),
            sub_resource=spec.subresource,
        )
        check_review(r, spec.id, SPECS)
