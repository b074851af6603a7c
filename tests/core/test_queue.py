"""contract.md § Methods `launch` (priority), `setPriority`, § Job `message` (why it waits):
which queued jobs start, in which order, and why the others wait.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from serv.core.jobs import Family, Job
from serv.core.queue import plan_admissions, queue_order
from serv.core.states import JobStatus

S = JobStatus
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def job(job_id: int, ncpu: int = 1, priority: int = 0, status: JobStatus = S.QUEUED) -> Job:
    return Job(
        id=job_id, solver="generic", family=Family.GENERIC, input=f"/decks/{job_id}.k",
        workdir=f"/decks/{job_id}", submitted_at=T0, status=status, ncpu=ncpu, priority=priority,
    )


class TestOrder:
    """contract.md § Methods `launch` / `setPriority`: higher priority first, then submission."""

    def test_queue_order_sorts_by_priority_then_id_when_priorities_differ(self) -> None:
        """Higher priority first; equal priorities keep submission (id) order."""
        jobs = [job(1), job(2, priority=5), job(3), job(4, priority=5), job(5, priority=-1)]
        assert [j.id for j in queue_order(jobs)] == [2, 4, 1, 3, 5]

    def test_queue_order_ignores_jobs_when_they_are_not_queued(self) -> None:
        """Only `queued` jobs are candidates for a start."""
        jobs = [job(1, status=status) for status in S if status is not S.QUEUED] + [job(9)]
        assert [j.id for j in queue_order(jobs)] == [9]

    def test_plan_admissions_starts_in_queue_order_when_all_fit(self) -> None:
        """Every job that fits starts, listed in queue order."""
        plan = plan_admissions([job(3, 2), job(1, 2), job(2, 2, priority=1)], free_cores=8)
        assert plan.start == (2, 1, 3)
        assert plan.waiting == {}

    def test_plan_admissions_starts_nothing_when_the_queue_is_empty(self) -> None:
        """No queued job: nothing starts, nothing waits."""
        plan = plan_admissions([job(1, status=S.RUNNING)], free_cores=8)
        assert plan.start == () and plan.waiting == {}


class TestHeadOfLine:
    """contract.md § Job `message`: strict head-of-line admission and the reason each job waits."""

    def test_plan_admissions_starts_nothing_behind_the_head_when_it_does_not_fit(self) -> None:
        """A big head blocks smaller jobs behind it, so it is never starved."""
        plan = plan_admissions([job(1, 8), job(2, 1), job(3, 1)], free_cores=4)
        assert plan.start == ()
        assert set(plan.waiting) == {1, 2, 3}

    def test_plan_admissions_stops_at_the_first_misfit_when_earlier_jobs_start(self) -> None:
        """Jobs before the misfit start; the misfit and everything after it wait."""
        plan = plan_admissions([job(1, 2), job(2, 4), job(3, 1)], free_cores=5)
        assert plan.start == (1,)
        assert set(plan.waiting) == {2, 3}

    def test_plan_admissions_names_cores_needed_and_free_when_the_head_waits(self) -> None:
        """The blocked head says "waiting for N cores, M free", M after earlier starts."""
        plan = plan_admissions([job(1, 2), job(2, 4)], free_cores=5)
        assert plan.waiting[2] == "waiting for 4 cores, 3 free"

    def test_plan_admissions_names_the_blocking_job_when_a_job_waits_behind_it(self) -> None:
        """Jobs behind the blocked head say which job, and how many cores, they wait behind."""
        plan = plan_admissions([job(1, 8), job(2, 1), job(3, 1, priority=-2)], free_cores=4)
        assert plan.waiting == {
            1: "waiting for 8 cores, 4 free",
            2: "waiting behind job 1 (8 cores)",
            3: "waiting behind job 1 (8 cores)",
        }

    def test_plan_admissions_blocks_by_priority_when_the_head_is_a_later_job(self) -> None:
        """The head is the highest-priority job, even if it was submitted last."""
        plan = plan_admissions([job(1, 1), job(2, 6, priority=3)], free_cores=4)
        assert plan.start == ()
        assert plan.waiting == {2: "waiting for 6 cores, 4 free", 1: "waiting behind job 2 (6 cores)"}

    def test_plan_admissions_reports_zero_free_when_no_core_is_free(self) -> None:
        """With every core busy, the head waits for its count with 0 free."""
        plan = plan_admissions([job(1, 2)], free_cores=0)
        assert plan.waiting == {1: "waiting for 2 cores, 0 free"}


JOB_LISTS = st.lists(
    st.tuples(
        st.integers(1, 8),                      # ncpu
        st.integers(-2, 2),                     # priority
        st.sampled_from(list(S)),               # status
    ),
    max_size=12,
)


class TestAdmissionProperty:
    """contract.md § Methods `getCoreAllocationStatus`: admission never oversubscribes."""

    @settings(max_examples=300, deadline=None)
    @given(specs=JOB_LISTS, free=st.integers(0, 16))
    def test_plan_admissions_respects_free_cores_and_order_when_inputs_are_random(
        self, specs: list[tuple[int, int, JobStatus]], free: int
    ) -> None:
        """Started jobs fit the free cores, form a prefix of the queue order, and the first
        job left out really does not fit; every queued job starts or has a reason."""
        jobs = [job(i + 1, ncpu, prio, status) for i, (ncpu, prio, status) in enumerate(specs)]
        ordered = [j.id for j in queue_order(jobs)]
        by_id = {j.id: j for j in jobs}
        plan = plan_admissions(jobs, free)

        used = sum(by_id[i].ncpu for i in plan.start)
        assert used <= free
        assert list(plan.start) == ordered[: len(plan.start)]
        assert set(plan.start).isdisjoint(plan.waiting)
        assert set(plan.start) | set(plan.waiting) == set(ordered)
        if len(plan.start) < len(ordered):
            head = by_id[ordered[len(plan.start)]]
            assert head.ncpu > free - used
            assert plan.waiting[head.id] == f"waiting for {head.ncpu} cores, {free - used} free"


class TestBackfill:
    """A job behind the head starts early only when that cannot delay the head (issue #5)."""

    def job(self, job_id: int, ncpu: int, priority: int = 0) -> "Job":
        from datetime import UTC, datetime

        from serv.core.jobs import Family, Job

        return Job(id=job_id, solver="s", family=Family.GENERIC, input=f"/{job_id}", workdir=f"/{job_id}",
                   submitted_at=datetime(2026, 1, 1, tzinfo=UTC), ncpu=ncpu, priority=priority)

    def test_backfill_starts_a_licence_free_job_when_the_head_waits_only_for_licences(self) -> None:
        head, small = self.job(1, 2), self.job(2, 2)
        demand = {1: {"lsdyna": 4}, 2: {}}
        plan = plan_admissions([head, small], 4, {"lsdyna": 1}, lambda j: demand[j.id])
        assert plan.start == (2,) and plan.backfilled == (2,)
        assert plan.waiting == {1: "waiting for 4 lsdyna licences, 1 free"}

    def test_backfill_refused_when_it_would_take_the_cores_the_head_needs(self) -> None:
        head, small = self.job(1, 3), self.job(2, 2)
        plan = plan_admissions([head, small], 4, {"lsdyna": 1}, lambda j: {"lsdyna": 4} if j.id == 1 else {})
        assert plan.start == ()
        assert plan.waiting[2] == "waiting behind job 1 (3 cores)"

    def test_backfill_refused_when_it_takes_the_licence_pool_the_head_waits_for(self) -> None:
        head, small = self.job(1, 1), self.job(2, 1)
        plan = plan_admissions([head, small], 4, {"lsdyna": 1}, lambda j: {"lsdyna": 2} if j.id == 1 else {"lsdyna": 1})
        assert plan.start == ()

    def test_backfill_refused_when_it_would_leave_too_few_licences_of_a_pool_the_head_has(self) -> None:
        head, small = self.job(1, 4), self.job(2, 1)
        demand = {1: {"lsdyna": 2}, 2: {"lsdyna": 1}}
        plan = plan_admissions([head, small], 2, {"lsdyna": 2}, lambda j: demand[j.id])
        assert plan.start == ()

    @given(
        st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=8),
        st.integers(0, 8),
        st.integers(0, 6),
    )
    def test_backfilled_jobs_never_leave_the_head_short_of_what_it_does_not_wait_for(
        self, specs: list[tuple[int, int, int]], cores: int, lic: int
    ) -> None:
        jobs = [self.job(i + 1, n, p) for i, (n, _l, p) in enumerate(specs)]
        demand = {i + 1: {"lsdyna": l} for i, (_n, l, _p) in enumerate(specs)}
        plan = plan_admissions(jobs, cores, {"lsdyna": lic}, lambda j: demand[j.id])
        used_cores = sum(j.ncpu for j in jobs if j.id in plan.start)
        used_lic = sum(demand[j]["lsdyna"] for j in plan.start)
        assert used_cores <= cores and used_lic <= lic
        waiting = [j for j in queue_order(jobs) if j.id not in plan.start]
        if waiting and plan.backfilled:
            head = waiting[0]
            short_cores = head.ncpu > cores - sum(j.ncpu for j in jobs if j.id in plan.start and j.id not in plan.backfilled)
            if not short_cores:
                assert cores - used_cores >= head.ncpu


class TestWindow:
    """A long queue is planned only `window` deep once no core is left."""

    def test_jobs_beyond_the_window_get_no_reason_when_no_core_is_left(self) -> None:
        jobs = [job(i) for i in range(1, 11)]
        plan = plan_admissions(jobs, free_cores=1, window=4)
        assert plan.start == (1,)
        assert sorted(plan.waiting) == [2, 3, 4]

    def test_planning_goes_past_the_window_while_cores_are_free(self) -> None:
        jobs = [job(1, ncpu=8)] + [job(i) for i in range(2, 11)]
        plan = plan_admissions(jobs, free_cores=3, window=2)
        # The head (8 cores) waits; backfill continues past the window while cores remain,
        # but never takes a core the head needs: here the head is short anyway.
        assert plan.start == ()
        assert plan.waiting[1] == "waiting for 8 cores, 3 free"
        assert len(plan.waiting) == 10

    def test_a_window_does_not_change_what_starts(self) -> None:
        jobs = [job(i, ncpu=1 + i % 3, priority=i % 2) for i in range(1, 40)]
        for free in range(0, 12):
            whole = plan_admissions(jobs, free_cores=free)
            windowed = plan_admissions(queue_order(jobs), free_cores=free, window=5, in_order=True)
            assert windowed.start == whole.start
            assert {k: v for k, v in whole.waiting.items() if k in windowed.waiting} == windowed.waiting
