"""Any solver by profile: `EXE [extra_args] [args] INPUT`, ended by its exit code."""

from __future__ import annotations

from typing import Iterable, Sequence

from serv.core.jobs import Family, Job
from serv.errors import BadParam
from serv.solvers.base import SHELL_META, GracefulStop, LaunchContext, LaunchPlan, OutputVerdict
from serv.solvers.mpi import mpi_prefix
from serv.solvers.progress import Progress, SideFile


class GenericOutput:
    """Knows only that the solver started once it printed something."""

    def __init__(self) -> None:
        self._started = False

    def feed(self, source: str, lines: Iterable[str], now: float) -> None:
        if not self._started and any(True for _ in lines):
            self._started = True

    def snapshot(self) -> Progress:
        return Progress(started=self._started)


class Generic:
    """A solver the daemon knows nothing about beyond its profile."""

    family = Family.GENERIC
    graceful_stop = GracefulStop.SIGTERM
    requires_banner = False
    reads_deck = False
    reads_verdict = False
    writes_dumps = False
    sense_switches: frozenset[str] = frozenset()

    def side_files(self, job: Job) -> tuple[SideFile, ...]:
        return ()

    def new_parser(self, job: Job) -> GenericOutput:
        return GenericOutput()

    def validate_args(self, args: Sequence[str]) -> None:
        for i, arg in enumerate(args):
            if SHELL_META.search(arg):
                raise BadParam(f"param 'args'[{i}]: {arg!r} contains shell metacharacters")

    def plan(self, job: Job, ctx: LaunchContext) -> LaunchPlan:
        prefix, env = mpi_prefix(
            ctx.mpi, ctx.mpiexec, job.ncpu, ctx.cores, intel_mpi_pinning=ctx.intel_mpi_pinning
        )
        argv = (*prefix, str(ctx.executable), *ctx.extra_args, *job.args, job.input)
        return LaunchPlan(argv, env)

    def verdict(self, text: str) -> OutputVerdict:
        return OutputVerdict()
