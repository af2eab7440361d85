"""Workloads with several pod sets (the kind table's kinds): one decision naming the roles — pure.

Each role is planned and decided as the pod its template makes (the Pod path, unchanged),
its violations prefixed with the role (``replica Worker: nvidia.com/gpu 16 > 4 cards per
node``), every role's in one decision. All roles are checked against one resource group
and one accelerator type: roles naming different groups or needing different types are a
violation. When every role's pod fits one node, the gang (the pods that must run at once)
is placed on the group's ``nodeNumber`` nodes by :func:`webhook.core.gang.place`;
``policy.gang`` (else the kind's default) says whether a gang that never fits is denied,
warned about or ignored. :mod:`webhook.core.policy` dispatches here.
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal

from webhook.core import gang, policy
from webhook.core.fields import optional_int
from webhook.core.kinds import PodSets, Role
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.core.resources import UNIT_BYTES, format_cores, format_memory, pod_resources
from webhook.core.workloads import Workload

__all__ = ["decide", "gang_classes", "plan"]

_ZERO = Decimal(0)
_SHOWN_ROLES = 10


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _prefixed(role: Role, violations: tuple[policy.Violation, ...]) -> list[policy.Violation]:
    return [replace(v, message=f"{role.label}: {v.message}") for v in violations]


def _member(workload: Workload, sets: PodSets, role: Role) -> Workload:
    own = optional_int(
        role.spec.get("activeDeadlineSeconds"), f"{role.field}.spec.activeDeadlineSeconds"
    )
    present = [d for d in (own, role.deadline, sets.deadline) if d is not None]
    return replace(
        workload,
        pod_spec=role.spec,
        annotations=role.metadata.get("annotations") or {},
        active_deadline_seconds=min(present) if present else None,
        parallelism=None,
        pod_sets=None,
    )


def plan(workload: Workload, settings: policy.PolicySettings) -> policy.Plan:
    """Plan every role; the group and type they agree on are the workload's."""
    sets = workload.pod_sets
    assert sets is not None
    if not sets.roles:  # no pods at all (a Volcano Job without tasks): read the group only
        planned = policy.plan(replace(workload, pod_sets=None), settings)
        return replace(planned, warnings=(*sets.warnings, *planned.warnings))
    members = [(role, policy.plan(_member(workload, sets, role), settings)) for role in sets.roles]
    groups = list(dict.fromkeys(p.group for _, p in members if p.group is not None))
    if not groups:
        return policy.Plan(workload, None, None, policy.NO_DEMAND)
    group = groups[0]
    violations: list[policy.Violation] = []
    warnings: list[str] = list(sets.warnings)
    if len(groups) > 1:
        named = ", ".join(f'{role.label} "{p.group}"' for role, p in members if p.group is not None)
        violations.append(
            policy.Violation(
                "resourceGroup",
                "; ".join(groups),
                "one group",
                "",
                f"roles name different resource groups ({named}); one workload is checked "
                "against one group",
            )
        )
    settled: list[tuple[Role, policy.Plan]] = []
    for role, member in members:
        if member.group is None:  # checked with its siblings, but its pods will not say so
            demand = policy.demand_of(pod_resources(role.spec), settings)
            revealed = demand.revealed
            accelerator = next(iter(revealed)) if len(revealed) == 1 else None
            member = replace(member, group=group, accelerator=accelerator, demand=demand)
            warnings.append(
                f"{role.label}: its pod template has no {settings.group_annotation} "
                f'annotation (checked against "{group}" with the other roles): its pods will '
                "not carry it"
            )
        violations += _prefixed(role, member.violations)
        warnings += member.warnings
        settled.append((role, member))
    types = list(dict.fromkeys(p.accelerator for _, p in settled if p.accelerator is not None))
    if len(types) > 1:
        shown = ", ".join(t.value for t in types)
        violations.append(
            policy.Violation(
                "acceleratorType",
                shown,
                "one type",
                "",
                f"roles need different accelerator types ({shown}); a node of a resource "
                "group has one type",
            )
        )
    return policy.Plan(
        workload,
        group,
        types[0] if types else None,
        policy.NO_DEMAND,
        tuple(violations),
        _dedupe(warnings),
        members=tuple(settled),
    )


def _ceil(value: Decimal) -> int:
    return math.ceil(value)


def gang_classes(
    planned: policy.Plan, accelerator: AcceleratorType, settings: policy.PolicySettings
) -> tuple[list[gang.PodClass], int | None]:
    """The gang's pod classes (demand in millicores, bytes, cards) and its total minimum."""
    sets = planned.workload.pod_sets
    assert sets is not None
    classes: list[gang.PodClass] = []
    for role, member in planned.members:
        requests = member.demand.resources.requests
        cards = member.demand.cards.get(accelerator)
        demand = (
            _ceil(requests.get("cpu", _ZERO) * 1000),
            _ceil(requests.get("memory", _ZERO)),
            _ceil(sum(cards.values(), _ZERO)) if cards else 0,
        )
        if sets.gang_min is None and all(r.min_available is None for r, _ in planned.members):
            minimum = None
        elif role.min_available is not None:
            minimum = role.min_available
        else:
            minimum = 0 if sets.gang_min is not None else role.count
        classes.append(gang.PodClass(role.label, demand, role.count, minimum))
    return classes, sets.gang_min


def _capacity(
    limits: NodeLimits, accelerator: AcceleratorType, unit: str, reserved: tuple[Decimal, Decimal]
) -> tuple[int, ...]:
    """One node in milli-cores, bytes and cards, less ``policy.reserved`` (cpu, memory)."""
    cpu, memory = reserved
    return (
        max(int(limits.cpuNumber * 1000 - cpu * 1000), 0),
        max(int(int(limits.memorySize) * UNIT_BYTES[unit] - memory), 0),
        limits.card_cap(accelerator),
    )


def _roles_shown(classes: list[gang.PodClass], total: int | None) -> str:
    """``replica Master 1, replica Worker 16`` (the pods that must run), or with a total
    minimum ``at least 3 of replica Master 1, replica Worker 4`` (the pods there are)."""
    parts = [f"{c.name} {c.need if total is None else c.count}" for c in classes]
    if len(parts) > _SHOWN_ROLES:
        parts = [*parts[:_SHOWN_ROLES], f"and {len(parts) - _SHOWN_ROLES} more roles"]
    shown = ", ".join(parts)
    return shown if total is None else f"at least {total} of {shown}"


def _check_gang(
    planned: policy.Plan,
    limits: NodeLimits,
    accelerator: AcceleratorType,
    settings: policy.PolicySettings,
    violations: list[policy.Violation],
    warnings: list[str],
) -> None:
    sets = planned.workload.pod_sets
    assert sets is not None
    action = settings.gang or sets.gang_policy
    if action == "ignore" or not limits.nodeNumber:
        return
    classes, total = gang_classes(planned, accelerator, settings)
    unit = settings.memory_unit
    capacity = _capacity(limits, accelerator, unit, settings.reserved.of(planned.group))
    nodes = limits.nodeNumber
    result = gang.place(classes, capacity, nodes, total)
    where = f'the {nodes} node(s) of resource group "{limits.resourceGroup}"'
    if result.fits is None:
        warnings.append(
            f"gang of {result.pods} pods ({_roles_shown(classes, total)}): whether it fits "
            f"on {where} was not decided within the search budget; not checked"
        )
        return
    if result.fits:
        return
    if result.method == "bound" and result.dimension is not None:
        dim = result.dimension
        names = ("cpu", "memory", "cards")
        render = (
            lambda v: format_cores(Decimal(v) / 1000),
            lambda v: format_memory(Decimal(v), unit),
            str,
        )[dim]
        why = (
            f"{names[dim]} {render(result.needed)} needed at once > "
            f"{render(capacity[dim] * nodes)} on all nodes"
        )
    elif result.method == "counting" and result.per_node:
        why = f"at most {result.per_node} per node, {result.per_node * nodes} in all"
    else:
        why = "no placement of them exists"
    text = (
        f"gang: the {result.pods} pods that must run at once ({_roles_shown(classes, total)}) can "
        f"never all be placed on {where} ({why})"
    )
    if action == "deny":
        violations.append(policy.Violation("gang", str(result.pods), str(nodes), "nodes", text))
    else:
        warnings.append(f"{text}; it will wait forever unless fewer must run at once")


def decide(
    planned: policy.Plan,
    limits: NodeLimits,
    accelerator: AcceleratorType,
    settings: policy.PolicySettings,
) -> policy.Decision:
    """Decide every role against one node, then the gang against all nodes."""
    violations = list(planned.violations)
    warnings = list(planned.warnings)
    every_pod_fits = True
    for role, member in planned.members:
        bare = replace(member, violations=(), warnings=())
        alone = policy.decide(bare, limits, accelerator, settings)
        if role.count and any(v.resource != "activeDeadlineSeconds" for v in alone.violations):
            every_pod_fits = False  # its own violation says so; the gang would repeat it
        violations += _prefixed(role, alone.violations)
        warnings += alone.warnings
    if every_pod_fits and not planned.violations:
        _check_gang(planned, limits, accelerator, settings, violations, warnings)
    workload = planned.workload
    return policy.Decision(
        workload.api_version,
        workload.kind,
        workload.namespace,
        workload.name,
        group=planned.group,
        accelerator=accelerator,
        violations=tuple(violations),
        warnings=_dedupe(warnings),
    )
