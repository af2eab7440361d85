"""The review-shape guard: a request kopf would answer with a 500 or, worse, a silent allow
is a 400 instead, before any handler runs."""

from __future__ import annotations

import re
from collections.abc import Mapping

from webhook.serve.kopf_glue import WebhookError

__all__ = ["check_review"]


# Kubernetes group, version and resource names; anything else cannot come from an apiserver.
_API_NAME = re.compile(r"[a-z0-9.-]{0,253}")


def _shown(text: str) -> str:
    """Client-sent text fit for an error: kopf puts a WebhookError's message in the HTTP
    reason phrase, where a control character makes aiohttp drop the connection unanswered."""
    text = text[:200]
    return text if text.isascii() and text.isprintable() else ascii(text)


def check_review(request: object, webhook: str | None, known: frozenset[str]) -> None:
    """Reject what kopf would answer with a 500 or, worse, a silent allow."""
    if webhook not in known:
        # kopf runs no handler for an unknown path and ALLOWS: make it loud instead.
        path = _shown(f"/{webhook or ''}")
        raise WebhookError(f"unknown webhook path {path}; served: {sorted(known)}")
    if not isinstance(request, Mapping) or not isinstance(request.get("request"), Mapping):
        raise WebhookError("not an AdmissionReview: no request object")
    body = request["request"]
    resource = body.get("resource")
    if not isinstance(resource, Mapping) or not all(
        isinstance(resource.get(k), str) and _API_NAME.fullmatch(resource[k])
        for k in ("group", "version", "resource")
    ):
        raise WebhookError("AdmissionReview request.resource must have group/version/resource")
    if not isinstance(body.get("uid"), str):
        raise WebhookError("AdmissionReview request.uid must be a string")
    if not isinstance(body.get("operation"), str) or not isinstance(
        body.get("subResource"), str | None
    ):  # a list here was an internal error (unhashable) instead of a 400
        raise WebhookError("AdmissionReview request.operation/subResource must be strings")
    for key in ("object", "oldObject"):
        obj = body.get(key)
        if obj is None:
            continue
        if not isinstance(obj, Mapping):
            raise WebhookError(f"AdmissionReview request.{key} must be an object")
        # kopf keys its per-object memo by metadata.uid before any handler runs: a null or
        # non-object metadata, or an unhashable uid, would be a 500 (found by hypothesis).
        meta = obj.get("metadata", {})
        if not isinstance(meta, Mapping):
            raise WebhookError(f"AdmissionReview request.{key}.metadata must be an object")
        if not isinstance(meta.get("uid"), str | None):
            raise WebhookError(f"AdmissionReview request.{key}.metadata.uid must be a string")
