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
    "gc-freeze": "bc6d33b",  # what start made is frozen out of the cyclic collector's view
}


def patch(fn: Callable[[], None]) -> Callable[[], None]:
    REGISTRY[fn.__name__.replace("_", "-")] = fn
    return fn


@patch
def switch() -> None:
    """CPython hands the GIL to a waiting thread only every switch interval (5 ms by
    default): a store or to_thread worker that wakes while the loop thread computes waits
    that long. 0.5 ms instead, or $WHATIF_SWITCH_S."""
    sys.setswitchinterval(float(os.environ.get("WHATIF_SWITCH_S", "0.0005")))


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
    from serv.platform import current
    from serv.platform.forkserver import ForkServer
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
        if out and sys.argv[:1] != ["-c"]:  # not from the spawn helper (`python -c`)
            with open(out, "w") as f:
                json.dump({**times, "missing": missing}, f)

def replace_store_write(
    enqueue: Callable[[Any, Any, Any], bool], submit: Callable[[Any, Any], None]
) -> None:
    """serv's Store._write with the queueing changed: `enqueue(store, write, done)` queues
    under the store's guard and says whether it is the first of a group; `submit(store,
    loop)` then hands the group to the store thread."""
    import asyncio

    from serv.errors import StoreUnavailable
    from serv.store import repo

    async def _write(self: Any, write: Any) -> Any:
        if self._closed:
            raise StoreUnavailable(f"database {self._path} is closed")
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        with self._pending_guard:
            first = enqueue(self, write, done)
        if first:
            submit(self, loop)
        return await done

    repo.Store._write = _write



@patch
def store_linger() -> None:
    """The first write of a group is handed to the store thread a little later, not at once:
    $WHATIF_TURNS loop turns later (default 2), or $WHATIF_STORE_LINGER_S seconds when set.
    A job's end and the `starting` of the job planned into its cores (a few task steps
    later) would then share one transaction and one hop instead of waiting one behind the
    other."""
    import asyncio

    def kick(self: Any, loop: asyncio.AbstractEventLoop, turns: int) -> None:
        if turns:
            loop.call_soon(kick, self, loop, turns - 1)
        else:
            self._executor.submit(self._flush_sync, loop)

    def enqueue(self: Any, write: Any, done: Any) -> bool:
        self._pending.append((write, done))
        return len(self._pending) == 1

    def submit(self: Any, loop: asyncio.AbstractEventLoop) -> None:
        delay = float(os.environ.get("WHATIF_STORE_LINGER_S", "0"))
        if delay:
            loop.call_later(delay, kick, self, loop, 0)
        else:
            loop.call_soon(kick, self, loop, int(os.environ.get("WHATIF_TURNS", "2")) - 1)

    replace_store_write(enqueue, submit)


@patch
def cprofile() -> None:
    """Not a fix: the daemon's event-loop thread under cProfile (call counts and own times;
    the profiler roughly doubles Python's cost), written to $DYNALAUNCHER_BENCH_TRACE.prof."""
    import atexit
    import cProfile

    if sys.argv[:1] == ["-c"]:
        return  # the spawn helper
    prof = cProfile.Profile()
    prof.enable()

    @atexit.register
    def dump() -> None:
        prof.disable()
        out = os.environ.get("DYNALAUNCHER_BENCH_TRACE")
        if out:
            prof.dump_stats(out + ".prof")


@patch
def store_inline() -> None:
    """Not shippable (SQLite on the event loop): a job's writes run on the loop thread, so
    the store thread's GIL hand-offs (one per SQLite step) are gone. Measures what those
    hand-offs cost the chain."""
    from serv.store import repo

    async def _write(self: Any, write: Any) -> Any:
        self._run_writes([write])
        return write

    repo.Store._write = _write


@patch
def short_slice() -> None:
    """Every thread of the daemon and of its spawn helper asks the scheduler (EEVDF, Linux
    6.12+) for a short time slice ($WHATIF_SLICE_NS, default 0.1 ms) with reset-on-fork, so
    their wake-ups preempt sooner and their children (the jobs) keep the default."""
    import ctypes
    import threading

    class SchedAttr(ctypes.Structure):
        _fields_ = [
            ("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32), ("sched_flags", ctypes.c_uint64),
            ("sched_nice", ctypes.c_int32), ("sched_priority", ctypes.c_uint32),
            ("sched_runtime", ctypes.c_uint64), ("sched_deadline", ctypes.c_uint64),
            ("sched_period", ctypes.c_uint64), ("sched_util_min", ctypes.c_uint32),
            ("sched_util_max", ctypes.c_uint32),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    slice_ns = int(os.environ.get("WHATIF_SLICE_NS", "100000"))

    def set_slice() -> None:
        attr = SchedAttr(
            size=ctypes.sizeof(SchedAttr), sched_policy=0, sched_flags=1,
            sched_nice=os.getpriority(os.PRIO_PROCESS, 0), sched_runtime=slice_ns,
        )
        if libc.syscall(314, 0, ctypes.byref(attr), 0) != 0:
            raise OSError(ctypes.get_errno(), "sched_setattr")

    set_slice()
    bootstrap = threading.Thread._bootstrap_inner

    def bootstrap_inner(self: Any) -> None:
        set_slice()
        bootstrap(self)

    threading.Thread._bootstrap_inner = bootstrap_inner  # type: ignore[attr-defined]


@patch
def store_lanes() -> None:
    """The store thread writes the queued transitions of existing jobs (starts, ends) in a
    transaction of their own before the new jobs (a burst of launches): a start's commit
    then does not wait behind dozens of inserts. Per lane the order is kept; a job's
    transitions are only ever asked after its insert is done, so no order across lanes
    matters."""
    from serv.store import repo

    flush_sync = repo.Store._flush_sync

    def enqueue(self: Any, write: Any, done: Any) -> bool:
        if not hasattr(self, "_lanes"):
            self._lanes = ([], [])  # transitions, new jobs
        self._lanes[1 if write.new is not None else 0].append((write, done))
        return len(self._lanes[0]) + len(self._lanes[1]) == 1

    def submit(self: Any, loop: Any) -> None:
        self._executor.submit(lanes_flush, self, loop)

    def lanes_flush(self: Any, loop: Any) -> None:
        while True:
            with self._pending_guard:
                transitions, news = self._lanes
                if transitions:
                    self._pending, self._lanes = transitions, ([], news)
                elif news:
                    self._pending, self._lanes = news, ([], [])
                else:
                    return
            flush_sync(self, loop)

    replace_store_write(enqueue, submit)


@patch
def no_end_read() -> None:
    """Not shippable (output printed at the end would be lost): a job's end skips the tail
    thread's end read. The upper bound of what avoiding that hop could give."""
    from serv import job_manager

    class NoHop:
        async def run(self, key: str, fn: Any, job: Any, exit_info: Any) -> Any:
            return None, job_manager.OutputVerdict(), None, exit_info

    init = job_manager.JobManager.__init__

    def patched_init(self: Any, *a: Any, **k: Any) -> None:
        init(self, *a, **k)
        self._end_reads = NoHop()

    job_manager.JobManager.__init__ = patched_init  # type: ignore[method-assign]


@patch
def spin() -> None:
    """Not a fix: causal profiling by slowing one part down. Adds a busy wait of
    $WHATIF_SPIN_US microseconds per job to one place, $WHATIF_SPIN_AT: `loop` (the event
    loop, in a job's start), `helper` (the spawn helper, per spawn), `store` (the store
    thread, per transaction, holding the GIL). How much the rate falls says how much a
    cut of the same size there would give."""
    import time

    from serv.job_manager import JobManager
    from serv.platform import forkserver
    from serv.store import repo

    spin_s = float(os.environ.get("WHATIF_SPIN_US", "200")) / 1e6
    where = os.environ.get("WHATIF_SPIN_AT", "loop")

    def busy() -> None:
        end = time.perf_counter() + spin_s
        while time.perf_counter() < end:
            pass

    if where == "loop":
        start_booked = JobManager._start_booked

        async def slow_start_booked(self: Any, job_id: int) -> None:
            busy()
            await start_booked(self, job_id)

        JobManager._start_booked = slow_start_booked  # type: ignore[method-assign]
    elif where == "helper":
        handle = forkserver._handle

        def slow_handle(*a: Any) -> None:
            busy()
            handle(*a)

        forkserver._handle = slow_handle
    elif where == "store":
        run_writes = repo.Store._run_writes

        def slow_run_writes(self: Any, writes: Any) -> None:
            busy()
            run_writes(self, writes)

        repo.Store._run_writes = slow_run_writes  # type: ignore[method-assign]
    else:
        raise ValueError(f"WHATIF_SPIN_AT={where!r}: loop, helper or store")


@patch
def no_schedule() -> None:
    """Not a fix: queued jobs are never planned (nothing starts), so a burst of launches can
    be timed alone: `bench/throughput.py --launches-only` applies it (the normal run would
    wait for jobs that never start)."""
    from serv.job_manager import JobManager

    JobManager.request_schedule = lambda self: None  # type: ignore[method-assign]


@patch
def gc_stats() -> None:
    """Not a fix: the time Python's cyclic garbage collector takes in the daemon, per
    generation (collections and seconds), written to $DYNALAUNCHER_BENCH_TRACE.gc at exit."""
    import atexit
    import gc
    import json
    import time

    if sys.argv[:1] == ["-c"]:
        return  # the spawn helper
    spent: dict[str, list[float]] = {}
    began: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began.append(time.perf_counter())
        elif began:
            spent.setdefault(f"gen{info['generation']}", []).append(time.perf_counter() - began.pop())

    gc.callbacks.append(on_gc)

    @atexit.register
    def dump() -> None:
        out = os.environ.get("DYNALAUNCHER_BENCH_TRACE")
        if out:
            with open(out + ".gc", "w") as f:
                json.dump({k: [len(v), sum(v), max(v)] for k, v in spent.items()}, f)


@patch
def gc_threshold() -> None:
    """The cyclic collector's first-generation threshold at $WHATIF_GC_THRESHOLD (default
    10000; CPython's is 700) from the start: fewer young collections, each looking at more."""
    import gc

    gc.set_threshold(int(os.environ.get("WHATIF_GC_THRESHOLD", "10000")), *gc.get_threshold()[1:])


@patch
def helper_leaves() -> None:
    """The spawn helper, after starting a pinned job, moves itself off the job's cores
    (its mask becomes its own minus theirs, when anything is left) instead of taking its
    whole mask back while still running on the job's core: the job does not share that
    core with the helper's reply, create-time read and reaping right after its exec."""
    import contextlib
    from collections.abc import Iterator, Sequence

    from serv.platform import posix

    own = os.sched_getaffinity(0)

    @contextlib.contextmanager
    def thread_mask(cores: Sequence[int] | None) -> Iterator[None]:
        if not cores:
            yield
            return
        os.sched_setaffinity(0, cores)
        try:
            yield
        finally:
            os.sched_setaffinity(0, (own - set(cores)) or own)

    posix.thread_mask = thread_mask


@patch
def pin_after() -> None:
    """The spawn helper starts a job unpinned and pins it right after posix_spawn returns
    (os.sched_setaffinity on the child), instead of running on the job's cores itself for
    the moment of the spawn: the helper never moves. Not shippable as is: between the exec
    and the pinning the job runs unpinned for a few microseconds, and a child it forked in
    that window would stay unpinned."""
    from serv.platform import forkserver

    spawn_here = forkserver.spawn_here

    def pinned_after(request: Any, env: dict[str, str]) -> int:
        cores = request.cores
        pid = spawn_here(dataclasses.replace(request, cores=None), env)
        if cores and not request.nice:
            os.sched_setaffinity(pid, cores)
        return pid

    import dataclasses

    forkserver.spawn_here = pinned_after


@patch
def no_autocheckpoint() -> None:
    """The store's writer connection never checkpoints the WAL itself (`PRAGMA
    wal_autocheckpoint = 0`): the upper bound of moving checkpoints (a copy of the WAL into
    the database and two fsyncs, every 1,000 pages) off the commit path. Not shippable as
    is: the WAL would grow until the daemon stops."""
    from serv.store import repo

    run_writes = repo.Store._run_writes

    def writes_without_checkpoint(self: Any, writes: Any) -> None:
        if self._writer is None:
            self._writer = self._engine_or_raise().raw_connection()
            self._writer.driver_connection.execute("PRAGMA wal_autocheckpoint = 0")
        run_writes(self, writes)

    repo.Store._run_writes = writes_without_checkpoint  # type: ignore[method-assign]


@patch
def timeline() -> None:
    """Not a fix: the moments of each job's chain (booked start, each commit asked ">" and
    done "<", spawn asked and answered, exit seen, finish runs, end read on the tail thread),
    one perf_counter clock for all threads, written as JSON to $DYNALAUNCHER_BENCH_TRACE at
    exit under "timeline": {job id: {moment: seconds}}. Shows which link holds a core."""
    import atexit
    import functools
    import json
    import time

    from serv.core.states import JobStatus
    from serv.job_manager import JobManager
    from serv.platform import TAG_VAR
    from serv.platform.forkserver import ForkServer

    marks: dict[int, dict[str, float]] = {}

    def mark(job_id: int, what: str) -> None:
        marks.setdefault(job_id, {}).setdefault(what, time.perf_counter())

    start_booked = JobManager._start_booked

    async def timed_start_booked(self: Any, job_id: int) -> None:
        mark(job_id, "start")
        await start_booked(self, job_id)

    move = JobManager._move

    async def timed_move(self: Any, job: Any, status: Any, *a: Any, **k: Any) -> Any:
        name = "starting" if status is JobStatus.STARTING else (
            "end" if status.is_terminal else status.value)
        mark(job.id, f"commit {name}>")
        try:
            return await move(self, job, status, *a, **k)
        finally:
            mark(job.id, f"commit {name}<")

    spawn = ForkServer.spawn

    async def timed_spawn(self: Any, request: Any) -> Any:
        job_id = int(request.env[TAG_VAR].rsplit(":", 1)[1])
        mark(job_id, "spawn>")
        try:
            return await spawn(self, request)
        finally:
            mark(job_id, "spawn<")

    on_exit = JobManager._on_launcher_exit

    def timed_on_exit(self: Any, job_id: int, code: int | None = None) -> None:
        mark(job_id, "exit")
        on_exit(self, job_id, code)

    finish = JobManager._finish

    async def timed_finish(self: Any, job_id: int) -> None:
        mark(job_id, "finish")
        await finish(self, job_id)

    collect = JobManager._collect_end_sync

    def timed_collect(self: Any, job: Any, *a: Any) -> Any:
        mark(job.id, "read>")
        try:
            return collect(self, job, *a)
        finally:
            mark(job.id, "read<")

    # The spawn helper (serv.platform.forkserver, a `python -c` child of the daemon) runs
    # this too; its moments are its own, written beside the daemon's.
    from serv.platform import forkserver

    handle, spawn_here, create_time = forkserver._handle, forkserver.spawn_here, forkserver._create_time
    by_pid: dict[int, int] = {}

    def timed_handle(message: tuple[Any, ...], *a: Any) -> None:
        if message[0] == "spawn":
            mark(int(message[2].env[TAG_VAR].rsplit(":", 1)[1]), "h:got")
        handle(message, *a)

    def timed_spawn_here(request: Any, *a: Any) -> int:
        pid = spawn_here(request, *a)
        by_pid[pid] = job_id = int(request.env[TAG_VAR].rsplit(":", 1)[1])
        mark(job_id, "h:spawned")
        return pid

    def timed_create_time(pid: int) -> float | None:
        try:
            return create_time(pid)
        finally:
            if pid in by_pid:
                mark(by_pid[pid], "h:ctime")

    forkserver._handle = timed_handle
    forkserver.spawn_here = timed_spawn_here
    forkserver._create_time = timed_create_time
    from serv.store import repo

    flush_sync, run_writes = repo.Store._flush_sync, repo.Store._run_writes

    def ids_of(writes: list[Any]) -> list[int]:
        return [row["id"] for w in writes for row in w.rows if "id" in row]

    def timed_flush_sync(self: Any, loop: Any) -> None:
        with self._pending_guard:
            ids = ids_of([w for w, _done in self._pending])
        for job_id in ids:
            mark(job_id, "store thread runs")
        flush_sync(self, loop)

    def timed_run_writes(self: Any, writes: list[Any]) -> None:
        run_writes(self, writes)
        for job_id in ids_of(writes):
            mark(job_id, "store thread wrote")

    repo.Store._flush_sync = timed_flush_sync  # type: ignore[method-assign]
    repo.Store._run_writes = timed_run_writes  # type: ignore[method-assign]
    JobManager._start_booked = functools.wraps(start_booked)(timed_start_booked)  # type: ignore[method-assign]
    JobManager._move = functools.wraps(move)(timed_move)  # type: ignore[method-assign]
    ForkServer.spawn = functools.wraps(spawn)(timed_spawn)  # type: ignore[method-assign]
    JobManager._on_launcher_exit = functools.wraps(on_exit)(timed_on_exit)  # type: ignore[method-assign]
    JobManager._finish = functools.wraps(finish)(timed_finish)  # type: ignore[method-assign]
    JobManager._collect_end_sync = functools.wraps(collect)(timed_collect)  # type: ignore[method-assign]

    def dump() -> None:
        out = os.environ.get("DYNALAUNCHER_BENCH_TRACE")
        if out:
            with open(out, "w") as f:
                json.dump({"timeline": marks}, f)

    def dump_helper() -> None:
        out = os.environ.get("DYNALAUNCHER_BENCH_TRACE")
        if out and marks:
            with open(out + ".helper", "w") as f:
                json.dump(marks, f)

    # sys.argv is only certain at exit: the helper is `python -c`, the daemon launcher.py.
    atexit.register(lambda: (dump_helper if sys.argv[:1] == ["-c"] else dump)())


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
