"""Builds the limits cache with everything behind it, and closes it all on exit."""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable

import httpx

from webhook.config import PlatformSettings, Settings
from webhook.metrics import Metrics
from webhook.platform.auth import build_token_provider
from webhook.platform.cache import LimitsCache, LimitsSource
from webhook.platform.client import PlatformClient
from webhook.platform.static import StaticLimits
from webhook.platform.transport import timeout_of

__all__ = ["build_http_client", "build_limits_cache"]


def _verify(settings: PlatformSettings) -> ssl.SSLContext | bool:
    if not settings.verify_tls:
        return False
    if settings.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(settings.ca_bundle))
    return True


def build_http_client(settings: PlatformSettings) -> httpx.AsyncClient:
    """The one pooled HTTP/1.1 keep-alive client for every platform call."""
    return httpx.AsyncClient(
        verify=_verify(settings),
        timeout=timeout_of(settings),
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
        ),
        # Proxies come from settings only: a stray HTTPS_PROXY in a webhook pod would
        # silently reroute admission traffic.
        trust_env=False,
        follow_redirects=False,
    )


@contextlib.asynccontextmanager
async def build_limits_cache(
    settings: Settings,
    metrics: Metrics,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[LimitsCache]:
    """A :class:`LimitsCache` over the live API, or over ``platform.limits_file`` when set
    (the served static source and ``nodelimits check --limits-file`` alike).

    Everything built here (HTTP pool, token provider, cache tasks) is closed on exit.
    Raises :class:`~webhook.platform.static.LimitsFileError` for a bad limits file.
    """
    p = settings.platform
    if p.limits_file is not None:
        source: LimitsSource = StaticLimits.from_path(p.limits_file)
        cache = LimitsCache(source, settings.cache, metrics, deadline=p.deadline, clock=clock)
        try:
            yield cache
        finally:
            await cache.aclose()
        return
    async with build_http_client(p) as http:
        tokens = build_token_provider(p, http, metrics)
        client = PlatformClient(http, p, tokens, metrics)
        cache = LimitsCache(client, settings.cache, metrics, deadline=p.deadline, clock=clock)
        try:
            yield cache
        finally:
            await cache.aclose()
            await tokens.aclose()
