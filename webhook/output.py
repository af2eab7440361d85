"""What ``nodelimits check`` and ``nodelimits limits`` print: tables for people, JSON/YAML
(and JUnit XML for ``check``) for machines. Renderers return text; the CLI echoes it
(``click.echo``).

The check JSON shape and the limits YAML/JSON (the limits-file format) are contracts
(DESIGN.md): CI pipelines parse the first, ``--limits-file`` reads the second.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

import yaml

from webhook.check import CheckReport, Result
from webhook.core import policy
from webhook.core.limits import NodeLimits
from webhook.manifests import STDIN

__all__ = [
    "CHECK_FORMATS",
    "check_warnings",
    "limits_file_entry",
    "render_check",
    "render_check_json",
    "render_check_junit",
    "render_check_table",
    "render_check_yaml",
    "render_limits",
]

_COLUMNS = ("GROUP", "TYPE", "CPU", "MEMORY", "CARDS", "NV", "DCU", "MLU", "NODES", "MAXTIME")


# --- nodelimits check ----------------------------------------------------------------------


def _shown(report: CheckReport, fail_only: bool) -> list[Result]:
    """The results a view lists: all, or (``--fail-only``) the rejected ones."""
    if not fail_only:
        return list(report.results)
    return [r for r in report.results if r.decision.skipped is None and not r.decision.allowed]


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


def _check_document(report: CheckReport, fail_only: bool) -> dict[str, Any]:
    """The JSON/YAML shape (the contract). ``fail_only`` narrows ``results``; ``errors`` and
    ``summary`` always cover the whole run."""
    return {
        "results": [_result_json(r) for r in _shown(report, fail_only)],
        "errors": report.errors,
        "summary": report.summary(),
    }


def render_check_json(report: CheckReport, *, fail_only: bool = False) -> str:
    return json.dumps(_check_document(report, fail_only), indent=2, ensure_ascii=False) + "\n"


def render_check_yaml(report: CheckReport, *, fail_only: bool = False) -> str:
    """The JSON document, as YAML."""
    return yaml.safe_dump(_check_document(report, fail_only), sort_keys=False, allow_unicode=True)


def _verdict(decision: policy.Decision) -> str:
    if decision.skipped is not None:
        return "SKIPPED"
    return "ALLOWED" if decision.allowed else "REJECTED"


def _source_file(result: Result) -> str:
    source = result.document.source
    return "stdin" if source == STDIN else source


def render_check_table(
    report: CheckReport, *, headers: bool = True, fail_only: bool = False
) -> str:
    """One row per object and a summary line, for people. ``headers=False``
    (``--no-headers``): the rows alone, for scripts. Warnings are not here: the CLI prints
    :func:`check_warnings` on stderr."""
    out: list[str] = []
    rows = [("RESULT", "KIND", "NAME", "GROUP", "TYPE", "SOURCE", "DETAILS")] if headers else []
    for r in _shown(report, fail_only):
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
                _source_file(r),
                details,
            )
        )
    padded = 6  # every column but DETAILS
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(padded)]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:padded])]
        out.append("   ".join([*cells, row[padded]]).rstrip() + "\n")
    if headers:
        s = report.summary()
        out.append(
            f"\n{s['objects']} objects: {s['allowed']} allowed, {s['rejected']} rejected, "
            f"{s['skipped']} skipped" + (f", {s['errors']} errors" if s["errors"] else "") + "\n"
        )
    return "".join(out)


def check_warnings(report: CheckReport) -> list[str]:
    """``Warning: <kind> <name>: <text>`` for every warning (kubectl's form, on stderr)."""
    return [
        f"Warning: {r.decision.kind} {r.decision.display_name}: {warning}"
        for r in report.results
        for warning in r.decision.warnings
    ]


CHECK_FORMATS = ("table", "json", "yaml", "junit")


def render_check(
    report: CheckReport, output: str, *, headers: bool = True, fail_only: bool = False
) -> str:
    """``output`` one of :data:`CHECK_FORMATS`; ``headers`` applies to the table only."""
    if output == "table":
        return render_check_table(report, headers=headers, fail_only=fail_only)
    renderers = {"json": render_check_json, "yaml": render_check_yaml, "junit": render_check_junit}
    return renderers[output](report, fail_only=fail_only)


# Characters XML 1.0 cannot carry at all, not even escaped (a control character in a
# manifest's name or a YAML error would make the whole report unreadable).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def render_check_junit(report: CheckReport, *, fail_only: bool = False) -> str:
    """JUnit XML as CI systems read it (GitLab, Jenkins, GitHub test reporters): one
    testcase per object (classname: its file; name: kind and name), a ``failure`` with
    the denial message for a rejected one, ``skipped`` with the reason, warnings as
    ``system-err``; one testcase with an ``error`` per input error. ElementTree escapes."""
    suite = ET.Element("testsuite", name="nodelimits check")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for r in _shown(report, fail_only):
        d = r.decision
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_xml(_source_file(r)),
            name=_xml(f"{d.kind} {d.display_name}"),
        )
        counts["tests"] += 1
        if d.skipped is not None:
            ET.SubElement(case, "skipped", message=_xml(d.skipped))
            counts["skipped"] += 1
        elif not d.allowed:
            failure = ET.SubElement(case, "failure", message=_xml(d.message), type="rejected")
            failure.text = _xml("\n".join(v.message for v in d.violations))
            counts["failures"] += 1
        if d.warnings:
            ET.SubElement(case, "system-err").text = _xml(
                "\n".join(f"Warning: {w}" for w in d.warnings)
            )
    for error in report.errors:
        # check.py's errors start with the file they are in: "<file>: document 2 ...".
        source, _, rest = error.partition(": ")
        case = ET.SubElement(suite, "testcase", classname=_xml(source), name=_xml(rest or error))
        ET.SubElement(case, "error", message=_xml(error), type="input")
        counts["tests"] += 1
        counts["errors"] += 1
    for key, value in counts.items():
        suite.set(key, str(value))
    root = ET.Element("testsuites", {"name": "nodelimits"} | {k: str(v) for k, v in counts.items()})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


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
