"""Issue 12's findings on the real control plane, with the chart's webhook configuration
pointed at ``nodelimits serve`` (static limits, examples/limits.yaml: TeslaM40 is 40 cores a
node, a800x8 128 cores; kshdtest has maxTime 24:00:00). Each test failed on the code before
the fix; the table is in docs/reliability.md ("Hardening (issue 12)").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.builders import GROUP_KEY, container, pod
from devtools.controlplane import ControlPlane
from devtools.stack import EXAMPLE_LIMITS, SimulatorProcess, Webhook


@pytest.fixture(scope="module")
def webhook(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    work = tmp_path_factory.mktemp("hardening")
    never_started = SimulatorProcess(work)  # only its URL lands in the (unused) platform settings
    server = Webhook(
        work, control_plane, never_started, {"platform": {"limits_file": str(EXAMPLE_LIMITS)}}
    ).start()
    try:
        server.register()
        yield server
    finally:
        server.unregister()
        server.stop()


def kubectl(plane: ControlPlane, *args: str, obj: Any = None) -> Any:
    stdin = json.dumps(obj) if obj is not None else None
    return plane.kubectl(*args, input=stdin, check=False)


def create(plane: ControlPlane, obj: dict[str, Any], namespace: str) -> Any:
    obj["metadata"]["namespace"] = namespace
    return kubectl(plane, "create", "-f", "-", obj=obj)


def denied(result: Any, expected: str) -> bool:
    return (
        result.returncode != 0
        and 'admission webhook "pods.nodelimits.io" denied the request' in result.stderr
        and expected in result.stderr
    )


# --- finding 2: re-targeting a checked Pod ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param(GROUP_KEY, "cpu 100 > 40 cores per node", id="overwrite"),
        pytest.param("NodeLimits.io/Resource-Group", "conflicting annotations", id="variant"),
    ],
)
def test_annotating_a_checked_pod_into_a_smaller_group_is_denied(
    control_plane: ControlPlane, namespace: str, webhook: Webhook, key: str, expected: str
) -> None:
    big = pod(container(cpu="100"), name="big", group="a800x8")
    assert create(control_plane, big, namespace).returncode == 0
    result = kubectl(control_plane, "annotate", "--overwrite", "pod", "big", "-n", namespace,
                     f"{key}=TeslaM40")  # fmt: skip
    assert denied(result, expected), result.stderr
    got = json.loads(kubectl(control_plane, "get", "pod", "big", "-n", namespace,
                             "-o", "json").stdout)  # fmt: skip
    assert got["metadata"]["annotations"] == {GROUP_KEY: "a800x8"}


def test_adding_a_group_to_an_unannotated_pod_is_checked(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    assert create(control_plane, pod(container(cpu="100"), name="free", group=None),
                  namespace).returncode == 0  # fmt: skip
    result = kubectl(control_plane, "annotate", "pod", "free", "-n", namespace,
                     f"{GROUP_KEY}=TeslaM40")  # fmt: skip
    assert denied(result, "cpu 100 > 40 cores per node"), result.stderr


def test_other_pod_updates_never_reach_the_webhook(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    """Labels and other annotations on a pod that no longer fits: the chart's
    matchConditions do not send them, so they never depend on the webhook."""
    assert create(control_plane, pod(container(cpu="100"), name="old", group="a800x8"),
                  namespace).returncode == 0  # fmt: skip
    before = len(webhook.decisions())
    for args in (("label", "pod", "old", "team=a"), ("annotate", "pod", "old", "note=x")):
        result = kubectl(control_plane, *args, "-n", namespace)
        assert result.returncode == 0, result.stderr
    assert len(webhook.decisions()) == before


# --- finding 3: case-variant keys ---------------------------------------------------------


def test_case_variant_group_keys_that_disagree_are_denied_naming_both(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    obj = pod(container(cpu="1"), name="two", group=None)
    obj["metadata"]["annotations"] = {GROUP_KEY: "a800x8",
                                      "NodeLimits.io/Resource-Group": "TeslaM40"}  # fmt: skip
    result = create(control_plane, obj, namespace)
    assert denied(result, "conflicting annotations"), result.stderr
    assert "a800x8" in result.stderr
    assert "TeslaM40" in result.stderr


# --- finding 7: forged owner references ---------------------------------------------------


@pytest.mark.parametrize(
    "owner",
    [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "any", "uid": "0000-9",
         "controller": True},
        {"apiVersion": "example.com/v1", "kind": "Job", "name": "any", "uid": "0000-9"},
    ],
    ids=["batch-v1-job", "invented-job"],
)  # fmt: skip
def test_an_explicit_deadline_over_max_time_is_denied_whoever_owns_the_pod(
    control_plane: ControlPlane, namespace: str, webhook: Webhook, owner: dict[str, Any]
) -> None:
    obj = pod(container(cpu="1"), name="forged", group="kshdtest", deadline=99999999)
    obj["metadata"]["ownerReferences"] = [owner]
    result = create(control_plane, obj, namespace)
    assert denied(result, "activeDeadlineSeconds 99999999s"), result.stderr
