"""Cards asked for through Dynamic Resource Allocation (``resource.k8s.io``) — pure.

A pod can get 64 GPUs with no ``nvidia.com/gpu`` anywhere in it: ``spec.resourceClaims``
names a ResourceClaimTemplate (or a ResourceClaim) whose device requests say
``exactly: {deviceClassName: gpu.nvidia.com, count: 64}``. The pod alone does not tell how
many devices it gets, so the caller reads the claims it names (online from the apiserver,
offline from the same input files) and hands them in as :class:`Claims`; this module counts
them, as Kueue does (``pkg/dra/claims.go``):

* a request's ``exactly`` with ``allocationMode: ExactCount`` (the default) adds ``count``
  (default 1) devices of its DeviceClass; requests with ``adminAccess`` are not allocations;
* a DeviceClass maps to an accelerator type by ``policy.dra.device_classes`` (defaults
  ``gpu.nvidia.com``/``gpu.amd.com`` -> gpu, ``dra.hygon.com`` -> dcu); other classes
  (NICs, MIG slices) are not cards;
* ``allocationMode: All`` (every matching device in a pool) and ``firstAvailable``
  (prioritised alternatives) cannot be counted before allocation: a violation with the
  reason by default, a warning under ``policy.dra.uncountable: warn``.

The devices of one class are counted under the KEP-5004 extended-resource name
``deviceclass.resource.kubernetes.io/<class>``, the name the scheduler gives them and a pod
may also ask for directly in ``resources.limits``; both add up as cards of the class's type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from webhook.core.fields import InvalidObject
from webhook.core.limits import AcceleratorType

__all__ = [
    "CLAIM",
    "DEFAULT_DEVICE_CLASSES",
    "EXTENDED_PREFIX",
    "TEMPLATE",
    "ClaimNotFound",
    "ClaimRef",
    "Claims",
    "DraCount",
    "DraSettings",
    "count",
    "extended_type",
    "references",
]

EXTENDED_PREFIX = "deviceclass.resource.kubernetes.io/"
TEMPLATE = "ResourceClaimTemplate"
CLAIM = "ResourceClaim"
DEFAULT_DEVICE_CLASSES: dict[str, AcceleratorType] = {
    "gpu.nvidia.com": AcceleratorType.GPU,
    "gpu.amd.com": AcceleratorType.GPU,
    "dra.hygon.com": AcceleratorType.DCU,
}


class DraSettings(BaseModel):
    """``policy.dra``: how device requests through resource claims count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_classes: dict[str, AcceleratorType] = Field(
        default_factory=lambda: dict(DEFAULT_DEVICE_CLASSES)
    )
    """DeviceClass name -> accelerator type whose cards its devices are; replaces the
    defaults (gpu.nvidia.com, gpu.amd.com -> gpu; dra.hygon.com -> dcu) when set."""
    uncountable: Literal["deny", "warn"] = "deny"
    """A request nodelimits cannot count (``allocationMode: All``, ``firstAvailable``) for
    a mapped class: a violation naming it (deny), or a warning that it was not checked."""


@dataclass(frozen=True, slots=True)
class ClaimRef:
    """One entry of ``spec.resourceClaims``: the object it names (``kind``/``name``)."""

    kind: str
    name: str
    entry: str
    """The pod's own name for the claim (``spec.resourceClaims[].name``)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)


class ClaimNotFound(InvalidObject):
    """A referenced ResourceClaimTemplate/ResourceClaim is not there to be read."""


@dataclass(frozen=True, slots=True)
class Claims:
    """The claims a workload's pods name, read by the caller (one namespace).

    ``found`` maps (kind, name) to the object; a key in ``missing`` was looked up and does
    not exist; any other key was not looked up. ``complete``: every claim that exists is in
    ``found`` (the input files of ``nodelimits check``), so a reference to anything else is
    an error, not a lookup that was skipped.
    """

    found: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    missing: frozenset[tuple[str, str]] = frozenset()
    complete: bool = False


NO_CLAIMS = Claims()


def references(pod_spec: Mapping[str, Any]) -> tuple[ClaimRef, ...]:
    """The claims ``spec.resourceClaims`` names, in order (malformed entries skipped: the
    apiserver's validation refuses them before any webhook sees the pod)."""
    raw = pod_spec.get("resourceClaims")
    if not isinstance(raw, list):
        return ()
    out: list[ClaimRef] = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            continue
        entry_name = entry.get("name")
        shown = entry_name if isinstance(entry_name, str) else ""
        template = entry.get("resourceClaimTemplateName")
        claim = entry.get("resourceClaimName")
        if isinstance(template, str) and template:
            out.append(ClaimRef(TEMPLATE, template, shown))
        elif isinstance(claim, str) and claim:
            out.append(ClaimRef(CLAIM, claim, shown))
    return tuple(out)


def extended_type(resource: str, settings: DraSettings) -> AcceleratorType | None:
    """The type of a KEP-5004 implicit extended resource
    (``deviceclass.resource.kubernetes.io/<class>``) of a mapped class, else None."""
    if not resource.startswith(EXTENDED_PREFIX):
        return None
    return settings.device_classes.get(resource[len(EXTENDED_PREFIX) :])


@dataclass(slots=True)
class DraCount:
    """What a pod's claims add: cards per type and resource name, and what was not counted."""

    cards: dict[AcceleratorType, dict[str, Decimal]] = field(default_factory=dict)
    uncountable: list[str] = field(default_factory=list)
    """One reason per request that cannot be counted (All, firstAvailable)."""
    unread: list[str] = field(default_factory=list)
    """Claims not looked up or not found, where that is not an error (see :func:`count`)."""


def _claim_spec(ref: ClaimRef, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    if ref.kind == TEMPLATE and isinstance(spec, Mapping):
        spec = spec.get("spec")  # a template's spec.spec is the claim spec it stamps out
    return spec if isinstance(spec, Mapping) else {}


def _count_value(raw: object, where: str) -> int:
    if raw is None:
        return 1
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise InvalidObject(f"{where}.count", f"expected a positive integer, got {raw!r}")
    return raw


def count(
    refs: tuple[ClaimRef, ...],
    claims: Claims,
    settings: DraSettings,
    *,
    missing_is_error: bool,
) -> DraCount:
    """Count the devices of mapped classes that ``refs`` ask for.

    A reference not in ``claims.found`` raises :class:`ClaimNotFound` when the claims are
    ``complete`` (offline) or when it was looked up, is missing and ``missing_is_error``
    (a Pod: its claim can never be allocated); otherwise it is reported in ``unread``.
    """
    out = DraCount()
    classes = settings.device_classes
    for ref in refs:
        obj = claims.found.get(ref.key)
        if obj is None:
            looked_up = ref.key in claims.missing
            if claims.complete or (looked_up and missing_is_error):
                where = "in the input files" if claims.complete else "in the namespace"
                raise ClaimNotFound(
                    f"spec.resourceClaims[{ref.entry}]",
                    f"{ref.kind} {ref.name!r} not found {where}",
                )
            state = "not found" if looked_up else "not read"
            out.unread.append(f"{ref.kind} {ref.name!r} ({state})")
            continue
        devices = _claim_spec(ref, obj).get("devices")
        requests = devices.get("requests") if isinstance(devices, Mapping) else None
        for i, request in enumerate(requests if isinstance(requests, list) else ()):
            if not isinstance(request, Mapping):
                continue
            name = request.get("name") if isinstance(request.get("name"), str) else str(i)
            where = f"{ref.kind} {ref.name} request {name}"
            alternatives = request.get("firstAvailable")
            if isinstance(alternatives, list) and alternatives:
                mapped = sorted(
                    {
                        str(a.get("deviceClassName"))
                        for a in alternatives
                        if isinstance(a, Mapping) and a.get("deviceClassName") in classes
                    }
                )
                if mapped:
                    out.uncountable.append(
                        f"{where}: firstAvailable alternatives of {', '.join(mapped)} cannot "
                        "be counted before allocation"
                    )
                continue
            exactly = request.get("exactly")
            if not isinstance(exactly, Mapping):
                exactly = request if "deviceClassName" in request else {}  # v1beta1 shape
            device_class = exactly.get("deviceClassName")
            accel = classes.get(device_class) if isinstance(device_class, str) else None
            if accel is None or exactly.get("adminAccess") is True:
                continue
            mode = exactly.get("allocationMode") or "ExactCount"
            if mode != "ExactCount":
                out.uncountable.append(
                    f"{where}: allocationMode {mode} of {device_class} takes every matching "
                    "device of a pool and cannot be counted"
                )
                continue
            n = _count_value(exactly.get("count"), where)
            per_type = out.cards.setdefault(accel, {})
            resource = EXTENDED_PREFIX + str(device_class)
            per_type[resource] = per_type.get(resource, Decimal(0)) + n
    return out
