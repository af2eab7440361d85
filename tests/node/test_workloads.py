"""Controllers doing what users see, with nodelimits installed on the real node."""

from __future__ import annotations

from devtools.builders import container, job, workload
from tests.node.conftest import NodeSession
from tests.node.kube import apply, events, get, pods, ready, runnable, wait_until


def test_a_job_that_fits_runs_its_pod_to_completed(
    nodelimits_installed: NodeSession, namespace: str
) -> None:
    node = nodelimits_installed.node
    fits = job(container(cpu="100m", memory="16Mi", gpu=1), name="fits")

    result = apply(node, runnable(fits, "true", namespace=namespace))

    assert result.returncode == 0, result.stderr
    wait_until(
        "Job fits Complete",
        lambda: any(
            c["type"] == "Complete" and c["status"] == "True"
            for c in get(node, "job", "fits", "-n", namespace)["status"].get("conditions", [])
        ),
    )
    phases = [p["status"]["phase"] for p in pods(node, namespace, "job-name=fits")]
    assert phases == ["Succeeded"]


def test_an_oversized_job_is_denied_at_apply(
    nodelimits_installed: NodeSession, namespace: str
) -> None:
    node = nodelimits_installed.node
    oversized = runnable(job(container(cpu="100m", gpu=4), name="oversized"), namespace=namespace)

    result = apply(node, oversized)

    assert result.returncode != 0
    assert "denied the request: nodelimits: Job" in result.stderr
    assert node.kubectl("get", "job", "oversized", "-n", namespace, check=False).returncode != 0


def test_a_deployment_that_fits_scales_to_four_running_pods(
    nodelimits_installed: NodeSession, namespace: str
) -> None:
    node = nodelimits_installed.node
    fits = workload("Deployment", container(cpu="10m"), replicas=1, name="web")
    assert apply(node, runnable(fits, namespace=namespace)).returncode == 0

    node.kubectl("scale", "deployment/web", "-n", namespace, "--replicas=4")

    running = wait_until(
        "4 pods Running and Ready",
        lambda: len([p for p in pods(node, namespace, "app=web") if ready(p)]) == 4,
    )
    assert running


def test_a_workload_admitted_before_nodelimits_gets_its_new_pods_denied_at_pod_create(
    node_session: NodeSession, namespace: str
) -> None:
    """Pods are the final enforcement point: a Deployment admitted while nodelimits was not
    installed keeps its pod Pending; once nodelimits is in, the ReplicaSet's new pod is
    refused at CREATE and says so in the ReplicaSet's events (`kubectl describe rs`)."""
    node = node_session.node
    if node_session.installed:
        node_session.uninstall()
    too_big = workload("Deployment", container(cpu="10m", gpu=3), replicas=1, name="old")
    assert apply(node, runnable(too_big, namespace=namespace)).returncode == 0
    wait_until("the old pod", lambda: pods(node, namespace, "app=old"))
    node_session.install()

    node.kubectl("delete", "pods", "-n", namespace, "-l", "app=old", "--wait=false")

    rs = get(node, "rs", "-n", namespace, "-l", "app=old")["items"][0]["metadata"]["name"]
    messages = wait_until(
        "a FailedCreate event on the ReplicaSet",
        lambda: events(node, namespace, rs, "FailedCreate"),
    )
    assert any("denied the request: nodelimits: Pod" in m for m in messages), messages
    described = node.kubectl("describe", "rs", rs, "-n", namespace).stdout
    assert "nvidia.com/gpu 3 > 2 cards per node" in described
