"""``nodelimits audit-controller``: the audit run continuously in the cluster (issue 16).

* Replicas elect a leader through a Lease (:mod:`webhook.audit.lease`); only the leader
  audits and writes, the others renew nothing and wait for it to expire or be released.
* The leader audits when it becomes leader, every ``interval`` seconds, and as soon as the
  limits of a (group, accelerator type) the last audit used change: every ``limits_poll``
  seconds it reads them again through the :class:`LimitsCache` (which refreshes them from
  the platform after ``cache.ttl``) and compares them with the limits the audit judged by.
* Results go to reports of the chosen API (PolicyReports or OpenReports Reports,
  :mod:`webhook.audit.writer`) and gauges
  (``nodelimits_audit_*``) served on ``/metrics`` of a plain-HTTP port, with ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.audit.cluster import KubeCluster, Target
from webhook.audit.events import EventOptions, EventRecorder
from webhook.audit.lease import Lease
from webhook.audit.reports import WGPOLICY, ReportApi
from webhook.audit.scan import AuditReport, run_audit
from webhook.audit.writer import write_reports
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.core.policy import PolicySettings
from webhook.metrics import Metrics
from webhook.platform.cache import LimitsCache
from webhook.platform.errors import PlatformError

__all__ = ["AuditController", "ControllerOptions", "metrics_app"]

log = logging.getLogger("nodelimits.audit")

Key = tuple[str, AcceleratorType]


@dataclass(frozen=True)
class ControllerOptions:
    identity: str
    lease_namespace: str
    lease_name: str = "nodelimits-audit"
    lease_duration: float = 15.0
    interval: float = 300.0
    limits_poll: float = 10.0
    namespace: str | None = None
    selector: str | None = None
    chunk_size: int = 500
    events: EventOptions | None = None
    """Events on violating objects (None: none)."""
    report_api: ReportApi = WGPOLICY
    """The API the reports are written in."""

    @property
    def field_manager(self) -> str:
        return f"nodelimits-audit-{self.identity}"[:128]


class AuditController:
    def __init__(
        self,
        cluster: KubeCluster,
        policy: PolicySettings,
        cache: LimitsCache,
        metrics: Metrics,
        options: ControllerOptions,
        targets: Sequence[Target] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster, self.policy, self.cache = cluster, policy, cache
        self.metrics, self.options, self.targets = metrics, options, targets
        self.clock = clock
        self.lease = Lease(
            cluster,
            options.lease_namespace,
            options.lease_name,
            options.identity,
            duration=options.lease_duration,
        )
        self.events = (
            EventRecorder(cluster, options.identity, options.events) if options.events else None
        )
        self.seen: dict[Key, NodeLimits] = {}
        """The limits the last audit judged by, per (group, type) it used."""
        self.runs = 0

    # --- the loops ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        renewer = asyncio.create_task(self._keep_lease(stop))
        try:
            await self._audit_loop(stop)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await asyncio.to_thread(self.lease.release)
            self.metrics.audit_leader.set(0)

    async def _keep_lease(self, stop: asyncio.Event) -> None:
        every = max(0.5, self.options.lease_duration / 3)
        while not stop.is_set():
            leader = await asyncio.to_thread(self.lease.tick)
            self.metrics.audit_leader.set(1 if leader else 0)
            await _wait(stop, every)

    async def _audit_loop(self, stop: asyncio.Event) -> None:
        led = False
        due = 0.0
        while not stop.is_set():
            if not self.lease.leader:
                if led:
                    log.info("audit: no longer the leader (%s holds the lease)", self.lease.holder)
                led = False
                await _wait(stop, 0.5)
                continue
            trigger = ""
            if not led:
                trigger = "start"
            elif self.clock() >= due:
                trigger = "interval"
            elif await self.limits_changed():
                trigger = "limits"
            led = True
            if trigger:
                await self.audit_once(trigger)
                due = self.clock() + self.options.interval
            await _wait(stop, max(0.1, min(self.options.limits_poll, due - self.clock())))

    # --- one step each ------------------------------------------------------------------

    async def limits_changed(self) -> bool:
        """Whether the limits of a (group, type) the last audit used differ now."""
        for (group, accelerator), old in self.seen.items():
            try:
                now = (await self.cache.get(group, accelerator)).limits
            except PlatformError as exc:
                log.debug("audit: limits of %s (%s) not read: %s", group, accelerator.value, exc)
                continue
            if now != old:
                log.info("audit: limits of %s (%s) changed: auditing now", group, accelerator.value)
                return True
        return False

    async def audit_once(self, trigger: str) -> AuditReport:
        self.metrics.audit_runs.labels(trigger).inc()
        o = self.options
        report = await run_audit(
            self.cluster,
            self.policy,
            self.cache,
            targets=self.targets,
            namespace=o.namespace,
            selector=o.selector,
            chunk_size=o.chunk_size,
        )
        self.runs += 1
        await self._remember_limits(report)
        self._record(report)
        if not self.lease.leader:
            log.info("audit: lease lost during the audit: reports not written")
            return report
        written = await asyncio.to_thread(
            write_reports,
            self.cluster,
            report,
            report_api=o.report_api,
            now=time.time(),
            field_manager=o.field_manager,
            namespace=o.namespace,
        )
        for op, names in (
            ("create", written.created),
            ("replace", written.replaced),
            ("delete", written.deleted),
        ):
            if names:
                self.metrics.audit_report_writes.labels(op).inc(len(names))
        if self.events is not None:
            sent = await asyncio.to_thread(self.events.record, report, time.time())
            for outcome, count in (
                ("sent", sent.sent),
                ("deferred", sent.deferred),
                ("failed", sent.failed),
            ):
                if count:
                    self.metrics.audit_events.labels(outcome).inc(count)
        log.info(
            "audit (%s): %d objects, %d violating, %d errors in %.2fs; reports created %s, "
            "replaced %s, deleted %s, unchanged %d, failed %s",
            trigger,
            sum(report.scanned.values()),
            sum(1 for r in report.results if r.decision.violations),
            len(report.errors),
            report.duration,
            written.created,
            written.replaced,
            written.deleted,
            len(written.unchanged),
            written.failed,
        )
        return report

    async def _remember_limits(self, report: AuditReport) -> None:
        keys = {
            (r.decision.group, r.decision.accelerator)
            for r in report.results
            if r.decision.group and r.decision.accelerator is not None
        }
        seen: dict[Key, NodeLimits] = {}
        for group, accelerator in keys:
            assert group is not None
            assert accelerator is not None
            try:
                seen[(group, accelerator)] = (await self.cache.get(group, accelerator)).limits
            except PlatformError:
                old = self.seen.get((group, accelerator))
                if old is not None:
                    seen[(group, accelerator)] = old
        self.seen = seen

    def _record(self, report: AuditReport) -> None:
        m = self.metrics
        m.audit_violations.clear()
        for r in report.results:
            d = r.decision
            for v in d.violations:
                m.audit_violations.labels(d.group or "", d.kind, v.resource).inc()
        m.audit_scanned.clear()
        for kind, count in report.scanned.items():
            m.audit_scanned.labels(kind).set(count)
        m.audit_errors.set(len(report.errors))
        m.audit_duration.set(report.duration)
        m.audit_last_run.set(time.time())


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def metrics_app(metrics: Metrics) -> aiohttp.web.Application:
    """``/metrics`` and ``/healthz`` of the audit process."""

    async def serve_metrics(_: aiohttp.web.Request) -> aiohttp.web.Response:
        body = generate_latest(metrics.registry)
        return aiohttp.web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="ok\n")

    app = aiohttp.web.Application()
    app.add_routes(
        [aiohttp.web.get("/metrics", serve_metrics), aiohttp.web.get("/healthz", healthz)]
    )
    return app
