"""Engine.IO v4 / Socket.IO v5 on /socket.io/ as raw frames, and with both real clients:
handshake, events, acks, heartbeat both ways, legacy JSON-RPC error answers, malformed
input that must never hurt the daemon (protocol §1.4, §2, §9 items 1–4)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from serv.client import Client
from serv.daemon import Daemon
from tests.conftest import DEADLINE, wait_until
from tests.legacy.conftest import NodeGui, PyGui, http_url

pytestmark = pytest.mark.timeout(120)


def sio_url(daemon: Daemon, query: str = "EIO=4&transport=websocket") -> str:
    return daemon.url.rstrip("/") + "/socket.io/?" + query


async def recv(ws: ClientConnection, timeout: float = DEADLINE) -> str:
    frame = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(frame, str)
    return frame


async def recv_skip_pings(ws: ClientConnection) -> str:
    while True:
        frame = await recv(ws)
        if frame != "2":
            return frame
        await ws.send("3")


async def handshake(daemon: Daemon, origin: str | None = "file://") -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(sio_url(daemon), origin=origin)  # type: ignore[arg-type]
    opened = await recv(ws)
    assert opened[0] == "0"
    await ws.send("40")
    joined = await recv(ws)
    assert joined.startswith("40{")
    assert set(json.loads(joined[2:])) == {"sid"}
    return ws, json.loads(opened[1:])


def message(request: dict[str, Any] | str, ack: int | None = None) -> str:
    text = request if isinstance(request, str) else json.dumps(request)
    return "42" + ("" if ack is None else str(ack)) + json.dumps(["message", text])


def answer(frame: str) -> Any:
    assert frame.startswith('42["message",'), frame
    event = json.loads(frame[2:])
    assert event[0] == "message" and isinstance(event[1], str) and len(event) == 2
    return json.loads(event[1])


async def test_handshake_events_and_acks(daemon: Daemon) -> None:
    ws, opened = await handshake(daemon)
    try:
        assert opened["upgrades"] == [] and isinstance(opened["sid"], str)
        assert opened["pingInterval"] == 25000 and opened["pingTimeout"] == 20000
        assert opened["maxPayload"] == 1_000_000
        # exactly the legacy text: json.dumps spacing, id echoed with its type
        await ws.send(message({"jsonrpc": "2.0", "id": 7, "method": "fileExists",
                               "params": {"input": "/no/such/main.k"}}))
        frame = await recv_skip_pings(ws)
        assert frame == '42["message","{\\"jsonrpc\\": \\"2.0\\", \\"result\\": false, \\"id\\": 7}"]'
        await ws.send(message({"jsonrpc": "2.0", "id": "seven", "method": "getQueue"}))
        assert answer(await recv_skip_pings(ws)) == {"jsonrpc": "2.0", "result": [], "id": "seven"}
        # a request with a Socket.IO ack id (node's ids start at 0): answer, then an empty ack
        await ws.send(message({"jsonrpc": "2.0", "id": 8, "method": "getQueue"}, ack=0))
        assert answer(await recv_skip_pings(ws))["id"] == 8
        assert await recv_skip_pings(ws) == "430[]"
        await ws.send('421["start_cpu_monitoring"]')
        assert await recv_skip_pings(ws) == "431[]"
        # another namespace is refused; "/" keeps working
        await ws.send("40/admin,")
        assert await recv_skip_pings(ws) == '44/admin,{"message":"Invalid namespace"}'
        # a client probe ping is answered
        await ws.send("2probe")
        assert await recv_skip_pings(ws) == "3probe"
    finally:
        await ws.close()


async def test_legacy_error_answers(daemon: Daemon) -> None:
    ws, _ = await handshake(daemon)
    assert daemon.legacy is not None

    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    daemon.legacy.dispatch.methods["getQueue"] = boom
    cases: list[tuple[str, int, Any]] = [
        ('42["message",{"jsonrpc":"2.0","id":1,"method":"getQueue"}]', -32700, None),
        (message("not json"), -32700, None),
        (message({"jsonrpc": "2.0", "id": 2, "method": "getQueue", "sender": "x"}), -32600, None),
        (message({"jsonrpc": "2.0", "id": 3, "method": "nope"}), -32601, 3),
        (message({"jsonrpc": "2.0", "id": 4, "method": "fileExists"}), -32602, 4),
        (message({"jsonrpc": "2.0", "id": 5, "method": "fileExists", "params": {"path": "/x"}}), -32602, 5),
        (message({"jsonrpc": "2.0", "id": 6, "method": "getQueue"}), -32603, 6),
        (message({"jsonrpc": "2.0", "id": 9, "method": "removeFromQueue", "params": {"position": "x"}}), -32602, 9),
        (message({"jsonrpc": "2.0", "id": 10, "method": "sendD3kill", "params": {"id": 424242, "payload": "sw1"}}), 20, 10),
        (message({"jsonrpc": "2.0", "id": 11, "method": "switchPositionQueue", "params": {"initial": 0, "new": 0}}), 10, 11),
    ]
    try:
        for frame, code, request_id in cases:
            await ws.send(frame)
            reply = answer(await recv_skip_pings(ws))
            assert reply["error"]["code"] == code, (frame, reply)
            assert reply["id"] == request_id
            assert "Traceback" not in json.dumps(reply) and "secret" not in json.dumps(reply)
        await ws.send(message({"jsonrpc": "2.0", "id": 12, "method": "nope"}))
        assert answer(await recv_skip_pings(ws))["error"]["data"] == "nope"
        await ws.send(message({"jsonrpc": "2.0", "id": 13, "method": "fileExists"}))
        assert answer(await recv_skip_pings(ws))["error"]["data"] == "missing a required argument: 'input'"
        # a notification from the client (no id) gets no answer; the next request does
        await ws.send(message({"jsonrpc": "2.0", "method": "getLicCount"}))
        await ws.send(message({"jsonrpc": "2.0", "id": 14, "method": "isInQueue", "params": {"input": "x"}}))
        assert answer(await recv_skip_pings(ws)) == {"jsonrpc": "2.0", "result": False, "id": 14}
    finally:
        await ws.close()


async def test_malformed_frames_never_hurt_the_daemon(daemon: Daemon) -> None:
    ws, _ = await handshake(daemon)
    garbage: list[str | bytes] = [
        "", "9", "4", "42[", "42[1,2]", "42{}", "4x", '42["message"]', '42["message",1,2]',
        "45-[\"message\",{\"_placeholder\":true,\"num\":0}]", b"\x00\xff binary", "6", "5",
        '42/nowhere,["message","{}"]', "0", "3", "41/admin,", "4" + "9" * 200, "\x00",
    ]
    try:
        for frame in garbage:
            await ws.send(frame)
        await ws.send(message({"jsonrpc": "2.0", "id": 99, "method": "getQueue"}))
        replies = []
        while not replies or replies[-1].get("id") != 99:
            frame = await recv_skip_pings(ws)
            if frame.startswith('42["message"'):
                replies.append(answer(frame))
        assert replies[-1] == {"jsonrpc": "2.0", "result": [], "id": 99}
        # '42["message",1,2]' carried a number, not a JSON string: a parse error, id null
        assert any(r.get("error", {}).get("code") == -32700 for r in replies[:-1])
    finally:
        await ws.close()
    async with Client(daemon.url) as api:  # the daemon's own API is unaffected
        assert (await api.call("getSystemHealth"))["db_ok"] is True
    refused = await connect(sio_url(daemon, "EIO=3&transport=websocket"))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(refused.recv(), DEADLINE)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    big_ws, _ = await handshake(daemon)
    assert daemon.legacy is not None
    try:
        await big_ws.send("4" + "x" * 1_000_001)
        with pytest.raises(ConnectionClosed):
            while True:
                await recv_skip_pings(big_ws)
    finally:
        await big_ws.close()


async def test_server_pings_and_drops_a_silent_client(daemon: Daemon) -> None:
    assert daemon.legacy is not None
    daemon.legacy.ping_interval_s = 0.2
    daemon.legacy.ping_timeout_s = 1.5
    ws, opened = await handshake(daemon)
    assert opened["pingInterval"] == 200 and opened["pingTimeout"] == 1500
    pings = 0
    try:
        while pings < 3:
            frame = await recv(ws)
            if frame == "2":
                pings += 1
                await ws.send("3")
        session = next(iter(daemon.legacy.sessions))
        await wait_until(lambda: session.pongs_received >= 3, "the server to count 3 pongs")
        # stop answering: the server closes the connection after pingTimeout
        with pytest.raises(ConnectionClosed):
            while True:
                await recv(ws, timeout=10)
    finally:
        await ws.close()
    await wait_until(lambda: not daemon.legacy.connections, "the silent client's session to end")


@pytest.mark.parametrize("kind", ["python", "node"])
async def test_real_clients_answer_pings(kind: str, daemon: Daemon) -> None:
    """socket.io-client and python-socketio stay connected across many short heartbeats."""
    assert daemon.legacy is not None
    daemon.legacy.ping_interval_s = 0.15
    daemon.legacy.ping_timeout_s = 3.0  # generous: a loaded CI machine must not drop the client
    gui = await NodeGui(http_url(daemon)).start() if kind == "node" else PyGui(http_url(daemon))
    try:
        await gui.connect()
        await wait_until(lambda: daemon.legacy.sessions, "the client to join")
        session = next(iter(daemon.legacy.sessions))
        await wait_until(lambda: session.pongs_received >= 5, "5 pongs")
        if kind == "node":
            # The client's own report of each ping reaches us over its stdout, which can trail
            # the pong the server already counted.
            await wait_until(lambda: len([e for e in gui.events if e["kind"] == "ping"]) >= 5, "5 pings seen by the client")
        assert not [e for e in gui.events if e["kind"] == "disconnect"]
        assert await gui.call("getQueue") == []
    finally:
        await gui.close()


async def test_answers_go_to_the_requester_and_notifications_to_all(daemon: Daemon, env: Any) -> None:
    one, _ = await handshake(daemon)
    two, _ = await handshake(daemon, origin=None)
    assert daemon.legacy is not None
    try:
        await one.send(message({"jsonrpc": "2.0", "id": 1, "method": "getQueue"}))
        assert answer(await recv_skip_pings(one))["id"] == 1
        daemon.legacy.broadcast("setQueue", {"jobs": []})
        for ws in (one, two):
            note = answer(await recv_skip_pings(ws))
            assert note == {"jsonrpc": "2.0", "method": "setQueue", "params": {"jobs": []}}
        await two.send(message({"jsonrpc": "2.0", "id": 5, "method": "getQueue"}))
        assert answer(await recv_skip_pings(two))["id"] == 5
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(recv_skip_pings(one), 0.3)
    finally:
        await one.close()
        await two.close()


async def test_the_job_list_frame_is_the_codecs_own(daemon: Daemon, env: Any) -> None:
    """getFullJobList, spliced from kept encoded records, is framed byte for byte as the
    Socket.IO codecs frame its text, the first time and when the records are reused."""
    from serv.legacy.transport import message_frame

    deck = env.deck('frame "é" \\ job', wall_s=0.3)  # escaped twice in the frame
    async with Client(daemon.url) as api:
        await api.subscribe("jobs")
        job = await api.call("launch", solver="fake-smp", input=str(deck), ncpu=1, memory="20m")
        await api.wait_for(job["id"], "finished")
    ws, _ = await handshake(daemon)
    try:
        frames = []
        for request_id in (1, "two"):
            await ws.send(message({"jsonrpc": "2.0", "id": request_id, "method": "getFullJobList"}))
            frames.append(await recv_skip_pings(ws))
        texts = [json.loads(frame[2:])[1] for frame in frames]
        assert [message_frame(text) for text in texts] == frames
        first, second = (json.loads(text) for text in texts)
        assert first["id"] == 1 and second["id"] == "two"
        assert first["result"] == second["result"] and first["result"][0]["id"] == job["id"]
        assert first["result"][0]["status"] == "Finished" and first["result"][0]["input"] == str(deck)
        assert texts[0].replace('"id": 1}', "") == texts[1].replace('"id": "two"}', "")
    finally:
        await ws.close()
