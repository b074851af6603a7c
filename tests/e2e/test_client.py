"""serv.client against a real daemon: pipelined calls leave in few writes and each gets its
own answer."""

from __future__ import annotations

import asyncio

from serv.client import Client
from serv.coalesce import CoalescingTransport
from serv.daemon import Daemon


async def test_pipelined_calls_leave_in_one_write_per_loop_turn_and_get_their_answers(daemon: Daemon) -> None:
    async with Client(daemon.url) as client:
        assert client._ws is not None
        coalescing = client._ws.transport
        assert isinstance(coalescing, CoalescingTransport)
        real = coalescing._transport
        writes: list[int] = []
        real_write = real.write

        def counted(data: bytes) -> None:
            writes.append(len(data))
            real_write(data)

        real.write = counted  # type: ignore[method-assign,assignment]
        answers = await asyncio.gather(*(client.request("getSystemHealth") for _ in range(20)))
        assert all(a["result"]["status"] for a in answers)
        assert len({a["id"] for a in answers}) == 20  # each request got its own answer
        assert len(writes) <= 3  # one per loop turn, not one per request
