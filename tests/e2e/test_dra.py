"""GPUs through Dynamic Resource Allocation, on the real control plane (issue 11).

A DeviceClass and ResourceClaimTemplates are created on the apiserver; the webhook reads
the templates a pod names through the apiserver (with the control plane's admin client
certificate, as a service account would with its token) and counts their devices as cards.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.builders import container, job, pod
from devtools.controlplane import ControlPlane
from devtools.stack import SimulatorProcess, Webhook

CLASS = "gpu.nvidia.com"
CARDS = f"deviceclass.resource.kubernetes.io/{CLASS}"


@contextlib.contextmanager
def _serve(plane: ControlPlane, work: Path, settings: dict[str, Any]) -> Iterator[Webhook]:
    simulator = SimulatorProcess(work).start()
    webhook = Webhook(work, plane, simulator, settings).start()
    try:
        webhook.register()
        yield webhook
    finally:
        webhook.unregister()
        webhook.stop()
        simulator.stop()


@pytest.fixture(scope="module")
def webhook(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    device_class = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": CLASS},
        "spec": {},
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(device_class))
    settings = control_plane.kubernetes_settings()
    with _serve(control_plane, tmp_path_factory.mktemp("dra"), settings) as w:
        yield w


def template(name: str, namespace: str, **exactly: Any) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "spec": {
                "devices": {
                    "requests": [{"name": "gpus", "exactly": {"deviceClassName": CLASS, **exactly}}]
                }
            }
        },
    }


def claiming(obj: dict[str, Any], namespace: str, template_name: str) -> dict[str, Any]:
    spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Job" else obj["spec"]
    spec["resourceClaims"] = [{"name": "gpus", "resourceClaimTemplateName": template_name}]
    spec["containers"][0].setdefault("resources", {})["claims"] = [{"name": "gpus"}]
    obj["metadata"]["namespace"] = namespace
    return obj


def create(plane: ControlPlane, *objects: dict[str, Any]) -> Any:
    return plane.kubectl(
        "create",
        "--dry-run=server",
        "-f",
        "-",
        input="\n".join(map(json.dumps, objects)),
        check=False,
    )


def test_the_issue_pod_asking_64_gpus_through_a_template_is_rejected(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    control_plane.kubectl(
        "apply", "-f", "-", input=json.dumps(template("gpus-64", namespace, count=64))
    )
    result = create(control_plane, claiming(pod(container()), namespace, "gpus-64"))
    assert result.returncode != 0
    assert f"{CARDS} 64 > 2 cards per node" in result.stderr, result.stderr


def test_a_pod_whose_claims_fit_is_admitted(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    control_plane.kubectl(
        "apply", "-f", "-", input=json.dumps(template("gpus-2", namespace, count=2))
    )
    result = create(control_plane, claiming(pod(container()), namespace, "gpus-2"))
    assert result.returncode == 0, result.stderr


def test_all_devices_of_a_pool_cannot_be_counted_and_is_denied(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    control_plane.kubectl(
        "apply", "-f", "-", input=json.dumps(template("every-gpu", namespace, allocationMode="All"))
    )
    result = create(control_plane, claiming(pod(container()), namespace, "every-gpu"))
    assert result.returncode != 0
    assert "allocationMode All" in result.stderr, result.stderr


def test_a_missing_template_denies_a_pod_and_warns_on_a_job(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    denied = create(control_plane, claiming(pod(container()), namespace, "nope"))
    assert denied.returncode != 0
    assert "ResourceClaimTemplate 'nope' not found in the namespace" in denied.stderr
    warned = create(control_plane, claiming(job(container()), namespace, "nope"))
    assert warned.returncode == 0, warned.stderr
    assert "their devices were not counted" in warned.stderr


def test_an_unreachable_apiserver_fails_by_the_failure_mode(
    control_plane: ControlPlane,
    namespace: str,
    webhook: Webhook,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    control_plane.kubectl(
        "apply", "-f", "-", input=json.dumps(template("gpus-64", namespace, count=64))
    )
    settings = control_plane.kubernetes_settings(api_url="https://127.0.0.1:9")
    settings["admission"] = {"failure_mode": "open"}
    try:  # a second server takes the webhook configuration over for this test
        with _serve(control_plane, tmp_path_factory.mktemp("dra-down"), settings):
            result = create(control_plane, claiming(pod(container()), namespace, "gpus-64"))
    finally:
        webhook.register()  # back to the module's server
    assert result.returncode == 0, result.stderr  # open: admitted, with a warning
    assert "cannot read ResourceClaimTemplate" in result.stderr, result.stderr
