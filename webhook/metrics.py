"""Prometheus metrics and structured-log keys: the one home of observability names.

Metrics live on a :class:`Metrics` object with its own ``CollectorRegistry`` (no global
registry), built once at start and passed to whoever records. Label values are closed
sets chosen by our code, never text from an admitted object or a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LogKey", "Metrics"]

# Admission decisions are in milliseconds; platform calls up to the deadline (seconds).
# The admission buckets reach 30 s, the largest timeoutSeconds the apiserver accepts, so a
# p99 near admission.timeout_seconds (the chart's NodelimitsReviewLatencyNearTimeout) shows.
_ADMISSION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30
)  # fmt: skip
_PLATFORM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5)


class LogKey:
    """Keys of the decision log line; stable, dashboards and alerts parse them."""

    UID = "uid"
    KIND = "kind"
    OPERATION = "operation"
    NAMESPACE = "namespace"
    NAME = "name"
    GROUP = "resource_group"
    ACCELERATOR = "accelerator_type"
    VERDICT = "verdict"
    VIOLATIONS = "violations"
    WARNINGS = "warnings"
    DRY_RUN = "dry_run"
    DURATION_MS = "duration_ms"
    LIMITS_SOURCE = "limits_source"
    """``stale``: cached limits served only because the platform is failing; else ``fresh``."""
    SKIPPED = "skipped"
    """Why a review was not checked (no annotation, an operation not ours, unchanged pods)."""
    ERROR = "error"
    """Why a review could not be decided (invalid object, platform refusal or failure)."""


@dataclass
class Metrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.admission_requests = Counter(
            "nodelimits_admission_requests_total",
            "Admission reviews answered, by verdict.",
            ["kind", "operation", "decision", "dry_run", "mode"],
            registry=r,
        )
        self.admission_duration = Histogram(
            "nodelimits_admission_duration_seconds",
            "Time to decide one admission review.",
            ["kind"],
            buckets=_ADMISSION_BUCKETS,
            registry=r,
        )
        self.admission_errors = Counter(
            "nodelimits_admission_errors_total",
            "Reviews that failed inside nodelimits (denied fail-closed), by reason.",
            ["reason"],
            registry=r,
        )
        self.violations = Counter(
            "nodelimits_violations_total",
            "Violations found, by resource.",
            ["resource"],
            registry=r,
        )
        self.fail_open = Counter(
            "nodelimits_fail_open_total",
            "Reviews allowed only because the platform failed and failureMode is open.",
            ["reason"],
            registry=r,
        )
        self.platform_requests = Counter(
            "nodelimits_platform_requests_total",
            "Requests to the platform Open API, by outcome and envelope code.",
            ["endpoint", "outcome", "code"],
            registry=r,
        )
        self.platform_duration = Histogram(
            "nodelimits_platform_request_duration_seconds",
            "Duration of one platform HTTP attempt.",
            ["endpoint"],
            buckets=_PLATFORM_BUCKETS,
            registry=r,
        )
        self.cache_events = Counter(
            "nodelimits_limits_cache_total",
            "Limits cache events: hit, miss, stale, refresh, error (a limits fetch failed), "
            "list_error (the resource-group list failed), list_throttled (a forced list "
            "refresh not made: one was made within cache.group_list_min_interval), negative, "
            "negative_forgotten (a list showed the group), evict, evict_negative, throttled.",
            ["event"],
            registry=r,
        )
        self.group_list_refreshes = Counter(
            "nodelimits_platform_group_list_refresh_total",
            "Fetches of the platform's resource-group list, by reason: expired (no usable "
            "list), stale (stale-while-revalidate), missing_group (a group the cached list "
            "lacks) and unknown_group (a lookup said unknown); the last two are forced and "
            "made at most once per cache.group_list_min_interval.",
            ["reason"],
            registry=r,
        )
        self.cache_age = Gauge(
            "nodelimits_limits_cache_oldest_age_seconds",
            "Age of the oldest cached limits entry.",
            registry=r,
        )
        self.token_expiry = Gauge(
            "nodelimits_token_expiry_timestamp_seconds",
            "Unix time at which the current platform token expires (0: unknown).",
            registry=r,
        )
        self.token_refreshes = Counter(
            "nodelimits_token_refresh_total",
            "Token issue and renewal attempts, by outcome.",
            ["method", "outcome"],
            registry=r,
        )
        self.cert_reloads = Counter(
            "nodelimits_tls_reloads_total",
            "Times the serving certificate files changed and were reloaded.",
            registry=r,
        )
        self.cert_reload_errors = Counter(
            "nodelimits_tls_reload_errors_total",
            "Times changed certificate files could not be loaded (the old one kept serving).",
            registry=r,
        )
        self.cert_expiry = Gauge(
            "nodelimits_tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the serving certificate in server.cert_file expires "
            "(0: unreadable).",
            registry=r,
        )
        self.cert_syncs = Counter(
            "nodelimits_tls_certificate_sync_total",
            "Self-managed certificate syncs with the Secret: ok (nothing to do), issued "
            "(this replica wrote new material), conflict (another replica wrote first), error.",
            ["outcome"],
            registry=r,
        )
        self.connections_refused = Counter(
            "nodelimits_webhook_connections_refused_total",
            "Connections closed on arrival: server.max_connections(_per_client) were open.",
            registry=r,
        )
        self.review_rejected = Counter(
            "nodelimits_webhook_requests_rejected_total",
            "Requests answered before any handler: too_large, slow_body, too_deep, malformed, "
            "mismatch (not the path's handler).",
            ["reason"],
            registry=r,
        )
        self.asyncio_tasks = Gauge(
            "nodelimits_asyncio_tasks",
            "asyncio tasks alive in the serving process (a leak shows as growth).",
            registry=r,
        )
        self.kopf_memos = Gauge(
            "nodelimits_kopf_memos",
            "Per-object memos kopf retains (0 with EphemeralMemories: nothing frees them).",
            registry=r,
        )
        # The continuous audit (nodelimits audit-controller, issue 16): gauges of the last run.
        self.audit_violations = Gauge(
            "nodelimits_audit_violations",
            "Violations the last audit found, by resource group (the platform's), kind and "
            "resource.",
            ["group", "kind", "resource"],
            registry=r,
        )
        self.audit_last_run = Gauge(
            "nodelimits_audit_last_run_timestamp_seconds",
            "Unix time at which the last audit finished.",
            registry=r,
        )
        self.audit_duration = Gauge(
            "nodelimits_audit_duration_seconds",
            "Duration of the last audit.",
            registry=r,
        )
        self.audit_scanned = Gauge(
            "nodelimits_audit_objects_scanned",
            "Objects the last audit read, by kind.",
            ["kind"],
            registry=r,
        )
        self.audit_errors = Gauge(
            "nodelimits_audit_errors",
            "Objects or kinds the last audit could not judge.",
            registry=r,
        )
        self.audit_leader = Gauge(
            "nodelimits_audit_leader",
            "1 while this replica holds the audit Lease (only the leader audits and writes).",
            registry=r,
        )
        self.audit_runs = Counter(
            "nodelimits_audit_runs_total",
            "Audits run, by trigger: interval, limits (a seen group's limits changed), start.",
            ["trigger"],
            registry=r,
        )
        self.audit_report_writes = Counter(
            "nodelimits_audit_report_writes_total",
            "PolicyReport writes, by operation: create, replace, delete.",
            ["operation"],
            registry=r,
        )
        self.audit_events = Counter(
            "nodelimits_audit_events_total",
            "Events on violating objects, by outcome: sent, deferred (over the per-run "
            "bound, sent by a later audit), failed.",
            ["outcome"],
            registry=r,
        )
