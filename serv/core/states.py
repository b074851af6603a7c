"""Job statuses and the one table of legal moves between them (contract.md § Job).

A leaf module: it imports nothing from `serv` except the error it raises, so every other
module can import it without cycles. `transition()` is the only writer of `Job.status`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Mapping

from serv.errors import InvalidState

if TYPE_CHECKING:
    from serv.core.jobs import Job


class JobStatus(StrEnum):
    """A job's lifecycle status; the member value is the wire value."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"

    @property
    def is_live(self) -> bool:
        """True while the job holds, or waits for, resources on this machine."""
        return self in LIVE

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def has_process(self) -> bool:
        """True when a solver process tree may exist for the job."""
        return self in SIGNALLABLE


class Termination(StrEnum):
    """How the solver said it ended, read from its output."""

    NORMAL = "normal"
    ERROR = "error"


S = JobStatus

TERMINAL: frozenset[JobStatus] = frozenset({S.FINISHED, S.FAILED, S.STOPPED, S.CANCELLED})
LIVE: frozenset[JobStatus] = frozenset(set(JobStatus) - TERMINAL)
SIGNALLABLE: frozenset[JobStatus] = frozenset({S.STARTING, S.RUNNING, S.PAUSED, S.STOPPING})

# Every legal move and who triggers it. Nothing else writes Job.status; rules such as
# "stopping an ended job returns it unchanged" are command logic that runs before this table.
TRANSITIONS: Mapping[tuple[JobStatus, JobStatus], str] = {
    (S.QUEUED, S.STARTING): "daemon: cores (and licences) granted",
    (S.QUEUED, S.CANCELLED): "user: stop before start, or a dependency failed",
    (S.STARTING, S.RUNNING): "daemon: real solver PID found (or fallback to the launched PID)",
    (S.STARTING, S.FAILED): "daemon: could not start, or the solver exited with an error",
    (S.STARTING, S.FINISHED): "solver: ended normally before its PID was confirmed",
    (S.STARTING, S.STOPPED): "solver: vanished before its PID was confirmed",
    (S.STARTING, S.STOPPING): "user: stop while starting",
    (S.RUNNING, S.PAUSED): "user: pause",
    (S.RUNNING, S.STOPPING): "user: stop",
    (S.RUNNING, S.FINISHED): "solver: normal termination",
    (S.RUNNING, S.FAILED): "solver: error termination or non-zero exit",
    (S.RUNNING, S.STOPPED): "solver: gone without a normal end, or ended by sw1",
    (S.PAUSED, S.RUNNING): "user: resume",
    (S.PAUSED, S.STOPPING): "user: stop",
    (S.PAUSED, S.STOPPED): "solver: killed while paused",
    (S.PAUSED, S.FAILED): "solver: ended with an error while paused",
    (S.PAUSED, S.FINISHED): "solver: had ended normally when it was paused",
    (S.STOPPING, S.STOPPED): "daemon: the whole tree is gone after a stop",
    (S.STOPPING, S.FINISHED): "solver: reached its normal end before the stop took effect",
}


def can_move(src: JobStatus, dst: JobStatus) -> bool:
    """Whether the table allows `src` → `dst`."""
    return (src, dst) in TRANSITIONS


def transition(job: Job, to: JobStatus, *, at: datetime, message: str | None = None, **changes: Any) -> Job:
    """Return `job` moved to `to`, stamping start and end times, with `changes` (other
    fields of the same move, e.g. the cores of a start) made in the same copy.

    Raises InvalidState (1002) naming the job, its status and the refused target when
    the table forbids the move. Pure: the caller commits and announces the result.
    """
    if not can_move(job.status, to):
        raise InvalidState(f"job {job.id} is {job.status}; it cannot become {to}")
    started_at = at if to is S.STARTING and job.started_at is None else job.started_at
    ended_at = at if to in TERMINAL else job.ended_at
    if "status" in changes:
        raise TypeError("transition() sets the status itself")
    return job.evolve(
        status=to,
        message=job.message if message is None else message,
        started_at=started_at,
        ended_at=ended_at,
        **changes,
    )
