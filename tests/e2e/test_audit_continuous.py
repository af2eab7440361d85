"""``nodelimits audit-controller`` on the real control plane with the simulator (issue 16,
part 2): two replicas, one Lease, PolicyReports that follow the platform's limits.

Workloads that fit a800x8 are reported as passes; the simulator lowers nvLimits 4 -> 2 and,
long before the (600 s) interval, the report fails exactly the three 4-card objects (the
limits change is what triggered it: the leader's runs_total{trigger="limits"}); restored,
the fails clear. The replica without the lease never writes (its metrics, the report's
managedFields); killed, the leader's lease expires and the other replica takes over. With
--report-api openreports.io the same findings go to openreports.io/v1alpha1 Reports (the
chart's minimal CRDs) and no PolicyReport is written. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools.controlplane import ControlPlane, free_port
from devtools.stack import CHART, Process, SimulatorProcess
from tests.e2e.test_audit import A800, create, set_cards, workloads

CRDS = CHART / "files" / "policyreport-crds.yaml"
OPENREPORTS_CRDS = CHART / "files" / "openreports-crds.yaml"
INTERVAL = 600  # far beyond every wait below: a change seen sooner came from the limits
WAIT = 90.0
LEASE_SECONDS = 4


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    sim = SimulatorProcess(tmp_path_factory.mktemp("audit-c-sim"), {"resourceGroups": [A800]})
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory, simulator: SimulatorProcess) -> Path:
    workdir = tmp_path_factory.mktemp("audit-c-config")
    config = {
        "platform": simulator.platform_config(workdir),
        "cache": {"ttl": 1.0},
        "log_level": "INFO",
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def install_crds(plane: ControlPlane, path: Path, group: str, plurals: tuple[str, ...]) -> None:
    plane.kubectl("apply", "-f", str(path))
    for name in plurals:
        plane.kubectl("wait", "--for=condition=Established", f"crd/{name}.{group}",
                      "--timeout=30s")  # fmt: skip


@pytest.fixture(scope="module")
def report_crds(control_plane: ControlPlane) -> None:
    install_crds(control_plane, CRDS, "wgpolicyk8s.io", ("policyreports", "clusterpolicyreports"))


@pytest.fixture(scope="module")
def openreports_crds(control_plane: ControlPlane) -> None:
    install_crds(control_plane, OPENREPORTS_CRDS, "openreports.io", ("reports", "clusterreports"))


class Replica:
    def __init__(
        self,
        plane: ControlPlane,
        config: Path,
        namespace: str,
        identity: str,
        workdir: Path,
        *extra: str,
    ) -> None:
        self.identity = identity
        self.port = free_port()
        env = plane.env()
        env["NODELIMITS_CONFIG_FILE"] = str(config)
        argv = [
            sys.executable, "-m", "webhook", "audit-controller", "--live", "-n", namespace,
            "--interval", str(INTERVAL), "--limits-poll", "1", "--lease-namespace", namespace,
            "--identity", identity, "--lease-duration", str(LEASE_SECONDS),
            "--metrics-address", "127.0.0.1", "--metrics-port", str(self.port), *extra,
        ]  # fmt: skip
        self.process = Process(identity, argv, workdir / f"{identity}.log", env)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def kill(self) -> None:
        os.killpg(self.process.proc.pid, signal.SIGKILL)
        self.process.proc.wait(10)


def wait_for(what: str, check: Callable[[], Any], replicas: list[Replica]) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    logs = "\n".join(f"--- {r.identity}\n{r.process.tail(30)}" for r in replicas)
    raise AssertionError(f"{what}: not within {WAIT:.0f}s\n{logs}")


def get_report(
    plane: ControlPlane, namespace: str, resource: str = "policyreports.wgpolicyk8s.io"
) -> dict[str, Any] | None:
    got = plane.kubectl(
        "get", resource, "nodelimits", "-n", namespace, "-o", "json",
        "--show-managed-fields", check=False,
    )  # fmt: skip
    return json.loads(got.stdout) if got.returncode == 0 else None


def outcome(report: dict[str, Any] | None) -> dict[str, str] | None:
    if report is None:
        return None
    return {
        f"{r['resources'][0]['kind']}/{r['resources'][0]['name']}": r["result"]
        for r in report["results"]
    }


def holder(plane: ControlPlane, namespace: str) -> str:
    got = plane.kubectl("get", "lease", "nodelimits-audit", "-n", namespace, "-o", "json",
                        check=False)  # fmt: skip
    if got.returncode != 0:
        return ""
    return str(json.loads(got.stdout)["spec"].get("holderIdentity") or "")


FITS = {"Pod/pod-4": "pass", "Pod/pod-1": "pass", "Job/job-4": "pass",
        "Deployment/serve-2": "pass", "Deployment/serve-4": "pass"}  # fmt: skip
"""What the reports say about the workloads while a800x8 has 4 cards per node."""
OVER = {"Pod/pod-4", "Job/job-4", "Deployment/serve-4"}
"""The workloads that no longer fit once it has 2."""
SHRUNK = {k: "fail" if k in OVER else v for k, v in FITS.items()}


def create_workloads(plane: ControlPlane, namespace: str) -> None:
    """test_audit's workloads but its Trainer (whose CRD is that module's)."""
    create(plane, [o for o in workloads(namespace) if o["kind"] != "Trainer"])


def managers(report: dict[str, Any]) -> set[str]:
    return {m["manager"] for m in report["metadata"].get("managedFields", [])}


@pytest.mark.usefixtures("report_crds")
def test_two_replicas_one_writer_reports_follow_the_limits(
    control_plane: ControlPlane,
    simulator: SimulatorProcess,
    config_file: Path,
    namespace: str,
    tmp_path: Path,
) -> None:
    create_workloads(control_plane, namespace)

    replicas = [
        Replica(control_plane, config_file, namespace, name, tmp_path)
        for name in ("audit-a", "audit-b")
    ]
    try:
        wait_for(
            "the first report", lambda: outcome(get_report(control_plane, namespace)) == FITS,
            replicas,
        )  # fmt: skip
        leader_id = wait_for("a lease holder", lambda: holder(control_plane, namespace), replicas)
        [leader] = [r for r in replicas if r.identity == leader_id]
        [follower] = [r for r in replicas if r is not leader]
        assert leader.metric("nodelimits_audit_leader") == 1
        assert follower.metric("nodelimits_audit_leader") == 0

        set_cards(simulator, 2)
        try:
            wait_for(
                "the fails after the shrink",
                lambda: outcome(get_report(control_plane, namespace)) == SHRUNK,
                replicas,
            )
            assert leader.metric("nodelimits_audit_runs_total", trigger="limits") >= 1
            assert leader.metric("nodelimits_audit_runs_total", trigger="interval") == 0
            report = get_report(control_plane, namespace)
            assert report is not None
            assert report["summary"] == {"pass": 2, "fail": 3, "warn": 0, "error": 0, "skip": 0}
            failed = [r for r in report["results"] if r["result"] == "fail"]
            assert {(r["rule"], r["properties"]["allowed"]) for r in failed} == {
                ("nvidia.com/gpu", "2")
            }
            violations = {
                labels: value
                for (name, labels), value in leader.metrics().items()
                if name == "nodelimits_audit_violations"
            }
            assert violations == {
                (("group", "a800x8"), ("kind", k), ("resource", "nvidia.com/gpu")): 1.0
                for k in ("Pod", "Job", "Deployment")
            }
            assert leader.metric("nodelimits_audit_objects_scanned", kind="Pod") == 2
            assert leader.metric("nodelimits_audit_last_run_timestamp_seconds") > 0
        finally:
            set_cards(simulator, 4)
        wait_for(
            "the fails to clear", lambda: outcome(get_report(control_plane, namespace)) == FITS,
            replicas,
        )  # fmt: skip

        # The follower never wrote: no write counted, no field of the report is its.
        assert follower.metric("nodelimits_audit_report_writes_total", operation="create") == 0
        assert follower.metric("nodelimits_audit_report_writes_total", operation="replace") == 0
        assert follower.metric("nodelimits_audit_runs_total", trigger="start") == 0
        assert leader.metric("nodelimits_audit_report_writes_total", operation="replace") >= 2
        report = get_report(control_plane, namespace)
        assert report is not None
        assert managers(report) == {f"nodelimits-audit-{leader.identity}"}

        # The leader dies without releasing: the follower takes over once the lease expires,
        # audits at once and writes.
        leader.kill()
        wait_for(
            "the takeover", lambda: holder(control_plane, namespace) == follower.identity,
            [follower],
        )  # fmt: skip
        set_cards(simulator, 2)
        try:
            wait_for(
                "the new leader's fails",
                lambda: outcome(get_report(control_plane, namespace)) == SHRUNK,
                [follower],
            )
        finally:
            set_cards(simulator, 4)
        report = get_report(control_plane, namespace)
        assert report is not None
        assert f"nodelimits-audit-{follower.identity}" in managers(report)
        assert follower.metric("nodelimits_audit_leader") == 1
    finally:
        for r in replicas:
            r.process.stop()


def warning_events(plane: ControlPlane, namespace: str) -> dict[str, str]:
    """The audit's Events in the namespace: regarding kind/name -> note."""
    got = plane.kubectl("get", "events.events.k8s.io", "-n", namespace, "-o", "json")
    return {
        f"{e['regarding']['kind']}/{e['regarding']['name']}": e["note"]
        for e in json.loads(got.stdout)["items"]
        if e.get("reportingController") == "nodelimits.io/audit" and e["type"] == "Warning"
    }


@pytest.mark.usefixtures("report_crds")
def test_with_events_each_object_that_stops_fitting_gets_one_warning_event(
    control_plane: ControlPlane,
    simulator: SimulatorProcess,
    config_file: Path,
    namespace: str,
    tmp_path: Path,
) -> None:
    create_workloads(control_plane, namespace)
    replica = Replica(control_plane, config_file, namespace, "audit-events", tmp_path, "--events")
    try:
        wait_for(
            "the first audit", lambda: get_report(control_plane, namespace) is not None, [replica]
        )
        assert warning_events(control_plane, namespace) == {}  # everything fits
        set_cards(simulator, 2)
        try:
            events = wait_for(
                "the Events after the shrink",
                lambda: (e := warning_events(control_plane, namespace)) and len(e) >= 3 and e,
                [replica],
            )
        finally:
            set_cards(simulator, 4)
        assert set(events) == OVER
        for note in events.values():
            assert note.startswith("nodelimits: ")
            assert "nvidia.com/gpu 4 > 2 cards per node" in note
        assert replica.metric("nodelimits_audit_events_total", outcome="sent") == 3
    finally:
        replica.process.stop()


@pytest.mark.usefixtures("openreports_crds")
def test_with_openreports_the_findings_go_to_reports_and_clear_on_restore(
    control_plane: ControlPlane,
    simulator: SimulatorProcess,
    config_file: Path,
    namespace: str,
    tmp_path: Path,
) -> None:
    create_workloads(control_plane, namespace)

    def report() -> dict[str, Any] | None:
        return get_report(control_plane, namespace, "reports.openreports.io")

    replica = Replica(control_plane, config_file, namespace, "audit-or", tmp_path,
                      "--report-api", "openreports.io")  # fmt: skip
    try:
        wait_for("the first Report", lambda: outcome(report()) == FITS, [replica])
        set_cards(simulator, 2)
        try:
            wait_for("the fails after the shrink", lambda: outcome(report()) == SHRUNK, [replica])
            got = report()
            assert got is not None
            assert (got["apiVersion"], got["kind"], got["source"]) == (
                "openreports.io/v1alpha1", "Report", "nodelimits",
            )  # fmt: skip
            assert got["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "nodelimits"}
            assert got["summary"] == {"pass": 2, "fail": 3, "warn": 0, "error": 0, "skip": 0}
            failed = [r for r in got["results"] if r["result"] == "fail"]
            assert {(r["policy"], r["rule"], r["properties"]["requested"],
                     r["properties"]["allowed"]) for r in failed} == {
                ("nodelimits", "nvidia.com/gpu", "4", "2")
            }  # fmt: skip
            assert all("nvidia.com/gpu 4 > 2 cards per node" in r["message"] for r in failed)
            assert all(r["resources"][0]["uid"] for r in got["results"])
            assert all(r["timestamp"]["seconds"] > 0 for r in got["results"])
        finally:
            set_cards(simulator, 4)
        wait_for("the fails to clear", lambda: outcome(report()) == FITS, [replica])
        cleared = report()
        assert cleared is not None
        assert cleared["summary"]["fail"] == 0
        assert managers(cleared) == {"nodelimits-audit-audit-or"}
        # Only the chosen API is written: no PolicyReport (nor a ClusterReport) appeared.
        assert get_report(control_plane, namespace) is None
        assert replica.metric("nodelimits_audit_report_writes_total", operation="replace") >= 2
    finally:
        replica.process.stop()
