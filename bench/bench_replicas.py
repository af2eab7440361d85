"""Two webhook replicas behind the chart's Service against one, on the real node.

Scaling out the way users would (issue 18): the chart installed by helm on the real
single-node cluster (devtools/realnode.py, devtools/nodestack.py: the image built from the
Dockerfile, the platform simulator as a pod), ``replicaCount`` changed by ``helm upgrade``,
the apiserver calling the webhook through the Service's ClusterIP (kube-proxy's iptables
rules pick a replica per connection). In rounds alternating between the replica counts,
server-side dry-run creates of bench_apiserver's ~3 KB annotated Pod go through the
apiserver: open loop at ``--rates`` (latency from each request's due time) and a closed
loop of ``--concurrency`` workers (the saturation rate), by bench_apiserver's own load
generator (a separate process).

Webhook CPU is read from each replica container's cgroup (cpuacct.usage) around every
row, less what the replicas burn idle over the same time, and divided by the creates
served: the sum over replicas per create, and each replica's share (how evenly the
Service spread the apiserver's connections). The apiserver's CPU comes from /proc.

    python -m bench.bench_replicas [--replicas 1,2] [--rounds 2] [--rates 25,50,100]
        [--duration 4] [--concurrency 16] [--restart] [--cpu-limit 50m]

The apiserver keeps its keep-alive connections to the webhook: after a scale-out the
replica that was there keeps those it had, the new one gets only the connections opened
since (the CPU split shows it). ``--restart`` restarts the replicas after each scaling,
so every connection is opened afresh through the Service: the balanced case. On a small
machine the apiserver saturates long before one replica does; ``--cpu-limit`` caps each
replica (CFS quota) so that the webhook is what saturates, as a busy cluster's would.

Root, and the node binaries and images the node tests use (tests/node). One run holds the
node (a file lock); stopping it undoes every process, mount, iptables rule and cgroup, and
the run ends by comparing the machine with its state before the start. Figures go to
docs/performance.md ("Replicas on the real node"); raw results to .cache/bench/replicas.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.bench_apiserver import (
    NAMESPACE,
    PATHS,
    _completed_rps,
    _list,
    bench_pod,
    load_spec,
    run_load,
    settle,
)
from bench.bench_webhook import cpu_seconds
from devtools import hoststate, nodeimages, nodestack, realnode
from devtools.controlplane import TestbinUnavailable
from devtools.stack import EXAMPLE_LIMITS, RELEASE, RELEASE_NAMESPACE

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".cache" / "bench"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
CONTAINER = "nodelimits"
CGROUP_CPUACCT = Path("/sys/fs/cgroup/cpuacct")
SCALE_TIMEOUT = 120.0
WEBHOOK_IDLE = 0.05
"""A replica counts as idle below this share of a core (its probes and timers)."""
PROXY_SYNC = 2.0
"""Seconds allowed for kube-proxy to write the rules of a new endpoint once it is Ready."""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- the replicas ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Replica:
    pod: str
    cgroup: Path  # the container's cpuacct directory

    def cpu_seconds(self) -> float:
        return int((self.cgroup / "cpuacct.usage").read_text()) / 1e9


def _container_cgroup(pod_uid: str, container_id: str) -> Path:
    """The container's cpuacct cgroup (cgroup v1, the kubelet's cgroupfs driver: the
    layout devtools/realnode.py sets up), under whichever QoS class the pod has."""
    leaf = f"pod{pod_uid}/{container_id}"
    for pattern in (f"kubepods*/{leaf}", f"kubepods*/*/{leaf}"):
        for found in CGROUP_CPUACCT.glob(pattern):
            if (found / "cpuacct.usage").is_file():
                return found
    raise RuntimeError(f"no cpuacct cgroup for container {container_id[:12]} of pod {pod_uid}")


def replicas(node: realnode.RealNode) -> list[Replica]:
    """The release's webhook pods that are Ready and not terminating."""
    listed = node.kubectl("get", "pods", "-n", RELEASE_NAMESPACE, "-l", SELECTOR, "-o", "json")
    out = []
    for pod in json.loads(listed.stdout)["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        for status in pod.get("status", {}).get("containerStatuses", []):
            if status["name"] == CONTAINER and status.get("ready"):
                container_id = status["containerID"].split("//", 1)[1]
                cgroup = _container_cgroup(pod["metadata"]["uid"], container_id)
                out.append(Replica(pod["metadata"]["name"], cgroup))
    return sorted(out, key=lambda r: r.pod)


def _pod_count(node: realnode.RealNode) -> int:
    listed = node.kubectl("get", "pods", "-n", RELEASE_NAMESPACE, "-l", SELECTOR, "-o", "name")
    return len(listed.stdout.split())


def _ready_endpoints(node: realnode.RealNode) -> int:
    listed = node.kubectl(
        "get", "endpointslices", "-n", RELEASE_NAMESPACE,
        "-l", f"kubernetes.io/service-name={RELEASE}", "-o", "json",
    )  # fmt: skip
    return sum(
        1
        for item in json.loads(listed.stdout)["items"]
        for endpoint in item.get("endpoints") or []
        if endpoint.get("conditions", {}).get("ready")
    )


def scale(
    node: realnode.RealNode,
    image: nodeimages.ImageArchive,
    simulator: nodestack.Simulator,
    count: int,
    *,
    first: bool,
    restart: bool = False,
    cpu_limit: str = "",
) -> list[Replica]:
    """`helm install` (first) or `helm upgrade` to `count` replicas (with `restart`, then
    `kubectl rollout restart`: every replica new, so the apiserver's connections to the
    webhook are all opened afresh through the Service), then until exactly `count` pods
    exist (a removed one has drained), all Ready and in the Service."""
    values: dict[str, Any] = {"replicaCount": count}
    if cpu_limit:
        values["resources"] = {"limits": {"cpu": cpu_limit}}
    nodestack.install(node, image, simulator, values, upgrade=not first)
    if restart:
        deployment = f"deployment/{RELEASE}"
        node.kubectl("rollout", "restart", deployment, "-n", RELEASE_NAMESPACE)
        node.kubectl(
            "rollout", "status", deployment, "-n", RELEASE_NAMESPACE,
            f"--timeout={SCALE_TIMEOUT:.0f}s", timeout=SCALE_TIMEOUT + 10,
        )  # fmt: skip
    deadline = time.monotonic() + SCALE_TIMEOUT
    while time.monotonic() < deadline:
        found = replicas(node)
        if len(found) == count == _pod_count(node) and _ready_endpoints(node) == count:
            time.sleep(PROXY_SYNC)
            nodestack.wait_enforcing(node)
            return found
        time.sleep(0.5)
    raise nodestack.NodeStackError(
        f"not {count} Ready replicas behind the Service after {SCALE_TIMEOUT:g} s\n"
        f"{nodestack.diagnose(node, RELEASE_NAMESPACE)}"
    )


# --- measurement -----------------------------------------------------------------------------


@dataclass
class Result:
    replicas: int
    rate: float  # 0: closed loop
    round: int
    load: dict[str, Any]
    apiserver_cpu_us: float
    webhook_cpu_us: float  # all replicas, per create
    shares: list[float]  # each replica's part of the webhook CPU

    @property
    def row(self) -> str:
        return f"{self.rate:.0f}/s" if self.rate else "closed"


@dataclass
class Bench:
    node: realnode.RealNode
    work: Path
    args: argparse.Namespace
    results: list[Result] = field(default_factory=list)

    def run_row(self, count: int, found: list[Replica], rate: float, round_: int) -> Result:
        plane = self.node.plane
        assert plane is not None
        body = self.work / "pod.json"
        spec = load_spec(plane, PATHS["pod"] + "?dryRun=All", body, rate, self.args)
        spec_path = self.work / "load.json"
        spec_path.write_text(json.dumps(spec))
        apiserver = self.node.pids()["kube-apiserver"]
        meters: list[Callable[[], float]] = [lambda: cpu_seconds(apiserver)]
        meters += [r.cpu_seconds for r in found]
        # The apiserver settled (bench_apiserver's rule), then the replicas: a capped replica
        # still working off the last row's backlog is not idle, and its rate would be
        # subtracted from this row's CPU.
        settle([apiserver], self.args.settle)
        deadline = time.monotonic() + self.args.settle
        while max((idle := _rates(meters, 1.0))[1:]) > WEBHOOK_IDLE:
            if time.monotonic() > deadline:
                busy = ", ".join(f"{cores:.2f}" for cores in idle[1:])
                print(f"    replicas not idle after {self.args.settle:g} s ({busy} cores): "
                      "CPU per create is a lower bound", flush=True)  # fmt: skip
                break
        cpu0, t0 = [m() for m in meters], time.monotonic()
        limit = self.args.duration + self.args.warmup + self.args.drain + 60
        result = run_load(spec_path, limit)
        cpu1, t1 = [m() for m in meters], time.monotonic()
        served = max(result["total"], 1)
        used = [
            max(b - a - rate_ * (t1 - t0), 0.0)
            for a, b, rate_ in zip(cpu0, cpu1, idle, strict=True)
        ]
        webhook = sum(used[1:])
        out = Result(
            count,
            rate,
            round_,
            result,
            used[0] / served * 1e6,
            webhook / served * 1e6,
            [u / webhook if webhook else float("nan") for u in used[1:]],
        )
        self.results.append(out)
        r = result
        print(
            f"  r{round_} replicas {count} {out.row:<7} p50 {r['p50_ms']:8.2f} ms  "
            f"p99 {r['p99_ms']:8.2f} ms  {_completed_rps(r):6.0f}/s  errors {r['errors']}  "
            f"apiserver {out.apiserver_cpu_us:6.0f} us  webhook {out.webhook_cpu_us:6.0f} us "
            f"({_split(out.shares)})  load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        if r["errors"]:
            print(f"    errors: {r['error_kinds']}", flush=True)
        return out


def _rates(meters: list[Callable[[], float]], seconds: float) -> list[float]:
    """CPU seconds per second of each meter over `seconds`."""
    before, t0 = [m() for m in meters], time.monotonic()
    time.sleep(seconds)
    after, t1 = [m() for m in meters], time.monotonic()
    return [(b - a) / (t1 - t0) for a, b in zip(before, after, strict=True)]


def _split(shares: list[float]) -> str:
    return "/".join(f"{s * 100:.0f}%" for s in shares)


# --- report ----------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(results: list[Result], counts: list[int]) -> dict[str, Any]:
    """Per (replicas, row): medians over rounds; the ratio to the first count's figure of
    the same round and row (same run, same machine minute)."""
    base = counts[0]
    by = {(r.replicas, r.row, r.round): r for r in results}
    table: dict[str, Any] = {}
    for count in counts:
        for row in dict.fromkeys(r.row for r in results):
            mine = [r for r in results if r.replicas == count and r.row == row]
            if not mine:
                continue
            ratios: dict[str, list[float]] = {"p50": [], "p99": [], "rps": [], "cpu": []}
            for r in mine:
                other = by.get((base, row, r.round))
                if other is None:
                    continue
                ratios["p50"].append(r.load["p50_ms"] / other.load["p50_ms"])
                ratios["p99"].append(r.load["p99_ms"] / other.load["p99_ms"])
                if _completed_rps(other.load):
                    ratios["rps"].append(_completed_rps(r.load) / _completed_rps(other.load))
                if other.webhook_cpu_us:
                    ratios["cpu"].append(r.webhook_cpu_us / other.webhook_cpu_us)
            table[f"{count} | {row}"] = {
                "replicas": count,
                "row": row,
                "p50_ms": _median([r.load["p50_ms"] for r in mine]),
                "p99_ms": _median([r.load["p99_ms"] for r in mine]),
                "rps": _median([_completed_rps(r.load) for r in mine]),
                "saturated": bool(mine[0].rate)
                and any(r.load["achieved_rps"] < 0.9 * r.rate for r in mine),
                "errors": sum(r.load["errors"] for r in mine),
                "sent": sum(r.load["sent"] for r in mine),
                "apiserver_cpu_us": _median([r.apiserver_cpu_us for r in mine]),
                "webhook_cpu_us": _median([r.webhook_cpu_us for r in mine]),
                "shares": [_split(r.shares) for r in mine],
                "ratio": {k: _median(v) for k, v in ratios.items()},
                "rounds": len(mine),
            }
    return table


def report(table: dict[str, Any], counts: list[int], args: argparse.Namespace) -> None:
    print(
        "\n| replicas | row | p50 ms | p99 ms | creates/s | errors | apiserver CPU µs/create "
        "| webhook CPU µs/create (all replicas) | CPU split per round |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for e in table.values():
        print(
            f"| {e['replicas']} | {e['row']} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | "
            f"{e['rps']:,.0f}{' (saturated)' if e['saturated'] else ''} | "
            f"{e['errors']} / {e['sent']} | {e['apiserver_cpu_us']:,.0f} | "
            f"{e['webhook_cpu_us']:,.0f} | {', '.join(e['shares'])} |"
        )
    print(f"\nsame-round ratio to {counts[0]} replica(s), median over rounds:\n")
    print("| replicas | row | p50 | p99 | creates/s | webhook CPU/create |")
    print("|---|---|---|---|---|---|")
    for e in table.values():
        if e["replicas"] == counts[0]:
            continue
        q = e["ratio"]
        print(
            f"| {e['replicas']} | {e['row']} | {q['p50']:.2f} | {q['p99']:.2f} | "
            f"{q['rps']:.2f} | {q['cpu']:.2f} |"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    dump = {"args": vars(args), "table": table}
    (OUT / "replicas.json").write_text(json.dumps(dump, indent=2))
    print(f"\nraw results: {OUT / 'replicas.json'}")


# --- the run -----------------------------------------------------------------------------------


def _prepare() -> tuple[Path, list[nodeimages.ImageArchive]]:
    """The node binaries and the images (busybox, nodelimits from the Dockerfile), as the
    node tests get them; exits with the reason when they cannot be had."""
    missing = realnode.prerequisites_missing()
    if missing:
        sys.exit(f"error: the real node cannot run here: {'; '.join(missing)}")
    try:
        bin_dir = realnode.find_node_bin_dir()
        images = [
            nodeimages.busybox(realnode.IMAGE_CACHE),
            nodeimages.nodelimits_image(realnode.IMAGE_CACHE, fallback=False, log=_say),
        ]
    except (TestbinUnavailable, nodeimages.ImageUnavailable) as exc:
        sys.exit(f"error: {exc}")
    return bin_dir, images


def _uptime() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def run(args: argparse.Namespace) -> None:
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: the node is stopped and undone.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bin_dir, images = _prepare()
    counts: list[int] = args.replicas
    work = Path(tempfile.mkdtemp(prefix="nodelimits-bench-replicas-"))
    node = realnode.RealNode(bin_dir, images=images, log=_say)
    leftovers: list[str] = []
    try:
        (work / "pod.json").write_text(json.dumps(bench_pod()))
        node.start()
        print(
            f"# {os.cpu_count()} CPUs shared by the whole node (etcd, apiserver, controllers, "
            f"kubelet, containerd), the webhook replicas and the load; load average "
            f"{_uptime()}; {args.duration:g} s per row after {args.warmup:g} s warm-up, "
            f"closed loop {args.concurrency} workers; replicas restarted after scaling: "
            f"{'yes' if args.restart else 'no'}; CPU limit per replica: {args.cpu_limit or 'none'}",
            flush=True,
        )
        groups = yaml.safe_load(EXAMPLE_LIMITS.read_text())["resourceGroups"]
        simulator = nodestack.deploy_simulator(node, images[1], groups)
        node.kubectl("create", "namespace", NAMESPACE)
        bench = Bench(node, work, args)
        first = True
        for round_ in range(1, args.rounds + 1):
            order = counts if round_ % 2 else list(reversed(counts))
            for count in order:
                began = time.monotonic()
                found = scale(
                    node,
                    images[1],
                    simulator,
                    count,
                    first=first,
                    restart=args.restart,
                    cpu_limit=args.cpu_limit,
                )
                first = False
                print(
                    f"# round {round_}: {count} replica(s) Ready behind the Service in "
                    f"{time.monotonic() - began:.0f} s: {', '.join(r.pod for r in found)}",
                    flush=True,
                )
                for rate in [*args.rates, 0]:
                    bench.run_row(count, found, rate, round_)
        print(f"# load average at end {_uptime()}", flush=True)
        report(summarize(bench.results, counts), counts, args)
    finally:
        before = node.before
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
        if before is not None:
            leftovers = hoststate.differences(before, node.snapshot())
    if leftovers:
        sys.exit("error: the node left the machine changed:\n  " + "\n  ".join(leftovers))
    print("# the node is stopped: no process, mount, link, chain, sysctl or cgroup left")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=_list(int), default=[1, 2], help="first: the base")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rates", type=_list(float), default=[25, 50, 100])
    parser.add_argument("--duration", type=float, default=4, help="seconds per row")
    parser.add_argument("--warmup", type=float, default=1, help="seconds before each row")
    parser.add_argument("--drain", type=float, default=3, help="seconds for late answers")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop workers")
    parser.add_argument(
        "--cpu-limit",
        default="",
        help="resources.limits.cpu of each replica (e.g. 50m): the webhook, not the apiserver, "
        "is then what saturates",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="restart the replicas after each scaling: the apiserver's connections spread anew",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=15,
        help="at most this many seconds waited for an idle apiserver",
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
