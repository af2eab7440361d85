"""Fixtures for the release tests: the image built from the Dockerfile with podman, a
control plane, the platform simulator.

Tests in test_image.py and test_registry.py are marked `image` (and `testbin`, `e2e`):
they need root, podman, buildah, runc, debootstrap (when the base image is absent) and
docker-registry (tools/image/deps.sh installs them; .ci/run calls it). A missing one
skips them, saying what to install, unless NODELIMITS_REQUIRE_E2E=1 (CI): then it fails.

The image is built once per run (`podman build`, cached layers: ~10 s warm, about two
minutes cold plus the base image when it must be made with debootstrap).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.controlplane import ControlPlane
from devtools.image import Built, ImageUnavailable, Podman, build_image
from devtools.stack import SimulatorProcess
from tests.conftest import ENV_REQUIRE, required

HERE = Path(__file__).parent
IMAGE_TESTS = ("test_image.py", "test_registry.py")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "image: builds or runs the nodelimits image with podman (tests/release)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent == HERE and item.path.name in IMAGE_TESTS:
            item.add_marker(pytest.mark.image)
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.testbin)


def unavailable(exc: ImageUnavailable) -> None:
    if exc.missing and not required():
        pytest.skip(f"{exc} ({ENV_REQUIRE}=1 makes this a failure)")
    pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def podman() -> Podman:
    try:
        return Podman.default()
    except ImageUnavailable as exc:
        unavailable(exc)
        raise


@pytest.fixture(scope="session")
def built_image(podman: Podman) -> Built:
    """The image from the Dockerfile and this work tree (tag localhost/nodelimits:test)."""
    started = time.monotonic()
    try:
        built = build_image("localhost/nodelimits:test", podman=podman)
    except ImageUnavailable as exc:
        unavailable(exc)
        raise
    print(f"\n[image] built {built.ref} in {time.monotonic() - started:.1f} s (base {built.base})")
    return built


@pytest.fixture(scope="module")
def plane(testbin: Path) -> Iterator[ControlPlane]:
    """A control plane of its own per module: the registry test installs a webhook
    configuration that would answer for the image test's."""
    with ControlPlane(testbin) as cp:
        yield cp


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    sim = SimulatorProcess(tmp_path_factory.mktemp("simulator")).start()
    try:
        yield sim
    finally:
        sim.stop()
