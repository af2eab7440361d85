"""The steps of a release, each failing with one line that says what and how to fix it
(`ReleaseError`): versions, the commit's export, the image pushed, the chart packaged and
pushed as an OCI artifact, and a `helm install oci://...` into a control plane from it.

tools/release.py (``make release``) runs them in order; tests/release/test_registry.py
runs the push and install steps against a loopback registry.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from devtools.controlplane import ControlPlane
from devtools.image import ROOT, ImageUnavailable, Podman, project_version

CHART = ROOT / "charts" / "nodelimits"
IMAGE_REPOSITORY = "nodelimits"
CHART_REPOSITORY = "charts"
"""The chart is pushed as oci://REGISTRY/charts/nodelimits:VERSION."""


class ReleaseError(RuntimeError):
    """One line: what failed, and how to fix it."""


def check_versions(root: Path = ROOT) -> str:
    """The one version: pyproject.toml's; the chart's version and appVersion must say it."""
    version = project_version() if root == ROOT else _version_of(root)
    chart = yaml.safe_load((root / "charts" / "nodelimits" / "Chart.yaml").read_text())
    if chart.get("version") != version or str(chart.get("appVersion")) != version:
        raise ReleaseError(
            f"version mismatch: pyproject.toml {version}, Chart.yaml version "
            f"{chart.get('version')} appVersion {chart.get('appVersion')}: "
            "set all three to the release's version"
        )
    dockerfile = (root / "Dockerfile").read_text()
    if f"ARG VERSION={version}\n" not in dockerfile:
        raise ReleaseError(f"Dockerfile's ARG VERSION default is not {version}: update it")
    return version


def _version_of(root: Path) -> str:
    import tomllib

    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def export_commit(into: Path, rev: str = "HEAD") -> str:
    """``git archive`` of ``rev`` into ``into``; returns the full commit id."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise ReleaseError(f"{rev} is not a commit of {ROOT}: release from a git clone") from None
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit], stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise ReleaseError(f"git archive {commit} failed")
    return commit


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


@dataclass(frozen=True)
class Pushed:
    reference: str
    """REGISTRY/REPO:TAG"""
    digest: str
    """sha256:..."""

    @property
    def pinned(self) -> str:
        return f"{self.reference.rsplit(':', 1)[0]}@{self.digest}"


def push_image(podman: Podman, ref: str, registry: str, version: str, workdir: Path) -> Pushed:
    target = f"{registry}/{IMAGE_REPOSITORY}:{version}"
    digestfile = workdir / "image.digest"
    # plain HTTP on loopback only: a registry elsewhere must speak TLS
    tls = ["--tls-verify=false"] if registry.startswith(("127.0.0.1:", "localhost:")) else []
    try:
        result = podman.run("push", *tls, "--digestfile", str(digestfile), ref, target, check=False)
    except ImageUnavailable as exc:
        raise ReleaseError(str(exc)) from None
    if result.returncode != 0:
        raise ReleaseError(
            f"registry {registry} refused the image push ({_last_line(result)}): "
            "check it is up, reachable and writable"
        )
    return Pushed(target, digestfile.read_text().strip())


def package_chart(helm: Path, version: str, out: Path, chart: Path = CHART) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(helm), "package", str(chart), "--destination", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ReleaseError(f"helm package failed: {_last_line(result)}")
    tgz = out / f"nodelimits-{version}.tgz"
    if not tgz.exists():
        raise ReleaseError(
            f"helm package wrote no {tgz.name}: Chart.yaml's version is not {version}"
        )
    return tgz


def push_chart(helm: Path, tgz: Path, registry: str, env: dict[str, str] | None = None) -> Pushed:
    plain = ["--plain-http"] if registry.startswith(("127.0.0.1:", "localhost:")) else []
    result = subprocess.run(
        [str(helm), "push", str(tgz), f"oci://{registry}/{CHART_REPOSITORY}", *plain],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if result.returncode != 0:
        raise ReleaseError(
            f"registry {registry} refused the chart push ({_last_line(result)}): "
            "check it is up and accepts OCI artifacts"
        )
    out = result.stdout + result.stderr
    pushed = re.search(r"Pushed: (\S+)", out)
    digest = re.search(r"Digest: (sha256:[0-9a-f]{64})", out)
    if not pushed or not digest:
        raise ReleaseError(f"helm push printed no reference and digest: {out.strip()[:200]}")
    return Pushed(pushed.group(1), digest.group(1))


@dataclass(frozen=True)
class Installed:
    release: str
    namespace: str
    images: list[str]
    webhooks: int


def install_from_oci(
    plane: ControlPlane,
    registry: str,
    version: str,
    image: Pushed,
    *,
    release: str = "nodelimits",
    namespace: str = "nodelimits-system",
) -> Installed:
    """``helm install oci://REGISTRY/charts/nodelimits --version V`` with documented values
    only (the image by digest); the apiserver must accept every object."""
    repository, _, _ = image.reference.rpartition(":")
    args = [
        "install",
        release,
        f"oci://{registry}/{CHART_REPOSITORY}/nodelimits",
        "--version",
        version,
        "--namespace",
        namespace,
        "--create-namespace",
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.digest={image.digest}",
    ]
    if registry.startswith(("127.0.0.1:", "localhost:")):
        args.append("--plain-http")
    result = plane.helm(*args, check=False)
    if result.returncode != 0:
        raise ReleaseError(f"helm install from oci://{registry} failed: {_last_line(result)}")
    images = plane.kubectl(
        "get",
        "deployments",
        "-n",
        namespace,
        "-l",
        f"app.kubernetes.io/instance={release}",
        "-o",
        "jsonpath={.items[*].spec.template.spec.containers[*].image}",
    ).stdout.split()
    hooks = plane.kubectl(
        "get",
        "validatingwebhookconfigurations",
        "-l",
        f"app.kubernetes.io/instance={release}",
        "-o",
        "name",
    ).stdout.split()
    return Installed(release, namespace, images, len(hooks))


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="nodelimits-release-"))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
