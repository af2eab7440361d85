"""The limits vocabulary: accelerator types, one node's limits, the limits file, maxTime,
and the accelerator resource table.

Pure data, validated once at the edge (the platform client, the limits file) and read by
the policy core; nothing here does I/O. Field names of :class:`NodeLimits` are the
platform's (the ``data`` of ``GET /ai/openapi/v2/instance-service/resources``).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

__all__ = [
    "AcceleratorType",
    "GroupEntry",
    "GroupTypes",
    "LimitsFile",
    "LimitsTable",
    "MaxTimeError",
    "NodeLimits",
    "offered_types",
    "parse_max_time",
]


class AcceleratorType(enum.StrEnum):
    """The platform's ``acceleratorType`` values (lowercase on the wire)."""

    GPU = "gpu"
    DCU = "dcu"
    MLU = "mlu"
    CPU = "cpu"

    @classmethod
    def parse(cls, text: str) -> AcceleratorType:
        """Case-insensitive parse; raises ``ValueError`` naming the accepted values."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            accepted = "|".join(t.value for t in cls)
            raise ValueError(f"unknown accelerator type {text!r} (expected {accepted})") from None


class MaxTimeError(ValueError):
    """``maxTime`` is neither unlimited nor a Slurm time string."""


# Slurm's accepted forms: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_SLURM_TIME = re.compile(
    r"""^(?:
        (?P<d>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?   # D-HH[:MM[:SS]]
      | (?P<h>\d+):(?P<hm>\d+):(?P<hs>\d+)                          # HH:MM:SS
      | (?P<m>\d+)(?::(?P<ms>\d+))?                                 # MM[:SS]
    )$""",
    re.VERBOSE,
)
_UNLIMITED = frozenset({"unlimited", "infinite"})


@functools.lru_cache(maxsize=256)  # a handful of distinct values, parsed on every decision
def parse_max_time(text: str) -> timedelta | None:
    """Parse a group's ``maxTime``: ``None`` means no limit.

    >>> parse_max_time("1-12:00:00")
    datetime.timedelta(days=1, seconds=43200)
    """
    raw = text.strip()
    if raw.lower() in _UNLIMITED:
        return None
    match = _SLURM_TIME.match(raw)
    if match is None:
        raise MaxTimeError(
            f"maxTime {text!r} is not 'unlimited' or a Slurm time "
            "(MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)"
        )
    g = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    days = g.get("d", 0)
    hours = g.get("dh", g.get("h", 0))
    minutes = g.get("dm", g.get("hm", g.get("m", 0)))
    seconds = g.get("ds", g.get("hs", g.get("ms", 0)))
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


NonNegInt = Annotated[StrictInt, Field(ge=0)]


class NodeLimits(BaseModel):
    """Per-node limits of one resource group (the ``data`` of the limits endpoint).

    Field names are the platform's. Integers are strict: a float, a bool or a numeric
    string from the platform is garbage, not a limit. ``nvLimits``/``dcuLimits``/
    ``mluLimits`` of 0 (or negative, or absent) mean "no extra vendor cap".
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: StrictStr | None = None
    cpuNumber: NonNegInt
    mluLimits: StrictInt | None = 0
    dcuLimits: StrictInt | None = 0
    nvLimits: StrictInt | None = 0
    gpuNumber: NonNegInt
    memorySize: NonNegInt
    resourceGroup: StrictStr
    userName: StrictStr | None = None
    nodeNumber: NonNegInt | None = None
    maxTime: StrictStr
    # Not part of the platform's `data`: the limits file adds it, and the client fills it
    # from the request so a NodeLimits always knows which type it describes.
    acceleratorType: AcceleratorType | None = None

    @field_validator("maxTime")
    @classmethod
    def _max_time_parses(cls, value: str) -> str:
        parse_max_time(value)  # an unparseable limit is an error, never a pass
        return value

    @field_validator("acceleratorType", mode="before")
    @classmethod
    def _accelerator_case_insensitive(cls, value: Any) -> Any:
        return AcceleratorType.parse(value) if isinstance(value, str) else value

    @property
    def max_time(self) -> timedelta | None:
        """``maxTime`` parsed; ``None`` = unlimited."""
        return parse_max_time(self.maxTime)

    def card_cap(self, accelerator: AcceleratorType) -> int:
        """Cards one node gives: ``gpuNumber``, capped by the vendor limit when it is > 0."""
        if accelerator is AcceleratorType.GPU:
            vendor = self.nvLimits
        elif accelerator is AcceleratorType.DCU:
            vendor = self.dcuLimits
        elif accelerator is AcceleratorType.MLU:
            vendor = self.mluLimits
        else:
            vendor = None
        if vendor is not None and vendor > 0:
            return min(self.gpuNumber, vendor)
        return self.gpuNumber


class LimitsFile(BaseModel):
    """The offline limits file: ``resourceGroups`` entries in the Open API's ``data`` shape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resourceGroups: tuple[NodeLimits, ...]

    @field_validator("resourceGroups")
    @classmethod
    def _entries_have_types_and_are_unique(
        cls, entries: tuple[NodeLimits, ...]
    ) -> tuple[NodeLimits, ...]:
        seen: set[tuple[str, AcceleratorType]] = set()
        for index, entry in enumerate(entries):
            if entry.acceleratorType is None:
                raise ValueError(f"entry {index} ({entry.resourceGroup}) has no acceleratorType")
            key = (entry.resourceGroup, entry.acceleratorType)
            if key in seen:
                raise ValueError(
                    f"entry {index}: duplicate resourceGroup {key[0]!r} for type {key[1].value}"
                )
            seen.add(key)
        return entries


class GroupEntry(Protocol):
    """One offered group: a ``ResourceGroupEntry`` from the API or a limits-file entry."""

    @property
    def resourceGroup(self) -> str: ...

    @property
    def acceleratorType(self) -> AcceleratorType | None: ...


GroupTypes = Mapping[str, frozenset[AcceleratorType]]
"""Group -> the accelerator types it is offered under (empty: the source does not say)."""


def offered_types(entries: Iterable[GroupEntry]) -> GroupTypes:
    """The group -> types table of a list of offered groups (the one place it is built)."""
    types: dict[str, set[AcceleratorType]] = {}
    for entry in entries:
        offered = types.setdefault(entry.resourceGroup, set())
        if entry.acceleratorType is not None:
            offered.add(entry.acceleratorType)
    return {group: frozenset(offered) for group, offered in types.items()}


class LimitsTable:
    """Limits by (group, type), and the types of each group, from a :class:`LimitsFile`.

    Built once; lookups only. ``get`` and ``types`` are what :func:`webhook.core.policy.evaluate`
    takes, and what the static limits source serves.
    """

    __slots__ = ("_by_key", "_types")

    def __init__(self, entries: Iterable[NodeLimits]) -> None:
        entries = tuple(entries)
        self._by_key = {(e.resourceGroup, e.acceleratorType): e for e in entries}
        self._types = offered_types(entries)

    @classmethod
    def of(cls, limits_file: LimitsFile) -> LimitsTable:
        return cls(limits_file.resourceGroups)

    def __iter__(self) -> Iterator[NodeLimits]:
        return iter(self._by_key.values())

    def get(self, group: str, accelerator: AcceleratorType) -> NodeLimits | None:
        return self._by_key.get((group, accelerator))

    def types(self, group: str) -> frozenset[AcceleratorType]:
        return self._types.get(group, frozenset())
