"""The ``nodelimits serve`` process: kopf in admission-only mode, probes and metrics.

* TLS webhook listener (kopf's ``WebhookServer``), which re-reads rotated cert files;
* metrics and probes on a second, plain listener: ``/metrics``, ``/healthz``, ``/readyz``
  (ready once the TLS listener serves; never tied to the platform being up);
* kopf runs ``--standalone`` with scanning disabled and no managed webhook configuration,
  so it needs no RBAC beyond API discovery; the Helm chart owns the configuration;
* on SIGTERM: report not-ready, keep serving for ``shutdown_delay`` (endpoints take a
  moment to drop the pod), let in-flight reviews finish, then stop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import signal
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp.web
import kopf
from kopf._cogs.structs import patches
from kopf._core.engines.admission import WebhookError
from kopf._core.intents.registries import SmartOperatorRegistry
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.admission import (
    DECISION_LOGGER,
    HANDLERS,
    REVIEW_UID,
    Admission,
    EphemeralMemories,
    register,
)
from webhook.config import Settings
from webhook.metrics import Metrics
from webhook.platform import build_limits_cache

__all__ = ["NodelimitsWebhookServer", "Probes", "serve"]

log = logging.getLogger("nodelimits.server")


# Kubernetes group, version and resource names; anything else cannot come from an apiserver.
_API_NAME = re.compile(r"[a-z0-9.-]{0,253}")


def _shown(text: str) -> str:
    """Client-sent text fit for an error: kopf puts a WebhookError's message in the HTTP
    reason phrase, where a control character makes aiohttp drop the connection unanswered."""
    text = text[:200]
    return text if text.isascii() and text.isprintable() else ascii(text)


def _check_review(request: object, webhook: str | None, known: frozenset[str]) -> None:
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


@dataclass
class ServingState:
    """What probes and shutdown need to know about the webhook listener."""

    listening: asyncio.Event = field(default_factory=asyncio.Event)
    draining: bool = False
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Listener:
    """One bound TLS site; ``retired`` once a newer certificate serves the port."""

    runner: aiohttp.web.AppRunner
    site: aiohttp.web.TCPSite
    retired: bool = False


class NodelimitsWebhookServer(kopf.WebhookServer):
    """kopf's TLS server, plus: readiness, reload counting, in-flight tracking, and a
    400 for malformed reviews and unknown paths instead of a 500 or a silent allow.

    Certificate rotation without a gap: kopf's own loop stops the old listener, waits for
    its in-flight reviews, and only then binds the new one, so every connection attempt in
    between is refused (the soak saw ~45 refused per rotation at 200 reviews/s). Here the
    new listener binds first (``reuse_port``), the old one stops accepting, answers its
    in-flight reviews with ``Connection: close``, and is cleaned up after
    :attr:`retire_grace`. Files that fail to load (e.g. a key and certificate that do not
    match, half-written) keep the previous certificate serving instead of killing the
    server; the next change is tried again.
    """

    retire_grace = 5.0
    """Seconds a retired listener's keep-alive connections get to finish before closing."""

    def __init__(
        self, *, state: ServingState, metrics: Metrics, known_ids: frozenset[str], **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.state = state
        self.metrics = metrics
        self.known_ids = known_ids

    def _build_ssl(self) -> tuple[bytes | None, ssl.SSLContext | None]:
        # TLS 1.2 is the floor whatever the Python or OpenSSL defaults of the image say.
        cadata, context = super()._build_ssl()
        if context is not None:
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        return cadata, context

    @staticmethod
    async def _serve(fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:
        # kopf decodes the body as text before parsing it and catches only JSON errors:
        # bytes that are not UTF-8 were a 500.
        try:
            response: aiohttp.web.Response = await kopf.WebhookServer._serve(fn, request)
        except UnicodeDecodeError:
            raise aiohttp.web.HTTPBadRequest(reason="request body is not UTF-8") from None
        return response

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        state, known = self.state, self.known_ids

        async def guarded(request: Any, *, webhook: str | None = None, **kw: Any) -> Any:
            state.in_flight += 1
            state.idle.clear()
            try:
                _check_review(request, webhook, known)
                REVIEW_UID.set(request["request"]["uid"])  # this request's own task context
                return await fn(request, webhook=webhook, **kw)
            finally:
                state.in_flight -= 1
                if state.in_flight == 0:
                    state.idle.set()

        current: _Listener | None = None
        retiring: set[asyncio.Task[None]] = set()
        try:
            while True:
                digest = self._files_digest()
                try:
                    cadata, context = self._build_ssl()
                except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                    if current is None:
                        raise
                    self.metrics.cert_reload_errors.inc()
                    log.error(
                        "serving certificate files changed but cannot be loaded (%s); "
                        "still serving the previous certificate",
                        exc,
                    )
                    await self._until_files_change(digest)
                    continue
                listener = await self._listen(guarded, context)
                if current is not None:
                    task = asyncio.create_task(self._retire(current))
                    retiring.add(task)
                    task.add_done_callback(retiring.discard)
                    self.metrics.cert_reloads.inc()
                    log.info("serving certificate files changed: reloaded")
                current = listener
                state.listening.set()
                yield self._client_config(cadata, context)
                await self._until_files_change(digest)
        finally:
            if retiring:
                await asyncio.gather(*retiring, return_exceptions=True)
            if current is not None:
                await current.runner.cleanup()

    async def _listen(self, fn: Any, context: Any) -> _Listener:
        path = self.path.rstrip("/") if self.path else ""
        holder: list[_Listener] = []

        async def serve(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
            response = await self._serve(fn, request)
            if holder and holder[0].retired:
                response.force_close()  # tell the client not to reuse this connection
            return response

        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.post(f"{path}/{{id:.*}}", serve)])
        runner = aiohttp.web.AppRunner(app, handle_signals=False)
        await runner.setup()
        try:
            if not self.port:
                self.port = self._allocate_free_port()  # rebinds must keep the port
            site = aiohttp.web.TCPSite(
                runner,
                self.addr or None,
                self.port,
                ssl_context=context,
                reuse_port=True,
                reuse_address=True,
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        holder.append(_Listener(runner, site))
        return holder[0]

    async def _retire(self, old: _Listener) -> None:
        old.retired = True
        await old.site.stop()  # the new listener has the port; stop accepting here
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retire_grace
        server = old.runner.server
        while server is not None and server.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await old.runner.cleanup()  # closes what is left idle; waits for in-flight reviews

    def _client_config(self, cadata: bytes | None, context: Any) -> Any:
        schema = "http" if context is None else "https"
        assert self.port is not None  # bound by _listen
        host = self.host or self.DEFAULT_HOST or self._get_accessible_addr(self.addr)
        config = kopf.WebhookClientConfig(
            url=self._build_url(schema, host, self.port, self.path or "")
        )
        if cadata is not None:
            config["caBundle"] = base64.b64encode(cadata).decode("ascii")
        return config

    def _files_digest(self) -> str:
        hasher = hashlib.sha256()
        for path in (self.certfile, self.pkeyfile, self.cafile):
            if path is not None:
                try:
                    with open(str(path), "rb") as f:
                        hasher.update(f.read())
                except OSError as exc:  # mid-swap or removed: a change, looked at again
                    hasher.update(repr(exc).encode())
        return hasher.hexdigest()

    async def _until_files_change(self, digest: str) -> None:
        """Return once the certificate files differ from ``digest`` (re-hashed every
        ``file_check_interval``: mounted Secrets send no filesystem events)."""
        while self._files_digest() == digest:
            await asyncio.sleep(self.file_check_interval)


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


def skip_copy_of_empty_patches() -> None:
    """kopf deep-copies the whole object to build a JSON patch *before* it checks whether
    there is anything to patch (kopf 1.45 ``Patch.as_json_patch``). A validating webhook
    never patches, so every review paid a deep copy: the largest single cost in kopf's
    request path (about 45% of it in-process for a 4.4 KB Pod). Same result, the empty
    case first. Idempotent."""
    original = patches.Patch.as_json_patch
    if getattr(original, "_nodelimits", False):
        return

    def as_json_patch(self: patches.Patch, body: Any = None) -> Any:
        if not self:
            return []
        return original(self, body)

    as_json_patch._nodelimits = True  # type: ignore[attr-defined]
    patches.Patch.as_json_patch = as_json_patch  # type: ignore[method-assign]


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
        known_ids=frozenset(h.id for h in HANDLERS if h.kind in settings.admission.kinds),
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
            admission = Admission(settings, cache, metrics)
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
                standalone=True,
                clusterwide=True,
                stop_flag=stop,
            )
            _install_shutdown(state, stop, settings)
            await kopf.run_tasks(tasks, ignored=existing)
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
