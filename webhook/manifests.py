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

from webhook import bounds
from webhook.core.workloads import InvalidObject, iter_objects

__all__ = [
    "MANIFEST_SUFFIXES",
    "STDIN",
    "Document",
    "ManifestError",
    "expand_paths",
    "read_documents",
]

MANIFEST_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
STDIN = "-"
_SUFFIXES_SHOWN = ", ".join(sorted(MANIFEST_SUFFIXES))

# libyaml's loader is an order of magnitude faster than the pure-Python one.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    """The safe loader with YAML merge keys (``<<``) read as kubectl reads them, whatever
    PyYAML is installed: keys of the mapping itself win over merged ones, and in
    ``<<: [*a, *b]`` an earlier mapping wins over a later one (PyYAML 6.0.4 reversed that,
    so ``check`` could read another annotation than the apiserver gets)."""

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        sources: list[list[tuple[yaml.Node, yaml.Node]]] = []
        own: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.tag == "tag:yaml.org,2002:value":
                    key_node.tag = "tag:yaml.org,2002:str"
                own.append((key_node, value_node))
                continue
            listed = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in listed:
                if not isinstance(source, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"expected a mapping for merging, but found {source.id}",
                        source.start_mark,
                    )
                self.flatten_mapping(source)
                sources.append(source.value)
        # Constructing a mapping, a later pair overwrites an earlier one with the same key:
        # the last merge source first and the first one last, then the mapping's own keys.
        node.value = [pair for source in reversed(sources) for pair in source] + own


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
    """Files in the order given; directories walked recursively, sorted, by suffix. A
    missing path, or a directory without one manifest file, is a :class:`ManifestError`."""
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
            if not found:  # a mistyped directory must not pass CI
                raise ManifestError(f"{raw}: no manifests found ({_SUFFIXES_SHOWN} files)")
            out.extend(str(p) for p in found)
        elif path.is_file():
            out.append(raw)
        else:
            raise ManifestError(f"{raw}: no such file or directory")
    return out


def _read_text(source: str) -> str:
    """The file (or stdin) as text: UTF-8, a leading BOM dropped (kubectl accepts one)."""
    try:
        raw = sys.stdin.buffer.read() if source == STDIN else Path(source).read_bytes()
    except OSError as exc:
        raise ManifestError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError(f"{source}: not UTF-8 text") from None


def _json_stream(source: str, text: str) -> Iterator[object]:
    """The JSON values of a file, one after another as kubectl reads a stream of objects;
    nesting bounded (:mod:`webhook.bounds`)."""
    decoder = json.JSONDecoder()
    at, end = 0, len(text)
    while True:
        while at < end and text[at] in " \t\r\n":
            at += 1
        if at == end:
            return
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{source}: invalid JSON: {exc}") from None
        except RecursionError:
            raise ManifestError(f"{source}: invalid JSON: {bounds.TooDeep()}") from None
        try:
            bounds.check_depth(value)
        except bounds.TooDeep as exc:
            raise ManifestError(f"{source}: invalid JSON: {exc}") from None
        yield value


_NESTING_EVENTS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_END_EVENTS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _check_yaml_depth(source: str, text: str) -> None:
    """libyaml's loader recurses in C (100k nested ``[`` crashed the process), so nesting is
    measured first from the event stream, which is read without recursion. Block nesting
    needs indentation, so only flow brackets can nest deep in a small file: without many
    of them there is nothing to measure."""
    if text.count("[") + text.count("{") <= bounds.MAX_DEPTH:
        return
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Base):
            if isinstance(event, _NESTING_EVENTS):
                depth += 1
                if depth > bounds.MAX_DEPTH:
                    raise ManifestError(f"{source}: invalid YAML: {bounds.TooDeep()}")
            elif isinstance(event, _END_EVENTS):
                depth -= 1
    except yaml.YAMLError:
        return  # the loader reports it, with its position


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
            docs: Iterable[object] = list(_json_stream(source, text))
        except ManifestError as exc:
            yield exc
            return
        yield from _objects(source, docs)
        return
    try:
        _check_yaml_depth(source, text)
    except ManifestError as exc:
        yield exc
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
