"""The continuous audit's pieces without a cluster: the Lease (acquire, renew, wait,
take over after expiry, lose a race) and the PolicyReport writer (create, replace with the
resourceVersion, unchanged, delete; an error never clears a fail)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from webhook.audit.cluster import ApiError
from webhook.audit.lease import Lease
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
            everywhere = path == "/apis/wgpolicyk8s.io/v1alpha2/policyreports"
            items = [
                copy.deepcopy(o)
                for p, o in self.objects.items()
                if p.rpartition("/")[0] == path or (everywhere and "/policyreports/" in p)
            ]
            if items or path.endswith(("policyreports", "clusterpolicyreports")):
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


def test_reports_are_created_kept_when_unchanged_replaced_and_deleted() -> None:
    api = FakeApi()
    path = "/apis/wgpolicyk8s.io/v1alpha2/namespaces/team/policyreports/nodelimits"
    error = AuditError("batch/v1", "Job", "team", "a", "platform: down", platform=True)
    first = write_reports(api, AuditReport(errors=[error]), now=1.0, field_manager="m")
    assert first.created == ["team"]
    assert api.objects[path]["summary"]["error"] == 1
    again = write_reports(api, AuditReport(errors=[error]), now=2.0, field_manager="m")
    assert again.unchanged == ["team"]
    assert again.writes == 0
    # an earlier fail about the object survives its error result
    stored = api.objects[path]
    stored["results"].append(fail_entry("a"))
    kept = write_reports(api, AuditReport(errors=[error]), now=3.0, field_manager="m")
    assert kept.unchanged == ["team"]
    assert [r["result"] for r in api.objects[path]["results"]] == ["error", "fail"]
    cleared = write_reports(api, AuditReport(), now=4.0, field_manager="m")
    assert cleared.deleted == ["team"]
    assert path not in api.objects


@pytest.mark.parametrize("narrowed", [True, False])
def test_a_narrowed_audit_touches_only_its_namespace(narrowed: bool) -> None:
    api = FakeApi()
    errors = [AuditError("v1", "Pod", ns, "p", "cannot be read") for ns in ("team", "other")]
    assert write_reports(api, AuditReport(errors=errors), now=1.0, field_manager="m").created == [
        "other",
        "team",
    ]
    summary = write_reports(
        api, AuditReport(), now=2.0, field_manager="m", namespace="team" if narrowed else None
    )
    assert summary.deleted == (["team"] if narrowed else ["other", "team"])
