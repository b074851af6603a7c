"""A Python client for the daemon's JSON-RPC WebSocket API (used by the CLI and the tests).

    async with Client(url, token=...) as client:
        job = await client.call("launch", solver="lsdyna-smp", input="/runs/a/main.k", ncpu=2)
        await client.subscribe()
        done = await client.wait_for(job["id"], "finished")

Responses are matched by id; notifications are queued per method for `next_notification`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from typing import Any, Callable

from websockets.asyncio.client import ClientConnection, connect

from serv.api import DEFAULT_URL
from serv.coalesce import CoalescingClientConnection


class RpcError(Exception):
    """An error response: `code` and `message` as the daemon sent them."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class Client:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        loads: Callable[[str | bytes], Any] = json.loads,
    ) -> None:
        """`loads` decodes each incoming message; a faster decoder (orjson.loads) may be
        given where its limits are acceptable (it reads integers beyond 64 bits as floats)."""
        self.url = url
        self.token = token
        self._loads = loads
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._notes: dict[str, asyncio.Queue[dict[str, Any]]] = defaultdict(asyncio.Queue)
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self._ws = await connect(
            self.url, additional_headers=headers, max_size=64 * 1024 * 1024,
            create_connection=CoalescingClientConnection,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                msg = self._loads(raw)
                for item in msg if isinstance(msg, list) else [msg]:
                    if "id" in item and item["id"] in self._pending:
                        self._pending.pop(item["id"]).set_result(item)
                    elif "method" in item:
                        self._notes[item["method"]].put_nowait(item.get("params", {}))
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection to the daemon closed"))

    async def send_raw(self, text: str | bytes) -> None:
        assert self._ws is not None
        await self._ws.send(text)

    async def request(self, method: str, params: Any = None) -> dict[str, Any]:
        """Send one request and return the whole response object."""
        assert self._ws is not None
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
        if params is not None:
            req["params"] = params
        await self._ws.send(json.dumps(req))
        response: dict[str, Any] = await fut
        return response

    async def call(self, method: str, *args: Any, **params: Any) -> Any:
        """Call `method` with params by name (or by position); raise RpcError on an error."""
        response = await self.request(method, list(args) if args else (params or None))
        if "error" in response:
            err = response["error"]
            raise RpcError(err["code"], err["message"], err.get("data"))
        return response["result"]

    async def subscribe(self, *topics: str) -> None:
        await self.call("subscribe", topics=list(topics or ("jobs",)))

    async def next_notification(self, method: str, timeout: float) -> dict[str, Any]:
        return await asyncio.wait_for(self._notes[method].get(), timeout)

    async def wait_for(self, job_id: int, *statuses: str, timeout: float = 30.0) -> dict[str, Any]:
        """The job once its status is one of `statuses` (subscribe to "jobs" first)."""
        return await self.wait_until(
            job_id, lambda job: job["status"] in statuses, "/".join(statuses), timeout=timeout
        )

    async def wait_until(
        self, job_id: int, test: Callable[[dict[str, Any]], bool], what: str, *, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The job once `test(job)` holds, from getJob and then its `jobChanged`
        notifications (subscribe to "jobs" first); TimeoutError names `what`."""
        job: dict[str, Any] = await self.call("getJob", id=job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not test(job):
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(
                    f"job {job_id} not {what} after {timeout:.1f} s; last seen {job['status']}: {job['message']!r}"
                )
            try:
                note = await self.next_notification("jobChanged", left)
            except TimeoutError:
                continue
            if note["job"]["id"] == job_id:
                job = note["job"]
        return job
