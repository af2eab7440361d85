"""Load for the soak (``tools/soak.py``) and its miniature in the e2e suite.

* :class:`ReviewGenerator`: a seeded, endless mix of AdmissionReviews as the kube-apiserver
  sends them (Pod CREATE, ``pods/resize`` UPDATE, Job/CronJob/Deployment CREATE and
  UPDATE with a changed or an unchanged template, dry-run or not, many groups and
  namespaces), each with a fresh UID, and the verdict the pure core gives it
  (:func:`webhook.review.review` over the same limits) — the oracle the server's answer
  is compared with;
* :func:`classify`: one server answer against that oracle;
* :class:`RotatingCerts`: a serving certificate laid out like a mounted Secret (symlinks
  through ``..data``), re-issued by the same CA and swapped atomically;
* :func:`proc_stats`: RSS and open fds of a process, from ``/proc``.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import random
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devtools.builders import container, cronjob, job, pod, workload
from devtools.reviews import admission_review
from webhook.config import PolicySettings
from webhook.core import policy, workloads
from webhook.core.limits import LimitsTable
from webhook.platform.static import load_limits_file

__all__ = [
    "Expected",
    "Generated",
    "ReviewGenerator",
    "RotatingCerts",
    "classify",
    "proc_stats",
    "served_serial",
]

DEVICES = {"gpu": "nvidia.com/gpu", "dcu": "hygon.com/dcu", "mlu": "cambricon.com/mlu370"}
UNKNOWN_GROUP = "no-such-group"
USER = {"username": "alice@example.com", "uid": "u-1", "groups": ["system:authenticated"]}


@dataclass(frozen=True, slots=True)
class Expected:
    """The pure core's verdict on one review."""

    allowed: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class Generated:
    path: str  # the webhook path, e.g. "/jobs"
    shape: str  # e.g. "Job UPDATE changed"
    uid: str
    body: bytes
    expected: Expected


class ReviewGenerator:
    """Seeded AdmissionReviews and their expected verdicts (the core over a limits file)."""

    def __init__(
        self,
        limits_file: Path,
        *,
        seed: int = 1,
        namespaces: int = 50,
        operations: tuple[str, ...] = ("CREATE", "UPDATE"),
    ) -> None:
        self.rng = random.Random(seed)
        self.shapes = [s for s in self._SHAPES if s[2] in operations]
        self.weights = [s[0] for s in self.shapes]
        data = load_limits_file(limits_file)
        self.table = LimitsTable.of(data)
        self.groups = [
            (e.resourceGroup, e.acceleratorType.value if e.acceleratorType else "cpu", e)
            for e in data.resourceGroups
        ]
        self.policy = PolicySettings()
        self.namespaces = [f"team-{i:03d}" for i in range(namespaces)]
        self.count = 0

    # --- objects ----------------------------------------------------------------------

    def _containers(self, scale: float) -> tuple[list[dict[str, Any]], str | None]:
        """Containers asking ~``scale`` x one node of a random group (1.0 = exactly full)."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.04:
            return [container(cpu="1")], UNKNOWN_GROUP
        group: str | None
        group, accel, limits = rng.choice(self.groups)
        if roll < 0.08:
            group = None  # no annotation: not checked
        n = rng.randint(1, 3)
        cpu = max(1, int(limits.cpuNumber * scale * 1000 / n))
        mem = max(64, int(limits.memorySize * rng.uniform(0.2, 1.0) / n))
        out = []
        for i in range(n):
            lim: dict[str, Any] = {}
            device = DEVICES.get(accel)
            if device and i == 0 and limits.gpuNumber:
                lim[device] = max(1, round(limits.gpuNumber * rng.uniform(0.3, 1.3)))
            out.append(container(f"c{i}", cpu=f"{cpu}m", memory=f"{mem}Mi", limits=lim or None))
        return out, group

    def _scale(self) -> float:
        return self.rng.choice((0.25, 0.5, 0.9, 1.0, 1.2, 2.0))

    def _object(self, kind: str) -> dict[str, Any]:
        rng, idx = self.rng, self.count
        cs, group = self._containers(self._scale())
        namespace = rng.choice(self.namespaces)
        if kind == "Pod":
            obj = pod(*cs, name=f"p{idx}", namespace=namespace, group=group)
        elif kind in ("Job", "CronJob"):
            deadline = rng.choice((None, 3600, 86400 * 3))
            obj = job(*cs, name=f"j{idx}", namespace=namespace, group=group, deadline=deadline)
            obj["spec"]["parallelism"] = rng.randint(1, 4)
            if kind == "CronJob":
                obj = cronjob(obj, name=f"cj{idx}")
        else:
            obj = workload("Deployment", *cs, replicas=rng.randint(1, 5), group=group)
            obj["metadata"].update(name=f"d{idx}", namespace=namespace)
        obj["metadata"]["uid"] = str(uuid.uuid4())
        return obj

    # --- reviews ----------------------------------------------------------------------

    _SHAPES = (
        # (weight, kind, operation, variant)
        (26, "Pod", "CREATE", ""),
        (10, "Pod", "UPDATE", "resize"),
        (14, "Job", "CREATE", ""),
        (8, "Job", "UPDATE", "changed"),
        (7, "Job", "UPDATE", "unchanged"),
        (5, "CronJob", "CREATE", ""),
        (5, "CronJob", "UPDATE", "changed"),
        (3, "CronJob", "UPDATE", "unchanged"),
        (9, "Deployment", "CREATE", ""),
        (7, "Deployment", "UPDATE", "changed"),
        (6, "Deployment", "UPDATE", "unchanged"),
    )
    _GVR: ClassVar[dict[str, tuple[str, str, str]]] = {
        "Pod": ("", "v1", "pods"),
        "Job": ("batch", "v1", "jobs"),
        "CronJob": ("batch", "v1", "cronjobs"),
        "Deployment": ("apps", "v1", "deployments"),
    }

    async def next(self) -> Generated:
        self.count += 1
        _, kind, operation, variant = self.rng.choices(self.shapes, self.weights)[0]
        obj = self._object(kind)
        old: dict[str, Any] | None = None
        subresource = None
        if operation == "UPDATE":
            if variant == "unchanged":
                old = _copy(obj)
                old["metadata"]["labels"] = {"rev": "1"}  # a change that is not the pods'
                obj["metadata"]["labels"] = {"rev": "2"}
            else:
                old = self._object(kind)
                old["metadata"] = _copy(obj["metadata"])
                # Really changed: two random objects can have equal pods (e.g. both of the
                # unknown group), and an UPDATE that leaves the pods alone is not checked.
                _pod_spec(old)["containers"][0]["resources"] = {"requests": {"cpu": "7m"}}
                if variant == "resize":
                    subresource = "resize"
        expected = await self.expect(obj, old, variant)
        group, version, plural = self._GVR[kind]
        path = "/pods-resize" if subresource else f"/{plural}"
        uid = str(uuid.uuid4())
        review_ = admission_review(
            obj,
            operation=operation,
            old=old,
            uid=uid,
            resource=(group, version, plural),
            kind=kind,
            sub_resource=subresource,
            user=USER,
            dry_run=self.rng.random() < 0.3,
        )
        shape = f"{kind} {operation} {variant}".strip()
        return Generated(path, shape, uid, _dumps(review_), expected)

    async def expect(
        self, obj: Mapping[str, Any], old: Mapping[str, Any] | None, variant: str
    ) -> Expected:
        """The oracle: the pure core over the same limits; an UPDATE that leaves the pods
        alone is not checked (allowed) whatever it asks."""
        if variant == "unchanged":
            return Expected(True)
        workload = workloads.workload_of(obj)
        if isinstance(workload, workloads.Skipped):
            return Expected(True)
        decision = policy.evaluate(workload, self.policy, self.table.get, self.table.types)
        return Expected(decision.allowed, decision.message)


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]
    if "jobTemplate" in spec:
        spec = spec["jobTemplate"]["spec"]
    if "template" in spec:
        spec = spec["template"]["spec"]
    return spec


def _copy(obj: Any) -> Any:
    import copy

    return copy.deepcopy(obj)


def _dumps(obj: Any) -> bytes:
    import json

    return json.dumps(obj, separators=(",", ":")).encode()


# --- the comparison -------------------------------------------------------------------

OK, WRONG, MESSAGE, FAIL_CLOSED, HTTP_4XX, HTTP_OTHER, MALFORMED = (
    "ok",
    "wrong_verdict",
    "message_mismatch",
    "fail_closed",
    "http_4xx",
    "http_error",
    "malformed",
)


def classify(status: int, payload: bytes, item: Generated) -> tuple[str, dict[str, Any] | None]:
    """One answer against the oracle: (category, response or None).

    A fail-closed denial (503: platform unavailable and nothing cached; 500/403 from a
    platform refusal) is an expected error, not a wrong verdict; an allow the core would
    deny, a denial it would allow, or a different denial message is wrong.
    """
    import json

    if status != 200:
        return (HTTP_4XX if 400 <= status < 500 else HTTP_OTHER), None
    try:
        response = json.loads(payload)["response"]
    except (ValueError, KeyError, TypeError):
        return MALFORMED, None
    if not isinstance(response, dict) or response.get("uid") != item.uid:
        return MALFORMED, None
    allowed = response.get("allowed")
    if allowed is True:
        return (OK if item.expected.allowed else WRONG), response
    status_ = response.get("status") or {}
    code, message = status_.get("code"), status_.get("message", "")
    if code == 403 and message == item.expected.message and not item.expected.allowed:
        return OK, response
    if code == 503 or (code in (403, 500) and "platform" in message and "cannot check" in message):
        return FAIL_CLOSED, response
    if item.expected.allowed:
        return WRONG, response
    return MESSAGE, response


# --- certificates ---------------------------------------------------------------------


class RotatingCerts:
    """A CA and a serving leaf laid out like a Secret volume: ``tls.crt``/``tls.key`` are
    symlinks into ``..data``, which :meth:`rotate` swaps atomically (as the kubelet does)."""

    def __init__(self, directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hosts = hosts
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nodelimits-soak-ca")])
        now = datetime.datetime.now(datetime.UTC)
        self._ca_name = name
        self._ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca = self.dir / "ca.crt"
        self.ca.write_bytes(self._ca.public_bytes(serialization.Encoding.PEM))
        self.cert = self.dir / "tls.crt"
        self.key = self.dir / "tls.key"
        self.serial = 0
        self.generation = 0
        self.rotate()
        for link in (self.cert, self.key):
            if not link.is_symlink():
                link.symlink_to(Path("..data") / link.name)

    def rotate(self) -> int:
        """Issue a new leaf from the same CA and swap it in atomically; returns its serial."""
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for host in self.hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        serial = x509.random_serial_number()
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.hosts[0])]))
            .issuer_name(self._ca_name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.generation += 1
        data = self.dir / f"..data_{self.generation}"
        data.mkdir()
        (data / "tls.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        pkey = data / "tls.key"
        pkey.touch(mode=0o600)
        pkey.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        tmp = self.dir / "..data_tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(data.name)
        os.replace(tmp, self.dir / "..data")  # atomic, like the kubelet's AtomicWriter
        self.serial = serial
        return serial

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def served_serial(host: str, port: int, ca: Path, timeout: float = 3.0) -> int:
    """The serial number of the certificate a TLS server presents now (new connection)."""
    import socket

    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


async def served_serial_async(host: str, port: int, ca: Path) -> int:
    return await asyncio.to_thread(served_serial, host, port, ca)


# --- process -------------------------------------------------------------------------


def proc_stats(pid: int) -> dict[str, int]:
    """``rss_kb``, ``hwm_kb`` (peak RSS), ``threads`` and ``fds`` of a live process."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[{"VmRSS": "rss_kb", "VmHWM": "hwm_kb", "Threads": "threads"}[key]] = int(
                    value.split()[0]
                )
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out
