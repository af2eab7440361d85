"""Builders for the platform layer's tests: Open API bodies, settings, simulator configs."""

from __future__ import annotations

from typing import Any

from devtools.builders import node_limits
from webhook.config import CacheSettings, PlatformSettings
from webhook.core.limits import NodeLimits
from webhook.simulator import Account, Fault, SimulatorConfig

__all__ = [
    "ACCOUNT",
    "cache_settings",
    "envelope",
    "limits_data",
    "platform_settings",
    "simulator_config",
]

ACCOUNT = Account(
    user="alice",
    accessKey="AK-alice-4f1c",
    secretKey="SK-alice-9d2e",
    password="pw-alice-77aa",
    orgId="org-alice-31bb",
)
"""Credentials distinctive enough to grep for in reprs, messages and logs."""


def limits_data(group: str = "TeslaM40", **overrides: Any) -> dict[str, Any]:
    """The ``data`` of the limits endpoint, as the platform sends it."""
    data = node_limits(group).model_dump(mode="json", exclude={"acceleratorType"})
    return {**data, "id": None, "userName": None, **overrides}


def envelope(data: Any = None, code: Any = "0", msg: str = "success") -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


def platform_settings(url: str, **overrides: Any) -> PlatformSettings:
    """Settings pointing every endpoint at ``url`` with fast, test-sized timeouts."""
    values: dict[str, Any] = {
        "center_url": url,
        "aksk_url": url,
        "token_source": "aksk",
        "user": ACCOUNT.user,
        "access_key": ACCOUNT.accessKey,
        "secret_key": ACCOUNT.secretKey,
        "password": ACCOUNT.password,
        "org_id": ACCOUNT.orgId,
        "connect_timeout": 0.5,
        "request_timeout": 0.5,
        "deadline": 1.5,
        **overrides,
    }
    return PlatformSettings.model_validate(values)


def cache_settings(**overrides: Any) -> CacheSettings:
    return CacheSettings.model_validate(overrides)


def simulator_config(
    *groups: NodeLimits, faults: tuple[Fault, ...] = (), **overrides: Any
) -> SimulatorConfig:
    return SimulatorConfig(
        resourceGroups=groups or (node_limits(),),
        accounts=(ACCOUNT,),
        faults=faults,
        seed=1,
        **overrides,
    )
