"""Gatekeeper and Kyverno as webhook processes against the bench's control plane.

Both run out of cluster, as their own docs do for development: the binary from
tools/peers/build.sh, the apiserver's admin kubeconfig, their CRDs from the manifest their
module ships (copied next to the binaries), a serving certificate from devtools/certs.py
(their own certificate rotation off), and a ValidatingWebhookConfiguration that the bench
applies and deletes per configuration, with the same rules (Pods and Jobs) and the same
has-resource-group matchCondition as the VAP, so the apiserver calls each for the same
requests. The policies are bench/peers.py's.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import yaml

from bench import bench_apiserver, peers
from devtools.certs import make_ca_and_cert
from devtools.controlplane import ControlPlane, free_port
from devtools.stack import Process

__all__ = ["SUPPORTED", "start"]

SUPPORTED = ("gatekeeper",)
"""The peers this module runs as webhooks (Kyverno: see docs/performance.md)."""

START_TIMEOUT = 180.0
GATEKEEPER_NAMESPACE = "gatekeeper-system"
GATEKEEPER_POD = "gatekeeper-bench-0"


def start(
    name: str, plane: ControlPlane, work: Path, bin_dir: Path, namespace: str
) -> bench_apiserver.Config:
    if name == "gatekeeper":
        return _gatekeeper(plane, work, bin_dir)
    raise RuntimeError(f"{name}: not supported as a running webhook yet (see docs/performance.md)")


def _crds(manifest: Path) -> str:
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if isinstance(d, dict)]
    return yaml.safe_dump_all([d for d in docs if d.get("kind") == "CustomResourceDefinition"])


def _webhook_configuration(name: str, url: str, ca_pem: bytes) -> str:
    key = f"'{peers.GROUP_ANNOTATION}'"
    has_group = (
        f"(has(object.metadata.annotations) && {key} in object.metadata.annotations) || "
        f"(object.kind != 'Pod' && has(object.spec.template.metadata) && "
        f"has(object.spec.template.metadata.annotations) && "
        f"{key} in object.spec.template.metadata.annotations)"
    )
    rules = [
        {
            "apiGroups": [group],
            "apiVersions": ["v1"],
            "resources": [resource],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
        for group, resource in (("", "pods"), ("batch", "jobs"))
    ]
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"bench-{name}"},
        "webhooks": [
            {
                "name": f"validation.{name}.bench.nodelimits.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
                "rules": rules,
                "matchConditions": [{"name": "has-resource-group", "expression": has_group}],
            }
        ],
    }
    return yaml.safe_dump(config)


def _wait(what: str, check: Any, process: Process, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{what}: {process.name} exited\n{process.tail()}")
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f} s\n{process.tail()}")


def _gatekeeper(plane: ControlPlane, work: Path, bin_dir: Path) -> bench_apiserver.Config:
    plane.kubectl("create", "namespace", GATEKEEPER_NAMESPACE)
    # Gatekeeper owns the status objects it writes by its own Pod: one must exist (it stays
    # Pending, there are no nodes).
    own_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": GATEKEEPER_POD, "namespace": GATEKEEPER_NAMESPACE},
        "spec": {"containers": [{"name": "manager", "image": "gatekeeper:bench"}]},
    }
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(own_pod))
    plane.kubectl("apply", "--server-side", "-f", "-", input=_crds(bin_dir / "gatekeeper.yaml"))
    certs = make_ca_and_cert(work / "gatekeeper-tls")
    cert_dir = work / "gatekeeper-certs"
    cert_dir.mkdir()
    (cert_dir / "tls.crt").write_bytes(certs.cert.read_bytes())
    (cert_dir / "tls.key").write_bytes(certs.key.read_bytes())
    port, health = free_port(), free_port()
    argv = [
        str(bin_dir / "gatekeeper"),
        f"--port={port}",
        "--host=127.0.0.1",
        f"--cert-dir={cert_dir}",
        "--disable-cert-rotation",
        "--operation=webhook",
        "--operation=generate",  # creates the constraint CRD of a template
        f"--health-addr=127.0.0.1:{health}",
        f"--prometheus-port={free_port()}",
        "--log-level=WARNING",
        f"--exempt-namespace={GATEKEEPER_NAMESPACE}",
        "--disable-opa-builtin=http.send",
        "--enable-external-data=false",
        "--enable-generator-resource-expansion=false",
    ]
    env = plane.env()
    env.update(POD_NAMESPACE=GATEKEEPER_NAMESPACE, POD_NAME=GATEKEEPER_POD)
    process = Process("gatekeeper", argv, work / "gatekeeper.log", env)
    try:
        import urllib.request

        def ready() -> bool:
            try:
                url = f"http://127.0.0.1:{health}/readyz"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        _wait("gatekeeper /readyz", ready, process)
        manifests = list(yaml.safe_load_all(peers.gatekeeper_manifests()))
        plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifests[0]))
        crd = "crd/nodelimitspeer.constraints.gatekeeper.sh"

        def constraint_kind() -> bool:
            done = plane.kubectl("get", crd, check=False)
            return done.returncode == 0

        _wait("the ConstraintTemplate's constraint kind", constraint_kind, process)
        plane.kubectl("wait", "--for=condition=established", crd, "--timeout=60s")

        def applied() -> bool:
            done = plane.kubectl(
                "apply", "-f", "-", input=yaml.safe_dump(manifests[1]), check=False
            )
            return done.returncode == 0

        _wait("the Constraint", applied, process)
    except BaseException:
        process.stop()
        raise
    url = f"https://127.0.0.1:{port}/v1/admit"
    return bench_apiserver.Config(
        "gatekeeper",
        _webhook_configuration("gatekeeper", url, certs.ca.read_bytes()),
        denial=peers.POLICY_NAME,
        pid=process.proc.pid,
        stop=process.stop,
    )
