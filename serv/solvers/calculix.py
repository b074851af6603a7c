"""CalculiX `ccx`: job name without `.inp`, threads through OMP_NUM_THREADS.

ccx's exit code cannot be trusted (a missing input exits 0, lab-findings §2), so the end is
read from its output by `CalculixOutput`: ` Job finished` is a normal end and any `*ERROR`
line a failure. GFORTRAN_UNBUFFERED_PRECONNECTED=y keeps its Fortran and C output in order
(FORMATS.md §3.5); progress comes from `JOB.sta`, with the step periods read from the deck.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Sequence

from serv.core.jobs import Family, Job
from serv.errors import BadParam
from serv.solvers.base import SHELL_META, GracefulStop, LaunchContext, LaunchPlan, OutputVerdict
from serv.solvers.calculix_output import CalculixOutput
from serv.solvers.progress import CVG, STA, STDOUT, SideFile

ALLOWED_FLAGS = frozenset({"-o", "-v"})


def job_stem(job: Job) -> str:
    """The ccx job name: the input's file name without `.inp` (any case)."""
    name = PurePath(job.input).name
    return name[:-4] if name.lower().endswith(".inp") else name


class CalculiX:
    """The CalculiX family."""

    family = Family.CALCULIX
    graceful_stop = GracefulStop.SIGTERM
    requires_banner = True
    reads_deck = True
    reads_verdict = True
    writes_dumps = False
    sense_switches: frozenset[str] = frozenset()

    def validate_args(self, args: Sequence[str]) -> None:
        for i, arg in enumerate(args):
            if SHELL_META.search(arg) or (arg.startswith("-") and arg not in ALLOWED_FLAGS):
                raise BadParam(f"param 'args'[{i}]: {arg!r} is not an allowed ccx option")

    def plan(self, job: Job, ctx: LaunchContext) -> LaunchPlan:
        env = {"OMP_NUM_THREADS": str(job.ncpu), "GFORTRAN_UNBUFFERED_PRECONNECTED": "y"}
        argv = (str(ctx.executable), *ctx.extra_args, *job.args, "-i", job_stem(job))
        return LaunchPlan(argv, env)

    def side_files(self, job: Job) -> tuple[SideFile, ...]:
        """`JOB.sta` (live progress) and `JOB.cvg` (iterations), in the workdir ccx runs in."""
        stem = job_stem(job)
        return (SideFile(STA, f"{stem}.sta"), SideFile(CVG, f"{stem}.cvg"))

    def new_parser(self, job: Job) -> CalculixOutput:
        """A fresh parser for one run of `job`."""
        return CalculixOutput()

    def verdict(self, text: str) -> OutputVerdict:
        """The parser's reading of stdout `text`: error (first `*ERROR` line with its indented
        continuation) wins over ` Job finished`; neither means the run has not ended."""
        parser = CalculixOutput()
        parser.feed(STDOUT, text.splitlines(), 0.0)
        snap = parser.snapshot()
        return OutputVerdict(snap.termination, snap.message)
