"""One object through the whole pipeline, given where its limits come from.

``nodelimits check`` and the admission handlers both call :func:`review`: workloads ->
policy plan -> limits (from a :class:`LimitsProvider`) -> policy decision. What differs
between them is only where objects come from and what they do with a platform failure,
so platform errors other than an unknown group propagate to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from webhook import policy, workloads
from webhook.config import PolicySettings
from webhook.platform.errors import UnknownResourceGroup
from webhook.platform.models import AcceleratorType, NodeLimits

__all__ = ["Limits", "LimitsProvider", "Review", "review", "review_workload"]


class Limits(Protocol):
    """What a provider hands back: the limits, and whether they are stale."""

    @property
    def limits(self) -> NodeLimits: ...

    @property
    def stale(self) -> bool: ...

    @property
    def age_seconds(self) -> float: ...

    @property
    def refresh_failed(self) -> bool: ...


class LimitsProvider(Protocol):
    """Where limits come from: the platform through the cache, or a limits file."""

    async def get(self, group: str, accelerator: AcceleratorType) -> Limits: ...

    async def group_types(self, group: str) -> frozenset[AcceleratorType]: ...


@dataclass(frozen=True, slots=True)
class Review:
    decision: policy.Decision
    stale: bool = False
    """The decision used stale limits because the platform is failing (within maxStale)."""


async def review(
    obj: Mapping[str, Any], settings: PolicySettings, provider: LimitsProvider
) -> Review:
    """Decide one Kubernetes object.

    Raises :class:`~webhook.workloads.InvalidObject` and
    :class:`~webhook.resources.InvalidQuantity` for malformed input, and any
    :class:`~webhook.platform.errors.PlatformError` except an unknown group, which is
    a denial naming the group.
    """
    workload = workloads.workload_of(obj)
    if isinstance(workload, workloads.Skipped):
        return Review(policy.skip(workload))
    return await review_workload(workload, settings, provider)


async def review_workload(
    workload: workloads.Workload, settings: PolicySettings, provider: LimitsProvider
) -> Review:
    planned = policy.plan(workload, settings)
    if planned.group is None:
        return Review(policy.skip(workload))
    if not planned.group:  # an empty annotation: nothing to look up
        return Review(policy.refuse(planned, planned.accelerator))
    group_types: frozenset[AcceleratorType] = frozenset()
    if policy.needs_group_types(planned, settings):
        group_types = await provider.group_types(planned.group)
    accelerator = policy.choose_accelerator(planned, group_types, settings)
    try:
        found = await provider.get(planned.group, accelerator)
    except UnknownResourceGroup:
        offered = await provider.group_types(planned.group)
        hint = (
            f" (it is offered as: {', '.join(sorted(t.value for t in offered))})" if offered else ""
        )
        return Review(
            policy.refuse(
                planned,
                accelerator,
                "resourceGroup",
                f'resource group "{planned.group}" is unknown to the platform '
                f"for accelerator type {accelerator.value}{hint}",
            )
        )
    decision = policy.decide(planned, found.limits, accelerator, settings)
    if found.refresh_failed:
        decision = decision.with_warnings(
            f'limits of resource group "{planned.group}" are {int(found.age_seconds)}s old: '
            "the platform API is failing, so cached limits were used"
        )
    return Review(decision, stale=found.refresh_failed)
