"""Blocking calls that arrive together, run together: one thread hop per batch.

A script's 200 pipelined launches each need a disk check. Handing each to the default
executor cost a thread wake-up and a loop wake-up per call (and grew the pool to its limit,
all of its threads runnable at once on a 2-core machine). Here, the calls made for one key
while its batch is not yet running join that batch; the batch runs on a thread of the
shared executor and settles every caller in one loop callback. Different keys (clients)
never share a batch, so one client's check stuck on a hung network drive holds up only
that client's launches. Jobs' ends read their last output the same way, on the tail thread.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Executor
from typing import Any, Callable, Hashable, TypeVar

T = TypeVar("T")

_Call = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class BatchedCalls:
    """`await calls.run(key, fn, *args)`: `fn(*args)` on a worker thread, batched by key;
    on `executor`'s threads (the loop's default executor when None)."""

    def __init__(self, executor: Executor | None = None) -> None:
        self._executor = executor
        self._pending: dict[Hashable, list[_Call]] = {}
        self._guard = threading.Lock()

    async def run(self, key: Hashable, fn: Callable[..., T], *args: Any) -> T:
        """The result of `fn(*args)`, or its exception, as the caller's own."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._guard:
            batch = self._pending.get(key)
            first = batch is None
            if first:
                batch = self._pending[key] = []
            assert batch is not None
            batch.append((fn, args, future))
        if first:
            loop.run_in_executor(self._executor, self._run_batch, key, loop)
        return await future

    def _run_batch(self, key: Hashable, loop: asyncio.AbstractEventLoop) -> None:
        with self._guard:
            batch = self._pending.pop(key)
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        for fn, args, future in batch:
            try:
                outcomes.append((future, True, fn(*args)))
            except Exception as exc:  # handed to the caller, who raises it as its own
                outcomes.append((future, False, exc))
        loop.call_soon_threadsafe(_settle, outcomes)


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in outcomes:
        if future.done():
            continue  # the caller was cancelled meanwhile
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
