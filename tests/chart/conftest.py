"""Fixtures for the offline chart tests: the real helm binary and a render function.

helm comes from `$NODELIMITS_TESTBIN` or `tools/testbin/build.sh` (built from source).
Without Go the tests skip, saying why, unless NODELIMITS_REQUIRE_E2E=1 (CI).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.chart.chart import Rendered, find_helm, render
from tests.e2e.controlplane import TestbinUnavailable

RenderFn = Callable[..., Rendered]


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return find_helm()
    except TestbinUnavailable as exc:
        if exc.go_missing and os.environ.get("NODELIMITS_REQUIRE_E2E", "") in ("", "0"):
            pytest.skip(f"no helm: {exc}")
        pytest.fail(f"no helm: {exc}", pytrace=False)


@pytest.fixture
def render_chart(helm: Path, tmp_path: Path) -> RenderFn:
    """render_chart(values) -> Rendered; raises ChartError when helm refuses the values."""

    def _render(values: Mapping[str, Any] | None = None, *extra: str) -> Rendered:
        return render(helm, tmp_path, values, extra=extra)

    return _render
