"""Realistic, varied manifests for the benchmarks (deterministic: seeded)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from devtools.builders import container, cronjob, job, pod, workload

GROUPS = ("TeslaM40", "a800x8", "kshdtest", "mlu370pool", "cpu-small")
DEVICES = {
    "TeslaM40": "nvidia.com/gpu",
    "a800x8": "nvidia.com/gpu",
    "kshdtest": "hygon.com/dcu",
    "mlu370pool": "cambricon.com/mlu370",
    "cpu-small": None,
}


# What manifests ask for: round amounts. (Thousands of distinct random millicore values
# would measure the quantity memo's misses, not the policy; see docs/performance.md.)
CPUS = tuple(f"{m}m" for m in (100, 200, 250, 300, 500, 750, 1500, 2500)) + tuple(
    str(c) for c in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
)


def _containers(rng: random.Random, group: str) -> list[dict[str, Any]]:
    device = DEVICES[group]
    out = []
    for i in range(rng.randint(1, 3)):
        limits: dict[str, Any] = {"memory": f"{rng.choice([1, 2, 4, 8, 16, 64])}Gi"}
        if device and i == 0:
            limits[device] = rng.randint(1, 8)
        out.append(container(f"c{i}", cpu=rng.choice(CPUS), limits=limits))
    return out


def manifest(rng: random.Random, index: int) -> dict[str, Any]:
    group = rng.choice(GROUPS)
    cs = _containers(rng, group)
    shape = rng.random()
    if shape < 0.4:
        obj = pod(*cs, group=group, name=f"p{index}", deadline=rng.choice([None, 3600]))
        if rng.random() < 0.3:
            obj["spec"]["initContainers"] = [
                container("sidecar", cpu="100m", sidecar=True),
                container("init", cpu="1"),
            ]
        return obj
    if shape < 0.75:
        return job(*cs, group=group, name=f"j{index}", parallelism=rng.randint(1, 8), deadline=7200)
    if shape < 0.85:
        return cronjob(job(*cs, group=group, deadline=600), name=f"cj{index}")
    return workload(
        rng.choice(["Deployment", "StatefulSet"]), *cs, replicas=2, group=group, name=f"w{index}"
    )


def manifests(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [manifest(rng, i) for i in range(count)]


def best_of(rounds: int, *fns: Callable[[], object]) -> list[float]:
    """The fastest of ``rounds`` runs of each function, in seconds.

    Rounds alternate between the functions, so a burst of load from elsewhere on the
    machine hits the measurement and its baseline alike instead of skewing the ratio.
    """
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best
