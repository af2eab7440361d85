"""The image and the kind script: linted (hadolint, shellcheck) and consistent with the
chart (user, ports, entrypoint, version). Neither can run here: no Docker engine."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.chart.chart import CHART, REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
SCRIPTS = sorted((REPO_ROOT / "tools").rglob("*.sh"))
LINT_TIMEOUT = 60


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not on PATH: pip install -e '.[dev]' provides it", pytrace=False)
    return path


def lint(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=LINT_TIMEOUT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def instructions(name: str) -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(name + " ")]


def test_dockerfile_passes_hadolint() -> None:
    lint(tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    lint(tool("shellcheck"), "--severity=style", "--shell=bash", str(script))


def test_kind_script_is_linted_and_pins_kind() -> None:
    script = REPO_ROOT / "tools" / "kind-install.sh"
    assert script in SCRIPTS
    text = script.read_text()
    assert 'go install "sigs.k8s.io/kind@${KIND_VERSION}"' in text
    assert "KIND_VERSION=${KIND_VERSION:-v0.33.0}" in text
    assert "certificates.mode=builtin" in text


def test_image_is_multi_stage_slim_python_and_non_root() -> None:
    assert len(instructions("FROM")) >= 2
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text()
    assert instructions("USER") == ["65532:65532"]


def test_image_entrypoint_is_the_console_script_serve() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "nodelimits" in pyproject["project"]["scripts"]
    assert instructions("ENTRYPOINT") == ['["nodelimits", "serve"]']


def test_image_installs_no_dev_extras() -> None:
    runs = " ".join(instructions("RUN"))
    assert "pip install" in runs
    assert not re.search(r"\.\[[^\]]*dev", runs)


def test_image_and_chart_agree_on_user_ports_and_version() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    exposed = {int(p) for p in instructions("EXPOSE")[0].split()}
    server = values["config"]["server"]
    assert exposed == {server["port"], server["metrics_port"]}
    user = instructions("USER")[-1]
    pod = values["podSecurityContext"]
    assert user == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    assert chart["appVersion"] == pyproject["project"]["version"]
    assert any(line.startswith("VERSION=" + chart["appVersion"]) for line in instructions("ARG"))
