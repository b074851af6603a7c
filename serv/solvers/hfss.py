"""Ansys Electronics Desktop / HFSS batch solve: command line, args, progress (issue #4).

Command line (FORMATS.md §2.1; the option syntax is the one in the samples' `Using command
line:` lines, ../shared/samples/hfss):

    ansysedt -ng -monitor [PROFILE EXTRA ARGS] [-machinelist list=localhost:1:N:90%]
             [-batchoptions "'KEY'='VALUE' 'KEY'=INT ..."] -batchsolve [DESIGN[:Nominal:SETUP]] PROJECT

-ng runs without a GUI and -monitor copies every message to stdout, which is the only source
the parser (`serv.solvers.hfss_output`) needs. The client chooses what to solve and may set
batch options through `args`, as `design=NAME`, `setup=NAME` and `batchoption=KEY=VALUE`
items; nothing else reaches the command line, and it is never a shell string.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from serv.core.jobs import Family, Job
from serv.core.states import Termination
from serv.errors import BadParam
from serv.solvers.base import GracefulStop, LaunchContext, LaunchPlan, OutputVerdict
from serv.solvers.hfss_output import HfssOutput
from serv.solvers.progress import STDOUT, SideFile

__all__ = ["Hfss", "HfssSelection", "parse_args"]

# Design, setup, batch-option key and value: letters, digits, space and _-./ only, not
# starting or ending with a space. That excludes every shell metacharacter (base.SHELL_META),
# both quote characters (the -batchoptions syntax quotes with ') and the `:` that separates
# the parts of a -batchsolve target.
NAME = re.compile(r"[A-Za-z0-9_./-](?:[A-Za-z0-9 _./-]*[A-Za-z0-9_./-])?")
ITEM = re.compile(r"(design|setup|batchoption)=(.*)", re.DOTALL)
# Ansys "Batchoptions File Format": integer values are written bare, strings in quotes
# (the 2022 R2 LSF sample shows `'HFSS 3D Layout Design/RAMLimitPercent'=90`).
INTEGER = re.compile(r"-?[0-9]+")
ALLOWED = (
    "allowed: design=NAME, setup=NAME (with a design=), batchoption=KEY=VALUE, "
    "where names hold only letters, digits, space and _-./"
)
# The RAM limit AEDT applies by default and that every sample runs with ("RAM: 90%").
RAM_LIMIT = "90%"


@dataclass(frozen=True, slots=True)
class HfssSelection:
    """What a job's `args` ask for: the design and setup to solve and extra batch options."""

    design: str | None = None
    setup: str | None = None
    batchoptions: tuple[tuple[str, str], ...] = ()

    def target(self) -> tuple[str, ...]:
        """The -batchsolve target before the project, if any.

        AEDT names a setup as `DESIGN:Nominal:SETUP` (`Nominal` as opposed to an Optimetrics
        setup) — the form pyaedt's solve_in_batch and pyedb's batch jobs pass, whose empty
        `::` variant is in the 2026 R1 sample; a design alone solves all of its setups.
        """
        if self.design is None:
            return ()
        if self.setup is None:
            return (self.design,)
        return (f"{self.design}:Nominal:{self.setup}",)

    def batchoptions_arg(self) -> str | None:
        """The one argv element after -batchoptions: `'KEY'='VALUE' 'KEY'=INT ...`."""
        if not self.batchoptions:
            return None
        return " ".join(
            f"'{key}'={value}" if INTEGER.fullmatch(value) else f"'{key}'='{value}'"
            for key, value in self.batchoptions
        )


def parse_args(args: Sequence[str]) -> HfssSelection:
    """Read `args` into a selection; raise BadParam naming the first refused `'args'[i]`.

    Pure and idempotent; callable from any thread.
    """
    design: str | None = None
    setup: tuple[int, str] | None = None
    options: list[tuple[str, str]] = []
    seen_keys: set[str] = set()
    for i, arg in enumerate(args):
        item = ITEM.fullmatch(arg)
        if item is None:
            raise BadParam(f"param 'args'[{i}]: {arg!r} is not an HFSS batch-solve item; {ALLOWED}")
        kind, value = item.group(1), item.group(2)
        if kind == "batchoption":
            key, equals, value = value.partition("=")
            if not equals or not NAME.fullmatch(key) or not NAME.fullmatch(value):
                raise BadParam(
                    f"param 'args'[{i}]: {arg!r} is not batchoption=KEY=VALUE with a key and a "
                    f"value of letters, digits, space and _-./ only; {ALLOWED}"
                )
            # Option keys are case-insensitive (Ansys "Batchoptions File Format").
            if key.lower() in seen_keys:
                raise BadParam(f"param 'args'[{i}]: batch option {key!r} is given twice")
            seen_keys.add(key.lower())
            options.append((key, value))
            continue
        if not NAME.fullmatch(value):
            raise BadParam(
                f"param 'args'[{i}]: {kind} name {value!r} may hold only letters, digits, "
                f"space and _-./ (not starting or ending with a space); {ALLOWED}"
            )
        if value.startswith("-"):
            # A design name is an argv element of its own: ansysedt would read it as an option.
            raise BadParam(f"param 'args'[{i}]: {kind} name {value!r} must not start with '-'")
        if kind == "design":
            if design is not None:
                raise BadParam(f"param 'args'[{i}]: design= is given twice; one design per job")
            design = value
        else:
            if setup is not None:
                raise BadParam(f"param 'args'[{i}]: setup= is given twice; one setup per job")
            setup = (i, value)
    if setup is not None and design is None:
        raise BadParam(
            f"param 'args'[{setup[0]}]: setup= needs a design= item "
            "(AEDT selects a setup as DESIGN:Nominal:SETUP)"
        )
    return HfssSelection(design, setup[1] if setup else None, tuple(options))


class Hfss:
    """The HFSS / Electronics Desktop family."""

    family = Family.HFSS
    graceful_stop = GracefulStop.SIGTERM
    requires_banner = False
    reads_deck = False  # projects (.aedt, .aedb) are binary or databases, not text decks
    reads_verdict = True
    writes_dumps = False
    sense_switches: frozenset[str] = frozenset()

    def validate_args(self, args: Sequence[str]) -> None:
        parse_args(args)

    def plan(self, job: Job, ctx: LaunchContext) -> LaunchPlan:
        selection = parse_args(job.args)
        argv = [str(ctx.executable), "-ng", "-monitor", *ctx.extra_args]
        # A profile that brings its own machine list (a cluster, `numcores=N -auto` under a
        # scheduler as in the 2022 R2 LSF sample) keeps it. Otherwise the job's booked cores
        # go to one task on this host: `list=HOST:TASKS:CORES:RAM%` (the 2025 R2 sample runs
        # `list=localhost:2:2:90%` = 2 tasks of 1 core). One task with all N cores, pyaedt's
        # solve_in_batch default, multithreads the matrix solve without the N-fold memory of
        # N distributed tasks, and unlike `numcores=N`, which the samples pair with -auto, it
        # is a manual setting that cannot exceed the N cores the daemon booked.
        if not any(arg.lower() == "-machinelist" for arg in ctx.extra_args):
            argv += ["-machinelist", f"list=localhost:1:{job.ncpu}:{RAM_LIMIT}"]
        options = selection.batchoptions_arg()
        if options is not None:
            argv += ["-batchoptions", options]
        argv += ["-batchsolve", *selection.target(), job.input]
        return LaunchPlan(tuple(argv))

    def side_files(self, job: Job) -> tuple[SideFile, ...]:
        """Nothing besides stdout: with -monitor every message is there (FORMATS.md §2.1)."""
        return ()

    def new_parser(self, job: Job) -> HfssOutput:
        """A fresh parser for the job's stdout (source `progress.STDOUT`)."""
        return HfssOutput()

    def verdict(self, text: str) -> OutputVerdict:
        """Termination and failure text, read by the same parser that follows the run."""
        parser = HfssOutput()
        parser.feed(STDOUT, text.splitlines(), 0.0)
        progress = parser.snapshot()
        if progress.termination is Termination.ERROR:
            return OutputVerdict(Termination.ERROR, progress.message)
        return OutputVerdict(progress.termination)
