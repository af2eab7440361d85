"""The webhooks nodelimits serves: one row per (kind, operations, subresource), its URL path.

Plain data (no kopf), so the CLI's help and the Helm chart's webhook configuration can be
read from it; :func:`webhook.serve.admission.register` registers one kopf handler per row.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HANDLERS", "HandlerSpec"]


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

    @property
    def path(self) -> str:
        return f"/{self.id}"

    def accepts(self, operation: str | None, subresource: str | None) -> bool:
        return operation in self.operations and subresource == self.subresource


_CU = frozenset({"CREATE", "UPDATE"})
HANDLERS: tuple[HandlerSpec, ...] = (
    HandlerSpec("Pod", "", "v1", "pods", "pods", frozenset({"CREATE"})),
    # In-place resize must not bypass the check (KEP-1287: UPDATE of pods/resize).
    HandlerSpec("Pod", "", "v1", "pods", "pods-resize", frozenset({"UPDATE"}), "resize"),
    HandlerSpec("Job", "batch", "v1", "jobs", "jobs", _CU),
    HandlerSpec("CronJob", "batch", "v1", "cronjobs", "cronjobs", _CU),
    HandlerSpec("Deployment", "apps", "v1", "deployments", "deployments", _CU),
    HandlerSpec("StatefulSet", "apps", "v1", "statefulsets", "statefulsets", _CU),
    HandlerSpec("DaemonSet", "apps", "v1", "daemonsets", "daemonsets", _CU),
    HandlerSpec("ReplicaSet", "apps", "v1", "replicasets", "replicasets", _CU),
)
"""Every webhook nodelimits serves. The chart's configuration must use exactly these paths."""
