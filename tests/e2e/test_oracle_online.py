"""The oracle (tools/oracle) against the real apiserver, and nodelimits on what it hands over.

A few hundred seeded random pods are created with ``dryRun=All`` on the e2e control plane
(kube-apiserver v1.37.2 built by tools/testbin): the apiserver must refuse exactly the pods
the oracle says never reach a webhook, and return for the others the resources the oracle
printed (so tests/oracle's offline comparison stands for the real thing); nodelimits' effective
requests and limits of the returned pod, the webhook's view, must equal the oracle's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import oracle
from devtools.controlplane import ControlPlane, TestbinUnavailable
from tests.conftest import ENV_REQUIRE, required
from webhook.core.resources import pod_resources, resource_quantity

SEED = int(os.environ.get("NODELIMITS_ORACLE_SEED", "20260612"))
COUNT = int(os.environ.get("NODELIMITS_ORACLE_ONLINE_PODS", "300"))
RESOURCE_FIELDS = ("resources",)


@pytest.fixture(scope="module")
def oracle_bin() -> Path:
    try:
        return oracle.find_oracle()
    except TestbinUnavailable as exc:
        if exc.go_missing and not required():
            pytest.skip(f"{exc} ({ENV_REQUIRE}=1 makes this a failure)")
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def dry_run(control_plane: ControlPlane) -> Iterator[oracle.DryRun]:
    client = oracle.DryRun(
        control_plane.url,
        control_plane.ca_file,
        control_plane.admin_cert_file,
        control_plane.admin_key_file,
    )
    try:
        yield client
    finally:
        client.close()


def _values(tree: object) -> object:
    """Quantities as values: the apiserver and the oracle may spell one differently
    (``1G`` / ``1000000000``: the same Quantity, formatted after different conversions)."""
    if isinstance(tree, dict):
        return {k: _values(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_values(v) for v in tree]
    return resource_quantity(tree) if isinstance(tree, str) else tree


def _resource_view(spec: dict[str, Any]) -> object:
    view: dict[str, Any] = {k: spec.get(k) for k in RESOURCE_FIELDS}
    for key in ("containers", "initContainers"):
        view[key] = [c.get("resources") for c in spec.get(key) or []]
    return _values(view)


def test_the_apiserver_hands_over_what_the_oracle_says(
    oracle_bin: Path, dry_run: oracle.DryRun, namespace: str
) -> None:
    # no overhead: the RuntimeClass admission plugin refuses one without a RuntimeClass
    pods = oracle.random_pods(SEED, COUNT, overhead=False)
    verdicts = oracle.run(oracle_bin, pods)
    found: list[str] = []
    reached = 0
    for pod, verdict in zip(pods, verdicts, strict=True):
        status, body = dry_run.create(namespace, pod)
        name = pod["metadata"]["name"]
        if not verdict.reaches_webhook:
            if status < 400:
                found.append(f"{name}: created ({status}) but the oracle says {verdict.invalid}")
            continue
        if status != 201:
            found.append(f"{name}: HTTP {status} {body.get('message')} but the oracle accepts it")
            continue
        reached += 1
        assert verdict.pod is not None
        if _resource_view(body["spec"]) != _resource_view(verdict.pod["spec"]):
            found.append(f"{name}: apiserver {_resource_view(body['spec'])} != oracle")
        got = pod_resources(body["spec"])
        if (dict(got.requests), dict(got.limits)) != (verdict.requests, verdict.limits):
            found.append(f"{name}: nodelimits {got} != kubernetes {verdict}")
    assert reached > COUNT // 2
    assert not found, f"{len(found)} of {COUNT} disagree:\n" + "\n".join(found[:8])
