"""Issue #5 Tests: a hypothesis state machine over the allocator, the licence pools and the
queue planner together — random launches, ends, daemon crashes (state rebuilt from what is
persisted), priority changes and licence changes. Never a core or licence over-booked,
priority order kept at every admission, and every job eventually runs or is cancelled with
a reason."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from serv.core.cores import CoreAllocator, Cpu, Topology
from serv.core.jobs import Family, Job
from serv.core.licenses import LicensePools
from serv.core.queue import plan_admissions, queue_key, queue_order
from serv.core.states import JobStatus, transition

AT = datetime(2026, 1, 1, tzinfo=UTC)
S = JobStatus
TOPOLOGY = Topology(tuple(Cpu(index=i, core_id=i % 4, socket=i // 4, siblings=(i,)) for i in range(8)))


class Scheduling(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[int, Job] = {}
        self.demand: dict[int, dict[str, int]] = {}
        self.pool_size = 6
        self.allocator = CoreAllocator(TOPOLOGY)
        self.pools = LicensePools({"lsdyna": self.pool_size})
        self.next_id = 1
        self.cancel_reasons: dict[int, str] = {}

    # ----------------------------------------------------------------- the daemon's step

    def schedule(self) -> None:
        queued = [j for j in self.jobs.values() if j.status is S.QUEUED]
        plan = plan_admissions(
            queued,
            self.allocator.free_count(),
            {"lsdyna": self.pools.free("lsdyna")},
            lambda job: self.demand[job.id],
        )
        order = queue_order(queued)
        started = [j for j in order if j.id in plan.start]
        # Priority order: a job starts ahead of a better-placed one only as a backfill.
        for job in started:
            ahead = [j for j in order[: order.index(job)] if j.id not in plan.start]
            assert not ahead or job.id in plan.backfilled
        # Regular starts first; what is free then is what the head was short against.
        started.sort(key=lambda j: j.id in plan.backfilled)
        free_cores_before = free_lic_before = None
        for job in started:
            if job.id in plan.backfilled and free_cores_before is None:
                free_cores_before = self.allocator.free_count()
                free_lic_before = self.pools.free("lsdyna")
            cores = self.allocator.allocate(job.id, job.ncpu)
            assert cores is not None, "the planner admitted a job the allocator cannot place"
            self.pools.take(job.id, self.demand[job.id])
            moved = transition(job, S.STARTING, at=AT)
            self.jobs[job.id] = transition(dataclasses.replace(moved, allocated_cores=cores), S.RUNNING, at=AT)
        waiting = [j for j in order if j.id not in plan.start]
        if waiting and plan.backfilled:
            assert free_cores_before is not None
            # The backfill never delays the head: given just what it was short of before,
            # it would still fit beside the backfilled jobs.
            head = waiting[0]
            need = self.demand[head.id].get("lsdyna", 0)
            short_cores = max(0, head.ncpu - free_cores_before)
            short_lic = max(0, need - (free_lic_before if free_lic_before is not None else need))
            assert self.allocator.free_count() + short_cores >= head.ncpu
            free_lic = self.pools.free("lsdyna")
            if free_lic is not None:
                assert free_lic + short_lic >= need
        for job_id, why in plan.waiting.items():
            assert why.startswith("waiting"), why
            self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], message=why)

    # ----------------------------------------------------------------- events

    @rule(ncpu=st.integers(1, 8), licences=st.integers(0, 8), priority=st.integers(-2, 2))
    def launch(self, ncpu: int, licences: int, priority: int) -> None:
        if licences > self.pool_size:
            return  # refused with 1005 at launch: never queued
        job = Job(id=self.next_id, solver="s", family=Family.LSDYNA, input=f"/r{self.next_id}/m.k",
                  workdir=f"/r{self.next_id}", submitted_at=AT, ncpu=ncpu, priority=priority,
                  queue_seq=float(self.next_id))
        self.jobs[job.id] = job
        self.demand[job.id] = {"lsdyna": licences} if licences else {}
        self.next_id += 1
        self.schedule()

    @precondition(lambda self: any(j.status is S.RUNNING for j in self.jobs.values()))
    @rule(data=st.data())
    def end(self, data: st.DataObject) -> None:
        running = sorted(j.id for j in self.jobs.values() if j.status is S.RUNNING)
        job_id = data.draw(st.sampled_from(running))
        self.jobs[job_id] = transition(self.jobs[job_id], S.FINISHED, at=AT)
        self.allocator.release(job_id)
        self.pools.release(job_id)
        self.schedule()

    @precondition(lambda self: any(j.status is S.QUEUED for j in self.jobs.values()))
    @rule(data=st.data(), priority=st.integers(-3, 3))
    def set_priority(self, data: st.DataObject, priority: int) -> None:
        queued = sorted(j.id for j in self.jobs.values() if j.status is S.QUEUED)
        job_id = data.draw(st.sampled_from(queued))
        self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], priority=priority)
        self.schedule()

    @precondition(lambda self: any(j.status is S.QUEUED for j in self.jobs.values()))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        queued = sorted(j.id for j in self.jobs.values() if j.status is S.QUEUED)
        job_id = data.draw(st.sampled_from(queued))
        self.jobs[job_id] = transition(self.jobs[job_id], S.CANCELLED, at=AT, message="cancelled by user")
        self.cancel_reasons[job_id] = "cancelled by user"
        self.schedule()

    @rule(size=st.integers(0, 8))
    def licence_change(self, size: int) -> None:
        """A config reload resizes the pool; jobs that can never fit now are cancelled."""
        self.pool_size = size
        self.pools.set_size("lsdyna", size)
        for job in list(self.jobs.values()):
            if job.status is S.QUEUED and self.demand[job.id].get("lsdyna", 0) > size:
                self.jobs[job.id] = transition(job, S.CANCELLED, at=AT, message="needs more licences than the pool")
                self.cancel_reasons[job.id] = "needs more licences than the pool"
        self.schedule()

    @rule(others=st.integers(0, 6))
    def licence_server(self, others: int) -> None:
        self.pools.set_external("lsdyna", others)
        self.schedule()

    @rule()
    def crash(self) -> None:
        """kill -9 and restart: allocator and pools rebuilt from the persisted jobs."""
        self.allocator = CoreAllocator(TOPOLOGY)
        pools = LicensePools({"lsdyna": self.pool_size})
        for job in sorted(self.jobs.values(), key=lambda j: j.id):
            if job.status is S.RUNNING:
                cores, source = self.allocator.restore_first(job.id, job.ncpu, [("database", job.allocated_cores)])
                assert source == "database" and cores == job.allocated_cores
                pools.restore(job.id, self.demand[job.id])
        self.pools = pools
        self.schedule()

    # ----------------------------------------------------------------- invariants

    @invariant()
    def never_over_booked(self) -> None:
        running = [j for j in self.jobs.values() if j.status is S.RUNNING]
        booked = [c for j in running for c in (j.allocated_cores or ())]
        assert len(booked) == len(set(booked)), "a core is booked twice"
        assert set(self.allocator.snapshot()) == set(booked)
        assert sum(self.demand[j.id].get("lsdyna", 0) for j in running) == self.pools.held("lsdyna")

    @invariant()
    def every_queued_job_says_why(self) -> None:
        for job in self.jobs.values():
            if job.status is S.QUEUED:
                assert job.message.startswith("waiting"), job
            if job.status is S.CANCELLED:
                assert job.message == self.cancel_reasons[job.id]

    def teardown(self) -> None:
        """Eventually: end every running job and clear the licence server; everything queued
        runs (the pool fits it by construction) or was cancelled with a reason."""
        self.pools.set_external("lsdyna", 0)
        for _ in range(len(self.jobs) + 1):
            running = [j.id for j in self.jobs.values() if j.status is S.RUNNING]
            for job_id in running:
                self.jobs[job_id] = transition(self.jobs[job_id], S.FINISHED, at=AT)
                self.allocator.release(job_id)
                self.pools.release(job_id)
            self.schedule()
        assert all(j.status in (S.FINISHED, S.CANCELLED) for j in self.jobs.values()), [
            (j.id, j.status, j.message) for j in self.jobs.values()
        ]


Scheduling.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestScheduling = Scheduling.TestCase
