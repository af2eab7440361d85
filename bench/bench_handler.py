"""The admission request path in-process: CPU per review of nodelimits against kopf no-op.

``bench_webhook`` measures the servers over TLS with the load generator on the same two
cores, so its rows swing with whatever else runs. This measures the part issue 18 asks
about, the handler path, without sockets: each review goes through what the server runs
after the body is read (nodelimits: ``bounds.loads`` of the raw bytes and the review-shape
guard; kopf no-op: kopf's own ``json.loads`` of the text; then kopf's
``serve_admission_request`` with the registered handlers, ``json.dumps`` of the response),
timed with ``time.process_time`` over batches, configurations interleaved batch by batch
so a noisy neighbour slows all of them alike:

* ``kopf-noop``: one no-op validating handler, kopf as nodelimits runs it (the empty-patch
  copy skipped, ``EphemeralMemories``);
* ``nodelimits``: the handlers ``nodelimits serve`` registers (every built-in kind and the
  kind table), its Admission with a warmed limits cache over ``examples/limits.yaml``,
  decision line at INFO (JSON, to a null stream) and at WARNING.

Rows: the bench_webhook Pod CREATE (allowed), the same Pod oversized (denied), and a Pod
UPDATE that changes nothing checked (skipped).

    python -m bench.bench_handler [--batches 30] [--batch 200] [--profile]

``--profile`` prints cProfile's heaviest functions for the nodelimits CREATE row.
Figures go to docs/performance.md ("The handler path in-process").
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import functools
import gc
import io
import json
import logging
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from bench.bench_webhook import pod_create_review
from webhook import bounds
from webhook.config import Settings
from webhook.core import policy, workloads
from webhook.metrics import Metrics
from webhook.platform import build_limits_cache
from webhook.serve.admission import DECISION_LOGGER, REVIEW_UID, Admission, register
from webhook.serve.guard import check_review
from webhook.serve.handlers import HandlerSpec, served
from webhook.serve.kopf_glue import (
    EphemeralMemories,
    SmartOperatorRegistry,
    WebhookFn,
    routed_by_webhook,
    serve_admission_request,
    serving_insights,
    skip_copy_of_empty_patches,
)
from webhook.serve.process import configure_logging

ROOT = Path(__file__).resolve().parents[1]
LIMITS = ROOT / "examples" / "limits.yaml"

Serve = Callable[[bytes], Coroutine[Any, Any, bytes]]


# --- the requests -----------------------------------------------------------------------


def _encoded(review: dict[str, Any]) -> bytes:
    return json.dumps(review).encode()


def create_allowed() -> bytes:
    return _encoded(pod_create_review())


def create_denied() -> bytes:
    review = pod_create_review()
    for container in review["request"]["object"]["spec"]["containers"]:
        container.setdefault("resources", {}).setdefault("limits", {})["cpu"] = "4000"
        container["resources"].setdefault("requests", {})["cpu"] = "4000"
    return _encoded(review)


def update_unchanged() -> bytes:
    review = pod_create_review()
    request = review["request"]
    request["operation"] = "UPDATE"
    request["oldObject"] = copy.deepcopy(request["object"])
    request["object"]["metadata"]["labels"]["touched"] = "yes"
    request["options"] = {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
    return _encoded(review)


ROWS: dict[str, Callable[[], bytes]] = {
    "pod CREATE allowed": create_allowed,
    "pod CREATE denied": create_denied,
    "pod UPDATE unchanged": update_unchanged,
}


# --- the servers ------------------------------------------------------------------------


@dataclass
class Kopf:
    """kopf's request function with what ``spawn_tasks`` would bind into it."""

    registry: kopf.OperatorRegistry
    handlers: dict[str, HandlerSpec]
    ours: bool
    """Read as ``NodelimitsWebhookServer`` does (bounded parse, review-shape guard), or, for
    kopf no-op, as kopf's own server does (aiohttp's ``request.json()``)."""

    def __post_init__(self) -> None:
        self.settings = kopf.OperatorSettings()
        self.memories = EphemeralMemories()
        self.insights = serving_insights(
            (h.group, h.version, h.plural, h.object_kind, h.namespaced)
            for h in self.handlers.values()
        )
        self.insights.ready_resources.set()  # adds the pinned resources
        self.fn: WebhookFn = functools.partial(
            serve_admission_request,
            settings=self.settings,
            memories=self.memories,
            memobase=kopf.Memo(),  # type: ignore[arg-type]  # kopf's AnyMemo is a Memo
            registry=self.registry,
            insights=self.insights,
            indices={},  # no kopf indexes registered: an empty mapping of them
        )
        if self.ours:
            self.fn = routed_by_webhook(self.fn)

    async def __call__(self, raw: bytes) -> bytes:
        if self.ours:  # what NodelimitsWebhookServer does around kopf: parse, guard, route
            if not raw.isascii():
                raw.decode("utf-8")
            data = bounds.loads(raw)
            check_review(data, "pods", self.handlers)
            REVIEW_UID.set(data["request"]["uid"])
        else:
            data = json.loads(raw.decode("utf-8"))
        response = await self.fn(data, webhook=kopf.HandlerId("pods"), sslpeer={}, headers={})
        return json.dumps(response).encode()


async def _noop(**_: Any) -> None:
    pass


def kopf_noop(handlers: tuple[HandlerSpec, ...] | None = None) -> Kopf:
    """kopf with no-op validating handlers: the Pod one alone, or ``handlers`` (to see what
    registering as many webhooks as nodelimits does costs kopf's routing)."""
    registry = SmartOperatorRegistry()
    specs = handlers or tuple(h for h in served(["Pod"]) if h.id == "pods")
    for h in specs:
        kopf.on.validate(
            h.group,
            h.version,
            h.plural,
            id=h.id,
            operations=set(h.operations),  # type: ignore[arg-type]
            subresource=h.subresource,
            registry=registry,
        )(_noop)
    return Kopf(registry, {h.id: h for h in specs}, ours=False)


async def nodelimits(settings: Settings, stack: AsyncExitStack) -> Kopf:
    metrics = Metrics()
    cache = await stack.enter_async_context(build_limits_cache(settings, metrics))
    admission = Admission(settings, cache, metrics)
    registry = SmartOperatorRegistry()
    registered = register(registry, admission)
    return Kopf(registry, {h.id: h for h in registered}, ours=True)


def settings_at(level: str) -> Settings:
    return Settings(log_level=level, platform={"limits_file": LIMITS})  # type: ignore[arg-type]


@contextmanager
def decision_lines_to_null() -> Iterator[None]:
    """configure_logging's JSON handler writes to stderr: format each line, drop it."""
    logger = logging.getLogger(DECISION_LOGGER)
    streams = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    saved = [h.stream for h in streams]
    for h in streams:
        h.setStream(io.StringIO())
    try:
        yield
    finally:
        for h, s in zip(streams, saved, strict=True):
            h.setStream(s)


# --- measuring --------------------------------------------------------------------------


async def batch_cpu(serve: Serve, raw: bytes, n: int) -> float:
    """Process CPU seconds per review over ``n`` reviews."""
    started = time.process_time()
    for _ in range(n):
        # a task per review, as aiohttp runs each request: reviews run in one task keep the
        # kopf context of each cancelled timer (and so the whole review) alive
        await asyncio.create_task(serve(raw))
    return (time.process_time() - started) / n


async def measure(
    servers: dict[str, tuple[Serve, str]], rows: dict[str, bytes], batches: int, n: int
) -> dict[tuple[str, str], list[float]]:
    samples: dict[tuple[str, str], list[float]] = {}
    for serve, level in servers.values():  # warm every path once
        logging.getLogger().setLevel(level)
        for raw in rows.values():
            await serve(raw)
    for _ in range(batches):
        for name, (serve, level) in servers.items():
            logging.getLogger().setLevel(level)
            logging.getLogger(DECISION_LOGGER).setLevel(level)
            for row, raw in rows.items():
                samples.setdefault((name, row), []).append(await batch_cpu(serve, raw, n))
    return samples


def report(samples: dict[tuple[str, str], list[float]], rows: list[str]) -> None:
    print("| server | " + " | ".join(f"{r}: µs/review" for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    medians = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
    names = list(dict.fromkeys(name for name, _ in samples))
    for name in names:
        cells = []
        for row in rows:
            m = medians[(name, row)]
            spread = samples[(name, row)]
            lo, hi = min(spread) * 1e6, max(spread) * 1e6
            cells.append(f"{m:,.0f} ({lo:,.0f}-{hi:,.0f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    base = "kopf-noop"
    for name in names:
        if name == base:
            continue
        ratios = [medians[(base, row)] / medians[(name, row)] for row in rows]
        added = [medians[(name, row)] - medians[(base, row)] for row in rows]
        print(
            f"{name}: throughput ratio to kopf no-op (CPU) "
            + ", ".join(
                f"{r}: {q:.2f} (+{a:,.0f} µs)" for r, q, a in zip(rows, ratios, added, strict=True)
            )
        )


SERVERS = ("kopf-noop", "kopf-noop all webhooks", "nodelimits INFO", "nodelimits WARNING")


async def servers_in(stack: AsyncExitStack) -> dict[str, tuple[Serve, str]]:
    """Every configuration, by name: its request function and its log level."""
    every = served(settings_at("INFO").admission.kinds)  # the webhooks nodelimits registers
    return {
        "kopf-noop": (kopf_noop(), "INFO"),
        "kopf-noop all webhooks": (kopf_noop(every), "INFO"),
        "nodelimits INFO": (await nodelimits(settings_at("INFO"), stack), "INFO"),
        "nodelimits WARNING": (await nodelimits(settings_at("WARNING"), stack), "WARNING"),
    }


async def check_verdicts(servers: dict[str, tuple[Serve, str]], rows: dict[str, bytes]) -> None:
    for name, (serve, _) in servers.items():
        for row, raw in rows.items():
            answer = json.loads(await serve(raw))["response"]
            want = name.startswith("kopf-noop") or "denied" not in row
            if answer["allowed"] is not want:
                raise SystemExit(f"{name} {row}: allowed={answer['allowed']}: {answer}")


def print_profile(profiler: cProfile.Profile) -> None:
    for order, top in (("tottime", 30), ("cumulative", 40)):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(top)
        print(out.getvalue())


async def main_async(args: argparse.Namespace) -> None:
    skip_copy_of_empty_patches()
    configure_logging(settings_at("INFO"))
    rows = {name: make() for name, make in ROWS.items()}
    async with AsyncExitStack() as stack:
        servers = await servers_in(stack)
        if args.only:
            servers = {args.only: servers[args.only]}
        gc.collect()  # as nodelimits serve does once it is set up
        gc.freeze()
        with decision_lines_to_null():
            await check_verdicts(servers, rows)
            if args.only:  # one configuration, one row, a fixed count: for --instructions
                serve, level = servers[args.only]
                logging.getLogger().setLevel(level)
                logging.getLogger(DECISION_LOGGER).setLevel(level)
                for _ in range(args.reviews):
                    await asyncio.create_task(serve(rows[args.row]))
                return
            samples = await measure(servers, rows, args.batches, args.batch)
            report(samples, list(rows))
            if args.profile:
                logging.getLogger().setLevel("INFO")
                serve = servers["nodelimits INFO"][0]
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(args.batch * 5):
                    await asyncio.create_task(serve(rows["pod CREATE allowed"]))
                profiler.disable()
                print_profile(profiler)


# --- instruction counts -----------------------------------------------------------------


def instructions(name: str, row: str, reviews: int) -> int:
    """Instructions the process executes (valgrind's callgrind, user space) for ``reviews``
    reviews of ``row`` by ``name``, set-up included."""
    return counted(["--only", name, "--row", row, "--reviews", str(reviews)])


def counted(args: list[str]) -> int:
    """Instructions of one ``bench.bench_handler`` run with ``args`` under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        argv += [sys.executable, "-m", "bench.bench_handler", *args]
        env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts every run
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shown = " ".join(args)
            raise SystemExit(f"valgrind {shown}: exit {done.returncode}\n{done.stderr[-2000:]}")
        found = re.search(r"^summary:\s+(\d+)", out.read_text(), flags=re.M)
        if found is None:
            raise SystemExit(f"callgrind wrote no summary for {' '.join(args)}")
        return int(found[1])


# --- pieces of the path -----------------------------------------------------------------

PIECES = (
    "json.loads",
    "bounds.loads",
    "guard",
    "workload_of",
    "plan",
    "decide",
    "handle WARNING",
    "handle INFO",
)


async def run_piece(piece: str, calls: int) -> None:
    """``calls`` calls of one piece of the nodelimits path on the CREATE-allowed review."""
    level = "INFO" if piece == "handle INFO" else "WARNING"
    settings = settings_at(level)
    configure_logging(settings)
    text = create_allowed()
    data = json.loads(text)
    body = data["request"]["object"]
    table = settings.policy.kind_table
    handlers = {h.id: h for h in served(settings.admission.kinds)}
    with decision_lines_to_null():
        async with AsyncExitStack() as stack:
            metrics = Metrics()
            cache = await stack.enter_async_context(build_limits_cache(settings, metrics))
            admission = Admission(settings, cache, metrics)
            workload = workloads.workload_of(body, table, None)
            if not isinstance(workload, workloads.Workload):
                raise SystemExit(f"the bench Pod is skipped: {workload}")
            planned = policy.plan(workload, settings.policy)
            accelerator = planned.accelerator
            if planned.group is None or accelerator is None:
                raise SystemExit(f"the bench Pod is not checked: {planned}")
            found = await cache.get(planned.group, accelerator)
            logging.getLogger(DECISION_LOGGER).setLevel(level)

            async def handle() -> None:
                await admission.handle(
                    handlers["pods"],
                    body=body,
                    old=None,
                    operation="CREATE",
                    subresource=None,
                    dryrun=False,
                    warnings=[],
                    uid="u",
                )

            await handle()  # the limits cached, every path warm
            gc.collect()
            gc.freeze()
            if piece.startswith("handle"):
                for _ in range(calls):
                    await asyncio.create_task(handle())
                return
            pieces: dict[str, Callable[[], object]] = {
                "json.loads": lambda: json.loads(text),
                "bounds.loads": lambda: bounds.loads(text),
                "guard": lambda: check_review(data, "pods", handlers),
                "workload_of": lambda: workloads.workload_of(body, table, None),
                "plan": lambda: policy.plan(workload, settings.policy),
                "decide": lambda: policy.decide(
                    planned, found.limits, accelerator, settings.policy
                ),
            }
            call = pieces[piece]
            for _ in range(calls):
                call()


def report_pieces(calls: int) -> None:
    """Instructions per call of each piece: ``calls`` calls less none, under callgrind."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--pieces needs valgrind (apt-get install valgrind)")
    print("| piece | instructions/call |")
    print("|---|---|")
    for piece in PIECES:
        base = counted(["--piece", piece, "--reviews", "0"])
        per = (counted(["--piece", piece, "--reviews", str(calls)]) - base) / calls
        print(f"| {piece} | {per:,.0f} |", flush=True)


def report_instructions(reviews: int, names: list[str]) -> None:
    """Instructions per review: each configuration run with ``reviews`` and with none, the
    difference divided. Independent of what else the machine runs."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    per: dict[tuple[str, str], float] = {}
    for name in names:
        base = instructions(name, next(iter(ROWS)), 0)  # set-up: the same whatever the row
        for row in ROWS:
            per[(name, row)] = (instructions(name, row, reviews) - base) / reviews
            print(f"  {name:20} {row:22} {per[(name, row)]:12,.0f} instructions/review")
    print()
    print("| server | " + " | ".join(f"{r}: instructions/review" for r in ROWS) + " |")
    print("|---|" + "---|" * len(ROWS))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{per[(name, r)]:,.0f}" for r in ROWS) + " |")
    for name in names:
        if name == "kopf-noop" or ("kopf-noop", next(iter(ROWS))) not in per:
            continue
        print(
            f"{name}: kopf no-op / {name} "
            + ", ".join(f"{r}: {per[('kopf-noop', r)] / per[(name, r)]:.2f}" for r in ROWS)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="cProfile the INFO CREATE row")
    parser.add_argument(
        "--instructions",
        type=int,
        metavar="N",
        default=0,
        help="count instructions per review under valgrind over N reviews (load-independent)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"for --instructions: which, comma-separated (default: {', '.join(SERVERS)})",
    )
    parser.add_argument(
        "--pieces",
        type=int,
        metavar="N",
        default=0,
        help="count instructions per call of each piece of the path under valgrind over N calls",
    )
    parser.add_argument("--piece", choices=PIECES, help=argparse.SUPPRESS)
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--row", default="pod CREATE allowed", help=argparse.SUPPRESS)
    parser.add_argument("--reviews", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pieces:
        report_pieces(args.pieces)
        return
    if args.instructions:
        names = [n.strip() for n in args.servers.split(",") if n.strip()]
        unknown = sorted(set(names) - set(SERVERS))
        if unknown:
            parser.error(f"unknown --servers {', '.join(unknown)}; known: {', '.join(SERVERS)}")
        report_instructions(args.instructions, names)
        return
    run = run_piece(args.piece, args.reviews) if args.piece else main_async(args)
    try:
        import uvloop

        uvloop.run(run)
    except ImportError:
        asyncio.run(run)


if __name__ == "__main__":
    main()
