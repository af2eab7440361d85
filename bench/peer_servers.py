"""Gatekeeper and Kyverno as webhook processes against the bench's control plane.

Both run out of cluster, as their own docs do for development: the binary from
tools/peers/build.sh, the apiserver's admin kubeconfig, and their CRDs from the manifest
their module ships (copied next to the binaries). The policies are bench/peers.py's.

* Gatekeeper: a serving certificate from devtools/certs.py (its own rotation off), and a
  ValidatingWebhookConfiguration that the bench applies and deletes per configuration, with
  the same rules (Pods and Jobs) and the same has-resource-group matchCondition as the VAP,
  so the apiserver calls it for the same requests.
* Kyverno: as its install manifest runs it (its ``kyverno`` and ``kyverno-metrics``
  ConfigMaps, its default flags), except that it is out of cluster (``--serverIP``): it
  generates its own CA and serving certificate into Secrets and registers its own
  webhooks, for the kinds the ClusterPolicy matches, while the policy exists. Applying and
  deleting the ClusterPolicy is what turns it on and off. Admission reports (an
  EphemeralReport written per admitted create, for a reports controller not run here) and
  the generation of a ValidatingAdmissionPolicy from the policy are off: the bench measures
  the webhook's check, and the VAP has its own configuration.
"""

from __future__ import annotations

import base64
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench import bench_apiserver, peers
from devtools.certs import make_ca_and_cert
from devtools.controlplane import ControlPlane, free_port
from devtools.stack import Process

__all__ = ["SUPPORTED", "start"]

SUPPORTED = ("gatekeeper", "kyverno")
"""The peers this module runs as webhooks."""

START_TIMEOUT = 180.0
GATEKEEPER_NAMESPACE = "gatekeeper-system"
GATEKEEPER_POD = "gatekeeper-bench-0"
KYVERNO_NAMESPACE = "kyverno"
KYVERNO_DEPLOYMENT = "kyverno-admission-controller"
KYVERNO_MANAGED = "webhook.kyverno.io/managed-by=kyverno"
"""The label on every webhook configuration Kyverno registers."""


def start(
    name: str, plane: ControlPlane, work: Path, bin_dir: Path, namespace: str
) -> bench_apiserver.Config:
    if name == "gatekeeper":
        return _gatekeeper(plane, work, bin_dir)
    if name == "kyverno":
        return _kyverno(plane, work, bin_dir)
    raise RuntimeError(f"{name}: not supported as a running webhook yet (see docs/performance.md)")


def _manifests(manifest: Path, kind: str) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all(manifest.read_text())
    return [d for d in docs if isinstance(d, dict) and d.get("kind") == kind]


def _crds(manifest: Path) -> str:
    return yaml.safe_dump_all(_manifests(manifest, "CustomResourceDefinition"))


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


def _ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    """Whether ``url`` answers 200 (a loopback health endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except OSError:
        return False


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
        _wait("gatekeeper /readyz", lambda: _ok(f"http://127.0.0.1:{health}/readyz"), process)
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


def _kyverno(plane: ControlPlane, work: Path, bin_dir: Path) -> bench_apiserver.Config:
    manifest = bin_dir / "kyverno.yaml"
    plane.kubectl("create", "namespace", KYVERNO_NAMESPACE)
    plane.kubectl("apply", "--server-side", "-f", "-", input=_crds(manifest))
    # Its configuration as installed: resource filters, the webhooks' namespaceSelector
    # (not kube-system, not kyverno), metrics exposure.
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(_manifests(manifest, "ConfigMap")))
    port = free_port()
    argv = [
        str(bin_dir / "kyverno"),
        f"--kubeconfig={plane.kubeconfig}",
        # Out of cluster: webhooks by URL (https://<serverIP><path>), a certificate for
        # this address, no Deployment to watch for rolling updates.
        f"--serverIP=127.0.0.1:{port}",
        "--webhookServerHost=127.0.0.1",
        f"--webhookServerPort={port}",
        f"--servicePort={port}",
        # The install manifest's flags (config/install-latest-testing.yaml) ...
        "--caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca",
        "--tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair",
        "--autoUpdateWebhooks=true",
        "--omitEvents=PolicyApplied,PolicySkipped",
        "--enablePolicyException=false",
        "--loggingFormat=text",
        "--v=2",
        "--disableLogColor",  # a log file, not a terminal
        # ... less what the bench does not measure (see the module docstring).
        "--admissionReports=false",
        "--generateValidatingAdmissionPolicy=false",
        "--metricsHost=127.0.0.1",
        f"--metricsPort={free_port()}",
        f"--controllerRuntimeMetricsAddress=127.0.0.1:{free_port()}",
    ]
    env = plane.env()
    env.update(
        KYVERNO_NAMESPACE=KYVERNO_NAMESPACE,
        KYVERNO_POD_NAME="kyverno-admission-controller-bench",
        KYVERNO_SERVICEACCOUNT_NAME="kyverno-admission-controller",
        KYVERNO_ROLE_NAME="kyverno:admission-controller",
        KYVERNO_SVC="kyverno-svc",
        KYVERNO_DEPLOYMENT=KYVERNO_DEPLOYMENT,
        INIT_CONFIG="kyverno",
        METRICS_CONFIG="kyverno-metrics",
    )
    process = Process("kyverno", argv, work / "kyverno.log", env)

    def stop() -> None:
        process.stop()
        # Out of cluster it never counts as going down, so it leaves its webhook
        # configurations behind (their URL now answers nobody).
        plane.kubectl(
            "delete",
            "validatingwebhookconfiguration,mutatingwebhookconfiguration",
            "-l",
            KYVERNO_MANAGED,
            "--ignore-not-found",
            check=False,
        )

    try:
        # Readiness is "its own certificates are valid", served over TLS with them: the
        # probe does not verify the chain (loopback, and the CA is its own).
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        url = f"https://127.0.0.1:{port}/health/readiness"
        _wait("kyverno /health/readiness", lambda: _ok(url, unverified), process)

        def policy_webhook() -> bool:
            # Leader: the policy webhook is registered, so the ClusterPolicy can be applied.
            done = plane.kubectl(
                "get",
                "validatingwebhookconfiguration",
                "kyverno-policy-validating-webhook-cfg",
                check=False,
            )
            return done.returncode == 0

        _wait("kyverno's policy webhook", policy_webhook, process)
    except BaseException:
        stop()
        raise
    return bench_apiserver.Config(
        "kyverno",
        peers.kyverno_manifests(),
        denial=peers.POLICY_NAME,
        pid=process.proc.pid,
        stop=stop,
    )
