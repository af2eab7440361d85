"""Writing an audit into the cluster as reports of one :class:`~webhook.audit.reports.ReportApi`
(``wgpolicyk8s.io/v1alpha2`` PolicyReports, or ``openreports.io/v1alpha1`` Reports).

One report named ``nodelimits`` per namespace with results (a cluster-scoped report for
cluster-scoped objects and whole-kind errors): created, or replaced with the
``resourceVersion`` read (a 409 is left for the next run); a report whose content did not
change (timestamps aside) is not written again; reports of namespaces with no results left
are deleted. Only reports labelled ``app.kubernetes.io/managed-by: nodelimits`` are touched.

An ``error`` never clears a finding: when an object could not be judged this time (the
platform gave no limits, a claim could not be read), or its whole kind could not be listed,
or discovery failed, the ``fail`` results the previous reports held about it are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.audit.cluster import ApiError
from webhook.audit.lease import Requester
from webhook.audit.reports import (
    MANAGED_BY,
    REPORT_NAME,
    ReportApi,
    grouped_results,
    report_object,
)
from webhook.audit.scan import AuditError, AuditReport

__all__ = ["WriteSummary", "carry_over", "write_reports"]

log = logging.getLogger(__name__)

_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())


@dataclass
class WriteSummary:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.replaced) + len(self.deleted)


def _key(resource: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(resource.get("apiVersion") or ""),
        str(resource.get("kind") or ""),
        str(resource.get("namespace") or ""),
        str(resource.get("name") or ""),
    )


def carry_over(
    previous: Mapping[str, list[dict[str, Any]]],
    errors: Iterable[AuditError],
) -> dict[str, list[dict[str, Any]]]:
    """The earlier ``fail`` results (by namespace) that this audit's errors keep alive."""
    objects: set[tuple[str, str, str, str]] = set()
    kinds: set[tuple[str, str]] = set()
    everything = False
    for e in errors:
        if not e.kind:
            everything = True  # discovery failed: nothing was judged
        elif not e.name:
            kinds.add((e.api_version, e.kind))
        else:
            objects.add((e.api_version, e.kind, e.namespace, e.name))
    kept: dict[str, list[dict[str, Any]]] = {}
    for namespace, results in previous.items():
        for r in results:
            if r.get("result") != "fail" or not r.get("resources"):
                continue
            key = _key(r["resources"][0])
            if everything or key in objects or key[:2] in kinds:
                kept.setdefault(namespace, []).append(r)
    return kept


def _content(results: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a report says, without timestamps: equal content is not written again."""
    return sorted(
        (
            r.get("rule"),
            r.get("result"),
            r.get("message"),
            tuple(sorted((*_key(x), str(x.get("uid") or "")) for x in r.get("resources", []))),
            tuple(sorted((r.get("properties") or {}).items())),
        )
        for r in results
    )


def existing_reports(
    api: Requester, report_api: ReportApi, namespace: str | None = None
) -> dict[str, dict[str, Any]]:
    """The reports nodelimits wrote, by namespace ("" for the cluster-scoped report); only
    ``namespace``'s when the audit is narrowed to one."""
    found: dict[str, dict[str, Any]] = {}
    query = {"labelSelector": _SELECTOR}
    listed = report_api.path(namespace or None)
    for obj in (api.request("GET", listed, query) or {}).get("items", []):
        if obj["metadata"].get("name") == REPORT_NAME:
            found[str(obj["metadata"].get("namespace") or "")] = obj
    if namespace:
        return found
    try:
        cluster = api.request("GET", report_api.path(""), query) or {}
    except ApiError as exc:
        if exc.status != 404:  # the cluster-scoped report's CRD is optional
            raise
        cluster = {}
    for obj in cluster.get("items", []):
        if obj["metadata"].get("name") == REPORT_NAME:
            found[""] = obj
    return found


def write_reports(
    api: Requester,
    report: AuditReport,
    *,
    report_api: ReportApi,
    now: float,
    field_manager: str,
    namespace: str | None = None,
) -> WriteSummary:
    """Make the cluster's nodelimits reports (of ``report_api``) say what ``report`` found
    (only ``namespace``'s report when the audit was narrowed to it)."""
    summary = WriteSummary()
    current = existing_reports(api, report_api, namespace)
    desired = grouped_results(report, now)
    if namespace:  # narrowed: whole-kind errors belong to the one namespace too
        desired = {namespace: [r for rs in desired.values() for r in rs]} if desired else {}
    previous = {ns: list(obj.get("results") or []) for ns, obj in current.items()}
    for namespace, kept in carry_over(previous, report.errors).items():
        desired.setdefault(namespace, []).extend(kept)
    query = {"fieldManager": field_manager}
    for namespace in sorted(desired):
        body = report_object(namespace, desired[namespace], report_api)
        where = namespace or "(cluster)"
        old = current.get(namespace)
        try:
            if old is None:
                api.request("POST", report_api.path(namespace), query, body=body)
                summary.created.append(where)
            elif _content(old.get("results") or []) == _content(desired[namespace]):
                summary.unchanged.append(where)
            else:
                body["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
                api.request("PUT", report_api.path(namespace, REPORT_NAME), query, body=body)
                summary.replaced.append(where)
        except ApiError as exc:
            log.warning("audit: %s %s not written: %s", body["kind"], where, exc)
            summary.failed.append(where)
    for namespace in sorted(set(current) - set(desired)):
        where = namespace or "(cluster)"
        try:
            api.request("DELETE", report_api.path(namespace, REPORT_NAME))
            summary.deleted.append(where)
        except ApiError as exc:
            if exc.status != 404:
                kind = report_api.kind_of(namespace)
                log.warning("audit: %s %s not deleted: %s", kind, where, exc)
                summary.failed.append(where)
    return summary
