"""What ``nodelimits check`` and ``nodelimits limits`` print: tables for people, JSON/YAML
for machines. Renderers return text; the CLI echoes it (``click.echo``).

The check JSON shape and the limits YAML/JSON (the limits-file format) are contracts
(DESIGN.md): CI pipelines parse the first, ``--limits-file`` reads the second.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml

from webhook.check import CheckReport, Result
from webhook.core import policy
from webhook.core.limits import NodeLimits

__all__ = ["limits_file_entry", "render_check_json", "render_check_table", "render_limits"]

_COLUMNS = ("GROUP", "TYPE", "CPU", "MEMORY", "CARDS", "NV", "DCU", "MLU", "NODES", "MAXTIME")


# --- nodelimits check ----------------------------------------------------------------------


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


def render_check_json(report: CheckReport) -> str:
    payload = {
        "results": [_result_json(r) for r in report.results],
        "errors": report.errors,
        "summary": report.summary(),
    }
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def _verdict(decision: policy.Decision) -> str:
    if decision.skipped is not None:
        return "SKIPPED"
    return "ALLOWED" if decision.allowed else "REJECTED"


def render_check_table(report: CheckReport) -> str:
    out: list[str] = []
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
        out.append("   ".join([*cells, row[5]]).rstrip() + "\n")
    for r in report.results:
        for warning in r.decision.warnings:
            out.append(f"Warning: {r.decision.kind} {r.decision.display_name}: {warning}\n")
    s = report.summary()
    out.append(
        f"\n{s['objects']} objects: {s['allowed']} allowed, {s['rejected']} rejected, "
        f"{s['skipped']} skipped" + (f", {s['errors']} errors" if s["errors"] else "") + "\n"
    )
    return "".join(out)


# --- nodelimits limits ---------------------------------------------------------------------


def limits_file_entry(limits: NodeLimits) -> dict[str, object]:
    """One limits-file entry: the Open API's ``data`` fields plus ``acceleratorType``."""
    data = limits.model_dump(mode="json", exclude={"id", "userName"})
    head = {
        "resourceGroup": data.pop("resourceGroup"),
        "acceleratorType": data.pop("acceleratorType"),
    }
    return head | data


def _table_row(e: NodeLimits, memory_unit: str) -> tuple[str, ...]:
    accelerator = e.acceleratorType
    return (
        e.resourceGroup,
        accelerator.value if accelerator else "-",
        str(e.cpuNumber),
        f"{e.memorySize}{memory_unit}",
        str(e.card_cap(accelerator) if accelerator else e.gpuNumber),
        str(e.nvLimits),
        str(e.dcuLimits),
        str(e.mluLimits),
        "-" if e.nodeNumber is None else str(e.nodeNumber),
        e.maxTime,
    )


def render_limits(limits: Sequence[NodeLimits], output: str, *, memory_unit: str = "Mi") -> str:
    """``table`` for people; ``yaml``/``json`` in the limits-file format."""
    if output in ("yaml", "json"):
        document = {"resourceGroups": [limits_file_entry(e) for e in limits]}
        if output == "json":
            return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    rows = [_COLUMNS, *(_table_row(e, memory_unit) for e in limits)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "".join(line.rstrip() + "\n" for line in lines)
