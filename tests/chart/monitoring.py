"""The chart's monitoring kit picked apart: the PrometheusRule's alerts, the dashboard's
queries, the metric names they use, the metrics the server exports and the metrics table
of docs/operations.md. Shared by tests/chart/test_monitoring.py (the registry) and
tests/e2e/test_monitoring.py (a real scrape)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from tests.chart.chart import REPO_ROOT, Rendered
from webhook.metrics import Metrics

OPERATIONS = REPO_ROOT / "docs" / "operations.md"

EXTERNAL = {
    "up": "Prometheus: 1 while a target answers its scrape",
    "kube_deployment_status_replicas_available": "kube-state-metrics: available pods",
}
"""Series a rule may name that nodelimits does not export (NodelimitsNoReadyReplica)."""

TARGET_LABELS = frozenset({"namespace", "job", "instance", "pod", "service", "container"})
"""Labels Prometheus (the ServiceMonitor) adds to every scraped series."""

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
_BARE = re.compile(r"\bnodelimits_[a-z0-9_]+")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


@dataclass(frozen=True)
class Family:
    """One exported metric as PromQL names it (a counter with its _total)."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str

    @property
    def series(self) -> tuple[str, ...]:
        """The series names a query can select."""
        return tuple(self.name + s for s in _SUFFIXES.get(self.type, ("",)))


def registry_families() -> dict[str, Family]:
    """Every metric of webhook/metrics.py's Metrics, by its PromQL name."""
    out: dict[str, Family] = {}
    for value in vars(Metrics()).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name + ("_total" if value._type == "counter" else "")
            out[name] = Family(name, value._type, tuple(value._labelnames), value._documentation)
    return out


def scraped_types(exposition: str) -> dict[str, str]:
    """PromQL name -> type from the `# TYPE` lines of a /metrics answer, without the
    `<counter>_created` gauges prometheus_client adds beside each counter (and histogram)
    that has a sample: the time it started counting, not a metric of its own."""
    types = dict(_TYPE_LINE.findall(exposition))
    owners = {n.removesuffix("_total") for n, t in types.items() if t in ("counter", "histogram")}
    return {
        n: t
        for n, t in types.items()
        if not (n.endswith("_created") and t == "gauge" and n.removesuffix("_created") in owners)
    }


def exported_series(families: Mapping[str, Family]) -> set[str]:
    return {s for f in families.values() for s in f.series}


def alerts(rendered: Rendered) -> list[dict[str, Any]]:
    rule = rendered.one("PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


def dashboard(rendered: Rendered) -> dict[str, Any]:
    config_map = rendered.one("ConfigMap", "-dashboard")
    (text,) = config_map["data"].values()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def panel_queries(board: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every query of every panel, rows' panels too."""
    for panel in board["panels"]:
        for inner in (panel, *panel.get("panels", ())):
            for target in inner.get("targets", ()):
                yield inner["title"], target["expr"]


def selected(expr: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(series name, label names matched) of each selector in a PromQL expression, and
    each nodelimits_ name with no selector (no labels)."""
    seen_at = set()
    for match in _SELECTOR.finditer(expr):
        seen_at.add(match.start(1))
        yield match.group(1), tuple(_MATCHER.findall(match.group(2)))
    for match in _BARE.finditer(expr):
        if match.start() not in seen_at:
            yield match.group(0), ()


def documented_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (type, labels) from the rows of docs/operations.md's metrics tables:
    | `name` | type | `label`, `label` (or —) | meaning |"""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in OPERATIONS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not re.fullmatch(r"`nodelimits_[a-z0-9_]+`", cells[0]):
            continue
        labels = tuple(re.findall(r"`([a-z_]+)`", cells[2]))
        out[cells[0].strip("`")] = (cells[1], labels)
    return out


def github_anchors(markdown: str) -> set[str]:
    """The fragment GitHub gives each heading (lower case, punctuation dropped, spaces to -)."""
    anchors = set()
    for line in markdown.splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*$", line)
        if heading:
            text = heading.group(1).lower().replace("`", "")
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text)))
    return anchors
