"""Token providers: signature, JWT expiry, region choice, file re-reading, refresh, secrecy."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.platform_helpers import ACCOUNT, envelope, platform_settings
from webhook.metrics import Metrics
from webhook.platform import auth
from webhook.platform.auth import (
    AkSkCredentials,
    AkSkIssuer,
    FileToken,
    IssuedToken,
    PasswordCredentials,
    PasswordIssuer,
    aksk_signature,
    pick_region_token,
    token_expiry,
)
from webhook.platform.errors import CredentialsError, PlatformAuthError, PlatformError
from webhook.platform.models import RegionToken

URL = "https://platform.example.test"
NOW = 1_700_000_000.0
CLUSTER = "11112"


def jwt(expires_at: float, cluster_id: str = CLUSTER, serial: int = 0) -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {"expireTime": str(int(expires_at * 1000)), "clusterId": cluster_id, "n": serial}
    return f"{b64({'alg': 'HS256'})}.{b64(claims)}.c2ln"


def regions(token: str | None) -> list[dict[str, Any]]:
    return [
        {"clusterId": "0", "clusterName": "ac", "token": jwt(NOW + 9999, "0")},
        {"clusterId": CLUSTER, "clusterName": "kunshan", "token": token},
    ]


class Platform:
    """A scripted token service behind httpx.MockTransport; records every request."""

    def __init__(self, clock: Callable[[], float], lifetime: float = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.requests: list[httpx.Request] = []
        self.renewal_fails = False
        self.issue_fails = False
        self.issued = 0

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await asyncio.sleep(0.01)  # long enough for concurrent callers to pile up
        self.issued += 1
        token = jwt(self.clock() + self.lifetime, serial=self.issued)
        if request.url.path.endswith("/tokens/next"):
            if self.renewal_fails:
                return httpx.Response(200, json=envelope(None, code="10001"))
            return httpx.Response(200, json=envelope(token))
        if self.issue_fails:
            return httpx.Response(401, json=envelope(None, code="10008", msg="bad credentials"))
        return httpx.Response(200, json=envelope(regions(token)))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def platform(clock: Clock) -> Platform:
    return Platform(clock)


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(platform)) as client:
        yield client


def issued(
    http: httpx.AsyncClient, clock: Clock, metrics: Metrics | None = None, **settings: Any
) -> IssuedToken:
    s = platform_settings(URL, token_refresh_margin=300, **settings)
    return IssuedToken(
        AkSkIssuer(s, wall_clock=clock), http, s, metrics or Metrics(), wall_clock=clock
    )


# --- pure helpers ------------------------------------------------------------------------


def test_signature_is_hex_hmac_sha256_of_compact_json_keyed_by_sk() -> None:
    message = b'{"accessKey":"AK","timestamp":"1700000000","user":"u"}'
    expected = hmac.new(b"SK", message, hashlib.sha256).hexdigest()
    assert aksk_signature(access_key="AK", secret_key="SK", user="u", timestamp="1700000000") == (
        expected
    )


def test_token_expiry_reads_the_ms_expire_time_claim() -> None:
    assert token_expiry(jwt(NOW + 60)) == NOW + 60


@pytest.mark.parametrize("token", ["opaque-token", "a.b.c", "a.e30.c"], ids=str)
def test_token_without_readable_expiry_has_none(token: str) -> None:
    assert token_expiry(token) is None


def test_region_token_is_picked_by_cluster_id() -> None:
    entries = [RegionToken(clusterId="1", token="t1"), RegionToken(clusterId="2", token="t2")]
    assert pick_region_token(entries, "2") == "t2"


def test_platform_token_is_never_picked() -> None:
    entries = [RegionToken(clusterId=0, token="platform"), RegionToken(clusterId="1", token="t")]
    assert pick_region_token(entries, None) == "t"
    with pytest.raises(CredentialsError):
        pick_region_token(entries, "0")


def test_region_with_null_token_is_skipped() -> None:
    entries = [RegionToken(clusterId="1", token=None), RegionToken(clusterId="2", token="t")]
    assert pick_region_token(entries, None) == "t"


def test_several_regions_without_cluster_id_is_an_error_naming_them() -> None:
    entries = [
        RegionToken(clusterId="1", clusterName="a", token="x"),
        RegionToken(clusterId="2", clusterName="b", token="y"),
    ]
    with pytest.raises(CredentialsError, match=r"1 \(a\), 2 \(b\).*cluster_id"):
        pick_region_token(entries, None)


# --- credentials -------------------------------------------------------------------------


def test_credentials_come_from_the_secret_dir(tmp_path: Path) -> None:
    for name, value in {"user": "u", "accessKey": "AK", "secretKey": "SK"}.items():
        (tmp_path / name).write_text(value + "\n")
    s = platform_settings(URL, user=None, access_key=None, secret_key=None, secret_dir=tmp_path)
    creds = AkSkCredentials.from_settings(s)
    assert (creds.user, creds.access_key.get_secret_value()) == ("u", "AK")


def test_incomplete_credentials_name_what_is_missing(tmp_path: Path) -> None:
    s = platform_settings(
        URL, token_source="password", user=None, password=None, org_id=None, secret_dir=tmp_path
    )
    with pytest.raises(CredentialsError, match="need user, password, orgId"):
        PasswordCredentials.from_settings(s)


# --- file token --------------------------------------------------------------------------


async def test_file_token_is_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("token-a\n")
    assert await FileToken(path, Metrics()).token() == "token-a"


async def test_file_token_is_re_read_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("token-a")
    provider = FileToken(path, Metrics())
    await provider.token()
    path.write_text("token-bb")
    assert await provider.token() == "token-bb"


async def test_missing_token_file_is_a_credentials_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="cannot be read"):
        await FileToken(tmp_path / "absent", Metrics()).token()


async def test_empty_token_file_is_a_credentials_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    with pytest.raises(CredentialsError, match="empty"):
        await FileToken(tmp_path / "token", Metrics()).token()


async def test_file_token_expiry_is_exported(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(jwt(NOW + 60))
    metrics = Metrics()
    await FileToken(tmp_path / "token", metrics).token()
    assert metrics.token_expiry._value.get() == NOW + 60


# --- issued tokens -----------------------------------------------------------------------


async def test_aksk_issue_sends_user_key_timestamp_and_valid_signature(
    http: httpx.AsyncClient, platform: Platform, clock: Clock
) -> None:
    await issued(http, clock).token()
    h = platform.requests[0].headers
    assert platform.requests[0].url.path == "/api/user/v3/tokens"
    assert (h["user"], h["accessKey"], h["timestamp"]) == (
        ACCOUNT.user,
        ACCOUNT.accessKey,
        "1700000000",
    )
    assert ACCOUNT.secretKey is not None
    assert h["signature"] == aksk_signature(
        access_key=h["accessKey"],
        secret_key=ACCOUNT.secretKey,
        user=h["user"],
        timestamp=h["timestamp"],
    )


async def test_password_issue_sends_user_password_and_org_id(
    http: httpx.AsyncClient, platform: Platform, clock: Clock
) -> None:
    s = platform_settings(URL, token_source="password")
    await IssuedToken(PasswordIssuer(s), http, s, Metrics(), wall_clock=clock).token()
    h = platform.requests[0].headers
    assert platform.requests[0].url.path == "/ac/openapi/v2/tokens"
    assert (h["user"], h["password"], h["orgId"]) == (ACCOUNT.user, ACCOUNT.password, ACCOUNT.orgId)


async def test_region_token_is_used_not_the_platform_token(
    http: httpx.AsyncClient, clock: Clock
) -> None:
    token = await issued(http, clock).token()
    assert token is not None
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["clusterId"] == CLUSTER


async def test_valid_token_is_reused(
    http: httpx.AsyncClient, platform: Platform, clock: Clock
) -> None:
    provider = issued(http, clock)
    first = await provider.token()
    clock.now += 3000  # still 600 s before expiry, outside the 300 s margin
    assert await provider.token() == first
    assert len(platform.requests) == 1


async def test_token_inside_the_margin_is_renewed_by_tokens_next(
    http: httpx.AsyncClient, platform: Platform, clock: Clock
) -> None:
    provider = issued(http, clock)
    old = await provider.token()
    clock.now += 3400  # 200 s before expiry
    new = await provider.token()
    assert new != old
    assert platform.paths()[-1] == "/ac/openapi/v2/tokens/next"
    assert platform.requests[-1].headers["token"] == old


async def test_failed_renewal_falls_back_to_a_fresh_issue(
    http: httpx.AsyncClient, platform: Platform, clock: Clock
) -> None:
    provider = issued(http, clock)
    await provider.token()
    platform.renewal_fails = True
    clock.now += 3400
    await provider.token()
    assert platform.paths()[-2:] == ["/ac/openapi/v2/tokens/next", "/api/user/v3/tokens"]


async def test_still_valid_token_is_kept_when_every_refresh_fails(
    http: httpx.AsyncClient, platform: Platform, clock: Clock
) -> None:
    provider = issued(http, clock)
    old = await provider.token()
    platform.renewal_fails = platform.issue_fails = True
    clock.now += 3400
    assert await provider.token() == old


async def test_concurrent_callers_share_one_issue(
    http: httpx.AsyncClient, platform: Platform, clock: Clock
) -> None:
    provider = issued(http, clock)
    tokens = await asyncio.gather(*(provider.token() for _ in range(20)))
    assert len(set(tokens)) == 1
    assert len(platform.requests) == 1


async def test_refresh_after_rejection_issues_afresh(
    http: httpx.AsyncClient, platform: Platform, clock: Clock
) -> None:
    provider = issued(http, clock)
    old = await provider.token()
    assert await provider.refresh(old) != old
    assert platform.paths()[-1] == "/api/user/v3/tokens"


async def test_refresh_of_an_already_replaced_token_makes_no_call(
    http: httpx.AsyncClient, platform: Platform, clock: Clock
) -> None:
    provider = issued(http, clock)
    await provider.token()
    current = await provider.refresh("an-older-token")
    assert current == await provider.token()
    assert len(platform.requests) == 1


async def test_token_expiry_and_refresh_outcome_are_exported(
    http: httpx.AsyncClient, clock: Clock
) -> None:
    metrics = Metrics()
    await issued(http, clock, metrics).token()
    assert metrics.token_expiry._value.get() == NOW + 3600
    sample = metrics.registry.get_sample_value
    assert sample("nodelimits_token_refresh_total", {"method": "aksk", "outcome": "ok"}) == 1


async def test_rejected_credentials_are_an_auth_error(
    http: httpx.AsyncClient, platform: Platform, clock: Clock
) -> None:
    platform.issue_fails = True
    with pytest.raises(PlatformAuthError, match="bad credentials"):
        await issued(http, clock).token()


# --- secrecy -----------------------------------------------------------------------------


async def test_no_secret_appears_in_any_repr_message_or_log(
    http: httpx.AsyncClient,
    platform: Platform,
    clock: Clock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    s = platform_settings(URL)
    token = await (provider := issued(http, clock)).token()
    assert token is not None
    platform.issue_fails = True
    errors: list[BaseException] = []
    try:
        await provider.refresh(token)
    except PlatformError as exc:
        errors.append(exc)
    (tmp_path / "token").write_text(token)
    file_token = FileToken(tmp_path / "token", Metrics())
    await file_token.token()
    objects: list[object] = [
        s,
        provider,
        file_token,
        AkSkCredentials.from_settings(s),
        PasswordCredentials.from_settings(s),
        AkSkIssuer(s),
        PasswordIssuer(s),
        auth.build_token_provider(s, http, Metrics()),
        *errors,
    ]
    assert errors
    text = "\n".join([*(repr(o) for o in objects), *(str(o) for o in objects), caplog.text])
    for secret in (token, ACCOUNT.accessKey, ACCOUNT.secretKey, ACCOUNT.password, ACCOUNT.orgId):
        assert secret is not None
        assert secret not in text


async def test_failed_early_refresh_is_not_retried_by_every_request(
    http: httpx.AsyncClient, platform: Platform, clock: Clock
) -> None:
    provider = issued(http, clock)
    old = await provider.token()
    platform.renewal_fails = platform.issue_fails = True
    clock.now += 3400  # inside the margin, still valid
    assert await provider.token() == old
    calls = len(platform.requests)
    assert await provider.token() == old
    assert len(platform.requests) == calls  # pausing, not hammering the platform
    clock.now += 31  # after the pause: tried again
    platform.renewal_fails = False
    assert await provider.token() != old


async def test_early_refresh_of_a_valid_token_costs_at_most_one_request_timeout(
    clock: Clock,
) -> None:
    calls = 0

    async def first_issue_then_blackhole(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls > 1:
            await asyncio.sleep(30)
        return httpx.Response(200, json=envelope(regions(jwt(clock() + 3600))))

    transport = httpx.MockTransport(first_issue_then_blackhole)
    async with httpx.AsyncClient(transport=transport) as client:
        provider = issued(client, clock, request_timeout=0.2)
        old = await provider.token()
        clock.now += 3400  # inside the margin, still valid for 200 s
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(*(provider.token() for _ in range(5)))
        assert loop.time() - started < 0.5  # one bounded attempt, not five in a row
        assert set(results) == {old}
