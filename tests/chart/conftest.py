"""Fixtures for the offline chart tests: the real helm binary and a render function.

helm comes from `$NODELIMITS_TESTBIN` or `tools/testbin/build.sh` (built from source),
resolved once after collection, outside any test's timeout (the first build takes many
minutes). Without Go the tests skip, saying why, unless NODELIMITS_REQUIRE_E2E=1 (CI).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.chart.chart import Rendered, render

RenderFn = Callable[..., Rendered]


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
