"""The kind table's workload kinds (issue 15) on a real kube-apiserver with their real CRDs.

The upstream CRDs come from tools/crds/fetch.sh (devtools/crds.py; the `crds` fixture
fetches them once after collection). For every example in examples/manifests of a kind in
the kind table, `kubectl apply` (server dry-run, then for real) of its fitting object is
accepted and of its oversized one denied with the message `nodelimits check` gives offline,
naming the role. Objects an example's objects name (a TrainJob's ClusterTrainingRuntime,
devtools.examples.REFERENCED_KINDS) are created first, and the webhook reads them from the
apiserver as it would in a cluster. Kinds whose CRDs the module proxy does not serve
(devtools.crds.NOT_FETCHED) are judged offline, and the cache must really lack them; any
other missing CRD fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import builders, examples
from devtools import crds as upstream_crds
from devtools.builders import container, pod
from devtools.controlplane import ControlPlane
from devtools.stack import SimulatorProcess, Webhook, running_stack
from webhook.core.kinds import BUILTIN_KINDS
from webhook.serve.handlers import KIND_HANDLERS

ROOT = Path(__file__).resolve().parents[2]
TABLE_KINDS = {(row.group, row.kind) for row in BUILTIN_KINDS}

ROLE_NAMED = {
    "Job.batch.volcano.sh": "task worker:",
    "CronJob.batch.volcano.sh": "task worker:",
    "PyTorchJob": "replica Worker:",
    "TFJob": "replica PS 2, replica Worker 40",
    "XGBoostJob": "replica Worker:",
    "PaddleJob": "replica Worker:",
    "JAXJob": "replica Worker:",
    "MPIJob": "replica Launcher 1, replica Worker 20",
    "JobSet": "replicated job workers:",
    "LeaderWorkerSet": "leader 1, worker 19",
    "RayCluster": "worker group gpu:",
    "RayJob": "submitter:",
    "RayService": "head group:",
    "Workflow": "template train:",
    "WorkflowTemplate": "template train:",
    "ClusterWorkflowTemplate": "template train:",
    "CronWorkflow": "template train:",
    "SparkApplication": "executor:",
    "ScheduledSparkApplication": "executor:",
    "TrainJob": "replicated job node:",
}
"""How each oversized example's denial names the role (beyond matching the offline check)."""


TRAINER_ROW = builders.trainer_kind()
TRAINER_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "trainers.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Trainer", "plural": "trainers", "singular": "trainer"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


KIND_FILES = {k: p for k, p in examples.files_by_kind().items() if k in TABLE_KINDS}
EXAMPLE_FILES = sorted(KIND_FILES.values())
WITH_CRD = [p for k, p in sorted(KIND_FILES.items()) if k not in upstream_crds.NOT_FETCHED]
"""Examples whose CRD the cache holds: applied through the apiserver."""
WITHOUT_CRD = [p for k, p in sorted(KIND_FILES.items()) if k in upstream_crds.NOT_FETCHED]
"""Examples of kinds documented in devtools.crds.NOT_FETCHED: the cache must really lack
their CRDs (else the list is stale), and they are judged offline instead of skipped."""


def _role_key(doc: dict[str, Any]) -> str:
    group = _group_version(doc["apiVersion"])[0]
    return f"{doc['kind']}.{group}" if doc["kind"] in ("Job", "CronJob") else doc["kind"]


def apply(plane: ControlPlane, obj: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return plane.kubectl("apply", *args, "-f", "-", input=json.dumps(obj), check=False)


def offline_message(obj: dict[str, Any], named: list[dict[str, Any]] | None = None) -> str:
    """What `nodelimits check` says about the object, offline, with the same limits (and the
    objects it names, such as a TrainJob's runtime, in the same input)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "check",
            "--limits-file",
            str(examples.LIMITS_FILE),
            "-f",
            "-",
            "-o",
            "json",
        ],
        input="\n---\n".join(json.dumps(d) for d in [*(named or []), obj]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    (row,) = [
        r
        for r in json.loads(result.stdout)["results"]
        if (r["kind"], r["name"]) == (obj["kind"], obj["metadata"]["name"])
    ]
    message = str(row["message"])
    assert message.startswith("nodelimits: "), row
    return message


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane, crds: upstream_crds.CrdCache) -> upstream_crds.CrdCache:
    """Every fetched CRD, installed before nodelimits starts."""
    upstream_crds.install(control_plane, crds.crds)
    return crds


@pytest.fixture(scope="module")
def stack(
    control_plane: ControlPlane,
    installed: upstream_crds.CrdCache,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SimulatorProcess, Webhook]]:
    """nodelimits serving the built-in kinds and an operator's row (policy.workload_kinds),
    its chart configuration rendered with the same row."""
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(TRAINER_CRD))
    work = tmp_path_factory.mktemp("kinds")
    simulator = SimulatorProcess(work).start()
    settings = {
        "policy": {"workload_kinds": [TRAINER_ROW]},
        **control_plane.kubernetes_settings(),  # a TrainJob's runtime is read from it
    }
    webhook = Webhook(work, control_plane, simulator, settings).start()
    try:
        webhook.register({"config.policy.workload_kinds": [TRAINER_ROW]})
        yield simulator, webhook
    finally:
        webhook.unregister()
        webhook.stop()
        simulator.stop()


def test_every_kind_of_the_table_has_an_example() -> None:
    assert set(KIND_FILES) == TABLE_KINDS


@pytest.mark.parametrize("example", WITHOUT_CRD, ids=lambda p: p.stem)
def test_a_kind_without_a_crd_is_documented_absent_and_judged_offline(
    example: Path, installed: upstream_crds.CrdCache
) -> None:
    fits, too_big = examples.judged(example)
    group, version = _group_version(fits["apiVersion"])
    assert installed.find(group, fits["kind"], version) is None, (
        f"{fits['kind']}.{group} is in the cache now: drop it from devtools.crds.NOT_FETCHED"
    )
    assert installed.why_absent(group, fits["kind"]) is not None
    assert ROLE_NAMED[_role_key(too_big)] in offline_message(too_big, examples.referenced(example))


@pytest.mark.parametrize("example", WITH_CRD, ids=lambda p: p.stem)
def test_fitting_is_accepted_and_oversized_denied_naming_the_role(
    example: Path,
    control_plane: ControlPlane,
    installed: upstream_crds.CrdCache,
    stack: tuple[SimulatorProcess, Webhook],
    namespace: str,
) -> None:
    fits, too_big = examples.judged(example)
    named = examples.referenced(example)
    group, version = _group_version(fits["apiVersion"])
    crd = installed.find(group, fits["kind"], version)
    if crd is None:
        pytest.fail(
            f"no CRD for {fits['kind']}.{group}/{version} in {installed.directory} and "
            "none documented in devtools.crds.NOT_FETCHED",
            pytrace=False,
        )
    for doc in (fits, too_big):
        if crd.namespaced:
            doc["metadata"]["namespace"] = namespace
        else:  # cluster-scoped: unique per run of the session's control plane
            doc["metadata"].pop("namespace", None)
            doc["metadata"]["name"] += f"-{namespace[-6:]}"
    expected = offline_message(too_big, named)
    assert ROLE_NAMED[_role_key(too_big)] in expected
    for doc in named:
        if doc["kind"] == "TrainingRuntime":  # namespaced: the TrainJob's own namespace
            doc["metadata"]["namespace"] = namespace
        created = apply(control_plane, doc)
        assert created.returncode == 0, created.stderr

    for args in (("--dry-run=server",), ()):
        accepted = apply(control_plane, fits, *args)
        assert accepted.returncode == 0, accepted.stderr
        denied = apply(control_plane, too_big, *args)
        assert denied.returncode != 0
        assert "denied the request" in denied.stderr, denied.stderr
        assert expected in denied.stderr

    where = ["-n", namespace] if crd.namespaced else []
    kind = f"{crd.plural}.{group}"
    got = control_plane.kubectl("get", kind, fits["metadata"]["name"], *where, "-o", "json")
    assert json.loads(got.stdout)["kind"] == fits["kind"]
    gone = control_plane.kubectl("get", kind, too_big["metadata"]["name"], *where, check=False)
    assert "NotFound" in gone.stderr


def _served(plane: ControlPlane, group: str, version: str) -> bool:
    result = plane.kubectl("get", "--raw", f"/apis/{group}/{version}", check=False)
    return result.returncode == 0


def test_a_rule_for_a_crd_that_is_not_installed_is_harmless(
    control_plane: ControlPlane,
    stack: tuple[SimulatorProcess, Webhook],
    namespace: str,
) -> None:
    _, webhook = stack
    absent = [h for h in KIND_HANDLERS if not _served(control_plane, h.group, h.version)]
    assert absent, "every kind-table API is served: nothing to test this with"
    config = json.loads(
        control_plane.kubectl(
            "get",
            "validatingwebhookconfiguration",
            "-l",
            "app.kubernetes.io/instance=nodelimits",
            "-o",
            "json",
        ).stdout
    )
    (configuration,) = config["items"]
    paths = {w["clientConfig"]["url"].removeprefix(webhook.url) for w in configuration["webhooks"]}
    # The apiserver took the configuration with rules for APIs it does not serve ...
    assert {h.path for h in absent} <= paths
    # ... and everything else is judged as before.
    fits = pod(container(cpu="8", memory="16Gi", gpu=2))
    fits["metadata"]["namespace"] = namespace
    created = apply(control_plane, fits)
    assert created.returncode == 0, created.stderr
    too_big = pod(container(cpu="999"), name="big")
    too_big["metadata"]["namespace"] = namespace
    denied = apply(control_plane, too_big)
    assert "nodelimits: Pod" in denied.stderr, denied.stderr
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "plain", "namespace": namespace},
        "data": {"a": "b"},
    }
    assert apply(control_plane, configmap).returncode == 0
    # An object of the absent kind is refused by the apiserver itself, not by a webhook.
    h = absent[0]
    obj = {
        "apiVersion": f"{h.group}/{h.version}",
        "kind": h.kind.split(".", 1)[0],
        "metadata": {"name": "x", "namespace": namespace},
        "spec": {},
    }
    refused = apply(control_plane, obj)
    assert refused.returncode != 0
    assert "webhook" not in refused.stderr, refused.stderr


def test_a_crd_installed_after_nodelimits_started_is_served(
    testbin: Path, crds: upstream_crds.CrdCache, tmp_path: Path
) -> None:
    """kopf discovers resources once, at start: a CRD installed later must still be judged
    (not answered with a 404, which failurePolicy Fail turns into a denial of everything)."""
    fits, too_big = examples.documents(examples.MANIFESTS / "pytorchjob.yaml")
    crd = crds.find("kubeflow.org", "PyTorchJob", "v1")
    assert crd is not None, crds
    with ControlPlane(testbin) as plane, running_stack(plane, workdir=tmp_path):
        assert not _served(plane, "kubeflow.org", "v1")
        upstream_crds.install(plane, [crd])
        plane.kubectl("create", "namespace", "team-a")
        expected = offline_message(too_big)
        denied = apply(plane, too_big)
        assert denied.returncode != 0
        assert expected in denied.stderr, denied.stderr
        accepted = apply(plane, fits)
        assert accepted.returncode == 0, accepted.stderr


def _trainer(name: str, namespace: str, gpus: int) -> dict[str, Any]:
    role = {
        "name": "worker",
        "replicas": 2,
        "template": {
            "metadata": {"annotations": {"nodelimits.io/resource-group": "a800x8"}},
            "spec": {"containers": [container(cpu="8", memory="64Gi", gpu=gpus)]},
        },
    }
    return {
        "apiVersion": "example.com/v1",
        "kind": "Trainer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"roles": [role]},
    }


def test_an_operators_kind_from_policy_workload_kinds_is_judged_online(
    control_plane: ControlPlane, stack: tuple[SimulatorProcess, Webhook], namespace: str
) -> None:
    fits = apply(control_plane, _trainer("fits", namespace, 4))
    assert fits.returncode == 0, fits.stderr
    denied = apply(control_plane, _trainer("too-big", namespace, 8))
    assert denied.returncode != 0
    assert (
        f"nodelimits: Trainer {namespace}/too-big does not fit one node of resource group "
        '"a800x8" (gpu): role worker: nvidia.com/gpu 8 > 4 cards per node'
    ) in denied.stderr, denied.stderr


TRAINJOB = examples.MANIFESTS / "trainjob.yaml"


def test_a_trainjob_whose_runtime_does_not_exist_is_denied_naming_it(
    control_plane: ControlPlane, stack: tuple[SimulatorProcess, Webhook], namespace: str
) -> None:
    _, fits, _ = examples.documents(TRAINJOB)
    fits["metadata"]["namespace"] = namespace
    fits["spec"]["runtimeRef"]["name"] = "no-such-runtime"
    denied = apply(control_plane, fits)
    assert denied.returncode != 0
    assert (
        f"TrainJob.trainer.kubeflow.org {namespace}/llm-finetune-fits is invalid: "
        'spec.runtimeRef: ClusterTrainingRuntime "no-such-runtime" not found in the cluster'
    ) in denied.stderr, denied.stderr


def test_a_trainjob_is_judged_by_the_training_runtime_of_its_namespace(
    control_plane: ControlPlane, stack: tuple[SimulatorProcess, Webhook], namespace: str
) -> None:
    runtime, fits, too_big = examples.documents(TRAINJOB)
    runtime["kind"] = "TrainingRuntime"
    runtime["metadata"]["namespace"] = namespace
    created = apply(control_plane, runtime)
    assert created.returncode == 0, created.stderr
    for doc in (fits, too_big):
        doc["metadata"]["namespace"] = namespace
        doc["spec"]["runtimeRef"]["kind"] = "TrainingRuntime"
    accepted = apply(control_plane, fits)
    assert accepted.returncode == 0, accepted.stderr
    denied = apply(control_plane, too_big)
    assert denied.returncode != 0
    assert "replicated job node: nvidia.com/gpu 8 > 4 cards per node" in denied.stderr, (
        denied.stderr
    )
