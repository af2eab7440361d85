"""The simulator on a real loopback socket, plain or TLS, and clients pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devtools.certs import CertPaths, make_ca_and_cert
from tests.platform_helpers import platform_settings, simulator_config
from webhook.config import Settings
from webhook.metrics import Metrics
from webhook.platform.cache import LimitsCache
from webhook.platform.factory import build_limits_cache
from webhook.simulator import Simulator


def other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """A plain-HTTP simulator; after the test, no task of the test may still run."""
    before = other_tasks()
    sim = Simulator(simulator_config())
    await sim.start()
    yield sim
    await sim.stop()
    await asyncio.sleep(0)
    assert other_tasks() - before == set(), "a task outlived the test"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return make_ca_and_cert(tmp_path_factory.mktemp("simulator-tls"))


@pytest.fixture
async def tls_simulator(certs: CertPaths) -> AsyncIterator[Simulator]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)
    sim = Simulator(simulator_config())
    await sim.start(ssl_context=context)
    yield sim
    await sim.stop()


def settings_for(sim: Simulator, **platform: Any) -> Settings:
    """Settings that discover the AI URL and get AK/SK tokens from ``sim``."""
    return Settings(platform=platform_settings(sim.url, **platform))


@contextlib.asynccontextmanager
async def cache_on(
    sim: Simulator, *, clock: Any = None, cache: dict[str, Any] | None = None, **platform: Any
) -> AsyncIterator[LimitsCache]:
    """A cache over the live client talking to ``sim``; on exit, every connection is closed."""
    settings = settings_for(sim, **platform).model_copy(
        update={"cache": Settings().cache.model_copy(update=cache or {})}
    )
    kwargs = {"clock": clock} if clock is not None else {}
    async with build_limits_cache(settings, Metrics(), **kwargs) as built:
        yield built
    await wait_for_no_connections(sim)


async def wait_for_no_connections(sim: Simulator, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while sim.open_connections:
            await asyncio.sleep(0.01)


def ca_bundle(certs: CertPaths) -> Path:
    return certs.ca
