"""review: a group created or re-typed on the platform since the server read its
resource-group list is judged by its real limits, not denied as unknown."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devtools.builders import container, pod
from tests.platform_helpers import Clock, ScriptedSource, cache_settings
from webhook.core import workloads
from webhook.core.limits import AcceleratorType
from webhook.core.policy import PolicySettings
from webhook.metrics import Metrics
from webhook.platform.cache import LimitsCache
from webhook.review import Pending, Review, review, review_cached, review_workload

GPU, CPU = AcceleratorType.GPU, AcceleratorType.CPU
SETTINGS = PolicySettings()  # the default accelerator type is cpu
TABLE = SETTINGS.kind_table


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def platform() -> ScriptedSource:
    """Like the platform: only the (group, type) pairs it lists have limits."""
    return ScriptedSource(offered_only=True)


@pytest.fixture
async def cache(platform: ScriptedSource, clock: Clock) -> AsyncIterator[LimitsCache]:
    built = LimitsCache(platform, cache_settings(), Metrics(), deadline=0.5, clock=clock)
    await built.group_types("TeslaM40")  # warm: the list is read before A800 exists
    yield built
    await built.aclose()


async def test_pod_naming_a_group_created_since_the_list_was_read_gets_its_limits(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock
) -> None:
    platform.add_group("A800", GPU)
    clock.now += 1
    got = await review(pod(container(cpu="64"), group="A800"), SETTINGS, cache)
    assert got.decision.message == (
        'nodelimits: Pod team-a/p does not fit one node of resource group "A800" (gpu): '
        "cpu 64 > 40 cores per node"
    )


async def test_lookup_under_a_type_the_group_lost_is_retried_under_the_listed_one(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock
) -> None:
    platform.add_group("A800", CPU)
    clock.now += 1
    assert await cache.group_types("A800") == {CPU}  # listed, no limits cached yet
    platform.groups = [g for g in platform.groups if g.resourceGroup != "A800"]
    platform.add_group("A800", GPU)  # re-typed on the platform; the cached list says cpu
    clock.now += 10  # past the forced-refresh interval, within the TTL
    got = await review(pod(group="A800", name="q"), SETTINGS, cache)  # no devices: no type
    assert (got.decision.allowed, got.decision.accelerator) == (True, GPU)


async def test_typed_pod_of_a_group_denied_before_it_existed_is_judged_once_it_does(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock
) -> None:
    early = await review(pod(group="A800", accelerator="gpu"), SETTINGS, cache)
    assert 'resource group "A800" is unknown' in early.decision.message
    platform.add_group("A800", GPU)
    clock.now += 6  # within the negative TTL (10 s), past the forced-refresh interval
    got = await review(pod(group="A800", accelerator="gpu"), SETTINGS, cache)
    assert (got.decision.allowed, got.decision.accelerator) == (True, GPU)


async def test_pods_naming_bogus_groups_cost_one_list_request_and_one_lookup_each(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock
) -> None:
    clock.now += 1
    for i in range(15):
        got = await review(pod(group=f"random-{i}"), SETTINGS, cache)
        assert got.decision.message.endswith(
            f'resource group "random-{i}" is unknown to the platform for accelerator type cpu'
        )
    assert (platform.group_calls, platform.calls) == (2, 15)


# --- the part that never waits (the admission path's decision-budget timer is armed only
# for the rest) ---------------------------------------------------------------------------


async def test_a_cold_cache_leaves_the_review_pending(cache: LimitsCache) -> None:
    workload = workloads.workload_of(pod(container(cpu="64"), group="TeslaM40"), TABLE, None)
    assert isinstance(review_cached(workload, SETTINGS, cache), Pending)


async def test_a_warm_cache_decides_without_waiting(
    cache: LimitsCache, platform: ScriptedSource
) -> None:
    obj = pod(container(cpu="64"), group="TeslaM40", accelerator="gpu")
    waited = await review(obj, SETTINGS, cache)
    calls = platform.calls
    got = review_cached(workloads.workload_of(obj, TABLE, None), SETTINGS, cache)
    assert isinstance(got, Review)
    assert got == waited
    assert platform.calls == calls


async def test_a_pending_review_goes_on_to_the_decision_a_whole_one_gives(
    cache: LimitsCache,
) -> None:
    obj = pod(container(cpu="64"), group="TeslaM40", accelerator="gpu")
    workload = workloads.workload_of(obj, TABLE, None)
    pending = review_cached(workload, SETTINGS, cache)
    assert isinstance(pending, Pending)
    went_on = await review_workload(workload, SETTINGS, cache, pending=pending)
    assert went_on == await review(obj, SETTINGS, cache)
    assert not went_on.decision.allowed


async def test_a_pod_without_a_group_is_settled_without_the_cache(cache: LimitsCache) -> None:
    workload = workloads.workload_of(pod(container(cpu="64"), group=None), TABLE, None)
    got = review_cached(workload, SETTINGS, cache)
    assert isinstance(got, Review)
    assert got.decision.skipped


async def test_a_group_remembered_unknown_is_looked_up_once_per_review(
    platform: ScriptedSource, clock: Clock
) -> None:
    """review_cached meets the negative entry; review_workload does not ask it again."""
    metrics = Metrics()
    cache = LimitsCache(platform, cache_settings(), metrics, deadline=0.5, clock=clock)
    obj = pod(container(cpu="1"), group="Nope", accelerator="gpu")
    await review(obj, SETTINGS, cache)  # now remembered as unknown
    got = await review(obj, SETTINGS, cache)
    await cache.aclose()
    assert "unknown" in got.decision.message
    negative = {"event": "negative"}
    assert metrics.registry.get_sample_value("nodelimits_limits_cache_total", negative) == 1
