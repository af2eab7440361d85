"""Builders for the platform layer's tests: Open API bodies, settings, simulator configs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from devtools.builders import node_limits
from webhook.config import CacheSettings, PlatformSettings
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.platform.errors import PlatformError, UnknownResourceGroup
from webhook.platform.models import ResourceGroupEntry
from webhook.simulator import Account, Fault, SimulatorConfig

__all__ = [
    "ACCOUNT",
    "Clock",
    "ScriptedSource",
    "cache_settings",
    "envelope",
    "limits_data",
    "platform_settings",
    "simulator_config",
    "unknown",
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


class Clock:
    """A clock tests move by hand (``clock.now += 61``) instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unknown(group: str = "Nope") -> UnknownResourceGroup:
    """The platform's answer 10004 for ``group``."""
    return UnknownResourceGroup(
        f'resource group "{group}" is unknown', code="10004", resource_group=group
    )


class ScriptedSource:
    """A scripted limits source: answers, fails or blocks on demand; counts calls.

    By default any (group, type) has limits; with ``offered_only`` only the pairs in
    ``groups`` do, the others are unknown (10004), as on the platform, so adding an entry
    to ``groups`` creates a group.
    """

    def __init__(self, *, offered_only: bool = False) -> None:
        self.calls = 0
        self.group_calls = 0
        self.error: PlatformError | None = None
        self.gate: asyncio.Event | None = None
        self.cpu = 40
        self.offered_only = offered_only
        self.groups: Sequence[ResourceGroupEntry] = (
            ResourceGroupEntry(resourceGroup="TeslaM40", acceleratorType=AcceleratorType.GPU),
            ResourceGroupEntry(resourceGroup="TeslaM40", acceleratorType=AcceleratorType.CPU),
        )

    def add_group(self, group: str, accelerator: AcceleratorType | None) -> None:
        """Offer ``group`` (as the platform does once it is created)."""
        entry = ResourceGroupEntry(resourceGroup=group, acceleratorType=accelerator)
        self.groups = (*self.groups, entry)

    async def node_limits(self, group: str, accelerator: AcceleratorType) -> NodeLimits:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        offered = {(g.resourceGroup, g.acceleratorType) for g in self.groups}
        if self.offered_only and (group, accelerator) not in offered:
            raise unknown(group)
        return node_limits(group, cpu=self.cpu, accelerator=accelerator.value)

    async def resource_groups(self) -> Sequence[ResourceGroupEntry]:
        self.group_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.groups
