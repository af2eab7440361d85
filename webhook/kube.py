"""Reading what a checked object names from the apiserver, cached: a pod's
ResourceClaimTemplates/ResourceClaims (DRA) and a TrainJob's (Cluster)TrainingRuntime.

The webhook's only reads of Kubernetes: ``GET`` of the claims a checked pod names, in its
namespace (RBAC: ``get`` on ``resourceclaimtemplates`` and ``resourceclaims`` of
``resource.k8s.io``), and of the training runtime a TrainJob names (``get`` on
``clustertrainingruntimes`` and ``trainingruntimes`` of ``trainer.kubeflow.org``, granted
only while the TrainJob kind is enabled); nothing else. Each answer is reused for
``kubernetes.claims_ttl`` (a 404 for at most 5 s, so a template created right after its Job
is seen soon), in one bounded cache. The review's own time budget bounds every lookup (the caller's
``asyncio.timeout``); a failed lookup raises :class:`ClaimsUnavailable`, a
:class:`~webhook.platform.errors.PlatformUnavailable`, so the configured failure mode
decides, as for a platform outage.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from webhook.config import KubernetesSettings
from webhook.core import dra, trainjob
from webhook.platform.errors import PlatformUnavailable

__all__ = [
    "ApiserverClaims",
    "ClaimsUnavailable",
    "RuntimeUnavailable",
    "auth_headers",
    "claim_source",
    "in_cluster_url",
    "runtime_source",
    "ssl_context",
]

_PLURAL = {dra.TEMPLATE: "resourceclaimtemplates", dra.CLAIM: "resourceclaims"}
_MISSING_TTL = 5.0
_MAX_BODY = 3 << 20
"""etcd stores objects of at most 1.5 MiB; anything larger is not a claim or a runtime."""
_Entry = tuple[float, Mapping[str, Any] | None]


class ClaimsUnavailable(PlatformUnavailable):
    """The apiserver did not answer a lookup (network, timeout, 5xx, 401/403)."""


class RuntimeUnavailable(ClaimsUnavailable):
    """The apiserver did not answer a TrainJob's training-runtime lookup."""


def in_cluster_url() -> str | None:
    """The apiserver's URL from the environment the kubelet gives every pod, or None."""
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    if not host or not port:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}:{port}"


def ssl_context(settings: KubernetesSettings) -> ssl.SSLContext:
    """TLS to the apiserver: its CA (the service account's when present), and the client
    certificate when one is configured."""
    ca = str(settings.ca_file) if settings.ca_file and settings.ca_file.exists() else None
    context = ssl.create_default_context(cafile=ca)
    if settings.client_cert_file:
        key = str(settings.client_key_file) if settings.client_key_file else None
        context.load_cert_chain(str(settings.client_cert_file), key)
    return context


def auth_headers(settings: KubernetesSettings) -> dict[str, str]:
    """The bearer token header, unless a client certificate authenticates instead. Read on
    every call: the kubelet rotates projected tokens."""
    token_file = settings.token_file
    if token_file is None or settings.client_cert_file:
        return {}
    try:
        token = token_file.read_text().strip()
    except OSError:
        return {}
    return {"Authorization": f"Bearer {token}"} if token else {}


class ApiserverClaims:
    """A :class:`webhook.review.ClaimSource` over the apiserver."""

    def __init__(
        self,
        settings: KubernetesSettings,
        base_url: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str, str], _Entry] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl_context(self.settings)
        return self._ssl

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json", **auth_headers(self.settings)}

    async def _get(self, namespace: str, ref: dra.ClaimRef) -> Mapping[str, Any] | None:
        path = (
            f"/apis/resource.k8s.io/v1/namespaces/{quote(namespace, safe='')}"
            f"/{_PLURAL[ref.kind]}/{quote(ref.name, safe='')}"
        )
        what = f"{ref.kind} {namespace}/{ref.name}"
        return await self._read((namespace, ref.kind, ref.name), path, what, ClaimsUnavailable)

    async def _read(
        self,
        key: tuple[str, str, str],
        path: str,
        what: str,
        error: type[ClaimsUnavailable],
    ) -> Mapping[str, Any] | None:
        """``GET path`` (None on a 404), through the cache."""
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            return cached[1]
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
        try:
            async with self._session.get(
                f"{self.base_url}{path}",
                headers=self._headers(),
                ssl=self._context(),
                timeout=timeout,
            ) as response:
                status = response.status
                body = await _read_body(response)
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
            raise error(
                f"cannot read {what} from the apiserver: {type(exc).__name__}: {exc}"
            ) from exc
        if status == 404:
            value: Mapping[str, Any] | None = None
            ttl = min(_MISSING_TTL, self.settings.claims_ttl)
        elif status == 200 and len(body) <= _MAX_BODY:
            try:
                decoded = json.loads(body)
            except ValueError as exc:
                raise error(f"{what}: not JSON") from exc
            if not isinstance(decoded, dict):
                raise error(f"{what}: not an object")
            value, ttl = decoded, self.settings.claims_ttl
        else:
            group = path.split("/")[2]
            hint = f" (RBAC: get on {group} {path.split('/')[-2]}?)" if status in (401, 403) else ""
            raise error(f"cannot read {what}: HTTP {status}{hint}")
        self._cache[key] = (now + ttl, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self.settings.max_cached_claims:
            self._cache.popitem(last=False)
        return value

    async def runtimes(self, ref: trainjob.RuntimeRef) -> trainjob.Runtimes:
        """A :class:`webhook.review.RuntimeSource`: the training runtime ``ref`` names."""
        plural = trainjob.RUNTIME_PLURALS[ref.kind]
        where = f"/namespaces/{quote(ref.namespace, safe='')}" if ref.namespace else ""
        path = (
            f"/apis/{trainjob.GROUP}/{trainjob.VERSION}{where}/{plural}/{quote(ref.name, safe='')}"
        )
        key = (ref.namespace, ref.kind, ref.name)  # a claim's layout; kinds tell them apart
        got = await self._read(key, path, ref.shown, RuntimeUnavailable)
        if got is None:
            return trainjob.Runtimes(missing=frozenset({ref.key}))
        return trainjob.Runtimes(found={ref.key: got})

    async def claims(self, namespace: str, refs: tuple[dra.ClaimRef, ...]) -> dra.Claims:
        unique = list(dict.fromkeys(refs))
        read = await asyncio.gather(*(self._get(namespace, ref) for ref in unique))
        found = {ref.key: obj for ref, obj in zip(unique, read, strict=True) if obj is not None}
        missing = frozenset(ref.key for ref, obj in zip(unique, read, strict=True) if obj is None)
        return dra.Claims(found=found, missing=missing)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def runtime_source(
    settings: KubernetesSettings, claims: ApiserverClaims | None = None
) -> ApiserverClaims | None:
    """Where TrainJobs' training runtimes are read: the claims' reader when there is one
    (one cache, one session), else the apiserver when one is known; None outside a cluster
    without ``api_url`` (TrainJobs are then skipped, saying why)."""
    if claims is not None:
        return claims
    url = settings.api_url or in_cluster_url()
    return ApiserverClaims(settings, url) if url else None


async def _read_body(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, or its first ``_MAX_BODY + 1`` bytes: one ``read(n)`` returns what
    has arrived, which for a runtime of a few KiB was a part of it ("not JSON")."""
    parts: list[bytes] = []
    size = 0
    while size <= _MAX_BODY:
        chunk = await response.content.read(_MAX_BODY + 1 - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def claim_source(settings: KubernetesSettings) -> ApiserverClaims | None:
    """The apiserver claim source the settings ask for; None outside a cluster without
    ``api_url``, or with ``read_claims: false``."""
    if not settings.read_claims:
        return None
    url = settings.api_url or in_cluster_url()
    return ApiserverClaims(settings, url) if url else None
