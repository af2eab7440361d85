"""Throwaway certificates for tests: a CA plus one leaf, written as PEM files.

Everything is ECDSA P-256 and valid for 7 days, like controller-runtime's envtest
(`pkg/internal/testing/certs/tinyca.go`). Nothing here is fit for production: keys are
written unencrypted into the directory the caller gives (normally a pytest `tmp_path`).

- `make_ca_and_cert()`: a serving certificate (server auth, SANs for the given hosts),
  e.g. for a webhook on 127.0.0.1 or the kube-apiserver.
- `make_client_ca_and_cert()`: a client certificate (client auth); the subject's
  organisations become Kubernetes groups, so `organizations=("system:masters",)` is admin.
- `make_service_account_keys()`: the kube-apiserver's service-account signing key pair.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertPaths",
    "make_ca_and_cert",
    "make_client_ca_and_cert",
    "make_service_account_keys",
]

VALIDITY = datetime.timedelta(days=7)
"""How long the certificates are valid: a test run, with margin for a slow machine."""


@dataclass(frozen=True, slots=True)
class CertPaths:
    """PEM files written by one call: the CA certificate and the leaf's certificate and key."""

    ca: Path
    cert: Path
    key: Path

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, e.g. for a webhook configuration's `caBundle` (base64 it)."""
        return self.ca.read_bytes()


def make_ca_and_cert(
    directory: Path,
    hosts: Iterable[str] = ("127.0.0.1", "localhost"),
    *,
    name: str = "serving",
) -> CertPaths:
    """Write `<name>-ca.crt`, `<name>.crt` and `<name>.key`: a CA and a serving leaf.

    Each host becomes a subjectAltName: an IP address if it parses as one, else a DNS name.
    The first host is also the leaf's common name.
    """
    hosts = tuple(hosts)
    if not hosts:
        raise ValueError("make_ca_and_cert() needs at least one host for the subjectAltName")
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return _write_ca_and_leaf(
        Path(directory),
        name,
        subject=_name(hosts[0]),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=sans,
    )


def make_client_ca_and_cert(
    directory: Path,
    *,
    common_name: str,
    organizations: Iterable[str] = (),
    name: str = "client",
) -> CertPaths:
    """Write `<name>-ca.crt`, `<name>.crt` and `<name>.key`: a CA and a client leaf.

    Kubernetes reads the common name as the user and each organisation as a group.
    """
    return _write_ca_and_leaf(
        Path(directory),
        name,
        subject=_name(common_name, organizations),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        sans=[],
    )


def make_service_account_keys(directory: Path, *, name: str = "sa") -> tuple[Path, Path]:
    """Write `<name>.key` (SEC1 `EC PRIVATE KEY`) and `<name>.pub` (PKIX `PUBLIC KEY`).

    SEC1, not PKCS#8: client-go's keyutil parses EC private keys only with
    `x509.ParseECPrivateKey`, so `--service-account-signing-key-file` rejects PKCS#8.
    Returns (private key path, public key path).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = directory / f"{name}.key"
    pub_path = directory / f"{name}.pub"
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # SEC1 for EC keys
            serialization.NoEncryption(),
        ),
    )
    pub_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path, pub_path


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _write_ca_and_leaf(
    directory: Path,
    name: str,
    *,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
) -> CertPaths:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(minutes=5)  # tolerate a little clock skew
    not_after = now + VALIDITY

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"nodelimits-test-{name}-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    leaf_cert = builder.sign(ca_key, hashes.SHA256())

    paths = CertPaths(
        ca=directory / f"{name}-ca.crt",
        cert=directory / f"{name}.crt",
        key=directory / f"{name}.key",
    )
    paths.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        paths.key,
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return paths


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)
