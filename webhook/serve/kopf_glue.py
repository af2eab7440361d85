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
"""

from __future__ import annotations

from typing import Any

from kopf._cogs.structs import patches
from kopf._cogs.structs.references import Insights
from kopf._core.engines.admission import (
    AmbiguousResourceError,
    UnknownResourceError,
    WebhookError,
    serve_admission_request,
)
from kopf._core.intents.registries import SmartOperatorRegistry
from kopf._core.reactor.inventory import ResourceMemories

__all__ = [
    "WEBHOOK_SERVER_PRIVATES",
    "AmbiguousResourceError",
    "EphemeralMemories",
    "Insights",
    "Patch",
    "ResourceMemories",
    "SmartOperatorRegistry",
    "UnknownResourceError",
    "WebhookError",
    "serve_admission_request",
    "skip_copy_of_empty_patches",
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
