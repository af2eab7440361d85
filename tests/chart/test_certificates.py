"""The chart's builtin and cert-manager certificate modes, offline: what `helm template`
generates or asks cert-manager for. Persistence across `helm upgrade` (lookup) is in
tests/e2e/test_chart.py; the default, selfManaged, is in test_selfcerts.py."""

from __future__ import annotations

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from tests.chart.chart import NAMESPACE, RELEASE
from tests.chart.conftest import RenderFn

SERVICE = f"{RELEASE}-nodelimits"
BUILTIN = {"certificates": {"mode": "builtin"}}


def pem(secret: dict, key: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))


def days(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - cert.not_valid_before_utc) / datetime.timedelta(days=1)


def test_builtin_leaf_is_signed_by_the_ca_in_the_webhook_cabundle(render_chart: RenderFn):
    rendered = render_chart(BUILTIN)
    ca = pem(rendered.one("Secret", "-ca"), "tls.crt")
    tls = rendered.one("Secret", "-tls")
    leaf = pem(tls, "tls.crt")
    ca.public_key().verify(  # raises if the leaf was not signed by this CA
        leaf.signature,
        leaf.tbs_certificate_bytes,
        padding.PKCS1v15(),
        leaf.signature_hash_algorithm,
    )
    for hook in rendered.webhooks:
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == base64.b64decode(
            tls["data"]["ca.crt"]
        )
    assert x509.load_pem_x509_certificate(base64.b64decode(tls["data"]["ca.crt"])) == ca


def test_builtin_leaf_names_the_service_and_the_ca_outlives_it(render_chart: RenderFn):
    rendered = render_chart(BUILTIN)
    leaf = pem(rendered.one("Secret", "-tls"), "tls.crt")
    ca = pem(rendered.one("Secret", "-ca"), "tls.crt")
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{SERVICE}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    assert round(days(leaf)) == 365
    assert round(days(ca)) == 3650
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_builtin_secrets_record_expiry_for_renewal_on_upgrade(render_chart: RenderFn):
    rendered = render_chart(
        {"certificates": {"mode": "builtin", "builtin": {"certValidityDays": 30}}}
    )
    tls = rendered.one("Secret", "-tls")
    not_after = datetime.datetime.fromisoformat(
        tls["metadata"]["annotations"]["nodelimits.io/not-after"]
    )
    assert abs(not_after - pem(tls, "tls.crt").not_valid_after_utc) < datetime.timedelta(minutes=5)


def test_only_the_serving_secret_is_mounted_never_the_ca_key(render_chart: RenderFn):
    rendered = render_chart(BUILTIN)
    volumes = rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    secrets = {v["secret"]["secretName"] for v in volumes if "secret" in v}
    assert secrets == {f"{SERVICE}-tls"}


def test_cert_manager_mode_injects_the_ca_of_its_certificate(render_chart: RenderFn):
    rendered = render_chart({"certificates": {"mode": "certManager"}})
    assert rendered.of_kind("Secret") == []  # cert-manager writes them
    certificate = rendered.one("Certificate", "-tls")
    vwc = rendered.one("ValidatingWebhookConfiguration")
    assert vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{certificate['metadata']['name']}"
    )
    assert certificate["spec"]["secretName"] == f"{SERVICE}-tls"
    assert f"{SERVICE}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    assert all("caBundle" not in hook["clientConfig"] for hook in vwc["webhooks"])
    ca = rendered.one("Certificate", "-ca")
    assert ca["spec"]["isCA"] is True
    assert certificate["spec"]["issuerRef"]["name"] == f"{SERVICE}-ca"


def test_cert_manager_mode_with_an_existing_issuer_creates_no_ca(render_chart: RenderFn):
    issuer = {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    rendered = render_chart(
        {"certificates": {"mode": "certManager", "certManager": {"issuerRef": issuer}}}
    )
    assert rendered.of_kind("Issuer") == []
    assert rendered.one("Certificate")["spec"]["issuerRef"] == issuer


def test_out_of_cluster_url_replaces_the_service_and_generates_no_certificates(
    render_chart: RenderFn,
):
    rendered = render_chart({"webhook": {"url": "https://127.0.0.1:9443/", "caBundle": "Q0E="}})
    assert rendered.of_kind("Secret") == []
    for hook in rendered.webhooks:
        client = hook["clientConfig"]
        assert "service" not in client
        assert client["url"].startswith("https://127.0.0.1:9443/")
        assert "//" not in client["url"].removeprefix("https://")
        assert client["caBundle"] == "Q0E="
