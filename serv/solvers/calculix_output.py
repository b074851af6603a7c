"""What CalculiX `ccx` says while it runs: step periods, increments, cutbacks and its end.

Owns `CalculixOutput`, the `OutputParser` of the CalculiX family (issue #4). Pure like every
parser (serv/solvers/progress.py): it never reads files or clocks, and never raises on text
it does not understand. It must not import anything beyond the standard library and
`serv.core` / `serv.solvers` records.

Sources, per ../shared/samples/FORMATS.md §3:

* "deck": the `.inp`, read once. Each `*STEP` has a period: the second number of the data
  line right after its `*STATIC`, `*DYNAMIC`, `*VISCO`, `*HEAT TRANSFER` or
  `*COUPLED TEMPERATURE-DISPLACEMENT` keyword line; 1.0 when that line or that number is
  missing (ccx 2.20 writes TOT TIME 1.0 for beamp.inp, whose `*STATIC` is followed directly by
  `*CLOAD`, and 2.0 once `0.1,2.` is added). `*INCLUDE` files are not read (a pure parser
  opens nothing); a note in details says so.
* "sta": one row per increment attempt, flushed promptly; the authority for progress
  (§3.3, §3.5). `ATT` ending in `U` is an attempt that did not converge (a cutback).
* "cvg": one row per Newton iteration; counted.
* "stdout": the banner, ` STEP n`, ` increment N attempt M`, cutback lines, thread count,
  `*ERROR` lines and ` Job finished`. With stdout redirected and without
  GFORTRAN_UNBUFFERED_PRECONNECTED=y the Fortran lines (` STEP n`) come only at exit (§3.5),
  so stdout's step and increment are a fallback used until `.sta` has a row.

ccx's exit code cannot be trusted (a missing input exits 0, lab-findings §2): the end is
` Job finished` (normal) or any `*ERROR` line (error, which wins).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from serv.core.states import Termination
from serv.solvers.eta import RateEstimator
from serv.solvers.progress import CVG, DECK, STA, STDOUT, Progress, fortran_float

# A docker/compose log driver writes `service    | ` before each line (FORMATS.md §3.6),
# possibly coloured; both are removed from stdout lines before matching.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
LOG_PREFIX = re.compile(r"^[A-Za-z0-9][\w.-]*\s*\| ?")

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][-+]?\d+)?"
STA_ROW = re.compile(
    rf"^\s*(\d+)\s+(\d+)\s+(\d+)(U?)\s+(\d+)\s+({NUM})\s+({NUM})\s+({NUM})\s*$"
)
STA_HEADER = re.compile(r"^\s*SUMMARY OF JOB INFORMATION")
CVG_ROW = re.compile(rf"^\s*\d+\s+\d+\s+\d+\s+\d+\s+\d+(?:\s+{NUM}){{4}}\s*$")
CVG_HEADER = re.compile(r"^\s*SUMMARY OF C[0O]NVERGENCE INFORMATION")  # ccx spells it C0N…

BANNER = re.compile(r"^\s*CalculiX Version (\S+?),?\s")
STEP_LINE = re.compile(r"^\s*STEP\s+(\d+)\s*$")
INCREMENT_LINE = re.compile(r"^\s*increment\s+(\d+)\s+attempt\s+(\d+)\s*$")
CUTBACK_LINE = re.compile(
    r"^\s*(?:too slow convergence|divergence); the increment size is decreased"
)
REATTEMPT_LINE = re.compile(r"^\s*the increment is reattempted\s*$")
ITERATION_LINE = re.compile(r"^\s*iteration\s+\d+\s*$")
THREADS_LINE = re.compile(r"^\s*Using up to (\d+) cpu\(s\)")
ERROR_LINE = re.compile(r"^(\s*)\*ERROR")
FINISHED_LINE = re.compile(r"^\s*Job finished\s*$")

# Procedures whose first data line is `initial increment, period, …` (ccx manual, FORMATS §3.3);
# keyword names are compared upper-case with blanks removed, as ccx itself does.
TIMED_PROCEDURES = frozenset(
    {"STATIC", "DYNAMIC", "VISCO", "HEATTRANSFER", "COUPLEDTEMPERATURE-DISPLACEMENT"}
)
DEFAULT_PERIOD = 1.0
# Until ` Job finished`, converged time at or past the end is shown just under 100 %:
# ccx still writes results after the last increment.
BELOW_DONE = 99.9
MAX_CONTINUATION_LINES = 8


@dataclass(frozen=True, slots=True)
class StaRow:
    """One `.sta` row: an increment attempt and the times at its end."""

    step: int
    increment: int
    attempt: int
    converged: bool
    iterations: int
    total_time: float
    step_time: float
    inc_time: float


number = fortran_float


class CalculixOutput:
    """Progress of one ccx run, from its deck, `.sta`, `.cvg` and stdout.

    `feed` may be called with any source, in any order and in any chunking; `snapshot`
    returns a fresh record. Not thread-safe: one parser belongs to one job's reader.
    """

    def __init__(self) -> None:
        # deck
        self._periods: list[float] = []
        self._deck_notes: list[str] = []
        self._deck_seen = False
        self._in_step = False
        self._awaiting_data = False  # a timed procedure keyword line was the last card
        # .sta / .cvg
        self._last_row: StaRow | None = None
        self._last_converged: StaRow | None = None
        self._sta_cutbacks = 0
        self._cvg_iterations = 0
        self._rate = RateEstimator()
        # stdout
        self._started = False
        self._version: str | None = None
        self._stdout_step: int | None = None
        self._stdout_increment: int | None = None
        self._stdout_attempt: int | None = None
        self._stdout_cutbacks = 0
        self._stdout_iterations = 0
        self._cutback_note: str | None = None
        self._threads: int | None = None
        self._finished = False
        self._error: list[str] = []
        self._error_indent = 0
        self._collecting_error = False

    # -- feeding -------------------------------------------------------------------------

    def feed(self, source: str, lines: Iterable[str], now: float) -> None:
        """Consume complete lines of `source` ("deck", "sta", "cvg" or "stdout") read at
        active time `now`; other sources are ignored."""
        handler = {
            DECK: self._deck_line,
            STA: self._sta_line,
            CVG: self._cvg_line,
            STDOUT: self._stdout_line,
        }.get(source)
        if handler is None:
            return
        if source == DECK:
            self._deck_seen = True  # even an empty deck says "no steps", unlike no deck
        for line in lines:
            handler(line.rstrip("\r\n"), now)

    def _deck_line(self, line: str, now: float) -> None:
        text = line.strip()
        if not text or text.startswith("**"):
            return  # blank lines and comments are skipped by ccx too
        if not text.startswith("*"):
            if self._awaiting_data:
                self._awaiting_data = False
                fields = text.split(",")
                period = number(fields[1]) if len(fields) > 1 and fields[1].strip() else None
                if period is not None and period > 0:
                    self._periods[-1] = period
            return
        # ccx has no keyword-line continuation: `*STATIC,` followed by `0.1,2.` still reads
        # period 2.0 (checked with ccx 2.20), so a trailing comma is just ignored.
        self._awaiting_data = False
        name = "".join(text[1:].split(",", 1)[0].split()).upper()
        if name == "STEP":
            self._in_step = True
            self._periods.append(DEFAULT_PERIOD)
        elif name == "ENDSTEP":
            self._in_step = False
        elif name in TIMED_PROCEDURES and self._in_step:
            self._awaiting_data = True
        elif name == "INCLUDE":
            self._deck_notes.append(
                f"{text} not read: steps in included files are not counted"
            )

    def _sta_line(self, line: str, now: float) -> None:
        if STA_HEADER.match(line):
            self._reset_sta()  # a rewritten file starts again from its header
            return
        match = STA_ROW.match(line)
        if match is None:
            return
        times = [number(match[i]) for i in (6, 7, 8)]
        if times[0] is None or times[1] is None or times[2] is None:
            return
        row = StaRow(
            step=int(match[1]), increment=int(match[2]), attempt=int(match[3]),
            converged=not match[4], iterations=int(match[5]),
            total_time=times[0], step_time=times[1], inc_time=times[2],
        )
        last = self._last_row
        if last is not None and (row.step, row.increment, row.attempt) <= (
            last.step, last.increment, last.attempt
        ):
            return  # the same rows fed twice must not count twice
        self._started = True
        self._last_row = row
        if row.converged:
            self._last_converged = row
            self._rate.add(now, row.total_time)
        else:
            self._sta_cutbacks += 1

    def _reset_sta(self) -> None:
        self._last_row = None
        self._last_converged = None
        self._sta_cutbacks = 0
        self._rate.reset()

    def _cvg_line(self, line: str, now: float) -> None:
        if CVG_HEADER.match(line):
            self._cvg_iterations = 0
        elif CVG_ROW.match(line):
            self._started = True
            self._cvg_iterations += 1

    def _stdout_line(self, line: str, now: float) -> None:
        line = LOG_PREFIX.sub("", ANSI.sub("", line), count=1)
        if self._collecting_error:
            indent = len(line) - len(line.lstrip())
            if line.strip() and indent > self._error_indent and (
                len(self._error) <= MAX_CONTINUATION_LINES
            ):
                self._error.append(line.strip())
                return
            self._collecting_error = False
        error = ERROR_LINE.match(line)
        if error is not None:
            if not self._error:
                self._error = [line.strip()]
                self._error_indent = len(error[1])
                self._collecting_error = True
            return
        if FINISHED_LINE.match(line):
            self._started = True
            self._finished = True
        elif match := INCREMENT_LINE.match(line):
            self._started = True
            self._stdout_increment, self._stdout_attempt = int(match[1]), int(match[2])
        elif ITERATION_LINE.match(line):
            self._stdout_iterations += 1
        elif CUTBACK_LINE.match(line):
            self._cutback_note = line.strip()
        elif REATTEMPT_LINE.match(line):
            self._stdout_cutbacks += 1
        elif match := THREADS_LINE.match(line):
            self._threads = max(self._threads or 0, int(match[1]))
        elif match := STEP_LINE.match(line):
            self._started = True
            self._stdout_step = int(match[1])
        elif match := BANNER.match(line):
            self._started = True
            self._version = match[1]

    # -- reading -------------------------------------------------------------------------

    def snapshot(self) -> Progress:
        """What is known now; every details key is always present (None: not known)."""
        termination: Termination | None = None
        message: str | None = None
        if self._error:
            termination, message = Termination.ERROR, " ".join(self._error)
        elif self._finished:
            termination = Termination.NORMAL

        row, done = self._last_row, self._last_converged
        end_time = self._end_time()
        sim_time = done.total_time if done is not None else None
        progress: float | None = None
        eta_s: float | None = None
        if self._finished:
            progress = 100.0
        elif end_time is not None and self._started:
            progress = min(BELOW_DONE, 100.0 * (sim_time or 0.0) / end_time)
        if termination is Termination.NORMAL:
            eta_s = 0.0
        elif termination is None and end_time is not None:
            eta_s = self._rate.eta(end_time)

        step = row.step if row is not None else self._stdout_step
        step_time = done.step_time if done is not None else None
        period = self._period_of(step)
        details: dict[str, object] = {
            "step": step,
            "increment": row.increment if row is not None else self._stdout_increment,
            "attempt": row.attempt if row is not None else self._stdout_attempt,
            "converged": row.converged if row is not None else None,
            "step_time": step_time,
            "step_progress": (
                min(100.0, 100.0 * step_time / period)
                if step_time is not None and period is not None and done is not None
                and done.step == step else None
            ),
            "inc_time": row.inc_time if row is not None else None,
            "cutbacks": max(self._sta_cutbacks, self._stdout_cutbacks),
            "iterations": max(self._cvg_iterations, self._stdout_iterations),
            "steps_total": len(self._periods) if self._deck_seen else None,
            "step_periods": list(self._periods) if self._deck_seen else None,
            "threads": self._threads,
            "version": self._version,
            "cutback_note": self._cutback_note,
            "deck_notes": list(self._deck_notes),
        }
        return Progress(
            started=self._started,
            progress=progress,
            sim_time=sim_time,
            end_time=end_time,
            eta_s=eta_s,
            termination=termination,
            message=message,
            details=details,
        )

    def _period_of(self, step: int | None) -> float | None:
        if step is None or not 0 < step <= len(self._periods):
            return None
        return self._periods[step - 1]

    def _end_time(self) -> float | None:
        """Σ step periods, or None when the deck gave no steps or `.sta` has run past them
        (steps in an `*INCLUDE`d file the parser did not read)."""
        if not self._periods:
            return None
        if self._last_row is not None and self._last_row.step > len(self._periods):
            return None
        return sum(self._periods)
