"""Creates through the real kube-apiserver, with each admission controller in the path.

What users feel is what a webhook adds to every ``kubectl apply`` and every pod a
controller creates, measured at the apiserver. This starts a real control plane
(tools/testbin), the platform simulator and every webhook process once, then measures, in
rounds alternating between them, one configuration at a time registered:

* ``floor``: no validating webhook or policy (the apiserver's own cost);
* ``vap``: a ValidatingAdmissionPolicy, the per-node check in CEL as far as CEL expresses
  it, the limits as params (a ConfigMap, ``paramKind``): bench/peers.py;
* ``kopf-noop``: kopf configured like ``nodelimits serve`` with a no-op handler per path,
  registered with the chart's own webhook configuration (same rules, matchConditions);
* ``nodelimits-info`` / ``nodelimits-warning``: ``nodelimits serve`` (devtools/stack.py
  ``Webhook``) with the simulator, log level INFO (one decision line per review) and WARNING;
* ``gatekeeper`` / ``kyverno`` when tools/peers/build.sh has built them (``--peers``):
  bench/peer_servers.py.

Load (a separate process, aiohttp over TLS with the admin client certificate, uvloop): a
~3 KB annotated Pod (the bench_webhook Pod: init container, sidecar-less, 4 GPUs) and a
Job, each created with ``dryRun=All`` (server-side dry run: admission, no etcd write) and
for real (``generateName``; deleted between configurations), open loop at 50, 200 and 500
creates/s with latency counted from each request's due time (no coordinated omission),
and a closed loop (``--concurrency`` workers back to back) for the saturation rate. The
CPU time of the apiserver and of the webhook process is read from /proc/<pid>/stat
around each row and divided by the creates it served.

    python -m bench.bench_apiserver [--duration 4] [--rounds 2] [--rates 50,200,500]
        [--configs floor,vap,kopf-noop,nodelimits-info,nodelimits-warning] [--peers]

Figures go to docs/performance.md ("Creates through the apiserver"); raw results to
.cache/bench/apiserver.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import peers
from bench.bench_webhook import _run, cpu_seconds, percentile, pod_object
from devtools.builders import container, job
from devtools.certs import CertPaths, make_ca_and_cert
from devtools.controlplane import ControlPlane, TestbinUnavailable, find_bin_dir, free_port
from devtools.stack import Process, SimulatorProcess, Webhook, render_configuration

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".cache" / "bench"
NAMESPACE = "bench"
PROBE_ANNOTATION = "bench.nodelimits.io/probe"
PATHS = {
    "pod": f"/api/v1/namespaces/{NAMESPACE}/pods",
    "job": f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
}
REGISTER_TIMEOUT = 60.0
IDLE_SAMPLE = 1.0
"""Seconds of idle CPU sampled before each row (subtracted from the row's CPU)."""
SETTLED_CPU = 0.15
"""The apiserver counts as idle below this share of a core."""


# --- the objects ---------------------------------------------------------------------------


def bench_pod() -> dict[str, Any]:
    """The bench_webhook Pod as a user submits it (no status, uid, managedFields)."""
    obj = pod_object()
    meta = obj["metadata"]
    for key in ("name", "uid", "creationTimestamp", "managedFields"):
        meta.pop(key, None)
    meta.update(namespace=NAMESPACE, generateName="train-resnet-")
    obj.pop("status")
    return obj


def bench_job() -> dict[str, Any]:
    """An annotated Job (annotation on the pod template) that fits one a800x8 node."""
    obj = job(
        container("train", cpu="16", memory="64Gi", gpu=4),
        container("metrics", cpu="100m", memory="128Mi"),
        group="a800x8",
        namespace=NAMESPACE,
        deadline=3600,
        parallelism=2,
    )
    obj["metadata"].pop("name")
    obj["metadata"]["generateName"] = "train-"
    return obj


def probe_pod() -> dict[str, Any]:
    """A Pod every check denies (999 CPUs on TeslaM40) and kopf-noop's handler denies by
    its annotation: it tells that a configuration is in effect (or, allowed, that none is)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "probe-",
            "namespace": NAMESPACE,
            "annotations": {peers.GROUP_ANNOTATION: "TeslaM40", PROBE_ANNOTATION: "1"},
        },
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "999"}}}
            ]
        },
    }


# --- the load generator (own process) ------------------------------------------------------


def load(spec_path: str) -> None:
    """Open loop (``rate`` > 0) or closed loop (``concurrency`` workers); one JSON line."""
    import aiohttp

    spec = json.loads(Path(spec_path).read_text())
    body = Path(spec["body"]).read_bytes()
    url, rate, duration, warmup = spec["url"], spec["rate"], spec["duration"], spec["warmup"]
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    clock = time.perf_counter
    latencies: list[float] = []
    lag: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    done = [0]

    async def one(session: aiohttp.ClientSession, start: float, record: bool) -> None:
        problem: str | None = None
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                payload = await resp.read()
                if resp.status != 201:
                    problem = f"http_{resp.status}"
                    if len(errors) < 3 and problem not in errors:
                        errors[f"{problem}: {payload[:200].decode(errors='replace')}"] += 0
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = type(exc).__name__
        except asyncio.CancelledError:
            # Still open when the row's drain time ran out: counted, with the time it had
            # waited so far as its latency (a lower bound), never dropped.
            problem = "unfinished"
        done[0] += 1
        if record:
            latencies.append(clock() - start)
            if problem:
                errors[problem] += 1

    async def open_loop(session: aiohttp.ClientSession) -> float:
        total, skip = int((warmup + duration) * rate), int(warmup * rate)
        t0 = clock() + 0.05
        tasks = []
        for i in range(total):
            due = t0 + i / rate
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if i >= skip:
                lag.append(clock() - due)
            tasks.append(asyncio.create_task(one(session, due, i >= skip)))
        end = clock()
        _, pending = await asyncio.wait(tasks, timeout=spec["drain"])
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks)
        return float(min(clock(), end + spec["drain"]) - (t0 + skip / rate))

    async def closed_loop(session: aiohttp.ClientSession) -> float:
        begin = clock()
        measured_from, stop = begin + warmup, begin + warmup + duration

        async def worker() -> None:
            while (now := clock()) < stop:
                await one(session, now, now >= measured_from)

        await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
        return float(clock() - measured_from)

    async def main() -> dict[str, Any]:
        context = ssl.create_default_context(cafile=spec["ca"])
        context.load_cert_chain(spec["cert"], spec["key"])
        connector = aiohttp.TCPConnector(ssl=context, limit=512)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            elapsed = await (open_loop(session) if rate else closed_loop(session))
        latencies.sort()
        return {
            "sent": len(latencies),
            "total": done[0],
            "achieved_rps": len(latencies) / elapsed,
            "errors": sum(errors.values()),
            "error_kinds": dict(errors),
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
            "max_send_lag_ms": max(lag, default=0.0) * 1000,
        }

    result: dict[str, Any] = {}

    async def wrapped() -> None:
        result.update(await main())

    _run(wrapped())
    print(json.dumps(result), flush=True)


# --- the kopf no-op webhook (own process) --------------------------------------------------


def serve_kopf_noop(port: int, cert: str, key: str) -> None:
    """bench_webhook's kopf no-op, one handler per path the bench reaches (pods, jobs);
    the handler denies only the probe (one dict lookup), so registration can be awaited."""
    import kopf

    from webhook.config import Settings
    from webhook.serve.kopf_glue import SmartOperatorRegistry, skip_copy_of_empty_patches
    from webhook.serve.process import configure_logging, kopf_settings

    settings = Settings(log_level="INFO")
    configure_logging(settings)
    skip_copy_of_empty_patches()
    registry = SmartOperatorRegistry()

    async def noop(annotations: Any, **_: Any) -> None:
        if PROBE_ANNOTATION in annotations:
            raise kopf.AdmissionError("kopf-noop: probe denied", code=403)

    kopf.on.validate("", "v1", "pods", id="pods", registry=registry)(noop)
    kopf.on.validate("batch", "v1", "jobs", id="jobs", registry=registry)(noop)
    server = kopf.WebhookServer(addr="127.0.0.1", port=port, certfile=cert, pkeyfile=key)
    _run(
        kopf.operator(
            registry=registry,
            settings=kopf_settings(settings, server),
            standalone=True,
            clusterwide=True,
        )
    )


# --- the apiserver ---------------------------------------------------------------------------


class Api:
    """A synchronous client for set-up and probes (the load has its own process)."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.client = httpx.Client(
            base_url=plane.url,
            verify=ssl.create_default_context(cafile=str(plane.ca_file)),
            cert=(str(plane.admin_cert_file), str(plane.admin_key_file)),
            timeout=30,
        )

    def create(self, path: str, obj: dict[str, Any], *, dry_run: bool = False) -> httpx.Response:
        params = {"dryRun": "All"} if dry_run else {}
        return self.client.post(path, json=obj, params=params)

    def delete_all(self, path: str) -> None:
        response = self.client.delete(path, params={"propagationPolicy": "Background"})
        response.raise_for_status()

    def apply(self, manifests: str) -> None:
        self.plane.kubectl("apply", "-f", "-", input=manifests)

    def delete(self, manifests: str) -> None:
        self.plane.kubectl("delete", "--ignore-not-found", "--wait", "-f", "-", input=manifests)

    def probe(self) -> str:
        """'' if the probe Pod is allowed, else the denial message."""
        response = self.create(PATHS["pod"], probe_pod(), dry_run=True)
        if response.status_code == 201:
            return ""
        return str(response.json().get("message", response.text))


@dataclass
class Config:
    """One admission configuration: what to apply, which message says it is in effect, and
    which process serves it (None: the apiserver alone)."""

    name: str
    manifests: str = ""
    denial: str = ""  # a substring of the probe's denial message once in effect
    pid: int | None = None
    stop: Callable[[], object] = lambda: None

    def enable(self, api: Api) -> None:
        if not self.manifests:  # the floor: nothing in the way
            _await_probe(api, lambda m: m == "", self.name)
            return
        api.apply(self.manifests)
        _await_probe(api, lambda m: self.denial in m, self.name)
        _confirm_fitting(api, self.name)

    def disable(self, api: Api) -> None:
        if self.manifests:
            api.delete(self.manifests)
        _await_probe(api, lambda m: m == "", f"{self.name} removed")


def _confirm_fitting(api: Api, what: str) -> None:
    """The bench's own Pod and Job fit their group: a configuration that denies them (a
    policy written wrong) would measure denials, not the check."""
    for kind, obj in (("pod", bench_pod()), ("job", bench_job())):
        response = api.create(PATHS[kind], obj, dry_run=True)
        if response.status_code != 201:
            message = response.json().get("message", response.text)
            raise RuntimeError(f"{what}: the fitting {kind} is not admitted: {message}")


def _await_probe(api: Api, good: Callable[[str], bool], what: str) -> None:
    deadline = time.monotonic() + REGISTER_TIMEOUT
    message = ""
    while time.monotonic() < deadline:
        message = api.probe()
        if good(message):
            # Every apiserver watch has caught up once the probe agrees; one more to be sure
            # the dispatcher of every worker sees it.
            time.sleep(0.5)
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not in effect after {REGISTER_TIMEOUT:.0f} s: {message!r}")


# --- measurement -----------------------------------------------------------------------------


def load_spec(
    plane: ControlPlane, path: str, body: Path, rate: float, args: argparse.Namespace
) -> dict[str, Any]:
    """What one `load` run reads: the URL (`path` on the apiserver), the admin client
    certificate, the body, and the row's shape (`rate` 0: closed loop) from `args`."""
    return {
        "url": plane.url + path,
        "ca": str(plane.ca_file),
        "cert": str(plane.admin_cert_file),
        "key": str(plane.admin_key_file),
        "body": str(body),
        "rate": rate,
        "concurrency": args.concurrency,
        "duration": args.duration,
        "warmup": args.warmup,
        "drain": args.drain,
    }


def run_load(spec_path: Path, timeout: float) -> dict[str, Any]:
    """`load` over the spec at `spec_path`, in its own process; its JSON result."""
    argv = [sys.executable, "-m", "bench.bench_apiserver", "load", "--spec", str(spec_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@dataclass(frozen=True)
class Row:
    kind: str  # pod | job
    dry_run: bool
    rate: float  # 0: closed loop

    @property
    def label(self) -> str:
        mode = "dry-run" if self.dry_run else "create"
        load_ = f"{self.rate:.0f}/s" if self.rate else "closed"
        return f"{self.kind} {mode} {load_}"


@dataclass
class Result:
    config: str
    row: Row
    round: int
    load: dict[str, Any]
    apiserver_cpu_us: float
    webhook_cpu_us: float | None


@dataclass
class Bench:
    plane: ControlPlane
    api: Api
    work: Path
    args: argparse.Namespace
    results: list[Result] = field(default_factory=list)

    def run_row(self, config: Config, row: Row, round_: int) -> Result:
        path = PATHS[row.kind] + ("?dryRun=All" if row.dry_run else "")
        spec = load_spec(self.plane, path, self.work / f"{row.kind}.json", row.rate, self.args)
        spec_path = self.work / "load.json"
        spec_path.write_text(json.dumps(spec))
        pids = [self.plane.pids()[1]] + ([config.pid] if config.pid else [])
        # What the processes burn idle (the apiserver's controllers, leases, watches) over
        # the same wall time is not the creates' cost: measured just before, subtracted.
        idle_rate = settle(pids, self.args.settle)
        if max(idle_rate) >= SETTLED_CPU:
            busy = ", ".join(f"{rate:.2f}" for rate in idle_rate)
            print(
                f"  # {config.name}, {row.label}: still busy after --settle {self.args.settle:g} s"
                f" (apiserver{', webhook' if config.pid else ''}: {busy} cores); "
                "that is subtracted as idle",
                flush=True,
            )
        cpu0, t0 = [cpu_seconds(pid) for pid in pids], time.monotonic()
        result = run_load(spec_path, self.args.duration + self.args.warmup + 60)
        cpu1, t1 = [cpu_seconds(pid) for pid in pids], time.monotonic()
        served = max(result["total"], 1)
        used = [
            max(b - a - idle * (t1 - t0), 0.0) / served * 1e6
            for a, b, idle in zip(cpu0, cpu1, idle_rate, strict=True)
        ]
        webhook_us = used[1] if config.pid else None
        out = Result(
            config.name,
            row,
            round_,
            result,
            used[0],
            webhook_us,
        )
        self.results.append(out)
        r = result
        print(
            f"  r{round_} {config.name:<20} {row.label:<20} p50 {r['p50_ms']:7.2f} ms  "
            f"p99 {r['p99_ms']:7.2f} ms  {r['achieved_rps']:6.0f}/s  errors {r['errors']}"
            f"  apiserver {out.apiserver_cpu_us:5.0f} us"
            + (f"  webhook {webhook_us:5.0f} us" if webhook_us is not None else ""),
            flush=True,
        )
        if r["error_kinds"] and r["errors"]:
            print(f"    errors: {r['error_kinds']}", flush=True)
        return out

    def clean(self) -> None:
        """Delete what a row created and wait until it is gone (a background deletion of
        thousands of objects would load the next row)."""
        for path in PATHS.values():
            self.api.delete_all(path)
        deadline = time.monotonic() + REGISTER_TIMEOUT
        for path in PATHS.values():
            while time.monotonic() < deadline:
                listed = self.api.client.get(path, params={"limit": 1})
                if not listed.json().get("items"):
                    break
                time.sleep(0.5)


def settle(pids: list[int], timeout: float) -> list[float]:
    """Wait (bounded) until the apiserver and the webhook have worked off the last row (an
    open loop past saturation leaves requests they still serve), then return each
    process's idle CPU rate (CPU seconds per second) over one sample.

    Both must be idle: a webhook still busy with the previous row's backlog while the
    apiserver is idle (Kyverno after its 500/s rows) would have that work counted as its
    idle rate and subtracted from the next row, down to 0 µs per create."""
    deadline = time.monotonic() + timeout
    while True:
        before, t_before = [cpu_seconds(pid) for pid in pids], time.monotonic()
        time.sleep(IDLE_SAMPLE)
        after, t_after = [cpu_seconds(pid) for pid in pids], time.monotonic()
        rates = [(b - a) / (t_after - t_before) for a, b in zip(before, after, strict=True)]
        if max(rates) < SETTLED_CPU or time.monotonic() > deadline:
            return rates


def rows(args: argparse.Namespace) -> list[Row]:
    """Per kind: dry-run creates at every rate and closed loop, then real creates at
    ``--create-rates`` and closed loop."""
    out: list[Row] = []
    for kind in args.kinds:
        out += [Row(kind, True, rate) for rate in args.rates]
        out.append(Row(kind, True, 0))
        out += [Row(kind, False, rate) for rate in args.create_rates]
        out.append(Row(kind, False, 0))
    return out


# --- the configurations ------------------------------------------------------------------------


@contextlib.contextmanager
def configurations(
    plane: ControlPlane, work: Path, names: list[str], peer_bin: Path | None
) -> Iterator[list[Config]]:
    """Start every process the configurations need; stop them all on exit."""
    out: list[Config] = []
    stops: list[Callable[[], object]] = []
    simulator: SimulatorProcess | None = None
    try:
        for name in names:
            if name == "floor":
                out.append(Config("floor"))
            elif name == "vap":
                out.append(Config("vap", peers.vap_manifests(NAMESPACE), denial=peers.POLICY_NAME))
            elif name == "kopf-noop":
                certs = make_ca_and_cert(work / "kopf-tls")
                process, url = _start_kopf_noop(work, certs, plane)
                stops.append(process.stop)
                text = render_configuration(plane, url, certs.ca.read_bytes())
                out.append(Config(name, text, "kopf-noop: probe", process.proc.pid))
            elif name.startswith("nodelimits-"):
                if simulator is None:
                    simulator = SimulatorProcess(work).start()
                sub = work / name
                sub.mkdir()
                level = name.split("-", 1)[1].upper()
                webhook = Webhook(sub, plane, simulator, {"log_level": level}).start()
                stops.append(webhook.stop)
                out.append(
                    Config(name, webhook.render_configuration(), "nodelimits", webhook.process.pid)
                )
            elif name in ("gatekeeper", "kyverno"):
                if peer_bin is None:
                    raise RuntimeError(f"{name}: the peers are not built (pass --peers)")
                from bench import peer_servers

                config = peer_servers.start(name, plane, work, peer_bin, NAMESPACE)
                stops.append(config.stop)
                out.append(config)
            else:
                raise ValueError(f"unknown configuration {name!r}")
        yield out
    finally:
        for stop in reversed(stops):
            stop()
        if simulator is not None:
            simulator.stop()


def _start_kopf_noop(work: Path, certs: CertPaths, plane: ControlPlane) -> tuple[Process, str]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.bench_apiserver", "serve-kopf-noop"]
    argv += ["--port", str(port), "--cert", str(certs.cert), "--key", str(certs.key)]
    process = Process("kopf-noop", argv, work / "kopf-noop.log", plane.env())
    deadline = time.monotonic() + 60
    while "Serving" not in process.tail() and "listening" not in process.tail():
        if not process.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"kopf-noop did not start:\n{process.tail()}")
        if _tls_listening(port):
            break
        time.sleep(0.2)
    return process, f"https://127.0.0.1:{port}"


def _tls_listening(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


# --- report ------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _completed_rps(load_: dict[str, Any]) -> float:
    """Creates answered per second (an unfinished or failed request is not one)."""
    sent, rps = load_["sent"], load_["achieved_rps"]
    if not sent or not rps:
        return 0.0
    return float((sent - load_["errors"]) / (sent / rps))


def summarize(results: list[Result], configs: list[str]) -> dict[str, Any]:
    """Per (config, row): medians over rounds of p50/p99/rate/CPU, and of the difference
    from the floor's figure of the same round."""
    by: dict[tuple[str, Row, int], Result] = {(r.config, r.row, r.round): r for r in results}
    table: dict[str, Any] = {}
    row_set = list(dict.fromkeys(r.row for r in results))
    for config in configs:
        for row in row_set:
            mine = [r for r in results if r.config == config and r.row == row]
            if not mine:
                continue
            added50, added99 = [], []
            for r in mine:
                floor = by.get(("floor", row, r.round))
                if floor is not None:
                    added50.append(r.load["p50_ms"] - floor.load["p50_ms"])
                    added99.append(r.load["p99_ms"] - floor.load["p99_ms"])
            webhook = [r.webhook_cpu_us for r in mine if r.webhook_cpu_us is not None]
            table[f"{config} | {row.label}"] = {
                "config": config,
                "row": row.label,
                "p50_ms": _median([r.load["p50_ms"] for r in mine]),
                "p99_ms": _median([r.load["p99_ms"] for r in mine]),
                "added_p50_ms": _median(added50),
                "added_p99_ms": _median(added99),
                "rps": _median([_completed_rps(r.load) for r in mine]),
                "saturated": bool(row.rate)
                and any(
                    r.load["achieved_rps"] < 0.9 * row.rate or "unfinished" in r.load["error_kinds"]
                    for r in mine
                ),
                "errors": sum(r.load["errors"] for r in mine),
                "sent": sum(r.load["sent"] for r in mine),
                "apiserver_cpu_us": _median([r.apiserver_cpu_us for r in mine]),
                "webhook_cpu_us": _median(webhook) if webhook else None,
                "rounds": len(mine),
            }
    return table


def report(table: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        "\n| config | row | p50 ms | p99 ms | added p50 | added p99 | creates/s | errors "
        "| apiserver CPU µs/create | webhook CPU µs/create |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for entry in table.values():
        webhook = entry["webhook_cpu_us"]
        print(
            f"| {entry['config']} | {entry['row']} | {entry['p50_ms']:.2f} | "
            f"{entry['p99_ms']:.2f} | {entry['added_p50_ms']:+.2f} | {entry['added_p99_ms']:+.2f}"
            f" | {entry['rps']:,.0f}{' (saturated)' if entry['saturated'] else ''}"
            f" | {entry['errors']} / {entry['sent']} | "
            f"{entry['apiserver_cpu_us']:,.0f} | "
            f"{'-' if webhook is None else f'{webhook:,.0f}'} |"
        )
    print()
    for name in ("nodelimits-info", "nodelimits-warning"):
        for label in ("pod dry-run 200/s", "pod create 200/s", "job create 200/s"):
            entry = table.get(f"{name} | {label}")
            floor = table.get(f"floor | {label}")
            if entry:
                verdict = "met" if entry["added_p99_ms"] <= 2.0 else "MISSED"
                if floor is None or floor["saturated"] or entry["saturated"]:
                    verdict = "not measurable (saturated at this rate on this machine)"
                print(
                    f"{name}, {label}: added p99 {entry['added_p99_ms']:+.2f} ms over the floor "
                    f"(target <= 2 ms): {verdict}"
                )
    print()
    labels = dict.fromkeys(e["row"] for e in table.values())
    for label in labels:
        ranked = sorted(
            (e["added_p99_ms"], e["config"])
            for e in table.values()
            if e["row"] == label and e["config"] != "floor"
        )
        print(f"{label}: added p99, lowest first: " + ", ".join(f"{c} {v:+.1f}" for v, c in ranked))
    OUT.mkdir(parents=True, exist_ok=True)
    dump = {"args": {k: v for k, v in vars(args).items() if k != "role"}, "table": table}
    (OUT / "apiserver.json").write_text(json.dumps(dump, indent=2))
    print(f"\nraw results: {OUT / 'apiserver.json'}")


def run(args: argparse.Namespace) -> None:
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: every process started here is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bin_dir = find_bin_dir(build=True, build_timeout=3600)
    except TestbinUnavailable as exc:
        sys.exit(f"error: the control-plane binaries are needed: {exc}")
    from bench import peer_servers  # imports this module

    names = list(args.configs)
    peer_bin = None
    for peer in peer_servers.SUPPORTED if args.peers else ():
        found = peers.built(peer)
        if found is not None:
            peer_bin = found
            names.append(peer)
    print(
        f"# {os.cpu_count()} CPUs shared by apiserver, etcd, webhooks and load; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="nodelimits-bench-api-"))
    try:
        (work / "pod.json").write_text(json.dumps(bench_pod()))
        (work / "job.json").write_text(json.dumps(bench_job()))
        print(
            f"# bodies: Pod {len((work / 'pod.json').read_bytes())} B, "
            f"Job {len((work / 'job.json').read_bytes())} B; {args.duration:g} s per row "
            f"after {args.warmup:g} s warm-up; closed loop {args.concurrency} workers",
            flush=True,
        )
        with ControlPlane(bin_dir) as plane:
            api = Api(plane)
            api.client.post(
                "/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}}
            ).raise_for_status()
            bench = Bench(plane, api, work, args)
            with configurations(plane, work, names, peer_bin) as configs:
                for round_ in range(1, args.rounds + 1):
                    order = configs if round_ % 2 else list(reversed(configs))
                    for config in order:
                        config.enable(api)
                        try:
                            for row in rows(args):
                                bench.run_row(config, row, round_)
                                if not row.dry_run:
                                    bench.clean()
                        finally:
                            config.disable(api)
            print(f"# load average at end {os.getloadavg()[0]:.2f}", flush=True)
            report(summarize(bench.results, names), args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _list(cast: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda text: [cast(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    p = sub.add_parser("load")
    p.add_argument("--spec", required=True)
    p = sub.add_parser("serve-kopf-noop")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    parser.add_argument("--duration", type=float, default=4, help="seconds per row")
    parser.add_argument("--warmup", type=float, default=1, help="seconds before each row")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rates", type=_list(float), default=[50, 200, 500])
    parser.add_argument(
        "--create-rates", type=_list(float), default=[200], help="open-loop rates of real creates"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=20,
        help="at most this many seconds waited before a row for the apiserver to go idle",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=3,
        help="seconds an open-loop row waits for answers after its last send",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop workers")
    parser.add_argument("--kinds", type=_list(str), default=["pod", "job"])
    parser.add_argument(
        "--configs",
        type=_list(str),
        default=["floor", "vap", "kopf-noop", "nodelimits-info", "nodelimits-warning"],
    )
    parser.add_argument(
        "--peers", action="store_true", help="also Gatekeeper and Kyverno (tools/peers/build.sh)"
    )
    args = parser.parse_args()
    if args.role == "load":
        load(args.spec)
    elif args.role == "serve-kopf-noop":
        serve_kopf_noop(args.port, args.cert, args.key)
    else:
        run(args)


if __name__ == "__main__":
    main()
