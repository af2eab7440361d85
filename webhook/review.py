"""One object through the whole pipeline, its limits read through the limits cache.

``nodelimits check`` and the admission handlers both call :func:`review` (or, holding a
parsed workload already, :func:`review_workload`): policy plan -> limits (from a
:class:`~webhook.platform.cache.LimitsCache`, over the live API or a limits file) ->
policy decision. What differs between them is only where objects come from and what they
do with a platform failure, so platform errors other than an unknown group propagate to
the caller. The same pipeline for limits at hand, without awaiting, is
:func:`webhook.core.policy.evaluate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from webhook.core import dra, kinds, policy, trainjob, workloads
from webhook.core.limits import AcceleratorType
from webhook.core.policy import PolicySettings
from webhook.platform.cache import CachedLimits, LimitsCache
from webhook.platform.errors import UnknownResourceGroup

__all__ = [
    "ClaimSource",
    "FileClaims",
    "FileRuntimes",
    "Pending",
    "Review",
    "RuntimeSource",
    "names_runtime",
    "read_runtimes",
    "review",
    "review_cached",
    "review_workload",
]


class ClaimSource(Protocol):
    """Where the ResourceClaimTemplates/ResourceClaims a pod names are read from."""

    async def claims(self, namespace: str, refs: tuple[dra.ClaimRef, ...]) -> dra.Claims:
        """The claims ``refs`` name in ``namespace``. Raises on a failure to read them
        (online: a subclass of the platform's errors, so the failure mode applies)."""
        ...


def _namespace(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    return namespace if isinstance(namespace, str) and namespace else "default"


class FileClaims:
    """``nodelimits check``: the claims among the input documents, and only those (a
    reference to any other is an error: the files are all there is)."""

    def __init__(self, objects: Iterable[Mapping[str, Any]]) -> None:
        self._by_namespace: dict[str, dict[tuple[str, str], Mapping[str, Any]]] = {}
        for obj in objects:
            kind, meta = obj.get("kind"), obj.get("metadata")
            name = meta.get("name") if isinstance(meta, Mapping) else None
            if kind in (dra.TEMPLATE, dra.CLAIM) and isinstance(name, str):
                self._by_namespace.setdefault(_namespace(obj), {})[(str(kind), name)] = obj

    def __bool__(self) -> bool:
        return bool(self._by_namespace)

    async def claims(self, namespace: str, refs: tuple[dra.ClaimRef, ...]) -> dra.Claims:
        return dra.Claims(found=self._by_namespace.get(namespace or "default", {}), complete=True)


class RuntimeSource(Protocol):
    """Where the (Cluster)TrainingRuntime a TrainJob names is read from."""

    async def runtimes(self, ref: trainjob.RuntimeRef) -> trainjob.Runtimes:
        """The runtime ``ref`` names, found or missing. Raises on a failure to read it
        (online: a subclass of the platform's errors, so the failure mode applies)."""
        ...


class FileRuntimes:
    """``nodelimits check``: the training runtimes among the input documents, and only
    those (a TrainJob naming any other is an error: the files are all there is)."""

    def __init__(self, objects: Iterable[Mapping[str, Any]]) -> None:
        found: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        for obj in objects:
            kind, meta = obj.get("kind"), obj.get("metadata")
            name = meta.get("name") if isinstance(meta, Mapping) else None
            if kind in trainjob.RUNTIME_KINDS and isinstance(name, str):
                namespace = _namespace(obj) if kind == trainjob.NAMESPACED_RUNTIME else ""
                found[(str(kind), namespace, name)] = obj
        self._runtimes = trainjob.Runtimes(found=found, complete=True)

    async def runtimes(self, ref: trainjob.RuntimeRef) -> trainjob.Runtimes:
        return self._runtimes


async def read_runtimes(
    obj: Mapping[str, Any], table: kinds.KindTable, source: RuntimeSource | None
) -> trainjob.Runtimes | None:
    """The runtime a TrainJob (a kind-table row with the trainjob synthesizer) names, read
    from ``source``; None for any other object, or with no source.

    Raises :class:`~webhook.core.fields.InvalidObject` for a malformed ``spec.runtimeRef``.
    """
    if source is None or not names_runtime(obj, table):
        return None
    return await source.runtimes(trainjob.reference(obj))


def names_runtime(obj: Mapping[str, Any], table: kinds.KindTable) -> bool:
    """Whether ``obj`` is a TrainJob (a kind-table row with the trainjob synthesizer), whose
    pods are judged through the runtime it names."""
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        return False
    row = table.get(api_version, kind)
    return row is not None and row.synthesizer == "trainjob"


@dataclass(frozen=True, slots=True)
class Review:
    decision: policy.Decision
    served_on_error: bool = False
    """The decision used cached limits only because the platform is failing (stale-if-error,
    within maxStale); a healthy stale-while-revalidate hit is not this."""


async def review(
    obj: Mapping[str, Any],
    settings: PolicySettings,
    limits: LimitsCache,
    claims: ClaimSource | None = None,
    runtimes: RuntimeSource | None = None,
) -> Review:
    """Decide one Kubernetes object (a TrainJob's runtime read from ``runtimes``).

    Raises :class:`~webhook.core.workloads.InvalidObject` and
    :class:`~webhook.core.resources.InvalidQuantity` for malformed input, and any
    :class:`~webhook.platform.errors.PlatformError` except an unknown group, which is
    a denial naming the group.
    """
    table = settings.kind_table
    read = await read_runtimes(obj, table, runtimes)
    workload = workloads.workload_of(obj, table, read)
    return await review_workload(workload, settings, limits, claims)


@dataclass(frozen=True, slots=True)
class Pending:
    """Where :func:`review_cached` stopped: what is left needs a wait (a claim to read, a
    group list or limits not in the cache), :func:`review_workload` goes on from the plan."""

    planned: policy.Plan
    unknown: UnknownResourceGroup | None = None
    """The cache remembers the group as unknown under the type chosen: not asked again."""


def review_cached(
    workload: workloads.Workload | workloads.Skipped,
    settings: PolicySettings,
    limits: LimitsCache,
    claims: ClaimSource | None = None,
) -> Review | Pending:
    """:func:`review_workload` as far as it goes without waiting: the Review when the cache
    holds all it needs (nearly every review), else :class:`Pending`. The admission path
    arms its decision-budget timer only for the rest (a timer per review cost ~4% of it).

    Raises as :func:`review_workload` does while planning."""
    if isinstance(workload, workloads.Skipped):
        return Review(policy.skip(workload))
    planned = policy.plan(workload, settings)
    if planned.group is None:
        return Review(policy.skip(workload))
    if claims is not None and dra.references(workload.pod_spec):
        return Pending(planned)
    if not planned.group:  # an empty annotation: nothing to look up
        return Review(policy.refuse(planned, planned.accelerator))
    group_types: frozenset[AcceleratorType] = frozenset()
    if policy.needs_group_types(planned, settings):
        listed = limits.cached_group_types(planned.group)
        if listed is None:
            return Pending(planned)
        group_types = listed
    accelerator = policy.choose_accelerator(planned, group_types, settings)
    try:
        found = limits.cached(planned.group, accelerator)
    except UnknownResourceGroup as exc:
        return Pending(planned, exc)  # the recheck of the group list may wait
    if found is None:
        return Pending(planned)
    return _decided(planned, found, accelerator, settings)


async def review_workload(
    workload: workloads.Workload | workloads.Skipped,
    settings: PolicySettings,
    limits: LimitsCache,
    claims: ClaimSource | None = None,
    *,
    pending: Pending | None = None,
) -> Review:
    """:func:`review` of an object already read (the admission path reads it once).

    ``claims`` reads the resource claims a checked pod names (None: they are not read, and
    claimed devices are not counted, with a warning). ``pending``: what
    :func:`review_cached` already returned for this workload."""
    if pending is None:
        first = review_cached(workload, settings, limits, claims)
        if isinstance(first, Review):
            return first
        pending = first
    planned = pending.planned
    checked = planned.workload
    refs = dra.references(checked.pod_spec)
    if refs and claims is not None:  # only for a checked object: read, then plan again
        read = await claims.claims(checked.namespace, refs)
        planned = policy.plan(checked, settings, read)
    if not planned.group:  # an empty annotation: nothing to look up
        return Review(policy.refuse(planned, planned.accelerator))
    group_types: frozenset[AcceleratorType] = frozenset()
    if policy.needs_group_types(planned, settings):
        group_types = await limits.group_types(planned.group)
    accelerator = policy.choose_accelerator(planned, group_types, settings)
    try:
        if pending.unknown is not None and planned is pending.planned:
            raise pending.unknown  # the same lookup review_cached made
        found = await limits.get(planned.group, accelerator)
    except UnknownResourceGroup:
        # Maybe created or re-typed on the platform since the group list was read: read
        # the list again (rate-limited) and look the group up once more when the list now
        # offers the type to use, or a different type is now chosen.
        offered = await limits.recheck_group(planned.group)
        again = policy.choose_accelerator(planned, offered, settings)
        if again is accelerator and again not in offered:
            return Review(policy.unknown_group(planned, accelerator, offered))
        try:
            found = await limits.get(planned.group, again)
        except UnknownResourceGroup:
            return Review(policy.unknown_group(planned, again, offered))
        accelerator = again
    return _decided(planned, found, accelerator, settings)


def _decided(
    planned: policy.Plan,
    found: CachedLimits,
    accelerator: AcceleratorType,
    settings: PolicySettings,
) -> Review:
    decision = policy.decide(planned, found.limits, accelerator, settings)
    if found.refresh_failed:
        decision = decision.with_warnings(
            f'limits of resource group "{planned.group}" are {int(found.age_seconds)}s old: '
            "the platform API is failing, so cached limits were used"
        )
    return Review(decision, served_on_error=found.refresh_failed)
