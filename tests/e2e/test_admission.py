"""The webhook, called by a real kube-apiserver, as users meet it through kubectl."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import examples
from devtools.builders import container, cronjob, job, pod, workload
from devtools.controlplane import ControlPlane
from devtools.reviews import admission_review
from devtools.stack import SimulatorProcess, Webhook
from webhook.serve.handlers import HANDLERS, HandlerSpec

BUILT_IN_EXAMPLES = examples.built_in_files()
"""The examples this plain control plane can apply (no CRDs); tests/e2e/test_workload_kinds.py
applies the others with their CRDs installed."""


@pytest.fixture(scope="module")
def stack(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SimulatorProcess, Webhook]]:
    work = tmp_path_factory.mktemp("stack")
    simulator = SimulatorProcess(work).start()
    # Reading the apiserver as in a cluster: a TrainJob's runtime (this plane has no CRDs,
    # so none is found and a TrainJob is denied naming it).
    settings = control_plane.kubernetes_settings()
    webhook = Webhook(work, control_plane, simulator, settings).start()
    try:
        webhook.register()
        yield simulator, webhook
    finally:
        webhook.unregister()
        webhook.stop()
        simulator.stop()


@pytest.fixture
def webhook(stack: tuple[SimulatorProcess, Webhook]) -> Webhook:
    return stack[1]


def apply(plane: ControlPlane, obj: dict[str, Any], *args: str) -> Any:
    return plane.kubectl("apply", *args, "-f", "-", input=json.dumps(obj), check=False)


def in_ns(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    obj["metadata"]["namespace"] = namespace
    return obj


def exists(plane: ControlPlane, kind: str, name: str, namespace: str) -> bool:
    result = plane.kubectl("get", kind, name, "-n", namespace, "-o", "name", check=False)
    return result.returncode == 0


def test_pod_that_fits_is_created(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    result = apply(control_plane, in_ns(pod(container(cpu="8", memory="16Gi", gpu=2)), namespace))
    assert result.returncode == 0, result.stderr
    assert exists(control_plane, "pod", "p", namespace)


def test_job_that_fits_is_created(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    obj = in_ns(job(container(cpu="32", limits={"memory": "24Gi", "nvidia.com/gpu": 2})), namespace)
    result = apply(control_plane, obj)
    assert result.returncode == 0, result.stderr
    assert exists(control_plane, "job", "train", namespace)


def test_oversized_job_is_rejected_with_every_violation_in_kubectl_output(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    obj = in_ns(job(container(limits={"memory": "64Gi", "nvidia.com/gpu": 4})), namespace)
    result = apply(control_plane, obj)
    assert result.returncode != 0
    assert (
        f'admission webhook "jobs.nodelimits.io" denied the request: nodelimits: Job '
        f'{namespace}/train does not fit one node of resource group "TeslaM40" (gpu): '
        "memory 65536Mi > 31888Mi per node; nvidia.com/gpu 4 > 2 cards per node"
    ) in result.stderr
    assert not exists(control_plane, "job", "train", namespace)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(pod(container(cpu="41")), "cpu 41 > 40 cores per node", id="cpu"),
        pytest.param(
            pod(container(memory="32Gi")), "memory 32768Mi > 31888Mi per node", id="memory"
        ),
        pytest.param(pod(container(gpu=3)), "nvidia.com/gpu 3 > 2 cards per node", id="gpu"),
        pytest.param(
            pod(container(limits={"hygon.com/dcu": 5}), group="kshdtest"),
            "hygon.com/dcu 5 > 4 cards per node",
            id="dcu",
        ),
        pytest.param(
            pod(container(limits={"cambricon.com/mlu370": 9}), group="mlu370pool"),
            "cambricon.com/mlu370 9 > 8 cards per node",
            id="mlu",
        ),
    ],
)
def test_pod_over_one_resource_is_rejected_naming_it(
    control_plane: ControlPlane,
    namespace: str,
    webhook: Webhook,
    obj: dict[str, Any],
    expected: str,
) -> None:
    result = apply(control_plane, in_ns(obj, namespace))
    assert result.returncode != 0
    assert expected in result.stderr
    assert not exists(control_plane, "pod", "p", namespace)


@pytest.mark.parametrize("fits", [True, False], ids=["fits", "too-big"])
def test_server_dry_run_gives_the_same_verdict_and_creates_nothing(
    control_plane: ControlPlane, namespace: str, webhook: Webhook, fits: bool
) -> None:
    obj = in_ns(job(container(gpu=2 if fits else 4)), namespace)
    result = apply(control_plane, obj, "--dry-run=server")
    assert (result.returncode == 0) is fits, result.stderr
    if not fits:
        assert "nvidia.com/gpu 4 > 2 cards per node" in result.stderr
    assert not exists(control_plane, "job", "train", namespace)
    dry = [d for d in webhook.decisions() if d.get("namespace") == namespace]
    assert dry
    assert all(d["dry_run"] for d in dry)


def test_examples_get_the_same_verdicts_as_nodelimits_check(
    control_plane: ControlPlane, webhook: Webhook
) -> None:
    """The apiserver's verdict on every built-in-kind example equals the offline check's."""
    files = [arg for path in BUILT_IN_EXAMPLES for arg in ("-f", str(path))]
    offline = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "check",
            *files,
            "--limits-file",
            str(examples.LIMITS_FILE),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(offline.stdout)
    for namespace in {r["namespace"] for r in report["results"]}:
        control_plane.kubectl("create", "namespace", namespace, check=False)
    online = control_plane.kubectl("apply", "--dry-run=server", *files, check=False)
    assert report["summary"]["rejected"] >= 4
    for result in report["results"]:
        if result["allowed"]:
            assert f"/{result['name']} created (server dry run)" in online.stdout, result
        else:
            assert f"denied the request: {result['message']}" in online.stderr, result


def test_warnings_reach_kubectl(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    # kshdtest: 8 nodes of 4 DCUs, maxTime 24:00:00. 9 pods of 4 DCUs cannot all run at once.
    obj = in_ns(
        job(container(limits={"hygon.com/dcu": 4}), parallelism=9, group="kshdtest"), namespace
    )
    result = apply(control_plane, obj)
    assert result.returncode == 0, result.stderr
    assert (
        'Warning: no activeDeadlineSeconds: resource group "kshdtest" limits run time to '
        "maxTime 24:00:00 (86400s); set activeDeadlineSeconds <= 86400"
    ) in result.stderr
    assert "Warning: parallelism 9: only 8 pods can run at once" in result.stderr


def resize(plane: ControlPlane, name: str, namespace: str, cpu: str) -> Any:
    """`kubectl patch --subresource resize` of the pod's one container to `cpu`."""
    resources = {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}
    patch = {"spec": {"containers": [{"name": "main", "resources": resources}]}}
    return plane.kubectl(
        "patch", "pod", name, "-n", namespace, "--subresource", "resize",
        "--type", "strategic", "-p", json.dumps(patch), check=False,
    )  # fmt: skip


def test_in_place_resize_beyond_the_node_is_rejected(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    created = apply(control_plane, in_ns(pod(container(cpu="2", limits={"cpu": "2"})), namespace))
    assert created.returncode == 0, created.stderr
    result = resize(control_plane, "p", namespace, "64")
    assert result.returncode != 0
    assert 'admission webhook "pods-resize.nodelimits.io" denied the request' in result.stderr
    assert "cpu 64 > 40 cores per node" in result.stderr


def test_in_place_resize_within_the_node_is_allowed(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    apply(control_plane, in_ns(pod(container(cpu="2", limits={"cpu": "2"}), name="r"), namespace))
    result = resize(control_plane, "r", namespace, "4")
    assert result.returncode == 0, result.stderr


def test_unannotated_pod_is_never_sent(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    obj = in_ns(pod(container(cpu="500"), group=None, name="plain"), namespace)
    result = apply(control_plane, obj)
    assert result.returncode == 0, result.stderr
    assert not [d for d in webhook.decisions() if d.get("name") == "plain"]


def test_unknown_group_is_rejected_by_name(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    result = apply(control_plane, in_ns(pod(group="NoSuchGroup"), namespace))
    assert result.returncode != 0
    assert 'resource group "NoSuchGroup" is unknown to the platform' in result.stderr


def _review(
    uid: str, obj: dict[str, Any], operation: str = "CREATE", subresource: str | None = None
) -> dict[str, Any]:
    return admission_review(
        obj,
        operation=operation,
        old=obj if operation == "UPDATE" else None,
        uid=uid,
        sub_resource=subresource,
        user="test",
        dry_run=True,
    )


def _post(webhook: Webhook, url: str, payload: object) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(webhook.certs.ca))
    req = urllib.request.Request(  # noqa: S310 - loopback https
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:  # noqa: S310
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _oversized(kind: str) -> dict[str, Any]:
    big = container(cpu="999")
    if kind == "Pod":
        return pod(big)
    if kind == "Job":
        return job(big)
    if kind == "CronJob":
        return cronjob(job(big))
    return workload(kind, big)


def _oversized_of(spec: HandlerSpec) -> dict[str, Any]:
    """An object of the handler's kind that does not fit its group: built for the built-in
    kinds, the too-big document of the kind's example for the kind table's."""
    if "." not in spec.kind:
        return _oversized(spec.kind)
    too_big = examples.documents(KIND_EXAMPLES[(spec.group, spec.object_kind)])[-1]
    assert too_big["metadata"]["name"].endswith("too-big"), too_big["metadata"]
    # one example per kind; a kind served at two versions (MPIJob v1, v2beta1) is sent as
    # each, with the same shape
    too_big["apiVersion"] = f"{spec.group}/{spec.version}"
    return too_big


KIND_EXAMPLES = examples.files_by_kind()


def test_every_configured_path_reaches_a_handler(webhook: Webhook) -> None:
    """kopf ALLOWS a request to an unknown path: every path in the chart must be served."""
    configuration = yaml.safe_load(webhook.render_configuration())
    hooks = configuration["webhooks"]
    by_path = {spec.path: spec for spec in HANDLERS}
    assert {hook["clientConfig"]["url"].removeprefix(webhook.url) for hook in hooks} == set(by_path)
    for hook in hooks:
        spec = by_path[hook["clientConfig"]["url"].removeprefix(webhook.url)]
        operation = sorted(spec.operations)[0]
        review = _review(str(uuid.uuid4()), _oversized_of(spec), operation, spec.subresource)
        review["request"]["resource"] = {
            "group": spec.group,
            "version": spec.version,
            "resource": spec.plural,
        }
        status, body = _post(webhook, hook["clientConfig"]["url"], review)
        assert status == 200, (hook["name"], body)
        assert body["response"]["allowed"] is False, (hook["name"], body)
        assert "nodelimits: " in body["response"]["status"]["message"], (hook["name"], body)


def test_unknown_path_is_an_error_not_a_silent_allow(webhook: Webhook) -> None:
    status, body = _post(webhook, f"{webhook.url}/podz", _review("u", pod(container(cpu="999"))))
    assert status == 400
    assert "unknown webhook path /podz" in str(body)


class TestPlatformDown:
    """failureMode closed denies, open allows with a warning; stale limits bridge outages."""

    @pytest.fixture
    def make_stack(self, control_plane: ControlPlane, tmp_path: Path) -> Iterator[Any]:
        with contextlib.ExitStack() as started:

            def make(**settings: Any) -> tuple[SimulatorProcess, Webhook]:
                # Each stop is registered as soon as its process runs: a webhook that fails
                # to start must not leave its simulator behind.
                simulator = SimulatorProcess(tmp_path).start()
                started.callback(simulator.stop)
                webhook = Webhook(tmp_path, control_plane, simulator, settings).start()
                started.callback(webhook.stop)
                webhook.register()
                started.callback(webhook.unregister)
                return simulator, webhook

            yield make

    def test_closed_denies_when_the_platform_is_down(
        self, control_plane: ControlPlane, namespace: str, make_stack: Any
    ) -> None:
        simulator, webhook = make_stack(admission={"failure_mode": "closed"})
        simulator.stop()
        result = apply(control_plane, in_ns(pod(group="kshdtest"), namespace))
        assert result.returncode != 0
        assert "the platform API is unavailable" in result.stderr
        assert "denied because failureMode is closed" in result.stderr
        assert 'nodelimits_admission_requests_total{decision="error"' in webhook.metrics_text()

    def test_open_allows_with_a_warning_and_counts_it(
        self, control_plane: ControlPlane, namespace: str, make_stack: Any
    ) -> None:
        simulator, webhook = make_stack(admission={"failure_mode": "open"})
        simulator.stop()
        result = apply(control_plane, in_ns(pod(container(cpu="999"), group="kshdtest"), namespace))
        assert result.returncode == 0, result.stderr
        assert "was not checked: the platform API is unavailable" in result.stderr
        assert "nodelimits_fail_open_total{" in webhook.metrics_text()

    def test_stale_limits_are_used_within_max_stale(
        self, control_plane: ControlPlane, namespace: str, make_stack: Any
    ) -> None:
        simulator, _ = make_stack(cache={"ttl": 0.5, "max_stale": 600})
        first = apply(control_plane, in_ns(pod(container(cpu="999"), name="a"), namespace))
        assert "cpu 999 > 40 cores per node" in first.stderr
        simulator.stop()
        time.sleep(1.0)  # past the TTL: the next lookup must fall back to the stale value
        result = apply(control_plane, in_ns(pod(container(cpu="999"), name="b"), namespace))
        assert result.returncode != 0
        assert "cpu 999 > 40 cores per node" in result.stderr
