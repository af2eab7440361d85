"""The kopf validating handlers: one per kind, each doing every check in one pass.

Thin over the core: a handler reads the AdmissionReview's object, runs
:func:`webhook.review.review`, then applies the enforcement mode (deny / warn / audit)
and the failure mode (closed / open). Every path sets one :class:`Outcome`, recorded once
in ``finally`` as a metric and one structured decision log line.

kopf traps this module guards against (see reference/kopf.md):

* a request to an unknown path runs no handler and is ALLOWED: the paths are the ids in
  :data:`HANDLERS`, the one table the Helm chart's webhook configuration mirrors;
* ``operations=`` is not enforced in-process: each handler checks ``operation`` itself;
* kopf keeps a memo per object UID for non-CREATE requests forever: see
  :class:`webhook.serve.kopf_glue.EphemeralMemories`.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from webhook.config import EnforcementMode, FailureMode, Settings
from webhook.core import kinds, policy, trainjob, workloads
from webhook.core.policy import PolicySettings
from webhook.core.resources import InvalidQuantity
from webhook.metrics import LogKey, Metrics
from webhook.platform.cache import LimitsCache
from webhook.platform.errors import (
    CredentialsError,
    LookupsThrottled,
    MalformedResponse,
    PlatformAuthError,
    PlatformRejected,
    PlatformUnavailable,
)
from webhook.platform.models import ErrorCode
from webhook.review import (
    ClaimSource,
    Review,
    RuntimeSource,
    names_runtime,
    read_runtimes,
    review_cached,
    review_workload,
)
from webhook.serve.handlers import HANDLERS, HandlerSpec, served
from webhook.serve.kopf_glue import unwrapped

__all__ = [
    "HANDLERS",
    "Admission",
    "HandlerSpec",
    "Outcome",
    "register",
]

DECISION_LOGGER = "nodelimits.decision"
REVIEW_UID: contextvars.ContextVar[str] = contextvars.ContextVar("nodelimits_review_uid")
"""The AdmissionReview's request.uid, set by the server for the decision log line (kopf
passes handlers the object's metadata.uid only, which is empty on CREATE)."""
Verdict = tuple["Outcome", kopf.AdmissionError | None]


class Outcome(enum.StrEnum):
    ALLOW = "allow"  # checked and fits
    DENY = "deny"  # checked and rejected (or refused: unknown group, account refused)
    WARN = "warn"  # rejected by policy, allowed because mode=warn
    AUDIT = "audit"  # rejected by policy, allowed silently because mode=audit
    SKIP = "skip"  # not checked: no annotation, operation not ours, unchanged on UPDATE
    ERROR = "error"  # could not decide; denied (fail closed)
    FAIL_OPEN = "fail_open"  # could not decide; allowed because failureMode=open


def _relevant(workload: workloads.Workload) -> tuple[object, ...]:
    """What an UPDATE must change for the verdict to change."""
    return (
        workload.pod_spec,
        workload.annotations,
        workload.fallback_annotations,
        workload.active_deadline_seconds,
        workload.parallelism,
        workload.pod_sets,
    )


def _targets(workload: workloads.Workload, settings: PolicySettings) -> tuple[object, ...]:
    """Where a Pod is checked against: its group and type annotations as the policy reads
    them. A Pod UPDATE that changes these (or adds one) re-targets the pod: checked."""
    keys = (settings.group_annotation, settings.type_annotation)
    return tuple(
        policy.read_annotation(annotations, key)
        for annotations in (workload.annotations, workload.fallback_annotations)
        for key in keys
    )


def _unchanged(
    before: workloads.Workload, after: workloads.Workload, settings: PolicySettings
) -> bool:
    if after.kind == "Pod":  # resources change only through pods/resize (its own handler)
        return _targets(before, settings) == _targets(after, settings)
    return _relevant(before) == _relevant(after)


def _read_old(
    obj: Mapping[str, Any], table: kinds.KindTable, runtimes: trainjob.Runtimes | None
) -> workloads.Workload | None:
    """The UPDATE's old object, or None when it could not be checked itself (a TrainJob's
    runtime is the new object's: ``spec.runtimeRef`` is immutable)."""
    try:
        old = workloads.workload_of(obj, table, runtimes)
    except workloads.InvalidObject:
        return None
    return old if isinstance(old, workloads.Workload) else None


def decision_budget(timeout_seconds: float, platform_deadline: float) -> float:
    """Seconds one decision may take: safely inside the webhook's timeoutSeconds, and never
    less than one platform lookup's deadline."""
    return max(platform_deadline, timeout_seconds * 0.8 - 0.25)


@dataclass
class Admission:
    """The handlers' collaborators, passed in; one instance per process."""

    settings: Settings
    limits: LimitsCache
    metrics: Metrics
    claims: ClaimSource | None = None
    """Where the resource claims a checked pod names are read (DRA); None: not read."""
    runtimes: RuntimeSource | None = None
    """Where the training runtime a TrainJob names is read; None: TrainJobs are skipped."""
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger(DECISION_LOGGER))
    clock: Callable[[], float] = time.perf_counter
    # Metric children by label values: prometheus_client's .labels() costs ~5 us a call.
    _children: dict[tuple[str, str, str, bool, str], tuple[Any, Any]] = field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def budget(self) -> float:
        """Seconds one decision may take: safely inside the webhook's timeoutSeconds."""
        return decision_budget(
            self.settings.admission.timeout_seconds, self.settings.platform.deadline
        )

    async def handle(
        self,
        webhook: HandlerSpec,
        /,
        *,
        body: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        operation: str | None,
        subresource: str | None,
        dryrun: bool,
        warnings: list[str],
        uid: str | None = None,
        **_: Any,
    ) -> None:
        spec = webhook  # kopf's own kwargs include `spec` (the object's spec)
        started = self.clock()
        outcome = Outcome.SKIP
        log: dict[str, Any] = {
            LogKey.UID: REVIEW_UID.get(uid),
            LogKey.KIND: spec.kind,
            LogKey.OPERATION: operation,
            LogKey.DRY_RUN: dryrun,
        }
        try:
            outcome, denial = await self._decide(
                spec, body, old, operation, subresource, warnings, log
            )
        except Exception as exc:  # fail closed on our own bugs: deny, count, keep serving
            outcome = Outcome.ERROR
            self.metrics.admission_errors.labels(reason="internal").inc()
            self.logger.exception("internal error in admission handler %s", spec.id)
            raise kopf.AdmissionError(
                f"nodelimits: internal error while checking {spec.kind} {_display(log)} "
                f"({type(exc).__name__}); denied because nodelimits fails closed",
                code=500,
            ) from None
        finally:
            self._record(spec, outcome, dryrun, operation, started, log)
        if denial is not None:
            raise denial

    async def _decide(
        self,
        spec: HandlerSpec,
        body: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        operation: str | None,
        subresource: str | None,
        warnings: list[str],
        log: dict[str, Any],
    ) -> Verdict:
        meta = body.get("metadata")
        if isinstance(meta, Mapping):
            log[LogKey.NAMESPACE] = meta.get("namespace") or ""
            log[LogKey.NAME] = meta.get("name") or meta.get("generateName") or ""
        if not spec.accepts(operation, subresource):
            log[LogKey.SKIPPED] = f"operation {operation} {subresource or ''} not checked".strip()
            return Outcome.SKIP, None
        admission = self.settings.admission
        subject = f"{spec.kind} {_display(log)}"
        try:
            table = self.settings.policy.kind_table
            runtimes = None
            if self.runtimes is not None and names_runtime(body, table):
                # a TrainJob's runtime, from the apiserver; no timer for any other kind (a
                # timer per review: py-spy put 7% of the server's samples on that line)
                async with asyncio.timeout(self.budget):
                    runtimes = await read_runtimes(body, table, self.runtimes)
            workload = workloads.workload_of(body, table, runtimes)  # read once, also for UPDATE
            if (
                operation == "UPDATE"
                and spec.subresource is None
                and old is not None
                and isinstance(workload, workloads.Workload)
            ):
                before = _read_old(old, table, runtimes)
                if before is not None and _unchanged(before, workload, self.settings.policy):
                    log[LogKey.SKIPPED] = "unchanged pods"
                    return Outcome.SKIP, None
            first = review_cached(workload, self.settings.policy, self.limits, self.claims)
            if isinstance(first, Review):
                reviewed = first
            else:  # a lookup has to wait: within the decision budget
                async with asyncio.timeout(self.budget):
                    reviewed = await review_workload(
                        workload, self.settings.policy, self.limits, self.claims, pending=first
                    )
        except (workloads.InvalidObject, InvalidQuantity) as exc:
            log[LogKey.ERROR] = str(exc)
            self.metrics.admission_errors.labels(reason="invalid_object").inc()
            return Outcome.DENY, kopf.AdmissionError(
                f"nodelimits: {subject} is invalid: {exc}", code=400
            )
        except PlatformRejected as exc:
            # An account refusal, or 10003 and unknown codes: our request is wrong (a bug or
            # misconfiguration).
            return self._refused(subject, exc, log)
        except CredentialsError as exc:
            return self._unusable_credentials(subject, exc, log)
        except LookupsThrottled as exc:  # the platform is fine: never failed open
            log[LogKey.ERROR] = str(exc)
            self.metrics.admission_errors.labels(reason="throttled").inc()
            return Outcome.ERROR, kopf.AdmissionError(
                f"nodelimits: cannot check {subject}{_group_of(log, exc)}: {exc}", code=429
            )
        except (PlatformUnavailable, MalformedResponse, TimeoutError) as exc:
            return self._unavailable(subject, exc, warnings, log)

        decision = reviewed.decision
        log[LogKey.GROUP] = decision.group
        log[LogKey.ACCELERATOR] = decision.accelerator.value if decision.accelerator else None
        log[LogKey.VIOLATIONS] = [v.message for v in decision.violations]
        log[LogKey.WARNINGS] = list(decision.warnings)
        log[LogKey.LIMITS_SOURCE] = "stale" if reviewed.served_on_error else "fresh"
        if decision.skipped is not None:
            log[LogKey.SKIPPED] = decision.skipped
            return Outcome.SKIP, None
        for violation in decision.violations:
            self.metrics.violations.labels(resource=_metric_resource(violation.resource)).inc()
        if admission.mode is EnforcementMode.AUDIT:
            return (Outcome.ALLOW if decision.allowed else Outcome.AUDIT), None
        warnings.extend(decision.warnings)
        if decision.allowed:
            return Outcome.ALLOW, None
        if admission.mode is EnforcementMode.WARN:
            warnings.append(decision.message)
            return Outcome.WARN, None
        return Outcome.DENY, kopf.AdmissionError(decision.message, code=403)

    def _refused(self, subject: str, exc: PlatformRejected, log: dict[str, Any]) -> Verdict:
        known = ErrorCode.lookup(exc.code)
        # Not a platform code (an HTTP status): the error's own text says what happened,
        # and it never holds a secret.
        meaning = known.meaning if known else str(exc)
        log[LogKey.ERROR] = f"platform {exc.code}: {meaning}"
        self.metrics.admission_errors.labels(reason=_metric_reason(exc)).inc()
        auth = isinstance(exc, PlatformAuthError)
        who = (
            "the platform refused nodelimits' account"
            if auth
            else "the platform rejected nodelimits' request"
        )
        check = "platform credentials" if auth else "configuration and logs"
        return Outcome.ERROR, kopf.AdmissionError(
            f"nodelimits: cannot check {subject}{_group_of(log, exc)}: {who} "
            f"({exc.code}: {meaning}); ask the cluster operators to check nodelimits' {check}",
            code=403 if auth else 500,
        )

    def _unusable_credentials(
        self, subject: str, exc: CredentialsError, log: dict[str, Any]
    ) -> Verdict:
        log[LogKey.ERROR] = f"credentials: {exc}"
        self.metrics.admission_errors.labels(reason=_metric_reason(exc)).inc()
        return Outcome.ERROR, kopf.AdmissionError(
            f"nodelimits: cannot check {subject}{_group_of(log, exc)}: nodelimits' platform "
            f"credentials are unusable ({exc}); ask the cluster operators to check nodelimits' "
            "platform credentials",
            code=403,
        )

    def _unavailable(
        self, subject: str, exc: Exception, warnings: list[str], log: dict[str, Any]
    ) -> Verdict:
        reason = _metric_reason(exc)
        detail = str(exc) or "no answer within the decision budget"
        log[LogKey.ERROR] = f"platform unavailable: {detail}"
        group = _group_of(log, exc)
        if self.settings.admission.failure_mode is FailureMode.OPEN:
            self.metrics.fail_open.labels(reason=reason).inc()
            warnings.append(
                f"nodelimits: {subject}{group} was not checked: the platform API is "
                f"unavailable ({detail}); allowed because failureMode is open"
            )
            return Outcome.FAIL_OPEN, None
        self.metrics.admission_errors.labels(reason=reason).inc()
        return Outcome.ERROR, kopf.AdmissionError(
            f"nodelimits: cannot check {subject}{group}: the platform API is unavailable "
            f"({detail}) and no recent limits are cached; denied because failureMode is "
            "closed, try again later",
            code=503,
        )

    def _record(
        self,
        spec: HandlerSpec,
        outcome: Outcome,
        dryrun: bool,
        operation: str | None,
        started: float,
        log: dict[str, Any],
    ) -> None:
        elapsed = self.clock() - started
        mode = self.settings.admission.mode.value
        op = operation if operation in ("CREATE", "UPDATE") else "other"
        key = (spec.kind, op, outcome.value, dryrun, mode)  # a closed set: bounded
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.metrics.admission_requests.labels(
                    kind=spec.kind,
                    operation=op,
                    decision=outcome.value,
                    dry_run="true" if dryrun else "false",
                    mode=mode,
                ),
                self.metrics.admission_duration.labels(kind=spec.kind),
            )
        children[0].inc()
        children[1].observe(elapsed)
        log[LogKey.VERDICT] = outcome.value
        log[LogKey.DURATION_MS] = round(elapsed * 1000, 3)
        logger = self.logger
        if logger.isEnabledFor(logging.INFO):
            # logger.info without its caller lookup (a walk up the stack, ~1/8 of the line):
            # the line's fields say where it comes from.
            record = logger.makeRecord(
                logger.name, logging.INFO, __file__, 0, "admission decision", (), None,
                extra={"decision": log},
            )  # fmt: skip
            logger.handle(record)


def _display(log: Mapping[str, Any]) -> str:
    return workloads.display_name(log.get(LogKey.NAMESPACE), log.get(LogKey.NAME))


def _group_of(log: Mapping[str, Any], exc: Exception) -> str:
    group = getattr(exc, "resource_group", None) or log.get(LogKey.GROUP)
    return f' against resource group "{group}"' if group else ""


_KNOWN_RESOURCES = {"cpu", "memory", "activeDeadlineSeconds", "acceleratorType", "resourceGroup"}


def _metric_resource(resource: str) -> str:
    # Label values must be a closed set: card resource names come from user objects.
    return resource if resource in _KNOWN_RESOURCES else "cards"


_FAILURE_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (CredentialsError, "credentials"),
    (MalformedResponse, "malformed"),
    (PlatformUnavailable, "unavailable"),
    (TimeoutError, "timeout"),  # the decision budget ran out
)
"""The ``reason`` label of a failure that is not a platform refusal, by type: first match."""


def _metric_reason(exc: Exception) -> str:
    """The closed set of ``reason`` labels: refusals by their code, the rest by type."""
    if isinstance(exc, PlatformRejected):
        known = ErrorCode.lookup(exc.code)
        if known is not None:
            return f"platform_{known.value}"
        return "platform_http" if exc.code.startswith("http_") else "platform_other"
    return next((label for kind, label in _FAILURE_REASONS if isinstance(exc, kind)), "unavailable")


HandlerFn = Callable[..., Awaitable[None]]


def register(registry: kopf.OperatorRegistry, admission: Admission) -> list[HandlerSpec]:
    """Register one kopf validating handler per enabled kind (and operator kind-table row);
    returns what was registered."""
    settings = admission.settings
    registered: list[HandlerSpec] = []
    for spec in served(settings.admission.kinds, settings.policy.workload_kinds):
        kopf.on.validate(
            spec.group,
            spec.version,
            spec.plural,
            id=spec.id,
            operations=set(spec.operations),  # type: ignore[arg-type]
            subresource=spec.subresource,
            registry=registry,
        )(_handler(admission, spec))
        registered.append(spec)
    return registered


def _handler(admission: Admission, spec: HandlerSpec) -> HandlerFn:
    async def handler(**kwargs: Any) -> None:
        kwargs["body"], kwargs["old"] = unwrapped(kwargs["body"]), unwrapped(kwargs["old"])
        await admission.handle(spec, **kwargs)

    handler.__qualname__ = handler.__name__ = f"validate_{spec.id.replace('-', '_')}"
    return handler
