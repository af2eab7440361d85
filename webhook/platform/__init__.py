"""The platform layer: Open API client, tokens, the limits cache, a static source.

The admission path and ``nodelimits check --live`` use one entry point::

    async with build_limits_cache(settings, metrics) as cache:
        cached = await cache.get("TeslaM40", AcceleratorType.GPU)

Errors (re-exported here) are the hierarchy of :mod:`webhook.platform.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from webhook.platform.errors import (
    MalformedResponse,
    PlatformAuthError,
    PlatformError,
    PlatformRejected,
    PlatformUnavailable,
    UnknownResourceGroup,
)

if TYPE_CHECKING:
    from webhook.platform.cache import CachedLimits, LimitsCache
    from webhook.platform.factory import build_http_client, build_limits_cache

__all__ = [
    "CachedLimits",
    "LimitsCache",
    "MalformedResponse",
    "PlatformAuthError",
    "PlatformError",
    "PlatformRejected",
    "PlatformUnavailable",
    "UnknownResourceGroup",
    "build_http_client",
    "build_limits_cache",
]

# webhook.config imports webhook.platform.models, so this package must not import
# config-dependent modules eagerly: they are loaded on first use (PEP 562).
_LAZY = {
    "CachedLimits": "webhook.platform.cache",
    "LimitsCache": "webhook.platform.cache",
    "build_http_client": "webhook.platform.factory",
    "build_limits_cache": "webhook.platform.factory",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
