"""The chart's continuous audit (audit.enabled, issue 16): off by default; when on, its own
ServiceAccount with least RBAC (the reports of audit.reportApi only; the training runtimes
only while TrainJob is checked), pods the webhook's Service never selects, the opt-in CRDs
of the chosen report API."""

from __future__ import annotations

from typing import Any

import pytest

from devtools import builders
from tests.chart.chart import NAMESPACE, RELEASE, ChartError
from tests.chart.conftest import RenderFn

ON = {"audit": {"enabled": True}}


def test_the_audit_is_off_by_default_and_its_crds_opt_in(render_chart: RenderFn) -> None:
    rendered = render_chart({})
    assert not [o for o in rendered.objects if o["metadata"]["name"].endswith("-audit")]
    assert "CustomResourceDefinition" not in rendered.kinds
    assert "CustomResourceDefinition" not in render_chart(ON).kinds
    crds = render_chart({"audit": {"installCRD": True}}).of_kind("CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "clusterpolicyreports.wgpolicyk8s.io",
        "policyreports.wgpolicyk8s.io",
    ]
    assert all(c["spec"]["versions"][0]["name"] == "v1alpha2" for c in crds)


def rules(
    obj: dict[str, Any],
) -> list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    return [
        (
            tuple(r["apiGroups"]),
            tuple(r["resources"]),
            tuple(r["verbs"]),
            tuple(r.get("resourceNames", ())),
        )
        for r in obj["rules"]
    ]


def test_the_audit_gets_least_rbac_and_its_own_account(render_chart: RenderFn) -> None:
    rendered = render_chart(ON)
    name = f"{RELEASE}-nodelimits-audit"
    cluster_role = rendered.one("ClusterRole", "-audit")
    assert cluster_role["metadata"]["name"] == name
    granted = rules(cluster_role)
    for _, _, verbs, _ in granted:
        assert set(verbs) <= {"get", "list", "watch", "create", "update", "delete"}
    assert (
        ("",),
        ("pods", "podtemplates", "replicationcontrollers"),
        ("list", "watch"),
        (),
    ) in granted
    assert (("batch",), ("cronjobs", "jobs"), ("list", "watch"), ()) in granted
    kubeflow = [r for g, r, _, _ in granted if g == ("kubeflow.org",)]
    assert len(kubeflow) == 1
    assert {"pytorchjobs", "tfjobs"} <= set(kubeflow[0])
    writes = [g for g in granted if "create" in g[2] or "update" in g[2] or "delete" in g[2]]
    assert writes == [
        (("wgpolicyk8s.io",), ("policyreports", "clusterpolicyreports"),
         ("get", "list", "create", "update", "delete"), ()),
    ]  # fmt: skip
    assert not any("pods/resize" in g[1] for g in granted)
    role = rendered.one("Role", "-audit")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rules(role) == [
        (("coordination.k8s.io",), ("leases",), ("create",), ()),
        (("coordination.k8s.io",), ("leases",), ("get", "update"), (name,)),
    ]
    deployment = rendered.one("Deployment", "-audit")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == name
    [container] = pod["containers"]
    # not the image's entrypoint (nodelimits serve): found on the real node
    assert container["command"] == ["nodelimits"]
    assert container["args"][:2] == ["audit-controller", "--live"]
    assert f"--lease-name={name}" in container["args"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The webhook's Service and Deployment must never select the audit's pods.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = rendered.one("Service")["spec"]["selector"]
    assert not set(service.items()) <= set(labels.items())
    webhook = rendered.one("Deployment", f"{RELEASE}-nodelimits")["spec"]["selector"]["matchLabels"]
    assert not set(webhook.items()) <= set(labels.items())


def test_fewer_checked_kinds_grant_fewer_lists(render_chart: RenderFn) -> None:
    rendered = render_chart({**ON, "config": {"admission": {"kinds": ["Pod", "Job"]}}})
    granted = rules(rendered.one("ClusterRole", "-audit"))
    lists = [(g, r) for g, r, v, _ in granted if v == ("list", "watch")]
    assert lists == [(("",), ("pods",)), (("batch",), ("jobs",))]


def test_an_operators_kind_row_is_listed_too(render_chart: RenderFn) -> None:
    """The audit reads the whole kind table, operators' rows included: without the grant
    its list of that kind would be refused."""
    row = builders.trainer_kind()
    values = {
        **ON,
        "config": {"admission": {"kinds": ["Pod"]}, "policy": {"workload_kinds": [row]}},
    }
    granted = rules(render_chart(values).one("ClusterRole", "-audit"))
    lists = [(g, r) for g, r, v, _ in granted if v == ("list", "watch")]
    assert lists == [(("",), ("pods",)), ((row["group"],), (row["plural"],))]


def test_events_are_off_by_default_and_when_on_only_create_is_granted(
    render_chart: RenderFn,
) -> None:
    off = render_chart(ON)
    assert not [g for g in rules(off.one("ClusterRole", "-audit")) if "events.k8s.io" in g[0]]
    assert (
        "--events"
        not in off.one("Deployment", "-audit")["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    on = render_chart({"audit": {"enabled": True, "events": {"enabled": True, "perRun": 7}}})
    granted = rules(on.one("ClusterRole", "-audit"))
    assert (("events.k8s.io",), ("events",), ("create",), ()) in granted
    [container] = on.one("Deployment", "-audit")["spec"]["template"]["spec"]["containers"]
    assert {"--events", "--events-per-run=7", "--events-repeat-after=3600"} <= set(
        container["args"]
    )


def report_rules(rendered: Any) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The audit's grants that write (the reports' group and kinds)."""
    return [(g, r) for g, r, v, _ in rules(rendered.one("ClusterRole", "-audit")) if "create" in v
            and g != ("events.k8s.io",)]  # fmt: skip


def test_openreports_gets_only_its_own_group_and_the_flag(render_chart: RenderFn) -> None:
    rendered = render_chart({"audit": {"enabled": True, "reportApi": "openreports.io"}})
    assert report_rules(rendered) == [(("openreports.io",), ("reports", "clusterreports"))]
    granted = rules(rendered.one("ClusterRole", "-audit"))
    assert not [g for g in granted if "wgpolicyk8s.io" in g[0]]
    [container] = rendered.one("Deployment", "-audit")["spec"]["template"]["spec"]["containers"]
    assert "--report-api=openreports.io" in container["args"]


def test_policyreports_are_the_default_api(render_chart: RenderFn) -> None:
    rendered = render_chart(ON)
    assert report_rules(rendered) == [
        (("wgpolicyk8s.io",), ("policyreports", "clusterpolicyreports"))
    ]
    [container] = rendered.one("Deployment", "-audit")["spec"]["template"]["spec"]["containers"]
    assert "--report-api=wgpolicyk8s.io" in container["args"]


def test_install_crd_installs_the_chosen_apis_crds(render_chart: RenderFn) -> None:
    values = {"audit": {"installCRD": True, "reportApi": "openreports.io"}}
    crds = render_chart(values).of_kind("CustomResourceDefinition")
    assert sorted(
        (c["metadata"]["name"], c["spec"]["scope"], c["spec"]["names"]["kind"]) for c in crds
    ) == [
        ("clusterreports.openreports.io", "Cluster", "ClusterReport"),
        ("reports.openreports.io", "Namespaced", "Report"),
    ]
    assert all(c["spec"]["versions"][0]["name"] == "v1alpha1" for c in crds)
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in crds)


def test_an_unknown_report_api_is_refused(render_chart: RenderFn) -> None:
    with pytest.raises(ChartError, match="at '/audit/reportApi': value must be one of"):
        render_chart({"audit": {"enabled": True, "reportApi": "reports.x-k8s.io"}})


def test_trainjobs_runtimes_are_readable_only_while_trainjob_is_checked(
    render_chart: RenderFn,
) -> None:
    runtimes = (("trainer.kubeflow.org",), ("clustertrainingruntimes", "trainingruntimes"),
                ("get", "list"), ())  # fmt: skip
    assert runtimes in rules(render_chart(ON).one("ClusterRole", "-audit"))
    narrowed = render_chart({**ON, "config": {"admission": {"kinds": ["Pod", "Job"]}}})
    assert not [g for g in rules(narrowed.one("ClusterRole", "-audit")) if "trainer" in g[0][0]]
