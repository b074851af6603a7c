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

While no GUI is connected (the usual case: the daemon runs many jobs, the GUI is opened now
and then), a job change costs a few dict operations: shells and their output are kept, since
a GUI that connects later asks for them (`getRunningShells`), but no record is built and the
queue is not read. What the GUIs would hold is kept as job versions instead: the first record
of a job whose change has someone to go to diffs against the last version seen, and the queue
is read again when the first GUI joins. A GUI that connects later asks for the job list, the
queue and the shells (protocol §1.6), and from then on it hears the notifications it would
have heard had it been connected all along.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import itertools
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
from serv.legacy.records import QueueRecords, changed_fields, job_record, update_fields
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


@dataclass(slots=True)
class Shell:
    """One GUI terminal: the latest job record and the output streamed since it started (the
    newest SHELL_MAX_CHARS of it)."""

    job: Job
    #: Announce order: the oldest ended shells are the first to go (`_trim_shells`).
    seq: int = 0
    #: Its job has ended (it is in the gateway's `_ended_shells`).
    ended: bool = False
    chunks: list[str] = field(default_factory=list)
    size: int = 0

    def append(self, text: str) -> None:
        self.chunks.append(text)
        self.size += len(text)
        # Cut back only an eighth over the limit, so a full shell costs one join per eighth
        # of it of new output instead of one per chunk; `stdout` cuts to the limit.
        if self.size > SHELL_MAX_CHARS + SHELL_MAX_CHARS // 8:
            joined = "".join(self.chunks)[-SHELL_MAX_CHARS:]
            self.chunks = [joined]
            self.size = len(joined)

    @property
    def stdout(self) -> str:
        text = "".join(self.chunks)
        return text[-SHELL_MAX_CHARS:] if len(text) > SHELL_MAX_CHARS else text


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
        self._shell_seq = itertools.count()
        # (seq, job id) of the shells whose job has ended, oldest shell first.
        self._ended_shells: list[tuple[int, int]] = []
        # The announced jobs, by id: the UPDATE_FIELDS the GUIs hold of each, or, until a
        # change has a GUI to go to, the job version they are made from (its record and
        # diff wait: they depend on the job alone, so the ones made later are the same).
        self._sent: dict[int, dict[str, Any] | Job] = {}
        self._memos: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._pending: dict[str, dict[str, Any]] = {}
        self._queue_records = QueueRecords()
        self._queue_sent: list[dict[str, Any]] | None = None
        self._queue_ids: set[int] = set()
        self._queue_hold = 0
        self._queue_flush_pending = False
        # The queue changed while no GUI was connected: read it when the first one joins.
        self._queue_stale = False
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
            on_connect=self._joined,
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

    def _joined(self, session: LegacySession) -> None:
        """A GUI joined namespace "/": from now on, changes are sent to it."""
        self.sessions.add(session)
        if self._queue_stale:
            self._queue_stale = False
            try:
                self._queue_seen(self.queue_records())
            except Exception:  # a session callback: log; the next queue change sends setQueue
                log.exception("legacy gateway: the queue was not read for a new GUI")
                self._queue_sent = None

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
            self._shell_saw(shell, job)
        if job.status is S.QUEUED or job.id in self._queue_ids:
            self.queue_changed()
        if job.status is S.QUEUED or job.started_at is None:
            return
        if job.id not in self._sent:
            self._announce(job)
            return
        if self.sessions:
            self._send_update(job)
        else:
            # Nobody to tell (every second for every job that prints): the diff waits.
            self._sent[job.id] = job
        if job.status.is_terminal and job.id not in self.shells:
            self._forget(job.id)

    def _send_update(self, job: Job) -> None:
        """`update_data` with the fields of `job` that differ from what the GUIs hold."""
        held = self._sent[job.id]
        fields = update_fields(job)
        payload = changed_fields(held if isinstance(held, dict) else update_fields(held), fields)
        self._sent[job.id] = fields
        if payload:
            self.broadcast("update_data", {"id": job.id, "payload": payload})

    def _forget(self, job_id: int) -> None:
        """Drop what was sent about `job_id`: a later change announces it again."""
        self._sent.pop(job_id, None)

    def _announce(self, job: Job) -> None:
        record = self.record(job) if self.sessions else None
        self._sent[job.id] = job
        # A shell is forgotten with its job (`_forget`), so none is left here; were one
        # left, the new one must still take the newest place among ended shells.
        old = self.shells.pop(job.id, None)
        if old is not None and old.ended:
            self._shell_unended(old)
        shell = self.shells[job.id] = Shell(job, seq=next(self._shell_seq))
        if job.status.is_terminal:
            self._shell_ended(shell)
        self._trim_shells()
        if record is not None:
            self.broadcast("addJob", {"job": record})

    # ----------------------------------------------------------------- shells

    def _shell_saw(self, shell: Shell, job: Job) -> None:
        """Keep `shell` on the latest version of its job, and its place among ended ones."""
        shell.job = job
        if job.status.is_terminal != shell.ended:
            if shell.ended:
                self._shell_unended(shell)
            else:
                self._shell_ended(shell)

    def _shell_ended(self, shell: Shell) -> None:
        shell.ended = True
        bisect.insort(self._ended_shells, (shell.seq, shell.job.id))

    def _shell_unended(self, shell: Shell) -> None:
        shell.ended = False
        at = bisect.bisect_left(self._ended_shells, (shell.seq, shell.job.id))
        if at < len(self._ended_shells) and self._ended_shells[at] == (shell.seq, shell.job.id):
            del self._ended_shells[at]

    def _trim_shells(self) -> None:
        """Keep the MAX_ENDED_SHELLS newest shells of ended jobs (newest by announce)."""
        excess = len(self._ended_shells) - MAX_ENDED_SHELLS
        if excess <= 0:
            return
        for _seq, job_id in self._ended_shells[:excess]:
            shell = self.shells.pop(job_id, None)
            if shell is not None:
                shell.ended = False
            self._forget(job_id)
        del self._ended_shells[:excess]

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
        if shell.ended:
            self._shell_unended(shell)
        if shell.job.status.is_terminal:
            self._forget(job_id)
        self.broadcast("removeShell", {"id": shown_id})
        return True

    # ----------------------------------------------------------------- queue

    def queue_records(self) -> list[dict[str, Any]]:
        from serv.job_manager import utcnow

        return self._queue_records.records(self.jm.queue(), self.memo_for, self.profile_for, utcnow())

    def queue_changed(self) -> None:
        if not self.sessions:
            self._queue_stale = True  # read when a GUI joins (`_joined`)
            return
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
        if not self.sessions:
            self._queue_stale = True  # nobody to send it to: read when a GUI joins
            return
        records = self.queue_records()
        if force or records != self._queue_sent:
            self._queue_seen(records)
            self.broadcast("setQueue", {"jobs": records})

    def _queue_seen(self, records: list[dict[str, Any]]) -> None:
        """`records` is the queue the GUIs hold."""
        self._queue_sent = records
        self._queue_ids = {r["id"] for r in records}

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
