"""LS-DYNA (SMP and MPP): command line, d3kil stop, sense switches, what to tail.

Command lines follow LS-DYNA's own conventions (contract.md § Configuration):
SMP `EXE i=INPUT ncpu=N [memory=M]`, MPP `MPIEXEC -np N EXE i=INPUT [memory=M]`.
The output is read by `serv.solvers.lsdyna_output.LsDynaOutput` (../shared/samples/FORMATS.md
§1), from stdout, messag (SMP) or mes0000 (MPP rank 0), the head of d3hsp and the deck;
`verdict` runs the same parser over a tail of stdout.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Sequence

from serv.core.jobs import Family, Job
from serv.core.states import Termination
from serv.errors import BadParam
from serv.solvers.base import SHELL_META, GracefulStop, LaunchContext, LaunchPlan, OutputVerdict
from serv.solvers.lsdyna_output import LsDynaOutput
from serv.solvers.mpi import mpi_prefix
from serv.solvers.progress import D3HSP, MESSAG, STDOUT, SideFile

# messag for SMP, mes0000 (rank 0's global messages) for MPP (FORMATS.md §1.1, §1.8); only the
# head of d3hsp holds the control-card echo, and the file can reach tens of MB.
SIDE_FILES = (
    SideFile(MESSAG, "messag", alternatives=("mes0000",)),
    SideFile(D3HSP, "d3hsp", max_bytes=100_000),
)
# contract.md § Methods senseSwitch: the words LS-DYNA reads from d3kil.
# contract.md § senseSwitch, plus `file`, which the DynaLauncher GUI's menu also offers
# (the JSON-RPC API accepts only the contract's list).
SENSE_SWITCHES = frozenset(
    {"sw1", "sw2", "sw3", "sw4", "swa", "swb", "swc", "swd",
     "lprint", "nlprint", "iter", "conv", "prof", "stop", "file"}
)

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
    reads_deck = True
    reads_verdict = True
    writes_dumps = True
    sense_switches: frozenset[str] = SENSE_SWITCHES

    def side_files(self, job: Job) -> tuple[SideFile, ...]:
        """messag (or mes0000) and the first 100 KB of d3hsp, whatever the job."""
        return SIDE_FILES

    def new_parser(self, job: Job) -> LsDynaOutput:
        """A fresh parser for one run of `job`."""
        return LsDynaOutput()

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
        """Termination and failure text from a tail of stdout, read by the same parser.

        The last banner counts (an error then a normal banner is normal); an error's text is
        its first `*** Error` block, which names the cause, or a licence failure.
        """
        parser = LsDynaOutput()
        parser.feed(STDOUT, text.split("\n"), 0.0)
        seen = parser.snapshot()
        if seen.termination is Termination.NORMAL:
            return OutputVerdict(Termination.NORMAL)
        return OutputVerdict(seen.termination, seen.message)
