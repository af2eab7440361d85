"""PlatformClient over a mocked transport (respx): URLs, success rule, error mapping, retries."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

from tests.platform_helpers import envelope, limits_data, platform_settings
from webhook.core.limits import AcceleratorType
from webhook.metrics import Metrics
from webhook.platform.client import PlatformClient, ai_base
from webhook.platform.errors import (
    MalformedResponse,
    PlatformAuthError,
    PlatformError,
    PlatformRejected,
    PlatformUnavailable,
    UnknownResourceGroup,
)
from webhook.platform.transport import Call, translate

BASE = "https://ai.example.test"
LIMITS_URL = f"{BASE}/ai/openapi/v2/instance-service/resources"
GROUPS_URL = f"{BASE}/ai/openapi/v2/instance-service/resource-group"
CENTER = "https://center.example.test"
GPU = AcceleratorType.GPU


class FakeTokens:
    """Hands out token-1, then token-2 after a refresh; counts refreshes."""

    def __init__(self) -> None:
        self.current = "token-1"
        self.refreshes = 0

    async def token(self) -> str | None:
        return self.current

    async def refresh(self, rejected: str | None) -> str | None:
        self.refreshes += 1
        self.current = f"token-{self.refreshes + 1}"
        return self.current


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make_client(
    http: httpx.AsyncClient, tokens: FakeTokens | None = None, **settings: Any
) -> PlatformClient:
    values: dict[str, Any] = {"base_url": f"{BASE}/ai", "token_source": "none", **settings}
    return PlatformClient(
        http, platform_settings(CENTER, **values), tokens or FakeTokens(), Metrics()
    )


def answer(body: Any = None, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=envelope(limits_data()) if body is None else body)


# --- requests ----------------------------------------------------------------------------


@respx.mock
async def test_limits_request_carries_group_type_and_token(http: httpx.AsyncClient) -> None:
    route = respx.get(LIMITS_URL).mock(return_value=answer())
    await make_client(http).node_limits("TeslaM40", GPU)
    request = route.calls.last.request
    assert request.url.params["resourceGroup"] == "TeslaM40"
    assert request.url.params["acceleratorType"] == "gpu"
    assert request.headers["token"] == "token-1"


@respx.mock
async def test_limits_carry_the_requested_accelerator_type(http: httpx.AsyncClient) -> None:
    respx.get(LIMITS_URL).mock(return_value=answer())
    limits = await make_client(http).node_limits("TeslaM40", AcceleratorType.DCU)
    assert limits.acceleratorType is AcceleratorType.DCU
    assert limits.gpuNumber == 2


@pytest.mark.parametrize("base", [BASE, f"{BASE}/", f"{BASE}/ai", f"{BASE}/ai/"])
def test_ai_appears_exactly_once_whatever_the_base(base: str) -> None:
    assert ai_base(base) + "/ai/openapi" == f"{BASE}/ai/openapi"


@respx.mock
async def test_resource_groups_are_parsed(http: httpx.AsyncClient) -> None:
    groups = [{"resourceGroup": "TeslaM40", "acceleratorType": "gpu"}, {"resourceGroup": "x"}]
    respx.get(GROUPS_URL).mock(return_value=answer(envelope(groups)))
    entries = await make_client(http).resource_groups()
    assert [(e.resourceGroup, e.acceleratorType) for e in entries] == [
        ("TeslaM40", GPU),
        ("x", None),
    ]


# --- center discovery --------------------------------------------------------------------


def center_answer(*entries: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=envelope({"aiUrls": list(entries)}))


@respx.mock
async def test_center_discovery_uses_the_enabled_ai_url(http: httpx.AsyncClient) -> None:
    respx.get(f"{CENTER}/ac/openapi/v2/center").mock(
        return_value=center_answer(
            {"enable": "false", "url": "https://off.example.test/ai"},
            {"enable": "true", "url": f"{BASE}/ai"},
        )
    )
    route = respx.get(LIMITS_URL).mock(return_value=answer())
    await make_client(http, base_url=None).node_limits("TeslaM40", GPU)
    assert str(route.calls.last.request.url).startswith(LIMITS_URL)


@respx.mock
async def test_center_is_asked_once_for_many_lookups(http: httpx.AsyncClient) -> None:
    center = respx.get(f"{CENTER}/ac/openapi/v2/center").mock(
        return_value=center_answer({"enable": "true", "url": BASE})
    )
    respx.get(LIMITS_URL).mock(return_value=answer())
    client = make_client(http, base_url=None)
    await asyncio.gather(*(client.node_limits("TeslaM40", GPU) for _ in range(5)))
    assert center.call_count == 1


@respx.mock
async def test_center_without_enabled_ai_url_is_malformed(http: httpx.AsyncClient) -> None:
    respx.get(f"{CENTER}/ac/openapi/v2/center").mock(
        return_value=center_answer({"enable": "false", "url": BASE})
    )
    with pytest.raises(MalformedResponse, match="no enabled aiUrls"):
        await make_client(http, base_url=None).node_limits("TeslaM40", GPU)


# --- error mapping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        pytest.param("10003", PlatformRejected, id="10003-missing-parameters"),
        pytest.param("10007", PlatformAuthError, id="10007-frozen"),
        pytest.param("10008", PlatformAuthError, id="10008-permission"),
        pytest.param("10009", PlatformAuthError, id="10009-api-access"),
        pytest.param("10001", PlatformUnavailable, id="10001-internal"),
        pytest.param("10012", PlatformUnavailable, id="10012-interrupted"),
        pytest.param("716020", PlatformRejected, id="unknown-code"),
    ],
)
@respx.mock
async def test_envelope_codes_map_to_error_classes(
    http: httpx.AsyncClient, code: str, error: type[PlatformError]
) -> None:
    respx.get(LIMITS_URL).mock(return_value=answer(envelope(None, code=code, msg="m")))
    with pytest.raises(error) as caught:
        await make_client(http, retries=0).node_limits("TeslaM40", GPU)
    assert type(caught.value) is error


@respx.mock
async def test_unknown_group_names_the_group(http: httpx.AsyncClient) -> None:
    respx.get(LIMITS_URL).mock(return_value=answer(envelope(None, code="10004", msg="参数无效")))
    with pytest.raises(UnknownResourceGroup, match='resource group "Nope"') as caught:
        await make_client(http).node_limits("Nope", GPU)
    assert caught.value.resource_group == "Nope"
    assert caught.value.code == "10004"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, PlatformAuthError),
        (403, PlatformAuthError),
        (500, PlatformUnavailable),
        (502, PlatformUnavailable),
        (503, PlatformUnavailable),
        (404, PlatformRejected),
    ],
    ids=str,
)
@respx.mock
async def test_http_statuses_map_to_error_classes(
    http: httpx.AsyncClient, status: int, error: type[PlatformError]
) -> None:
    respx.get(LIMITS_URL).mock(return_value=httpx.Response(status, text="<html>no</html>"))
    with pytest.raises(error):
        await make_client(http, retries=0).node_limits("TeslaM40", GPU)


@respx.mock
async def test_http_error_with_an_envelope_body_names_its_code(http: httpx.AsyncClient) -> None:
    body = envelope(None, code="10008", msg="token expired")
    respx.get(LIMITS_URL).mock(return_value=httpx.Response(403, json=body))
    with pytest.raises(PlatformAuthError, match="HTTP 403, code 10008: token expired"):
        await make_client(http).node_limits("TeslaM40", GPU)


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(httpx.Response(200, json=envelope(limits_data(), code=0)), id="numeric-code"),
        pytest.param(httpx.Response(200, json=envelope(None)), id="data-null"),
        pytest.param(
            httpx.Response(200, json=envelope(limits_data(cpuNumber="40"))), id="wrong-types"
        ),
        pytest.param(httpx.Response(200, json=envelope([limits_data()])), id="data-a-list"),
        pytest.param(httpx.Response(200, html="<html>502 Bad Gateway</html>"), id="html-page"),
        pytest.param(httpx.Response(200, text='{"code": "0", "da'), id="truncated-json"),
        pytest.param(httpx.Response(200, json=["code", "0"]), id="not-an-object"),
        pytest.param(httpx.Response(200, json={"msg": "no code"}), id="no-code"),
    ],
)
@respx.mock
async def test_garbage_bodies_are_malformed(http: httpx.AsyncClient, response: Any) -> None:
    route = respx.get(LIMITS_URL).mock(return_value=response)
    with pytest.raises(MalformedResponse, match="malformed answer"):
        await make_client(http).node_limits("TeslaM40", GPU)
    assert route.call_count == 1  # garbage is not retried: it will not improve


@respx.mock
async def test_malformed_error_chains_the_parse_error(http: httpx.AsyncClient) -> None:
    respx.get(LIMITS_URL).mock(return_value=httpx.Response(200, text="{trunc"))
    with pytest.raises(MalformedResponse) as caught:
        await make_client(http).node_limits("TeslaM40", GPU)
    assert caught.value.__cause__ is not None


@respx.mock
async def test_network_error_is_unavailable_and_chained(http: httpx.AsyncClient) -> None:
    respx.get(LIMITS_URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(PlatformUnavailable, match="network error") as caught:
        await make_client(http, retries=0).node_limits("TeslaM40", GPU)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


@respx.mock
async def test_timeout_is_unavailable(http: httpx.AsyncClient) -> None:
    respx.get(LIMITS_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(PlatformUnavailable, match="timed out"):
        await make_client(http, retries=0).node_limits("TeslaM40", GPU)


def test_platform_errors_are_not_httpx_errors() -> None:
    assert not issubclass(PlatformError, httpx.HTTPError)


# --- retries and the deadline ------------------------------------------------------------


@respx.mock
async def test_transient_failures_are_retried_until_success(http: httpx.AsyncClient) -> None:
    route = respx.get(LIMITS_URL).mock(
        side_effect=[httpx.Response(503), answer(envelope(None, code="10001")), answer()]
    )
    limits = await make_client(http, retries=2).node_limits("TeslaM40", GPU)
    assert limits.cpuNumber == 40
    assert route.call_count == 3


@respx.mock
async def test_retries_are_bounded(http: httpx.AsyncClient) -> None:
    route = respx.get(LIMITS_URL).mock(return_value=httpx.Response(503))
    with pytest.raises(PlatformUnavailable):
        await make_client(http, retries=2).node_limits("TeslaM40", GPU)
    assert route.call_count == 3


@respx.mock
async def test_rejections_are_not_retried(http: httpx.AsyncClient) -> None:
    route = respx.get(LIMITS_URL).mock(return_value=answer(envelope(None, code="10003")))
    with pytest.raises(PlatformRejected):
        await make_client(http, retries=2).node_limits("TeslaM40", GPU)
    assert route.call_count == 1


@respx.mock
async def test_slow_platform_fails_within_the_deadline(http: httpx.AsyncClient) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return answer()

    respx.get(LIMITS_URL).mock(side_effect=slow)
    client = make_client(http, deadline=0.3, request_timeout=10.0, retries=5)
    started = time.monotonic()
    with pytest.raises(PlatformUnavailable, match="deadline"):
        await client.node_limits("TeslaM40", GPU)
    assert time.monotonic() - started < 0.6


# --- tokens ------------------------------------------------------------------------------


@respx.mock
async def test_refused_token_is_refreshed_once_and_the_request_resent(
    http: httpx.AsyncClient,
) -> None:
    route = respx.get(LIMITS_URL).mock(side_effect=[httpx.Response(401), answer()])
    tokens = FakeTokens()
    await make_client(http, tokens).node_limits("TeslaM40", GPU)
    assert tokens.refreshes == 1
    assert route.calls.last.request.headers["token"] == "token-2"


@respx.mock
async def test_token_refused_twice_is_an_auth_error(http: httpx.AsyncClient) -> None:
    route = respx.get(LIMITS_URL).mock(return_value=httpx.Response(401))
    tokens = FakeTokens()
    with pytest.raises(PlatformAuthError):
        await make_client(http, tokens).node_limits("TeslaM40", GPU)
    assert (tokens.refreshes, route.call_count) == (1, 2)


# --- metrics -----------------------------------------------------------------------------


@respx.mock
async def test_each_attempt_is_counted_by_outcome_and_code(http: httpx.AsyncClient) -> None:
    respx.get(LIMITS_URL).mock(side_effect=[answer(envelope(None, code="10001")), answer()])
    metrics = Metrics()
    client = PlatformClient(
        http,
        platform_settings(CENTER, base_url=BASE, token_source="none"),
        FakeTokens(),
        metrics,
    )
    await client.node_limits("TeslaM40", GPU)
    sample = metrics.registry.get_sample_value
    labels = {"endpoint": "resources"}
    assert (
        sample("nodelimits_platform_requests_total", {**labels, "outcome": "ok", "code": "0"}) == 1
    )
    assert (
        sample(
            "nodelimits_platform_requests_total",
            {**labels, "outcome": "rejected", "code": "10001"},
        )
        == 1
    )


@respx.mock
async def test_answer_with_unusable_data_is_counted_malformed_not_ok(
    http: httpx.AsyncClient,
) -> None:
    wrong = limits_data(cpuNumber="40")  # the platform's numbers as strings
    respx.get(LIMITS_URL).mock(return_value=answer(envelope(wrong)))
    metrics = Metrics()
    client = PlatformClient(
        http, platform_settings(CENTER, base_url=BASE, token_source="none"), FakeTokens(), metrics
    )
    with pytest.raises(MalformedResponse):
        await client.node_limits("TeslaM40", GPU)
    sample = metrics.registry.get_sample_value
    labels = {"endpoint": "resources", "code": "0"}
    assert sample("nodelimits_platform_requests_total", {**labels, "outcome": "ok"}) is None
    assert sample("nodelimits_platform_requests_total", {**labels, "outcome": "malformed"}) == 1


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://ai.example.test/ai",
        "//ai.example.test/ai",
        "ai.example.test/ai",
        "https:///ai",
        "javascript:alert(1)",
    ],
)
@respx.mock
async def test_center_discovery_only_follows_http_urls(http: httpx.AsyncClient, url: str) -> None:
    respx.get(f"{CENTER}/ac/openapi/v2/center").mock(
        return_value=center_answer({"enable": "true", "url": url})
    )
    with pytest.raises(MalformedResponse, match=r"no enabled http\(s\) aiUrls"):
        await make_client(http, base_url=None).node_limits("TeslaM40", GPU)
    assert len(respx.calls) == 1  # the center only: nothing was sent to the entry


@respx.mock
async def test_center_discovery_skips_non_http_entries(http: httpx.AsyncClient) -> None:
    respx.get(f"{CENTER}/ac/openapi/v2/center").mock(
        return_value=center_answer(
            {"enable": "true", "url": "file:///var/run/secrets/token"},
            {"enable": "true", "url": f"{BASE}/ai"},
        )
    )
    route = respx.get(LIMITS_URL).mock(return_value=answer())
    await make_client(http, base_url=None).node_limits("TeslaM40", GPU)
    assert route.call_count == 1


# --- what a connection failure says (issue 17.5) ------------------------------------------


async def test_a_refused_connection_names_the_url(http: httpx.AsyncClient) -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        client = make_client(http, retries=0, base_url=f"http://127.0.0.1:{port}/ai")
        with pytest.raises(PlatformUnavailable) as caught:
            await client.node_limits("TeslaM40", GPU)
    assert str(caught.value) == (
        "platform resources: network error (ConnectError) calling "
        f"http://127.0.0.1:{port}/ai/openapi/v2/instance-service/resources"
    )


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(httpx.ConnectError("refused"), id="network"),
        pytest.param(httpx.ConnectTimeout("slow"), id="timeout"),
    ],
)
def test_the_url_in_an_error_carries_no_credentials_query_or_fragment(
    exc: httpx.HTTPError,
) -> None:
    call = Call(
        "GET",
        "https://ak:secret@platform.example.test:8443/ai/x?token=t0k3n&Signature=s1g#frag",
        endpoint="resources",
    )
    text = str(translate(call, exc=exc))
    assert text.endswith(" calling https://platform.example.test:8443/ai/x")
    for secret in ("ak:", "secret", "t0k3n", "s1g", "frag", "?"):
        assert secret not in text
