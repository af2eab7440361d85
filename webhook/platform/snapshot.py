"""Limits of chosen groups, read through a :class:`LimitsCache` and rendered.

Behind ``nodelimits limits``: its YAML/JSON output is exactly the limits-file format, so
``nodelimits limits --all -o yaml > limits.yaml`` snapshots every group for offline
checks (``nodelimits check --limits-file limits.yaml``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from webhook.config import PolicySettings
from webhook.platform.cache import LimitsCache
from webhook.platform.errors import PlatformError
from webhook.platform.models import AcceleratorType, NodeLimits

__all__ = ["Snapshot", "limits_file_entry", "render", "take"]

_COLUMNS = ("GROUP", "TYPE", "CPU", "MEMORY", "CARDS", "NV", "DCU", "MLU", "NODES", "MAXTIME")

Pair = tuple[str, AcceleratorType]


@dataclass(frozen=True, slots=True)
class Snapshot:
    limits: tuple[NodeLimits, ...]
    problems: tuple[str, ...]
    """One line per group that could not be read (with --all the others still print)."""


def limits_file_entry(limits: NodeLimits) -> dict[str, object]:
    """One limits-file entry: the Open API's ``data`` fields plus ``acceleratorType``."""
    data = limits.model_dump(mode="json", exclude={"id", "userName"})
    head = {
        "resourceGroup": data.pop("resourceGroup"),
        "acceleratorType": data.pop("acceleratorType"),
    }
    return head | data


def _table_row(e: NodeLimits, memory_unit: str) -> tuple[str, ...]:
    accelerator = e.acceleratorType
    return (
        e.resourceGroup,
        accelerator.value if accelerator else "-",
        str(e.cpuNumber),
        f"{e.memorySize}{memory_unit}",
        str(e.card_cap(accelerator) if accelerator else e.gpuNumber),
        str(e.nvLimits),
        str(e.dcuLimits),
        str(e.mluLimits),
        "-" if e.nodeNumber is None else str(e.nodeNumber),
        e.maxTime,
    )


def render(limits: Sequence[NodeLimits], output: str, *, memory_unit: str = "Mi") -> str:
    """``table`` for people; ``yaml``/``json`` in the limits-file format."""
    if output in ("yaml", "json"):
        document = {"resourceGroups": [limits_file_entry(e) for e in limits]}
        if output == "json":
            return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    rows = [_COLUMNS, *(_table_row(e, memory_unit) for e in limits)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "".join(line.rstrip() + "\n" for line in lines)


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
            if group is not None and len(pairs) == 1:
                raise
            problems.append(f"{name} ({accelerator_type.value}): {exc}")
    return Snapshot(tuple(found), tuple(problems))
