"""Reading manifests from files, directories and stdin for ``nodelimits check``.

Every document is located by file and index, so an error can say exactly where it is:
``jobs.yaml: document 3 (Job team-a/train): spec.template...cpu: invalid quantity``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from webhook.core.workloads import InvalidObject, iter_objects

__all__ = ["MANIFEST_SUFFIXES", "Document", "ManifestError", "expand_paths", "read_documents"]

MANIFEST_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
STDIN = "-"

# libyaml's loader is an order of magnitude faster than the pure-Python one.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ManifestError(ValueError):
    """A file or document that cannot be read; the message names file and document."""


@dataclass(frozen=True, slots=True)
class Document:
    """One object to check and where it came from."""

    source: str
    index: int
    """1-based document number within the file."""
    path: str
    """Where in the document: "" or "items[3]" for a List's item."""
    obj: Mapping[str, Any]

    @property
    def where(self) -> str:
        item = f" {self.path}" if self.path else ""
        return f"{self.source}: document {self.index}{item}"


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Files in the order given; directories walked recursively, sorted, by suffix."""
    out: list[str] = []
    for raw in paths:
        if raw == STDIN:
            out.append(raw)
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
            )
            out.extend(str(p) for p in found)
        elif path.is_file():
            out.append(raw)
        else:
            raise ManifestError(f"{raw}: no such file or directory")
    return out


def _read_text(source: str) -> str:
    if source == STDIN:
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{source}: not UTF-8 text") from None
    except OSError as exc:
        raise ManifestError(f"{source}: cannot read: {exc.strerror}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def read_documents(source: str) -> Iterator[Document | ManifestError]:
    """The objects of one file, in order; errors are yielded in place, not raised,
    so one bad document does not hide the verdicts on the others.
    """
    try:
        text = _read_text(source)
    except ManifestError as exc:
        yield exc
        return
    if source.lower().endswith(".json"):
        try:
            docs: Iterable[object] = [json.loads(text)]
        except json.JSONDecodeError as exc:
            yield ManifestError(f"{source}: invalid JSON: {exc}")
            return
        yield from _objects(source, docs)
        return
    yield from _objects(source, yaml.load_all(text, Loader=_Loader))


def _objects(source: str, docs: Iterable[object]) -> Iterator[Document | ManifestError]:
    index = 0
    iterator = iter(docs)
    while True:
        index += 1
        try:
            doc = next(iterator)
        except StopIteration:
            return
        except yaml.YAMLError as exc:
            # The YAML stream is broken from here on: report once and stop this file.
            yield ManifestError(f"{source}: document {index}: invalid YAML: {_yaml_problem(exc)}")
            return
        if doc is None:  # an empty document ("---" twice) is not an error
            continue
        try:
            for path, obj in iter_objects(doc):
                yield Document(source, index, path, obj)
        except InvalidObject as exc:
            yield ManifestError(f"{source}: document {index}: {exc}")
