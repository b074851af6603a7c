"""What-if patches for bench/throughput.py --what-if (diagnostic only; never the shipped code).

Python imports `sitecustomize` at start when this folder is on PYTHONPATH; GenericDaemon puts
it there for the daemon it starts when asked, with DYNALAUNCHER_BENCH_PATCHES=name,name. Each
patch replaces one function of `serv` at run time with the fix proposed in
docs/benchmarks/throughput.md, so the figure of a proposal can be measured before anyone
edits serv/. Files under serv/ are not touched.

A requested patch that does not apply (serv/ changed under it, or an unknown name) stops the
daemon at once with a message on stderr, so the bench fails instead of silently measuring
the unpatched code. The daemon logs which patches it applied.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

PATCHES = [p for p in os.environ.get("DYNALAUNCHER_BENCH_PATCHES", "").split(",") if p]
REGISTRY: dict[str, Callable[[], None]] = {}


def patch(fn: Callable[[], None]) -> Callable[[], None]:
    REGISTRY[fn.__name__.replace("_", "-")] = fn
    return fn


@patch
def scan() -> None:
    """proctree.own_processes with the cheap test first: psutil keeps its Process objects
    between process_iter() calls and memoises create_time(), so a process older than `since`
    costs no /proc read at all; only young ones have their status file read."""
    import psutil

    from serv import proctree

    assert hasattr(proctree, "own_processes")

    def own_processes(since: float | None = None) -> Any:
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

    proctree.own_processes = own_processes


@patch
def children() -> None:
    """proctree.descendants walking only the job's own tree through Linux's
    /proc/PID/task/TID/children, instead of psutil's children(recursive=True), which builds a
    parent map of the whole host (one /proc/PID/stat read per process); psutil as fallback."""
    import psutil

    from serv import proctree

    fallback = proctree.descendants

    def children_of(pid: int) -> list[int]:
        kids: list[int] = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        return kids

    def descendants(pid: int, *, include_root: bool = True) -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            out: list[psutil.Process] = []
            todo = [pid]
            while todo:
                for child in children_of(todo.pop()):
                    try:
                        out.append(psutil.Process(child))
                        todo.append(child)
                    except psutil.NoSuchProcess:
                        continue
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            return []
        except OSError:
            return fallback(pid, include_root=include_root)
        return [root, *out] if include_root else out

    proctree.descendants = descendants


@patch
def async_schedule() -> None:
    """JobManager.schedule made fire-and-forget and coalesced: callers (launch above all)
    return at once; one background pass runs, and runs again if asked meanwhile."""
    from serv.job_manager import JobManager

    original = JobManager.schedule

    async def schedule(self: Any) -> None:
        task = getattr(self, "_bench_sched_task", None)
        if task is not None and not task.done():
            self._bench_sched_again = True
            return

        async def loop() -> None:
            while True:
                self._bench_sched_again = False
                await original(self)
                if not self._bench_sched_again:
                    return

        self._bench_sched_task = self._spawn(loop(), "schedule")

    JobManager.schedule = schedule  # type: ignore[method-assign]


@patch
def schedule_fast() -> None:
    """No coroutine per queued job without `after`, and no lock per waiting job whose note
    is already the same (re-checked under the lock)."""
    from serv.core.states import JobStatus
    from serv.job_manager import JobManager

    dependency_block = JobManager._dependency_block
    note_waiting = JobManager._note_waiting

    async def fast_dependency_block(self: Any, job: Any) -> str | None:
        if not job.after:
            return None
        return await dependency_block(self, job)

    async def fast_note_waiting(self: Any, job_id: int, why: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.status is not JobStatus.QUEUED or job.message == why:
            return
        await note_waiting(self, job_id, why)

    JobManager._dependency_block = fast_dependency_block  # type: ignore[method-assign]
    JobManager._note_waiting = fast_note_waiting  # type: ignore[method-assign]


@patch
def group_commit() -> None:
    """Store.commit group-committed: the first caller in a loop turn schedules one
    store-thread call that writes everything queued until it runs, in ONE transaction;
    each caller still awaits its own commit (commit before announce is kept)."""
    import asyncio
    import functools
    from datetime import UTC, datetime

    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    from serv.errors import StoreUnavailable
    from serv.store import repo

    assert hasattr(repo, "_upsert") and hasattr(repo.Store, "_event_row")

    def commit_batch_sync(self: Any, batch: list[tuple[Any, Any, Any, Any]]) -> None:
        with Session(self._engine_or_raise()) as session, session.begin():
            latest = {}
            for job, previous, message, at in batch:
                latest[job.id] = job  # rows: the last state of each job in the batch
                if previous is not None and previous != job.status:
                    note = job.message if message is None else message
                    session.add(self._event_row(job.id, at, previous, job.status, note))
            repo._upsert(session, list(latest.values()))

    async def flush(self: Any) -> None:
        batch, self._bench_batch = self._bench_batch, []
        try:
            await self._call(
                functools.partial(commit_batch_sync, self, [b[:4] for b in batch])
            )
        except (SQLAlchemyError, StoreUnavailable) as exc:
            err = StoreUnavailable(f"cannot save jobs to database {self._path}: {exc}")
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        for *_, fut in batch:
            if not fut.done():
                fut.set_result(None)

    async def commit(
        self: Any,
        job: Any,
        *,
        previous: Any = None,
        message: Any = None,
        at: Any = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        pending = self.__dict__.setdefault("_bench_batch", [])
        pending.append(
            (job, previous, message, datetime.now(UTC) if at is None else at, fut)
        )
        if len(pending) == 1:
            loop.call_soon(lambda: asyncio.ensure_future(flush(self)))
        await fut

    repo.Store.commit = commit  # type: ignore[method-assign]


@patch
def switch() -> None:
    """CPython hands the GIL to a waiting thread only every switch interval (5 ms by
    default): a store or to_thread worker that wakes while the loop thread computes waits
    that long. 0.5 ms instead."""
    sys.setswitchinterval(0.0005)


@patch
def trace() -> None:
    """Not a fix: times the steps of a job's life inside the daemon (wall time per call; for
    coroutines from call to return, so waiting for the store thread or the GIL counts) and
    writes them as JSON to $DYNALAUNCHER_BENCH_TRACE at exit. Steps that no longer exist
    under their name are skipped (listed under "missing")."""
    import asyncio
    import atexit
    import functools
    import json
    import time

    from serv import job_manager, proctree
    from serv.job_manager import JobManager
    from serv.platform import current
    from serv.store import repo

    times: dict[str, list[float]] = {}
    missing: list[str] = []

    def wrap(owner: Any, attr: str, label: str) -> None:
        fn = getattr(owner, attr, None)
        if fn is None:
            missing.append(label)
            return
        if asyncio.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return await fn(*a, **k)
                finally:
                    times.setdefault(label, []).append(time.perf_counter() - t)

            setattr(owner, attr, awrapper)
        else:

            @functools.wraps(fn)
            def wrapper(*a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    times.setdefault(label, []).append(time.perf_counter() - t)

            setattr(owner, attr, wrapper)

    for name in ("_kill_tree_sync",):
        wrap(JobManager, name, f"thread: JobManager.{name}")
    for name in (
        "launch",
        "schedule",
        "_start",
        "_finish",
        "_save",
        "_drain_output",
        "_begin_output",
        "_note_waiting",
    ):
        wrap(JobManager, name, f"loop: JobManager.{name}")
    wrap(job_manager, "read_verdict", "thread: read_verdict")
    workdir = getattr(job_manager, "workdir", None)
    if workdir is not None:
        wrap(workdir, "newest_dump", "thread: workdir.newest_dump")
    wrap(job_manager, "resolve_profile", "thread: resolve_profile")
    wrap(proctree, "identity", "thread: proctree.identity")
    wrap(proctree, "find_solver", "thread: proctree.find_solver")
    wrap(current, "spawn_detached", "thread: spawn_detached")
    wrap(repo.Store, "commit", "loop: Store.commit (await)")
    wrap(repo.Store, "create", "loop: Store.create (await)")
    wrap(repo.Store, "_commit_sync", "store thread: _commit_sync")
    wrap(repo.Store, "_create_sync", "store thread: _create_sync")

    to_thread = asyncio.to_thread

    async def timed_to_thread(fn: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return await to_thread(fn, *a, **k)
        finally:
            times.setdefault("loop: asyncio.to_thread round trip (any)", []).append(
                time.perf_counter() - t
            )

    asyncio.to_thread = timed_to_thread  # the job manager calls asyncio.to_thread(...)

    @atexit.register
    def dump() -> None:
        out = os.environ.get("DYNALAUNCHER_BENCH_TRACE")
        if out:
            with open(out, "w") as f:
                json.dump({**times, "missing": missing}, f)


def apply() -> None:
    applied = []
    for name in PATCHES:
        fn = REGISTRY.get(name)
        if fn is None:
            sys.stderr.write(
                f"what-if: unknown patch {name!r}; known: {', '.join(REGISTRY)}\n"
            )
            os._exit(3)
        try:
            fn()
        # serv/ changed under the patch: fail loudly, never measure the unpatched code.
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(
                f"what-if: patch {name!r} does not apply to this serv/: {exc!r}\n"
            )
            os._exit(3)
        applied.append(name)
    if applied:
        sys.stderr.write(f"what-if: applied {', '.join(applied)}\n")


apply()
