"""What an audit prints and writes: ``check``'s table and JSON (plus what was read), YAML,
and policy reports of one of two APIs (a :class:`ReportApi`): ``wgpolicyk8s.io/v1alpha2``
PolicyReports (:data:`WGPOLICY`, the default) or ``openreports.io/v1alpha1`` Reports
(:data:`OPENREPORTS`). Their results have the same fields (``source``, ``policy``,
``rule``, ``result``, ``scored``, ``message``, ``resources``, ``timestamp``,
``properties``); an OpenReports report also names its ``source`` at the top.

One report named ``nodelimits`` per namespace (a cluster-scoped ClusterPolicyReport or
ClusterReport for cluster-scoped objects), ``policy: nodelimits``; a result per violation
(``rule`` the resource, ``fail``), per warning (``rule: warning``, ``warn``), per object
that fits (``rule: fit``, ``pass``) and per object that could not be judged
(``rule: error``, ``error``). Objects without a resource group are not nodelimits' to
judge and are left out (the CLI's summary counts them as skipped).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import yaml

from webhook.audit.scan import AuditError, AuditReport
from webhook.check import Result
from webhook.output import render_check_json, render_check_table

__all__ = [
    "MANAGED_BY",
    "OPENREPORTS",
    "POLICY",
    "REPORT_APIS",
    "REPORT_NAME",
    "WGPOLICY",
    "ReportApi",
    "policy_reports",
    "render",
]

POLICY = "nodelimits"
REPORT_NAME = "nodelimits"
MANAGED_BY = {"app.kubernetes.io/managed-by": "nodelimits"}


@dataclass(frozen=True, slots=True)
class ReportApi:
    """The API the reports are written in: its group and version, the namespaced kind and
    the cluster-scoped one, and where they are served."""

    group: str
    version: str
    kind: str
    plural: str
    cluster_kind: str
    cluster_plural: str
    report_source: bool = False
    """The report itself names its source (``openreports.io`` has a top-level ``source``;
    ``wgpolicyk8s.io/v1alpha2`` only the results')."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    def kind_of(self, namespace: str) -> str:
        """The kind of the report of ``namespace`` ("": the cluster-scoped report)."""
        return self.kind if namespace else self.cluster_kind

    def path(self, namespace: str | None, name: str | None = None) -> str:
        """The collection of ``namespace``'s reports ("": the cluster-scoped reports, None:
        the namespaced reports of every namespace), or report ``name`` in it."""
        base = f"/apis/{self.api_version}"
        if namespace:
            base += f"/namespaces/{quote(namespace, safe='')}/{self.plural}"
        elif namespace is None:
            base += f"/{self.plural}"
        else:
            base += f"/{self.cluster_plural}"
        return f"{base}/{quote(name, safe='')}" if name else base


WGPOLICY = ReportApi(
    "wgpolicyk8s.io", "v1alpha2", "PolicyReport", "policyreports",
    "ClusterPolicyReport", "clusterpolicyreports",
)  # fmt: skip
OPENREPORTS = ReportApi(
    "openreports.io", "v1alpha1", "Report", "reports", "ClusterReport", "clusterreports",
    report_source=True,
)  # fmt: skip
REPORT_APIS = {api.group: api for api in (WGPOLICY, OPENREPORTS)}
"""The report APIs by group, as ``--report-api`` and the chart's ``audit.reportApi`` name them."""


def _json_payload(report: AuditReport) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(render_check_json(report.as_check_report()))
    payload["errors"] = [str(e) for e in report.errors]
    payload["audit"] = {
        "kinds": report.kinds,
        "scanned": report.scanned,
        "durationSeconds": round(report.duration, 3),
    }
    return payload


def render(
    report: AuditReport, output: str, *, api: ReportApi = WGPOLICY, now: float | None = None
) -> str:
    """``table`` | ``json`` | ``yaml`` | ``policyreport`` (a v1 List of ``api``'s reports,
    ``kubectl apply``-able)."""
    if output == "table":
        return render_check_table(report.as_check_report())
    if output == "json":
        return json.dumps(_json_payload(report), indent=2, ensure_ascii=False) + "\n"
    if output == "yaml":
        return yaml.safe_dump(_json_payload(report), sort_keys=False, allow_unicode=True)
    if output == "policyreport":
        items = policy_reports(report, api, now=report.started if now is None else now)
        document = {"apiVersion": "v1", "kind": "List", "items": items}
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    raise ValueError(f"unknown output {output!r}")


def _object_ref(result: Result) -> dict[str, str]:
    meta = result.document.obj.get("metadata") or {}
    ref = {"apiVersion": str(result.decision.api_version), "kind": result.decision.kind}
    if result.decision.namespace:
        ref["namespace"] = result.decision.namespace
    ref["name"] = result.decision.name
    if meta.get("uid"):
        ref["uid"] = str(meta["uid"])
    return ref


def _timestamp(now: float) -> dict[str, int]:
    return {"seconds": int(now), "nanos": int((now - int(now)) * 1e9)}


def _entry(
    rule: str,
    result: str,
    message: str,
    ref: Mapping[str, str],
    now: float,
    properties: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "source": POLICY,
        "policy": POLICY,
        "rule": rule,
        "result": result,
        "scored": True,
        "message": message,
        "resources": [dict(ref)],
        "timestamp": _timestamp(now),
    }
    if properties:
        entry["properties"] = {k: v for k, v in properties.items() if v}
    return entry


def results_of(result: Result, now: float) -> list[dict[str, Any]]:
    """The PolicyReport results of one judged object (none when it was skipped)."""
    d = result.decision
    if d.skipped is not None:
        return []
    ref = _object_ref(result)
    common = {
        "resourceGroup": d.group or "",
        "acceleratorType": d.accelerator.value if d.accelerator else "",
    }
    out = [
        _entry(
            v.resource,
            "fail",
            v.message,
            ref,
            now,
            {**common, "requested": v.requested, "allowed": v.allowed, "unit": v.unit},
        )
        for v in d.violations
    ]
    out += [_entry("warning", "warn", w, ref, now, common) for w in d.warnings]
    if d.allowed:
        where = f'resource group "{d.group}"' if d.group else "its resource group"
        out.append(_entry("fit", "pass", f"fits one node of {where}", ref, now, common))
    return out


def error_result(error: AuditError, now: float) -> dict[str, Any]:
    ref = {"apiVersion": error.api_version, "kind": error.kind}
    if error.namespace:
        ref["namespace"] = error.namespace
    if error.name:
        ref["name"] = error.name
    if error.uid:
        ref["uid"] = error.uid
    return _entry("error", "error", error.message, ref, now)


def _summary(results: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    summary = {"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0}
    for r in results:
        summary[r["result"]] += 1
    return summary


def report_object(
    namespace: str, results: list[dict[str, Any]], api: ReportApi = WGPOLICY
) -> dict[str, Any]:
    """One report of ``namespace`` (``""``: the cluster-scoped report) in ``api``."""
    metadata: dict[str, Any] = {"name": REPORT_NAME, "labels": dict(MANAGED_BY)}
    if namespace:
        metadata["namespace"] = namespace
    obj: dict[str, Any] = {
        "apiVersion": api.api_version,
        "kind": api.kind_of(namespace),
        "metadata": metadata,
    }
    if api.report_source:
        obj["source"] = POLICY
    obj["summary"] = _summary(results)
    obj["results"] = results
    return obj


def grouped_results(report: AuditReport, now: float) -> dict[str, list[dict[str, Any]]]:
    """Results by namespace ("" for cluster-scoped objects and whole-kind errors)."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for result in report.results:
        entries = results_of(result, now)
        if entries:
            by_namespace.setdefault(result.decision.namespace, []).extend(entries)
    for error in report.errors:
        by_namespace.setdefault(error.namespace if error.name else "", []).append(
            error_result(error, now)
        )
    return by_namespace


def policy_reports(
    report: AuditReport, api: ReportApi = WGPOLICY, *, now: float
) -> list[dict[str, Any]]:
    """The reports of ``report`` in ``api``, one per namespace with results."""
    grouped = grouped_results(report, now)
    return [report_object(ns, grouped[ns], api) for ns in sorted(grouped)]
