"""Policy throughput on multi-role workloads (issue 15) against json.loads of the same
object, and the gang check's cost on a 64-role JobSet.

    python -m bench.kinds [--seconds S]
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from devtools.builders import node_limits
from webhook.core import gang, podsets, policy
from webhook.core.limits import AcceleratorType
from webhook.core.workloads import Workload, workload_of

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "manifests"
GPU = AcceleratorType.GPU
LIMITS = node_limits("a800x8", cpu=128, memory_mi=1031168, cards=8, nv=4, nodes=16)


def _example(file: str) -> dict[str, Any]:
    return copy.deepcopy(next(iter(yaml.safe_load_all((EXAMPLES / file).read_text()))))


def pytorchjob_3_roles() -> dict[str, Any]:
    obj = _example("pytorchjob.yaml")
    specs = obj["spec"]["pytorchReplicaSpecs"]
    specs["Evaluator"] = copy.deepcopy(specs["Worker"])
    specs["Evaluator"]["replicas"] = 1
    return obj


def jobset_64_roles() -> dict[str, Any]:
    obj = _example("jobset.yaml")
    job = obj["spec"]["replicatedJobs"][1]
    jobs = []
    for i in range(64):
        j = copy.deepcopy(job)
        j["name"] = f"shard-{i}"
        j["replicas"] = 1
        j["template"]["spec"]["parallelism"] = j["template"]["spec"]["completions"] = 1
        res = j["template"]["spec"]["template"]["spec"]["containers"][0]["resources"]
        res["limits"]["nvidia.com/gpu"] = 1 + i % 4  # 4 distinct shapes
        res["requests"]["cpu"] = res["limits"]["cpu"] = str(4 + 4 * (i % 3))
        jobs.append(j)
    obj["spec"]["replicatedJobs"] = jobs
    return obj


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


SETTINGS = policy.PolicySettings()


def evaluate(obj: dict[str, Any]) -> policy.Decision:
    w = workload_of(obj)
    assert isinstance(w, Workload)
    return policy.evaluate(w, SETTINGS, lambda g, t: LIMITS, lambda g: frozenset({GPU}))


def _decide_text(text: str) -> policy.Decision:
    return evaluate(json.loads(text))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    seconds = parser.parse_args().seconds
    settings = policy.PolicySettings()
    for name, obj in (
        ("PyTorchJob, 3 roles", pytorchjob_3_roles()),
        ("Volcano Job, 4 tasks", _example("volcano-job.yaml")),
        ("JobSet, 64 roles", jobset_64_roles()),
    ):
        text = json.dumps(obj)
        assert evaluate(obj).allowed, evaluate(obj).message
        specs = loads = 0.0
        for _ in range(2):  # alternate measurement and baseline, as the other benchmarks do
            specs = max(specs, rate(functools.partial(_decide_text, text), seconds))
            loads = max(loads, rate(functools.partial(json.loads, text), seconds))
        print(
            f"{name}: {specs:,.0f} specs/s (json.loads + policy), json.loads alone {loads:,.0f}/s, "
            f"ratio {specs / loads:.3f}, {len(text)} bytes"
        )
    planned = policy.plan(workload_of(jobset_64_roles()), settings)  # type: ignore[arg-type]
    classes, total = podsets.gang_classes(planned, GPU, settings)
    capacity = (128_000, 1031168 << 20, 4)
    for nodes in (16, 64):
        result = gang.place(classes, capacity, nodes, total)

        def check(n: int = nodes) -> object:
            return gang.place(classes, capacity, n, total)

        per = rate(check, seconds)
        print(
            f"gang, 64-role JobSet on {nodes} nodes: {result.method} -> {result.fits}, "
            f"{1e6 / per:,.1f} us per check"
        )


if __name__ == "__main__":
    main()
