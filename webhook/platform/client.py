"""The Open API client: per-node limits, the resource-group list, center discovery.

Every request goes through :func:`call`, and every failure through :func:`translate`,
the one place that turns HTTP statuses, envelope codes and transport errors into the
hierarchy of :mod:`webhook.platform.errors` (always chained with ``from``). The client
owns no connection pool: it is handed one ``httpx.AsyncClient`` (keep-alive) and a
token provider, so tests pass a mock transport or point it at the simulator.

Idempotent GETs are retried on :class:`PlatformUnavailable` with full-jitter backoff,
all attempts inside one overall deadline: admission sits on the critical path of every
pod creation, so a slow platform must cost at most ``deadline`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import TypeAdapter, ValidationError

from webhook.config import PlatformSettings
from webhook.metrics import Metrics
from webhook.platform.errors import (
    MalformedResponse,
    PlatformAuthError,
    PlatformError,
    PlatformRejected,
    PlatformUnavailable,
    UnknownResourceGroup,
)
from webhook.platform.models import (
    AcceleratorType,
    CenterInfo,
    Envelope,
    ErrorCode,
    NodeLimits,
    ResourceGroupEntry,
)

__all__ = [
    "LIMITS_PATH",
    "RESOURCE_GROUPS_PATH",
    "Call",
    "PlatformClient",
    "TokenProvider",
    "ai_base",
    "call",
    "translate",
]

log = logging.getLogger(__name__)

LIMITS_PATH = "/ai/openapi/v2/instance-service/resources"
RESOURCE_GROUPS_PATH = "/ai/openapi/v2/instance-service/resource-group"
CENTER_PATH = "/ac/openapi/v2/center"

_TRANSIENT_CODES = frozenset({ErrorCode.INTERNAL, ErrorCode.CONNECTION_INTERRUPTED})
_AUTH_CODES = frozenset(
    {ErrorCode.ACCOUNT_FROZEN, ErrorCode.INSUFFICIENT_PERMISSION, ErrorCode.NO_API_ACCESS}
)
_BACKOFF_BASE = 0.05  # seconds; doubled per retry, full jitter (AWS architecture blog)
_BACKOFF_CAP = 0.5

T = TypeVar("T")
_GROUPS = TypeAdapter(tuple[ResourceGroupEntry, ...])


class TokenProvider(Protocol):
    """Where the ``token`` header comes from (implementations in :mod:`.auth`)."""

    async def token(self) -> str | None:
        """The current token, issued or renewed first if needed; None: send no header."""
        ...

    async def refresh(self, rejected: str | None) -> str | None:
        """The platform refused ``rejected``: get another (once per refusal, single-flight)."""
        ...


class Call:
    """One HTTP request to the platform, described without secrets in its repr."""

    __slots__ = ("endpoint", "headers", "method", "params", "resource_group", "url")

    def __init__(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        resource_group: str | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.endpoint = endpoint
        self.headers = dict(headers or {})
        self.params = dict(params or {})
        self.resource_group = resource_group

    def __repr__(self) -> str:  # headers hold tokens and keys: never shown
        return f"Call({self.method} {self.endpoint})"


def _code_label(code: str) -> str:
    # Metric labels are a closed set: an unexpected code from the wire becomes "other".
    return code if ErrorCode.lookup(code) is not None else "other"


def translate(
    call: Call,
    *,
    status: int | None = None,
    envelope: Envelope | None = None,
    exc: BaseException | None = None,
) -> PlatformError:
    """The one mapping from what happened to the error the caller sees.

    ``status`` is given for a non-2xx answer (with its ``envelope`` if the body was one),
    ``envelope`` alone for a 2xx answer whose ``code`` is not "0", ``exc`` for a
    transport error, a timeout or an unparseable body.
    """
    ep, rg = call.endpoint, call.resource_group
    if status is not None:
        # The HTTP status decides; an envelope in the error body only adds its words.
        text = f"platform {ep}: HTTP {status}"
        if envelope is not None:
            text += f", code {envelope.code}" + (f": {envelope.msg}" if envelope.msg else "")
        if status in (401, 403):
            return PlatformAuthError(text, code=f"http_{status}", endpoint=ep, resource_group=rg)
        if status >= 500 or status in (408, 429):
            return PlatformUnavailable(text, endpoint=ep, resource_group=rg)
        return PlatformRejected(text, code=f"http_{status}", endpoint=ep, resource_group=rg)
    if envelope is not None:
        code, msg = envelope.code, envelope.msg
        known = ErrorCode.lookup(code)
        meaning = known.meaning if known else "unknown platform error"
        text = f"platform {ep}: code {code} ({meaning})" + (f": {msg}" if msg else "")
        if known is ErrorCode.INVALID_PARAMETERS and rg is not None:
            text = (
                f'resource group "{rg}" is unknown to the platform (code {code}: {msg or meaning})'
            )
            return UnknownResourceGroup(text, code=code, msg=msg, endpoint=ep, resource_group=rg)
        if known in _AUTH_CODES:
            return PlatformAuthError(text, code=code, msg=msg, endpoint=ep, resource_group=rg)
        if known in _TRANSIENT_CODES:
            return PlatformUnavailable(text, endpoint=ep, resource_group=rg)
        return PlatformRejected(text, code=code, msg=msg, endpoint=ep, resource_group=rg)
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return PlatformUnavailable(
            f"platform {call.endpoint}: timed out", endpoint=ep, resource_group=rg
        )
    if isinstance(exc, httpx.TransportError):
        return PlatformUnavailable(
            f"platform {call.endpoint}: network error ({type(exc).__name__})",
            endpoint=ep,
            resource_group=rg,
        )
    detail = f": {exc}" if exc is not None else ""
    return MalformedResponse(
        f"platform {call.endpoint}: malformed answer{detail}", endpoint=ep, resource_group=rg
    )


def _envelope(response: httpx.Response) -> Envelope:
    body = json.loads(response.content)
    return Envelope.model_validate(body, strict=True)


def _maybe_envelope(response: httpx.Response) -> Envelope | None:
    try:
        return _envelope(response)
    except (ValueError, ValidationError):
        return None  # error pages are often HTML: the status alone has to do


async def call(
    http: httpx.AsyncClient,
    request: Call,
    metrics: Metrics,
    *,
    timeout: httpx.Timeout,
) -> Envelope:
    """One attempt: the envelope of a successful answer, or a :class:`PlatformError`."""
    return await call_parsed(http, request, metrics, timeout=timeout, parse=_itself)


def _itself(envelope: Envelope) -> Envelope:
    return envelope


async def call_parsed(
    http: httpx.AsyncClient,
    request: Call,
    metrics: Metrics,
    *,
    timeout: httpx.Timeout,
    parse: Callable[[Envelope], T],
) -> T:
    """One attempt whose successful envelope's ``data`` is read by ``parse``.

    ``parse`` raising :class:`MalformedResponse` counts the answer as ``malformed``, not
    ``ok``: an answer with unusable ``data`` is not a successful request.
    """
    started = time.perf_counter()
    outcome, code = "unavailable", ""
    try:
        try:
            response = await http.request(
                request.method,
                request.url,
                headers=request.headers,
                params=request.params or None,
                timeout=timeout,
            )
        except (httpx.HTTPError, TimeoutError) as exc:
            raise translate(request, exc=exc) from exc
        if not response.is_success:
            outcome, code = "http_error", f"http_{response.status_code}"
            raise translate(
                request, status=response.status_code, envelope=_maybe_envelope(response)
            )
        try:
            envelope = _envelope(response)
        except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
            outcome = "malformed"
            raise translate(request, exc=_short(exc)) from exc
        code = _code_label(envelope.code)
        if not envelope.ok:
            outcome = "rejected"
            raise translate(request, envelope=envelope)
        try:
            parsed = parse(envelope)
        except MalformedResponse:
            outcome = "malformed"
            raise
        outcome = "ok"
        return parsed
    finally:
        metrics.platform_requests.labels(request.endpoint, outcome, code).inc()
        metrics.platform_duration.labels(request.endpoint).observe(time.perf_counter() - started)


class _Short(Exception):
    """A parse error cut to its first line (pydantic errors run to many lines)."""


def _short(exc: Exception) -> _Short:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ValidationError):
        first = f"{exc.error_count()} validation error(s): " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:3]
        )
    return _Short(first)


def ai_base(url: str) -> str:
    """``{aiUrl}`` without a trailing ``/ai``, so ``/ai`` appears once in every full URL.

    The documentation's ``aiUrls`` entries end in ``/ai``; a configured base may not.
    """
    base = url.rstrip("/")
    return base[: -len("/ai")] if base.endswith("/ai") else base


def _validate(model: Callable[[Any], T], data: Any, request: Call) -> T:
    try:
        return model(data)
    except (ValueError, ValidationError) as exc:
        raise translate(request, exc=_short(exc)) from exc


class PlatformClient:
    """Reads limits and groups from the Open API; one instance per process."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: PlatformSettings,
        tokens: TokenProvider,
        metrics: Metrics,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self._settings = settings
        self._tokens = tokens
        self._metrics = metrics
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._base = ai_base(str(settings.base_url)) if settings.base_url else None
        self._discovery = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PlatformClient(base={self._base!r})"

    async def node_limits(self, group: str, accelerator: AcceleratorType) -> NodeLimits:
        """The per-node limits of ``group`` for ``accelerator``."""

        async def attempt(timeout: httpx.Timeout) -> NodeLimits:
            request = await self._ai_call(
                LIMITS_PATH,
                "resources",
                params={"resourceGroup": group, "acceleratorType": accelerator.value},
                resource_group=group,
            )

            def parse(envelope: Envelope) -> NodeLimits:
                if not isinstance(envelope.data, dict):
                    raise translate(request, exc=_Short("data is not an object"))
                data = {**envelope.data, "acceleratorType": accelerator.value}
                return _validate(NodeLimits.model_validate, data, request)

            return await self._authed(request, timeout, parse)

        return await self._retrying(attempt, group)

    async def resource_groups(self) -> tuple[ResourceGroupEntry, ...]:
        """Every resource group the account may use, with its type when the platform says."""

        async def attempt(timeout: httpx.Timeout) -> tuple[ResourceGroupEntry, ...]:
            request = await self._ai_call(RESOURCE_GROUPS_PATH, "resource-group")
            return await self._authed(
                request,
                timeout,
                lambda envelope: _validate(_GROUPS.validate_python, envelope.data, request),
            )

        return await self._retrying(attempt, None)

    async def _retrying(
        self, attempt: Callable[[httpx.Timeout], Awaitable[T]], group: str | None
    ) -> T:
        s = self._settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.deadline
        tries = 0
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    remaining = deadline - loop.time()
                    timeout = httpx.Timeout(
                        min(s.request_timeout, remaining),
                        connect=min(s.connect_timeout, remaining),
                    )
                    try:
                        return await attempt(timeout)
                    except PlatformUnavailable as exc:
                        tries += 1
                        if tries > s.retries:
                            raise
                        pause = self._rng.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**tries))
                        log.info("platform unavailable, retry %d in %.3fs: %s", tries, pause, exc)
                        await asyncio.sleep(pause)
        except TimeoutError as exc:
            raise PlatformUnavailable(
                f"platform did not answer within the {s.deadline:g}s deadline",
                endpoint="deadline",
                resource_group=group,
            ) from exc

    async def _authed(
        self, request: Call, timeout: httpx.Timeout, parse: Callable[[Envelope], T]
    ) -> T:
        """Send with the current token; on an auth refusal, refresh it once and resend."""
        token = await self._tokens.token()
        try:
            return await self._send(_with_token(request, token), timeout, parse)
        except PlatformAuthError:
            fresh = await self._tokens.refresh(token)
            if fresh is None or fresh == token:
                raise
            log.info("platform refused the token; retrying %s with a fresh one", request.endpoint)
            return await self._send(_with_token(request, fresh), timeout, parse)

    async def _send(
        self, request: Call, timeout: httpx.Timeout, parse: Callable[[Envelope], T]
    ) -> T:
        return await call_parsed(self._http, request, self._metrics, timeout=timeout, parse=parse)

    async def _ai_call(
        self,
        path: str,
        endpoint: str,
        *,
        params: Mapping[str, str] | None = None,
        resource_group: str | None = None,
    ) -> Call:
        base = self._base or await self._discover()
        return Call(
            "GET", base + path, endpoint=endpoint, params=params, resource_group=resource_group
        )

    async def _discover(self) -> str:
        """``{aiUrl}`` from the center: the first enabled ``aiUrls`` entry (single-flight)."""
        async with self._discovery:
            if self._base is not None:
                return self._base
            url = str(self._settings.center_url).rstrip("/") + CENTER_PATH
            request = Call("GET", url, endpoint="center")
            timeout = httpx.Timeout(
                self._settings.request_timeout, connect=self._settings.connect_timeout
            )

            def parse(envelope: Envelope) -> str:
                info = _validate(CenterInfo.model_validate, envelope.data, request)
                enabled = [u.url for u in info.aiUrls if u.enabled]
                usable = [u for u in enabled if _is_http_url(u)]
                if not usable:
                    what = "http(s) " if enabled else ""
                    raise translate(request, exc=_Short(f"no enabled {what}aiUrls entry"))
                return usable[0]

            self._base = ai_base(await self._authed(request, timeout, parse))
            log.info("discovered the AI service at %s", self._base)
            return self._base


def _is_http_url(url: str) -> bool:
    """An absolute http(s) URL with a host: the only kind of ``aiUrls`` entry we call.

    The token travels in a header to whatever the center names; a ``file:``, scheme-less
    or host-less entry is refused rather than handed to the HTTP client.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _with_token(request: Call, token: str | None) -> Call:
    if token is None:
        return request
    return Call(
        request.method,
        request.url,
        endpoint=request.endpoint,
        headers={**request.headers, "token": token},
        params=request.params,
        resource_group=request.resource_group,
    )
