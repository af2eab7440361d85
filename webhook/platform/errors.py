"""Errors of the platform layer, by what the admission path must do about them.

::

    PlatformError                 .endpoint, .resource_group; never a token, header or long body
    ├── PlatformUnavailable       timeout, network, 5xx, 10001/10012 -> retry, stale, failureMode
    ├── PlatformRejected          envelope code != "0"; .code, .msg (e.g. 10003)
    │   ├── UnknownResourceGroup  10004 -> deny naming the group
    │   └── PlatformAuthError     10007/10008/10009, HTTP 401/403 -> deny, operator-facing reason
    ├── CredentialsError          nodelimits' own credentials are unusable: incomplete, an
    │                             unreadable secret or token file, no token for the region
    └── MalformedResponse         not JSON, or the envelope or ``data`` fails validation

These deliberately do not subclass ``httpx.HTTPError``: callers must not depend on the
HTTP library, and the originals are chained with ``from``.
"""

from __future__ import annotations

__all__ = [
    "CredentialsError",
    "LookupsThrottled",
    "MalformedResponse",
    "PlatformAuthError",
    "PlatformError",
    "PlatformRejected",
    "PlatformUnavailable",
    "UnknownResourceGroup",
]

_MAX_DETAIL = 200  # never echo a whole body (it may be an HTML page, or worse)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


class PlatformError(Exception):
    """Base of every platform failure. Its text is safe to log and to show a user."""

    def __init__(
        self, message: str, *, endpoint: str = "", resource_group: str | None = None
    ) -> None:
        super().__init__(_clip(message))
        self.endpoint = endpoint
        self.resource_group = resource_group


class PlatformUnavailable(PlatformError):
    """The platform could not answer now (timeout, network, HTTP 5xx, 10001, 10012)."""


class LookupsThrottled(PlatformUnavailable):
    """Too many lookups of groups nodelimits has no limits for (a flood of invented names):
    denied whatever the failure mode, since the platform itself is fine."""


class PlatformRejected(PlatformError):
    """The platform answered with an envelope ``code`` other than ``"0"``."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        msg: str | None = None,
        endpoint: str = "",
        resource_group: str | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, resource_group=resource_group)
        self.code = code
        self.msg = _clip(msg) if msg else msg


class UnknownResourceGroup(PlatformRejected):
    """10004: the resource group (or the accelerator type for it) does not exist."""


class PlatformAuthError(PlatformRejected):
    """10007/10008/10009 or HTTP 401/403: the account cannot read the limits."""


class CredentialsError(PlatformError):
    """nodelimits' own configuration cannot authenticate: credentials incomplete, a secret or
    token file unreadable or empty, or no usable token for the configured region. Local, not
    a refusal by the platform: no code, and the text says which setting or file to fix."""


class MalformedResponse(PlatformError):
    """The body is not JSON, or the envelope or its ``data`` fails validation."""
