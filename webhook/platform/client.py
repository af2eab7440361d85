"""The Open API client: per-node limits, the resource-group list, center discovery.

Every request goes through :mod:`webhook.platform.transport` (``call_parsed`` and
``translate``: one request, and the one mapping of failures to errors). The client
owns no connection pool: it is handed one ``httpx.AsyncClient`` (keep-alive) and a
token provider, so tests pass a mock transport or point it at the simulator.

Idempotent GETs are retried on :class:`PlatformUnavailable` with full-jitter backoff,
all attempts inside one overall deadline: admission sits on the critical path of every
pod creation, so a slow platform must cost at most ``deadline`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import TypeAdapter, ValidationError

from webhook.config import PlatformSettings
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.metrics import Metrics
from webhook.platform.errors import (
    PlatformAuthError,
    PlatformUnavailable,
)
from webhook.platform.models import CenterInfo, Envelope, ResourceGroupEntry
from webhook.platform.transport import (
    Call,
    ShortError,
    call_parsed,
    short,
    timeout_of,
    translate,
)

__all__ = [
    "LIMITS_PATH",
    "RESOURCE_GROUPS_PATH",
    "PlatformClient",
    "TokenProvider",
    "ai_base",
]

log = logging.getLogger(__name__)

LIMITS_PATH = "/ai/openapi/v2/instance-service/resources"
RESOURCE_GROUPS_PATH = "/ai/openapi/v2/instance-service/resource-group"
CENTER_PATH = "/ac/openapi/v2/center"

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
        raise translate(request, exc=short(exc)) from exc


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
                    raise translate(request, exc=ShortError("data is not an object"))
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
                    timeout = timeout_of(s, remaining)
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
            timeout = timeout_of(self._settings)

            def parse(envelope: Envelope) -> str:
                info = _validate(CenterInfo.model_validate, envelope.data, request)
                enabled = [u.url for u in info.aiUrls if u.enabled]
                usable = [u for u in enabled if _is_http_url(u)]
                if not usable:
                    what = "http(s) " if enabled else ""
                    raise translate(request, exc=ShortError(f"no enabled {what}aiUrls entry"))
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
