"""Which queued jobs may start now, and why each of the others waits (issue #5 item 3).

Order: priority (higher first), then queue sequence (submission order, changed by moveJob).
The first job that cannot start is the *head*. A job behind it may start ahead of it
(backfill) only when that cannot delay the head: it must fit now, leave the head's full
demand of every resource the head is not short of, and take nothing the head is waiting
for. With no run-time estimates this is the only backfill that provably never delays it.

A queue can hold thousands of jobs and is planned after every start and end, so planning
may stop after a `window` of jobs once no core is left: nothing behind could start then
(except a job that books no core, which waits until it is within the window), and the
jobs it did not reach keep the reason they had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from serv.core.jobs import Job
from serv.core.states import JobStatus

Demand = Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of one scheduling step: jobs to start (in order) and why others wait."""

    start: tuple[int, ...]
    waiting: dict[int, str] = field(default_factory=dict)
    backfilled: tuple[int, ...] = ()


def queue_key(job: Job) -> tuple[int, float]:
    return (-job.priority, job.queue_seq if job.queue_seq is not None else float(job.id))


def queue_order(jobs: Iterable[Job]) -> list[Job]:
    """Queued jobs in the order they are considered for a start."""
    return sorted((j for j in jobs if j.status is JobStatus.QUEUED), key=queue_key)


def _shortfalls(ncpu: int, need: Demand, cores: int, licences: Mapping[str, int | None]) -> list[str]:
    short = []
    if ncpu > cores:
        short.append(f"{ncpu} cores, {cores} free")
    for pool, count in sorted(need.items()):
        free = licences.get(pool)
        if free is not None and count > free:
            short.append(f"{count} {pool} licences, {free} free")
    return short


def plan_admissions(
    jobs: Iterable[Job],
    free_cores: int,
    free_licences: Mapping[str, int | None] | None = None,
    demand: Callable[[Job], Demand] = lambda job: {},
    cores_of: Callable[[Job], int] = lambda job: job.ncpu,
    *,
    window: int | None = None,
    in_order: bool = False,
) -> Admission:
    """Decide which queued jobs start with the resources free now.

    `free_licences` maps pool → free count (None: unlimited); `demand(job)` gives the
    licences a job takes and `cores_of(job)` the cores it books (0 for profiles that book
    none). With `window`, jobs after the first `window` are looked at only while a core is
    free (they get no entry in `waiting` otherwise). `in_order`: `jobs` are queued jobs
    already in queue order (they are then consumed lazily). Pure: the caller books what
    `start` lists, in that order.
    """
    cores = free_cores
    licences: dict[str, int | None] = dict(free_licences or {})
    start: list[int] = []
    backfilled: list[int] = []
    waiting: dict[int, str] = {}
    head: Job | None = None
    head_need: Demand = {}
    head_cores = 0
    head_short_cores = False
    head_short_pools: set[str] = set()

    # Shortfalls by (cores, licences) asked, valid until something is taken: in a long
    # queue of alike jobs, each pass would otherwise spell out the same reason per job.
    known: dict[tuple[object, ...], str] = {}

    def shortfalls(ncpu: int, need: Demand) -> str:
        """Why a job of `ncpu` cores and `need` licences cannot start now ("" if it can)."""
        key = (ncpu, *sorted(need.items())) if need else (ncpu,)
        why = known.get(key)
        if why is None:
            short = _shortfalls(ncpu, need, cores, licences)
            why = known[key] = "waiting for " + " and ".join(short) if short else ""
        return why

    def take(job: Job, need: Demand) -> None:
        nonlocal cores
        known.clear()
        cores -= cores_of(job)
        for pool, count in need.items():
            free = licences.get(pool)
            if free is not None:
                licences[pool] = free - count

    for position, job in enumerate(jobs if in_order else queue_order(jobs)):
        if window is not None and position >= window and cores <= 0:
            break
        need = demand(job)
        ncpu = cores_of(job)
        why = shortfalls(ncpu, need)
        if head is None:
            if not why:
                start.append(job.id)
                take(job, need)
                continue
            head, head_need, head_cores = job, need, ncpu
            head_short_cores = ncpu > cores
            head_short_pools = {
                p for p, n in need.items() if (f := licences.get(p)) is not None and n > f
            }
            waiting[job.id] = why
            continue
        if why:
            waiting[job.id] = why
            continue
        if _would_delay(ncpu, need, head_cores, head_need, head_short_cores, head_short_pools, cores, licences):
            waiting[job.id] = f"waiting behind job {head.id} ({head.ncpu} cores)"
            continue
        start.append(job.id)
        backfilled.append(job.id)
        take(job, need)
    return Admission(tuple(start), waiting, tuple(backfilled))


def _would_delay(
    ncpu: int,
    need: Demand,
    head_cores: int,
    head_need: Demand,
    head_short_cores: bool,
    head_short_pools: set[str],
    cores: int,
    licences: Mapping[str, int | None],
) -> bool:
    """Whether starting a job of `ncpu` cores and `need` licences now could make the head
    (which books `head_cores`) start later."""
    if (head_short_cores and ncpu > 0) or cores - ncpu < head_cores:
        return True
    for pool, count in need.items():
        if count and pool in head_short_pools:
            return True
    for pool, count in head_need.items():
        free = licences.get(pool)
        if pool not in head_short_pools and free is not None and free - need.get(pool, 0) < count:
            return True
    return False


def reorder(queued: list[Job], job_id: int, position: int) -> dict[int, tuple[int, float]]:
    """moveJob: new (priority, queue_seq) for the queued jobs whose place changes.

    The job lands at `position` (0-based, clamped) of the queue order. Its priority is
    clamped between its new neighbours' so the order stays "priority, then sequence"; the
    sequence numbers already in use are handed out again in the new order, so jobs
    submitted later still come after every job queued now.
    """
    order = sorted(queued, key=queue_key)
    moving = next(j for j in order if j.id == job_id)
    rest = [j for j in order if j.id != job_id]
    position = max(0, min(position, len(rest)))
    new_order = rest[:position] + [moving] + rest[position:]
    priority = moving.priority
    if position > 0:
        priority = min(priority, rest[position - 1].priority)
    if position < len(rest):
        priority = max(priority, rest[position].priority)
    seqs = sorted(queue_key(j)[1] for j in order)
    changes: dict[int, tuple[int, float]] = {}
    for job, seq in zip(new_order, seqs, strict=True):
        prio = priority if job.id == job_id else job.priority
        if (prio, seq) != (job.priority, queue_key(job)[1]):
            changes[job.id] = (prio, seq)
    return changes
