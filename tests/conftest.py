"""Shared test plumbing: the testbin (etcd, kube-apiserver, kubectl, helm built from source).

Tests under tests/e2e (a real control plane) and tests/chart (real helm) need the
binaries. They are resolved once, after collection and outside any test's timeout,
because the first `tools/testbin/build.sh` takes 20-35 minutes; its progress is shown
live. With no Go the tests skip, saying how to get it, unless NODELIMITS_REQUIRE_E2E=1
(CI), which turns every missing prerequisite into a failure.

Markers, added here so `-m` can select on them: `testbin` on every test that needs the
binaries, `e2e` on those that also need a running control plane.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TypeVar

import pytest

from devtools.controlplane import TestbinUnavailable, find_bin_dir

ENV_REQUIRE = "NODELIMITS_REQUIRE_E2E"
"""Set to 1 (as .ci/run does) to fail instead of skip when the binaries cannot be had."""
TESTS = Path(__file__).parent
NEEDS_TESTBIN = (TESTS / "e2e", TESTS / "chart")
_TESTBIN = pytest.StashKey["Path | TestbinUnavailable"]()
T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--write-docs",
        action="store_true",
        default=False,
        help="let tests that measure what docs/ report rewrite those sections (make docs); "
        "without it no test writes a tracked file",
    )


def required() -> bool:
    return os.environ.get(ENV_REQUIRE, "") not in ("", "0")


def _needs_testbin(item: pytest.Item) -> bool:
    return any(d in item.path.parents for d in NEEDS_TESTBIN)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: before `-m` deselects, so `-m "not e2e"` sees the markers.
    for item in items:
        if _needs_testbin(item):
            item.add_marker(pytest.mark.testbin)
        if TESTS / "e2e" in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under NODELIMITS_REQUIRE_E2E=1 (CI) a test of the real binaries never skips: whatever
    made it skip (a prerequisite missing, a fixture's guard) is reported as a failure."""
    report = yield
    if report.skipped and required() and item.get_closest_marker("testbin") is not None:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under {ENV_REQUIRE}=1, which makes a skip a failure: {reason}"
    return report


def prepare_after_collection(
    session: pytest.Session, key: pytest.StashKey[T], needed: bool, prepare: Callable[[], T]
) -> None:
    """Run ``prepare`` once, after collection and so outside any test's timeout, when a
    selected test needs it, with its progress reaching the terminal (a first build runs for
    minutes); its result goes to ``session.stash[key]`` for :func:`prepared`."""
    if not needed:
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        session.stash[key] = prepare()


def prepared(
    request: pytest.FixtureRequest, key: pytest.StashKey[T], prepare: Callable[[], T]
) -> T:
    """What :func:`prepare_after_collection` stashed, else ``prepare()`` now (a plugin that
    bypasses ``pytest_collection_finish``)."""
    found = request.session.stash.get(key, None)
    return prepare() if found is None else found


def found_or_unavailable(find: Callable[[], Path]) -> Callable[[], Path | TestbinUnavailable]:
    """``find``, with its :class:`TestbinUnavailable` returned instead of raised (stashed, it
    is reported by the fixture that needs the binary, not by collection)."""

    def attempt() -> Path | TestbinUnavailable:
        try:
            return find()
        except TestbinUnavailable as exc:
            return exc

    return attempt


def binary_or_skip(found: Path | TestbinUnavailable) -> Path:
    """The binary found, else a skip saying why when only Go is missing (a failure under
    NODELIMITS_REQUIRE_E2E=1), else a failure."""
    if isinstance(found, TestbinUnavailable):
        if found.go_missing and not required():
            pytest.skip(f"{found} ({ENV_REQUIRE}=1 makes this a failure)")
        pytest.fail(str(found), pytrace=False)
    return found


def pytest_collection_finish(session: pytest.Session) -> None:
    """Resolve (and if needed build) the binaries once, only if tests needing them run:
    those marked testbin here or by their own directory's conftest (node, release, oracle)."""
    needed = any(item.get_closest_marker("testbin") for item in session.items)
    prepare_after_collection(session, _TESTBIN, needed, found_or_unavailable(find_bin_dir))


@pytest.fixture(scope="session")
def testbin(request: pytest.FixtureRequest) -> Path:
    """Directory with the binaries; skips (or fails under NODELIMITS_REQUIRE_E2E=1)."""
    found = prepared(request, _TESTBIN, found_or_unavailable(lambda: find_bin_dir(build=False)))
    return binary_or_skip(found)
