"""Operators' kind-table rows (config.policy.workload_kinds): the chart renders a webhook for
each, exactly the ones `nodelimits serve` registers from the same rendered config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools import builders
from tests.chart.chart import ChartError
from tests.chart.conftest import RenderFn
from webhook.config import load_settings
from webhook.serve.handlers import served

TRAINER = builders.trainer_kind()
CLUSTER_SCOPED = {
    **TRAINER,
    "kind": "TrainerPool",
    "plural": "trainerpools",
    "namespaced": False,
}
PYTORCH_OVERRIDE = {
    **TRAINER,
    "group": "kubeflow.org",
    "kind": "PyTorchJob",
    "plural": "pytorchjobs",
}


def _policy(rows: list[dict[str, Any]], **admission: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"policy": {"workload_kinds": rows}}
    if admission:
        config["admission"] = admission
    return {"config": config}


@pytest.mark.parametrize(
    "values",
    [
        _policy([TRAINER, CLUSTER_SCOPED, PYTORCH_OVERRIDE]),
        # the built-in PyTorchJob row disabled: the operator's row brings its own webhook
        _policy([PYTORCH_OVERRIDE], kinds=["Pod", "Job"]),
    ],
    ids=["rows", "override-of-a-disabled-kind"],
)
def test_the_chart_renders_what_the_server_registers(
    values: dict[str, Any], render_chart: RenderFn, tmp_path: Path
) -> None:
    rendered = render_chart(values)
    path = tmp_path / "config.yaml"
    path.write_text(rendered.config_text)
    settings = load_settings(path)  # the rows are valid kind-table rows
    expected = [
        (h.group, h.plural + (f"/{h.subresource}" if h.subresource else ""), h.path,
         tuple(sorted(h.operations)))
        for h in served(settings.admission.kinds, settings.policy.workload_kinds)
    ]  # fmt: skip
    assert rendered.routes() == expected
    names = [hook["name"] for hook in rendered.webhooks]
    assert len(names) == len(set(names))
    scopes = {
        hook["clientConfig"]["service"]["path"]: hook["rules"][0]["scope"]
        for hook in rendered.webhooks
    }
    if "trainerpools" in str(values):
        assert scopes["/example.com/v1/trainerpools"] == "Cluster"
        assert scopes["/example.com/v1/trainers"] == "Namespaced"
    assert "/kubeflow.org/v1/pytorchjobs" in scopes


@pytest.mark.parametrize("missing", ["group", "version", "kind", "plural"])
def test_a_row_without_its_api_names_is_refused_by_the_schema(
    missing: str, render_chart: RenderFn
) -> None:
    row = {k: v for k, v in TRAINER.items() if k != missing}
    with pytest.raises(ChartError, match=missing):
        render_chart(_policy([row]))
