"""What to do, at start, with each job the store holds as live (issue #3 item 11).

One pure rule per case, applied to facts the daemon observed (processes alive, pid file,
output). A job is re-adopted only when its solver is provably the same process: the stored
(pid, create time) matches, or a process carrying the job's environment tag is found.
A recycled PID therefore never re-adopts a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from serv.core.ending import decide_ending
from serv.core.jobs import Job, ProcIdentity
from serv.core.states import JobStatus, Termination


class Action(StrEnum):
    KEEP_QUEUED = "keep queued"
    ADOPT = "adopt"
    RESUME_SEARCH = "resume pid search"
    END = "end"


@dataclass(frozen=True, slots=True)
class Observation:
    """What the daemon saw of one stored live job at start."""

    stored_solver_alive: bool = False
    tagged_solver: ProcIdentity | None = None
    tagged_launcher: ProcIdentity | None = None
    tree_alive: bool = False
    termination: Termination | None = None
    failure_text: str | None = None
    restart_dump: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    solver: ProcIdentity | None = None
    status: JobStatus | None = None
    message: str = ""
    kill_leftovers: bool = False


def decide(job: Job, seen: Observation, *, requires_banner: bool) -> Decision:
    """Re-adopt, keep queued, resume the PID search, or end `job`, from what was seen."""
    if job.status is JobStatus.QUEUED:
        # No job moves back to `queued`, so processes carrying a queued job's tag come from
        # a start the daemon died before recording (the spawn and that commit run at once):
        # they are killed, and the job starts again from the queue.
        return Decision(Action.KEEP_QUEUED, kill_leftovers=seen.tree_alive)
    if seen.stored_solver_alive and job.solver_identity is not None:
        return Decision(Action.ADOPT, solver=job.solver_identity, status=_adopted_status(job))
    if seen.tagged_solver is not None:
        return Decision(Action.ADOPT, solver=seen.tagged_solver, status=_adopted_status(job))
    if job.status is JobStatus.STARTING and seen.tagged_launcher is not None:
        return Decision(Action.RESUME_SEARCH, status=JobStatus.STARTING)
    # Only a user's stop moves a job to `stopping`, but rows written under schema 0001 carry
    # no requester, and a stopping job may not become `failed` (states.TRANSITIONS).
    requester = job.stop_requested_by
    if requester is None and job.status is JobStatus.STOPPING:
        requester = "user"
    ending = decide_ending(
        termination=seen.termination,
        stop_requested_by=requester,
        exit=None,
        requires_banner=requires_banner,
        restart_dump=seen.restart_dump,
        failure_text=seen.failure_text,
    )
    message = ending.message
    if seen.termination is None and requester is None:
        message = "solver ended while the daemon was down; no termination message in its output"
    return Decision(
        Action.END, status=ending.status, message=message, kill_leftovers=seen.tree_alive
    )


def _adopted_status(job: Job) -> JobStatus:
    # A job whose solver PID was known was running even if the daemon died before it could
    # record the move out of `starting`.
    return JobStatus.RUNNING if job.status is JobStatus.STARTING else job.status
