"""The fork server (POSIX): one small helper process that starts every job's launcher and
reaps it, so that none of that work runs under the daemon's GIL.

Why a process: a spawn from the daemon's own threads cost it ~0.8 ms of CPU per job
(Popen's Python, the CPU-mask switch, the child's identity, the hand-offs between threads),
and the event loop waited for the GIL meanwhile. The helper does the same work on the other
core with a GIL of its own; the daemon writes one request, reads one reply and, later, one
exit message, all from its event loop without a thread.

Lifetimes. The helper is the daemon's child, in a session of its own (Ctrl+C in the daemon's
terminal must not reach it), and the parent of every launcher it starts, each in a session of
its own as before. When the daemon dies, the helper reads EOF and exits at once; the jobs run
on and are re-adopted at the next start, exactly as when the daemon was their parent. When
the helper dies (killed by hand, the OOM killer), the daemon watches the jobs it had started
by pidfd, exit code unknown (like re-adopted jobs), and starts a new helper for the next
spawn.

Wire: each message is a 4-byte big-endian length and a pickle (both ends are this module,
run by the same interpreter). Requests: ("env", environ) once, first: the daemon's
environment, which every job's is based on; ("spawn", seq, SpawnRequest), whose `env` holds
only what the job's environment adds to it (a few variables, so a request is small).
Messages from the helper: ("ready", pid), ("spawned", seq, pid, create_time),
("failed", seq, errno, strerror, filename), ("exited", pid, returncode) where returncode
follows Popen (-N: killed by signal N).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import pickle
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from serv.platform import posix
from serv.platform.spawn_request import SpawnRequest

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
READY_TIMEOUT_S = 30.0
# A spawn unanswered this long means a stuck helper (a chdir or open on a hung network file
# system under a job's folder): it is killed and replaced, so that one job's folder cannot
# hold up every other job's start.
SPAWN_TIMEOUT_S = 30.0
# Signals Python ignores at start-up; a solver must get them with their default action (the
# same set Popen's restore_signals resets).
_RESET_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None)) if s is not None
)

ExitCallback = Callable[[int | None], None]


def _frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def _unframe(buffer: bytearray) -> list[tuple[Any, ...]]:
    """Take every whole message off the front of `buffer`."""
    messages = []
    at = 0
    while len(buffer) - at >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer, at)
        if len(buffer) - at - _HEADER.size < size:
            break
        start = at + _HEADER.size
        messages.append(pickle.loads(buffer[start : start + size]))
        at = start + size
    del buffer[:at]
    return messages


# ----------------------------------------------------------------- the helper's side


def spawn_here(request: SpawnRequest, env: dict[str, str]) -> int:
    """Start what `request` asks from this (single-threaded) process, with the whole
    environment `env`. Raises OSError as Popen would (missing program, folder, …)."""
    cores, nice = request.cores, request.nice
    run = posix.pin_exec_argv(request.argv, cores, nice)
    program = run[0]
    if os.sep not in program:
        # Like Popen: the program is looked up on the job's PATH, not the helper's.
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        program = found
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(request.stdout_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    # posix_spawn has no working-directory action before Python 3.13; this process has one
    # thread, so changing its own directory for the moment of the spawn is safe.
    os.chdir(request.cwd)
    try:
        with posix.thread_mask(None if nice else cores):
            pid = os.posix_spawn(
                program, list(run), env, file_actions=actions, setsid=True, setsigdef=_RESET_SIGNALS
            )
    finally:
        os.chdir("/")
    if nice:
        posix.apply_priority([pid], nice)
    return pid


def _create_time(pid: int) -> float | None:
    import psutil  # the helper's only use of it; the daemon compares identities psutil made

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def _reap(send: Callable[[tuple[Any, ...]], None]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send(("exited", pid, os.waitstatus_to_exitcode(status)))


def serve(sock: socket.socket) -> None:
    """The helper's loop: spawn on request, report every exit, end at EOF."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    # A Python-level handler is what makes the interpreter write to the wakeup fd.
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)

    def send(message: tuple[Any, ...]) -> None:
        sock.sendall(_frame(message))

    send(("ready", os.getpid()))
    inbox = bytearray()
    base: dict[str, str] = {}
    while True:
        for key, _events in selector.select():
            if key.fileobj is sock:
                data = sock.recv(1 << 18)
                if not data:
                    return  # the daemon is gone (or closing): the jobs run on
                inbox += data
                for message in _unframe(inbox):
                    if message[0] == "env":
                        base = message[1]
                    else:
                        _handle(message, base, send)
            else:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass  # another select already drained it
        # Exits are collected after every request too: a SIGCHLD may come mid-spawn.
        _reap(send)


def _handle(message: tuple[Any, ...], base: dict[str, str], send: Callable[[tuple[Any, ...]], None]) -> None:
    kind, seq, request = message
    if kind != "spawn":
        send(("failed", seq, errno.EINVAL, f"unknown request {kind!r}", None))
        return
    try:
        pid = spawn_here(request, {**base, **request.env})
    except OSError as exc:
        send(("failed", seq, exc.errno, exc.strerror or str(exc), exc.filename))
        return
    send(("spawned", seq, pid, _create_time(pid)))


def main() -> None:
    """Entry point of the helper process: its stdin is its end of the daemon's socket pair."""
    sock = socket.socket(fileno=os.dup(0))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # fd 0 is no longer the socket: nothing else may read it by accident
    os.close(devnull)
    try:
        serve(sock)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon closed its end while we were writing: nothing left to tell


# ----------------------------------------------------------------- the daemon's side


class SpawnerLost(OSError):
    """The helper ended while a spawn request was outstanding (the launcher may have started:
    the caller sweeps the job's tag)."""


class HelperUnavailable(SpawnerLost):
    """The helper could not be started at all (nothing was spawned)."""


@dataclass(eq=False)
class RemoteChild:
    """A launcher the helper started: its PID, create time, and exit once reported."""

    pid: int
    create_time: float | None
    returncode: int | None = None
    exited: bool = False
    _on_exit: ExitCallback | None = None
    _handle: posix.PidfdHandle | None = None
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    def watch(self, on_exit: ExitCallback) -> None:
        """Call `on_exit(returncode)` on the loop once the launcher has ended (None: the code
        is unknown because the helper was lost). At once (next loop turn) if it has already."""
        self._on_exit = on_exit
        if self.exited and self._loop is not None:
            self._loop.call_soon(self._fire)

    def cancel(self) -> None:
        """No callback any more (the job's end is being handled)."""
        self._on_exit = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _ended(self, code: int | None) -> None:
        if self.exited:
            return
        self.exited = True
        self.returncode = code
        self._fire()

    def _fire(self) -> None:
        callback, self._on_exit = self._on_exit, None
        if callback is not None:
            callback(self.returncode)


class ForkServer:
    """The daemon's side: requests spawns from the helper and dispatches its messages on the
    event loop. Start it lazily: the first spawn starts the helper."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._seq = 0
        self._pending: dict[int, asyncio.Future[RemoteChild]] = {}
        self._sent: dict[int, float] = {}  # seq → loop time the request went out, in order
        self._deadline_timer: asyncio.TimerHandle | None = None
        self.spawn_timeout_s = SPAWN_TIMEOUT_S
        self._children: dict[int, RemoteChild] = {}
        self._ready: asyncio.Future[int] | None = None
        self._starting: asyncio.Lock | None = None
        self._closed = False

    @property
    def helper_pid(self) -> int | None:
        """The helper's PID while it runs (tests and diagnostics)."""
        return self._proc.pid if self._proc is not None and self._sock is not None else None

    async def spawn(self, request: SpawnRequest) -> RemoteChild:
        """Start what `request` asks, from the helper. Raises OSError as Popen would, or
        SpawnerLost."""
        await self._ensure_started()
        assert self._loop is not None
        self._seq += 1
        seq = self._seq
        future: asyncio.Future[RemoteChild] = self._loop.create_future()
        self._pending[seq] = future
        self._sent[seq] = self._loop.time()
        if self._deadline_timer is None:
            self._deadline_timer = self._loop.call_later(self.spawn_timeout_s, self._check_deadlines)
        self._write(_frame(("spawn", seq, request)))
        return await future

    async def close(self) -> None:
        """End the helper (the jobs it started run on) and stop watching."""
        self._closed = True
        proc = self._proc
        self._drop_connection(SpawnerLost(errno.ESHUTDOWN, "the daemon is shutting down"))
        for child in list(self._children.values()):
            child.cancel()
        self._children.clear()
        if proc is not None:
            await asyncio.to_thread(_wait_or_kill, proc)
            self._proc = None

    # ----------------------------------------------------------------- internals

    async def _ensure_started(self) -> None:
        if self._sock is not None:
            return
        if self._closed:
            raise SpawnerLost(errno.ESHUTDOWN, "the daemon is shutting down")
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._sock is None:
                await self._start()

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._proc is not None:
            await asyncio.to_thread(_wait_or_kill, self._proc)  # a helper that died: reaped
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the serv package
        # Not `-m` with PYTHONPATH: the helper's environment would leak into every job.
        code = f"import sys; sys.path.insert(0, {root!r}); from serv.platform.forkserver import main; main()"
        try:
            self._proc = await asyncio.to_thread(_start_helper, code, theirs)
        except OSError as exc:
            ours.close()
            raise HelperUnavailable(exc.errno or errno.EIO, f"the spawn helper could not be started: {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._inbox.clear()
        self._outbox.clear()
        self._ready = self._loop.create_future()
        self._loop.add_reader(ours.fileno(), self._readable)
        self._write(_frame(("env", dict(os.environ))))
        try:
            pid = await asyncio.wait_for(self._ready, READY_TIMEOUT_S)
        except (TimeoutError, SpawnerLost) as exc:
            failure = HelperUnavailable(errno.EIO, f"the spawn helper did not start: {exc or 'no answer'}")
            self._drop_connection(failure)
            raise failure from exc
        log.debug("spawn helper running as pid %d", pid)

    def _write(self, data: bytes) -> None:
        """Send in order without waiting: what the socket does not take now goes out when it
        is writable again."""
        assert self._sock is not None and self._loop is not None
        if not self._outbox:
            try:
                sent = self._sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._lost(exc)
                return
            if sent == len(data):
                return
            data = data[sent:]
            self._loop.add_writer(self._sock.fileno(), self._writable)
        self._outbox += data

    def _writable(self) -> None:
        assert self._sock is not None and self._loop is not None
        try:
            sent = self._sock.send(self._outbox)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        del self._outbox[:sent]
        if not self._outbox:
            self._loop.remove_writer(self._sock.fileno())

    def _readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not data:
            self._lost(None)
            return
        self._inbox += data
        for message in _unframe(self._inbox):
            self._dispatch(message)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "exited":
            _, pid, code = message
            child = self._children.pop(pid, None)
            if child is not None:
                child._ended(code)
        elif kind == "spawned":
            _, seq, pid, create_time = message
            child = RemoteChild(pid, create_time, _loop=self._loop)
            self._children[pid] = child
            self._sent.pop(seq, None)
            future = self._pending.pop(seq, None)
            if future is not None and not future.done():
                future.set_result(child)
        elif kind == "failed":
            _, seq, number, text, filename = message
            self._sent.pop(seq, None)
            future = self._pending.pop(seq, None)
            if future is not None and not future.done():
                future.set_exception(OSError(number, text, filename) if filename else OSError(number, text))
        elif kind == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(message[1])

    def _lost(self, error: OSError | None) -> None:
        """The helper is gone: outstanding spawns fail, the children it started are watched
        by pidfd from here on, and the next spawn starts a new helper."""
        if self._closed:
            return
        pid = self._proc.pid if self._proc is not None else None
        log.error("the spawn helper (pid %s) ended%s; jobs it started are watched by pidfd",
                  pid, f": {error}" if error else "")
        self._give_up(SpawnerLost(errno.EPIPE, "the spawn helper ended during the start"))

    def _check_deadlines(self) -> None:
        """Timer: a spawn left unanswered for spawn_timeout_s gives the helper up."""
        assert self._loop is not None
        self._deadline_timer = None
        if not self._sent:
            return
        oldest = next(iter(self._sent.values()))  # requests go out in order
        due = oldest + self.spawn_timeout_s
        if self._loop.time() < due:
            self._deadline_timer = self._loop.call_at(due, self._check_deadlines)
            return
        proc = self._proc
        log.error(
            "the spawn helper (pid %s) has not answered a spawn for %.0f s (a hung file system "
            "under a job's folder?); it is killed and replaced, jobs it started are watched by pidfd",
            proc.pid if proc is not None else None, self.spawn_timeout_s,
        )
        if proc is not None:
            proc.kill()
            # It dies once its stuck system call returns; reaped whenever that is, by a
            # thread of its own rather than by the next helper's start.
            threading.Thread(target=proc.wait, name="spawn-helper-reaper", daemon=True).start()
            self._proc = None
        self._give_up(SpawnerLost(errno.ETIMEDOUT, f"the spawn helper did not answer within {self.spawn_timeout_s:.0f} s"))

    def _give_up(self, error: SpawnerLost) -> None:
        self._drop_connection(error)
        for child in list(self._children.values()):
            self._watch_orphan(child)
        self._children.clear()

    def _watch_orphan(self, child: RemoteChild) -> None:
        assert self._loop is not None
        handle = posix.open_exit_handle(self._loop, child.pid, lambda: child._ended(None))
        # The PID may have ended and been handed out again since the helper died: only the
        # same process (pid and create time) is watched.
        if handle is None or child.create_time is None or not _same_process(child.pid, child.create_time):
            if handle is not None:
                handle.cancel()
            self._loop.call_soon(child._ended, None)
            return
        child._handle = handle

    def _drop_connection(self, error: SpawnerLost) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
                if self._outbox:
                    self._loop.remove_writer(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self._sent.clear()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()


def _same_process(pid: int, create_time: float) -> bool:
    from serv import proctree  # psutil-based; imported here to keep the helper's start light
    from serv.core.jobs import ProcIdentity

    return proctree.is_alive(ProcIdentity(pid, create_time))


def _start_helper(code: str, sock: socket.socket) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=sock.fileno(),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _wait_or_kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

