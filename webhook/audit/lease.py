"""Leader election for the continuous audit: a ``coordination.k8s.io/v1`` Lease, so that
exactly one replica writes PolicyReports.

As client-go's leader election: the holder renews ``renewTime`` every ``renew_every``
seconds; another replica takes over only after it has seen the same lease record unchanged
for ``duration`` seconds of *its own* clock (no trust in the holder's clock). Every write
carries the ``resourceVersion`` read, so two replicas racing for an expired lease cannot
both win: the loser's update is a 409 and it stays a follower.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from webhook.audit.cluster import ApiError

__all__ = ["Lease", "Requester"]

log = logging.getLogger(__name__)


class Requester(Protocol):
    def request(
        self,
        method: str,
        path: str,
        query: Any = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any: ...


def _micro_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Lease:
    """One replica's view of the Lease ``namespace/name``; :meth:`tick` is called every
    ``renew_every`` seconds and says whether this replica holds it now."""

    api: Requester
    namespace: str
    name: str
    identity: str
    duration: float = 15.0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self.holder: str = ""
        self.leader = False

    @property
    def path(self) -> str:
        ns = quote(self.namespace, safe="")
        return f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{quote(self.name, safe='')}"

    def _spec(self, transitions: int, acquired: str | None) -> dict[str, Any]:
        now = _micro_time(self.wall())
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def tick(self) -> bool:
        """Acquire, renew or observe the lease once; any API failure means not leader (a
        leader that cannot renew stops writing before another can take over)."""
        try:
            self.leader = self._tick()
        except ApiError as exc:
            if self.leader:
                log.warning("audit lease %s: cannot renew (%s): not writing", self.name, exc)
            self.leader = False
        return self.leader

    def _tick(self) -> bool:
        try:
            current = self.api.request("GET", self.path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(0, None),
            }
            collection = self.path.rpartition("/")[0]
            return self._write("POST", collection, body, "created")
        spec = current.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        now = self.clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        self.holder = holder
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            current["spec"] = self._spec(transitions, spec.get("acquireTime"))
            return self._write("PUT", self.path, current, "renewed")
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        if holder and now - self._observed_at < duration:
            return False  # held by another replica, renewed within its duration
        current["spec"] = self._spec(transitions + 1, None)
        return self._write("PUT", self.path, current, f"taken over from {holder or 'nobody'}")

    def _write(self, method: str, path: str, body: dict[str, Any], what: str) -> bool:
        try:
            self.api.request(method, path, body=body)
        except ApiError as exc:
            if exc.status == 409:  # another replica wrote first
                return False
            raise
        if not self.leader:
            log.info("audit lease %s/%s: %s by %s", self.namespace, self.name, what, self.identity)
        self.holder = self.identity
        return True

    def release(self) -> None:
        """Give the lease up on a clean stop, so a follower need not wait for expiry."""
        if not self.leader:
            return
        self.leader = False
        try:
            current = self.api.request("GET", self.path)
            spec = current.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            spec["holderIdentity"] = ""
            spec["leaseDurationSeconds"] = 1
            self.api.request("PUT", self.path, body=current)
        except ApiError as exc:
            log.warning("audit lease %s: not released (%s)", self.name, exc)
