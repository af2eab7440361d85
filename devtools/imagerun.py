"""Run the built image as the chart's Deployment runs it, with podman instead of a kubelet.

The chart is rendered (``helm template``) with the given values; its Deployment says how
the container runs, and this module does the same: the container's user and group, a
read-only root filesystem, no capabilities, no privilege escalation, its environment and
arguments, and each volume mount at its path: the rendered ConfigMap's and Secrets' data
as files (``subPath`` mounts as single files), ``emptyDir`` as a tmpfs. The one thing it
replaces is the serving certificate: the chart's built-in one names the in-cluster Service,
while the apiserver here calls ``https://127.0.0.1:PORT``, so the ``tls`` volume gets a
certificate for 127.0.0.1 with the same file names. The network is the host's (loopback).

What the kubelet adds to every pod is added too when an apiserver is given: the service
account's token, the cluster CA and the namespace at
/var/run/secrets/kubernetes.io/serviceaccount, and KUBERNETES_SERVICE_HOST/PORT (kopf
logs in with them, as in the cluster).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devtools.certs import CertPaths, make_ca_and_cert
from devtools.image import ImageUnavailable, Podman

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "nodelimits"
READY_TIMEOUT = 60.0


def render_chart(
    helm: Path, values: Mapping[str, Any], *, release: str, namespace: str
) -> list[dict[str, Any]]:
    import subprocess

    argv = [str(helm), "template", release, str(CHART), "--namespace", namespace]
    for key, value in values.items():
        argv += ["--set-json", f"{key}={json.dumps(value)}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]


def _find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    for doc in docs:
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name):
            return doc
    raise KeyError(f"the chart rendered no {kind} {name or ''}")


@dataclass(frozen=True)
class ServiceAccount:
    """What the kubelet projects into a pod for its service account."""

    host: str
    port: int
    ca_pem: bytes
    token: str
    namespace: str

    def podman_args(self, into: Path, pod: Mapping[str, Any]) -> list[str]:
        into.mkdir(parents=True, exist_ok=True)
        group = int(pod.get("securityContext", {}).get("fsGroup", 0))
        files = {
            "token": self.token.encode(),
            "ca.crt": self.ca_pem,
            "namespace": self.namespace.encode(),
        }
        for name, data in files.items():
            (into / name).write_bytes(data)
            os.chown(into / name, 0, group)
            (into / name).chmod(0o440)
        return [
            "--volume",
            f"{into}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
            "--env",
            f"KUBERNETES_SERVICE_HOST={self.host}",
            "--env",
            f"KUBERNETES_SERVICE_PORT={self.port}",
        ]


class DeploymentContainer:
    """One replica of the chart's Deployment as a podman container."""

    def __init__(
        self,
        ref: str,
        docs: list[dict[str, Any]],
        workdir: Path,
        *,
        podman: Podman | None = None,
        certs: CertPaths | None = None,
        service_account: ServiceAccount | None = None,
    ) -> None:
        self.service_account = service_account
        self.ref, self.docs, self.workdir = ref, docs, workdir
        self.podman = podman or Podman.default()
        self.certs = certs or make_ca_and_cert(workdir / "tls-src")
        self.name = f"nodelimits-test-{secrets.token_hex(4)}"
        deployment = _find(docs, "Deployment")
        self.pod = deployment["spec"]["template"]["spec"]
        self.container = self.pod["containers"][0]
        self.argv: list[str] = []

    def _files(self, volume: Mapping[str, Any], into: Path) -> None:
        """A volume's files, as the kubelet would project them (keys, items, modes)."""
        into.mkdir(parents=True)
        if "emptyDir" in volume:
            return
        group = int(self.pod.get("securityContext", {}).get("fsGroup", 0))
        if volume["name"] == "tls":
            data = {"tls.crt": self.certs.cert.read_bytes(), "tls.key": self.certs.key.read_bytes()}
            mode = int(volume["secret"].get("defaultMode", 0o644))
        elif "configMap" in volume:
            cm = _find(self.docs, "ConfigMap", volume["configMap"]["name"])
            data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
            mode = int(volume["configMap"].get("defaultMode", 0o644))
        elif "secret" in volume:
            secret = _find(self.docs, "Secret", volume["secret"]["secretName"])
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            data |= {k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()}
            mode = int(volume["secret"].get("defaultMode", 0o644))
        else:
            raise ImageUnavailable(f"volume {volume['name']}: kind not supported", missing=False)
        source = volume.get("secret") or volume.get("configMap") or {}
        items = source.get("items")
        paths = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
        for key, path in paths.items():
            target = into / path
            target.write_bytes(data[key])
            os.chown(target, 0, group)
            target.chmod(mode)

    def start(self) -> DeploymentContainer:
        volumes = {v["name"]: v for v in self.pod.get("volumes", [])}
        sc = {**self.pod.get("securityContext", {}), **self.container.get("securityContext", {})}
        argv = ["run", "--detach", "--name", self.name, "--network", "host"]
        argv += ["--user", f"{sc.get('runAsUser', 0)}:{sc.get('runAsGroup', 0)}"]
        if "fsGroup" in sc:
            argv += ["--group-add", str(sc["fsGroup"])]
        if sc.get("readOnlyRootFilesystem"):
            argv.append("--read-only")
        if "ALL" in sc.get("capabilities", {}).get("drop", []):
            argv += ["--cap-drop", "ALL"]
        if sc.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt", "no-new-privileges"]
        for env in self.container.get("env", []):
            argv += ["--env", f"{env['name']}={env['value']}"]
        if self.service_account is not None:
            argv += self.service_account.podman_args(self.workdir / "serviceaccount", self.pod)
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                argv += ["--tmpfs", f"{mount['mountPath']}:rw,nosuid,nodev,size=64m,mode=1777"]
                continue
            src = self.workdir / "volumes" / mount["name"]
            if not src.exists():
                self._files(volume, src)
            if "subPath" in mount:
                src = src / mount["subPath"]
            argv += ["--volume", f"{src}:{mount['mountPath']}:ro"]
        if "command" in self.container:
            argv += ["--entrypoint", json.dumps(self.container["command"])]
        argv.append(self.ref)
        argv += self.container.get("args", [])
        self.argv = argv
        self.podman.run(*argv)
        return self

    def logs(self) -> str:
        result = self.podman.run("logs", self.name, check=False)
        return (result.stdout or "") + (result.stderr or "")

    def running(self) -> bool:
        result = self.podman.run(
            "inspect", "--format", "{{.State.Running}}", self.name, check=False
        )
        return result.stdout.strip() == "true"

    def wait_ready(self, url: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise ImageUnavailable(
                    f"container exited before ready:\n{self.logs()[-3000:]}", missing=False
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url, timeout=2) as resp,  # noqa: S310 - loopback
            ):
                if resp.status == 200:
                    return
            time.sleep(0.3)
        raise ImageUnavailable(
            f"not ready within {timeout:.0f} s:\n{self.logs()[-3000:]}", missing=False
        )

    def stop(self) -> None:
        self.podman.run("rm", "--force", "--time", "5", self.name, check=False)


@contextlib.contextmanager
def deployment_container(
    ref: str, docs: list[dict[str, Any]], *, ready_url: str, podman: Podman | None = None
) -> Iterator[DeploymentContainer]:
    work = Path(tempfile.mkdtemp(prefix="nodelimits-image-"))
    container = DeploymentContainer(ref, docs, work, podman=podman)
    try:
        container.start()
        container.wait_ready(ready_url)
        yield container
    finally:
        container.stop()
        shutil.rmtree(work, ignore_errors=True)
