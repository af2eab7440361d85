"""Builders of Kubernetes objects and platform data with valid defaults.

Each test states only what matters to it: ``pod(container(cpu="2", gpu=1))``. YAML appears
in tests only where YAML input is what is under test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from webhook.config import CacheSettings
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.metrics import Metrics
from webhook.platform.cache import LimitsCache, LimitsSource
from webhook.platform.errors import PlatformUnavailable, UnknownResourceGroup

GROUP_KEY = "nodelimits.io/resource-group"
TYPE_KEY = "nodelimits.io/accelerator-type"


def container(
    name: str = "main",
    *,
    cpu: str | int | None = None,
    memory: str | None = None,
    gpu: int | None = None,
    limits: dict[str, Any] | None = None,
    requests: dict[str, Any] | None = None,
    sidecar: bool = False,
) -> dict[str, Any]:
    """A container; cpu/memory are requests, gpu is a limit (as users write them)."""
    req: dict[str, Any] = dict(requests or {})
    lim: dict[str, Any] = dict(limits or {})
    if cpu is not None:
        req["cpu"] = cpu
    if memory is not None:
        req["memory"] = memory
    if gpu is not None:
        lim["nvidia.com/gpu"] = gpu
    resources: dict[str, Any] = {}
    if req:
        resources["requests"] = req
    if lim:
        resources["limits"] = lim
    out: dict[str, Any] = {"name": name, "image": "registry.example.com/app:1"}
    if resources:
        out["resources"] = resources
    if sidecar:
        out["restartPolicy"] = "Always"
    return out


def pod_spec(
    *containers: dict[str, Any],
    init: list[dict[str, Any]] | None = None,
    deadline: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers) or [container()], **extra}
    if init:
        spec["initContainers"] = init
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return spec


def group_annotations(
    group: str | None = "TeslaM40", accelerator: str | None = None
) -> dict[str, str]:
    out: dict[str, str] = {}
    if group is not None:
        out[GROUP_KEY] = group
    if accelerator is not None:
        out[TYPE_KEY] = accelerator
    return out


def pod(
    *containers: dict[str, Any],
    name: str = "p",
    namespace: str = "team-a",
    group: str | None = "TeslaM40",
    accelerator: str | None = None,
    deadline: int | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": group_annotations(group, accelerator),
        },
        "spec": pod_spec(*containers, deadline=deadline, **spec),
    }


def template(spec: dict[str, Any], metadata_annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"annotations": metadata_annotations}, "spec": spec}


def job(
    *containers: dict[str, Any],
    name: str = "train",
    namespace: str = "team-a",
    group: str | None = "TeslaM40",
    accelerator: str | None = None,
    deadline: int | None = None,
    parallelism: int | None = None,
    completions: int | None = None,
    on_job_metadata: bool = False,
) -> dict[str, Any]:
    """A Job; the annotation goes on the pod template unless ``on_job_metadata``."""
    notes = group_annotations(group, accelerator)
    spec: dict[str, Any] = {
        "template": template(
            pod_spec(*containers, restartPolicy="Never"), {} if on_job_metadata else notes
        )
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    if parallelism is not None:
        spec["parallelism"] = parallelism
    if completions is not None:
        spec["completions"] = completions
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if on_job_metadata:
        meta["annotations"] = notes
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}


def workload(
    kind: str,
    *containers: dict[str, Any],
    replicas: int | None = None,
    group: str | None = "TeslaM40",
    name: str = "w",
) -> dict[str, Any]:
    """A Deployment / StatefulSet / DaemonSet / ReplicaSet / ReplicationController, or a
    PodTemplate (whose pod is at ``template``: it has no spec)."""
    pod_template = template(pod_spec(*containers), group_annotations(group))
    meta = {"name": name, "namespace": "team-a"}
    if kind == "PodTemplate":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "template": pod_template}
    spec: dict[str, Any] = {"template": pod_template}
    if replicas is not None:
        spec["replicas"] = replicas
    api = "v1" if kind == "ReplicationController" else "apps/v1"
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": meta,
        "spec": spec,
    }


def cronjob(job_obj: dict[str, Any], name: str = "nightly") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": job_obj["metadata"]["namespace"]},
        "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": job_obj["spec"]}},
    }


def trainer_kind(**overrides: Any) -> dict[str, Any]:
    """A ``policy.workload_kinds`` row for an operator's own CRD, ``Trainer``
    (``example.com/v1``): one pod set per entry of ``spec.roles``, named by its ``name``,
    ``replicas`` pods each (default 1)."""
    row: dict[str, Any] = {
        "group": "example.com",
        "version": "v1",
        "kind": "Trainer",
        "plural": "trainers",
        "pod_sets": [
            {
                "each": "spec.roles[*]",
                "role": "role",
                "name": "$.name",
                "count": [{"path": "replicas", "default": 1}],
            }
        ],
    }
    return {**row, **overrides}


def node_limits(
    group: str = "TeslaM40",
    *,
    accelerator: str | None = "gpu",
    cpu: int = 40,
    memory_mi: int = 31888,
    cards: int = 2,
    nv: int = 0,
    dcu: int = 0,
    mlu: int = 0,
    nodes: int = 1,
    max_time: str = "unlimited",
) -> NodeLimits:
    return NodeLimits.model_validate(
        {
            "resourceGroup": group,
            "acceleratorType": accelerator,
            "cpuNumber": cpu,
            "memorySize": memory_mi,
            "gpuNumber": cards,
            "nvLimits": nv,
            "dcuLimits": dcu,
            "mluLimits": mlu,
            "nodeNumber": nodes,
            "maxTime": max_time,
        }
    )


def limits_entry(group: str = "TeslaM40", **kw: Any) -> dict[str, Any]:
    """A limits-file entry (plain data) with the same defaults as :func:`node_limits`."""
    return node_limits(group, **kw).model_dump(mode="json", exclude={"id", "userName"})


class FakeLimits:
    """A limits source for unit tests, read through a real :class:`LimitsCache` (see
    :func:`limits_cache`): one group (offered as gpu) is known, any other is unknown
    (10004); ``error`` makes every lookup fail. Counts lookups in ``calls``."""

    def __init__(self, limits: NodeLimits | None = None, *, error: Exception | None = None) -> None:
        self.limits = limits or node_limits()
        self.error = error
        self.calls = 0

    async def node_limits(self, group: str, accelerator: AcceleratorType) -> NodeLimits:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if group != self.limits.resourceGroup:
            raise UnknownResourceGroup("unknown", code="10004", resource_group=group)
        return self.limits.model_copy(update={"acceleratorType": accelerator})

    async def resource_groups(self) -> tuple[NodeLimits, ...]:
        return (self.limits,)


def limits_cache(
    source: LimitsSource, metrics: Metrics, *, clock: Callable[[], float] = time.monotonic
) -> LimitsCache:
    """The limits cache the server uses, with the default cache settings, over ``source``."""
    return LimitsCache(source, CacheSettings(), metrics, deadline=2.0, clock=clock)


async def failing_platform_cache(
    source: FakeLimits, metrics: Metrics, *, age: float = 120.0
) -> LimitsCache:
    """A cache holding ``source``'s limits ``age`` seconds old, whose refresh has failed:
    what the admission path sees while the platform is down (stale-if-error)."""
    now = [0.0]
    cache = limits_cache(source, metrics, clock=lambda: now[0])
    group = source.limits.resourceGroup
    await cache.get(group, AcceleratorType.GPU)
    source.error = PlatformUnavailable("the platform is down")
    now[0] = age
    await cache.get(group, AcceleratorType.GPU)  # stale: starts the refresh that fails
    while cache.tasks_running:
        await asyncio.sleep(0)
    return cache
