"""nodelimits audit over a fake cluster: discovery, paging, faults, verdicts, TrainJobs by
the runtimes they name, and the reports of both APIs (PolicyReports, OpenReports)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from devtools import builders, examples
from webhook.audit import cluster as cl
from webhook.audit.command import audit as audit_command
from webhook.audit.reports import (
    OPENREPORTS,
    REPORT_APIS,
    WGPOLICY,
    ReportApi,
    policy_reports,
    render,
)
from webhook.audit.scan import AuditReport, candidate_targets, run_audit
from webhook.core.limits import NodeLimits
from webhook.core.policy import PolicySettings
from webhook.metrics import Metrics

SETTINGS = PolicySettings()
PYTORCH = {"name": "kubeflow.org", "versions": [{"groupVersion": "kubeflow.org/v1"}],
           "preferredVersion": {"groupVersion": "kubeflow.org/v1"}}  # fmt: skip


SERVED = {
    "/apis/kubeflow.org/v1": ["pytorchjobs"],
    "/apis/trainer.kubeflow.org/v1alpha1": [
        "trainjobs", "trainingruntimes", "clustertrainingruntimes",
    ],
}  # fmt: skip


class FakeCluster:
    """Lists of objects by path, served in pages; faults by (path, page number)."""

    def __init__(self, objects: Mapping[str, list[dict[str, Any]]], groups: list[Any]) -> None:
        self.objects = {k: [copy.deepcopy(o) for o in v] for k, v in objects.items()}
        self.groups = groups
        self.faults: dict[tuple[str, int], list[int]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get(self, path: str, query: Mapping[str, str | int] | None = None) -> Any:
        q = dict(query or {})
        self.calls.append((path, q))
        if path == "/apis":
            return {"groups": self.groups}
        if path in SERVED:
            return {"resources": [{"name": name} for name in SERVED[path]]}
        if path.startswith("/apis/") and path.count("/") == 3:
            raise cl.ApiError(404, "not found")
        items = self.objects.get(path, [])
        limit = int(q.get("limit", 500))
        start = int(q.get("continue") or 0)
        page = start // limit
        statuses = self.faults.get((path, page))
        if statuses:
            raise cl.ApiError(statuses.pop(0), "injected")
        chunk = [copy.deepcopy(o) for o in items[start : start + limit]]
        for o in chunk:  # built-in lists' items carry neither
            o.pop("apiVersion", None)
            o.pop("kind", None)
        more = start + limit < len(items)
        return {"items": chunk, "metadata": {"continue": str(start + limit) if more else ""}}


def fits(name: str, ns: str = "team-a") -> dict[str, Any]:
    obj = builders.pod(builders.container(cpu="2"), name=name, namespace=ns)
    obj["metadata"]["uid"] = f"uid-{name}"
    return obj


def too_big(name: str, ns: str = "team-a") -> dict[str, Any]:
    obj = builders.pod(builders.container(cpu="64", gpu=4), name=name, namespace=ns)
    obj["metadata"]["uid"] = f"uid-{name}"
    return obj


def pytorchjob(name: str, gpus: int) -> dict[str, Any]:
    worker = builders.template(
        builders.pod_spec(builders.container(gpu=gpus)), builders.group_annotations()
    )
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": "team-b", "uid": f"uid-{name}"},
        "spec": {"pytorchReplicaSpecs": {"Worker": {"replicas": 2, "template": worker}}},
    }


PODS = "/api/v1/pods"
PTJ = "/apis/kubeflow.org/v1/pytorchjobs"


async def audit(fake: FakeCluster, limits: NodeLimits | None = None, **kw: Any) -> AuditReport:
    metrics = Metrics()
    cache = builders.limits_cache(builders.FakeLimits(limits), metrics)
    try:
        return await run_audit(fake, SETTINGS, cache, **kw)
    finally:
        await cache.aclose()


def verdicts(report: AuditReport) -> dict[str, bool]:
    return {f"{r.decision.kind}/{r.decision.name}": r.decision.allowed for r in report.results}


async def test_every_page_is_read_and_each_object_judged_as_check_does() -> None:
    pods = [fits(f"ok-{i}") for i in range(7)] + [too_big("big")]
    fake = FakeCluster({PODS: pods, PTJ: [pytorchjob("small", 1), pytorchjob("huge", 4)]},
                       [PYTORCH])  # fmt: skip
    report = await audit(fake, chunk_size=3)
    assert verdicts(report) == {
        **{f"Pod/ok-{i}": True for i in range(7)},
        "Pod/big": False,
        "PyTorchJob/small": True,
        "PyTorchJob/huge": False,
    }
    assert report.exit_code == 1
    assert report.scanned["Pod"] == 8
    assert report.scanned["PyTorchJob.kubeflow.org"] == 2
    pod_pages = [q for p, q in fake.calls if p == PODS]
    assert [q.get("continue", "") for q in pod_pages] == ["", "3", "6"]
    assert all(q["limit"] == 3 for q in pod_pages)
    assert pod_pages[0]["fieldSelector"] == "status.phase!=Succeeded,status.phase!=Failed"


async def test_a_kind_whose_crd_is_missing_is_skipped_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="webhook.audit.cluster")
    report = await audit(FakeCluster({PODS: [fits("a")]}, []))
    assert "PyTorchJob.kubeflow.org" not in report.kinds
    assert "Pod" in report.kinds
    lines = [r.getMessage() for r in caplog.records if "PyTorchJob.kubeflow.org" in r.getMessage()]
    assert len(lines) == 1
    assert "not served" in lines[0]
    assert report.exit_code == 0


async def test_a_page_that_fails_is_asked_again_and_the_list_resumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cl.time, "sleep", lambda s: None)
    fake = FakeCluster({PODS: [fits(f"p{i}") for i in range(5)]}, [])
    fake.faults[(PODS, 1)] = [503, 0]  # two failures of the second page, then it answers
    report = await audit(fake, chunk_size=2)
    assert sorted(verdicts(report)) == sorted(f"Pod/p{i}" for i in range(5))
    assert report.errors == []
    assert report.exit_code == 0


async def test_a_list_that_keeps_failing_is_an_error_never_a_clean_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cl.time, "sleep", lambda s: None)
    fake = FakeCluster({PODS: [fits(f"p{i}") for i in range(5)]}, [])
    fake.faults[(PODS, 1)] = [503] * cl.PAGE_ATTEMPTS
    report = await audit(fake, chunk_size=2)
    assert report.exit_code == 2
    assert [r for r in report.results if r.decision.kind == "Pod"] == []  # no half a kind
    assert any("Pod: cannot list /api/v1/pods" in str(e) for e in report.errors)


async def test_an_expired_continue_token_restarts_the_kind_without_doubles() -> None:
    fake = FakeCluster({PODS: [fits(f"p{i}") for i in range(5)]}, [])
    fake.faults[(PODS, 2)] = [410]
    report = await audit(fake, chunk_size=2)
    names = [r.decision.name for r in report.results]
    assert sorted(names) == [f"p{i}" for i in range(5)]
    assert report.exit_code == 0


async def test_an_object_the_policy_cannot_read_is_an_error_result() -> None:
    bad = fits("bad")
    bad["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "lots"}}
    report = await audit(FakeCluster({PODS: [fits("good"), bad]}, []))
    assert verdicts(report) == {"Pod/good": True}
    assert report.exit_code == 2
    [error] = report.errors
    assert (error.kind, error.namespace, error.name, error.uid) == (
        "Pod", "team-a", "bad", "uid-bad",
    )  # fmt: skip
    [doc] = [d for d in policy_reports(report, now=1.0) if d["metadata"].get("namespace")]
    assert doc["summary"] == {"pass": 1, "fail": 0, "warn": 0, "error": 1, "skip": 0}
    errored = [r for r in doc["results"] if r["result"] == "error"]
    assert errored[0]["resources"][0]["name"] == "bad"


async def test_policy_reports_one_per_namespace_with_a_result_per_violation() -> None:
    pods = [fits("ok", "team-a"), too_big("big", "team-b"), builders.pod(group=None, name="x")]
    report = await audit(FakeCluster({PODS: pods}, []))
    docs = {d["metadata"]["namespace"]: d for d in policy_reports(report, now=1700000000.5)}
    assert set(docs) == {"team-a", "team-b"}  # the unannotated pod is not nodelimits'
    b = docs["team-b"]
    assert b["apiVersion"] == "wgpolicyk8s.io/v1alpha2"
    assert b["kind"] == "PolicyReport"
    assert b["metadata"]["name"] == "nodelimits"
    fails = [r for r in b["results"] if r["result"] == "fail"]
    assert {r["rule"] for r in fails} == {"cpu", "nvidia.com/gpu"}
    cpu = next(r for r in fails if r["rule"] == "cpu")
    assert cpu["policy"] == "nodelimits"
    assert cpu["properties"] == {
        "resourceGroup": "TeslaM40", "acceleratorType": "gpu",
        "requested": "64", "allowed": "40", "unit": "cores",
    }  # fmt: skip
    assert cpu["resources"] == [
        {"apiVersion": "v1", "kind": "Pod", "namespace": "team-b", "name": "big", "uid": "uid-big"}
    ]
    assert cpu["timestamp"] == {"seconds": 1700000000, "nanos": 500000000}
    assert "cpu 64 > 40" in cpu["message"]
    assert b["summary"]["fail"] == 2
    assert b["summary"]["pass"] == 0
    a = docs["team-a"]
    assert [r["result"] for r in a["results"]] == ["pass"]


async def test_namespace_selector_and_kinds_narrow_the_lists() -> None:
    fake = FakeCluster({"/api/v1/namespaces/team-a/pods": [fits("a")]}, [PYTORCH])
    targets = candidate_targets(SETTINGS, ["pod", "PyTorchJob.kubeflow.org"])
    assert [t.name for t in targets] == ["Pod", "PyTorchJob.kubeflow.org"]
    report = await audit(fake, targets=targets, namespace="team-a", selector="app=x")
    listed = {p: q for p, q in fake.calls if "pods" in p}
    assert list(listed) == ["/api/v1/namespaces/team-a/pods"]
    assert listed["/api/v1/namespaces/team-a/pods"]["labelSelector"] == "app=x"
    assert verdicts(report) == {"Pod/a": True}
    with pytest.raises(ValueError, match="unknown kind 'Pods'"):
        candidate_targets(SETTINGS, ["Pods"])


async def test_discovery_failing_is_an_error() -> None:
    class Down(FakeCluster):
        def get(self, path: str, query: Mapping[str, str | int] | None = None) -> Any:
            raise cl.ApiError(0, "connection refused")

    report = await audit(Down({}, []))
    assert report.exit_code == 2
    assert "discovery failed" in str(report.errors[0])


async def test_renderings_carry_the_same_verdicts() -> None:
    report = await audit(FakeCluster({PODS: [fits("ok"), too_big("big")]}, []))
    import json

    import yaml

    as_json = json.loads(render(report, "json"))
    assert as_json["summary"]["rejected"] == 1
    assert as_json["summary"]["allowed"] == 1
    assert as_json["audit"]["scanned"]["Pod"] == 2
    assert yaml.safe_load(render(report, "yaml")) == as_json
    listed = yaml.safe_load(render(report, "policyreport"))
    assert listed["kind"] == "List"
    assert listed["items"][0]["summary"]["fail"] == 2
    assert "REJECTED" in render(report, "table")


@pytest.mark.parametrize("api", [WGPOLICY, OPENREPORTS], ids=lambda a: a.group)
async def test_reports_of_either_api_carry_the_same_results(api: ReportApi) -> None:
    pods = [fits("ok", "team-a"), too_big("big", "team-a")]
    report = await audit(FakeCluster({PODS: pods}, []))
    ours = policy_reports(report, api, now=1700000000.0)
    theirs = policy_reports(report, WGPOLICY, now=1700000000.0)
    [doc] = ours
    assert doc["apiVersion"] == api.api_version
    assert doc["kind"] == api.kind
    assert doc["metadata"] == {
        "name": "nodelimits",
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/managed-by": "nodelimits"},
    }
    assert doc["results"] == theirs[0]["results"]
    assert doc["summary"] == {"pass": 1, "fail": 2, "warn": 0, "error": 0, "skip": 0}
    for r in doc["results"]:  # the fields both APIs' results define
        assert set(r) <= {
            "source", "policy", "rule", "category", "severity", "timestamp", "result",
            "scored", "resources", "resourceSelector", "message", "properties",
        }  # fmt: skip
        assert r["policy"] == r["source"] == "nodelimits"


def test_an_openreports_report_names_its_source_and_a_policyreport_does_not() -> None:
    report = AuditReport(errors=[])
    assert policy_reports(report, OPENREPORTS, now=1.0) == []
    from webhook.audit.reports import report_object

    assert report_object("team", [], OPENREPORTS)["source"] == "nodelimits"
    assert "source" not in report_object("team", [], WGPOLICY)
    cluster = report_object("", [], OPENREPORTS)
    assert (cluster["apiVersion"], cluster["kind"]) == ("openreports.io/v1alpha1", "ClusterReport")
    assert "namespace" not in cluster["metadata"]


@pytest.mark.parametrize(
    ("api", "namespace", "name", "path"),
    [
        (OPENREPORTS, "team a", "nodelimits",
         "/apis/openreports.io/v1alpha1/namespaces/team%20a/reports/nodelimits"),
        (OPENREPORTS, "", None, "/apis/openreports.io/v1alpha1/clusterreports"),
        (OPENREPORTS, None, None, "/apis/openreports.io/v1alpha1/reports"),
        (WGPOLICY, "team", None, "/apis/wgpolicyk8s.io/v1alpha2/namespaces/team/policyreports"),
        (WGPOLICY, "", "nodelimits",
         "/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/nodelimits"),
    ],
)  # fmt: skip
def test_report_paths_follow_the_api(
    api: ReportApi, namespace: str | None, name: str | None, path: str
) -> None:
    assert api.path(namespace, name) == path


def test_the_report_api_choices_are_the_known_apis() -> None:
    [option] = [p for p in audit_command.params if p.name == "report_api"]
    assert list(option.type.choices) == list(REPORT_APIS)  # type: ignore[attr-defined]


async def test_policyreport_output_renders_the_chosen_api() -> None:
    import yaml

    report = await audit(FakeCluster({PODS: [too_big("big")]}, []))
    listed = yaml.safe_load(render(report, "policyreport", api=OPENREPORTS))
    assert [(i["apiVersion"], i["kind"]) for i in listed["items"]] == [
        ("openreports.io/v1alpha1", "Report")
    ]


# --- TrainJobs: judged by the (Cluster)TrainingRuntime they name, read from the cluster ---

TRAINER = {"name": "trainer.kubeflow.org",
           "versions": [{"groupVersion": "trainer.kubeflow.org/v1alpha1"}],
           "preferredVersion": {"groupVersion": "trainer.kubeflow.org/v1alpha1"}}  # fmt: skip
TRAINJOBS = "/apis/trainer.kubeflow.org/v1alpha1/trainjobs"
CLUSTER_RUNTIMES = "/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes"
A800 = builders.node_limits("a800x8", cpu=128, memory_mi=1031168, cards=8, nv=4, nodes=16)
TRAINJOB_ONLY = candidate_targets(SETTINGS, ["TrainJob.trainer.kubeflow.org"])


def trainjob_example() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The example's ClusterTrainingRuntime, its fitting and its oversized TrainJob."""
    runtime, fit, big = examples.documents(examples.MANIFESTS / "trainjob.yaml")
    for doc in (fit, big):
        doc["metadata"]["uid"] = f"uid-{doc['metadata']['name']}"
    return runtime, fit, big


async def test_a_trainjob_is_judged_by_the_runtime_it_names_listed_once_per_audit() -> None:
    runtime, fit, big = trainjob_example()
    fake = FakeCluster({TRAINJOBS: [fit, big], CLUSTER_RUNTIMES: [runtime]}, [TRAINER])
    report = await audit(fake, A800, targets=TRAINJOB_ONLY)
    assert verdicts(report) == {"TrainJob/llm-finetune-fits": True,
                                "TrainJob/llm-finetune-too-big": False}  # fmt: skip
    [violation] = next(r for r in report.results if not r.decision.allowed).decision.violations
    assert (violation.resource, violation.requested, violation.allowed) == (
        "nvidia.com/gpu", "8", "4",
    )  # fmt: skip
    assert [p for p, _ in fake.calls].count(CLUSTER_RUNTIMES) == 1
    assert report.errors == []
    assert report.exit_code == 1


async def test_a_trainjob_whose_runtime_does_not_exist_is_an_error_result() -> None:
    _, fit, _ = trainjob_example()
    report = await audit(FakeCluster({TRAINJOBS: [fit]}, [TRAINER]), A800, targets=TRAINJOB_ONLY)
    assert report.results == []
    [error] = report.errors
    assert (error.kind, error.namespace, error.name) == ("TrainJob", "team-a", "llm-finetune-fits")
    assert error.message == (
        'cannot be read: spec.runtimeRef: ClusterTrainingRuntime "torch-distributed-a800" '
        "not found in the cluster"
    )
    [doc] = policy_reports(report, now=1.0)
    assert [r["result"] for r in doc["results"]] == ["error"]
    assert report.exit_code == 2


async def test_a_namespaced_runtime_is_listed_in_the_trainjobs_namespace() -> None:
    runtime, fit, _ = trainjob_example()
    runtime["kind"] = "TrainingRuntime"
    runtime["metadata"]["namespace"] = "team-a"
    fit["spec"]["runtimeRef"]["kind"] = "TrainingRuntime"
    runtimes = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainingruntimes"
    fake = FakeCluster({TRAINJOBS: [fit], runtimes: [runtime]}, [TRAINER])
    report = await audit(fake, A800, targets=TRAINJOB_ONLY)
    assert verdicts(report) == {"TrainJob/llm-finetune-fits": True}
    assert CLUSTER_RUNTIMES not in [p for p, _ in fake.calls]


@pytest.mark.parametrize(
    ("statuses", "message"),
    [
        pytest.param([404], "not found in the cluster", id="runtime-crd-missing"),
        pytest.param(
            [503] * cl.PAGE_ATTEMPTS,
            f"ClusterTrainingRuntime: cannot list {CLUSTER_RUNTIMES}: injected",
            id="runtime-list-failing",
        ),
    ],
)
async def test_runtimes_that_cannot_be_listed_make_error_results_never_passes(
    statuses: list[int], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cl.time, "sleep", lambda s: None)
    runtime, fit, big = trainjob_example()
    fake = FakeCluster({TRAINJOBS: [fit, big], CLUSTER_RUNTIMES: [runtime]}, [TRAINER])
    fake.faults[(CLUSTER_RUNTIMES, 0)] = statuses
    report = await audit(fake, A800, targets=TRAINJOB_ONLY)
    assert report.results == []
    assert [e.name for e in report.errors] == ["llm-finetune-fits", "llm-finetune-too-big"]
    assert all(message in e.message for e in report.errors)
