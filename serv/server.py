"""The one port: HTTP routes, auth and origin checks, the JSON-RPC WebSocket, fan-out.

Routing happens in `process_request`, before the WebSocket handshake (websockets answers
a plain HTTP request there): `GET /health` and `GET /` are answered as HTTP; `/` with an
Upgrade header becomes the JSON-RPC socket; `/socket.io/` is the legacy GUI's (serv.legacy).
Every outgoing message of a connection goes through one queue and one sender task, so
responses and notifications never interleave mid-frame and a slow client only slows itself.
A connection's requests are handled one after another, except consecutive `launch`
requests, which overlap (a script pipelining its load cases) and still create their jobs
in arrival order.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import logging
from http import HTTPStatus
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from serv import jsonwire
from serv.api import job_to_wire
from serv.coalesce import CoalescingConnection
from serv.config import ServerConfig
from serv.core.jobs import Job
from serv.job_manager import utcnow
from serv.websocket_api import Api, Session, dispatch, single_request

log = logging.getLogger(__name__)

# A client that does not read its notifications must not grow the daemon's memory forever.
MAX_QUEUED_MESSAGES = 10_000
MAX_FRAME_BYTES = 16 * 1024 * 1024
REQUEST_KEYS = frozenset({"jsonrpc", "method", "params", "id"})
# Pipelined launches of one client handled at once; more wait (and the socket with them).
MAX_OVERLAPPING_LAUNCHES = 64

DASHBOARD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dynalauncher</title></head>
<body><h1>dynalauncher</h1>
<p>JSON-RPC 2.0 over WebSocket on this port; health at <a href="/health">/health</a>.</p>
</body></html>
"""


def validate_request(request: Any) -> Any:
    """A fast structural check of a JSON-RPC request or batch (raises on an invalid one).

    jsonrpcserver's default validator runs a JSON schema and costs ~70 % of a call
    (lab-findings §9); this checks the same rules directly and keeps -32600 answers.
    """
    items = request if isinstance(request, list) else [request]
    if not items:
        raise ValueError("empty batch")
    for item in items:
        if not isinstance(item, dict) or item.get("jsonrpc") != "2.0":
            raise ValueError("not a JSON-RPC 2.0 object")
        if not isinstance(item.get("method"), str) or not set(item) <= REQUEST_KEYS:
            raise ValueError("bad method or extra keys")
        if "params" in item and not isinstance(item["params"], (list, dict)):
            raise ValueError("params must be an array or an object")
        if "id" in item and not (item["id"] is None or isinstance(item["id"], (str, int)) and not isinstance(item["id"], bool)):
            raise ValueError("bad id")
    return request


def is_launch(message: str) -> bool:
    """Whether `message` is one JSON-RPC request (not a batch) for `launch`."""
    return single_request(message, "launch") is not None


def notification_text(method: str, params: dict[str, Any]) -> str:
    """The JSON text of a notification (serv.jsonwire: orjson, json.dumps for what it
    refuses). A job that prints changes every second, so 200 running jobs mean 200
    `jobChanged` a second for each subscribed client (bench/output_load.py: 2.30-2.40 % of
    a core with json.dumps, 1.97-2.07 % with orjson)."""
    return jsonwire.dumps({"jsonrpc": "2.0", "method": method, "params": params})


class Hub:
    """Fan-out of notifications to the sessions that subscribed to their topic."""

    def __init__(self) -> None:
        self.sessions: set[Session] = set()

    def listens(self, topic: str) -> bool:
        """Whether any session subscribed to `topic`: a caller skips building what nobody
        would receive (a core table or a job's wire form, on every start and end)."""
        return any(topic in session.topics for session in self.sessions)

    def publish(self, topic: str, method: str, params: dict[str, Any]) -> None:
        targets = [s for s in self.sessions if topic in s.topics]
        if not targets:
            return
        text = notification_text(method, params)
        for session in targets:
            session.send(text)

    def job_changed(self, job: Job) -> None:
        self.publish("jobs", "jobChanged", {"job": job_to_wire(job, utcnow())})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    """The websockets server on one port; `start()` binds, `close()` stops accepting first."""

    def __init__(
        self,
        config: ServerConfig,
        api: Api,
        hub: Hub,
        health: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        self.config = config
        self.api = api
        self.hub = hub
        self.health = health
        self._server: WsServer | None = None
        self.port: int | None = None
        # The legacy GUI's Socket.IO endpoint (issue #6), set by the daemon when enabled.
        self.legacy_handler: Callable[[ServerConnection], Awaitable[None]] | None = None

    @property
    def url(self) -> str:
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        return f"ws://{shown}:{self.port}/"

    def allowed_origins(self) -> set[str]:
        if self.config.allowed_origins:
            return set(self.config.allowed_origins)
        own = {self.config.host, "localhost", "127.0.0.1"} if is_loopback(self.config.host) else {self.config.host}
        return {f"http://{h}:{self.port}" for h in own}

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            max_size=MAX_FRAME_BYTES,
            # No permessage-deflate: on loopback and LAN links compressing every
            # notification and job list cost more CPU than the bytes it saved (a tenth of
            # the daemon's time per job in bench/throughput.py was deflate and its buffers).
            compression=None,
            create_connection=CoalescingConnection,
            ping_interval=20,
            ping_timeout=20,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        """Stop accepting, close connections, wait for handlers; idempotent."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # ------------------------------------------------------------------- HTTP side

    def _authorised(self, request: Request) -> bool:
        token = self.config.token
        if not token:
            return True
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
            return True
        query = parse_qs(urlsplit(request.path).query)
        return any(hmac.compare_digest(t, token) for t in query.get("token", []))

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if not self._authorised(request):
            log.warning("refused %s from %s: missing or wrong token", path, connection.remote_address)
            return connection.respond(HTTPStatus.UNAUTHORIZED, "401 Unauthorized: a token is required\n")
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if path.startswith("/socket.io/") and self.legacy_handler is not None:
            # The desktop GUI is an Electron app loaded from file:// and cannot send a token
            # header (protocol §1.5, §9 item 1): any Origin is accepted on this path only.
            if not upgrade:
                return connection.respond(HTTPStatus.BAD_REQUEST, "400: only the websocket transport is served\n")
            return None
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self.allowed_origins():
            log.warning("refused %s from origin %s", path, origin)
            return connection.respond(HTTPStatus.FORBIDDEN, f"403 Forbidden: origin {origin} is not allowed\n")
        if path == "/health":
            return _json_response(HTTPStatus.OK, await self.health())
        if path == "/" and not upgrade:
            return _html_response(DASHBOARD)
        if path == "/" and upgrade:
            return None
        return connection.respond(HTTPStatus.NOT_FOUND, f"404 Not Found: {path}\n")

    # ------------------------------------------------------------------- JSON-RPC side

    async def _handle(self, ws: ServerConnection) -> None:
        path = urlsplit(ws.request.path).path if ws.request is not None else "/"
        if path.startswith("/socket.io/") and self.legacy_handler is not None:
            await self.legacy_handler(ws)
            return
        outbox: asyncio.Queue[str | None] = asyncio.Queue()

        def send(text: str) -> None:
            if outbox.qsize() >= MAX_QUEUED_MESSAGES:
                log.warning("client %s is not reading; closing it", ws.remote_address)
                outbox.put_nowait(None)
                return
            outbox.put_nowait(text)

        remote = ws.remote_address
        host = remote[0] if isinstance(remote, tuple) and remote else None
        session = Session(api=self.api, send=send, peer=str(remote), peer_host=host)
        self.hub.sessions.add(session)
        sender = asyncio.create_task(self._sender(ws, outbox), name=f"sender {session.peer}")
        log.info("client %s connected", session.peer)
        launches: set[asyncio.Task[None]] = set()
        # A semaphore, not asyncio.wait(launches) per launch: that added and removed a
        # callback on every overlapping launch each time, 64 of them per request.
        room = asyncio.Semaphore(MAX_OVERLAPPING_LAUNCHES)
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    try:
                        message = message.decode("utf-8")
                    except UnicodeDecodeError:
                        send(_error(-32700, "Parse error", "binary frame is not UTF-8 JSON"))
                        continue
                if is_launch(message):
                    # A script's pipelined launches overlap (each waits for the disk and
                    # the store); JobManager still creates them in arrival order.
                    await room.acquire()
                    task = asyncio.create_task(self._answer(message, session, send), name="launch")
                    launches.add(task)
                    task.add_done_callback(functools.partial(_launch_done, launches, room, session.peer))
                    continue
                # Anything else sees every earlier request of this client done, as if the
                # requests had been handled one after another.
                if launches:
                    await asyncio.wait(launches)
                await self._answer(message, session, send)
        except ConnectionClosed:
            pass  # the client went away; the finally block cleans up
        finally:
            if launches:
                # The jobs are created even though nobody reads the answers any more.
                await asyncio.wait(launches)
            self.hub.sessions.discard(session)
            outbox.put_nowait(None)
            await sender
            log.info("client %s disconnected", session.peer)

    @staticmethod
    async def _answer(message: str, session: Session, send: Callable[[str], None]) -> None:
        response = await dispatch(message, session, validate_request)
        if response:
            send(response)

    async def _sender(self, ws: ServerConnection, outbox: asyncio.Queue[str | None]) -> None:
        while True:
            # Everything already queued is sent in this one step, so its frames leave in
            # one write (serv.coalesce) instead of one per loop turn.
            batch = [await outbox.get()]
            while not outbox.empty():
                batch.append(outbox.get_nowait())
            for text in batch:
                if text is None:
                    await ws.close()
                    return
                try:
                    await ws.send(text)
                except ConnectionClosed:
                    return


def _launch_done(
    launches: set[asyncio.Task[None]], room: asyncio.Semaphore, peer: str, task: asyncio.Task[None]
) -> None:
    launches.discard(task)
    room.release()
    if not task.cancelled() and task.exception() is not None:
        log.error("a launch request of client %s failed", peer, exc_info=task.exception())


def _error(code: int, message: str, data: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": data}, "id": None})


def _json_response(status: HTTPStatus, body: dict[str, Any]) -> Response:
    data = json.dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Connection", "close")])
    return Response(status.value, status.phrase, headers, data)


def _html_response(html: str) -> Response:
    data = html.encode()
    headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data))), ("Connection", "close")])
    return Response(HTTPStatus.OK.value, "OK", headers, data)
