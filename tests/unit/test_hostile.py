"""Hostile input through the pure core and the admission handler (property-based).

Properties, over generated manifests and AdmissionReview request fields:

* **no crash**: the core raises only ``InvalidObject``/``InvalidQuantity``; the handler
  only ``kopf.AdmissionError`` and never its 500 "internal error" (a bug of ours);
* **no allow by junk**: an object the policy denies stays denied whatever junk is added
  elsewhere (extra fields, annotations, labels, wrong-typed unrelated values);
* **oracle**: for generated valid pods, ``decide`` allows iff every resource computed by
  the small reference implementation below (written from reference/kubernetes.md §1.2,
  not from webhook/core/resources.py) fits one node.

Every example is counted; the counts are printed at the end of the module (``-s``) and
recorded in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import kopf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.builders import GROUP_KEY, FakeLimits, limits_cache, node_limits
from devtools.hostile import (
    ABSURD_QUANTITIES,
    as_job,
    hostile_objects,
    json_values,
    oversized_pods,
    quantities,
    text,
)
from webhook.config import PolicySettings, Settings
from webhook.core import policy, workloads
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.core.resources import InvalidQuantity, parse_quantity
from webhook.metrics import Metrics
from webhook.serve.admission import HANDLERS, Admission

SPECS = {h.id: h for h in HANDLERS}
# Limits decide here too (policy.limits: deny), as these generators of oversized pods assume;
# since issue 11 requests alone decide by default (test_oracle_decide_... checks both).
POLICY = PolicySettings(limits="deny")
DEFAULT_POLICY = PolicySettings()
GPU_ONLY = frozenset({AcceleratorType.GPU})
CORE_ERRORS = (workloads.InvalidObject, InvalidQuantity)
MiB = 2**20

COUNTS: Counter[str] = Counter()
"""Examples run per property (printed at module teardown, recorded in docs/reliability.md)."""

FAST = settings(
    max_examples=150,
    deadline=2000,  # ms per example: bounded time, 2000 containers included
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    total = sum(COUNTS.values())
    lines = [f"  {name}: {count}" for name, count in sorted(COUNTS.items())]
    print(f"\nhostile input (core + handler): {total} generated cases\n" + "\n".join(lines))


def run_core(
    obj: Any, limits: NodeLimits, settings: PolicySettings = POLICY
) -> policy.Decision | None:
    """The pure pipeline (policy.evaluate), every group offered as gpu with ``limits``."""
    w = workloads.workload_of(obj)
    if isinstance(w, workloads.Skipped):
        return None
    return policy.evaluate(w, settings, lambda _g, _a: limits, lambda _g: GPU_ONLY)


# --- no crash -----------------------------------------------------------------------------


@FAST
@given(obj=hostile_objects())
def test_core_raises_only_its_own_errors(obj: Any) -> None:
    COUNTS["core: hostile objects"] += 1
    with contextlib.suppress(*CORE_ERRORS):
        run_core(obj, node_limits())


@FAST
@given(obj=json_values)
def test_core_on_random_json_raises_only_its_own_errors(obj: Any) -> None:
    COUNTS["core: random JSON"] += 1
    with contextlib.suppress(*CORE_ERRORS):
        run_core(obj, node_limits())
    with contextlib.suppress(workloads.InvalidObject):
        list(workloads.iter_objects(obj))


# YAML (nodelimits check) can hand the core keys that are not strings.
yaml_keys = st.one_of(text, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))


@FAST
@given(
    annotations=st.dictionaries(yaml_keys, text, max_size=4),
    resources=st.dictionaries(yaml_keys, quantities, max_size=4),
)
def test_core_on_non_string_keys_from_yaml(
    annotations: dict[Any, Any], resources: dict[Any, Any]
) -> None:
    COUNTS["core: non-string YAML keys"] += 1
    obj = {
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {**annotations, GROUP_KEY.upper(): "TeslaM40"}},
        "spec": {"containers": [{"resources": {"limits": resources}}]},
    }
    with contextlib.suppress(*CORE_ERRORS):
        run_core(obj, node_limits())


# What Kubernetes accepts too: non-negative, finite, <= 2^63-1 base units, ASCII digits,
# nothing around them; finer than nano rounds up to 1n. Everything else in the table is invalid.
ACCEPTED = {"1e-30": "1E-9", "0." + "0" * 100 + "1": "1E-9", "0.0000000001": "1E-9", 1e-30: "1E-9",
            "1Ei": str(2**60), "9223372036854775807": str(2**63 - 1), "-0": "0", "+0": "0",
            "1E3": "1000", 0.1: "0.1", 0: "0"}  # fmt: skip


# Not quantities, yet a pod's resource list takes them as the apiserver does (issue 11, checked
# by tests/oracle): its JSON decoding trims spaces around a string and stores null as 0.
STORED_IN_A_POD = {"1 ", " 1"}


@pytest.mark.parametrize("value", ABSURD_QUANTITIES, ids=repr)
def test_every_absurd_quantity_is_rejected_or_read_exactly(value: Any) -> None:
    COUNTS["core: absurd quantity table"] += 1
    key = value if isinstance(value, str | int | float) and not isinstance(value, bool) else None
    if key is not None and key in ACCEPTED:
        assert parse_quantity(value) == Decimal(ACCEPTED[key])
        return
    with pytest.raises(InvalidQuantity):
        parse_quantity(value)
    obj = {
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {GROUP_KEY: "TeslaM40"}},
        "spec": {"containers": [{"resources": {"requests": {"cpu": value}}}]},
    }
    if key in STORED_IN_A_POD or value is None:  # the apiserver stores these (issue 11)
        run_core(obj, node_limits())
        return
    with pytest.raises(InvalidQuantity):
        run_core(obj, node_limits())


@settings(max_examples=30, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(min_value=0, max_value=2000), cpu=st.sampled_from(["0", "1m", "10m", "1"]))
def test_huge_numbers_of_containers_are_decided_in_bounded_time(n: int, cpu: str) -> None:
    COUNTS["core: up to 2000 containers"] += 1
    c = {"name": "c", "resources": {"requests": {"cpu": cpu, "nvidia.com/gpu": "0"}}}
    obj = {
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {GROUP_KEY: "TeslaM40"}},
        "spec": {
            "containers": [c] * n,
            "initContainers": [{**c, "restartPolicy": "Always"}] * (n // 2),
        },
    }
    decision = run_core(obj, node_limits())
    assert decision is not None
    total = {"0": Fraction(0), "1m": Fraction(1, 1000), "10m": Fraction(1, 100), "1": Fraction(1)}[
        cpu
    ]
    assert decision.allowed is (total * (n + n // 2) <= 40)


# --- the handler: only AdmissionError, never the internal-error 500 -----------------------


def handle(
    admission: Admission,
    handler: str,
    body: Any,
    old: Any = None,
    operation: Any = "CREATE",
    subresource: Any = None,
) -> list[str]:
    warnings: list[str] = []
    asyncio.run(
        admission.handle(
            SPECS[handler],
            body=body,
            old=old,
            operation=operation,
            subresource=subresource,
            dryrun=False,
            warnings=warnings,
            uid="u",
        )
    )
    return warnings


def internal_errors(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "nodelimits_admission_errors_total", {"reason": "internal"}
    )
    return value or 0.0


@pytest.fixture(scope="module")
def admission() -> tuple[Admission, Metrics]:
    metrics = Metrics()
    settings = Settings(policy=POLICY)
    return Admission(settings, limits_cache(FakeLimits(), metrics), metrics), metrics


def mapping_or_empty(value: Any) -> Any:
    # serve/guard.py's check_review answers 400 for a non-object `object`/`oldObject` before any
    # handler runs; kopf hands handlers a dict. So the handler sees mappings only.
    return value if isinstance(value, dict) else {}


@FAST
@given(
    handler=st.sampled_from(sorted(SPECS)),
    body=hostile_objects(),
    old=st.none() | hostile_objects(),
    operation=st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "", None]) | text,
    subresource=st.sampled_from([None, "resize", "status", "ephemeralcontainers", ""]) | text,
)
def test_handler_raises_only_admission_errors_never_internal(
    admission: tuple[Admission, Metrics], handler: str, body: Any, old: Any, operation: Any,
    subresource: Any,
) -> None:  # fmt: skip
    COUNTS["handler: hostile reviews"] += 1
    adm, metrics = admission
    code = None
    try:
        handle(adm, handler, mapping_or_empty(body), None if old is None else mapping_or_empty(old),
               operation, subresource)  # fmt: skip
    except kopf.AdmissionError as exc:
        code = exc.code
    assert code in (None, 400, 403)
    assert internal_errors(metrics) == 0


# --- no allow by junk ---------------------------------------------------------------------


@FAST
@given(obj=oversized_pods())
def test_junk_never_turns_a_denial_into_an_allow_in_the_core(obj: dict[str, Any]) -> None:
    COUNTS["no allow by junk: core"] += 1
    for candidate in (obj, as_job(obj)):
        try:
            decision = run_core(candidate, node_limits())
        except CORE_ERRORS:
            continue  # invalid is a denial (400) in the handler
        assert decision is not None
        assert not decision.allowed, candidate


@FAST
@given(obj=oversized_pods(), fitting_old=st.booleans())
def test_junk_never_turns_a_denial_into_an_allow_in_the_handler(
    admission: tuple[Admission, Metrics], obj: dict[str, Any], fitting_old: bool
) -> None:
    COUNTS["no allow by junk: handler"] += 1
    adm, metrics = admission
    with pytest.raises(kopf.AdmissionError) as denied:
        handle(adm, "pods", obj)
    assert denied.value.code in (400, 403)
    # A Job UPDATE to the oversized template (from one that fits) is denied as well.
    old = as_job({"metadata": {"name": "p", "annotations": {GROUP_KEY: "TeslaM40"}},
                  "spec": {"containers": [{"name": "main"}]}}) if fitting_old else None  # fmt: skip
    with pytest.raises(kopf.AdmissionError):
        handle(adm, "jobs", as_job(obj), old=old, operation="UPDATE" if fitting_old else "CREATE")
    assert internal_errors(metrics) == 0


# --- the oracle ---------------------------------------------------------------------------
# Quantities are generated as (exact value, text); the reference never parses text.


@st.composite
def cpu_quantity(draw: st.DrawFn) -> tuple[Fraction, Any]:
    milli = draw(st.integers(0, 60_000))
    form = draw(st.sampled_from(["m", "cores", "int", "exp"]))
    if form == "m":
        return Fraction(milli, 1000), f"{milli}m"
    cores = milli // 1000
    if form == "int":
        return Fraction(cores), cores
    if form == "exp" and cores % 10 == 0:
        return Fraction(cores), f"{cores // 10}e1"
    return Fraction(cores), str(cores)


@st.composite
def memory_quantity(draw: st.DrawFn) -> tuple[Fraction, Any]:
    mib = draw(st.integers(0, 40_000))
    form = draw(st.sampled_from(["Mi", "Gi", "Ki", "bytes", "M"]))
    if form == "Mi":
        return Fraction(mib * MiB), f"{mib}Mi"
    if form == "Gi":
        return Fraction((mib // 1024) * 1024 * MiB), f"{mib // 1024}Gi"
    if form == "Ki":
        return Fraction(mib * 1024 * 1024), f"{mib * 1024}Ki"
    if form == "M":
        return Fraction(mib * 10**6), f"{mib}M"
    extra = draw(st.integers(0, 1))  # one byte over a whole MiB
    return Fraction(mib * MiB + extra), str(mib * MiB + extra)


RESOURCES = ("cpu", "memory", "nvidia.com/gpu")


@st.composite
def resource_list(draw: st.DrawFn) -> dict[str, tuple[Fraction, Any]]:
    out: dict[str, tuple[Fraction, Any]] = {}
    if draw(st.booleans()):
        out["cpu"] = draw(cpu_quantity())
    if draw(st.booleans()):
        out["memory"] = draw(memory_quantity())
    if draw(st.booleans()):
        cards = draw(st.integers(0, 4))
        out["nvidia.com/gpu"] = (Fraction(cards), draw(st.sampled_from([cards, str(cards)])))
    if draw(st.booleans()):  # never counts: a fraction of a card, an unrelated device
        out[draw(st.sampled_from(["nvidia.com/gpumem", "example.com/foo"]))] = (Fraction(0), "1000")
    return out


@dataclass
class RefContainer:
    requests: dict[str, Fraction]
    limits: dict[str, Fraction]
    sidecar: bool


@st.composite
def valid_pods(
    draw: st.DrawFn,
) -> tuple[dict[str, Any], list[RefContainer], list[RefContainer], dict[str, Fraction]]:
    def one(name: str, init: bool) -> tuple[dict[str, Any], RefContainer]:
        req, lim = draw(resource_list()), draw(resource_list())
        for name_, (value, _) in list(
            lim.items()
        ):  # devices: request == limit, as the API requires
            if "/" in name_ and name_ in req and req[name_][0] != value:
                del req[name_]
        sidecar = init and draw(st.booleans())
        resources = {}
        if req:
            resources["requests"] = {k: t for k, (_, t) in req.items()}
        if lim:
            resources["limits"] = {k: t for k, (_, t) in lim.items()}
        raw: dict[str, Any] = {"name": name, "image": "x"}
        if resources:
            raw["resources"] = resources
        if sidecar:
            raw["restartPolicy"] = "Always"
        ref_req = {k: v for k, (v, _) in req.items() if k in RESOURCES}
        ref_lim = {k: v for k, (v, _) in lim.items() if k in RESOURCES}
        return raw, RefContainer({**ref_lim, **ref_req}, ref_lim, sidecar)

    apps = [one(f"c{i}", False) for i in range(draw(st.integers(1, 4)))]
    inits = [one(f"i{i}", True) for i in range(draw(st.integers(0, 3)))]
    spec: dict[str, Any] = {"containers": [raw for raw, _ in apps]}
    if inits:
        spec["initContainers"] = [raw for raw, _ in inits]
    overhead: dict[str, Fraction] = {}
    if draw(st.booleans()):  # RuntimeClass overhead: added to requests, to set limits only
        milli = draw(st.integers(0, 2000))
        spec["overhead"] = {"cpu": f"{milli}m"}
        overhead = {"cpu": Fraction(milli, 1000)}
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "team-a", "annotations": {GROUP_KEY: "TeslaM40"}},
        "spec": spec,
    }
    return obj, [r for _, r in apps], [r for _, r in inits], overhead


def reference_total(
    apps: list[RefContainer], inits: list[RefContainer], which: str
) -> dict[str, Fraction]:
    """reference/kubernetes.md §1.2 steps 2-4, for requests or limits."""
    total: dict[str, Fraction] = {}
    for c in apps:
        for r, v in getattr(c, which).items():
            total[r] = total.get(r, Fraction(0)) + v
    side: dict[str, Fraction] = {}
    peak: dict[str, Fraction] = {}
    for c in inits:
        own: dict[str, Fraction] = getattr(c, which)
        if c.sidecar:
            for r, v in own.items():
                total[r] = total.get(r, Fraction(0)) + v
                side[r] = side.get(r, Fraction(0)) + v
            for r, v in side.items():
                peak[r] = max(peak.get(r, Fraction(0)), v)
        else:
            for r in set(own) | set(side):
                peak[r] = max(
                    peak.get(r, Fraction(0)), own.get(r, Fraction(0)) + side.get(r, Fraction(0))
                )
    for r, v in peak.items():
        total[r] = max(total.get(r, Fraction(0)), v)
    return total


limit_sets = st.builds(
    lambda cpu, mem, cards, nv: node_limits(cpu=cpu, memory_mi=mem, cards=cards, nv=nv),
    cpu=st.integers(0, 64),
    mem=st.integers(0, 40_000),
    cards=st.integers(0, 4),
    nv=st.integers(0, 4),
)


@settings(max_examples=300, deadline=2000)
@given(generated=valid_pods(), limits=limit_sets)
def test_oracle_decide_allows_iff_every_resource_fits(generated: Any, limits: NodeLimits) -> None:
    COUNTS["oracle: valid pods"] += 1
    obj, apps, inits, overhead = generated
    requests = reference_total(apps, inits, "requests")
    lims = reference_total(apps, inits, "limits")
    for r, v in overhead.items():
        requests[r] = requests.get(r, Fraction(0)) + v
        if lims.get(r):
            lims[r] += v
    caps = {
        "cpu": Fraction(limits.cpuNumber),
        "memory": Fraction(limits.memorySize * MiB),
        "nvidia.com/gpu": Fraction(
            min(limits.gpuNumber, limits.nvLimits) if limits.nvLimits > 0 else limits.gpuNumber
        ),
    }
    fits = all(
        amounts.get(r, Fraction(0)) <= cap
        for amounts in (requests, lims)
        for r, cap in caps.items()
    )
    decision = run_core(obj, limits)
    assert decision is not None
    assert decision.allowed is fits, (decision.violations, requests, lims, caps)
    over = {v.resource for v in decision.violations}
    expected = {r for r, cap in caps.items() if max(requests.get(r, 0), lims.get(r, 0)) > cap}
    assert over == expected
    # The default (issue 11): requests decide cpu and memory; a limit over is a warning.
    # Cards still count both (a device's request is its limit).
    default = run_core(obj, limits, DEFAULT_POLICY)
    assert default is not None
    by_request = {
        r
        for r, cap in caps.items()
        if (
            requests.get(r, 0)
            if r in ("cpu", "memory")
            else max(requests.get(r, 0), lims.get(r, 0))
        )
        > cap
    }
    assert {v.resource for v in default.violations} == by_request
    warned = {w.split(" limit ")[0] for w in default.warnings if " limit " in w}
    assert warned == {
        r for r in ("cpu", "memory") if r not in by_request and lims.get(r, 0) > caps[r]
    }
