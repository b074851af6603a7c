"""Windows: creation flags that detach a solver from the daemon, CTRL_BREAK, waiting handles.

A job must outlive the daemon even when the daemon runs inside a job object (a service
wrapper, a terminal that kills its tree): CREATE_BREAKAWAY_FROM_JOB takes it out of that
job object, CREATE_NEW_PROCESS_GROUP lets CTRL_BREAK_EVENT reach only its tree, and
CREATE_NO_WINDOW keeps a console from popping up. When the daemon's job object forbids
breakaway, CreateProcess fails with ERROR_ACCESS_DENIED and we retry without that flag.
This module imports on any OS so its argument building is unit-tested on Linux.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable, Mapping, Sequence

log = logging.getLogger(__name__)

# Values from the Win32 documentation (processthreadsapi.h); subprocess only defines
# them on Windows.
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_BREAKAWAY_FROM_JOB = 0x01000000
CREATE_NO_WINDOW = 0x08000000
ERROR_ACCESS_DENIED = 5
CTRL_BREAK_EVENT = 1

DETACHED_FLAGS = CREATE_BREAKAWAY_FROM_JOB | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
FALLBACK_FLAGS = CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW

KILL = getattr(signal, "SIGTERM", 15)  # os.kill with any non-CTRL value → TerminateProcess
STOP = -1
CONT = -2


def creation_attempts() -> list[int]:
    """The creation flags tried in order: with breakaway, then without."""
    return [DETACHED_FLAGS, FALLBACK_FLAGS]


def spawn_detached(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    cores: Sequence[int] | None,
    nice: int = 0,
    popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
) -> subprocess.Popen[bytes]:
    """Start `argv` detached from the daemon; stdout+stderr to `stdout_path`.

    `cores` and the priority class for `nice` are applied right after creation (Windows
    has no exec to set them before).
    """
    with open(stdout_path, "wb") as out:
        last_error: OSError | None = None
        for flags in creation_attempts():
            try:
                proc = popen(
                    list(argv),
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    creationflags=flags,
                    close_fds=True,
                )
            except OSError as exc:
                if getattr(exc, "winerror", None) != ERROR_ACCESS_DENIED or not flags & CREATE_BREAKAWAY_FROM_JOB:
                    raise
                log.warning("breakaway from the daemon's job object is not allowed; "
                            "starting the solver inside it")
                last_error = exc
                continue
            if cores:
                import psutil  # only here: platform code may use psutil

                psutil.Process(proc.pid).cpu_affinity(list(cores))
            if nice:
                apply_priority([proc.pid], nice)
            return proc
    assert last_error is not None
    raise last_error


def priority_class_of(nice: int) -> int:
    """A Windows priority class for a POSIX-style nice value (psutil's constants)."""
    import psutil

    if nice >= 15:
        return int(psutil.IDLE_PRIORITY_CLASS)
    if nice > 0:
        return int(psutil.BELOW_NORMAL_PRIORITY_CLASS)
    if nice <= -15:
        return int(psutil.HIGH_PRIORITY_CLASS)
    if nice < 0:
        return int(psutil.ABOVE_NORMAL_PRIORITY_CLASS)
    return int(psutil.NORMAL_PRIORITY_CLASS)


def apply_priority(pids: Sequence[int], nice: int) -> None:
    """Set the priority class of processes (Windows has no separate I/O knob here)."""
    import psutil

    for pid in pids:
        try:
            psutil.Process(pid).nice(priority_class_of(nice))
        except psutil.NoSuchProcess:
            continue


def group_has_members(leader_pid: int) -> bool | None:
    """Unknown on Windows (a process group there is a console notion, not a kill scope):
    callers then sweep the job's processes by tag and parentage."""
    return None


def graceful_signal() -> int:
    return CTRL_BREAK_EVENT


def send_signal(pid: int, sig: int) -> bool:
    import os

    import psutil

    try:
        if sig == STOP:
            psutil.Process(pid).suspend()
        elif sig == CONT:
            psutil.Process(pid).resume()
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, psutil.NoSuchProcess):
        return False
    return True


class ThreadWaitHandle:
    """Waits for a process in a thread and calls `on_exit` on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pid: int, on_exit: Callable[[], None]) -> None:
        self._cancelled = False

        def wait() -> None:
            import psutil

            try:
                psutil.Process(pid).wait()
            except psutil.NoSuchProcess:
                pass  # already gone: that is the exit we wait for
            if not self._cancelled:
                loop.call_soon_threadsafe(on_exit)

        threading.Thread(target=wait, name=f"wait-{pid}", daemon=True).start()

    def cancel(self) -> None:
        self._cancelled = True


def open_exit_handle(
    loop: asyncio.AbstractEventLoop, pid: int, on_exit: Callable[[], None]
) -> ThreadWaitHandle | None:
    return ThreadWaitHandle(loop, pid, on_exit)


def install_shutdown_handlers(loop: asyncio.AbstractEventLoop, on_signal: Callable[[str], None]) -> None:
    """Ctrl+C and Ctrl+Break ask the daemon to shut down."""
    def handler_for(name: str) -> Callable[[int, object], None]:
        def handle(signum: int, frame: object) -> None:
            loop.call_soon_threadsafe(on_signal, name)

        return handle

    for name in ("SIGINT", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, handler_for(name))


def raise_open_files_limit() -> None:
    """Windows has no per-process open-files limit of this kind."""


def install_reload_handler(loop: asyncio.AbstractEventLoop, on_reload: Callable[[], None]) -> None:
    """Windows has no SIGHUP: a configuration reload needs a restart there."""


def pin_exec_argv(argv: Sequence[str], cores: Sequence[int] | None, nice: int = 0) -> list[str]:
    return list(argv)
