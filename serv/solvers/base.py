"""The small interface every solver family implements (one module per family).

A family knows how to build its command line, how to ask its solver to stop gracefully,
and how to read the end of a run from the solver's output. Adding a family means adding
one module and one line in `serv.solvers.FAMILIES`; nothing else changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from serv.core.jobs import Family, Job
from serv.core.states import Termination
from serv.solvers.progress import OutputParser, SideFile


class GracefulStop(StrEnum):
    """How a family asks its solver to end cleanly before the forced kill."""

    SIGTERM = "sigterm"
    D3KIL = "d3kil"


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """Everything needed to start one job: argv (never a shell string) and extra env."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LaunchContext:
    """What a family needs besides the job: resolved executables and the booked cores."""

    executable: Path
    mpiexec: Path | None
    mpi: str
    cores: tuple[int, ...] | None
    intel_mpi_pinning: bool
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutputVerdict:
    """What the output says about the end of a run."""

    termination: Termination | None = None
    failure_text: str | None = None


class SolverFamily(Protocol):
    family: Family
    graceful_stop: GracefulStop
    requires_banner: bool
    reads_deck: bool  # feed the input deck to the parser once at start
    reads_verdict: bool  # the end of stdout tells how the run ended (else the exit code alone)
    writes_dumps: bool  # leaves restart dumps (d3dumpNN) that a stop's message names
    sense_switches: frozenset[str]  # what senseSwitch accepts for this family (empty: none)

    def side_files(self, job: Job) -> tuple[SideFile, ...]:
        """Files in the workdir to tail besides stdout."""

    def new_parser(self, job: Job) -> OutputParser:
        """A fresh stateful output parser for one job."""

    def validate_args(self, args: Sequence[str]) -> None:
        """Raise BadParam naming the first extra argument this family refuses."""

    def plan(self, job: Job, ctx: LaunchContext) -> LaunchPlan:
        """The command line and environment that start `job`."""

    def verdict(self, text: str) -> OutputVerdict:
        """Read termination and failure text from the end of the solver's output."""


# Characters that have a meaning to a shell; solver arguments never need them, and refusing
# them keeps a client's text harmless even if some wrapper script re-parses it.
SHELL_META = re.compile(r"[;&|<>`$\\\n\r\x00\"'*?(){}\[\]!~]")


def last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The last match of `pattern` in `text`, or None."""
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None
