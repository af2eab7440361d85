"""The fault matrix's machinery: a TLS simulator, one webhook per failure mode, the cells,
and the writer of the "Fault matrix" section of docs/reliability.md.

One cell = one fault x one failure mode x one cache state (cold, or stale limits of the
group cached before the fault). Each cell sends two AdmissionReviews straight to the
webhook's TLS listener, concurrently: a Pod that fits (``fits``, its own group) and a Pod
far over the group's CPU (``big``, another group), and records the verdict, HTTP code,
message, warnings, metric deltas and latencies (client-side and the decision log's
``duration_ms``). The test module asserts; this module only runs and reports.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools.builders import container, limits_entry, pod
from devtools.certs import CertPaths, make_ca_and_cert
from devtools.controlplane import ControlPlane
from devtools.reviews import admission_review
from devtools.stack import EXAMPLE_LIMITS, Process, SimulatorProcess, Webhook, wait_until

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"

DEADLINE = 1.0  # platform.deadline
REQUEST_TIMEOUT = 0.4  # platform.request_timeout
TIMEOUT_SECONDS = 3  # admission.timeout_seconds (the chart's default timeoutSeconds)
BUDGET = max(DEADLINE, TIMEOUT_SECONDS * 0.8 - 0.25)  # Admission.budget
TTL = 1.0  # cache.ttl: short, so warmed limits go stale within the test
TOKEN_LIFETIME = 60.0  # simulator tokenLifetimeSeconds
REFRESH_MARGIN = 57.0  # platform.token_refresh_margin: a token is due 3 s after issue
SCHEDULING_SLACK_MS = 150.0  # what a loaded test machine may add to a decision

AI_PATHS = "/ai/*"
TOKEN_FAULT_PATHS = ("/api/user/v3/tokens", "/ac/openapi/v2/tokens*")
EXPECTED_PATHS = frozenset(
    {
        "/ai/openapi/v2/instance-service/resources",
        "/ai/openapi/v2/instance-service/resource-group",
        "/api/user/v3/tokens",
        "/ac/openapi/v2/tokens",
        "/ac/openapi/v2/tokens/next",
        "/ac/openapi/v2/center",
    }
)
"""Every path the platform client may ever call (the simulator's stats must stay within)."""

GROUPS = 400


# --- the cells ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One row of the matrix. ``expect``: transient | unknown | auth | rejected | survived."""

    id: str
    label: str
    expect: str
    inject: tuple[Mapping[str, Any], ...] = ()
    action: str | None = None  # down | ca_mismatch | revoke | renewal


def _code(code: str, status: int = 200) -> tuple[Mapping[str, Any], ...]:
    return ({"kind": "code", "path": AI_PATHS, "code": code, "status": status},)


def _on_tokens(**fault: Any) -> tuple[Mapping[str, Any], ...]:
    return tuple({**fault, "path": p} for p in TOKEN_FAULT_PATHS)


FAULTS: tuple[Fault, ...] = (
    Fault("blackhole", "blackholed (accepts, never answers)", "transient",
          ({"kind": "blackhole", "path": AI_PATHS},)),
    Fault("slow", f"slow: 2.5 s per answer (deadline {DEADLINE:g} s)", "transient",
          ({"kind": "latency", "path": AI_PATHS, "seconds": 2.5},)),
    Fault("http-503", "HTTP 503", "transient",
          ({"kind": "status", "path": AI_PATHS, "status": 503},)),
    Fault("http-500", "HTTP 500", "transient",
          ({"kind": "status", "path": AI_PATHS, "status": 500},)),
    Fault("html-200", "HTML error page with HTTP 200", "transient",
          ({"kind": "html", "path": AI_PATHS},)),
    Fault("html-502", "HTML error page with HTTP 502", "transient",
          ({"kind": "html", "path": AI_PATHS, "status": 502},)),
    Fault("truncated", "truncated JSON", "transient", ({"kind": "truncated", "path": AI_PATHS},)),
    Fault("wrong-types", "wrong types (numbers as strings)", "transient",
          ({"kind": "wrong_types", "path": AI_PATHS},)),
    Fault("numeric-code", 'numeric code ("code": 0)', "transient",
          ({"kind": "numeric_code", "path": AI_PATHS},)),
    Fault("null-data", 'code "0" with "data": null', "transient",
          ({"kind": "null_data", "path": AI_PATHS},)),
    Fault("drop", "connection dropped without an answer", "transient",
          ({"kind": "drop", "path": AI_PATHS},)),
    Fault("10001", "code 10001 (internal error)", "transient", _code("10001")),
    Fault("10012", "code 10012 (connection interrupted)", "transient", _code("10012")),
    Fault("10003", "code 10003 (missing parameters)", "rejected", _code("10003")),
    Fault("10004", "code 10004 (unknown group)", "unknown", _code("10004")),
    Fault("10007", "code 10007 (account frozen)", "auth", _code("10007")),
    Fault("10008", "code 10008 (no permission), HTTP 401", "auth", _code("10008", 401)),
    Fault("10009", "code 10009 (no API access)", "auth", _code("10009")),
    Fault("token-revoked", "token expired/revoked mid-run", "survived", action="revoke"),
    Fault("renewal-failing", "token due, renewal and re-issue blackholed", "survived",
          _on_tokens(kind="blackhole"), action="renewal"),
    Fault("token-revoked-reissue-failing", "token revoked, re-issue fails (HTTP 503)",
          "transient", _on_tokens(kind="status", status=503), action="revoke"),
    Fault("down", "platform down (simulator stopped)", "transient", action="down"),
    Fault("ca-mismatch", "CA mismatch (platform cert from an untrusted CA)", "transient",
          action="ca_mismatch"),
)  # fmt: skip
MODES = ("closed", "open")
STALE = (False, True)
CELLS = tuple((f, m, s) for m in MODES for f in FAULTS for s in STALE)


@dataclass
class Answer:
    """One AdmissionReview sent, and what came back."""

    label: str  # fits | big | trigger
    group: str
    name: str  # unique: the decision log line is found by it
    status: int
    allowed: bool | None
    code: int | None
    message: str
    warnings: list[str]
    client_ms: float
    body: str
    decision: dict[str, Any] = field(default_factory=dict)

    @property
    def server_ms(self) -> float:
        return float(self.decision.get("duration_ms", math.nan))


@dataclass
class Cell:
    fault: Fault
    mode: str
    stale: bool
    answers: list[Answer]  # the fits/big pair (the stale triggers are not in it)
    triggers: list[Answer]
    deltas: dict[str, float]

    @property
    def key(self) -> str:
        return f"{self.fault.id}/{self.mode}/{'stale' if self.stale else 'cold'}"

    def answer(self, label: str) -> Answer:
        return next(a for a in self.answers if a.label == label)


# --- the TLS simulator --------------------------------------------------------------------


class TlsSimulatorProcess(SimulatorProcess):
    """``nodelimits simulate`` over TLS; restartable on the same port with another cert.

    Each start logs to its own file, so nothing it ever printed is lost to the secrets grep.
    """

    def __init__(self, workdir: Path, config: Mapping[str, Any], certs: CertPaths) -> None:
        super().__init__(workdir, config)
        self.certs = certs
        self.url = f"https://127.0.0.1:{self.port}"
        self.starts = 0
        self.logs: list[Path] = []
        self._admin_context = ssl.create_default_context()
        self._admin_context.check_hostname = False
        self._admin_context.verify_mode = ssl.CERT_NONE  # loopback admin: any cert we serve

    def start(self, certs: CertPaths | None = None) -> TlsSimulatorProcess:
        certs = certs or self.certs
        path = self.workdir / "simulator.yaml"
        path.write_text(yaml.safe_dump(self.config))
        argv = [
            sys.executable, "-m", "webhook", "simulate", "--config", str(path),
            "--port", str(self.port), "--tls-cert", str(certs.cert), "--tls-key", str(certs.key),
        ]  # fmt: skip
        self.starts += 1
        log = self.workdir / f"simulator-{self.starts}.log"
        self.logs.append(log)
        self._process = Process("simulator", argv, log, os.environ)
        process = self._process
        wait_until("simulator", lambda: "listening on" in process.tail(), process)
        return self

    def admin(self, method: str, path: str, payload: object = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(  # noqa: S310 - loopback https
            f"{self.url}/_simulator/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5, context=self._admin_context) as resp:  # noqa: S310
            body = resp.read()
        return json.loads(body) if body else None


# --- one stack per failure mode -----------------------------------------------------------


def make_secrets(tag: str) -> dict[str, str]:
    """Credentials distinctive enough that any occurrence in output is a leak."""
    salt = uuid.uuid4().hex[:12]
    return {
        "user": f"fmuser{tag}",
        "accessKey": f"AKfm{tag}{salt}ak",
        "secretKey": f"SKfm{tag}{salt}sk",
        "password": f"PWfm{tag}{salt}pw",
        "orgId": f"ORGfm{tag}{salt}org",
    }


def simulator_config(secrets: Mapping[str, str]) -> dict[str, Any]:
    base = yaml.safe_load(EXAMPLE_LIMITS.read_text())["resourceGroups"]
    groups = [limits_entry(f"fm-{i:03d}") for i in range(GROUPS)]
    return {
        "resourceGroups": base + groups,
        "accounts": [{**secrets, "status": "active"}],
        "tokenLifetimeSeconds": TOKEN_LIFETIME,
    }


def webhook_settings(
    mode: str, token_source: str, secret_dir: Path, ca: Path, *, discover: bool
) -> dict[str, Any]:
    platform: dict[str, Any] = {
        "token_source": token_source,
        "secret_dir": str(secret_dir),
        "ca_bundle": str(ca),
        "cluster_id": "11112",
        "deadline": DEADLINE,
        "request_timeout": REQUEST_TIMEOUT,
        "connect_timeout": 0.3,
        "retries": 2,
        "token_refresh_margin": REFRESH_MARGIN,
    }
    if discover:
        platform["base_url"] = None  # the AI URL comes from the center's aiUrls
    return {
        "platform": platform,
        "cache": {"ttl": TTL, "max_stale": 900, "negative_ttl": 10},
        "admission": {"failure_mode": mode, "timeout_seconds": TIMEOUT_SECONDS},
    }


class Stack:
    """A TLS simulator and ``nodelimits serve`` in one failure mode, with the cells' state."""

    def __init__(
        self, workdir: Path, plane: ControlPlane, mode: str, token_source: str, *, discover: bool
    ) -> None:
        self.mode = mode
        self.workdir = workdir
        self.secrets = make_secrets(mode)
        self.sim_certs = make_ca_and_cert(workdir / "sim-tls", name="platform")
        self.untrusted = make_ca_and_cert(workdir / "sim-tls-untrusted", name="untrusted")
        secret_dir = workdir / "fm-credentials"  # not stack.Webhook's "credentials"
        secret_dir.mkdir(parents=True, exist_ok=True)
        for name, value in self.secrets.items():
            (secret_dir / name).write_text(value)
        self.simulator = TlsSimulatorProcess(
            workdir, simulator_config(self.secrets), self.sim_certs
        )
        settings = webhook_settings(
            mode, token_source, secret_dir, self.sim_certs.ca, discover=discover
        )
        self.webhook = Webhook(workdir, plane, self.simulator, settings)
        self.sim_state = "down"
        self.transcript: list[str] = []  # every response body and client-side error
        self._next_group = 0
        self.stale_groups: dict[tuple[str, str], str] = {}
        self.warmed_at = 0.0
        self._context = ssl.create_default_context(cafile=str(self.webhook.certs.ca))
        self._pool = ThreadPoolExecutor(max_workers=8)

    def start(self) -> Stack:
        self.simulator.start()
        self.sim_state = "ok"
        self.webhook.start()
        return self

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.webhook.stop()
        self.simulator.stop()

    def group(self) -> str:
        name = f"fm-{self._next_group:03d}"
        self._next_group += 1
        assert self._next_group <= GROUPS, "more groups needed than the simulator serves"
        return name

    # --- the simulator's state ------------------------------------------------------------

    def ensure_platform(self, state: str = "ok") -> None:
        if self.sim_state == state:
            return
        if self.sim_state != "down":
            self.simulator.stop()
        if state == "ok":
            self.simulator.start(self.sim_certs)
        elif state == "bad":
            self.simulator.start(self.untrusted)
        self.sim_state = state

    def clear_faults(self) -> None:
        if self.sim_state == "ok":
            self.simulator.clear_faults()

    # --- requests ---------------------------------------------------------------------------

    def review(self, label: str, group: str, obj: Mapping[str, Any] | None = None) -> Answer:
        uid = str(uuid.uuid4())
        if obj is None:
            obj = (
                pod(container(cpu="8", memory="16Gi", gpu=2), name=f"fits-{uid[:8]}", group=group)
                if label == "fits"
                else pod(container(cpu="999"), name=f"{label}-{uid[:8]}", group=group)
            )
        payload = admission_review(obj, uid=uid, user="fault-matrix")
        started = time.perf_counter()
        status, text = post(f"{self.webhook.url}/pods", payload, self._context)
        elapsed = (time.perf_counter() - started) * 1000
        self.transcript.append(text)
        allowed, code, message, warnings = None, None, "", []
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            response = json.loads(text)["response"]
            allowed = bool(response["allowed"])
            warnings = list(response.get("warnings") or [])
            status_obj = response.get("status") or {}
            code, message = status_obj.get("code"), status_obj.get("message", "")
        name = str(obj["metadata"]["name"])
        return Answer(label, group, name, status, allowed, code, message, warnings, elapsed, text)

    def reviews(self, *jobs: tuple[str, str]) -> list[Answer]:
        """Send the (label, group) reviews concurrently."""
        futures = [self._pool.submit(self.review, label, group) for label, group in jobs]
        return [f.result(timeout=TIMEOUT_SECONDS * 4) for f in futures]

    def attach_decisions(self, answers: Iterable[Answer]) -> None:
        pending = {a.name: a for a in answers}
        deadline = time.monotonic() + 5
        while pending and time.monotonic() < deadline:
            for decision in self.webhook.decisions():
                answer = pending.pop(str(decision.get("name")), None)
                if answer is not None:
                    answer.decision = decision
            if pending:
                time.sleep(0.05)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = self.webhook.metrics_text()
        self.transcript.append(text)
        return parse_metrics(text)

    # --- the cells ---------------------------------------------------------------------------

    def warm(self) -> None:
        """Cache limits of one pair of groups per stale cell; they go stale after TTL."""
        jobs: list[tuple[str, str]] = []
        for fault in FAULTS:
            for label in ("fits", "big"):
                group = self.group()
                self.stale_groups[(fault.id, label)] = group
                jobs.append((label, group))
        # Warmed means the group's real limits are cached under the type its listing gives:
        # "big" must be denied by the policy (POLICY_DENIAL), not as a group unknown under
        # a type inferred while the server's cached group list still predated the group —
        # a stale cell would then look it up under the listed type and meet its fault cold.
        for _ in range(5):  # setup, not a cell: the list refresh, a busy machine's deadline
            answers = self.reviews(*jobs)
            jobs = [(a.label, a.group) for a in answers if not _warmed(a)]
            if not jobs:
                break
            time.sleep(TTL + 0.2)  # the group list goes stale and is fetched again
        assert not jobs, f"warming the cache failed for {jobs}"
        self.warmed_at = time.monotonic()

    def run(self, fault: Fault, stale: bool) -> Cell:
        if stale:
            groups = {label: self.stale_groups[(fault.id, label)] for label in ("fits", "big")}
            wait = self.warmed_at + TTL + 0.1 - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        else:
            groups = {label: self.group() for label in ("fits", "big")}
        if fault.action == "ca_mismatch":
            self.ensure_platform("bad")
        elif fault.action == "down":
            self.ensure_platform("down")
        else:
            self.ensure_platform("ok")
            self.simulator.clear_faults()
        before = self.scrape()
        try:
            for injected in fault.inject:
                self.simulator.inject(**injected)
            if fault.action == "revoke":
                self.simulator.admin("POST", "tokens/revoke")
            elif fault.action == "renewal":
                self._wait_until_token_due()
            triggers: list[Answer] = []
            if stale:
                # Stale-while-revalidate: these are answered from the cache at once and
                # start the refreshes that meet the fault; the pair then sees their outcome.
                triggers = self.reviews(("trigger", groups["fits"]), ("trigger", groups["big"]))
                self._wait_refresh_settled(before, refreshes=2)
            answers = self.reviews(("fits", groups["fits"]), ("big", groups["big"]))
        finally:
            self.clear_faults()
        after = self.scrape()
        self.attach_decisions([*answers, *triggers])
        return Cell(fault, self.mode, stale, answers, triggers, metric_deltas(before, after))

    def _wait_until_token_due(self) -> None:
        metrics = self.scrape()
        expiry = sum(
            v for (n, _), v in metrics.items() if n == "nodelimits_token_expiry_timestamp_seconds"
        )
        assert expiry > 0, "no token expiry exported"
        wait = expiry - REFRESH_MARGIN - time.time() + 0.2
        assert wait < TOKEN_LIFETIME - REFRESH_MARGIN + 1
        if wait > 0:
            time.sleep(wait)

    def _wait_refresh_settled(
        self, before: Mapping[Any, float], refreshes: int, timeout: float = 5.0
    ) -> None:
        """Until the refreshes the triggers started have failed or succeeded (bounded)."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            d = metric_deltas(before, self.scrape())
            if d.get("cache{error}", 0) + d.get("platform{resources,ok,0}", 0) >= refreshes:
                break
            time.sleep(0.05)
        # The counters alone can be satisfied by the previous cell's refreshes finishing
        # late (other groups); this cell's own refreshes are over once one platform
        # deadline (plus one attempt) has passed since the triggers.
        time.sleep(max(0.0, started + DEADLINE + REQUEST_TIMEOUT + 0.2 - time.monotonic()))


# --- HTTP and metrics helpers -------------------------------------------------------------


def post(url: str, payload: object, context: ssl.SSLContext) -> tuple[int, str]:
    req = urllib.request.Request(  # noqa: S310 - loopback https
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS * 3, context=context) as resp:  # noqa: S310
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, f"client error: {exc}"


MetricKey = tuple[str, tuple[tuple[str, str], ...]]


def parse_metrics(text: str) -> dict[MetricKey, float]:
    out: dict[MetricKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


_SHORT = {
    "nodelimits_admission_requests_total": ("requests", ("decision",)),
    "nodelimits_admission_errors_total": ("errors", ("reason",)),
    "nodelimits_fail_open_total": ("fail_open", ("reason",)),
    "nodelimits_platform_requests_total": ("platform", ("endpoint", "outcome", "code")),
    "nodelimits_limits_cache_total": ("cache", ("event",)),
    "nodelimits_token_refresh_total": ("token_refresh", ("method", "outcome")),
}


def metric_deltas(
    before: Mapping[MetricKey, float], after: Mapping[MetricKey, float]
) -> dict[str, float]:
    """Counter increases, keyed short: ``requests{error}``, ``platform{resources,ok}``."""
    out: dict[str, float] = {}
    for (name, labels), value in after.items():
        if name not in _SHORT:
            continue
        delta = value - before.get((name, labels), 0.0)
        if delta <= 0:
            continue
        short, keys = _SHORT[name]
        values = dict(labels)
        key = f"{short}{{{','.join(values.get(k, '') for k in keys)}}}"
        out[key] = out.get(key, 0.0) + delta
    return out


def total(deltas: Mapping[str, float], prefix: str) -> float:
    return sum(v for k, v in deltas.items() if k.startswith(prefix))


# --- expectations -------------------------------------------------------------------------

POLICY_DENIAL = "cpu 999 > 40 cores per node"


def _warmed(answer: Answer) -> bool:
    """The answer came from the group's real limits: fits allowed, big denied by them."""
    if answer.label == "fits":
        return answer.allowed is True
    return answer.allowed is False and POLICY_DENIAL in answer.message


STALE_WARNING = "cached limits were used"
CLOSED = "denied because failureMode is closed"
OPEN = "allowed because failureMode is open"
ACCOUNT = "the platform refused nodelimits' account"
REJECTED = "the platform rejected nodelimits' request"


@dataclass(frozen=True)
class Expected:
    allowed: bool
    code: int | None
    phrase: str  # in the message (denied) or in a warning (allowed)
    warning: str | None = None  # also required among the warnings
    decision: str = ""  # the decision label counted in nodelimits_admission_requests_total


def expected(fault: Fault, mode: str, stale: bool, label: str, group: str) -> Expected:
    fits = label == "fits"
    by_policy = (
        Expected(True, None, "", decision="allow")
        if fits
        else Expected(False, 403, POLICY_DENIAL, decision="deny")
    )
    if fault.expect == "survived":
        return by_policy
    if fault.expect == "unknown":
        return Expected(False, 403, f'resource group "{group}" is unknown to the platform',
                        decision="deny")  # fmt: skip
    if stale:  # stale-if-error: the cached limits decide, with a warning
        return Expected(by_policy.allowed, by_policy.code, by_policy.phrase, STALE_WARNING,
                        by_policy.decision)  # fmt: skip
    if fault.expect == "auth":
        return Expected(False, 403, ACCOUNT, decision="error")
    if fault.expect == "rejected":
        return Expected(False, 500, REJECTED, decision="error")
    if mode == "closed":
        return Expected(False, 503, CLOSED, decision="error")
    return Expected(True, None, "", OPEN, decision="fail_open")


def check(cell: Cell) -> list[str]:
    """Every way the cell's outcome differs from the expectation (empty: as documented)."""
    problems: list[str] = []
    for a in cell.answers:
        want = expected(cell.fault, cell.mode, cell.stale, a.label, a.group)
        where = f"{cell.key} {a.label}"
        if a.status != 200:
            problems.append(f"{where}: HTTP {a.status} {a.body[:200]}")
            continue
        if a.allowed is not want.allowed:
            problems.append(f"{where}: allowed={a.allowed}, want {want.allowed}: {a.message}")
        if a.code != want.code:
            problems.append(f"{where}: code {a.code}, want {want.code}: {a.message}")
        if want.phrase and want.phrase not in a.message:
            problems.append(f"{where}: message {a.message!r} lacks {want.phrase!r}")
        if want.warning and not any(want.warning in w for w in a.warnings):
            problems.append(f"{where}: warnings {a.warnings} lack {want.warning!r}")
        if not want.warning and any(STALE_WARNING in w or OPEN in w for w in a.warnings):
            problems.append(f"{where}: unexpected warnings {a.warnings}")
        if a.decision.get("verdict") != want.decision:
            problems.append(
                f"{where}: logged verdict {a.decision.get('verdict')}, want {want.decision}"
            )
        if not a.server_ms <= BUDGET * 1000 + SCHEDULING_SLACK_MS:
            problems.append(f"{where}: decision took {a.server_ms} ms, budget {BUDGET * 1000:g}")
        if not a.client_ms < TIMEOUT_SECONDS * 1000:
            problems.append(f"{where}: answered in {a.client_ms:.0f} ms >= timeoutSeconds")
    problems += _check_metrics(cell)
    return problems


def _check_metrics(cell: Cell) -> list[str]:
    d, problems = cell.deltas, []
    wants: dict[str, int] = {}
    for a in cell.answers:
        want = expected(cell.fault, cell.mode, cell.stale, a.label, a.group)
        wants[want.decision] = wants.get(want.decision, 0) + 1
    for trigger in cell.triggers:
        trigger_decision = trigger.decision.get("verdict", "")
        wants[trigger_decision] = wants.get(trigger_decision, 0) + 1
    for decision, n in wants.items():
        got = d.get(f"requests{{{decision}}}", 0)
        if got != n:
            problems.append(f"{cell.key}: requests{{{decision}}} +{got:g}, want +{n}")
    errors, fail_open = total(d, "errors{"), total(d, "fail_open{")
    want_errors = wants.get("error", 0)
    want_open = wants.get("fail_open", 0)
    if errors != want_errors:
        problems.append(f"{cell.key}: admission_errors +{errors:g}, want +{want_errors}")
    if fail_open != want_open:
        problems.append(f"{cell.key}: fail_open +{fail_open:g}, want +{want_open}")
    platform_failures = sum(
        v for k, v in d.items() if k.startswith("platform{") and not k.endswith(",ok,0}")
    )
    unreachable = cell.fault.action in ("down", "ca_mismatch")
    if cell.fault.expect != "survived" and not unreachable and not platform_failures:
        problems.append(f"{cell.key}: no failed platform request counted: {d}")
    if cell.fault.action in ("down", "ca_mismatch") and not d.get(
        "platform{resources,unavailable,}"
    ):
        problems.append(f"{cell.key}: no unavailable platform request counted: {d}")
    return problems


# --- the report ---------------------------------------------------------------------------


def p99(values: list[float]) -> float:
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def _verdict(a: Answer) -> str:
    if a.allowed:
        return "allow" + (" + warning" if a.warnings else "")
    return f"deny {a.code}"


def _phrase(cell: Cell, a: Answer) -> str:
    want = expected(cell.fault, cell.mode, cell.stale, a.label, a.group)
    phrase = want.warning or want.phrase or "-"
    return phrase.replace(a.group, "<group>")


def _metric_text(cell: Cell) -> str:
    shown = [
        f"{k} +{v:g}"
        for k, v in sorted(cell.deltas.items())
        if k.startswith(("requests{", "errors{", "fail_open{"))
        or (k.startswith("platform{resources") and not k.endswith(",ok,0}"))
        or (k.startswith("token_refresh{") and cell.fault.expect == "survived")
    ]
    return "; ".join(shown).replace("|", "\\|")


def render(cells: list[Cell], *, test: str, elapsed: float) -> str:
    lines = [
        "## Fault matrix",
        "",
        f"<!-- generated by {test}; do not edit by hand -->",
        f"Generated by `{test}` (`NODELIMITS_REQUIRE_E2E=1 python -m pytest "
        f"{test.split('::')[0]}`) in {elapsed:.0f} s. Each row is one cell: the fault injected "
        "with the simulator (over TLS) while `nodelimits serve` (a real process, "
        f"`platform.deadline` {DEADLINE:g} s, `request_timeout` {REQUEST_TIMEOUT:g} s, 2 retries, "
        f"`admission.timeout_seconds` {TIMEOUT_SECONDS}, decision budget {BUDGET:g} s) answers "
        "two concurrent AdmissionReviews: `fits` (a Pod within the group's limits) and `big` "
        "(a Pod asking 999 CPUs of a 40-core group). *cold*: nothing cached for the group; "
        f"*stale*: the group's limits were cached and are past `cache.ttl` ({TTL:g} s) but within "
        "`max_stale`; two trigger reviews (999 CPUs, one per group, answered from the stale "
        "cache at once) first start the background refreshes that meet the fault, and the "
        "pair then sees their outcome (the triggers are in the `requests` counts). Latency: "
        "the decision log's `duration_ms` (max of the pair) and the client's wall time. "
        "Metric: counter increases during the cell "
        "(`requests` = `nodelimits_admission_requests_total{decision}`, `errors` = "
        "`nodelimits_admission_errors_total{reason}`, `fail_open` = "
        "`nodelimits_fail_open_total{reason}`, `platform` = "
        "`nodelimits_platform_requests_total{endpoint,outcome,code}` of the limits endpoint).",
        "",
        "| fault | mode | cache | fits | big | message / warning (key phrase) | metric | "
        "max ms (server / client) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        fits, big = cell.answer("fits"), cell.answer("big")
        phrases = {_phrase(cell, fits), _phrase(cell, big)} - {"-"}
        server = max(fits.server_ms, big.server_ms)
        client = max(fits.client_ms, big.client_ms)
        lines.append(
            f"| {cell.fault.label} | {cell.mode} | {'stale' if cell.stale else 'cold'} | "
            f"{_verdict(fits)} | {_verdict(big)} | {'; '.join(sorted(phrases)) or '-'} | "
            f"{_metric_text(cell)} | {server:.0f} / {client:.0f} |"
        )
    server_all = [a.server_ms for c in cells for a in c.answers]
    client_all = [a.client_ms for c in cells for a in c.answers]
    lines += [
        "",
        f"{len(cells)} cells ({len(FAULTS)} faults x {len(MODES)} failure modes x cold/stale), "
        f"{len(server_all)} decisions under fault: p99 {p99(server_all):.0f} ms, max "
        f"{max(server_all):.0f} ms server-side; client-side p99 {p99(client_all):.0f} ms, max "
        f"{max(client_all):.0f} ms; every one below the {BUDGET * 1000:.0f} ms budget "
        f"(+{SCHEDULING_SLACK_MS:.0f} ms scheduling slack) and the webhook's "
        f"timeoutSeconds ({TIMEOUT_SECONDS} s).",
        "",
        'Notes on the semantics observed (all as in DESIGN.md "Failure behaviour"):',
        "",
        "- Malformed answers (HTML with 200, truncated JSON, wrong types, numeric code, null "
        "data) are not retried (the same request gets the same garbage) and go straight to "
        "stale limits or `failureMode`; 5xx, 10001, 10012, timeouts and network errors are "
        "retried within the deadline first.",
        "- Stale cached limits bridge every platform failure, account refusals (10007/10008/"
        "10009) and 10003 included: the cached limits are still the group's limits, so the "
        "workload is judged by policy with a warning, while the refusal is counted in "
        '`nodelimits_platform_requests_total{outcome="rejected"}` and logged for operators. '
        "10004 is the exception: the refresh learns that the group is gone, and the group is "
        "denied by name from then on.",
        "- A stale value is served at once while one background refresh runs (stale-while-"
        "revalidate); the warning appears once that refresh has failed.",
        "- Token cells: a revoked (or expired) token is answered 401/10008, re-issued once and "
        "the request resent, invisibly to the user. A token due for renewal whose renewal and "
        "re-issue are blackholed is kept while valid: the one request that tries pays at most "
        "`request_timeout`, later ones none for a pause (1-30 s) - before the fix every "
        "request paid it in turn and reviews of other groups missed the deadline.",
        "- Also through the real kube-apiserver and kubectl (`test_cells_through_kubectl`, both "
        "modes): blackholed platform cold (closed: denied with the closed message; open: created "
        "with the warning), stale limits (policy verdict + warning) and 10004.",
        "",
    ]
    return "\n".join(lines)


def figures(cells: list[Cell]) -> dict[str, str]:
    server_all = [a.server_ms for c in cells for a in c.answers]
    return {
        "faults survived (count)": (
            f"{len(cells)} / {len(cells)} cells ({len(FAULTS)} faults x 2 failure modes x "
            "cold/stale): documented verdict, server kept serving"
        ),
        "p99 under fault": (
            f"{p99(server_all):.0f} ms (max {max(server_all):.0f} ms; budget "
            f"{BUDGET * 1000:.0f} ms, timeoutSeconds {TIMEOUT_SECONDS} s)"
        ),
    }


INTRO = """# Reliability and security

How nodelimits behaves under platform faults, hostile input and load, and what protects
its secrets. Every table here is produced by a test in the suite; the sections name it.
"""


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace (or append) one ``## heading`` section of ``path``; the rest is untouched."""
    text = path.read_text() if path.exists() else INTRO
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = body.rstrip("\n") + "\n\n"
    text = (
        pattern.sub(lambda _: block, text, count=1)
        if pattern.search(text)
        else (text.rstrip("\n") + "\n\n" + block)
    )
    path.write_text(text.rstrip("\n") + "\n")


def write_figures(path: Path, rows: Mapping[str, str], source: str) -> None:
    """Set our rows of the ``## Figures`` table (other rows are left alone)."""
    text = path.read_text() if path.exists() else INTRO
    if not re.search(r"^## Figures\n", text, re.M):
        text = text.rstrip("\n") + "\n\n## Figures\n\n| figure | value | source |\n|---|---|---|\n"
    head, _, rest = text.partition("## Figures\n")
    lines = rest.split("\n")
    for name, value in rows.items():
        row = f"| {name} | {value} | {source} |"
        index = next((i for i, ln in enumerate(lines) if ln.startswith(f"| {name} |")), None)
        if index is not None:
            lines[index] = row
        else:
            last = max(i for i, ln in enumerate(lines) if ln.startswith("|"))
            lines.insert(last + 1, row)
    path.write_text(head + "## Figures\n" + "\n".join(lines))
