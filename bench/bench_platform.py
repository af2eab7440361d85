"""Platform client and cache figures, measured against the simulator on loopback.

1. Warm-cache lookup cost per call (``await cache.get(group, type)`` on a fresh entry),
   with a bare dict lookup in an async loop as the baseline of the same run.
2. Single-flight: ``--concurrency`` concurrent lookups of one uncached key while the
   simulator adds ``--latency`` seconds to the limits endpoint: upstream calls (want 1)
   and the wall time for all of them (want ~one latency).

    python bench/bench_platform.py [--calls 200000] [--concurrency 200] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from webhook.config import Settings
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.metrics import Metrics
from webhook.platform.client import LIMITS_PATH
from webhook.platform.factory import build_limits_cache
from webhook.simulator import Fault, Simulator, SimulatorConfig

GPU = AcceleratorType.GPU


def group(name: str) -> NodeLimits:
    return NodeLimits(
        resourceGroup=name,
        acceleratorType=GPU,
        cpuNumber=40,
        memorySize=31888,
        gpuNumber=2,
        nodeNumber=1,
        maxTime="unlimited",
    )


def settings_for(url: str) -> Settings:
    return Settings.model_validate(
        {
            "platform": {
                "center_url": url,
                "aksk_url": url,
                "token_source": "aksk",
                "user": "sim",
                "access_key": "sim-ak",
                "secret_key": "sim-sk",
            }
        }
    )


async def warm_lookup(url: str, calls: int) -> tuple[float, float]:
    """Seconds per call: (cache.get on a warm entry, dict lookup)."""
    async with build_limits_cache(settings_for(url), Metrics()) as cache:
        await cache.get("TeslaM40", GPU)
        table = {("TeslaM40", GPU): object()}
        key = ("TeslaM40", GPU)

        async def dict_loop() -> None:
            for _ in range(calls):
                table[key]  # the baseline is the bare lookup

        async def cache_loop() -> None:
            for _ in range(calls):
                await cache.get("TeslaM40", GPU)

        best = {"dict": float("inf"), "cache": float("inf")}
        for _ in range(3):
            for name, loop in (("dict", dict_loop), ("cache", cache_loop)):
                t0 = time.perf_counter()
                await loop()
                best[name] = min(best[name], time.perf_counter() - t0)
        return best["cache"] / calls, best["dict"] / calls


async def single_flight(sim: Simulator, concurrency: int, latency: float) -> tuple[int, float]:
    """(upstream calls, seconds until every lookup had its answer)."""
    async with build_limits_cache(settings_for(sim.url), Metrics()) as cache:
        await cache.get("TeslaM40", GPU)  # token and center discovery out of the way
        sim.add_fault(Fault(kind="latency", seconds=latency, path=LIMITS_PATH))
        before = sim.requests(LIMITS_PATH)
        t0 = time.perf_counter()
        await asyncio.gather(*(cache.get("Uncached", GPU) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        return sim.requests(LIMITS_PATH) - before, elapsed


async def run(args: argparse.Namespace) -> None:
    sim = Simulator(SimulatorConfig(resourceGroups=(group("TeslaM40"), group("Uncached"))))
    await sim.start()
    try:
        per_call, per_dict = await warm_lookup(sim.url, args.calls)
        upstream, elapsed = await single_flight(sim, args.concurrency, args.latency)
    finally:
        await sim.stop()
    print(f"python {sys.version.split()[0]}, {args.calls} warm lookups, best of 3")
    print(f"warm cache.get:     {per_call * 1e6:8.3f} us/call")
    print(f"dict lookup:        {per_dict * 1e6:8.3f} us/call")
    print(f"ratio cache/dict:   {per_call / per_dict:8.1f}x")
    print(
        f"single-flight: {args.concurrency} concurrent lookups, {args.latency * 1000:.0f} ms "
        f"latency -> {upstream} upstream call(s), all answered in {elapsed * 1000:.0f} ms "
        f"({elapsed / args.latency:.2f}x latency)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
