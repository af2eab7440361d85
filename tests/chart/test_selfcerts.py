"""certificates.mode selfManaged (the default; the server's side on a real apiserver:
tests/e2e/test_selfcerts_online.py): nothing random rendered (GitOps-stable), the server
told where to keep its certificates, RBAC limited to the two objects it keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.chart import NAMESPACE, RELEASE, ChartError, run_helm, values_args
from tests.chart.conftest import RenderFn
from webhook.config import CertificateSettings

CHART = Path(__file__).resolve().parents[2] / "charts" / "nodelimits"
SERVICE = f"{RELEASE}-nodelimits"
SELF_MANAGED = {"certificates": {"mode": "selfManaged"}}


def self_managed(values: dict | None = None) -> dict:
    """``values`` with ``certificates.mode: selfManaged`` spelled out (also the default)."""
    values = dict(values or {})
    certificates = {**values.get("certificates", {}), "mode": "selfManaged"}
    return {**values, "certificates": certificates}


def template(helm: Path, tmp_path: Path, values: dict | None = None) -> str:
    return run_helm(
        helm, "template", RELEASE, str(CHART), "-n", NAMESPACE, *values_args(values, tmp_path)
    )


@pytest.mark.parametrize(
    "values",
    [None, {"replicaCount": 3, "config": {"admission": {"kinds": ["Pod", "Job"]}}}],
    ids=["defaults", "three-replicas"],
)
def test_helm_template_twice_is_identical(helm: Path, tmp_path: Path, values: dict | None):
    """What Argo CD and Flux render: a second run must not differ (no genCA, no now)."""
    values = self_managed(values)
    first, second = template(helm, tmp_path, values), template(helm, tmp_path, values)
    assert first == second
    assert "BEGIN CERTIFICATE" not in first
    assert "caBundle" not in first


def test_the_default_is_self_managed_and_renders_the_same_twice(helm: Path, tmp_path: Path):
    first, second = template(helm, tmp_path), template(helm, tmp_path)
    assert first == second
    assert f"name: {SERVICE}-certs" in first
    assert "BEGIN CERTIFICATE" not in first


def test_builtin_mode_is_what_differed(helm: Path, tmp_path: Path):
    """The check above can fail: the builtin mode generates a CA on every render."""
    values = {"certificates": {"mode": "builtin"}}
    assert template(helm, tmp_path, values) != template(helm, tmp_path, values)


def test_the_secret_is_rendered_empty_and_never_mounted(render_chart: RenderFn):
    rendered = render_chart(SELF_MANAGED)
    secret = rendered.one("Secret", "-certs")
    assert "data" not in secret
    assert "stringData" not in secret
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert "emptyDir" in tls
    assert "secret" not in tls
    (mount,) = [m for m in rendered.container["volumeMounts"] if m["name"] == "tls"]
    assert not mount.get("readOnly")
    assert all("caBundle" not in hook["clientConfig"] for hook in rendered.webhooks)


def test_the_server_is_told_its_secret_configuration_and_names(render_chart: RenderFn):
    rendered = render_chart(SELF_MANAGED)
    cert = CertificateSettings(**rendered.config["certificates"])  # loads as the server does
    assert cert.self_managed
    assert cert.secret_name == rendered.one("Secret", "-certs")["metadata"]["name"]
    assert cert.namespace == NAMESPACE
    assert (
        cert.webhook_configuration
        == (rendered.one("ValidatingWebhookConfiguration")["metadata"]["name"])
    )
    service = rendered.one("Service")["metadata"]["name"]
    assert f"{service}.{NAMESPACE}.svc" in cert.hosts  # what the apiserver dials
    assert (cert.duration, cert.renew_before) == (90 * 86400, 30 * 86400)


def test_rbac_is_get_and_update_of_exactly_its_two_objects(render_chart: RenderFn):
    rendered = render_chart(SELF_MANAGED)
    role = rendered.one("Role", "-certs")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{SERVICE}-certs"],
            "verbs": ["get", "update"],
        }
    ]
    cluster_role = rendered.one("ClusterRole", "-webhook-cabundle")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations"],
            "resourceNames": [SERVICE],
            "verbs": ["get", "update"],
        }
    ]
    sa = rendered.one("ServiceAccount")["metadata"]["name"]
    for kind, suffix, ref in (
        ("RoleBinding", "-certs", role),
        ("ClusterRoleBinding", "-webhook-cabundle", cluster_role),
    ):
        binding = rendered.one(kind, suffix)
        assert binding["roleRef"]["name"] == ref["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}
        ]


@pytest.mark.parametrize("mode", ["builtin", "certManager"], ids=["builtin", "cert-manager"])
def test_other_modes_render_no_self_managed_objects(render_chart: RenderFn, mode: str):
    rendered = render_chart({"certificates": {"mode": mode}})
    assert "certificates" not in rendered.config
    assert not [o for o in rendered.objects if o["metadata"]["name"].endswith("-certs")]
    assert not [o for o in rendered.objects if o["metadata"]["name"].endswith("-cabundle")]


def test_out_of_cluster_mode_renders_no_self_managed_objects(render_chart: RenderFn):
    rendered = render_chart({"webhook": {"url": "https://127.0.0.1:9443", "caBundle": "Q0E="}})
    assert "certificates" not in rendered.config
    assert not rendered.of_kind("Role")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"renewBeforeDays": 90}, "renewBeforeDays (90) must be below certValidityDays (90)"),
        ({"caRenewBeforeDays": 1825}, "caRenewBeforeDays (1825) must be below caValidityDays"),
        ({"caRenewBeforeDays": 30}, "caRenewBeforeDays (30) must exceed renewBeforeDays (30)"),
    ],
    ids=["renew-before-duration", "ca-renew-before-ca-duration", "ca-renew-before-renew"],
)
def test_disordered_lifetimes_are_refused(render_chart: RenderFn, values: dict, message: str):
    with pytest.raises(ChartError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render_chart(self_managed({"certificates": {"selfManaged": values}}))
