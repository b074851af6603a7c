"""What-if patches for bench/throughput.py --what-if (diagnostic only; never the shipped code).

Python imports `sitecustomize` at start when this folder is on PYTHONPATH; GenericDaemon puts
it there for the daemon it starts when asked, with DYNALAUNCHER_BENCH_PATCHES=name,name. Each
patch replaces one thing of `serv` at run time with a proposed change, so the figure of a
proposal can be measured before anyone edits serv/. Files under serv/ are not touched.

A requested patch that does not apply (serv/ changed under it, or an unknown name) stops the
daemon at once with a message on stderr, so the bench fails instead of silently measuring
the unpatched code. The daemon logs which patches it applied.

Earlier what-ifs are now the shipped code and were removed: `scan` and `children` (cheap
process scans, shipped in 48ab53a), `async-schedule`, `schedule-fast` and `group-commit`
(coalesced scheduling, planning window, grouped store writes, shipped in 773a3fe), and
`no-pin` (no taskset exec per job: 62b1853 pins through the spawning thread's mask). Their
figures are in docs/benchmarks/throughput.md's history.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

PATCHES = [p for p in os.environ.get("DYNALAUNCHER_BENCH_PATCHES", "").split(",") if p]
REGISTRY: dict[str, Callable[[], None]] = {}
SHIPPED = {
    "scan": "48ab53a",
    "children": "48ab53a",
    "async-schedule": "773a3fe",
    "schedule-fast": "773a3fe",
    "group-commit": "773a3fe",
    "no-pin": "62b1853",  # pinning by the spawning thread's mask: no taskset exec any more
}


def patch(fn: Callable[[], None]) -> Callable[[], None]:
    REGISTRY[fn.__name__.replace("_", "-")] = fn
    return fn


@patch
def switch() -> None:
    """CPython hands the GIL to a waiting thread only every switch interval (5 ms by
    default): a store or to_thread worker that wakes while the loop thread computes waits
    that long. 0.5 ms instead."""
    sys.setswitchinterval(0.0005)


@patch
def quiet_log() -> None:
    """No INFO lines from the job manager (the daemon ships at INFO: 2 lines per trivial
    job, written by the logging thread); its WARNINGs and every other logger are unchanged (the bench reads the daemon's
    URL from an INFO line). Measures what logging costs per job."""
    import logging

    import serv.job_manager

    logging.getLogger(serv.job_manager.__name__).setLevel(logging.WARNING)


@patch
def trace() -> None:
    """Not a fix: times the steps of a job's life inside the daemon (wall time per call; for
    coroutines from call to return, so waiting for the store thread, a pool thread or the
    GIL counts) and writes them as JSON to $DYNALAUNCHER_BENCH_TRACE at exit. Labels say
    where a step runs: loop (the event-loop thread), thread (asyncio.to_thread), tail thread
    (the job manager's tail pool), store thread. Steps that no longer exist under their name
    are skipped (listed under "missing"); "count:" entries hold sizes, not seconds."""
    import asyncio
    import atexit
    import functools
    import inspect
    import json
    import logging
    import time

    from websockets.asyncio.connection import Connection

    from serv import proctree, server, workdir
    from serv.batched import BatchedCalls
    from serv.job_manager import JobManager
    from serv.platform.forkserver import ForkServer
    from serv.platform import current
    from serv.store import repo

    times: dict[str, list[float]] = {}
    missing: list[str] = []

    def note(label: str, value: float) -> None:
        times.setdefault(label, []).append(value)

    def wrap(owner: Any, attr: str, label: str) -> None:
        raw = inspect.getattr_static(owner, attr, None)
        if raw is None:
            missing.append(label)
            return
        static = isinstance(raw, staticmethod)
        fn = raw.__func__ if static else getattr(owner, attr)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return await fn(*a, **k)
                finally:
                    note(label, time.perf_counter() - t)

            new: Any = awrapper
        else:

            @functools.wraps(fn)
            def wrapper(*a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    note(label, time.perf_counter() - t)

            new = wrapper
        setattr(owner, attr, staticmethod(new) if static else new)

    for name in ("schedule", "_start", "_finish", "_search_solver", "_solver_found", "_note_waiting"):
        wrap(JobManager, name, f"loop: JobManager.{name}")
    # (owner, attribute, label): every other step timed, where it runs.
    steps: list[tuple[Any, str, str]] = [
        (JobManager, "launch", "loop: JobManager.launch (await)"),
        (JobManager, "_move", "loop: JobManager._move (await commit)"),
        (ForkServer, "spawn", "loop: ForkServer.spawn (await the helper's reply)"),
        (ForkServer, "_readable", "loop: ForkServer._readable (helper messages)"),
        (BatchedCalls, "_run_batch", "thread: BatchedCalls batch (disk checks, end reads)"),
        (proctree, "find_solver", "thread: proctree.find_solver"),
        (JobManager, "_prepare_sync", "thread: JobManager._prepare_sync"),
        (JobManager, "_kill_tree_sync", "thread: JobManager._kill_tree_sync"),
        (JobManager, "_kill_tagged_sync", "thread: late sweep _kill_tagged_sync"),
        (current, "group_has_members", "loop: group_has_members"),
        (JobManager, "_collect_end_sync", "tail thread: _collect_end_sync"),
        (workdir, "newest_dump", "tail thread: workdir.newest_dump"),
        (repo.Store, "_write", "loop: Store._write (await)"),
        (repo.Store, "_flush_sync", "store thread: _flush_sync"),
        (repo.Store, "_run_writes", "store thread: _run_writes"),
        (server, "dispatch", "loop: server.dispatch (a request)"),
        (server.Hub, "job_changed", "loop: Hub.job_changed (json)"),
        (Connection, "send", "loop: websocket send (await)"),
    ]
    for owner, attr, label in steps:
        wrap(owner, attr, label)
    from serv import coalesce

    flush = coalesce.CoalescingTransport.flush

    def counted_flush(self: Any) -> None:
        if self._pending:
            note("count: frames per socket write", len(self._pending))
            t = time.perf_counter()
            flush(self)
            note("loop: socket write (CoalescingTransport.flush)", time.perf_counter() - t)

    coalesce.CoalescingTransport.flush = counted_flush  # type: ignore[method-assign]
    wrap(logging.Logger, "handle", "any: logging Logger.handle")
    legacy = sys.modules.get("serv.legacy.gateway")
    if legacy is None:
        import serv.legacy.gateway as legacy
    wrap(legacy.LegacyGateway, "job_changed", "loop: LegacyGateway.job_changed")

    run_writes = repo.Store._run_writes

    def counted(self: Any, writes: list[Any]) -> Any:
        note("count: writes per transaction", len(writes))
        return run_writes(self, writes)

    repo.Store._run_writes = counted  # type: ignore[method-assign]

    to_thread = asyncio.to_thread

    async def timed_to_thread(fn: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return await to_thread(fn, *a, **k)
        finally:
            note("loop: asyncio.to_thread round trip", time.perf_counter() - t)

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
            why = (
                f"is shipped in {SHIPPED[name]} (nothing to patch)"
                if name in SHIPPED
                else "is unknown"
            )
            sys.stderr.write(
                f"what-if: patch {name!r} {why}; known: {', '.join(REGISTRY)}\n"
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
