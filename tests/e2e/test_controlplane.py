"""The control plane is real and usable: versions, objects, dry-run, loopback TLS webhooks,
helm; and the harness fails fast, with log lines, and leaves no processes behind."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from devtools import certs
from devtools.controlplane import (
    OWNER_FILE,
    WORKDIR_PREFIX,
    CommandFailed,
    ControlPlane,
    ControlPlaneError,
)
from devtools.reviews import admission_response

pytestmark = pytest.mark.e2e

KUBE_VERSION = "v1.37.2"
HELM_VERSION = "v3.22.0"
DENY_LABEL = "e2e.nodelimits.test/deny"
WEBHOOK_READY_TIMEOUT = 30.0
"""A new webhook configuration takes about a second to reach the admission chain."""


def pod_manifest(name: str, namespace: str, labels: dict[str, str] | None = None) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
    }
    return json.dumps(pod)


def job_manifest(name: str, namespace: str) -> str:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36"}],
                }
            }
        },
    }
    return json.dumps(job)


# -- versions -------------------------------------------------------------------------------


def test_apiserver_and_kubectl_report_the_pinned_version(control_plane: ControlPlane) -> None:
    raw = json.loads(control_plane.kubectl("get", "--raw", "/version").stdout)
    versions = json.loads(control_plane.kubectl("version", "-o", "json").stdout)

    assert raw["gitVersion"] == KUBE_VERSION
    assert versions["serverVersion"]["gitVersion"] == KUBE_VERSION
    assert versions["clientVersion"]["gitVersion"] == KUBE_VERSION


def test_helm_reports_its_version_and_knows_kubernetes_1_37(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    chart = write_chart(
        tmp_path, "templates/kube.yaml", "kubeVersion: {{ .Capabilities.KubeVersion.Version }}\n"
    )

    version = control_plane.helm("version", "--template", "{{ .Version }}").stdout
    rendered = control_plane.helm("template", "probe", str(chart)).stdout

    assert version.strip() == HELM_VERSION
    assert "kubeVersion: v1.37." in rendered  # offline default, from the build's ldflags


# -- objects --------------------------------------------------------------------------------


def test_kubectl_creates_a_pod_and_a_job(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("apply", "-f", "-", input=pod_manifest("pod-a", namespace))
    control_plane.kubectl("apply", "-f", "-", input=job_manifest("job-a", namespace))

    pod = json.loads(control_plane.kubectl("get", "pod/pod-a", "-n", namespace, "-o=json").stdout)
    job = json.loads(control_plane.kubectl("get", "job/job-a", "-n", namespace, "-o=json").stdout)

    assert pod["status"]["phase"] == "Pending"  # no scheduler, no kubelet: stays Pending
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.36"


def test_python_client_creates_a_namespace_a_pod_and_a_job(control_plane: ControlPlane) -> None:
    api = k8s_api_client(control_plane)
    core, batch = k8s.CoreV1Api(api), k8s.BatchV1Api(api)
    name = f"e2e-python-client-{os.getpid()}"
    container = k8s.V1Container(name="main", image="busybox:1.36")

    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    core.create_namespaced_pod(
        name,
        k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name="pod-b"),
            spec=k8s.V1PodSpec(containers=[container]),
        ),
    )
    batch.create_namespaced_job(
        name,
        k8s.V1Job(
            metadata=k8s.V1ObjectMeta(name="job-b"),
            spec=k8s.V1JobSpec(
                template=k8s.V1PodTemplateSpec(
                    spec=k8s.V1PodSpec(containers=[container], restart_policy="Never")
                )
            ),
        ),
    )

    namespace = core.read_namespace(name)
    pod = core.read_namespaced_pod("pod-b", name)
    job = batch.read_namespaced_job("job-b", name)
    assert namespace.status is not None
    assert namespace.status.phase == "Active"
    assert pod.metadata is not None
    assert pod.metadata.uid
    assert job.metadata is not None
    assert job.metadata.uid


def test_server_dry_run_creates_nothing(control_plane: ControlPlane, namespace: str) -> None:
    applied = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=pod_manifest("ghost", namespace)
    )
    lookup = control_plane.kubectl("get", "pod", "ghost", "-n", namespace, check=False)

    assert "created (server dry run)" in applied.stdout
    assert lookup.returncode != 0
    assert "NotFound" in lookup.stderr


# -- a loopback TLS webhook -----------------------------------------------------------------


class ThrowawayWebhook:
    """A validating webhook on 127.0.0.1 over TLS, in its own thread and event loop.

    Denies objects labelled `DENY_LABEL=true`, allows the rest, and records what it saw.
    """

    def __init__(self, cert: certs.CertPaths) -> None:
        self.cert = cert
        self.seen: list[dict[str, Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert.cert, self.cert.key)
        app = web.Application()
        app.router.add_post("/validate", self._validate)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _validate(self, request: web.Request) -> web.Response:
        review = await request.json()
        req = review["request"]
        metadata = (req.get("object") or {}).get("metadata", {})
        self.seen.append(
            {"name": metadata.get("name"), "kind": req["kind"]["kind"], "dryRun": req["dryRun"]}
        )
        if (metadata.get("labels") or {}).get(DENY_LABEL) == "true":
            message = f"throwaway webhook denies {metadata.get('name')}: {DENY_LABEL}=true"
            return web.json_response(admission_response(req["uid"], allowed=False, message=message))
        return web.json_response(admission_response(req["uid"]))


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[ThrowawayWebhook]:
    server = ThrowawayWebhook(certs.make_ca_and_cert(tmp_path / "webhook"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def register_webhook(plane: ControlPlane, webhook: ThrowawayWebhook, namespace: str) -> str:
    """A ValidatingWebhookConfiguration for pods in `namespace` only; returns its name."""
    name = f"throwaway-{namespace}"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "deny-labelled.e2e.nodelimits.test",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{webhook.port}/validate",
                    "caBundle": base64.b64encode(webhook.cert.ca_pem).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(config))
    return name


def wait_until_denied(plane: ControlPlane, manifest: str) -> str:
    """Dry-run `manifest` until the webhook denies it (bounded); return kubectl's stderr."""
    deadline = time.monotonic() + WEBHOOK_READY_TIMEOUT
    while True:
        result = plane.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
        if result.returncode != 0 and "denied the request" in result.stderr:
            return result.stderr
        if time.monotonic() > deadline:
            pytest.fail(f"webhook not in effect after {WEBHOOK_READY_TIMEOUT:g} s: {result}")
        time.sleep(0.5)


def test_apiserver_calls_a_loopback_tls_webhook_also_in_dry_run(
    control_plane: ControlPlane, namespace: str, webhook: ThrowawayWebhook
) -> None:
    denied = pod_manifest("bad", namespace, {DENY_LABEL: "true"})
    allowed = pod_manifest("good", namespace)
    config = register_webhook(control_plane, webhook, namespace)
    try:
        dry_run_denial = wait_until_denied(control_plane, denied)
        dry_run_allowed = control_plane.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=allowed
        )
        with pytest.raises(CommandFailed) as real_denial:
            control_plane.kubectl("apply", "-f", "-", input=denied)
        control_plane.kubectl("apply", "-f", "-", input=allowed)
    finally:
        control_plane.kubectl("delete", "validatingwebhookconfiguration", config)

    assert f"throwaway webhook denies bad: {DENY_LABEL}=true" in dry_run_denial
    assert "created (server dry run)" in dry_run_allowed.stdout
    assert "throwaway webhook denies bad" in real_denial.value.stderr
    assert control_plane.kubectl("get", "pod", "good", "-n", namespace).returncode == 0
    assert {"name": "bad", "kind": "Pod", "dryRun": True} in webhook.seen
    assert {"name": "good", "kind": "Pod", "dryRun": True} in webhook.seen
    assert {"name": "good", "kind": "Pod", "dryRun": False} in webhook.seen
    assert {"name": "bad", "kind": "Pod", "dryRun": False} in webhook.seen


# -- helm -----------------------------------------------------------------------------------


def write_chart(directory: Path, template_name: str, template: str) -> Path:
    chart = directory / "chart"
    (chart / template_name).parent.mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v2", "name": "probe", "version": "0.1.0"})
    )
    (chart / template_name).write_text(template)
    return chart


def test_helm_installs_a_chart_without_hooks(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    chart = write_chart(
        tmp_path,
        "templates/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n",
    )
    (chart / "values.yaml").write_text("greeting: hello\n")

    control_plane.helm("install", "probe", str(chart), "-n", namespace, "--no-hooks")
    releases = json.loads(control_plane.helm("list", "-n", namespace, "-o", "json").stdout)
    data = control_plane.kubectl(
        "get", "configmap", "probe-settings", "-n", namespace, "-o", "jsonpath={.data.greeting}"
    ).stdout

    assert [(r["name"], r["status"]) for r in releases] == [("probe", "deployed")]
    assert data == "hello"


# -- faults: fast, with log lines, nothing left behind -------------------------------------


def k8s_api_client(plane: ControlPlane) -> k8s.ApiClient:
    api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(plane.kubeconfig)
    )
    return api


def assert_all_gone(pids: list[int]) -> None:
    """No process with these ids runs (a zombie awaiting its reaper counts as gone)."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            alive.append(pid)
    assert not alive, f"processes left running: {alive}"


@pytest.mark.parametrize("component", ["etcd", "kube-apiserver"])
def test_a_port_in_use_fails_fast_naming_component_and_port(testbin: Path, component: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        pinned = {"etcd_port": port} if component == "etcd" else {"apiserver_port": port}
        plane = ControlPlane(testbin, **pinned)
        began = time.monotonic()

        with pytest.raises(ControlPlaneError) as failure:
            plane.start()

    assert time.monotonic() - began < 30
    assert failure.value.component == component
    assert f"already in use (its port: {port})" in str(failure.value)
    assert "address already in use" in failure.value.log_tail
    assert_all_gone(plane.pids())
    assert plane.workdir is not None
    assert not plane.workdir.exists()


def fake_bin_dir(directory: Path, testbin: Path | None, **scripts: str) -> Path:
    """A bin dir whose named binaries are the given scripts; the rest link to `testbin`."""
    directory.mkdir()
    for name in ("etcd", "kube-apiserver", "kubectl", "helm"):
        path = directory / name
        script = scripts.get(name.replace("-", "_"))
        if script is not None:
            path.write_text(script)
            path.chmod(0o755)
        elif testbin is not None:
            path.symlink_to(testbin / name)
    return directory


def test_etcd_that_exits_at_once_fails_fast(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "etcd").symlink_to("/bin/false")
    (bin_dir / "kube-apiserver").symlink_to("/bin/true")
    plane = ControlPlane(bin_dir)
    began = time.monotonic()

    with pytest.raises(ControlPlaneError) as failure:
        plane.start()

    assert time.monotonic() - began < 10
    assert failure.value.component == "etcd"
    assert "exited with code 1 during start-up" in str(failure.value)
    assert_all_gone(plane.pids())


def test_apiserver_that_exits_at_once_fails_fast_with_its_output(
    testbin: Path, tmp_path: Path
) -> None:
    script = "#!/bin/sh\necho 'fake apiserver: refusing to start' >&2\nexit 7\n"
    plane = ControlPlane(fake_bin_dir(tmp_path / "bin", testbin, kube_apiserver=script))
    began = time.monotonic()

    with pytest.raises(ControlPlaneError) as failure:
        plane.start()

    assert time.monotonic() - began < 30
    assert failure.value.component == "kube-apiserver"
    assert "exited with code 7" in str(failure.value)
    assert "fake apiserver: refusing to start" in str(failure.value)
    assert_all_gone(plane.pids())


def test_apiserver_never_ready_fails_at_the_bound_and_kills_its_children(
    testbin: Path, tmp_path: Path
) -> None:
    child_pid_file = tmp_path / "child.pid"
    script = (
        f"#!{sys.executable}\n"
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        f"open({str(child_pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('fake apiserver: up but never ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    plane = ControlPlane(
        fake_bin_dir(tmp_path / "bin", testbin, kube_apiserver=script),
        start_timeout=8,
        stop_timeout=2,
    )
    began = time.monotonic()

    with pytest.raises(ControlPlaneError) as failure:
        plane.start()

    assert time.monotonic() - began < 8 + 2 + 5
    assert failure.value.component == "kube-apiserver"
    assert "not ready within 8 s" in str(failure.value)
    assert "fake apiserver: up but never ready" in failure.value.log_tail
    assert_all_gone([*plane.pids(), int(child_pid_file.read_text())])


def test_start_removes_work_dirs_orphaned_by_a_killed_runner(tmp_path: Path) -> None:
    with subprocess.Popen(["true"]) as gone:
        gone.wait()
    with subprocess.Popen(["sleep", "30"]) as living:
        orphaned = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (orphaned / OWNER_FILE).write_text(str(gone.pid))
        in_use = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (in_use / OWNER_FILE).write_text(str(living.pid))
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "etcd").symlink_to("/bin/false")
        (bin_dir / "kube-apiserver").symlink_to("/bin/true")

        with pytest.raises(ControlPlaneError):
            ControlPlane(bin_dir).start()
        living.kill()

    assert not orphaned.exists()
    assert in_use.exists()
    shutil.rmtree(in_use)
