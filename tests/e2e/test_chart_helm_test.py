"""The chart's `helm test` (templates/tests/denial.yaml) against the real kube-apiserver,
with the chart's webhook configuration pointed at `nodelimits serve` on loopback (the
`served` fixture of test_chart_server.py).

The test's ServiceAccount, Role and RoleBinding are applied as rendered; the pod's own
command (files/helm-test.py) runs here with that account's token, the pod's environment and
the apiserver's address instead of the in-cluster one. (On the real node, where pods run,
tests/node runs `helm test` itself.)"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart import CHART, Rendered, run_helm, values_args
from tests.e2e.test_chart_server import GROUP, Served, denied_until_settled, served, workload

__all__ = ["served"]  # the fixture, shared with test_chart_server.py

SCRIPT_TIMEOUT = 90.0


def render_test(helm: Path, tmp: Path, served: Served, values: dict[str, Any]) -> Rendered:
    out = run_helm(
        helm, "template", "nlt", str(CHART), "--namespace", served.release_namespace,
        "--show-only", "templates/tests/denial.yaml", *values_args(values, tmp),
    )  # fmt: skip
    return Rendered(yaml.safe_load_all(out))


def hook(rendered: Rendered, kind: str) -> dict[str, Any]:
    (found,) = [o for o in rendered.hooks if o["kind"] == kind]
    return found


@pytest.fixture
def helm_test(served: Served, testbin: Path, tmp_path: Path) -> Iterator[Any]:
    """run(namespace, group=...) -> the finished script; applies the test's account first."""
    applied: list[dict[str, Any]] = []

    def run(namespace: str, **test: str) -> subprocess.CompletedProcess[str]:
        rendered = render_test(
            testbin / "helm", tmp_path, served, {"test": {"namespace": namespace, **test}}
        )
        accounts = [o for o in rendered.hooks if o["kind"] != "Pod"]
        served.plane.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": accounts}),
        )
        applied.extend(accounts)
        pod = hook(rendered, "Pod")
        account = pod["spec"]["serviceAccountName"]
        token = served.plane.kubectl(
            "create", "token", account, "-n", served.release_namespace
        ).stdout
        token_file = tmp_path / "token"
        token_file.write_text(token.strip())
        (container,) = pod["spec"]["containers"]
        assert container["command"][:2] == ["python", "-c"]
        env = {e["name"]: e["value"] for e in container["env"]}
        env |= {
            "NODELIMITS_TEST_API_URL": served.plane.url,
            "NODELIMITS_TEST_TOKEN_FILE": str(token_file),
            "NODELIMITS_TEST_CA_FILE": str(served.plane.ca_file),
        }
        return subprocess.run(
            [sys.executable, "-c", container["command"][2]], env=env, capture_output=True,
            text=True, timeout=SCRIPT_TIMEOUT, check=False,
        )  # fmt: skip

    denied_until_settled(served, workload("Job", cpu="100"))
    yield run
    for obj in applied:
        served.plane.kubectl(
            "delete", obj["kind"], obj["metadata"]["name"], "-n", obj["metadata"]["namespace"],
            "--ignore-not-found", check=False,
        )  # fmt: skip


def test_helm_test_passes_when_nodelimits_denies_the_oversized_pod(
    served: Served, helm_test: Any
) -> None:
    result = helm_test(served.namespace, group=GROUP)

    assert result.returncode == 0, result.stderr
    assert "was denied by nodelimits" in result.stdout
    assert 'admission webhook "pods.nodelimits.io" denied the request' in result.stdout
    assert f'"{GROUP}"' in result.stdout


def test_helm_test_passes_with_its_made_up_group_denied_as_unknown(
    served: Served, helm_test: Any
) -> None:
    result = helm_test(served.namespace)

    assert result.returncode == 0, result.stderr
    assert "nodelimits-helm-test" in result.stdout


def test_helm_test_fails_where_nothing_denies_the_pod(served: Served, helm_test: Any) -> None:
    """An excluded namespace: the apiserver never asks nodelimits, the dry run succeeds."""
    result = helm_test(served.excluded, group=GROUP)

    assert result.returncode == 1
    assert "the apiserver accepted the dry run" in result.stderr
    assert "nodelimits did not deny it" in result.stderr


def test_helm_test_account_may_create_pods_in_its_namespace_and_nothing_else(
    served: Served, helm_test: Any
) -> None:
    helm_test(served.namespace, group=GROUP)
    user = f"system:serviceaccount:{served.release_namespace}:nlt-nodelimits-test"

    def can(verb: str, resource: str, namespace: str) -> bool:
        result = served.plane.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", check=False
        )
        return result.stdout.strip() == "yes"

    assert can("create", "pods", served.namespace)
    assert not can("create", "pods", served.excluded)
    assert not can("create", "pods", served.release_namespace)
    for verb, resource in [("get", "pods"), ("delete", "pods"), ("create", "jobs"),
                           ("get", "secrets"), ("create", "deployments")]:  # fmt: skip
        assert not can(verb, resource, served.namespace), (verb, resource)
