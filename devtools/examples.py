"""The shipped examples (examples/manifests, examples/limits.yaml) as test inputs.

Unit, e2e and node tests judge the same files a user is told to try; this module is the
one place that knows where they are and how to pick them by kind.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "LIMITS_FILE",
    "MANIFESTS",
    "REFERENCED_KINDS",
    "built_in_files",
    "documents",
    "example",
    "files_by_kind",
    "group_kind",
    "judged",
    "referenced",
]

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "examples" / "manifests"
LIMITS_FILE = ROOT / "examples" / "limits.yaml"

BUILT_IN_GROUPS = frozenset({"", "apps", "batch"})
"""API groups every apiserver serves without a CRD (the kinds nodelimits validates there)."""

REFERENCED_KINDS = frozenset(
    {
        ("trainer.kubeflow.org", "ClusterTrainingRuntime"),
        ("trainer.kubeflow.org", "TrainingRuntime"),
    }
)
"""Kinds an example file holds beside its own kind's objects because they name them (a
TrainJob's training runtime): created first, never judged, and not the file's kind."""


def documents(path: Path) -> list[dict[str, Any]]:
    """The objects of one manifest file, in order (empty documents dropped)."""
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def example(file: str, index: int = 0) -> dict[str, Any]:
    """A private copy of document ``index`` of ``examples/manifests/<file>``."""
    return copy.deepcopy(documents(MANIFESTS / file)[index])


def group_kind(doc: dict[str, Any]) -> tuple[str, str]:
    """``(group, kind)`` of an object: ``("", "Pod")``, ``("batch.volcano.sh", "Job")``."""
    group, _, _version = str(doc["apiVersion"]).rpartition("/")
    return group, str(doc["kind"])


def built_in_files() -> list[Path]:
    """The example files holding only built-in kinds: applicable to any apiserver."""
    return [
        path
        for path in sorted(MANIFESTS.glob("*.yaml"))
        if all(group_kind(d)[0] in BUILT_IN_GROUPS for d in documents(path))
    ]


def judged(path: Path) -> list[dict[str, Any]]:
    """The documents of a file to judge: all but those of :data:`REFERENCED_KINDS`."""
    return [d for d in documents(path) if group_kind(d) not in REFERENCED_KINDS]


def referenced(path: Path) -> list[dict[str, Any]]:
    """The documents of a file that its judged ones name (:data:`REFERENCED_KINDS`)."""
    return [d for d in documents(path) if group_kind(d) in REFERENCED_KINDS]


def files_by_kind() -> dict[tuple[str, str], Path]:
    """The example file of each kind whose file holds only that kind (its first such file),
    beside the objects they name (:data:`REFERENCED_KINDS`)."""
    out: dict[tuple[str, str], Path] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        kinds = {group_kind(d) for d in judged(path)}
        if len(kinds) == 1:
            out.setdefault(kinds.pop(), path)
    return out
