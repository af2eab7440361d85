"""Pydantic models of the SCNet / Sugon AC Open API, validated once at the edge.

The platform wraps every answer in an envelope ``{"code": "0", "msg": ..., "data": ...}``.
``code`` is a *string*; HTTP 200 alone is not success, ``code == "0"`` is. The per-node
limits (``data`` of ``GET /ai/openapi/v2/instance-service/resources``) become a frozen
:class:`NodeLimits` whose ``maxTime`` is already parsed, so the pure core never sees raw
dicts or raw strings.

These models are pure data (no I/O): the policy core imports them, the client builds them.
"""

from __future__ import annotations

import enum
import functools
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
)

__all__ = [
    "AcceleratorType",
    "CenterInfo",
    "CenterUrl",
    "Envelope",
    "ErrorCode",
    "LimitsFile",
    "MaxTimeError",
    "NodeLimits",
    "RegionToken",
    "ResourceGroupEntry",
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


class ErrorCode(enum.StrEnum):
    """Envelope ``code`` values from the endpoint spec, with what each means for us."""

    SUCCESS = "0"
    INTERNAL = "10001"  # 内部异常: transient, retried
    MISSING_PARAMETERS = "10003"  # 参数不全: our own request is wrong
    INVALID_PARAMETERS = "10004"  # 参数无效: unknown group or accelerator type
    ACCOUNT_FROZEN = "10007"  # 用户已被冻结
    INSUFFICIENT_PERMISSION = "10008"  # 权限不足
    NO_API_ACCESS = "10009"  # 没有权限访问接口
    FILE_CHECK_FAILED = "10010"  # 文件校验失败 (file APIs; never expected here)
    FILE_TOO_LARGE = "10011"  # 文件过大 (file APIs; never expected here)
    CONNECTION_INTERRUPTED = "10012"  # 连接中断: transient, retried

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]

    @classmethod
    def lookup(cls, code: str) -> ErrorCode | None:
        try:
            return cls(code)
        except ValueError:
            return None


_MEANINGS: dict[ErrorCode, str] = {
    ErrorCode.SUCCESS: "success",
    ErrorCode.INTERNAL: "internal platform error",
    ErrorCode.MISSING_PARAMETERS: "missing request parameters",
    ErrorCode.INVALID_PARAMETERS: "invalid parameters (unknown resource group or accelerator type)",
    ErrorCode.ACCOUNT_FROZEN: "the platform account is frozen",
    ErrorCode.INSUFFICIENT_PERMISSION: "the platform account lacks permission",
    ErrorCode.NO_API_ACCESS: "the platform account may not call this API",
    ErrorCode.FILE_CHECK_FAILED: "file check failed",
    ErrorCode.FILE_TOO_LARGE: "file too large",
    ErrorCode.CONNECTION_INTERRUPTED: "connection interrupted",
}


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


class Envelope(BaseModel):
    """``{"code": "0", "msg": ..., "data": ...}``; ``data`` is validated by the caller."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: StrictStr
    msg: str | None = None
    data: Any = None

    @property
    def ok(self) -> bool:
        return self.code == ErrorCode.SUCCESS.value


class RegionToken(BaseModel):
    """One entry of the token endpoints' ``data`` array: one token per region."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    clusterId: StrictStr | StrictInt
    clusterName: str | None = None
    token: str | None = Field(default=None, repr=False)


class CenterUrl(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    enable: str | bool
    version: str | None = None
    url: StrictStr

    @property
    def enabled(self) -> bool:
        return str(self.enable).lower() == "true"


class CenterInfo(BaseModel):
    """``data`` of ``GET /ac/openapi/v2/center``: service URLs per kind."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    aiUrls: tuple[CenterUrl, ...] = ()
    hpcUrls: tuple[CenterUrl, ...] = ()
    efileUrls: tuple[CenterUrl, ...] = ()
    eshellUrls: tuple[CenterUrl, ...] = ()


class ResourceGroupEntry(BaseModel):
    """One resource group offered by ``GET instance-service/resource-group``.

    The official schema of that endpoint was not published; we read the group's name
    from ``resourceGroup`` and its accelerator type when present.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    resourceGroup: StrictStr
    acceleratorType: AcceleratorType | None = None

    @field_validator("acceleratorType", mode="before")
    @classmethod
    def _accelerator_case_insensitive(cls, value: Any) -> Any:
        return AcceleratorType.parse(value) if isinstance(value, str) else value
