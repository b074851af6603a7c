"""Orphan solver processes: solvers that belong to no live job and may hold licences.

A process is an orphan when it is owned by the daemon's user and either carries one of
this daemon's job tags for a job that is no longer live, or carries no tag and is named
like a configured solver. The MPI launchers directly above an orphan (its mpiexec, its
hydra_pmi_proxy) go with it. Never touched: the daemon, its ancestors, any process of a
live job, processes tagged by another dynalauncher store, and, when `working_dir` is
given, anything whose cwd is outside it (tests always pass their own temporary folder).
Thread only: this scans every process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import psutil

from serv import proctree
from serv.core.jobs import ProcIdentity
from serv.platform import current

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Scope:
    """What the scan must know about the daemon's live state."""

    tag_prefix: str
    live_tags: frozenset[str]
    live_roots: tuple[ProcIdentity, ...]
    process_names: tuple[str, ...]
    working_dir: Path | None = None


def _protected() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.parents())}


def _launcher(name: str) -> bool:
    low = name.lower()
    return any(low.startswith(n) for n in proctree.LAUNCHER_NAMES)


def _live_pids(roots: Iterable[ProcIdentity]) -> set[int]:
    """Every process at or below a live job's roots, from ONE parent map of the host.

    psutil's `children()` reads every process's stat file per call; calling it per job made
    a scan over a thousand jobs read /proc millions of times (docs/benchmarks/supervise_many.md).
    """
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
    unique = {root.pid: root for root in roots}
    stack = [pid for pid, root in unique.items() if proctree.is_alive(root)]
    live: set[int] = set()
    while stack:
        pid = stack.pop()
        if pid not in live:
            live.add(pid)
            stack.extend(children.get(pid, ()))
    return live


def find_orphans(scope: Scope) -> list[psutil.Process]:
    """The orphan processes in `scope`, launchers above them included."""
    protected = _protected()
    live = _live_pids(scope.live_roots)
    found: dict[int, psutil.Process] = {}
    for proc in proctree.own_processes():
        if proc.pid in protected or proc.pid in live:
            continue
        tag = proctree.tag_of(proc)
        if tag is not None:
            if tag in scope.live_tags or not tag.startswith(scope.tag_prefix):
                continue
        else:
            try:
                name = proc.name()
            except psutil.NoSuchProcess:
                continue
            if not proctree.matches(name, scope.process_names):
                continue
        if scope.working_dir is not None and not proctree.within(proctree.cwd_of(proc), scope.working_dir):
            continue
        found[proc.pid] = proc
    for proc in list(found.values()):
        for parent in _parents(proc):
            if parent.pid in protected or parent.pid in live:
                break
            try:
                if not _launcher(parent.name()):
                    break
            except psutil.NoSuchProcess:
                break
            if scope.working_dir is not None and not proctree.within(proctree.cwd_of(parent), scope.working_dir):
                break
            found.setdefault(parent.pid, parent)
    return list(found.values())


def _parents(proc: psutil.Process) -> Iterable[psutil.Process]:
    try:
        return list(proc.parents())
    except psutil.NoSuchProcess:
        return []


def kill_orphans(scope: Scope) -> list[proctree.ProcInfo]:
    """SIGKILL every orphan in `scope`; returns them (pid, name, cwd).

    Each is described before any is killed: killing one part of a tree can end another by
    itself (an MPI proxy exits when its ranks die), and that one was cleaned up too."""
    found = []
    for proc in find_orphans(scope):
        try:
            found.append(proctree.ProcInfo(proc.pid, proc.name(), proctree.cwd_of(proc)))
        except psutil.NoSuchProcess:
            continue  # ended before the clean-up began
    for info in found:
        if current.send_signal(info.pid, current.KILL):
            log.warning("killed orphan pid %d %s (cwd %s)", info.pid, info.name, info.cwd)
        else:
            log.warning("orphan pid %d %s (cwd %s) ended as its tree was killed", info.pid, info.name, info.cwd)
    return found


def all_process_names(profiles: Iterable[Sequence[str]]) -> tuple[str, ...]:
    names: list[str] = []
    for group in profiles:
        names.extend(n for n in group if n not in names)
    return tuple(names)


