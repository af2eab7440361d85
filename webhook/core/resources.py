"""Kubernetes quantities and a pod's effective requests and limits — pure functions.

The rules are Kubernetes' own (``component-helpers/resource/helpers.go``):

* a container's request defaults to its limit;
* app containers are summed;
* init containers are walked in order: a restartable init container (a sidecar,
  ``restartPolicy: Always``, KEP-753) adds to the app sum and to every later init
  container's peak; a regular init container peaks at its own request plus the sidecars
  started before it; the pod needs ``max(app sum, init peak)``;
* pod-level ``spec.resources`` (KEP-2837) replaces the container total for cpu, memory and
  hugepages, never for extended resources (GPUs and friends);
* ``spec.overhead`` is added to requests, and to limits only where a limit is set.

Quantities are read as the apiserver stores them, so that ``nodelimits check`` on a raw
manifest sees what the webhook sees after the apiserver's defaulting: every resource-list
quantity rounded up to milli precision (``SetDefaults_ResourceList``), ``null`` as 0, spaces
around a string trimmed (its JSON decoding), and v1.37's pod-level defaulting
(``DefaultPodLevelResources``). tests/oracle checks all of it against Kubernetes' own code.

Quantities are exact ``Decimal`` values in base units (cores, bytes, cards); floats never
appear. The device table is passed in by the caller; nothing here reads settings.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext
from typing import Any, Literal, NamedTuple

from kubernetes.utils import parse_quantity as _k8s_parse_quantity

__all__ = [
    "MAX_QUANTITY",
    "MAX_QUANTITY_LENGTH",
    "UNIT_BYTES",
    "InvalidQuantity",
    "PodResources",
    "ResourceList",
    "format_cores",
    "format_memory",
    "is_quantity",
    "parse_quantity",
    "pod_limits",
    "pod_requests",
    "pod_resources",
    "resource_quantity",
]

ResourceList = Mapping[str, Decimal]

# Kubernetes' quantity grammar: a signed decimal number, then a binary-SI suffix, a
# decimal-SI suffix or a decimal exponent. Stricter than kubernetes.utils, which also
# accepts surrounding spaces and Python bools. ASCII digits only, matched in full: Python's
# \d and $ would also take "１" or "١٢" (Decimal reads them) and a trailing newline, which
# Kubernetes rejects. Read by a hand-written scanner, one pass, after a length check: the
# regex it replaces backtracked quadratically on a long digit run ending in a bad character
# (issue 12: a 40 KB quantity in one review stalled the event loop for 35 s).
# The apiserver re-encodes every quantity in canonical form before a webhook sees it, so a
# real one is short: int64 digits, a fraction to nano precision, a suffix (~32 characters).
MAX_QUANTITY_LENGTH = 128
_DIGITS = frozenset("0123456789")
_BINARY_SUFFIXES = frozenset({"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"})
_DECIMAL_SUFFIXES = frozenset("numkMGTPE")


def _digits(text: str, i: int) -> int:
    """Index of the first non-digit at or after ``i``."""
    n = len(text)
    while i < n and text[i] in _DIGITS:
        i += 1
    return i


def is_quantity(text: str) -> bool:
    """Whether ``text`` is in Kubernetes' quantity grammar (and at most
    :data:`MAX_QUANTITY_LENGTH` characters). Linear in ``len(text)``, which is bounded."""
    n = len(text)
    if n == 0 or n > MAX_QUANTITY_LENGTH:
        return False
    i = 1 if text[0] in "+-" else 0
    start = i
    i = _digits(text, i)
    whole = i > start
    if i < n and text[i] == ".":
        frac_start = i + 1
        i = _digits(text, frac_start)
        if not whole and i == frac_start:
            return False  # "." or "+." alone
    elif not whole:
        return False
    rest = text[i:]
    if rest == "" or rest in _BINARY_SUFFIXES:
        return True
    if len(rest) == 1:
        return rest in _DECIMAL_SUFFIXES
    if rest[0] in "eE":
        j = 2 if rest[1] in "+-" else 1
        return j < len(rest) and _digits(rest, j) == len(rest)
    return False


# Anything above an int64 of base units cannot be a real request; it is garbage.
MAX_QUANTITY = Decimal(2**63 - 1)
# The apiserver keeps nano precision and rounds finer values up.
_NANO = Decimal("1e-9")
POD_LEVEL_RESOURCES = ("cpu", "memory")  # plus hugepages-*; never extended resources
UNIT_BYTES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


class InvalidQuantity(ValueError):
    """A resource quantity that Kubernetes would not accept; names the field."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        shown = repr(value)
        if len(shown) > 64:  # a hostile 100 KB value must not become a 100 KB denial
            shown = f"{shown[:40]}...({len(shown)} characters)"
        super().__init__(f"{field}: invalid quantity {shown}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason


@functools.lru_cache(maxsize=8192)  # ~2.2 MB when full (about 270 B an entry)
def _parse_text(text: str) -> Decimal:
    # Cached: manifests repeat the same few quantities ("1", "500m", "4Gi") endlessly.
    if not is_quantity(text):
        if len(text) > MAX_QUANTITY_LENGTH:
            raise ValueError(f"longer than {MAX_QUANTITY_LENGTH} characters")
        raise ValueError("not a Kubernetes quantity (e.g. 500m, 2, 4Gi, 1e3)")
    try:
        # Exact: the default 28-digit context would round "25.51532571949064731597900391Gi"
        # (28 digits times 2^30) to a whole number of bytes where Kubernetes keeps the
        # fraction (and then rounds it up to 1m). 128 characters x 2^60 fit in 300 digits.
        with localcontext(prec=300):
            value = Decimal(_k8s_parse_quantity(text))  # type: ignore[no-untyped-call]
    except (ValueError, InvalidOperation, ArithmeticError) as exc:
        raise ValueError(str(exc)) from None
    if value < 0:
        raise ValueError("must not be negative")
    if value > MAX_QUANTITY:
        raise ValueError("absurdly large (above 2^63-1 base units)")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -9:  # finer than nano: round up, as k8s does
        value = value.quantize(_NANO, rounding=ROUND_CEILING)
    return value


def parse_quantity(value: object, *, field: str = "quantity") -> Decimal:
    """Parse a Kubernetes quantity (``"500m"``, ``"4Gi"``, ``2``) into exact base units.

    YAML may hand us an int or a float (``cpu: 0.5``); a float is read through its
    shortest ``repr`` so ``0.1`` means 0.1, not 0.1000000000000000055.
    """
    if type(value) is str:  # the common case, straight to the memoised parser
        try:
            return _parse_text(value)
        except ValueError as exc:
            raise InvalidQuantity(field, value, str(exc)) from None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidQuantity(field, value, "expected a string or a number")
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise InvalidQuantity(field, value, "not a finite number")
    text = value if isinstance(value, str) else repr(value)
    try:
        return _parse_text(text)
    except ValueError as exc:
        raise InvalidQuantity(field, value, str(exc)) from None


# What the apiserver's JSON decoding trims around a quantity: Go's strings.TrimSpace runs on
# the raw JSON text (resource.Quantity.UnmarshalJSON), where a client's encoder (kubectl's
# encoding/json) has escaped the ASCII controls and U+2028/U+2029, so only these arrive raw.
# "\t1" stays a decode error there, and here.
_JSON_TRIMMED = (
    " \u0085\u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u202f\u205f\u3000"
)
_MILLI = Decimal("0.001")
_ZERO = Decimal(0)


def _round_milli(value: Decimal) -> Decimal:
    # SetDefaults_ResourceList (pkg/apis/core/v1/defaults.go) rounds every quantity of a
    # pod's resource lists UP to milli precision: 0.0001 -> 1m, 3.9999999 -> 4.
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -3:
        rounded = value.quantize(_MILLI, rounding=ROUND_CEILING)
        if rounded != value:
            return rounded
    return value


@functools.lru_cache(maxsize=8192)  # the hot path: one entry a distinct manifest spelling
def _stored_text(text: str) -> Decimal:
    return _round_milli(_parse_text.__wrapped__(text.strip(_JSON_TRIMMED)))


def resource_quantity(value: object, *, field: str = "quantity") -> Decimal:
    """A resource-list quantity as the apiserver stores it (and hands it to a webhook).

    On top of :func:`parse_quantity`: surrounding spaces trimmed as its JSON decoding does
    (``" 1"`` is 1), ``null`` stored as 0, and the value rounded up to milli precision
    (``"0.0001"`` is ``1m``), as ``SetDefaults_ResourceList`` does.
    """
    if type(value) is str:
        try:
            return _stored_text(value)
        except ValueError as exc:
            raise InvalidQuantity(field, value, str(exc)) from None
    if value is None:
        return _ZERO
    return _round_milli(parse_quantity(value, field=field))


def _resource_map(raw: object, field: str) -> dict[str, Decimal]:
    if raw is None:
        return {}
    # `type(...) is dict` first: decoded JSON is always a dict, and the ABC check is slow.
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise InvalidQuantity(field, raw, "expected a map of resource name to quantity")
    out: dict[str, Decimal] = {}
    for key, value in raw.items():
        try:
            # Strings (the common case) go straight to the memoised parser.
            out[str(key)] = _stored_text(value) if type(value) is str else resource_quantity(value)
        except ValueError as exc:  # name the field only on failure: the hot path stays lean
            reason = exc.reason if isinstance(exc, InvalidQuantity) else str(exc)
            raise InvalidQuantity(f"{field}.{key}", value, reason) from None
    return out


def _add(into: dict[str, Decimal], other: Mapping[str, Decimal]) -> None:
    for name, amount in other.items():
        into[name] = into[name] + amount if name in into else amount


def _max(into: dict[str, Decimal], other: Mapping[str, Decimal]) -> None:
    for name, amount in other.items():
        if name not in into or amount > into[name]:
            into[name] = amount


class _Container(NamedTuple):
    # A tuple, not a dataclass: built once per container on the admission hot path.
    requests: dict[str, Decimal]
    limits: dict[str, Decimal]
    sidecar: bool


def _container(raw: object, field: str, *, init: bool) -> _Container:
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise InvalidQuantity(field, raw, "a container must be an object")
    resources = raw.get("resources") or {}
    if type(resources) is not dict and not isinstance(resources, Mapping):
        raise InvalidQuantity(f"{field}.resources", resources, "expected an object")
    try:
        limits = _resource_map(resources.get("limits"), "limits")
        requests = _resource_map(resources.get("requests"), "requests")
    except InvalidQuantity as exc:
        raise InvalidQuantity(f"{field}.resources.{exc.field}", exc.value, exc.reason) from None
    if limits:  # API defaulting: a limit without a request makes the request equal to it
        requests = {**limits, **requests}
    return _Container(requests, limits, init and raw.get("restartPolicy") == "Always")


def _containers(spec: Mapping[str, Any], key: str, *, init: bool) -> list[_Container]:
    raw = spec.get(key) or []
    if not isinstance(raw, list):
        raise InvalidQuantity(f"spec.{key}", raw, "expected a list of containers")
    out: list[_Container] = []
    for index, item in enumerate(raw):
        try:
            out.append(_container(item, "", init=init))
        except InvalidQuantity as exc:  # the field is named only on failure
            raise InvalidQuantity(
                f"spec.{key}[{index}]{exc.field}", exc.value, exc.reason
            ) from None
    return out


def _aggregate(
    app: list[_Container], init: list[_Container], which: Literal[0, 1]
) -> dict[str, Decimal]:
    """Sum of app containers, then the init walk; ``which``: 0 requests, 1 limits."""
    total: dict[str, Decimal] = {}
    for c in app:
        _add(total, c[which])
    if not init:
        return total
    sidecars: dict[str, Decimal] = {}
    init_peak: dict[str, Decimal] = {}
    for c in init:
        own: Mapping[str, Decimal] = c[which]
        if c.sidecar:
            _add(total, own)
            _add(sidecars, own)
            _max(init_peak, sidecars)
        else:
            peak = dict(sidecars)
            _add(peak, own)
            _max(init_peak, peak)
    _max(total, init_peak)
    return total


def _pod_level(name: str) -> bool:
    return name in POD_LEVEL_RESOURCES or name.startswith("hugepages-")


def _default_pod_level(
    pod_requests: dict[str, Decimal],
    pod_limits: dict[str, Decimal],
    containers: list[_Container],
    aggregate_requests: Mapping[str, Decimal],
    aggregate_limits: Mapping[str, Decimal],
) -> None:
    """v1.37's ``DefaultPodLevelResources`` (pkg/api/pod/util.go, run by the pod strategy's
    PrepareForCreate under the default-on gate PodLevelResourcesFixDefaulting), in place.

    1. a hugepages limit the containers set becomes the pod's, unless the pod asks for or
       limits that size itself;
    2. pod-level cpu/memory requests default to the containers' total, then any pod-level
       limit without a request becomes the request;
    3. a pod-level request without a limit gets the limit max(request, containers' total
       limit) when every container (init and sidecars too) limits that resource.
    """
    for name, amount in aggregate_limits.items():
        if name.startswith("hugepages-") and name not in pod_requests:
            pod_limits.setdefault(name, amount)
    for name, amount in aggregate_requests.items():
        if name in POD_LEVEL_RESOURCES:  # pod-level and overcommittable: cpu and memory
            pod_requests.setdefault(name, amount)
    for name, amount in pod_limits.items():
        if _pod_level(name):
            pod_requests.setdefault(name, amount)
    for name, request in pod_requests.items():
        if not _pod_level(name) or name in pod_limits or name not in aggregate_limits:
            continue
        if all(name in c.limits for c in containers):
            pod_limits[name] = max(aggregate_limits[name], request)


@dataclass(frozen=True, slots=True)
class PodResources:
    """A pod's effective requests and limits. A resource absent from ``limits`` is unbounded."""

    requests: ResourceList
    limits: ResourceList


def pod_resources(spec: Mapping[str, Any]) -> PodResources:
    """Effective requests and limits of a pod spec, by Kubernetes' rules.

    Raises :class:`InvalidQuantity` naming the field for any malformed quantity.
    """
    if not isinstance(spec, Mapping):
        raise InvalidQuantity("spec", spec, "a pod spec must be an object")
    app = _containers(spec, "containers", init=False)
    init = _containers(spec, "initContainers", init=True)
    requests = _aggregate(app, init, 0)
    limits = _aggregate(app, init, 1)

    pod_level = spec.get("resources")
    if pod_level:
        if not isinstance(pod_level, Mapping):
            raise InvalidQuantity("spec.resources", pod_level, "expected an object")
        pod_limits_ = _resource_map(pod_level.get("limits"), "spec.resources.limits")
        pod_requests_ = _resource_map(pod_level.get("requests"), "spec.resources.requests")
        if pod_limits_ or pod_requests_:
            _default_pod_level(pod_requests_, pod_limits_, app + init, requests, limits)
        for name, amount in pod_limits_.items():
            if _pod_level(name):
                limits[name] = amount
        for name, amount in pod_requests_.items():
            if _pod_level(name):
                requests[name] = amount

    overhead_raw = spec.get("overhead")
    if overhead_raw:
        overhead = _resource_map(overhead_raw, "spec.overhead")
        _add(requests, overhead)
        for name, amount in overhead.items():
            if limits.get(name):  # overhead raises a limit only where one is set (non-zero)
                limits[name] += amount
    return PodResources(requests, limits)


def pod_requests(spec: Mapping[str, Any]) -> ResourceList:
    """Effective requests of a pod spec (see :func:`pod_resources`)."""
    return pod_resources(spec).requests


def pod_limits(spec: Mapping[str, Any]) -> ResourceList:
    """Effective limits of a pod spec; resources without a limit are absent."""
    return pod_resources(spec).limits


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def format_cores(cores: Decimal) -> str:
    """``Decimal("0.3")`` -> ``"300m"``, ``Decimal(4)`` -> ``"4"`` (kubectl's style)."""
    if cores == cores.to_integral_value():
        return _plain(cores)
    milli = cores * 1000
    if milli == milli.to_integral_value():
        return f"{_plain(milli)}m"
    return _plain(cores)


def format_memory(amount_bytes: Decimal, unit: str = "Mi") -> str:
    """Bytes in the platform's unit: ``65536Mi``; non-whole amounts keep 2 decimals, rounded up."""
    value = amount_bytes / Decimal(UNIT_BYTES[unit])
    if value != value.to_integral_value():
        value = value.quantize(Decimal("0.01"), rounding=ROUND_CEILING)
    return f"{_plain(value)}{unit}"
