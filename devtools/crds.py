"""The upstream CRDs of the workload kinds nodelimits checks (issue 15), for the e2e tests.

``tools/crds/fetch.sh`` fetches them at pinned versions from the Go module proxy into a
cache directory (``~/.cache/nodelimits/crds/<key>/``) and lists the modules the proxy did not
serve in its ``MISSING`` file. This module reads that directory, finds the CRD of an
object's group and kind, and installs CRDs into a :class:`ControlPlane` (server-side apply:
several are over the 256 KiB a client-side apply's annotation may hold), waiting until the
apiserver serves them. No controller is needed to create their objects.

A kind whose CRD is not in the cache is either documented in :data:`NOT_FETCHED` (its
examples are judged offline, and the tests check the cache really lacks it) or an error.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from devtools.controlplane import ControlPlane

__all__ = ["NOT_FETCHED", "Crd", "CrdCache", "CrdsUnavailable", "fetch", "install", "read"]

ROOT = Path(__file__).resolve().parents[1]
FETCH = ROOT / "tools" / "crds" / "fetch.sh"
FETCH_TIMEOUT = 900.0
"""The first fetch downloads each module once (the Go module cache keeps them)."""

_SPARK = "github.com/kubeflow/spark-operator/v2"
NOT_FETCHED: dict[tuple[str, str], tuple[str | None, str]] = {
    ("sparkoperator.k8s.io", "SparkApplication"): (
        _SPARK,
        f"{_SPARK} is not served by the Go module proxy (tools/crds/fetch.sh: MISSING)",
    ),
    ("sparkoperator.k8s.io", "ScheduledSparkApplication"): (
        _SPARK,
        f"{_SPARK} is not served by the Go module proxy (tools/crds/fetch.sh: MISSING)",
    ),
    ("batch.volcano.sh", "CronJob"): (
        None,
        "volcano.sh/volcano v1.10.0, the newest release the Go module proxy serves, ships no "
        "CronJob CRD (batch.volcano.sh_cronjobs.yaml comes with later releases)",
    ),
}
"""Kinds of the kind table whose CRDs the cache cannot hold: (the module fetch.sh must list
in MISSING for the reason to hold, or None when no pin can have it; why). Their examples are
judged offline; a kind missing from the cache and not explained here fails."""


class CrdsUnavailable(RuntimeError):
    """``tools/crds/fetch.sh`` failed; ``go_missing`` when Go is not installed."""

    def __init__(self, message: str, *, go_missing: bool) -> None:
        super().__init__(message)
        self.go_missing = go_missing


@dataclass(frozen=True, slots=True)
class Crd:
    """One CustomResourceDefinition file of the cache."""

    name: str
    group: str
    kind: str
    plural: str
    versions: tuple[str, ...]
    namespaced: bool
    path: Path


@dataclass(frozen=True, slots=True)
class CrdCache:
    directory: Path
    crds: tuple[Crd, ...]
    missing_modules: tuple[str, ...]
    """Modules fetch.sh could not get (its MISSING file)."""

    def find(self, group: str, kind: str, version: str | None = None) -> Crd | None:
        for crd in self.crds:
            if (
                crd.group == group
                and crd.kind == kind
                and (version is None or version in crd.versions)
            ):
                return crd
        return None

    def why_absent(self, group: str, kind: str) -> str | None:
        """The documented reason a kind's CRD is not here, or None (then it is a bug)."""
        known = NOT_FETCHED.get((group, kind))
        if known is None:
            return None
        module, reason = known
        if module is not None and not any(
            m.split("@", 1)[0] == module for m in self.missing_modules
        ):
            return None  # fetched, yet its CRD is not there: a wrong pin or path
        return reason


def read(directory: Path) -> CrdCache:
    """The CRDs in a fetched directory (every ``*.yaml``; ``MISSING`` read as well)."""
    crds: list[Crd] = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            served = tuple(v["name"] for v in spec.get("versions", ()) if v.get("served", True))
            crds.append(
                Crd(
                    name=doc["metadata"]["name"],
                    group=spec["group"],
                    kind=spec["names"]["kind"],
                    plural=spec["names"]["plural"],
                    versions=served,
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    path=path,
                )
            )
    missing_file = directory / "MISSING"
    missing = missing_file.read_text().split() if missing_file.exists() else []
    return CrdCache(directory, tuple(crds), tuple(missing))


def fetch(*, timeout: float = FETCH_TIMEOUT) -> CrdCache:
    """Run ``tools/crds/fetch.sh`` (its progress goes to our stderr) and read the result."""
    try:
        result = subprocess.run(
            [str(FETCH)],
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout,
            env=dict(os.environ),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CrdsUnavailable(
            f"{FETCH} did not finish within {timeout:.0f}s", go_missing=False
        ) from None
    if result.returncode != 0:
        raise CrdsUnavailable(
            f"{FETCH} exited {result.returncode} (see its output above)"
            + ("; install Go from https://go.dev/dl/" if result.returncode == 3 else ""),
            go_missing=result.returncode == 3,
        )
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise CrdsUnavailable(f"{FETCH} printed no directory", go_missing=False)
    return read(Path(lines[-1]))


def install(plane: ControlPlane, crds: Iterable[Crd], *, timeout: float = 180.0) -> None:
    """Create (or update) the CRDs, then wait until each is Established. ``timeout`` bounds
    each step: one apply of the kind table's 19 CRDs took over 60 s on a loaded 2-core
    machine."""
    crds = list(crds)
    if not crds:
        return
    files: list[str] = []
    for crd in crds:
        files += ["-f", str(crd.path)]
    # Server-side: a client-side apply stores the whole object in an annotation, and several
    # of these CRDs are larger than the 256 KiB annotations may hold.
    plane.kubectl("apply", "--server-side", "--force-conflicts", *files, timeout=timeout)
    # Polled, not `kubectl wait`: that fails outright when it reads a CRD whose status has
    # no conditions yet ("accessor error: <nil>"), as right after its creation.
    deadline = time.monotonic() + timeout
    pending = {crd.name for crd in crds}
    established = '{.status.conditions[?(@.type=="Established")].status}'
    while pending:
        for name in sorted(pending):
            got = plane.kubectl("get", "crd", name, "-o", f"jsonpath={established}", check=False)
            if got.stdout.strip() == "True":
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"CRDs not Established within {timeout:.0f}s: {sorted(pending)}")
        if pending:
            time.sleep(0.2)
