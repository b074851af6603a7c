"""Which queued jobs may start now, and why the others wait.

Order is priority (higher first), then submission order (lower id first). Admission is
strict: when the head of the queue does not fit, nothing behind it starts, so a large job
is never starved by a stream of small ones (backfill that cannot delay the head comes with
the scheduling issue #5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from serv.core.jobs import Job
from serv.core.states import JobStatus


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of one scheduling step."""

    start: tuple[int, ...]
    waiting: dict[int, str]


def queue_order(jobs: Iterable[Job]) -> list[Job]:
    """Queued jobs in the order they are considered for a start."""
    queued = [j for j in jobs if j.status is JobStatus.QUEUED]
    return sorted(queued, key=lambda j: (-j.priority, j.id))


def plan_admissions(jobs: Iterable[Job], free_cores: int) -> Admission:
    """Decide which queued jobs start with `free_cores` free, and the reason each other waits."""
    start: list[int] = []
    waiting: dict[int, str] = {}
    blocked_by: Job | None = None
    for job in queue_order(jobs):
        if blocked_by is None and job.ncpu <= free_cores:
            start.append(job.id)
            free_cores -= job.ncpu
            continue
        if blocked_by is None:
            blocked_by = job
            waiting[job.id] = f"waiting for {job.ncpu} cores, {free_cores} free"
        else:
            waiting[job.id] = f"waiting behind job {blocked_by.id} ({blocked_by.ncpu} cores)"
    return Admission(tuple(start), waiting)
