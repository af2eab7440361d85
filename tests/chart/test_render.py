"""`helm lint` and `helm template` over a matrix of values: every rendered object is valid
Kubernetes (1.37 schemas, strict), every rendered config.yaml loads in the server's real
Settings, and every webhook path is exactly a handler path of `nodelimits serve`."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.chart.chart import (
    CHART,
    HANDLERS,
    NAMESPACE,
    RELEASE,
    Rendered,
    render,
    run_helm,
    values_args,
)
from webhook.config import load_settings

KINDS = tuple(dict.fromkeys(h[0] for h in HANDLERS))
K8S_VERSION = "1.37"
CRD_KINDS = {  # validated by their operators' CRDs, which kubernetes-validate does not ship
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
CA_PEM = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")

CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cert-manager-own-ca": {"certificates": {"mode": "certManager"}},
    "cert-manager-cluster-issuer": {
        "certificates": {
            "mode": "certManager",
            "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
        }
    },
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "webhookFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
            "platform": {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [443, 8443]},
        }
    },
    "match-conditions-off": {"webhook": {"matchConditions": False}},
    "default-group": {"config": {"policy": {"default_group": "TeslaM40"}}},
    **{f"only-{kind}": {"config": {"admission": {"kinds": [kind]}}} for kind in KINDS},
    **{
        f"without-{kind}": {"config": {"admission": {"kinds": [k for k in KINDS if k != kind]}}}
        for kind in KINDS
    },
    "out-of-cluster-url": {
        "webhook": {"url": "https://127.0.0.1:9443", "caBundle": CA_PEM.decode()},
    },
    "token-file": {"config": {"platform": {"token_source": "file"}}, "credentials": {"token": "t"}},
    "aksk": {
        "config": {"platform": {"token_source": "aksk"}},
        "credentials": {"accessKey": "ak", "secretKey": "sk", "user": "u"},
    },
    "password-existing-secret": {
        "config": {"platform": {"token_source": "password"}},
        "credentials": {"existingSecret": "scnet-login"},
    },
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "one-replica": {"replicaCount": 1},
    "everything-set": {
        "fullnameOverride": "limits",
        "image": {"digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "system-cluster-critical",
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "node-role", "operator": "In", "values": ["infra"]}
                            ]
                        }
                    ]
                }
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
            }
        ],
        "extraEnv": [{"name": "NODELIMITS_CACHE__TTL", "value": "30"}],
        "extraVolumes": [{"name": "limits", "configMap": {"name": "limits"}}],
        "extraVolumeMounts": [{"name": "limits", "mountPath": "/limits"}],
        "podAnnotations": {"a": "b"},
        "podLabels": {"team": "platform"},
        "webhook": {
            "failurePolicy": "Ignore",
            "excludeNamespaces": ["monitoring", "kube-system"],
            "namespaceSelectorExpressions": [
                {"key": "nodelimits.io/ignore", "operator": "DoesNotExist"}
            ],
            "objectSelector": {"matchLabels": {"checked": "yes"}},
            "annotations": {"owner": "platform"},
        },
        "config": {
            "log_format": "text",
            "policy": {
                "group_annotation": "example.com/queue",
                "group_types": {"TeslaM40": "gpu"},
                "accelerators": [{"pattern": "example.com/npu", "type": "gpu", "count": "cards"}],
                "require_deadline": True,
            },
            "platform": {"limits_file": "/limits/limits.yaml", "base_url": "https://ai.example"},
            "admission": {"mode": "warn", "failure_mode": "open", "timeout_seconds": 10},
            "server": {"cert_file": "/certs/serving.crt", "key_file": "/certs/serving.key"},
        },
    },
}


@pytest.fixture(params=list(CASES), scope="module")
def case(request: pytest.FixtureRequest, helm: Path, tmp_path_factory: pytest.TempPathFactory):
    """(values, Rendered) for one matrix case; rendered once per module."""
    values = CASES[request.param]
    return values, render(helm, tmp_path_factory.mktemp(request.param), values)


def enabled_kinds(values: dict[str, Any]) -> list[str]:
    return values.get("config", {}).get("admission", {}).get("kinds", list(KINDS))


def test_helm_lint_passes_strict(helm: Path, tmp_path: Path) -> None:
    for values in (CASES["defaults"], CASES["everything-set"], CASES["cert-manager-own-ca"]):
        out = run_helm(helm, "lint", "--strict", str(CHART), *values_args(values, tmp_path))
        assert "0 chart(s) failed" in out


def test_every_rendered_object_is_valid_kubernetes(case: tuple[dict, Rendered]) -> None:
    _, rendered = case
    problems = []
    for obj in rendered.objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            first_line = str(exc).split("\n", 1)[0]
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {first_line}")
    assert problems == []


def test_every_rendered_config_loads_in_the_server_settings(
    case: tuple[dict, Rendered], tmp_path: Path
) -> None:
    values, rendered = case
    path = tmp_path / "config.yaml"
    path.write_text(rendered.config_text)
    settings = load_settings(path)
    assert list(settings.admission.kinds) == enabled_kinds(values)


def test_every_webhook_path_is_exactly_a_handler_of_an_enabled_kind(
    case: tuple[dict, Rendered],
) -> None:
    values, rendered = case
    expected = [
        (group, resource, path, ops)
        for kind in enabled_kinds(values)
        for k, group, resource, path, ops in HANDLERS
        if k == kind
    ]
    assert rendered.routes() == expected


def test_every_webhook_has_the_fixed_safety_fields(case: tuple[dict, Rendered]) -> None:
    values, rendered = case
    timeout = values.get("config", {}).get("admission", {}).get("timeout_seconds", 5)
    policy = values.get("webhook", {}).get("failurePolicy", "Fail")
    for hook in rendered.webhooks:
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["timeoutSeconds"] == timeout
        assert hook["failurePolicy"] == policy
        cluster_scoped = hook["rules"][0]["resources"] == ["clusterworkflowtemplates"]
        assert hook["rules"][0]["scope"] == ("Cluster" if cluster_scoped else "Namespaced")
        (excluded,) = [
            e
            for e in hook["namespaceSelector"]["matchExpressions"]
            if e["key"] == "kubernetes.io/metadata.name"
        ]
        assert excluded["operator"] == "NotIn"
        assert {"kube-system", NAMESPACE} <= set(excluded["values"])
        extra = values.get("webhook", {}).get("excludeNamespaces", [])
        assert set(extra) <= set(excluded["values"])


def test_deployment_is_restricted_and_ha(case: tuple[dict, Rendered]) -> None:
    values, rendered = case
    replicas = values.get("replicaCount", 2)
    if values.get("webhook", {}).get("url"):  # the server runs elsewhere
        assert not {"Deployment", "Service", "PodDisruptionBudget"} & rendered.kinds
        return
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    container = rendered.container
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532  # the Dockerfile's USER
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["resources"]["requests"]
    assert pod["topologySpreadConstraints"]
    assert pod["affinity"]
    assert bool(rendered.of_kind("PodDisruptionBudget")) == (replicas > 1)


def test_service_maps_443_to_the_configured_webhook_port(case: tuple[dict, Rendered]) -> None:
    values, rendered = case
    assert ("Service" in rendered.kinds) == (not values.get("webhook", {}).get("url"))
    if "Service" in rendered.kinds:
        ports = {p["name"]: p for p in rendered.one("Service")["spec"]["ports"]}
        assert ports["webhook"]["port"] == 443
        assert ports["webhook"]["targetPort"] == "webhook"
        container_ports = {p["name"]: p["containerPort"] for p in rendered.container["ports"]}
        assert container_ports["webhook"] == rendered.config["server"]["port"]
        assert container_ports["metrics"] == rendered.config["server"]["metrics_port"]


def test_the_claims_role_grants_get_on_resource_claims_only(case: tuple[dict, Rendered]) -> None:
    """Issue 11: the webhook reads the claims a pod names (DRA), and nothing else with it."""
    values, rendered = case
    roles = [
        o
        for o in rendered.objects
        if o["kind"] in CLUSTER_SCOPED_RBAC and o["metadata"]["name"].endswith("-claims")
    ]
    if values.get("webhook", {}).get("url"):
        assert not roles  # out-of-cluster server: no service account of ours runs it
        return
    assert [r["kind"] for r in roles] == ["ClusterRole", "ClusterRoleBinding"]
    assert roles[0]["rules"] == [
        {
            "apiGroups": ["resource.k8s.io"],
            "resources": ["resourceclaimtemplates", "resourceclaims"],
            "verbs": ["get"],
        }
    ]
    assert roles[1]["roleRef"]["name"] == roles[0]["metadata"]["name"]


CLUSTER_SCOPED_RBAC = ("ClusterRole", "ClusterRoleBinding")


def test_the_runtimes_role_grants_get_on_training_runtimes_only_while_trainjob_is_checked(
    case: tuple[dict, Rendered],
) -> None:
    """Issue 15: a TrainJob's pods come from the (Cluster)TrainingRuntime it names."""
    values, rendered = case
    roles = [
        o
        for o in rendered.objects
        if o["kind"] in CLUSTER_SCOPED_RBAC and o["metadata"]["name"].endswith("-trainingruntimes")
    ]
    checked = "TrainJob.trainer.kubeflow.org" in enabled_kinds(values)
    if values.get("webhook", {}).get("url") or not checked:
        assert not roles
        return
    assert [r["kind"] for r in roles] == ["ClusterRole", "ClusterRoleBinding"]
    assert roles[0]["rules"] == [
        {
            "apiGroups": ["trainer.kubeflow.org"],
            "resources": ["clustertrainingruntimes", "trainingruntimes"],
            "verbs": ["get"],
        }
    ]
    assert roles[1]["roleRef"]["name"] == roles[0]["metadata"]["name"]


def test_release_name_is_used_for_every_namespaced_object(case: tuple[dict, Rendered]) -> None:
    values, rendered = case
    for obj in rendered.objects:
        if obj["kind"] not in ("ValidatingWebhookConfiguration", *CLUSTER_SCOPED_RBAC):
            assert obj["metadata"]["namespace"] == NAMESPACE
        prefix = values.get("fullnameOverride") or f"{RELEASE}-nodelimits"
        assert obj["metadata"]["name"].startswith(prefix)


def test_handler_contract_matches_the_server_handlers() -> None:
    """The table the chart is tested against is the one `nodelimits serve` registers."""
    from webhook.serve.admission import HANDLERS as SERVED

    served = [
        (h.kind, h.group, h.plural + (f"/{h.subresource}" if h.subresource else ""), h.path,
         tuple(sorted(h.operations)))
        for h in SERVED
    ]  # fmt: skip
    assert served == [(*h[:4], tuple(sorted(h[4]))) for h in HANDLERS]
