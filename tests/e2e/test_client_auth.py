"""`server.client_ca_file`: the webhook answers only the kube-apiserver's client certificate.

A pod on the cluster network can reach the webhook's port; with a client CA configured, it
cannot even finish a TLS handshake there, while the apiserver, given a client certificate
in its AdmissionConfiguration (`kubeConfigFile`, user `*`), gets every verdict as before.
This control plane is the module's own: the admission configuration is a start-up flag.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devtools.builders import container, pod
from devtools.certs import CertPaths, make_client_ca_and_cert
from devtools.controlplane import ControlPlane
from devtools.reviews import admission_review
from devtools.stack import SimulatorProcess, Webhook


def _admission_config(work: Path, client: CertPaths) -> Path:
    """An AdmissionConfiguration giving ValidatingAdmissionWebhook a client certificate
    for every webhook (`*`: the global default of the apiserver's resolver)."""
    kubeconfig = work / "webhook-client.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "users": [
                    {
                        "name": "*",
                        "user": {
                            "client-certificate": str(client.cert),
                            "client-key": str(client.key),
                        },
                    }
                ],
            }
        )
    )
    config = work / "admission.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [
                    {
                        "name": "ValidatingAdmissionWebhook",
                        "configuration": {
                            "apiVersion": "apiserver.config.k8s.io/v1",
                            "kind": "WebhookAdmissionConfiguration",
                            "kubeConfigFile": str(kubeconfig),
                        },
                    }
                ],
            }
        )
    )
    return config


@pytest.fixture(scope="module")
def stack(
    testbin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ControlPlane, Webhook, CertPaths]]:
    work = tmp_path_factory.mktemp("client-auth")
    client = make_client_ca_and_cert(work / "client", common_name="kube-apiserver-webhooks")
    plane = ControlPlane(
        testbin,
        extra_apiserver_args=[f"--admission-control-config-file={_admission_config(work, client)}"],
    )
    plane.start()
    simulator = SimulatorProcess(work).start()
    webhook = Webhook(work, plane, simulator, {"server": {"client_ca_file": str(client.ca)}})
    try:
        webhook.start()
        webhook.register()
        yield plane, webhook, client
    finally:
        webhook.stop()
        simulator.stop()
        plane.stop()


def _post(webhook: Webhook, context: ssl.SSLContext) -> dict[str, object]:
    review = admission_review(pod(container(cpu="999")))
    request = urllib.request.Request(  # noqa: S310 - loopback https
        f"{webhook.url}/pods",
        data=json.dumps(review).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


def test_the_apiserver_presenting_its_client_certificate_gets_the_verdict(
    stack: tuple[ControlPlane, Webhook, CertPaths],
) -> None:
    plane, _, _ = stack
    obj = pod(container(cpu="999"))
    obj["metadata"]["namespace"] = "default"
    result = plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
    )
    assert 'admission webhook "pods.nodelimits.io" denied the request' in result.stderr
    assert "cpu 999 > 40 cores per node" in result.stderr


def test_a_caller_without_a_client_certificate_cannot_complete_the_handshake(
    stack: tuple[ControlPlane, Webhook, CertPaths],
) -> None:
    _, webhook, _ = stack
    context = ssl.create_default_context(cafile=str(webhook.certs.ca))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        _post(webhook, context)


def test_a_caller_with_a_certificate_of_another_ca_is_refused(
    stack: tuple[ControlPlane, Webhook, CertPaths], tmp_path: Path
) -> None:
    _, webhook, _ = stack
    stranger = make_client_ca_and_cert(tmp_path, common_name="kube-apiserver-webhooks")
    context = ssl.create_default_context(cafile=str(webhook.certs.ca))
    context.load_cert_chain(str(stranger.cert), str(stranger.key))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        _post(webhook, context)


def test_the_same_certificate_the_apiserver_holds_is_answered(
    stack: tuple[ControlPlane, Webhook, CertPaths],
) -> None:
    """The refusals above are the client CA's doing, not a broken listener."""
    _, webhook, client = stack
    context = ssl.create_default_context(cafile=str(webhook.certs.ca))
    context.load_cert_chain(str(client.cert), str(client.key))
    body = _post(webhook, context)
    response = body["response"]
    assert isinstance(response, dict)
    assert response["allowed"] is False
