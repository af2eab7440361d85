"""Self-managed serving certificates: the cert-controller pattern of Gatekeeper and Kyverno.

The CA and the serving certificate live in one Secret (``certificates.secret_name``), so
the chart renders no key material and ``helm template`` is stable. Every replica, every
``check_interval``:

1. reads the Secret; :func:`plan` (pure) says whether it needs new material: none yet,
   the serving certificate within ``renew_before`` of expiry, not signed by the CA or not
   naming ``hosts``, the CA within ``ca_renew_before`` of expiry;
2. if so writes it with the ``resourceVersion`` it read: of several replicas one wins,
   the others get 409 Conflict and use what the winner wrote (the next round re-plans);
3. makes the caBundle of ``certificates.webhook_configuration`` the Secret's bundle;
4. only then writes the serving certificate and key to ``server.cert_file``/``key_file``,
   which the TLS listener (webhook/serve/tls.py) reloads without a gap.

CA rotation is staged so no review fails: a new CA first joins the bundle (``next``),
signs the serving certificate only ``propagation`` later (every apiserver has the bundle
by then), and the old CA stays in the bundle (``previous``) until it expires, for
replicas that have not reloaded yet. A serving-certificate renewal under the same CA
changes nothing the apiserver trusts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.config import SERVICE_ACCOUNT, CertificateSettings, KubernetesSettings, Settings
from webhook.kube import auth_headers, in_cluster_url, ssl_context
from webhook.metrics import Metrics

__all__ = [
    "CertificateManager",
    "Material",
    "Pair",
    "SyncError",
    "plan",
    "serve_with_certificates",
    "watch_certificate_expiry",
]

log = logging.getLogger("nodelimits.certificates")

NEXT_SINCE = "nodelimits.io/next-ca-since"
"""Secret annotation: when the staged CA joined the bundle (RFC 3339)."""
_KEYS = {
    "ca": ("ca.crt", "ca.key"),
    "next": ("next-ca.crt", "next-ca.key"),
    "leaf": ("tls.crt", "tls.key"),
}
_PREVIOUS = "previous-ca.crt"
_BUNDLE = "ca-bundle.crt"
_SKEW = datetime.timedelta(minutes=5)
"""Certificates start this long before they are made (clocks of other nodes lag)."""


class SyncError(RuntimeError):
    """The Secret or the webhook configuration could not be read or written."""


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, PEM."""

    cert: bytes
    key: bytes

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert)

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate().not_valid_after_utc


@dataclass(frozen=True)
class Material:
    """What the Secret holds."""

    ca: Pair
    leaf: Pair
    next: Pair | None = None
    next_since: datetime.datetime | None = None
    previous: bytes | None = None

    def bundle(self) -> bytes:
        """Every CA the apiserver must trust: the signing one, the staged and the retired."""
        parts = [self.ca.cert]
        if self.next is not None:
            parts.append(self.next.cert)
        if self.previous is not None:
            parts.append(self.previous)
        return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts)

    def to_secret_data(self) -> dict[str, str]:
        data: dict[str, bytes] = {
            _KEYS["ca"][0]: self.ca.cert,
            _KEYS["ca"][1]: self.ca.key,
            _KEYS["leaf"][0]: self.leaf.cert,
            _KEYS["leaf"][1]: self.leaf.key,
            _BUNDLE: self.bundle(),
        }
        if self.next is not None:
            data[_KEYS["next"][0]], data[_KEYS["next"][1]] = self.next.cert, self.next.key
        if self.previous is not None:
            data[_PREVIOUS] = self.previous
        return {k: base64.b64encode(v).decode("ascii") for k, v in data.items()}

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any] | None) -> Material | None:
        """The material of a Secret object; None when it has none or it does not parse
        (then :func:`plan` issues afresh)."""
        if not secret:
            return None
        raw = secret.get("data") or {}
        try:
            data = {k: base64.b64decode(v) for k, v in raw.items()}

            def pair(name: str) -> Pair | None:
                cert, key = _KEYS[name]
                if cert in data and key in data:
                    found = Pair(data[cert], data[key])
                    found.certificate()  # parses
                    return found
                return None

            ca, leaf = pair("ca"), pair("leaf")
            if ca is None or leaf is None:
                return None
            since = (secret.get("metadata") or {}).get("annotations", {}).get(NEXT_SINCE)
            previous = data.get(_PREVIOUS)
            if previous is not None:
                x509.load_pem_x509_certificate(previous)
            return cls(
                ca=ca,
                leaf=leaf,
                next=pair("next"),
                next_since=datetime.datetime.fromisoformat(since) if since else None,
                previous=previous,
            )
        except (ValueError, TypeError) as exc:
            log.warning("certificate Secret does not parse (%s): issuing new material", exc)
            return None


# --- the pure part ----------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_ca(now: datetime.datetime, lifetime: datetime.timedelta, name: str) -> Pair:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def _sans(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def new_leaf(
    ca: Pair, now: datetime.datetime, lifetime: datetime.timedelta, hosts: tuple[str, ...]
) -> Pair:
    """A serving certificate signed by ``ca``, never outliving it."""
    ca_cert = ca.certificate()
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(min(now + lifetime, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def _signed_by(leaf: Pair, ca: Pair) -> bool:
    try:
        leaf.certificate().verify_directly_issued_by(ca.certificate())
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _names(leaf: Pair) -> set[str]:
    try:
        ext = leaf.certificate().extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    dns = ext.value.get_values_for_type(x509.DNSName)
    ips = ext.value.get_values_for_type(x509.IPAddress)
    return set(dns) | {str(ip) for ip in ips}


def _canonical(hosts: tuple[str, ...]) -> set[str]:
    out = set()
    for host in hosts:
        try:
            out.add(str(ipaddress.ip_address(host)))
        except ValueError:
            out.add(host)
    return out


def plan(
    current: Material | None,
    now: datetime.datetime,
    settings: CertificateSettings,
    *,
    name: str = "nodelimits-ca",
) -> Material | None:
    """The material the Secret should hold from ``now`` on, or None when ``current`` is
    fine as it is. Pure apart from key generation."""
    s = settings
    sec = datetime.timedelta
    if current is None or current.ca.not_after <= now + sec(seconds=s.propagation):
        ca = new_ca(now, sec(seconds=s.ca_duration), name)
        return Material(ca=ca, leaf=new_leaf(ca, now, sec(seconds=s.duration), s.hosts))
    m, changed = current, False
    if (
        m.previous is not None
        and x509.load_pem_x509_certificate(m.previous).not_valid_after_utc <= now
    ):
        m, changed = replace(m, previous=None), True
    if m.next is None and m.ca.not_after - now <= sec(seconds=s.ca_renew_before):
        m = replace(m, next=new_ca(now, sec(seconds=s.ca_duration), name), next_since=now)
        changed = True
    elif m.next is not None and (
        m.next_since is None or now - m.next_since >= sec(seconds=s.propagation)
    ):
        assert m.next is not None
        retired = m.ca.cert
        m = replace(m, ca=m.next, next=None, next_since=None, previous=retired)
        changed = True
    leaf_due = (
        m.leaf.not_after - now <= sec(seconds=s.renew_before)
        or not _signed_by(m.leaf, m.ca)
        or _names(m.leaf) != _canonical(s.hosts)
    )
    if leaf_due:
        m, changed = replace(m, leaf=new_leaf(m.ca, now, sec(seconds=s.duration), s.hosts)), True
    return m if changed else None


# --- the apiserver --------------------------------------------------------------------


class _Conflict(Exception):
    pass


class _Apiserver:
    """The few calls needed, with the pod's service-account token (or a client cert)."""

    def __init__(self, settings: KubernetesSettings, base_url: str) -> None:
        self.settings, self.base_url = settings, base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl_context(self.settings)
        return self._ssl

    def _headers(self) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "Content-Type": "application/json",
            **auth_headers(self.settings),
        }

    async def call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any] | None:
        """The decoded answer; None for 404; :class:`_Conflict` for 409."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=max(5.0, self.settings.request_timeout))
        url = self.base_url + path
        try:
            async with self._session.request(
                method,
                url,
                headers=self._headers(),
                ssl=self._context(),
                timeout=timeout,
                data=json.dumps(body) if body is not None else None,
            ) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SyncError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if status == 404:
            return None
        if status == 409:
            raise _Conflict(text)
        if status >= 300:
            hint = " (RBAC: see the chart's rbac.yaml)" if status in (401, 403) else ""
            raise SyncError(f"{method} {url}: HTTP {status}{hint}: {text[:300]}")
        decoded = json.loads(text)
        if not isinstance(decoded, dict):
            raise SyncError(f"{method} {url}: not an object")
        return decoded

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


# --- the loop -------------------------------------------------------------------------


def _namespace(settings: CertificateSettings) -> str:
    if settings.namespace:
        return settings.namespace
    try:
        return (SERVICE_ACCOUNT / "namespace").read_text().strip()
    except OSError:
        raise SyncError(
            "certificates.namespace is not set and the service account's namespace file is missing"
        ) from None


def _write_atomic(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class CertificateManager:
    """One replica's share of keeping the certificates (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.settings = settings
        self.cert = settings.certificates
        self.metrics = metrics
        self.clock = clock
        url = settings.kubernetes.api_url or in_cluster_url()
        if not url:
            raise SyncError(
                "self-managed certificates need the apiserver: run in a cluster or set "
                "kubernetes.api_url"
            )
        self.api = _Apiserver(settings.kubernetes, url)
        self.namespace = _namespace(self.cert)
        self._task: asyncio.Task[None] | None = None

    @property
    def _secret_path(self) -> str:
        ns, name = quote(self.namespace, safe=""), quote(self.cert.secret_name, safe="")
        return f"/api/v1/namespaces/{ns}/secrets/{name}"

    async def sync(self) -> Material:
        """One round; returns the material now served."""
        try:
            material = await self._sync_secret()
            await self._sync_bundle(material.bundle())
            self._write_files(material)
        except (SyncError, _Conflict) as exc:
            self.metrics.cert_syncs.labels(outcome="error").inc()
            raise SyncError(str(exc)) from exc
        return material

    async def _sync_secret(self) -> Material:
        secret = await self.api.call("GET", self._secret_path)
        current = Material.from_secret(secret)
        wanted = plan(current, self.clock(), self.cert, name=f"{self.cert.secret_name}-ca")
        if wanted is None:
            assert current is not None
            self.metrics.cert_syncs.labels(outcome="ok").inc()
            return current
        body = self._secret_body(secret, wanted)
        try:
            if secret is None:  # the chart renders the Secret; without it, try to create
                ns = quote(self.namespace, safe="")
                await self.api.call("POST", f"/api/v1/namespaces/{ns}/secrets", body)
            else:
                await self.api.call("PUT", self._secret_path, body)
        except _Conflict:
            self.metrics.cert_syncs.labels(outcome="conflict").inc()
            log.info("certificate Secret changed under us: using what the other replica wrote")
            theirs = Material.from_secret(await self.api.call("GET", self._secret_path))
            if theirs is None:
                raise SyncError("certificate Secret still has no usable material") from None
            return theirs
        self.metrics.cert_syncs.labels(outcome="issued").inc()
        log.info(
            "certificate Secret %s/%s updated: serving certificate until %s, CA until %s%s",
            self.namespace,
            self.cert.secret_name,
            wanted.leaf.not_after.isoformat(),
            wanted.ca.not_after.isoformat(),
            "; next CA staged" if wanted.next is not None else "",
        )
        return wanted

    def _secret_body(self, secret: Mapping[str, Any] | None, material: Material) -> dict[str, Any]:
        metadata: dict[str, Any] = dict((secret or {}).get("metadata") or {})
        metadata.setdefault("name", self.cert.secret_name)
        metadata.setdefault("namespace", self.namespace)
        annotations = dict(metadata.get("annotations") or {})
        if material.next_since is not None:
            annotations[NEXT_SINCE] = material.next_since.isoformat()
        else:
            annotations.pop(NEXT_SINCE, None)
        metadata["annotations"] = annotations
        metadata.pop("managedFields", None)
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,  # with the resourceVersion read: optimistic concurrency
            "type": (secret or {}).get("type", "Opaque"),
            "data": material.to_secret_data(),
        }

    async def _sync_bundle(self, bundle: bytes) -> None:
        name = self.cert.webhook_configuration
        if not name:
            return
        encoded = base64.b64encode(bundle).decode("ascii")
        path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/" + quote(
            name, safe=""
        )
        for _ in range(5):
            config = await self.api.call("GET", path)
            if config is None:
                raise SyncError(f"ValidatingWebhookConfiguration {name} not found")
            hooks = list(config.get("webhooks") or [])
            stale = [h for h in hooks if (h.get("clientConfig") or {}).get("caBundle") != encoded]
            if not stale:
                return
            for hook in hooks:
                hook.setdefault("clientConfig", {})["caBundle"] = encoded
            body = dict(config)
            body["webhooks"] = hooks
            try:
                await self.api.call("PUT", path, body)
            except _Conflict:
                continue  # someone (helm, another replica) changed it: read it again
            log.info("caBundle of ValidatingWebhookConfiguration %s updated", name)
            return
        raise SyncError(f"ValidatingWebhookConfiguration {name}: kept conflicting")

    def _write_files(self, material: Material) -> None:
        s = self.settings.server
        cert_path, key_path = Path(s.cert_file), Path(s.key_file)
        try:
            if (
                key_path.read_bytes() == material.leaf.key
                and cert_path.read_bytes() == material.leaf.cert
            ):
                return
        except OSError:
            pass
        # Key first: the listener re-reads when either changes and keeps the old
        # certificate while a pair does not match, so a half-written pair never serves.
        _write_atomic(key_path, material.leaf.key, 0o600)
        _write_atomic(cert_path, material.leaf.cert, 0o644)
        log.info("serving certificate written to %s (until %s)", cert_path, material.leaf.not_after)

    async def start(self) -> None:
        """The first sync (retried until ``startup_timeout``), then the loop in the background."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cert.startup_timeout
        while True:
            try:
                await self.sync()
                break
            except SyncError as exc:
                if loop.time() + 2.0 > deadline:
                    raise SyncError(f"no serving certificate: {exc}") from exc
                log.warning("certificate sync failed (retrying): %s", exc)
                await asyncio.sleep(2.0)
        self._task = asyncio.create_task(self._loop(), name="nodelimits-certificates")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.cert.check_interval)
            try:
                await self.sync()
            except SyncError as exc:
                log.error("certificate sync failed (still serving the current one): %s", exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.api.close()


def watch_certificate_expiry(metrics: Metrics, cert_file: Path) -> None:
    """``nodelimits_tls_certificate_expiry_timestamp_seconds`` from the file the listener
    serves, in every mode (self-managed, cert-manager, the chart's, your own)."""
    seen: dict[str, Any] = {}

    def expiry() -> float:
        try:
            stat = cert_file.stat()
            key = (stat.st_mtime_ns, stat.st_size)
            if seen.get("key") != key:
                cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
                seen.update(key=key, value=cert.not_valid_after_utc.timestamp())
            return float(seen["value"])
        except (OSError, ValueError):
            return 0.0

    metrics.cert_expiry.set_function(expiry)


async def serve_with_certificates(
    settings: Settings, serve: Callable[..., Awaitable[None]]
) -> None:
    """``serve`` with the expiry metric and, when self-managed, the certificate loop."""
    metrics = Metrics()
    watch_certificate_expiry(metrics, Path(settings.server.cert_file))
    if not settings.certificates.self_managed:
        await serve(settings, metrics=metrics)
        return
    manager = CertificateManager(settings, metrics)
    try:
        await manager.start()
        await serve(settings, metrics=metrics)
    finally:
        await manager.close()
