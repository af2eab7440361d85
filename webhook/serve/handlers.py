"""The webhooks nodelimits serves: one row per (kind, operations, subresource), its URL path.

Plain data (no kopf), so the CLI's help and the Helm chart's webhook configuration can be
read from it; :func:`webhook.serve.admission.register` registers one kopf handler per row.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from webhook.core.kinds import BUILTIN_KINDS, KindRule

__all__ = ["HANDLERS", "KIND_HANDLERS", "HandlerSpec", "served", "table_handler"]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One webhook: the resource it validates, its URL path, what it accepts."""

    kind: str
    group: str
    version: str
    plural: str
    id: str
    operations: frozenset[str]
    subresource: str | None = None
    namespaced: bool = True

    @property
    def path(self) -> str:
        return f"/{self.id}"

    @property
    def object_kind(self) -> str:
        """The kind as objects and AdmissionReviews spell it: ``Job``, not the
        ``Job.batch.volcano.sh`` that names a kind-table row in ``admission.kinds``."""
        return self.kind.split(".", 1)[0]

    def accepts(self, operation: str | None, subresource: str | None) -> bool:
        return operation in self.operations and subresource == self.subresource


_CU = frozenset({"CREATE", "UPDATE"})
HANDLERS: tuple[HandlerSpec, ...] = (
    # UPDATE: re-targeting a checked Pod (its group or type annotation changed or added)
    # must not persist unchecked; any other Pod UPDATE is skipped (the chart's
    # matchConditions do not even send those).
    HandlerSpec("Pod", "", "v1", "pods", "pods", _CU),
    # In-place resize must not bypass the check (KEP-1287: UPDATE of pods/resize).
    HandlerSpec("Pod", "", "v1", "pods", "pods-resize", frozenset({"UPDATE"}), "resize"),
    HandlerSpec("Job", "batch", "v1", "jobs", "jobs", _CU),
    HandlerSpec("CronJob", "batch", "v1", "cronjobs", "cronjobs", _CU),
    HandlerSpec("Deployment", "apps", "v1", "deployments", "deployments", _CU),
    HandlerSpec("StatefulSet", "apps", "v1", "statefulsets", "statefulsets", _CU),
    HandlerSpec("DaemonSet", "apps", "v1", "daemonsets", "daemonsets", _CU),
    HandlerSpec("ReplicaSet", "apps", "v1", "replicasets", "replicasets", _CU),
    HandlerSpec(
        "ReplicationController", "", "v1", "replicationcontrollers", "replicationcontrollers", _CU
    ),
    HandlerSpec("PodTemplate", "", "v1", "podtemplates", "podtemplates", _CU),
)
"""Every webhook nodelimits serves for built-in kinds (plus :data:`KIND_HANDLERS`). The
chart's configuration must use exactly these paths."""


def table_handler(row: KindRule) -> HandlerSpec:
    """The webhook of one kind-table row: kind ``Kind.group`` (as ``admission.kinds`` names
    it: a Volcano ``Job.batch.volcano.sh`` is not a ``Job``), path
    ``/<group>/<version>/<plural>``."""
    return HandlerSpec(
        f"{row.kind}.{row.group}",
        row.group,
        row.version,
        row.plural,
        f"{row.group}/{row.version}/{row.plural}",
        _CU,
        namespaced=row.namespaced,
    )


KIND_HANDLERS: tuple[HandlerSpec, ...] = tuple(table_handler(r) for r in BUILTIN_KINDS)
"""The built-in kind table's webhooks (one per group, version and plural: MPIJob v1 and
v2beta1 are two). A rule for a CRD that is not installed matches nothing: harmless."""
HANDLERS = HANDLERS + KIND_HANDLERS


def served(
    kinds: Collection[str], workload_kinds: Iterable[KindRule] = ()
) -> tuple[HandlerSpec, ...]:
    """The webhooks one server registers: those of ``admission.kinds``, then one per operator
    row of ``policy.workload_kinds`` (always served: configuring a row enables it) whose path
    is not already there (a row replacing a built-in one keeps its webhook). The chart renders
    the same rows into its configuration."""
    out = [h for h in HANDLERS if h.kind in kinds]
    ids = {h.id for h in out}
    for row in workload_kinds:
        handler = table_handler(row)
        if handler.id not in ids:
            out.append(handler)
            ids.add(handler.id)
    return tuple(out)
