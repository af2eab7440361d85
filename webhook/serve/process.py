"""The ``nodelimits serve`` process: kopf in admission-only mode, probes, logging, drain.

* the TLS webhook listener (:mod:`webhook.serve.tls`), which re-reads rotated cert files;
* metrics and probes on a second, plain listener: ``/metrics``, ``/healthz``, ``/readyz``
  (ready once the TLS listener serves; never tied to the platform being up);
* kopf runs ``--standalone`` with scanning disabled and no managed webhook configuration,
  so it needs no RBAC beyond API discovery; the Helm chart owns the configuration;
* on SIGTERM: report not-ready, keep serving for ``shutdown_delay`` (endpoints take a
  moment to drop the pod), let in-flight reviews finish, then stop.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp.web
import kopf
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.config import Settings
from webhook.kube import claim_source, runtime_source
from webhook.metrics import Metrics
from webhook.platform import build_limits_cache
from webhook.serve.admission import DECISION_LOGGER, Admission, register
from webhook.serve.handlers import served
from webhook.serve.kopf_glue import (
    EphemeralMemories,
    SmartOperatorRegistry,
    serving_insights,
    skip_copy_of_empty_patches,
)
from webhook.serve.tls import NodelimitsWebhookServer, ServingLimits, ServingState

__all__ = ["Probes", "configure_logging", "kopf_settings", "serve"]

log = logging.getLogger("nodelimits.server")


@dataclass
class Probes:
    """The plain-HTTP listener for /metrics, /healthz and /readyz."""

    metrics: Metrics
    state: ServingState

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application()
        app.add_routes(
            [
                aiohttp.web.get("/metrics", self._metrics),
                aiohttp.web.get("/healthz", self._healthz),
                aiohttp.web.get("/readyz", self._readyz),
            ]
        )
        return app

    async def _metrics(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        body = generate_latest(self.metrics.registry)
        return aiohttp.web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="ok\n")

    async def _readyz(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        if self.state.draining:
            return aiohttp.web.Response(status=503, text="shutting down\n")
        if not self.state.listening.is_set():
            return aiohttp.web.Response(status=503, text="webhook listener not serving yet\n")
        return aiohttp.web.Response(text="ok\n")


def configure_logging(settings: Settings) -> None:
    fmt = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(log_format=fmt, verbose=settings.log_level == "DEBUG")
    logging.getLogger().setLevel(settings.log_level)
    # Our decision line says everything about a review; kopf's per-handler lines would
    # repeat it (an ERROR per denial) and aiohttp's access log would double the volume.
    logging.getLogger("kopf.objects").setLevel(logging.CRITICAL)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if settings.log_format == "json":
        # One line per review is the hot path: a direct json.dumps with the same keys as
        # kopf's JSON lines costs a fraction of kopf's general-purpose formatter.
        handler = logging.StreamHandler()
        handler.setFormatter(DecisionJsonFormatter())
        decision = logging.getLogger(DECISION_LOGGER)
        decision.handlers[:] = [handler]
        decision.propagate = False


class DecisionJsonFormatter(logging.Formatter):
    """``{"message", "decision", "timestamp", "severity"}``, as kopf's JSON lines have."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "message": record.getMessage(),
                "decision": getattr(record, "decision", None),
                "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "severity": record.levelname.lower(),
            },
            default=str,
            ensure_ascii=False,
        )


def kopf_settings(settings: Settings, server: kopf.WebhookServer) -> kopf.OperatorSettings:
    ks = kopf.OperatorSettings()
    ks.admission.server = server
    ks.scanning.disabled = True  # no CRD watching: no RBAC, no 403 retry storms
    ks.peering.standalone = True
    ks.posting.enabled = False  # never post Events: no events:create RBAC
    if settings.server.manage_webhook_url:
        ks.admission.managed = "nodelimits.dev.local"
    return ks


async def serve(settings: Settings, *, metrics: Metrics | None = None) -> None:
    """Run until SIGTERM/SIGINT; raises on a start-up failure (e.g. a bad limits file)."""
    metrics = metrics or Metrics()
    skip_copy_of_empty_patches()
    state = ServingState()
    s = settings.server
    host = urlsplit(s.manage_webhook_url).hostname if s.manage_webhook_url else None
    server = NodelimitsWebhookServer(
        state=state,
        metrics=metrics,
        handlers={
            h.id: h for h in served(settings.admission.kinds, settings.policy.workload_kinds)
        },
        limits=ServingLimits(
            max_review_bytes=s.max_review_bytes,
            header_timeout=s.header_timeout,
            body_timeout=s.body_timeout,
            max_connections=s.max_connections,
            max_connections_per_client=s.max_connections_per_client,
        ),
        verify_cafile=str(s.client_ca_file) if s.client_ca_file else None,
        addr=s.host,
        port=s.port,
        host=host,
        certfile=str(s.cert_file),
        pkeyfile=str(s.key_file),
        cafile=str(s.ca_file) if s.ca_file else None,
        file_check_interval=s.cert_check_interval,
    )
    probes = aiohttp.web.AppRunner(Probes(metrics, state).app(), access_log=None)
    await probes.setup()
    site = aiohttp.web.TCPSite(probes, s.metrics_host, s.metrics_port)
    await site.start()
    log.info("probes and metrics on http://%s:%s", s.metrics_host, s.metrics_port)
    try:
        async with build_limits_cache(settings, metrics) as cache:
            claims = claim_source(settings.kubernetes)
            runtimes = runtime_source(settings.kubernetes, claims)
            admission = Admission(settings, cache, metrics, claims, runtimes)
            registry = SmartOperatorRegistry()  # with kopf's default login handlers
            registered = register(registry, admission)
            log.info("webhooks: %s", ", ".join(h.path for h in registered))
            stop = asyncio.Event()
            existing = set(asyncio.all_tasks())
            memories = EphemeralMemories()
            metrics.kopf_memos.set_function(memories.retained)
            metrics.asyncio_tasks.set_function(_task_count)
            tasks = await kopf.spawn_tasks(
                registry=registry,
                settings=kopf_settings(settings, server),
                memories=memories,
                # Served even when its CRD is installed after the start (kopf discovers once).
                insights=serving_insights(
                    (h.group, h.version, h.plural, h.object_kind, h.namespaced) for h in registered
                ),
                standalone=True,
                clusterwide=True,
                stop_flag=stop,
            )
            _install_shutdown(state, stop, settings)
            # Everything alive now (modules, kopf, pydantic models, the handlers) lives as
            # long as the process: out of the collector's sight, a full collection scans
            # only what reviews allocate instead of ~90k objects (bench/bench_handler.py).
            gc.collect()
            gc.freeze()
            try:
                await kopf.run_tasks(tasks, ignored=existing)
            finally:
                if claims is not None:
                    await claims.close()
                if runtimes is not None and runtimes is not claims:
                    await runtimes.close()
    finally:
        await probes.cleanup()


def _task_count() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # scraped outside the serving loop
        return 0


def _install_shutdown(state: ServingState, stop: asyncio.Event, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    drain_timeout = float(settings.admission.timeout_seconds)

    async def drain(signum: int) -> None:
        if state.draining:
            stop.set()  # a second signal: stop now
            return
        state.draining = True
        log.info("signal %s: draining (not ready; in flight: %d)", signum, state.in_flight)
        await asyncio.sleep(settings.server.shutdown_delay)
        if state.in_flight:
            try:
                async with asyncio.timeout(drain_timeout):
                    await state.idle.wait()
            except TimeoutError:
                log.warning("stopping with %d reviews still in flight", state.in_flight)
        stop.set()

    pending: set[asyncio.Task[None]] = set()

    def on_signal(signum: int) -> None:
        task = loop.create_task(drain(signum))
        pending.add(task)
        task.add_done_callback(pending.discard)

    # After kopf's spawn_tasks, which installs handlers that would stop at once.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
