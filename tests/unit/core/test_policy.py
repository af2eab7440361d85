"""webhook.core.policy: group and type resolution, every violation, warnings, the message."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.builders import GROUP_KEY, container, cronjob, job, node_limits, pod, workload
from webhook.config import AcceleratorRule, DeviceCount, PolicySettings
from webhook.core import policy
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.core.resources import InvalidQuantity
from webhook.core.workloads import Workload, workload_of

GPU, DCU, MLU, CPU = (
    AcceleratorType.GPU,
    AcceleratorType.DCU,
    AcceleratorType.MLU,
    AcceleratorType.CPU,
)
SETTINGS = PolicySettings()


def planned(obj: dict[str, Any], settings: PolicySettings = SETTINGS) -> policy.Plan:
    w = workload_of(obj)
    assert isinstance(w, Workload)
    return policy.plan(w, settings)


def decide(
    obj: dict[str, Any],
    limits: NodeLimits | None = None,
    settings: PolicySettings = SETTINGS,
    group_types: frozenset[AcceleratorType] = frozenset({GPU}),
) -> policy.Decision:
    p = planned(obj, settings)
    accelerator = policy.choose_accelerator(p, group_types, settings)
    return policy.decide(p, limits or node_limits(), accelerator, settings)


def messages(decision: policy.Decision) -> list[str]:
    return [v.message for v in decision.violations]


# --- fits and the deny message ----------------------------------------------------------


def test_pod_that_fits_is_allowed() -> None:
    d = decide(pod(container(cpu="40", memory="31888Mi", gpu=2)))
    assert d.allowed
    assert d.message == ""


def test_job_over_on_cards_and_memory_lists_both_in_one_message() -> None:
    d = decide(job(container(limits={"memory": "64Gi", "nvidia.com/gpu": 4})))
    assert d.message == (
        'nodelimits: Job team-a/train does not fit one node of resource group "TeslaM40" '
        "(gpu): memory 65536Mi > 31888Mi per node; nvidia.com/gpu 4 > 2 cards per node"
    )


def test_violation_carries_resource_amounts_and_unit() -> None:
    (v,) = decide(pod(container(cpu="48"))).violations
    assert (v.resource, v.requested, v.allowed, v.unit) == ("cpu", "48", "40", "cores")
    assert v.message == "cpu 48 > 40 cores per node"


def test_cpu_is_exact_to_the_millicore() -> None:
    assert decide(pod(container(cpu="40000m"))).allowed
    assert messages(decide(pod(container(cpu="40001m")))) == ["cpu 40001m > 40 cores per node"]


def test_memory_is_compared_in_mebibytes() -> None:
    assert decide(pod(container(memory="31888Mi"))).allowed
    assert not decide(pod(container(memory=f"{31888 * 2**20 + 1}"))).allowed


def test_memory_unit_is_configurable() -> None:
    settings = PolicySettings(memory_unit="M")
    assert decide(pod(container(memory="31888M")), settings=settings).allowed
    assert not decide(pod(container(memory="31888Mi")), settings=settings).allowed


# Issue 11 changed this: requests decide, as the scheduler's fit check does (a pod asking 1
# core and limited to 64 runs on a 40-core node); a limit over the node is a warning by default.
def test_limit_over_the_node_warns_when_the_request_fits() -> None:
    d = decide(pod(container(cpu="1", limits={"cpu": "64"})))
    assert d.allowed
    assert d.warnings == (
        "cpu limit 64 > 40 cores per node: the request fits, so the pod is scheduled, "
        "but it can never use its whole limit on one node",
    )


def test_limit_over_the_node_is_a_violation_under_limits_deny() -> None:
    d = decide(
        pod(container(cpu="1", limits={"cpu": "64"})), settings=PolicySettings(limits="deny")
    )
    assert messages(d) == ["cpu limit 64 > 40 cores per node"]


def test_limit_over_the_node_is_not_mentioned_under_limits_ignore() -> None:
    d = decide(
        pod(container(memory="1Gi", limits={"memory": "64Gi"})),
        settings=PolicySettings(limits="ignore"),
    )
    assert d.allowed
    assert d.warnings == ()


def test_a_request_over_the_node_is_reported_once_not_again_as_a_limit() -> None:
    d = decide(pod(container(cpu="48", limits={"cpu": "64"})))
    assert messages(d) == ["cpu 48 > 40 cores per node"]
    assert d.warnings == ()


def test_card_limits_still_deny() -> None:
    """Cards are unaffected by policy.limits: a device's request equals its limit."""
    d = decide(pod(container(gpu=4)), settings=PolicySettings(limits="ignore"))
    assert messages(d) == ["nvidia.com/gpu 4 > 2 cards per node"]


# --- policy.reserved ---------------------------------------------------------------------


def test_reserved_cpu_is_subtracted_and_shown() -> None:
    settings = PolicySettings(reserved={"cpu": "1"})
    assert decide(pod(container(cpu="39")), settings=settings).allowed
    d = decide(pod(container(cpu="40")), settings=settings)
    assert messages(d) == ["cpu 40 > 39 cores per node (40 - 1 reserved)"]
    (v,) = d.violations
    assert (v.requested, v.allowed) == ("40", "39")


def test_reserved_memory_is_a_quantity_in_the_platform_unit() -> None:
    settings = PolicySettings(reserved={"memory": "2Gi"})
    assert decide(pod(container(memory=f"{31888 - 2048}Mi")), settings=settings).allowed
    d = decide(pod(container(memory="31888Mi")), settings=settings)
    assert messages(d) == ["memory 31888Mi > 29840Mi per node (31888Mi - 2048Mi reserved)"]


def test_reserved_per_group_replaces_the_global_value_per_resource() -> None:
    settings = PolicySettings(
        reserved={"cpu": "1", "memory": "1Gi", "groups": {"TeslaM40": {"cpu": "500m"}}}
    )
    assert settings.reserved.of("TeslaM40") == (Decimal("0.5"), Decimal(2**30))
    assert settings.reserved.of("other") == (Decimal(1), Decimal(2**30))
    d = decide(pod(container(cpu="39600m")), settings=settings)
    assert messages(d) == ["cpu 39600m > 39500m cores per node (40 - 500m reserved)"]


def test_reserved_applies_to_limits_too() -> None:
    settings = PolicySettings(reserved={"cpu": "2"})
    d = decide(pod(container(cpu="1", limits={"cpu": "39"})), settings=settings)
    assert d.warnings[0].startswith("cpu limit 39 > 38 cores per node (40 - 2 reserved): ")


@pytest.mark.parametrize("bad", [{"cpu": "-1"}, {"cpu": "lots"}, {"memory": True}, {"gpu": "1"}])
def test_reserved_must_be_quantities_of_cpu_and_memory(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="reserved"):
        PolicySettings(reserved=bad)


def test_pod_without_namespace_is_named_alone() -> None:
    obj = pod(container(cpu="41"))
    del obj["metadata"]["namespace"]
    assert decide(obj).message.startswith("nodelimits: Pod p does not fit")


# --- cards ------------------------------------------------------------------------------


def test_vendor_cap_below_gpu_number_applies() -> None:
    d = decide(pod(container(gpu=6)), node_limits(cards=8, nv=4))
    assert messages(d) == ["nvidia.com/gpu 6 > 4 cards per node"]


def test_vendor_cap_of_zero_means_no_extra_cap() -> None:
    assert decide(pod(container(gpu=8)), node_limits(cards=8, nv=0)).allowed


def test_vendor_cap_of_another_vendor_does_not_apply() -> None:
    assert decide(pod(container(gpu=8)), node_limits(cards=8, dcu=2)).allowed


def test_dcu_cards_are_counted_against_the_dcu_cap() -> None:
    obj = pod(container(limits={"hygon.com/dcu": 4}), group="kshd")
    d = decide(obj, node_limits("kshd", accelerator="dcu", cards=8, dcu=2))
    assert d.accelerator is DCU
    assert messages(d) == ["hygon.com/dcu 4 > 2 cards per node"]


def test_per_model_mlu_cards_add_up() -> None:
    obj = pod(container(limits={"cambricon.com/mlu370": 6, "cambricon.com/mlu": 3}))
    d = decide(obj, node_limits(accelerator="mlu", cards=8))
    assert messages(d) == ["cambricon.com/mlu+cambricon.com/mlu370 9 > 8 cards per node"]


@pytest.mark.parametrize(
    "resource",
    ["nvidia.com/gpumem", "nvidia.com/gpucores", "nvidia.com/mig-3g.20gb", "nvidia.com/gpu.shared"],
)
def test_virtual_gpu_resources_reveal_the_type_but_are_not_cards(resource: str) -> None:
    p = planned(pod(container(limits={resource: 100})))
    assert p.accelerator is GPU
    assert p.demand.cards == {}


@pytest.mark.parametrize(
    ("resource", "accelerator"),
    [
        ("hygon.com/dcumem", DCU),
        ("hygon.com/dcu-share-4c-16g", DCU),
        ("cambricon.com/vmlu", MLU),
        ("cambricon.com/mlu.smlu.vmemory", MLU),
        ("cambricon.com/mlu370.smlu.vcore", MLU),
        ("cambricon.com/mlu370.share", MLU),
    ],
)
def test_virtual_resources_of_other_vendors_are_not_cards(
    resource: str, accelerator: AcceleratorType
) -> None:
    p = planned(pod(container(limits={resource: 4})))
    assert p.accelerator is accelerator
    assert p.demand.cards == {}


def test_the_device_table_is_configurable() -> None:
    settings = PolicySettings(
        accelerators=(
            AcceleratorRule(pattern="nvidia.com/mig-*", type=GPU, count=DeviceCount.CARDS),
            *PolicySettings().accelerators,
        )
    )
    d = decide(pod(container(limits={"nvidia.com/mig-1g.5gb": 3})), settings=settings)
    assert messages(d) == ["nvidia.com/mig-1g.5gb 3 > 2 cards per node"]


def test_fractional_card_count_is_invalid() -> None:
    with pytest.raises(InvalidQuantity, match="whole numbers"):
        planned(pod(container(limits={"nvidia.com/gpu": 0.5})))


# --- accelerator type ---------------------------------------------------------------------


def test_type_annotation_wins() -> None:
    p = planned(pod(accelerator="DCU"))
    assert policy.choose_accelerator(p, frozenset({GPU}), SETTINGS) is DCU


def test_type_is_inferred_from_devices() -> None:
    p = planned(pod(container(limits={"hygon.com/dcu": 1})))
    assert policy.choose_accelerator(p, frozenset({GPU}), SETTINGS) is DCU


def test_type_falls_back_to_the_configured_group_type() -> None:
    settings = PolicySettings(group_types={"TeslaM40": MLU})
    p = planned(pod(), settings)
    assert not policy.needs_group_types(p, settings)
    assert policy.choose_accelerator(p, frozenset({GPU}), settings) is MLU


def test_type_falls_back_to_the_only_type_the_group_is_offered_under() -> None:
    p = planned(pod())
    assert policy.needs_group_types(p, SETTINGS)
    assert policy.choose_accelerator(p, frozenset({DCU}), SETTINGS) is DCU


def test_type_falls_back_to_the_default_when_the_group_is_ambiguous() -> None:
    p = planned(pod())
    assert policy.choose_accelerator(p, frozenset({GPU, DCU}), SETTINGS) is CPU


def test_two_vendors_in_one_pod_is_a_violation() -> None:
    obj = pod(container(limits={"nvidia.com/gpu": 1, "hygon.com/dcu": 1}))
    d = decide(obj)
    assert any("more than one accelerator type (dcu, gpu)" in m for m in messages(d))


def test_devices_contradicting_the_annotation_is_a_violation() -> None:
    d = decide(pod(container(gpu=1), accelerator="dcu"), node_limits(accelerator="dcu"))
    assert "requests gpu devices but the accelerator type is dcu" in messages(d)


def test_unknown_type_annotation_is_a_violation() -> None:
    d = decide(pod(accelerator="tpu"))
    assert any("unknown accelerator type 'tpu'" in m for m in messages(d))


# --- annotations --------------------------------------------------------------------------


def test_unannotated_pod_has_no_group() -> None:
    assert planned(pod(group=None)).group is None


def test_unannotated_pod_resources_are_not_read() -> None:
    """Not ours: even a quantity nodelimits would refuse must not deny someone else's pod."""
    p = planned(pod(container(limits={"cpu": "lots"}), group=None))
    assert p.group is None
    assert p.violations == ()


def test_default_group_applies_to_unannotated_objects() -> None:
    assert planned(pod(group=None), PolicySettings(default_group="g")).group == "g"


def test_annotation_key_is_configurable() -> None:
    obj = pod(group=None)
    obj["metadata"]["annotations"] = {"example.com/queue": "q"}
    assert planned(obj, PolicySettings(group_annotation="example.com/queue")).group == "q"


def test_annotation_only_on_job_metadata_is_used_with_a_warning() -> None:
    p = planned(job(on_job_metadata=True))
    assert p.group == "TeslaM40"
    assert p.warnings == (
        "annotation nodelimits.io/resource-group is on the Job's own metadata, not its pod "
        "template: its pods will not carry it",
    )


def test_annotation_key_in_other_case_is_still_checked_with_a_warning() -> None:
    obj = pod(group=None)
    obj["metadata"]["annotations"] = {"NodeLimits.io/Resource-Group": "TeslaM40"}
    p = planned(obj)
    assert p.group == "TeslaM40"
    assert "differs in case" in p.warnings[0]


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param((GROUP_KEY, "NodeLimits.io/Resource-Group"), id="exact-and-variant"),
        pytest.param(("NodeLimits.io/Resource-Group", "NODELIMITS.IO/RESOURCE-GROUP"), id="two"),
    ],
)
@pytest.mark.parametrize("order", [1, -1], ids=["in-order", "reversed"])
def test_case_variant_group_keys_that_disagree_are_one_violation_naming_both(
    keys: tuple[str, str], order: int
) -> None:
    """Issue 12, finding 3: the exact key silently won, and with two variants the file's
    order (check) and the apiserver's sorted keys (webhook) picked different groups."""
    obj = pod(group=None)
    obj["metadata"]["annotations"] = dict(
        list(zip(keys, ["a800x8", "TeslaM40"], strict=True))[::order]
    )
    d = policy.evaluate(
        workload_of(obj),  # type: ignore[arg-type]
        SETTINGS,
        lambda group, _: node_limits(group),
        lambda _: frozenset({GPU}),
    )
    assert not d.allowed
    (violation,) = d.violations
    assert violation.resource == "resourceGroup"
    assert all(k in violation.message for k in keys)
    assert "a800x8" in violation.message
    assert "TeslaM40" in violation.message


def test_case_variant_keys_that_agree_are_read_with_a_warning() -> None:
    obj = pod(group=None)
    obj["metadata"]["annotations"] = {"NodeLimits.io/Resource-Group": "TeslaM40",
                                      "nodelimits.io/RESOURCE-group": "TeslaM40"}  # fmt: skip
    p = planned(obj)
    assert p.group == "TeslaM40"
    assert p.violations == ()
    assert "differs in case" in p.warnings[0]


def test_case_variant_type_keys_that_disagree_are_a_violation() -> None:
    obj = pod(accelerator="gpu")
    obj["metadata"]["annotations"]["Nodelimits.io/Accelerator-Type"] = "dcu"
    p = planned(obj)
    (violation,) = p.violations
    assert violation.resource == "acceleratorType"
    assert "Nodelimits.io/Accelerator-Type" in violation.message


def test_empty_group_annotation_is_a_violation() -> None:
    p = planned(pod(group="  "))
    assert [v.message for v in p.violations] == [f"annotation {GROUP_KEY} is empty"]


# --- run time -----------------------------------------------------------------------------


def test_deadline_over_max_time_is_a_violation() -> None:
    d = decide(job(deadline=90000), node_limits(max_time="1-00:00:00"))
    assert messages(d) == [
        "activeDeadlineSeconds 90000s (1-01:00:00) > maxTime 1-00:00:00 (86400s)"
    ]


def test_deadline_within_max_time_is_allowed() -> None:
    d = decide(pod(deadline=86400), node_limits(max_time="24:00:00"))
    assert d.allowed
    assert d.warnings == ()


def test_no_deadline_under_finite_max_time_is_a_warning() -> None:
    d = decide(job(), node_limits(max_time="90"))
    assert d.allowed
    assert d.warnings == (
        'no activeDeadlineSeconds: resource group "TeslaM40" limits run time to maxTime 90 '
        "(5400s); set activeDeadlineSeconds <= 5400",
    )


def test_no_deadline_can_be_configured_to_deny() -> None:
    d = decide(job(), node_limits(max_time="90"), settings=PolicySettings(require_deadline=True))
    assert [v.resource for v in d.violations] == ["activeDeadlineSeconds"]


def test_unlimited_max_time_needs_no_deadline() -> None:
    assert decide(job(), node_limits(max_time="UNLIMITED")).warnings == ()


JOB_CONTROLLER = {"apiVersion": "batch/v1", "kind": "Job", "name": "train", "controller": True}


def test_pods_controlled_by_a_job_need_no_deadline_of_their_own() -> None:
    obj = pod()
    obj["metadata"]["ownerReferences"] = [JOB_CONTROLLER]
    d = decide(obj, node_limits(max_time="10"), settings=PolicySettings(require_deadline=True))
    assert d.allowed
    assert d.warnings == ()


@pytest.mark.parametrize(
    "owner",
    [
        pytest.param(JOB_CONTROLLER, id="batch-v1-job-controller"),
        pytest.param({"kind": "Job", "name": "train"}, id="kind-only"),
        pytest.param({**JOB_CONTROLLER, "apiVersion": "example.com/v1"}, id="invented-job"),
    ],
)
def test_explicit_deadline_over_max_time_is_denied_whoever_owns_the_pod(
    owner: dict[str, Any],
) -> None:
    """Issue 12, finding 7: a forged ownerReferences entry waived the pod's own deadline."""
    obj = pod(deadline=99999999)
    obj["metadata"]["ownerReferences"] = [owner]
    d = decide(obj, node_limits(max_time="12:00:00"))
    assert [v.resource for v in d.violations] == ["activeDeadlineSeconds"]


@pytest.mark.parametrize(
    "owner",
    [
        pytest.param({"kind": "Job", "name": "train"}, id="not-a-controller"),
        pytest.param({**JOB_CONTROLLER, "apiVersion": "example.com/v1"}, id="invented-job"),
        pytest.param({**JOB_CONTROLLER, "kind": "job"}, id="kind-in-other-case"),
    ],
)
def test_only_a_batch_v1_job_controller_waives_a_missing_deadline(owner: dict[str, Any]) -> None:
    obj = pod()
    obj["metadata"]["ownerReferences"] = [owner]
    d = decide(obj, node_limits(max_time="10"), settings=PolicySettings(require_deadline=True))
    assert [v.resource for v in d.violations] == ["activeDeadlineSeconds"]


def test_cronjob_deadline_comes_from_its_job_template() -> None:
    d = decide(cronjob(job(deadline=7200)), node_limits(max_time="01:00:00"))
    assert [v.resource for v in d.violations] == ["activeDeadlineSeconds"]


def test_long_running_workload_under_finite_max_time_is_warned() -> None:
    d = decide(workload("Deployment"), node_limits(max_time="10"))
    assert d.allowed
    assert "Deployment pods run until deleted" in d.warnings[0]


# --- parallelism --------------------------------------------------------------------------


def test_parallelism_beyond_what_the_nodes_hold_is_a_warning() -> None:
    d = decide(job(container(gpu=1), parallelism=5), node_limits(cards=2, nodes=2))
    assert d.allowed
    assert d.warnings == (
        "parallelism 5: only 4 pods can run at once on the 2 node(s) of resource group "
        '"TeslaM40" (2 per node); the rest will wait',
    )


def test_parallelism_that_fits_is_silent() -> None:
    assert (
        decide(job(container(gpu=1), parallelism=4), node_limits(cards=2, nodes=2)).warnings == ()
    )


def test_replicas_beyond_the_nodes_are_warned_too() -> None:
    d = decide(workload("StatefulSet", container(cpu="30"), replicas=3), node_limits(nodes=2))
    assert d.warnings[0].startswith("replicas 3: only 2 pods")


# --- properties ---------------------------------------------------------------------------


@given(
    cpu=st.integers(min_value=0, max_value=100_000),
    cards=st.integers(min_value=0, max_value=16),
    cap_cpu=st.integers(min_value=0, max_value=100),
    cap_cards=st.integers(min_value=0, max_value=16),
)
def test_allowed_exactly_when_every_resource_fits(
    cpu: int, cards: int, cap_cpu: int, cap_cards: int
) -> None:
    d = decide(pod(container(cpu=f"{cpu}m", gpu=cards)), node_limits(cpu=cap_cpu, cards=cap_cards))
    assert d.allowed == (cpu <= cap_cpu * 1000 and cards <= cap_cards)


def test_reserved_shrinks_each_node_in_the_gang_check_too() -> None:
    from webhook.core import podsets

    reserved = PolicySettings(reserved={"cpu": "1500m", "memory": "1Gi"}).reserved.of("TeslaM40")
    assert podsets._capacity(node_limits(), GPU, "Mi", reserved) == (
        38500,
        (31888 - 1024) * 2**20,
        2,
    )
