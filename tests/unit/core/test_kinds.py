"""webhook.core.kinds / paths / synthesized: the kind table read over every built-in kind,
hostile objects named by field, operator rows validated at start."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from devtools.examples import example
from webhook.core import kinds, paths
from webhook.core.fields import InvalidObject
from webhook.core.policy import PolicySettings
from webhook.core.workloads import Skipped, Workload, workload_of


def roles(obj: dict[str, Any]) -> list[tuple[str, int]]:
    w = workload_of(obj)
    assert isinstance(w, Workload)
    assert w.pod_sets is not None
    return [(r.label, r.count) for r in w.pod_sets.roles]


# --- paths --------------------------------------------------------------------------------


def test_path_wildcards_bind_keys_and_indexes() -> None:
    obj = {"spec": {"m": {"A": {"x": 1}, "B": {"x": 2}}, "l": [{"x": 3}, {"y": 4}]}}
    found = list(paths.walk(obj, paths.parse("spec.m.*.x")))
    assert [(m.value, m.field, m.bindings) for m in found] == [
        (1, "spec.m.A.x", ("A",)),
        (2, "spec.m.B.x", ("B",)),
    ]
    assert [m.field for m in paths.walk(obj, paths.parse("spec.l[*].x"))] == ["spec.l[0].x"]
    assert [m.value for m in paths.walk({"a.b": {"c": 5}}, paths.parse('"a.b".c'))] == [5]


@pytest.mark.parametrize(
    ("text", "where"),
    [("", 1), ("a..b", 3), ("a[x]", 3), ("a[*", 2), ('a."b', 3), ("a.", 2), ("a b", 2)],
)
def test_bad_paths_name_the_position(text: str, where: int) -> None:
    with pytest.raises(paths.InvalidPath) as info:
        paths.parse(text)
    assert info.value.position + 1 == where


def test_walk_through_the_wrong_type_names_the_field() -> None:
    with pytest.raises(InvalidObject, match=r"spec\.m: expected a map of names to objects"):
        list(paths.walk({"spec": {"m": ["x"]}}, paths.parse("spec.m.*.x")))


def test_walk_refuses_too_many_matches() -> None:
    obj = {"l": [{"t": i} for i in range(600)]}
    with pytest.raises(InvalidObject, match="more than 512"):
        list(paths.walk(obj, paths.parse("l[*].t")))


# --- every built-in kind, from the examples ---------------------------------------------------


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("pytorchjob.yaml", [("replica Master", 1), ("replica Worker", 3)]),
        ("tfjob.yaml", [("replica PS", 2), ("replica Worker", 4)]),
        ("xgboostjob.yaml", [("replica Master", 1), ("replica Worker", 2)]),
        ("paddlejob.yaml", [("replica Worker", 2)]),
        ("jaxjob.yaml", [("replica Worker", 2)]),
        ("mpijob.yaml", [("replica Launcher", 1), ("replica Worker", 8)]),
        (
            "volcano-job.yaml",
            [("task ps", 1), ("task worker", 4), ("task eval", 1), ("task chief", 1)],
        ),
        ("volcano-cronjob.yaml", [("task worker", 2)]),
        ("jobset.yaml", [("replicated job driver", 1), ("replicated job workers", 8)]),
        ("leaderworkerset.yaml", [("leader", 1), ("worker", 3)]),
        ("raycluster.yaml", [("head group", 1), ("worker group gpu", 2)]),
        ("rayjob.yaml", [("head group", 1), ("worker group gpu", 2)]),
        ("rayservice.yaml", [("head group", 1), ("worker group gpu", 1)]),
        ("argo-workflow.yaml", [("template prep", 1), ("template train", 1)]),
        ("argo-cronworkflow.yaml", [("template prep", 1), ("template train", 1)]),
        ("sparkapplication.yaml", [("driver", 1), ("executor", 4)]),
        ("scheduledsparkapplication.yaml", [("driver", 1), ("executor", 4)]),
    ],
)
def test_every_builtin_kind_names_its_roles_and_counts(
    file: str, expected: list[tuple[str, int]]
) -> None:
    assert roles(example(file)) == expected


def test_lws_leader_defaults_to_the_worker_template() -> None:
    obj = example("leaderworkerset.yaml", 1)
    w = workload_of(obj)
    assert isinstance(w, Workload)
    assert w.pod_sets is not None
    leader, worker = w.pod_sets.roles
    assert leader.field == "spec.leaderWorkerTemplate.workerTemplate"
    assert (leader.count, worker.count) == (1, 19)


def test_mpijob_is_keyed_on_group_and_version() -> None:
    assert kinds.builtin_table().get("kubeflow.org/v2beta1", "MPIJob") is not None
    assert kinds.builtin_table().get("kubeflow.org/v1", "MPIJob") is not None
    assert kinds.builtin_table().get("kubeflow.org/v3", "MPIJob") is None


def test_a_volcano_job_is_not_a_batch_job() -> None:
    w = workload_of(example("volcano-job.yaml"))
    assert isinstance(w, Workload)
    assert w.pod_sets is not None


def test_jobset_count_is_replicas_times_parallelism_capped_by_completions() -> None:
    obj = example("jobset.yaml")
    job = obj["spec"]["replicatedJobs"][1]
    job["template"]["spec"].update(parallelism=8, completions=3)
    assert roles(obj)[1] == ("replicated job workers", 6)


def test_ray_workers_count_hosts() -> None:
    obj = example("raycluster.yaml")
    obj["spec"]["workerGroupSpecs"][0]["numOfHosts"] = 4
    assert roles(obj)[1] == ("worker group gpu", 8)


def test_cronjob_group_on_job_template_metadata_is_read() -> None:
    w = workload_of(example("cronjob-jobtemplate-annotation.yaml"))
    assert isinstance(w, Workload)
    assert w.fallback_annotations["nodelimits.io/resource-group"] == "a800x8"


def test_trainjob_without_its_runtime_read_is_skipped_with_the_reason() -> None:
    """Its pods are the runtime's (tests/unit/core/test_trainjob.py reads them)."""
    result = workload_of(example("trainjob.yaml", 1))
    assert isinstance(result, Skipped)
    assert "TrainingRuntime" in result.reason


def test_spark_memory_adds_the_operator_overhead() -> None:
    obj = example("sparkapplication.yaml")  # Python: factor 0.4; 64g executor
    w = workload_of(obj)
    assert isinstance(w, Workload)
    assert w.pod_sets is not None
    driver, executor = w.pod_sets.roles
    assert driver.spec["containers"][0]["resources"]["requests"]["memory"] == str(
        (4 << 30) + (int((4 << 30) * 0.4))
    )
    mem = executor.spec["containers"][0]["resources"]["requests"]["memory"]
    assert int(mem) == (64 << 30) + int((64 << 30) * 0.4)
    obj["spec"]["executor"]["memoryOverhead"] = "1g"
    w = workload_of(obj)
    assert isinstance(w, Workload)
    assert w.pod_sets is not None
    assert w.pod_sets.roles[1].spec["containers"][0]["resources"]["limits"]["memory"] == str(
        65 << 30
    )


def test_argo_pod_spec_patch_merges_by_container_name() -> None:
    obj = example("argo-workflow.yaml", 1)
    w = workload_of(obj)
    assert isinstance(w, Workload)
    assert w.pod_sets is not None
    train = w.pod_sets.roles[1]
    (main,) = train.spec["containers"]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert main["resources"]["requests"]["cpu"] == "16"


def test_argo_parameterised_patch_is_a_warning() -> None:
    obj = example("argo-workflow.yaml", 0)
    obj["spec"]["templates"][2]["podSpecPatch"] = "{{inputs.parameters.patch}}"
    w = workload_of(obj)
    assert isinstance(w, Workload)
    assert w.pod_sets is not None
    assert "parameter" in w.pod_sets.warnings[0]


# --- bad input: a clear error naming the field -------------------------------------------------


def _set(obj: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node: Any = obj
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return obj


@pytest.mark.parametrize(
    ("file", "field", "value", "named"),
    [
        ("pytorchjob.yaml", "spec.pytorchReplicaSpecs", ["x"], "spec.pytorchReplicaSpecs"),
        (
            "pytorchjob.yaml",
            "spec.pytorchReplicaSpecs.Worker.template",
            "garbage",
            "Worker.template",
        ),
        ("pytorchjob.yaml", "spec.pytorchReplicaSpecs.Worker.replicas", -1, "Worker.replicas"),
        ("pytorchjob.yaml", "spec.pytorchReplicaSpecs.Worker.replicas", "3", "Worker.replicas"),
        ("pytorchjob.yaml", "spec.runPolicy.activeDeadlineSeconds", True, "activeDeadline"),
        ("volcano-job.yaml", "spec.tasks", {"a": 1}, "spec.tasks"),
        ("volcano-job.yaml", "spec.tasks.1.name", 7, "spec.tasks[1].name"),
        ("jobset.yaml", "spec.replicatedJobs.1.template.spec.parallelism", 2.5, "parallelism"),
        ("raycluster.yaml", "spec.workerGroupSpecs.0.numOfHosts", "4", "numOfHosts"),
        ("argo-workflow.yaml", "spec.templates.2.podSpecPatch", "{not json", "podSpecPatch"),
        ("argo-workflow.yaml", "spec.templates.2.podSpecPatch", "[1, 2]", "podSpecPatch"),
        ("argo-workflow.yaml", "spec.templates.2.podSpecPatch", "a: [b", "podSpecPatch"),
        ("sparkapplication.yaml", "spec.executor.memory", "lots", "spec.executor.memory"),
        ("sparkapplication.yaml", "spec.executor.instances", -2, "spec.executor.instances"),
        ("leaderworkerset.yaml", "spec.leaderWorkerTemplate.size", "4", "size"),
    ],
)
def test_hostile_objects_are_errors_naming_the_field(
    file: str, field: str, value: Any, named: str
) -> None:
    obj = _set(example(file), field, value)
    with pytest.raises(InvalidObject) as info:
        workload_of(obj)
    assert named in info.value.field


# --- operator rows ----------------------------------------------------------------------------

ROW = {
    "group": "example.com",
    "version": "v1",
    "kind": "Trainer",
    "plural": "trainers",
    "pod_sets": [{"each": "spec.roles[*]", "role": "role", "name": "$.name", "count": []}],
}


def test_an_operator_row_adds_a_kind() -> None:
    settings = PolicySettings.model_validate({"workload_kinds": [ROW]})
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Trainer",
        "metadata": {"name": "t"},
        "spec": {"roles": [{"name": "a", "template": {"spec": {"containers": []}}}]},
    }
    w = workload_of(obj, settings.kind_table)
    assert isinstance(w, Workload)
    assert w.pod_sets is not None
    assert w.pod_sets.roles[0].label == "role a"
    assert isinstance(workload_of(obj), Skipped)  # not in the built-in table


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pod_sets": [{"each": "spec.roles[*", "name": "$index"}]}, "spec.roles[*"),
        ({"pod_sets": [{"each": "spec.roles[*]", "name": "$key"}]}, "needs a map wildcard"),
        ({"pod_sets": [{"each": "spec.x.*", "template": ["a[*]"]}]}, "cannot hold wildcards"),
        ({"pod_sets": [{"each": "spec.x.*", "count": [{"path": "a", "const": 1}]}]}, "exactly one"),
        ({"pod_sets": []}, "give pod_sets or a synthesizer"),
        ({"deadline": ["spec..x"]}, "spec..x"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_operator_rows_are_validated_at_start(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("*", r"\*")):
        PolicySettings.model_validate({"workload_kinds": [{**ROW, **change}]})
