"""Fixtures for the offline chart tests: the real helm binary and a render function.

helm comes from `$NODELIMITS_TESTBIN` or `tools/testbin/build.sh` (built from source),
resolved once after collection, outside any test's timeout (the first build takes many
minutes). Without Go the tests skip, saying why, unless NODELIMITS_REQUIRE_E2E=1 (CI).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.chart.chart import Rendered, find_helm, render
from tests.e2e.controlplane import TestbinUnavailable

RenderFn = Callable[..., Rendered]
HERE = Path(__file__).parent
_HELM = pytest.StashKey["Path | TestbinUnavailable"]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(HERE in item.path.parents for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        try:
            session.stash[_HELM] = find_helm()
        except TestbinUnavailable as exc:
            session.stash[_HELM] = exc


@pytest.fixture(scope="session")
def helm(request: pytest.FixtureRequest) -> Path:
    found = request.session.stash.get(_HELM, None)
    if found is None:
        try:
            found = find_helm()
        except TestbinUnavailable as exc:
            found = exc
    if isinstance(found, TestbinUnavailable):
        if found.go_missing and os.environ.get("NODELIMITS_REQUIRE_E2E", "") in ("", "0"):
            pytest.skip(f"no helm: {found}")
        pytest.fail(f"no helm: {found}", pytrace=False)
    return found


@pytest.fixture
def render_chart(helm: Path, tmp_path: Path) -> RenderFn:
    """render_chart(values) -> Rendered; raises ChartError when helm refuses the values."""

    def _render(values: Mapping[str, Any] | None = None, *extra: str) -> Rendered:
        return render(helm, tmp_path, values, extra=extra)

    return _render
