"""How a job ends: the final status from what the solver printed and how it exited.

contract.md § Job: `finished` is a normal end; `failed` an error termination, a non-zero
exit or a failed start; `stopped` a stop by a user or a solver that vanished without a
normal end. The solver's own banner outranks its exit code, because exit codes lie
(ccx exits 0 on a missing input; MPICH's mpiexec reports a rank's signal as a positive code).
"""

from __future__ import annotations

from dataclasses import dataclass

from serv.core.states import JobStatus, Termination


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """How the process we could reap ended: an exit code, or the signal that killed it.

    `solver_reaped` is True when that process is the solver itself (SMP), False when it
    is a launcher such as mpiexec whose code only reflects the ranks indirectly.
    """

    code: int | None = None
    signal: int | None = None
    solver_reaped: bool = True


@dataclass(frozen=True, slots=True)
class Ending:
    status: JobStatus
    message: str
    exit_code: int | None


def decide_ending(
    *,
    termination: Termination | None,
    stop_requested_by: str | None,
    exit: ExitInfo | None,
    requires_banner: bool,
    restart_dump: str | None = None,
    failure_text: str | None = None,
) -> Ending:
    """The final status and message of a job whose solver is gone.

    `stop_requested_by` is set when a user (or a sense switch that ends the run) asked for
    the end; `restart_dump` names the dump an sw1 wrote; `failure_text` is the solver's own
    error message when its output had one.
    """
    code = exit.code if exit else None
    if exit is not None and exit.signal is not None:
        code = -exit.signal
    if stop_requested_by is not None:
        if termination is Termination.NORMAL and restart_dump:
            msg = f"stopped by {stop_requested_by}; restart dump {restart_dump} written"
        else:
            msg = f"stopped by {stop_requested_by}"
        return Ending(JobStatus.STOPPED, msg, code)
    if termination is Termination.NORMAL:
        return Ending(JobStatus.FINISHED, "normal termination", code)
    if termination is Termination.ERROR:
        return Ending(JobStatus.FAILED, failure_text or "error termination", code)
    if exit is None:
        return Ending(
            JobStatus.STOPPED,
            "solver vanished without a termination message in its output",
            None,
        )
    if exit.signal is not None:
        return Ending(
            JobStatus.STOPPED, f"solver killed by signal {exit.signal} without a normal end", code
        )
    if exit.code not in (0, None):
        who = "solver" if exit.solver_reaped else "launcher"
        return Ending(JobStatus.FAILED, failure_text or f"{who} exited with code {exit.code}", code)
    if requires_banner:
        return Ending(
            JobStatus.FAILED, "exited with code 0 but printed no termination message", code
        )
    return Ending(JobStatus.FINISHED, "exited with code 0", code)
