"""The rotating TLS webhook listener: kopf's ``WebhookServer`` that re-reads rotated cert
files without a gap, tracks in-flight reviews, guards the review shape, and bounds what a
client can hold (issue 12, findings 5 and 6):

* a review may be as large as the apiserver can send (:attr:`ServingLimits.max_review_bytes`);
  a larger one is read to its end without being kept and *denied* with a message that
  says why (an HTTP 413 let it through under ``failurePolicy: Ignore``);
* headers must arrive within ``header_timeout`` of the connection (or of the previous
  response), the TLS handshake too, the body within ``body_timeout``;
* at most ``max_connections`` connections (``max_connections_per_client`` from one
  address); more are closed on arrival; large bodies are read a few at a time.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import base64
import contextlib
import hashlib
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import kopf

from webhook import bounds
from webhook.metrics import Metrics
from webhook.serve.admission import REVIEW_UID
from webhook.serve.guard import check_review
from webhook.serve.handlers import HandlerSpec
from webhook.serve.kopf_glue import (
    AmbiguousResourceError,
    UnknownResourceError,
    WebhookError,
    routed_by_webhook,
)

__all__ = ["NodelimitsWebhookServer", "ServingLimits", "ServingState"]

MiB = 2**20
_UID = re.compile(rb'"uid"\s*:\s*"([^"\\]{1,128})"')

log = logging.getLogger("nodelimits.server")


@dataclass
class ServingState:
    """What probes and shutdown need to know about the webhook listener."""

    listening: asyncio.Event = field(default_factory=asyncio.Event)
    draining: bool = False
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


TLS_READ_BUFFER = 32 * 1024
"""asyncio's TLS transport zero-fills a 256 KiB read buffer per connection: 1,000 held
connections took RSS from 81 to 357 MB (the chart's limit is 256Mi). With 32 KiB: 138 MB.
Process-wide (the platform client's TLS too); a TLS record is at most 16 KiB anyway."""


def _small_tls_buffers() -> None:
    if asyncio.sslproto.SSLProtocol.max_size > TLS_READ_BUFFER:
        asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


@dataclass(frozen=True)
class ServingLimits:
    """What one client may make the listener hold (``server`` settings)."""

    max_review_bytes: int = 6 * MiB
    """An object is at most 1.5 MiB in etcd (protobuf; its JSON can be larger, and a create
    body may be 3 MiB); an UPDATE carries object and oldObject, plus the envelope."""
    header_timeout: float = 10.0
    """Seconds for the TLS handshake, and for a request's headers after the connection
    opens or the previous response (an idle keep-alive connection is closed after it)."""
    body_timeout: float = 10.0
    max_connections: int = 1000
    max_connections_per_client: int = 250
    large_body_bytes: int = MiB
    large_bodies_at_once: int = 2
    """Bodies above ``large_body_bytes`` are read this many at a time (memory stays bounded
    however many large reviews arrive together); the others wait their turn, within the
    body timeout."""


class _Gate:
    """Counts open connections, in total and per client address."""

    def __init__(self, limits: ServingLimits, metrics: Metrics) -> None:
        self.limits, self.metrics = limits, metrics
        self.total = 0
        self.by_client: dict[str, int] = {}

    def admit(self, client: str) -> bool:
        held = self.by_client.get(client, 0)
        if (
            self.total >= self.limits.max_connections
            or held >= self.limits.max_connections_per_client
        ):
            self.metrics.connections_refused.inc()
            return False
        self.total += 1
        self.by_client[client] = held + 1
        return True

    def release(self, client: str) -> None:
        self.total -= 1
        left = self.by_client[client] - 1
        if left:
            self.by_client[client] = left
        else:
            del self.by_client[client]


class _GatedProtocol(asyncio.Protocol):
    """aiohttp's protocol behind the gate: a connection over the limits is closed at once,
    before aiohttp allocates anything for it."""

    __slots__ = ("_client", "_gate", "_inner")

    def __init__(self, inner: asyncio.Protocol, gate: _Gate) -> None:
        self._inner, self._gate = inner, gate
        self._client: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._gate.admit(client):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._client = client
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client is None:
            return
        self._gate.release(self._client)
        self._client = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _GatedSite(aiohttp.web.BaseSite):
    """A TCP site whose connections pass the gate, with bounded TLS handshake and shutdown."""

    def __init__(
        self,
        runner: aiohttp.web.BaseRunner,
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        gate: _Gate,
        handshake_timeout: float,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host_, self._port_ = host, port
        self._gate_, self._handshake_timeout = gate, handshake_timeout

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host_ or '*'}:{self._port_}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        gate = self._gate_
        factory: Callable[[], asyncio.Protocol] = lambda: _GatedProtocol(server(), gate)  # noqa: E731
        tls: dict[str, Any] = {}
        if self._ssl_context is not None:
            tls = {
                "ssl_handshake_timeout": self._handshake_timeout,
                "ssl_shutdown_timeout": self._handshake_timeout,
            }
        self._server = await asyncio.get_running_loop().create_server(
            factory,
            self._host_,
            self._port_,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
            reuse_port=True,
            **tls,
        )


class _BodyTooLarge(Exception):
    def __init__(self, size: int, head: bytes) -> None:
        self.size, self.head = size, head


async def _read_body(request: aiohttp.web.Request, limit: int) -> bytes:
    """The body, or :class:`_BodyTooLarge` once it passes ``limit`` (the rest is read and
    dropped, so the client gets its answer instead of a reset)."""
    chunks: list[bytes] = []
    size = 0
    head = b""
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif chunks:  # just crossed the limit: keep the start (it has the uid), drop the rest
            head = b"".join(chunks)[:4096]
            chunks.clear()
    if size > limit:
        raise _BodyTooLarge(size, head)
    return b"".join(chunks)


@dataclass
class _Listener:
    """One bound TLS site; ``retired`` once a newer certificate serves the port."""

    runner: aiohttp.web.AppRunner
    site: aiohttp.web.BaseSite
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
        self,
        *,
        state: ServingState,
        metrics: Metrics,
        handlers: Mapping[str, HandlerSpec],
        limits: ServingLimits | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.state = state
        self.metrics = metrics
        self.handlers = dict(handlers)
        self.limits = limits or ServingLimits()
        self._gate = _Gate(self.limits, metrics)
        _small_tls_buffers()
        self._large = asyncio.Semaphore(self.limits.large_bodies_at_once)

    def _build_ssl(self) -> tuple[bytes | None, ssl.SSLContext | None]:
        # TLS 1.2 is the floor whatever the Python or OpenSSL defaults of the image say.
        cadata, context = super()._build_ssl()
        if context is not None:
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.verify_cafile is not None:  # the apiserver must present a client cert
                context.verify_mode = ssl.CERT_REQUIRED
        return cadata, context

    async def _serve_review(self, fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:
        """kopf's request reading, bounded: size, time, nesting and encoding are answered
        with a 4xx (or a denial) before anything recurses or waits without end."""
        limits = self.limits
        length = request.content_length
        large = length is None or length > limits.large_body_bytes
        # A body that came whole with the headers (a review usually does) cannot make the
        # read wait: no timer for it (one per review was ~4% of the handler path).
        waits = large or not request.content.is_eof()
        try:
            async with (
                asyncio.timeout(limits.body_timeout if waits else None),
                self._large if large else contextlib.nullcontext(),
            ):
                raw = await _read_body(request, limits.max_review_bytes)
        except TimeoutError:
            self.metrics.review_rejected.labels(reason="slow_body").inc()
            raise aiohttp.web.HTTPRequestTimeout(
                reason=f"request body not received within {limits.body_timeout:g}s",
                headers={"Connection": "close"},
            ) from None
        except _BodyTooLarge as exc:
            self.metrics.review_rejected.labels(reason="too_large").inc()
            return self._too_large(exc)
        try:
            if not raw.isascii():  # said precisely here; the parser would say "invalid JSON"
                raw.decode("utf-8")
            data = bounds.loads(raw)
        except UnicodeDecodeError:
            self.metrics.review_rejected.labels(reason="malformed").inc()
            raise aiohttp.web.HTTPBadRequest(reason="request body is not UTF-8") from None
        except bounds.InvalidJson as exc:
            self.metrics.review_rejected.labels(reason="malformed").inc()
            raise aiohttp.web.HTTPBadRequest(reason=f"invalid JSON: {exc}") from None
        except bounds.TooDeep as exc:
            self.metrics.review_rejected.labels(reason="too_deep").inc()
            raise aiohttp.web.HTTPBadRequest(reason=f"AdmissionReview {exc}") from None
        # What kopf's own reader passes on (the apiserver's identity, not the user's).
        sslpeer = request.transport.get_extra_info("peercert") if request.transport else None
        try:
            response = await fn(
                data,
                webhook=request.match_info.get("id"),
                sslpeer=sslpeer,
                headers=dict(request.headers),
            )
        except AmbiguousResourceError as exc:
            raise aiohttp.web.HTTPConflict(reason=str(exc) or None) from None
        except UnknownResourceError as exc:
            raise aiohttp.web.HTTPNotFound(reason=str(exc) or None) from None
        except WebhookError as exc:
            self.metrics.review_rejected.labels(reason="mismatch").inc()
            raise aiohttp.web.HTTPBadRequest(reason=str(exc) or None) from None
        return aiohttp.web.json_response(response)

    def _too_large(self, exc: _BodyTooLarge) -> aiohttp.web.Response:
        """A denial the apiserver shows the user (under any failurePolicy), when the review's
        uid can be read from its start; otherwise a 413 that says the same."""
        limit = self.limits.max_review_bytes
        message = (
            f"nodelimits: the AdmissionReview is {exc.size} bytes, above the "
            f"{limit}-byte limit (server.max_review_bytes); denied unchecked"
        )
        found = _UID.search(exc.head)
        if found is None:
            raise aiohttp.web.HTTPRequestEntityTooLarge(
                max_size=limit, actual_size=exc.size, text=message
            )
        response = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": found.group(1).decode("utf-8", "replace"),
                "allowed": False,
                "status": {"code": 413, "message": message},
            },
        }
        return aiohttp.web.json_response(response)

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        state, known = self.state, self.handlers
        fn = routed_by_webhook(fn)

        async def guarded(request: Any, *, webhook: str | None = None, **kw: Any) -> Any:
            state.in_flight += 1
            state.idle.clear()
            try:
                check_review(request, webhook, known)
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
            response = await self._serve_review(fn, request)
            # Tell the client not to reuse this connection: a retired listener's go away;
            # while draining, the apiserver's kept-alive connections would otherwise stay
            # on this pod until it exits, and a review sent on one as it closes gets EOF
            # ("failed calling webhook"); a new connection goes to a ready replica.
            if self.state.draining or (holder and holder[0].retired):
                response.force_close()
            return response

        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.post(f"{path}/{{id:.*}}", serve)])
        runner = aiohttp.web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            lingering_time=0,  # an unread body is not waited for: the connection is closed
            # aiohttp closes a connection whose next request's headers are not all in by
            # then, counted from the connection or the previous response (default: 1 h).
            keepalive_timeout=self.limits.header_timeout,
        )
        await runner.setup()
        try:
            if not self.port:
                self.port = self._allocate_free_port()  # rebinds must keep the port
            site = _GatedSite(
                runner,
                self.addr or None,
                self.port,
                ssl_context=context,
                gate=self._gate,
                handshake_timeout=self.limits.header_timeout,
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
        for path in (self.certfile, self.pkeyfile, self.cafile, self.verify_cafile):
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
