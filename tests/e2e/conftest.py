"""Fixtures for tests against a real control plane (see tests/e2e/controlplane.py).

- `testbin`: the directory with etcd, kube-apiserver, kubectl and helm (session).
- `control_plane`: one running `ControlPlane` for the whole run (session).
- `namespace`: a fresh namespace per test; never deleted, since nothing would finish it.

The binaries are resolved once, after collection and outside any test's timeout, because
the first `tools/testbin/build.sh` takes 20-35 minutes; its progress is shown live. With
no Go on the machine the tests skip, saying how to get it, unless NODELIMITS_REQUIRE_E2E=1
(CI), which turns every missing prerequisite into a failure.

Every test under tests/e2e gets the `e2e` marker, so `pytest -m "not e2e"` leaves them out.
A failing test that used the control plane gets the tail of the apiserver's log in its report.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.e2e.controlplane import ControlPlane, TestbinUnavailable, find_bin_dir

ENV_REQUIRE = "NODELIMITS_REQUIRE_E2E"
"""Set to 1 (as .ci/run does) to fail instead of skip when the binaries cannot be had."""
HERE = Path(__file__).parent
LOG_LINES_IN_REPORT = 60

_TESTBIN = pytest.StashKey["Path | TestbinUnavailable"]()
_PLANE = pytest.StashKey[ControlPlane]()


def _required() -> bool:
    return os.environ.get(ENV_REQUIRE, "") not in ("", "0")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: before `-m` deselects, so `-m "not e2e"` sees the marker.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Resolve (and if needed build) the binaries once, only if e2e tests were selected."""
    if not any(HERE in item.path.parents for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    # The first build runs for many minutes: let its progress reach the terminal.
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        try:
            session.stash[_TESTBIN] = find_bin_dir()
        except TestbinUnavailable as exc:
            session.stash[_TESTBIN] = exc


@pytest.fixture(scope="session")
def testbin(request: pytest.FixtureRequest) -> Path:
    """Directory with the binaries; skips (or fails under NODELIMITS_REQUIRE_E2E=1)."""
    found = request.session.stash.get(_TESTBIN, None)
    if found is None:  # e.g. collected by a plugin that bypasses collection_finish
        try:
            found = find_bin_dir(build=False)
        except TestbinUnavailable as exc:
            found = exc
    if isinstance(found, TestbinUnavailable):
        if found.go_missing and not _required():
            pytest.skip(f"{found} ({ENV_REQUIRE}=1 makes this a failure)")
        pytest.fail(str(found), pytrace=False)
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
