"""The chart's continuous audit (audit.enabled) in real pods on the real node: the platform
shrinks a group's limits and a workload admitted before is reported and told, then cleared."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

from devtools.builders import container, job
from tests.node.conftest import NodeSession
from tests.node.kube import apply, events, get, runnable, wait_until

GROUP = "a800x8"
AUDIT = {
    "audit": {
        "enabled": True,
        "installCRD": True,
        "interval": 600,  # far beyond the waits: a report change here came from the limits
        "limitsPoll": 1,
        "events": {"enabled": True},
    },
    "config": {"cache": {"ttl": 2, "max_stale": 60}},
}


def set_cards(session: NodeSession, cards: int) -> None:
    """The simulator pod's admin API (through its ClusterIP): the group's cards per node."""
    [group] = [g for g in session.simulator.groups if g["resourceGroup"] == GROUP]
    request = urllib.request.Request(  # noqa: S310 - the node's private service network
        f"{session.simulator.url}/_simulator/groups",
        data=json.dumps({**group, "nvLimits": cards}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


def results(session: NodeSession, namespace: str) -> dict[str, str]:
    """The namespace's PolicyReport as kind/name -> verdict (pass or fail; warnings are
    results of their own and left out), {} while there is none."""
    got = session.node.kubectl(
        "get", "policyreports.wgpolicyk8s.io", "nodelimits", "-n", namespace, "-o", "json",
        check=False,
    )  # fmt: skip
    if got.returncode != 0:
        return {}
    report: dict[str, Any] = json.loads(got.stdout)
    return {
        f"{r['resources'][0]['kind']}/{r['resources'][0]['name']}": r["result"]
        for r in report.get("results", [])
        if r["result"] != "warn"
    }


def install_audit(session: NodeSession) -> None:
    session.install(AUDIT)
    wait_until(
        "an audit replica Ready",
        lambda: any(
            c["type"] == "Ready" and c["status"] == "True"
            for p in get(session.node, "pods", "-n", "nodelimits-system",
                         "-l", "app.kubernetes.io/component=audit")["items"]
            for c in p.get("status", {}).get("conditions", [])
        ),
    )  # fmt: skip


def waited(session: NodeSession, what: str, check: Callable[[], Any]) -> Any:
    """wait_until, its failure carrying every PolicyReport of the cluster."""
    try:
        return wait_until(what, check)
    except AssertionError as exc:
        reports = session.node.kubectl(
            "get", "policyreports.wgpolicyk8s.io", "-A", "-o", "yaml", check=False
        )
        raise AssertionError(f"{exc}\n--- PolicyReports\n{reports.stdout}") from None


def test_a_shrink_on_the_platform_fails_the_job_reports_it_and_tells_its_owner(
    nodelimits_absent: NodeSession, namespace: str
) -> None:
    session, node = nodelimits_absent, nodelimits_absent.node
    # Four cards: fits a800x8 (4 per node) today; suspended, so no pod waits for them here;
    # a deadline within the group's maxTime, so no warning result sits beside the verdict.
    # Created first: the audit's first run (on becoming leader) judges it.
    train = runnable(
        job(container(cpu="100m", gpu=4), name="train", group=GROUP, deadline=3600),
        namespace=namespace,
    )
    train["spec"]["suspend"] = True
    created = apply(node, train)
    assert created.returncode == 0, created.stderr
    passing, failing = {"Job/train": "pass"}, {"Job/train": "fail"}
    install_audit(session)
    try:
        waited(session, "the Job reported passing", lambda: results(session, namespace) == passing)
        set_cards(session, 2)
        # the platform's change reached nodelimits: the webhook now denies the same Job
        again = {**train, "metadata": {**train["metadata"], "name": "train-again"}}
        waited(
            session,
            "the webhook denying a 4-card Job",
            lambda: (
                "nvidia.com/gpu 4 > 2"
                in node.kubectl(
                    "create", "--dry-run=server", "-f", "-", input=json.dumps(again), check=False
                ).stderr
            ),
        )
        waited(session, "the Job reported failing", lambda: results(session, namespace) == failing)
        [note] = waited(
            session,
            "a Warning Event on the Job",
            lambda: events(node, namespace, "train", "DoesNotFitResourceGroup"),
        )
        assert f'does not fit one node of resource group "{GROUP}"' in note
        assert "nvidia.com/gpu 4 > 2 cards per node" in note
        set_cards(session, 4)
        waited(session, "the failure cleared", lambda: results(session, namespace) == passing)
    finally:
        set_cards(session, 4)
        session.uninstall()
