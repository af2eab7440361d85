"""Pod specs and their context out of Kubernetes objects — pure functions.

A Pod is checked as itself. A workload (Job, CronJob, Deployment, ...) is checked through
its pod template, because that is what its pods will be; its annotations are read from
the template's metadata (what the pods will carry), falling back to the workload's own
metadata with a warning that the pods will not carry them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core import kinds, synthesized, trainjob
from webhook.core.fields import InvalidObject

__all__ = [
    "KINDS",
    "InvalidObject",
    "Skipped",
    "Workload",
    "display_name",
    "iter_objects",
    "workload_of",
]


@dataclass(frozen=True, slots=True)
class Workload:
    """What the policy needs of one object: its pod spec and the context around it."""

    api_version: str
    kind: str
    namespace: str
    name: str
    pod_spec: Mapping[str, Any]
    annotations: Mapping[str, str]
    """Annotations that decide the group: the pod's, or the template's."""
    fallback_annotations: Mapping[str, str]
    """The workload's own metadata annotations (used, with a warning, if the template has none)."""
    active_deadline_seconds: int | None = None
    """The run-time bound of one pod (the smallest of the Job's and the template's)."""
    parallelism: int | None = None
    """Pods expected to run at once (Job parallelism capped by completions, or replicas)."""
    owned_by_job: bool = False
    """A Pod controlled by a batch/v1 Job: a missing deadline is the Job's business."""
    long_running: bool = False
    """Controllers that keep pods running without a deadline (Deployment, StatefulSet, ...)."""
    no_deadline_field: bool = False
    """A kind with no run-time limit to set (a kind-table row's ``no_deadline_field``)."""
    fallback_fields: tuple[tuple[str, Mapping[str, str]], ...] = ()
    """Where ``fallback_annotations`` came from, first match first (a CronJob's
    ``spec.jobTemplate.metadata``, then ``metadata``), so a warning names the right one."""
    pod_sets: kinds.PodSets | None = None
    """A kind of the kind table: every role's pods (``pod_spec`` is then the first role's)."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """An object that is not checked, and why (unknown kind, a List's empty item, ...)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    reason: str


def _map(value: object, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidObject(field, f"expected an object, got {type(value).__name__}")
    return value


def _annotations(meta: Mapping[str, Any], field: str) -> Mapping[str, str]:
    raw = _map(meta.get("annotations"), f"{field}.annotations")
    for key, value in raw.items():
        if not isinstance(key, str):  # YAML allows `1: x`; Kubernetes keys are strings
            raise InvalidObject(f"{field}.annotations.{key!r}", "annotation keys must be strings")
        if not isinstance(value, str):
            raise InvalidObject(f"{field}.annotations.{key}", "annotation values must be strings")
    return raw


def _int(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidObject(field, f"expected an integer, got {value!r}")
    if value < 0:
        raise InvalidObject(field, f"must not be negative, got {value}")
    return value


def _min_deadline(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _is_job_owned(meta: Mapping[str, Any]) -> bool:
    """Whether a controller reference names a ``batch/v1`` Job. Anyone may write owner
    references: this only waives a *missing* deadline (the Job's own was checked), never
    an explicit one; an invented ``example.com/v1`` "Job" or a non-controller ref waives
    nothing."""
    refs = meta.get("ownerReferences")
    if not isinstance(refs, list):
        return False
    return any(
        isinstance(r, Mapping)
        and r.get("controller") is True
        and r.get("kind") == "Job"
        and r.get("apiVersion") == "batch/v1"
        for r in refs
    )


def _template(spec: Mapping[str, Any], field: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    template = _map(spec.get("template"), f"{field}.template")
    return _map(template.get("metadata"), f"{field}.template.metadata"), _map(
        template.get("spec"), f"{field}.template.spec"
    )


def _job_parallelism(job_spec: Mapping[str, Any], field: str) -> int:
    parallelism = _int(job_spec.get("parallelism"), f"{field}.parallelism")
    completions = _int(job_spec.get("completions"), f"{field}.completions")
    running = 1 if parallelism is None else parallelism
    return running if completions is None else min(running, completions)


_REPLICATED = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}
_LONG_RUNNING = _REPLICATED | {"DaemonSet"}

KINDS = frozenset({"Pod", "PodTemplate", "Job", "CronJob"} | _LONG_RUNNING)
"""Kinds whose pods we can read."""


def workload_of(
    obj: Mapping[str, Any],
    table: kinds.KindTable | None = None,
    runtimes: trainjob.Runtimes | None = None,
) -> Workload | Skipped:
    """The :class:`Workload` of one object, or :class:`Skipped` for kinds without pods.

    Kinds other than the built-in ones are read by their row in ``table`` (default: the
    built-in rows of :mod:`webhook.core.kinds`). A TrainJob's pods come from the training
    runtime it names, read by the caller into ``runtimes`` (None: not read, and the
    TrainJob is skipped saying so).

    Raises :class:`InvalidObject` naming the field when the object is malformed.
    """
    if not isinstance(obj, Mapping):
        raise InvalidObject("<document>", f"expected an object, got {type(obj).__name__}")
    kind = obj.get("kind")
    api_version = obj.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise InvalidObject("kind", "missing or not a string")
    api_version = api_version if isinstance(api_version, str) else ""
    meta = _map(obj.get("metadata"), "metadata")
    name = meta.get("name") or meta.get("generateName") or ""
    namespace = meta.get("namespace") or ""
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise InvalidObject("metadata.name", "name and namespace must be strings")
    own = _annotations(meta, "metadata")
    spec = _map(obj.get("spec"), "spec")
    fields: tuple[tuple[str, Mapping[str, str]], ...] = (("metadata", own),)
    if kind == "CronJob":  # its Jobs carry spec.jobTemplate.metadata: read it before its own
        job_meta = _map(spec.get("jobTemplate"), "spec.jobTemplate").get("metadata")
        job_meta = _map(job_meta, "spec.jobTemplate.metadata")
        job_annotations = _annotations(job_meta, "spec.jobTemplate.metadata")
        fields = (("spec.jobTemplate.metadata", job_annotations), *fields)
        own = {**own, **job_annotations}
    if kind == "Pod":
        return Workload(
            api_version=api_version,
            kind=kind,
            namespace=namespace,
            name=name,
            pod_spec=spec,
            annotations=own,
            fallback_annotations={},
            active_deadline_seconds=_int(
                spec.get("activeDeadlineSeconds"), "spec.activeDeadlineSeconds"
            ),
            owned_by_job=_is_job_owned(meta),
        )
    row = (table or kinds.builtin_table()).get(api_version, kind)
    if row is not None:  # before the built-ins: a batch.volcano.sh Job is not a batch/v1 Job
        return _table_workload(row, obj, own, api_version, namespace, name, fields, runtimes)
    source = _pod_source(kind, obj, spec)
    if source is None:
        return Skipped(api_version, kind, namespace, name, f"kind {kind} has no pods to check")
    return Workload(
        api_version=api_version,
        kind=kind,
        namespace=namespace,
        name=name,
        pod_spec=source.spec,
        annotations=_annotations(source.metadata, f"{source.field}.metadata"),
        fallback_annotations=own,
        fallback_fields=fields,
        active_deadline_seconds=source.deadline,
        parallelism=source.parallelism,
        long_running=kind in _LONG_RUNNING,
    )


@dataclass(frozen=True, slots=True)
class _PodSource:
    """Where a workload keeps its pods: the template and what bounds its pods."""

    metadata: Mapping[str, Any]
    spec: Mapping[str, Any]
    field: str
    deadline: int | None = None
    parallelism: int | None = None


def _pod_source(kind: str, obj: Mapping[str, Any], spec: Mapping[str, Any]) -> _PodSource | None:
    if kind == "PodTemplate":
        template = _map(obj.get("template"), "template")
        pod_spec = _map(template.get("spec"), "template.spec")
        deadline = _int(
            pod_spec.get("activeDeadlineSeconds"), "template.spec.activeDeadlineSeconds"
        )
        return _PodSource(
            _map(template.get("metadata"), "template.metadata"), pod_spec, "template", deadline
        )
    if kind == "Job":
        return _job_source(spec, "spec")
    if kind == "CronJob":
        job_template = _map(spec.get("jobTemplate"), "spec.jobTemplate")
        return _job_source(
            _map(job_template.get("spec"), "spec.jobTemplate.spec"), "spec.jobTemplate.spec"
        )
    if kind in _LONG_RUNNING:
        pod_meta, pod_spec = _template(spec, "spec")
        replicas = None
        if kind in _REPLICATED:
            replicas = _int(spec.get("replicas"), "spec.replicas")
            replicas = 1 if replicas is None else replicas
        return _PodSource(pod_meta, pod_spec, "spec.template", parallelism=replicas)
    return None


def _table_workload(
    row: kinds.KindRule,
    obj: Mapping[str, Any],
    own: Mapping[str, str],
    api_version: str,
    namespace: str,
    name: str,
    fields: tuple[tuple[str, Mapping[str, str]], ...] = (),
    runtimes: trainjob.Runtimes | None = None,
) -> Workload | Skipped:
    """A kind of the kind table: its pod sets, each role's template annotations checked."""
    if row.synthesizer == "trainjob":
        ref = trainjob.reference(obj)
        if runtimes is None:
            return Skipped(
                api_version,
                row.kind,
                namespace,
                name,
                f"its pods come from {ref.shown}, which was not read (no apiserver to read it "
                "from)",
            )
        sets = _trainjob_sets(row, obj, ref, runtimes)
    elif row.synthesizer == "argo":
        sets = synthesized.argo(row, obj)
    elif row.synthesizer == "spark":
        sets = synthesized.spark(row, obj)
    else:
        sets = kinds.read(row, obj)
    for role in sets.roles:
        _annotations(role.metadata, f"{role.field}.metadata")
    first = sets.roles[0] if sets.roles else None
    return Workload(
        api_version=api_version,
        kind=row.kind,
        namespace=namespace,
        name=name,
        pod_spec=first.spec if first else {},
        annotations=first.metadata.get("annotations") or {} if first else {},
        fallback_annotations={**own, **sets.extra_annotations},
        fallback_fields=(
            *(
                [(", ".join(row.group_metadata), sets.extra_annotations)]
                if sets.extra_annotations
                else []
            ),
            *fields,
        ),
        active_deadline_seconds=sets.deadline,
        long_running=sets.long_running,
        no_deadline_field=sets.no_deadline_field,
        pod_sets=sets,
    )


def _trainjob_sets(
    row: kinds.KindRule,
    obj: Mapping[str, Any],
    ref: trainjob.RuntimeRef,
    runtimes: trainjob.Runtimes,
) -> kinds.PodSets:
    runtime = runtimes.found.get(ref.key)
    if runtime is None:
        if runtimes.complete:
            where = "in the input files"
        elif ref.namespace:
            where = f"in namespace {ref.namespace}"
        else:
            where = "in the cluster"
        raise trainjob.RuntimeNotFound("spec.runtimeRef", f"{ref.shown} not found {where}")
    return trainjob.pod_sets(row, obj, runtime, ref)


def _job_source(job_spec: Mapping[str, Any], field: str) -> _PodSource:
    pod_meta, pod_spec = _template(job_spec, field)
    deadline = _min_deadline(
        _int(job_spec.get("activeDeadlineSeconds"), f"{field}.activeDeadlineSeconds"),
        _int(pod_spec.get("activeDeadlineSeconds"), f"{field}.template.spec.activeDeadlineSeconds"),
    )
    return _PodSource(
        pod_meta, pod_spec, f"{field}.template", deadline, _job_parallelism(job_spec, field)
    )


def iter_objects(document: object) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The objects in one document: itself, or each item of a ``*List``.

    Yields ``(path, object)`` where path locates the object in the document
    (``""`` or ``"items[3]"``). Raises :class:`InvalidObject` for a non-object.
    """
    if not isinstance(document, Mapping):
        raise InvalidObject("<document>", f"expected an object, got {type(document).__name__}")
    kind = document.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in document:
        items = document.get("items")
        if items is None:
            return
        if not isinstance(items, list):
            raise InvalidObject("items", "expected a list")
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InvalidObject(f"items[{index}]", "expected an object")
            yield f"items[{index}]", item
        return
    yield "", document


def display_name(namespace: str | None, name: str | None) -> str:
    """``namespace/name`` as kubectl shows an object (``name`` alone when not namespaced)."""
    shown = name or "<unnamed>"
    return f"{namespace}/{shown}" if namespace else shown
