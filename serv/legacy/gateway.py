"""The legacy GUI gateway: Socket.IO clients, the daemon's job events, legacy notifications.

`LegacyGateway` is created by the daemon before its JobManager, receives every job change
(`job_changed`) and every stdout chunk (`output`) the manager announces, and turns them into
the notifications of protocol §4.1, sent at once to every connected GUI:

* `addJob {job}` — exactly once per job, the first time the gateway sees it started (from
  `startJob`, the queue, the new API, or re-adopted at start), and always before any
  `update_data` / `appendToShell` of that job;
* `update_data {id, payload}` — only the record fields that changed (status, progress, ETA,
  current, end, pid, a_mass, pct_mass, started, allocated_cores);
* `appendToShell {id, payload}` — each new stdout chunk, as the manager read it;
* `setQueue {jobs}` — the whole queue whenever it changed (coalesced to one per loop turn,
  and sent before the answer of a queue command);
* `removeShell {id}` — when a GUI removes a shell.

"Shells" (the GUI's terminals) are the jobs the gateway announced during this run, with the
output streamed since (at most SHELL_MAX_CHARS, the newest kept), until a `removeShell`.
A memo per job keeps what the GUI sent (solver path, template, command text) so its records
show them; it lives in memory (jobs of an earlier run show a template made from their
profile). Callbacks from the manager never raise: a failure is logged and the daemon goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from websockets.asyncio.server import ServerConnection

from serv.config import Config, SolverProfile
from serv.core.jobs import Job
from serv.core.states import JobStatus
from serv.legacy.records import changed_fields, job_record, queue_record
from serv.legacy.rpc import Dispatcher
from serv.legacy.transport import (
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_PING_INTERVAL_S,
    DEFAULT_PING_TIMEOUT_S,
    LegacySession,
    message_frame,
)

if TYPE_CHECKING:
    from serv.job_manager import JobManager

log = logging.getLogger(__name__)

S = JobStatus
SHELL_MAX_CHARS = 1024 * 1024
#: setQueue waits this long for more changes: a job launched through the new API is queued
#: and started within a few ms, and the GUI should not see it flash through the queue.
QUEUE_DEBOUNCE_S = 0.1
MAX_ENDED_SHELLS = 200
MAX_MEMOS = 10_000


@dataclass
class Shell:
    """One GUI terminal: the latest job record and the output streamed since it started."""

    job: Job
    chunks: list[str] = field(default_factory=list)
    size: int = 0

    def append(self, text: str) -> None:
        self.chunks.append(text)
        self.size += len(text)
        if self.size > SHELL_MAX_CHARS:
            joined = "".join(self.chunks)[-SHELL_MAX_CHARS:]
            self.chunks = [joined]
            self.size = len(joined)

    @property
    def stdout(self) -> str:
        return "".join(self.chunks)


class LegacyGateway:
    """Everything the legacy GUI protocol needs, over the daemon's one job model."""

    def __init__(
        self,
        config: Config,
        *,
        ping_interval_s: float = DEFAULT_PING_INTERVAL_S,
        ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        from serv.legacy.methods import LegacyMethods

        self.config = config
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.max_payload = max_payload
        self.manager: JobManager | None = None
        self.sessions: set[LegacySession] = set()  # joined namespace "/"
        self.connections: set[LegacySession] = set()
        self.shells: OrderedDict[int, Shell] = OrderedDict()
        self._sent: dict[int, dict[str, Any]] = {}
        # Jobs that changed while no GUI was connected, by id: their last version, whose
        # record becomes the `_sent` base only when a change has someone to go to.
        self._behind: dict[int, Job] = {}
        self._memos: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._pending: dict[str, dict[str, Any]] = {}
        self._queue_sent: list[dict[str, Any]] | None = None
        self._queue_ids: set[int] = set()
        self._queue_hold = 0
        self._queue_flush_pending = False
        self._derived: dict[str, SolverProfile] = {}
        self.methods = LegacyMethods(self)
        self.dispatch = Dispatcher(self.methods.table())

    # ----------------------------------------------------------------- wiring

    def attach(self, manager: JobManager) -> None:
        """Use `manager` for every command (call before `manager.start()`)."""
        self.manager = manager
        # A SIGHUP reload replaces the profiles; the ones made for [legacy] solver_dirs stay.
        manager.add_reconfigure_listener(lambda config: self._install_profiles())

    @property
    def jm(self) -> JobManager:
        if self.manager is None:
            raise RuntimeError("LegacyGateway: attach() a JobManager first")
        return self.manager

    async def handle(self, ws: ServerConnection) -> None:
        """`Server.legacy_handler`: serve one GUI connection until it closes."""
        session = LegacySession(
            ws,
            dispatch=self.dispatch,
            on_connect=self.sessions.add,
            on_close=self.sessions.discard,
            ping_interval_s=self.ping_interval_s,
            ping_timeout_s=self.ping_timeout_s,
            max_payload=self.max_payload,
        )
        self.connections.add(session)
        try:
            await session.run()
        finally:
            self.connections.discard(session)
            self.sessions.discard(session)

    async def close(self) -> None:
        for session in list(self.connections):
            session.close_soon()

    # ----------------------------------------------------------------- profiles

    def register_profile(self, profile: SolverProfile) -> None:
        """Add a profile made for a `[legacy] solver_dirs` executable to the manager's config."""
        self._derived[profile.name] = profile
        self._install_profiles()

    def _install_profiles(self) -> None:
        manager = self.jm
        missing = {n: p for n, p in self._derived.items() if manager.config.solvers.get(n) != p}
        if missing:
            solvers = MappingProxyType({**manager.config.solvers, **missing})
            manager.config = dataclasses.replace(manager.config, solvers=solvers)

    def profile_for(self, job: Job) -> SolverProfile | None:
        return self.jm.config.solvers.get(job.solver)

    # ----------------------------------------------------------------- memos and records

    def remember(self, job_id: int, memo: Mapping[str, Any]) -> None:
        self._memos[job_id] = dict(memo)
        self._memos.move_to_end(job_id)
        while len(self._memos) > MAX_MEMOS:
            self._memos.popitem(last=False)

    def memo_for(self, job: Job) -> Mapping[str, Any] | None:
        memo = self._memos.get(job.id)
        if memo is None and job.id not in self._sent:
            pending = self._pending.get(job.workdir)
            if pending is not None:
                self.remember(job.id, pending)
                memo = self._memos[job.id]
        if memo is None:
            stored = job.extra.get("legacy")
            memo = stored if isinstance(stored, dict) else None
        return memo

    def record(self, job: Job) -> dict[str, Any]:
        from serv.job_manager import utcnow

        return job_record(job, self.memo_for(job), self.profile_for(job), utcnow())

    @contextlib.contextmanager
    def pending(self, workdir: str, memo: Mapping[str, Any]) -> Iterator[None]:
        """While a launch for `workdir` runs, its first events find the GUI's memo."""
        self._pending[workdir] = dict(memo)
        try:
            yield
        finally:
            self._pending.pop(workdir, None)

    # ----------------------------------------------------------------- notifications

    def broadcast(self, method: str, params: dict[str, Any]) -> None:
        """A JSON-RPC notification (never an `id`) to every connected GUI."""
        if not self.sessions:
            return
        frame = message_frame(json.dumps({"jsonrpc": "2.0", "method": method, "params": params}))
        for session in list(self.sessions):
            session.send_frame(frame)

    def job_changed(self, job: Job) -> None:
        """JobManager `on_job`: a job was committed with a change."""
        try:
            self._job_changed(job)
        except Exception:  # never break the manager's commit path
            log.exception("legacy gateway: the change of job %s was not forwarded", job.id)

    def _job_changed(self, job: Job) -> None:
        if self.manager is None:
            return
        shell = self.shells.get(job.id)
        if shell is not None:
            shell.job = job
        if job.status is S.QUEUED or job.id in self._queue_ids:
            self.queue_changed()
        if job.status is S.QUEUED or job.started_at is None:
            return
        if job.id not in self._sent:
            self._announce(job)
            return
        if not self.sessions:
            # Nobody to tell (every second for every job that prints): the record and the
            # diff wait. The UPDATE_FIELDS depend on the job alone, so the diff made later
            # from this version is the one that would have been made now.
            self._behind[job.id] = job
        else:
            behind = self._behind.pop(job.id, None)
            if behind is not None:
                self._sent[job.id] = self.record(behind)
            record = self.record(job)
            payload = changed_fields(self._sent[job.id], record)
            if payload:
                self._sent[job.id] = record
                self.broadcast("update_data", {"id": job.id, "payload": payload})
        if job.status.is_terminal and job.id not in self.shells:
            self._forget(job.id)

    def _forget(self, job_id: int) -> None:
        """Drop what was sent about `job_id`: a later change announces it again."""
        self._sent.pop(job_id, None)
        self._behind.pop(job_id, None)

    def _announce(self, job: Job) -> None:
        record = self.record(job)
        self._sent[job.id] = record
        self._behind.pop(job.id, None)
        self.shells[job.id] = Shell(job)
        self._trim_shells()
        self.broadcast("addJob", {"job": record})

    def _trim_shells(self) -> None:
        ended = [i for i, s in self.shells.items() if s.job.status.is_terminal]
        for job_id in ended[: max(0, len(ended) - MAX_ENDED_SHELLS)]:
            self.shells.pop(job_id, None)
            self._forget(job_id)

    def output(self, job_id: int, text: str) -> None:
        """JobManager `on_output`: new stdout text of a job."""
        try:
            if self.manager is None or not text:
                return
            if job_id not in self._sent:
                job = self.manager.jobs.get(job_id)
                if job is None or job.started_at is None:
                    return
                self._announce(job)
            shell = self.shells.get(job_id)
            if shell is None:
                return  # its shell was removed: nobody shows this output any more
            shell.append(text)
            self.broadcast("appendToShell", {"id": job_id, "payload": text})
        except Exception:  # never break the manager's tail loop
            log.exception("legacy gateway: output of job %s was not forwarded", job_id)

    def remove_shell(self, job_id: int, shown_id: Any) -> bool:
        shell = self.shells.pop(job_id, None)
        if shell is None:
            return False
        if shell.job.status.is_terminal:
            self._forget(job_id)
        self.broadcast("removeShell", {"id": shown_id})
        return True

    # ----------------------------------------------------------------- queue

    def queue_records(self) -> list[dict[str, Any]]:
        from serv.job_manager import utcnow

        now = utcnow()
        return [
            queue_record(job, position, self.memo_for(job), self.profile_for(job), now)
            for position, job in enumerate(self.jm.queue())
        ]

    def queue_changed(self) -> None:
        if self._queue_hold or self._queue_flush_pending:
            return
        self._queue_flush_pending = True
        asyncio.get_running_loop().call_later(QUEUE_DEBOUNCE_S, self._flush_soon)

    def _flush_soon(self) -> None:
        self._queue_flush_pending = False
        if not self._queue_hold:
            try:
                self.flush_queue()
            except Exception:  # a callback: log, never raise into the loop
                log.exception("legacy gateway: setQueue not sent")

    def flush_queue(self, force: bool = False) -> None:
        """Broadcast `setQueue` when the queue differs from what was sent (or always)."""
        records = self.queue_records()
        if force or records != self._queue_sent:
            self._queue_sent = records
            self._queue_ids = {r["id"] for r in records}
            self.broadcast("setQueue", {"jobs": records})

    @contextlib.contextmanager
    def queue_batch(self, *, force: bool = True) -> Iterator[None]:
        """Hold `setQueue` during a command; it is sent once at the end (before the answer),
        always for a queue command (`force`, as legacy did), else only if the queue changed."""
        self._queue_hold += 1
        try:
            yield
        finally:
            self._queue_hold -= 1
            if not self._queue_hold:
                self.flush_queue(force=force)

    # ----------------------------------------------------------------- launching

    async def launch(self, params: dict[str, Any], memo: Mapping[str, Any],
                     derived: SolverProfile | None = None) -> Job:
        """`JobManager.launch(**params)` with the GUI's memo bound to the new job."""
        if derived is not None:
            self.register_profile(derived)
        workdir = str(Path(params["input"]).parent)
        with self.pending(workdir, memo):
            # The GUI's own command text is kept with the job, so it survives a restart.
            # The GUI expects startJob to have started the job (or queued it with a reason),
            # as its predecessor did: wait for the planning pass, unlike JSON-RPC launch.
            job = await self.jm.launch(**params, extra={"legacy": dict(memo)}, wait_start=True)
        self.remember(job.id, memo)
        return job
