"""TrainJob (Kubeflow Trainer v2): its pods, from the training runtime it names — pure.

A TrainJob (``trainer.kubeflow.org/v1alpha1``) holds no pod template. Its
``spec.runtimeRef`` names a ClusterTrainingRuntime (the default kind) or a TrainingRuntime
of its own namespace, whose ``spec.template`` is a JobSet template; the trainer's
controller builds a JobSet from it (kubeflow/trainer ``pkg/runtime/core/trainingruntime.go``
and ``pkg/runtime/framework/plugins/{plainml,torch,jax,xgboost,mpi}``):

* the trainer's pods are the replicated job labelled
  ``trainer.kubeflow.org/trainjob-ancestor-step: trainer``; it runs ``replicas: 1`` and
  ``spec.trainer.numNodes`` pods, else the runtime's ``spec.mlPolicy.numNodes`` (default 1;
  with no ``mlPolicy`` at all, the job's own ``parallelism``). Under an MPI policy the
  count goes to the job named ``node``, less one when ``runLauncherAsNode`` (at least 1);
* ``spec.trainer.resourcesPerNode`` is merged into that job's container named ``node``:
  ``requests`` and ``limits`` key by key (the TrainJob's value wins; trainer v2.3 merges
  them so, v2.0-v2.2 replaced the container's resources whole: the merge asks at least as
  much), ``claims`` by name;
* the other replicated jobs (dataset and model initializers, an MPI launcher) are read as
  the JobSet row reads them; an initializer (any ancestor label) runs ``replicas: 1``.

The rest is the JobSet row of :mod:`webhook.core.kinds` over the built runtime, so every
role, count and per-job deadline is read as a JobSet's would be; the TrainJob's own
``spec.activeDeadlineSeconds`` (trainer >= v2.2) bounds them all. ``runtimePatches``,
``podSpecOverrides`` and ``podTemplateOverrides`` are not applied (they carry no
resources): a warning says so. A runtime with ``spec.podGroupPolicy`` gang-schedules every
pod: its gang is explicit.

The runtime is read by the caller — online from the apiserver, offline from the input
files — and handed in as :class:`Runtimes`. Anything wrong — no ``runtimeRef``, a kind or
API group the controller does not know, a runtime that does not exist or is of another
kind, garbage in it — raises :class:`~webhook.core.fields.InvalidObject` naming the field
(fields of the runtime are prefixed with the runtime: ``ClusterTrainingRuntime "torch":
spec.template...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from webhook.core import kinds
from webhook.core.fields import (
    InvalidObject,
    optional_int,
    optional_list,
    optional_map,
    optional_str,
)

__all__ = [
    "ANCESTOR_LABEL",
    "CLUSTER_RUNTIME",
    "GROUP",
    "NAMESPACED_RUNTIME",
    "RUNTIME_KINDS",
    "RUNTIME_PLURALS",
    "VERSION",
    "RuntimeNotFound",
    "RuntimeRef",
    "Runtimes",
    "pod_sets",
    "reference",
]

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
CLUSTER_RUNTIME = "ClusterTrainingRuntime"
NAMESPACED_RUNTIME = "TrainingRuntime"
RUNTIME_KINDS = (CLUSTER_RUNTIME, NAMESPACED_RUNTIME)
RUNTIME_PLURALS = {
    CLUSTER_RUNTIME: "clustertrainingruntimes",
    NAMESPACED_RUNTIME: "trainingruntimes",
}
"""Where the runtimes are served: ``/apis/{GROUP}/{VERSION}[/namespaces/NS]/{plural}``."""
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
TRAINER = "trainer"
NODE = "node"
"""The trainer's container (and, under MPI, its replicated job) is named ``node``."""
_OVERRIDES = ("runtimePatches", "podSpecOverrides", "podTemplateOverrides")


@dataclass(frozen=True, slots=True)
class RuntimeRef:
    """The runtime a TrainJob names: its kind, its name, and the namespace it is looked up
    in ("" for a ClusterTrainingRuntime)."""

    kind: str
    name: str
    namespace: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def shown(self) -> str:
        """``ClusterTrainingRuntime "torch"``, ``TrainingRuntime "team-a/torch"``."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f'{self.kind} "{where}"'


class RuntimeNotFound(InvalidObject):
    """The runtime a TrainJob names does not exist (where it was looked up)."""


@dataclass(frozen=True, slots=True)
class Runtimes:
    """The runtimes a caller read, by :attr:`RuntimeRef.key`.

    A key in ``missing`` was looked up and does not exist; ``complete``: every runtime
    there is is in ``found`` (the input files of ``nodelimits check``), so any other
    reference is not found either.
    """

    found: Mapping[tuple[str, str, str], Mapping[str, Any]] = field(default_factory=dict)
    missing: frozenset[tuple[str, str, str]] = frozenset()
    complete: bool = False


def reference(obj: Mapping[str, Any]) -> RuntimeRef:
    """The runtime ``obj`` (a TrainJob) names; errors name the ``spec.runtimeRef`` field."""
    spec = optional_map(obj.get("spec"), "spec") or {}
    ref = optional_map(spec.get("runtimeRef"), "spec.runtimeRef")
    if ref is None:
        raise InvalidObject("spec.runtimeRef", "required: the training runtime to run")
    name = optional_str(ref.get("name"), "spec.runtimeRef.name")
    if not name:
        raise InvalidObject("spec.runtimeRef.name", "required: the training runtime's name")
    group = optional_str(ref.get("apiGroup"), "spec.runtimeRef.apiGroup")
    if group not in (None, GROUP):
        raise InvalidObject("spec.runtimeRef.apiGroup", f"must be {GROUP}, got {group!r}")
    kind = optional_str(ref.get("kind"), "spec.runtimeRef.kind") or CLUSTER_RUNTIME
    if kind not in RUNTIME_KINDS:
        raise InvalidObject(
            "spec.runtimeRef.kind",
            f"must be {CLUSTER_RUNTIME} or {NAMESPACED_RUNTIME}, got {kind!r}",
        )
    namespace = ""
    if kind == NAMESPACED_RUNTIME:  # the TrainJob's own namespace: it cannot name another
        meta = optional_map(obj.get("metadata"), "metadata") or {}
        namespace = optional_str(meta.get("namespace"), "metadata.namespace") or "default"
    return RuntimeRef(kind, name, namespace)


def _jobset_rule() -> kinds.PodSetRule:
    """The JobSet row's pod set, reaching the replicated jobs of a runtime's template."""
    (row,) = (r for r in kinds.BUILTIN_KINDS if (r.group, r.kind) == ("jobset.x-k8s.io", "JobSet"))
    (pod_set,) = row.pod_sets
    return kinds.PodSetRule.model_validate(
        {**pod_set.model_dump(), "each": "spec.template.spec.replicatedJobs[*]"}
    )


_RUNTIME_ROW = kinds.KindRule(
    group=GROUP,
    version=VERSION,
    kind=CLUSTER_RUNTIME,
    plural=RUNTIME_PLURALS[CLUSTER_RUNTIME],
    pod_sets=(_jobset_rule(),),
)


def _merge_resources(
    base: Mapping[str, Any] | None, override: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """``resourcesPerNode`` over the container's resources: requests and limits key by key,
    claims by name (as the controller's strategic merge does)."""
    out = dict(base or {})
    for key in ("requests", "limits"):
        over = optional_map(override.get(key), f"spec.trainer.resourcesPerNode.{key}")
        if over is not None:
            mine = optional_map(out.get(key), f"{where}.{key}") or {}
            out[key] = {**mine, **over}
    claims = optional_list(override.get("claims"), "spec.trainer.resourcesPerNode.claims")
    if claims is not None:
        merged = {
            c.get("name"): c
            for c in (optional_list(out.get("claims"), f"{where}.claims") or [])
            if isinstance(c, Mapping)
        }
        for i, claim in enumerate(claims):
            claim = optional_map(claim, f"spec.trainer.resourcesPerNode.claims[{i}]") or {}
            merged[claim.get("name")] = {**merged.get(claim.get("name"), {}), **claim}
        out["claims"] = list(merged.values())
    return out


@dataclass(slots=True)
class _Trainer:
    """What the TrainJob says about its trainer's pods."""

    num_nodes: int | None
    resources: Mapping[str, Any] | None


def _trainer(obj: Mapping[str, Any]) -> _Trainer:
    spec = optional_map(obj.get("spec"), "spec") or {}
    trainer = optional_map(spec.get("trainer"), "spec.trainer") or {}
    return _Trainer(
        optional_int(trainer.get("numNodes"), "spec.trainer.numNodes"),
        optional_map(trainer.get("resourcesPerNode"), "spec.trainer.resourcesPerNode"),
    )


def _build_job(
    job: Mapping[str, Any],
    where: str,
    trainer: _Trainer,
    ml: Mapping[str, Any] | None,
    warnings: list[str],
) -> Mapping[str, Any]:
    """One replicated job of the runtime as the controller makes it for this TrainJob."""
    template = optional_map(job.get("template"), f"{where}.template") or {}
    meta = optional_map(template.get("metadata"), f"{where}.template.metadata") or {}
    labels = optional_map(meta.get("labels"), f"{where}.template.metadata.labels") or {}
    ancestor = labels.get(ANCESTOR_LABEL)
    if ancestor is None:
        return job
    job_spec = dict(optional_map(template.get("spec"), f"{where}.template.spec") or {})
    count: int | None = None
    mpi = optional_map(ml.get("mpi"), "spec.mlPolicy.mpi") if ml is not None else None
    if ancestor == TRAINER:
        if ml is not None:
            count = optional_int(ml.get("numNodes"), "spec.mlPolicy.numNodes")
            count = 1 if count is None else count
        if trainer.num_nodes is not None and mpi is None:
            count = trainer.num_nodes
        if trainer.resources is not None:
            job_spec["template"] = _with_resources(job_spec, where, trainer.resources, warnings)
    if mpi is not None and job.get("name") == NODE and trainer.num_nodes is not None:
        count = trainer.num_nodes
        if mpi.get("runLauncherAsNode") is True:  # one node is the launcher's
            count = max(count - 1, 1)
    if count is not None:
        job_spec["parallelism"] = job_spec["completions"] = count
    return {**job, "replicas": 1, "template": {**template, "spec": job_spec}}


def _with_resources(
    job_spec: Mapping[str, Any], where: str, resources: Mapping[str, Any], warnings: list[str]
) -> Mapping[str, Any]:
    """The trainer job's pod template with ``resourcesPerNode`` merged into ``node``."""
    at = f"{where}.template.spec.template"
    pod = optional_map(job_spec.get("template"), at) or {}
    pod_spec = optional_map(pod.get("spec"), f"{at}.spec") or {}
    containers = optional_list(pod_spec.get("containers"), f"{at}.spec.containers") or []
    out = []
    merged = False
    for i, raw in enumerate(containers):
        c = optional_map(raw, f"{at}.spec.containers[{i}]") or {}
        if not merged and c.get("name") == NODE:
            c_at = f"{at}.spec.containers[{i}].resources"
            base = optional_map(c.get("resources"), c_at)
            c = {**c, "resources": _merge_resources(base, resources, c_at)}
            merged = True
        out.append(c)
    if not merged:
        warnings.append(
            f"spec.trainer.resourcesPerNode: the runtime's trainer job ({where}) has no "
            f"container named {NODE}: not applied, as the trainer's controller does not"
        )
    return {**pod, "spec": {**pod_spec, "containers": out}}


def _runtime_spec(ref: RuntimeRef, runtime: Mapping[str, Any]) -> Mapping[str, Any]:
    kind = runtime.get("kind")
    api_version = runtime.get("apiVersion")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else None
    if kind != ref.kind or group != GROUP:
        got = f"{kind}" if group in (None, "") else f"{kind}.{group}"
        raise InvalidObject("spec.runtimeRef", f"{ref.shown} is a {got}, not a {ref.kind}.{GROUP}")
    return optional_map(runtime.get("spec"), "spec") or {}


def pod_sets(
    rule: kinds.KindRule, obj: Mapping[str, Any], runtime: Mapping[str, Any], ref: RuntimeRef
) -> kinds.PodSets:
    """The pod sets of TrainJob ``obj`` whose runtime (named by ``ref``) is ``runtime``."""
    trainer = _trainer(obj)
    spec = optional_map(obj.get("spec"), "spec") or {}
    warnings = [
        f"spec.{name}: not applied (it carries no resources); the runtime's pods are checked "
        "without it"
        for name in _OVERRIDES
        if spec.get(name)
    ]
    try:
        rt_spec = _runtime_spec(ref, runtime)
        built = _build(rt_spec, trainer, warnings)
        roles = kinds.read(_RUNTIME_ROW, built).roles
    except RuntimeNotFound:
        raise
    except InvalidObject as exc:
        if exc.field.startswith("spec.runtimeRef") or exc.field.startswith("spec.trainer"):
            raise
        raise InvalidObject(f"{ref.shown}: {exc.field}", exc.reason) from None
    if (trainer.num_nodes is not None or trainer.resources is not None) and not _has_trainer(built):
        warnings.append(
            f"spec.trainer: {ref.shown} has no replicated job labelled "
            f"{ANCESTOR_LABEL}: {TRAINER}; its numNodes and resourcesPerNode apply to none"
        )
    shown = tuple(replace(r, field=f"{ref.shown}: {r.field}") for r in roles)
    sets = kinds.finish(rule, obj, shown)
    gang = rule.gang.policy if rt_spec.get("podGroupPolicy") else rule.gang.implied
    return replace(sets, gang_policy=gang, warnings=tuple(warnings))


def _build(rt_spec: Mapping[str, Any], trainer: _Trainer, warnings: list[str]) -> Mapping[str, Any]:
    """The runtime as the controller makes it for this TrainJob (``spec.template.spec``)."""
    ml = optional_map(rt_spec.get("mlPolicy"), "spec.mlPolicy")
    template = optional_map(rt_spec.get("template"), "spec.template") or {}
    js_spec = optional_map(template.get("spec"), "spec.template.spec") or {}
    where = "spec.template.spec.replicatedJobs"
    jobs = optional_list(js_spec.get("replicatedJobs"), where) or []
    if len(jobs) > kinds.MAX_ROLES:
        raise InvalidObject(
            where, f"more than {kinds.MAX_ROLES} replicated jobs; refusing to check"
        )
    built = []
    for i, job in enumerate(jobs):
        holder = optional_map(job, f"{where}[{i}]")
        if holder is None:
            raise InvalidObject(f"{where}[{i}]", "expected a replicated job, got null")
        built.append(_build_job(holder, f"{where}[{i}]", trainer, ml, warnings))
    return {"spec": {"template": {"spec": {**js_spec, "replicatedJobs": built}}}}


def _has_trainer(built: Mapping[str, Any]) -> bool:
    """Whether the built runtime (every field already read) has a trainer job."""
    jobs = built["spec"]["template"]["spec"]["replicatedJobs"]
    return any(
        (((job.get("template") or {}).get("metadata") or {}).get("labels") or {}).get(
            ANCESTOR_LABEL
        )
        == TRAINER
        for job in jobs
    )
