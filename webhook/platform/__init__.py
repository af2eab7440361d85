"""The platform layer: Open API client, tokens, the limits cache, a static source.

The admission path, ``nodelimits check`` and ``nodelimits limits`` use one entry point::

    async with build_limits_cache(settings, metrics) as cache:
        cached = await cache.get("TeslaM40", AcceleratorType.GPU)

Errors (re-exported here) are the hierarchy of :mod:`webhook.platform.errors`.
"""

from __future__ import annotations

from webhook.platform.cache import CachedLimits, LimitsCache, LimitsSource
from webhook.platform.errors import (
    MalformedResponse,
    PlatformAuthError,
    PlatformError,
    PlatformRejected,
    PlatformUnavailable,
    UnknownResourceGroup,
)
from webhook.platform.factory import build_http_client, build_limits_cache

__all__ = [
    "CachedLimits",
    "LimitsCache",
    "LimitsSource",
    "MalformedResponse",
    "PlatformAuthError",
    "PlatformError",
    "PlatformRejected",
    "PlatformUnavailable",
    "UnknownResourceGroup",
    "build_http_client",
    "build_limits_cache",
]
