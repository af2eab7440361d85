"""The one AdmissionReview builder: what the kube-apiserver sends a validating webhook
(``admission.k8s.io/v1``), and what a webhook answers.

Tests, the load generator, the fault matrix and the benchmarks all build their reviews
here, so a field the apiserver adds is added once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["API_VERSION", "admission_response", "admission_review", "resource_of"]

API_VERSION = "admission.k8s.io/v1"

_PLURALS = {"ReplicationController": "replicationcontrollers", "PodTemplate": "podtemplates"}


def resource_of(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(group, version, plural) of a well-formed object, as the apiserver names it."""
    group, _, version = str(obj["apiVersion"]).rpartition("/")
    kind = str(obj["kind"])
    return group, version, _PLURALS.get(kind, kind.lower() + "s")


def admission_review(
    obj: Any,
    *,
    operation: str = "CREATE",
    old: Any = None,
    uid: str | None = None,
    resource: tuple[str, str, str] | None = None,
    kind: str | None = None,
    sub_resource: str | None = None,
    user: Mapping[str, Any] | str = "devtools",
    dry_run: bool = False,
    identify: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """An AdmissionReview request for ``obj``.

    ``resource`` and ``kind`` default to the object's own; pass them for objects that are
    not well-formed (hostile input). ``identify`` adds ``name``/``namespace`` from the
    object's metadata, as the apiserver does. ``extra`` fields are added to the request
    as given (``options``, ``requestKind``, ...).
    """
    group, version, plural = resource or resource_of(obj)
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": kind or obj["kind"]},
        "resource": {"group": group, "version": version, "resource": plural},
        "operation": operation,
        "userInfo": {"username": user} if isinstance(user, str) else dict(user),
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
    }
    if identify:
        meta = obj.get("metadata", {})
        request["namespace"] = meta.get("namespace")
        request["name"] = meta.get("name")
    if sub_resource:
        request["subResource"] = sub_resource
    request.update(extra)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": request}


def admission_response(
    uid: str, *, allowed: bool = True, message: str | None = None, code: int = 403
) -> dict[str, Any]:
    """A webhook's answer to the review ``uid`` (a denial carries ``message`` and ``code``)."""
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": code, "message": message or ""}
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
