"""``nodelimits audit`` against the real control plane and the simulator (issue 16).

Fitting workloads of several kinds are created; the simulator then shrinks the group's
per-node cards and the audit must name exactly the objects that no longer fit, in every
output; restoring the limits clears them. An object the policy cannot read is an error
result, never a pass. TrainJobs (the trainer's upstream CRDs) are judged by the training
runtime they name, read from the cluster; a runtime that does not exist is an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import builders, examples
from devtools import crds as upstream_crds
from devtools.controlplane import ControlPlane
from devtools.stack import ROOT, SimulatorProcess

GROUP = "a800x8"
A800 = {
    "resourceGroup": GROUP, "acceleratorType": "gpu", "cpuNumber": 128, "memorySize": 1031168,
    "gpuNumber": 8, "nvLimits": 4, "dcuLimits": 0, "mluLimits": 0, "nodeNumber": 16,
    "maxTime": "unlimited",
}  # fmt: skip
CUSTOM_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: trainers.audit.example.com}
spec:
  group: audit.example.com
  scope: Namespaced
  names: {plural: trainers, singular: trainer, kind: Trainer}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""
CUSTOM_ROW = {
    "group": "audit.example.com",
    "version": "v1",
    "kind": "Trainer",
    "plural": "trainers",
    "pod_sets": [{"each": "spec", "name": "main", "template": ["template"]}],
}


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    workdir = tmp_path_factory.mktemp("audit-sim")
    sim = SimulatorProcess(workdir, {"resourceGroups": [A800]}).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory, simulator: SimulatorProcess) -> Path:
    workdir = tmp_path_factory.mktemp("audit-config")
    config = {
        "platform": simulator.platform_config(workdir),
        "policy": {"workload_kinds": [CUSTOM_ROW]},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def custom_crd(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "-f", "-", input=CUSTOM_CRD)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/trainers.audit.example.com", "--timeout=30s"
    )


def gpu_template(gpus: int) -> dict[str, Any]:
    return builders.template(
        builders.pod_spec(builders.container(cpu="4", gpu=gpus)),
        builders.group_annotations(GROUP),
    )


def workloads(namespace: str) -> list[dict[str, Any]]:
    """Two of each: one asking 4 cards per pod (fits nvLimits 4, not 2), one asking 1 or 2."""
    meta = {"namespace": namespace}
    pod4 = builders.pod(builders.container(cpu="4", gpu=4), name="pod-4", group=GROUP)
    pod1 = builders.pod(builders.container(cpu="4", gpu=1), name="pod-1", group=GROUP)
    for p in (pod4, pod1):
        p["metadata"]["namespace"] = namespace
    job4 = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "job-4", **meta},
        "spec": {
            "template": {**gpu_template(4), "spec": {**gpu_template(4)["spec"],
                                                     "restartPolicy": "Never"}},
        },
    }  # fmt: skip
    deploy2 = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "serve-2", **meta},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "serve-2"}},
            "template": {
                **gpu_template(2),
                "metadata": {**gpu_template(2)["metadata"], "labels": {"app": "serve-2"}},
            },
        },
    }
    deploy4 = json.loads(json.dumps(deploy2).replace("serve-2", "serve-4"))
    deploy4["spec"]["template"] = {
        **gpu_template(4),
        "metadata": {**gpu_template(4)["metadata"], "labels": {"app": "serve-4"}},
    }
    trainer4 = {
        "apiVersion": "audit.example.com/v1",
        "kind": "Trainer",
        "metadata": {"name": "trainer-4", **meta},
        "spec": {"template": gpu_template(4)},
    }
    return [pod4, pod1, job4, deploy2, deploy4, trainer4]


def create(plane: ControlPlane, objects: list[dict[str, Any]]) -> None:
    plane.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                        "items": objects}))  # fmt: skip


def audit(
    plane: ControlPlane, config: Path, namespace: str, *args: str, verbose: bool = False
) -> subprocess.CompletedProcess[str]:
    env = plane.env()
    env["NODELIMITS_CONFIG_FILE"] = str(config)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            *(["-v"] if verbose else []),
            "audit",
            "--live",
            "-n",
            namespace,
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def verdicts(result: subprocess.CompletedProcess[str]) -> dict[str, bool]:
    payload = json.loads(result.stdout)
    return {f"{r['kind']}/{r['name']}": r["allowed"] for r in payload["results"]}


def set_cards(sim: SimulatorProcess, nv_limits: int) -> None:
    sim.admin("PUT", "groups", {**A800, "nvLimits": nv_limits})


@pytest.mark.usefixtures("custom_crd")
def test_shrunk_limits_name_exactly_the_objects_that_no_longer_fit(
    control_plane: ControlPlane, simulator: SimulatorProcess, config_file: Path, namespace: str
) -> None:
    create(control_plane, workloads(namespace))
    everything = {
        "Pod/pod-4": True, "Pod/pod-1": True, "Job/job-4": True, "Deployment/serve-2": True,
        "Deployment/serve-4": True, "Trainer/trainer-4": True,
    }  # fmt: skip

    before = audit(control_plane, config_file, namespace, "-o", "json")
    assert before.returncode == 0, before.stderr
    assert verdicts(before) == everything

    set_cards(simulator, 2)  # the platform lowered nvLimits on a800x8 last night
    try:
        after = audit(control_plane, config_file, namespace, "-o", "json")
        assert after.returncode == 1, after.stderr
        now_over = {"Pod/pod-4", "Job/job-4", "Deployment/serve-4", "Trainer/trainer-4"}
        assert verdicts(after) == {k: k not in now_over for k in everything}
        payload = json.loads(after.stdout)
        gpu = [v for r in payload["results"] for v in r["violations"]]
        assert {(v["resource"], v["requested"], v["allowed"]) for v in gpu} == {
            ("nvidia.com/gpu", "4", "2")
        }

        reports = audit(control_plane, config_file, namespace, "-o", "policyreport")
        assert reports.returncode == 1
        [report] = yaml.safe_load(reports.stdout)["items"]
        assert report["kind"] == "PolicyReport"
        assert report["metadata"] == {
            "name": "nodelimits",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "nodelimits"},
        }
        failed = [r for r in report["results"] if r["result"] == "fail"]
        assert sorted(r["resources"][0]["name"] for r in failed) == [
            "job-4", "pod-4", "serve-4", "trainer-4",
        ]  # fmt: skip
        assert {r["rule"] for r in failed} == {"nvidia.com/gpu"}
        assert all(r["policy"] == "nodelimits" for r in report["results"])
        assert all(r["resources"][0]["uid"] for r in report["results"])
        assert all(r["properties"]["allowed"] == "2" for r in failed)
        passed = sorted(r["resources"][0]["name"] for r in report["results"]
                        if r["result"] == "pass")  # fmt: skip
        assert passed == ["pod-1", "serve-2"]
        assert report["summary"]["fail"] == 4
        assert report["summary"]["pass"] == 2

        table = audit(control_plane, config_file, namespace)
        assert table.returncode == 1
        assert "nvidia.com/gpu 4 > 2 cards per node" in table.stdout

        narrowed = audit(control_plane, config_file, namespace, "-o", "json", "--kinds", "Job")
        assert verdicts(narrowed) == {"Job/job-4": False}
    finally:
        set_cards(simulator, 4)

    restored = audit(control_plane, config_file, namespace, "-o", "json")
    assert restored.returncode == 0, restored.stderr
    assert verdicts(restored) == everything


@pytest.mark.usefixtures("custom_crd")
def test_an_object_the_policy_cannot_read_is_an_error_result(
    control_plane: ControlPlane, config_file: Path, namespace: str
) -> None:
    broken = {
        "apiVersion": "audit.example.com/v1",
        "kind": "Trainer",
        "metadata": {"name": "broken", "namespace": namespace},
        "spec": {"template": "not a pod template"},
    }
    fine = builders.pod(builders.container(cpu="1"), name="fine", group=GROUP)
    fine["metadata"]["namespace"] = namespace
    create(control_plane, [broken, fine])
    result = audit(control_plane, config_file, namespace, "-o", "policyreport")
    assert result.returncode == 2
    assert f"error: Trainer {namespace}/broken:" in result.stderr
    [report] = yaml.safe_load(result.stdout)["items"]
    errors = [r for r in report["results"] if r["result"] == "error"]
    assert [r["resources"][0]["name"] for r in errors] == ["broken"]
    assert report["summary"]["error"] == 1


def test_a_missing_crd_is_skipped_and_an_unreachable_cluster_is_an_error(
    control_plane: ControlPlane, config_file: Path, namespace: str, tmp_path: Path
) -> None:
    result = audit(control_plane, config_file, namespace, "-o", "json", verbose=True)
    assert result.returncode == 0, result.stderr
    assert "PyTorchJob.kubeflow.org" not in json.loads(result.stdout)["audit"]["kinds"]
    assert result.stderr.count("PyTorchJob.kubeflow.org is not served") == 1

    dead = tmp_path / "kubeconfig"
    config = yaml.safe_load(Path(control_plane.env()["KUBECONFIG"]).read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    dead.write_text(yaml.safe_dump(config))
    down = audit(control_plane, config_file, namespace, "--kubeconfig", str(dead))
    assert down.returncode == 2
    assert "discovery failed" in down.stderr
    assert os.environ.get("KUBECONFIG") != str(dead)


TRAINER = "trainer.kubeflow.org"


@pytest.fixture(scope="module")
def trainer_crds(control_plane: ControlPlane, crds: upstream_crds.CrdCache) -> None:
    """The trainer's TrainJob and (Cluster)TrainingRuntime CRDs, as the kinds' e2e tests
    install them (the upstream CRDs, devtools/crds.py)."""
    kinds = ("TrainJob", "TrainingRuntime", "ClusterTrainingRuntime")
    found = [crds.find(TRAINER, kind, "v1alpha1") for kind in kinds]
    assert all(found), f"no trainer CRDs in {crds.directory}"
    upstream_crds.install(control_plane, [c for c in found if c is not None])


@pytest.mark.usefixtures("trainer_crds")
def test_trainjobs_are_judged_by_their_runtime_and_a_missing_one_is_an_error(
    control_plane: ControlPlane, config_file: Path, namespace: str
) -> None:
    runtime, fit, big = examples.documents(examples.MANIFESTS / "trainjob.yaml")
    runtime["metadata"]["name"] += f"-{namespace[-6:]}"  # cluster-scoped: one per test run
    orphan = json.loads(json.dumps(fit).replace("llm-finetune-fits", "orphan"))
    orphan["spec"]["runtimeRef"]["name"] = "no-such-runtime"
    for doc in (fit, big, orphan):
        doc["metadata"]["namespace"] = namespace
    for doc in (fit, big):
        doc["spec"]["runtimeRef"]["name"] = runtime["metadata"]["name"]
    create(control_plane, [runtime, fit, big, orphan])

    result = audit(
        control_plane, config_file, namespace, "-o", "json", "--kinds", f"TrainJob.{TRAINER}"
    )
    assert result.returncode == 2, result.stderr  # the orphan could not be judged
    assert verdicts(result) == {"TrainJob/llm-finetune-fits": True,
                                "TrainJob/llm-finetune-too-big": False}  # fmt: skip
    payload = json.loads(result.stdout)
    [rejected] = [r for r in payload["results"] if not r["allowed"]]
    assert "replicated job node: nvidia.com/gpu 8 > 4 cards per node" in rejected["message"]
    assert payload["errors"] == [
        f"TrainJob {namespace}/orphan: cannot be read: spec.runtimeRef: "
        'ClusterTrainingRuntime "no-such-runtime" not found in the cluster'
    ]
    assert payload["audit"]["scanned"] == {f"TrainJob.{TRAINER}": 3}

    reports = audit(control_plane, config_file, namespace, "-o", "policyreport",
                    "--report-api", "openreports.io", "--kinds", f"TrainJob.{TRAINER}")  # fmt: skip
    [report] = yaml.safe_load(reports.stdout)["items"]
    assert report["kind"] == "Report"
    assert {r["resources"][0]["name"]: r["result"] for r in report["results"]} == {
        "llm-finetune-fits": "pass", "llm-finetune-too-big": "fail", "orphan": "error",
    }  # fmt: skip
