"""The reason nodelimits exists, on a real node: the pod that can never fit.

The node has 2 nvidia.com/gpu, as one node of TeslaM40 has. Without nodelimits, a pod
asking for 3 is admitted and the scheduler leaves it Pending; with nodelimits, the same
`kubectl apply` is refused with the reason.
"""

from __future__ import annotations

from devtools.builders import container, pod
from tests.node.conftest import NodeSession
from tests.node.kube import apply, events, get, runnable, wait_until


def three_gpu_pod(namespace: str) -> dict[str, object]:
    return runnable(pod(container(cpu="100m", gpu=3), name="three-gpus"), namespace=namespace)


def test_without_nodelimits_a_pod_asking_more_gpus_than_the_node_has_stays_pending(
    nodelimits_absent: NodeSession, namespace: str
) -> None:
    node = nodelimits_absent.node

    result = apply(node, three_gpu_pod(namespace))

    assert result.returncode == 0, result.stderr
    messages = wait_until(
        "a FailedScheduling event",
        lambda: events(node, namespace, "three-gpus", "FailedScheduling"),
    )
    assert any("Insufficient nvidia.com/gpu" in m for m in messages), messages
    assert get(node, "pod", "three-gpus", "-n", namespace)["status"]["phase"] == "Pending"


def test_with_nodelimits_the_same_apply_is_denied_with_the_reason(
    nodelimits_installed: NodeSession, namespace: str
) -> None:
    result = apply(nodelimits_installed.node, three_gpu_pod(namespace))

    assert result.returncode != 0
    assert "denied the request: nodelimits: Pod" in result.stderr
    assert "nvidia.com/gpu 3 > 2 cards per node" in result.stderr
