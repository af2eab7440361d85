"""webhook.serve.admission: enforcement modes, failure modes, outcomes, metrics, the log line."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import kopf
import pytest

from devtools.builders import (
    GROUP_KEY,
    TYPE_KEY,
    FakeLimits,
    container,
    failing_platform_cache,
    job,
    limits_cache,
    node_limits,
    pod,
)
from devtools.examples import example
from webhook.config import Settings
from webhook.core import trainjob
from webhook.core.limits import AcceleratorType, NodeLimits
from webhook.kube import RuntimeUnavailable
from webhook.metrics import Metrics
from webhook.platform.cache import LimitsCache
from webhook.platform.errors import (
    LookupsThrottled,
    MalformedResponse,
    PlatformAuthError,
    PlatformRejected,
    PlatformUnavailable,
)
from webhook.serve.admission import HANDLERS, Admission, HandlerSpec

SPECS = {h.id: h for h in HANDLERS}
TRAINJOBS = "trainer.kubeflow.org/v1alpha1/trainjobs"


ROOT_DIR = Path(__file__).resolve().parents[3]


def make(
    source: FakeLimits | LimitsCache | None = None, **settings: Any
) -> tuple[Admission, Metrics]:
    metrics = Metrics()
    if not isinstance(source, LimitsCache):
        source = limits_cache(source or FakeLimits(), metrics)
    return Admission(Settings(**settings), source, metrics), metrics


async def call(
    admission: Admission,
    obj: dict[str, Any],
    handler: str = "pods",
    operation: str = "CREATE",
    subresource: str | None = None,
    old: dict[str, Any] | None = None,
    dryrun: bool = False,
) -> list[str]:
    warnings: list[str] = []
    await admission.handle(
        SPECS[handler],
        body=obj,
        old=old,
        operation=operation,
        subresource=subresource,
        dryrun=dryrun,
        warnings=warnings,
        uid="u-1",
        spec=obj.get("spec"),
    )
    return warnings


def counted(metrics: Metrics, decision: str) -> float:
    value = metrics.registry.get_sample_value(
        "nodelimits_admission_requests_total",
        {
            "kind": "Pod",
            "operation": "CREATE",
            "decision": decision,
            "dry_run": "false",
            "mode": "deny",
        },
    )
    return value or 0.0


async def test_fitting_pod_is_allowed_and_counted() -> None:
    admission, metrics = make()
    assert await call(admission, pod(container(cpu="4"))) == []
    assert counted(metrics, "allow") == 1


async def test_oversized_pod_is_denied_with_403_and_the_message() -> None:
    admission, metrics = make()
    with pytest.raises(kopf.AdmissionError) as denied:
        await call(admission, pod(container(cpu="41")))
    assert denied.value.code == 403
    assert str(denied.value) == (
        'nodelimits: Pod team-a/p does not fit one node of resource group "TeslaM40" (gpu): '
        "cpu 41 > 40 cores per node"
    )
    assert counted(metrics, "deny") == 1


async def test_warn_mode_allows_with_the_message_as_a_warning() -> None:
    admission, _ = make(admission={"mode": "warn"})
    warnings = await call(admission, pod(container(cpu="41")))
    assert warnings[-1].startswith("nodelimits: Pod team-a/p does not fit")


async def test_audit_mode_allows_silently_and_counts() -> None:
    admission, metrics = make(admission={"mode": "audit"})
    assert await call(admission, pod(container(cpu="41"))) == []
    value = metrics.registry.get_sample_value(
        "nodelimits_admission_requests_total",
        {
            "kind": "Pod",
            "operation": "CREATE",
            "decision": "audit",
            "dry_run": "false",
            "mode": "audit",
        },
    )
    assert value == 1


async def test_dry_run_gets_the_same_verdict() -> None:
    admission, _ = make()
    with pytest.raises(kopf.AdmissionError):
        await call(admission, pod(container(cpu="41")), dryrun=True)


@pytest.mark.parametrize(
    ("handler", "operation", "subresource"),
    [
        pytest.param("pods", "DELETE", None, id="pod-delete"),
        pytest.param("pods", "CREATE", "status", id="other-subresource"),
        pytest.param("pods-resize", "CREATE", "resize", id="resize-create"),
        pytest.param("jobs", "DELETE", None, id="job-delete"),
    ],
)
async def test_operations_outside_the_scope_are_not_checked(
    handler: str, operation: str, subresource: str | None
) -> None:
    """kopf does not enforce `operations=` in-process: the handler must."""
    provider = FakeLimits()
    admission, _ = make(provider)
    await call(admission, pod(container(cpu="999")), handler, operation, subresource)
    assert provider.calls == 0


async def test_resize_is_checked() -> None:
    admission, _ = make()
    with pytest.raises(kopf.AdmissionError, match="cpu 64 > 40"):
        await call(admission, pod(container(cpu="64")), "pods-resize", "UPDATE", "resize")


async def test_update_that_leaves_the_pods_unchanged_is_not_checked() -> None:
    """E.g. a finalizer or label added to a Job admitted before nodelimits existed."""
    provider = FakeLimits()
    admission, _ = make(provider)
    old = job(container(cpu="999"))
    new = job(container(cpu="999"))
    new["metadata"]["labels"] = {"team": "a"}
    await call(admission, new, "jobs", "UPDATE", old=old)
    assert provider.calls == 0


def _annotated(obj: dict[str, Any], **annotations: str) -> dict[str, Any]:
    obj["metadata"]["annotations"] = annotations
    return obj


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param({GROUP_KEY: "a800x8"}, {GROUP_KEY: "TeslaM40"}, id="group-changed"),
        pytest.param({}, {GROUP_KEY: "TeslaM40"}, id="group-added"),
        pytest.param({GROUP_KEY: "a800x8"},
                     {GROUP_KEY: "a800x8", "NodeLimits.io/Resource-Group": "TeslaM40"},
                     id="case-variant-added"),
        pytest.param({GROUP_KEY: "TeslaM40", TYPE_KEY: "cpu"}, {GROUP_KEY: "TeslaM40"},
                     id="type-removed"),
    ],
)  # fmt: skip
async def test_pod_update_that_retargets_it_is_checked(
    before: dict[str, str], after: dict[str, str]
) -> None:
    """Issue 12, finding 2: `kubectl annotate --overwrite` of the group persisted unchecked."""
    admission, _ = make(FakeLimits(node_limits(cpu=40)))
    big = pod(container(cpu="100"))
    with pytest.raises(kopf.AdmissionError, match=r"cpu 100 > 40|conflicting annotations"):
        await call(admission, _annotated(big, **after), "pods", "UPDATE",
                   old=_annotated(pod(container(cpu="100")), **before))  # fmt: skip


async def test_pod_update_that_keeps_its_group_is_not_checked() -> None:
    """Labels, finalizers, other annotations: never blocked, even on a pod that does not fit
    (created before nodelimits, or before its group shrank)."""
    provider = FakeLimits()
    admission, _ = make(provider)
    old = pod(container(cpu="999"))
    new = pod(container(cpu="999"))
    new["metadata"]["labels"] = {"team": "a"}
    new["metadata"]["annotations"]["other"] = "x"
    new["metadata"]["finalizers"] = ["example.com/f"]
    await call(admission, new, "pods", "UPDATE", old=old)
    assert provider.calls == 0


async def test_update_of_the_pod_template_is_checked() -> None:
    admission, _ = make()
    with pytest.raises(kopf.AdmissionError):
        await call(
            admission, job(container(cpu="999")), "jobs", "UPDATE", old=job(container(cpu="1"))
        )


async def test_unknown_group_is_denied_by_name() -> None:
    admission, _ = make()
    with pytest.raises(kopf.AdmissionError, match='resource group "Nope" is unknown'):
        await call(admission, pod(group="Nope"))


@pytest.mark.parametrize(
    "error",
    [PlatformUnavailable("connection refused"), MalformedResponse("not JSON"), TimeoutError()],
    ids=["unavailable", "malformed", "timeout"],
)
async def test_platform_down_fails_closed_with_503(error: Exception) -> None:
    admission, metrics = make(FakeLimits(error=error))
    with pytest.raises(kopf.AdmissionError) as denied:
        await call(admission, pod())
    assert denied.value.code == 503
    assert "denied because failureMode is closed" in str(denied.value)
    assert counted(metrics, "error") == 1


async def test_platform_down_fails_open_with_a_warning_and_a_count() -> None:
    admission, metrics = make(
        FakeLimits(error=PlatformUnavailable("refused")), admission={"failure_mode": "open"}
    )
    warnings = await call(admission, pod(container(cpu="999")))
    assert "allowed because failureMode is open" in warnings[-1]
    assert (
        metrics.registry.get_sample_value("nodelimits_fail_open_total", {"reason": "unavailable"})
        == 1
    )


async def test_refused_account_denies_even_when_failing_open() -> None:
    error = PlatformAuthError("frozen", code="10007", resource_group="TeslaM40")
    admission, _ = make(FakeLimits(error=error), admission={"failure_mode": "open"})
    with pytest.raises(kopf.AdmissionError) as denied:
        await call(admission, pod())
    assert denied.value.code == 403
    assert "the platform refused nodelimits' account (10007: the platform account is frozen)" in (
        str(denied.value)
    )


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (
            PlatformAuthError(
                "platform resources: HTTP 401, code 10008: bad token", code="http_401"
            ),
            403,
            "(http_401: platform resources: HTTP 401, code 10008: bad token); ask the cluster "
            "operators to check nodelimits' platform credentials",
        ),
        (
            PlatformRejected("platform resources: code 10003", code="10003"),
            500,
            "the platform rejected nodelimits' request (10003: missing request parameters); "
            "ask the cluster operators to check nodelimits' configuration and logs",
        ),
    ],
    ids=["http-401", "10003"],
)
async def test_refusals_tell_operators_what_happened(
    error: PlatformRejected, code: int, says: str
) -> None:
    admission, _ = make(FakeLimits(error=error))
    with pytest.raises(kopf.AdmissionError) as denied:
        await call(admission, pod())
    assert denied.value.code == code
    assert says in str(denied.value)
    assert "unexpected platform error" not in str(denied.value)


async def test_stale_limits_from_a_failing_platform_carry_a_warning() -> None:
    admission, _ = make(await failing_platform_cache(FakeLimits(), Metrics()))
    warnings = await call(admission, pod())
    assert warnings == [
        'limits of resource group "TeslaM40" are 120s old: the platform API is failing, '
        "so cached limits were used"
    ]


async def test_malformed_object_is_denied_with_400() -> None:
    admission, _ = make()
    obj = pod(container(limits={"cpu": "lots"}))
    with pytest.raises(kopf.AdmissionError) as denied:
        await call(admission, obj)
    assert denied.value.code == 400
    assert "spec.containers[0].resources.limits.cpu" in str(denied.value)


async def test_a_bug_denies_with_500_and_is_counted() -> None:
    class Broken(FakeLimits):
        async def node_limits(self, group: str, accelerator: AcceleratorType) -> NodeLimits:
            raise RuntimeError("boom")

    admission, metrics = make(Broken())
    with pytest.raises(kopf.AdmissionError) as denied:
        await call(admission, pod())
    assert denied.value.code == 500
    assert "RuntimeError" in str(denied.value)
    assert (
        metrics.registry.get_sample_value(
            "nodelimits_admission_errors_total", {"reason": "internal"}
        )
        == 1
    )


async def test_one_decision_line_per_review(caplog: pytest.LogCaptureFixture) -> None:
    admission, _ = make()
    with (
        caplog.at_level(logging.INFO, logger="nodelimits.decision"),
        pytest.raises(kopf.AdmissionError),
    ):
        await call(admission, pod(container(cpu="41")))
    (record,) = [r for r in caplog.records if r.name == "nodelimits.decision"]
    line = record.decision  # type: ignore[attr-defined]
    assert {
        k: line[k]
        for k in (
            "uid",
            "kind",
            "namespace",
            "name",
            "resource_group",
            "accelerator_type",
            "verdict",
            "dry_run",
        )
    } == {
        "uid": "u-1",
        "kind": "Pod",
        "namespace": "team-a",
        "name": "p",
        "resource_group": "TeslaM40",
        "accelerator_type": "gpu",
        "verdict": "deny",
        "dry_run": False,
    }
    assert line["violations"] == ["cpu 41 > 40 cores per node"]
    assert line["duration_ms"] >= 0


def test_handler_ids_are_unique_and_match_the_chart_paths() -> None:
    paths = [h.path for h in HANDLERS]
    assert len(set(paths)) == len(paths)
    chart = (ROOT_DIR / "charts" / "nodelimits" / "templates" / "_helpers.tpl").read_text()
    assert all(f"path: {path}," in chart for path in paths)
    assert paths[:8] == [
        "/pods",
        "/pods-resize",
        "/jobs",
        "/cronjobs",
        "/deployments",
        "/statefulsets",
        "/daemonsets",
        "/replicasets",
    ]


def test_handler_accepts_only_its_operations() -> None:
    spec = HandlerSpec("Pod", "", "v1", "pods", "pods-resize", frozenset({"UPDATE"}), "resize")
    assert spec.accepts("UPDATE", "resize")
    assert not spec.accepts("UPDATE", None)


async def test_throttled_lookups_are_denied_even_when_failing_open() -> None:
    """A flood of invented group names must not turn into fail-open admissions."""
    flood = LookupsThrottled("too many lookups", endpoint="cache")
    admission, metrics = make(FakeLimits(error=flood), admission={"failure_mode": "open"})
    with pytest.raises(kopf.AdmissionError, match="too many lookups") as caught:
        await call(admission, pod(container(cpu="1")))
    assert caught.value.code == 429
    assert counted(metrics, "fail_open") == 0


# --- a TrainJob's runtime, read through the runtime source ------------------------------------


class Runtimes:
    """A runtime source over the example's ClusterTrainingRuntime (or failing)."""

    def __init__(self, *, present: bool = True, error: Exception | None = None) -> None:
        self.present, self.error = present, error
        self.asked: list[trainjob.RuntimeRef] = []

    async def runtimes(self, ref: trainjob.RuntimeRef) -> trainjob.Runtimes:
        self.asked.append(ref)
        if self.error is not None:
            raise self.error
        if not self.present:
            return trainjob.Runtimes(missing=frozenset({ref.key}))
        return trainjob.Runtimes(found={ref.key: example("trainjob.yaml", 0)})


A800 = FakeLimits(node_limits("a800x8", cpu=128, memory_mi=1031168, cards=8, nv=4, nodes=16))


def with_runtimes(runtimes: Runtimes, **settings: Any) -> Admission:
    admission, _ = make(A800, **settings)
    admission.runtimes = runtimes
    return admission


async def test_a_trainjob_that_fits_its_runtimes_pods_is_allowed() -> None:
    source = Runtimes()
    assert await call(with_runtimes(source), example("trainjob.yaml", 1), TRAINJOBS) == []
    assert source.asked == [trainjob.RuntimeRef("ClusterTrainingRuntime", "torch-distributed-a800")]


async def test_an_oversized_trainjob_is_denied_naming_the_runtimes_role() -> None:
    with pytest.raises(kopf.AdmissionError) as denied:
        await call(with_runtimes(Runtimes()), example("trainjob.yaml", 2), TRAINJOBS)
    assert denied.value.code == 403
    assert "replicated job node: nvidia.com/gpu 8 > 4 cards per node" in str(denied.value)


async def test_a_trainjob_whose_runtime_does_not_exist_is_denied_with_400() -> None:
    with pytest.raises(kopf.AdmissionError) as denied:
        await call(with_runtimes(Runtimes(present=False)), example("trainjob.yaml", 1), TRAINJOBS)
    assert denied.value.code == 400
    assert str(denied.value) == (
        "nodelimits: TrainJob.trainer.kubeflow.org team-a/llm-finetune-fits is invalid: "
        "spec.runtimeRef: "
        'ClusterTrainingRuntime "torch-distributed-a800" not found in the cluster'
    )


async def test_an_unreadable_runtime_fails_closed_with_503() -> None:
    source = Runtimes(error=RuntimeUnavailable("cannot read ClusterTrainingRuntime: HTTP 500"))
    with pytest.raises(kopf.AdmissionError) as denied:
        await call(with_runtimes(source), example("trainjob.yaml", 1), TRAINJOBS)
    assert denied.value.code == 503
    assert "cannot read ClusterTrainingRuntime: HTTP 500" in str(denied.value)


async def test_an_unreadable_runtime_fails_open_with_a_warning_under_failure_mode_open() -> None:
    source = Runtimes(error=RuntimeUnavailable("cannot read ClusterTrainingRuntime: HTTP 500"))
    admission = with_runtimes(source, admission={"failure_mode": "open"})
    warnings = await call(admission, example("trainjob.yaml", 2), TRAINJOBS)
    assert "was not checked" in warnings[-1]


async def test_a_trainjob_with_no_runtime_source_is_allowed_with_the_reason_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    admission, _ = make(A800)
    with caplog.at_level(logging.INFO, logger="nodelimits.decision"):
        assert await call(admission, example("trainjob.yaml", 2), TRAINJOBS) == []
    (line,) = [r for r in caplog.records if r.name == "nodelimits.decision"]
    assert "which was not read" in line.decision["skipped"]  # type: ignore[attr-defined]


async def test_a_pod_review_never_asks_the_runtime_source() -> None:
    source = Runtimes(error=AssertionError("a Pod names no runtime"))
    assert await call(with_runtimes(source), pod(group="a800x8")) == []
    assert source.asked == []


# --- the decision budget: a timer only for what waits ---------------------------------------


class HangingClaims:
    """A claim source that never answers."""

    async def claims(self, namespace: str, refs: tuple[Any, ...]) -> Any:
        await asyncio.Event().wait()


def claiming_pod() -> dict[str, Any]:
    return pod(container(cpu="1"), resourceClaims=[{"name": "gpu", "resourceClaimName": "c"}])


async def test_a_lookup_that_never_answers_is_cut_at_the_decision_budget() -> None:
    admission, _ = make(admission={"timeout_seconds": 1}, platform={"deadline": 0.2})
    admission.claims = HangingClaims()
    with pytest.raises(kopf.AdmissionError) as denied:
        await call(admission, claiming_pod())
    assert denied.value.code == 503
    assert "no answer within the decision budget" in str(denied.value)


async def test_a_review_the_cache_answers_arms_no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    admission, _ = make()
    await call(admission, pod(container(cpu="1")))  # the group's limits now cached

    def no_timer(delay: float | None) -> Any:
        raise AssertionError("a timer was armed for a review the cache answers")

    monkeypatch.setattr(asyncio, "timeout", no_timer)
    assert await call(admission, pod(container(cpu="1"))) == []
    with pytest.raises(kopf.AdmissionError, match="cpu 999"):
        await call(admission, pod(container(cpu="999")))
