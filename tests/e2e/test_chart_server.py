"""The chart's webhook configuration, pointed at `nodelimits serve` running on loopback
(`webhook.url`), through the real kube-apiserver.

The server runs with the chart's own rendered config.yaml (read back from the installed
ConfigMap) and the token of a ServiceAccount with no grant (`kubectl create token`; out of
cluster the chart renders none): that it starts, becomes ready and answers proves the
chart's (empty) RBAC is sufficient;
tests/e2e/test_chart.py proves it minimal. Every kind is sent an oversized object, so a
wrong path (which kopf would silently allow) fails here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import certs
from devtools.builders import limits_entry
from devtools.controlplane import ControlPlane, free_port
from tests.chart.chart import CHART, HANDLERS

GROUP = "TeslaM40"
ANNOTATION = "nodelimits.io/resource-group"
LIMITS = {"resourceGroups": [limits_entry(GROUP)]}
SERVE = "from webhook.cli import main; main()"
"""`nodelimits serve` without relying on the console script being on PATH."""
READY_TIMEOUT = 60.0
WEBHOOK_SETTLE = 10.0
"""Seconds to wait for a new webhook configuration to take effect in the apiserver."""


@dataclass
class Served:
    plane: ControlPlane
    namespace: str  # where the tests' objects go
    release_namespace: str  # where the chart is installed: always exempt
    excluded: str  # exempt by webhook.excludeNamespaces
    metrics_url: str
    log: Path

    def requests_seen(self) -> float:
        """Sum of nodelimits_admission_requests_total: what the server was sent."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("nodelimits_admission_requests_total")
        )

    def apply(self, obj: dict[str, Any], namespace: str | None = None, *, dry_run: bool = True):
        args = ["apply", "-n", namespace or self.namespace, "-f", "-"]
        if dry_run:
            args.append("--dry-run=server")
        return self.plane.kubectl(*args, input=json.dumps(obj), check=False)


def container(cpu: str) -> dict[str, Any]:
    return {
        "name": "main",
        "image": "busybox",
        "command": ["true"],
        "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}},
    }


def pod_template(cpu: str, annotated: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {"app": "t"}}
    if annotated:
        meta["annotations"] = {ANNOTATION: GROUP}
    return {
        "metadata": meta,
        "spec": {"containers": [container(cpu)], "restartPolicy": "Never"},
    }


def workload(kind: str, cpu: str, annotated: bool = True) -> dict[str, Any]:
    """An object of `kind` whose pods ask for `cpu` cores, annotated on the pod (template)."""
    name = f"{kind.lower()}-{secrets.token_hex(2)}"
    template = pod_template(cpu, annotated)
    meta = {"name": name}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta | template["metadata"],
                "spec": template["spec"]}  # fmt: skip
    if kind == "Job":
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                "spec": {"template": template}}  # fmt: skip
    if kind == "CronJob":
        job = {"spec": {"template": template}}
        return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
                "spec": {"schedule": "0 * * * *", "jobTemplate": job}}  # fmt: skip
    if kind == "PodTemplate":  # its pod is at template: a PodTemplate has no spec
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "template": template}
    template["spec"]["restartPolicy"] = "Always"
    if kind == "ReplicationController":  # core/v1: a plain label map for a selector
        return {"apiVersion": "v1", "kind": kind, "metadata": meta,
                "spec": {"selector": {"app": "t"}, "template": template}}  # fmt: skip
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "t"}}, "template": template}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def token_kubeconfig(plane: ControlPlane, namespace: str, account: str, path: Path) -> Path:
    token = plane.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout
    ca = base64.b64encode(plane.ca_file.read_bytes()).decode()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "e2e",
                        "cluster": {"server": plane.url, "certificate-authority-data": ca},
                    }
                ],
                "users": [{"name": account, "user": {"token": token.strip()}}],
                "contexts": [{"name": "sa", "context": {"cluster": "e2e", "user": account}}],
                "current-context": "sa",
            }
        )
    )
    return path


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"nodelimits serve exited {server.returncode}:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            if response.status == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"nodelimits serve not ready in {READY_TIMEOUT} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def served(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("served")
    suffix = secrets.token_hex(3)
    namespace, release = f"nl-work-{suffix}", f"nl-{suffix}"
    release_ns, excluded = f"nl-release-{suffix}", f"nl-exempt-{suffix}"
    for ns in (namespace, release_ns, excluded):
        control_plane.kubectl("create", "namespace", ns)
    tls = certs.make_ca_and_cert(tmp / "tls", ("127.0.0.1",), name="webhook")
    limits = tmp / "limits.yaml"
    limits.write_text(yaml.safe_dump(LIMITS))
    port, metrics_port = free_port(), free_port()
    values = {
        "webhook": {
            "url": f"https://127.0.0.1:{port}",
            "caBundle": base64.b64encode(tls.ca_pem).decode(),
            "excludeNamespaces": [excluded],
        },
        "config": {"platform": {"limits_file": str(limits)}},
    }
    (tmp / "values.yaml").write_text(yaml.safe_dump(values))
    control_plane.helm(
        "install",
        release,
        str(CHART),
        "-n",
        release_ns,
        "--no-hooks",
        "-f",
        str(tmp / "values.yaml"),
    )
    try:
        config = tmp / "config.yaml"
        config.write_text(
            control_plane.kubectl(
                "get", "configmap", f"{release}-nodelimits", "-n", release_ns,
                "-o", "jsonpath={.data.config\\.yaml}",
            ).stdout
        )  # fmt: skip
        # Out of cluster the chart renders no ServiceAccount (no pod of its runs): the
        # server gets one with no grant, as the chart's in-cluster account has none but DRA's.
        account = f"{release}-nodelimits"
        control_plane.kubectl("create", "serviceaccount", account, "-n", release_ns)
        kubeconfig = token_kubeconfig(control_plane, release_ns, account, tmp / "sa.kubeconfig")
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "NODELIMITS_SERVER__HOST": "127.0.0.1",
            "NODELIMITS_SERVER__PORT": str(port),
            "NODELIMITS_SERVER__METRICS_HOST": "127.0.0.1",
            "NODELIMITS_SERVER__METRICS_PORT": str(metrics_port),
            "NODELIMITS_SERVER__CERT_FILE": str(tls.cert),
            "NODELIMITS_SERVER__KEY_FILE": str(tls.key),
        }
        log = tmp / "serve.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-c", SERVE, "serve", "--config", str(config)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{metrics_port}/readyz", server, log)
            metrics = f"http://127.0.0.1:{metrics_port}/metrics"
            yield Served(control_plane, namespace, release_ns, excluded, metrics, log)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
    finally:
        control_plane.helm("uninstall", release, "-n", release_ns, "--no-hooks", check=False)


def denied_until_settled(served: Served, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Apply until the webhook answers: a new configuration takes a moment to be used."""
    deadline = time.monotonic() + WEBHOOK_SETTLE
    while True:
        result = served.apply(obj)
        if result.returncode != 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_oversized_job_is_rejected_through_the_apiserver(served: Served) -> None:
    result = denied_until_settled(served, workload("Job", cpu="100"))
    assert result.returncode != 0
    assert 'admission webhook "jobs.nodelimits.io" denied the request' in result.stderr
    assert re.search(
        rf'nodelimits: Job {served.namespace}/\S+ does not fit .*"{GROUP}"', result.stderr
    )
    assert "cpu" in result.stderr


def test_job_that_fits_is_admitted(served: Served) -> None:
    denied_until_settled(served, workload("Job", cpu="100"))
    before = served.requests_seen()
    result = served.apply(workload("Job", cpu="2"))
    assert result.returncode == 0, result.stderr
    assert served.requests_seen() == before + 1


CORE_KINDS = list(dict.fromkeys(h[0] for h in HANDLERS if "." not in h[0]))
"""The built-in API kinds; the kind table's (Kind.group) need their CRDs, installed by
tests/e2e/test_workload_kinds.py, which applies each of them through its webhook."""


@pytest.mark.parametrize("kind", CORE_KINDS)
def test_every_kind_reaches_its_handler(served: Served, kind: str) -> None:
    plural = next(h[2] for h in HANDLERS if h[0] == kind)
    result = denied_until_settled(served, workload(kind, cpu="100"))
    assert f'admission webhook "{plural}.nodelimits.io" denied the request' in result.stderr
    assert "nodelimits: " in result.stderr


def test_pod_resize_reaches_its_handler(served: Served) -> None:
    denied_until_settled(served, workload("Job", cpu="100"))
    pod = workload("Pod", cpu="1")
    created = served.apply(pod, dry_run=False)
    assert created.returncode == 0, created.stderr
    patch = {"spec": {"containers": [container("100")]}}
    result = served.plane.kubectl(
        "patch", "pod", pod["metadata"]["name"], "-n", served.namespace,
        "--subresource=resize", "--type=strategic", "-p", json.dumps(patch), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert 'admission webhook "pods-resize.nodelimits.io" denied the request' in result.stderr


@pytest.mark.parametrize("where", ["excluded", "kube-system", "release"])
def test_exempt_namespaces_are_never_sent(served: Served, where: str) -> None:
    denied_until_settled(served, workload("Job", cpu="100"))
    namespace = {
        "excluded": served.excluded,
        "kube-system": "kube-system",
        "release": served.release_namespace,
    }[where]
    before = served.requests_seen()
    result = served.apply(workload("Pod", cpu="100"), namespace)
    assert result.returncode == 0, result.stderr
    assert served.requests_seen() == before


def test_unannotated_objects_are_never_sent(served: Served) -> None:
    denied_until_settled(served, workload("Job", cpu="100"))
    before = served.requests_seen()
    result = served.apply(workload("Pod", cpu="100", annotated=False))
    assert result.returncode == 0, result.stderr
    assert served.requests_seen() == before


def test_a_cronjob_annotated_on_its_job_template_is_sent(served: Served) -> None:
    """Its Jobs carry spec.jobTemplate.metadata, which the server reads: the CEL
    matchCondition must send such a CronJob too (nodelimits check rejects it offline)."""
    cronjob = workload("CronJob", cpu="100", annotated=False)
    cronjob["spec"]["jobTemplate"]["metadata"] = {"annotations": {ANNOTATION: GROUP}}
    result = denied_until_settled(served, cronjob)
    assert 'admission webhook "cronjobs.nodelimits.io" denied the request' in result.stderr


def test_server_needed_no_permission_it_lacked(served: Served) -> None:
    denied_until_settled(served, workload("Job", cpu="100"))
    log = served.log.read_text()
    # Any API call the ServiceAccount may not make shows as "403 Forbidden" /
    # APIForbiddenError. (Not a bare "403": request UIDs and durations contain those digits.)
    assert "forbidden" not in log.lower()
