"""Limits from a limits file: the offline source for ``nodelimits check`` and air-gapped clusters.

The file carries the Open API's ``data`` fields verbatim plus ``acceleratorType``::

    resourceGroups:
      - {resourceGroup: TeslaM40, acceleratorType: gpu, cpuNumber: 40, memorySize: 31888,
         gpuNumber: 2, nvLimits: 0, dcuLimits: 0, mluLimits: 0, nodeNumber: 1, maxTime: unlimited}
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from webhook.core.limits import AcceleratorType, LimitsFile, LimitsTable, NodeLimits
from webhook.platform.errors import UnknownResourceGroup

__all__ = ["LimitsFileError", "StaticLimits", "load_limits_file"]

_ENDPOINT = "limits-file"


class LimitsFileError(ValueError):
    """The limits file cannot be read or is invalid; one line per problem, naming the field."""


def _location(loc: tuple[int | str, ...], data: object) -> str:
    parts: list[str] = []
    node = data
    for step in loc:
        if isinstance(step, int):
            name = ""
            if isinstance(node, list) and 0 <= step < len(node) and isinstance(node[step], dict):
                group = node[step].get("resourceGroup")
                name = f" ({group})" if isinstance(group, str) else ""
            parts.append(f"[{step}]{name}")
            node = node[step] if isinstance(node, list) and 0 <= step < len(node) else None
        else:
            parts.append(f".{step}" if parts else str(step))
            node = node.get(step) if isinstance(node, dict) else None
    return "".join(parts)


def load_limits_file(path: Path) -> LimitsFile:
    """Read and validate a limits file (YAML or JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LimitsFileError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise LimitsFileError(f"{path}: not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise LimitsFileError(f"{path}: expected an object with resourceGroups")
    try:
        return LimitsFile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        lines = [f"{path}: {_location(e['loc'], data)}: {e['msg']}" for e in errors]
        raise LimitsFileError("\n".join(lines)) from None


class StaticLimits:
    """A :class:`~webhook.platform.cache.LimitsSource` over a :class:`LimitsFile`; no I/O
    after construction. Served through the same ``LimitsCache`` as the live API."""

    def __init__(self, limits_file: LimitsFile) -> None:
        self._table = LimitsTable.of(limits_file)

    @classmethod
    def from_path(cls, path: Path) -> StaticLimits:
        return cls(load_limits_file(path))

    @property
    def table(self) -> LimitsTable:
        return self._table

    async def node_limits(self, group: str, accelerator: AcceleratorType) -> NodeLimits:
        found = self._table.get(group, accelerator)
        if found is None:
            raise UnknownResourceGroup(
                f'resource group "{group}" has no {accelerator.value} limits in the limits file',
                code="10004",
                endpoint=_ENDPOINT,
                resource_group=group,
            )
        return found

    async def resource_groups(self) -> tuple[NodeLimits, ...]:
        return tuple(self._table)
