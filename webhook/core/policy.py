"""The decision: which group and accelerator type, and does the pod fit one node — pure.

Three steps, so the I/O in between (fetching limits) stays outside:

1. :func:`plan` reads a :class:`~webhook.core.workloads.Workload`: its resource group, the
   accelerator type the annotation or its devices reveal, and its effective demand.
2. :func:`choose_accelerator` settles the type: annotation, else the devices, else the
   group's own type, else the configured default.
3. :func:`decide` compares the demand with one node's :class:`NodeLimits` and returns a
   frozen :class:`Decision` listing every violation and warning.

:func:`evaluate` runs the three for limits at hand (tests, benchmarks); the admission
path and ``nodelimits check`` await their limits in :mod:`webhook.review`. Enforcement
(deny / warn / audit) and failure handling are applied by the callers, never here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from webhook.core import dra
from webhook.core.devices import DEFAULT_ACCELERATORS, AcceleratorRule, DeviceCount, DeviceTable
from webhook.core.dra import DraSettings
from webhook.core.kinds import GangPolicy, KindRule, KindTable, Role, builtin_table
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.core.resources import (
    UNIT_BYTES,
    InvalidQuantity,
    PodResources,
    format_cores,
    format_memory,
    parse_quantity,
    pod_resources,
)
from webhook.core.workloads import Skipped, Workload, display_name

__all__ = [
    "AnnotationRead",
    "Decision",
    "Demand",
    "Plan",
    "PolicySettings",
    "Reserve",
    "Reserved",
    "Violation",
    "choose_accelerator",
    "decide",
    "evaluate",
    "plan",
    "read_annotation",
    "refuse",
    "skip",
    "unknown_group",
]

_ZERO = Decimal(0)
_MEMORY_FORMAT = {unit: functools.partial(format_memory, unit=unit) for unit in UNIT_BYTES}


def _quantity(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    return parse_quantity(value, field="policy.reserved")


Quantity = Annotated[Decimal, BeforeValidator(_quantity), Field(ge=0)]
"""A Kubernetes quantity in settings (``"1"``, ``"500m"``, ``"2Gi"``), in base units."""
LimitsPolicy = Literal["warn", "deny", "ignore"]


class Reserve(BaseModel):
    """Per-node cpu and memory not available to pods (a node's capacity minus allocatable:
    system-reserved, kube-reserved, eviction threshold). None: not set here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: Quantity | None = None
    """Cores, as a Kubernetes quantity: ``"1"``, ``"500m"``."""
    memory: Quantity | None = None
    """Bytes, as a Kubernetes quantity: ``"2Gi"``."""


class Reserved(Reserve):
    """``policy.reserved``: subtracted from the platform's per-node cpu and memory before
    comparing, for every group, and per group in ``groups`` (a group's value for a resource
    replaces the global one; the other resource keeps the global)."""

    groups: dict[str, Reserve] = Field(default_factory=dict)

    def of(self, group: str | None) -> tuple[Decimal, Decimal]:
        """(cpu cores, memory bytes) reserved on each node of ``group``."""
        own = self.groups.get(group) if group is not None else None
        cpu = own.cpu if own is not None and own.cpu is not None else self.cpu
        memory = own.memory if own is not None and own.memory is not None else self.memory
        return (cpu or _ZERO, memory or _ZERO)


class PolicySettings(BaseModel):
    """What the decision checks and how it reads objects (the ``policy`` settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    group_annotation: str = "nodelimits.io/resource-group"
    """Annotation naming the resource group; objects without it are not checked."""
    type_annotation: str = "nodelimits.io/accelerator-type"
    """Optional annotation naming the accelerator type (gpu|dcu|mlu|cpu)."""
    default_group: str | None = None
    """Group assumed when an object has no annotation (None: unannotated objects are skipped)."""
    default_accelerator_type: AcceleratorType = AcceleratorType.CPU
    """Type used when neither annotation, devices nor the group tell it."""
    group_types: dict[str, AcceleratorType] = Field(default_factory=dict)
    """Known type per group, e.g. {"TeslaM40": "gpu"}."""
    accelerators: Annotated[tuple[AcceleratorRule, ...], AfterValidator(DeviceTable)] = (
        DEFAULT_ACCELERATORS
    )
    """The accelerator resource table (whole cards vs virtual/fractional resources),
    compiled once into a :class:`~webhook.core.devices.DeviceTable` when validated."""
    memory_unit: Literal["Mi", "M", "Gi", "G", "Ki", "K"] = "Mi"
    """Unit of the platform's memorySize. Observed to be MiB (Slurm's MB)."""
    require_deadline: bool = False
    """Deny (instead of warn) a Pod or Job without activeDeadlineSeconds under a finite maxTime."""
    gang: GangPolicy | None = None
    """Pods that must run at once but can never all be placed on the group's nodeNumber
    nodes: deny | warn | ignore. None: each kind's default (deny where the kind's gang is
    explicit: Volcano, MPIJob, an LWS group, a set minAvailable; warn otherwise, Jobs too)."""
    workload_kinds: tuple[KindRule, ...] = ()
    """Rows added to the built-in kind table (a row with a built-in's group, version and
    kind replaces it); every path is validated at start."""

    @property
    def kind_table(self) -> KindTable:
        """The built-in kind table with ``workload_kinds`` over it."""
        return builtin_table(self.workload_kinds)

    limits: LimitsPolicy = "warn"
    """Effective cpu/memory *limits* above one node while the requests fit: warn | deny |
    ignore. Requests decide, as the scheduler's fit check does: such a pod runs, it just
    can never use its whole limit. Cards are unaffected (a device's request is its limit)."""
    reserved: Reserved = Field(default_factory=Reserved)
    """cpu and memory subtracted from the platform's per-node figures (which may be
    capacity, while pods get allocatable), globally and per group."""
    dra: DraSettings = Field(default_factory=DraSettings)
    """Cards through Dynamic Resource Allocation: DeviceClass -> type, and what a request
    that cannot be counted (allocationMode All, firstAvailable) does."""

    @property
    def devices(self) -> DeviceTable:
        """The compiled accelerator table (``accelerators`` as validated)."""
        table = self.accelerators
        # model_copy(update=...) does not validate: compile a table handed in raw.
        return table if isinstance(table, DeviceTable) else DeviceTable(table)


@dataclass(frozen=True, slots=True)
class Violation:
    """One resource over the node's limit (or one reason the object cannot be admitted)."""

    resource: str
    requested: str
    allowed: str
    unit: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one object: allowed unless it has violations."""

    api_version: str
    kind: str
    namespace: str
    name: str
    group: str | None = None
    accelerator: AcceleratorType | None = None
    violations: tuple[Violation, ...] = ()
    warnings: tuple[str, ...] = ()
    skipped: str | None = None

    @property
    def allowed(self) -> bool:
        return not self.violations

    @property
    def display_name(self) -> str:
        return display_name(self.namespace, self.name)

    @property
    def message(self) -> str:
        """The one-line deny message, kubectl style; empty when allowed."""
        if self.allowed:
            return ""
        subject = f"{self.kind} {self.display_name}"
        detail = "; ".join(v.message for v in self.violations)
        if not self.group:
            return f"nodelimits: {subject} is rejected: {detail}"
        accel = f" ({self.accelerator.value})" if self.accelerator else ""
        return (
            f'nodelimits: {subject} does not fit one node of resource group "{self.group}"'
            f"{accel}: {detail}"
        )

    def with_warnings(self, *warnings: str) -> Decision:
        return replace(self, warnings=self.warnings + warnings)


@dataclass(frozen=True, slots=True)
class Demand:
    """What one pod asks of a node."""

    resources: PodResources
    cards: Mapping[AcceleratorType, Mapping[str, Decimal]]
    """Whole-card requests per type and resource name (request = limit for devices)."""
    card_limits: Mapping[AcceleratorType, Mapping[str, Decimal]]
    revealed: frozenset[AcceleratorType]
    """Types the pod's device resources reveal (cards or virtual)."""


NO_DEMAND = Demand(PodResources({}, {}), {}, {}, frozenset())


@dataclass(frozen=True, slots=True)
class Plan:
    """A workload read for the decision; ``group is None`` means it is not checked."""

    workload: Workload
    group: str | None
    accelerator: AcceleratorType | None
    """From the annotation or the devices; None: ask the group's type."""
    demand: Demand
    violations: tuple[Violation, ...] = ()
    warnings: tuple[str, ...] = ()
    members: tuple[tuple[Role, Plan], ...] = ()
    """A kind of the kind table: each role's own plan (see :mod:`webhook.core.podsets`)."""


def _is_extended(resource: str) -> bool:
    return "/" in resource and not resource.startswith("kubernetes.io/")


def demand_of(resources: PodResources, settings: PolicySettings) -> Demand:
    cards: dict[AcceleratorType, dict[str, Decimal]] = {}
    card_limits: dict[AcceleratorType, dict[str, Decimal]] = {}
    revealed: set[AcceleratorType] = set()
    devices = settings.devices
    for source, target in ((resources.requests, cards), (resources.limits, card_limits)):
        for name, amount in source.items():
            if _is_extended(name) and amount != amount.to_integral_value():
                raise InvalidQuantity(
                    name, format(amount, "f"), "extended resources must be whole numbers"
                )
            rule = devices.rule(name)
            if rule is None:
                by_class = dra.extended_type(name, settings.dra)  # deviceclass.resource...
                if by_class is not None:
                    rule = AcceleratorRule(pattern=name, type=by_class)
            if rule is None or amount == 0:
                continue
            revealed.add(rule.type)
            if rule.count is DeviceCount.CARDS:
                target.setdefault(rule.type, {})[name] = amount
    return Demand(resources, cards, card_limits, frozenset(revealed))


@dataclass(frozen=True, slots=True)
class AnnotationRead:
    """One annotation as nodelimits reads it: the exact key, else a key differing only in
    case. Case variants with different values are a ``conflict`` (every such key, sorted):
    the apiserver sorts keys, a file keeps them in order, so any pick would let the offline
    check and the webhook disagree; a conflict is a violation instead."""

    value: str | None
    written: str | None
    conflict: tuple[str, ...] = ()


def read_annotation(annotations: Mapping[str, str], key: str) -> AnnotationRead:
    """Read ``key`` from ``annotations`` (see :class:`AnnotationRead`). Order-independent."""
    folded = key.lower()
    variants = [(k, v) for k, v in annotations.items() if k.lower() == folded]
    if not variants:
        return AnnotationRead(None, None)
    if len({v.strip() for _, v in variants}) > 1:
        return AnnotationRead(None, None, tuple(sorted(k for k, _ in variants)))
    if key in annotations:
        return AnnotationRead(annotations[key], key)
    written, value = min(variants)
    return AnnotationRead(value, written)


def _conflict(resource: str, read: AnnotationRead, annotations: Mapping[str, str]) -> Violation:
    shown = ", ".join(f"{k}={annotations[k]!r}" for k in read.conflict)
    return Violation(
        resource,
        "; ".join(annotations[k] for k in read.conflict),
        "one value",
        "",
        f"conflicting annotations {shown}: keys that differ only in case must not disagree",
    )


def _with_claims(
    demand: Demand,
    workload: Workload,
    claims: dra.Claims | None,
    settings: PolicySettings,
    violations: list[Violation],
    warnings: list[str],
) -> Demand:
    """``demand`` plus the cards its resource claims ask for (see :mod:`webhook.core.dra`)."""
    refs = dra.references(workload.pod_spec)
    if not refs:
        return demand
    counted = dra.count(
        refs, claims or dra.NO_CLAIMS, settings.dra, missing_is_error=workload.kind == "Pod"
    )
    for reason in counted.uncountable:
        if settings.dra.uncountable == "deny":
            violations.append(Violation("resourceClaims", "", "", "", reason))
        else:
            warnings.append(f"{reason}: not checked")
    if counted.unread:
        warnings.append(
            f"resource claims {', '.join(counted.unread)}: their devices were not counted"
        )
    if not counted.cards:
        return demand
    cards = {t: dict(names) for t, names in demand.cards.items()}
    card_limits = {t: dict(names) for t, names in demand.card_limits.items()}
    for accel, names in counted.cards.items():
        for target in (cards, card_limits):  # a claimed device's request is its limit
            into = target.setdefault(accel, {})
            for name, n in names.items():
                into[name] = into.get(name, _ZERO) + n
    return Demand(demand.resources, cards, card_limits, demand.revealed | set(counted.cards))


def plan(workload: Workload, settings: PolicySettings, claims: dra.Claims | None = None) -> Plan:
    """Read a workload's group, accelerator hint and demand.

    ``claims``: the ResourceClaimTemplates/ResourceClaims its pods name, read by the caller
    (None: none were read, so claimed devices are not counted, with a warning).
    Raises :class:`~webhook.core.resources.InvalidQuantity` for malformed quantities and
    :class:`~webhook.core.dra.ClaimNotFound` for a claim that is known not to exist.
    """
    if workload.pod_sets is not None:
        from webhook.core import podsets  # podsets builds on this module

        return podsets.plan(workload, settings)
    violations: list[Violation] = []
    warnings: list[str] = []
    annotations = workload.annotations
    read = read_annotation(annotations, settings.group_annotation)
    if read.value is None and not read.conflict and workload.fallback_annotations:
        read = read_annotation(workload.fallback_annotations, settings.group_annotation)
        if read.value is not None or read.conflict:
            annotations = workload.fallback_annotations
            warnings.append(_fallback_warning(workload, settings.group_annotation))
    group, written = read.value, read.written
    if read.conflict:  # denied without a lookup: an empty group is refused as it stands
        violations.append(_conflict("resourceGroup", read, annotations))
        return Plan(workload, "", None, NO_DEMAND, tuple(violations), tuple(warnings))
    if written is not None and written != settings.group_annotation:
        warnings.append(
            f"annotation key {written!r} differs in case from {settings.group_annotation!r}; "
            "it was checked, but other tools may not read it"
        )
    if group is None:
        group = settings.default_group
    if group is None:  # not ours: its resources are neither computed nor judged
        return Plan(workload, None, None, NO_DEMAND)
    demand = demand_of(pod_resources(workload.pod_spec), settings)
    demand = _with_claims(demand, workload, claims, settings, violations, warnings)
    group = group.strip()
    if not group:
        violations.append(
            Violation(
                "resourceGroup",
                "",
                "",
                "",
                f"annotation {settings.group_annotation} is empty",
            )
        )

    accelerator: AcceleratorType | None = None
    type_read = read_annotation(annotations, settings.type_annotation)
    type_text = type_read.value
    if type_read.conflict:
        violations.append(_conflict("acceleratorType", type_read, annotations))
    elif type_text is not None:
        try:
            accelerator = AcceleratorType.parse(type_text)
        except ValueError as exc:
            violations.append(
                Violation(
                    "acceleratorType",
                    type_text,
                    "",
                    "",
                    f"annotation {settings.type_annotation}: {exc}",
                )
            )

    if len(demand.revealed) > 1:
        kinds = ", ".join(sorted(t.value for t in demand.revealed))
        violations.append(
            Violation(
                "acceleratorType",
                kinds,
                "one vendor",
                "",
                f"requests devices of more than one accelerator type ({kinds}); "
                "a node of a resource group has one type",
            )
        )
    elif accelerator is None and demand.revealed:
        (accelerator,) = demand.revealed
    return Plan(workload, group, accelerator, demand, tuple(violations), tuple(warnings))


def choose_accelerator(
    planned: Plan, group_types: frozenset[AcceleratorType], settings: PolicySettings
) -> AcceleratorType:
    """Annotation or devices, else the group's own type, else the configured default."""
    if planned.accelerator is not None:
        return planned.accelerator
    if planned.group is not None and planned.group in settings.group_types:
        return settings.group_types[planned.group]
    if len(group_types) == 1:
        (only,) = group_types
        return only
    return settings.default_accelerator_type


def needs_group_types(planned: Plan, settings: PolicySettings) -> bool:
    """Whether :func:`choose_accelerator` would use the group's offered types."""
    return (
        planned.group is not None
        and planned.accelerator is None
        and planned.group not in settings.group_types
    )


def _decision(workload: Workload | Skipped, **fields: Any) -> Decision:
    return Decision(
        workload.api_version, workload.kind, workload.namespace, workload.name, **fields
    )


def skip(workload: Workload | Skipped, reason: str | None = None) -> Decision:
    """An allowed, unchecked object."""
    if isinstance(workload, Skipped):
        reason = workload.reason
    return _decision(workload, skipped=reason or "no resource group annotation")


def refuse(
    planned: Plan, accelerator: AcceleratorType | None, resource: str = "", message: str = ""
) -> Decision:
    """A denial without limits to compare with: the plan's own violations (an empty
    annotation, mixed vendors), plus ``message`` when given (unknown group, platform refusal).
    """
    extra = (Violation(resource, planned.group or "", "", "", message),) if message else ()
    return _decision(
        planned.workload,
        group=planned.group,
        accelerator=accelerator,
        violations=(*planned.violations, *extra),
        warnings=planned.warnings,
    )


def _fmt_seconds(td: timedelta) -> str:
    total = int(td.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{days}-{clock}" if days else clock


def decide(
    planned: Plan,
    limits: NodeLimits,
    accelerator: AcceleratorType,
    settings: PolicySettings,
) -> Decision:
    """Compare one pod's demand with one node of the group; collect every violation."""
    if planned.members:
        from webhook.core import podsets  # podsets builds on this module

        return podsets.decide(planned, limits, accelerator, settings)
    violations = list(planned.violations)
    warnings = list(planned.warnings)
    workload, demand = planned.workload, planned.demand
    requests, lims = demand.resources.requests, demand.resources.limits

    if demand.revealed and accelerator not in demand.revealed and len(demand.revealed) == 1:
        (shown,) = demand.revealed
        violations.append(
            Violation(
                "acceleratorType",
                shown.value,
                accelerator.value,
                "",
                f"requests {shown.value} devices but the accelerator type is {accelerator.value}",
            )
        )

    cpu_reserved, mem_reserved = settings.reserved.of(planned.group)
    cpu_cap = max(Decimal(limits.cpuNumber) - cpu_reserved, _ZERO)
    over_limit = None if settings.limits == "deny" else warnings
    if settings.limits == "ignore":
        over_limit = []
    cpu = (requests.get("cpu"), lims.get("cpu"))
    _check(violations, "cpu", *cpu, cpu_cap, format_cores, "cores", over_limit, cpu_reserved)
    unit = settings.memory_unit
    mem_cap = max(Decimal(limits.memorySize) * UNIT_BYTES[unit] - mem_reserved, _ZERO)
    _check(
        violations,
        "memory",
        requests.get("memory"),
        lims.get("memory"),
        mem_cap,
        _MEMORY_FORMAT[unit],
        unit,
        over_limit,
        mem_reserved,
    )

    own_cards = demand.cards.get(accelerator)
    own_limits = demand.card_limits.get(accelerator)
    card_cap = Decimal(limits.card_cap(accelerator))
    cards = sum(own_cards.values(), _ZERO) if own_cards else _ZERO
    if own_cards or own_limits:
        names = "+".join(sorted(set(own_cards or ()) | set(own_limits or ())))
        card_limit = sum(own_limits.values(), _ZERO) if own_limits else _ZERO
        _check(violations, names, cards or None, card_limit or None, card_cap, _fmt_count, "cards")

    _check_run_time(workload, limits, settings, violations, warnings)
    needs = (requests.get("cpu", _ZERO), requests.get("memory", _ZERO), cards)
    if settings.gang != "ignore":  # identical pods: the gang check reduces to counting
        over: list[str] = []
        _check_parallelism(workload, needs, (cpu_cap, mem_cap, card_cap), limits, over)
        if settings.gang == "deny":
            violations += [Violation("gang", "", str(limits.nodeNumber), "nodes", t) for t in over]
        else:
            warnings += over

    return _decision(
        workload,
        group=planned.group,
        accelerator=accelerator,
        violations=tuple(violations),
        warnings=tuple(warnings),
    )


def _fmt_count(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _check(
    violations: list[Violation],
    resource: str,
    request: Decimal | None,
    limit: Decimal | None,
    cap: Decimal,
    render: Callable[[Decimal], str],
    unit: str,
    over_limit: list[str] | None = None,
    reserved: Decimal = _ZERO,
) -> None:
    """One finding per resource: the request if it is over (a violation), else the limit if
    it is: a violation, or a warning appended to ``over_limit`` when that is given."""
    per_node = f" {unit} per node" if unit in ("cores", "cards") else " per node"
    if reserved:
        per_node += f" ({render(cap + reserved)} - {render(reserved)} reserved)"
    if request is not None and request > cap:
        text = f"{resource} {render(request)} > {render(cap)}{per_node}"
        violations.append(Violation(resource, render(request), render(cap), unit, text))
    elif limit is not None and limit > cap:
        text = f"{resource} limit {render(limit)} > {render(cap)}{per_node}"
        if over_limit is None:
            violations.append(Violation(resource, render(limit), render(cap), unit, text))
        else:
            over_limit.append(
                f"{text}: the request fits, so the pod is scheduled, but it can never use "
                "its whole limit on one node"
            )


def _fallback_warning(workload: Workload, key: str) -> str:
    """The group annotation was read from the workload's metadata, not its pod template."""
    where = next(
        (
            field
            for field, annotations in workload.fallback_fields
            if (found := read_annotation(annotations, key)).value is not None or found.conflict
        ),
        "metadata",
    )
    if where == "metadata":
        return (
            f"annotation {key} is on the {workload.kind}'s own metadata, not its pod "
            "template: its pods will not carry it"
        )
    return (
        f"annotation {key} is on the {workload.kind}'s {where}, which its Jobs carry, not "
        "its pod template: its pods will not carry it"
    )


def _check_run_time(
    workload: Workload,
    limits: NodeLimits,
    settings: PolicySettings,
    violations: list[Violation],
    warnings: list[str],
) -> None:
    max_time = limits.max_time
    if max_time is None:
        return
    max_seconds = int(max_time.total_seconds())
    shown = f"maxTime {limits.maxTime} ({max_seconds}s)"
    if workload.long_running:
        warnings.append(
            f"{workload.kind} pods run until deleted, but resource group "
            f'"{limits.resourceGroup}" limits run time to {shown}'
        )
        return
    deadline = workload.active_deadline_seconds
    if deadline is None and workload.owned_by_job:
        return  # a missing deadline is the controlling batch/v1 Job's (checked as a Job)
    if deadline is None and workload.no_deadline_field:
        # Nothing to set (SparkApplication): asking for activeDeadlineSeconds would mislead,
        # and requiring one would deny every object of the kind.
        warnings.append(
            f"{workload.kind} has no run-time limit to set, but resource group "
            f'"{limits.resourceGroup}" limits run time to {shown}'
        )
        return
    if deadline is None:
        text = (
            f'no activeDeadlineSeconds: resource group "{limits.resourceGroup}" limits run time '
            f"to {shown}; set activeDeadlineSeconds <= {max_seconds}"
        )
        if settings.require_deadline:
            violations.append(
                Violation("activeDeadlineSeconds", "none", str(max_seconds), "seconds", text)
            )
        else:
            warnings.append(text)
    elif deadline > max_seconds:
        violations.append(
            Violation(
                "activeDeadlineSeconds",
                str(deadline),
                str(max_seconds),
                "seconds",
                f"activeDeadlineSeconds {deadline}s ({_fmt_seconds(timedelta(seconds=deadline))}) "
                f"> {shown}",
            )
        )


def _check_parallelism(
    workload: Workload,
    needs: tuple[Decimal, Decimal, Decimal],
    caps: tuple[Decimal, Decimal, Decimal],
    limits: NodeLimits,
    warnings: list[str],
) -> None:
    """Warn when a Job's parallelism (or a workload's replicas) cannot all run at once."""
    wanted = workload.parallelism
    if wanted is None or wanted <= 1 or not limits.nodeNumber:
        return
    fits = [cap // need for need, cap in zip(needs, caps, strict=True) if need > 0]
    if not fits:
        return
    per_node = int(min(fits))
    if per_node == 0:
        return  # already a violation: not even one pod fits
    capacity = per_node * limits.nodeNumber
    if wanted > capacity:
        what = "parallelism" if workload.kind in ("Job", "CronJob") else "replicas"
        warnings.append(
            f"{what} {wanted}: only {capacity} pods can run at once on the "
            f'{limits.nodeNumber} node(s) of resource group "{limits.resourceGroup}" '
            f"({per_node} per node); the rest will wait"
        )


def unknown_group(
    planned: Plan, accelerator: AcceleratorType, offered: frozenset[AcceleratorType]
) -> Decision:
    """The denial of a group the limits source does not know for ``accelerator``."""
    hint = f" (it is offered as: {', '.join(sorted(t.value for t in offered))})" if offered else ""
    return refuse(
        planned,
        accelerator,
        "resourceGroup",
        f'resource group "{planned.group}" is unknown to the platform '
        f"for accelerator type {accelerator.value}{hint}",
    )


def evaluate(
    workload: Workload,
    settings: PolicySettings,
    limits: Callable[[str, AcceleratorType], NodeLimits | None],
    offered: Callable[[str], frozenset[AcceleratorType]],
) -> Decision:
    """The whole pure pipeline for limits at hand: plan -> choose_accelerator -> decide.

    ``limits(group, type)`` is None for an unknown pair; ``offered(group)`` gives the types
    a group is offered under (e.g. ``LimitsTable.get`` and ``LimitsTable.types``). The
    admission path does the same through :func:`webhook.review.review_workload`, which
    awaits its limits instead.
    """
    planned = plan(workload, settings)
    if planned.group is None:
        return skip(workload)
    if not planned.group:  # an empty annotation: nothing to look up
        return refuse(planned, planned.accelerator)
    types = offered(planned.group) if needs_group_types(planned, settings) else frozenset()
    accelerator = choose_accelerator(planned, types, settings)
    found = limits(planned.group, accelerator)
    if found is None:
        return unknown_group(planned, accelerator, offered(planned.group))
    return decide(planned, found, accelerator, settings)
