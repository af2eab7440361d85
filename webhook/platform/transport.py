"""One HTTP request to the platform, and the one mapping of what happened to an error.

Every request goes through :func:`call` (or :func:`call_parsed`), and every failure through
:func:`translate`, the one place that turns HTTP statuses, envelope codes and transport
errors into the hierarchy of :mod:`webhook.platform.errors` (always chained with ``from``).
Shared by the limits client and the token issuers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

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
from webhook.platform.models import Envelope, ErrorCode

__all__ = [
    "Call",
    "ShortError",
    "call",
    "call_parsed",
    "short",
    "timeout_of",
    "translate",
]

_TRANSIENT_CODES = frozenset({ErrorCode.INTERNAL, ErrorCode.CONNECTION_INTERRUPTED})
_AUTH_CODES = frozenset(
    {ErrorCode.ACCOUNT_FROZEN, ErrorCode.INSUFFICIENT_PERMISSION, ErrorCode.NO_API_ACCESS}
)

T = TypeVar("T")


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


def _shown_url(url: str) -> str:
    """``url`` as an error may show it: scheme, host, port and path; never the user
    information (``user:password@``), the query (signatures, tokens) or the fragment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


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
            f"platform {call.endpoint}: timed out calling {_shown_url(call.url)}",
            endpoint=ep,
            resource_group=rg,
        )
    if isinstance(exc, httpx.TransportError):
        return PlatformUnavailable(
            f"platform {call.endpoint}: network error ({type(exc).__name__}) calling "
            f"{_shown_url(call.url)}",
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
            raise translate(request, exc=short(exc)) from exc
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


class ShortError(Exception):
    """A parse error cut to its first line (pydantic errors run to many lines)."""


def short(exc: Exception) -> ShortError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ValidationError):
        first = f"{exc.error_count()} validation error(s): " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:3]
        )
    return ShortError(first)


def timeout_of(settings: PlatformSettings, remaining: float | None = None) -> httpx.Timeout:
    """The per-attempt timeout: the configured one, cut to ``remaining`` seconds if given."""
    read, connect = settings.request_timeout, settings.connect_timeout
    if remaining is not None:
        read, connect = min(read, remaining), min(connect, remaining)
    return httpx.Timeout(read, connect=connect)
