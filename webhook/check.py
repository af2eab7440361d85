"""``nodelimits check``: manifests in, one verdict per object out (rendered by
:mod:`webhook.output`, whose JSON shape is a contract: CI pipelines parse it).
 Errors in individual
documents do not stop the run; they are reported and make the exit code 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from webhook.core import policy
from webhook.core.policy import PolicySettings
from webhook.core.resources import InvalidQuantity
from webhook.core.workloads import InvalidObject, display_name
from webhook.manifests import Document, ManifestError, read_documents
from webhook.platform.cache import LimitsCache
from webhook.review import FileClaims, FileRuntimes, review

__all__ = ["CheckReport", "Result", "run_check"]


@dataclass(frozen=True, slots=True)
class Result:
    document: Document
    decision: policy.Decision


@dataclass(slots=True)
class CheckReport:
    results: list[Result] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        return 1 if any(not r.decision.allowed for r in self.results) else 0

    def summary(self) -> dict[str, int]:
        checked = [r for r in self.results if r.decision.skipped is None]
        rejected = sum(1 for r in checked if not r.decision.allowed)
        return {
            "objects": len(self.results),
            "checked": len(checked),
            "allowed": len(checked) - rejected,
            "rejected": rejected,
            "skipped": len(self.results) - len(checked),
            "errors": len(self.errors),
        }


def _subject(doc: Document) -> str:
    meta = doc.obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    kind = doc.obj.get("kind")
    if isinstance(kind, str) and isinstance(name, str):
        namespace = meta.get("namespace") if isinstance(meta, dict) else None
        shown = display_name(namespace if isinstance(namespace, str) else None, name)
        return f" ({kind} {shown})"
    return ""


async def run_check(
    sources: Iterable[str], settings: PolicySettings, limits: LimitsCache
) -> CheckReport:
    report = CheckReport()
    # Read everything first: a pod may name a ResourceClaimTemplate, a TrainJob its
    # training runtime, from a later file.
    items: list[Document | ManifestError] = []
    for source in sources:
        read = list(read_documents(source))
        # kubectl: "no objects passed to apply". An empty file must not pass CI either.
        items += read or [ManifestError(f"{source}: no objects in it")]
    objects = [i.obj for i in items if not isinstance(i, ManifestError)]
    claims = FileClaims(objects)
    runtimes = FileRuntimes(objects)
    for item in items:
        if isinstance(item, ManifestError):
            report.errors.append(str(item))
            continue
        try:
            reviewed = await review(item.obj, settings, limits, claims, runtimes)
        except (InvalidObject, InvalidQuantity) as exc:
            report.errors.append(f"{item.where}{_subject(item)}: {exc}")
            continue
        report.results.append(Result(item, reviewed.decision))
    return report
