"""The release workflow a user's CI runs (.github/workflows/release.yml) cannot run here
(network, OIDC identity, a Docker engine): these tests hold it to what `make release` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def steps(job: str) -> list[dict[str, Any]]:
    return list(workflow()["jobs"][job]["steps"])


def runs(job: str) -> str:
    return "\n".join(str(s.get("run", "")) for s in steps(job))


def test_runs_on_version_tags_and_checks_the_one_version() -> None:
    data = workflow()
    assert data[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    assert "check_versions()" in runs("check")
    assert "make install" in runs("check")


def test_image_is_multi_arch_with_sbom_provenance_labels_and_a_signature() -> None:
    [build] = [s for s in steps("image") if str(s.get("uses", "")).startswith("docker/build-push")]
    with_ = build["with"]
    assert set(with_["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert with_["sbom"] is True
    assert with_["provenance"] == "mode=max"
    args = with_["build-args"]
    assert "REVISION=${{ github.sha }}" in args
    assert "VERSION=${{ needs.check.outputs.version }}" in args
    assert "PYTHON_IMAGE=python:3.11-slim-bookworm@" in args
    assert "cosign sign --yes" in runs("image")


def test_chart_is_pushed_as_oci_signed_and_installed_from_the_registry() -> None:
    assert "helm package charts/nodelimits" in runs("chart")
    assert 'helm push "dist/nodelimits-' in runs("chart")
    assert "cosign sign --yes" in runs("chart")
    install = runs("install")
    assert 'helm install nodelimits "${CHARTS}/nodelimits" --version' in install
    assert "--set image.digest=" in install
    assert "cosign verify" in install
