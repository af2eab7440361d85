"""Hostile AdmissionReviews over HTTPS to the real ``nodelimits serve`` process.

The server runs on static limits (``platform.limits_file``: no simulator); the control
plane is there only for kopf's login and API discovery. Hypothesis generates review
bodies, envelopes and raw bytes and POSTs them to every handler path (and to unknown
ones). Every answer must be HTTP 200 with ``allowed`` true/false (never a 500 inside the
AdmissionResponse: that is our internal-error path) or a 4xx; never a 5xx, never a hang
(client timeout); and the server must keep serving: a known-bad review is denied at the end.
"""

from __future__ import annotations

import json
import ssl
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
from webhook.serve.admission import HANDLERS

PATHS = [h.path for h in HANDLERS]
RESOURCES = {h.path: (h.group, h.version, h.plural, h.subresource) for h in HANDLERS}
CLIENT_TIMEOUT = 10.0  # the server's own budget is far below this: a timeout is a hang
MIB = 2**20
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
        {"platform": {"limits_file": str(EXAMPLE_LIMITS)}, "log_level": "WARNING"},
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
        kind="X",
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
    # allow_nan: a hostile client may send NaN/Infinity literals, which Python's json reads.
    return json.dumps(value, allow_nan=True).encode()


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
    response = post(client, "/pods", dumps(envelope("/pods", obj)))
    assert response is not None
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


@pytest.mark.parametrize("size", [MIB + 1, 4 * MIB], ids=["1MiB+1", "4MiB"])
def test_bodies_over_1_mib_get_a_413(client: httpx.Client, size: int) -> None:
    COUNTS["fixed cases"] += 1
    review = envelope("/jobs", job(container(cpu="1")))
    review["request"]["object"]["metadata"]["labels"] = {"padding": ""}
    raw = dumps(review)
    raw = raw.replace(b'"padding": ""', b'"padding": "' + b"x" * (size - len(raw)) + b'"')
    assert len(raw) == size
    assert client.post("/jobs", content=raw).status_code == 413


def test_a_body_just_under_1_mib_is_judged(client: httpx.Client) -> None:
    COUNTS["fixed cases"] += 1
    review = envelope("/jobs", job(container(cpu="999")))
    review["request"]["object"]["metadata"]["labels"] = {"padding": ""}
    raw = dumps(review)
    raw = raw.replace(b'"padding": ""', b'"padding": "' + b"x" * (MIB - 1024 - len(raw)) + b'"')
    response = post(client, "/jobs", raw)
    assert response is not None
    assert response["allowed"] is False


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
