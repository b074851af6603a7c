"""POSIX (Linux first): detached sessions, CPU pinning before exec, signals, pidfd.

A job's launcher is started in a new session (setsid) so that Ctrl+C in the daemon's
terminal, and the daemon's own death, never reach the solver. CPU affinity must be set
before the solver (or mpiexec) forks its ranks, which inherit it. Popen has no hook for that
short of `preexec_fn` (unsafe in a threaded daemon, and it rules out vfork), but a child
inherits the mask of the thread that forks it: the spawning thread takes the job's mask for
the moment of the spawn. A nice value cannot be undone on a thread without privileges, so a
job with one goes through a tiny trampoline that sets both and execs the real argv, keeping
the PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

__all__ = [
    "spawn_detached",
    "apply_priority",
    "graceful_signal",
    "send_signal",
    "KILL",
    "STOP",
    "CONT",
    "open_exit_handle",
    "install_shutdown_handlers",
    "install_reload_handler",
    "raise_open_files_limit",
    "pin_exec_argv",
    "thread_mask",
    "group_has_members",
]

# Runs under `python -I -S`: no site, no environment-driven imports, so it starts in ~10 ms.
_PIN_EXEC = (
    "import os,sys\n"
    "if sys.argv[1]:\n"
    "    os.sched_setaffinity(0,{int(c) for c in sys.argv[1].split(',')})\n"
    "if int(sys.argv[2]):\n"
    "    try:\n"
    "        os.setpriority(os.PRIO_PROCESS,0,int(sys.argv[2]))\n"
    "    except OSError as e:\n"
    "        sys.stderr.write('dynalauncher: nice %s not applied: %s\\n'%(sys.argv[2],e))\n"
    "try:\n"
    "    os.execv(sys.argv[3],sys.argv[3:])\n"
    "except OSError as e:\n"
    "    sys.stderr.write('dynalauncher: cannot execute %s: %s\\n'%(sys.argv[3],e))\n"
    "    sys.stderr.flush()\n"
    "    os._exit(127)\n"
)

KILL = signal.SIGKILL
STOP = signal.SIGSTOP
CONT = signal.SIGCONT


def pin_exec_argv(argv: Sequence[str], cores: Sequence[int] | None, nice: int = 0) -> list[str]:
    """argv as spawn_detached runs it: wrapped in the trampoline that sets the nice value
    `nice` and the CPU mask `cores` before exec'ing it (both inherited by everything it
    starts) when a nice value is asked for; else unchanged, the mask coming from the
    spawning thread (see spawn_detached)."""
    if not nice:
        return list(argv)
    cores = cores if hasattr(os, "sched_setaffinity") else None
    cpus = ",".join(str(c) for c in cores) if cores else ""
    return [sys.executable, "-I", "-S", "-c", _PIN_EXEC, cpus, str(nice), *argv]


@contextlib.contextmanager
def thread_mask(cores: Sequence[int] | None) -> Iterator[None]:
    """The calling thread runs on `cores` meanwhile, then gets its own mask back; a process
    it starts meanwhile inherits `cores` from the first instruction on (no window in which
    the solver could fork an unpinned rank). Raises OSError for cores the host refuses."""
    if not cores or not hasattr(os, "sched_setaffinity"):
        yield
        return
    own = os.sched_getaffinity(0)  # pid 0 is the calling thread, not the whole process
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)


def spawn_detached(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    cores: Sequence[int] | None,
    nice: int = 0,
) -> subprocess.Popen[bytes]:
    """Start `argv` in `cwd` in a new session, stdout+stderr to `stdout_path`, pinned to
    `cores`, at CPU priority `nice`.

    Raises OSError when the program cannot be started (the caller fails the job with it).
    """
    # A bare descriptor: no Python file object is needed just to hand it to the child.
    out = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        with thread_mask(None if nice else cores):
            return subprocess.Popen(
                pin_exec_argv(argv, cores, nice),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
    finally:
        os.close(out)


def io_priority_of(nice: int) -> int:
    """The best-effort I/O priority level (0 highest … 7 lowest) that matches a nice value,
    so a job started "nice" also yields the disk (ionice -c2 -n LEVEL)."""
    return max(0, min(7, round((nice + 20) * 7 / 39)))


def apply_priority(pids: Sequence[int], nice: int) -> None:
    """Set CPU nice and best-effort I/O priority on processes (children inherit both).

    Linux only for I/O priority; a process that is gone is skipped.
    """
    import psutil

    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.nice() != nice:
                proc.nice(nice)
            if hasattr(proc, "ionice"):
                proc.ionice(psutil.IOPRIO_CLASS_BE, io_priority_of(nice))
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied as exc:
            # Raising priority (negative nice) needs privileges the daemon may not have.
            import logging

            logging.getLogger(__name__).warning("priority %d not applied to pid %d: %s", nice, pid, exc)


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard limit: every supervised job holds one
    or two pidfds, and a daemon with hundreds of jobs would hit the usual soft limit of 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            import logging

            logging.getLogger(__name__).warning("open files limit stays at %d: %s", soft, exc)


def graceful_signal() -> int:
    """The signal that asks a solver tree to end cleanly."""
    return signal.SIGTERM


def send_signal(pid: int, sig: int) -> bool:
    """Send `sig` to `pid`; False when the process is already gone (not an error)."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def group_has_members(leader_pid: int) -> bool | None:
    """Whether any process is left in the process group that `leader_pid` started with its
    new session (spawn_detached). One system call: the kernel does not hand out a PID again
    while a group of that number has members, so the answer is about our group. Only
    meaningful once the leader itself has been reaped."""
    try:
        os.killpg(leader_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member we may not signal is still a member
    return True


class PidfdHandle:
    """Calls `on_exit` on the loop as soon as the process behind a pidfd has ended.

    A pidfd becomes readable when its process exits (zombie included), for children and
    for processes re-adopted after a daemon restart alike.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, on_exit: Callable[[], None]) -> None:
        self._loop = loop
        self._fd: int | None = fd
        self._on_exit = on_exit
        loop.add_reader(fd, self._fire)

    def _fire(self) -> None:
        self.cancel()
        self._on_exit()

    def cancel(self) -> None:
        """Stop watching; idempotent."""
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None


def open_exit_handle(
    loop: asyncio.AbstractEventLoop, pid: int, on_exit: Callable[[], None]
) -> PidfdHandle | None:
    """Watch `pid` for its exit; None when it is already gone (the caller treats it as ended)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    return PidfdHandle(loop, fd, on_exit)


def install_shutdown_handlers(loop: asyncio.AbstractEventLoop, on_signal: Callable[[str], None]) -> None:
    """SIGINT and SIGTERM ask the daemon to shut down (the handler only records it)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)


def install_reload_handler(loop: asyncio.AbstractEventLoop, on_reload: Callable[[], None]) -> None:
    """SIGHUP asks the daemon to re-read its configuration file."""
    loop.add_signal_handler(signal.SIGHUP, on_reload)
