"""The chart's pods serving the apiserver on the real node: upgrades, crashes, drains.

Every test starts from nodelimits installed (2 replicas Ready behind the Service).
"""

from __future__ import annotations

import sys
from typing import Any

from devtools.realnode import NODE_NAME
from devtools.stack import RELEASE, RELEASE_NAMESPACE
from tests.node.conftest import NodeSession
from tests.node.kube import get, pods, ready, wait_until
from tests.node.load import CreateStream

SELECTOR = f"app.kubernetes.io/instance={RELEASE}"


def replicas(session: NodeSession) -> list[dict[str, Any]]:
    return pods(session.node, RELEASE_NAMESPACE, SELECTOR)


def test_the_chart_runs_two_ready_replicas_behind_its_service(
    nodelimits_installed: NodeSession,
) -> None:
    running = replicas(nodelimits_installed)

    assert len(running) == 2
    assert all(ready(p) for p in running)
    config = get(nodelimits_installed.node, "validatingwebhookconfigurations", "-l", SELECTOR)
    services = {
        w["clientConfig"].get("service", {}).get("name") for w in config["items"][0]["webhooks"]
    }
    assert services == {RELEASE}  # the apiserver calls the Service, not a URL


def test_helm_upgrade_under_a_steady_stream_of_creates_gets_every_verdict_right(
    nodelimits_installed: NodeSession, namespace: str
) -> None:
    """50 CREATEs/s for the whole rollout of a changed value: with maxUnavailable 0 and
    readiness, no request should fail; failures are counted and printed either way."""
    session = nodelimits_installed
    old = {p["metadata"]["name"] for p in replicas(session)}

    with CreateStream(session.node, namespace, rate=50) as stream:
        session.install({"config": {"log_level": "WARNING"}}, upgrade=True)
        wait_until(
            "two new replicas Ready and the old ones gone",
            lambda: (
                {p["metadata"]["name"] for p in replicas(session)}.isdisjoint(old)
                and len([p for p in replicas(session) if ready(p)]) == 2
            ),
        )

    tally = stream.tally
    print(f"helm upgrade under load: {dict(tally.counts)}; first failures: {tally.failures}",
          file=sys.stderr)  # fmt: skip
    assert tally.sent > 100
    assert tally.counts["wrong"] == 0, tally.failures
    assert tally.counts["failed"] == 0, tally.failures


def test_a_killed_replica_is_restarted_by_the_kubelet_while_the_other_serves(
    nodelimits_installed: NodeSession, namespace: str
) -> None:
    session = nodelimits_installed
    victim, other = sorted(replicas(session), key=lambda p: p["metadata"]["name"])
    container_id = victim["status"]["containerStatuses"][0]["containerID"].split("//")[1]
    restarts = victim["status"]["containerStatuses"][0]["restartCount"]

    with CreateStream(session.node, namespace, rate=20) as stream:
        session.node.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)
        restarted = wait_until(
            "the killed replica restarted and Ready",
            lambda: [
                p
                for p in replicas(session)
                if p["metadata"]["name"] == victim["metadata"]["name"]
                and p["status"]["containerStatuses"][0]["restartCount"] > restarts
                and ready(p)
            ],
        )

    print(f"one replica killed: {dict(stream.tally.counts)}; {stream.tally.failures}",
          file=sys.stderr)  # fmt: skip
    assert restarted
    survivor = next(
        p for p in replicas(session) if p["metadata"]["name"] == other["metadata"]["name"]
    )
    assert survivor["status"]["containerStatuses"][0]["restartCount"] == 0
    assert stream.tally.counts["wrong"] == 0, stream.tally.failures
    # the survivor answered: most requests were judged even while one replica was down
    assert stream.tally.counts["right"] > stream.tally.counts["failed"]


def test_a_drain_stops_at_the_disruption_budget_with_one_replica_serving(
    nodelimits_installed: NodeSession,
) -> None:
    node = nodelimits_installed.node
    try:
        drain = node.kubectl(
            "drain", NODE_NAME, f"--pod-selector={SELECTOR}", "--ignore-daemonsets",
            "--delete-emptydir-data", "--timeout=10s", check=False, timeout=60,
        )  # fmt: skip

        assert drain.returncode != 0
        assert "disruption budget" in drain.stderr
        serving = [p for p in replicas(nodelimits_installed) if ready(p)]
        assert len(serving) == 1
    finally:
        node.kubectl("uncordon", NODE_NAME)
    wait_until(
        "both replicas Ready again",
        lambda: len([p for p in replicas(nodelimits_installed) if ready(p)]) == 2,
    )


def test_helm_test_passes_its_pod_denied_by_the_installed_webhook_and_cleans_up(
    nodelimits_installed: NodeSession,
) -> None:
    """The chart's `helm test` (templates/tests/denial.yaml) on the real node: its pod runs
    the nodelimits image and dry-runs an oversized pod, which the replicas must deny."""
    node = nodelimits_installed.node

    result = node.helm("test", RELEASE, "--namespace", RELEASE_NAMESPACE, "--timeout", "120s",
                       check=False, timeout=180)  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Phase:          Succeeded" in result.stdout
    names = node.kubectl("get", "pods,serviceaccounts", "-n", RELEASE_NAMESPACE,
                         "-o", "name").stdout.split()  # fmt: skip
    assert [n for n in names if n.endswith("-test")] == []  # deleted once passed


def test_helm_uninstall_leaves_no_webhook_configuration_and_no_pods(
    nodelimits_installed: NodeSession,
) -> None:
    node = nodelimits_installed.node

    nodelimits_installed.uninstall()

    configs = get(node, "validatingwebhookconfigurations")["items"]
    assert [c["metadata"]["name"] for c in configs] == []
    wait_until("no nodelimits pods", lambda: not replicas(nodelimits_installed))
    left = node.kubectl("get", "all,configmaps,secrets,pdb", "-n", RELEASE_NAMESPACE,
                        "-l", SELECTOR, "-o", "name").stdout  # fmt: skip
    assert left.strip() == ""
