"""contract.md § Job (Status) and § Errors (1002): the one table of legal moves.

One test per row of `TRANSITIONS`, one proving every other pair is refused, the time
stamps `transition()` writes, and the LIVE / TERMINAL / SIGNALLABLE groups.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from serv.core.jobs import Family, Job
from serv.core.states import (
    LIVE,
    SIGNALLABLE,
    TERMINAL,
    TRANSITIONS,
    JobStatus,
    can_move,
    transition,
)
from serv.errors import InvalidState

S = JobStatus
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)

CONTRACT_STATUSES = [
    "queued", "starting", "running", "paused", "stopping",
    "finished", "failed", "stopped", "cancelled",
]


def job_in(status: JobStatus, **changes: object) -> Job:
    job = Job(
        id=7, solver="lsdyna-smp", family=Family.LSDYNA, input="/decks/main.k",
        workdir="/decks", submitted_at=T0, status=status, message="before",
    )
    return dataclasses.replace(job, **changes)  # type: ignore[arg-type]


ROWS = sorted(TRANSITIONS, key=lambda pair: (list(S).index(pair[0]), list(S).index(pair[1])))
REFUSED = [(src, dst) for src in S for dst in S if (src, dst) not in TRANSITIONS]


class TestTable:
    """contract.md § Job: each legal move, and nothing else."""

    @pytest.mark.parametrize(("src", "dst"), ROWS, ids=[f"{s}->{d}" for s, d in ROWS])
    def test_transition_moves_the_job_when_the_row_allows(self, src: JobStatus, dst: JobStatus) -> None:
        """A move listed in the table returns the job in the target status, the rest unchanged."""
        job = job_in(src)
        moved = transition(job, dst, at=T1, message="why")
        assert moved.status is dst
        assert moved.message == "why"
        assert dataclasses.replace(moved, status=src, message="before",
                                   started_at=None, ended_at=None) == job
        assert job.status is src, "the input record is never mutated"
        assert can_move(src, dst)

    def test_transition_refuses_every_pair_when_the_table_lacks_it(self) -> None:
        """Every (src, dst) not in the table raises InvalidState 1002 naming id, status and target."""
        assert len(REFUSED) == len(S) ** 2 - len(TRANSITIONS)
        for src, dst in REFUSED:
            assert not can_move(src, dst), (src, dst)
            with pytest.raises(InvalidState) as caught:
                transition(job_in(src), dst, at=T1)
            err = caught.value
            assert err.code == 1002
            assert str(err) == f"job 7 is {src.value}; it cannot become {dst.value}", (src, dst)

    def test_table_has_no_self_loops_when_read_whole(self) -> None:
        """Idempotent commands run before the table, so no status moves to itself."""
        assert all(src is not dst for src, dst in TRANSITIONS)

    def test_table_row_names_who_triggers_it_when_read_whole(self) -> None:
        """Each row says who causes the move: the daemon, a user or the solver."""
        for pair, trigger in TRANSITIONS.items():
            who, _, what = trigger.partition(": ")
            assert who in {"daemon", "user", "solver"}, pair
            assert what, pair

    def test_table_contains_the_contract_path_when_read_whole(self) -> None:
        """queued → starting → running ⇄ paused; running → stopping → stopped; queued → cancelled."""
        for pair in [
            (S.QUEUED, S.STARTING), (S.STARTING, S.RUNNING), (S.RUNNING, S.PAUSED),
            (S.PAUSED, S.RUNNING), (S.RUNNING, S.STOPPING), (S.STOPPING, S.STOPPED),
            (S.QUEUED, S.CANCELLED), (S.RUNNING, S.FINISHED), (S.RUNNING, S.FAILED),
            (S.STARTING, S.FAILED),
        ]:
            assert pair in TRANSITIONS, pair

    def test_table_leaves_no_way_out_when_the_status_is_terminal(self) -> None:
        """Finished, failed, stopped and cancelled jobs never move again."""
        assert not [pair for pair in TRANSITIONS if pair[0] in TERMINAL]

    def test_table_reaches_cancelled_only_when_the_job_is_queued(self) -> None:
        """`cancelled` means the job left the queue before it started."""
        assert [src for src, dst in TRANSITIONS if dst is S.CANCELLED] == [S.QUEUED]

    def test_table_reaches_every_status_when_starting_from_queued(self) -> None:
        """Every status is reachable from `queued`, so none is dead code."""
        seen, frontier = {S.QUEUED}, [S.QUEUED]
        while frontier:
            src = frontier.pop()
            for a, b in TRANSITIONS:
                if a is src and b not in seen:
                    seen.add(b)
                    frontier.append(b)
        assert seen == set(S)


class TestStamps:
    """contract.md § Job: `started_at` / `ended_at` and `message`."""

    def test_transition_stamps_started_at_when_the_job_starts(self) -> None:
        """queued → starting records the start time."""
        moved = transition(job_in(S.QUEUED), S.STARTING, at=T1)
        assert moved.started_at == T1
        assert moved.ended_at is None

    def test_transition_keeps_started_at_when_the_job_moves_on(self) -> None:
        """Later moves never overwrite the start time."""
        job = job_in(S.STARTING, started_at=T0)
        for dst in (S.RUNNING, S.STOPPING, S.FAILED):
            assert transition(job, dst, at=T1).started_at == T0

    @pytest.mark.parametrize(("src", "dst"), [p for p in ROWS if p[1] in TERMINAL],
                             ids=[f"{s}->{d}" for s, d in ROWS if d in TERMINAL])
    def test_transition_stamps_ended_at_when_the_target_is_terminal(
        self, src: JobStatus, dst: JobStatus
    ) -> None:
        """Every move into a terminal status records the end time."""
        assert transition(job_in(src), dst, at=T1).ended_at == T1

    @pytest.mark.parametrize(("src", "dst"), [p for p in ROWS if p[1] not in TERMINAL],
                             ids=[f"{s}->{d}" for s, d in ROWS if d not in TERMINAL])
    def test_transition_leaves_ended_at_unset_when_the_target_is_live(
        self, src: JobStatus, dst: JobStatus
    ) -> None:
        """A move between live statuses records no end time."""
        assert transition(job_in(src), dst, at=T1).ended_at is None

    def test_transition_keeps_the_message_when_none_is_given(self) -> None:
        """message=None keeps the old text; an empty string clears it."""
        job = job_in(S.RUNNING)
        assert transition(job, S.PAUSED, at=T1).message == "before"
        assert transition(job, S.PAUSED, at=T1, message="").message == ""


class TestChanges:
    """Other fields of the same move are made in the same copy."""

    def test_transition_applies_the_changes_of_the_move_when_given(self) -> None:
        moved = transition(job_in(S.QUEUED), S.STARTING, at=T1, message="starting",
                           allocated_cores=(2, 3), command=("solver", "i=main.k"))
        assert (moved.status, moved.started_at, moved.message) == (S.STARTING, T1, "starting")
        assert moved.allocated_cores == (2, 3) and moved.command == ("solver", "i=main.k")

    def test_transition_refuses_a_status_among_the_changes_when_given_one(self) -> None:
        with pytest.raises(TypeError, match="status"):
            transition(job_in(S.QUEUED), S.STARTING, at=T1, status=S.FINISHED)


class TestGroups:
    """contract.md § Job: terminal statuses, and the live ones that hold a process."""

    def test_statuses_match_the_contract_when_listed(self) -> None:
        """The wire values are exactly the contract's nine statuses."""
        assert [s.value for s in S] == CONTRACT_STATUSES
        assert all(S(value).value == value for value in CONTRACT_STATUSES)

    def test_terminal_and_live_partition_the_statuses_when_combined(self) -> None:
        """Every status is either live or terminal, never both."""
        assert TERMINAL | LIVE == set(S)
        assert not TERMINAL & LIVE

    def test_terminal_is_the_contract_set_when_read(self) -> None:
        """Terminal: finished, failed, stopped, cancelled."""
        assert {s.value for s in TERMINAL} == {"finished", "failed", "stopped", "cancelled"}

    def test_signallable_is_live_without_queued_when_read(self) -> None:
        """A process tree may exist for every live status except `queued`."""
        assert SIGNALLABLE == LIVE - {S.QUEUED}

    @pytest.mark.parametrize("status", list(S), ids=[s.value for s in S])
    def test_predicates_agree_with_the_sets_when_asked(self, status: JobStatus) -> None:
        """is_live / is_terminal / has_process are the set memberships, nothing else."""
        assert status.is_live is (status in LIVE)
        assert status.is_terminal is (status in TERMINAL)
        assert status.has_process is (status in SIGNALLABLE)
