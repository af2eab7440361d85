"""The registry round trip: the built image and the packaged chart pushed to a real OCI
registry on loopback (Debian's docker-registry), pulled back, and ``helm install oci://``
from it into a control plane; and what ``make release`` says when a step cannot be done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devtools.controlplane import ControlPlane
from devtools.image import ROOT, Built, ImageUnavailable, Podman
from devtools.registry import Registry
from devtools.release import (
    ReleaseError,
    check_versions,
    install_from_oci,
    package_chart,
    push_chart,
    push_image,
)
from tests.release.conftest import unavailable


@pytest.fixture(scope="module")
def registry(podman: Podman) -> Iterator[Registry]:
    reg = Registry()
    try:
        reg.start()
    except ImageUnavailable as exc:
        unavailable(exc)
    try:
        yield reg
    finally:
        reg.stop()


def test_push_pull_and_helm_install_from_the_registry(
    podman: Podman,
    built_image: Built,
    registry: Registry,
    plane: ControlPlane,
    tmp_path: Path,
) -> None:
    version = check_versions()
    image = push_image(podman, built_image.ref, registry.host, version, tmp_path)
    assert registry.tags("nodelimits") == [version]
    manifest = registry.manifest("nodelimits", image.digest)
    assert manifest["config"]["digest"] == f"sha256:{built_image.image_id}"
    # pulled back by digest: the very image that was built
    podman.run("rmi", "--force", image.pinned, check=False)
    podman.run("pull", "--tls-verify=false", image.pinned)
    assert podman.inspect(image.pinned)["Id"] == built_image.image_id

    helm = plane.bin_dir / "helm"
    tgz = package_chart(helm, version, tmp_path / "chart")
    chart = push_chart(helm, tgz, registry.host, env=plane.env())
    assert chart.reference == f"{registry.host}/charts/nodelimits:{version}"
    assert registry.tags("charts/nodelimits") == [version]
    layers = registry.manifest("charts/nodelimits", chart.digest)["layers"]
    assert [layer["mediaType"] for layer in layers] == [
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    ]

    installed = install_from_oci(plane, registry.host, version, image)
    assert installed.images == [image.pinned]
    assert installed.webhooks == 1
    status = plane.helm("status", installed.release, "-n", installed.namespace, "-o", "yaml")
    assert yaml.safe_load(status.stdout)["info"]["status"] == "deployed"
    kinds = set(
        plane.kubectl(
            "get",
            "deployment,service,configmap,secret,serviceaccount,poddisruptionbudget",
            "-n",
            installed.namespace,
            "-l",
            f"app.kubernetes.io/instance={installed.release}",
            "-o",
            "jsonpath={.items[*].kind}",
        ).stdout.split()
    )
    assert {"Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount"} <= kinds
    plane.helm("uninstall", installed.release, "-n", installed.namespace)


def test_a_registry_that_refuses_the_push_stops_with_one_line(
    podman: Podman, built_image: Built, tmp_path: Path
) -> None:
    down = Registry()  # never started: nothing listens on its port
    with pytest.raises(ReleaseError) as info:
        push_image(podman, built_image.ref, down.host, "0.0.0-test", tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"registry {down.host} refused the image push (")
    assert message.endswith("check it is up, reachable and writable")


def test_a_chart_version_that_differs_from_the_project_stops_the_release(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    (copy / "charts").mkdir(parents=True)
    shutil.copytree(ROOT / "charts" / "nodelimits", copy / "charts" / "nodelimits")
    for name in ("pyproject.toml", "Dockerfile"):
        shutil.copy(ROOT / name, copy / name)
    chart_yaml = copy / "charts" / "nodelimits" / "Chart.yaml"
    chart = yaml.safe_load(chart_yaml.read_text())
    chart["version"] = "9.9.9"
    chart_yaml.write_text(yaml.safe_dump(chart))
    with pytest.raises(ReleaseError, match=r"version mismatch: pyproject.toml .*9\.9\.9"):
        check_versions(copy)


def test_make_release_without_podman_says_what_to_install(tmp_path: Path) -> None:
    # PATH without podman: the release stops before building anything, with one line.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("git", "tar"):
        found = shutil.which(tool)
        assert found
        (bindir / tool).symlink_to(found)
    result = subprocess.run(
        [sys.executable, "-m", "tools.release", "release"],
        cwd=ROOT,
        env={**os.environ, "PATH": str(bindir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "release: podman not found: run tools/image/deps.sh as root "
        "(apt-get install podman buildah runc debootstrap docker-registry)"
    ]
