"""Fixtures for the offline chart tests: the real helm binary and a render function.

helm comes from `$NODELIMITS_TESTBIN` or `tools/testbin/build.sh` (built from source),
resolved once after collection, outside any test's timeout (the first build takes many
minutes). Without Go the tests skip, saying why, unless NODELIMITS_REQUIRE_E2E=1 (CI).
promtool (devtools/promtool.py, tools/promtool/build.sh) the same way, only when a selected
test uses the `promtool` fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from devtools.promtool import find_promtool
from tests.chart.chart import Rendered, render
from tests.conftest import (
    binary_or_skip,
    found_or_unavailable,
    prepare_after_collection,
    prepared,
)

RenderFn = Callable[..., Rendered]
_PROMTOOL = pytest.StashKey["Path | TestbinUnavailable"]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build promtool once, outside any test's timeout, only if a selected test needs it."""
    needed = any("promtool" in getattr(item, "fixturenames", ()) for item in session.items)
    prepare_after_collection(session, _PROMTOOL, needed, found_or_unavailable(find_promtool))


@pytest.fixture(scope="session")
def promtool(request: pytest.FixtureRequest) -> Path:
    """The promtool binary; skips without Go (fails under NODELIMITS_REQUIRE_E2E=1)."""
    return binary_or_skip(prepared(request, _PROMTOOL, found_or_unavailable(find_promtool)))


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
