"""Fixtures for the legacy GUI tests: a daemon with the fake LS-DYNA and fake LSTC tools, and
two real Socket.IO clients that behave like the DynaLauncher desktop GUI (protocol §9.1):

* `PyGui` — python-socketio's client (`socketio.Client().connect(url, transports=[
  "websocket"])`), run in its own threads; JSON-RPC done the GUI's way (ids from 1, params
  by name, one JSON string per `message` event), requests made before `connect()` buffered
  and flushed right after CONNECT like socket.io-client's send buffer;
* `NodeGui` — Node's socket.io-client 4.x + json-rpc-2.0 (tests/legacy/node/gui_client.mjs),
  driven over stdin/stdout JSON lines.

Both record everything they see as `events` (dicts with a `kind`) and share the waiting
helpers of `GuiBase`; every wait has a deadline and wakes on the event itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from serv.daemon import Daemon
from tests.conftest import DEADLINE, Env, kill_tagged
from tests.fakes import install_fake_lstc

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
DATA = HERE / "data"
QRUN_R = DATA / "lstc_qrun-r-600.txt"  # /work/shared/samples/lstc, recorded output
QRUN = DATA / "lstc_qrun-programs.txt"
GUI_TEMPLATE_MPP = "mpiexec -np $NCPU $SOLVER i=$INPUT memory=$MEMORY"
GUI_TEMPLATE_SMP = "$SOLVER i=$INPUT ncpu=$NCPU memory=$MEMORY"


class GuiError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message} ({data})")
        self.code = code
        self.message = message
        self.data = data


def gui_command(expr: str, *, ncpu: Any, solver: str, input: str, memory: str) -> str:
    """The GUI's preview: the FIRST occurrence of each placeholder replaced (String.replace)."""
    return (expr.replace("$NCPU", str(ncpu), 1).replace("$INPUT", input, 1)
            .replace("$SOLVER", solver, 1).replace("$MEMORY", memory, 1))


def job_data(input: Path | str, solver: Path | str, *, ncpu: Any = "2", expr: str = GUI_TEMPLATE_MPP,
             memory: str = "20m") -> dict[str, Any]:
    """A job_data exactly as the GUI sends it: 6 keys in its order, no sender (§5.1)."""
    return {
        "input": str(input), "solver": str(solver), "ncpu": ncpu,
        "command": gui_command(expr, ncpu=ncpu, solver=str(solver), input=str(input), memory=memory),
        "expr": expr, "memory": memory,
    }


class GuiBase:
    """What both clients share: the event log and deadline-bound waits on it."""

    name = "gui"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()

    async def _record(self, event: dict[str, Any]) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
        async def wait() -> Any:
            async with self._changed:
                while True:
                    value = predicate()
                    if value:
                        return value
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            tail = json.dumps(self.events[-15:], indent=None)[:4000]
            pytest.fail(f"{self.name}: timed out after {timeout:.0f} s waiting for {what}; last events: {tail}")

    # --- views of the log

    def messages(self) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["kind"] == "message"]

    def notifications(self, method: str | None = None, job_id: int | None = None) -> list[dict[str, Any]]:
        out = []
        for data in self.messages():
            if not isinstance(data, dict) or "method" not in data:
                continue
            if method is not None and data["method"] != method:
                continue
            if job_id is not None and _job_of(data) != job_id:
                continue
            out.append(data)
        return out

    def job_notifications(self, job_id: int) -> list[dict[str, Any]]:
        return [n for n in self.notifications() if _job_of(n) == job_id]

    def responses(self) -> list[dict[str, Any]]:
        return [d for d in self.messages() if isinstance(d, dict) and "method" not in d]

    def statuses(self, job_id: int) -> list[str]:
        return [n["params"]["payload"]["status"] for n in self.notifications("update_data", job_id)
                if "status" in n["params"]["payload"]]

    def stdout(self, job_id: int) -> str:
        return "".join(n["params"]["payload"] for n in self.notifications("appendToShell", job_id))

    def queue_broadcasts(self) -> list[list[dict[str, Any]]]:
        return [n["params"]["jobs"] for n in self.notifications("setQueue")]

    # --- JSON-RPC the GUI's way

    def request(self, method: str, params: dict[str, Any] | None = None) -> str:
        raise NotImplementedError

    async def result(self, tag: str, timeout: float = DEADLINE) -> Any:
        event = await self.wait_for(
            lambda: next((e for e in self.events if e.get("tag") == tag and e["kind"] in ("result", "error")), None),
            f"the answer to request {tag}", timeout,
        )
        if event["kind"] == "error":
            raise GuiError(event["code"], event["message"], event.get("data"))
        return event["result"]

    async def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = DEADLINE) -> Any:
        return await self.result(self.request(method, params), timeout)

    async def connect(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


def _job_of(note: dict[str, Any]) -> int | None:
    params = note.get("params") or {}
    if note.get("method") == "addJob":
        return params.get("job", {}).get("id")
    value = params.get("id")
    return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else None


class NodeGui(GuiBase):
    """socket.io-client 4.x + json-rpc-2.0 in a Node process (tests/legacy/node)."""

    name = "node"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tags = itertools.count(1)
        self.stderr = b""

    async def start(self) -> NodeGui:
        node = shutil.which("node")
        if node is None or not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
            pytest.fail("Node's socket.io-client is missing: run scripts/test "
                        "(npm ci --prefix tests/legacy/node)")
        self.proc = await asyncio.create_subprocess_exec(
            node, str(NODE_DIR / "gui_client.mjs"), self.url,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(lambda: any(e["kind"] == "ready" for e in self.events), "node client ready")
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"kind": "garbage", "line": line.decode(errors="replace")}
            await self._record(event)
        await self._record({"kind": "exited"})

    def _send(self, command: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())

    def request(self, method: str, params: dict[str, Any] | None = None) -> str:
        tag = f"n{next(self._tags)}"
        command: dict[str, Any] = {"op": "call", "tag": tag, "method": method}
        if params is not None:
            command["params"] = params
        self._send(command)
        return tag

    async def connect(self) -> None:
        self._send({"op": "connect"})
        await self.wait_for(lambda: any(e["kind"] in ("connect", "connect_error") for e in self.events),
                            "connect")
        error = next((e for e in self.events if e["kind"] == "connect_error"), None)
        if error is not None:
            pytest.fail(f"node client could not connect: {error}")

    async def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            try:
                self._send({"op": "close"})
                await asyncio.wait_for(self.proc.wait(), 5)
            except (TimeoutError, ConnectionError, BrokenPipeError):
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.proc.stderr is not None:
            self.stderr = await self.proc.stderr.read()


class PyGui(GuiBase):
    """python-socketio's client, GUI-style JSON-RPC on top; its threads report to the loop."""

    name = "python"

    def __init__(self, url: str) -> None:
        super().__init__()
        import socketio

        self.url = url
        self.loop = asyncio.get_running_loop()
        self.sio = socketio.Client(reconnection=False)
        self._ids = itertools.count(1)
        self._buffer: list[str] = []
        self._tags: dict[Any, str] = {}
        self._lock = threading.Lock()
        self._connected = False
        self.sio.on("message", self._on_message)
        self.sio.on("connect", lambda: self._post({"kind": "connect"}))
        self.sio.on("disconnect", lambda *a: self._post({"kind": "disconnect"}))

    def _post(self, event: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self._record(event)))

    def _on_message(self, text: Any) -> None:
        if not isinstance(text, str):
            self._post({"kind": "unparsable", "text": repr(text)})
            return
        try:
            data = json.loads(text)
        except ValueError:
            self._post({"kind": "unparsable", "text": text})
            return
        self._post({"kind": "message", "data": data})
        if isinstance(data, dict) and "method" not in data and "id" in data:
            tag = self._tags.get(data["id"])
            if tag is not None:
                if "error" in data:
                    error = data["error"]
                    self._post({"kind": "error", "tag": tag, "code": error.get("code"),
                                "message": error.get("message"), "data": error.get("data")})
                else:
                    self._post({"kind": "result", "tag": tag, "result": data.get("result")})

    def request(self, method: str, params: dict[str, Any] | None = None) -> str:
        request_id = next(self._ids)
        tag = f"p{request_id}"
        self._tags[request_id] = tag
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            body["params"] = params
        text = json.dumps(body)
        self.events.append({"kind": "sent", "request": body})
        with self._lock:
            if not self._connected:
                self._buffer.append(text)
                return tag
        self.sio.send(text)
        return tag

    async def connect(self) -> None:
        def run() -> None:
            self.sio.connect(self.url, transports=["websocket"], wait_timeout=DEADLINE)
            with self._lock:
                self._connected = True
                for text in self._buffer:  # socket.io-client flushes its send buffer after CONNECT
                    self.sio.send(text)
                self._buffer.clear()

        await asyncio.to_thread(run)

    async def close(self) -> None:
        await asyncio.to_thread(self.sio.disconnect)


def http_url(daemon: Daemon) -> str:
    return daemon.url.replace("ws://", "http://").rstrip("/")


async def open_gui(kind: str, daemon: Daemon) -> GuiBase:
    if kind == "node":
        return await NodeGui(http_url(daemon)).start()
    return PyGui(http_url(daemon))


def lstc_config(bin_dir: Path) -> str:
    qrun, qkill = install_fake_lstc(bin_dir, qrun_r=QRUN_R, qrun=QRUN)
    return f'\n[lstc]\nqrun = "{qrun}"\nqkill = "{qkill}"\ntimeout_s = 10.0\npoll_interval_s = 3600.0\n'


@pytest.fixture
def legacy_env(env: Env) -> Env:
    """Two usable cores (so a 2-core job makes the queue wait) and the fake LSTC tools."""
    tools = env.tmp / "lstc-bin"
    env.extra_config += "\n[cores]\nmax_usable = 2\n" + lstc_config(tools)
    return env


@pytest.fixture
async def legacy_daemon(legacy_env: Env) -> AsyncIterator[Daemon]:
    async with Daemon(legacy_env.config()) as running:
        try:
            yield running
        finally:
            assert running.store is not None
            kill_tagged(running.store.daemon_id)


__all__ = ["GuiBase", "GuiError", "NodeGui", "PyGui", "gui_command", "job_data", "open_gui"]
