"""The import graph: no import runs back up the layers, kopf's privates are touched from one
module, and nothing edits ``sys.path``. Read from the source with ``ast`` (nothing imported)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KOPF_GLUE = ROOT / "webhook" / "serve" / "kopf_glue.py"
# The pure core does no I/O: none of these may appear in it.
IO_MODULES = ("asyncio", "aiohttp", "httpx", "kopf", "prometheus_client", "socket", "subprocess")


def sources(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def imported(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, absolute (relative imports are resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def offenders(paths: list[Path], *forbidden: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in paths:
        bad = sorted({m for m in imported(path) if within(m, *forbidden)})
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_the_core_imports_nothing_above_it() -> None:
    assert (
        offenders(
            sources("webhook/core"),
            "webhook.platform",
            "webhook.serve",
            "webhook.config",
            "webhook.review",
            "webhook.check",
            "webhook.cli",
            "webhook.output",
            "webhook.metrics",
            "webhook.manifests",
            "webhook.simulator",
            "devtools",
        )
        == {}
    )


def test_the_core_does_no_io() -> None:
    assert offenders(sources("webhook/core"), *IO_MODULES) == {}


def test_the_platform_layer_imports_nothing_of_serve_or_the_review() -> None:
    assert (
        offenders(sources("webhook/platform"), "webhook.serve", "webhook.review", "webhook.check")
        == {}
    )


def test_the_product_never_imports_the_development_tooling() -> None:
    assert offenders(sources("webhook"), "devtools", "tests", "bench", "tools") == {}


def test_exactly_one_module_imports_kopf_privates() -> None:
    touching = {
        str(path.relative_to(ROOT))
        for path in sources("webhook", "devtools", "tests", "bench", "tools")
        if any(m.startswith("kopf._") for m in imported(path))
    }
    assert touching == {str(KOPF_GLUE.relative_to(ROOT))}


@pytest.mark.parametrize("top", ["tests", "tools", "bench", "devtools", "webhook"])
def test_no_file_edits_sys_path(top: str) -> None:
    editing = []
    for path in sources(top):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "path"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            ):
                editing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert editing == []
