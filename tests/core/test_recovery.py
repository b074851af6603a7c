"""contract.md § Job (Status) and § Files `pid`: what a restarted daemon does with each job
the store holds as live (issue #3 item 11).

A job is re-adopted only when its solver is provably the same process; otherwise it ends
with the status its output supports, and whatever is left of its tree is killed.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime

import pytest

from serv.core.jobs import Family, Job, ProcIdentity
from serv.core.recovery import Action, Decision, Observation, decide
from serv.core.states import LIVE, JobStatus, Termination, can_move

S = JobStatus
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
STORED = ProcIdentity(4242, 1767322000.25)
TAGGED = ProcIdentity(5151, 1767322100.5)
LAUNCHER = ProcIdentity(5150, 1767322099.0)
LOST_MESSAGE = "solver ended while the daemon was down; no termination message in its output"


def job_in(status: JobStatus, **changes: object) -> Job:
    job = Job(
        id=12, solver="lsdyna-smp", family=Family.LSDYNA, input="/decks/main.k",
        workdir="/decks", submitted_at=T0, status=status, ncpu=2,
    )
    if status is not S.QUEUED:
        job = dataclasses.replace(job, pid=STORED.pid, pid_create_time=STORED.create_time)
    if status is S.STOPPING:
        job = dataclasses.replace(job, stop_requested_by="user")
    return dataclasses.replace(job, **changes)  # type: ignore[arg-type]


class TestKeepAndAdopt:
    """contract.md § Job `pid`: re-adopt only the very same solver process."""

    def test_decide_keeps_a_job_queued_when_it_never_started(self) -> None:
        """Queued jobs stay queued."""
        assert decide(job_in(S.QUEUED), Observation(), requires_banner=True) == Decision(Action.KEEP_QUEUED)

    def test_decide_kills_a_queued_jobs_tagged_processes_and_keeps_it_queued(self) -> None:
        """Processes tagged with a queued job's id come from a start that was never recorded
        (the spawn runs alongside that commit): killed, and the job starts again later."""
        seen = Observation(stored_solver_alive=True, tagged_solver=TAGGED, tree_alive=True)
        assert decide(job_in(S.QUEUED), seen, requires_banner=True) == Decision(
            Action.KEEP_QUEUED, kill_leftovers=True
        )

    @pytest.mark.parametrize(
        ("status", "adopted"),
        [(S.STARTING, S.RUNNING), (S.RUNNING, S.RUNNING), (S.PAUSED, S.PAUSED),
         (S.STOPPING, S.STOPPING)],
        ids=["starting", "running", "paused", "stopping"],
    )
    def test_decide_adopts_the_stored_identity_when_it_is_alive(
        self, status: JobStatus, adopted: JobStatus
    ) -> None:
        """Stored (pid, create time) alive: adopt it; a starting job with a known PID is running."""
        seen = Observation(stored_solver_alive=True, tagged_solver=TAGGED, tree_alive=True)
        decision = decide(job_in(status), seen, requires_banner=True)
        assert decision == Decision(Action.ADOPT, solver=STORED, status=adopted)

    @pytest.mark.parametrize("status", [S.STARTING, S.RUNNING, S.PAUSED, S.STOPPING])
    def test_decide_adopts_the_tagged_solver_when_the_stored_one_is_gone(self, status: JobStatus) -> None:
        """A process carrying the job's tag and the solver's name is adopted instead."""
        seen = Observation(stored_solver_alive=False, tagged_solver=TAGGED,
                           tagged_launcher=LAUNCHER, tree_alive=True)
        decision = decide(job_in(status), seen, requires_banner=True)
        assert decision.action is Action.ADOPT
        assert decision.solver == TAGGED
        assert decision.status is (S.RUNNING if status is S.STARTING else status)

    def test_decide_ignores_stored_alive_when_the_job_has_no_stored_identity(self) -> None:
        """Without a stored create time a live PID proves nothing; the tagged solver is used."""
        job = job_in(S.RUNNING, pid_create_time=None)
        seen = Observation(stored_solver_alive=True, tagged_solver=TAGGED, tree_alive=True)
        assert decide(job, seen, requires_banner=True).solver == TAGGED

    def test_decide_resumes_the_pid_search_when_a_starting_job_has_only_its_launcher(self) -> None:
        """Starting, solver not found yet, tagged launcher alive: keep searching under it."""
        job = job_in(S.STARTING, pid=None, pid_create_time=None)
        seen = Observation(tagged_launcher=LAUNCHER, tree_alive=True)
        decision = decide(job, seen, requires_banner=True)
        assert decision == Decision(Action.RESUME_SEARCH, status=S.STARTING)

    @pytest.mark.parametrize("status", [S.RUNNING, S.PAUSED])
    def test_decide_ends_the_job_when_only_a_launcher_is_left_after_the_start(
        self, status: JobStatus
    ) -> None:
        """Past `starting`, a launcher without its solver is a leftover to kill."""
        seen = Observation(tagged_launcher=LAUNCHER, tree_alive=True)
        decision = decide(job_in(status), seen, requires_banner=True)
        assert decision.action is Action.END
        assert decision.kill_leftovers


class TestEnd:
    """contract.md § Job: the final status when the solver ended while the daemon was down."""

    @pytest.mark.parametrize("status", [S.STARTING, S.RUNNING, S.PAUSED])
    def test_decide_ends_finished_when_the_output_shows_a_normal_end(self, status: JobStatus) -> None:
        """A normal termination banner ends the job `finished`."""
        decision = decide(job_in(status), Observation(termination=Termination.NORMAL),
                          requires_banner=True)
        assert decision == Decision(Action.END, status=S.FINISHED, message="normal termination")

    @pytest.mark.parametrize("status", [S.STARTING, S.RUNNING, S.PAUSED])
    def test_decide_ends_failed_with_the_solver_text_when_the_output_shows_an_error(
        self, status: JobStatus
    ) -> None:
        """An error termination ends the job `failed`, its message the solver's error."""
        seen = Observation(termination=Termination.ERROR,
                           failure_text="input phase completed with 1 fatal errors")
        decision = decide(job_in(status), seen, requires_banner=True)
        assert decision == Decision(Action.END, status=S.FAILED,
                                    message="input phase completed with 1 fatal errors")

    @pytest.mark.parametrize("requires_banner", [True, False])
    @pytest.mark.parametrize("status", [S.STARTING, S.RUNNING, S.PAUSED])
    def test_decide_ends_stopped_when_the_output_has_no_termination(
        self, status: JobStatus, requires_banner: bool
    ) -> None:
        """No banner and no process: `stopped`, saying it ended while the daemon was down."""
        decision = decide(job_in(status), Observation(), requires_banner=requires_banner)
        assert decision == Decision(Action.END, status=S.STOPPED, message=LOST_MESSAGE)

    @pytest.mark.parametrize("tree_alive", [True, False])
    def test_decide_kills_leftovers_only_when_the_tree_is_alive(self, tree_alive: bool) -> None:
        """Ending a job kills what is left of its tree, and only when something is left."""
        decision = decide(job_in(S.RUNNING), Observation(tree_alive=tree_alive), requires_banner=True)
        assert decision.action is Action.END
        assert decision.kill_leftovers is tree_alive

    def test_decide_ends_stopped_naming_the_requester_when_a_stopping_job_is_gone(self) -> None:
        """A stopping job whose solver is gone ends `stopped` by whoever asked."""
        decision = decide(job_in(S.STOPPING), Observation(tree_alive=True), requires_banner=True)
        assert decision == Decision(Action.END, status=S.STOPPED, message="stopped by user",
                                    kill_leftovers=True)

    def test_decide_names_the_restart_dump_when_a_stopping_job_ended_by_sw1(self) -> None:
        """A stop that ended with a normal banner and a dump names the dump to restart from."""
        seen = Observation(termination=Termination.NORMAL, restart_dump="d3dump01")
        decision = decide(job_in(S.STOPPING), seen, requires_banner=True)
        assert decision.status is S.STOPPED
        assert decision.message == "stopped by user; restart dump d3dump01 written"

    @pytest.mark.parametrize("termination", [None, Termination.NORMAL, Termination.ERROR],
                             ids=["none", "normal", "error"])
    def test_decide_ends_stopped_when_a_stopping_job_has_no_recorded_requester(
        self, termination: Termination | None
    ) -> None:
        """Rows written under schema 0001 have no stop requester; a stopping job still ends
        `stopped`, because only a user's stop moves a job to `stopping`."""
        job = job_in(S.STOPPING, stop_requested_by=None)
        decision = decide(job, Observation(termination=termination), requires_banner=True)
        assert decision.action is Action.END
        assert decision.status is S.STOPPED
        assert decision.message.startswith("stopped by")


OBSERVATIONS = [
    Observation(stored_solver_alive=alive, tagged_solver=solver, tagged_launcher=launcher,
                tree_alive=tree, termination=termination, failure_text=text, restart_dump=dump)
    for alive, solver, launcher, tree, termination, text, dump in itertools.product(
        [False, True], [None, TAGGED], [None, LAUNCHER], [False, True],
        [None, Termination.NORMAL, Termination.ERROR], [None, "*ERROR x"], [None, "d3dump01"],
    )
]
STORED_JOBS = [
    job_in(status, **extra)
    for status in sorted(LIVE)
    for extra in ({}, {"pid": None, "pid_create_time": None}, {"stop_requested_by": None},
                  {"stop_requested_by": "user"})
]


class TestEveryDecisionIsLegal:
    """contract.md § Job Status: recovery never asks for a move the table refuses."""

    @pytest.mark.parametrize("requires_banner", [True, False])
    def test_decide_returns_a_legal_status_when_facts_are_any_combination(
        self, requires_banner: bool
    ) -> None:
        """For every live stored job and every observation, the decided status is the job's
        own (kept/adopted), a legal move from it, or `running` from `starting`."""
        for job, seen in itertools.product(STORED_JOBS, OBSERVATIONS):
            decision = decide(job, seen, requires_banner=requires_banner)
            where = (job.status, job.pid, job.stop_requested_by, seen)
            if decision.action is Action.KEEP_QUEUED:
                assert job.status is S.QUEUED, where
                continue
            assert decision.status is not None, where
            if decision.status is not job.status:
                assert can_move(job.status, decision.status), where
            if decision.action is Action.END:
                assert decision.status.is_terminal, where
                assert decision.kill_leftovers is seen.tree_alive, where
            if decision.action is Action.ADOPT:
                assert decision.solver in {job.solver_identity, seen.tagged_solver}, where
