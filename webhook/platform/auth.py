"""Token providers: where the ``token`` header comes from.

- :class:`NoToken`: send none (the simulator without auth, or a proxy that adds it).
- :class:`FileToken`: a static token in a file (a mounted Secret), re-read when the file
  changes, because kubelet rotates Secret volumes in place.
- :class:`IssuedToken` with :class:`AkSkIssuer` (``POST {aksk_url}/api/user/v3/tokens``)
  or :class:`PasswordIssuer` (``POST {center_url}/ac/openapi/v2/tokens``): the region's
  token is picked by ``clusterId`` (never the platform token, clusterId 0), refreshed
  ``token_refresh_margin`` seconds before the JWT's ``expireTime`` via
  ``/ac/openapi/v2/tokens/next``, and issued afresh when renewal fails.

Secrets live in ``SecretStr`` or ``repr=False`` fields; no log line, exception text or
repr here ever contains a token, key or password (``tests/unit/platform/test_auth.py``
greps for them).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
from pydantic import SecretStr, TypeAdapter, ValidationError

from webhook.config import PlatformSettings, TokenSource
from webhook.metrics import Metrics
from webhook.platform.errors import (
    CredentialsError,
    MalformedResponse,
    PlatformError,
)
from webhook.platform.models import Envelope, RegionToken
from webhook.platform.transport import Call, call, translate

__all__ = [
    "AKSK_TOKENS_PATH",
    "NEXT_TOKEN_PATH",
    "PASSWORD_TOKENS_PATH",
    "AkSkCredentials",
    "AkSkIssuer",
    "FileToken",
    "IssuedToken",
    "NoToken",
    "PasswordCredentials",
    "PasswordIssuer",
    "aksk_signature",
    "build_token_provider",
    "pick_region_token",
    "token_expiry",
]

log = logging.getLogger(__name__)

AKSK_TOKENS_PATH = "/api/user/v3/tokens"
PASSWORD_TOKENS_PATH = "/ac/openapi/v2/tokens"  # noqa: S105 - a path
NEXT_TOKEN_PATH = "/ac/openapi/v2/tokens/next"  # noqa: S105 - a path
PLATFORM_CLUSTER_ID = "0"  # the platform-level token: useless for container APIs
RENEWABLE_AFTER_EXPIRY = 24 * 3600.0  # tokens/next works up to 24 h after expiry
RETRY_PAUSE_MIN, RETRY_PAUSE_MAX = 1.0, 30.0  # seconds between failed early refreshes
_REGIONS = TypeAdapter(tuple[RegionToken, ...])


# --- pure helpers ------------------------------------------------------------------------


def aksk_signature(*, access_key: str, secret_key: str, user: str, timestamp: str) -> str:
    """Hex HMAC-SHA256, keyed by the SK, over ``{"accessKey":…,"timestamp":…,"user":…}``.

    Compact JSON with the keys in that order; the timestamp is the same decimal string
    (seconds) sent in the ``timestamp`` header.
    """
    payload = json.dumps(
        {"accessKey": access_key, "timestamp": timestamp, "user": user},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hmac.new(secret_key.encode(), payload.encode(), hashlib.sha256).hexdigest()


def token_expiry(token: str) -> float | None:
    """The JWT's ``expireTime`` claim (ms epoch, a string) in seconds; None if absent.

    Decoded without verification: we only schedule our own refresh by it, the platform
    still checks the signature.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
        return int(str(claims["expireTime"])) / 1000.0
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def pick_region_token(entries: Iterable[RegionToken], cluster_id: str | None) -> str:
    """The token of region ``cluster_id``, or of the only usable region when None.

    Never the platform token (clusterId 0); regions whose token is null (the account is
    disabled there) are skipped. Raises :class:`CredentialsError` naming the regions.
    """
    usable = [e for e in entries if str(e.clusterId) != PLATFORM_CLUSTER_ID and e.token is not None]
    if cluster_id is not None:
        usable = [e for e in usable if str(e.clusterId) == cluster_id]
    if len(usable) == 1 and usable[0].token is not None:
        return usable[0].token
    offered = ", ".join(sorted(f"{e.clusterId} ({e.clusterName})" for e in usable)) or "none"
    wanted = f"clusterId {cluster_id}" if cluster_id else "exactly one region"
    raise CredentialsError(
        f"token response has no usable token for {wanted}; usable regions: {offered}"
        + ("" if cluster_id else " (set platform.cluster_id)"),
        endpoint="tokens",
    )


def _read_secret(directory: Path | None, name: str) -> str | None:
    if directory is None:
        return None
    try:
        return (directory / name).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(
            f"cannot read {name} from secret_dir {directory}: {exc.strerror}"
        ) from exc


# --- credentials -------------------------------------------------------------------------


def _user(s: PlatformSettings) -> str | None:
    return s.user or _read_secret(s.secret_dir, "user")


def _secret(s: PlatformSettings, value: SecretStr | None, file_name: str) -> SecretStr | None:
    """The setting, else the file of that name in ``secret_dir``, read now (it may rotate)."""
    if value is not None:
        return value
    text = _read_secret(s.secret_dir, file_name)
    return SecretStr(text) if text is not None else None


def _complete(kind: str, **parts: object) -> None:
    missing = [name for name, value in parts.items() if value is None]
    if missing:
        raise CredentialsError(
            f"{kind} credentials incomplete: need {', '.join(missing)} "
            "(settings or files in secret_dir)"
        )


@dataclass(frozen=True, slots=True)
class AkSkCredentials:
    user: str
    access_key: SecretStr = field(repr=False)
    secret_key: SecretStr = field(repr=False)

    @classmethod
    def from_settings(cls, s: PlatformSettings) -> AkSkCredentials:
        user = _user(s)
        ak = _secret(s, s.access_key, "accessKey")
        sk = _secret(s, s.secret_key, "secretKey")
        _complete("AK/SK", user=user, accessKey=ak, secretKey=sk)
        assert user is not None and ak is not None and sk is not None  # noqa: PT018
        return cls(user, ak, sk)


@dataclass(frozen=True, slots=True)
class PasswordCredentials:
    user: str
    password: SecretStr = field(repr=False)
    org_id: SecretStr = field(repr=False)

    @classmethod
    def from_settings(cls, s: PlatformSettings) -> PasswordCredentials:
        user = _user(s)
        password = _secret(s, s.password, "password")
        org_id = _secret(s, s.org_id, "orgId")
        _complete("password", user=user, password=password, orgId=org_id)
        assert user is not None and password is not None and org_id is not None  # noqa: PT018
        return cls(user, password, org_id)


# --- providers ---------------------------------------------------------------------------


class NoToken:
    """No ``token`` header at all."""

    async def token(self) -> str | None:
        return None

    async def refresh(self, rejected: str | None) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


class FileToken:
    """A token read from a file, re-read whenever the file's mtime, size or inode changes."""

    def __init__(self, path: Path, metrics: Metrics) -> None:
        self._path = path
        self._metrics = metrics
        self._stamp: tuple[int, int, int] | None = None
        self._token: SecretStr | None = None

    def __repr__(self) -> str:
        return f"FileToken({str(self._path)!r})"

    async def token(self) -> str | None:
        try:
            st = os.stat(self._path)
        except OSError as exc:
            raise CredentialsError(
                f"token file {self._path} cannot be read: {exc.strerror}"
            ) from exc
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp or self._token is None:
            self._load(stamp)
        return self._token.get_secret_value() if self._token else None

    async def refresh(self, rejected: str | None) -> str | None:
        # The file is the only source: re-read it (it may have changed within one mtime tick).
        self._stamp = None
        return await self.token()

    async def aclose(self) -> None:
        return None

    def _load(self, stamp: tuple[int, int, int]) -> None:
        try:
            text = self._path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialsError(
                f"token file {self._path} cannot be read: {type(exc).__name__}"
            ) from exc
        if not text:
            raise CredentialsError(f"token file {self._path} is empty")
        self._stamp, self._token = stamp, SecretStr(text)
        self._metrics.token_expiry.set(token_expiry(text) or 0)
        log.info("read the platform token from %s", self._path)


class Issuer(Protocol):
    """Issues a fresh set of region tokens (AK/SK or password)."""

    method: str

    async def issue(self, http: httpx.AsyncClient, metrics: Metrics) -> tuple[RegionToken, ...]: ...


def _timeout(s: PlatformSettings) -> httpx.Timeout:
    return httpx.Timeout(s.request_timeout, connect=s.connect_timeout)


def _regions(envelope: Envelope, request: Call) -> tuple[RegionToken, ...]:
    try:
        return _REGIONS.validate_python(envelope.data)
    except ValidationError as exc:
        raise translate(request, exc=ValueError("data is not a list of region tokens")) from exc


class AkSkIssuer:
    """``POST {aksk_url}/api/user/v3/tokens`` signed with the secret key."""

    method = "aksk"

    def __init__(self, settings: PlatformSettings, *, wall_clock: Callable[[], float] = time.time):
        self._settings = settings
        self._wall_clock = wall_clock

    def __repr__(self) -> str:
        return "AkSkIssuer()"

    async def issue(self, http: httpx.AsyncClient, metrics: Metrics) -> tuple[RegionToken, ...]:
        creds = AkSkCredentials.from_settings(self._settings)
        ak = creds.access_key.get_secret_value()
        timestamp = str(int(self._wall_clock()))
        signature = aksk_signature(
            access_key=ak,
            secret_key=creds.secret_key.get_secret_value(),
            user=creds.user,
            timestamp=timestamp,
        )
        request = Call(
            "POST",
            str(self._settings.aksk_url).rstrip("/") + AKSK_TOKENS_PATH,
            endpoint="tokens-aksk",
            headers={
                "user": creds.user,
                "accessKey": ak,
                "timestamp": timestamp,
                "signature": signature,
            },
        )
        envelope = await call(http, request, metrics, timeout=_timeout(self._settings))
        return _regions(envelope, request)


class PasswordIssuer:
    """``POST {center_url}/ac/openapi/v2/tokens`` with user, password and orgId headers."""

    method = "password"

    def __init__(self, settings: PlatformSettings) -> None:
        self._settings = settings

    def __repr__(self) -> str:
        return "PasswordIssuer()"

    async def issue(self, http: httpx.AsyncClient, metrics: Metrics) -> tuple[RegionToken, ...]:
        creds = PasswordCredentials.from_settings(self._settings)
        request = Call(
            "POST",
            str(self._settings.center_url).rstrip("/") + PASSWORD_TOKENS_PATH,
            endpoint="tokens-password",
            headers={
                "user": creds.user,
                "password": creds.password.get_secret_value(),
                "orgId": creds.org_id.get_secret_value(),
            },
        )
        envelope = await call(http, request, metrics, timeout=_timeout(self._settings))
        return _regions(envelope, request)


@dataclass(frozen=True, slots=True)
class _Held:
    value: SecretStr = field(repr=False)
    expires: float | None  # wall-clock seconds; None: the token carries no expireTime


class IssuedToken:
    """A region token from an :class:`Issuer`, renewed before it expires.

    One lock makes refreshes single-flight: N requests that find the token due wait for
    one renewal. Renewal uses ``tokens/next`` while the old token is renewable and falls
    back to issuing afresh; if both fail while the old token is still valid, the old one
    is kept (it works until ``expireTime``) and the refresh is tried again after a pause
    (1-30 s), not by every request. A refresh ahead of expiry costs the request that runs
    it at most ``request_timeout`` (a blackholed token endpoint must not stall admission).
    """

    def __init__(
        self,
        issuer: Issuer,
        http: httpx.AsyncClient,
        settings: PlatformSettings,
        metrics: Metrics,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuer = issuer
        self._http = http
        self._settings = settings
        self._metrics = metrics
        self._wall_clock = wall_clock
        self._held: _Held | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0  # wall clock: no refresh before this while the token is valid

    def __repr__(self) -> str:
        expires = self._held.expires if self._held else None
        return f"IssuedToken({self._issuer!r}, expires={expires})"

    def _due(self, held: _Held | None) -> bool:
        if held is None:
            return True
        if held.expires is None:
            return False
        now = self._wall_clock()
        if now < self._retry_at and now < held.expires:
            return False  # a refresh just failed; the token still works: keep it a while
        return now >= held.expires - self._settings.token_refresh_margin

    async def token(self) -> str | None:
        held = self._held
        if not self._due(held):
            assert held is not None
            return held.value.get_secret_value()
        async with self._lock:
            held = self._held
            if self._due(held):
                valid = held is not None and self._wall_clock() < (held.expires or 0.0)
                if valid and held is not None:
                    # Renewing ahead of expiry runs on the admission path: it may cost at
                    # most one request_timeout, however the platform fails.
                    self._held = await self._bounded_renewal(held)
                    return self._held.value.get_secret_value()
                self._held = await self._obtain(held, force=False)
            assert self._held is not None
            return self._held.value.get_secret_value()

    async def _bounded_renewal(self, held: _Held) -> _Held:
        try:
            async with asyncio.timeout(self._settings.request_timeout):
                return await self._obtain(held, force=False)
        except TimeoutError:
            self._metrics.token_refreshes.labels(self._issuer.method, "error").inc()
            self._keep(held)
            log.warning("token refresh timed out; the current token is valid until expiry")
            return held

    def _keep(self, held: _Held) -> None:
        """Keep a still-valid token after a failed refresh; retry after a pause, not at
        once (every admission request would otherwise pay for the failing refresh)."""
        now = self._wall_clock()
        left = (held.expires or now) - now
        self._retry_at = now + min(RETRY_PAUSE_MAX, max(RETRY_PAUSE_MIN, left / 10))

    async def refresh(self, rejected: str | None) -> str | None:
        async with self._lock:
            held = self._held
            if held is not None and held.value.get_secret_value() != rejected:
                return held.value.get_secret_value()  # someone else refreshed already
            self._held = await self._obtain(held, force=True)
            return self._held.value.get_secret_value()

    async def aclose(self) -> None:
        return None

    async def _obtain(self, old: _Held | None, *, force: bool) -> _Held:
        now = self._wall_clock()
        if old is not None and not force and self._renewable(old, now):
            try:
                return self._hold(await self._renew(old), "renew")
            except PlatformError as exc:
                self._metrics.token_refreshes.labels("renew", "error").inc()
                log.warning("token renewal failed, issuing a new token: %s", exc)
        try:
            regions = await self._issuer.issue(self._http, self._metrics)
            fresh = pick_region_token(regions, self._settings.cluster_id)
        except PlatformError:
            self._metrics.token_refreshes.labels(self._issuer.method, "error").inc()
            if old is not None and old.expires is not None and now < old.expires and not force:
                log.warning("token refresh failed; the current token is valid until expiry")
                self._keep(old)
                return old
            raise
        return self._hold(fresh, self._issuer.method)

    @staticmethod
    def _renewable(old: _Held, now: float) -> bool:
        return old.expires is None or now < old.expires + RENEWABLE_AFTER_EXPIRY

    def _hold(self, token: str, method: str) -> _Held:
        held = _Held(SecretStr(token), token_expiry(token))
        self._retry_at = 0.0
        self._metrics.token_refreshes.labels(method, "ok").inc()
        self._metrics.token_expiry.set(held.expires or 0)
        log.info("obtained a platform token by %s, expires at %s", method, held.expires)
        return held

    async def _renew(self, old: _Held) -> str:
        request = Call(
            "POST",
            str(self._settings.center_url).rstrip("/") + NEXT_TOKEN_PATH,
            endpoint="tokens-next",
            headers={"token": old.value.get_secret_value()},
        )
        envelope = await call(self._http, request, self._metrics, timeout=_timeout(self._settings))
        data = envelope.data
        # The renewal page documents "a new token"; accept it bare, in an object, or as
        # the same region array the issue endpoints return.
        if isinstance(data, str) and data:
            return data
        if isinstance(data, dict) and isinstance(data.get("token"), str):
            return str(data["token"])
        if isinstance(data, list):
            return pick_region_token(_regions(envelope, request), self._settings.cluster_id)
        raise MalformedResponse(
            "platform tokens-next: no token in the answer", endpoint="tokens-next"
        )


def build_token_provider(
    settings: PlatformSettings, http: httpx.AsyncClient, metrics: Metrics
) -> NoToken | FileToken | IssuedToken:
    """The provider ``settings.token_source`` asks for."""
    source = settings.token_source
    if source is TokenSource.FILE:
        assert settings.token_file is not None  # enforced by PlatformSettings
        return FileToken(settings.token_file, metrics)
    if source is TokenSource.AKSK:
        return IssuedToken(AkSkIssuer(settings), http, settings, metrics)
    if source is TokenSource.PASSWORD:
        return IssuedToken(PasswordIssuer(settings), http, settings, metrics)
    return NoToken()
