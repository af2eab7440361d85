"""Limits cached per (group, accelerator type): fast when warm, bounded, truthful.

::

    age < ttl                  -> hit: the cached value, stale=False
    ttl <= age < max_stale     -> stale: the cached value at once, stale=True, and ONE
                                  background refresh (stale-while-revalidate; if the platform
                                  fails, the value keeps being served: stale-if-error)
    no value / age >= max_stale -> miss: wait (single-flight, bounded by the deadline) for
                                  the source; its PlatformError propagates
    10004 (unknown group)      -> remembered for negative_ttl, raised again without a call

The resource-group list (which types a group is offered under) is cached the same way
(``ttl``, ``max_stale``, stale-while-revalidate). A group the cached list lacks is one
created since it was read, or a bogus name: :meth:`LimitsCache.group_types` then asks the
platform again at once, and so does :meth:`LimitsCache.recheck_group` after a lookup said
"unknown". These forced refreshes share one flight with any running list fetch and are
made at most once per ``group_list_min_interval``, so a flood of pods naming invented
groups costs the platform one list request per interval; every list fetch is counted by
reason in ``nodelimits_platform_group_list_refresh_total``. A list that shows a group
forgets the negative entries it contradicts (the pair listed, or the group listed
without a type), so a group is not kept unknown once the platform offers it.

Unknown groups are remembered apart (``max_negative_entries``): a flood of invented names
(~4,200 dry-run creates, issue 12 finding 4) evicted the real groups from the shared LRU, so
that during a platform outage fitting pods were denied and ``failureMode: open`` admitted a
100-CPU pod in a 40-core group. Now negative entries only evict each other, and lookups of
pairs without cached limits are rate-limited (``unknown_lookups_per_second``, burst
:data:`UNKNOWN_BURST`): over the rate they wait up to the deadline, then
:class:`~webhook.platform.errors.LookupsThrottled` (denied, never failed open).

``stale`` means "older than the TTL" (a healthy stale-while-revalidate hit too);
``refresh_failed`` means the value is served only because the platform is failing, and
that is what the review turns into a warning. The
clock is injected (``time.monotonic`` by default) so tests move time instead of sleeping.
Every task the cache starts is tracked and cancelled by :meth:`LimitsCache.aclose`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from webhook.config import CacheSettings
from webhook.core.limits import AcceleratorType, GroupEntry, GroupTypes, NodeLimits, offered_types
from webhook.metrics import Metrics
from webhook.platform.errors import (
    LookupsThrottled,
    PlatformError,
    PlatformUnavailable,
    UnknownResourceGroup,
)
from webhook.platform.flights import Flights

__all__ = ["CachedLimits", "LimitsCache", "LimitsSource"]

log = logging.getLogger(__name__)

Key = tuple[str, AcceleratorType]
UNKNOWN_BURST = 20
"""Lookups of pairs without cached limits allowed at once before the rate applies."""
LIST_REASONS = ("expired", "stale", "missing_group", "unknown_group")
"""Why the resource-group list is fetched: no usable list (none yet, too old, or a failed
fetch retried); stale-while-revalidate; a group the cached list lacks; a lookup that
said unknown (the last two are the forced, rate-limited refreshes)."""


class _TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; the clock is the cache's."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens, self.at = float(burst), clock()

    def take(self) -> float:
        """Take a token: 0.0, or the seconds until one is due (nothing taken then)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(frozen=True, slots=True)
class CachedLimits:
    """What :meth:`LimitsCache.get` returns."""

    limits: NodeLimits
    stale: bool
    """Older than the TTL (served while a refresh runs, or because the platform fails)."""
    age_seconds: float
    refresh_failed: bool = False
    """The last refresh failed: the value is served only because the platform is failing
    (stale-if-error). A healthy stale-while-revalidate hit has this False."""


class LimitsSource(Protocol):
    """Where limits come from: the platform client, or a limits file (``StaticLimits``).

    The one source protocol; everything reads a source through a :class:`LimitsCache`."""

    async def node_limits(self, group: str, accelerator: AcceleratorType) -> NodeLimits: ...

    async def resource_groups(self) -> Sequence[GroupEntry]: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    fetched_at: float
    limits: NodeLimits | None = None
    unknown: UnknownResourceGroup | None = None  # negative entry
    refresh_failed: bool = False


@dataclass(frozen=True, slots=True)
class _Groups:
    started_at: float  # when the last fetch (ok or failed) began asking the source
    fetched_at: float  # when ``table`` was read from the source
    checked_at: float  # when the last fetch ended (failures are retried after negative_ttl)
    table: GroupTypes
    failed: bool


def _raise_again(error: UnknownResourceGroup) -> UnknownResourceGroup:
    # A fresh instance per raise: one shared exception raised by many requests would
    # grow a traceback with each of them.
    return UnknownResourceGroup(
        str(error),
        code=error.code,
        msg=error.msg,
        endpoint=error.endpoint,
        resource_group=error.resource_group,
    )


class LimitsCache:
    """The limits the admission path uses; see the module docstring for the semantics."""

    def __init__(
        self,
        source: LimitsSource,
        settings: CacheSettings,
        metrics: Metrics,
        *,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._settings = settings
        self._metrics = metrics
        self._deadline = deadline
        self._clock = clock
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()  # limits only
        self._negative: OrderedDict[Key, _Entry] = OrderedDict()  # unknown groups, apart
        self._unknown_lookups = _TokenBucket(
            settings.unknown_lookups_per_second, UNKNOWN_BURST, clock
        )
        self._flights: Flights[Key, NodeLimits] = Flights()
        self._group_flight: Flights[str, GroupTypes] = Flights()
        self._groups: _Groups | None = None
        self._forced_at: float | None = None  # last forced refresh of the group list
        # Label children bound once: .labels() costs more than the whole hit path.
        self._events = {
            event: metrics.cache_events.labels(event)
            for event in (
                "hit",
                "miss",
                "stale",
                "refresh",
                "error",
                "list_error",
                "negative",
                "evict",
                "evict_negative",
                "throttled",
                "list_throttled",
                "negative_forgotten",
            )
        }
        self._list_refreshes = {
            reason: metrics.group_list_refreshes.labels(reason) for reason in LIST_REASONS
        }
        metrics.cache_age.set_function(self._oldest_age)

    def __repr__(self) -> str:
        return f"LimitsCache({type(self._source).__name__}, entries={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tasks_running(self) -> int:
        """Fetches and refreshes in flight (tests assert 0 after close)."""
        return len(self._flights) + len(self._group_flight)

    def cached(self, group: str, accelerator: AcceleratorType) -> CachedLimits | None:
        """What :meth:`get` answers without waiting: a fresh hit, a stale one (its refresh
        started), or the unknown group of a negative entry raised again; None when
        :meth:`get` would wait for the source."""
        key = (group, accelerator)
        negative = self._negative.get(key)
        if (
            negative is not None
            and negative.unknown is not None
            and self._clock() - negative.fetched_at < self._settings.negative_ttl
        ):
            self._event("negative")
            raise _raise_again(negative.unknown)
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        if entry.limits is None:
            return None
        age = self._clock() - entry.fetched_at
        if age < self._settings.ttl:
            self._event("hit")
            return CachedLimits(entry.limits, stale=False, age_seconds=age)
        if age < self._settings.max_stale:
            self._event("stale")
            if not self._flights.running(key):
                self._event("refresh")
                self._flights.run(key, lambda: self._fetch(key))
            return CachedLimits(
                entry.limits, stale=True, age_seconds=age, refresh_failed=entry.refresh_failed
            )
        return None

    async def get(self, group: str, accelerator: AcceleratorType) -> CachedLimits:
        """Limits of ``group`` for ``accelerator``; raises the source's PlatformError when
        there is no usable value."""
        found = self.cached(group, accelerator)
        if found is not None:
            return found
        key = (group, accelerator)
        self._event("miss")
        if key not in self._entries and not self._flights.running(key):
            await self._throttle(group, accelerator)
        task = self._flights.run(key, lambda: self._fetch(key))
        try:
            limits = await asyncio.wait_for(asyncio.shield(task), self._deadline)
        except TimeoutError as exc:
            raise PlatformUnavailable(
                f"no limits for {group!r} ({accelerator.value}) within {self._deadline:g}s",
                endpoint="cache",
                resource_group=group,
            ) from exc
        return CachedLimits(limits, stale=False, age_seconds=0.0)

    async def group_types(self, group: str) -> frozenset[AcceleratorType]:
        """Types under which the source offers ``group``; empty when unknown or unavailable.

        Never raises; waits at most the deadline (per fetch); the list is cached like
        limits. A group the cached list lacks forces one refresh of it (rate-limited, see
        the module docstring) unless a list read since this call began lacks it too.
        """
        asked = self._clock()
        table = await self._group_table()
        if group in table:
            return table[group]
        listed = self._groups
        if listed is not None and listed.started_at >= asked:
            return frozenset()  # asked just now: a refresh would say the same
        return (await self._forced_table("missing_group")).get(group, frozenset())

    def cached_group_types(self, group: str) -> frozenset[AcceleratorType] | None:
        """What :meth:`group_types` answers without waiting: the types the usable cached
        list offers ``group`` under; None when the list must be fetched or lacks it."""
        table = self._usable_table()
        if table is None or group not in table:
            return None
        return table[group]

    async def recheck_group(self, group: str) -> frozenset[AcceleratorType]:
        """:meth:`group_types` after a lookup of ``group`` said unknown: the list is
        refreshed first (rate-limited, shared with any running fetch), so a group created
        or re-typed since it was read is seen, and negative entries it contradicts are
        forgotten. Never raises."""
        return (await self._forced_table("unknown_group")).get(group, frozenset())

    async def offered_groups(self) -> GroupTypes:
        """Every group the source offers, with its types (empty: not said), fetched now.

        Uncached and raising :class:`PlatformError`: for ``nodelimits limits --all``, not
        for the admission path.
        """
        return offered_types(await self._source.resource_groups())

    async def aclose(self) -> None:
        """Cancel every fetch and refresh; the cache serves nothing new afterwards."""
        await self._flights.aclose()
        await self._group_flight.aclose()
        self._metrics.cache_age.set_function(lambda: 0.0)

    # --- internals ------------------------------------------------------------------------

    def _event(self, event: str) -> None:
        self._events[event].inc()

    def _oldest_age(self) -> float:
        if not self._entries:
            return 0.0
        now = self._clock()
        return max(now - e.fetched_at for e in self._entries.values())

    async def _throttle(self, group: str, accelerator: AcceleratorType) -> None:
        """Wait for a lookup token (a pair without cached limits), up to the deadline."""
        waited = 0.0
        while (due := self._unknown_lookups.take()) > 0:
            if waited + due > self._deadline:
                self._event("throttled")
                raise LookupsThrottled(
                    f"too many lookups of resource groups without cached limits "
                    f"(over {self._settings.unknown_lookups_per_second:g}/s); "
                    f"{group!r} ({accelerator.value}) not looked up, try again",
                    endpoint="cache",
                    resource_group=group,
                )
            await asyncio.sleep(due)
            waited += due

    def _store(self, key: Key, entry: _Entry) -> None:
        if entry.unknown is not None:
            self._entries.pop(key, None)  # removed on the platform: never served stale again
            self._negative[key] = entry
            self._negative.move_to_end(key)
            while len(self._negative) > self._settings.max_negative_entries:
                self._negative.popitem(last=False)
                self._event("evict_negative")
            return
        self._negative.pop(key, None)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._settings.max_entries:
            self._entries.popitem(last=False)
            self._event("evict")

    async def _fetch(self, key: Key) -> NodeLimits:
        group, accelerator = key
        try:
            limits = await self._source.node_limits(group, accelerator)
        except UnknownResourceGroup as exc:
            self._event("error")
            self._store(key, _Entry(self._clock(), unknown=exc))
            raise
        except PlatformError as exc:
            self._event("error")
            log.warning("limits of %s (%s) not refreshed: %s", group, accelerator.value, exc)
            old = self._entries.get(key)
            if old is not None and old.limits is not None:
                self._entries[key] = replace(old, refresh_failed=True)
            raise
        self._store(key, _Entry(self._clock(), limits=limits))
        return limits

    def _usable_table(self) -> GroupTypes | None:
        """The group list when it can be used without waiting (a stale one's refresh
        started); None: it must be fetched."""
        cached = self._groups
        if cached is not None:
            now = self._clock()
            if cached.failed and now - cached.checked_at < self._settings.negative_ttl:
                return cached.table
            if not cached.failed and now - cached.fetched_at < self._settings.ttl:
                return cached.table
            if cached.table and now - cached.fetched_at < self._settings.max_stale:
                self._fetch_groups_for("stale")
                return cached.table
        return None

    async def _group_table(self) -> GroupTypes:
        table = self._usable_table()
        if table is not None:
            return table
        return await self._wait_for_groups(self._fetch_groups_for("expired"), self._groups)

    async def _forced_table(self, reason: str) -> GroupTypes:
        """The list asked again now (joining a running fetch), unless a forced refresh was
        made less than ``group_list_min_interval`` ago: then the cached list."""
        cached = self._groups
        if not self._group_flight.running("groups"):
            now = self._clock()
            interval = self._settings.group_list_min_interval
            if self._forced_at is not None and now - self._forced_at < interval:
                self._event("list_throttled")
                return cached.table if cached is not None else {}
            self._forced_at = now
        return await self._wait_for_groups(self._fetch_groups_for(reason), cached)

    def _fetch_groups_for(self, reason: str) -> asyncio.Task[GroupTypes]:
        """The running list fetch, or a new one counted under ``reason``."""
        if not self._group_flight.running("groups"):
            self._list_refreshes[reason].inc()
        return self._group_flight.run("groups", self._fetch_groups)

    async def _wait_for_groups(
        self, task: asyncio.Task[GroupTypes], cached: _Groups | None
    ) -> GroupTypes:
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._deadline)
        except TimeoutError:
            return cached.table if cached is not None else {}

    async def _fetch_groups(self) -> GroupTypes:
        previous = self._groups
        started = self._clock()
        try:
            entries = await self._source.resource_groups()
        except PlatformError as exc:
            # Its own event: "error" counts failed limits fetches, which callers watch.
            self._event("list_error")
            log.warning("resource-group list unavailable: %s", exc)
            now = self._clock()
            if previous is not None and now - previous.fetched_at < self._settings.max_stale:
                # Keep serving the last list (stale-if-error); retry after negative_ttl.
                self._groups = replace(previous, started_at=started, checked_at=now, failed=True)
            else:
                self._groups = _Groups(started, now, now, {}, failed=True)
            return self._groups.table
        table = offered_types(entries)
        now = self._clock()
        self._groups = _Groups(started, now, now, table, failed=False)
        self._forget_listed(table)
        return table

    def _forget_listed(self, table: GroupTypes) -> None:
        """Drop the negative entries ``table`` contradicts: the pair is listed, or the group
        is listed without a type (the list cannot say which type it lacks)."""
        shown = [
            key
            for key in self._negative
            if key[0] in table and (not table[key[0]] or key[1] in table[key[0]])
        ]
        for key in shown:
            del self._negative[key]
            self._event("negative_forgotten")
