"""values.schema.json covers every value, rejects bad ones with a message naming the key,
and stays in step with the server's Settings (webhook/config.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart import CHART, ChartError
from tests.chart.conftest import RenderFn
from webhook.config import Settings, load_settings

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())

CHART_MANAGED = {
    "platform.token_file": "set from credentials (the mounted Secret)",
    "platform.secret_dir": "set from credentials (the mounted Secret)",
    "platform.access_key": "a secret: credentials.accessKey",
    "platform.secret_key": "a secret: credentials.secretKey",
    "platform.user": "credentials.user, beside the other login fields",
    "platform.password": "a secret: credentials.password",
    "platform.org_id": "a secret: credentials.orgId",
    "server.manage_webhook_url": "development only; the chart owns the webhook configuration",
    "server.ca_file": "development only: the caBundle of a kopf-managed configuration",
    "certificates.self_managed": "certificates.selfManaged (templates/_helpers.tpl)",
    "certificates.namespace": "certificates.selfManaged (templates/_helpers.tpl)",
    "certificates.secret_name": "certificates.selfManaged (templates/_helpers.tpl)",
    "certificates.webhook_configuration": "certificates.selfManaged (templates/_helpers.tpl)",
    "certificates.hosts": "certificates.selfManaged (templates/_helpers.tpl)",
    "certificates.duration": "certificates.selfManaged (templates/_helpers.tpl)",
    "certificates.renew_before": "certificates.selfManaged (templates/_helpers.tpl)",
    "certificates.ca_duration": "certificates.selfManaged (templates/_helpers.tpl)",
    "certificates.ca_renew_before": "certificates.selfManaged (templates/_helpers.tpl)",
    "certificates.propagation": "certificates.selfManaged (templates/_helpers.tpl)",
    "certificates.check_interval": "certificates.selfManaged (templates/_helpers.tpl)",
    "certificates.startup_timeout": "certificates.selfManaged (templates/_helpers.tpl)",
}
"""Settings fields deliberately not under `config:`, and where they come from instead."""

FREE_FORM = {
    "global",  # Helm's own
    "config.policy.workload_kinds[]",  # kind-table rows: validated by the server at start
    "affinity.nodeAffinity",  # Kubernetes passthroughs, checked by the apiserver
    "affinity.podAffinity",
    "affinity.podAntiAffinity",
    "topologySpreadConstraints[]",
    "extraEnv[]",
    "extraVolumes[]",
    "extraVolumeMounts[]",
    "serviceMonitor.tlsConfig",  # Prometheus operator types, checked by its CRD
    "serviceMonitor.relabelings[]",
    "serviceMonitor.metricRelabelings[]",
}
"""Object-typed values whose inner keys the schema leaves open, on purpose."""


def resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def constraints(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Enum values and numeric bounds of one field, through $ref, anyOf and array items."""
    node = resolve(node, root)
    found: dict[str, Any] = {}
    for sub in node.get("anyOf", []):
        found.update(constraints(sub, root))
    if "items" in node:
        found.update(constraints(node["items"], root))
    if "enum" in node:
        found["enum"] = sorted(v for v in node["enum"] if v is not None)
    for key in ("minimum", "maximum", "exclusiveMinimum"):
        if key in node:
            found[key] = node[key]
    return found


def model_fields(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """'group.field' -> field schema, for the two-level Settings layout."""
    fields: dict[str, dict[str, Any]] = {}
    for name, node in schema["properties"].items():
        node = resolve(node, schema)
        if node.get("type") == "object" and "properties" in node:
            for sub, sub_node in node["properties"].items():
                fields[f"{name}.{sub}"] = sub_node
        else:
            fields[name] = node
    return fields


SETTINGS_SCHEMA = Settings.model_json_schema()
SETTINGS_FIELDS = model_fields(SETTINGS_SCHEMA)
CHART_FIELDS = model_fields(SCHEMA["properties"]["config"] | {"$defs": SCHEMA["$defs"]})


def test_config_schema_has_every_setting_except_the_chart_managed_ones() -> None:
    assert set(CHART_FIELDS) == set(SETTINGS_FIELDS) - set(CHART_MANAGED)
    assert set(CHART_MANAGED) <= set(SETTINGS_FIELDS)


@pytest.mark.parametrize("field", sorted(set(SETTINGS_FIELDS) - set(CHART_MANAGED)))
def test_config_schema_allows_what_settings_allow_and_no_more(field: str) -> None:
    server = constraints(SETTINGS_FIELDS[field], SETTINGS_SCHEMA)
    chart = constraints(CHART_FIELDS[field], SCHEMA)
    assert chart.get("enum") == server.get("enum")
    for bound in ("minimum", "exclusiveMinimum"):
        if bound in server:
            assert chart.get("minimum", chart.get("exclusiveMinimum")) >= server[bound]
    if "maximum" in server:
        assert chart["maximum"] <= server["maximum"]


def test_default_config_renders_the_server_defaults(render_chart: RenderFn, tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text(render_chart({"certificates": {"mode": "builtin"}}).config_text)
    assert load_settings(path).model_dump(mode="json") == Settings().model_dump(mode="json")


def test_no_bound_is_exclusive_so_a_refusal_names_the_least_value_allowed() -> None:
    """helm prints 'exclusiveMinimum: got 0, want 0' for an exclusive bound, which reads as
    if 0 were wanted; 'minimum: got 0, want 0.001' says what is allowed."""
    assert "exclusiveMinimum" not in json.dumps(SCHEMA)
    assert "exclusiveMaximum" not in json.dumps(SCHEMA)


def walk_objects(node: dict[str, Any], path: str = ""):
    node = resolve(node, SCHEMA)
    if node.get("type") == "object" or "properties" in node:
        yield path, node
        for name, sub in node.get("properties", {}).items():
            yield from walk_objects(sub, f"{path}.{name}".lstrip("."))
    if isinstance(node.get("items"), dict):
        yield from walk_objects(node["items"], f"{path}[]")


def test_every_object_in_the_schema_is_closed_unless_free_form_by_design() -> None:
    open_objects = {
        path
        for path, node in walk_objects(SCHEMA)
        if node.get("additionalProperties") is not False
        and not isinstance(node.get("additionalProperties"), dict)  # typed maps are fine
        and path not in FREE_FORM
    }
    assert open_objects == set()


def leaf_paths(values: Any, path: str = ""):
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from leaf_paths(value, f"{path}.{key}".lstrip("."))
    else:
        yield path


def test_every_default_value_is_declared_and_described_by_type() -> None:
    for path in leaf_paths(DEFAULTS):
        node: dict[str, Any] = SCHEMA
        for part in path.split("."):
            node = resolve(node, SCHEMA)
            if part not in node.get("properties", {}) and isinstance(
                node.get("additionalProperties"), dict
            ):  # a typed map (labels): any key, typed by additionalProperties
                node = node["additionalProperties"]
                continue
            assert part in node.get("properties", {}), f"{path}: not in values.schema.json"
            node = node["properties"][part]
        assert "type" in resolve(node, SCHEMA) or "$ref" in node, f"{path}: no type"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"replicaCont": 2}, "additional properties 'replicaCont'", id="typo-top"),
        pytest.param(
            {"config": {"admision": {}}}, "at '/config': additional properties", id="typo-config"
        ),
        pytest.param(
            {"config": {"cache": {"tll": 5}}}, "'/config/cache': additional", id="typo-nested"
        ),
        pytest.param({"replicaCount": "two"}, "'/replicaCount': got string", id="wrong-type"),
        pytest.param(
            {"webhook": {"matchConditions": "yes"}}, "/webhook/matchConditions", id="not-bool"
        ),
        pytest.param(
            {"config": {"admission": {"failure_mode": "opne"}}},
            "'/config/admission/failure_mode': value must be one of 'closed', 'open'",
            id="bad-enum",
        ),
        pytest.param(
            {"webhook": {"failurePolicy": "fail"}}, "/webhook/failurePolicy", id="bad-policy"
        ),
        pytest.param(
            {"config": {"admission": {"kinds": ["Pod", "Jobs"]}}},
            "/config/admission/kinds/1",
            id="unknown-kind",
        ),
        pytest.param(
            {"config": {"admission": {"kinds": []}}}, "/config/admission/kinds", id="no-kinds"
        ),
        pytest.param(
            {"config": {"admission": {"timeout_seconds": 31}}},
            "/config/admission/timeout_seconds",
            id="timeout-over-30",
        ),
        pytest.param({"config": {"cache": {"ttl": 0}}}, "/config/cache/ttl", id="zero-seconds"),
        pytest.param(
            {"config": {"server": {"port": 70000}}}, "/config/server/port", id="port-range"
        ),
        pytest.param(
            {"config": {"policy": {"group_annotation": "not a key!"}}},
            "/config/policy/group_annotation",
            id="bad-annotation-key",
        ),
        pytest.param(
            {"config": {"platform": {"center_url": "www.scnet.cn"}}},
            "/config/platform/center_url",
            id="url-without-scheme",
        ),
        pytest.param(
            {"config": {"platform": {"password": "hunter2"}}},
            "additional properties 'password'",
            id="secret-in-configmap",
        ),
        pytest.param(
            {"certificates": {"mode": "cert-manager"}}, "/certificates/mode", id="cert-mode"
        ),
        pytest.param(
            {"webhook": {"url": "http://127.0.0.1:9443"}}, "/webhook/url", id="url-not-https"
        ),
        pytest.param({"image": {"digest": "sha256:abc"}}, "/image/digest", id="short-digest"),
        # What the schema cannot express, checked by the templates:
        pytest.param(
            {"config": {"platform": {"token_source": "aksk"}}, "credentials": {"user": "u"}},
            "token_source=aksk needs credentials.accessKey (or credentials.existingSecret)",
            id="missing-credentials",
        ),
        pytest.param(
            {"config": {"platform": {"deadline": 5}}},
            "config.platform.deadline (5) must be below config.admission.timeout_seconds (5)",
            id="deadline-not-below-timeout",
        ),
        pytest.param(
            {"config": {"server": {"key_file": "/keys/tls.key"}}},
            "must be in one directory",
            id="cert-and-key-apart",
        ),
        pytest.param(
            {"certificates": {"mode": "builtin", "builtin": {"caValidityDays": 365}}},
            "caValidityDays (365) must exceed certValidityDays + renewBeforeDays (425)",
            id="ca-not-longer-than-leaf",
        ),
        pytest.param(
            {"terminationGracePeriodSeconds": 5},
            "terminationGracePeriodSeconds (5) must exceed config.server.shutdown_delay (5)",
            id="grace-not-above-shutdown-delay",
        ),
        # Issue 17: what operators get wrong, refused with what is allowed.
        pytest.param(
            {"config": {"server": {"metrics_port": 9443}}},
            "config.server.port and config.server.metrics_port must differ (both 9443)",
            id="webhook-port-is-metrics-port",
        ),
        pytest.param(
            {"resources": {"requests": {"cpu": "1.2.3"}}},
            "at '/resources/requests/cpu': '1.2.3' does not match pattern",
            id="cpu-with-two-points",
        ),
        pytest.param(
            {"resources": {"limits": {"memory": "4 Gi"}}},
            "at '/resources/limits/memory': '4 Gi' does not match pattern",
            id="memory-with-a-space",
        ),
        pytest.param(
            {"certificates": {"mode": "certManager", "certManager": {"renewBefore": "8760h"}}},
            "certificates.certManager.renewBefore (8760h) must be shorter than duration (8760h)",
            id="cert-manager-renew-before-not-below-duration",
        ),
        pytest.param(
            {
                "certificates": {
                    "mode": "certManager",
                    "certManager": {"duration": "1h30m", "renewBefore": "90m"},
                }
            },
            "certificates.certManager.renewBefore (90m) must be shorter than duration (1h30m)",
            id="cert-manager-renew-before-equal-in-other-units",
        ),
        pytest.param(
            {
                "certificates": {
                    "mode": "certManager",
                    "certManager": {"duration": "720h", "renewBefore": "30d"},
                }
            },
            "at '/certificates/certManager/renewBefore': '30d' does not match pattern",
            id="cert-manager-days-are-not-a-go-duration",
        ),
        pytest.param(
            {
                "certificates": {
                    "mode": "selfManaged",
                    "selfManaged": {"certValidityDays": 30, "renewBeforeDays": 30},
                }
            },
            "certificates.selfManaged.renewBeforeDays (30) must be below certValidityDays (30)",
            id="self-managed-renew-before-not-below-validity",
        ),
        pytest.param(
            {"config": {"platform": {"connect_timeout": 1.5}}},
            "config.platform.connect_timeout (1.5) must not exceed"
            " config.platform.request_timeout (1)",
            id="connect-timeout-above-request-timeout",
        ),
        pytest.param(
            {"config": {"cache": {"ttl": 600, "max_stale": 300}}},
            "config.cache.max_stale (300) must be at least config.cache.ttl (600)",
            id="max-stale-below-ttl",
        ),
        # Issue 18: the HPA's bounds (max >= min is checked by templates/hpa.yaml).
        pytest.param(
            {"autoscaling": {"enabled": True, "minReplicas": 0}},
            "at '/autoscaling/minReplicas': minimum: got 0, want 1",
            id="hpa-min-replicas-zero",
        ),
        pytest.param(
            {"autoscaling": {"maxReplicas": 101}},
            "at '/autoscaling/maxReplicas': maximum: got 101, want 100",
            id="hpa-max-replicas-over-100",
        ),
        pytest.param(
            {"autoscaling": {"targetCPUUtilizationPercentage": 0}},
            "at '/autoscaling/targetCPUUtilizationPercentage': minimum: got 0, want 1",
            id="hpa-cpu-target-zero",
        ),
        pytest.param(
            {"autoscaling": {"targetMemoryUtilizationPercentage": "80%"}},
            "at '/autoscaling/targetMemoryUtilizationPercentage': got string",
            id="hpa-memory-target-with-percent-sign",
        ),
        pytest.param(
            {"autoscaling": {"behavior": ["scaleDown"]}},
            "at '/autoscaling/behavior': got array, want object",
            id="hpa-behavior-not-an-object",
        ),
        pytest.param(
            {"autoscaling": {"behavior": {"scaleDown": {"stabilisationWindowSeconds": 60}}}},
            "at '/autoscaling/behavior/scaleDown': additional properties "
            "'stabilisationWindowSeconds'",
            id="hpa-behavior-typo",
        ),
        pytest.param(
            {
                "autoscaling": {
                    "behavior": {
                        "scaleUp": {"policies": [{"type": "pods", "value": 2, "periodSeconds": 60}]}
                    }
                }
            },
            "at '/autoscaling/behavior/scaleUp/policies/0/type': value must be one of 'Pods', "
            "'Percent'",
            id="hpa-policy-type-lowercase",
        ),
        pytest.param(
            {"autoscaling": {"enable": True}},
            "at '/autoscaling': additional properties 'enable'",
            id="hpa-typo",
        ),
        pytest.param(
            {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 2}},
            "autoscaling.maxReplicas (2) must be at least autoscaling.minReplicas (3)",
            id="hpa-max-below-min",
        ),
        pytest.param(
            {"nameOverride": "NodeLimits"},
            "at '/nameOverride': 'NodeLimits' does not match pattern",
            id="name-override-not-a-dns-label",
        ),
        pytest.param(
            {"fullnameOverride": "limits_webhook"},
            "at '/fullnameOverride': 'limits_webhook' does not match pattern",
            id="fullname-override-not-a-dns-label",
        ),
        pytest.param(
            {"config": {"cache": {"ttl": 0}}},
            "at '/config/cache/ttl': minimum: got 0, want 0.001",
            id="seconds-say-the-least-allowed",
        ),
        pytest.param(
            {"commonLabels": {"team": 7}},
            "at '/commonLabels/team': got number, want string",
            id="common-label-not-a-string",
        ),
        pytest.param(
            {"dnsPolicy": "ClusterFirstWithHostnet"},
            "at '/dnsPolicy': value must be one of",
            id="dns-policy-typo",
        ),
        pytest.param(
            {"serviceMonitor": {"scheme": "tls"}},
            "at '/serviceMonitor/scheme'",
            id="service-monitor-scheme",
        ),
    ],
)
def test_bad_values_fail_with_a_message_naming_the_key(
    render_chart: RenderFn, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ChartError) as exc:
        render_chart(values)
    assert message in str(exc.value)
