"""How a job's launcher is started and its exit reported.

On Linux the fork server (serv.platform.forkserver) starts every launcher from a helper
process; where it cannot run (Windows, or a helper that fails to start) launchers are started
from a few threads of the daemon, their exits watched by pidfd or process handle. Both give
the job manager the same thing: the launcher's PID and create time, and one call back when
it has ended, with its exit code when known.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from serv.platform import IS_LINUX, current
from serv.platform.forkserver import ForkServer, HelperUnavailable
from serv.platform.spawn_request import SpawnRequest

log = logging.getLogger(__name__)

ExitCallback = Callable[[int | None], None]
SPAWN_THREADS = 4


class Launched(Protocol):
    """A launcher the daemon started."""

    @property
    def pid(self) -> int: ...

    @property
    def create_time(self) -> float | None: ...

    def watch(self, on_exit: ExitCallback) -> None:
        """Call `on_exit(code)` on the loop once it has ended (code None when unknown)."""

    def cancel(self) -> None:
        """No call back any more."""


class Spawner(Protocol):
    async def spawn(self, request: SpawnRequest) -> Launched:
        """Start what `request` asks. Raises OSError when it cannot."""

    async def close(self) -> None:
        """Stop watching; started jobs run on."""


@dataclass(eq=False)
class PopenChild:
    """A launcher started from a thread of the daemon (its parent)."""

    popen: subprocess.Popen[bytes]
    create_time: float | None
    _loop: asyncio.AbstractEventLoop
    _handle: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def watch(self, on_exit: ExitCallback) -> None:
        self._handle = current.open_exit_handle(self._loop, self.pid, lambda: on_exit(self._code()))
        if self._handle is None:
            self._loop.call_soon(lambda: on_exit(self._code()))

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _code(self) -> int:
        code = self.popen.poll()
        if code is None:
            # A pidfd reports the exit before the zombie is reapable in rare races.
            code = self.popen.wait(timeout=1)
        return code


class ThreadSpawner:
    """Launchers started from SPAWN_THREADS threads of the daemon: a spawn mostly waits for
    the child's exec, so a few run side by side, apart from the shared pool's disk checks."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=SPAWN_THREADS, thread_name_prefix="spawn")

    async def spawn(self, request: SpawnRequest) -> PopenChild:
        loop = asyncio.get_running_loop()
        popen, create_time = await loop.run_in_executor(self._pool, _spawn_sync, request)
        return PopenChild(popen, create_time, loop)

    async def close(self) -> None:
        self._pool.shutdown(wait=True)


def _spawn_sync(request: SpawnRequest) -> tuple[subprocess.Popen[bytes], float | None]:
    """Thread: start the launcher detached; its create time; its priority."""
    from serv import proctree  # psutil-based

    popen = current.spawn_detached(
        request.argv, cwd=request.cwd, env={**os.environ, **request.env},
        stdout_path=request.stdout_path, cores=request.cores, nice=request.nice,
    )
    if request.nice:
        current.apply_priority([popen.pid], request.nice)
    ident = proctree.child_identity(popen.pid)
    return popen, ident.create_time if ident is not None else None


class HelperFirst:
    """The fork server, and threads once it cannot be started (said once, as a WARNING)."""

    def __init__(self) -> None:
        self._server = ForkServer()
        self._threads: ThreadSpawner | None = None

    @property
    def helper_pid(self) -> int | None:
        """The fork server's PID while it runs."""
        return None if self._threads is not None else self._server.helper_pid

    async def spawn(self, request: SpawnRequest) -> Launched:
        if self._threads is None:
            try:
                return await self._server.spawn(request)
            except HelperUnavailable as exc:
                log.warning("%s; starting jobs from the daemon's threads instead", exc)
                self._threads = ThreadSpawner()
        return await self._threads.spawn(request)

    async def close(self) -> None:
        await self._server.close()
        if self._threads is not None:
            await self._threads.close()


def new_spawner() -> Spawner:
    """The spawner for this platform."""
    return HelperFirst() if IS_LINUX else ThreadSpawner()
