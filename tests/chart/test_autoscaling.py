"""autoscaling: a HorizontalPodAutoscaler for the webhook Deployment (issue 18, part 3),
which then owns the replica count, and the PodDisruptionBudget sized for what it may run.
The schema's bounds (and max >= min) are in test_values_schema.py."""

from __future__ import annotations

import re

import pytest

from tests.chart.chart import ChartError, Rendered
from tests.chart.conftest import RenderFn

AUTOSCALING = {"autoscaling": {"enabled": True}}


def hpa(rendered: Rendered) -> dict:
    return rendered.one("HorizontalPodAutoscaler")


def test_no_autoscaler_by_default(render_chart: RenderFn) -> None:
    rendered = render_chart()

    assert "HorizontalPodAutoscaler" not in rendered.kinds
    assert rendered.one("Deployment")["spec"]["replicas"] == 2


def test_enabled_renders_an_autoscaling_v2_hpa_on_cpu_for_the_webhook_deployment(
    render_chart: RenderFn,
) -> None:
    rendered = render_chart(AUTOSCALING)

    found = hpa(rendered)
    assert found["apiVersion"] == "autoscaling/v2"
    assert found["metadata"]["namespace"] == rendered.one("Deployment")["metadata"]["namespace"]
    assert found["spec"] == {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": rendered.one("Deployment")["metadata"]["name"],
        },
        "minReplicas": 2,
        "maxReplicas": 6,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            }
        ],
    }


def test_the_deployment_leaves_the_replica_count_to_the_hpa(render_chart: RenderFn) -> None:
    deployment = render_chart({**AUTOSCALING, "replicaCount": 3}).one("Deployment")

    assert "replicas" not in deployment["spec"]


def test_only_the_webhook_deployment_is_scaled_not_the_audit(render_chart: RenderFn) -> None:
    rendered = render_chart({**AUTOSCALING, "audit": {"enabled": True}})

    assert len(rendered.of_kind("HorizontalPodAutoscaler")) == 1
    assert not hpa(rendered)["spec"]["scaleTargetRef"]["name"].endswith("-audit")
    assert rendered.one("Deployment", "-audit")["spec"]["replicas"] == 2


def test_bounds_and_cpu_target_are_taken_as_given(render_chart: RenderFn) -> None:
    values = {
        "autoscaling": {
            "enabled": True,
            "minReplicas": 3,
            "maxReplicas": 10,
            "targetCPUUtilizationPercentage": 150,
        }
    }

    spec = hpa(render_chart(values))["spec"]

    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 10)
    assert spec["metrics"][0]["resource"]["target"]["averageUtilization"] == 150


def test_a_memory_target_adds_a_second_metric(render_chart: RenderFn) -> None:
    values = {"autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80}}

    metrics = hpa(render_chart(values))["spec"]["metrics"]

    assert [(m["resource"]["name"], m["resource"]["target"]) for m in metrics] == [
        ("cpu", {"type": "Utilization", "averageUtilization": 70}),
        ("memory", {"type": "Utilization", "averageUtilization": 80}),
    ]


def test_behavior_is_passed_through_as_written(render_chart: RenderFn) -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 600,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
        },
        "scaleUp": {"selectPolicy": "Max"},
    }

    spec = hpa(render_chart({"autoscaling": {"enabled": True, "behavior": behavior}}))["spec"]

    assert spec["behavior"] == behavior


@pytest.mark.parametrize(
    ("autoscaling", "replica_count", "rendered"),
    [
        pytest.param({"minReplicas": 1, "maxReplicas": 4}, 1, True, id="may-scale-out-from-one"),
        pytest.param({"minReplicas": 1, "maxReplicas": 1}, 2, False, id="pinned-to-one"),
        pytest.param({"minReplicas": 2, "maxReplicas": 4}, 1, True, id="replica-count-ignored"),
    ],
)
def test_the_pdb_follows_the_most_replicas_the_hpa_may_run(
    render_chart: RenderFn, autoscaling: dict, replica_count: int, rendered: bool
) -> None:
    values = {"autoscaling": {"enabled": True, **autoscaling}, "replicaCount": replica_count}

    found = render_chart(values).of_kind("PodDisruptionBudget")

    assert bool(found) == rendered
    if found:
        assert found[0]["spec"]["maxUnavailable"] == 1


def test_no_hpa_when_the_server_runs_out_of_cluster(render_chart: RenderFn) -> None:
    values = {**AUTOSCALING, "webhook": {"url": "https://127.0.0.1:9443"}}

    assert "HorizontalPodAutoscaler" not in render_chart(values).kinds


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            {"resources": {"requests": {"cpu": None}}},
            "autoscaling.enabled needs resources.requests.cpu: the HPA's CPU target is a "
            "percentage of it",
            id="no-cpu-request",
        ),
        pytest.param(
            {"resources": None},
            "autoscaling.enabled needs resources.requests.cpu",
            id="no-resources",
        ),
        pytest.param(
            {
                "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80},
                "resources": {"requests": {"memory": None}},
            },
            "autoscaling.targetMemoryUtilizationPercentage needs resources.requests.memory",
            id="memory-target-without-memory-request",
        ),
    ],
)
def test_an_autoscaler_it_cannot_drive_is_refused(
    render_chart: RenderFn, values: dict, message: str
) -> None:
    with pytest.raises(ChartError, match=re.escape(message)):
        render_chart({**AUTOSCALING, **values})
