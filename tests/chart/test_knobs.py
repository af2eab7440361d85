"""The chart knobs operators expect from a webhook chart (issue 17, point 4): security
contexts that can be overridden or dropped (OpenShift's restricted-v2 assigns the UID),
host network and DNS policy, a priority class, labels on every object, extra objects,
ServiceMonitor relabelings and TLS, and no ServiceAccount when no pod of ours runs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart import NAMESPACE, RELEASE, ChartError, Rendered
from tests.chart.conftest import RenderFn

OUT_OF_CLUSTER = {"webhook": {"url": "https://127.0.0.1:9443"}}
EVERY_OPTIONAL_OBJECT = {
    "serviceMonitor": {"enabled": True},
    "networkPolicy": {"enabled": True},
    "audit": {"enabled": True, "installCRD": True},
    "config": {"platform": {"token_source": "file"}},
    "credentials": {"token": "t"},
    "extraObjects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra"}}],
}


def pod_spec(rendered: Rendered, suffix: str = "") -> dict[str, Any]:
    return rendered.one("Deployment", suffix)["spec"]["template"]["spec"]


def test_pod_security_context_defaults_to_the_images_user(render_chart: RenderFn) -> None:
    assert pod_spec(render_chart())["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_null_drops_the_fixed_uid_for_openshift(render_chart: RenderFn) -> None:
    values = {"podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None}}

    assert pod_spec(render_chart(values))["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_pod_security_context_can_be_omitted_entirely(render_chart: RenderFn) -> None:
    assert "securityContext" not in pod_spec(render_chart({"podSecurityContext": None}))


def test_container_security_context_is_overridable(render_chart: RenderFn) -> None:
    rendered = render_chart({"securityContext": {"runAsUser": 1000700000, "seccompProfile": None}})

    security = rendered.container["securityContext"]
    assert security["runAsUser"] == 1000700000
    assert "seccompProfile" not in security
    assert security["readOnlyRootFilesystem"] is True  # the other defaults stay


def test_the_audit_deployment_takes_the_same_security_contexts(render_chart: RenderFn) -> None:
    rendered = render_chart({"audit": {"enabled": True}, "podSecurityContext": {"runAsUser": None}})

    pod = pod_spec(rendered, "-audit")
    assert "runAsUser" not in pod["securityContext"]
    assert pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_an_unknown_security_context_field_is_refused(render_chart: RenderFn) -> None:
    with pytest.raises(
        ChartError, match="at '/podSecurityContext': additional properties 'runAsUsr'"
    ):
        render_chart({"podSecurityContext": {"runAsUsr": 1}})


def test_host_network_sets_the_dns_policy_that_still_resolves_services(
    render_chart: RenderFn,
) -> None:
    spec = pod_spec(render_chart({"hostNetwork": True}))

    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_dns_policy_given_wins_over_the_host_network_default(render_chart: RenderFn) -> None:
    spec = pod_spec(render_chart({"hostNetwork": True, "dnsPolicy": "Default"}))

    assert spec["dnsPolicy"] == "Default"


def test_pod_network_by_default_with_the_clusters_dns_policy(render_chart: RenderFn) -> None:
    spec = pod_spec(render_chart())

    assert "hostNetwork" not in spec
    assert "dnsPolicy" not in spec


def test_priority_class_defaults_to_system_cluster_critical(render_chart: RenderFn) -> None:
    assert pod_spec(render_chart())["priorityClassName"] == "system-cluster-critical"


def test_empty_priority_class_renders_none(render_chart: RenderFn) -> None:
    assert "priorityClassName" not in pod_spec(render_chart({"priorityClassName": ""}))


@pytest.mark.parametrize("mode", ["selfManaged", "builtin", "certManager"])
def test_common_labels_are_on_every_object_and_pod(render_chart: RenderFn, mode: str) -> None:
    rendered = render_chart(
        {
            **EVERY_OPTIONAL_OBJECT,
            "certificates": {"mode": mode},
            "commonLabels": {"team": "platform"},
        }
    )

    unlabelled = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in rendered.objects + rendered.hooks
        if o["metadata"].get("labels", {}).get("team") != "platform"
        and o["metadata"]["name"] != "extra"  # extraObjects are rendered as written
    ]
    assert unlabelled == []
    pods = [o["spec"]["template"]["metadata"]["labels"] for o in rendered.of_kind("Deployment")]
    assert len(pods) == 2
    assert all(labels["team"] == "platform" for labels in pods)


def test_common_labels_never_enter_a_selector(render_chart: RenderFn) -> None:
    rendered = render_chart({"commonLabels": {"team": "platform"}})

    assert "team" not in rendered.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert "team" not in rendered.one("Service")["spec"]["selector"]


def test_extra_objects_are_rendered_through_tpl(render_chart: RenderFn) -> None:
    rendered = render_chart(
        {
            "extraObjects": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "{{ .Release.Name }}-extra"},
                    "data": {"namespace": "{{ .Release.Namespace }}"},
                },
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}-string\n",
            ]
        }
    )

    assert rendered.one("ConfigMap", f"{RELEASE}-extra")["data"] == {"namespace": NAMESPACE}
    assert rendered.one("Secret", f"{RELEASE}-string")["kind"] == "Secret"


def test_service_monitor_takes_relabelings_and_tls(render_chart: RenderFn) -> None:
    relabel = [{"action": "replace", "targetLabel": "cluster", "replacement": "prod"}]
    drop = [{"action": "drop", "sourceLabels": ["__name__"], "regex": "python_gc_.*"}]
    tls = {"serverName": "nodelimits", "insecureSkipVerify": False}
    rendered = render_chart(
        {
            "serviceMonitor": {
                "enabled": True,
                "scheme": "https",
                "tlsConfig": tls,
                "relabelings": relabel,
                "metricRelabelings": drop,
            }
        }
    )

    (endpoint,) = rendered.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == tls
    assert endpoint["relabelings"] == relabel
    assert endpoint["metricRelabelings"] == drop


def test_service_monitor_defaults_to_plain_http_without_relabelings(
    render_chart: RenderFn,
) -> None:
    (endpoint,) = render_chart({"serviceMonitor": {"enabled": True}}).one("ServiceMonitor")["spec"][
        "endpoints"
    ]

    assert endpoint["scheme"] == "http"
    assert not {"tlsConfig", "relabelings", "metricRelabelings"} & set(endpoint)


def test_out_of_cluster_renders_no_service_account(render_chart: RenderFn) -> None:
    assert "ServiceAccount" not in render_chart(OUT_OF_CLUSTER).kinds


def test_in_cluster_renders_the_service_account_the_deployment_runs_as(
    render_chart: RenderFn,
) -> None:
    rendered = render_chart()

    (account,) = rendered.of_kind("ServiceAccount")
    assert pod_spec(rendered)["serviceAccountName"] == account["metadata"]["name"]


def test_cert_manager_renew_before_just_under_duration_renders(render_chart: RenderFn) -> None:
    values = {
        "certificates": {
            "mode": "certManager",
            "certManager": {"duration": "2160h", "renewBefore": "2159h59m59.5s"},
        }
    }

    certificate = render_chart(values).one("Certificate", "-tls")
    assert certificate["spec"]["renewBefore"] == "2159h59m59.5s"
