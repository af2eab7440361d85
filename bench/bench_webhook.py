"""Admission webhook throughput and latency, over TLS, from separate load processes.

Starts a real control plane (tools/testbin: kopf needs a kube-apiserver for login and
discovery), the platform simulator, and four servers one after another:

* ``bare``: a bare aiohttp TLS server that reads the body, decodes it and answers a canned
  AdmissionReview (allowed, uid echoed): the transport's ceiling;
* ``kopf-noop``: kopf started like ``nodelimits serve`` (WebhookServer over TLS,
  standalone, scanning disabled, uvloop, same logging setup) with a no-op async
  validating handler: the framework's floor;
* ``nodelimits``: ``nodelimits serve`` (devtools/stack.py ``Webhook``) with the
  simulator, the limits cache warmed by one request, ``log_level`` INFO (one JSON
  decision line per request) and again with WARNING.

For each: ``wrk`` (one thread, bench/admission_review.lua POSTing a Pod CREATE review with
the resource-group annotation, dryRun false) at a few connection counts for peak
throughput, then an open-loop fixed-rate generator (this script, ``fixed-rate`` role,
aiohttp in its own process) at 200 reviews/s for p50/p99 measured from each request's
intended send time. Also the server's CPU time per request, from /proc: on a 2-core
machine the load generator shares the cores, so rps alone is noisy.

    python bench/bench_webhook.py [--duration 10] [--connections 1,16,64] [--rate 200]
                                  [--profile]   # py-spy the nodelimits server under wrk

Figures go to docs/performance.md ("Admission webhook throughput and latency").
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import platform
import re
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.certs import CertPaths, make_ca_and_cert
from devtools.controlplane import (
    ControlPlane,
    TestbinUnavailable,
    find_bin_dir,
    free_port,
)
from devtools.reviews import admission_response, admission_review
from devtools.stack import Process, SimulatorProcess, Webhook, wait_until

ROOT = Path(__file__).resolve().parents[1]
LUA = Path(__file__).resolve().with_name("admission_review.lua")
OUT = ROOT / ".cache" / "bench"
GROUP_ANNOTATION = "nodelimits.io/resource-group"


# --- the request ----------------------------------------------------------------------------


def pod_object() -> dict[str, Any]:
    """A Pod as the kube-apiserver hands it to a validating webhook on CREATE (defaulted,
    with the service-account volume, tolerations and kubectl's managedFields): ~4 KB."""
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": "train-resnet-0",
            "namespace": "ml-team",
            "uid": "3f1c8a52-6c1e-4d0b-9d6e-0b4f6f3e2a11",
            "creationTimestamp": "2025-01-15T09:30:00Z",
            "labels": {"app": "train-resnet", "team": "vision", "run": "2025-01-15"},
            "annotations": {
                GROUP_ANNOTATION: "a800x8",
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "train-resnet-0"}}
                ),
            },
            "managedFields": [
                {
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2025-01-15T09:30:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {"f:annotations": {".": {}, f"f:{GROUP_ANNOTATION}": {}}},
                        "f:spec": {"f:containers": {'k:{"name":"train"}': {".": {}}}},
                    },
                }
            ],
        },
        "spec": {
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "imagenet"}},
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "expirationSeconds": 3607,
                                    "path": "token",
                                }
                            },
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
            ],
            "initContainers": [
                {
                    "name": "fetch",
                    "image": "registry.example.com/tools/fetch:2.4",
                    "args": ["--from", "s3://datasets/imagenet", "--to", "/data"],
                    "resources": {"requests": {"cpu": "2", "memory": "4Gi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "containers": [
                {
                    "name": "train",
                    "image": "registry.example.com/vision/resnet:1.8.2",
                    "command": ["python", "-m", "train"],
                    "args": ["--epochs", "90", "--batch-size", "256", "--data", "/data"],
                    "env": [
                        {"name": "NCCL_DEBUG", "value": "WARN"},
                        {"name": "OMP_NUM_THREADS", "value": "8"},
                        {
                            "name": "POD_NAME",
                            "valueFrom": {
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
                            },
                        },
                    ],
                    "resources": {
                        "limits": {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "4"},
                        "requests": {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "4"},
                    },
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data", "readOnly": True},
                        {"name": "shm", "mountPath": "/dev/shm"},
                        {
                            "name": "kube-api-access-x7k2p",
                            "readOnly": True,
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        },
                    ],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                },
                {
                    "name": "metrics",
                    "image": "registry.example.com/tools/gpu-exporter:0.9",
                    "ports": [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}],
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                },
            ],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "activeDeadlineSeconds": 86400,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {"phase": "Pending", "qosClass": "Guaranteed"},
    }


def pod_create_review(uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002") -> dict[str, Any]:
    """An AdmissionReview v1 for a Pod CREATE, as the kube-apiserver sends it."""
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return admission_review(
        pod_object(),
        uid=uid,
        user={
            "username": "alice@example.com",
            "uid": "b1e5b2a4-1f0e-4d7c-8a3b-2d9f0c6e7a55",
            "groups": ["vision", "system:authenticated"],
        },
        requestKind=gvk,
        requestResource=gvr,
        options={
            "kind": "CreateOptions",
            "apiVersion": "meta.k8s.io/v1",
            "fieldManager": "kubectl-client-side-apply",
            "fieldValidation": "Strict",
        },
    )


def check_response(status: int, payload: bytes, uid: str) -> str | None:
    """None if the review came back allowed for ``uid``; else what was wrong."""
    if status != 200:
        return f"http_{status}"
    try:
        response = json.loads(payload)["response"]
    except (ValueError, KeyError, TypeError):
        return "bad_json"
    if response.get("uid") != uid:
        return "uid_mismatch"
    if response.get("allowed") is not True:
        return "denied"
    return None


def post_once(url: str, ca: Path, body: bytes, uid: str) -> str | None:
    """One synchronous review (readiness, warm-up, correctness); None when allowed."""
    context = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(  # noqa: S310 - loopback https
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:  # noqa: S310
            return check_response(resp.status, resp.read(), uid)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


# --- roles: the two ceiling servers and the fixed-rate generator (own processes) ------------


def _run(main: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def serve_bare(port: int, cert: str, key: str) -> None:
    """Bare aiohttp over TLS: read, decode, answer a canned allow with the uid (what kopf's
    transport does, minus the framework)."""
    import aiohttp.web

    async def review(request: aiohttp.web.Request) -> aiohttp.web.Response:
        data = json.loads(await request.text())
        uid = data["request"]["uid"]
        return aiohttp.web.json_response(admission_response(uid))

    async def main() -> None:
        context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.post("/{id:.*}", review)])
        runner = aiohttp.web.AppRunner(app, handle_signals=True, access_log=None)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        print(f"bare aiohttp listening on {port}", flush=True)
        await asyncio.Event().wait()

    _run(main())


def serve_kopf_noop(port: int, cert: str, key: str) -> None:
    """kopf with a no-op validating handler, configured like ``nodelimits serve``."""
    import kopf

    from webhook.config import Settings
    from webhook.serve.kopf_glue import SmartOperatorRegistry, skip_copy_of_empty_patches
    from webhook.serve.process import configure_logging, kopf_settings

    settings = Settings(log_level="INFO")
    configure_logging(settings)
    skip_copy_of_empty_patches()  # the floor of kopf as nodelimits runs it, and
    gc.collect()  # the start-up objects frozen, as nodelimits serve does
    gc.freeze()
    registry = SmartOperatorRegistry()

    @kopf.on.validate("", "v1", "pods", id="pods", registry=registry)
    async def noop(**_: Any) -> None:
        pass

    server = kopf.WebhookServer(addr="127.0.0.1", port=port, certfile=cert, pkeyfile=key)
    _run(
        kopf.operator(
            registry=registry,
            settings=kopf_settings(settings, server),
            standalone=True,
            clusterwide=True,
        )
    )


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def fixed_rate(
    url: str, ca: str, body_path: str, rate: float, duration: float, warmup: float
) -> None:
    """Open loop: request i is due at t0 + i/rate whatever happened before; latency counts
    from that due time (no coordinated omission). Prints one JSON line."""
    import aiohttp

    body = Path(body_path).read_bytes()
    uid = json.loads(body)["request"]["uid"]

    async def main() -> dict[str, Any]:
        context = ssl.create_default_context(cafile=ca)
        connector = aiohttp.TCPConnector(ssl=context, limit=0)
        timeout = aiohttp.ClientTimeout(total=5)
        headers = {"Content-Type": "application/json"}
        latencies: list[float] = []
        errors: collections.Counter[str] = collections.Counter()
        lag: list[float] = []
        clock = time.perf_counter  # uvloop's loop.time() has millisecond resolution

        async def one(session: aiohttp.ClientSession, due: float, record: bool) -> None:
            problem: str | None
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    problem = check_response(resp.status, await resp.read(), uid)
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
            if record:
                latencies.append(clock() - due)
                if problem:
                    errors[problem] += 1

        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            total = int((warmup + duration) * rate)
            skip = int(warmup * rate)
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
            await asyncio.gather(*tasks)
            elapsed = clock() - (t0 + skip / rate)
        latencies.sort()
        return {
            "sent": len(latencies),
            "achieved_rps": len(latencies) / elapsed,
            "errors": sum(errors.values()),
            "error_kinds": dict(errors),
            "p50_ms": percentile(latencies, 50) * 1000,
            "p90_ms": percentile(latencies, 90) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
            "max_send_lag_ms": max(lag, default=0.0) * 1000,
        }

    result: dict[str, Any] = {}

    async def wrapped() -> None:
        result.update(await main())

    _run(wrapped())
    print(json.dumps(result), flush=True)


# --- measurement ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(match[1]) * _UNITS[match[2]]


@dataclass
class WrkResult:
    connections: int
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_us: float  # server CPU time per request
    wrk_cpu_pct: float  # the load generator's share of one core


def run_wrk(
    url: str, body_path: Path, connections: int, duration: float, server_pid: int
) -> WrkResult:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{int(duration)}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(LUA),
        url,
        "--",
        str(body_path),
    ]
    cpu0, child0 = cpu_seconds(server_pid), children_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30, check=False)
    cpu1, child1 = cpu_seconds(server_pid), children_cpu()
    out = done.stdout
    if done.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{out}\n{done.stderr}")
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    dist = dict(re.findall(r"^\s*(\d+(?:\.\d+)?)%\s+(\S+)\s*$", out, flags=re.M))
    if "50" not in dist or "99" not in dist:
        raise RuntimeError(f"wrk printed no latency distribution:\n{out}\n{done.stderr}")
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m[1])
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    return WrkResult(
        connections=connections,
        rps=rps,
        requests=requests,
        p50_ms=_ms(dist["50"]),
        p99_ms=_ms(dist["99"]),
        errors=errors,
        server_cpu_us=(cpu1 - cpu0) / max(requests, 1) * 1e6,
        wrk_cpu_pct=(child1 - child0) / duration * 100,
    )


def run_fixed_rate(
    url: str, ca: Path, body_path: Path, rate: float, duration: float
) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "bench.bench_webhook",
        "fixed-rate",
        "--url",
        url,
        "--ca",
        str(ca),
        "--body",
        str(body_path),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"fixed-rate generator failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@dataclass
class Target:
    name: str
    url: str
    ca: Path
    pid: int
    stop: Callable[[], object]
    wrk: list[WrkResult] = field(default_factory=list)
    rate: dict[str, Any] = field(default_factory=dict)

    @property
    def peak(self) -> WrkResult:
        return max(self.wrk, key=lambda r: r.rps)


def measure(target: Target, body_path: Path, uid: str, args: argparse.Namespace) -> None:
    problem = post_once(target.url, target.ca, body_path.read_bytes(), uid)  # warms the cache
    if problem:
        raise RuntimeError(f"{target.name}: the warm-up review was not allowed: {problem}")
    run_wrk(target.url, body_path, 8, 2, target.pid)  # connections, TLS, lazy paths
    for connections in args.connections:
        result = run_wrk(target.url, body_path, connections, args.duration, target.pid)
        target.wrk.append(result)
        print(
            f"  {target.name:<20} wrk -c{connections:<4} {result.rps:8.0f} rps  "
            f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
            f"errors {result.errors}  server {result.server_cpu_us:5.0f} us/req  "
            f"wrk {result.wrk_cpu_pct:3.0f}% core",
            flush=True,
        )
    target.rate = run_fixed_rate(target.url, target.ca, body_path, args.rate, args.duration)
    r = target.rate
    print(
        f"  {target.name:<20} {args.rate:.0f}/s open loop: p50 {r['p50_ms']:.2f} ms  "
        f"p99 {r['p99_ms']:.2f} ms  max {r['max_ms']:.1f} ms  errors {r['errors']}  "
        f"(achieved {r['achieved_rps']:.0f}/s, send lag max {r['max_send_lag_ms']:.1f} ms)",
        flush=True,
    )


# --- profile ----------------------------------------------------------------------------


def profile(target: Target, body_path: Path, args: argparse.Namespace) -> None:
    """py-spy the server while wrk loads it; print the heaviest functions."""
    if shutil.which("py-spy") is None:
        print("  (no py-spy: pip install py-spy)")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    raw = OUT / f"profile-{target.name}.txt"
    argv = [
        "py-spy",
        "record",
        "--pid",
        str(target.pid),
        "--duration",
        str(int(args.duration)),
        "--rate",
        "250",
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(raw),
    ]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        run_wrk(target.url, body_path, 16, args.duration, target.pid)
        spy.wait(timeout=args.duration + 30)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    if not raw.exists():
        print(f"  py-spy wrote nothing: {spy.stderr.read().decode() if spy.stderr else ''}")
        return
    print(f"  profile of {target.name} under wrk -c16 (py-spy, raw stacks in {raw}):")
    for line in summarize_profile(raw.read_text()):
        print(f"    {line}")


def _frame(frame: str) -> str:
    match = re.fullmatch(r"(.*) \((.*?):\d+\)", frame.strip())
    if not match:
        return frame.strip()
    func, path = match.groups()
    parts = Path(path).parts
    for anchor in ("site-packages", "python3.11", "main", "work"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :]
            break
    return f"{func} ({'/'.join(parts[-3:])})"


GROUPS: dict[str, Callable[[list[str]], bool]] = {
    "nodelimits handler (Admission.handle, incl. log call)": lambda s: any(
        "Admission.handle (webhook/serve/admission.py)" in f for f in s
    ),
    "  of which decision log line (logging)": lambda s: (
        any("Admission._record (webhook/serve/admission.py)" in f for f in s)
        and any("logging/" in f for f in s)
    ),
    "  of which review() (workloads, policy, cache)": lambda s: any(
        "review_workload (webhook/review.py)" in f for f in s
    ),
    "nodelimits request guard (check_review)": lambda s: any(
        "check_review (webhook/serve/guard.py)" in f for f in s
    ),
    "bounded JSON decode (bounds.loads)": lambda s: any(
        "loads (webhook/bounds.py)" in f for f in s
    ),
    "kopf admission machinery (serve_admission_request)": lambda s: any(
        "serve_admission_request" in f for f in s
    ),
    "json decode + encode": lambda s: any(f.startswith(("loads (json", "dumps (json")) for f in s),
    "ssl read/write": lambda s: any("sslproto.py" in f or "ssl.py" in f for f in s),
    "aiohttp request parsing/response": lambda s: any("aiohttp/web_protocol.py" in f for f in s),
}


def summarize_profile(text: str, top: int = 15) -> list[str]:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    groups: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        stack = [_frame(f) for f in stack_text.split(";")]
        total += count
        self_time[stack[-1]] += count
        for name in set(stack):
            inclusive[name] += count
        for group, matches in GROUPS.items():
            if matches(stack):
                groups[group] += count
    if not total:
        return ["no samples"]
    out = [f"{total} samples of active CPU; groups (inclusive):"]
    out += [f"  {groups[g] / total:6.1%}  {g}" for g in GROUPS]
    out.append("top self time:")
    out += [f"  {n / total:6.1%}  {name}" for name, n in self_time.most_common(top)]
    return out


# --- orchestration --------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: apt-get install -y wrk", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        found = shutil.which("wrk")
    if not found:
        sys.exit("error: wrk is required: install it (apt-get install -y wrk, brew install wrk)")
    return found


def _serve_process(
    role: str, work: Path, certs: CertPaths, env: Mapping[str, str], uid: str, body: bytes
) -> tuple[Process, str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.bench_webhook",
        role,
        "--port",
        str(port),
        "--cert",
        str(certs.cert),
        "--key",
        str(certs.key),
    ]
    process = Process(role, argv, work / f"{role}.log", env)
    url = f"https://127.0.0.1:{port}/pods"
    wait_until(role, lambda: post_once(url, certs.ca, body, uid) is None, process)
    return process, url


@contextlib.contextmanager
def started(
    name: str,
    work: Path,
    plane: ControlPlane,
    simulator: SimulatorProcess,
    certs: CertPaths,
    body: bytes,
    uid: str,
) -> Iterator[Target]:

    if name in ("bare", "kopf-noop"):
        role = "serve-bare" if name == "bare" else "serve-kopf-noop"
        process, url = _serve_process(role, work, certs, plane.env(), uid, body)
        try:
            yield Target(name, url, certs.ca, process.proc.pid, process.stop)
        finally:
            process.stop()
        return
    level = name.split("-", 1)[1].upper()  # nodelimits-info / nodelimits-warning
    sub = work / name
    sub.mkdir()
    webhook = Webhook(sub, plane, simulator, {"log_level": level}).start()
    try:
        yield Target(
            name, f"{webhook.url}/pods", webhook.certs.ca, webhook.process.pid, webhook.stop
        )
    finally:
        webhook.stop()


def machine_notes() -> list[str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import PackageNotFoundError, version

    import aiohttp
    import kopf  # noqa: F401

    try:
        loop = f"uvloop {version('uvloop')}"
    except PackageNotFoundError:
        loop = "asyncio (no uvloop)"

    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return [
        f"{os.cpu_count()} CPUs ({model or platform.machine()}), shared by server and load; "
        f"load average at start {os.getloadavg()[0]:.2f}",
        f"Python {platform.python_version()}, kopf {version('kopf')}, "
        f"aiohttp {aiohttp.__version__}, {loop}",
        (wrk_version.stdout or wrk_version.stderr).splitlines()[0].strip(),
    ]


def report(targets: list[Target], args: argparse.Namespace) -> None:
    by = {t.name: t for t in targets}
    print("\n| server | connections | req/s | p50 ms | p99 ms | errors | server CPU µs/req |")
    print("|---|---|---|---|---|---|---|")
    for t in targets:
        for r in t.wrk:
            print(
                f"| {t.name} | {r.connections} | {r.rps:,.0f} | {r.p50_ms:.2f} | "
                f"{r.p99_ms:.2f} | {r.errors} | {r.server_cpu_us:.0f} |"
            )
    print(f"\n| server | open loop {args.rate:.0f}/s: p50 ms | p99 ms | max ms | errors |")
    print("|---|---|---|---|---|")
    for t in targets:
        rate = t.rate
        print(
            f"| {t.name} | {rate['p50_ms']:.2f} | {rate['p99_ms']:.2f} | {rate['max_ms']:.1f} | "
            f"{rate['errors']} / {rate['sent']} |"
        )
    if "kopf-noop" in by and "bare" in by:
        print()
        for name in (n for n in by if n.startswith("nodelimits")):
            nl, kopf_t, bare = by[name], by["kopf-noop"], by["bare"]
            same_c = {r.connections: r.rps for r in kopf_t.wrk}
            per_c = ", ".join(
                f"c{r.connections} {r.rps / same_c[r.connections]:.2f}"
                for r in nl.wrk
                if r.connections in same_c
            )
            cpu_ratio = statistics.mean(r.server_cpu_us for r in kopf_t.wrk) / statistics.mean(
                r.server_cpu_us for r in nl.wrk
            )
            print(
                f"{name}: peak {nl.peak.rps:,.0f} rps = {nl.peak.rps / kopf_t.peak.rps:.2f} x "
                f"kopf-noop (target >= 0.85; per level: {per_c}; by CPU/request "
                f"{cpu_ratio:.2f}), {nl.peak.rps / bare.peak.rps:.2f} x bare aiohttp; "
                f"p99 at {args.rate:.0f}/s {nl.rate['p99_ms']:.2f} ms (target <= 10); "
                f"absolute target >= 1000 rps: {'met' if nl.peak.rps >= 1000 else 'NOT met'}"
            )
        print(f"kopf-noop / bare aiohttp: {by['kopf-noop'].peak.rps / by['bare'].peak.rps:.2f}")
    OUT.mkdir(parents=True, exist_ok=True)
    dump = {t.name: {"wrk": [vars(r) for r in t.wrk], "fixed_rate": t.rate} for t in targets}
    (OUT / "webhook.json").write_text(json.dumps(dump, indent=2))


def run(args: argparse.Namespace) -> None:
    ensure_wrk()
    try:
        bin_dir = find_bin_dir(build=True, build_timeout=3600)
    except TestbinUnavailable as exc:
        sys.exit(f"error: the control-plane binaries are needed (kopf logs in): {exc}")
    for note in machine_notes():
        print(f"# {note}")
    review = pod_create_review()
    uid = review["request"]["uid"]
    body = json.dumps(review).encode()
    work = Path(tempfile.mkdtemp(prefix="nodelimits-bench-"))
    body_path = work / "review.json"
    body_path.write_bytes(body)
    print(f"# body: Pod CREATE AdmissionReview, {len(body)} bytes; {args.duration:.0f} s per run")
    targets: list[Target] = []
    try:
        with ControlPlane(bin_dir) as plane:
            simulator = SimulatorProcess(work).start()
            try:
                certs = make_ca_and_cert(work / "tls")
                for name in args.servers:
                    with started(name, work, plane, simulator, certs, body, uid) as target:
                        measure(target, body_path, uid, args)
                        targets.append(target)
                        if args.profile and name != "bare":
                            profile(target, body_path, args)
            finally:
                simulator.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"# load average at end {os.getloadavg()[0]:.2f} (other work on the machine skews all)")
    report(targets, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    for role in ("serve-bare", "serve-kopf-noop"):
        p = sub.add_parser(role)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--cert", required=True)
        p.add_argument("--key", required=True)
    p = sub.add_parser("fixed-rate")
    p.add_argument("--url", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--body", required=True)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement")
    parser.add_argument(
        "--connections",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 16, 64],
        help="wrk connection counts (comma-separated)",
    )
    parser.add_argument("--rate", type=float, default=200, help="open-loop reviews/s")
    parser.add_argument(
        "--servers",
        type=lambda s: s.split(","),
        default=["bare", "kopf-noop", "nodelimits-info", "nodelimits-warning"],
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy kopf-noop and nodelimits under wrk"
    )
    args = parser.parse_args()
    if args.role in ("serve-bare", "serve-kopf-noop"):
        serve = serve_bare if args.role == "serve-bare" else serve_kopf_noop
        serve(args.port, args.cert, args.key)
    elif args.role == "fixed-rate":
        fixed_rate(args.url, args.ca, args.body, args.rate, args.duration, args.warmup)
    else:
        run(args)


if __name__ == "__main__":
    main()
