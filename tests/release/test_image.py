"""The image built from the Dockerfile, run as the chart's Deployment runs it, judging the
requests of a real kube-apiserver.

The chart is rendered with documented values only; devtools/imagerun.py turns its
Deployment into ``podman run`` (uid/gid 65532, read-only root filesystem, no capabilities,
the ConfigMap and credentials Secret at the chart's paths, /tmp as tmpfs); the apiserver
reaches it through the chart's own webhook configuration (``webhook.url`` mode, loopback).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.controlplane import ControlPlane, free_port
from devtools.image import Built, Podman, git_revision, project_version
from devtools.imagerun import CHART, DeploymentContainer, ServiceAccount, render_chart
from devtools.stack import RELEASE, RELEASE_NAMESPACE, SIM_ACCOUNT, SimulatorProcess

PY = "/opt/nodelimits/bin/python"


def in_image(podman: Podman, built: Built, code: str) -> str:
    return str(
        podman.run(
            "run",
            "--rm",
            "--read-only",
            "--network",
            "none",
            "--entrypoint",
            PY,
            built.ref,
            "-c",
            code,
        ).stdout
    )


def test_runtime_image_has_no_pip_or_setuptools_and_has_uvloop(
    podman: Podman, built_image: Built
) -> None:
    found = json.loads(
        in_image(
            podman,
            built_image,
            "import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None "
            "for m in ('pip', 'setuptools', 'wheel', 'uvloop', 'webhook', 'pytest', 'mypy')}))",
        )
    )
    assert found == {
        "pip": False,
        "setuptools": False,
        "wheel": False,
        "uvloop": True,
        "webhook": True,
        "pytest": False,
        "mypy": False,
    }


def test_every_module_in_the_venv_is_compiled(podman: Podman, built_image: Built) -> None:
    # The root filesystem is read-only: what is not compiled in the image is compiled on
    # every start. importlib.util.cache_from_source names the .pyc the interpreter looks for.
    missing = in_image(
        podman,
        built_image,
        "import importlib.util as u, pathlib\n"
        "for p in pathlib.Path('/opt/nodelimits/lib').rglob('*.py'):\n"
        "    if not pathlib.Path(u.cache_from_source(str(p))).exists(): print(p)\n",
    ).split()
    assert missing == []


def test_image_user_labels_and_entrypoint(podman: Podman, built_image: Built) -> None:
    info = podman.inspect(built_image.ref)
    config = info["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["nodelimits", "serve"]
    labels = info["Labels"]
    assert labels["org.opencontainers.image.version"] == project_version()
    assert labels["org.opencontainers.image.revision"] == git_revision()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == project_version() == chart["version"]


def test_version_in_the_image_reports_the_revision_it_was_built_from(
    podman: Podman, built_image: Built
) -> None:
    """No checkout in the image: the revision comes from the build argument (webhook/REVISION)."""
    printed = podman.run(
        "run", "--rm", "--read-only", "--network", "none", "--entrypoint", "nodelimits",
        built_image.ref, "version",
    ).stdout  # fmt: skip
    assert yaml.safe_load(printed) == {
        "version": project_version(),
        "revision": built_image.revision,
    }


def chart_values(simulator: SimulatorProcess, port: int, metrics_port: int) -> dict[str, Any]:
    """Documented values only (charts/nodelimits/values.yaml)."""
    return {
        # The chart's builtin certificates, which DeploymentContainer projects from the
        # rendered Secret; the self-managed ones (the default) need the server to write the
        # Secret through the apiserver: tests/e2e/test_selfcerts_online.py, tests/node.
        "certificates.mode": "builtin",
        "config.log_format": "json",
        "config.platform.base_url": simulator.url,
        "config.platform.center_url": simulator.url,
        "config.platform.aksk_url": simulator.url,
        "config.platform.token_source": "aksk",
        "config.platform.cluster_id": "11112",
        "config.server.host": "127.0.0.1",
        "config.server.port": port,
        "config.server.metrics_host": "127.0.0.1",
        "config.server.metrics_port": metrics_port,
        "config.server.shutdown_delay": 0,
        "credentials.accessKey": SIM_ACCOUNT["accessKey"],
        "credentials.secretKey": SIM_ACCOUNT["secretKey"],
        "credentials.user": SIM_ACCOUNT["user"],
    }


@pytest.fixture(scope="module")
def served(
    podman: Podman,
    built_image: Built,
    plane: ControlPlane,
    simulator: SimulatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DeploymentContainer]:
    port, metrics_port = free_port(), free_port()
    values = chart_values(simulator, port, metrics_port)
    helm = plane.bin_dir / "helm"
    docs = render_chart(helm, values, release=RELEASE, namespace=RELEASE_NAMESPACE)
    work = tmp_path_factory.mktemp("container")
    # what exists in the cluster before the pod starts: its namespace and service account
    plane.kubectl("create", "namespace", RELEASE_NAMESPACE)
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(accounts))
    pod_spec = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    token = plane.kubectl(
        "create", "token", pod_spec["serviceAccountName"], "-n", RELEASE_NAMESPACE
    ).stdout.strip()
    account = ServiceAccount(
        host="127.0.0.1",
        port=int(plane.url.rsplit(":", 1)[1]),
        ca_pem=Path(plane.ca_file).read_bytes(),
        token=token,
        namespace=RELEASE_NAMESPACE,
    )
    container = DeploymentContainer(
        built_image.ref, docs, work, podman=podman, service_account=account
    )
    try:
        container.start()
        container.wait_ready(f"http://127.0.0.1:{metrics_port}/readyz")
        ca = base64.b64encode(container.certs.ca.read_bytes()).decode()
        hook = render_chart(
            helm,
            {**values, "webhook.url": f"https://127.0.0.1:{port}", "webhook.caBundle": ca},
            release=RELEASE,
            namespace=RELEASE_NAMESPACE,
        )
        configs = [d for d in hook if d["kind"] == "ValidatingWebhookConfiguration"]
        assert len(configs) == 1
        plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(configs))
        yield container
    finally:
        container.stop()


def pod(name: str, cpu: str, group: str = "TeslaM40") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"nodelimits.io/resource-group": group},
        },
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}
            ]
        },
    }


def create(plane: ControlPlane, obj: dict[str, Any]) -> tuple[int, str]:
    import time

    # The apiserver picks up a new webhook configuration within a second or so: until the
    # oversized probe is denied, nothing else is judged by the image.
    result = plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
    )
    for _ in range(100):
        if obj["metadata"]["name"] != "probe-too-big" or "nodelimits:" in result.stderr:
            break
        time.sleep(0.3)
        result = plane.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
        )
    return result.returncode, result.stdout + result.stderr


def test_the_apiserver_gets_verdicts_from_the_image(
    served: DeploymentContainer, plane: ControlPlane, podman: Podman
) -> None:
    code, out = create(plane, pod("probe-too-big", "100"))
    assert code != 0
    assert "denied the request: nodelimits: Pod default/probe-too-big does not fit" in out
    assert "cpu 100 > 40" in out
    code, out = create(plane, pod("probe-fits", "2"))
    assert code == 0, out
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "job-too-big", "namespace": "default"},
        "spec": {
            "template": {
                **pod("x", "2"),
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "c",
                            "image": "busybox",
                            "resources": {"limits": {"nvidia.com/gpu": "4"}},
                        }
                    ],
                },
            }
        },
    }
    job["spec"]["template"].pop("apiVersion")
    job["spec"]["template"].pop("kind")
    code, out = create(plane, job)
    assert code != 0
    assert "nodelimits: Job default/job-too-big does not fit" in out
    decisions = [json.loads(line) for line in served.logs().splitlines() if line.startswith("{")]
    assert any("decision" in d for d in decisions), served.logs()[-2000:]


def test_the_container_runs_as_the_deployment_says(
    served: DeploymentContainer, podman: Podman
) -> None:
    ids = podman.run("exec", served.name, "id", "-u", check=False)
    if ids.returncode != 0:  # no coreutils `id` in the image: ask Python
        ids = podman.run("exec", served.name, PY, "-c", "import os; print(os.getuid())")
    assert ids.stdout.strip() == "65532"
    write = podman.run("exec", served.name, PY, "-c", "open('/opt/nodelimits/x', 'w')", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    tmp = podman.run("exec", served.name, PY, "-c", "open('/tmp/x', 'w').write('ok')", check=False)
    assert tmp.returncode == 0, tmp.stderr
    config = podman.run(
        "exec", served.name, PY, "-c", "print(open('/etc/nodelimits/config.yaml').read())"
    ).stdout
    assert yaml.safe_load(config)["platform"]["token_source"] == "aksk"
    assert any(a.startswith("--read-only") for a in served.argv)
    assert (
        Path(served.workdir, "volumes", "credentials", "accessKey").stat().st_mode & 0o777 == 0o440
    )
