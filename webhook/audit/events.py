"""Events on the objects an audit found violating (``events.k8s.io/v1``), rate-limited.

``kubectl describe`` and ``kubectl events --for`` show them where the owner of a workload
looks first. Two bounds keep the audit from flooding the apiserver and etcd (each Event
is an object there): one object's same finding is not emitted again within
``repeat_after`` seconds, and one audit emits at most ``per_run`` Events; the findings
left over are counted and come in the next runs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from webhook.audit.cluster import ApiError
from webhook.audit.lease import Requester
from webhook.audit.scan import AuditReport
from webhook.check import Result

__all__ = ["EventOptions", "EventRecorder", "EventsSent", "violation_event"]

log = logging.getLogger("nodelimits.audit")

REASON = "DoesNotFitResourceGroup"
CONTROLLER = "nodelimits.io/audit"
NOTE_LIMIT = 1024
"""events.k8s.io/v1 refuses a note over 1 kB."""


@dataclass(frozen=True)
class EventOptions:
    per_run: int = 50
    """At most this many Events per audit."""
    repeat_after: float = 3600.0
    """Seconds before the same finding on the same object is emitted again."""


@dataclass(frozen=True)
class EventsSent:
    sent: int = 0
    deferred: int = 0
    """Findings over ``per_run``: emitted by a later run."""
    failed: int = 0


def _micro_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _finding_key(result: Result) -> str:
    """Object and message: a changed finding (limits shrank further) is news."""
    d = result.decision
    meta = result.document.obj.get("metadata") or {}
    ident = f"{d.api_version}|{d.kind}|{d.namespace}|{d.name}|{meta.get('uid', '')}|{d.message}"
    return hashlib.sha256(ident.encode()).hexdigest()


def violation_event(result: Result, *, now: float, instance: str) -> dict[str, Any]:
    """The Event for one violating object: type Warning, regarding the object, the denial
    message as its note (cut to the 1 kB the API allows)."""
    d = result.decision
    meta = result.document.obj.get("metadata") or {}
    regarding = {"apiVersion": str(d.api_version), "kind": d.kind, "name": d.name}
    if d.namespace:
        regarding["namespace"] = d.namespace
    if meta.get("uid"):
        regarding["uid"] = str(meta["uid"])
    note = d.message if len(d.message) <= NOTE_LIMIT else d.message[: NOTE_LIMIT - 3] + "..."
    # A name per finding and time: a re-emission after repeat_after is a new Event.
    digest = _finding_key(result)[:10]
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {
            "name": f"{d.name[:200]}.nodelimits-{digest}-{int(now)}",
            "namespace": d.namespace or "default",
        },
        "eventTime": _micro_time(now),
        "type": "Warning",
        "reason": REASON,
        "action": "Audit",
        "note": note,
        "regarding": regarding,
        "reportingController": CONTROLLER,
        "reportingInstance": instance[:128],
    }


@dataclass
class EventRecorder:
    """Emits the Events of each audit, remembering what it emitted (this process only: a
    new leader starts afresh, at most ``per_run`` Events later)."""

    api: Requester
    instance: str
    options: EventOptions = field(default_factory=EventOptions)
    _emitted: dict[str, float] = field(default_factory=dict)

    def due(self, results: Iterable[Result], now: float) -> list[Result]:
        """The violating results whose finding was not emitted within repeat_after."""
        horizon = now - self.options.repeat_after
        out = []
        for result in results:
            if not result.decision.violations:
                continue
            if self._emitted.get(_finding_key(result), float("-inf")) > horizon:
                continue
            out.append(result)
        return out

    def record(self, report: AuditReport, now: float) -> EventsSent:
        due = self.due(report.results, now)
        batch, deferred = due[: self.options.per_run], len(due) - self.options.per_run
        sent = failed = 0
        for result in batch:
            event = violation_event(result, now=now, instance=self.instance)
            path = (
                f"/apis/events.k8s.io/v1/namespaces/"
                f"{quote(event['metadata']['namespace'], safe='')}/events"
            )
            try:
                self.api.request("POST", path, body=event)
            except ApiError as exc:
                failed += 1
                log.warning("audit: event on %s not written: %s", event["regarding"], exc)
                continue
            self._emitted[_finding_key(result)] = now
            sent += 1
        # Forget what no longer matters, so the memo stays as small as the findings.
        horizon = now - self.options.repeat_after
        self._emitted = {k: t for k, t in self._emitted.items() if t > horizon}
        return EventsSent(sent=sent, deferred=max(0, deferred), failed=failed)
