"""JobManager: owns every live job on the event loop thread and carries out its lifecycle.

Only this class mutates jobs and the core allocator, and only on the loop thread. Each
change follows one path: compute the new record with `serv.core` (pure), commit it to the
store, keep it in memory, then announce it (`jobChanged`). A transition that was not
committed is never announced; progress and waiting reasons are news, announced at once and
written with a later commit. Blocking work (psutil scans, spawning, file reads) runs in threads;
threads only report facts back.

Per job, an asyncio.Lock serialises read-modify-write cycles, because a commit awaits the
store thread and another command could otherwise act on the stale record meanwhile.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import functools
import logging
import os
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Hashable, Iterable, Mapping, Sequence

import psutil

from serv import lstc, orphans, proctree, workdir
from serv.batched import BatchedCalls
from serv.config import Config, SolverProfile
from serv.core.cores import CoreAllocator
from serv.core.licenses import LicenseOverbooking, LicensePools
from serv.core.ending import ExitInfo, decide_ending
from serv.core.jobs import Job, JobSpec, ProcIdentity
from serv.core.queue import plan_admissions, queue_key, queue_order, reorder
from serv.core.recovery import Action, Observation, decide
from serv.core.states import JobStatus, Termination, transition
from serv.errors import (
    BackendDown,
    BadParam,
    ExceedsMachine,
    InputRejected,
    InvalidState,
    JobNotFound,
    StoreUnavailable,
    UnknownSolver,
)
from serv.listing import JobListing
from serv.logs import job_log
from serv.output import Tailer
from serv.platform import TAG_VAR, current
from serv.platform.forkserver import SpawnerLost
from serv.platform.spawn_request import SpawnRequest
from serv.platform.spawning import Launched, new_spawner
from serv.profiles import ResolvedProfile, resolve_profile
from serv.solvers import family_of
from serv.solvers.base import GracefulStop, LaunchContext, OutputVerdict
from serv.solvers.mpi import rank_signal
from serv.solvers.progress import DECK, STDOUT, OutputParser, Progress
from serv.store import Store

log = logging.getLogger(__name__)

S = JobStatus
# How long a job's end waits for its launcher (mpiexec) to exit after the solver died, so
# the launcher's exit code is known; MPICH exits ~10 ms after a rank dies (lab-findings §1a).
LAUNCHER_LINGER_S = 2.0
MAX_OUTPUT_PAGE = 1024 * 1024
MEMORY = re.compile(r"^\d+[kKmMgG]?$")
DUMP_NAME = re.compile(r"^d3dump\d+$|^runrsf$")
# Output is read every TAIL_INTERVAL_S: progress notifications stay at ≤ 2 per second per job.
TAIL_INTERVAL_S = 1.0
# Progress-only changes are announced at once but written to the store at most this often
# per job (a status change is always written first): progress is not what recovery needs,
# and a commit per job per tick was a fifth of the daemon's cost with hundreds of jobs.
PROGRESS_COMMIT_S = 10.0
TAIL_MAX_SKIP = 8
# A profile's executable is looked up on PATH at most this often: a launch should not pay
# for stat calls on every PATH folder, and a program removed meanwhile still fails the job
# at spawn time with the OS's reason.
RESOLVE_TTL_S = 5.0
# Planning looks at this many queued jobs, and further only while cores are free: a pass
# after every start and end must not cost O(queue length) with thousands queued.
PLAN_WINDOW = 64
DEEP_IN_QUEUE = f"queued behind {PLAN_WINDOW} or more jobs"
# Processes of ended jobs that left their process group (setsid) are looked for by tag in
# one scan for all jobs ended within this interval, not in one scan per job.
LATE_SWEEP_S = 1.0
OUTPUT_CHUNK = 64 * 1024
FIRST_LOOK_S = 0.004  # from a spawn to the first look for the solver under the launcher
QUIET_TRANSITIONS = frozenset({JobStatus.STARTING, JobStatus.RUNNING})


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """What exists for a live job only while the daemon runs (never persisted)."""

    child: Launched | None = None  # the launcher, when this daemon started it
    launcher: ProcIdentity | None = None
    launcher_exit: ExitInfo | None = None
    launcher_done: asyncio.Event = field(default_factory=asyncio.Event)
    handles: list[Any] = field(default_factory=list)
    search: asyncio.Task[None] | None = None
    search_soon: asyncio.TimerHandle | None = None  # the PID search, not begun yet
    stopper: asyncio.Task[None] | None = None
    ending: bool = False
    parser: OutputParser | None = None
    paused_since: float | None = None
    paused_total: float = 0.0
    shown: tuple[object, ...] | None = None
    tail_every: int = 1  # read this job's output every Nth tail tick (doubles while silent)
    progress_saved_at: float = 0.0  # monotonic time of the last progress commit
    setup: Callable[[], None] | None = None  # output set-up the tail thread still has to run

    def active_now(self) -> float:
        """Monotonic seconds that stop while the job is paused (ETAs exclude paused time)."""
        now = time.monotonic()
        paused = self.paused_total + (now - self.paused_since if self.paused_since is not None else 0.0)
        return now - paused


class JobManager:
    """The one owner of live jobs: launch, stop, watch, end, recover, schedule."""

    def __init__(
        self,
        config: Config,
        store: Store,
        allocator: CoreAllocator,
        *,
        on_job: Callable[[Job], None] = lambda job: None,
        on_cores: Callable[[], None] = lambda: None,
        on_output: Callable[[int, str], None] = lambda job_id, text: None,
    ) -> None:
        self._on_reconfigure: Callable[[Config], None] = lambda config: None
        self.config = config
        self.store = store
        self.allocator = allocator
        self.jobs: dict[int, Job] = {}
        self._rt: dict[int, Runtime] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._schedule_lock = asyncio.Lock()
        self._schedule_wanted = False
        self._resolved: dict[str, tuple[SolverProfile, float, ResolvedProfile]] = {}
        self._late_sweep: dict[str, float] = {}  # tag → the job's start (epoch seconds)
        self._demands: dict[int, tuple[object, SolverProfile | None, dict[str, int]]] = {}
        # Queued jobs in queue order, kept sorted as jobs come and go (bisect), with each
        # one's current key; `_with_after` are the queued jobs that wait for others.
        self._queue_index: list[tuple[tuple[int, float], int]] = []
        self._queue_keys: dict[int, tuple[int, float]] = {}
        self._with_after: set[int] = set()
        self._reserved: set[str] = set()
        self._workdirs: dict[str, int] = {}  # workdir → its live job (see _live_in)
        self._last_launch: dict[object, asyncio.Future[None]] = {}  # per client, see launch()
        self._disk_checks = BatchedCalls()
        # Jobs a planning pass booked cores and licences for, whose start is under way.
        self._booked: dict[int, tuple[tuple[int, ...], dict[str, int]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_job = on_job
        self._on_cores = on_cores
        self._on_output = on_output
        self._tailer = Tailer()
        self.listing = JobListing(store, self.jobs)
        # One thread reads every job's output and runs its parser: no thread per job.
        self._tail_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tail")
        # Ends that come together read their output in one visit to that thread.
        self._end_reads = BatchedCalls(self._tail_pool)
        # Launchers are started (and reaped) by a helper process where there is one: that
        # work is then off the daemon's GIL (serv.platform.forkserver).
        self._spawner = new_spawner()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.db_ok = True
        self.licences = LicensePools(config.licenses)
        self.licence_server_note: str | None = None
        self.tag_prefix = f"{store.daemon_id}:"
        self.started = time.monotonic()

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Re-adopt or end the jobs the store holds as live, then start queued work."""
        self._loop = asyncio.get_running_loop()
        await self.listing.load()
        await self._recover()
        await self.schedule()
        self._spawn(self._tail_loop(), "output tailing")
        if self.config.lstc is not None:
            self._spawn(self._poll_licence_server(), "licence server polling")

    async def close(self) -> None:
        """Stop watching; jobs keep running and are re-adopted at the next start."""
        for rt in self._rt.values():
            if rt.search_soon is not None:
                rt.search_soon.cancel()
            for handle in rt.handles:
                handle.cancel()
            rt.handles.clear()
            if rt.child is not None:
                rt.child.cancel()
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tail_pool.shutdown(wait=True)
        await self._spawner.close()
        self._tailer.close()  # the output files the tail thread kept open

    def _spawn(self, coro: Any, what: str) -> asyncio.Task[Any]:
        """Run `coro` as a detached task that logs its own failure (nothing awaits it)."""
        task = asyncio.get_running_loop().create_task(coro, name=what)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", what, exc_info=t.exception())

        task.add_done_callback(done)
        return task

    def _lock(self, job_id: int) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def _holding(self, job_ids: Iterable[int]) -> AsyncIterator[None]:
        """Hold the locks of several jobs, taken in id order so two holders never deadlock."""
        locks = [self._lock(job_id) for job_id in sorted(set(job_ids))]
        taken: list[asyncio.Lock] = []
        try:
            for lock in locks:
                await lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in taken:
                lock.release()

    # ----------------------------------------------------------------- persistence

    async def _save(self, job: Job, previous: JobStatus | None = None) -> Job:
        """Commit `job`, then keep it and announce it. Raises StoreUnavailable when the commit
        fails, in which case nothing is announced and memory keeps the old record."""
        try:
            await self.store.commit(job, previous=previous)
        except StoreUnavailable:
            self.db_ok = False
            raise
        self.db_ok = True
        if job.status.is_live:
            self.jobs[job.id] = job
        else:
            self.jobs.pop(job.id, None)
            if self._workdirs.get(job.workdir) == job.id:
                del self._workdirs[job.workdir]
            self._locks.pop(job.id, None)
            self._demands.pop(job.id, None)
        self._announce(job)
        return job

    def _keep_live(self, job: Job) -> None:
        """A live job enters memory (created, or re-adopted at start)."""
        self.jobs[job.id] = job
        self._workdirs[job.workdir] = job.id

    def _live_in(self, workdir: str) -> Job | None:
        """The live job in `workdir`, if any (one lookup, not a scan of every live job)."""
        job = self.jobs.get(self._workdirs.get(workdir, -1))
        return job if job is not None and job.workdir == workdir else None

    def _announce(self, job: Job) -> None:
        """Tell the listing, then the subscribers, about a committed record."""
        self._index_queue(job)
        self.listing.saw(job)
        self._on_job(job)

    def _index_queue(self, job: Job) -> None:
        """Keep the queue index in step with `job`'s record."""
        old = self._queue_keys.get(job.id)
        new = queue_key(job) if job.status is S.QUEUED else None
        if old == new:
            return
        if old is not None:
            at = bisect.bisect_left(self._queue_index, (old, job.id))
            del self._queue_index[at]
            del self._queue_keys[job.id]
            self._with_after.discard(job.id)
        if new is not None:
            bisect.insort(self._queue_index, (new, job.id))
            self._queue_keys[job.id] = new
            if job.after:
                self._with_after.add(job.id)

    async def _move(self, job: Job, to: JobStatus, message: str | None = None, **changes: Any) -> Job:
        moved = transition(job, to, at=utcnow(), message=message, **changes)
        # A start and a found solver have lines of their own with more to say.
        level = logging.DEBUG if to in QUIET_TRANSITIONS else logging.INFO
        if log.isEnabledFor(level):
            job_log(log, job.id).log(level, "%s → %s%s", job.status, to, f" ({moved.message})" if moved.message else "")
        return await self._save(moved, previous=job.status)

    # ----------------------------------------------------------------- queries

    async def get(self, job_id: int) -> Job:
        """The job with `job_id`; raises JobNotFound (1001)."""
        job = self.jobs.get(job_id)
        if job is not None:
            return job
        stored = await self.store.get(job_id)
        if stored is None:
            raise JobNotFound(f"job {job_id} not found")
        return stored

    def wire(self, job: Job) -> dict[str, Any]:
        """The contract's wire form of `job` (see serv.listing)."""
        return self.listing.wire(job)

    async def list_wire(self, status: JobStatus | None, limit: int) -> list[dict[str, Any]]:
        """listJobs' answer (see serv.listing)."""
        return await self.listing.list_wire(status, limit)

    # ----------------------------------------------------------------- launch

    def _profile(self, name: str) -> SolverProfile:
        profile = self.config.solvers.get(name)
        if profile is None:
            known = ", ".join(sorted(self.config.solvers)) or "none"
            raise UnknownSolver(f"param 'solver': unknown solver profile {name!r}; configured: {known}")
        return profile

    def cores_of(self, job: Job) -> int:
        """Cores `job` books: its ncpu, or 0 when its profile books none."""
        profile = self.config.solvers.get(job.solver)
        return job.ncpu if profile is None or profile.book_cores else 0

    def demand(self, job: Job) -> dict[str, int]:
        """The licences `job` takes: its own `licenses` param, else its profile's default
        (LS-DYNA: one `lsdyna` licence per core)."""
        if job.licenses is not None:
            return {pool: count for pool, count in job.licenses if count}
        profile = self.config.solvers.get(job.solver)
        if profile is not None:
            return {pool: count for pool, count in profile.licenses_for(job.ncpu) if count}
        return {"lsdyna": job.ncpu} if job.family == "lsdyna" else {}

    def _check_input(self, raw: str) -> Path:
        path = Path(raw)
        if not path.is_absolute():
            raise InputRejected(f"param 'input': {raw!r} must be an absolute path")
        roots = self.config.jobs.allowed_roots
        resolved = path.resolve()
        if roots and not any(proctree.within(str(resolved), root) for root in roots):
            allowed = ", ".join(str(r) for r in roots)
            raise InputRejected(f"param 'input': {raw!r} is outside the allowed roots ({allowed})")
        try:
            mode = os.stat(resolved).st_mode  # one call for "exists" and "is a file"
        except (FileNotFoundError, NotADirectoryError):
            raise InputRejected(f"param 'input': {raw!r} does not exist") from None
        except OSError as exc:
            raise InputRejected(f"param 'input': {raw!r} cannot be read: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise InputRejected(f"param 'input': {raw!r} is not a file")
        return path

    async def launch(
        self,
        *,
        solver: str,
        input: str,
        ncpu: int = 1,
        memory: str | None = None,
        args: Sequence[str] = (),
        name: str | None = None,
        priority: int = 0,
        nice: int = 0,
        restart: str | None = None,
        backend: str = "local",
        licenses: Mapping[str, int] | None = None,
        after: Sequence[int] = (),
        extra: Mapping[str, object] | None = None,
        wait_start: bool = False,
        order: object | None = None,
    ) -> Job:
        """Validate a launch request, queue the job, and start it when it fits.

        `extra` is kept with the job (JSON-safe data of the client that launched it, e.g.
        the legacy GUI's own command text). Returns the queued job at once; with
        `wait_start`, after a planning pass has started it or said why it waits. Launches
        given the same `order` (a client connection) become jobs in the order they were
        made, even when they overlap; others do not wait for them.

        Raises UnknownSolver (1003), InputRejected (1004), ExceedsMachine (1005),
        BackendDown (1006), InvalidState (1002, a live job in the same workdir), BadParam.
        Nothing is created when it raises.
        """
        # Launches overlap (a client's pipelined requests are handled at once), but one
        # client's jobs are created in the order it sent them: ids and the queue order of
        # equal priorities follow the order a script submitted its load cases in. Only per
        # client: a launch stuck on a slow network drive holds up no one else's.
        key = order if order is not None else object()
        previous, turn = self._last_launch.get(key), asyncio.get_running_loop().create_future()
        self._last_launch[key] = turn
        try:
            return await self._launch(
                key, previous, turn, solver=solver, input=input, ncpu=ncpu, memory=memory, args=args,
                name=name, priority=priority, nice=nice, restart=restart, backend=backend,
                licenses=licenses, after=after, extra=extra, wait_start=wait_start,
            )
        finally:
            if not turn.done():
                turn.set_result(None)
            if self._last_launch.get(key) is turn:
                del self._last_launch[key]

    async def _launch(
        self,
        key: Hashable,
        previous: asyncio.Future[None] | None,
        turn: asyncio.Future[None],
        *,
        solver: str,
        input: str,
        ncpu: int,
        memory: str | None,
        args: Sequence[str],
        name: str | None,
        priority: int,
        nice: int,
        restart: str | None,
        backend: str,
        licenses: Mapping[str, int] | None,
        after: Sequence[int],
        extra: Mapping[str, object] | None,
        wait_start: bool,
    ) -> Job:
        """launch, once `previous` (the same client's launch made before it) has created
        its job or failed; sets `turn` as soon as this one's job is on its way to the store."""
        profile = self._profile(solver)
        family = family_of(profile.family)
        if restart is not None and not DUMP_NAME.match(restart):
            raise BadParam(f"param 'restart': {restart!r} is not a restart dump name like d3dump01")
        # One thread hop for everything that touches the disk, shared with the same
        # client's launches made meanwhile (serv.batched).
        resolved, path = await self._disk_checks.run(key, self._prepare_sync, profile, input, restart)
        if previous is not None:
            await asyncio.shield(previous)  # this launch's cancellation must not cancel it
        if profile.book_cores and ncpu > self.allocator.usable_count:
            raise ExceedsMachine(
                f"param 'ncpu': {ncpu} exceeds the {self.allocator.usable_count} usable cores"
            )
        if memory is not None and not MEMORY.match(memory):
            raise BadParam(f"param 'memory': {memory!r} is not a size like 2000m or 500000000")
        family.validate_args(args)
        folder = path.parent
        if backend != "local":
            raise BackendDown(f"param 'backend': backend {backend!r} is not available on this daemon")
        pools = dict(licenses or {})
        for pool in pools:
            if pool not in self.config.licenses and self.licences.capacity(pool) is None:
                raise ExceedsMachine(f"param 'licenses': licence pool {pool!r} is not configured")
        demand = pools if licenses is not None else {
            pool: count for pool, count in profile.licenses_for(ncpu) if count
        }
        self.licences.check_fits(demand, "licenses" if licenses is not None else "ncpu")
        for dep in after:
            await self.get(dep)
        workdir_key = str(folder)
        busy = self._live_in(workdir_key)
        if busy is None and workdir_key in self._reserved:
            raise InvalidState(f"param 'input': workdir {workdir_key} has a launch in progress")
        if busy is not None:
            raise InvalidState(
                f"param 'input': workdir {workdir_key} already has live job {busy.id} ({busy.status})"
            )
        spec = JobSpec(
            solver=solver,
            family=profile.family,
            input=str(path),
            workdir=workdir_key,
            ncpu=ncpu,
            memory=memory,
            args=tuple(args),
            name=name,
            priority=priority,
            nice=nice,
            restart=restart,
            backend=backend,
            licenses=tuple(sorted(pools.items())) if licenses is not None else None,
            after=tuple(after),
        )
        # Reserve the workdir before awaiting the store, so two concurrent launches in one
        # folder cannot both pass the check above.
        self._reserved.add(workdir_key)
        # The next launch may go on: the store writes in the order it is asked, and this
        # job's write is queued in this same step (its waiter runs in a later one).
        if not turn.done():
            turn.set_result(None)
        try:
            # Planning looks only so deep (PLAN_WINDOW): a job that lands behind that many
            # says so until a pass reaches it and names what it waits for.
            job = await self.store.create(
                spec, at=utcnow(), extra={**(extra or {}), "process_names": list(profile.process_names)},
                message=DEEP_IN_QUEUE if len(self._queue_index) >= PLAN_WINDOW else "",
            )
        except StoreUnavailable:
            self.db_ok = False
            raise
        finally:
            self._reserved.discard(workdir_key)
        self.db_ok = True
        self._keep_live(job)
        # DEBUG: the start and the end of every job have INFO lines; a script queueing 200
        # load cases would double the log with lines the job table already holds.
        job_log(log, job.id).debug(
            "queued: %s %s ncpu=%d in %s", solver, path.name, ncpu, workdir_key
        )
        self._announce(job)
        if wait_start:
            await self.schedule()
            return self.jobs.get(job.id, job)
        # The answer does not wait for the start: the queue is planned once for however
        # many launches arrive together (a script submitting 200 load cases).
        self.request_schedule()
        return job

    def _prepare_sync(
        self, profile: SolverProfile, raw_input: str, restart: str | None
    ) -> tuple[ResolvedProfile, Path]:
        """Thread: the profile's programs found, the input checked, the restart dump found.
        Raises UnknownSolver, InputRejected."""
        resolved = self._resolve_sync(profile)
        if not resolved.available:
            raise UnknownSolver(f"solver profile {profile.name!r} is unavailable: {resolved.reason}")
        path = self._check_input(raw_input)
        if restart is not None and not (path.parent / restart).is_file():
            raise InputRejected(f"param 'restart': {restart!r} not found in {path.parent}")
        return resolved, path

    def _resolve_sync(self, profile: SolverProfile) -> ResolvedProfile:
        """Thread: `resolve_profile`, remembered for RESOLVE_TTL_S per profile (a reloaded
        profile is a new object and is looked up afresh)."""
        known = self._resolved_now(profile)
        if known is not None:
            return known
        resolved = resolve_profile(profile)
        self._resolved[profile.name] = (profile, time.monotonic(), resolved)
        return resolved

    # ----------------------------------------------------------------- scheduling

    def request_schedule(self) -> None:
        """Plan the queue soon: once for all the events of this loop turn, in a task of its
        own, so that whoever frees or adds work does not wait for the starts it allows."""
        if self._schedule_wanted:
            return
        self._schedule_wanted = True

        async def run() -> None:
            self._schedule_wanted = False
            await self.schedule(wait=False)

        self._spawn(run(), "schedule")

    async def schedule(self, *, wait: bool = True) -> None:
        """Start every queued job that fits now, in queue order; record why the rest wait.
        Runs after every event that frees or books resources, never on a poll.

        Looks at the first PLAN_WINDOW queued jobs, and further only while cores are free
        (serv.core.queue); the others keep the reason they had (DEEP_IN_QUEUE from their
        launch). A pass books cores and licences at once and hands each start (its commit and
        spawn) to a task of its own, so starts overlap and a core freed meanwhile is planned
        again without waiting for them; with `wait`, it returns once they are done."""
        starts: list[asyncio.Task[None]] = []
        async with self._schedule_lock:
            blocked = set()
            for job_id in sorted(self._with_after):
                job = self.jobs.get(job_id)
                if job is not None and job.status is S.QUEUED and await self._dependency_block(job) is not None:
                    blocked.add(job_id)
            pools = self.licences.limited_pools()
            # Consumed lazily and synchronously (no await inside): planning stops early in a
            # long queue, and nothing changes the index meanwhile.
            plan = plan_admissions(
                (
                    self.jobs[job_id] for _key, job_id in self._queue_index
                    if job_id not in blocked and job_id not in self._booked
                ),
                self.allocator.free_count(),
                {pool: self.licences.free(pool) for pool in pools},
                self._demand_of,
                self.cores_of,
                window=PLAN_WINDOW,
                in_order=True,
            )
            booked = [job_id for job_id in plan.start if self._book(self.jobs[job_id])]
            # A profile not looked up lately is looked up here, once for all its jobs, so
            # that the starts reach the store in queue order (each task commits at once).
            stale = {
                profile.name: profile
                for profile in (self.config.solvers.get(self.jobs[j].solver) for j in booked)
                if profile is not None and self._resolved_now(profile) is None
            }
            for profile in stale.values():
                await asyncio.to_thread(self._resolve_sync, profile)
            for job_id in booked:
                starts.append(self._spawn(self._start(job_id), f"job {job_id} start"))
            for job_id, why in plan.waiting.items():
                known = self.jobs.get(job_id)
                if known is not None and known.message != why:
                    self._note_waiting(job_id, why)
        if wait and starts:
            # Their failures are logged by _spawn; the caller wants the outcome, not them.
            await asyncio.wait(starts)

    def _book(self, job: Job) -> bool:
        """Book `job`'s cores and licences for its start (kept in `_booked` until `_start`
        takes them); False when they are not to be had after all."""
        profile = self.config.solvers.get(job.solver)
        books = profile.book_cores if profile is not None else True
        cores = self.allocator.allocate(job.id, job.ncpu) if books else ()
        if cores is None:
            return False
        try:
            taken = self.licences.take(job.id, self.demand(job))
        except LicenseOverbooking as exc:
            job_log(log, job.id).warning("not started: %s", exc)
            self.allocator.release(job.id)
            return False
        self._booked[job.id] = (tuple(cores), taken)
        return True

    def _unbook(self, job_id: int) -> None:
        self.allocator.release(job_id)
        self.licences.release(job_id)

    def _demand_of(self, job: Job) -> dict[str, int]:
        """`demand(job)`, remembered while the job and its profile stay the same: a queue
        of a thousand jobs is planned after every start and end."""
        profile = self.config.solvers.get(job.solver)
        known = self._demands.get(job.id)
        # A reloaded profile is a new object: identity, not equality, is the cheap test.
        if known is not None and known[0] == (job.ncpu, job.licenses, job.solver) and known[1] is profile:
            return known[2]
        need = self.demand(job)
        self._demands[job.id] = ((job.ncpu, job.licenses, job.solver), profile, need)
        return need

    async def _dependency_block(self, job: Job) -> str | None:
        """None when `job` may start as far as its `after` list goes; else why it waits.
        A dependency that ended other than `finished` cancels the job."""
        for dep_id in job.after:
            dep = self.jobs.get(dep_id) or await self.store.get(dep_id)
            if dep is None or (dep.status.is_terminal and dep.status is not S.FINISHED):
                state = "missing" if dep is None else dep.status
                async with self._lock(job.id):
                    current_job = self.jobs.get(job.id)
                    if current_job is not None and current_job.status is S.QUEUED:
                        await self._move(
                            current_job, S.CANCELLED, f"dependency job {dep_id} ended {state}"
                        )
                return "cancelled"
            if dep.status is not S.FINISHED:
                self._note_waiting(job.id, f"waiting for job {dep_id}")
                return "waiting"
        return None

    def _note_waiting(self, job_id: int, why: str) -> None:
        """Say why a queued job waits: kept in memory and announced, but not committed.

        Like progress, a waiting reason is news, not state: recovery does not read it (the
        first planning pass after a start says it again), and a commit for it was a fourth
        of the store's writes per job in a long queue. The job's next commit carries it."""
        job = self.jobs.get(job_id)
        if job is None or job.status is not S.QUEUED or job.message == why:
            return
        job = job.evolve(message=why)
        self.jobs[job_id] = job
        self._announce(job)

    async def _start(self, job_id: int) -> None:
        """Commit the start of a job booked by `_book`, spawn the launcher detached in the
        workdir, start the PID search."""
        replan = True
        try:
            await self._start_booked(job_id)
        except StoreUnavailable:
            replan = False  # planning again at once would only hit the failing store again
            raise
        finally:
            if self._booked.pop(job_id, None) is not None:
                # Not started (changed meanwhile, or failed before its commit): whatever it
                # booked is free again, and the queue is planned with it.
                self._unbook(job_id)
                if replan:
                    self.request_schedule()

    async def _start_booked(self, job_id: int) -> None:
        jlog = job_log(log, job_id)
        async with self._lock(job_id):
            job = self.jobs.get(job_id)
            if job is None or job.status is not S.QUEUED:
                return
            cores, taken = self._booked[job_id]
            if cores and len(cores) != job.ncpu:
                return  # resized while it waited for its lock: planned again
            profile = self.config.solvers.get(job.solver)
            booked = f"cores {list(cores)}" + (f", licences {taken}" if taken else "")
            family = family_of(job.family)
            resolved = self._resolved_now(profile)
            if resolved is None and profile is not None:
                resolved = await asyncio.to_thread(self._resolve_sync, profile)
            pin = self._pinning_enabled(profile)
            ctx = LaunchContext(
                executable=resolved.executable if resolved and resolved.executable else Path(job.solver),
                mpiexec=resolved.mpiexec if resolved else None,
                mpi=str(profile.mpi) if profile else "none",
                cores=(cores or None) if pin else None,
                intel_mpi_pinning=self.config.cores.intel_mpi_pinning,
                extra_args=profile.extra_args if profile else (),
            )
            plan = family.plan(job, ctx)
            # The spawn and the commit of `starting` run at once: the launcher's start no
            # longer waits for the store (bench/throughput.py: +2-8 % jobs/s). What makes it
            # safe is the tag: a launcher whose start was never recorded carries the tag of
            # a job still `queued`, and nothing else can (no job goes back to `queued`). If
            # the commit fails, the launcher is killed by that tag here; if the daemon dies
            # first, recovery kills it (serv.core.recovery: a queued job's leftovers).
            folder = Path(job.workdir)
            spawn: asyncio.Future[Launched] | None = None
            if resolved is not None and resolved.available:
                spawn = asyncio.ensure_future(self._spawner.spawn(SpawnRequest(
                    tuple(plan.argv), folder, folder / "stdout",
                    env={**plan.env, TAG_VAR: self.tag_prefix + str(job_id)},
                    cores=(tuple(cores) or None) if pin else None, nice=job.nice,
                )))
            try:
                job = await self._move(
                    job, S.STARTING, "starting", allocated_cores=cores or None, command=plan.argv
                )
            except BaseException:
                # Not recorded, so not started: the job stays queued (and _start frees
                # what it booked), and whatever the spawn started is killed.
                if spawn is not None:
                    await asyncio.shield(self._undo_spawn(job_id, spawn))
                raise
            del self._booked[job_id]  # the job holds them now; its end frees them
            self._on_cores()
            if spawn is None:
                why = resolved.reason if resolved else f"solver profile {job.solver!r} no longer exists"
                await self._fail_start(job, f"could not start: {why}")
                return
            try:
                child = await spawn
            except SpawnerLost as exc:
                # The launcher may have started before the helper died: its tag finds it.
                await self._fail_start(job, f"could not start {plan.argv[0]}: {exc}")
                self._sweep_later(job)
                return
            except OSError as exc:
                await self._fail_start(job, f"could not start {plan.argv[0]}: {exc}")
                return
            rt = self._rt.setdefault(job_id, Runtime())
            rt.child = child
            launcher = ProcIdentity(child.pid, child.create_time) if child.create_time is not None else None
            rt.launcher = launcher
            jlog.info("spawned launcher pid %d on %s: %s", child.pid, booked, " ".join(plan.argv))
            if launcher is not None:
                # Kept in memory and written with the next transition (running, or the end):
                # recovery finds the launcher by its tag, so it needs no commit of its own.
                job = job.evolve(
                    launcher_pid=launcher.pid, launcher_create_time=launcher.create_time
                )
                self.jobs[job_id] = job
            child.watch(functools.partial(self._on_launcher_exit, job_id))
            self._begin_output(job)
            self._search_soon(job_id, child.pid)

    async def _undo_spawn(self, job_id: int, spawn: asyncio.Future[Launched]) -> None:
        """Kill what a spawn started for a job whose start was not recorded."""
        try:
            child: Launched | None = await spawn
        except (OSError, SpawnerLost):
            child = None  # nothing started, or a lost helper may have: the tag finds it
        if child is not None:
            child.watch(lambda _code: None)  # reaped when it ends; nothing else to do
        roots = [] if child is None or child.create_time is None else [
            ProcIdentity(child.pid, child.create_time)
        ]
        tag = self.tag_prefix + str(job_id)
        since = time.time() - 2.0  # psutil's create times may be off by up to a second
        killed = await asyncio.to_thread(
            lambda: proctree.signal_all(proctree.job_tree(tag, roots, since), current.KILL)
        )
        job_log(log, job_id).warning(
            "start not recorded; killed what its spawn started: %s", killed or "nothing"
        )

    def _resolved_now(self, profile: SolverProfile | None) -> ResolvedProfile | None:
        """The remembered lookup of `profile` when still fresh (no thread hop), else None."""
        if profile is None:
            return None
        known = self._resolved.get(profile.name)
        if known is not None and known[0] is profile and time.monotonic() - known[1] < RESOLVE_TTL_S:
            return known[2]
        return None

    def _pinning_enabled(self, profile: SolverProfile | None) -> bool:
        if not self.config.cores.pin or (profile is not None and not profile.book_cores):
            return False
        # Legacy --noIntelMpiCoreAllocation: Intel MPI jobs keep Intel MPI's own pinning.
        return not (profile and str(profile.mpi) == "intelmpi" and not self.config.cores.intel_mpi_pinning)

    async def _fail_start(self, job: Job, message: str) -> None:
        self.allocator.release(job.id)
        self.licences.release(job.id)
        self._on_cores()
        job_log(log, job.id).error("%s", message)
        await self._move(job, S.FAILED, message)
        self.request_schedule()

    # ----------------------------------------------------------------- real PID

    def _search_soon(self, job_id: int, launcher_pid: int) -> None:
        """Start the PID search after FIRST_LOOK_S: before that the launcher has rarely exec'd
        the solver, and a job that ends meanwhile needs no search (nor a task) at all."""
        assert self._loop is not None
        rt = self._rt[job_id]
        begun = self._loop.time()

        def begin() -> None:
            rt.search_soon = None
            if not rt.ending:
                rt.search = self._spawn(self._search_solver(job_id, launcher_pid, begun), f"job {job_id} pid search")

        rt.search_soon = self._loop.call_later(FIRST_LOOK_S, begin)

    async def _search_solver(self, job_id: int, launcher_pid: int, begun: float | None = None) -> None:
        """Find the solver under the launcher: at once, then every few ms with backoff, up to
        `jobs.pid_search_s` after `begun` (default now); then fall back to the launcher's
        PID with a WARNING."""
        loop = asyncio.get_running_loop()
        names = self._process_names(job_id)
        begun = loop.time() if begun is None else begun
        deadline = begun + self.config.jobs.pid_search_s
        delay = 0.002
        rt = self._rt[job_id]
        while not rt.ending:
            found = await asyncio.to_thread(proctree.find_solver, launcher_pid, names)
            if found is not None:
                await self._solver_found(job_id, found, loop.time() - begun)
                return
            if loop.time() >= deadline:
                tree = await asyncio.to_thread(proctree.describe_tree, launcher_pid)
                job_log(log, job_id).warning(
                    "no process named like %s after %.1f s; tree: %s; using launcher pid %d",
                    names, loop.time() - begun, tree, launcher_pid,
                )
                if rt.launcher is not None:
                    await self._solver_found(job_id, rt.launcher, loop.time() - begun)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    def _process_names(self, job_id: int) -> list[str]:
        job = self.jobs[job_id]
        names = job.extra.get("process_names")
        if isinstance(names, list) and names:
            return [str(n) for n in names]
        profile = self.config.solvers.get(job.solver)
        return list(profile.process_names) if profile else []

    async def _solver_found(self, job_id: int, solver: ProcIdentity, waited: float) -> None:
        rt = self._rt[job_id]
        async with self._lock(job_id):
            job = self.jobs.get(job_id)
            if job is None or rt.ending or not job.status.has_process:
                return
            # The pid file is on disk before anyone hears the job is running.
            await asyncio.to_thread(workdir.write_pid_file, Path(job.workdir), solver.pid, job.allocated_cores)
            found = job.evolve(pid=solver.pid, pid_create_time=solver.create_time)
            if job.status is S.STARTING:
                job = await self._move(found, S.RUNNING, f"solver pid {solver.pid}")
            else:
                job = await self._save(found)
            job_log(log, job_id).info("solver pid %d found after %.3f s", solver.pid, waited)
        if rt.launcher is None or solver.pid != rt.launcher.pid:
            self._watch_identity(job_id, solver, self._on_solver_exit)
        job = self.jobs.get(job_id)
        if job is not None and job.nice:
            # Ranks started before the launcher's I/O priority was set get it here.
            procs = await asyncio.to_thread(self._tree_sync, job)
            await asyncio.to_thread(current.apply_priority, [p.pid for p in procs], job.nice)

    # ----------------------------------------------------------------- exits

    def _watch(self, job_id: int, pid: int, callback: Callable[[int], None]) -> None:
        assert self._loop is not None
        handle = current.open_exit_handle(self._loop, pid, lambda: callback(job_id))
        if handle is None:
            self._loop.call_soon(callback, job_id)
        else:
            self._rt[job_id].handles.append(handle)

    def _watch_identity(self, job_id: int, ident: ProcIdentity, callback: Callable[[int], None]) -> None:
        """Watch a process we did not start; re-check its identity after opening the handle
        so that a PID recycled in between is never watched in its place."""
        self._watch(job_id, ident.pid, callback)
        if not proctree.is_alive(ident):
            assert self._loop is not None
            self._loop.call_soon(callback, job_id)

    def _on_launcher_exit(self, job_id: int, code: int | None = None) -> None:
        """The launcher has ended; `code` is its exit code when this daemon started it and
        learnt it (not for a re-adopted launcher, nor after the spawn helper was lost)."""
        rt = self._rt.get(job_id)
        if rt is None:
            return
        if rt.child is not None and code is not None and rt.launcher_exit is None:
            job = self.jobs.get(job_id)
            solver_is_launcher = job is None or job.pid is None or job.pid == rt.child.pid
            rt.launcher_exit = (
                ExitInfo(signal=-code, solver_reaped=solver_is_launcher)
                if code < 0
                else ExitInfo(code=code, solver_reaped=solver_is_launcher)
            )
            # The job's end names a failing code; a clean exit is routine (one line less per job).
            job_log(log, job_id).log(
                logging.INFO if code else logging.DEBUG, "launcher pid %d exited with %d", rt.child.pid, code
            )
        rt.launcher_done.set()
        job = self.jobs.get(job_id)
        if job is not None and (job.pid is None or rt.launcher is None or job.pid == rt.launcher.pid):
            self._on_solver_exit(job_id)

    def _on_solver_exit(self, job_id: int) -> None:
        """Called from a pidfd (at once) or the watchdog (its next tick); idempotent."""
        rt = self._rt.get(job_id)
        if rt is None or rt.ending or job_id not in self.jobs:
            return
        rt.ending = True
        self._spawn(self._finish(job_id), f"job {job_id} end")

    async def _finish(self, job_id: int) -> None:
        """The solver is gone: collect the launcher's exit, kill what is left of the tree,
        read the verdict from the output, end the job, free its cores, schedule."""
        rt = self._rt[job_id]
        jlog = job_log(log, job_id)
        if rt.search_soon is not None:
            rt.search_soon.cancel()
        for task in (rt.search, rt.stopper):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if rt.child is not None and not rt.launcher_done.is_set():
            try:
                await asyncio.wait_for(rt.launcher_done.wait(), LAUNCHER_LINGER_S)
            except TimeoutError:
                jlog.warning("launcher pid %d still running after its solver ended", rt.child.pid)
        job = self.jobs[job_id]
        if self._needs_sweep(job, rt):
            leftovers = await asyncio.to_thread(self._kill_tree_sync, job)
        else:
            leftovers = []
            self._sweep_later(job)
        if leftovers:
            jlog.warning("killed %d leftover processes of the job: %s", len(leftovers), leftovers)
            if rt.child is not None and not rt.launcher_done.is_set():
                try:
                    await asyncio.wait_for(rt.launcher_done.wait(), LAUNCHER_LINGER_S)
                except TimeoutError:
                    jlog.error("launcher pid %d survived SIGKILL", rt.child.pid)
        snap, verdict, dump, exit_info = await self._end_reads.run(
            "ends", self._collect_end_sync, job, rt.launcher_exit
        )
        for handle in rt.handles:
            handle.cancel()
        rt.handles.clear()
        if rt.child is not None:
            rt.child.cancel()
        async with self._lock(job_id):
            job = self.jobs[job_id]
            # Rows from schema 0001 carry no requester, but only a user's stop leads to `stopping`.
            requester = job.stop_requested_by or ("user" if job.status is S.STOPPING else None)
            ending = decide_ending(
                termination=verdict.termination,
                stop_requested_by=requester,
                exit=exit_info,
                requires_banner=family_of(job.family).requires_banner,
                restart_dump=dump,
                failure_text=verdict.failure_text,
            )
            self.allocator.release(job_id)
            self.licences.release(job_id)
            if snap is not None:
                job = apply_progress(job, snap)
                if ending.status is S.FINISHED and job.progress is not None:
                    job = job.evolve(progress=100.0, eta_s=0.0)
            # Planning runs while the end is being written: the store writes in the order
            # it was asked, so the next job's `starting` (a later write) can never be on
            # disk while this job still holds the cores there.
            self.request_schedule()
            try:
                await self._move(
                    job, ending.status, ending.message,
                    exit_code=ending.exit_code, termination=verdict.termination,
                )
            finally:
                self._rt.pop(job_id, None)
                self._on_cores()
        if self._with_after:
            self.request_schedule()  # jobs `after` this one see its end only now

    def _roots(self, job: Job) -> list[ProcIdentity]:
        rt = self._rt.get(job.id)
        roots = [i for i in (job.launcher_identity, job.solver_identity) if i is not None]
        if rt is not None and rt.launcher is not None:
            roots.append(rt.launcher)
        return roots

    def _tree_sync(self, job: Job) -> list[psutil.Process]:
        """Every process of the job, by tag and by parentage. Thread only."""
        # psutil's create times can be off by up to a second (boot time is whole seconds).
        since = job.started_at.timestamp() - 2.0 if job.started_at else None
        return proctree.job_tree(self.tag_prefix + str(job.id), self._roots(job), since)

    def _kill_tree_sync(self, job: Job) -> list[int]:
        """SIGKILL every process of the job. Thread only."""
        return proctree.signal_all(self._tree_sync(job), current.KILL)

    # ----------------------------------------------------------------- stop

    async def stop(self, job_id: int, force: bool = False) -> Job:
        """Stop a job: a queued job is cancelled; a running one is asked to end (d3kil sw1
        for LS-DYNA, SIGTERM otherwise) and its whole tree killed after `jobs.stop_grace_s`
        (at once with `force`). Idempotent on ended jobs. Raises JobNotFound."""
        job = await self.get(job_id)
        if job.status.is_terminal:
            return job
        async with self._lock(job_id):
            job = self.jobs.get(job_id) or await self.get(job_id)
            if job.status.is_terminal:
                return job
            if job.status is S.QUEUED:
                job = await self._move(job, S.CANCELLED, "cancelled by user before it started")
                self.request_schedule()
                return job
            if job.status is S.STOPPING:
                if force:
                    self._start_stop(job, force=True)
                return job
            paused = job.status is S.PAUSED
            job = await self._move(
                job, S.STOPPING, "stop requested by user" + (" (forced)" if force else ""),
                stop_requested_by="user",
            )
        self._start_stop(job, force=force, was_paused=paused)
        return job

    def _start_stop(self, job: Job, *, force: bool, was_paused: bool = False) -> None:
        rt = self._rt.setdefault(job.id, Runtime())
        if rt.stopper is not None and not rt.stopper.done():
            rt.stopper.cancel()
        rt.stopper = self._spawn(self._run_stop(job, force, was_paused), f"job {job.id} stop")

    async def _run_stop(self, job: Job, force: bool, was_paused: bool) -> None:
        jlog = job_log(log, job.id)
        if was_paused and job.id in self._rt:
            self._unpause(self._rt[job.id])
        if not force:
            if was_paused:
                await asyncio.to_thread(self._signal_tree_sync, job, current.CONT)
            if family_of(job.family).graceful_stop is GracefulStop.D3KIL:
                await asyncio.to_thread(workdir.write_d3kil, Path(job.workdir), "sw1")
                jlog.info("wrote sw1. to d3kil; killing the tree in %.1f s", self.config.jobs.stop_grace_s)
            else:
                reached = await asyncio.to_thread(self._signal_tree_sync, job, current.graceful_signal())
                jlog.info("sent SIGTERM to %s; killing the tree in %.1f s", reached, self.config.jobs.stop_grace_s)
            await asyncio.sleep(self.config.jobs.stop_grace_s)
            jlog.warning("still running %.1f s after the stop request; killing its tree",
                         self.config.jobs.stop_grace_s)
        killed = await asyncio.to_thread(self._kill_tree_sync, job)
        jlog.info("killed the tree: %s", killed)
        if not killed:
            # Nothing left to kill and no exit was seen: the watchdog would notice at its next
            # tick, but there is no reason to wait for it.
            self._on_solver_exit(job.id)

    def _signal_tree_sync(self, job: Job, sig: int) -> list[int]:
        return proctree.signal_all(self._tree_sync(job), sig)

    # ----------------------------------------------------------------- configuration

    async def reconfigure(self, config: Config) -> None:
        """Apply a re-read configuration (SIGHUP): solver profiles, licence pools and job
        settings change at once; server, store and core settings need a restart (logged)."""
        old = self.config
        for part in ("server", "store", "cores"):
            if getattr(config, part) != getattr(old, part):
                log.warning("configuration reload: [%s] changed; it takes effect at the next start", part)
        self.config = dataclasses.replace(
            old, solvers=config.solvers, licenses=config.licenses, jobs=config.jobs,
            watchdog=config.watchdog, log=config.log, slurm=config.slurm,
        )
        added = sorted(set(config.solvers) - set(old.solvers))
        removed = sorted(set(old.solvers) - set(config.solvers))
        log.info(
            "configuration reloaded: %d solver profiles (added %s, removed %s), licence pools %s",
            len(config.solvers), added or "none", removed or "none", dict(config.licenses) or "none",
        )
        self.licences.reconfigure(config.licenses)
        self._on_reconfigure(self.config)
        await self.schedule()

    # ----------------------------------------------------------------- licence server

    def lstc_tools(self) -> lstc.LstcTools | None:
        cfg = self.config.lstc
        if cfg is None:
            return None
        return lstc.LstcTools(qrun=cfg.qrun, qkill=cfg.qkill, server=cfg.server, timeout_s=cfg.timeout_s)

    async def _poll_licence_server(self) -> None:
        """Every `[lstc] poll_interval_s`: licences used by others count as used; a change
        wakes the queue at once."""
        while True:
            await self.poll_licences_once()
            assert self.config.lstc is not None
            await asyncio.sleep(self.config.lstc.poll_interval_s)

    async def poll_licences_once(self) -> None:
        tools = self.lstc_tools()
        if tools is None:
            return
        result = await lstc.query_licenses(tools)
        if isinstance(result, lstc.LstcFailure):
            if self.licence_server_note != result.message:
                log.warning("licence server: %s", result.message)
            self.licence_server_note = result.message
            return
        self.licence_server_note = None
        used, cap = lstc.lsdyna_usage(result), lstc.lsdyna_capacity(result)
        if used is None:
            return
        # Only solvers that have started hold their licences on the server already.
        own = sum(
            self.licences.held_by(j.id).get("lsdyna", 0)
            for j in self.jobs.values()
            if j.status in (S.RUNNING, S.PAUSED, S.STOPPING) and j.extra.get("solver_started")
        )
        before = self.licences.free("lsdyna")
        self.licences.observe_server("lsdyna", used, own, server_max=cap, at=utcnow())
        if self.licences.free("lsdyna") != before:
            log.info("licence server: lsdyna %d used of %s (ours %d)", used, cap, own)
            await self.schedule()

    # ----------------------------------------------------------------- queue commands

    async def set_priority(self, job_id: int, priority: int) -> Job:
        """Change a queued job's priority; the queue reacts at once. Raises JobNotFound,
        InvalidState (1002) when the job is not queued."""
        stored = await self.get(job_id)
        async with self._lock(job_id):
            job = self._require_queued(job_id, stored, "re-prioritised")
            job = await self._save(job.evolve(priority=priority))
            job_log(log, job_id).info("priority set to %d", priority)
        await self.schedule()
        return self.jobs.get(job_id, job)

    async def move_job(self, job_id: int, position: int) -> list[Job]:
        """Put a queued job at `position` (0-based) of the queue; returns the queue in order.

        Its priority is clamped between its new neighbours' (the queue stays ordered by
        priority, then sequence). Raises JobNotFound, InvalidState when not queued.
        """
        stored = await self.get(job_id)
        async with self._schedule_lock, self._holding([j.id for j in self.queue()]):
            self._require_queued(job_id, stored, "moved")
            queued = queue_order(self.jobs.values())
            changes = reorder(queued, job_id, position)
            changed = [
                self.jobs[i].evolve(priority=prio, queue_seq=seq)
                for i, (prio, seq) in changes.items()
            ]
            if changed:
                await self.store.commit_many(changed)
                for job in changed:
                    self.jobs[job.id] = job
                    self._announce(job)
            job_log(log, job_id).info("moved to queue position %d", position)
        await self.schedule()
        return queue_order(self.jobs.values())

    async def set_ncpu(self, job_id: int, ncpu: int, extra: Mapping[str, object] | None = None) -> Job:
        """Change the core count of a queued job, keeping its id and place. Raises
        JobNotFound, InvalidState (not queued), ExceedsMachine (cores or licences)."""
        stored = await self.get(job_id)
        async with self._lock(job_id):
            job = self._require_queued(job_id, stored, "resized")
            resized = job.evolve(ncpu=ncpu, extra={**job.extra, **(extra or {})})
            if self.cores_of(resized) and ncpu > self.allocator.usable_count:
                raise ExceedsMachine(f"param 'ncpu': {ncpu} exceeds the {self.allocator.usable_count} usable cores")
            self.licences.check_fits(self.demand(resized), "ncpu")
            job = await self._save(resized)
            job_log(log, job_id).info("ncpu set to %d", ncpu)
        await self.schedule()
        return self.jobs.get(job_id, job)

    def add_reconfigure_listener(self, listener: Callable[[Config], None]) -> None:
        """Call `listener` with the new configuration after every reload (SIGHUP)."""
        previous = self._on_reconfigure

        def both(config: Config) -> None:
            previous(config)
            listener(config)

        self._on_reconfigure = both

    def queue(self) -> list[Job]:
        """The queued jobs in the order they will be considered."""
        return [self.jobs[job_id] for _key, job_id in self._queue_index]

    def _require_queued(self, job_id: int, stored: Job, verb: str) -> Job:
        job = self.jobs.get(job_id) or stored
        if job.status is not S.QUEUED:
            raise InvalidState(f"job {job_id} is {job.status}; only a queued job can be {verb}")
        return job

    # ----------------------------------------------------------------- pause, sense switches

    async def pause(self, job_id: int) -> Job:
        """SIGSTOP the whole tree of a running job (psutil suspend on Windows). Raises
        JobNotFound, InvalidState (1002) unless the job is running."""
        stored = await self.get(job_id)
        async with self._lock(job_id):
            job = self._require(job_id, stored, S.RUNNING, "paused")
            reached = await asyncio.to_thread(self._signal_tree_sync, job, current.STOP)
            self._rt[job_id].paused_since = time.monotonic()
            # What the solver wrote before it stopped belongs to the running phase.
            results = await asyncio.get_running_loop().run_in_executor(
                self._tail_pool, self._read_outputs, [job_id]
            )
            if job_id in results:
                snap, text = results[job_id]
                self._stream(job_id, text)
                job = apply_progress(job, snap)
            return await self._move(job, S.PAUSED, f"paused by user ({len(reached)} processes)")

    async def resume(self, job_id: int) -> Job:
        """SIGCONT the whole tree of a paused job. Raises JobNotFound, InvalidState."""
        stored = await self.get(job_id)
        async with self._lock(job_id):
            job = self._require(job_id, stored, S.PAUSED, "resumed")
            await asyncio.to_thread(self._signal_tree_sync, job, current.CONT)
            self._unpause(self._rt[job_id])
            return await self._move(job, S.RUNNING, "resumed by user")

    def _unpause(self, rt: Runtime) -> None:
        if rt.paused_since is not None:
            rt.paused_total += time.monotonic() - rt.paused_since
            rt.paused_since = None

    def _require(self, job_id: int, stored: Job, status: JobStatus, verb: str) -> Job:
        """The live job if it has `status`, else InvalidState naming what it is."""
        job = self.jobs.get(job_id) or stored
        if job.status is not status or job_id not in self._rt:
            raise InvalidState(f"job {job_id} is {job.status}; only a {status} job can be {verb}")
        return job

    async def sense_switch(self, job_id: int, switch: str) -> Job:
        """Write an LS-DYNA sense switch to the job's d3kil. sw1 and stop end the run, so the
        job will end `stopped` (sw1 with the restart dump it wrote named in `message`).
        Raises JobNotFound, InvalidState (wrong family or not running)."""
        job = await self.get(job_id)
        family = family_of(job.family)
        if switch not in family.sense_switches:
            raise InvalidState(f"job {job_id} is a {job.family} job; sense switches are for LS-DYNA jobs")
        async with self._lock(job_id):
            job = self._require(job_id, job, S.RUNNING, f"sent {switch}")
            await asyncio.to_thread(workdir.write_d3kil, Path(job.workdir), switch)
            job_log(log, job_id).info("wrote %s to d3kil", switch)
            if switch in ("sw1", "stop"):
                job = await self._save(job.evolve(stop_requested_by=f"sense switch {switch}"))
            return job

    # ----------------------------------------------------------------- output tailing

    def _begin_output(self, job: Job) -> None:
        """Start following the job's stdout and side files; feed its deck once.

        Done by the tail thread the first time it touches the job (its next tick, or the
        job's end), not by a hop of its own: a job that ends within milliseconds costs one
        visit to that thread, not two."""
        family = family_of(job.family)
        rt = self._rt.setdefault(job.id, Runtime())
        parser = family.new_parser(job)
        files = [(STDOUT, ("stdout",), None)] + [
            (f.source, (f.name, *f.alternatives), f.max_bytes) for f in family.side_files(job)
        ]
        deck = Path(job.input) if family.reads_deck else None
        # A second of slack: file systems store mtimes coarser than the clock we compare with.
        since = job.started_at.timestamp() - 1.0 if job.started_at else 0.0
        job_id = job.id

        def setup() -> None:
            self._tailer.add(job_id, Path(job.workdir), files, since)
            if deck is not None:
                parser.feed(DECK, workdir.read_deck_lines(deck), rt.active_now())
            rt.parser = parser

        rt.setup = setup

    def _set_up_sync(self, job_id: int, rt: Runtime) -> None:
        """Tail thread: run a job's pending output set-up (see _begin_output), once."""
        setup, rt.setup = rt.setup, None
        if setup is None:
            return
        try:
            setup()
        except OSError:
            job_log(log, job_id).exception("cannot follow the output")

    def _read_outputs(self, job_ids: list[int]) -> dict[int, tuple[Progress, str]]:
        """Tail thread: new output of each job through its parser."""
        results: dict[int, tuple[Progress, str]] = {}
        for job_id in job_ids:
            rt = self._rt.get(job_id)
            if rt is not None:
                self._set_up_sync(job_id, rt)
            if rt is None or rt.parser is None:
                continue
            chunks = self._tailer.read_job(job_id)
            if not chunks:
                continue
            now = rt.active_now()
            for source, (lines, _text) in chunks.items():
                if lines:
                    rt.parser.feed(source, lines, now)
            results[job_id] = (rt.parser.snapshot(), chunks.get(STDOUT, ([], ""))[1])
        return results

    async def _tail_loop(self) -> None:
        """Every TAIL_INTERVAL_S: read new output of all jobs, stream it, update progress."""
        loop = asyncio.get_running_loop()
        tick = 0
        while True:
            await asyncio.sleep(TAIL_INTERVAL_S)
            tick += 1
            due = [
                (jid, rt) for jid, rt in list(self._rt.items())
                if (rt.parser is not None or rt.setup is not None) and not rt.ending and tick % rt.tail_every == 0
            ]
            if not due:
                continue
            results = await loop.run_in_executor(self._tail_pool, self._read_outputs, [j for j, _ in due])
            # A job that printed nothing is read half as often, down to every
            # TAIL_MAX_SKIP ticks: a thousand quiet jobs cost little, a talking one is
            # followed at full rate again from its next line.
            for jid, rt in due:
                rt.tail_every = 1 if jid in results else min(rt.tail_every * 2, TAIL_MAX_SKIP)
            await self._apply_outputs(results)

    def _stream(self, job_id: int, text: str) -> None:
        """Send new stdout text to "output" subscribers, in chunks of at most OUTPUT_CHUNK."""
        for start in range(0, len(text), OUTPUT_CHUNK):
            self._on_output(job_id, text[start : start + OUTPUT_CHUNK])

    async def _apply_outputs(self, results: dict[int, tuple[Progress, str]]) -> None:
        for job_id, (_snap, text) in results.items():
            self._stream(job_id, text)
        ids = sorted(results)
        async with self._holding(ids):
            changed = []
            for job_id in ids:
                job, rt = self.jobs.get(job_id), self._rt.get(job_id)
                if job is None or rt is None or rt.ending or not job.status.has_process:
                    continue
                new = apply_progress(job, results[job_id][0])
                key = shown_fields(new)
                if key != rt.shown:
                    rt.shown = key
                    changed.append(new)
            now = time.monotonic()
            due = [j for j in changed if now - self._rt[j.id].progress_saved_at >= PROGRESS_COMMIT_S]
            if due:
                try:
                    await self.store.commit_many(due)
                except StoreUnavailable:
                    self.db_ok = False
                    log.exception("progress of jobs %s not saved", [j.id for j in due])
                else:
                    for job in due:
                        self._rt[job.id].progress_saved_at = now
            for new in changed:
                self.jobs[new.id] = new
                self._announce(new)

    def _drain_sync(self, job_id: int) -> tuple[Progress | None, str]:
        """Tail thread: what is left of a job's output, and stop following it."""
        rt = self._rt.get(job_id)
        if rt is not None:
            self._set_up_sync(job_id, rt)
        if rt is None or rt.parser is None:
            return None, ""
        result = self._read_outputs([job_id]).get(job_id)
        self._tailer.remove(job_id)
        return result if result is not None else (rt.parser.snapshot(), "")

    def _collect_end_sync(
        self, job: Job, exit_info: ExitInfo | None
    ) -> tuple[Progress | None, OutputVerdict, str | None, ExitInfo | None]:
        """Tail thread, in one hop: the last output and progress, the verdict (from the
        parser, else the end of stdout), the newest restart dump, and a rank's signal
        named in stdout when mpiexec only reports a non-zero code."""
        snap, text = self._drain_sync(job.id)
        if text:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._stream, job.id, text)
        family = family_of(job.family)
        if snap is not None and snap.termination is not None:
            failure = snap.message if snap.termination is Termination.ERROR else None
            verdict = OutputVerdict(snap.termination, failure)
        elif family.reads_verdict:
            verdict = read_verdict(job)
        else:
            verdict = OutputVerdict()
        # Only families that write dumps pay for the folder listing (a big workdir is slow).
        dump = workdir.newest_dump(Path(job.workdir), job.started_at) if family.writes_dumps else None
        if exit_info is not None and not exit_info.solver_reaped and exit_info.code and verdict.termination is None:
            sig = rank_signal(workdir.read_tail(Path(job.workdir) / "stdout", 16384))
            if sig is not None:
                exit_info = ExitInfo(signal=sig, solver_reaped=False)
        return snap, verdict, dump, exit_info

    # ----------------------------------------------------------------- leftovers

    def _needs_sweep(self, job: Job, rt: Runtime) -> bool:
        """Whether the end of `job` must look for its leftover processes now. Not when the
        daemon spawned the launcher, has reaped it, and nothing is left in the process group
        it led (one system call instead of a scan of every process on the host)."""
        if rt.child is None or rt.launcher_exit is None:
            return True
        profile = self.config.solvers.get(job.solver)
        if profile is None or str(profile.mpi) != "none":
            # MPI ranks run in sessions of their own, outside the launcher's group
            # (lab-findings §1): only the full sweep finds them.
            return True
        return current.group_has_members(rt.child.pid) is not False

    def _sweep_later(self, job: Job) -> None:
        """Look for processes of the ended `job` that left its process group (setsid) by tag,
        together with every other job ended within LATE_SWEEP_S: one scan, not one per job."""
        first = not self._late_sweep
        since = job.started_at.timestamp() - 2.0 if job.started_at else 0.0
        self._late_sweep[self.tag_prefix + str(job.id)] = since
        if first:
            self._spawn(self._run_late_sweep(), "late sweep")

    async def _run_late_sweep(self) -> None:
        await asyncio.sleep(LATE_SWEEP_S)
        tags, self._late_sweep = self._late_sweep, {}
        killed = await asyncio.to_thread(self._kill_tagged_sync, tags)
        for tag, pids in killed.items():
            job_log(log, int(tag.rsplit(":", 1)[1])).warning(
                "killed %d processes that outlived the job outside its process group: %s", len(pids), pids
            )

    def _kill_tagged_sync(self, tags: dict[str, float]) -> dict[str, list[int]]:
        """Thread: SIGKILL every process carrying one of `tags` (tag → its job's start)."""
        found = proctree.tagged(self.tag_prefix, min(tags.values()))
        killed = {}
        for tag in tags:
            if found.get(tag):
                killed[tag] = proctree.signal_all(found[tag], current.KILL)
        return {tag: pids for tag, pids in killed.items() if pids}

    # ----------------------------------------------------------------- output

    async def read_output(self, job_id: int, offset: int, limit: int) -> dict[str, Any]:
        """A page of the job's stdout: {data, next_offset, eof}; eof once the job has ended
        and everything was read."""
        job = await self.get(job_id)
        limit = min(limit, MAX_OUTPUT_PAGE)
        data, next_offset, size = await asyncio.to_thread(workdir.read_page, Path(job.workdir) / "stdout", offset, limit)
        return {"data": data, "next_offset": next_offset, "eof": job.status.is_terminal and next_offset >= size}

    # ----------------------------------------------------------------- status

    def core_status(self) -> dict[str, Any]:
        topo = self.allocator.topology
        booked = self.allocator.snapshot()
        usable = set(self.allocator.usable)
        cores = []
        for cpu in sorted(topo.cpus, key=lambda c: c.index):
            job_id = booked.get(cpu.index)
            job = self.jobs.get(job_id) if job_id is not None else None
            cores.append(
                {
                    "index": cpu.index,
                    "job_id": job_id,
                    "pid": job.pid if job else None,
                    "socket": cpu.socket,
                    "numa_node": cpu.numa_node,
                    "core_id": cpu.core_id,
                    "siblings": list(cpu.siblings),
                    "usable": cpu.index in usable,
                }
            )
        return {
            "physical_cores": topo.physical_cores,
            "logical_cores": topo.logical_cores,
            "hyper_threading_enabled": topo.hyper_threading,
            "usable_cores": len(usable),
            "max_job_cores": self.allocator.usable_count,
            "placement": self.allocator.placement,
            "use_siblings": self.allocator.use_siblings,
            "available_cores": self.allocator.free_count(),
            "cores": cores,
        }

    def counts(self) -> tuple[int, int]:
        running = sum(1 for j in self.jobs.values() if j.status.has_process)
        queued = sum(1 for j in self.jobs.values() if j.status is S.QUEUED)
        return running, queued

    def live_snapshot(self) -> list[Job]:
        """A copy of the live jobs; safe to call from any thread (records are immutable)."""
        return list(self.jobs.values())

    def is_ending(self, job_id: int) -> bool:
        rt = self._rt.get(job_id)
        return rt is not None and rt.ending

    def live_tags(self) -> set[str]:
        return {self.tag_prefix + str(j) for j in list(self.jobs)}

    # ----------------------------------------------------------------- orphans

    def orphan_scope(self, working_dir: Path | None) -> orphans.Scope:
        live = self.live_snapshot()
        roots: list[ProcIdentity] = []
        for job in live:
            roots.extend(self._roots(job))
        return orphans.Scope(
            tag_prefix=self.tag_prefix,
            live_tags=frozenset(self.tag_prefix + str(j.id) for j in live),
            live_roots=tuple(roots),
            process_names=orphans.all_process_names(p.process_names for p in self.config.solvers.values()),
            working_dir=working_dir,
        )

    async def kill_orphans(self, working_dir: Path | None) -> list[proctree.ProcInfo]:
        """Kill solver processes that belong to no live job (see serv.orphans)."""
        scope = self.orphan_scope(working_dir)
        return await asyncio.to_thread(orphans.kill_orphans, scope)

    def count_orphans(self) -> int:
        """Thread-safe count for the health report (runs in the watchdog thread)."""
        return len(orphans.find_orphans(self.orphan_scope(None)))

    # ----------------------------------------------------------------- recovery

    async def _recover(self) -> None:
        """Re-adopt or end every job the store holds as live (issue #3 item 11)."""
        stored = await self.store.live()
        if not stored:
            return
        tagged = await asyncio.to_thread(proctree.tagged, self.tag_prefix)
        for job in stored:
            mine = tagged.get(self.tag_prefix + str(job.id), [])
            if job.status is S.QUEUED:
                seen = Observation(tree_alive=bool(mine))
            else:
                seen = await asyncio.to_thread(self._observe, job, mine)
            decision = decide(job, seen, requires_banner=family_of(job.family).requires_banner)
            await self._apply_recovery(job, seen, decision, mine)

    def _observe(self, job: Job, tagged: list[psutil.Process]) -> Observation:
        """What is left of `job` on this machine. Thread only."""
        raw_names = job.extra.get("process_names")
        names = [str(n) for n in raw_names] if isinstance(raw_names, list) else []
        alive = [p for p in tagged if proctree.identity(p.pid) is not None]
        solver = None
        launcher = None
        for proc in sorted(alive, key=lambda p: (p.create_time(), p.pid)):
            ident = proctree.identity(proc.pid)
            if ident is None:
                continue
            if launcher is None:
                launcher = ident
            if solver is None and proctree.matches(proc.name(), names):
                solver = ident
        stored_alive = job.solver_identity is not None and proctree.is_alive(job.solver_identity)
        verdict = read_verdict(job)
        return Observation(
            stored_solver_alive=stored_alive,
            tagged_solver=solver,
            tagged_launcher=launcher,
            tree_alive=bool(alive),
            termination=verdict.termination,
            failure_text=verdict.failure_text,
            restart_dump=workdir.newest_dump(Path(job.workdir), job.started_at),
        )

    async def _apply_recovery(
        self, job: Job, seen: Observation, decision: Any, tagged: list[psutil.Process]
    ) -> None:
        jlog = job_log(log, job.id)
        if decision.action is Action.KEEP_QUEUED:
            if decision.kill_leftovers:
                killed = await asyncio.to_thread(proctree.signal_all, tagged, current.KILL)
                jlog.warning("killed %d processes of a start that was never recorded: %s",
                             len(killed), killed)
            self._keep_live(job)
            self._index_queue(job)
            return
        if decision.action is Action.END:
            if decision.kill_leftovers:
                killed = await asyncio.to_thread(self._kill_tree_sync, job)
                jlog.warning("killed %d leftover processes: %s", len(killed), killed)
            jlog.info("ended while the daemon was down")
            await self._move(job, decision.status, decision.message, termination=seen.termination)
            return
        pid_cores = await asyncio.to_thread(workdir.read_pid_file_cores, Path(job.workdir))
        if self.cores_of(job) == 0:
            cores, source = None, "none booked"
        else:
            cores, source = self.allocator.restore_first(
                job.id, job.ncpu, [("pid file", pid_cores), ("database", job.allocated_cores)]
            )
        if source == "none booked":
            jlog.info("books no cores")
        elif source == "fresh allocation":
            jlog.warning("cores from pid file %s and database %s are not free; new allocation %s",
                         pid_cores, job.allocated_cores, cores)
        else:
            jlog.info("restored cores %s from the %s", list(cores or ()), source)
        self._keep_live(job)
        self.licences.restore(job.id, self.demand(job))
        rt = self._rt.setdefault(job.id, Runtime())
        if seen.tagged_launcher is not None:
            rt.launcher = seen.tagged_launcher
        if decision.action is Action.RESUME_SEARCH:
            job = await self._save(job.evolve(allocated_cores=cores))
            assert rt.launcher is not None
            jlog.info("re-adopted while starting; resuming the pid search under %d", rt.launcher.pid)
            self._begin_output(job)
            self._watch_identity(job.id, rt.launcher, self._on_launcher_exit)
            rt.search = self._spawn(self._search_solver(job.id, rt.launcher.pid), f"job {job.id} pid search")
            return
        solver = decision.solver
        assert solver is not None
        changes: dict[str, Any] = {
            "allocated_cores": cores, "pid": solver.pid, "pid_create_time": solver.create_time,
        }
        if decision.status is not job.status:
            job = await self._move(job, decision.status, f"solver pid {solver.pid}", **changes)
        else:
            job = await self._save(job.evolve(**changes))
        if cores and source != "pid file":
            procs = await asyncio.to_thread(self._tree_sync, job)
            await asyncio.to_thread(proctree.set_affinity, procs, cores)
        await asyncio.to_thread(workdir.write_pid_file, Path(job.workdir), solver.pid, cores)
        jlog.info("re-adopted solver pid %d (%s)", solver.pid, job.status)
        if job.status is S.PAUSED:
            rt.paused_since = time.monotonic()
        self._begin_output(job)
        self._watch_identity(job.id, solver, self._on_solver_exit)
        if job.status is S.STOPPING:
            self._start_stop(job, force=False)


# --------------------------------------------------------------------- progress


def apply_progress(job: Job, snap: Progress) -> Job:
    """`job` with what its output says; unknown values keep what the job already had."""
    def keep(new: float | None, old: float | None) -> float | None:
        return old if new is None else new

    extra = dict(job.extra)
    if snap.details:
        extra["details"] = dict(snap.details)
    if snap.started:
        extra["solver_started"] = True
    message = job.message
    if snap.message and job.status in (S.RUNNING, S.PAUSED):
        message = snap.message
    return job.evolve(
        progress=keep(None if snap.progress is None else round(snap.progress, 3), job.progress),
        sim_time=keep(snap.sim_time, job.sim_time),
        end_time=keep(snap.end_time, job.end_time),
        eta_s=keep(None if snap.eta_s is None else round(snap.eta_s), job.eta_s),
        added_mass=keep(snap.added_mass, job.added_mass),
        pct_mass=keep(snap.pct_mass, job.pct_mass),
        message=message,
        extra=extra,
    )


def shown_fields(job: Job) -> tuple[object, ...]:
    """What a progress notification shows; a notification is sent only when this changes."""
    details = job.extra.get("details")
    return (job.progress, job.sim_time, job.end_time, job.eta_s, job.added_mass, job.pct_mass,
            job.message, repr(details), job.extra.get("solver_started"))


def read_verdict(job: Job) -> OutputVerdict:
    """Termination and failure text from the end of the job's stdout."""
    return family_of(job.family).verdict(workdir.read_tail(Path(job.workdir) / "stdout"))
