"""webhook.core.trainjob: a TrainJob's pods built from the training runtime it names, as
the Kubeflow Trainer's controller builds them; bad input an error naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devtools.examples import example
from webhook.core import trainjob
from webhook.core.fields import InvalidObject
from webhook.core.kinds import PodSets
from webhook.core.workloads import Skipped, Workload, workload_of

FILE = "trainjob.yaml"
GPU = "nvidia.com/gpu"


def runtime() -> dict[str, Any]:
    return example(FILE, 0)


def fits() -> dict[str, Any]:
    return example(FILE, 1)


def found(*runtimes: dict[str, Any]) -> trainjob.Runtimes:
    by_key = {}
    for rt in runtimes:
        namespace = rt["metadata"].get("namespace", "") if rt["kind"] == "TrainingRuntime" else ""
        by_key[(rt["kind"], namespace, rt["metadata"]["name"])] = rt
    return trainjob.Runtimes(found=by_key, complete=True)


def sets(obj: dict[str, Any], *runtimes: dict[str, Any]) -> PodSets:
    w = workload_of(obj, None, found(*(runtimes or (runtime(),))))
    assert isinstance(w, Workload)
    assert w.pod_sets is not None
    return w.pod_sets


def counts(obj: dict[str, Any], *runtimes: dict[str, Any]) -> list[tuple[str, int]]:
    return [(r.label, r.count) for r in sets(obj, *runtimes).roles]


def node(pod_sets: PodSets, role: int = 0) -> dict[str, Any]:
    (container,) = [c for c in pod_sets.roles[role].spec["containers"] if c["name"] == "node"]
    return dict(container)


def trainer_job(rt: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return rt["spec"]["template"]["spec"]["replicatedJobs"][index]  # type: ignore[no-any-return]


def add_job(rt: dict[str, Any], name: str, labels: dict[str, str], **spec: Any) -> None:
    job = copy.deepcopy(trainer_job(rt))
    job["name"] = name
    job["template"]["metadata"] = {"labels": labels}
    job["template"]["spec"].update(spec)
    job["template"]["spec"]["template"]["spec"]["containers"][0]["name"] = name
    rt["spec"]["template"]["spec"]["replicatedJobs"].append(job)


# --- what the pods are ----------------------------------------------------------------------


def test_the_trainer_job_runs_the_trainjobs_num_nodes_pods() -> None:
    assert counts(fits()) == [("replicated job node", 4)]


def test_without_num_nodes_the_runtimes_ml_policy_counts() -> None:
    obj = fits()
    del obj["spec"]["trainer"]["numNodes"]
    rt = runtime()
    rt["spec"]["mlPolicy"]["numNodes"] = 3
    assert counts(obj, rt) == [("replicated job node", 3)]


def test_an_ml_policy_without_num_nodes_runs_one_node() -> None:
    obj = fits()
    del obj["spec"]["trainer"]["numNodes"]
    rt = runtime()
    del rt["spec"]["mlPolicy"]["numNodes"]
    trainer_job(rt)["template"]["spec"]["parallelism"] = 6
    assert counts(obj, rt) == [("replicated job node", 1)]


def test_without_an_ml_policy_the_trainer_job_keeps_its_parallelism() -> None:
    obj = fits()
    del obj["spec"]["trainer"]["numNodes"]
    rt = runtime()
    del rt["spec"]["mlPolicy"]
    trainer_job(rt)["template"]["spec"]["parallelism"] = 2
    assert counts(obj, rt) == [("replicated job node", 2)]


def test_the_trainer_job_runs_one_replica_whatever_the_runtime_says() -> None:
    rt = runtime()
    trainer_job(rt)["replicas"] = 5
    assert counts(fits(), rt) == [("replicated job node", 4)]


def test_resources_per_node_replace_the_node_containers_values_key_by_key() -> None:
    obj = fits()
    obj["spec"]["trainer"]["resourcesPerNode"] = {"limits": {GPU: 2}}
    resources = node(sets(obj))["resources"]
    assert resources["limits"] == {"cpu": "8", "memory": "64Gi", GPU: 2}
    assert resources["requests"] == {"cpu": "8", "memory": "64Gi"}


def test_resources_per_node_leave_the_other_containers_alone() -> None:
    rt = runtime()
    pod_spec = trainer_job(rt)["template"]["spec"]["template"]["spec"]
    sidecar = {"name": "log", "resources": {"limits": {"cpu": "1"}}}
    pod_spec["containers"].insert(0, sidecar)
    assert sets(fits(), rt).roles[0].spec["containers"][0] == sidecar


def test_without_resources_per_node_the_runtimes_resources_stand() -> None:
    obj = fits()
    del obj["spec"]["trainer"]["resourcesPerNode"]
    assert node(sets(obj))["resources"]["limits"][GPU] == 1


def test_an_initializer_job_runs_one_replica_of_its_own_pods() -> None:
    rt = runtime()
    labels = {trainjob.ANCESTOR_LABEL: "dataset-initializer"}
    add_job(rt, "dataset-initializer", labels, parallelism=1)
    rt["spec"]["template"]["spec"]["replicatedJobs"][1]["replicas"] = 3
    pod_sets = sets(fits(), rt)
    assert counts(fits(), rt) == [
        ("replicated job node", 4),
        ("replicated job dataset-initializer", 1),
    ]
    assert node(pod_sets)["resources"]["limits"][GPU] == 4  # only the trainer's node


def test_a_job_without_an_ancestor_label_counts_as_a_jobset_job() -> None:
    rt = runtime()
    add_job(rt, "evaluator", {}, parallelism=3, completions=2)
    rt["spec"]["template"]["spec"]["replicatedJobs"][1]["replicas"] = 2
    assert counts(fits(), rt)[1] == ("replicated job evaluator", 4)


def test_mpi_with_the_launcher_as_a_node_runs_one_node_fewer() -> None:
    rt = runtime()
    rt["spec"]["mlPolicy"] = {"numNodes": 1, "mpi": {"runLauncherAsNode": True}}
    add_job(rt, "launcher", {trainjob.ANCESTOR_LABEL: "launcher"})
    assert counts(fits(), rt) == [("replicated job node", 3), ("replicated job launcher", 1)]


def test_mpi_counts_the_job_named_node() -> None:
    rt = runtime()
    rt["spec"]["mlPolicy"] = {"mpi": {}}
    assert counts(fits(), rt) == [("replicated job node", 4)]


def test_a_training_runtime_is_looked_up_in_the_trainjobs_namespace() -> None:
    obj = fits()
    obj["spec"]["runtimeRef"]["kind"] = "TrainingRuntime"
    assert trainjob.reference(obj) == trainjob.RuntimeRef(
        "TrainingRuntime", "torch-distributed-a800", "team-a"
    )


def test_a_namespaced_runtime_is_read_like_a_cluster_one() -> None:
    obj = fits()
    obj["spec"]["runtimeRef"]["kind"] = "TrainingRuntime"
    rt = runtime()
    rt["kind"] = "TrainingRuntime"
    rt["metadata"]["namespace"] = "team-a"
    assert counts(obj, rt) == [("replicated job node", 4)]


def test_the_trainjobs_deadline_bounds_its_pods() -> None:
    obj = fits()
    obj["spec"]["activeDeadlineSeconds"] = 3600
    assert sets(obj).deadline == 3600


def test_the_trainer_jobs_own_deadline_is_kept() -> None:
    assert sets(fits()).roles[0].deadline == 86400


def test_role_fields_name_the_runtime() -> None:
    assert sets(fits()).roles[0].field == (
        'ClusterTrainingRuntime "torch-distributed-a800": '
        "spec.template.spec.replicatedJobs[0].template.spec.template"
    )


def test_a_runtime_with_a_pod_group_policy_is_an_explicit_gang() -> None:
    rt = runtime()
    assert sets(fits(), rt).gang_policy == "warn"
    rt["spec"]["podGroupPolicy"] = {"coscheduling": {"scheduleTimeoutSeconds": 60}}
    assert sets(fits(), rt).gang_policy == "deny"


# --- warnings ---------------------------------------------------------------------------------


def test_runtime_patches_are_not_applied_and_say_so() -> None:
    obj = fits()
    obj["spec"]["runtimePatches"] = [{"manager": "kueue.x-k8s.io/manager"}]
    (warning,) = sets(obj).warnings
    assert warning.startswith("spec.runtimePatches: not applied")


def test_a_runtime_without_a_trainer_job_warns_that_num_nodes_applies_to_none() -> None:
    rt = runtime()
    trainer_job(rt)["template"]["metadata"] = {}
    pod_sets = sets(fits(), rt)
    assert [(r.label, r.count) for r in pod_sets.roles] == [("replicated job node", 1)]
    assert "has no replicated job labelled" in pod_sets.warnings[0]


def test_a_trainer_job_without_a_node_container_warns_that_resources_are_not_applied() -> None:
    rt = runtime()
    trainer_job(rt)["template"]["spec"]["template"]["spec"]["containers"][0]["name"] = "main"
    (warning,) = sets(fits(), rt).warnings
    assert "no container named node" in warning


# --- the runtime not there, or not read --------------------------------------------------------


def test_a_runtime_absent_from_the_input_files_is_an_error_naming_the_reference() -> None:
    with pytest.raises(trainjob.RuntimeNotFound) as info:
        workload_of(fits(), None, trainjob.Runtimes(complete=True))
    assert str(info.value) == (
        'spec.runtimeRef: ClusterTrainingRuntime "torch-distributed-a800" not found in the '
        "input files"
    )


def test_a_runtime_the_apiserver_does_not_have_is_an_error() -> None:
    key = ("ClusterTrainingRuntime", "", "torch-distributed-a800")
    with pytest.raises(trainjob.RuntimeNotFound, match="not found in the cluster"):
        workload_of(fits(), None, trainjob.Runtimes(missing=frozenset({key})))


def test_a_trainjob_whose_runtime_was_not_read_is_skipped_naming_it() -> None:
    result = workload_of(fits())
    assert isinstance(result, Skipped)
    assert 'ClusterTrainingRuntime "torch-distributed-a800", which was not read' in result.reason


# --- bad input: a clear error naming the field ---------------------------------------------------


def _set(obj: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node_: Any = obj
    for key in parents:
        node_ = node_[int(key)] if isinstance(node_, list) else node_[key]
    if value is _DELETE:
        del node_[last]
    elif isinstance(node_, list):
        node_[int(last)] = value
    else:
        node_[last] = value
    return obj


_DELETE = object()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("spec.runtimeRef", _DELETE, "spec.runtimeRef: required"),
        ("spec.runtimeRef", "torch", "spec.runtimeRef: expected an object, got a string"),
        ("spec.runtimeRef.name", "", "spec.runtimeRef.name: required"),
        ("spec.runtimeRef.kind", "Runtime", "spec.runtimeRef.kind: must be ClusterTrainingRuntime"),
        ("spec.runtimeRef.apiGroup", "example.com", "spec.runtimeRef.apiGroup: must be trainer"),
        ("spec.trainer", [1], "spec.trainer: expected an object, got a list"),
        ("spec.trainer.numNodes", "4", "spec.trainer.numNodes: expected an integer, got '4'"),
        ("spec.trainer.numNodes", -1, "spec.trainer.numNodes: must not be negative"),
        ("spec.trainer.resourcesPerNode", "big", "spec.trainer.resourcesPerNode: expected an"),
        ("spec.trainer.resourcesPerNode.limits", [8], "spec.trainer.resourcesPerNode.limits: exp"),
        ("spec.activeDeadlineSeconds", "1h", "spec.activeDeadlineSeconds: expected an integer"),
    ],
)
def test_a_hostile_trainjob_is_an_error_naming_its_field(
    field: str, value: Any, message: str
) -> None:
    obj = _set(fits(), field, value)
    with pytest.raises(InvalidObject) as info:
        workload_of(obj, None, found(runtime()))
    assert str(info.value).startswith(message)


RT = 'ClusterTrainingRuntime "torch-distributed-a800": '


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("spec", [], RT + "spec: expected an object, got a list"),
        ("spec.mlPolicy", "torch", RT + "spec.mlPolicy: expected an object"),
        ("spec.mlPolicy.numNodes", "2", RT + "spec.mlPolicy.numNodes: expected an integer"),
        ("spec.mlPolicy.mpi", 1, RT + "spec.mlPolicy.mpi: expected an object"),
        ("spec.template.spec.replicatedJobs", {}, RT + "spec.template.spec.replicatedJobs: exp"),
        (
            "spec.template.spec.replicatedJobs.0",
            "node",
            RT + "spec.template.spec.replicatedJobs[0]: expected an object, got a string",
        ),
        (
            "spec.template.spec.replicatedJobs.0.template.metadata.labels",
            ["trainer"],
            RT + "spec.template.spec.replicatedJobs[0].template.metadata.labels: expected",
        ),
        (
            "spec.template.spec.replicatedJobs.0.template.spec.template.spec.containers",
            "node",
            RT + "spec.template.spec.replicatedJobs[0].template.spec.template.spec.containers:",
        ),
        (
            "spec.template.spec.replicatedJobs.0.template.spec.template.spec.containers.0.resources",
            7,
            RT + "spec.template.spec.replicatedJobs[0].template.spec.template.spec.containers[0]",
        ),
        (
            "spec.template.spec.replicatedJobs.0.template.spec.activeDeadlineSeconds",
            -5,
            RT + "spec.template.spec.replicatedJobs[0].template.spec.activeDeadlineSeconds: must",
        ),
    ],
)
def test_a_hostile_runtime_is_an_error_naming_the_runtime_and_its_field(
    field: str, value: Any, message: str
) -> None:
    rt = _set(runtime(), field, value)
    with pytest.raises(InvalidObject) as info:
        workload_of(fits(), None, found(rt))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("api_version", "kind", "got"),
    [
        (
            "trainer.kubeflow.org/v1alpha1",
            "TrainingRuntime",
            "TrainingRuntime.trainer.kubeflow.org",
        ),
        ("example.com/v1", "ClusterTrainingRuntime", "ClusterTrainingRuntime.example.com"),
    ],
)
def test_a_runtime_of_another_kind_is_an_error_naming_what_it_is(
    api_version: str, kind: str, got: str
) -> None:
    rt = runtime()
    rt.update(apiVersion=api_version, kind=kind)
    runtimes = trainjob.Runtimes(
        found={("ClusterTrainingRuntime", "", "torch-distributed-a800"): rt}
    )
    with pytest.raises(InvalidObject) as info:
        workload_of(fits(), None, runtimes)
    assert str(info.value) == (
        f'spec.runtimeRef: ClusterTrainingRuntime "torch-distributed-a800" is a {got}, '
        "not a ClusterTrainingRuntime.trainer.kubeflow.org"
    )
