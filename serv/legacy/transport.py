"""Engine.IO v4 + Socket.IO v5 over one WebSocket, for the legacy desktop GUI (issue #6).

The GUI (protocol §1) connects with socket.io-client 4.x, WebSocket transport only, straight
to `/socket.io/?EIO=4&transport=websocket` (no polling handshake, no auth, any Origin). This
module speaks that protocol on a websockets `ServerConnection` that `serv.server.Server`
hands over, using python-engineio's and python-socketio's packet classes as pure codecs (no
python-socketio server, no hand-written framing):

    S→C  0{"sid":…,"upgrades":[],"pingInterval":…,"pingTimeout":…,"maxPayload":…}   OPEN
    C→S  40[{auth}]                      CONNECT to namespace "/"
    S→C  40{"sid":…}                     (another namespace: 44/ns,{"message":…})
    C→S  42["message","<json-rpc>"]      one event; with an ack id, answered 43<id>[] too
    S→C  42["message","<json-rpc>"]      responses (this socket) and notifications (all)
    S→C  2   C→S 3                       every ping_interval_s; no PONG in ping_timeout_s → closed

A JSON-RPC answer is the one frame that is spliced: the answer's text, already escaped
(`JsonText`), goes between what the codecs write around a string argument, so a large answer
made of kept records is not encoded again (`message_frame_json`).

Malformed frames are logged and ignored; binary frames (attachments) are ignored; a frame
over `max_payload` closes the connection, as python-engineio does. Nothing here raises into
the server: a broken client only ever loses its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from engineio import packet as eio
from socketio import packet as sio
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from serv.legacy.jsontext import JsonText

log = logging.getLogger(__name__)

EIO_VERSION = "4"
DEFAULT_PING_INTERVAL_S = 25.0
DEFAULT_PING_TIMEOUT_S = 20.0
DEFAULT_MAX_PAYLOAD = 1_000_000  # python-engineio's max_http_buffer_size
#: A client that does not read its messages is closed rather than grow the daemon's memory.
MAX_OUTBOX = 10_000
#: Requests waiting for this client's worker; more means a flood, and the client is closed.
MAX_PENDING_REQUESTS = 1_000

Dispatch = Callable[[Any], Awaitable[JsonText | None]]


def message_frame(text: str) -> str:
    """The text frame `42["message", text]`: one JSON string as the event's only argument."""
    event = sio.Packet(sio.EVENT, data=["message", text]).encode()
    return str(eio.Packet(eio.MESSAGE, data=event).encode())


def _frame_around_string() -> tuple[str, str]:
    """What the codecs write before and after the string argument of a `message` frame."""
    mark = "\x00dynalauncher:text\x00"
    head, sep, tail = message_frame(mark).partition(json.dumps(mark)[1:-1])
    if not sep or tail.find(sep) >= 0:
        raise RuntimeError("the Socket.IO codec no longer writes a string argument as json.dumps does")
    return head, tail


_FRAME_HEAD, _FRAME_TAIL = _frame_around_string()


def message_frame_json(value: JsonText) -> str:
    """`message_frame(value.text)`, spliced: the codecs' own frame around the string, whose
    body is `value.escaped` (what `json.dumps` makes of the text, kept by `value`), so a large
    answer made of kept parts is not encoded again (protocol §2)."""
    return _FRAME_HEAD + value.escaped + _FRAME_TAIL


def _sio_frame(packet: sio.Packet) -> str:
    return str(eio.Packet(eio.MESSAGE, data=packet.encode()).encode())


class LegacySession:
    """One GUI connection: handshake, heartbeat, inbound events, one ordered outbox.

    Requests are handled one after another by a worker task (as the legacy server did in
    practice, protocol §1.7), so a GUI that sends `cleanFolder` and `addToQueue` back to back
    sees them applied in that order; the receive loop itself never waits for a request.
    """

    def __init__(
        self,
        ws: ServerConnection,
        *,
        dispatch: Dispatch,
        on_connect: Callable[[LegacySession], None],
        on_close: Callable[[LegacySession], None],
        ping_interval_s: float = DEFAULT_PING_INTERVAL_S,
        ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.ws = ws
        self.peer = str(ws.remote_address)
        self.eio_sid = secrets.token_urlsafe(15)
        self.sio_sid = secrets.token_urlsafe(15)
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.max_payload = max_payload
        self.connected = False  # Socket.IO namespace "/" joined
        self.closed = False
        self.pings_sent = 0
        self.pongs_received = 0
        self.ignored_frames = 0
        self._dispatch = dispatch
        self._on_connect = on_connect
        self._on_close = on_close
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._requests: asyncio.Queue[tuple[Any, int | None]] = asyncio.Queue()
        self._pong = asyncio.Event()

    # ----------------------------------------------------------------- sending

    def put(self, frame: str) -> None:
        """Queue one raw Engine.IO text frame for this client."""
        if self.closed:
            return
        if self._outbox.qsize() >= MAX_OUTBOX:
            log.warning("legacy client %s is not reading its messages; closing it", self.peer)
            self.close_soon()
            return
        self._outbox.put_nowait(frame)

    def send_text(self, text: str) -> None:
        """Send one JSON-RPC text on event `message` (only once the namespace is joined)."""
        if self.connected:
            self.put(message_frame(text))

    def send_json(self, value: JsonText) -> None:
        """`send_text(value.text)`, with the frame spliced around the kept escaped text."""
        if self.connected:
            self.put(message_frame_json(value))

    def send_frame(self, frame: str) -> None:
        """Send an already encoded `message` frame (broadcasts encode once for everyone)."""
        if self.connected:
            self.put(frame)

    def close_soon(self) -> None:
        if not self.closed:
            self.closed = True
            self._outbox.put_nowait(None)

    # ----------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        """Serve the connection until either side closes it."""
        request = self.ws.request
        query = parse_qs(urlsplit(request.path if request is not None else "").query)
        version = query.get("EIO", [""])[0]
        transport = query.get("transport", [""])[0]
        if version != EIO_VERSION or transport != "websocket" or "sid" in query:
            why = (
                f"unsupported Engine.IO version {version or 'none'} (only EIO=4)"
                if version != EIO_VERSION
                else "only a direct websocket transport is served (no polling, no upgrade)"
            )
            log.warning("legacy client %s refused: %s", self.peer, why)
            with contextlib.suppress(ConnectionClosed):
                await self.ws.close(1008, why[:120])
            return
        self.put(
            eio.Packet(
                eio.OPEN,
                {
                    "sid": self.eio_sid,
                    "upgrades": [],
                    "pingInterval": int(self.ping_interval_s * 1000),
                    "pingTimeout": int(self.ping_timeout_s * 1000),
                    "maxPayload": self.max_payload,
                },
            ).encode()
        )
        log.info("legacy client %s connected (Engine.IO sid %s)", self.peer, self.eio_sid)
        sender = asyncio.create_task(self._sender(), name=f"legacy sender {self.peer}")
        pinger = asyncio.create_task(self._pinger(), name=f"legacy pinger {self.peer}")
        worker = asyncio.create_task(self._worker(), name=f"legacy worker {self.peer}")
        try:
            async for frame in self.ws:
                if self.closed:
                    break
                self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            self.connected = False
            self._on_close(self)
            self.close_soon()
            for task in (pinger, worker):
                task.cancel()
            await asyncio.gather(pinger, worker, return_exceptions=True)
            try:
                await asyncio.wait_for(sender, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                sender.cancel()
            log.info(
                "legacy client %s disconnected (%d pings sent, %d pongs received)",
                self.peer, self.pings_sent, self.pongs_received,
            )

    async def _sender(self) -> None:
        while True:
            frame = await self._outbox.get()
            if frame is None:
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.close()
                return
            try:
                await self.ws.send(frame)
            except ConnectionClosed:
                return

    async def _pinger(self) -> None:
        """Engine.IO v4: the server pings; a client that does not answer is dropped."""
        while not self.closed:
            await asyncio.sleep(self.ping_interval_s)
            self._pong.clear()
            self.pings_sent += 1
            self.put(eio.Packet(eio.PING).encode())
            try:
                await asyncio.wait_for(self._pong.wait(), self.ping_timeout_s)
            except TimeoutError:
                log.info("legacy client %s did not answer a ping in %.1f s; closing it",
                         self.peer, self.ping_timeout_s)
                self.close_soon()
                return

    async def _worker(self) -> None:
        while True:
            payload, ack = await self._requests.get()
            try:
                response = await self._dispatch(payload)
            except Exception:  # the dispatcher answers errors itself; this is a last guard
                log.exception("legacy request failed")
                response = None
            if response is not None:
                self.send_json(response)
            if ack is not None:
                self.put(_sio_frame(sio.Packet(sio.ACK, data=[], id=ack)))

    # ----------------------------------------------------------------- receiving

    def _ignore(self, why: str, frame: object) -> None:
        self.ignored_frames += 1
        log.debug("legacy client %s: ignored %s: %.100r", self.peer, why, frame)

    def _on_frame(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self._ignore("binary frame (attachments are not used by the GUI)", frame)
            return
        if len(frame) > self.max_payload:
            log.warning("legacy client %s sent %d bytes (max %d); closing it",
                        self.peer, len(frame), self.max_payload)
            self.close_soon()
            return
        try:
            packet = eio.Packet(encoded_packet=frame)
        except Exception:  # any malformed frame: the codec raises ValueError, IndexError, ...
            self._ignore("malformed Engine.IO packet", frame)
            return
        kind = packet.packet_type
        if kind == eio.PONG:
            self.pongs_received += 1
            self._pong.set()
        elif kind == eio.PING:  # a client probe ("2probe"): answer it
            self.put(eio.Packet(eio.PONG, packet.data or None).encode())
        elif kind == eio.CLOSE:
            self.close_soon()
        elif kind == eio.MESSAGE and isinstance(packet.data, str):
            self._on_socketio(packet.data)
        else:
            self._ignore(f"Engine.IO packet type {kind}", frame)

    def _on_socketio(self, data: str) -> None:
        try:
            packet = sio.Packet(encoded_packet=data)
        except Exception:  # malformed Socket.IO packet: JSON or header errors
            self._ignore("malformed Socket.IO packet", data)
            return
        namespace = packet.namespace or "/"
        kind = packet.packet_type
        if kind == sio.CONNECT:
            if namespace != "/":
                self.put(_sio_frame(sio.Packet(
                    sio.CONNECT_ERROR, data={"message": "Invalid namespace"}, namespace=namespace)))
                return
            if not self.connected:
                self.connected = True
                self.put(_sio_frame(sio.Packet(sio.CONNECT, data={"sid": self.sio_sid})))
                self._on_connect(self)
            return
        if kind == sio.DISCONNECT:
            if namespace == "/":
                self.connected = False
                self._on_close(self)
                self.close_soon()
            return
        if kind != sio.EVENT or namespace != "/" or not self.connected:
            self._ignore(f"Socket.IO packet type {kind} on {namespace}", data)
            return
        args = packet.data
        if not isinstance(args, list) or not args or not isinstance(args[0], str):
            self._ignore("event without a name", data)
            return
        if args[0] != "message":
            # The GUI sends no other event (protocol §1.6 item 5); acknowledge and drop.
            if packet.id is not None:
                self.put(_sio_frame(sio.Packet(sio.ACK, data=[], id=packet.id)))
            return
        if self._requests.qsize() >= MAX_PENDING_REQUESTS:
            log.warning("legacy client %s has %d requests waiting; closing it",
                        self.peer, self._requests.qsize())
            self.close_soon()
            return
        self._requests.put_nowait((args[1] if len(args) > 1 else None, packet.id))
