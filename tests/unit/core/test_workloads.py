"""webhook.core.workloads: pod specs and context out of every kind that has pods."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.builders import GROUP_KEY, container, cronjob, job, pod, workload
from webhook.core.workloads import InvalidObject, Skipped, Workload, iter_objects, workload_of


def read(obj: dict[str, Any]) -> Workload:
    result = workload_of(obj)
    assert isinstance(result, Workload)
    return result


def test_pod_is_read_from_its_own_metadata() -> None:
    w = read(pod(container(cpu="1"), deadline=60))
    assert (w.kind, w.namespace, w.name) == ("Pod", "team-a", "p")
    assert w.annotations[GROUP_KEY] == "TeslaM40"
    assert w.active_deadline_seconds == 60
    assert w.pod_spec["containers"][0]["resources"]["requests"]["cpu"] == "1"


def test_pod_controlled_by_a_batch_v1_job_is_marked() -> None:
    obj = pod()
    obj["metadata"]["ownerReferences"] = [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "train", "controller": True}
    ]
    assert read(obj).owned_by_job


@pytest.mark.parametrize(
    "ref",
    [
        {"kind": "Job", "name": "train", "controller": True},
        {"apiVersion": "batch/v1", "kind": "Job", "name": "train"},
        {"apiVersion": "example.com/v1", "kind": "Job", "name": "train", "controller": True},
        {"apiVersion": "batch/v1", "kind": "CronJob", "name": "train", "controller": True},
    ],
    ids=["no-apiVersion", "not-controller", "invented-group", "cronjob"],
)
def test_other_owner_references_do_not_mark_a_pod_job_owned(ref: dict[str, Any]) -> None:
    obj = pod()
    obj["metadata"]["ownerReferences"] = [ref]
    assert not read(obj).owned_by_job


def test_job_is_read_from_its_pod_template() -> None:
    w = read(job(container(gpu=2), deadline=600, parallelism=3))
    assert w.annotations[GROUP_KEY] == "TeslaM40"
    assert w.fallback_annotations == {}
    assert w.pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert w.active_deadline_seconds == 600
    assert w.parallelism == 3


def test_job_annotation_on_job_metadata_is_kept_as_fallback() -> None:
    w = read(job(on_job_metadata=True))
    assert w.annotations == {}
    assert w.fallback_annotations[GROUP_KEY] == "TeslaM40"


def test_job_deadline_is_the_smaller_of_job_and_template() -> None:
    obj = job(deadline=600)
    obj["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 100
    assert read(obj).active_deadline_seconds == 100


@pytest.mark.parametrize(
    ("parallelism", "completions", "running"),
    [(None, None, 1), (4, None, 4), (4, 2, 2), (None, 5, 1), (0, None, 0)],
)
def test_job_parallelism_is_capped_by_completions(
    parallelism: int | None, completions: int | None, running: int
) -> None:
    assert read(job(parallelism=parallelism, completions=completions)).parallelism == running


def test_cronjob_is_read_through_its_job_template() -> None:
    w = read(cronjob(job(container(cpu="3"), deadline=60, parallelism=2)))
    assert w.kind == "CronJob"
    assert w.annotations[GROUP_KEY] == "TeslaM40"
    assert w.active_deadline_seconds == 60
    assert w.parallelism == 2


@pytest.mark.parametrize(
    "kind", ["Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"]
)
def test_replicated_workloads_report_replicas_and_run_forever(kind: str) -> None:
    w = read(workload(kind, container(cpu="1"), replicas=3))
    assert w.parallelism == 3
    assert w.long_running
    assert w.annotations[GROUP_KEY] == "TeslaM40"


def test_replicas_default_to_one() -> None:
    assert read(workload("Deployment")).parallelism == 1


def test_daemonset_has_no_replica_count() -> None:
    w = read(workload("DaemonSet"))
    assert w.parallelism is None
    assert w.long_running


def test_pod_template_object_is_read() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "t"},
        "template": {"metadata": {"annotations": {GROUP_KEY: "g"}}, "spec": {"containers": []}},
    }
    assert read(obj).annotations == {GROUP_KEY: "g"}


def test_unknown_kind_is_skipped_with_a_reason() -> None:
    result = workload_of({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    assert isinstance(result, Skipped)
    assert result.reason == "kind ConfigMap has no pods to check"


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        pytest.param([], "<document>", id="not-an-object"),
        pytest.param({"metadata": {}}, "kind", id="no-kind"),
        pytest.param({"kind": "Pod", "metadata": "x"}, "metadata", id="metadata-not-object"),
        pytest.param(
            {"kind": "Pod", "metadata": {"annotations": {"a": 1}}},
            "metadata.annotations.a",
            id="annotation-not-string",
        ),
        pytest.param({"kind": "Job", "spec": {"template": []}}, "spec.template", id="bad-template"),
        pytest.param(
            {"kind": "Job", "spec": {"parallelism": "4", "template": {}}},
            "spec.parallelism",
            id="parallelism-string",
        ),
        pytest.param(
            {"kind": "Pod", "spec": {"activeDeadlineSeconds": -5}},
            "spec.activeDeadlineSeconds",
            id="negative-deadline",
        ),
    ],
)
def test_malformed_objects_name_the_field(obj: Any, field: str) -> None:
    with pytest.raises(InvalidObject) as caught:
        workload_of(obj)
    assert caught.value.field == field


def test_list_yields_each_item_with_its_path() -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": [pod(name="a"), job(name="b")]}
    assert [(path, o["metadata"]["name"]) for path, o in iter_objects(listed)] == [
        ("items[0]", "a"),
        ("items[1]", "b"),
    ]


def test_typed_list_is_a_list_too() -> None:
    listed = {"apiVersion": "v1", "kind": "PodList", "items": [pod()]}
    assert len(list(iter_objects(listed))) == 1


def test_list_item_that_is_not_an_object_is_an_error() -> None:
    with pytest.raises(InvalidObject, match=r"items\[0\]"):
        list(iter_objects({"kind": "List", "items": ["nope"]}))
