"""CalculiX `ccx`: job name without `.inp`, threads through OMP_NUM_THREADS.

ccx's exit code cannot be trusted (a missing input exits 0, lab-findings §2), so the end is
read from its output: ` Job finished` is a normal end and any `*ERROR` line a failure.
GFORTRAN_UNBUFFERED_PRECONNECTED=y keeps its Fortran and C output in order (FORMATS.md §3.5).
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Sequence

from serv.core.jobs import Family, Job
from serv.core.states import Termination
from serv.errors import BadParam
from serv.solvers.base import SHELL_META, GracefulStop, LaunchContext, LaunchPlan, OutputVerdict

FINISHED = re.compile(r"^\s*Job finished\s*$", re.MULTILINE)
ERROR_LINE = re.compile(r"^\s*\*ERROR[^\n]*$", re.MULTILINE)
ALLOWED_FLAGS = frozenset({"-o", "-v"})


class CalculiX:
    """The CalculiX family."""

    family = Family.CALCULIX
    graceful_stop = GracefulStop.SIGTERM
    requires_banner = True

    def validate_args(self, args: Sequence[str]) -> None:
        for i, arg in enumerate(args):
            if SHELL_META.search(arg) or (arg.startswith("-") and arg not in ALLOWED_FLAGS):
                raise BadParam(f"param 'args'[{i}]: {arg!r} is not an allowed ccx option")

    def plan(self, job: Job, ctx: LaunchContext) -> LaunchPlan:
        name = PurePath(job.input).name
        stem = name[:-4] if name.lower().endswith(".inp") else name
        env = {"OMP_NUM_THREADS": str(job.ncpu), "GFORTRAN_UNBUFFERED_PRECONNECTED": "y"}
        return LaunchPlan((str(ctx.executable), *ctx.extra_args, *job.args, "-i", stem), env)

    def verdict(self, text: str) -> OutputVerdict:
        errors = ERROR_LINE.findall(text)
        if errors:
            return OutputVerdict(Termination.ERROR, errors[0].strip())
        if FINISHED.search(text):
            return OutputVerdict(Termination.NORMAL)
        return OutputVerdict()
