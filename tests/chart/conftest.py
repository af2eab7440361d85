"""Fixtures for the offline chart tests: the real helm binary and a render function.

helm comes from `$NODELIMITS_TESTBIN` or `tools/testbin/build.sh` (built from source),
resolved once after collection, outside any test's timeout (the first build takes many
minutes). Without Go the tests skip, saying why, unless NODELIMITS_REQUIRE_E2E=1 (CI).
promtool (devtools/promtool.py, tools/promtool/build.sh) the same way, only when a selected
test uses the `promtool` fixture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from devtools.controlplane import TestbinUnavailable
from devtools.promtool import find_promtool
from tests.chart.chart import Rendered, render
from tests.conftest import ENV_REQUIRE, required

RenderFn = Callable[..., Rendered]
_PROMTOOL = pytest.StashKey["Path | TestbinUnavailable"]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build promtool once, outside any test's timeout, only if a selected test needs it."""
    if not any("promtool" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        try:
            session.stash[_PROMTOOL] = find_promtool()
        except TestbinUnavailable as exc:
            session.stash[_PROMTOOL] = exc


@pytest.fixture(scope="session")
def promtool(request: pytest.FixtureRequest) -> Path:
    """The promtool binary; skips without Go (fails under NODELIMITS_REQUIRE_E2E=1)."""
    found = request.session.stash.get(_PROMTOOL, None)
    if found is None:
        try:
            found = find_promtool()
        except TestbinUnavailable as exc:
            found = exc
    if isinstance(found, TestbinUnavailable):
        if found.go_missing and not required():
            pytest.skip(f"{found} ({ENV_REQUIRE}=1 makes this a failure)")
        pytest.fail(str(found), pytrace=False)
    return found


@pytest.fixture(scope="session")
def helm(testbin: Path) -> Path:
    """The helm binary built by tools/testbin (resolved once by tests/conftest.py)."""
    return testbin / "helm"


@pytest.fixture
def render_chart(helm: Path, tmp_path: Path) -> RenderFn:
    """render_chart(values) -> Rendered; raises ChartError when helm refuses the values."""

    def _render(values: Mapping[str, Any] | None = None, *extra: str) -> Rendered:
        return render(helm, tmp_path, values, extra=extra)

    return _render
