"""Fixtures for tests against a real control plane (see devtools/controlplane.py).

- `control_plane`: one running `ControlPlane` for the whole run (session).
- `namespace`: a fresh namespace per test; never deleted, since nothing would finish it.
- `crds`: the workload kinds' upstream CRDs (devtools/crds.py), fetched once after
  collection (outside any test's timeout) when a test using them was selected; a failed
  fetch skips them, or fails them under NODELIMITS_REQUIRE_E2E=1.

The `testbin` fixture (the binaries) and the `e2e` marker come from tests/conftest.py.
A failing test that used the control plane gets the tail of the apiserver's log in its report.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from devtools import crds as upstream_crds
from devtools.controlplane import ControlPlane
from tests.conftest import ENV_REQUIRE, required

LOG_LINES_IN_REPORT = 60

_PLANE = pytest.StashKey[ControlPlane]()
_CRDS = pytest.StashKey["upstream_crds.CrdCache | upstream_crds.CrdsUnavailable"]()


def _uses_crds(item: pytest.Item) -> bool:
    return "crds" in getattr(item, "fixturenames", ())


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fetch the CRDs once, only if a selected test needs them (a first fetch downloads)."""
    if not any(_uses_crds(item) for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        try:
            session.stash[_CRDS] = upstream_crds.fetch()
        except upstream_crds.CrdsUnavailable as exc:
            session.stash[_CRDS] = exc


@pytest.fixture(scope="session")
def crds(request: pytest.FixtureRequest) -> upstream_crds.CrdCache:
    """The fetched CRD cache; skips (fails under NODELIMITS_REQUIRE_E2E=1) without it."""
    found = request.session.stash.get(_CRDS, None)
    if found is None:
        try:
            found = upstream_crds.fetch()
        except upstream_crds.CrdsUnavailable as exc:
            found = exc
    if isinstance(found, upstream_crds.CrdsUnavailable):
        if required():
            pytest.fail(str(found), pytrace=False)
        pytest.skip(f"{found} ({ENV_REQUIRE}=1 makes this a failure)")
    return found


@pytest.fixture(scope="session")
def control_plane(testbin: Path, request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """One etcd + kube-apiserver for the whole run; stopped at the end, also on Ctrl-C."""
    plane = ControlPlane(testbin)
    plane.start()  # raises ControlPlaneError with the component's log tail; nothing left over
    request.session.stash[_PLANE] = plane
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A new namespace named after the test. Not deleted: with no namespace controller a
    deleted namespace stays Terminating forever, so unique names are the isolation."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    name = f"e2e-{slug[:48].rstrip('-')}-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "namespace", name)
    return name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    plane = item.session.stash.get(_PLANE, None)
    uses_plane = "control_plane" in getattr(item, "fixturenames", ())
    if report.failed and plane is not None and uses_plane and plane.workdir is not None:
        tail = plane.log_tail("kube-apiserver", LOG_LINES_IN_REPORT)
        title = f"kube-apiserver log, last {LOG_LINES_IN_REPORT} lines ({plane.workdir})"
        report.sections.append((title, tail or "(empty)"))
    return report
