"""serv.coalesce: frames written in one loop turn leave in one transport write, in order."""

from __future__ import annotations

import asyncio
from typing import Any

from serv.coalesce import CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """An asyncio transport that records what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.events.append("close")
        self.closing = True

    def abort(self) -> None:
        self.events.append("abort")
        self.closing = True

    def write_eof(self) -> None:
        self.events.append("eof")

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 4242)}.get(name, default)


async def test_writes_of_one_loop_turn_leave_in_one_write_in_order() -> None:
    real = RecordingTransport()
    wrapped = CoalescingTransport(real, asyncio.get_running_loop())
    wrapped.write(b"a")
    wrapped.writelines([b"b", memoryview(b"c")])
    wrapped.write(b"")
    assert real.writes == [] and wrapped.get_write_buffer_size() == 7 + 3
    await asyncio.sleep(0)  # one loop turn
    assert real.writes == [b"abc"]
    wrapped.write(b"d")
    await asyncio.sleep(0)
    assert real.writes == [b"abc", b"d"]


async def test_close_and_eof_send_what_is_pending_first_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    real = RecordingTransport()
    wrapped = CoalescingTransport(real, loop)
    wrapped.write(b"last words")
    wrapped.write_eof()
    wrapped.write(b"after eof")
    wrapped.close()
    assert real.writes == [b"last words", b"after eof"] and real.events == ["eof", "close"]
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert real.writes == [b"last words", b"after eof"]

    dropped = RecordingTransport()
    wrapped = CoalescingTransport(dropped, loop)
    wrapped.write(b"never")
    wrapped.abort()
    await asyncio.sleep(0)
    assert dropped.writes == [] and dropped.events == ["abort"]


async def test_nothing_is_written_to_a_closing_transport_and_other_calls_pass_through() -> None:
    real = RecordingTransport()
    wrapped = CoalescingTransport(real, asyncio.get_running_loop())
    wrapped.write(b"late")
    real.closing = True  # the peer went away meanwhile
    await asyncio.sleep(0)
    assert real.writes == []
    assert wrapped.get_extra_info("peername") == ("127.0.0.1", 4242)
    assert wrapped.is_closing() is True
