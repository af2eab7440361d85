"""The monitoring kit (monitoring.prometheusRule, monitoring.grafanaDashboard): rendered by
the real helm, the rules checked and unit-tested by the real promtool (built from the Go
module proxy by tools/promtool/build.sh), every metric they name exported by the server,
and every exported metric documented in docs/operations.md."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart import NAMESPACE, RELEASE, ChartError
from tests.chart.conftest import RenderFn
from tests.chart.monitoring import (
    EXTERNAL,
    OPERATIONS,
    TARGET_LABELS,
    alerts,
    dashboard,
    documented_metrics,
    exported_series,
    github_anchors,
    panel_queries,
    registry_families,
    selected,
)

RULES_TEST = Path(__file__).parent / "prometheus" / "rules_test.yaml"
PROMTOOL_TIMEOUT = 120
RULE_ON = {"monitoring": {"prometheusRule": {"enabled": True}}}
DASHBOARD_ON = {"monitoring": {"grafanaDashboard": {"enabled": True}}}
FULLNAME = f"{RELEASE}-nodelimits"
ALERTS = (
    "NodelimitsFailOpen",
    "NodelimitsPlatformErrors",
    "NodelimitsLimitsServedStale",
    "NodelimitsCertificateExpiring",
    "NodelimitsPlatformTokenExpiring",
    "NodelimitsReviewLatencyNearTimeout",
    "NodelimitsNoReadyReplica",
)


def rules_file(render_chart: RenderFn, directory: Path, values: dict[str, Any] = RULE_ON) -> Path:
    """The rendered PrometheusRule's groups as a Prometheus rule file."""
    rule = render_chart(values).one("PrometheusRule")
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def run_promtool(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
        cwd=cwd,
    )


def expressions(render_chart: RenderFn) -> list[tuple[str, str]]:
    """(where, PromQL) of every alert and every dashboard query."""
    rendered = render_chart({"monitoring": {**RULE_ON["monitoring"], **DASHBOARD_ON["monitoring"]}})
    found = [(f"alert {a['alert']}", a["expr"]) for a in alerts(rendered)]
    found += [(f"panel {title!r}", expr) for title, expr in panel_queries(dashboard(rendered))]
    return found


# --- what is rendered -----------------------------------------------------------------


def test_neither_rule_nor_dashboard_is_rendered_by_default(render_chart: RenderFn) -> None:
    rendered = render_chart()
    assert "PrometheusRule" not in rendered.kinds
    assert not [
        c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")
    ]


def test_the_rule_has_the_seven_alerts_each_with_severity_summary_and_runbook(
    render_chart: RenderFn,
) -> None:
    found = alerts(render_chart(RULE_ON))
    assert tuple(a["alert"] for a in found) == ALERTS
    for alert in found:
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}


def test_each_runbook_url_points_at_a_section_of_operations_md(render_chart: RenderFn) -> None:
    anchors = github_anchors(OPERATIONS.read_text())
    base = "https://github.com/nodelimits/nodelimits/blob/main/docs/operations.md#"
    for alert in alerts(render_chart(RULE_ON)):
        url = alert["annotations"]["runbook_url"]
        assert url.startswith(base), url
        assert url.removeprefix(base) in anchors, f"{alert['alert']}: no section #{url}"


def test_runbook_base_url_is_configurable(render_chart: RenderFn) -> None:
    values = {
        "monitoring": {
            "prometheusRule": {"enabled": True, "runbookBaseUrl": "https://wiki.example/nl"}
        }
    }
    urls = {a["annotations"]["runbook_url"] for a in alerts(render_chart(values))}
    assert "https://wiki.example/nl#nodelimitsfailopen" in urls


def test_the_rules_select_the_release_namespace_and_the_service_monitors_job(
    render_chart: RenderFn,
) -> None:
    (fail_open, *_) = alerts(render_chart(RULE_ON))
    assert f'{{namespace="{NAMESPACE}",job="{FULLNAME}"}}' in fail_open["expr"]


def test_a_selector_value_replaces_the_default_matchers(render_chart: RenderFn) -> None:
    values = {
        "monitoring": {"prometheusRule": {"enabled": True, "selector": 'job="nodelimits-eu"'}}
    }
    for alert in alerts(render_chart(values)):
        assert 'job="nodelimits-eu"' in alert["expr"], alert["alert"]
        assert f'job="{FULLNAME}"' not in alert["expr"], alert["alert"]


def test_the_latency_threshold_follows_the_webhook_timeout(render_chart: RenderFn) -> None:
    values = {**RULE_ON, "config": {"admission": {"timeout_seconds": 10}}}
    latency = next(
        a for a in alerts(render_chart(values)) if a["alert"].startswith("NodelimitsReview")
    )
    assert latency["expr"].rstrip().endswith("> 8")


def test_no_ready_replica_is_critical_only_under_failure_policy_fail(
    render_chart: RenderFn,
) -> None:
    def severity(policy: str) -> str:
        values = {**RULE_ON, "webhook": {"failurePolicy": policy}}
        found = next(
            a for a in alerts(render_chart(values)) if a["alert"] == "NodelimitsNoReadyReplica"
        )
        return str(found["labels"]["severity"])

    assert (severity("Fail"), severity("Ignore")) == ("critical", "warning")


def test_the_rule_carries_the_labels_a_rule_selector_needs(render_chart: RenderFn) -> None:
    values = {"monitoring": {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}}
    assert render_chart(values).one("PrometheusRule")["metadata"]["labels"]["release"] == "kps"


def test_an_out_of_cluster_server_gets_no_rule(render_chart: RenderFn) -> None:
    values = {**RULE_ON, "webhook": {"url": "https://10.0.0.1:9443"}}
    assert "PrometheusRule" not in render_chart(values).kinds


@pytest.mark.parametrize(
    ("values", "path"),
    [
        pytest.param(
            {"runbookBaseUrl": "https://x.example/ops.md#alerts"},
            "runbookBaseUrl",
            id="url-with-fragment",
        ),
        pytest.param({"selector": "job=nodelimits"}, "selector", id="unquoted-matcher"),
        pytest.param({"selector": '{job="nodelimits"}'}, "selector", id="braces"),
        pytest.param({"latencyTimeoutFraction": 0}, "latencyTimeoutFraction", id="zero-fraction"),
        pytest.param(
            {"latencyTimeoutFraction": 1.5}, "latencyTimeoutFraction", id="fraction-above-one"
        ),
        pytest.param({"certificateExpiryDays": 0}, "certificateExpiryDays", id="zero-days"),
        pytest.param({"alerts": []}, "prometheusRule", id="unknown-key"),
    ],
)
def test_the_schema_refuses_bad_rule_values(
    render_chart: RenderFn, values: dict[str, Any], path: str
) -> None:
    with pytest.raises(ChartError, match=path):
        render_chart({"monitoring": {"prometheusRule": values}})


def test_the_dashboard_is_a_configmap_with_the_sidecar_label_holding_its_json(
    render_chart: RenderFn,
) -> None:
    rendered = render_chart(DASHBOARD_ON)
    config_map = rendered.one("ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    board = dashboard(rendered)
    assert board["uid"] == "nodelimits"
    assert len(list(panel_queries(board))) >= 20


def test_the_dashboard_can_go_to_grafanas_namespace_with_a_folder(render_chart: RenderFn) -> None:
    values = {
        "monitoring": {
            "grafanaDashboard": {
                "enabled": True,
                "namespace": "grafana",
                "annotations": {"grafana_folder": "Admission"},
            }
        }
    }
    config_map = render_chart(values).one("ConfigMap", "-dashboard")
    assert config_map["metadata"]["namespace"] == "grafana"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Admission"}


def test_every_dashboard_query_filters_on_the_namespace_variable(render_chart: RenderFn) -> None:
    for title, expr in panel_queries(dashboard(render_chart(DASHBOARD_ON))):
        for name, labels in selected(expr):
            assert "namespace" in labels, f"panel {title!r}: {name} without $namespace"


# --- promtool -------------------------------------------------------------------------


def test_promtool_check_rules_accepts_the_rendered_rules(
    promtool: Path, render_chart: RenderFn, tmp_path: Path
) -> None:
    rules = rules_file(render_chart, tmp_path)
    result = run_promtool(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_check_rules_accepts_the_rules_with_every_knob_set(
    promtool: Path, render_chart: RenderFn, tmp_path: Path
) -> None:
    values = {
        "monitoring": {
            "prometheusRule": {
                "enabled": True,
                "selector": 'namespace=~"nl-.*", job!="x"',
                "certificateExpiryDays": 30,
                "tokenExpiryMinutes": 90,
                "latencyTimeoutFraction": 0.5,
                "platformErrorRatio": 0.25,
            }
        },
        "webhook": {"failurePolicy": "Ignore"},
        "config": {"admission": {"timeout_seconds": 3}},
    }
    rules = rules_file(render_chart, tmp_path, values)
    result = run_promtool(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_on_its_series_and_stays_silent_without_it(
    promtool: Path, render_chart: RenderFn, tmp_path: Path
) -> None:
    rules_file(render_chart, tmp_path)
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = run_promtool(promtool, "test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_test_file_has_a_firing_and_a_silent_case_for_every_alert() -> None:
    cases = yaml.safe_load(RULES_TEST.read_text())["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert firing == set(ALERTS)
    assert silent == set(ALERTS)


# --- names: rules and panels <-> the server <-> the docs ------------------------------


def test_every_metric_a_rule_or_panel_names_is_one_the_server_exports(
    render_chart: RenderFn,
) -> None:
    families = registry_families()
    series = exported_series(families)
    labels = {s: (*f.labels, *TARGET_LABELS) for f in families.values() for s in f.series}
    for where, expr in expressions(render_chart):
        for name, matched in selected(expr):
            if name in EXTERNAL:
                continue
            assert name in series, f"{where}: {name} is not exported by nodelimits"
            extra = (
                set(matched) - set(labels[name]) - ({"le"} if name.endswith("_bucket") else set())
            )
            assert not extra, f"{where}: {name} has no label {sorted(extra)}"


def test_every_exported_metric_is_documented_with_its_type_and_labels() -> None:
    documented = documented_metrics()
    for name, family in registry_families().items():
        assert name in documented, f"{name} is not in docs/operations.md's metrics tables"
        assert documented[name] == (family.type, family.labels), name
    assert set(documented) <= set(registry_families()), "docs name metrics nobody exports"


def test_every_external_series_a_rule_uses_is_documented() -> None:
    text = OPERATIONS.read_text()
    for name in EXTERNAL:
        assert f"`{name}`" in text, name


def test_every_alert_has_its_runbook_section() -> None:
    anchors = github_anchors(OPERATIONS.read_text())
    for alert in ALERTS:
        assert alert.lower() in anchors, alert
