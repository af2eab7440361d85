"""certificates.mode selfManaged on the real kube-apiserver (issue 17, point 1).

The chart is installed in-cluster (`certificates.mode: selfManaged`, service clientConfig,
no caBundle, the empty `<fullname>-certs` Secret, RBAC by resourceNames). The replicas are
`nodelimits serve` processes on loopback with the chart's rendered config.yaml and the
chart's ServiceAccount token, so every call they make goes through that RBAC. The
apiserver reaches them through the chart's Service, turned into an ExternalName Service
naming a loopback address (there are no nodes, endpoints or kube-proxy here): it dials
that address and verifies the certificate against the caBundle, for the Service's DNS
name, exactly as it would a pod behind the Service.

Replicas listen on the Service's port; two replicas on one address share it
(SO_REUSEPORT, as the listener binds), so the apiserver's connections reach both, like
two pods behind one Service. Short validities come from the server's own settings, in
seconds (`NODELIMITS_CERTIFICATES__DURATION`, ...), which the chart fills in days.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import socket
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from devtools.builders import container, limits_entry, pod
from devtools.controlplane import ControlPlane, free_port
from devtools.faultmatrix import parse_metrics
from devtools.stack import Process, wait_until
from tests.chart.chart import CHART
from tests.e2e.test_chart_server import SERVE, token_kubeconfig
from webhook.config import load_settings
from webhook.metrics import Metrics
from webhook.serve.selfcerts import CertificateManager, Material

pytestmark = pytest.mark.e2e

GROUP = "TeslaM40"
WAIT = 60.0
"""Seconds any one awaited state may take (a cold start of the server takes a few)."""

LONG = {
    "NODELIMITS_CERTIFICATES__CHECK_INTERVAL": "1",
}
"""The chart's validities (90 days, CA 5 years); the Secret looked at every second."""
SHORT = {
    **LONG,
    "NODELIMITS_CERTIFICATES__DURATION": "10",
    "NODELIMITS_CERTIFICATES__RENEW_BEFORE": "5",
    "NODELIMITS_CERTIFICATES__CA_DURATION": "30",
    "NODELIMITS_CERTIFICATES__CA_RENEW_BEFORE": "16",
    "NODELIMITS_CERTIFICATES__PROPAGATION": "3",
}
"""A serving certificate renewed every ~5 s; a new CA staged ~14 s after the last, signing
3 s later (the staged and the retired CA both trusted meanwhile)."""

T = TypeVar("T")


def poll(what: str, check: Callable[[], T | None], replicas: list[Replica]) -> T:
    """``check()``'s first truthy answer within :data:`WAIT`; fails naming ``what`` with the
    replicas' log tails."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for replica in replicas:
            if not replica.process.alive():
                pytest.fail(f"{what}: {replica.name} exited\n{replica.process.tail()}")
        found = check()
        if found:
            return found
        time.sleep(0.2)
    tails = "\n".join(f"--- {r.name}\n{r.process.tail()}" for r in replicas)
    pytest.fail(f"{what}: not within {WAIT:.0f}s\n{tails}")


@dataclass
class Replica:
    """One `nodelimits serve` process, as one pod of the Deployment would run."""

    name: str
    host: str
    port: int
    metrics_port: int
    tls: Path
    process: Process

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples that carry ``labels`` (among others)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            found = parse_metrics(response.read().decode())
        wanted = set(labels.items())
        return sum(v for (n, have), v in found.items() if n == name and wanted <= set(have))

    def served(self, server_name: str) -> bytes:
        """The serving certificate (DER) this replica presents for ``server_name``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with (
            socket.create_connection((self.host, self.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    def verifies(self, server_name: str, bundle: bytes) -> bool:
        """Whether a client trusting only ``bundle`` accepts this replica as ``server_name``
        (what the apiserver checks)."""
        context = ssl.create_default_context(cadata=bundle.decode())
        try:
            with (
                socket.create_connection((self.host, self.port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname=server_name),
            ):
                return True
        except ssl.SSLError:
            return False


@dataclass
class Release:
    """The chart installed with certificates.mode selfManaged, and its replicas."""

    plane: ControlPlane
    name: str
    namespace: str  # the release's
    work: str  # where the reviewed objects go
    tmp: Path
    port: int
    config: Path
    env: dict[str, str]
    replicas: list[Replica] = field(default_factory=list)
    routed: str = ""

    @property
    def fullname(self) -> str:
        return f"{self.name}-nodelimits"

    @property
    def server_name(self) -> str:
        """The name the apiserver verifies: the Service's."""
        return f"{self.fullname}.{self.namespace}.svc"

    def start(self, name: str, host: str = "127.0.0.2", env: Mapping[str, str] = LONG) -> Replica:
        """A replica; not waited for (see :meth:`ready`)."""
        metrics_port = free_port()
        tls = self.tmp / name / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        server = {
            "NODELIMITS_SERVER__HOST": host,
            "NODELIMITS_SERVER__PORT": str(self.port),
            "NODELIMITS_SERVER__METRICS_HOST": "127.0.0.1",
            "NODELIMITS_SERVER__METRICS_PORT": str(metrics_port),
            "NODELIMITS_SERVER__CERT_FILE": str(tls / "tls.crt"),
            "NODELIMITS_SERVER__KEY_FILE": str(tls / "tls.key"),
            "NODELIMITS_SERVER__CERT_CHECK_INTERVAL": "0.5",
            "NODELIMITS_SERVER__SHUTDOWN_DELAY": "0",
        }
        argv = [sys.executable, "-c", SERVE, "serve", "--config", str(self.config)]
        process = Process(name, argv, self.tmp / f"{name}.log", {**self.env, **server, **env})
        replica = Replica(name, host, self.port, metrics_port, tls, process)
        self.replicas.append(replica)
        return replica

    def ready(self, replica: Replica) -> Replica:
        def is_ready() -> bool:
            url = f"http://127.0.0.1:{replica.metrics_port}/readyz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
            return False

        wait_until(f"{replica.name} ready", is_ready, replica.process, timeout=WAIT)
        return replica

    def stop(self, replica: Replica) -> None:
        replica.process.stop()
        self.replicas.remove(replica)

    def upgrade(self, *args: str) -> None:
        """``helm upgrade`` with the install's values (and ``args``); the Service it resets to
        ClusterIP is routed to the replicas again."""
        self.plane.helm(
            "upgrade", self.name, str(CHART), "-n", self.namespace, "--no-hooks",
            "-f", str(self.tmp / "values.yaml"), *args,
        )  # fmt: skip
        self.route_to(self.routed)

    def route_to(self, host: str) -> None:
        """The Service resolves to ``host`` (ExternalName): the apiserver dials it."""
        self.routed = host
        patch = {"spec": {"type": "ExternalName", "externalName": host}}
        self.plane.kubectl(
            "patch", "service", self.fullname, "-n", self.namespace,
            "--type=merge", "-p", json.dumps(patch),
        )  # fmt: skip

    def secret(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            self.plane.kubectl(
                "get", "secret", f"{self.fullname}-certs", "-n", self.namespace, "-o", "json"
            ).stdout
        )
        return found

    def material(self) -> dict[str, bytes]:
        return {k: base64.b64decode(v) for k, v in (self.secret().get("data") or {}).items()}

    def bundles(self) -> set[str]:
        """The distinct caBundles of the release's webhooks (base64, '' where none)."""
        vwc = json.loads(
            self.plane.kubectl(
                "get", "validatingwebhookconfiguration", self.fullname, "-o", "json"
            ).stdout
        )
        return {hook["clientConfig"].get("caBundle", "") for hook in vwc["webhooks"]}

    def review(self) -> str:
        """A server-side dry-run of an oversized annotated pod; its stderr ('' if admitted)."""
        obj = pod(container(cpu="100"), name=f"big-{secrets.token_hex(3)}", namespace=self.work)
        result = self.plane.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
        )
        return str(result.stderr) if result.returncode else ""


def denied_by_nodelimits(stderr: str) -> bool:
    return 'admission webhook "pods.nodelimits.io" denied the request' in stderr and (
        "nodelimits: " in stderr
    )


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest.fixture
def release(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Release]:
    """The chart (selfManaged, in-cluster) installed; no replica yet; uninstalled after."""
    suffix = secrets.token_hex(3)
    name, release_ns = f"nl-{suffix}", f"nl-certs-{suffix}"
    control_plane.kubectl("create", "namespace", release_ns)
    limits = tmp_path / "limits.yaml"
    limits.write_text(yaml.safe_dump({"resourceGroups": [limits_entry(GROUP)]}))
    port = free_port()
    values = {
        "certificates": {"mode": "selfManaged"},
        "service": {"port": port},
        "config": {"platform": {"limits_file": str(limits)}},
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    control_plane.helm(
        "install", name, str(CHART), "-n", release_ns, "--no-hooks",
        "-f", str(tmp_path / "values.yaml"),
    )  # fmt: skip
    replicas: list[Replica] = []
    try:
        config = tmp_path / "config.yaml"
        config.write_text(
            control_plane.kubectl(
                "get", "configmap", f"{name}-nodelimits", "-n", release_ns,
                "-o", "jsonpath={.data.config\\.yaml}",
            ).stdout
        )  # fmt: skip
        account = f"{name}-nodelimits"
        kubeconfig = token_kubeconfig(
            control_plane, release_ns, account, tmp_path / "sa.kubeconfig"
        )
        token = tmp_path / "token"
        token.write_text(yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"])
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),  # kopf's login
            # selfcerts and the claims reader: the apiserver as a pod sees it, with its token
            "NODELIMITS_KUBERNETES__API_URL": control_plane.url,
            "NODELIMITS_KUBERNETES__TOKEN_FILE": str(token),
            "NODELIMITS_KUBERNETES__CA_FILE": str(control_plane.ca_file),
        }
        rel = Release(control_plane, name, release_ns, namespace, tmp_path, port, config, env)
        replicas = rel.replicas
        rel.route_to("127.0.0.2")
        yield rel
    finally:
        for replica in list(replicas):
            replica.process.stop()
        control_plane.helm("uninstall", name, "-n", release_ns, "--no-hooks", check=False)


SYNCS = "nodelimits_tls_certificate_sync_total"
EXPIRY = "nodelimits_tls_certificate_expiry_timestamp_seconds"


def started(release: Release, name: str = "a", env: Mapping[str, str] = LONG) -> Replica:
    return release.ready(release.start(name, env=env))


def certificate(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def signed_by(leaf: bytes, ca: bytes) -> bool:
    try:
        certificate(leaf).verify_directly_issued_by(certificate(ca))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def first_denial(release: Release) -> str:
    """The first review the apiserver answers with nodelimits' denial (the apiserver takes
    a moment to see a new caBundle); fails with the last answer otherwise."""
    seen: list[str] = []

    def denial() -> str | None:
        stderr = release.review()
        seen[:] = [stderr]
        return stderr if denied_by_nodelimits(stderr) else None

    try:
        return poll("a review denied by nodelimits", denial, release.replicas)
    except pytest.fail.Exception as exc:
        raise AssertionError(f"{exc}\nlast answer: {seen}") from None


# --- first start --------------------------------------------------------------------------


def test_chart_renders_the_secret_without_material(release: Release) -> None:
    assert release.material() == {}
    assert release.bundles() == {""}


def test_first_start_fills_the_secret_with_a_ca_and_a_leaf_for_the_service(
    release: Release,
) -> None:
    started(release)
    data = release.material()
    assert {"ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.crt"} <= data.keys()
    assert signed_by(data["tls.crt"], data["ca.crt"])
    names = certificate(data["tls.crt"]).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert release.server_name in names.value.get_values_for_type(x509.DNSName)


def test_first_start_puts_the_secrets_bundle_in_every_webhook(release: Release) -> None:
    started(release)
    bundle = base64.b64encode(release.material()["ca-bundle.crt"]).decode()
    assert release.bundles() == {bundle}


def test_first_start_serves_the_secrets_certificate(release: Release) -> None:
    replica = started(release)
    data = release.material()
    assert replica.served(release.server_name) == der(data["tls.crt"])
    assert replica.verifies(release.server_name, data["ca-bundle.crt"])


def test_review_through_the_apiserver_is_denied_by_nodelimits(release: Release) -> None:
    started(release)
    stderr = first_denial(release)
    assert f"Pod {release.work}/big-" in stderr


def test_expiry_metric_is_the_served_certificates(release: Release) -> None:
    replica = started(release)
    leaf = certificate(release.material()["tls.crt"])
    assert replica.metric(EXPIRY) == leaf.not_valid_after_utc.timestamp()


def test_helm_upgrade_keeps_the_material_and_the_ca_bundle_the_server_wrote(
    release: Release,
) -> None:
    """The chart renders the Secret without data and the webhooks without a caBundle, so
    helm's three-way merge leaves what the server wrote alone."""
    started(release)
    before = release.material(), release.bundles()
    release.upgrade("--set", "webhook.failurePolicy=Ignore")
    assert (release.material(), release.bundles()) == before


def test_a_deleted_secret_comes_back_with_helm_upgrade_and_the_server_fills_it_afresh(
    release: Release,
) -> None:
    """The server may not create the Secret (RBAC: get, update); helm renders it again, and
    the server issues a new CA and certificate into it and serves them."""
    replica = started(release)
    old_ca = release.material()["ca.crt"]
    release.plane.kubectl("delete", "secret", f"{release.fullname}-certs", "-n", release.namespace)
    # Seen gone (a sync error, the Secret being looked at every second) before helm brings
    # it back: a quick upgrade could otherwise recreate it between two looks.
    poll(
        "a sync error while the Secret is gone",
        lambda: replica.metric(SYNCS, outcome="error") >= 1,
        release.replicas,
    )
    release.upgrade()

    def refilled() -> dict[str, bytes] | None:
        data = release.material()
        return data if data.get("ca.crt") not in (None, old_ca) else None

    data = poll("the recreated Secret filled", refilled, release.replicas)
    poll(
        "the new certificate served",
        lambda: replica.served(release.server_name) == der(data["tls.crt"]),
        release.replicas,
    )
    first_denial(release)


# --- a restarted replica ----------------------------------------------------------------


def test_restarted_replica_keeps_the_secret_and_issues_nothing(release: Release) -> None:
    release.stop(started(release, "a"))
    before = release.secret()
    again = started(release, "a-restarted")  # a new pod: its emptyDir starts empty
    after = release.secret()
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert again.metric(SYNCS, outcome="issued") == 0
    assert again.metric(SYNCS, outcome="ok") >= 1
    assert again.served(release.server_name) == der(release.material()["tls.crt"])


# --- two replicas -----------------------------------------------------------------------


def two_replicas(release: Release, env: Mapping[str, str] = LONG) -> tuple[Replica, Replica]:
    """Two replicas started together (both racing for the empty Secret)."""
    a = release.start("a", "127.0.0.2", env)
    b = release.start("b", "127.0.0.3", env)
    return release.ready(a), release.ready(b)


def test_two_replicas_starting_together_write_the_secret_once(release: Release) -> None:
    a, b = two_replicas(release)
    issued = sorted(r.metric(SYNCS, outcome="issued") for r in (a, b))
    assert issued == [0, 1]


def test_two_replicas_serve_the_same_trusted_chain(release: Release) -> None:
    a, b = two_replicas(release)
    data = release.material()
    assert a.served(release.server_name) == b.served(release.server_name) == der(data["tls.crt"])
    assert a.verifies(release.server_name, data["ca-bundle.crt"])
    assert b.verifies(release.server_name, data["ca-bundle.crt"])


def test_two_replicas_racing_for_one_secret_version_one_writes_the_other_conflicts(
    release: Release,
) -> None:
    """Optimistic concurrency for real: two managers (in this process, with the chart's
    config and token) both read the empty Secret before either writes; the apiserver
    refuses the second write (409) and its replica uses the first one's material."""
    settings = [
        load_settings(
            release.config,
            kubernetes={
                "api_url": release.plane.url,
                "token_file": release.env["NODELIMITS_KUBERNETES__TOKEN_FILE"],
                "ca_file": str(release.plane.ca_file),
            },
            server={
                "cert_file": str(release.tmp / name / "tls.crt"),
                "key_file": str(release.tmp / name / "tls.key"),
            },
        )
        for name in ("a", "b")
    ]
    metrics = [Metrics(), Metrics()]

    async def race() -> list[Material]:
        managers = [CertificateManager(s, m) for s, m in zip(settings, metrics, strict=True)]
        try:  # gather starts both before either's GET is answered: both read one version
            return list(await asyncio.gather(*(m.sync() for m in managers)))
        finally:
            for manager in managers:
                await manager.close()

    served = asyncio.run(race())
    outcomes = [
        {
            outcome: m.registry.get_sample_value(SYNCS, {"outcome": outcome}) or 0.0
            for outcome in ("issued", "conflict")
        }
        for m in metrics
    ]
    assert sorted(outcomes, key=lambda o: o["issued"]) == [
        {"issued": 0.0, "conflict": 1.0},
        {"issued": 1.0, "conflict": 0.0},
    ]
    stored = release.material()
    assert served[0].leaf.cert == served[1].leaf.cert == stored["tls.crt"]
    for name in ("a", "b"):
        assert (release.tmp / name / "tls.crt").read_bytes() == stored["tls.crt"]


def test_the_replica_that_did_not_write_answers_through_the_apiserver(release: Release) -> None:
    a, b = two_replicas(release)
    reader = a if a.metric(SYNCS, outcome="issued") == 0 else b
    release.route_to(reader.host)
    first_denial(release)
    assert reader.metric("nodelimits_admission_requests_total", decision="deny") >= 1


# --- rotation ---------------------------------------------------------------------------


def test_short_validity_renews_the_serving_certificate_and_the_replica_serves_it(
    release: Release,
) -> None:
    replica = started(release, env=SHORT)
    first = der(release.material()["tls.crt"])

    def renewed_and_served() -> bool:
        data = release.material()
        served = replica.served(release.server_name)
        return der(data["tls.crt"]) != first and served != first

    poll("a renewed certificate served", renewed_and_served, release.replicas)
    assert replica.verifies(release.server_name, release.material()["ca-bundle.crt"])
    assert replica.metric(EXPIRY) > certificate(_pem(first)).not_valid_after_utc.timestamp()


def _pem(der_bytes: bytes) -> bytes:
    return x509.load_der_x509_certificate(der_bytes).public_bytes(serialization.Encoding.PEM)


def test_a_new_ca_is_trusted_before_it_signs_and_the_old_one_after(release: Release) -> None:
    started(release, env=SHORT)
    old_ca = release.material()["ca.crt"]
    staged = poll(
        "a new CA staged",
        lambda: release.material().get("next-ca.crt"),
        release.replicas,
    )
    data = release.material()
    if "next-ca.crt" in data:  # still staged: trusted, not yet signing
        assert signed_by(data["tls.crt"], old_ca)
    bundle = base64.b64decode(poll("a caBundle", lambda: next(iter(release.bundles())), []))
    assert staged.strip() in bundle
    assert old_ca.strip() in bundle

    def switched() -> dict[str, bytes] | None:
        data = release.material()
        return data if data["ca.crt"] == staged else None

    data = poll("the new CA signing", switched, release.replicas)
    assert data.get("previous-ca.crt") == old_ca
    assert signed_by(data["tls.crt"], staged)
    assert old_ca.strip() in data["ca-bundle.crt"]
    assert staged.strip() in data["ca-bundle.crt"]


def test_no_review_fails_while_two_replicas_rotate_leaf_and_ca(release: Release) -> None:
    # Both on one address (SO_REUSEPORT): the apiserver's connections reach either.
    a = release.start("a", "127.0.0.2", SHORT)
    b = release.start("b", "127.0.0.2", SHORT)
    release.ready(a), release.ready(b)
    first_denial(release)
    first_ca = release.material()["ca.crt"]
    failed: list[str] = []
    answered = 0
    leaves: set[bytes] = set()
    cas: set[bytes] = set()
    retired_dropped = False
    deadline = time.monotonic() + 3 * WAIT
    for _ in range(1000):
        if time.monotonic() > deadline or retired_dropped:
            break
        stderr = release.review()
        if denied_by_nodelimits(stderr):
            answered += 1
        else:
            failed.append(stderr)
        data = release.material()
        leaves.add(data["tls.crt"])
        cas.add(data["ca.crt"])
        retired_dropped = data["ca.crt"] != first_ca and "previous-ca.crt" not in data
    assert failed == []
    # The loop saw the whole rotation: leaves renewed, a new CA, the retired one dropped.
    assert retired_dropped, (answered, len(leaves), len(cas))
    assert len(leaves) >= 3
    served = [r.metric("nodelimits_admission_requests_total", decision="deny") for r in (a, b)]
    assert sum(served) >= answered
