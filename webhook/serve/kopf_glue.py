"""Every place nodelimits reaches into kopf's private modules, in one file.

kopf is pinned to the minor whose internals these rely on (``kopf==1.45.*`` in
pyproject.toml); ``tests/unit/serve/test_kopf_glue.py`` fails when a name below is gone, and
``tests/unit/test_layers.py`` fails when any other module imports ``kopf._*``. What each
touch is for:

* :class:`EphemeralMemories`: kopf keeps a memo per object UID for every non-CREATE
  admission request and only a watch frees it; an admission-only process never watches.
* :func:`skip_copy_of_empty_patches`: kopf deep-copies the whole object before it checks
  whether there is a patch to send.
* ``WebhookError``: the error kopf answers with a 400, raised by the review-shape guard;
  ``UnknownResourceError`` / ``AmbiguousResourceError`` (404 / 409), which the listener's own
  request reader (:mod:`webhook.serve.tls`) answers as kopf's would.
* ``SmartOperatorRegistry``: a registry with kopf's default login handlers.
* :data:`WEBHOOK_SERVER_PRIVATES`: the methods of ``kopf.WebhookServer`` that
  :mod:`webhook.serve.tls` overrides or calls.
* :func:`unwrapped`: kopf hands handlers views over the review's dicts, each ``.get``
  through the ``Mapping`` ABC and kopf's path resolution.
* :func:`routed_by_webhook`: kopf matches every review against every registered webhook
  handler (``WebhooksRegistry.iter_handlers``) although the path names one.
* :func:`serving_insights`: kopf routes a review by ``insights.webhook_resources``, filled
  once by API discovery at start; a CRD installed later got a 404 (denied under
  ``failurePolicy: Fail``) until a restart. Every registered resource is served anyway.
  ``find_resource`` (kopf's routing) and ``revise_resources`` (what its discovery does with
  what it found) are named so ``tests/unit/serve/test_kopf_glue.py`` can run the two as kopf
  does.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, MutableSet
from typing import Any

from kopf._cogs.structs import dicts, patches
from kopf._cogs.structs.references import Insights, Resource
from kopf._core.engines.admission import (
    AmbiguousResourceError,
    UnknownResourceError,
    WebhookError,
    find_resource,
    serve_admission_request,
)
from kopf._core.intents.registries import OperatorRegistry, SmartOperatorRegistry
from kopf._core.reactor.inventory import ResourceMemories
from kopf._core.reactor.observation import revise_resources

__all__ = [
    "WEBHOOK_SERVER_PRIVATES",
    "AmbiguousResourceError",
    "EphemeralMemories",
    "Insights",
    "Patch",
    "Resource",
    "ResourceMemories",
    "SmartOperatorRegistry",
    "UnknownResourceError",
    "WebhookError",
    "WebhookFn",
    "find_resource",
    "revise_resources",
    "routed_by_webhook",
    "serve_admission_request",
    "serving_insights",
    "skip_copy_of_empty_patches",
    "unwrapped",
]

Patch = patches.Patch

WEBHOOK_SERVER_PRIVATES = (
    "_build_ssl",
    "_allocate_free_port",
    "_get_accessible_addr",
    "_build_url",
)
"""``kopf.WebhookServer`` methods the rotating TLS listener overrides or calls."""


class EphemeralMemories(ResourceMemories):
    """kopf's memories, but never retained: an admission-only process never watches, so
    nothing would ever free the per-UID memo kopf keeps for each UPDATE (a slow leak)."""

    async def recall_memo(
        self, raw_body: Any, *, memobase: Any = None, ephemeral: bool = False
    ) -> Any:
        return await super().recall_memo(raw_body, memobase=memobase, ephemeral=True)

    def retained(self) -> int:
        """Memos held (always 0 unless kopf changes how admission recalls them)."""
        return len(self._items)


def skip_copy_of_empty_patches() -> None:
    """kopf deep-copies the whole object to build a JSON patch *before* it checks whether
    there is anything to patch (kopf 1.45 ``Patch.as_json_patch``). A validating webhook
    never patches, so every review paid a deep copy: the largest single cost in kopf's
    request path (about 45% of it in-process for a 4.4 KB Pod). Same result, the empty
    case first. Idempotent."""
    original = patches.Patch.as_json_patch
    if getattr(original, "_nodelimits", False):
        return

    def as_json_patch(self: patches.Patch, body: Any = None) -> Any:
        if not self:
            return []
        return original(self, body)

    as_json_patch._nodelimits = True  # type: ignore[attr-defined]
    patches.Patch.as_json_patch = as_json_patch  # type: ignore[method-assign]


class _ReadyWithPinned(asyncio.Event):
    """kopf's ``insights.ready_resources``: set by its resource observer right after the
    discovery at start filled ``webhook_resources``, and awaited by the webhook server before
    it binds. Setting it first adds the pinned resources discovery did not find, so they are
    served from the first request on."""

    def __init__(self, resources: MutableSet[Resource], pinned: tuple[Resource, ...]) -> None:
        super().__init__()
        self._resources, self._pinned = resources, pinned

    def set(self) -> None:
        for resource in self._pinned:
            if resource not in self._resources:  # Resource equality: group, version, plural
                self._resources.add(resource)
        super().set()


def serving_insights(resources: Iterable[tuple[str, str, str, str, bool]]) -> Insights:
    """Insights for ``kopf.spawn_tasks`` under which every given (group, version, plural,
    kind, namespaced) is served whether or not discovery saw it at start.

    kopf discovers the API once (``settings.scanning.disabled``: no CRD watch, no RBAC for
    it) and answers a review for anything else with a 404: a CRD installed after the start
    was denied under ``failurePolicy: Fail`` until a restart. The resources are the handlers'
    own (group, version and plural exactly), so a review can only be routed to the handler
    registered for it; discovered resources keep discovery's details."""
    pinned = tuple(
        Resource(
            group=group,
            version=version,
            plural=plural,
            kind=kind,
            namespaced=namespaced,
            preferred=True,
            verbs=frozenset({"create", "update"}),
        )
        for group, version, plural, kind, namespaced in resources
    )
    served: set[Resource] = set()
    return Insights(webhook_resources=served, ready_resources=_ReadyWithPinned(served, pinned))


WebhookFn = Callable[..., Awaitable[Any]]


def routed_by_webhook(fn: WebhookFn) -> WebhookFn:
    """kopf's request function (``serve_admission_request`` with its collaborators bound
    by ``functools.partial``), handing kopf a registry of the path's own handlers alone.

    kopf compares each review with every registered webhook handler before it runs the one
    the path names: across the 31 nodelimits registers, 47k instructions per review (4%
    of kopf no-op's whole path, ``bench_handler --instructions``). A path with no handler
    of its own keeps the full registry (kopf answers it as before)."""
    if not isinstance(fn, functools.partial) or not isinstance(
        fn.keywords.get("registry"), OperatorRegistry
    ):
        raise TypeError("kopf's webhook function is no longer a partial with a registry")
    full: OperatorRegistry = fn.keywords["registry"]
    own: dict[str, OperatorRegistry] = {}
    for handler in full._webhooks.get_all_handlers():
        registry = own.setdefault(handler.id, OperatorRegistry())
        registry._webhooks.append(handler)

    async def routed(request: Any, *, webhook: str | None = None, **kw: Any) -> Any:
        return await fn(request, webhook=webhook, registry=own.get(webhook or "", full), **kw)

    return routed


def unwrapped(value: Any) -> Any:
    """The dict under a kopf body view (``body``, ``old``), else ``value`` itself.

    kopf passes a handler ``kopf.Body`` views over the review's decoded object; every
    ``.get`` on one goes through the ``Mapping`` ABC and kopf's path resolution (15 per Pod
    review, about a third of the handler's own time under cProfile). A view of the whole
    object (an empty path) reads the same values as the dict it wraps."""
    if isinstance(value, dicts.MappingView) and not value._path:
        return value._src
    return value
