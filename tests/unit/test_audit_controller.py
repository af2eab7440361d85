"""The continuous audit's pieces without a cluster: the Lease (acquire, renew, wait,
take over after expiry, lose a race) and the PolicyReport writer (create, replace with the
resourceVersion, unchanged, delete; an error never clears a fail)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from webhook.audit.cluster import ApiError
from webhook.audit.lease import Lease
from webhook.audit.reports import OPENREPORTS, REPORT_APIS, WGPOLICY, ReportApi
from webhook.audit.scan import AuditError, AuditReport
from webhook.audit.writer import carry_over, write_reports


class FakeApi:
    """Objects by path; resourceVersion checked on PUT (409), as the apiserver does."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.version = 0

    def request(
        self, method: str, path: str, query: Any = None, body: Any = None, content_type: str = ""
    ) -> Any:
        self.calls.append((method, path))
        if method == "GET":
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            collections = {a.path(ns) for a in REPORT_APIS.values() for ns in (None, "")}
            items = [
                copy.deepcopy(o)
                for p, o in self.objects.items()
                if p.rpartition("/")[0] == path or _in_every_namespace(p, path)
            ]
            if items or path in collections or path.endswith(("reports", "policyreports")):
                return {"items": items}
            raise ApiError(404, "not found")
        if method == "DELETE":
            if self.objects.pop(path, None) is None:
                raise ApiError(404, "not found")
            return None
        self.version += 1
        body = copy.deepcopy(body)
        if method == "POST":
            path = f"{path}/{body['metadata']['name']}"
            if path in self.objects:
                raise ApiError(409, "exists")
        else:
            old = self.objects.get(path)
            if old is None:
                raise ApiError(404, "not found")
            if body["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "conflict")
        body["metadata"]["resourceVersion"] = str(self.version)
        self.objects[path] = body
        return body


def _in_every_namespace(obj_path: str, listed: str) -> bool:
    """``/apis/G/V/namespaces/NS/PLURAL/NAME`` is in the list ``/apis/G/V/PLURAL``."""
    group_version, _, plural = listed.rpartition("/")
    parts = obj_path.split("/")
    return (
        obj_path.startswith(f"{group_version}/namespaces/")
        and len(parts) == 8
        and parts[6] == plural
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_replica_holds_the_lease_and_the_other_takes_over_after_expiry() -> None:
    api, clock = FakeApi(), Clock()
    a = Lease(api, "ns", "audit", "a", duration=10, clock=clock, wall=clock)
    b = Lease(api, "ns", "audit", "b", duration=10, clock=clock, wall=clock)
    assert a.tick() is True
    assert b.tick() is False
    assert b.holder == "a"
    clock.now += 5
    assert a.tick() is True  # renewed
    assert b.tick() is False
    clock.now += 9  # b saw a renewal 9 s ago: not expired
    assert b.tick() is False
    clock.now += 2  # a stopped renewing 11 s ago
    assert b.tick() is True
    assert a.tick() is False  # a sees b holding it
    spec = api.objects["/apis/coordination.k8s.io/v1/namespaces/ns/leases/audit"]["spec"]
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1


def test_a_released_lease_is_taken_at_once_and_a_lost_race_is_no_leadership() -> None:
    api, clock = FakeApi(), Clock()
    a = Lease(api, "ns", "audit", "a", duration=10, clock=clock, wall=clock)
    b = Lease(api, "ns", "audit", "b", duration=10, clock=clock, wall=clock)
    assert a.tick()
    a.release()
    assert b.tick() is True

    class Racing(FakeApi):
        def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            if method == "PUT":
                raise ApiError(409, "conflict")
            return api.request(method, path, *args, **kwargs)

    clock.now += 30
    c = Lease(Racing(), "ns", "audit", "c", duration=10, clock=clock, wall=clock)
    assert c.tick() is False  # first sight of the record starts c's own expiry count
    clock.now += 11
    assert c.tick() is False  # expired, but another replica wrote first: 409


def fail_entry(name: str, ns: str = "team") -> dict[str, Any]:
    return {
        "policy": "nodelimits",
        "rule": "nvidia.com/gpu",
        "result": "fail",
        "message": "4 > 2",
        "resources": [{"apiVersion": "batch/v1", "kind": "Job", "namespace": ns, "name": name}],
    }


def test_an_error_keeps_the_earlier_fail_of_its_object_its_kind_or_everything() -> None:
    previous = {"team": [fail_entry("a"), fail_entry("b")], "other": [fail_entry("c", "other")]}
    one = AuditError("batch/v1", "Job", "team", "a", "platform: down", platform=True)
    assert carry_over(previous, [one]) == {"team": [fail_entry("a")]}
    kind = AuditError("batch/v1", "Job", "", "", "cannot list")
    assert carry_over(previous, [kind]) == previous
    assert carry_over(previous, [AuditError("", "", "", "", "discovery failed")]) == previous
    assert carry_over(previous, []) == {}
    other_kind = AuditError("apps/v1", "Deployment", "", "", "cannot list")
    assert carry_over(previous, [other_kind]) == {}


APIS = pytest.mark.parametrize(
    ("report_api", "path"),
    [
        pytest.param(
            WGPOLICY,
            "/apis/wgpolicyk8s.io/v1alpha2/namespaces/team/policyreports/nodelimits",
            id="wgpolicyk8s",
        ),
        pytest.param(
            OPENREPORTS,
            "/apis/openreports.io/v1alpha1/namespaces/team/reports/nodelimits",
            id="openreports",
        ),
    ],
)


@APIS
def test_reports_are_created_kept_when_unchanged_replaced_and_deleted(
    report_api: ReportApi, path: str
) -> None:
    api = FakeApi()
    error = AuditError("batch/v1", "Job", "team", "a", "platform: down", platform=True)

    def write(report: AuditReport, now: float) -> Any:
        return write_reports(api, report, report_api=report_api, now=now, field_manager="m")

    first = write(AuditReport(errors=[error]), 1.0)
    assert first.created == ["team"]
    assert api.objects[path]["apiVersion"] == report_api.api_version
    assert api.objects[path]["kind"] == report_api.kind
    assert api.objects[path]["summary"]["error"] == 1
    again = write(AuditReport(errors=[error]), 2.0)
    assert again.unchanged == ["team"]
    assert again.writes == 0
    # an earlier fail about the object survives its error result
    stored = api.objects[path]
    stored["results"].append(fail_entry("a"))
    kept = write(AuditReport(errors=[error]), 3.0)
    assert kept.unchanged == ["team"]
    assert [r["result"] for r in api.objects[path]["results"]] == ["error", "fail"]
    cleared = write(AuditReport(), 4.0)
    assert cleared.deleted == ["team"]
    assert path not in api.objects


@APIS
def test_whole_kind_errors_go_to_the_cluster_scoped_report_of_the_api(
    report_api: ReportApi, path: str
) -> None:
    api = FakeApi()
    error = AuditError("batch/v1", "Job", "", "", "cannot list")
    written = write_reports(
        api, AuditReport(errors=[error]), report_api=report_api, now=1.0, field_manager="m"
    )
    assert written.created == ["(cluster)"]
    [(where, report)] = api.objects.items()
    assert where == f"/apis/{report_api.api_version}/{report_api.cluster_plural}/nodelimits"
    assert report["kind"] == report_api.cluster_kind
    assert "namespace" not in report["metadata"]


def test_only_the_chosen_apis_reports_are_read_and_written() -> None:
    api = FakeApi()
    error = AuditError("v1", "Pod", "team", "p", "cannot be read")
    write_reports(api, AuditReport(errors=[error]), report_api=OPENREPORTS, now=1.0,
                  field_manager="m")  # fmt: skip
    assert all(p.startswith("/apis/openreports.io/v1alpha1/") for _, p in api.calls)
    again = write_reports(api, AuditReport(), report_api=WGPOLICY, now=2.0, field_manager="m")
    assert again.deleted == []  # the other API's report is not nodelimits' to clear here
    assert list(api.objects) == ["/apis/openreports.io/v1alpha1/namespaces/team/reports/nodelimits"]


@pytest.mark.parametrize("narrowed", [True, False])
@pytest.mark.parametrize("report_api", [WGPOLICY, OPENREPORTS], ids=lambda a: a.group)
def test_a_narrowed_audit_touches_only_its_namespace(narrowed: bool, report_api: ReportApi) -> None:
    api = FakeApi()
    errors = [AuditError("v1", "Pod", ns, "p", "cannot be read") for ns in ("team", "other")]
    created = write_reports(
        api, AuditReport(errors=errors), report_api=report_api, now=1.0, field_manager="m"
    ).created
    assert created == ["other", "team"]
    summary = write_reports(
        api,
        AuditReport(),
        report_api=report_api,
        now=2.0,
        field_manager="m",
        namespace="team" if narrowed else None,
    )
    assert summary.deleted == (["team"] if narrowed else ["other", "team"])
