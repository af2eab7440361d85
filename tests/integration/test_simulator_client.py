"""The live client, tokens and cache against the simulator over real sockets (plain and TLS)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from devtools.builders import container, node_limits, pod
from devtools.certs import CertPaths
from tests.integration.conftest import cache_on, wait_for_no_connections
from tests.platform_helpers import ACCOUNT, simulator_config
from webhook.cli import main
from webhook.core.limits import AcceleratorType
from webhook.core.policy import PolicySettings
from webhook.platform.client import LIMITS_PATH, RESOURCE_GROUPS_PATH
from webhook.platform.errors import (
    MalformedResponse,
    PlatformAuthError,
    PlatformError,
    PlatformRejected,
    PlatformUnavailable,
    UnknownResourceGroup,
)
from webhook.review import review
from webhook.simulator import (
    Cluster,
    Fault,
    Simulator,
    SimulatorConfigError,
    load_simulator_config,
)

GPU = AcceleratorType.GPU
DEADLINE = 1.5  # platform_settings() default in tests
SLACK = 0.5  # scheduling slack on a loaded CI machine


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def limits_fault(kind: str, **fields: Any) -> Fault:
    return Fault.model_validate({"kind": kind, "path": LIMITS_PATH, **fields})


async def timed_get(cache: Any, group: str = "TeslaM40") -> tuple[Any, float]:
    started = time.monotonic()
    try:
        result: Any = await cache.get(group, GPU)
    except PlatformError as exc:
        result = exc
    return result, time.monotonic() - started


# --- happy paths -------------------------------------------------------------------------


async def test_limits_via_center_discovery_and_aksk_token(simulator: Simulator) -> None:
    async with cache_on(simulator) as cache:
        got = await cache.get("TeslaM40", GPU)
    assert (got.limits.gpuNumber, got.limits.acceleratorType) == (2, GPU)
    assert simulator.requests("/ac/openapi/v2/center") == 1


async def test_limits_with_a_configured_base_url_skip_discovery(simulator: Simulator) -> None:
    async with cache_on(simulator, base_url=f"{simulator.url}/ai") as cache:
        await cache.get("TeslaM40", GPU)
    assert simulator.requests("/ac/openapi/v2/center") == 0


async def test_limits_with_password_token(simulator: Simulator) -> None:
    async with cache_on(simulator, token_source="password") as cache:
        assert (await cache.get("TeslaM40", GPU)).limits.cpuNumber == 40
    assert simulator.requests("/ac/openapi/v2/tokens") == 1


async def test_limits_with_a_token_file(simulator: Simulator, tmp_path: Any) -> None:
    (tmp_path / "token").write_text(simulator.issue_token(ACCOUNT.user))
    async with cache_on(simulator, token_source="file", token_file=tmp_path / "token") as cache:
        assert (await cache.get("TeslaM40", GPU)).limits.cpuNumber == 40


async def test_group_types_come_from_the_resource_group_list(simulator: Simulator) -> None:
    async with cache_on(simulator) as cache:
        assert await cache.group_types("TeslaM40") == {GPU}


async def test_unknown_group_is_denied_by_name(simulator: Simulator) -> None:
    async with cache_on(simulator) as cache:
        with pytest.raises(UnknownResourceGroup, match='"Nope"'):
            await cache.get("Nope", GPU)


async def test_pod_naming_a_group_added_after_warm_up_is_judged_by_its_real_limits(
    simulator: Simulator,
) -> None:
    """The group list is read (warm-up) before the group exists; the pod names no type, so
    only the list can say it is a gpu group: one forced list refresh, no unknown denial."""
    async with cache_on(simulator) as cache:
        warm = await review(pod(group="TeslaM40"), PolicySettings(), cache)
        assert warm.decision.allowed
        simulator.put_group(node_limits("A800x8", cpu=128, cards=8))
        got = await review(pod(container(cpu="200"), group="A800x8"), PolicySettings(), cache)
    assert got.decision.message == (
        'nodelimits: Pod team-a/p does not fit one node of resource group "A800x8" (gpu): '
        "cpu 200 > 128 cores per node"
    )
    assert simulator.requests(RESOURCE_GROUPS_PATH) == 2


# --- TLS ---------------------------------------------------------------------------------


async def test_tls_with_the_ca_bundle_works(tls_simulator: Simulator, certs: CertPaths) -> None:
    assert tls_simulator.url.startswith("https://")
    async with cache_on(tls_simulator, ca_bundle=certs.ca) as cache:
        assert (await cache.get("TeslaM40", GPU)).limits.cpuNumber == 40


async def test_tls_is_verified_by_default(tls_simulator: Simulator) -> None:
    async with cache_on(tls_simulator, retries=0) as cache:
        with pytest.raises(PlatformUnavailable, match="network error"):
            await cache.get("TeslaM40", GPU)


# --- accounts and tokens -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [("frozen", "10007"), ("no_permission", "10008"), ("no_api_access", "10009")],
)
async def test_account_problems_are_auth_errors_with_the_code(
    simulator: Simulator, status: Any, code: str
) -> None:
    async with cache_on(simulator) as cache:
        simulator.set_account_status(ACCOUNT.user, status)
        with pytest.raises(PlatformAuthError, match=code):
            await cache.get("TeslaM40", GPU)


async def test_wrong_secret_key_is_an_auth_error(simulator: Simulator) -> None:
    async with cache_on(simulator, secret_key="not-the-key") as cache:
        with pytest.raises(PlatformAuthError, match="invalid signature"):
            await cache.get("TeslaM40", GPU)


async def test_revoked_token_is_replaced_and_the_lookup_succeeds(simulator: Simulator) -> None:
    clock = Clock()
    async with cache_on(simulator, clock=clock) as cache:
        await cache.get("TeslaM40", GPU)
        simulator.revoke_tokens()
        clock.now += 3600 * 2  # past max_stale: a real lookup
        assert (await cache.get("TeslaM40", GPU)).limits.cpuNumber == 40
    assert simulator.rejected(LIMITS_PATH) == 1
    assert simulator.requests("/api/user/v3/tokens") == 2


async def test_token_about_to_expire_is_renewed_before_any_request_fails(
    simulator: Simulator,
) -> None:
    # Lifetime 2 s, margin 1 s: renewed at 1.5 s (due again at 2.5 s); at 2.2 s the first
    # token has expired, so a request still sent with it would be refused.
    simulator.token_lifetime = 2.0
    clock = Clock()
    async with cache_on(simulator, clock=clock, token_refresh_margin=1.0) as cache:
        await cache.get("TeslaM40", GPU)
        for pause in (1.5, 0.7):
            await asyncio.sleep(pause)
            clock.now += 3600 * 2  # past max_stale: every get is a real request
            await cache.get("TeslaM40", GPU)
    assert simulator.requests("/ac/openapi/v2/tokens/next") == 1
    assert simulator.rejected(LIMITS_PATH) == 0


# --- faults: the right typed error, within the deadline, no leak -------------------------


FAULTS = [
    pytest.param(limits_fault("latency", seconds=5), PlatformUnavailable, id="latency"),
    pytest.param(limits_fault("blackhole"), PlatformUnavailable, id="blackhole"),
    pytest.param(limits_fault("drop"), PlatformUnavailable, id="drop"),
    pytest.param(limits_fault("status", status=503), PlatformUnavailable, id="status-503"),
    pytest.param(limits_fault("status", status=403), PlatformAuthError, id="status-403"),
    pytest.param(limits_fault("code", code="10001"), PlatformUnavailable, id="code-10001"),
    pytest.param(limits_fault("code", code="10012"), PlatformUnavailable, id="code-10012"),
    pytest.param(limits_fault("code", code="10003"), PlatformRejected, id="code-10003"),
    pytest.param(limits_fault("code", code="10004"), UnknownResourceGroup, id="code-10004"),
    pytest.param(limits_fault("code", code="10007"), PlatformAuthError, id="code-10007"),
    pytest.param(limits_fault("html"), MalformedResponse, id="html"),
    pytest.param(limits_fault("html", status=502), PlatformUnavailable, id="html-502"),
    pytest.param(limits_fault("truncated"), MalformedResponse, id="truncated"),
    pytest.param(limits_fault("null_data"), MalformedResponse, id="null-data"),
    pytest.param(limits_fault("wrong_types"), MalformedResponse, id="wrong-types"),
    pytest.param(limits_fault("numeric_code"), MalformedResponse, id="numeric-code"),
]


@pytest.mark.parametrize(("fault", "error"), FAULTS)
async def test_fault_on_a_miss_raises_its_typed_error_within_the_deadline(
    simulator: Simulator, fault: Fault, error: type[PlatformError]
) -> None:
    simulator.add_fault(fault)
    async with cache_on(simulator) as cache:
        result, elapsed = await timed_get(cache)
    assert type(result) is error
    assert elapsed < DEADLINE + SLACK


@pytest.mark.parametrize(("fault", "error"), FAULTS)
async def test_fault_after_ttl_serves_the_cached_value_as_stale(
    simulator: Simulator, fault: Fault, error: type[PlatformError]
) -> None:
    clock = Clock()
    async with cache_on(simulator, clock=clock) as cache:
        await cache.get("TeslaM40", GPU)
        simulator.add_fault(fault)
        clock.now += 61
        result, elapsed = await timed_get(cache)
    assert (result.stale, result.limits.cpuNumber) == (True, 40)
    assert elapsed < 0.1  # stale-while-revalidate never waits for the platform


@pytest.mark.parametrize("kind", ["drop", "status", "code", "blackhole"])
async def test_one_transient_fault_is_retried_away(simulator: Simulator, kind: str) -> None:
    fields: dict[str, Any] = {"status": 503} if kind == "status" else {}
    simulator.add_fault(limits_fault(kind, count=1, **fields))
    async with cache_on(simulator, request_timeout=0.3) as cache:
        result, elapsed = await timed_get(cache)
    assert result.limits.cpuNumber == 40
    assert simulator.requests(LIMITS_PATH) == 2
    assert elapsed < DEADLINE + SLACK


async def test_fault_for_a_fraction_of_requests_hits_about_that_fraction(
    simulator: Simulator,
) -> None:
    simulator.add_fault(limits_fault("code", code="10003", fraction=0.5))
    clock = Clock()
    outcomes = []
    async with cache_on(simulator, clock=clock) as cache:
        for _ in range(40):
            clock.now += 3600 * 2  # every lookup is a miss
            outcomes.append(await timed_get(cache))
    failed = sum(isinstance(r, PlatformRejected) for r, _ in outcomes)
    assert 8 <= failed <= 32


async def test_fault_on_the_token_endpoint_is_unavailable(simulator: Simulator) -> None:
    simulator.add_fault(Fault(kind="status", status=502, path="/api/user/v3/tokens"))
    async with cache_on(simulator) as cache:
        result, _ = await timed_get(cache)
    assert isinstance(result, PlatformUnavailable)


async def test_blackholed_center_fails_within_the_deadline(simulator: Simulator) -> None:
    simulator.add_fault(Fault(kind="blackhole", path="/ac/openapi/v2/center"))
    async with cache_on(simulator) as cache:
        result, elapsed = await timed_get(cache)
    assert isinstance(result, PlatformUnavailable)
    assert elapsed < DEADLINE + SLACK


# --- single-flight over the wire ---------------------------------------------------------


async def test_concurrent_misses_make_one_platform_request(simulator: Simulator) -> None:
    simulator.add_fault(limits_fault("latency", seconds=0.2))
    async with cache_on(simulator) as cache:
        results = await asyncio.gather(*(cache.get("TeslaM40", GPU) for _ in range(100)))
    assert {r.limits.cpuNumber for r in results} == {40}
    assert simulator.requests(LIMITS_PATH) == 1


# --- admin endpoint ----------------------------------------------------------------------


async def admin(simulator: Simulator, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        return await client.request(method, f"/_simulator{path}", **kwargs)


async def test_admin_endpoint_injects_faults_and_reports_counts(simulator: Simulator) -> None:
    fault = {"kind": "code", "code": "10001", "count": 1, "path": LIMITS_PATH}
    assert (await admin(simulator, "POST", "/faults", json=fault)).status_code == 200
    async with cache_on(simulator) as cache:
        await cache.get("TeslaM40", GPU)
    stats = (await admin(simulator, "GET", "/stats")).json()
    assert stats["requests"][LIMITS_PATH] == 2  # the faulted attempt and its retry
    assert stats["faults"] == []  # the one-shot fault is used up


async def test_admin_endpoint_resets_counts(simulator: Simulator) -> None:
    async with cache_on(simulator) as cache:
        await cache.get("TeslaM40", GPU)
    await admin(simulator, "DELETE", "/stats")
    assert (await admin(simulator, "GET", "/stats")).json()["requests"] == {}


async def test_admin_endpoint_clears_faults(simulator: Simulator) -> None:
    await admin(simulator, "POST", "/faults", json=[{"kind": "drop"}, {"kind": "blackhole"}])
    await admin(simulator, "DELETE", "/faults")
    async with cache_on(simulator) as cache:
        assert (await cache.get("TeslaM40", GPU)).limits.cpuNumber == 40


async def test_admin_endpoint_freezes_an_account(simulator: Simulator) -> None:
    await admin(simulator, "PUT", f"/accounts/{ACCOUNT.user}", json={"status": "frozen"})
    async with cache_on(simulator) as cache:
        with pytest.raises(PlatformAuthError, match="10007"):
            await cache.get("TeslaM40", GPU)


async def test_admin_endpoint_rejects_an_invalid_fault(simulator: Simulator) -> None:
    answer = await admin(simulator, "POST", "/faults", json={"kind": "meteor"})
    assert answer.status_code == 400


async def test_client_closes_every_connection_on_exit(simulator: Simulator) -> None:
    async with cache_on(simulator) as cache:
        await cache.get("TeslaM40", GPU)
        assert simulator.open_connections >= 1
    await wait_for_no_connections(simulator)


# --- the CLI against a simulator subprocess ----------------------------------------------


@pytest.fixture
def simulator_process(tmp_path: Any) -> Iterator[str]:
    config = tmp_path / "groups.yaml"
    config.write_text(
        "resourceGroups:\n"
        "  - {resourceGroup: TeslaM40, acceleratorType: gpu, cpuNumber: 40, memorySize: 31888,\n"
        "     gpuNumber: 2, nvLimits: 0, dcuLimits: 0, mluLimits: 0, nodeNumber: 1,\n"
        "     maxTime: unlimited}\n"
    )
    command = [sys.executable, "-c", "from webhook.cli import main; main()"]
    process = subprocess.Popen(
        [*command, "simulate", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the server prints it once it listens
        assert line.startswith("simulator listening on http://127.0.0.1:"), line
        yield line.split()[-1]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_limits_command_prints_a_group_from_the_simulator(simulator_process: str) -> None:
    env = {
        "NODELIMITS_PLATFORM__CENTER_URL": simulator_process,
        "NODELIMITS_PLATFORM__AKSK_URL": simulator_process,
        "NODELIMITS_PLATFORM__TOKEN_SOURCE": "aksk",
        "NODELIMITS_PLATFORM__USER": "sim",
        "NODELIMITS_PLATFORM__ACCESS_KEY": "sim-ak",
        "NODELIMITS_PLATFORM__SECRET_KEY": "sim-sk",
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NODELIMITS_")}
    result = CliRunner().invoke(main, ["limits", "TeslaM40"], env={**clean, **env})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].split()[:5] == ["TeslaM40", "gpu", "40", "31888Mi", "2"]


# --- simulator configuration -------------------------------------------------------------


async def test_faults_from_the_config_file_apply_from_the_start() -> None:
    sim = Simulator(simulator_config(faults=(limits_fault("code", code="10003"),)))
    await sim.start()
    try:
        async with cache_on(sim) as cache:
            with pytest.raises(PlatformRejected, match="10003"):
                await cache.get("TeslaM40", GPU)
    finally:
        await sim.stop()


async def test_disabled_region_with_null_token_is_skipped() -> None:
    clusters = (
        Cluster(clusterId="1", clusterName="off", enabled=False),
        Cluster(clusterId="2", clusterName="on"),
    )
    sim = Simulator(simulator_config(clusters=clusters))
    await sim.start()
    try:
        async with cache_on(sim) as cache:
            assert (await cache.get("TeslaM40", GPU)).limits.cpuNumber == 40
    finally:
        await sim.stop()


async def test_token_state_reports_a_valid_token(simulator: Simulator) -> None:
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        answer = await client.get(
            "/ac/openapi/v2/tokens/state", headers={"token": simulator.issue_token()}
        )
    assert answer.json()["msg"] == "token is valid"


async def test_platform_token_is_refused_on_container_apis(simulator: Simulator) -> None:
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        answer = await client.get(
            LIMITS_PATH,
            params={"resourceGroup": "TeslaM40", "acceleratorType": "gpu"},
            headers={"token": simulator.issue_token(cluster_id="0")},
        )
    assert answer.json()["code"] == "10009"


def test_simulator_config_errors_name_the_field(tmp_path: Any) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("resourceGroups: []\nfaults: [{kind: meteor}]\n")
    with pytest.raises(SimulatorConfigError, match=r"faults\.0\.kind"):
        load_simulator_config(path)
