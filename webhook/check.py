"""``nodelimits check``: manifests in, one verdict per object out (table or JSON).

The JSON shape is a contract (DESIGN.md): CI pipelines parse it. Errors in individual
documents do not stop the run; they are reported and make the exit code 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from webhook import policy
from webhook.config import PolicySettings
from webhook.manifests import Document, ManifestError, read_documents
from webhook.resources import InvalidQuantity
from webhook.review import LimitsProvider, review
from webhook.workloads import InvalidObject

__all__ = ["CheckReport", "render_json", "render_table", "run_check"]


@dataclass(frozen=True, slots=True)
class Result:
    document: Document
    decision: policy.Decision


@dataclass(slots=True)
class CheckReport:
    results: list[Result] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        return 1 if any(not r.decision.allowed for r in self.results) else 0

    def summary(self) -> dict[str, int]:
        checked = [r for r in self.results if r.decision.skipped is None]
        rejected = sum(1 for r in checked if not r.decision.allowed)
        return {
            "objects": len(self.results),
            "checked": len(checked),
            "allowed": len(checked) - rejected,
            "rejected": rejected,
            "skipped": len(self.results) - len(checked),
            "errors": len(self.errors),
        }


def _subject(doc: Document) -> str:
    meta = doc.obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    kind = doc.obj.get("kind")
    if isinstance(kind, str) and isinstance(name, str):
        namespace = meta.get("namespace") if isinstance(meta, dict) else None
        shown = f"{namespace}/{name}" if isinstance(namespace, str) and namespace else name
        return f" ({kind} {shown})"
    return ""


async def run_check(
    sources: Iterable[str], settings: PolicySettings, provider: LimitsProvider
) -> CheckReport:
    report = CheckReport()
    for source in sources:
        for item in read_documents(source):
            if isinstance(item, ManifestError):
                report.errors.append(str(item))
                continue
            try:
                reviewed = await review(item.obj, settings, provider)
            except (InvalidObject, InvalidQuantity) as exc:
                report.errors.append(f"{item.where}{_subject(item)}: {exc}")
                continue
            report.results.append(Result(item, reviewed.decision))
    return report


def _result_json(result: Result) -> dict[str, Any]:
    d = result.decision
    return {
        "apiVersion": d.api_version,
        "kind": d.kind,
        "namespace": d.namespace,
        "name": d.name,
        "resourceGroup": d.group,
        "acceleratorType": d.accelerator.value if d.accelerator else None,
        "allowed": d.allowed,
        "skipped": d.skipped is not None,
        "violations": [
            {
                "resource": v.resource,
                "requested": v.requested,
                "allowed": v.allowed,
                "unit": v.unit,
                "message": v.message,
            }
            for v in d.violations
        ],
        "warnings": list(d.warnings),
        "message": d.message,
        "source": result.document.where,
    }


def render_json(report: CheckReport, out: TextIO) -> None:
    payload = {
        "results": [_result_json(r) for r in report.results],
        "errors": report.errors,
        "summary": report.summary(),
    }
    json.dump(payload, out, indent=2, ensure_ascii=False)
    out.write("\n")


def _verdict(decision: policy.Decision) -> str:
    if decision.skipped is not None:
        return "SKIPPED"
    return "ALLOWED" if decision.allowed else "REJECTED"


def render_table(report: CheckReport, out: TextIO) -> None:
    rows = [("RESULT", "KIND", "NAME", "GROUP", "TYPE", "DETAILS")]
    for r in report.results:
        d = r.decision
        if d.skipped is not None:
            details = d.skipped
        elif d.violations:
            details = "; ".join(v.message for v in d.violations)
        else:
            details = "fits"
        rows.append(
            (
                _verdict(d),
                d.kind,
                d.display_name,
                d.group or "-",
                d.accelerator.value if d.accelerator else "-",
                details,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:5])]
        out.write("   ".join([*cells, row[5]]).rstrip() + "\n")
    for r in report.results:
        for warning in r.decision.warnings:
            out.write(f"Warning: {r.decision.kind} {r.decision.display_name}: {warning}\n")
    s = report.summary()
    out.write(
        f"\n{s['objects']} objects: {s['allowed']} allowed, {s['rejected']} rejected, "
        f"{s['skipped']} skipped" + (f", {s['errors']} errors" if s["errors"] else "") + "\n"
    )
