"""Limits of chosen groups, read through a :class:`LimitsCache` (rendered by :mod:`webhook.output`).

Behind ``nodelimits limits``: its YAML/JSON output is exactly the limits-file format, so
``nodelimits limits --all -o yaml > limits.yaml`` snapshots every group for offline
checks (``nodelimits check --limits-file limits.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.config import PolicySettings
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.platform.cache import LimitsCache
from webhook.platform.errors import PlatformError, UnknownResourceGroup

__all__ = ["Snapshot", "take"]


Pair = tuple[str, AcceleratorType]


@dataclass(frozen=True, slots=True)
class Snapshot:
    limits: tuple[NodeLimits, ...]
    problems: tuple[str, ...]
    """One line per group that could not be read (with --all the others still print)."""


async def _pairs_of_group(
    cache: LimitsCache, policy: PolicySettings, group: str, accelerator: AcceleratorType | None
) -> list[Pair]:
    # The type resolution of DESIGN.md, minus the pod: explicit, configured for the
    # group, offered by the platform (all of them), else the configured default.
    if accelerator is not None:
        return [(group, accelerator)]
    if group in policy.group_types:
        return [(group, policy.group_types[group])]
    offered = sorted(await cache.group_types(group))
    return [(group, t) for t in offered or [policy.default_accelerator_type]]


async def _pairs_of_all(
    cache: LimitsCache, policy: PolicySettings, accelerator: AcceleratorType | None
) -> tuple[list[Pair], list[str]]:
    pairs: list[Pair] = []
    problems: list[str] = []
    for group, offered in sorted((await cache.offered_groups()).items()):
        configured = policy.group_types.get(group)
        types = sorted(offered) or ([configured] if configured else [])
        if accelerator is not None:
            types = [t for t in types if t is accelerator]
        elif not types:
            problems.append(
                f'resource group "{group}": the platform does not give its accelerator type; '
                "set policy.group_types or pass --accelerator-type"
            )
        pairs += [(group, t) for t in types]
    return pairs, problems


async def take(
    cache: LimitsCache,
    policy: PolicySettings,
    *,
    group: str | None,
    accelerator: AcceleratorType | None,
) -> Snapshot:
    """Limits of ``group`` (None: of every offered group).

    For one group, its :class:`PlatformError` propagates; for every group, failures
    become ``problems`` and the rest is still returned.
    """
    if group is not None:
        pairs = await _pairs_of_group(cache, policy, group, accelerator)
        problems: list[str] = []
    else:
        pairs, problems = await _pairs_of_all(cache, policy, accelerator)
    found: list[NodeLimits] = []
    for name, accelerator_type in pairs:
        try:
            found.append((await cache.get(name, accelerator_type)).limits)
        except PlatformError as exc:
            said = await _offered_otherwise(cache, exc, name, accelerator_type)
            if group is not None and len(pairs) == 1:
                raise said from exc
            problems.append(f"{name} ({accelerator_type.value}): {said}")
    return Snapshot(tuple(found), tuple(problems))


async def _offered_otherwise(
    cache: LimitsCache, exc: PlatformError, group: str, wanted: AcceleratorType
) -> PlatformError:
    """An unknown (group, type) whose group the source offers under other types: say so
    ("offered as dcu, not gpu"), not "unknown to the platform". Any other error as it is."""
    if not isinstance(exc, UnknownResourceGroup):
        return exc
    offered = await cache.group_types(group)  # never raises; empty when not said
    if not offered or wanted in offered:
        return exc
    types = " and ".join(sorted(t.value for t in offered))
    return UnknownResourceGroup(
        f'resource group "{group}" is offered as {types}, not {wanted.value}',
        code=exc.code,
        msg=exc.msg,
        endpoint=exc.endpoint,
        resource_group=group,
    )
