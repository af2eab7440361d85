"""devtools.controlplane.run_build_script: what a tools/*/build.sh's exit says to a test."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.controlplane import TestbinUnavailable, run_build_script


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "build.sh"
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    return path


def test_the_last_line_printed_is_the_result(tmp_path: Path) -> None:
    built = script(tmp_path, 'echo "[x] building" >&2; echo one; echo "/cache/$1/bin"')
    assert run_build_script(built, "hint", None, "--node") == Path("/cache/--node/bin")


def test_exit_3_means_go_is_missing_and_says_the_hint(tmp_path: Path) -> None:
    with pytest.raises(TestbinUnavailable, match="Go is not installed: install Go") as exc:
        run_build_script(script(tmp_path, "exit 3"), "install Go")
    assert exc.value.go_missing


def test_another_failure_names_the_script_its_arguments_and_the_code(tmp_path: Path) -> None:
    failing = script(tmp_path, "echo /never; exit 1")
    with pytest.raises(TestbinUnavailable, match=r"build.sh --node failed with exit code 1"):
        run_build_script(failing, "hint", None, "--node")


def test_a_build_past_its_timeout_is_unavailable_not_a_hang(tmp_path: Path) -> None:
    with pytest.raises(TestbinUnavailable, match=r"did not finish within 0\.2 s"):
        run_build_script(script(tmp_path, "sleep 5"), "hint", 0.2)
