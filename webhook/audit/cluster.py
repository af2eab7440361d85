"""Reading the cluster for ``nodelimits audit``: which kinds are served, and their objects,
one page at a time.

The ``kubernetes`` client (a kubeconfig, else in-cluster credentials) makes the HTTP calls;
answers are read as raw JSON, as the apiserver hands objects to the webhook (no typed
models, which would drop the fields of custom resources and rename the rest). Lists are
paged (``limit``/``continue``), so memory stays bounded by one page. A page that fails is
asked again (:data:`PAGE_ATTEMPTS`, with back-off); an expired ``continue`` token (HTTP
410) raises :class:`ListExpired` so the caller restarts that kind from its first page;
anything else raises :class:`ListFailed`: a kind is either read whole or reported as an
error, never as clean.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from webhook.config import CORE_KINDS
from webhook.core import dra, trainjob
from webhook.core.kinds import KindTable

__all__ = [
    "BUILTIN_TARGETS",
    "Cluster",
    "ClusterClaims",
    "ClusterRuntimes",
    "KubeCluster",
    "ListExpired",
    "ListFailed",
    "Target",
    "served_targets",
]

log = logging.getLogger(__name__)

PAGE_ATTEMPTS = 4
"""Tries of one page before the kind is an error (network, 429, 5xx)."""
_RETRYABLE = frozenset({0, 429, 500, 502, 503, 504})


class ListFailed(RuntimeError):
    """A list could not be read to its end."""


class ListExpired(ListFailed):
    """The ``continue`` token expired (HTTP 410): the list must start again."""


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """One kind to read: what the audit and ``--kinds`` call it, and where it is served."""

    name: str
    """``Pod``, ``Job``, ... for the core kinds; ``Kind.group`` for the kind table's."""
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True
    field_selector: str = ""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(self, namespace: str | None) -> str:
        base = f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"
        if namespace and self.namespaced:
            base += f"/namespaces/{quote(namespace, safe='')}"
        return f"{base}/{self.plural}"


_CORE: dict[str, tuple[str, str]] = {
    "Pod": ("v1", "pods"),
    "Job": ("batch/v1", "jobs"),
    "CronJob": ("batch/v1", "cronjobs"),
    "Deployment": ("apps/v1", "deployments"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "DaemonSet": ("apps/v1", "daemonsets"),
    "ReplicaSet": ("apps/v1", "replicasets"),
    "ReplicationController": ("v1", "replicationcontrollers"),
    "PodTemplate": ("v1", "podtemplates"),
}
BUILTIN_TARGETS = tuple(
    Target(
        kind,
        _CORE[kind][0],
        kind,
        _CORE[kind][1],
        # Running Pods only: a finished pod never needs a node again.
        field_selector="status.phase!=Succeeded,status.phase!=Failed" if kind == "Pod" else "",
    )
    for kind in CORE_KINDS
)


class Cluster(Protocol):
    """What the audit reads: GET of a path with query parameters, JSON back."""

    def get(self, path: str, query: Mapping[str, str | int] | None = None) -> Any:
        """The decoded JSON body; raises :class:`ApiError` (status 0: no answer)."""
        ...


def table_targets(table: KindTable) -> list[Target]:
    """The kind table's rows as targets (every version; :func:`served_targets` picks)."""
    return [
        Target(f"{r.kind}.{r.group}", r.api_version, r.kind, r.plural, r.namespaced) for r in table
    ]


def served_targets(cluster: Cluster, candidates: Iterable[Target]) -> list[Target]:
    """The candidates the apiserver serves. Core kinds are always served. Of a table kind
    served under several versions (``MPIJob`` v1 and v2beta1 of one CRD) only one is read,
    the group's preferred version if it is a row, else the first row served: the same
    objects read twice would be reported twice. A kind whose CRD is not installed is
    skipped with one log line."""
    candidates = list(candidates)
    if all(not t.group or t.group in ("apps", "batch") for t in candidates):
        return candidates
    groups = {g["name"]: g for g in cluster.get("/apis").get("groups", [])}
    resources: dict[str, set[str] | None] = {}

    def serves(target: Target) -> bool:
        gv = target.api_version
        if gv not in resources:
            try:
                listed = cluster.get(f"/apis/{gv}").get("resources", [])
                resources[gv] = {r.get("name") for r in listed}
            except ApiError:
                resources[gv] = None
        found = resources[gv]
        return found is not None and target.plural in found

    out: list[Target] = []
    by_name: dict[str, list[Target]] = {}
    for t in candidates:
        if not t.group or t.group in ("apps", "batch"):
            out.append(t)
        else:
            by_name.setdefault(t.name, []).append(t)
    for name, rows in by_name.items():
        group = groups.get(rows[0].group)
        served_versions = {v.get("groupVersion") for v in (group or {}).get("versions", [])}
        preferred = ((group or {}).get("preferredVersion") or {}).get("groupVersion")
        usable = [t for t in rows if t.api_version in served_versions and serves(t)]
        if not usable:
            versions = ", ".join(t.api_version for t in rows)
            log.info("audit: %s is not served (%s): skipped", name, versions)
            continue
        chosen = next((t for t in usable if t.api_version == preferred), usable[0])
        out.append(chosen)
    return out


def pages(
    cluster: Cluster,
    target: Target,
    *,
    namespace: str | None = None,
    selector: str | None = None,
    limit: int = 500,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[list[dict[str, Any]]]:
    """The target's objects, one page at a time, each with ``apiVersion`` and ``kind`` set
    (the items of a built-in list carry neither)."""
    token = ""
    while True:
        query: dict[str, str | int] = {"limit": limit}
        if token:
            query["continue"] = token
        if selector:
            query["labelSelector"] = selector
        if target.field_selector:
            query["fieldSelector"] = target.field_selector
        body = _page(cluster, target, namespace, query, sleep)
        items = body.get("items") or []
        for item in items:
            item.setdefault("apiVersion", target.api_version)
            item.setdefault("kind", target.kind)
        yield items
        token = (body.get("metadata") or {}).get("continue") or ""
        if not token:
            return


def _page(
    cluster: Cluster,
    target: Target,
    namespace: str | None,
    query: Mapping[str, str | int],
    sleep: Callable[[float], None],
) -> Any:
    path = target.path(namespace)
    for attempt in range(PAGE_ATTEMPTS):
        try:
            return cluster.get(path, query)
        except ApiError as exc:
            if exc.status == 410:
                raise ListExpired(f"{target.name}: list expired mid-way ({exc})") from exc
            if exc.status not in _RETRYABLE or attempt == PAGE_ATTEMPTS - 1:
                raise ListFailed(f"{target.name}: cannot list {path}: {exc}") from exc
            log.warning("audit: %s: page failed (%s), trying again", target.name, exc)
            sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


_CLAIM_PLURAL = {dra.TEMPLATE: "resourceclaimtemplates", dra.CLAIM: "resourceclaims"}


class ClusterClaims:
    """A :class:`webhook.review.ClaimSource` over the cluster: the ResourceClaimTemplates and
    ResourceClaims a pod names (``resource.k8s.io/v1``), each read once per audit."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._read: dict[tuple[str, str, str], Mapping[str, Any] | None] = {}

    async def claims(self, namespace: str, refs: tuple[dra.ClaimRef, ...]) -> dra.Claims:
        import asyncio

        found: dict[tuple[str, str], Mapping[str, Any]] = {}
        missing: set[tuple[str, str]] = set()
        for ref in refs:
            key = (namespace, ref.kind, ref.name)
            if key not in self._read:
                self._read[key] = await asyncio.to_thread(self._get, namespace, ref)
            obj = self._read[key]
            if obj is None:
                missing.add(ref.key)
            else:
                found[ref.key] = obj
        return dra.Claims(found=found, missing=frozenset(missing))

    def _get(self, namespace: str, ref: dra.ClaimRef) -> Mapping[str, Any] | None:
        plural = _CLAIM_PLURAL.get(ref.kind)
        if plural is None:
            return None
        path = (
            f"/apis/resource.k8s.io/v1/namespaces/{quote(namespace, safe='')}/"
            f"{plural}/{quote(ref.name, safe='')}"
        )
        try:
            result: Mapping[str, Any] = self._cluster.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise ListFailed(f"cannot read {ref.kind} {namespace}/{ref.name}: {exc}") from exc
        return result


class ClusterRuntimes:
    """A :class:`webhook.review.RuntimeSource` over the cluster: the TrainJobs' training
    runtimes (``trainer.kubeflow.org/v1alpha1``), the ClusterTrainingRuntimes listed once
    and each namespace's TrainingRuntimes once, at the first TrainJob that names one, and
    kept for the audit (one instance per audit). A runtime that is not there is missing (the
    TrainJob an error result); a list that fails raises :class:`ListFailed`, for every
    TrainJob naming a runtime of that list in this audit (each an error result too, and
    the list is not asked again until the next audit); a runtime kind whose CRD is not
    installed has no runtimes."""

    def __init__(self, cluster: Cluster, chunk_size: int = 500) -> None:
        self._cluster = cluster
        self._chunk_size = chunk_size
        self._listed: dict[
            tuple[str, str], dict[tuple[str, str, str], Mapping[str, Any]] | ListFailed
        ] = {}
        """By (kind, namespace) listed: its runtimes by :attr:`RuntimeRef.key`, or why the
        list failed."""

    async def runtimes(self, ref: trainjob.RuntimeRef) -> trainjob.Runtimes:
        import asyncio

        scope = (ref.kind, ref.namespace)
        if scope not in self._listed:
            try:
                self._listed[scope] = await asyncio.to_thread(self._list, *scope)
            except ListFailed as exc:
                self._listed[scope] = exc
        found = self._listed[scope]
        if isinstance(found, ListFailed):
            raise ListFailed(str(found))
        missing = frozenset() if ref.key in found else frozenset({ref.key})
        return trainjob.Runtimes(found=found, missing=missing)

    def _list(self, kind: str, namespace: str) -> dict[tuple[str, str, str], Mapping[str, Any]]:
        target = Target(
            kind,
            f"{trainjob.GROUP}/{trainjob.VERSION}",
            kind,
            trainjob.RUNTIME_PLURALS[kind],
            namespaced=kind == trainjob.NAMESPACED_RUNTIME,
        )
        found: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        try:
            for page in pages(self._cluster, target, namespace=namespace or None,
                              limit=self._chunk_size):  # fmt: skip
                for obj in page:
                    name = (obj.get("metadata") or {}).get("name")
                    if isinstance(name, str):
                        found[(kind, namespace, name)] = obj
        except ListFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, ApiError) and cause.status == 404:  # no such CRD
                return {}
            raise
        return found


class KubeCluster:
    """:class:`Cluster` over the ``kubernetes`` client: ``kubeconfig`` (or ``$KUBECONFIG``,
    or ``~/.kube/config``) when there is one, else the pod's in-cluster credentials."""

    def __init__(
        self, kubeconfig: Path | None = None, context: str | None = None, timeout: float = 30.0
    ) -> None:
        from kubernetes import client, config

        self._timeout = timeout
        path = kubeconfig or _default_kubeconfig()
        if path is not None:
            self._api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(path), context=context, persist_config=False
            )
        else:
            configuration = client.Configuration()
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
            self._api = client.ApiClient(configuration)

    def close(self) -> None:
        self._api.close()

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One call; the decoded JSON body, or :class:`ApiError`."""
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            m, url, hdrs, payload, post = self._api.param_serialize(
                method,
                path,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(
                m, url, hdrs, payload, post, _request_timeout=self._timeout
            )
            data = response.read()
        except ApiException as exc:
            raise ApiError(exc.status or 0, str(exc.reason)) from exc
        except OSError as exc:  # urllib3's errors are OSErrors: refused, reset, timed out
            raise ApiError(0, str(exc)) from exc
        except Exception as exc:  # urllib3.exceptions.HTTPError and kin
            if type(exc).__module__.startswith("urllib3"):
                raise ApiError(0, str(exc)) from exc
            raise
        if not 200 <= response.status <= 299:
            raise ApiError(response.status, _status_message(response.status, data))
        return json.loads(data) if data else None

    def get(self, path: str, query: Mapping[str, str | int] | None = None) -> Any:
        return self.request("GET", path, query)


def _status_message(status: int, data: bytes | None) -> str:
    try:
        message = json.loads(data or b"{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"


def _default_kubeconfig() -> Path | None:
    env = os.environ.get("KUBECONFIG")
    if env:
        first = env.split(os.pathsep)[0]
        return Path(first) if first else None
    home = Path("~/.kube/config").expanduser()
    if home.is_file():
        return home
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    return home  # no cluster either: let the client say the kubeconfig is missing
