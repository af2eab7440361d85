"""webhook.core.podsets through policy.evaluate: role-named messages, one group, the gang."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.builders import node_limits
from devtools.examples import example
from webhook.core import policy
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.core.workloads import Workload, workload_of

GPU = AcceleratorType.GPU
GROUP = "nodelimits.io/resource-group"


def evaluate(
    obj: dict[str, Any],
    limits: NodeLimits | None = None,
    settings: policy.PolicySettings | None = None,
) -> policy.Decision:
    found = limits or node_limits("a800x8", cpu=128, memory_mi=1031168, cards=8, nv=4, nodes=16)
    w = workload_of(obj)
    assert isinstance(w, Workload)
    return policy.evaluate(
        w, settings or policy.PolicySettings(), lambda g, t: found, lambda g: frozenset({GPU})
    )


def test_the_message_names_the_role() -> None:
    d = evaluate(example("pytorchjob.yaml", 1))
    assert d.message == (
        "nodelimits: PyTorchJob team-a/llm-pretrain-too-big does not fit one node of resource "
        'group "a800x8" (gpu): replica Worker: nvidia.com/gpu 16 > 4 cards per node'
    )


def test_every_roles_violations_are_in_one_message() -> None:
    obj = example("pytorchjob.yaml", 1)
    master = obj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    master["resources"]["requests"]["cpu"] = master["resources"]["limits"]["cpu"] = "200"
    d = evaluate(obj)
    assert [v.message for v in d.violations] == [
        "replica Master: cpu 200 > 128 cores per node",
        "replica Worker: nvidia.com/gpu 16 > 4 cards per node",
    ]


def test_roles_naming_different_groups_are_a_violation() -> None:
    obj = example("pytorchjob.yaml")
    obj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["annotations"][GROUP] = (
        "cpu-small"
    )
    d = evaluate(obj)
    assert not d.allowed
    assert "roles name different resource groups" in d.message
    assert 'replica Master "cpu-small"' in d.message


def test_a_role_without_the_annotation_is_checked_with_a_warning() -> None:
    obj = example("pytorchjob.yaml", 1)
    del obj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["metadata"]["annotations"]
    d = evaluate(obj)
    assert "replica Worker: nvidia.com/gpu 16 > 4 cards per node" in d.message
    assert any("replica Worker: its pod template has no" in w for w in d.warnings)


def test_no_role_annotated_is_skipped() -> None:
    obj = example("pytorchjob.yaml")
    for role in obj["spec"]["pytorchReplicaSpecs"].values():
        role["template"]["metadata"] = {}
    assert evaluate(obj).skipped is not None


def test_annotation_on_the_workloads_own_metadata_is_used_with_a_warning() -> None:
    obj = example("pytorchjob.yaml", 1)
    for role in obj["spec"]["pytorchReplicaSpecs"].values():
        role["template"]["metadata"] = {}
    obj["metadata"]["annotations"] = {GROUP: "a800x8"}
    d = evaluate(obj)
    assert not d.allowed
    assert any("own metadata" in w for w in d.warnings)


def test_explicit_gang_that_never_fits_is_denied() -> None:
    d = evaluate(example("mpijob.yaml", 1))
    assert [v.resource for v in d.violations] == ["gang"]
    assert "21 pods that must run at once (replica Launcher 1, replica Worker 20)" in d.message
    assert "cards 80 needed at once > 64 on all nodes" in d.message


def test_implied_gang_is_a_warning_and_the_setting_overrides() -> None:
    obj = example("jobset.yaml")
    obj["spec"]["replicatedJobs"][1]["replicas"] = 20  # 80 pods x 4 cards > 16 nodes x 4
    d = evaluate(obj)
    assert d.allowed
    assert any("gang: the 81 pods" in w for w in d.warnings)
    denied = evaluate(obj, settings=policy.PolicySettings(gang="deny"))
    assert not denied.allowed
    assert denied.violations[0].resource == "gang"
    ignored = evaluate(obj, settings=policy.PolicySettings(gang="ignore"))
    assert ignored.allowed
    assert not any("gang" in w for w in ignored.warnings)


def test_kubeflow_min_available_takes_the_cheapest_pods() -> None:
    obj = example("tfjob.yaml", 1)  # 2 PS (no cards) + 40 workers x 4 cards
    obj["spec"]["runPolicy"]["schedulingPolicy"]["minAvailable"] = 18  # 2 PS + 16 workers
    assert evaluate(obj).allowed
    obj["spec"]["runPolicy"]["schedulingPolicy"]["minAvailable"] = 19
    d = evaluate(obj)
    assert "at least 19 of replica PS 2, replica Worker 40" in d.message


def test_volcano_task_min_available() -> None:
    obj = example("volcano-job.yaml")  # worker 4 x 4 cards, minAvailable 7
    obj["spec"]["tasks"][1]["replicas"] = 30
    obj["spec"]["minAvailable"] = 20
    obj["spec"]["tasks"][1]["minAvailable"] = 17  # 17 x 4 cards > 64
    assert "gang" in evaluate(obj).message
    obj["spec"]["tasks"][1]["minAvailable"] = 15  # + ps, eval, chief (2 cards) = 62 cards
    obj["spec"]["minAvailable"] = 18
    assert evaluate(obj).allowed
    obj["spec"]["minAvailable"] = 19  # one more pod: the cheapest is a 4-card worker
    assert "cards 66 needed at once > 64" in evaluate(obj).message


def test_gang_is_not_repeated_when_a_pod_does_not_fit() -> None:
    d = evaluate(example("volcano-job.yaml", 1))
    assert [v.resource for v in d.violations] == ["nvidia.com/gpu"]


def test_job_parallelism_becomes_the_gang_check() -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "n"},
        "spec": {
            "parallelism": 40,
            "template": {
                "metadata": {"annotations": {GROUP: "a800x8"}},
                "spec": {
                    "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 2}}}]
                },
            },
        },
    }
    assert any("parallelism 40: only 32 pods" in w for w in evaluate(job).warnings)
    denied = evaluate(job, settings=policy.PolicySettings(gang="deny"))
    assert not denied.allowed
    assert "parallelism 40" in denied.message
    ignored = evaluate(job, settings=policy.PolicySettings(gang="ignore"))
    assert not any("parallelism" in w for w in ignored.warnings)


@pytest.mark.parametrize("file", ["leaderworkerset.yaml", "mpijob.yaml", "tfjob.yaml"])
def test_fitting_examples_fit(file: str) -> None:
    assert evaluate(example(file)).allowed


@pytest.mark.parametrize("file", ["sparkapplication.yaml", "scheduledsparkapplication.yaml"])
@pytest.mark.parametrize("require", [False, True])
def test_spark_has_no_deadline_to_set_so_max_time_is_a_warning_saying_so(
    file: str, require: bool
) -> None:
    limits = node_limits(
        "a800x8", cpu=128, memory_mi=1031168, cards=8, nv=4, nodes=16, max_time="7-00:00:00"
    )
    d = evaluate(example(file), limits, policy.PolicySettings(require_deadline=require))
    assert d.allowed, d.message
    kind = example(file)["kind"]
    assert list(d.warnings) == [
        f'{kind} has no run-time limit to set, but resource group "a800x8" limits run time '
        "to maxTime 7-00:00:00 (604800s)"
    ]
    assert not any("activeDeadlineSeconds" in w for w in d.warnings)


def test_cronjob_group_on_its_job_template_metadata_is_named_there() -> None:
    d = evaluate(example("cronjob-jobtemplate-annotation.yaml"))
    assert (
        "annotation nodelimits.io/resource-group is on the CronJob's spec.jobTemplate.metadata, "
        "which its Jobs carry, not its pod template: its pods will not carry it"
    ) in d.warnings
    assert not any("own metadata" in w for w in d.warnings)


def test_volcano_cronjob_group_on_its_job_template_metadata_is_named_there() -> None:
    obj = example("volcano-cronjob.yaml", 1)
    for task in obj["spec"]["jobTemplate"]["spec"]["tasks"]:
        del task["template"]["metadata"]
    obj["spec"]["jobTemplate"]["metadata"] = {"annotations": {GROUP: "a800x8"}}
    d = evaluate(obj)
    assert "task worker: nvidia.com/gpu 16 > 4 cards per node" in d.message
    assert any("CronJob's spec.jobTemplate.metadata, which its Jobs carry" in w for w in d.warnings)


def test_group_on_the_workloads_own_metadata_still_says_so() -> None:
    obj = example("cronjob-jobtemplate-annotation.yaml")
    obj["metadata"]["annotations"] = obj["spec"]["jobTemplate"].pop("metadata")["annotations"]
    d = evaluate(obj)
    assert any("is on the CronJob's own metadata, not its pod template" in w for w in d.warnings)
