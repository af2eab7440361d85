"""promtool (Prometheus' rule checker and rule unit-test runner), built from the Go module
proxy by ``tools/promtool/build.sh`` into ~/.cache/nodelimits/promtool, only when asked.

Used by tests/chart/test_monitoring.py: ``promtool check rules`` and ``promtool test rules``
on the chart's PrometheusRule.
"""

from __future__ import annotations

import os
from pathlib import Path

from devtools.controlplane import TestbinUnavailable, run_build_script

__all__ = ["BUILD_SCRIPT", "ENV_PROMTOOL", "find_promtool"]

ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = ROOT / "tools" / "promtool" / "build.sh"
ENV_PROMTOOL = "NODELIMITS_PROMTOOL"
"""A promtool binary to use instead of building one."""
GO_HINT = (
    "promtool is built from source: install Go >= 1.26.7 from https://go.dev/dl/ and put "
    "`go` on PATH, then run tools/promtool/build.sh once (minutes on 2 cores, cached "
    f"afterwards); or set ${ENV_PROMTOOL} to a promtool binary"
)


def find_promtool(*, build: bool = True, build_timeout: float | None = None) -> Path:
    """The promtool binary: ``$NODELIMITS_PROMTOOL``, else what the build script prints
    (building it on first use; its progress goes to this process's stderr). Raises
    :class:`TestbinUnavailable` (``go_missing`` when Go is not installed)."""
    configured = os.environ.get(ENV_PROMTOOL)
    if configured:
        path = Path(configured)
        if not os.access(path, os.X_OK):
            raise TestbinUnavailable(
                f"${ENV_PROMTOOL}={path} is not an executable file; unset it to build promtool",
                go_missing=False,
            )
        return path
    if not build:
        raise TestbinUnavailable(f"${ENV_PROMTOOL} is not set", go_missing=False)
    return run_build_script(BUILD_SCRIPT, GO_HINT, build_timeout)
