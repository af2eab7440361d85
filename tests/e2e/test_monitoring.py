"""The monitoring kit against a running ``nodelimits serve`` (a real control plane, the
simulator): what its /metrics answers is what the chart's alerts and dashboard query and
what docs/operations.md documents (tests/chart/test_monitoring.py checks the same against
the registry offline)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from devtools.controlplane import ControlPlane
from devtools.stack import SimulatorProcess, Webhook
from tests.chart.chart import render
from tests.chart.monitoring import (
    EXTERNAL,
    alerts,
    dashboard,
    documented_metrics,
    panel_queries,
    registry_families,
    scraped_types,
    selected,
)

_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count")}


@pytest.fixture(scope="module")
def served(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    work = tmp_path_factory.mktemp("monitoring")
    simulator = SimulatorProcess(work).start()
    webhook: Webhook | None = None
    try:
        webhook = Webhook(work, control_plane, simulator).start()
        yield webhook
    finally:
        if webhook is not None:
            webhook.stop()
        simulator.stop()


@pytest.fixture(scope="module")
def scraped(served: Webhook) -> dict[str, str]:
    """PromQL name -> type of every metric family in one /metrics answer."""
    return scraped_types(served.metrics_text())


def test_a_scrape_holds_every_metric_of_the_registry_with_its_type(
    scraped: dict[str, str],
) -> None:
    expected = {name: family.type for name, family in registry_families().items()}
    assert scraped == expected


def test_every_metric_in_a_scrape_is_documented_with_its_type(scraped: dict[str, str]) -> None:
    documented = documented_metrics()
    assert {name: documented[name][0] for name in scraped if name in documented} == scraped


def test_every_metric_the_rules_and_dashboard_name_is_in_a_scrape(
    scraped: dict[str, str], testbin: Path, tmp_path: Path
) -> None:
    values = {
        "monitoring": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}
    }
    rendered = render(testbin / "helm", tmp_path, values)
    queries = [a["expr"] for a in alerts(rendered)]
    queries += [expr for _, expr in panel_queries(dashboard(rendered))]
    series = {n + s for n, t in scraped.items() for s in _SUFFIXES.get(t, ("",))}
    named = {name for expr in queries for name, _ in selected(expr)} - set(EXTERNAL)
    assert named, "no metric names found in the rules and panels"
    assert named <= series, sorted(named - series)


def test_the_certificate_expiry_is_the_served_certificates_not_after(served: Webhook) -> None:
    cert = x509.load_pem_x509_certificate(served.certs.cert.read_bytes())
    line = next(
        line
        for line in served.metrics_text().splitlines()
        if line.startswith("nodelimits_tls_certificate_expiry_timestamp_seconds ")
    )
    assert float(line.split()[1]) == cert.not_valid_after_utc.timestamp()
