"""Hostile AdmissionReviews over HTTPS to the real ``nodelimits serve`` process.

The server runs on static limits (``platform.limits_file``: no simulator); the control
plane is there only for kopf's login and API discovery. Hypothesis generates review
bodies, envelopes and raw bytes and POSTs them to every handler path (and to unknown
ones). Every answer must be HTTP 200 with ``allowed`` true/false (never a 500 inside the
AdmissionResponse: that is our internal-error path) or a 4xx; never a 5xx, never a hang
(client timeout); and the server must keep serving: a known-bad review is denied at the end.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.builders import container, job, pod
from devtools.controlplane import ControlPlane
from devtools.hostile import hostile_objects, json_values, oversized_pods, text
from devtools.reviews import admission_review
from devtools.stack import EXAMPLE_LIMITS, SimulatorProcess, Webhook
from webhook import bounds
from webhook.serve.admission import HANDLERS

PATHS = [h.path for h in HANDLERS]
RESOURCES = {h.path: (h.group, h.version, h.plural, h.subresource) for h in HANDLERS}
KINDS = {h.path: h.kind for h in HANDLERS}
CLIENT_TIMEOUT = 10.0  # the server's own budget is far below this: a timeout is a hang
MIB = 2**20
SLOW_TIMEOUT = 3.0  # the server's header and body timeouts here (default 10 s)
PER_CLIENT = 40  # server.max_connections_per_client here (default 250)
COUNTS: Counter[str] = Counter()
HTTP = settings(
    max_examples=150,
    deadline=None,  # the client timeout bounds each request
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def server(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    work = tmp_path_factory.mktemp("hostile")
    never_started = SimulatorProcess(work)  # only its URL lands in the (unused) platform settings
    webhook = Webhook(
        work,
        control_plane,
        never_started,
        {
            "platform": {"limits_file": str(EXAMPLE_LIMITS)},
            "log_level": "WARNING",
            "server": {
                "header_timeout": SLOW_TIMEOUT,
                "body_timeout": SLOW_TIMEOUT,
                "max_connections_per_client": PER_CLIENT,
            },
        },
    ).start()
    try:
        yield webhook
    finally:
        code = webhook.stop()
        total = sum(COUNTS.values())
        lines = "\n".join(f"  {name}: {n}" for name, n in sorted(COUNTS.items()))
        print(f"\nhostile input over HTTPS: {total} requests\n{lines}")
        assert code == 0, webhook_tail(webhook)


def webhook_tail(webhook: Webhook) -> str:
    return "\n".join(webhook.log_lines()[-30:])


@pytest.fixture(scope="module")
def client(server: Webhook) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url,
        verify=ssl.create_default_context(cafile=str(server.certs.ca)),
        timeout=CLIENT_TIMEOUT,
    ) as c:
        yield c


def envelope(path: str, obj: Any, operation: str = "CREATE", old: Any = None) -> dict[str, Any]:
    group, version, plural, sub = RESOURCES[path]
    return admission_review(
        obj,
        operation=operation,
        old=old,
        resource=(group, version, plural),
        kind=KINDS[path],
        sub_resource=sub,
        user="hostile",
        identify=False,
    )


def post(client: httpx.Client, path: str, content: bytes, ctype: str = "application/json") -> Any:
    try:
        resp = client.post(path, content=content, headers={"Content-Type": ctype})
    except httpx.TimeoutException:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"no answer within {CLIENT_TIMEOUT}s to a POST of {len(content)} bytes")
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    if resp.status_code != 200:
        assert 400 <= resp.status_code < 500, resp.status_code
        return None
    body = resp.json()
    response = body["response"]
    assert isinstance(response["allowed"], bool), body
    code = (response.get("status") or {}).get("code")
    assert code != 500, f"internal error in the handler: {response}"
    return response


def dumps(value: Any) -> bytes:
    # allow_nan: a hostile client may send NaN/Infinity literals (not JSON: a 400).
    return json.dumps(value, allow_nan=True).encode()


def is_json(raw: bytes) -> bool:
    """Strict JSON (RFC 8259): no NaN or Infinity literals, which Python's json would read."""

    def refuse(literal: str) -> None:
        raise ValueError(literal)

    try:
        json.loads(raw, parse_constant=refuse)
    except ValueError:
        return False
    return True


@HTTP
@given(path=st.sampled_from(PATHS), obj=hostile_objects(), operation=st.sampled_from(
    ["CREATE", "UPDATE", "DELETE", "CONNECT"]), old=st.none() | hostile_objects())  # fmt: skip
def test_generated_objects_get_a_verdict_or_a_4xx(
    client: httpx.Client, path: str, obj: Any, operation: str, old: Any
) -> None:
    COUNTS["hostile objects in valid envelopes"] += 1
    post(client, path, dumps(envelope(path, obj, operation, old)))


@st.composite
def broken_envelopes(draw: st.DrawFn) -> Any:
    review = envelope("/pods", pod(container(cpu="999")))
    request = review["request"]
    for key in draw(st.lists(st.sampled_from(sorted(request)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del request[key]
        else:
            request[key] = draw(json_values)
    if draw(st.booleans()):
        review[draw(st.sampled_from(["request", "apiVersion", "kind"]) | text)] = draw(json_values)
    return draw(st.sampled_from([review, review, review, request, [review]]))


@HTTP
@given(path=st.sampled_from([*PATHS, "/", "/podz", "/pods/", "/PODS", "/pods?x=1"]) | text.map(
    lambda t: "/" + quote(t, safe="")), review=broken_envelopes())  # fmt: skip
def test_broken_envelopes_and_unknown_paths_get_a_4xx_or_a_verdict(
    client: httpx.Client, path: str, review: Any
) -> None:
    COUNTS["broken envelopes / any path"] += 1
    response = post(client, path, dumps(review))
    if response is not None:
        # Only a well-formed review to a served path can be answered; the one here is
        # oversized in every variant that still has its object, so it is never allowed...
        assert path.split("?")[0] in PATHS, (path, response)
        obj = review.get("request", {}).get("object") if isinstance(review, dict) else None
        if obj == pod(container(cpu="999")) and path == "/pods":
            request = review["request"]
            if request.get("operation") == "CREATE" and not request.get("subResource"):
                assert response["allowed"] is False, response


@HTTP
@given(raw=st.binary(max_size=2048) | text.map(str.encode), ctype=st.sampled_from(
    ["application/json", "text/plain", "", "application/x-www-form-urlencoded"]))  # fmt: skip
def test_malformed_bytes_get_a_400(client: httpx.Client, raw: bytes, ctype: str) -> None:
    COUNTS["raw bytes"] += 1
    try:
        json.loads(raw)
    except ValueError:
        resp = client.post("/pods", content=raw, headers={"Content-Type": ctype})
        assert resp.status_code == 400, (resp.status_code, resp.text[:300])
    else:  # valid JSON by chance (a number, a string): still never a 5xx
        post(client, "/pods", raw, ctype)


@HTTP
@given(obj=oversized_pods())
def test_oversized_pods_with_junk_are_denied_over_https(
    client: httpx.Client, obj: dict[str, Any]
) -> None:
    COUNTS["oversized pods with junk"] += 1
    raw = dumps(envelope("/pods", obj))
    response = post(client, "/pods", raw)
    if response is None:  # a 4xx: only for a body that is not JSON
        assert not is_json(raw)
        return
    assert response["allowed"] is False, response
    assert response["status"]["code"] in (400, 403), response


def test_malformed_json_is_a_400(client: httpx.Client) -> None:
    for raw in (b"{", b'{"request": ', b"\xff\xfe", b"[1,2", b"nul", b"{'a': 1}"):
        COUNTS["fixed cases"] += 1
        assert client.post("/pods", content=raw).status_code == 400, raw


def _regression(change: str) -> tuple[str, bytes]:
    review = envelope("/pods", pod(container(cpu="999")))
    request = review["request"]
    if change == "metadata null":
        request["object"]["metadata"] = None
    elif change == "uid a list":
        request["object"]["metadata"]["uid"] = ["x"]
    elif change == "operation a list":
        request["operation"] = []
    elif change == "resource with a newline":
        request["resource"]["resource"] = "pods\n"
    elif change == "control character in the path":
        return "/%1F", dumps(review)
    elif change == "body not UTF-8":
        return "/pods", b"\x80" + dumps(review)
    return "/pods", dumps(review)


@pytest.mark.parametrize(
    "change",
    [
        "metadata null",  # was a 500: kopf's memo key reads metadata.uid
        "uid a list",  # was a 500: unhashable memo key
        "operation a list",  # was an internal error (AdmissionResponse code 500)
        "resource with a newline",  # kopf puts it in the reason phrase: connection dropped
        "control character in the path",  # same: connection dropped without an answer
        "body not UTF-8",  # was a 500: kopf decodes before parsing
    ],
)
def test_found_by_hypothesis_now_a_400(client: httpx.Client, change: str) -> None:
    COUNTS["fixed cases"] += 1
    path, raw = _regression(change)
    resp = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, (resp.status_code, resp.text[:300])


def test_unknown_path_is_a_400(client: httpx.Client) -> None:
    COUNTS["fixed cases"] += 1
    resp = client.post("/podz", content=dumps(envelope("/pods", pod(container(cpu="999")))))
    assert resp.status_code == 400
    assert "unknown webhook path /podz" in resp.text


def test_get_is_a_405(client: httpx.Client) -> None:
    COUNTS["fixed cases"] += 1
    assert client.get("/pods").status_code == 405


def test_duplicate_keys_are_read_as_json_reads_them_last_wins(client: httpx.Client) -> None:
    """Only a non-apiserver client can send duplicates; the last one counts, as everywhere."""
    COUNTS["fixed cases"] += 2
    review = json.dumps(envelope("/pods", pod(container(cpu="1"))))
    for first, last, allowed in (("1", "999", False), ("999", "1", True)):
        raw = review.replace('"cpu": "1"', f'"cpu": "{first}", "cpu": "{last}"')
        response = post(client, "/pods", raw.encode())
        assert response["allowed"] is allowed, response


MAX_REVIEW = 6 * MIB  # server.max_review_bytes


def padded(obj: dict[str, Any], size: int, path: str = "/jobs") -> bytes:
    review = envelope(path, obj)
    review["request"]["object"]["metadata"]["labels"] = {"padding": ""}
    raw = dumps(review)
    raw = raw.replace(b'"padding": ""', b'"padding": "' + b"x" * (size - len(raw)) + b'"')
    assert len(raw) == size
    return raw


@pytest.mark.parametrize("size", [MAX_REVIEW + 1, 8 * MIB], ids=["limit+1", "8MiB"])
def test_reviews_over_the_limit_are_denied_saying_so(client: httpx.Client, size: int) -> None:
    """Issue 12, finding 5: a 413 let the object through under failurePolicy: Ignore."""
    COUNTS["fixed cases"] += 1
    response = post(client, "/jobs", padded(job(container(cpu="1")), size))
    assert response is not None
    assert response["allowed"] is False
    assert response["status"]["code"] == 413
    assert f"above the {MAX_REVIEW}-byte limit" in response["status"]["message"]


@pytest.mark.parametrize(
    "size", [MIB + 1, 3 * MIB + 4096, MAX_REVIEW], ids=["1MiB+1", "UPDATE-sized", "limit"]
)
def test_reviews_up_to_the_limit_are_judged(client: httpx.Client, size: int) -> None:
    """What the apiserver can send: objects up to 1.5 MiB in etcd; an UPDATE carries two."""
    COUNTS["fixed cases"] += 1
    response = post(client, "/jobs", padded(job(container(cpu="999")), size))
    assert response is not None
    assert response["allowed"] is False
    assert "cpu 999 > 40 cores per node" in response["status"]["message"]


@pytest.mark.parametrize("depth", [bounds.MAX_DEPTH, 100_000])  # under labels: 4 levels more
def test_deeply_nested_json_is_a_400_without_a_traceback(
    client: httpx.Client, server: Webhook, depth: int
) -> None:
    """Issue 12, finding 9: a 100k-deep body was a 500 and a RecursionError in the log."""
    COUNTS["fixed cases"] += 1
    review = envelope("/pods", pod(container(cpu="1")))
    review["request"]["object"]["metadata"]["labels"] = "DEEP"
    raw = dumps(review).replace(b'"DEEP"', b"[" * depth + b"]" * depth)
    resp = client.post("/pods", content=raw)
    assert resp.status_code == 400, resp.text[:300]
    assert f"nested deeper than {bounds.MAX_DEPTH}" in resp.reason_phrase
    assert "Traceback" not in "\n".join(server.log_lines())


# --- the raw HTTP layer: slow, partial and many connections (issue 12, finding 6) ---------


def tls_socket(server: Webhook) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(server.certs.ca))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def closed_by_server(conn: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes; a client timeout means it never did."""
    received = b""
    try:
        while chunk := conn.recv(65536):
            received += chunk
    except TimeoutError:  # pragma: no cover - the failure these tests exist for
        pytest.fail(f"the server held the connection over {CLIENT_TIMEOUT}s: {received[:200]!r}")
    except (ConnectionResetError, ssl.SSLError):
        pass
    return received


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /pods HTTP/1.1\r\n", b"POST /pods HTTP/1.1\r\nHost: x\r\nContent-Le"],
    ids=["nothing", "request-line", "partial-headers"],
)
def test_connections_that_never_finish_their_headers_are_closed(
    server: Webhook, sent: bytes
) -> None:
    """1,000 such connections were held 105 s, none closed (default now: 10 s)."""
    COUNTS["slow clients"] += 1
    with tls_socket(server) as conn:
        conn.sendall(sent)
        closed_by_server(conn)


def test_a_body_that_never_arrives_gets_a_408(server: Webhook) -> None:
    COUNTS["slow clients"] += 1
    with tls_socket(server) as conn:
        conn.sendall(b"POST /pods HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        assert closed_by_server(conn).startswith(b"HTTP/1.1 408")


def test_connections_over_the_per_client_cap_are_closed_on_arrival(
    server: Webhook, client: httpx.Client
) -> None:
    COUNTS["slow clients"] += 1
    opened: list[ssl.SSLSocket] = []
    try:
        for _ in range(PER_CLIENT + 10):  # quickly, well within the header timeout
            conn = tls_socket(server)
            with contextlib.suppress(OSError):
                conn.sendall(b"POST /pods HTTP/1.1\r\n")  # partial: holds its slot
            opened.append(conn)
        readable, _, _ = select.select(opened, [], [], 0.5)
        closed = 0
        for conn in readable:  # readable at once: closed (or reset) by the server
            try:
                closed += conn.recv(1) == b""
            except (ConnectionResetError, ssl.SSLError):
                closed += 1
        # One httpx keep-alive connection of this module may hold a slot too.
        assert closed >= 10
        assert len(opened) - closed <= PER_CLIENT
    finally:
        for conn in opened:
            conn.close()
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while time.monotonic() < deadline:  # the slots come back once the server sees the closes
        try:
            response = post(client, "/pods", dumps(envelope("/pods", pod(container(cpu="1")))))
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        assert response is not None
        assert response["allowed"] is True
        return
    pytest.fail("the server never served again after the held connections closed")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=8),
    pause=st.sampled_from([0.0, 0.01, 0.05, 0.2]),
    cpu=st.sampled_from(["1", "999"]),
)
def test_reviews_sent_in_slow_pieces_get_their_verdict(
    server: Webhook, cuts: list[int], pause: float, cpu: str
) -> None:
    """A review trickled in pieces (within the timeouts) is judged like one sent at once."""
    COUNTS["slow and partial sends"] += 1
    body = dumps(envelope("/pods", pod(container(cpu=cpu))))
    raw = (
        b"POST /pods HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    points = sorted({c % len(raw) for c in cuts} - {0})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    with tls_socket(server) as conn:
        for piece in pieces:
            conn.sendall(piece)
            time.sleep(pause / max(1, len(pieces)))
        answer = closed_by_server(conn)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:300]
    assert json.loads(payload)["response"]["allowed"] is (cpu == "1")


def test_zz_server_still_serves_and_never_failed_internally(
    client: httpx.Client, server: Webhook
) -> None:
    """Last in the module: after everything above, a known-bad review is still denied."""
    COUNTS["fixed cases"] += 1
    response = post(client, "/pods", dumps(envelope("/pods", pod(container(cpu="999")))))
    assert response is not None
    assert response["allowed"] is False
    assert "cpu 999 > 40 cores per node" in response["status"]["message"]
    assert server.process.poll() is None
    internal = [
        line
        for line in server.metrics_text().splitlines()
        if line.startswith('nodelimits_admission_errors_total{reason="internal"}')
    ]
    assert all(float(line.split()[-1]) == 0 for line in internal), internal
    assert "Traceback" not in "\n".join(server.log_lines()), webhook_tail(server)
