"""webhook.kube: the apiserver claim and training-runtime source (cache, 404s, failures) over
a local HTTP server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp.web
import pytest

from webhook.config import KubernetesSettings
from webhook.core import dra, trainjob
from webhook.kube import (
    ApiserverClaims,
    ClaimsUnavailable,
    RuntimeUnavailable,
    claim_source,
    runtime_source,
)

TEMPLATE = dra.ClaimRef(dra.TEMPLATE, "gpus", "g")
MISSING = dra.ClaimRef(dra.TEMPLATE, "nope", "n")
FORBIDDEN = dra.ClaimRef(dra.CLAIM, "secret", "s")


class Api:
    def __init__(self) -> None:
        self.hits: list[str] = []

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.hits.append(request.path)
        name = request.match_info["name"]
        if name == "gpus":
            return aiohttp.web.json_response({"kind": "ResourceClaimTemplate", "spec": {}})
        if name == "torch":
            return aiohttp.web.json_response({"kind": "ClusterTrainingRuntime", "spec": {}})
        if name == "chunked":  # a body that arrives in several parts
            response = aiohttp.web.StreamResponse()
            response.content_type = "application/json"
            await response.prepare(request)
            text = json.dumps({"kind": "ClusterTrainingRuntime", "spec": {"x": "y" * 300_000}})
            for at in range(0, len(text), 50_000):
                await response.write(text[at : at + 50_000].encode())
                await asyncio.sleep(0.01)
            await response.write_eof()
            return response  # type: ignore[return-value]
        if name == "secret":
            return aiohttp.web.json_response({}, status=403)
        return aiohttp.web.json_response({}, status=404)


@pytest.fixture
async def api(unused_tcp_port: int) -> AsyncIterator[tuple[Api, str]]:
    state = Api()
    app = aiohttp.web.Application()
    app.router.add_get("/apis/resource.k8s.io/v1/namespaces/{ns}/{plural}/{name}", state.handle)
    app.router.add_get("/apis/trainer.kubeflow.org/v1alpha1/{plural}/{name}", state.handle)
    app.router.add_get(
        "/apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/{plural}/{name}", state.handle
    )
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        yield state, f"http://127.0.0.1:{unused_tcp_port}"
    finally:
        await runner.cleanup()


def source(url: str, tmp_path: Path, now: list[float], **more: object) -> ApiserverClaims:
    settings = KubernetesSettings(token_file=tmp_path / "token", ca_file=None, **more)  # type: ignore[arg-type]
    return ApiserverClaims(settings, url, clock=lambda: now[0])


async def test_found_and_missing_are_cached_for_their_ttls(
    api: tuple[Api, str], tmp_path: Path
) -> None:
    state, url = api
    now = [0.0]
    claims = source(url, tmp_path, now, claims_ttl=30.0)
    try:
        got = await claims.claims("team-a", (TEMPLATE, MISSING, TEMPLATE))
        assert set(got.found) == {TEMPLATE.key}
        assert got.missing == {MISSING.key}
        assert state.hits == [
            "/apis/resource.k8s.io/v1/namespaces/team-a/resourceclaimtemplates/gpus",
            "/apis/resource.k8s.io/v1/namespaces/team-a/resourceclaimtemplates/nope",
        ]
        now[0] = 6.0  # the 404 is kept at most 5 s, the template 30 s
        await claims.claims("team-a", (TEMPLATE, MISSING))
        assert len(state.hits) == 3
        now[0] = 31.0
        await claims.claims("team-a", (TEMPLATE,))
        assert len(state.hits) == 4
    finally:
        await claims.close()


async def test_a_refusal_is_unavailable_naming_rbac(api: tuple[Api, str], tmp_path: Path) -> None:
    claims = source(api[1], tmp_path, [0.0])
    try:
        with pytest.raises(ClaimsUnavailable, match=r"HTTP 403 \(RBAC"):
            await claims.claims("team-a", (FORBIDDEN,))
    finally:
        await claims.close()


async def test_an_unreachable_apiserver_is_unavailable(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    claims = source(f"http://127.0.0.1:{unused_tcp_port}", tmp_path, [0.0])
    try:
        with pytest.raises(ClaimsUnavailable, match="cannot read ResourceClaimTemplate"):
            await claims.claims("team-a", (TEMPLATE,))
    finally:
        await claims.close()


async def test_the_cache_is_bounded(api: tuple[Api, str], tmp_path: Path) -> None:
    claims = source(api[1], tmp_path, [0.0], max_cached_claims=2)
    try:
        for i in range(5):
            await claims.claims("team-a", (dra.ClaimRef(dra.TEMPLATE, f"t{i}", "x"),))
        assert len(claims._cache) == 2
    finally:
        await claims.close()


def test_no_source_outside_a_cluster_or_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert claim_source(KubernetesSettings()) is None
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    found = claim_source(KubernetesSettings())
    assert found is not None
    assert found.base_url == "https://10.0.0.1:443"
    assert claim_source(KubernetesSettings(read_claims=False)) is None


CLUSTER_RUNTIME = trainjob.RuntimeRef(trainjob.CLUSTER_RUNTIME, "torch")


async def test_a_cluster_training_runtime_is_read_and_cached(
    api: tuple[Api, str], tmp_path: Path
) -> None:
    state, url = api
    reader = source(url, tmp_path, [0.0])
    try:
        got = await reader.runtimes(CLUSTER_RUNTIME)
        assert got.found[CLUSTER_RUNTIME.key]["kind"] == "ClusterTrainingRuntime"
        await reader.runtimes(CLUSTER_RUNTIME)
        assert state.hits == ["/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes/torch"]
    finally:
        await reader.close()


async def test_a_runtime_whose_body_arrives_in_parts_is_read_whole(
    api: tuple[Api, str], tmp_path: Path
) -> None:
    reader = source(api[1], tmp_path, [0.0])
    ref = trainjob.RuntimeRef(trainjob.CLUSTER_RUNTIME, "chunked")
    try:
        got = await reader.runtimes(ref)
        assert len(got.found[ref.key]["spec"]["x"]) == 300_000
    finally:
        await reader.close()


async def test_a_training_runtime_is_read_in_the_trainjobs_namespace_and_missing_is_said(
    api: tuple[Api, str], tmp_path: Path
) -> None:
    state, url = api
    reader = source(url, tmp_path, [0.0])
    ref = trainjob.RuntimeRef(trainjob.NAMESPACED_RUNTIME, "nope", "team-a")
    try:
        got = await reader.runtimes(ref)
        assert (dict(got.found), got.missing) == ({}, {ref.key})
        assert state.hits == [
            "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainingruntimes/nope"
        ]
    finally:
        await reader.close()


async def test_a_refused_runtime_read_is_unavailable_naming_its_rbac(
    api: tuple[Api, str], tmp_path: Path
) -> None:
    reader = source(api[1], tmp_path, [0.0])
    try:
        with pytest.raises(
            RuntimeUnavailable,
            match=r"HTTP 403 \(RBAC: get on trainer.kubeflow.org clustertrainingruntimes\?\)",
        ):
            await reader.runtimes(trainjob.RuntimeRef(trainjob.CLUSTER_RUNTIME, "secret"))
    finally:
        await reader.close()


def test_runtimes_are_read_by_the_claims_reader_or_without_claims(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    claims = claim_source(KubernetesSettings())
    assert runtime_source(KubernetesSettings(), claims) is claims
    alone = runtime_source(KubernetesSettings(read_claims=False))
    assert alone is not None
    assert alone.base_url == "https://10.0.0.1:443"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert runtime_source(KubernetesSettings()) is None
