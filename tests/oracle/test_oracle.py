"""nodelimits' effective requests and limits against Kubernetes' own code (tools/oracle).

For every pod that Kubernetes would hand a validating webhook (decoded, defaulted,
``PrepareForCreate``, valid), nodelimits must compute exactly component-helpers'
``PodRequests``/``PodLimits``, from both inputs it meets:

* offline: the pod as written (``nodelimits check`` reads manifests the apiserver has not
  defaulted yet);
* online: the pod as the apiserver hands it to the webhook (the oracle's output).

And nodelimits may refuse a quantity as malformed only where Kubernetes refuses the pod.
Seeded random pods (devtools/oracle.random_pods) plus hand-written cases taken from the
Kubernetes functions' own tests. ``NODELIMITS_ORACLE_SEED`` / ``NODELIMITS_ORACLE_PODS``
change the seed and the count.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from devtools import oracle
from webhook.core.resources import InvalidQuantity, pod_resources

pytestmark = pytest.mark.testbin

SEED = int(os.environ.get("NODELIMITS_ORACLE_SEED", "20260611"))
COUNT = int(os.environ.get("NODELIMITS_ORACLE_PODS", "5000"))
SHOWN = 8


def _nodelimits(spec: Any) -> tuple[dict[str, Decimal], dict[str, Decimal]] | InvalidQuantity:
    try:
        got = pod_resources(spec)
    except InvalidQuantity as exc:
        return exc
    return dict(got.requests), dict(got.limits)


def disagreements(pods: list[dict[str, Any]], verdicts: list[oracle.Verdict]) -> list[str]:
    """Every way nodelimits differs from Kubernetes on these pods, one line each."""
    out: list[str] = []
    for pod, verdict in zip(pods, verdicts, strict=True):
        slim = json.dumps(oracle.resources_only([pod])[0])
        offline = _nodelimits(pod["spec"])
        if not verdict.reaches_webhook:
            quantity_error = (
                verdict.decode_error is not None and "quantities" in verdict.decode_error
            )
            if quantity_error and not isinstance(offline, InvalidQuantity):
                out.append(f"offline accepts what the apiserver cannot decode: {slim}")
            continue
        expected = (verdict.requests, verdict.limits)
        if isinstance(offline, InvalidQuantity):
            out.append(f"offline refuses ({offline}) what Kubernetes accepts: {slim}")
        elif offline != expected:
            out.append(f"offline {offline} != kubernetes {expected}: {slim}")
        assert verdict.pod is not None
        online = _nodelimits(verdict.pod["spec"])
        if online != expected:
            seen = json.dumps(oracle.resources_only([verdict.pod])[0])
            out.append(f"online {online} != kubernetes {expected}: webhook sees {seen}")
    return out


def test_random_pods_agree_with_kubernetes(oracle_bin: Path) -> None:
    pods = oracle.random_pods(SEED, COUNT)
    verdicts = oracle.run(oracle_bin, pods)
    reached = sum(v.reaches_webhook for v in verdicts)
    # the generator must keep producing pods that matter: most reach a webhook
    assert reached > COUNT // 2, f"only {reached} of {COUNT} random pods are valid"
    found = disagreements(pods, verdicts)
    assert not found, (
        f"{len(found)} disagreements over {COUNT} pods (seed {SEED}, {reached} valid); "
        "first ones:\n" + "\n".join(found[:SHOWN])
    )


def _rl(cpu: str = "", memory: str = "") -> dict[str, str]:
    """getResourceList(cpu, memory) of pkg/registry/core/pod/strategy_test.go."""
    out = {}
    if cpu:
        out["cpu"] = cpu
    if memory:
        out["memory"] = memory
    return out


def _c(
    name: str, requests: dict[str, Any], limits: dict[str, Any], *, sidecar: bool = False
) -> dict[str, Any]:
    """newContainer / newSidecarContainer of the same test file."""
    out: dict[str, Any] = {"name": name, "image": "x", "resources": {}}
    if requests:
        out["resources"]["requests"] = requests
    if limits:
        out["resources"]["limits"] = limits
    if sidecar:
        out["restartPolicy"] = "Always"
    return out


def _pod(
    *containers: dict[str, Any], init: tuple[dict[str, Any], ...] = (), **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": list(containers), **spec}
    if init:
        body["initContainers"] = list(init)
    return {"metadata": {"name": "edge"}, "spec": body}


# Inputs of TestApplyPodLevelResourceDefaults (pkg/registry/core/pod/strategy_test.go, the
# v1.37 gates on), TestPodResourceRequests / TestPodResourceLimits / TestPodLevelResourceRequests
# (component-helpers/resource/helpers_test.go), TestSetMinimumScalePod
# (pkg/apis/core/v1/defaults_test.go), and issue 11's own findings.
EDGE_CASES: dict[str, dict[str, Any]] = {
    # strategy_test.go TestApplyPodLevelResourceDefaults
    "plr-empty-requests-map": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("200m", "256Mi")), resources={"requests": {}}
    ),
    "plr-empty-limits-map": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("200m", "256Mi")), resources={"limits": {}}
    ),
    "plr-memory-request-container-cpu-limits": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("100m")),
        _c("c2", _rl("200m", "128Mi"), _rl("200m")),
        resources={"requests": _rl(memory="256Mi")},
    ),
    "plr-memory-request-container-memory-limits": _pod(
        _c("c1", _rl(memory="128Mi"), _rl(memory="128Mi")),
        _c("c2", _rl(memory="128Mi"), _rl(memory="128Mi")),
        resources={"requests": _rl(memory="256Mi")},
    ),
    "plr-cpu-reqs-5m-6m-limits-9m-10m": _pod(
        _c("c1", _rl("5m"), _rl("9m")),
        _c("c2", _rl("6m"), _rl("10m")),
        resources={"requests": _rl(memory="256Mi")},
    ),
    "plr-cpu-request-container-memory-limits": _pod(
        _c("c1", _rl(memory="128Mi"), _rl(memory="256Mi")),
        _c("c2", _rl(memory="128Mi"), _rl(memory="256Mi")),
        resources={"requests": _rl("200m")},
    ),
    "plr-limits-defaulted-from-container-limits": _pod(
        _c("c1", {}, _rl("100m", "128Mi")),
        _c("c2", {}, _rl("100m", "128Mi")),
        resources={"requests": _rl("200m", "256Mi")},
    ),
    "plr-container-missing-limits": _pod(
        _c("c1", _rl("50m", "64Mi"), _rl("100m", "128Mi")),
        _c("c2", _rl("50m", "64Mi"), {}),
        resources={"requests": _rl("200m", "256Mi")},
    ),
    "plr-partial-limit-defaulting": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("100m", "128Mi")),
        _c("c2", _rl("100m", "128Mi"), _rl("100m", "128Mi")),
        resources={"requests": _rl("200m", "256Mi"), "limits": _rl("200m")},
    ),
    "plr-memory-limit-set-cpu-limit-defaulted": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("100m", "128Mi")),
        _c("c2", _rl("80m", "128Mi"), _rl("100m", "128Mi")),
        resources={"requests": _rl(memory="256Mi"), "limits": _rl(memory="256Mi")},
    ),
    "plr-both-limits-set": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("100m", "128Mi")),
        resources={"requests": _rl("100m", "128Mi"), "limits": _rl("500m", "512Mi")},
    ),
    "plr-cpu-limit-defaulted-memory-skipped": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("100m", "128Mi")),
        _c("c2", _rl("100m", "128Mi"), _rl("100m")),
        resources={"requests": _rl(memory="256Mi")},
    ),
    "plr-init-container-limits-included": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("100m", "128Mi")),
        init=(_c("init1", _rl("200m", "256Mi"), _rl("200m", "256Mi")),),
        resources={"requests": _rl("200m", "256Mi")},
    ),
    "plr-init-container-missing-limits": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("100m", "128Mi")),
        init=(_c("init1", _rl("200m", "256Mi"), {}),),
        resources={"requests": _rl("200m", "256Mi")},
    ),
    "plr-sidecar-limits-included": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("100m", "128Mi")),
        init=(_c("sidecar", _rl("50m", "64Mi"), _rl("50m", "64Mi"), sidecar=True),),
        resources={"requests": _rl("150m", "192Mi")},
    ),
    "plr-sidecar-missing-limits": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("100m", "128Mi")),
        init=(_c("sidecar", _rl("50m", "64Mi"), {}, sidecar=True),),
        resources={"requests": _rl("150m", "192Mi")},
    ),
    "plr-limit-raised-to-pod-request": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("100m", "128Mi")),
        resources={"requests": _rl("500m", "512Mi")},
    ),
    "plr-single-container-limit-defaulting": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("200m", "256Mi")),
        resources={"requests": _rl("100m", "128Mi")},
    ),
    "plr-requests-defaulted-from-containers-when-limits-set": _pod(
        _c("c1", _rl("100m", "128Mi"), _rl("200m", "256Mi")),
        resources={"limits": _rl("500m", "512Mi")},
    ),
    "plr-only-pod-limits-no-container-requests": _pod(
        _c("c1", {}, {}), resources={"limits": _rl("2", "1Gi")}
    ),
    # helpers_test.go: sidecars, restartable init containers, overhead
    "sidecar-then-init": _pod(
        _c("app", _rl("100m"), {}),
        init=(_c("s", _rl("100m"), {}, sidecar=True), _c("i", _rl("200m"), {})),
    ),
    "init-then-sidecar": _pod(
        _c("app", _rl("1"), {}),
        init=(_c("i", _rl("3"), {}), _c("s", _rl("1"), {}, sidecar=True)),
    ),
    "sidecars-and-init-limits": _pod(
        _c("app", _rl("1", "1Gi"), _rl("2", "2Gi")),
        init=(
            _c("s1", _rl("1"), _rl("1"), sidecar=True),
            _c("i1", _rl("2"), _rl("5")),
            _c("s2", _rl("2"), _rl("3"), sidecar=True),
            _c("i2", _rl("1"), _rl("2")),
        ),
    ),
    "overhead-with-and-without-limits": _pod(
        _c("a", _rl("1", "1Gi"), _rl(memory="2Gi")),
        overhead=_rl("250m", "120Mi"),
    ),
    "overhead-on-a-zero-limit": _pod(_c("a", _rl("0"), _rl("0")), overhead=_rl("250m", "120Mi")),
    "overhead-with-pod-level-resources": _pod(
        _c("a", _rl("1"), {}),
        resources={"requests": _rl("2", "1Gi"), "limits": _rl("4", "2Gi")},
        overhead=_rl("250m", "120Mi"),
    ),
    "extended-resources-never-pod-level": _pod(
        _c("a", {"nvidia.com/gpu": "2"}, {"nvidia.com/gpu": "2"}),
        _c("b", {}, {"nvidia.com/gpu": "1", "cpu": "1"}),
        resources={"requests": _rl("4", "4Gi")},
    ),
    "hugepages-pod-level-defaulting": _pod(
        _c("a", _rl("1", "1Gi"), {"hugepages-2Mi": "4Mi", "memory": "1Gi"}),
        resources={"requests": _rl("1")},
    ),
    # defaults_test.go TestSetMinimumScalePod: 1n memory and 2n cpu round up to 1m
    "minimum-scale": _pod(
        _c("a", _rl(memory="1n"), _rl("2n")), init=(_c("i", _rl(memory="1n"), _rl("2n")),)
    ),
    # issue 11: sub-milli rounding flips a 4-core verdict; null; whitespace
    "issue11-sub-milli-4001m": _pod(_c("a", _rl("3.9999999"), {}), _c("b", _rl("0.0000001"), {})),
    "issue11-0.0001-is-1m": _pod(_c("a", _rl("0.0001"), _rl("0.0005"))),
    "issue11-1.0000000001-is-1001m": _pod(_c("a", _rl("1.0000000001"), {})),
    "issue11-cpu-null": _pod(_c("a", {"cpu": None, "memory": "1Gi"}, {"cpu": None})),
    "issue11-padded-strings": _pod(_c("a", {"cpu": " 1", "memory": "1Gi "}, {"cpu": " 2 "})),
    "issue11-nbsp-and-ideographic-space": _pod(_c("a", {"cpu": "\u00a01"}, {"cpu": "2\u3000"})),
    "issue11-memory-milli-bytes": _pod(_c("a", {"memory": "100m"}, {"memory": "1.5"})),
    "exponent-and-yaml-numbers": _pod(
        _c("a", {"cpu": 0.5, "memory": 1e9}, {"cpu": "1e0", "memory": "1E9"})
    ),
    "nano-suffixes": _pod(_c("a", {"cpu": "1500000u"}, {"cpu": "2000000000n"})),
}


def test_edge_cases_agree_with_kubernetes(oracle_bin: Path) -> None:
    names = list(EDGE_CASES)
    pods = [EDGE_CASES[n] for n in names]
    verdicts = oracle.run(oracle_bin, pods)
    problems = [
        f"{name}: invalid in Kubernetes: {v.decode_error or v.invalid}"
        for name, v in zip(names, verdicts, strict=True)
        if not v.reaches_webhook
    ]
    assert not problems, "edge cases meant to be valid are not:\n" + "\n".join(problems)
    found = [
        f"{name}: {line}"
        for name, pod, v in zip(names, pods, verdicts, strict=True)
        for line in disagreements([pod], [v])
    ]
    assert not found, "\n".join(found)


def test_the_oracle_is_kubernetes(oracle_bin: Path) -> None:
    """The upstream tests' own expectations hold in the oracle (it runs the v1.37 gates)."""
    cases = [
        "plr-cpu-reqs-5m-6m-limits-9m-10m",
        "plr-limit-raised-to-pod-request",
        "issue11-sub-milli-4001m",
    ]
    got = oracle.run(oracle_bin, [EDGE_CASES[c] for c in cases])
    assert got[0].pod is not None
    assert got[0].pod["spec"]["resources"] == {
        "requests": {"cpu": "11m", "memory": "256Mi"},
        "limits": {"cpu": "19m"},
    }
    assert got[1].limits == {"cpu": Decimal("0.5"), "memory": Decimal(512 * 2**20)}
    assert got[2].requests == {"cpu": Decimal("4.001")}


def _raw_cpu(json_value: str) -> bytes:
    """A pod whose one cpu request is ``json_value``, as raw JSON text."""
    resources = '"resources":{"requests":{"cpu":' + json_value + "}}"
    return ('{"spec":{"containers":[{"name":"a","image":"x",' + resources + "}]}}").encode()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_raw_cpu('"\\t1"'), id="escaped-tab"),
        pytest.param(_raw_cpu('"1 Gi"'), id="inner-space"),
        pytest.param(_raw_cpu("true"), id="bool"),
    ],
)
def test_what_kubernetes_cannot_decode_nodelimits_refuses(oracle_bin: Path, raw: bytes) -> None:
    (verdict,) = oracle.run(oracle_bin, [raw])
    assert verdict.decode_error is not None
    assert isinstance(_nodelimits(json.loads(raw)["spec"]), InvalidQuantity)
