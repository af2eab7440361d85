"""The review-shape guard: a request kopf would answer with a 500 or, worse, a silent allow
is a 400 instead, before any handler runs.

A review must match its path's handler exactly (issue 12, finding 9): the operation is one
the handler checks, spelled as the apiserver spells it; resource, kind and subresource are
the handler's; the object is of the handler's kind with a ``spec`` object. Anything else
was answered ``allowed: true`` by a handler that found nothing to check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeGuard

from webhook.serve.handlers import HandlerSpec
from webhook.serve.kopf_glue import WebhookError

__all__ = ["check_review"]


# Kubernetes group, version and resource names; anything else cannot come from an apiserver.
_API_NAME = re.compile(r"[a-z0-9.-]{0,253}")


def _is_map(value: object) -> TypeGuard[Mapping[str, object]]:
    # `type(...) is dict` first: decoded JSON is always a dict, and the ABC check is slow.
    return type(value) is dict or isinstance(value, Mapping)


def _shown(text: str) -> str:
    """Client-sent text fit for an error: kopf puts a WebhookError's message in the HTTP
    reason phrase, where a control character makes aiohttp drop the connection unanswered."""
    text = text[:200]
    return text if text.isascii() and text.isprintable() else ascii(text)


def check_review(request: object, webhook: str | None, handlers: Mapping[str, HandlerSpec]) -> None:
    """Reject what kopf would answer with a 500 or, worse, a silent allow."""
    spec = handlers.get(webhook or "")
    if spec is None:
        # kopf runs no handler for an unknown path and ALLOWS: make it loud instead.
        path = _shown(f"/{webhook or ''}")
        raise WebhookError(f"unknown webhook path {path}; served: {sorted(handlers)}")
    body = request.get("request") if _is_map(request) else None
    if not _is_map(body):
        raise WebhookError("not an AdmissionReview: no request object")
    resource = body.get("resource")
    if not _is_map(resource) or not all(
        isinstance(name := resource.get(k), str) and _API_NAME.fullmatch(name)
        for k in ("group", "version", "resource")
    ):
        raise WebhookError("AdmissionReview request.resource must have group/version/resource")
    if not isinstance(body.get("uid"), str):
        raise WebhookError("AdmissionReview request.uid must be a string")
    operation, subresource = body.get("operation"), body.get("subResource")
    if not isinstance(operation, str) or not isinstance(subresource, str | None):
        # a list here was an internal error (unhashable) instead of a 400
        raise WebhookError("AdmissionReview request.operation/subResource must be strings")
    _check_target(spec, body, resource, operation, subresource or None)
    for key in ("object", "oldObject"):
        obj = body.get(key)
        if obj is None:
            if key == "object" or operation == "UPDATE":  # the apiserver always sends both
                raise WebhookError(f"AdmissionReview request.{key} is missing for {operation}")
            continue
        if not _is_map(obj):
            raise WebhookError(f"AdmissionReview request.{key} must be an object")
        # kopf keys its per-object memo by metadata.uid before any handler runs: a null or
        # non-object metadata, or an unhashable uid, would be a 500 (found by hypothesis).
        meta = obj.get("metadata", {})
        if not _is_map(meta):
            raise WebhookError(f"AdmissionReview request.{key}.metadata must be an object")
        if not isinstance(meta.get("uid"), str | None):
            raise WebhookError(f"AdmissionReview request.{key}.metadata.uid must be a string")
        _check_object(spec, key, obj)


def _api_version(spec: HandlerSpec) -> str:
    return f"{spec.group}/{spec.version}" if spec.group else spec.version


def _check_target(
    spec: HandlerSpec,
    body: Mapping[str, object],
    resource: Mapping[str, object],
    operation: str,
    subresource: str | None,
) -> None:
    path = spec.path
    if operation not in spec.operations:
        raise WebhookError(
            f"{path} checks {'/'.join(sorted(spec.operations))}, "
            f"not operation {_shown(repr(operation))}"
        )
    wanted = (spec.group, spec.version, spec.plural)
    got = (resource["group"], resource["version"], resource["resource"])
    if got != wanted:
        shown = _shown("/".join(map(str, got)))
        raise WebhookError(f"{path} checks resource {'/'.join(wanted)}, not {shown}")
    if subresource != spec.subresource:
        raise WebhookError(
            f"{path} checks subresource {spec.subresource or '(none)'}, "
            f"not {_shown(repr(subresource))}"
        )
    kind = body.get("kind")
    if not _is_map(kind) or (
        kind.get("group"),
        kind.get("version"),
        kind.get("kind"),
    ) != (spec.group, spec.version, spec.object_kind):
        raise WebhookError(f"{path} checks kind {spec.object_kind}: request.kind must say so")


def _check_object(spec: HandlerSpec, key: str, obj: Mapping[str, object]) -> None:
    if obj.get("kind") != spec.object_kind or obj.get("apiVersion") != _api_version(spec):
        shown = _shown(f"{obj.get('apiVersion')!r} {obj.get('kind')!r}")
        raise WebhookError(
            f"{spec.path} checks {_api_version(spec)} {spec.object_kind}: request.{key} is {shown}"
        )
    if spec.object_kind == "PodTemplate" and spec.group == "":
        # its pod is at `template` (optional in the API), and it has no spec at all
        if not _is_map(obj.get("template", {})):
            raise WebhookError(f"AdmissionReview request.{key}.template must be an object")
    elif not _is_map(obj.get("spec")):  # `spec: null` read as an empty pod
        raise WebhookError(f"AdmissionReview request.{key}.spec must be an object")
