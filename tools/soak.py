"""Bounded soak of ``nodelimits serve``: fixed-rate mixed load, a flapping platform and
certificate rotation, every verdict checked against the pure core.

    python -m tools.soak --duration 600 --rate 200          # make soak
    python -m tools.soak --duration 60                      # a quick check

Starts a control plane (kopf's login and discovery), the platform simulator and
``nodelimits serve`` on loopback, then for ``--duration`` seconds:

* posts AdmissionReviews over TLS to the webhook paths at ``--rate`` per second, open loop
  (request i is due at t0 + i/rate; latency counts from the due time), each with a fresh
  UID: Pod CREATE, pods/resize UPDATE, Job/CronJob/Deployment CREATE and UPDATE with a
  changed or an unchanged template, 30% dry-run, five resource groups plus an unknown one,
  50 namespaces (``devtools/loadgen.py``);
* after the warm-up, switches a platform fault on and off every ~20-30 s (503, blackhole,
  HTML page, truncated JSON, dropped connection, latency beyond the deadline, codes 10001
  and 10008, wrong types, null data) with ``cache.ttl`` 2 s, so refreshes meet the faults;
* rotates the serving certificate ``--rotations`` times (a new leaf from the same CA, swapped
  in atomically like a Secret volume) and waits until the new serial is served;
* samples the server's RSS and open fds from /proc, and its asyncio task count and kopf memo
  count from /metrics, every 5 s.

Exits 1 if a verdict differs from the core's, a non-4xx HTTP error occurs, a rotation was
not picked up, or (with ``--max-growth-mb``) RSS grew more than that after the warm-up.
``--write-docs`` replaces the "Sustained load" figures in docs/reliability.md.
Everything is stopped on exit, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from devtools import loadgen
from devtools.certs import CertPaths
from devtools.controlplane import ControlPlane, find_bin_dir
from devtools.stack import EXAMPLE_LIMITS, SimulatorProcess, Webhook

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
AI_PATHS = "/ai/openapi/v2/instance-service/*"
FAULTS: tuple[dict[str, Any], ...] = (
    {"kind": "status", "status": 503},
    {"kind": "blackhole"},
    {"kind": "html", "status": 502},
    {"kind": "truncated"},
    {"kind": "drop"},
    {"kind": "latency", "seconds": 3.0},
    {"kind": "code", "code": "10001"},
    {"kind": "wrong_types"},
    {"kind": "code", "code": "10008"},
    {"kind": "null_data"},
)

CLIENT_TIMEOUT = 10.0
SAMPLE_EVERY = 5.0


@dataclass
class Sample:
    t: float
    rss_kb: int
    fds: int
    threads: int
    tasks: float | None
    memos: float | None


@dataclass
class Record:
    t: float  # due time since t0
    latency: float
    category: str
    shape: str
    fault: bool
    rotation: bool


@dataclass
class Run:
    duration: float
    rate: float
    warmup: float
    records: list[Record] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    fault_windows: list[tuple[float, float, str]] = field(default_factory=list)
    rotations: list[dict[str, Any]] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)
    lag_max: float = 0.0
    server_metrics: dict[str, float] = field(default_factory=dict)

    def in_windows(self, t: float, windows: list[tuple[float, float]]) -> bool:
        return any(a <= t <= b for a, b in windows)


def _metric(text: str, name: str) -> float | None:
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and (len(line) == len(name) or line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


async def _drive(args: argparse.Namespace, sim: SimulatorProcess, hook: Webhook, certs: Any) -> Run:
    run = Run(args.duration, args.rate, args.warmup)
    gen = loadgen.ReviewGenerator(EXAMPLE_LIMITS, seed=args.seed)
    rng = random.Random(args.seed)  # noqa: S311 - fault schedule, not crypto
    loop = asyncio.get_running_loop()
    pid = hook.process.pid
    context = certs.client_context()
    connector = aiohttp.TCPConnector(ssl=context, limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    headers = {"Content-Type": "application/json"}
    queue: asyncio.Queue[loadgen.Generated] = asyncio.Queue(maxsize=int(args.rate * 2) + 10)
    fault_on: list[bool] = [False]
    rotating: list[bool] = [False]
    stop = asyncio.Event()
    t0 = loop.time() + 0.5

    async def produce() -> None:
        while not stop.is_set():
            await queue.put(await gen.next())

    async def one(session: aiohttp.ClientSession, item: loadgen.Generated, due: float) -> None:
        fault, rotation = fault_on[0], rotating[0]
        response = None
        try:
            async with session.post(hook.url + item.path, data=item.body, headers=headers) as r:
                category, response = loadgen.classify(r.status, await r.read(), item)
                if category in (loadgen.HTTP_4XX, loadgen.HTTP_OTHER):
                    category = f"{category}_{r.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            category = f"client_{type(exc).__name__}"
        run.records.append(
            Record(due - t0, loop.time() - due, category, item.shape, fault, rotation)
        )
        if category != loadgen.OK and len(run.examples.setdefault(category, [])) < 3:
            run.examples[category].append(
                f"{item.shape} {item.path}: expected {item.expected}, got "
                f"{json.dumps(response)[:400] if response else category}"
            )

    async def flap() -> None:
        await asyncio.sleep(max(0.0, t0 + args.warmup - loop.time()))
        kinds = list(FAULTS)
        rng.shuffle(kinds)
        i = 0
        while not stop.is_set():
            fault = dict(kinds[i % len(kinds)], path=AI_PATHS)
            i += 1
            name = fault["kind"] + (f" {fault['code']}" if fault["kind"] == "code" else "")
            await asyncio.to_thread(sim.inject, **fault)
            start = loop.time() - t0
            fault_on[0] = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(20, 30))
            await asyncio.to_thread(sim.clear_faults)
            fault_on[0] = False
            run.fault_windows.append((start, loop.time() - t0, name))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(20, 30))

    async def rotate() -> None:
        if args.rotations <= 0:
            return
        span = args.duration - args.warmup
        times = [args.warmup + span * (k + 0.5) / args.rotations for k in range(args.rotations)]
        for at in times:
            await asyncio.sleep(max(0.0, t0 + at - loop.time()))
            if stop.is_set():
                return
            rotating[0] = True
            began = loop.time()
            serial = await asyncio.to_thread(certs.rotate)
            served_after = None
            while loop.time() - began < 30:
                with contextlib.suppress(OSError):
                    got = await loadgen.served_serial_async("127.0.0.1", hook.port, certs.ca)
                    if got == serial:
                        served_after = loop.time() - began
                        break
                await asyncio.sleep(0.05)
            await asyncio.sleep(2.0)  # connections closed by the old listener fail after
            rotating[0] = False
            run.rotations.append(
                {
                    "at": round(began - t0, 1),
                    "until": round(loop.time() - t0, 1),
                    "new_serial_served_after_s": served_after,
                }
            )

    async def sample(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            stats = await asyncio.to_thread(loadgen.proc_stats, pid)
            tasks = memos = None
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(hook.metrics_url + "/metrics") as r:
                    text = await r.text()
                tasks = _metric(text, "nodelimits_asyncio_tasks")
                memos = _metric(text, "nodelimits_kopf_memos")
            run.samples.append(
                Sample(
                    loop.time() - t0, stats["rss_kb"], stats["fds"], stats["threads"], tasks, memos
                )
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)

    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as plain,
    ):
        helpers = [
            asyncio.create_task(produce()),
            asyncio.create_task(flap()),
            asyncio.create_task(rotate()),
            asyncio.create_task(sample(plain)),
        ]
        inflight: set[asyncio.Task[None]] = set()
        total = int(args.duration * args.rate)
        last_report = 0.0
        try:
            for i in range(total):
                due = t0 + i / args.rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    run.lag_max = max(run.lag_max, -delay)
                item = await queue.get()
                task = asyncio.create_task(one(session, item, due))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                now = loop.time() - t0
                if now - last_report >= 30:
                    last_report = now
                    _progress(run, now)
            if inflight:
                await asyncio.wait(inflight, timeout=CLIENT_TIMEOUT + 5)
        finally:
            stop.set()
            for task in helpers:
                task.cancel()
            for task in inflight:
                task.cancel()
            await asyncio.gather(*helpers, *inflight, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(sim.clear_faults)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with plain.get(hook.metrics_url + "/metrics") as r:
                text = await r.text()
            for name in (
                "nodelimits_tls_reloads_total",
                "nodelimits_admission_requests_total",
                "nodelimits_admission_errors_total",
                "nodelimits_limits_cache_total",
                "nodelimits_asyncio_tasks",
                "nodelimits_kopf_memos",
            ):
                value = _metric(text, name)
                if value is not None:
                    run.server_metrics[name] = value
        stats = loadgen.proc_stats(pid)
        run.samples.append(
            Sample(
                loop.time() - t0,
                stats["rss_kb"],
                stats["fds"],
                stats["threads"],
                run.server_metrics.get("nodelimits_asyncio_tasks"),
                run.server_metrics.get("nodelimits_kopf_memos"),
            )
        )
    return run


def _progress(run: Run, now: float) -> None:
    done = len(run.records)
    bad = sum(1 for r in run.records if r.category != loadgen.OK)
    rss = run.samples[-1].rss_kb / 1024 if run.samples else float("nan")
    print(f"  t={now:5.0f}s answered={done} not-ok={bad} rss={rss:.1f} MiB", flush=True)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))]


def summarize(run: Run) -> dict[str, Any]:
    recs = run.records
    cats = collections.Counter(r.category for r in recs)
    client_fail = {k: v for k, v in cats.items() if k.startswith("client_")}
    rot_fail = collections.Counter(
        r.category for r in recs if r.rotation and r.category.startswith("client_")
    )
    lat = [r.latency for r in recs if not r.category.startswith("client_")]
    lat_fault = [r.latency for r in recs if r.fault and not r.category.startswith("client_")]
    lat_calm = [r.latency for r in recs if not r.fault and not r.category.startswith("client_")]
    post = [s for s in run.samples if s.t >= run.warmup]
    base = post[0] if post else (run.samples[0] if run.samples else None)
    last = run.samples[-1] if run.samples else None
    slope = None
    if len(post) >= 3:
        xs = [s.t / 60 for s in post]
        ys = [s.rss_kb / 1024 for s in post]
        slope = statistics.linear_regression(xs, ys).slope
    # the second half against the first half of the post-warm-up samples: flat means ~0
    half = len(post) // 2
    halves = None
    if half >= 2:
        halves = statistics.mean(s.rss_kb for s in post[half:]) - statistics.mean(
            s.rss_kb for s in post[:half]
        )
    slow = collections.Counter(
        f"{r.category} {'fault' if r.fault else 'no-fault'}" for r in recs if r.latency > 1.0
    )
    fails_during_faults = sum(1 for r in recs if r.fault and r.category == loadgen.FAIL_CLOSED)
    elapsed = (max(r.t for r in recs) - min(r.t for r in recs)) if recs else 0.0
    return {
        "date": datetime.date.today().isoformat(),
        "duration_s": run.duration,
        "rate_target": run.rate,
        "rate_achieved": round(len(recs) / elapsed, 1) if elapsed else None,
        "warmup_s": run.warmup,
        "reviews_sent": len(recs),
        "reviews_served": sum(
            v for k, v in cats.items() if not k.startswith("client_") and not k.startswith("http")
        ),
        "correct": cats.get(loadgen.OK, 0),
        "wrong_verdicts": cats.get(loadgen.WRONG, 0),
        "message_mismatches": cats.get(loadgen.MESSAGE, 0),
        "malformed_answers": cats.get(loadgen.MALFORMED, 0),
        "fail_closed_expected": cats.get(loadgen.FAIL_CLOSED, 0),
        "fail_closed_during_faults": fails_during_faults,
        "http_4xx": sum(v for k, v in cats.items() if k.startswith(loadgen.HTTP_4XX)),
        "http_non_4xx": sum(v for k, v in cats.items() if k.startswith(loadgen.HTTP_OTHER)),
        "client_failures": sum(client_fail.values()),
        "client_failures_by_kind": client_fail,
        "client_failures_in_rotation_windows": sum(rot_fail.values()),
        "client_failures_outside_rotation": sum(client_fail.values()) - sum(rot_fail.values()),
        "latency_ms": {
            "p50": round(_pct(lat, 50) * 1000, 1),
            "p99": round(_pct(lat, 99) * 1000, 1),
            "max": round(max(lat, default=float("nan")) * 1000, 1),
            "p50_no_fault": round(_pct(lat_calm, 50) * 1000, 1),
            "p99_no_fault": round(_pct(lat_calm, 99) * 1000, 1),
            "p50_under_fault": round(_pct(lat_fault, 50) * 1000, 1),
            "p99_under_fault": round(_pct(lat_fault, 99) * 1000, 1),
        },
        "client_lag_max_ms": round(run.lag_max * 1000, 1),
        "slower_than_1s": dict(slow),
        "fault_windows": [(round(a, 1), round(b, 1), k) for a, b, k in run.fault_windows],
        "rotations": run.rotations,
        "rss_mib": {
            "after_warmup": round(base.rss_kb / 1024, 1) if base else None,
            "final": round(last.rss_kb / 1024, 1) if last else None,
            "max": round(max(s.rss_kb for s in run.samples) / 1024, 1) if run.samples else None,
            "growth_after_warmup": round((last.rss_kb - base.rss_kb) / 1024, 1)
            if base and last
            else None,
            "second_half_minus_first_half": round(halves / 1024, 2) if halves is not None else None,
            "slope_mib_per_min": round(slope, 3) if slope is not None else None,
        },
        "fds": {
            "after_warmup": base.fds if base else None,
            "final": last.fds if last else None,
            "max": max(s.fds for s in run.samples) if run.samples else None,
        },
        "threads": {"final": last.threads if last else None},
        "asyncio_tasks": {
            "after_warmup": base.tasks if base else None,
            "final": last.tasks if last else None,
            "max": max((s.tasks for s in run.samples if s.tasks is not None), default=None),
        },
        "kopf_memos_max": max((s.memos for s in run.samples if s.memos is not None), default=None),
        "shapes": dict(collections.Counter(r.shape for r in recs)),
        "categories": dict(cats),
        "server_metrics": run.server_metrics,
        "examples": run.examples,
    }


def verdict(summary: dict[str, Any], args: argparse.Namespace) -> list[str]:
    problems = []
    if summary["wrong_verdicts"]:
        problems.append(f"{summary['wrong_verdicts']} wrong verdicts")
    if summary["message_mismatches"]:
        problems.append(f"{summary['message_mismatches']} denial messages differ from the core's")
    if summary["malformed_answers"]:
        problems.append(f"{summary['malformed_answers']} malformed answers")
    if summary["http_non_4xx"] or summary["http_4xx"]:
        problems.append(f"HTTP errors: {summary['categories']}")
    if summary["client_failures_outside_rotation"]:
        problems.append(
            f"{summary['client_failures_outside_rotation']} client failures outside rotations"
        )
    if summary["client_failures_in_rotation_windows"] > args.max_rotation_failures:
        problems.append(
            f"{summary['client_failures_in_rotation_windows']} failures during rotations "
            f"(allowed: {args.max_rotation_failures})"
        )
    for rot in summary["rotations"]:
        if rot["new_serial_served_after_s"] is None:
            problems.append(f"rotation at {rot['at']}s: new certificate never served")
    if summary["kopf_memos_max"]:
        problems.append(f"kopf retained {summary['kopf_memos_max']} memos")
    growth = summary["rss_mib"]["growth_after_warmup"]
    if args.max_growth_mb is not None and growth is not None and growth > args.max_growth_mb:
        problems.append(f"RSS grew {growth} MiB after warm-up (allowed {args.max_growth_mb})")
    return problems


def render(summary: dict[str, Any], args: argparse.Namespace, problems: list[str]) -> str:
    s, lat, rss = summary, summary["latency_ms"], summary["rss_mib"]
    rot = s["rotations"]
    rot_times = ", ".join(
        f"{r['new_serial_served_after_s']:.1f} s" if r["new_serial_served_after_s"] else "never"
        for r in rot
    )
    kinds = sorted({k for _, _, k in s["fault_windows"]})
    cmd = (
        f"make soak SOAK_ARGS='--duration {args.duration:g} --rate {args.rate:g} "
        f"--rotations {args.rotations} --seed {args.seed}'"
    )
    lines = [
        BEGIN,
        f"Measured {s['date']} on the development machine (2 cores; the client, simulator, "
        "kube-apiserver and etcd share them with the server), with:",
        "",
        "```",
        cmd,
        "```",
        "",
        "| Figure | Value |",
        "|---|---|",
        f"| Duration, rate (target / achieved) | {s['duration_s']:g} s, {s['rate_target']:g} / "
        f"{s['rate_achieved']} reviews/s (warm-up {s['warmup_s']:g} s) |",
        f"| **Reviews served** | **{s['reviews_served']:,}** of {s['reviews_sent']:,} sent |",
        f"| **Wrong verdicts** (allow/deny differs from the core) | **{s['wrong_verdicts']}** |",
        f"| Denial messages differing from the core's | {s['message_mismatches']} |",
        f"| Fail-closed denials (expected: platform down and nothing cached) | "
        f"{s['fail_closed_expected']} ({s['fail_closed_during_faults']} in fault windows) |",
        f"| HTTP errors: non-4xx / 4xx | {s['http_non_4xx']} / {s['http_4xx']} |",
        f"| Client-side failures (connection errors, timeouts) | {s['client_failures']} "
        f"{_kinds(s['client_failures_by_kind'])} |",
        f"| **Requests failed during cert rotation** | "
        f"**{s['client_failures_in_rotation_windows']}** over {len(rot)} rotations; "
        f"new serial served after {rot_times or '-'} |",
        f"| Latency p50 / p99 overall | {lat['p50']} / {lat['p99']} ms (max {lat['max']} ms) |",
        f"| Latency p50 / p99 with no fault | {lat['p50_no_fault']} / {lat['p99_no_fault']} ms |",
        f"| Latency p50 / p99 under fault | {lat['p50_under_fault']} / "
        f"{lat['p99_under_fault']} ms |",
        f"| **Memory growth** (RSS after warm-up -> end) | **{rss['growth_after_warmup']:+} MiB** "
        f"({rss['after_warmup']} -> {rss['final']} MiB, max {rss['max']}; 2nd half - 1st half "
        f"mean {rss['second_half_minus_first_half']:+} MiB; slope "
        f"{rss['slope_mib_per_min']:+} MiB/min) |",
        f"| Open fds after warm-up -> end (max) | {s['fds']['after_warmup']} -> "
        f"{s['fds']['final']} ({s['fds']['max']}) |",
        f"| asyncio tasks after warm-up -> end (max) | {_n(s['asyncio_tasks']['after_warmup'])} "
        f"-> {_n(s['asyncio_tasks']['final'])} ({_n(s['asyncio_tasks']['max'])}) |",
        f"| kopf memos retained (max) | {_n(s['kopf_memos_max'])} |",
        f"| Platform fault windows | {len(s['fault_windows'])} ({', '.join(kinds)}) |",
        f"| Result | {'PASS' if not problems else 'FAIL: ' + '; '.join(problems)} |",
        "",
        "Mix: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s["shapes"].items())) + ".",
        END,
    ]
    return "\n".join(lines)


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _kinds(by_kind: dict[str, int]) -> str:
    if not by_kind:
        return ""
    return "(" + ", ".join(f"{k.removeprefix('client_')} {v}" for k, v in by_kind.items()) + ")"


def write_docs(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Reliability\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n## Sustained load\n\n" + block + "\n"
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=200.0, help="reviews per second")
    parser.add_argument("--warmup", type=float, default=None, help="default: 10%%, 10-60 s")
    parser.add_argument("--rotations", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32, help="client keep-alive pool")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-rotation-failures", type=int, default=10)
    parser.add_argument("--max-growth-mb", type=float, default=None)
    parser.add_argument("--json", type=Path, help="write the full summary here")
    parser.add_argument("--write-docs", action="store_true", help="update docs/reliability.md")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(60.0, max(10.0, args.duration * 0.1))

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    work = Path(tempfile.mkdtemp(prefix="nodelimits-soak-"))
    plane: ControlPlane | None = None
    sim: SimulatorProcess | None = None
    hook: Webhook | None = None
    try:
        began = time.monotonic()
        plane = ControlPlane(find_bin_dir()).start()
        sim = SimulatorProcess(work).start()
        certs = loadgen.RotatingCerts(work / "secret")
        hook = Webhook(
            work,
            plane,
            sim,
            settings={
                "cache": {"ttl": 2, "negative_ttl": 5},
                "server": {"cert_check_interval": 0.5, "shutdown_delay": 0},
            },
        )
        hook.certs = CertPaths(ca=certs.ca, cert=certs.cert, key=certs.key)
        hook.start()
        print(
            f"stack up in {time.monotonic() - began:.1f}s (work dir {work}); "
            f"{args.duration:g}s at {args.rate:g}/s, warm-up {args.warmup:g}s",
            flush=True,
        )
        try:
            import uvloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        except ImportError:
            runner = asyncio.Runner()
        with runner:
            run = runner.run(_drive(args, sim, hook, certs))
        alive = hook.process.poll() is None
        rc = hook.stop()
        summary = summarize(run)
        summary["server_exit_code"] = rc
        problems = verdict(summary, args)
        if not alive:
            problems.append("the server died during the soak")
        if rc not in (0, None):
            problems.append(f"the server exited with {rc} on SIGTERM")
        block = render(summary, args, problems)
        print(json.dumps(summary, indent=1, default=str))
        print(block)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1, default=str))
        if args.write_docs:
            write_docs(block)
            print(f"wrote {DOC}")
        if problems:
            print("FAIL:", "; ".join(problems), file=sys.stderr)
            if hook is not None:
                print(hook._process.tail(30) if hook._process else "", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        print("interrupted: stopping everything", file=sys.stderr)
        return 130
    finally:
        if hook is not None:
            hook.stop()
        if sim is not None:
            sim.stop()
        if plane is not None:
            plane.stop()
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
