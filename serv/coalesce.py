"""Outgoing bytes of a connection leave once per event-loop turn, not once per frame.

websockets writes every frame with a transport write of its own, and on an idle socket each
write is a send(2) at once. When jobs start and end by the hundred per second, a job's five
messages (its `launch` answer and four `jobChanged`) were five system calls on the loop
thread, each one handing the GIL to whichever worker thread wanted it, and the loop then
waited to get it back: the largest single cost of the loop in bench/throughput.py. Frames
written during one turn of the loop now go out in one write at the end of it.

The wrapper is installed through websockets' documented `create_connection` hook; it only
delays writes within the current loop turn, so ordering, flow control (the real transport
still counts every byte and pauses the protocol) and closing are unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection

__all__ = ["CoalescingTransport", "CoalescingConnection", "CoalescingClientConnection"]


class CoalescingTransport:
    """Wraps an asyncio transport: `write` collects, the end of the loop turn writes."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes | bytearray | memoryview] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Write what was collected, in one call (nothing once the transport is closing)."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(c) for c in self._pending)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # Everything else (pause_reading, get_extra_info, is_closing, ...) is the real one's.
        return getattr(self._transport, name)


def _wrap(transport: asyncio.BaseTransport) -> Any:
    assert isinstance(transport, asyncio.Transport)
    return CoalescingTransport(transport, asyncio.get_running_loop())


class CoalescingConnection(ServerConnection):
    """A websockets server connection whose frames leave through a CoalescingTransport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_wrap(transport))


class CoalescingClientConnection(ClientConnection):
    """The same for a client (serv.client): a script's burst of pipelined requests leaves
    in a few writes, and the daemon reads them in a few wake-ups, not one per request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_wrap(transport))
