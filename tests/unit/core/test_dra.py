"""webhook.core.dra: cards through Dynamic Resource Allocation, counted from the claims."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from devtools.builders import container, node_limits, pod
from webhook.core import dra, policy
from webhook.core.limits import AcceleratorType
from webhook.core.policy import PolicySettings
from webhook.core.workloads import Workload, workload_of

GPU, DCU = AcceleratorType.GPU, AcceleratorType.DCU
SETTINGS = dra.DraSettings()
POLICY = PolicySettings()
NVIDIA = "deviceclass.resource.kubernetes.io/gpu.nvidia.com"


def template(name: str, *requests: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"spec": {"devices": {"requests": list(requests)}}},
    }


def claim(name: str, *requests: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"devices": {"requests": list(requests)}},
    }


def exactly(
    device_class: str = "gpu.nvidia.com", name: str = "gpus", **more: Any
) -> dict[str, Any]:
    return {"name": name, "exactly": {"deviceClassName": device_class, **more}}


def claims_of(*objects: dict[str, Any], complete: bool = True) -> dra.Claims:
    return dra.Claims(
        found={(o["kind"], o["metadata"]["name"]): o for o in objects}, complete=complete
    )


def claimed_pod(*entries: dict[str, str], **kw: Any) -> dict[str, Any]:
    return pod(container(), resourceClaims=list(entries), **kw)


def refs_of(obj: dict[str, Any]) -> tuple[dra.ClaimRef, ...]:
    return dra.references(obj["spec"])


def test_references_name_templates_and_claims_in_order() -> None:
    obj = claimed_pod(
        {"name": "a", "resourceClaimTemplateName": "t"},
        {"name": "b", "resourceClaimName": "c"},
        {"name": "broken"},
    )
    assert refs_of(obj) == (
        dra.ClaimRef("ResourceClaimTemplate", "t", "a"),
        dra.ClaimRef("ResourceClaim", "c", "b"),
    )


def test_exact_count_is_summed_per_class_over_requests_and_claims() -> None:
    obj = claimed_pod(
        {"name": "a", "resourceClaimTemplateName": "t"},
        {"name": "b", "resourceClaimName": "c"},
    )
    found = claims_of(
        template("t", exactly(count=4), exactly(name="more", count=2)),
        claim("c", exactly(), exactly("dra.hygon.com", count=3)),
    )
    counted = dra.count(refs_of(obj), found, SETTINGS, missing_is_error=True)
    assert counted.cards == {
        GPU: {NVIDIA: Decimal(7)},
        DCU: {"deviceclass.resource.kubernetes.io/dra.hygon.com": Decimal(3)},
    }
    assert counted.uncountable == []


def test_admin_access_and_unmapped_classes_are_not_cards() -> None:
    obj = claimed_pod({"name": "a", "resourceClaimTemplateName": "t"})
    found = claims_of(template("t", exactly(count=8, adminAccess=True), exactly("nic.example.com")))
    assert dra.count(refs_of(obj), found, SETTINGS, missing_is_error=True).cards == {}


def test_all_and_first_available_cannot_be_counted() -> None:
    obj = claimed_pod({"name": "a", "resourceClaimTemplateName": "t"})
    found = claims_of(
        template(
            "t",
            exactly(allocationMode="All"),
            {"name": "alt", "firstAvailable": [{"name": "x", "deviceClassName": "gpu.amd.com"}]},
            {"name": "nic", "firstAvailable": [{"name": "y", "deviceClassName": "nic.example"}]},
        )
    )
    counted = dra.count(refs_of(obj), found, SETTINGS, missing_is_error=True)
    assert counted.cards == {}
    assert [u.split(":")[0] for u in counted.uncountable] == [
        "ResourceClaimTemplate t request gpus",
        "ResourceClaimTemplate t request alt",
    ]


def test_v1beta1_requests_carry_the_class_directly() -> None:
    obj = claimed_pod({"name": "a", "resourceClaimTemplateName": "t"})
    found = claims_of(template("t", {"name": "g", "deviceClassName": "gpu.amd.com", "count": 2}))
    counted = dra.count(refs_of(obj), found, SETTINGS, missing_is_error=True)
    assert counted.cards == {GPU: {"deviceclass.resource.kubernetes.io/gpu.amd.com": Decimal(2)}}


@pytest.mark.parametrize("bad", [0, -1, "4", True, 1.5])
def test_a_count_that_is_not_a_positive_integer_is_invalid(bad: object) -> None:
    obj = claimed_pod({"name": "a", "resourceClaimTemplateName": "t"})
    with pytest.raises(dra.InvalidObject, match="count"):
        dra.count(
            refs_of(obj),
            claims_of(template("t", exactly(count=bad))),
            SETTINGS,
            missing_is_error=True,
        )


def test_a_claim_missing_from_complete_input_is_an_error() -> None:
    obj = claimed_pod({"name": "gpus", "resourceClaimTemplateName": "nope"})
    with pytest.raises(
        dra.ClaimNotFound, match="ResourceClaimTemplate 'nope' not found in the input files"
    ):
        dra.count(refs_of(obj), claims_of(), SETTINGS, missing_is_error=False)


def test_a_missing_claim_online_is_an_error_for_a_pod_and_a_warning_otherwise() -> None:
    obj = claimed_pod({"name": "gpus", "resourceClaimTemplateName": "nope"})
    missing = dra.Claims(missing=frozenset({("ResourceClaimTemplate", "nope")}))
    with pytest.raises(dra.ClaimNotFound, match="not found in the namespace"):
        dra.count(refs_of(obj), missing, SETTINGS, missing_is_error=True)
    counted = dra.count(refs_of(obj), missing, SETTINGS, missing_is_error=False)
    assert counted.unread == ["ResourceClaimTemplate 'nope' (not found)"]


# --- through the policy -----------------------------------------------------------------

THE_ISSUE_POD = claimed_pod({"name": "gpus", "resourceClaimTemplateName": "gpus-64"})
THE_ISSUE_TEMPLATE = template("gpus-64", exactly(allocationMode="ExactCount", count=64))


def decide(
    obj: dict[str, Any], claims: dra.Claims | None, settings: PolicySettings = POLICY
) -> policy.Decision:
    w = workload_of(obj)
    assert isinstance(w, Workload)
    planned = policy.plan(w, settings, claims)
    accelerator = policy.choose_accelerator(planned, frozenset({GPU}), settings)
    return policy.decide(planned, node_limits(), accelerator, settings)


def test_the_issue_pod_asking_64_gpus_through_a_template_is_rejected() -> None:
    d = decide(THE_ISSUE_POD, claims_of(THE_ISSUE_TEMPLATE))
    assert d.accelerator is GPU
    assert [v.message for v in d.violations] == [f"{NVIDIA} 64 > 2 cards per node"]


def test_claimed_cards_add_to_device_plugin_cards() -> None:
    obj = pod(container(gpu=1), resourceClaims=[{"name": "g", "resourceClaimTemplateName": "t"}])
    d = decide(obj, claims_of(template("t", exactly(count=2))))
    assert [v.message for v in d.violations] == [f"{NVIDIA}+nvidia.com/gpu 3 > 2 cards per node"]


def test_uncountable_requests_deny_by_default_and_warn_when_configured() -> None:
    found = claims_of(template("gpus-64", exactly(allocationMode="All")))
    denied = decide(THE_ISSUE_POD, found)
    assert not denied.allowed
    assert "allocationMode All" in denied.message
    warned = decide(THE_ISSUE_POD, found, PolicySettings(dra={"uncountable": "warn"}))
    assert warned.allowed
    assert any("allocationMode All" in w and "not checked" in w for w in warned.warnings)


def test_claims_not_read_are_a_warning() -> None:
    d = decide(THE_ISSUE_POD, None)
    assert d.allowed
    assert any("were not counted" in w for w in d.warnings)


def test_implicit_extended_resource_of_a_mapped_class_counts_as_cards() -> None:
    d = decide(pod(container(limits={NVIDIA: 4})), None)
    assert [v.message for v in d.violations] == [f"{NVIDIA} 4 > 2 cards per node"]
    other = decide(pod(container(limits={"deviceclass.resource.kubernetes.io/nic.x": 4})), None)
    assert other.allowed


def test_device_classes_are_configurable() -> None:
    settings = PolicySettings(dra={"device_classes": {"hcu.example.com": "dcu"}})
    found = claims_of(template("gpus-64", exactly("hcu.example.com", count=64)))
    w = workload_of(THE_ISSUE_POD)
    assert isinstance(w, Workload)
    assert policy.plan(w, settings, found).accelerator is DCU
    assert decide(THE_ISSUE_POD, claims_of(THE_ISSUE_TEMPLATE), settings).allowed  # not mapped
