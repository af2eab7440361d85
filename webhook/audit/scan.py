"""One audit: every served kind read page by page, each object through the same
:func:`webhook.review.review` as ``nodelimits check`` and admission.

The report is ``check``'s (:class:`~webhook.check.CheckReport` results, the same
renderers and exit codes) plus per-object error results: an object the policy cannot
read, or whose limits the platform could not give, is an error naming it, never skipped
(a TrainJob is judged by the training runtime it names, read from the cluster once per
audit: a runtime that does not exist, or cannot be listed, is such an error);
a kind whose list failed is an error for the whole kind (the cluster is then not clean).
Only a slim reference of each object is kept, so memory is bounded by one page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.audit.cluster import (
    BUILTIN_TARGETS,
    Cluster,
    ClusterClaims,
    ClusterRuntimes,
    ListExpired,
    ListFailed,
    Target,
    pages,
    served_targets,
    table_targets,
)
from webhook.check import CheckReport, Result
from webhook.core.policy import PolicySettings
from webhook.core.resources import InvalidQuantity
from webhook.core.workloads import InvalidObject, display_name
from webhook.manifests import Document
from webhook.platform.cache import LimitsCache
from webhook.platform.errors import PlatformError
from webhook.review import review

__all__ = ["AuditError", "AuditReport", "candidate_targets", "run_audit"]

log = logging.getLogger(__name__)

LIST_RESTARTS = 2
"""Times a kind's list starts again after its continue token expired."""


@dataclass(frozen=True, slots=True)
class AuditError:
    """An object (or a whole kind, ``name`` empty) that could not be judged."""

    api_version: str
    kind: str
    namespace: str
    name: str
    message: str
    uid: str = ""
    platform: bool = False
    """The platform gave no limits: earlier findings about the object still stand."""

    def __str__(self) -> str:
        if not self.name:
            return self.message
        return f"{self.kind} {display_name(self.namespace, self.name)}: {self.message}"


@dataclass(slots=True)
class AuditReport:
    results: list[Result] = field(default_factory=list)
    errors: list[AuditError] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    """The kinds read (``--kinds`` names)."""
    scanned: dict[str, int] = field(default_factory=dict)
    """Objects read per kind."""
    started: float = 0.0
    duration: float = 0.0

    def as_check_report(self) -> CheckReport:
        return CheckReport(results=list(self.results), errors=[str(e) for e in self.errors])

    @property
    def exit_code(self) -> int:
        return self.as_check_report().exit_code


def candidate_targets(
    settings: PolicySettings, wanted: Iterable[str] | None = None
) -> list[Target]:
    """The core kinds and every kind-table row (custom rows too), in that order, narrowed
    to ``wanted`` (names as ``admission.kinds`` spells them). Raises ``ValueError`` for a
    name that is no kind nodelimits reads."""
    every = [*BUILTIN_TARGETS, *table_targets(settings.kind_table)]
    if wanted is None:
        return every
    names = {t.name.lower(): t.name for t in every}
    chosen: set[str] = set()
    for raw in wanted:
        name = names.get(raw.strip().lower())
        if name is None:
            known = ", ".join(dict.fromkeys(t.name for t in every))
            raise ValueError(f"unknown kind {raw!r}; known: {known}")
        chosen.add(name)
    return [t for t in every if t.name in chosen]


def _slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    keep = {k: meta[k] for k in ("name", "namespace", "uid") if k in meta}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": keep}


def _ref(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return (
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        str(meta.get("uid") or ""),
        str(obj.get("apiVersion") or ""),
    )


async def _scan_kind(
    cluster: Cluster,
    target: Target,
    settings: PolicySettings,
    limits: LimitsCache,
    sources: tuple[ClusterClaims, ClusterRuntimes],
    namespace: str | None,
    selector: str | None,
    chunk_size: int,
) -> tuple[list[Result], list[AuditError], int]:
    for restart in range(LIST_RESTARTS + 1):
        results: list[Result] = []
        errors: list[AuditError] = []
        count = 0
        listing = pages(cluster, target, namespace=namespace, selector=selector, limit=chunk_size)
        try:
            while True:
                page = await asyncio.to_thread(next, listing, None)
                if page is None:
                    return results, errors, count
                for obj in page:
                    count += 1
                    await _judge(obj, target, settings, limits, sources, results, errors)
        except ListExpired as exc:
            if restart == LIST_RESTARTS:
                raise ListFailed(str(exc)) from exc
            log.warning("audit: %s; reading %s again from the start", exc, target.name)
    raise AssertionError("unreachable")


async def _judge(
    obj: dict[str, Any],
    target: Target,
    settings: PolicySettings,
    limits: LimitsCache,
    sources: tuple[ClusterClaims, ClusterRuntimes],
    results: list[Result],
    errors: list[AuditError],
) -> None:
    namespace, name, uid, api_version = _ref(obj)
    where = f"cluster {target.path(None)}"

    def error(message: str, platform: bool = False) -> None:
        errors.append(AuditError(api_version, target.kind, namespace, name, message, uid, platform))

    try:
        reviewed = await review(obj, settings, limits, *sources)
    except (InvalidObject, InvalidQuantity) as exc:  # a TrainJob's runtime not found too
        error(f"cannot be read: {exc}")
        return
    except ListFailed as exc:  # a resource claim or a training runtime could not be read
        error(str(exc))
        return
    except PlatformError as exc:
        error(f"platform: {exc}", platform=True)
        return
    document = Document(source=where, index=len(results) + 1, path="", obj=_slim(obj))
    results.append(Result(document, reviewed.decision))


async def run_audit(
    cluster: Cluster,
    settings: PolicySettings,
    limits: LimitsCache,
    *,
    targets: Iterable[Target] | None = None,
    namespace: str | None = None,
    selector: str | None = None,
    chunk_size: int = 500,
    clock: Callable[[], float] = time.time,
) -> AuditReport:
    """Audit what the cluster holds now; see the module docstring."""
    started = clock()
    candidates = list(targets) if targets is not None else candidate_targets(settings)
    if namespace:  # a cluster-scoped kind has nothing in a namespace
        candidates = [t for t in candidates if t.namespaced]
    report = AuditReport(started=started)
    try:
        served = await asyncio.to_thread(served_targets, cluster, candidates)
    except Exception as exc:  # discovery failed: nothing can be said about the cluster
        report.errors.append(AuditError("", "", "", "", f"API discovery failed: {exc}"))
        report.duration = clock() - started
        return report
    sources = (ClusterClaims(cluster), ClusterRuntimes(cluster, chunk_size))
    for target in served:
        report.kinds.append(target.name)
        try:
            results, errors, count = await _scan_kind(
                cluster, target, settings, limits, sources, namespace, selector, chunk_size
            )
        except ListFailed as exc:
            report.errors.append(
                AuditError(target.api_version, target.kind, namespace or "", "", str(exc))
            )
            report.scanned[target.name] = 0
            continue
        report.results.extend(results)
        report.errors.extend(errors)
        report.scanned[target.name] = count
    report.duration = clock() - started
    return report
