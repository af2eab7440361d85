"""The pure part of self-managed certificates: what the Secret should hold, when."""

from __future__ import annotations

import base64
import datetime

import pytest
from cryptography import x509
from pydantic import ValidationError

from webhook.config import CertificateSettings
from webhook.serve.selfcerts import NEXT_SINCE, Material, plan

T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
HOSTS = ("nodelimits.ns.svc", "127.0.0.1")
S = CertificateSettings(
    self_managed=True,
    hosts=HOSTS,
    duration=3600,
    renew_before=600,
    ca_duration=86400,
    ca_renew_before=7200,
    propagation=60,
)


def later(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def certs_in(bundle: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle)


def fresh() -> Material:
    material = plan(None, T0, S)
    assert material is not None
    return material


def test_first_start_issues_a_ca_and_a_leaf_it_signed_for_the_hosts() -> None:
    m = fresh()
    leaf, ca = cert(m.leaf.cert), cert(m.ca.cert)
    leaf.verify_directly_issued_by(ca)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["nodelimits.ns.svc"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert leaf.not_valid_after_utc == later(3600)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert [c.subject for c in certs_in(m.bundle())] == [ca.subject]


def test_nothing_changes_while_the_leaf_is_young() -> None:
    m = fresh()
    assert plan(m, later(3600 - 601), S) is None


def test_the_leaf_is_renewed_under_the_same_ca_before_it_expires() -> None:
    m = fresh()
    renewed = plan(m, later(3600 - 600), S)
    assert renewed is not None
    assert renewed.ca == m.ca
    assert renewed.bundle() == m.bundle()
    assert renewed.leaf != m.leaf
    cert(renewed.leaf.cert).verify_directly_issued_by(cert(m.ca.cert))


def test_other_hosts_get_a_new_leaf() -> None:
    m = fresh()
    other = CertificateSettings(**{**S.model_dump(), "hosts": ("other.ns.svc",)})
    renewed = plan(m, later(1), other)
    assert renewed is not None
    assert renewed.ca == m.ca
    assert renewed.leaf != m.leaf


def test_a_ca_rotation_is_staged_trusted_first_then_signing_then_retired() -> None:
    m = fresh()
    # Shortly before the CA's renewal point the leaves renew under the old CA (capped).
    staged = plan(m, later(86400 - 7200), S)
    assert staged is not None
    assert staged.next is not None
    assert staged.ca == m.ca  # the old CA still signs: the new one is only trusted
    assert len(certs_in(staged.bundle())) == 2
    # Within the propagation time nothing more happens (the leaf may renew, the CA not).
    waiting = plan(staged, later(86400 - 7200 + 59), S)
    assert waiting is None or (waiting.ca == m.ca and waiting.next == staged.next)
    promoted = plan(staged, later(86400 - 7200 + 60), S)
    assert promoted is not None
    assert promoted.ca == staged.next
    assert promoted.next is None
    assert promoted.previous == m.ca.cert  # replicas still serving the old leaf
    cert(promoted.leaf.cert).verify_directly_issued_by(cert(promoted.ca.cert))
    assert len(certs_in(promoted.bundle())) == 2
    retired = plan(promoted, later(86400 + 1), S)
    assert retired is not None
    assert retired.previous is None
    assert len(certs_in(retired.bundle())) == 1


def test_a_leaf_never_outlives_its_ca() -> None:
    m = fresh()
    staged = plan(m, later(86400 - 3000), S)  # CA left: 3000 s < duration
    assert staged is not None
    assert cert(staged.leaf.cert).not_valid_after_utc <= cert(staged.ca.cert).not_valid_after_utc


def test_an_expired_ca_starts_over() -> None:
    m = fresh()
    again = plan(m, later(86400 * 2), S)
    assert again is not None
    assert again.ca != m.ca
    assert again.previous is None


def test_the_secret_round_trips() -> None:
    m = fresh()
    staged = plan(m, later(86400 - 7200), S)
    assert staged is not None
    secret = {
        "metadata": {"annotations": {NEXT_SINCE: staged.next_since.isoformat()}},  # type: ignore[union-attr]
        "data": staged.to_secret_data(),
    }
    assert Material.from_secret(secret) == staged
    assert base64.b64decode(secret["data"]["ca-bundle.crt"]) == staged.bundle()


@pytest.mark.parametrize(
    "secret",
    [None, {}, {"data": {}}, {"data": {"tls.crt": "bm90IGEgY2VydA==", "tls.key": "eA=="}}],
)
def test_a_secret_without_usable_material_is_issued_afresh(secret: object) -> None:
    assert Material.from_secret(secret) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"renew_before": 3600},  # = duration
        {"ca_renew_before": 86400},  # = ca_duration
        {"ca_renew_before": 660},  # <= renew_before + propagation
        {"hosts": ()},
    ],
)
def test_settings_refuse_disordered_lifetimes(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CertificateSettings(**{**S.model_dump(), **bad})
