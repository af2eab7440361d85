"""No bypass: every path by which an oversized workload could get past the check is either
rejected or shown harmless, on the real control plane with the chart's webhook
configuration (rules, namespaceSelector, matchConditions) pointed at ``nodelimits serve``.

The limits are static (examples/limits.yaml): TeslaM40 is 40 cores, 31888Mi, 2 GPUs a
node; a800x8 is 128 cores, 8 GPUs capped at 4 by nvLimits. The table of paths and outcomes
is in docs/reliability.md ("No bypass").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.builders import GROUP_KEY, container, job, pod
from devtools.controlplane import ControlPlane
from devtools.stack import EXAMPLE_LIMITS, SimulatorProcess, Webhook

OVER = "cpu 999 > 40 cores per node"


@pytest.fixture(scope="module")
def webhook(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    work = tmp_path_factory.mktemp("no-bypass")
    never_started = SimulatorProcess(work)  # only its URL lands in the (unused) platform settings
    server = Webhook(
        work, control_plane, never_started, {"platform": {"limits_file": str(EXAMPLE_LIMITS)}}
    ).start()
    try:
        server.register()
        yield server
    finally:
        server.unregister()
        server.stop()


def kubectl(plane: ControlPlane, *args: str, obj: Any = None) -> Any:
    stdin = json.dumps(obj) if obj is not None else None
    return plane.kubectl(*args, input=stdin, check=False)


def create(plane: ControlPlane, obj: dict[str, Any], namespace: str, *args: str) -> Any:
    obj["metadata"]["namespace"] = namespace
    return kubectl(plane, "create", *args, "-f", "-", obj=obj)


def get(plane: ControlPlane, kind: str, name: str, namespace: str) -> dict[str, Any]:
    result = plane.kubectl("get", kind, name, "-n", namespace, "-o", "json")
    obj: dict[str, Any] = json.loads(result.stdout)
    return obj


def denied(result: Any, webhook_name: str, expected: str = OVER) -> bool:
    return (
        result.returncode != 0
        and f'admission webhook "{webhook_name}.nodelimits.io" denied the request' in result.stderr
        and expected in result.stderr
    )


def big_pod(name: str = "p", **kw: Any) -> dict[str, Any]:
    return pod(container(cpu="999"), name=name, **kw)


# --- annotation key in a different case ---------------------------------------------------


@pytest.mark.parametrize("key", ["NodeLimits.io/Resource-Group", GROUP_KEY.upper()])
def test_annotation_key_in_another_case_is_checked(
    control_plane: ControlPlane, namespace: str, webhook: Webhook, key: str
) -> None:
    """The core reads the key case-insensitively (with a warning) and so does
    `nodelimits check`; the chart's matchConditions must send such objects too."""
    obj = big_pod(group=None)
    obj["metadata"]["annotations"] = {key: "TeslaM40"}
    result = create(control_plane, obj, namespace)
    assert denied(result, "pods"), result.stderr
    fits = pod(container(cpu="1"), name="fits", group=None)
    fits["metadata"]["annotations"] = {key: "TeslaM40"}
    result = create(control_plane, fits, namespace)
    assert result.returncode == 0, result.stderr
    assert f"annotation key '{key}' differs in case" in result.stderr  # the warning


def test_annotation_key_in_another_case_on_a_job_template_is_checked(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    obj = job(container(cpu="999"), group=None)
    obj["spec"]["template"]["metadata"]["annotations"] = {
        "NodeLimits.io/Resource-Group": "TeslaM40"
    }
    assert denied(create(control_plane, obj, namespace), "jobs")


# --- annotation on the workload, not its template -----------------------------------------


def test_annotation_on_the_job_but_not_its_template_is_checked(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    result = create(control_plane, job(container(cpu="999"), on_job_metadata=True), namespace)
    assert denied(result, "jobs"), result.stderr


def test_pods_of_such_a_job_carry_no_group_and_are_not_sent(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    """Harmless: a pod without the annotation names no resource group, so neither
    nodelimits nor the platform places it on one (what the Job controller would create)."""
    obj = big_pod(name="from-job", group=None)
    obj["metadata"]["ownerReferences"] = [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "0000-1"}
    ]
    result = create(control_plane, obj, namespace)
    assert result.returncode == 0, result.stderr
    assert not [d for d in webhook.decisions() if d.get("name") == "from-job"]


# --- ephemeral containers -----------------------------------------------------------------


def _ephemeral(resources: dict[str, Any] | None) -> dict[str, Any]:
    debug: dict[str, Any] = {"name": "debugger", "image": "busybox", "targetContainerName": "main"}
    if resources is not None:
        debug["resources"] = resources
    return {"spec": {"ephemeralContainers": [debug]}}


def test_ephemeral_container_cannot_ask_for_resources(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    """The API forbids resources on ephemeral containers, and they never count toward a
    pod's requests (component-helpers/resource: containers and init containers only)."""
    assert create(control_plane, pod(container(cpu="40"), name="e"), namespace).returncode == 0
    with_resources = _ephemeral({"requests": {"cpu": "999"}, "limits": {"cpu": "999"}})
    result = kubectl(
        control_plane, "patch", "pod", "e", "-n", namespace, "--subresource",
        "ephemeralcontainers", "--type", "strategic", "-p", json.dumps(with_resources),
    )  # fmt: skip
    assert result.returncode != 0
    assert "Forbidden" in result.stderr, result.stderr
    assert "resources" in result.stderr, result.stderr
    # Without resources (what `kubectl debug` sends) it is accepted, and harmless.
    result = kubectl(
        control_plane, "patch", "pod", "e", "-n", namespace, "--subresource",
        "ephemeralcontainers", "--type", "strategic", "-p", json.dumps(_ephemeral(None)),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# --- who creates the pod ------------------------------------------------------------------


@pytest.mark.parametrize("controller", ["job-controller", "replicaset-controller"])
def test_pod_created_by_a_controller_identity_is_checked(
    control_plane: ControlPlane, namespace: str, webhook: Webhook, controller: str
) -> None:
    """Neither rules nor matchConditions look at the user: the pods a Job or ReplicaSet
    controller creates (with its bootstrap RBAC, as here) are checked like anyone's."""
    owner = "Job" if controller == "job-controller" else "ReplicaSet"
    obj = big_pod(name="ctl")
    obj["metadata"]["ownerReferences"] = [
        {"apiVersion": "batch/v1" if owner == "Job" else "apps/v1", "kind": owner,
         "name": "owner", "uid": "0000-2"}
    ]  # fmt: skip
    sa = f"system:serviceaccount:kube-system:{controller}"
    result = create(control_plane, obj, namespace, f"--as={sa}")
    assert denied(result, "pods"), result.stderr
    fits = pod(container(cpu="1"), name="ctl-fits")
    assert create(control_plane, fits, namespace, f"--as={sa}").returncode == 0


# --- replace and server-side apply --------------------------------------------------------


def test_kubectl_replace_of_a_deployment_with_an_oversized_template_is_rejected(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {GROUP_KEY: "TeslaM40"}},
                "spec": {"containers": [container(cpu="1")]},
            },
        },
    }
    assert kubectl(control_plane, "create", "-f", "-", obj=dep).returncode == 0
    current = get(control_plane, "deployment", "web", namespace)
    current["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "999"}}
    result = kubectl(control_plane, "replace", "-f", "-", obj=current)
    assert denied(result, "deployments"), result.stderr


def test_kubectl_replace_of_a_pod_cannot_change_its_resources(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    """Pod UPDATE is not sent to nodelimits; the API keeps pod resources immutable outside
    pods/resize (which is checked), so a replace cannot grow a pod."""
    assert create(control_plane, pod(container(cpu="1"), name="r"), namespace).returncode == 0
    current = get(control_plane, "pod", "r", namespace)
    current["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "999"}}
    result = kubectl(control_plane, "replace", "-f", "-", obj=current)
    assert result.returncode != 0
    assert "Forbidden: pod updates may not change fields" in result.stderr, result.stderr


@pytest.mark.parametrize("kind", ["pod", "job"])
def test_server_side_apply_is_checked(
    control_plane: ControlPlane, namespace: str, webhook: Webhook, kind: str
) -> None:
    obj = big_pod() if kind == "pod" else job(container(cpu="999"))
    obj["metadata"]["namespace"] = namespace
    result = kubectl(control_plane, "apply", "--server-side", "-f", "-", obj=obj)
    assert denied(result, "pods" if kind == "pod" else "jobs"), result.stderr


def test_server_side_apply_of_a_job_update_is_checked(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    obj = job(container(cpu="1"))
    obj["spec"]["suspend"] = True
    obj["metadata"]["namespace"] = namespace
    assert kubectl(control_plane, "apply", "--server-side", "-f", "-", obj=obj).returncode == 0
    obj["spec"]["template"]["metadata"]["annotations"] = {GROUP_KEY: "TeslaM40"}
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "999"}}
    result = kubectl(control_plane, "apply", "--server-side", "-f", "-", obj=obj)
    assert denied(result, "jobs"), result.stderr


# --- UPDATE of a suspended Job ------------------------------------------------------------


def _suspended(namespace: str, group: str = "a800x8") -> dict[str, Any]:
    obj = job(container(cpu="100", limits={"nvidia.com/gpu": 4}), group=group)
    obj["spec"]["suspend"] = True
    obj["metadata"]["namespace"] = namespace
    return obj


def test_suspended_job_moved_to_a_smaller_group_is_rejected(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    """A suspended Job's template annotations are mutable (KEP-2926): re-checked."""
    assert kubectl(control_plane, "create", "-f", "-", obj=_suspended(namespace)).returncode == 0
    patch = {"spec": {"template": {"metadata": {"annotations": {GROUP_KEY: "TeslaM40"}}}}}
    result = kubectl(
        control_plane, "patch", "job", "train", "-n", namespace, "--type", "merge",
        "-p", json.dumps(patch),
    )  # fmt: skip
    assert denied(result, "jobs", "cpu 100 > 40 cores per node"), result.stderr
    assert "nvidia.com/gpu 4 > 2 cards per node" in result.stderr
    current = get(control_plane, "job", "train", namespace)
    assert current["spec"]["template"]["metadata"]["annotations"][GROUP_KEY] == "a800x8"


def test_suspended_job_resources_grown_are_rejected(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    assert kubectl(control_plane, "create", "-f", "-", obj=_suspended(namespace)).returncode == 0
    current = get(control_plane, "job", "train", namespace)
    current["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = {"cpu": "999"}
    result = kubectl(control_plane, "replace", "-f", "-", obj=current)
    # Kubernetes 1.37 (the testbin) lets a suspended Job's container resources change: the
    # UPDATE reaches nodelimits and is judged like a CREATE.
    assert denied(result, "jobs", "cpu 999 > 128 cores per node"), result.stderr


def test_label_on_an_oversized_legacy_job_is_allowed(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    """Documented: an UPDATE that leaves the pods unchanged is not re-checked (a Job
    created before nodelimits, or before its group shrank, can still be labelled)."""
    webhook.unregister()
    try:
        obj = job(container(cpu="999"), name="legacy")
        assert create(control_plane, obj, namespace).returncode == 0
    finally:
        webhook.register()
    result = kubectl(control_plane, "label", "job", "legacy", "-n", namespace, "team=a")
    assert result.returncode == 0, result.stderr
    skipped = [d for d in webhook.decisions() if d.get("name") == "legacy"]
    assert skipped, "the label UPDATE was not sent"
    assert skipped[-1]["verdict"] == "skip", skipped


def test_annotating_an_existing_pod_with_a_group_it_cannot_fit_is_denied(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    """A group annotation added to a running pod re-targets it: the Pod UPDATE is judged
    (issue 12; the chart's matchCondition sends only such UPDATEs), so a pod admitted
    unannotated cannot be put on a group it does not fit afterwards."""
    obj = big_pod(name="late", group=None)
    assert create(control_plane, obj, namespace).returncode == 0
    result = kubectl(
        control_plane, "annotate", "pod", "late", "-n", namespace, f"{GROUP_KEY}=TeslaM40"
    )
    assert result.returncode != 0
    assert 'admission webhook "pods.nodelimits.io" denied the request' in result.stderr
    assert "cpu 999 > 40 cores per node" in result.stderr
    [decision] = [d for d in webhook.decisions() if d.get("name") == "late"]
    assert decision["operation"] == "UPDATE"
