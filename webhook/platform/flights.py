"""Single-flight: at most one running task per key, every task tracked and cancellable.

The cache and the resource-group list both need "N concurrent misses make one upstream
call" and "no task outlives close()"; this is that idea once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Flights"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Flights(Generic[K, V]):
    """Running tasks by key; :meth:`run` joins the running one instead of starting another."""

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def running(self, key: K) -> bool:
        return key in self._tasks

    def run(self, key: K, start: Callable[[], Coroutine[Any, Any, V]]) -> asyncio.Task[V]:
        """The task for ``key``: the running one, or a new one from ``start()``."""
        task = self._tasks.get(key)
        if task is not None:
            return task
        if self._closed:
            raise RuntimeError("closed: no new tasks")
        task = asyncio.create_task(start())
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        # Retrieve the outcome so a failure nobody waited for (a background refresh,
        # or all waiters cancelled) is not reported as "exception never retrieved";
        # the task itself records its failures.
        if not task.cancelled():
            task.exception()

    async def aclose(self) -> None:
        """Cancel every running task and wait until all have finished."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
