"""LS-DYNA (SMP and MPP): command line, d3kil stop, termination banners.

Command lines follow LS-DYNA's own conventions (contract.md § Configuration):
SMP `EXE i=INPUT ncpu=N [memory=M]`, MPP `MPIEXEC -np N EXE i=INPUT [memory=M]`.
Banners per ../shared/samples/FORMATS.md §1.7: the number of spaces between the spaced
letters varies between versions, so match any run of blanks.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Sequence

from serv.core.jobs import Family, Job
from serv.core.states import Termination
from serv.errors import BadParam
from serv.solvers.base import (
    SHELL_META,
    GracefulStop,
    LaunchContext,
    LaunchPlan,
    OutputVerdict,
    last_match,
)
from serv.solvers.mpi import mpi_prefix

NORMAL = re.compile(r"N o r m a l\s+t e r m i n a t i o n")
ERROR = re.compile(r"E r r o r\s+t e r m i n a t i o n")
ERROR_BLOCK = re.compile(r"^\s*\*\*\* (Error \d+[^\n]*)\n[ \t]+(\S[^\n]*)", re.MULTILINE)

# Command-line keys LS-DYNA documents (i/o file names, memory, restarts, run control).
# `i`, `ncpu` and `memory` are set from the job itself and cannot be passed again.
ALLOWED_KEYS = frozenset(
    {
        "o", "g", "d", "f", "t", "a", "e", "h", "s", "x", "z", "m", "q", "r", "dump",
        "jobid", "memory2", "para", "endtime", "ncycle", "pgpufile", "mcheck", "nowait",
    }
)
RESERVED_KEYS = frozenset({"i", "ncpu", "memory"})
ARG = re.compile(r"^(?P<key>[A-Za-z][A-Za-z0-9_]*)=(?P<value>[^\s=]+)$")


class LsDyna:
    """The LS-DYNA family."""

    family = Family.LSDYNA
    graceful_stop = GracefulStop.D3KIL
    requires_banner = True

    def validate_args(self, args: Sequence[str]) -> None:
        for i, arg in enumerate(args):
            match = ARG.match(arg)
            if match is None or SHELL_META.search(arg):
                raise BadParam(f"param 'args'[{i}]: {arg!r} is not an LS-DYNA key=value option")
            key = match["key"].lower()
            if key in RESERVED_KEYS:
                raise BadParam(
                    f"param 'args'[{i}]: {key}= is set from the job's own "
                    f"{'input' if key == 'i' else key} param"
                )
            if key not in ALLOWED_KEYS:
                raise BadParam(
                    f"param 'args'[{i}]: unknown LS-DYNA option {key}=; allowed: "
                    + ", ".join(sorted(ALLOWED_KEYS))
                )

    def plan(self, job: Job, ctx: LaunchContext) -> LaunchPlan:
        prefix, env = mpi_prefix(
            ctx.mpi, ctx.mpiexec, job.ncpu, ctx.cores, intel_mpi_pinning=ctx.intel_mpi_pinning
        )
        # The solver runs in the workdir, so the deck's base name is enough and keeps the
        # command short (old LS-DYNA versions cut file names at 80 characters).
        argv = [*prefix, str(ctx.executable), f"i={PurePath(job.input).name}"]
        if not prefix:
            argv.append(f"ncpu={job.ncpu}")
        if job.memory:
            argv.append(f"memory={job.memory}")
        if job.restart:
            argv.append(f"r={job.restart}")
        argv += [*ctx.extra_args, *job.args]
        return LaunchPlan(tuple(argv), env)

    def verdict(self, text: str) -> OutputVerdict:
        normal = last_match(NORMAL, text)
        error = last_match(ERROR, text)
        if error is not None and (normal is None or error.start() > normal.start()):
            # The first error block names the cause; the last only counts the errors.
            block = ERROR_BLOCK.search(text)
            detail = f"{block.group(1).strip()}: {block.group(2).strip()}" if block else None
            return OutputVerdict(Termination.ERROR, detail or "error termination")
        if normal is not None:
            return OutputVerdict(Termination.NORMAL)
        return OutputVerdict()
