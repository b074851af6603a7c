"""Process trees through psutil: identity, the real solver PID, the whole tree of a job.

Every function here does system calls per process and can take milliseconds on a busy
workstation, so callers run them off the event loop (asyncio.to_thread or the watchdog
thread). A process that dies between a scan and a signal is normal here, not an error:
psutil.NoSuchProcess is caught by name wherever that race exists.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import psutil

from serv.core.jobs import ProcIdentity
from serv.platform import TAG_VAR

log = logging.getLogger(__name__)

# Processes that start solvers but are never the solver itself (issue #3 item 6).
LAUNCHER_NAMES = (
    "mpiexec", "mpirun", "hydra_pmi_proxy", "hydra_bstrap_proxy", "orterun", "orted",
    "prterun", "prted", "smpd", "msmpilaunchsvc",
)
SHELL_NAMES = ("sh", "bash", "dash", "zsh", "cmd", "cmd.exe", "powershell", "pwsh", "python",
               "python3", "srun", "slurmstepd", "timeout", "env", "nohup", "taskset")


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """A process as reported to clients (orphan cleanup) and in logs."""

    pid: int
    name: str
    cwd: str | None


def identity(pid: int) -> ProcIdentity | None:
    """(pid, create time) of a live, non-zombie process, or None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return ProcIdentity(pid, proc.create_time())
    except psutil.NoSuchProcess:
        return None


def child_identity(pid: int) -> ProcIdentity | None:
    """(pid, create time) of a child the daemon has just started and not yet reaped: its PID
    cannot have been handed to another process, so one read of its stat is enough (no
    zombie check: its exit is watched separately). None when it cannot be read."""
    try:
        return ProcIdentity(pid, psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def is_alive(ident: ProcIdentity) -> bool:
    """True when the exact process (same pid and create time) still runs; a zombie is dead."""
    try:
        proc = psutil.Process(ident.pid)
        return bool(proc.create_time() == ident.create_time and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def is_launcher_or_shell(name: str) -> bool:
    low = name.lower()
    base = low[:-4] if low.endswith(".exe") else low
    return base in SHELL_NAMES or any(base.startswith(n) for n in LAUNCHER_NAMES) or base.startswith("python")


def matches(name: str, process_names: Sequence[str]) -> bool:
    """Whether a process name is one of the solver's (case-insensitive substring)."""
    low = name.lower()
    return any(n.lower() in low for n in process_names) and not is_launcher_or_shell(name)


def _child_pids(pid: int) -> list[int] | None:
    """Direct children from /proc/PID/task/TID/children (Linux), None where unavailable.

    psutil's children() reads the stat file of every process on the host per call; this
    reads one small file per thread of the parent."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
        kids: list[int] = []
        for tid in tids:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                kids.extend(int(k) for k in fh.read().split())
    except FileNotFoundError:
        # The process has gone (so it has no children), or there is no /proc (use psutil).
        return [] if os.path.isdir("/proc/self/task") else None
    except (OSError, ValueError):
        return None
    return kids


def descendants(pid: int, *, include_root: bool = True) -> list[psutil.Process]:
    """`pid` and every process below it by parentage."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    found: list[psutil.Process] = []
    stack = [pid]
    while stack:
        kids = _child_pids(stack.pop())
        if kids is None:
            try:
                procs = root.children(recursive=True)
            except psutil.NoSuchProcess:
                return []
            return [root, *procs] if include_root else procs
        for kid in kids:
            try:
                found.append(psutil.Process(kid))
            except psutil.NoSuchProcess:
                continue
            stack.append(kid)
    return [root, *found] if include_root else found


RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MPI_LOCALRANKID")


def _rank_of(proc: psutil.Process) -> int:
    """The MPI rank from a process's environment; ranks unknown sort after rank 0."""
    try:
        env = proc.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 1
    for var in RANK_VARS:
        if env.get(var, "").isdigit():
            return int(env[var])
    return 1


def find_solver(launcher_pid: int, process_names: Sequence[str]) -> ProcIdentity | None:
    """The solver process in the launcher's tree, never a shell or an MPI launcher: among
    processes named like `process_names`, MPI rank 0 (PMI_RANK / OMPI_COMM_WORLD_RANK),
    else the earliest started."""
    candidates: list[tuple[int, float, int]] = []
    for proc in descendants(launcher_pid):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or not matches(proc.name(), process_names):
                continue
            candidates.append((0, proc.create_time(), proc.pid))
        except psutil.NoSuchProcess:
            continue
    if len(candidates) > 1:
        candidates = [(_rank_of(psutil.Process(pid)), ctime, pid) for _, ctime, pid in candidates]
    if not candidates:
        return None
    _, ctime, pid = min(candidates)
    return ProcIdentity(pid, ctime)


def describe_tree(pid: int) -> str:
    """'pid name, pid name, …' of a tree, for the WARNING logged when no solver is found."""
    parts = []
    for proc in descendants(pid):
        try:
            parts.append(f"{proc.pid} {proc.name()}")
        except psutil.NoSuchProcess:
            continue
    return ", ".join(parts) or f"{pid} (gone)"


def tag_of(proc: psutil.Process) -> str | None:
    """The job tag in a process's environment, or None (also when it cannot be read)."""
    try:
        tag = proc.environ().get(TAG_VAR)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return None if tag is None else str(tag)


def own_processes(since: float | None = None) -> Iterable[psutil.Process]:
    """Every live process of the daemon's user (others' environments are unreadable anyway),
    optionally only those created at or after `since` (epoch seconds).

    The age test comes first: psutil keeps the Process objects of earlier scans with their
    create time, so a long-lived process costs no /proc read at all on the next scan.
    """
    uid = os.getuid() if hasattr(os, "getuid") else None
    for proc in psutil.process_iter():
        try:
            if since is not None and proc.create_time() < since:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if uid is not None and proc.uids().real != uid:
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        yield proc


def tagged(prefix: str, since: float | None = None) -> dict[str, list[psutil.Process]]:
    """Processes whose job tag starts with `prefix` (e.g. "<daemon id>:"), grouped by tag.

    `since` skips processes created before it without reading their environment: a job's
    processes cannot be older than the job, and reading environments is the costly part
    (~60 µs a process), so a workstation's hundreds of long-lived processes cost little.
    """
    found: dict[str, list[psutil.Process]] = {}
    for proc in own_processes(since):
        tag = tag_of(proc)
        if tag is not None and tag.startswith(prefix):
            found.setdefault(tag, []).append(proc)
    return found


def job_tree(tag: str, roots: Iterable[ProcIdentity], since: float | None = None) -> list[psutil.Process]:
    """Every process of one job: those carrying its tag (found even after MPI launchers
    re-parented or setsid'ed them), plus everything below its known roots. `since`: the
    job's start (epoch seconds), to skip older processes cheaply."""
    procs: dict[int, psutil.Process] = {}
    for root in roots:
        if is_alive(root):
            for proc in descendants(root.pid):
                procs[proc.pid] = proc
    for proc in tagged(tag, since).get(tag, []):
        procs.setdefault(proc.pid, proc)
    return list(procs.values())


def signal_all(procs: Iterable[psutil.Process], sig: int) -> list[int]:
    """Send `sig` to every process; returns the PIDs it reached."""
    from serv.platform import current

    reached = []
    for proc in procs:
        if current.send_signal(proc.pid, sig):
            reached.append(proc.pid)
    return reached


def set_affinity(procs: Iterable[psutil.Process], cores: Sequence[int]) -> None:
    """Pin every process to `cores` (used when a re-adopted job gets new cores)."""
    for proc in procs:
        try:
            proc.cpu_affinity(list(cores))
        except psutil.NoSuchProcess:
            continue


def cwd_of(proc: psutil.Process) -> str | None:
    try:
        return str(proc.cwd())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def within(path: str | None, root: Path) -> bool:
    """Whether `path` is `root` or below it (after resolving links)."""
    if path is None:
        return False
    try:
        Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True
