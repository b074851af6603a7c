"""Daemon jobs seen as the legacy GUI's records (protocol §5.2–§5.4).

One job model: every record here is computed from a `Job` of the daemon, plus what the GUI
sent when it submitted the job (its `job_data`: solver path, template, command text), kept
as a *memo*. Jobs launched through the new API, or imported, get a template synthesised from
their profile so the GUI's Ctrl+click can copy them back into its form.

Status mapping (daemon → legacy; only the six strings the GUI knows, §5.3):

    queued                      (not a job row: it is in the queue, `getQueue`)
    starting                    Starting
    running, paused, stopping   Running     (the GUI has no word for paused or stopping)
    finished                    Finished
    failed                      Error
    stopped                     sw1 when it ended normally after a user's sw1 sense switch,
                                else Stopped
    cancelled                   Stopped     (left the queue before it started)
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

from serv.config import MpiKind, SolverProfile
from serv.core.jobs import Family, Job
from serv.core.states import JobStatus, Termination
from serv.legacy.jsontext import JsonText

S = JobStatus

LEGACY_STATUSES = ("Starting", "Running", "Finished", "Error", "Stopped", "sw1")
#: The fields of a record that `update_data` carries when they change (§4.1, §5.2 "upd").
UPDATE_FIELDS = (
    "status", "progress", "started", "ETA", "current", "end", "pid", "a_mass", "pct_mass",
    "allocated_cores",
)
SW1_REQUESTER = "sense switch sw1"


def legacy_status(job: Job) -> str:
    status = job.status
    if status in (S.QUEUED, S.STARTING):
        return "Starting"
    if status in (S.RUNNING, S.PAUSED, S.STOPPING):
        return "Running"
    if status is S.FINISHED:
        return "Finished"
    if status is S.FAILED:
        return "Error"
    if (
        status is S.STOPPED
        and job.termination is Termination.NORMAL
        and job.stop_requested_by == SW1_REQUESTER
    ):
        return "sw1"
    return "Stopped"


def synthesised_expr(job: Job, profile: SolverProfile | None) -> str:
    """A GUI template that describes `job` (for jobs the GUI did not submit)."""
    if job.family is not Family.LSDYNA:
        return " ".join(job.command) or "$SOLVER $INPUT"
    mpi = profile is not None and profile.mpi is not MpiKind.NONE
    parts = ["mpiexec -np $NCPU $SOLVER i=$INPUT"] if mpi else ["$SOLVER i=$INPUT ncpu=$NCPU"]
    if job.memory:
        parts.append("memory=$MEMORY")
    if job.restart:
        parts.append(f"r={job.restart}")
    parts.extend(job.args)
    return " ".join(parts)


def render(expr: str, *, ncpu: object, solver: str, input: str, memory: str) -> str:
    """The command a template gives, every placeholder replaced (legacy setNcpuQueue)."""
    return (
        expr.replace("$NCPU", str(ncpu))
        .replace("$SOLVER", solver)
        .replace("$INPUT", input)
        .replace("$MEMORY", memory)
    )


def _epoch(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def _rounded(value: float | None) -> int | None:
    return None if value is None else int(round(value))


def update_fields(job: Job) -> dict[str, Any]:
    """The UPDATE_FIELDS of `job`'s record, as `job_record` writes them. They depend on the
    job alone (no memo, profile or clock), so the diff of two versions needs no whole record."""
    return {
        "status": legacy_status(job),
        "progress": None if job.progress is None else round(job.progress, 2),
        "started": _epoch(job.started_at),
        "ETA": _rounded(job.eta_s),
        "current": job.sim_time,
        "end": job.end_time,
        "pid": job.pid,
        "a_mass": job.added_mass,
        "pct_mass": job.pct_mass,
        # Legacy JSON text, and null once released (the daemon keeps the ended job's cores).
        "allocated_cores": (
            None if job.allocated_cores is None or not job.status.has_process
            else json.dumps(list(job.allocated_cores))
        ),
    }


def job_record(
    job: Job,
    memo: Mapping[str, Any] | None,
    profile: SolverProfile | None,
    now: datetime,
) -> dict[str, Any]:
    """The §5.2 record of `job` (table, addJob and shells all use this shape)."""
    memo = memo or {}
    fields = update_fields(job)
    solver = memo.get("solver") or (profile.executable if profile is not None else job.solver)
    expr = memo.get("expr") or synthesised_expr(job, profile)
    memory = job.memory or ""
    command = memo.get("command") or " ".join(job.command) or render(
        expr, ncpu=job.ncpu, solver=solver, input=job.input, memory=memory
    )
    elapsed = None
    if job.started_at is not None:
        elapsed = int(((job.ended_at or now) - job.started_at).total_seconds())
    return {
        "id": job.id,
        "input": memo.get("input") or job.input,
        "solver": solver,
        "command": command,
        "ncpu": job.ncpu,
        "memory": memory,
        "expr": expr,
        "status": fields["status"],
        "progress": fields["progress"],
        "started": fields["started"],
        "ETA": fields["ETA"],
        "elapsed": elapsed,
        "current": fields["current"],
        "end": fields["end"],
        "pid": fields["pid"],
        "a_mass": fields["a_mass"],
        "pct_mass": fields["pct_mass"],
        "sender": memo.get("sender"),
        "allocated_cores": fields["allocated_cores"],
    }


class EndedRecords:
    """§5.2 records of ended jobs, kept encoded (bounded, newest kept): an ended job's record
    changes only if its memo or its profile is replaced, so those are checked by identity."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._records: OrderedDict[
            int, tuple[Job, Mapping[str, Any] | None, SolverProfile | None, JsonText]
        ] = OrderedDict()

    def encoded(
        self, job: Job, memo: Mapping[str, Any] | None, profile: SolverProfile | None, now: datetime
    ) -> JsonText:
        """`job_record(job, memo, profile, now)` encoded; for an ended job, the kept text (its
        escaped form is kept with it once a frame has needed it)."""
        if not job.status.is_terminal:
            return JsonText.of(job_record(job, memo, profile, now))
        kept = self._records.get(job.id)
        if kept is not None and kept[0] is job and kept[1] is memo and kept[2] is profile:
            return kept[3]
        record = JsonText.of(job_record(job, memo, profile, now))
        self._records[job.id] = (job, memo, profile, record)
        self._records.move_to_end(job.id)
        while len(self._records) > self._size:
            self._records.popitem(last=False)
        return record


def _queue_part(
    job: Job, memo: Mapping[str, Any] | None, profile: SolverProfile | None, now: datetime
) -> dict[str, Any]:
    """The job_data keys of a queue record (no clock in them: `now` only feeds `elapsed`)."""
    full = job_record(job, memo, profile, now)
    record = {key: full[key] for key in ("input", "solver", "ncpu", "command", "expr", "memory")}
    if memo and memo.get("sender") is not None:
        record["sender"] = memo["sender"]
    return record


def queue_record(
    job: Job, position: int, memo: Mapping[str, Any] | None, profile: SolverProfile | None,
    now: datetime,
) -> dict[str, Any]:
    """A §5.4 queue record: the job_data keys, then `position` and `id` (the daemon's job id)."""
    return {**_queue_part(job, memo, profile, now), "position": position, "id": job.id}


class QueueRecords:
    """§5.4 records of the whole queue, made again at every queue change (setQueue carries the
    whole queue) from a kept part per job: that part changes only with the job (a new object
    at each commit), its memo or its profile, so those are checked by identity."""

    def __init__(self) -> None:
        self._parts: dict[
            int, tuple[Job, Mapping[str, Any] | None, SolverProfile | None, dict[str, Any]]
        ] = {}

    def records(
        self,
        queue: Iterable[Job],
        memo_for: Callable[[Job], Mapping[str, Any] | None],
        profile_for: Callable[[Job], SolverProfile | None],
        now: datetime,
    ) -> list[dict[str, Any]]:
        """`[queue_record(job, position, memo_for(job), profile_for(job), now) …]` for `queue`
        in order; only the parts of the jobs in `queue` are kept afterwards."""
        kept, self._parts = self._parts, {}
        records = []
        for position, job in enumerate(queue):
            memo, profile = memo_for(job), profile_for(job)
            part = kept.get(job.id)
            if part is None or part[0] is not job or part[1] is not memo or part[2] is not profile:
                part = (job, memo, profile, _queue_part(job, memo, profile, now))
            self._parts[job.id] = part
            records.append({**part[3], "position": position, "id": job.id})
        return records


def changed_fields(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The `update_data` payload: the UPDATE_FIELDS whose value differs from what was sent."""
    if old is None:
        return {key: new[key] for key in UPDATE_FIELDS}
    return {key: new[key] for key in UPDATE_FIELDS if old.get(key) != new[key]}
