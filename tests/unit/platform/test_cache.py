"""LimitsCache: TTL, stale-while-revalidate, stale-if-error, single-flight, negative, LRU."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.platform_helpers import Clock, ScriptedSource, cache_settings, unknown
from webhook.core.limits import AcceleratorType
from webhook.metrics import Metrics
from webhook.platform.cache import LimitsCache
from webhook.platform.errors import (
    LookupsThrottled,
    PlatformUnavailable,
    UnknownResourceGroup,
)

GPU = AcceleratorType.GPU
TTL, MAX_STALE, NEGATIVE_TTL = 60.0, 3600.0, 10.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def source() -> ScriptedSource:
    return ScriptedSource()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def cache(
    source: ScriptedSource, clock: Clock, metrics: Metrics
) -> AsyncIterator[LimitsCache]:
    built = make_cache(source, clock, metrics)
    yield built
    await built.aclose()
    assert built.tasks_running == 0


def make_cache(
    source: ScriptedSource, clock: Clock, metrics: Metrics, **settings: Any
) -> LimitsCache:
    values = {"ttl": TTL, "max_stale": MAX_STALE, "negative_ttl": NEGATIVE_TTL, **settings}
    return LimitsCache(source, cache_settings(**values), metrics, deadline=0.5, clock=clock)


def events(metrics: Metrics, event: str) -> float:
    return metrics.registry.get_sample_value("nodelimits_limits_cache_total", {"event": event}) or 0


async def settle() -> None:
    for _ in range(5):  # let background refresh tasks run to completion
        await asyncio.sleep(0)


# --- fresh values ------------------------------------------------------------------------


async def test_first_lookup_fetches_and_is_fresh(
    cache: LimitsCache, source: ScriptedSource
) -> None:
    got = await cache.get("TeslaM40", GPU)
    assert (got.limits.cpuNumber, got.stale, got.age_seconds) == (40, False, 0.0)
    assert source.calls == 1


async def test_lookup_within_ttl_is_a_hit_without_a_call(
    cache: LimitsCache, source: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    await cache.get("TeslaM40", GPU)
    clock.now += TTL - 1
    got = await cache.get("TeslaM40", GPU)
    assert (got.stale, got.age_seconds, source.calls) == (False, TTL - 1, 1)
    assert events(metrics, "hit") == 1


async def test_keys_are_per_group_and_type(cache: LimitsCache, source: ScriptedSource) -> None:
    await cache.get("TeslaM40", GPU)
    await cache.get("TeslaM40", AcceleratorType.CPU)
    assert source.calls == 2


# --- what the cache answers without waiting ---------------------------------------------


def test_nothing_cached_is_none_without_asking_the_source(
    cache: LimitsCache, source: ScriptedSource
) -> None:
    assert cache.cached("TeslaM40", GPU) is None
    assert source.calls == 0


async def test_a_cached_value_is_answered_at_once(cache: LimitsCache, clock: Clock) -> None:
    await cache.get("TeslaM40", GPU)
    clock.now += TTL - 1
    got = cache.cached("TeslaM40", GPU)
    assert got is not None
    assert (got.limits.cpuNumber, got.stale) == (40, False)


async def test_a_stale_value_is_answered_at_once_and_its_refresh_started(
    cache: LimitsCache, source: ScriptedSource, clock: Clock
) -> None:
    await cache.get("TeslaM40", GPU)
    clock.now += TTL + 1
    got = cache.cached("TeslaM40", GPU)
    assert got is not None
    assert got.stale
    await settle()
    assert source.calls == 2


async def test_a_value_past_max_stale_is_left_to_get(cache: LimitsCache, clock: Clock) -> None:
    await cache.get("TeslaM40", GPU)
    clock.now += MAX_STALE + 1
    assert cache.cached("TeslaM40", GPU) is None


async def test_a_remembered_unknown_group_is_raised_at_once(
    cache: LimitsCache, source: ScriptedSource
) -> None:
    source.error = unknown()
    with pytest.raises(UnknownResourceGroup):
        await cache.get("Nope", GPU)
    with pytest.raises(UnknownResourceGroup, match='"Nope"'):
        cache.cached("Nope", GPU)
    assert source.calls == 1


async def test_group_types_are_answered_at_once_only_from_a_read_list(
    cache: LimitsCache,
) -> None:
    assert cache.cached_group_types("TeslaM40") is None
    listed = await cache.group_types("TeslaM40")
    assert cache.cached_group_types("TeslaM40") == listed
    assert cache.cached_group_types("not-listed") is None


# --- stale-while-revalidate and stale-if-error -------------------------------------------


async def test_value_past_ttl_is_returned_stale_at_once_and_refreshed_once(
    cache: LimitsCache, source: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    await cache.get("TeslaM40", GPU)
    clock.now += TTL + 1
    source.cpu = 64
    results = [await cache.get("TeslaM40", GPU) for _ in range(3)]
    assert [(r.limits.cpuNumber, r.stale) for r in results] == [(40, True)] * 3
    await settle()
    assert source.calls == 2
    assert events(metrics, "refresh") == 1
    fresh = await cache.get("TeslaM40", GPU)
    assert (fresh.limits.cpuNumber, fresh.stale) == (64, False)


async def test_stale_value_is_served_while_the_platform_fails(
    cache: LimitsCache, source: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    await cache.get("TeslaM40", GPU)
    source.error = PlatformUnavailable("down")
    clock.now += MAX_STALE - 1
    got = await cache.get("TeslaM40", GPU)
    await settle()
    again = await cache.get("TeslaM40", GPU)
    assert (got.stale, again.stale, again.limits.cpuNumber) == (True, True, 40)
    assert events(metrics, "error") >= 1


async def test_healthy_revalidation_is_not_reported_as_a_failing_refresh(
    cache: LimitsCache, source: ScriptedSource, clock: Clock
) -> None:
    await cache.get("TeslaM40", GPU)
    clock.now += TTL + 1
    got = await cache.get("TeslaM40", GPU)
    assert (got.stale, got.refresh_failed) == (True, False)


async def test_stale_value_after_a_failed_refresh_says_so(
    cache: LimitsCache, source: ScriptedSource, clock: Clock
) -> None:
    await cache.get("TeslaM40", GPU)
    source.error = PlatformUnavailable("down")
    clock.now += TTL + 1
    first = await cache.get("TeslaM40", GPU)
    await settle()
    after = await cache.get("TeslaM40", GPU)
    assert (first.refresh_failed, after.refresh_failed) == (False, True)
    source.error = None
    await settle()
    clock.now += 1
    await cache.get("TeslaM40", GPU)  # starts a refresh that succeeds
    await settle()
    healed = await cache.get("TeslaM40", GPU)
    assert (healed.stale, healed.refresh_failed) == (False, False)


async def test_value_older_than_max_stale_is_not_used(
    cache: LimitsCache, source: ScriptedSource, clock: Clock
) -> None:
    await cache.get("TeslaM40", GPU)
    source.error = PlatformUnavailable("down")
    clock.now += MAX_STALE + 1
    with pytest.raises(PlatformUnavailable, match="down"):
        await cache.get("TeslaM40", GPU)


async def test_miss_with_a_failing_platform_raises_the_source_error(
    cache: LimitsCache, source: ScriptedSource
) -> None:
    source.error = PlatformUnavailable("down")
    with pytest.raises(PlatformUnavailable, match="down"):
        await cache.get("TeslaM40", GPU)


async def test_miss_waits_no_longer_than_the_deadline(
    cache: LimitsCache, source: ScriptedSource
) -> None:
    source.gate = asyncio.Event()
    with pytest.raises(PlatformUnavailable, match=r"within 0\.5s"):
        await cache.get("TeslaM40", GPU)


# --- single-flight -----------------------------------------------------------------------


async def test_concurrent_misses_make_one_upstream_call(
    cache: LimitsCache, source: ScriptedSource
) -> None:
    source.gate = asyncio.Event()
    waiting = [asyncio.create_task(cache.get("TeslaM40", GPU)) for _ in range(50)]
    await settle()
    source.gate.set()
    results = await asyncio.gather(*waiting)
    assert source.calls == 1
    assert {r.limits.cpuNumber for r in results} == {40}


async def test_concurrent_misses_all_get_the_error(
    cache: LimitsCache, source: ScriptedSource
) -> None:
    source.error = PlatformUnavailable("down")
    results = await asyncio.gather(
        *(cache.get("TeslaM40", GPU) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, PlatformUnavailable) for r in results)
    assert source.calls == 1


async def test_cancelled_waiter_does_not_cancel_the_shared_fetch(
    cache: LimitsCache, source: ScriptedSource
) -> None:
    source.gate = asyncio.Event()
    first = asyncio.create_task(cache.get("TeslaM40", GPU))
    second = asyncio.create_task(cache.get("TeslaM40", GPU))
    await settle()
    first.cancel()
    source.gate.set()
    assert (await second).limits.cpuNumber == 40


# --- negative caching --------------------------------------------------------------------


async def test_unknown_group_is_remembered_for_the_negative_ttl(
    cache: LimitsCache, source: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    source.error = unknown()
    for _ in range(3):
        with pytest.raises(UnknownResourceGroup, match='"Nope"'):
            await cache.get("Nope", GPU)
    assert source.calls == 1
    assert events(metrics, "negative") == 2


async def test_unknown_group_is_asked_again_after_the_negative_ttl(
    cache: LimitsCache, source: ScriptedSource, clock: Clock
) -> None:
    source.error = unknown()
    with pytest.raises(UnknownResourceGroup):
        await cache.get("Nope", GPU)
    clock.now += NEGATIVE_TTL
    source.error = None
    assert (await cache.get("Nope", GPU)).limits.resourceGroup == "Nope"


async def test_group_removed_on_the_platform_stops_being_served(
    cache: LimitsCache, source: ScriptedSource, clock: Clock
) -> None:
    await cache.get("TeslaM40", GPU)
    clock.now += TTL + 1
    source.error = unknown("TeslaM40")
    await cache.get("TeslaM40", GPU)  # stale, refresh learns the group is gone
    await settle()
    with pytest.raises(UnknownResourceGroup):
        await cache.get("TeslaM40", GPU)


# --- bounds and lifecycle ----------------------------------------------------------------


async def test_least_recently_used_entry_is_evicted(
    source: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    cache = make_cache(source, clock, metrics, max_entries=2)
    await cache.get("a", GPU)
    await cache.get("b", GPU)
    await cache.get("a", GPU)  # b is now least recently used
    await cache.get("c", GPU)
    await cache.get("a", GPU)
    assert (len(cache), source.calls, events(metrics, "evict")) == (2, 3, 1)
    await cache.get("b", GPU)
    assert source.calls == 4
    await cache.aclose()


async def test_close_cancels_background_refreshes(
    cache: LimitsCache, source: ScriptedSource, clock: Clock
) -> None:
    await cache.get("TeslaM40", GPU)
    clock.now += TTL + 1
    source.gate = asyncio.Event()
    await cache.get("TeslaM40", GPU)
    assert cache.tasks_running == 1
    await cache.aclose()
    assert cache.tasks_running == 0


async def test_oldest_entry_age_is_exported(
    cache: LimitsCache, clock: Clock, metrics: Metrics
) -> None:
    await cache.get("TeslaM40", GPU)
    clock.now += 42
    value = metrics.registry.get_sample_value("nodelimits_limits_cache_oldest_age_seconds")
    assert value == 42


# --- group types -------------------------------------------------------------------------


async def test_group_types_are_those_the_source_offers(cache: LimitsCache) -> None:
    assert await cache.group_types("TeslaM40") == {GPU, AcceleratorType.CPU}


async def test_group_types_of_an_unknown_group_are_empty(cache: LimitsCache) -> None:
    assert await cache.group_types("Nope") == frozenset()


async def test_group_types_are_empty_when_the_list_is_unavailable(
    cache: LimitsCache, source: ScriptedSource
) -> None:
    source.error = PlatformUnavailable("down")
    assert await cache.group_types("TeslaM40") == frozenset()


async def test_failed_group_list_is_counted_apart_from_failed_limits(
    cache: LimitsCache, source: ScriptedSource, metrics: Metrics
) -> None:
    """Watchers of failed limits fetches (alerts, the fault matrix) must not see list errors."""
    source.error = PlatformUnavailable("down")
    await cache.group_types("TeslaM40")
    assert (events(metrics, "list_error"), events(metrics, "error")) == (1, 0)


async def test_group_types_wait_no_longer_than_the_deadline(
    cache: LimitsCache, source: ScriptedSource
) -> None:
    source.gate = asyncio.Event()
    assert await cache.group_types("TeslaM40") == frozenset()


async def test_group_list_is_cached_for_the_ttl(
    cache: LimitsCache, source: ScriptedSource, clock: Clock
) -> None:
    await cache.group_types("TeslaM40")
    clock.now += TTL - 1
    await cache.group_types("TeslaM40")
    assert source.group_calls == 1


async def test_failed_group_list_is_retried_only_after_the_negative_ttl(
    cache: LimitsCache, source: ScriptedSource, clock: Clock
) -> None:
    source.error = PlatformUnavailable("down")
    await cache.group_types("TeslaM40")
    await cache.group_types("TeslaM40")
    assert source.group_calls == 1
    clock.now += NEGATIVE_TTL
    source.error = None
    assert await cache.group_types("TeslaM40") == {GPU, AcceleratorType.CPU}


async def test_last_group_list_is_kept_while_the_platform_fails(
    cache: LimitsCache, source: ScriptedSource, clock: Clock
) -> None:
    await cache.group_types("TeslaM40")
    source.error = PlatformUnavailable("down")
    clock.now += TTL + 1
    await cache.group_types("TeslaM40")
    await settle()
    assert await cache.group_types("TeslaM40") == {GPU, AcceleratorType.CPU}


# --- floods of invented group names (issue 12, finding 4) ---------------------------------


async def test_a_flood_of_unknown_groups_never_evicts_real_limits(
    source: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    """~4,200 invented names evicted every real group from the shared 4,096-entry LRU;
    then a platform outage denied fitting pods (closed) or admitted oversized ones (open)."""
    cache = make_cache(source, clock, metrics, max_entries=8, max_negative_entries=16)
    await cache.get("TeslaM40", GPU)
    source.error = unknown()
    for i in range(200):
        clock.now += 0.2  # within the lookup rate: every name reaches the source
        with pytest.raises(UnknownResourceGroup):
            await cache.get(f"random-{i}", GPU)
    assert events(metrics, "evict") == 0
    assert events(metrics, "evict_negative") == 200 - 16
    # The platform fails now: the real group is still served (stale-if-error).
    source.error = PlatformUnavailable("down", endpoint="limits")
    clock.now += TTL
    got = await cache.get("TeslaM40", GPU)
    assert got.limits.cpuNumber == 40
    await cache.aclose()


async def test_lookups_of_uncached_groups_are_rate_limited(
    source: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    cache = make_cache(source, clock, metrics, unknown_lookups_per_second=10.0)
    await cache.get("TeslaM40", GPU)
    source.error = unknown()
    for i in range(19):  # the rest of the burst of 20
        with pytest.raises(UnknownResourceGroup):
            await cache.get(f"random-{i}", GPU)
    calls = source.calls
    with pytest.raises(LookupsThrottled, match="too many lookups"):  # the clock stands still
        await cache.get("one-more", GPU)
    assert source.calls == calls
    assert events(metrics, "throttled") == 1
    source.error = None
    assert (await cache.get("TeslaM40", GPU)).limits.cpuNumber == 40  # cached: not throttled
    clock.now += 0.1  # one token later
    source.error = unknown()
    with pytest.raises(UnknownResourceGroup):
        await cache.get("one-more", GPU)
    await cache.aclose()


# --- groups created since the list was read ------------------------------------------------

MIN_INTERVAL = 5.0  # cache.group_list_min_interval's default


def list_fetches(metrics: Metrics, reason: str) -> float:
    sample = metrics.registry.get_sample_value(
        "nodelimits_platform_group_list_refresh_total", {"reason": reason}
    )
    return sample or 0


@pytest.fixture
def platform(source: ScriptedSource) -> ScriptedSource:
    """The cache's source, knowing (like the platform) only the (group, type) pairs it lists."""
    source.offered_only = True
    return source


async def test_group_created_after_the_list_was_read_is_found_by_one_forced_refresh(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    await cache.group_types("TeslaM40")
    platform.add_group("A800", GPU)
    clock.now += 1  # well within the TTL: the cached list is fresh, and lacks A800
    assert await cache.group_types("A800") == {GPU}
    assert platform.group_calls == 2
    assert list_fetches(metrics, "missing_group") == 1


async def test_first_list_lacking_a_group_is_not_fetched_again_at_once(
    cache: LimitsCache, platform: ScriptedSource, metrics: Metrics
) -> None:
    assert await cache.group_types("Nope") == frozenset()
    assert platform.group_calls == 1
    assert (list_fetches(metrics, "expired"), list_fetches(metrics, "missing_group")) == (1, 0)


async def test_bogus_groups_force_at_most_one_list_refresh_per_interval(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    await cache.group_types("TeslaM40")
    clock.now += 1
    for i in range(40):  # 40 invented names within 4 s: one forced refresh
        assert await cache.group_types(f"random-{i}") == frozenset()
        assert await cache.recheck_group(f"random-{i}") == frozenset()
        clock.now += 0.1
    assert platform.group_calls == 2
    assert events(metrics, "list_throttled") == 79
    clock.now += MIN_INTERVAL
    await cache.group_types("random-41")
    assert platform.group_calls == 3


async def test_concurrent_misses_of_a_new_group_share_one_refresh(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock
) -> None:
    await cache.group_types("TeslaM40")
    platform.add_group("A800", GPU)
    clock.now += 1
    platform.gate = asyncio.Event()
    waiting = [asyncio.create_task(cache.group_types("A800")) for _ in range(20)]
    await settle()
    platform.gate.set()
    assert set(await asyncio.gather(*waiting)) == {frozenset({GPU})}
    assert platform.group_calls == 2


async def test_stale_list_lacking_a_group_waits_for_its_background_refresh(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    await cache.group_types("TeslaM40")
    platform.add_group("A800", GPU)
    clock.now += TTL + 1
    assert await cache.group_types("A800") == {GPU}
    assert platform.group_calls == 2
    assert (list_fetches(metrics, "stale"), list_fetches(metrics, "missing_group")) == (1, 0)


async def test_negative_entry_is_forgotten_when_a_refreshed_list_shows_the_group(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    with pytest.raises(UnknownResourceGroup):
        await cache.get("A800", GPU)  # asked for before it was created
    platform.add_group("A800", GPU)
    clock.now += 1  # the negative entry (NEGATIVE_TTL) is still young
    assert await cache.recheck_group("A800") == {GPU}
    got = await cache.get("A800", GPU)
    assert (got.limits.resourceGroup, platform.calls) == ("A800", 2)
    assert events(metrics, "negative_forgotten") == 1


async def test_negative_entry_is_kept_when_the_list_shows_the_group_under_other_types(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock
) -> None:
    platform.add_group("K100", AcceleratorType.DCU)
    with pytest.raises(UnknownResourceGroup):
        await cache.get("K100", GPU)
    clock.now += 1
    assert await cache.recheck_group("K100") == {AcceleratorType.DCU}
    with pytest.raises(UnknownResourceGroup):
        await cache.get("K100", GPU)
    assert platform.calls == 1


async def test_negative_entry_of_a_group_listed_without_a_type_is_forgotten(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock
) -> None:
    with pytest.raises(UnknownResourceGroup):
        await cache.get("Untyped", GPU)
    platform.add_group("Untyped", None)
    clock.now += 1
    assert await cache.recheck_group("Untyped") == frozenset()
    with pytest.raises(UnknownResourceGroup):
        await cache.get("Untyped", GPU)  # asked again: the list could not say
    assert platform.calls == 2


async def test_forced_refresh_of_a_failing_list_keeps_the_last_list(
    cache: LimitsCache, platform: ScriptedSource, clock: Clock, metrics: Metrics
) -> None:
    await cache.group_types("TeslaM40")
    platform.error = PlatformUnavailable("down")
    clock.now += 1
    assert await cache.recheck_group("TeslaM40") == {GPU, AcceleratorType.CPU}
    assert (platform.group_calls, events(metrics, "list_error")) == (2, 1)
