"""Fault matrix and security: every platform fault x failureMode x cache state, through
the real ``nodelimits serve`` (and a few cells through the real kube-apiserver and
kubectl); then what the processes emitted during all of it is grepped for secrets.

The cells run against one TLS simulator + one webhook per failure mode (closed: AK/SK
tokens and a configured base URL; open: user/password tokens and center discovery).
With ``--write-docs`` (``make docs``), when every cell ran and passed, the "Fault matrix"
section and two "Figures" rows of docs/reliability.md are rewritten from what was observed
(see devtools/faultmatrix.py); a plain run writes nothing.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from devtools import faultmatrix as fm
from devtools.builders import container, pod
from devtools.controlplane import ControlPlane
from webhook.platform.auth import AKSK_TOKENS_PATH, aksk_signature

pytestmark = pytest.mark.timeout(600)

TEST_ID = "tests/e2e/test_fault_matrix.py::test_fault_cell"
RESULTS: dict[str, fm.Cell] = {}
PASSED: set[str] = set()
KUBECTL_OUTPUT: list[str] = []
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


@pytest.fixture(scope="module")
def stacks(
    control_plane: ControlPlane,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[dict[str, fm.Stack]]:
    started = time.monotonic()
    built: dict[str, fm.Stack] = {}
    try:
        for mode, source, discover in (("closed", "aksk", False), ("open", "password", True)):
            stack = fm.Stack(
                tmp_path_factory.mktemp(f"faults-{mode}"), control_plane, mode, source,
                discover=discover,
            )  # fmt: skip
            built[mode] = stack
            stack.start()
            stack.warm()
        yield built
    finally:
        for stack in built.values():
            stack.stop()
    if not pytestconfig.getoption("--write-docs"):
        return
    keys = [f"{f.id}/{m}/{'stale' if s else 'cold'}" for f, m, s in fm.CELLS]
    if all(k in PASSED for k in keys):
        cells = [RESULTS[k] for k in keys]
        fm.write_section(
            fm.DOC,
            "Fault matrix",
            fm.render(cells, test=TEST_ID, elapsed=time.monotonic() - started),
        )
        fm.write_figures(fm.DOC, fm.figures(cells), "`tests/e2e/test_fault_matrix.py`")


@pytest.mark.parametrize(
    ("fault", "mode", "stale"),
    [pytest.param(f, m, s, id=f"{f.id}-{m}-{'stale' if s else 'cold'}") for f, m, s in fm.CELLS],
)
def test_fault_cell(stacks: dict[str, fm.Stack], fault: fm.Fault, mode: str, stale: bool) -> None:
    """The verdict, code, message, counting metric and latency of one cell."""
    cell = stacks[mode].run(fault, stale)
    RESULTS[cell.key] = cell
    problems = fm.check(cell)
    assert not problems, "\n".join(problems)
    PASSED.add(cell.key)


# --- through the real kube-apiserver -------------------------------------------------------


def _kubectl_apply(plane: ControlPlane, obj: dict[str, Any]) -> tuple[int, str, float]:
    started = time.monotonic()
    result = plane.kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)
    elapsed = time.monotonic() - started
    KUBECTL_OUTPUT.append(result.stdout + result.stderr)
    return result.returncode, result.stdout + result.stderr, elapsed


@pytest.mark.parametrize("mode", fm.MODES)
def test_cells_through_kubectl(
    control_plane: ControlPlane, namespace: str, stacks: dict[str, fm.Stack], mode: str
) -> None:
    """kube-apiserver -> webhook under a blackholed platform, 10004, and stale limits."""
    stack = stacks[mode]
    stack.ensure_platform("ok")
    stack.webhook.register()
    try:
        stale_fits, stale_big, cold = stack.group(), stack.group(), stack.group()
        for group, cpu in ((stale_fits, "8"), (stale_big, "999")):  # warm, then let them age
            _kubectl_apply(control_plane, _pod(namespace, f"warm-{group}", group, cpu))
        time.sleep(fm.TTL + 0.2)
        stack.simulator.inject(kind="blackhole", path=fm.AI_PATHS)
        try:
            code, out, elapsed = _kubectl_apply(control_plane, _pod(namespace, "cold", cold, "999"))
            assert elapsed < fm.TIMEOUT_SECONDS + 5  # the webhook answered before its timeout
            if mode == "closed":
                assert code != 0
                assert fm.CLOSED in out, out
            else:
                assert code == 0, out
                assert f"Warning: nodelimits: Pod {namespace}/cold" in out, out
                assert fm.OPEN in out, out
            # Stale: the first review of a group starts the refresh that fails; later warn.
            _kubectl_apply(control_plane, _pod(namespace, "trigger-a", stale_big, "999"))
            _kubectl_apply(control_plane, _pod(namespace, "trigger-b", stale_fits, "8"))
            time.sleep(fm.DEADLINE + 0.5)
            code, out, _ = _kubectl_apply(control_plane, _pod(namespace, "big", stale_big, "999"))
            assert code != 0
            assert fm.POLICY_DENIAL in out, out
            assert fm.STALE_WARNING in out, out
            code, out, _ = _kubectl_apply(control_plane, _pod(namespace, "fits", stale_fits, "8"))
            assert code == 0, out
            assert fm.STALE_WARNING in out, out
        finally:
            stack.simulator.clear_faults()
        stack.simulator.inject(kind="code", path=fm.AI_PATHS, code="10004")
        try:
            group = stack.group()
            code, out, _ = _kubectl_apply(control_plane, _pod(namespace, "gone", group, "1"))
            assert code != 0
            assert f'resource group "{group}" is unknown to the platform' in out, out
        finally:
            stack.simulator.clear_faults()
    finally:
        stack.webhook.unregister()


def _pod(namespace: str, name: str, group: str, cpu: str) -> dict[str, Any]:
    obj = pod(container(cpu=cpu), name=name, group=group)
    obj["metadata"]["namespace"] = namespace
    return obj


# --- security --------------------------------------------------------------------------------


def _handshake(url: str, version: ssl.TLSVersion) -> str:
    """ "ok", or the error of a handshake limited to exactly ``version``."""
    host, port = url.removeprefix("https://").split(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        context.minimum_version = context.maximum_version = version
        context.set_ciphers("ALL:@SECLEVEL=0")  # let the client even try the old versions
    except (ValueError, ssl.SSLError) as exc:
        return f"client cannot: {exc}"
    try:
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            return "ok" if tls.version() else "no version"
    except ssl.SSLError as exc:
        return f"{exc.reason or exc}"
    except OSError as exc:
        return f"os: {exc}"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_webhook_listener_speaks_tls_1_2_and_up_only(stacks: dict[str, fm.Stack]) -> None:
    url = stacks["closed"].webhook.url
    assert _handshake(url, ssl.TLSVersion.TLSv1_2) == "ok"
    assert _handshake(url, ssl.TLSVersion.TLSv1_3) == "ok"
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        outcome = _handshake(url, old)
        if outcome.startswith("client cannot") or "NO_PROTOCOLS_AVAILABLE" in outcome:
            # The local OpenSSL refuses to even offer it: nothing to send. The server's
            # minimum version is still checked by tests/unit/serve/test_tls.py.
            continue
        # Refused: a protocol-version alert, or the server closing the handshake.
        assert outcome != "ok", f"{old.name} handshake succeeded"


class _Trap:
    """A loopback listener that counts connections: nothing may ever connect to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_no_url_from_an_admitted_object_is_ever_requested(stacks: dict[str, fm.Stack]) -> None:
    trap = _Trap()
    try:
        url = f"http://127.0.0.1:{trap.port}"
        for stack in stacks.values():
            stack.ensure_platform("ok")
            stack.simulator.admin("DELETE", "stats")
            objs = []
            for group in (f"{url}/ai", f"{url}", "fm-399", "https://disabled.invalid/ai"):
                obj = pod(container(cpu="999"), name="urls", group=group)
                obj["metadata"]["annotations"].update(
                    {
                        "nodelimits.io/platform-url": url,
                        "nodelimits.io/base-url": f"{url}/ai",
                        "nodelimits.io/center-url": url,
                        "nodelimits.io/accelerator-type": "gpu",
                    }
                )
                obj["spec"]["containers"][0]["image"] = f"127.0.0.1:{trap.port}/img"
                obj["spec"]["containers"][0]["env"] = [{"name": "AI_URL", "value": url}]
                objs.append(obj)
            for obj in objs:
                answer = stack.review("big", obj["metadata"]["annotations"][
                    "nodelimits.io/resource-group"], obj)  # fmt: skip
                assert answer.allowed is False, answer.body
            paths = set(stack.simulator.stats()["requests"])
            assert paths <= fm.EXPECTED_PATHS, paths - fm.EXPECTED_PATHS
        time.sleep(0.3)
        assert trap.hits == 0
    finally:
        trap.close()


def _issue_token(stack: fm.Stack) -> str:
    s = stack.secrets
    timestamp = str(int(time.time()))
    signature = aksk_signature(
        access_key=s["accessKey"], secret_key=s["secretKey"], user=s["user"], timestamp=timestamp
    )
    req = urllib.request.Request(  # noqa: S310 - loopback https
        stack.simulator.url + AKSK_TOKENS_PATH,
        method="POST",
        headers={"user": s["user"], "accessKey": s["accessKey"], "timestamp": timestamp,
                 "signature": signature},
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(stack.sim_certs.ca))
    with urllib.request.urlopen(req, timeout=5, context=context) as resp:  # noqa: S310
        regions = json.loads(resp.read())["data"]
    return str(next(r["token"] for r in regions if r["clusterId"] == "11112"))


def test_secrets_never_reach_logs_metrics_or_responses(
    stacks: dict[str, fm.Stack],
    control_plane: ControlPlane,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """AK/SK, password, orgId, a static token file's contents and every JWT the simulator
    issued: none appears in anything the processes emitted during the whole module."""
    # A third server whose token comes from a static file, put through faults too.
    work = tmp_path_factory.mktemp("faults-file")
    file_stack = fm.Stack(work, control_plane, "closed", "file", discover=False)
    token_file = work / "token"
    file_stack.webhook.settings["platform"]["token_file"] = str(token_file)
    file_stack.simulator.start()
    file_stack.sim_state = "ok"
    try:
        static_token = _issue_token(file_stack)
        token_file.write_text(static_token + "\n")
        file_stack.webhook.start()
        for fault in fm.FAULTS:
            if fault.id in ("http-503", "html-200", "truncated", "10007", "10008", "10003"):
                cell = file_stack.run(fault, stale=False)
                assert not fm.check(cell), fm.check(cell)
        revoked = next(f for f in fm.FAULTS if f.id == "token-revoked")
        cell = file_stack.run(revoked, stale=False)  # a static token cannot be renewed
        assert all(fm.ACCOUNT in a.message for a in cell.answers), cell.answers
        file_stack.scrape()
    finally:
        file_stack.stop()

    everything = [*KUBECTL_OUTPUT]
    for stack in [*stacks.values(), file_stack]:
        if stack is not file_stack:
            stack.scrape()
        everything += stack.transcript
        everything += [p.read_text(errors="replace") for p in stack.simulator.logs]
        everything += stack.webhook.log_lines()
    secrets = [static_token]
    for stack in [*stacks.values(), file_stack]:
        secrets += [v for k, v in stack.secrets.items() if k != "user"]
    text = "\n".join(everything)
    assert len(text) > 100_000, "suspiciously little output to search"
    leaked = [s[:6] + "..." for s in secrets if s in text]
    assert not leaked, f"secrets found in emitted output: {leaked}"
    tokens = JWT.findall(text)
    assert not tokens, f"{len(tokens)} JWT(s) found in emitted output, e.g. {tokens[0][:12]}..."
