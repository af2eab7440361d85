"""The table of workload kinds: where each kind keeps the pods it will create — pure.

One row per (API group, version, kind) says, in the path language of
:mod:`webhook.core.paths`, where the kind's pod templates are, what names their roles,
how many pods each role runs, which field bounds the run time, and which field makes
them a gang (pods that must all run at once)::

    - group: kubeflow.org
      version: v1
      kind: PyTorchJob
      plural: pytorchjobs
      pod_sets:
        - each: spec.pytorchReplicaSpecs.*     # every map value; binds its key
          role: replica                        # the word messages use: "replica Worker"
          name: $key                           # $key | $index | $.<relative path> | literal
          template: [template]                 # first present; a PodTemplateSpec
          count: [{path: replicas, default: 1}]  # product of factors (const / path / min)
      deadline: [spec.runPolicy.activeDeadlineSeconds]
      gang: {min_available: [spec.runPolicy.schedulingPolicy.minAvailable], policy: deny}

Kinds without a pod template (Argo, Spark, TrainJob) name a ``synthesizer`` instead
(:mod:`webhook.core.synthesized`, :mod:`webhook.core.trainjob`). Operators add or replace rows with
``policy.workload_kinds``; every path is parsed when the settings are validated, so a
path that cannot match is an error at start naming the row and the path.
:func:`read` applies one row to one object and returns its :class:`PodSets`, or raises
:class:`~webhook.core.fields.InvalidObject` naming the field (garbage at a template
path, a role map that is not a map, a negative or string count).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from webhook.core import paths
from webhook.core.fields import InvalidObject, optional_int, optional_map, type_name

__all__ = [
    "BUILTIN_KINDS",
    "CountFactor",
    "GangPolicy",
    "GangRule",
    "KindRule",
    "KindTable",
    "PodSetRule",
    "PodSets",
    "Role",
    "builtin_table",
    "read",
]

GangPolicy = Literal["deny", "warn", "ignore"]
Synthesizer = Literal["spark", "argo", "trainjob"]
MAX_ROLES = 256
"""More pod sets than this in one object is refused (a hostile object, not a workload)."""


@functools.lru_cache(maxsize=1024)
def _path(text: str) -> paths.Path:
    return paths.parse(text)


def _valid_path(text: str, *, relative: bool = False) -> str:
    try:
        parsed = _path(text)
    except paths.InvalidPath as exc:
        raise ValueError(str(exc)) from None
    if relative and parsed.wildcards:
        raise ValueError(f"path {text!r}: a relative path cannot hold wildcards")
    return text


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CountFactor(_Model):
    """One factor of a pod count: a constant, a field (with its default), or the minimum
    of factors (a factor whose field is absent and has no default drops out of a min)."""

    const: int | None = Field(None, ge=0)
    path: str | None = None
    default: int | None = Field(None, ge=0)
    min: tuple[CountFactor, ...] = ()

    @field_validator("path")
    @classmethod
    def _path_ok(cls, value: str | None) -> str | None:
        return None if value is None else _valid_path(value, relative=True)

    @model_validator(mode="after")
    def _one_form(self) -> CountFactor:
        forms = sum((self.const is not None, self.path is not None, bool(self.min)))
        if forms != 1:
            raise ValueError("a count factor is exactly one of const, path or min")
        return self


class PodSetRule(_Model):
    """Where one kind of pod set sits and how to read it."""

    each: str
    """Path from the object to each pod set's holder, with wildcards for lists/maps."""
    role: str = "replica"
    """The word messages put before the name: ``replica Worker``, ``task mpiworker``."""
    name: str = "$key"
    """``$key`` (map key the last wildcard bound), ``$index``, ``$.<path>`` (a field of the
    holder, e.g. ``$.name``; ``$index`` when absent) or a literal name."""
    template: tuple[str, ...] = ("template",)
    """Relative paths to the PodTemplateSpec, first present wins (LWS: leader, worker)."""
    count: tuple[CountFactor, ...] = ()
    """Pods per set: the product of the factors (none: 1)."""
    minus: int = Field(0, ge=0)
    """Subtracted from the count (an LWS group's workers: size - 1)."""
    min_available: str | None = None
    """Relative path of this set's own gang minimum (a Volcano task's minAvailable)."""
    deadline: str | None = None
    """Relative path of this set's own run-time bound (a JobSet child Job's deadline)."""

    @field_validator("each")
    @classmethod
    def _each_ok(cls, value: str) -> str:
        return _valid_path(value)

    @field_validator("template")
    @classmethod
    def _template_ok(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("template needs at least one path")
        return tuple(_valid_path(v, relative=True) for v in value)

    @field_validator("min_available", "deadline")
    @classmethod
    def _min_ok(cls, value: str | None) -> str | None:
        return None if value is None else _valid_path(value, relative=True)

    @model_validator(mode="after")
    def _name_ok(self) -> PodSetRule:
        steps = _path(self.each).steps
        if self.name == "$key" and paths.StepKind.VALUES not in (s.kind for s in steps):
            raise ValueError(f"name $key needs a map wildcard '*' in each ({self.each!r})")
        if self.name == "$index" and paths.StepKind.ITEMS not in (s.kind for s in steps):
            raise ValueError(f"name $index needs a list wildcard '[*]' in each ({self.each!r})")
        if self.name.startswith("$.") and self.name != "$.":
            _valid_path(self.name[2:], relative=True)
        elif self.name.startswith("$") and self.name not in ("$key", "$index"):
            raise ValueError(f"name {self.name!r}: use $key, $index, $.<path> or a literal")
        return self


class GangRule(_Model):
    """Which pods of one object must run at once."""

    min_available: tuple[str, ...] = ()
    """Object-level paths of the gang's total minimum, first present wins."""
    policy: GangPolicy = "warn"
    """What a gang that can never be placed is when the kind's gang is explicit: the
    minimum field is present, or ``explicit`` says the kind always gangs all its pods."""
    implied: GangPolicy = "warn"
    """... when it is only implied (all pods at once, no field says so)."""
    explicit: bool = False
    """The kind always runs all its pods at once (MPI, an LWS group)."""

    @field_validator("min_available")
    @classmethod
    def _paths_ok(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_valid_path(v) for v in value)


class KindRule(_Model):
    """One row of the kind table."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    pod_sets: tuple[PodSetRule, ...] = ()
    synthesizer: Synthesizer | None = None
    root: str = "spec"
    """For a synthesizer: where its spec sits (ScheduledSparkApplication: spec.template)."""
    deadline: tuple[str, ...] = ()
    """Object-level run-time fields (seconds), first present wins."""
    long_running: bool = False
    """Pods run until deleted (services, clusters): run time is a warning, not a check."""
    no_deadline_field: bool = False
    """The kind has no run-time limit to set (SparkApplication): with no deadline read, a
    resource group's maxTime is a warning saying so, not a request to set one."""
    group_metadata: tuple[str, ...] = ()
    """Extra metadata objects read for the group annotation after the object's own (a
    CronJob-like template's ``spec.jobTemplate.metadata``)."""
    gang: GangRule = GangRule()

    @field_validator("root")
    @classmethod
    def _root_ok(cls, value: str) -> str:
        return _valid_path(value, relative=True)

    @field_validator("deadline", "group_metadata")
    @classmethod
    def _paths_ok(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_valid_path(v) for v in value)

    @model_validator(mode="after")
    def _has_pods(self) -> KindRule:
        if bool(self.pod_sets) == (self.synthesizer is not None):
            raise ValueError(
                f"{self.kind}.{self.group}/{self.version}: give pod_sets or a synthesizer (one)"
            )
        return self

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.kind)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True, slots=True)
class Role:
    """One pod set of an object: the pods one template (or synthesized spec) makes."""

    label: str
    """As messages show it: ``replica Worker``, ``task 1``, ``worker group gpu``."""
    field: str
    """Where its template is: ``spec.pytorchReplicaSpecs.Worker.template``."""
    metadata: Mapping[str, Any]
    spec: Mapping[str, Any]
    count: int
    min_available: int | None = None
    """This set's own gang minimum, when the kind has one and the object sets it."""
    deadline: int | None = None
    """This set's own run-time bound beyond its pod spec's (a child Job's), if set."""


@dataclass(frozen=True, slots=True)
class PodSets:
    """Every pod set of one object, with what the kind says about run time and gangs."""

    roles: tuple[Role, ...]
    deadline: int | None = None
    """The object-level run-time bound (seconds), if the kind has one and it is set."""
    long_running: bool = False
    no_deadline_field: bool = False
    gang_min: int | None = None
    """The object-level gang minimum (total pods), if set."""
    gang_policy: GangPolicy = "warn"
    """The kind's default for a gang that never fits (settings may override)."""
    extra_annotations: Mapping[str, str] = field(default_factory=dict)
    """Annotations of extra metadata the row names (a CronJob's jobTemplate.metadata)."""
    warnings: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(r.count for r in self.roles)


def _get(value: Any, path: str, where: str) -> tuple[Any, str]:
    """The one value a wildcard-free path reaches (None when absent), and its field."""
    found = next(paths.walk(value, _path(path), where), None)
    if found is None:
        return None, f"{where}.{path}" if where else path
    return found.value, found.field


def _int_at(value: Any, path: str, field: str) -> int | None:
    got, where = _get(value, path, field)
    return optional_int(got, where)


def _factor(factor: CountFactor, holder: Any, field: str) -> int | None:
    if factor.const is not None:
        return factor.const
    if factor.path is not None:
        got = _int_at(holder, factor.path, field)
        return factor.default if got is None else got
    present = [v for v in (_factor(f, holder, field) for f in factor.min) if v is not None]
    return min(present) if present else None


def _count(rule: PodSetRule, holder: Any, field: str) -> int:
    total = 1
    for factor in rule.count:
        value = _factor(factor, holder, field)
        total *= 1 if value is None else value
    return max(0, total - rule.minus)


def _name(rule: PodSetRule, match: paths.Match) -> str:
    if rule.name in ("$key", "$index"):
        want = str if rule.name == "$key" else int
        bound = [b for b in match.bindings if isinstance(b, want)]
        return str(bound[-1]) if bound else "?"
    if rule.name.startswith("$."):
        got, where = _get(match.value, rule.name[2:], match.field)
        if got is None:
            ints = [b for b in match.bindings if isinstance(b, int)]
            return str(ints[-1]) if ints else "?"
        if not isinstance(got, str):
            raise InvalidObject(where, f"expected a string name, got {type_name(got)}")
        return got
    return rule.name


def _template(rule: PodSetRule, holder: Any, field: str) -> tuple[Mapping[str, Any], str] | None:
    for path in rule.template:
        got, where = _get(holder, path, field)
        template = optional_map(got, where)
        if template is not None:
            return template, where
    return None


def read(rule: KindRule, obj: Mapping[str, Any]) -> PodSets:
    """The pod sets of ``obj`` by ``rule`` (a template-path row; synthesizers elsewhere)."""
    roles: list[Role] = []
    for pod_set in rule.pod_sets:
        for match in paths.walk(obj, _path(pod_set.each), limit=MAX_ROLES):
            holder = optional_map(match.value, match.field)
            if holder is None:
                continue
            found = _template(pod_set, holder, match.field)
            if found is None:
                continue  # a role without a template creates no pods (or is defaulted)
            template, where = found
            metadata = optional_map(template.get("metadata"), f"{where}.metadata") or {}
            spec = optional_map(template.get("spec"), f"{where}.spec") or {}
            minimum = deadline = None
            if pod_set.min_available is not None:
                minimum = _int_at(holder, pod_set.min_available, match.field)
            if pod_set.deadline is not None:
                deadline = _int_at(holder, pod_set.deadline, match.field)
            roles.append(
                Role(
                    label=f"{pod_set.role} {_name(pod_set, match)}".strip(),
                    field=where,
                    metadata=metadata,
                    spec=spec,
                    count=_count(pod_set, holder, match.field),
                    min_available=minimum,
                    deadline=deadline,
                )
            )
            if len(roles) > MAX_ROLES:
                raise InvalidObject(where, f"more than {MAX_ROLES} pod sets; refusing to check")
    return finish(rule, obj, tuple(roles))


def finish(rule: KindRule, obj: Mapping[str, Any], roles: tuple[Role, ...]) -> PodSets:
    """The object-level part of a row (deadline, gang minimum, extra metadata) around roles."""
    deadline = None
    for path in rule.deadline:
        deadline = _int_at(obj, path, "")
        if deadline is not None:
            break
    gang_min = None
    for path in rule.gang.min_available:
        gang_min = _int_at(obj, path, "")
        if gang_min is not None:
            break
    explicit = (
        rule.gang.explicit
        or gang_min is not None
        or any(r.min_available is not None for r in roles)
    )
    extra: dict[str, str] = {}
    for path in rule.group_metadata:
        got, where = _get(obj, path, "")
        meta = optional_map(got, where)
        if meta:
            notes = optional_map(meta.get("annotations"), f"{where}.annotations") or {}
            for key, value in notes.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise InvalidObject(f"{where}.annotations", "annotations must be strings")
                extra.setdefault(key, value)
    return PodSets(
        roles=roles,
        deadline=deadline,
        long_running=rule.long_running,
        no_deadline_field=rule.no_deadline_field,
        gang_min=gang_min,
        gang_policy=rule.gang.policy if explicit else rule.gang.implied,
        extra_annotations=extra,
    )


# --- the built-in rows --------------------------------------------------------------------

_REPLICAS = [{"path": "replicas", "default": 1}]
_RUN_POLICY: dict[str, Any] = {
    "deadline": ["spec.runPolicy.activeDeadlineSeconds"],
    "gang": {"min_available": ["spec.runPolicy.schedulingPolicy.minAvailable"], "policy": "deny"},
}


def _kubeflow(kind: str, plural: str, field: str, version: str = "v1", **extra: Any) -> Any:
    row = {
        "group": "kubeflow.org",
        "version": version,
        "kind": kind,
        "plural": plural,
        "pod_sets": [{"each": f"spec.{field}.*", "role": "replica", "count": _REPLICAS}],
        **_RUN_POLICY,
    }
    row.update(extra)
    return row


_MPI_GANG = {**_RUN_POLICY["gang"], "explicit": True}


def _volcano(kind: str, plural: str, prefix: str) -> Any:
    return {
        "group": "batch.volcano.sh",
        "version": "v1alpha1",
        "kind": kind,
        "plural": plural,
        "pod_sets": [
            {
                "each": f"{prefix}tasks[*]",
                "role": "task",
                "name": "$.name",
                "count": [{"path": "replicas", "default": 0}],
                "min_available": "minAvailable",
            }
        ],
        "group_metadata": ["spec.jobTemplate.metadata"] if prefix else [],
        "gang": {"min_available": [f"{prefix}minAvailable"], "policy": "deny", "implied": "deny"},
    }


def _ray(kind: str, plural: str, prefix: str, **extra: Any) -> Any:
    pod_sets: list[Any] = [
        {"each": f"{prefix}headGroupSpec", "role": "head", "name": "group", "count": []},
        {
            "each": f"{prefix}workerGroupSpecs[*]",
            "role": "worker group",
            "name": "$.groupName",
            "count": [{"path": "replicas", "default": 1}, {"path": "numOfHosts", "default": 1}],
        },
    ]
    pod_sets += extra.pop("more", [])
    return {
        "group": "ray.io",
        "version": "v1",
        "kind": kind,
        "plural": plural,
        "pod_sets": pod_sets,
        **extra,
    }


def _argo(kind: str, plural: str, root: str = "spec", namespaced: bool = True) -> Any:
    return {
        "group": "argoproj.io",
        "version": "v1alpha1",
        "kind": kind,
        "plural": plural,
        "namespaced": namespaced,
        "synthesizer": "argo",
        "root": root,
        "deadline": [f"{root}.activeDeadlineSeconds"],
    }


_BUILTIN_ROWS: list[Any] = [
    _volcano("Job", "jobs", "spec."),
    _volcano("CronJob", "cronjobs", "spec.jobTemplate.spec."),
    _kubeflow("PyTorchJob", "pytorchjobs", "pytorchReplicaSpecs"),
    _kubeflow("TFJob", "tfjobs", "tfReplicaSpecs"),
    _kubeflow("XGBoostJob", "xgboostjobs", "xgbReplicaSpecs"),
    _kubeflow("PaddleJob", "paddlejobs", "paddleReplicaSpecs"),
    _kubeflow("JAXJob", "jaxjobs", "jaxReplicaSpecs"),
    # MPI needs every process at once: launcher and workers are a gang whatever is set.
    _kubeflow("MPIJob", "mpijobs", "mpiReplicaSpecs", gang=_MPI_GANG),
    _kubeflow("MPIJob", "mpijobs", "mpiReplicaSpecs", version="v2beta1", gang=_MPI_GANG),
    {
        "group": "jobset.x-k8s.io",
        "version": "v1alpha2",
        "kind": "JobSet",
        "plural": "jobsets",
        "pod_sets": [
            {
                "each": "spec.replicatedJobs[*]",
                "role": "replicated job",
                "name": "$.name",
                "template": ["template.spec.template"],
                "deadline": "template.spec.activeDeadlineSeconds",
                "count": [
                    {"path": "replicas", "default": 1},
                    {
                        "min": [
                            {"path": "template.spec.parallelism", "default": 1},
                            {"path": "template.spec.completions"},
                        ]
                    },
                ],
            }
        ],
    },
    {
        "group": "leaderworkerset.x-k8s.io",
        "version": "v1",
        "kind": "LeaderWorkerSet",
        "plural": "leaderworkersets",
        "long_running": True,
        # One group (leader + size-1 workers) starts together; groups are spec.replicas.
        "pod_sets": [
            {
                "each": "spec.leaderWorkerTemplate",
                "role": "",
                "name": "leader",
                "template": ["leaderTemplate", "workerTemplate"],
            },
            {
                "each": "spec.leaderWorkerTemplate",
                "role": "",
                "name": "worker",
                "template": ["workerTemplate"],
                "count": [{"path": "size", "default": 1}],
                "minus": 1,
            },
        ],
        "gang": {"explicit": True, "policy": "deny"},
    },
    _ray("RayCluster", "rayclusters", "spec.", long_running=True),
    _ray("RayService", "rayservices", "spec.rayClusterConfig.", long_running=True),
    _ray(
        "RayJob",
        "rayjobs",
        "spec.rayClusterSpec.",
        deadline=["spec.activeDeadlineSeconds"],
        more=[
            {
                "each": "spec",
                "role": "",
                "name": "submitter",
                "template": ["submitterPodTemplate"],
            }
        ],
    ),
    _argo("Workflow", "workflows"),
    _argo("WorkflowTemplate", "workflowtemplates"),
    _argo("ClusterWorkflowTemplate", "clusterworkflowtemplates", namespaced=False),
    _argo("CronWorkflow", "cronworkflows", root="spec.workflowSpec"),
    {
        "group": "sparkoperator.k8s.io",
        "version": "v1beta2",
        "kind": "SparkApplication",
        "plural": "sparkapplications",
        "synthesizer": "spark",
        "no_deadline_field": True,  # the operator's API has none (reference: SP types)
    },
    {
        "group": "sparkoperator.k8s.io",
        "version": "v1beta2",
        "kind": "ScheduledSparkApplication",
        "plural": "scheduledsparkapplications",
        "synthesizer": "spark",
        "no_deadline_field": True,  # the operator's API has none (reference: SP types)
        "root": "spec.template",
    },
    {
        "group": "trainer.kubeflow.org",
        "version": "v1alpha1",
        "kind": "TrainJob",
        "plural": "trainjobs",
        "synthesizer": "trainjob",
        "deadline": ["spec.activeDeadlineSeconds"],
        # A runtime's podGroupPolicy gang-schedules every pod (webhook.core.trainjob).
        "gang": {"policy": "deny"},
    },
]

BUILTIN_KINDS: tuple[KindRule, ...] = tuple(KindRule.model_validate(r) for r in _BUILTIN_ROWS)
"""The built-in rows (see docs/workload-kinds.md for their sources)."""


class KindTable:
    """Rows by (group, version, kind); later rows replace earlier ones with the same key."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Iterable[KindRule]) -> None:
        self._rows: dict[tuple[str, str, str], KindRule] = {}
        for row in rows:
            self._rows[row.key] = row

    def get(self, api_version: str, kind: str) -> KindRule | None:
        group, _, version = api_version.rpartition("/")
        return self._rows.get((group, version, kind))

    def __iter__(self) -> Any:
        return iter(self._rows.values())

    def __len__(self) -> int:
        return len(self._rows)


@functools.lru_cache(maxsize=64)
def builtin_table(custom: tuple[KindRule, ...] = ()) -> KindTable:
    """The built-in rows, then ``custom`` (settings) over them."""
    return KindTable((*BUILTIN_KINDS, *custom))
