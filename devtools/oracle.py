"""The differential oracle: Kubernetes v1.37.2's own code run over pods (tools/oracle).

`find_oracle()` builds (once, cached) and returns the Go program of tools/oracle; `run()`
feeds it pods and returns, per pod, what Kubernetes makes of it: the pod as the apiserver
hands it to a validating webhook on CREATE (after decoding, defaulting and
``PrepareForCreate``), whether validation would let it reach a webhook at all, and
component-helpers' ``PodRequests``/``PodLimits`` as exact decimals.

`random_pods()` is a seeded generator of pods that stress the rules the oracle checks:
sidecars before and after regular init containers, pod-level resources, overhead, and
quantities in every spelling a manifest may use (sub-milli decimals, exponents, binary and
decimal suffixes, YAML numbers, padded strings, ``null``).
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from devtools.controlplane import REPO_ROOT, run_build_script

BUILD_SCRIPT = REPO_ROOT / "tools" / "oracle" / "build.sh"


def find_oracle(*, build_timeout: float | None = None) -> Path:
    """Path of the oracle binary, building it on first use (progress on stderr)."""
    return run_build_script(BUILD_SCRIPT, "see tools/oracle/build.sh", build_timeout)


@dataclass(frozen=True)
class Verdict:
    """What Kubernetes makes of one pod (see tools/oracle/main.go)."""

    decode_error: str | None
    invalid: tuple[str, ...]
    pod: dict[str, Any] | None
    requests: dict[str, Decimal] = field(default_factory=dict)
    limits: dict[str, Decimal] = field(default_factory=dict)

    @property
    def reaches_webhook(self) -> bool:
        """Decoded and valid: only such a pod is ever shown to an admission webhook."""
        return self.decode_error is None and not self.invalid


def _decimals(raw: object) -> dict[str, Decimal]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): Decimal(str(v)) for k, v in raw.items()}


def _go_json(doc: object) -> bytes:
    """JSON as kubectl (Go's encoding/json) sends it: non-ASCII left raw except U+2028/9.

    It matters: the apiserver trims whitespace from a quantity's raw JSON text, so a raw
    U+00A0 is trimmed while an escaped ``\\t`` is not (and is refused)."""
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def run(binary: Path, pods: Sequence[object], *, timeout: float = 600) -> list[Verdict]:
    """One verdict per pod, in order. A pod is sent as one JSON line (``apiVersion``/``kind``
    added when absent); a ``bytes`` item is sent as it is (hand-written raw JSON)."""
    lines: list[bytes] = []
    for item in pods:
        if isinstance(item, bytes):
            lines.append(item.replace(b"\n", b" "))
            continue
        doc = dict(item) if isinstance(item, dict) else item
        if isinstance(doc, dict):
            doc.setdefault("apiVersion", "v1")
            doc.setdefault("kind", "Pod")
        lines.append(_go_json(doc))
    done = subprocess.run(
        [str(binary)],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        timeout=timeout,
        check=True,
    )
    out: list[Verdict] = []
    for line in done.stdout.decode().splitlines():
        raw = json.loads(line)
        out.append(
            Verdict(
                decode_error=raw.get("decodeError"),
                invalid=tuple(raw.get("invalid") or ()),
                pod=raw.get("pod"),
                requests=_decimals(raw.get("requests")),
                limits=_decimals(raw.get("limits")),
            )
        )
    if len(out) != len(lines):
        raise RuntimeError(f"oracle answered {len(out)} of {len(lines)} pods")
    return out


class DryRun:
    """Pods created with ``dryRun=All`` on a real apiserver, over one kept-alive connection.

    The response is the object after decoding, defaulting, PrepareForCreate and every
    admission plugin: what a validating webhook is handed (nothing changes it after them)."""

    def __init__(self, url: str, ca_file: Path, cert_file: Path, key_file: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca_file))
        context.load_cert_chain(str(cert_file), str(key_file))
        hostport = url.removeprefix("https://").rstrip("/")
        self._conn = http.client.HTTPSConnection(hostport, timeout=30, context=context)

    def create(self, namespace: str, pod: object) -> tuple[int, dict[str, Any]]:
        """(HTTP status, response body) of one dry-run create, sent as kubectl would."""
        body = pod if isinstance(pod, bytes) else _go_json(pod)
        self._conn.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods?dryRun=All",
            body=body,
            headers={"Content-Type": "application/json"},
        )
        response = self._conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else {}

    def close(self) -> None:
        self._conn.close()


# --- seeded random pods ---------------------------------------------------------------

_CPU_SUFFIX = {"": Decimal(1), "m": Decimal("1e-3"), "u": Decimal("1e-6"), "n": Decimal("1e-9")}
_MEM_SUFFIX = {
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
}


def _spell(rng: random.Random, value: Decimal, suffixes: dict[str, Decimal]) -> object:
    """One of the many ways a manifest may write ``value`` (exact whenever possible)."""
    choice = rng.random()
    if choice < 0.08 and value == value.to_integral_value() and value < 2**40:
        return int(value)  # a YAML int
    if choice < 0.14:
        as_float = float(value)
        if Decimal(repr(as_float)) == value:
            return as_float  # a YAML float, e.g. 0.5 or 1e-05
    if choice < 0.18:
        mantissa, exp = value.as_tuple().digits, value.as_tuple().exponent
        if isinstance(exp, int):
            digits = "".join(map(str, mantissa)) or "0"
            return f"{digits}e{exp}" if rng.random() < 0.5 else f"{digits}E{exp}"
    if choice < 0.22:
        pad = rng.choice([" ", " ", "  ", "\u00a0", "\u3000", "\t", "\n"])
        where = rng.random()
        text = format(value.normalize(), "f")
        return pad + text if where < 0.4 else text + pad if where < 0.8 else pad + text + pad
    names = [s for s, unit in suffixes.items() if (value / unit) == (value / unit).normalize()]
    suffix = rng.choice(names) if names else ""
    scaled = value / suffixes[suffix]
    text = format(scaled.normalize(), "f")
    if rng.random() < 0.05 and "." not in text:
        text += "."  # "2." is a Kubernetes quantity
    return text + suffix


def _cpu_value(rng: random.Random) -> Decimal:
    pick = rng.random()
    if pick < 0.35:
        return Decimal(rng.choice([0, 1, 1, 2, 4, 8, 16, 39, 40, 41, 64]))
    if pick < 0.65:
        return Decimal(rng.choice([1, 5, 10, 100, 250, 500, 999, 1500, 3999])) / 1000
    if pick < 0.85:  # sub-milli: the apiserver rounds these up to the next milli
        return Decimal(rng.randint(1, 4_000_000_000)) / Decimal(10 ** rng.randint(4, 9))
    return Decimal(rng.choice(["3.9999999", "0.0000001", "1.0000000001", "0.0001", "0.0005"]))


def _memory_value(rng: random.Random) -> Decimal:
    pick = rng.random()
    if pick < 0.5:
        return Decimal(rng.choice([1, 64, 128, 512, 1024, 31888, 65536])) * 2**20
    if pick < 0.8:
        return Decimal(rng.randint(1, 2**36))
    if pick < 0.9:  # fractional bytes ("100m" of memory is legal and rounds up)
        return Decimal(rng.randint(1, 10**6)) / Decimal(10 ** rng.randint(1, 6))
    return Decimal(rng.choice([1, 2, 3])) * 10**9


def _quantity(rng: random.Random, name: str, value: Decimal) -> object:
    if rng.random() < 0.02:
        return None  # `cpu: null` / `cpu: ~`: the apiserver stores 0
    if name == "cpu":
        return _spell(rng, value, _CPU_SUFFIX)
    if name in ("memory", "ephemeral-storage") or name.startswith("hugepages-"):
        return _spell(rng, value, _MEM_SUFFIX)
    return _spell(rng, value, {"": Decimal(1)})


def _value(rng: random.Random, name: str) -> Decimal:
    if name == "cpu":
        return _cpu_value(rng)
    if name == "memory":
        return _memory_value(rng)
    if name.startswith("hugepages-"):
        return Decimal(rng.choice([1, 2, 4, 8])) * 2 * 2**20
    return Decimal(rng.choice([0, 1, 1, 2, 4, 8, 64]))  # extended resources: whole units


def _resources(rng: random.Random, *, extended: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    names = ["cpu", "memory"]
    if extended:
        names += ["nvidia.com/gpu", "example.com/foo", "hugepages-2Mi", "ephemeral-storage"]
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    for name in names:
        if name not in ("cpu", "memory") and rng.random() < 0.75:
            continue
        mode = rng.random()
        value = _value(rng, name)
        exact_only = name not in ("cpu", "memory", "ephemeral-storage")
        if mode < 0.25:
            requests[name] = _quantity(rng, name, value)
        elif mode < 0.55:
            limits[name] = _quantity(rng, name, value)
        elif mode < 0.85:
            requests[name] = _quantity(rng, name, value)
            more = Decimal(0) if exact_only or rng.random() < 0.3 else _value(rng, name)
            limits[name] = _quantity(rng, name, value + more)
    return requests, limits


def _container(rng: random.Random, name: str, *, init: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": "registry.example.com/app:1"}
    requests, limits = _resources(rng, extended=rng.random() < 0.3)
    shape = rng.random()
    resources: dict[str, Any] = {}
    if requests or shape < 0.05:
        resources["requests"] = requests if requests or shape >= 0.02 else None
    if limits or shape > 0.97:
        resources["limits"] = limits
    if resources or rng.random() < 0.1:
        out["resources"] = resources
    if init and rng.random() < 0.5:
        out["restartPolicy"] = "Always"  # a sidecar
    elif not init and rng.random() < 0.02:
        out["restartPolicy"] = "Always"  # invalid on an app container in v1.37 (rejected)
    return out


def _pod_level(rng: random.Random, spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("requests", "limits"):
        if rng.random() < 0.6:
            picked: dict[str, Any] = {}
            for name in ("cpu", "memory"):
                if rng.random() < 0.7:
                    scale = Decimal(rng.choice([1, 2, 4, 16]))
                    base = Decimal(64) if name == "cpu" else Decimal(64 * 2**30)
                    picked[name] = _quantity(rng, name, base * scale / 16)
            out[kind] = picked
    return out


def random_pod(rng: random.Random, index: int = 0, *, overhead: bool = True) -> dict[str, Any]:
    """One random pod (a dict, as a manifest decodes); most are valid, some are not.
    ``overhead=False``: never ``spec.overhead`` (a real apiserver refuses it without a
    RuntimeClass); the draws are the same either way, so seeds stay comparable."""
    spec: dict[str, Any] = {
        "containers": [_container(rng, f"c{i}", init=False) for i in range(rng.randint(1, 3))]
    }
    if rng.random() < 0.5:
        spec["initContainers"] = [
            _container(rng, f"i{i}", init=True) for i in range(rng.randint(1, 3))
        ]
    if rng.random() < 0.25:
        spec["resources"] = _pod_level(rng, spec)
    if rng.random() < 0.15:
        drawn = {
            "cpu": _quantity(rng, "cpu", _cpu_value(rng)),
            "memory": _quantity(rng, "memory", Decimal(rng.randint(1, 256)) * 2**20),
        }
        if overhead:
            spec["overhead"] = drawn
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"oracle-{index}"},
        "spec": spec,
    }


def random_pods(seed: int, count: int, *, overhead: bool = True) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [random_pod(rng, i, overhead=overhead) for i in range(count)]


def resources_only(pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The parts of each pod that bear on its resources (for short failure messages)."""
    keep = ("resources", "restartPolicy", "name")
    out: list[dict[str, Any]] = []
    for p in pods:
        spec = p.get("spec") or {}
        slim: dict[str, Any] = {
            key: [{k: c[k] for k in keep if k in c} for c in spec.get(key) or []]
            for key in ("containers", "initContainers")
            if key in spec
        }
        for key in ("resources", "overhead"):
            if key in spec:
                slim[key] = spec[key]
        out.append(slim)
    return out
