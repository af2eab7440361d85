"""webhook.core.resources: quantities and effective pod requests/limits by Kubernetes' rules."""

from __future__ import annotations

import re
import tracemalloc
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.builders import container, pod_spec
from webhook.core import resources
from webhook.core.resources import (
    MAX_QUANTITY_LENGTH,
    InvalidQuantity,
    format_cores,
    format_memory,
    is_quantity,
    parse_quantity,
    pod_limits,
    pod_requests,
)

D = Decimal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("100m", D("0.1"), id="millicores"),
        pytest.param("2", D(2), id="whole"),
        pytest.param(2, D(2), id="yaml-int"),
        pytest.param(0.5, D("0.5"), id="yaml-float-exact"),
        pytest.param(0.1, D("0.1"), id="yaml-float-no-binary-noise"),
        pytest.param("1Gi", D(2**30), id="binary-si"),
        pytest.param("1G", D(10**9), id="decimal-si"),
        pytest.param("1e3", D(1000), id="exponent"),
        pytest.param("1n", D("1e-9"), id="nano"),
        pytest.param("1e-12", D("1e-9"), id="finer-than-nano-rounds-up"),
        pytest.param(".5", D("0.5"), id="leading-dot"),
    ],
)
def test_parse_quantity_is_exact(text: Any, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("1e1000", "absurdly large", id="huge-exponent"),
        pytest.param("16Ei", "absurdly large", id="above-int64"),
        pytest.param("-1", "must not be negative", id="negative"),
        pytest.param("abc", "not a Kubernetes quantity", id="letters"),
        pytest.param("1.5.5", "not a Kubernetes quantity", id="two-dots"),
        pytest.param(" 1", "not a Kubernetes quantity", id="leading-space"),
        pytest.param("1 Gi", "not a Kubernetes quantity", id="inner-space"),
        pytest.param("0x10", "not a Kubernetes quantity", id="hex"),
        pytest.param(True, "expected a string or a number", id="bool"),
        pytest.param(None, "expected a string or a number", id="null"),
        pytest.param([1], "expected a string or a number", id="list"),
        pytest.param(float("inf"), "not a finite number", id="inf"),
        pytest.param(float("nan"), "not a finite number", id="nan"),
    ],
)
def test_parse_quantity_rejects_what_kubernetes_rejects(value: Any, reason: str) -> None:
    with pytest.raises(InvalidQuantity, match=reason) as caught:
        parse_quantity(value, field="spec.containers[0].resources.limits.cpu")
    assert caught.value.field == "spec.containers[0].resources.limits.cpu"


def test_request_defaults_to_limit() -> None:
    spec = pod_spec(container(limits={"cpu": "2", "memory": "1Gi"}))
    assert pod_requests(spec) == {"cpu": D(2), "memory": D(2**30)}


def test_explicit_request_wins_over_limit() -> None:
    spec = pod_spec(container(cpu="1", limits={"cpu": "2"}))
    assert pod_requests(spec)["cpu"] == D(1)
    assert pod_limits(spec)["cpu"] == D(2)


def test_app_containers_are_summed() -> None:
    spec = pod_spec(container("a", cpu="1500m"), container("b", cpu="500m"))
    assert pod_requests(spec)["cpu"] == D(2)


def test_worked_sidecar_example_gives_300m() -> None:
    """kubernetes/website PR #57373: sidecar 100m, init 200m, app 100m -> 300m, not 200m."""
    spec = pod_spec(
        container("app", cpu="100m"),
        init=[container("sidecar", cpu="100m", sidecar=True), container("init", cpu="200m")],
    )
    assert pod_requests(spec)["cpu"] == D("0.3")


def test_regular_init_container_larger_than_app_sum_sets_the_peak() -> None:
    spec = pod_spec(container("app", cpu="1"), init=[container("init", cpu="4")])
    assert pod_requests(spec)["cpu"] == D(4)


def test_sidecar_declared_after_an_init_container_does_not_add_to_its_peak() -> None:
    spec = pod_spec(
        container("app", cpu="1"),
        init=[container("init", cpu="3"), container("sidecar", cpu="1", sidecar=True)],
    )
    # init peaks at 3 alone; afterwards app 1 + sidecar 1 = 2
    assert pod_requests(spec)["cpu"] == D(3)


def test_sidecars_run_beside_the_app_containers() -> None:
    spec = pod_spec(
        container("app", cpu="12"),
        init=[
            container("log", cpu="2", sidecar=True),
            container("proxy", cpu="2", sidecar=True),
            container("migrate", cpu="10"),
        ],
    )
    assert pod_requests(spec)["cpu"] == D(16)


def test_restart_policy_always_on_an_app_container_is_not_a_sidecar() -> None:
    app = container("app", cpu="1") | {"restartPolicy": "Always"}
    assert pod_requests(pod_spec(app, init=[container("init", cpu="2")]))["cpu"] == D(2)


def test_overhead_is_added_to_requests() -> None:
    spec = pod_spec(container(cpu="1"), overhead={"cpu": "250m", "memory": "120Mi"})
    assert pod_requests(spec) == {"cpu": D("1.25"), "memory": D(120 * 2**20)}


def test_overhead_is_added_to_a_limit_only_where_one_is_set() -> None:
    spec = pod_spec(container(limits={"cpu": "1"}), overhead={"cpu": "250m", "memory": "120Mi"})
    assert pod_limits(spec) == {"cpu": D("1.25")}


def test_pod_level_requests_replace_the_container_total_for_cpu_and_memory() -> None:
    spec = pod_spec(
        container("a", cpu="1", memory="1Gi"),
        resources={"requests": {"cpu": "3", "memory": "4Gi"}},
    )
    assert pod_requests(spec) == {"cpu": D(3), "memory": D(4 * 2**30)}


def test_pod_level_resources_never_apply_to_extended_resources() -> None:
    spec = pod_spec(
        container(gpu=2),
        resources={"requests": {"nvidia.com/gpu": "8"}, "limits": {"nvidia.com/gpu": "8"}},
    )
    assert pod_requests(spec)["nvidia.com/gpu"] == D(2)
    assert pod_limits(spec)["nvidia.com/gpu"] == D(2)


def test_pod_level_limit_defaults_the_pod_request_when_containers_request_nothing() -> None:
    spec = pod_spec(container(), resources={"limits": {"cpu": "6"}})
    assert pod_requests(spec)["cpu"] == D(6)
    assert pod_limits(spec)["cpu"] == D(6)


def test_pod_level_limit_keeps_the_container_total_as_request() -> None:
    spec = pod_spec(container(cpu="2"), resources={"limits": {"cpu": "6"}})
    assert pod_requests(spec)["cpu"] == D(2)


def test_pod_level_hugepages_are_supported() -> None:
    spec = pod_spec(container(), resources={"requests": {"hugepages-2Mi": "1Gi"}})
    assert pod_requests(spec)["hugepages-2Mi"] == D(2**30)


def test_unbounded_resources_have_no_limit() -> None:
    assert pod_limits(pod_spec(container(cpu="1"))) == {}


def test_invalid_quantity_names_the_container_field() -> None:
    spec = pod_spec(container("a"), container("b", limits={"cpu": "lots"}))
    with pytest.raises(InvalidQuantity) as caught:
        pod_requests(spec)
    assert caught.value.field == "spec.containers[1].resources.limits.cpu"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        pytest.param({"containers": "nginx"}, "spec.containers", id="containers-not-a-list"),
        pytest.param({"containers": ["nginx"]}, "spec.containers[0]", id="container-not-object"),
        pytest.param(
            {"containers": [{"resources": {"limits": ["cpu"]}}]},
            "spec.containers[0].resources.limits",
            id="limits-not-a-map",
        ),
        pytest.param({"containers": [], "overhead": 3}, "spec.overhead", id="overhead-not-a-map"),
    ],
)
def test_malformed_spec_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidQuantity) as caught:
        pod_requests(spec)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("cores", "text"),
    [(D("0.3"), "300m"), (D(4), "4"), (D("1.5"), "1500m"), (D("0.0001"), "0.0001")],
)
def test_format_cores_reads_like_kubectl(cores: Decimal, text: str) -> None:
    assert format_cores(cores) == text


def test_format_memory_rounds_partial_units_up() -> None:
    assert format_memory(D(65536 * 2**20)) == "65536Mi"
    assert format_memory(D(10**9)) == "953.68Mi"


# --- properties -------------------------------------------------------------------------

millicores = st.integers(min_value=0, max_value=256_000).map(lambda m: f"{m}m")
plain = st.builds(lambda c: container(cpu=c), millicores)
sidecars = st.builds(lambda c: container("s", cpu=c, sidecar=True), millicores)
inits = st.one_of(sidecars, st.builds(lambda c: container("i", cpu=c), millicores))


@given(st.lists(plain, min_size=1, max_size=6), st.lists(inits, max_size=6), plain)
def test_adding_an_app_container_never_lowers_the_request(
    apps: list[dict[str, Any]], init: list[dict[str, Any]], extra: dict[str, Any]
) -> None:
    before = pod_requests(pod_spec(*apps, init=init)).get("cpu", D(0))
    after = pod_requests(pod_spec(*apps, extra, init=init)).get("cpu", D(0))
    assert after >= before


@given(st.lists(plain, min_size=1, max_size=6), st.lists(inits, max_size=6))
def test_app_container_order_does_not_matter(
    apps: list[dict[str, Any]], init: list[dict[str, Any]]
) -> None:
    forward = pod_requests(pod_spec(*apps, init=init))
    backward = pod_requests(pod_spec(*reversed(apps), init=init))
    assert forward == backward


@given(st.lists(plain, min_size=1, max_size=6), st.data())
def test_an_init_container_smaller_than_the_app_sum_changes_nothing(
    apps: list[dict[str, Any]], data: st.DataObject
) -> None:
    total = pod_requests(pod_spec(*apps)).get("cpu", D(0))
    smaller = data.draw(st.integers(min_value=0, max_value=int(total * 1000)))
    init = [container("i", cpu=f"{smaller}m")]
    assert pod_requests(pod_spec(*apps, init=init)).get("cpu", D(0)) == total


@given(st.lists(plain, min_size=1, max_size=6), st.lists(inits, max_size=6))
def test_effective_request_is_at_least_every_container_alone(
    apps: list[dict[str, Any]], init: list[dict[str, Any]]
) -> None:
    total = pod_requests(pod_spec(*apps, init=init)).get("cpu", D(0))
    for c in apps + init:
        assert total >= parse_quantity(c["resources"]["requests"]["cpu"])


def test_quantity_memo_stops_growing_at_its_bound() -> None:
    """Every review can bring quantities never seen before (the soak's random memory sizes:
    ~0.7 new strings per review); the parse memo must plateau at its maxsize, at a few
    hundred bytes an entry (docs/reliability.md, Sustained load)."""
    memo = resources._parse_text
    maxsize = memo.cache_info().maxsize
    assert maxsize is not None, "the quantity memo must be bounded"
    memo.cache_clear()
    tracemalloc.start()
    try:
        for i in range(2 * maxsize):  # fresh strings, as json.loads makes them per review
            parse_quantity(f"{i + 1}Mi")
        used, _ = tracemalloc.get_traced_memory()
        size = memo.cache_info().currsize
    finally:
        tracemalloc.stop()
        memo.cache_clear()
    assert size == maxsize
    assert used < maxsize * 400, f"{used / maxsize:.0f} bytes per memo entry"
    assert used < 8 * 2**20, f"quantity memo holds {used / 2**20:.1f} MiB when full"


# The grammar the scanner must accept, as the regex it replaced wrote it (issue 12, finding 1):
# used here only on short strings, where its backtracking costs nothing.
_OLD_GRAMMAR = re.compile(
    r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?", re.ASCII
)
_QUANTITY_ALPHABET = st.sampled_from([*"0123456789.+-eEKMGTPinumk x\n", "１", "١"])


@settings(max_examples=3000, deadline=None)
@given(st.text(_QUANTITY_ALPHABET, max_size=12))
def test_quantity_scanner_accepts_exactly_the_kubernetes_grammar(text: str) -> None:
    assert is_quantity(text) == bool(_OLD_GRAMMAR.fullmatch(text))


@settings(max_examples=200, deadline=timedelta(milliseconds=100))  # > 100 ms a case fails
@given(
    run=st.sampled_from(["1", "9", "0", ".", "1.", "e"]),
    n=st.integers(min_value=0, max_value=200_000),
    tail=st.sampled_from(["", "x", ".", "e", "e+", "Ki", "Kix", "1.1", " ", "\n", "１"]),
)
def test_quantity_parsing_is_linear_on_long_hostile_strings(run: str, n: int, tail: str) -> None:
    """The old regex took 5 s on 16k digits and a bad last character (35 s on 40 KB): a
    remote hang of the event loop. Now the length is checked first and the scan is linear."""
    text = run * n + tail
    error: InvalidQuantity | None = None
    try:
        value = parse_quantity(text, field="spec.containers[0].resources.requests.cpu")
    except InvalidQuantity as exc:
        error = exc
    if error is not None:
        assert len(str(error)) < 300, "the denial must not echo a huge value"
    else:
        assert len(text) <= MAX_QUANTITY_LENGTH
        assert value >= 0


def test_long_quantity_is_refused_by_its_length() -> None:
    with pytest.raises(InvalidQuantity, match=f"longer than {MAX_QUANTITY_LENGTH}"):
        parse_quantity("1" * 40_000 + "x")
    assert parse_quantity("0" * 120 + "1") == D(1)  # padded but short enough: still exact


# --- as the apiserver stores a pod (issue 11; tests/oracle checks these against Kubernetes) ---


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        pytest.param("0.0001", D("0.001"), id="sub-milli-rounds-up-to-1m"),
        pytest.param("3.9999999", D(4), id="rounds-up-to-whole"),
        pytest.param("1.0000000001", D("1.001"), id="just-above-one"),
        pytest.param("1n", D("0.001"), id="nano"),
        pytest.param("100m", D("0.1"), id="milli-unchanged"),
        pytest.param(1e-05, D("0.001"), id="yaml-float"),
        pytest.param(" 1", D(1), id="leading-space-trimmed"),
        pytest.param("2 ", D(2), id="trailing-space-trimmed"),
        pytest.param("\u00a01", D(1), id="nbsp-trimmed"),
        pytest.param(None, D(0), id="null-is-zero"),
        pytest.param("25.51532571949064731597900391Gi", D("27396872378.001"), id="exact-product"),
    ],
)
def test_resource_quantity_is_what_the_apiserver_stores(written: Any, stored: Decimal) -> None:
    assert resources.resource_quantity(written) == stored


@pytest.mark.parametrize("written", ["\t1", "1\n", " ", "1 Gi"])
def test_resource_quantity_refuses_what_the_apiserver_cannot_decode(written: str) -> None:
    # kubectl's JSON escapes a tab or newline, and the apiserver trims only the raw JSON text
    with pytest.raises(InvalidQuantity):
        resources.resource_quantity(written)


def test_sub_milli_requests_add_up_as_kubernetes_rounds_them() -> None:
    """Issue 11's smallest verdict flip: 3.9999999 + 0.0000001 is 4001m, not 4."""
    spec = pod_spec(container("a", cpu="3.9999999"), container("b", cpu="0.0000001"))
    assert pod_requests(spec)["cpu"] == D("4.001")


def test_null_quantity_is_zero_and_a_null_limit_is_a_zero_limit() -> None:
    spec = pod_spec(container(limits={"cpu": None}, requests={"memory": "1Gi"}))
    assert pod_requests(spec) == {"cpu": D(0), "memory": D(2**30)}
    assert pod_limits(spec) == {"cpu": D(0)}


def test_pod_level_limit_defaults_to_the_larger_of_request_and_container_limits() -> None:
    """DefaultPodLevelResources (v1.37): every container limits cpu, the pod asks for more."""
    spec = pod_spec(
        container(limits={"cpu": "100m", "memory": "128Mi"}),
        resources={"requests": {"cpu": "500m", "memory": "512Mi"}},
    )
    assert pod_limits(spec) == {"cpu": D("0.5"), "memory": D(512 * 2**20)}


def test_pod_level_limit_is_not_defaulted_when_a_container_has_no_limit() -> None:
    spec = pod_spec(
        container("a", limits={"cpu": "1"}),
        container("b", cpu="1"),
        resources={"requests": {"cpu": "4"}},
    )
    assert pod_requests(spec)["cpu"] == D(4)
    assert pod_limits(spec)["cpu"] == D(1)  # the containers' own sum, as PodLimits has it


def test_pod_level_limit_default_counts_init_containers() -> None:
    spec = pod_spec(
        container("a", limits={"cpu": "1"}),
        init=[container("i", limits={"cpu": "3"})],
        resources={"requests": {"cpu": "2"}},
    )
    assert pod_limits(spec)["cpu"] == D(3)  # max(2, max(1, 3))
