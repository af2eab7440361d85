"""nodelimits on the real node as a platform team runs it: `helm install` of the chart,
the platform simulator as a pod beside it, every pod on the node (devtools/realnode.py).

    simulator = deploy_simulator(node, image, groups)
    install(node, image, simulator)      # helm install --wait; both replicas Ready
    uninstall(node)

The webhook configuration the chart renders points at the chart's Service; the apiserver
reaches the pods through kube-proxy's rules for its ClusterIP, and the replicas reach the
simulator through its Service's ClusterIP (the node has no DNS: the URL holds the IP).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from devtools.controlplane import CommandFailed
from devtools.nodeimages import ImageArchive
from devtools.realnode import RealNode
from devtools.stack import CHART, RELEASE, RELEASE_NAMESPACE, SIM_ACCOUNT, _merge

__all__ = [
    "PLATFORM_NAMESPACE",
    "NodeStackError",
    "Simulator",
    "deploy_simulator",
    "diagnose",
    "install",
    "probe_pod",
    "uninstall",
    "wait_enforcing",
]

PLATFORM_NAMESPACE = "platform-sim"
SIMULATOR_PORT = 8080
INSTALL_TIMEOUT = 180.0


class NodeStackError(RuntimeError):
    """A step of deploying nodelimits on the node did not complete; says which and why."""


@dataclass(frozen=True, slots=True)
class Simulator:
    """The simulator's Service: what nodelimits' platform URLs point at."""

    url: str
    groups: tuple[Mapping[str, Any], ...]


def deploy_simulator(
    node: RealNode, image: ImageArchive, groups: Sequence[Mapping[str, Any]]
) -> Simulator:
    """`nodelimits simulate` as a Deployment serving `groups`, behind a ClusterIP Service."""
    labels = {"app": "platform-simulator"}
    config = {"resourceGroups": [dict(g) for g in groups]}
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PLATFORM_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "simulator", "namespace": PLATFORM_NAMESPACE},
            "data": {"simulator.yaml": yaml.safe_dump(config)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "simulator", "namespace": PLATFORM_NAMESPACE},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "simulator",
                                "image": image.name,
                                "imagePullPolicy": "Never",
                                "command": ["nodelimits", "simulate"],  # on PATH in both images
                                "args": [
                                    "--config=/etc/simulator/simulator.yaml",
                                    "--host=0.0.0.0",
                                    f"--port={SIMULATOR_PORT}",
                                ],
                                "ports": [{"containerPort": SIMULATOR_PORT}],
                                "readinessProbe": {
                                    "tcpSocket": {"port": SIMULATOR_PORT},
                                    "periodSeconds": 1,
                                },
                                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/simulator"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "simulator"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "simulator", "namespace": PLATFORM_NAMESPACE},
            "spec": {
                "selector": labels,
                "ports": [{"port": 80, "targetPort": SIMULATOR_PORT}],
            },
        },
    ]
    node.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                         "items": objects}))  # fmt: skip
    _rollout(node, PLATFORM_NAMESPACE, "deployment/simulator")
    ip = node.kubectl(
        "get", "service", "simulator", "-n", PLATFORM_NAMESPACE, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout.strip()
    return Simulator(url=f"http://{ip}", groups=tuple(groups))


def values(image: ImageArchive, simulator: Simulator) -> dict[str, Any]:
    """The chart values for this node: documented keys only."""
    repository, tag = image.name.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "config": {
            "platform": {
                "base_url": simulator.url,
                "center_url": simulator.url,
                "aksk_url": simulator.url,
                "token_source": "aksk",
                "cluster_id": "11112",
                "verify_tls": False,
            },
        },
        "credentials": dict(SIM_ACCOUNT),
        # two replicas on one node: a short drain, so rollouts and drains stay quick
        "terminationGracePeriodSeconds": 10,
        "readinessProbe": {"initialDelaySeconds": 1, "periodSeconds": 1},
    }


def install(
    node: RealNode,
    image: ImageArchive,
    simulator: Simulator,
    extra: Mapping[str, Any] | None = None,
    *,
    upgrade: bool = False,
) -> None:
    """`helm install` (or `helm upgrade`) the chart, wait for both replicas Ready, then
    until the apiserver's calls reach them."""
    chart_values = _merge(values(image, simulator), extra or {})
    verb = "upgrade" if upgrade else "install"
    try:
        node.helm(
            verb, RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--create-namespace",
            "--values", "-", "--wait", "--timeout", f"{INSTALL_TIMEOUT:.0f}s",
            input=yaml.safe_dump(chart_values), timeout=INSTALL_TIMEOUT + 30,
        )  # fmt: skip
    except CommandFailed as exc:
        raise NodeStackError(
            f"helm {verb} failed: {exc.stderr.strip()}\n{diagnose(node, RELEASE_NAMESPACE)}"
        ) from exc
    wait_enforcing(node)


def diagnose(node: RealNode, namespace: str, lines: int = 15) -> str:
    """The namespace's pods, its last events and the log tail of every container that
    restarted (its previous run: why it crashed) or is not ready."""
    out = [node.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout]
    events = node.kubectl("get", "events", "-n", namespace, check=False).stdout.splitlines()
    out.append("\n".join(events[-lines:]))
    listing = node.kubectl("get", "pods", "-n", namespace, "-o", "json", check=False).stdout
    for pod in json.loads(listing or '{"items": []}')["items"]:
        name = pod["metadata"]["name"]
        for status in pod.get("status", {}).get("containerStatuses", []):
            if status.get("ready") and not status.get("restartCount"):
                continue
            previous = ["--previous"] if status.get("restartCount") else []
            logs = node.kubectl(
                "logs", "-n", namespace, name, "-c", status["name"], f"--tail={lines}",
                *previous, check=False,
            )  # fmt: skip
            out.append(f"--- {name}/{status['name']} {' '.join(previous)} ---\n"
                       f"{(logs.stdout or logs.stderr).rstrip()}")  # fmt: skip
    return "\n".join(out)


def uninstall(node: RealNode, timeout: float = 90.0) -> None:
    """`helm uninstall`, then until the release's pods are gone: helm's --wait sees its
    Deployments deleted, while their pods still drain (shutdown_delay) and would be
    counted by the next install's checks."""
    node.helm("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait", "--timeout", "120s")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = node.kubectl(
            "get", "pods", "-n", RELEASE_NAMESPACE, "-l", selector, "-o", "name", check=False
        )
        if listed.returncode == 0 and not listed.stdout.strip():
            return
        time.sleep(0.5)
    raise NodeStackError(
        f"the release's pods still there {timeout:g} s after helm uninstall\n"
        f"{diagnose(node, RELEASE_NAMESPACE)}"
    )


def probe_pod(group: str = "TeslaM40", cpu: str = "999") -> dict[str, Any]:
    """A pod no node of `group` can hold (asks `cpu` cores): what nodelimits must deny."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "nodelimits-probe",
            "namespace": "default",
            "annotations": {"nodelimits.io/resource-group": group},
        },
        "spec": {
            "containers": [{"name": "c", "image": "probe", "resources": {"requests": {"cpu": cpu}}}]
        },
    }


def wait_enforcing(node: RealNode, timeout: float = 60.0) -> None:
    """Until a server-side dry run of an impossible pod is denied by nodelimits: the
    webhook configuration is in force and the Service reaches a replica."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        result = node.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(probe_pod()), check=False
        )
        if "nodelimits:" in result.stderr:
            return
        last = result.stderr.strip() or result.stdout.strip()
        time.sleep(0.5)
    raise NodeStackError(f"nodelimits never denied the probe within {timeout:g} s; last: {last}")


def _rollout(node: RealNode, namespace: str, what: str) -> None:
    try:
        node.kubectl("rollout", "status", what, "-n", namespace, "--timeout=120s", timeout=130)
    except CommandFailed as exc:
        raise NodeStackError(
            f"{what} in {namespace} not rolled out\n{diagnose(node, namespace)}"
        ) from exc
