"""contract.md § Job (Status, `termination`, `message`, `exit_code`): how a job ends.

`finished` is a normal end; `failed` an error termination or a non-zero exit; `stopped` a
user's stop (naming the restart dump an sw1 wrote) or a solver gone without a normal end.
The solver's banner outranks its exit code.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from serv.core.ending import Ending, ExitInfo, decide_ending
from serv.core.states import JobStatus, Termination

S = JobStatus
N = Termination.NORMAL
E = Termination.ERROR


@dataclass(frozen=True)
class Case:
    termination: Termination | None = None
    stop_requested_by: str | None = None
    exit: ExitInfo | None = ExitInfo(code=0)
    requires_banner: bool = True
    restart_dump: str | None = None
    failure_text: str | None = None


TABLE: dict[str, tuple[Case, Ending]] = {
    "stop-normal-dump": (
        Case(N, "user", ExitInfo(code=0), restart_dump="d3dump01"),
        Ending(S.STOPPED, "stopped by user; restart dump d3dump01 written", 0),
    ),
    "stop-normal-no-dump": (
        Case(N, "user", ExitInfo(code=0)),
        Ending(S.STOPPED, "stopped by user", 0),
    ),
    "stop-no-banner-dump-ignored": (
        Case(None, "user", ExitInfo(signal=9), restart_dump="d3dump01"),
        Ending(S.STOPPED, "stopped by user", -9),
    ),
    "stop-error-banner": (
        Case(E, "user", ExitInfo(code=1), failure_text="*** Error 20018"),
        Ending(S.STOPPED, "stopped by user", 1),
    ),
    "stop-sense-switch": (
        Case(N, "senseSwitch sw1", ExitInfo(code=0), restart_dump="d3dump02"),
        Ending(S.STOPPED, "stopped by senseSwitch sw1; restart dump d3dump02 written", 0),
    ),
    "stop-vanished": (
        Case(None, "user", None),
        Ending(S.STOPPED, "stopped by user", None),
    ),
    "normal-code-0": (
        Case(N, exit=ExitInfo(code=0)),
        Ending(S.FINISHED, "normal termination", 0),
    ),
    "normal-outranks-nonzero-code": (
        Case(N, exit=ExitInfo(code=3, solver_reaped=False)),
        Ending(S.FINISHED, "normal termination", 3),
    ),
    "normal-vanished": (
        Case(N, exit=None),
        Ending(S.FINISHED, "normal termination", None),
    ),
    "normal-dump-not-a-stop": (
        Case(N, exit=ExitInfo(code=0), restart_dump="d3dump01"),
        Ending(S.FINISHED, "normal termination", 0),
    ),
    "error-with-text": (
        Case(E, exit=ExitInfo(code=0), failure_text="*ERROR reading *VISCO:"),
        Ending(S.FAILED, "*ERROR reading *VISCO:", 0),
    ),
    "error-without-text": (
        Case(E, exit=ExitInfo(code=1)),
        Ending(S.FAILED, "error termination", 1),
    ),
    "error-outranks-code-0-generic": (
        Case(E, exit=ExitInfo(code=0), requires_banner=False, failure_text="[error] bad"),
        Ending(S.FAILED, "[error] bad", 0),
    ),
    "signal": (
        Case(None, exit=ExitInfo(signal=9)),
        Ending(S.STOPPED, "solver killed by signal 9 without a normal end", -9),
    ),
    "signal-generic": (
        Case(None, exit=ExitInfo(signal=15), requires_banner=False),
        Ending(S.STOPPED, "solver killed by signal 15 without a normal end", -15),
    ),
    "nonzero-solver": (
        Case(None, exit=ExitInfo(code=2, solver_reaped=True)),
        Ending(S.FAILED, "solver exited with code 2", 2),
    ),
    "nonzero-launcher": (
        Case(None, exit=ExitInfo(code=137, solver_reaped=False)),
        Ending(S.FAILED, "launcher exited with code 137", 137),
    ),
    "nonzero-with-failure-text": (
        Case(None, exit=ExitInfo(code=2), requires_banner=False, failure_text="license denied"),
        Ending(S.FAILED, "license denied", 2),
    ),
    "code-0-requires-banner": (
        Case(None, exit=ExitInfo(code=0), requires_banner=True),
        Ending(S.FAILED, "exited with code 0 but printed no termination message", 0),
    ),
    "code-0-generic": (
        Case(None, exit=ExitInfo(code=0), requires_banner=False),
        Ending(S.FINISHED, "exited with code 0", 0),
    ),
    "vanished": (
        Case(None, exit=None),
        Ending(S.STOPPED, "solver vanished without a termination message in its output", None),
    ),
    "vanished-generic": (
        Case(None, exit=None, requires_banner=False),
        Ending(S.STOPPED, "solver vanished without a termination message in its output", None),
    ),
}


def decide(case: Case) -> Ending:
    return decide_ending(
        termination=case.termination,
        stop_requested_by=case.stop_requested_by,
        exit=case.exit,
        requires_banner=case.requires_banner,
        restart_dump=case.restart_dump,
        failure_text=case.failure_text,
    )


class TestDecideEnding:
    """contract.md § Job: finished / failed / stopped, with the reason in `message`."""

    @pytest.mark.parametrize(("case", "expected"), list(TABLE.values()), ids=list(TABLE))
    def test_decide_ending_gives_the_row_outcome_when_the_facts_match(
        self, case: Case, expected: Ending
    ) -> None:
        """Each combination of banner, stop request and exit ends as its row says."""
        assert decide(case) == expected

    def test_decide_ending_names_the_dump_when_an_sw1_stop_wrote_one(self) -> None:
        """A stop ended by sw1 says which dump to restart from (contract.md § Job)."""
        ending = decide(Case(N, "user", restart_dump="d3dump07"))
        assert ending.status is S.STOPPED
        assert "d3dump07" in ending.message

    @pytest.mark.parametrize("termination", [None, N, E], ids=["none", "normal", "error"])
    @pytest.mark.parametrize(
        "exit", [None, ExitInfo(code=0), ExitInfo(code=1), ExitInfo(signal=9),
                 ExitInfo(code=1, solver_reaped=False)],
        ids=["vanished", "code0", "code1", "sig9", "launcher1"],
    )
    def test_decide_ending_always_stops_when_a_stop_was_requested(
        self, termination: Termination | None, exit: ExitInfo | None
    ) -> None:
        """Whatever the solver printed or returned, a requested stop ends `stopped` naming who."""
        ending = decide(Case(termination, "user", exit, restart_dump="d3dump01"))
        assert ending.status is S.STOPPED
        assert ending.message.startswith("stopped by user")
        assert ("d3dump01" in ending.message) is (termination is N)

    @pytest.mark.parametrize("requires_banner", [True, False])
    @pytest.mark.parametrize("termination", [None, N, E], ids=["none", "normal", "error"])
    @pytest.mark.parametrize(
        "exit", [None, ExitInfo(code=0), ExitInfo(code=4), ExitInfo(signal=15)],
        ids=["vanished", "code0", "code4", "sig15"],
    )
    def test_decide_ending_returns_a_terminal_status_when_the_solver_is_gone(
        self, exit: ExitInfo | None, termination: Termination | None, requires_banner: bool
    ) -> None:
        """Every combination ends in finished, failed or stopped, never cancelled or live,
        and the exit code is the code, or minus the signal."""
        ending = decide(Case(termination, None, exit, requires_banner))
        assert ending.status in {S.FINISHED, S.FAILED, S.STOPPED}
        assert ending.message
        if exit is None:
            assert ending.exit_code is None
        else:
            assert ending.exit_code == (exit.code if exit.signal is None else -exit.signal)
