"""Pydantic models of the SCNet / Sugon AC Open API wire format, validated once at the edge.

The platform wraps every answer in an envelope ``{"code": "0", "msg": ..., "data": ...}``.
``code`` is a *string*; HTTP 200 alone is not success, ``code == "0"`` is. The limits
themselves (:class:`~webhook.core.limits.NodeLimits`) are domain vocabulary and live in
the core; these are the envelope, error codes, tokens and discovery answers around them.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from webhook.core.limits import AcceleratorType

__all__ = [
    "CenterInfo",
    "CenterUrl",
    "Envelope",
    "ErrorCode",
    "RegionToken",
    "ResourceGroupEntry",
]


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
