"""What an Ansys Electronics Desktop batch solve says while it runs: `HfssOutput`.

Reads the message lines `ansysedt -ng -monitor -batchsolve` writes to stdout (FORMATS.md
§2.1–2.6) and, line for line the same, the per-solve `.profile` HFSS writes into
`<project>.aedtresults` (§2.7), so a finished run can be re-read from either. A pure
`OutputParser` (serv.solvers.progress): it never reads files or clocks, keeps all state in
the object, and ignores text it does not understand instead of raising. It imports nothing
from `serv` but `serv.core.states` and `serv.solvers`' own progress and eta modules.

What it reports (keys of `Progress.details`, each present only once known):
    version, design_type, project, design, setup, stage,
    pass, solved_elements, delta_s, delta_s_history, converged,
    sweep, sweep_kind, sweep_range, sweep_frequencies, sweep_points_started,
    sweep_points_solved, sweep_solutions, sweep_converged,
    status, solves_completed, batch_stopped
`progress` stays None while only adaptive passes are known: the maximum number of passes
and the target ΔS are setup properties that never reach the log (§2.4), so the readable
status goes into `message` instead ("adaptive pass 4, max ΔS 0.16771").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from serv.core.states import Termination
from serv.solvers.eta import RateEstimator
from serv.solvers.progress import Progress

__all__ = ["HfssOutput"]

# The trailing stamp of a message line, `(11:55:40 AM  Oct 12, 2025)`; 2026 R1 writes
# `(05:46:23 PM  Nov 10, 2025)` (§2.2, §2.3). A message without it continues on the next line.
# Patterns here start with a literal, never with `\s*`/`.*?` before a separator: a search
# that retries a blank run at every start is quadratic, and junk must stay cheap to read.
STAMP = re.compile(
    r"\(\s*[0-9]{1,2}:[0-9]{2}:[0-9]{2}\s*[AaPp][Mm]\s+[A-Za-z]{3}\s+[0-9]{1,2},\s*[0-9]{4}\)\s*$"
)
# Header lines (§2.2); they are never part of a message, so they also end an unstamped one.
VERSION = re.compile(r"^\s*Ansys Electronics Desktop Version\s+([0-9][0-9A-Za-z.]*)", re.IGNORECASE)
STARTING = re.compile(r"^\s*Starting Batch Run:", re.IGNORECASE)
STOPPING = re.compile(r"^\s*Stopping Batch Run:", re.IGNORECASE)
DESIGN_TYPE = re.compile(r"^(?:\[info\]\s*)?Design type:\s*(\S.*)", re.IGNORECASE)
# `[<severity>] Project:<project>, Design:<design>, <text>` and
# `[<severity>] Project:<project>, <setup> : [PROFILE|CONVERGE] <text>` (§2.3).
SEVERITY = re.compile(r"^\[([A-Za-z]+)\]")
PROJECT = re.compile(r"^\[[A-Za-z]+\]\s*Project:([^,]*),\s*(.*)$")
DESIGN = re.compile(r"^Design:([^,]*),")
SOLVER = re.compile(r":\s+\[(PROFILE|CONVERGE)\]")  # `<setup> : [PROFILE] <text>`
# [PROFILE] items (§2.4, §2.5).
SOLUTION_PROCESS = re.compile(r"^Solution Process\s*:.*?\bProduct:\s*\S+\s+([0-9][0-9.]*)")
STAGES = (
    (re.compile(r"^Initial Meshing\b"), "initial meshing"),
    (re.compile(r"^Adaptive Meshing\b"), "adaptive meshing"),
    (re.compile(r"^Frequency Sweep\b"), "frequency sweep"),
)
SWEEP_SOLUTION = "Solution - "
SWEEP_RANGE = re.compile(r"^From\s+(\S+)\s+to\s+(\S+),\s*([0-9]{1,9})\s+Frequencies\b")
POINT_SOLVED = re.compile(r"^Frequency - \S+\s*:\s*Elapsed time\b")
POINT_STARTED = re.compile(r"^Frequency - \S+\s*:")
SWEEP_CONVERGED = re.compile(r"Interpolating sweep converged after\s+([0-9]{1,9})\s+solutions", re.IGNORECASE)
# Anywhere in a line: the log's PROFILE line or the .profile's ProfileTask row (§2.4, §2.7).
PASSES_CONVERGED = re.compile(r"Adaptive Passes converged", re.IGNORECASE)
# .profile rows (§2.7): written after each task ends, so a listed pass is a finished one.
PROFILE_START = re.compile(r"\bStartInfo='")
PROFILE_PRODUCT = re.compile(r"\bStartInfo='[^']*;\s*[A-Za-z][^';]*?\s([0-9]{4}(?:\.[0-9]+)+)\s*'")
PROFILE_PASS = re.compile(r"\bProfileTask\('Adaptive Pass ([0-9]{1,6})'")
# `Stop Time: 11/10/2025 17:50:49, Status: Normal Completion` and the .profile's
# `TotalInfo='Time:  01/30/2019 17:09:59, Status: Normal Completion'` (§2.6, §2.7).
STATUS = re.compile(r"\bStatus:\s*([A-Za-z][^,'()]*)")
STATUS_CONTEXT = ("Stop Time:", "TotalInfo='")  # what precedes a completion status
NORMAL_STATUS = "normal completion"
# Failures, all UNSEEN in a sample (FORMATS.md §2.6, SOURCES.md "Still missing for HFSS"):
# the `[error]` severity (and `[fatal]`, the severity above it in AEDT's message manager,
# matched defensively), and two messages public prose quotes from failed runs.
FAILURE_SEVERITIES = frozenset({"error", "fatal"})
EXECUTION_ERROR = re.compile(r"simulation completed with execution error", re.IGNORECASE)
# Licence checkout failures (UNSEEN): FlexNet and Ansys wordings, kept to phrases that say a
# checkout failed so that a licence *name* in a command line or a setting never matches.
LICENCE_FAILURE = re.compile(
    r"(?:unable|failed|failure|could\s*not|cannot|can't)\s+(?:to\s+)?"
    r"(?:check[- ]?out|obtain|acquire|get|connect\s+to)\b[^.\n]{0,80}?licen[cs]e"
    r"|licen[cs]e\s+(?:feature\s+)?(?:check[- ]?out|request)\s+(?:has\s+)?(?:failed|failure|error|denied)"
    r"|no\s+licen[cs]es?\s+(?:are\s+|is\s+)?available"
    r"|licen[cs]e[^.\n]{0,60}?\b(?:is\s+not\s+available|was\s+denied|has\s+expired)"
    r"|flexnet\s+licensing\s+error",
    re.IGNORECASE,
)
# Keep a joined failure message readable and bounded (an unstamped [error] absorbs the
# following lines until the next `[` line, §2.3).
MAX_MESSAGE_LINES = 12
MAX_MESSAGE_CHARS = 600


@dataclass(slots=True)
class _Adaptive:
    """The latest series of adaptive passes (a new series starts when the pass number drops)."""

    last_pass: int | None = None
    solved_elements: int | None = None
    delta_s: float | None = None
    history: list[float] = field(default_factory=list)
    converged: bool | None = None

    def record(self, number: int) -> None:
        if self.last_pass is not None and number <= self.last_pass:
            self.history.clear()
            self.solved_elements = None
            self.delta_s = None
        self.last_pass = number
        self.converged = False


@dataclass(slots=True)
class _Sweep:
    """The frequency sweep being solved (§2.5); reset by each `Solution - <sweep>` line."""

    name: str | None = None
    kind: str | None = None
    range_text: str | None = None
    frequencies: int | None = None
    started: int = 0
    solved: int = 0
    solutions: int | None = None
    converged: bool = False


class HfssOutput:
    """Stateful reader of one AEDT batch solve's stdout (or `.profile`); see the module doc.

    `feed` accepts any source name: everything HFSS prints with `-monitor` is on stdout.
    Pure and single-threaded: call it from one thread at a time. Never raises on text.
    """

    def __init__(self) -> None:
        self._started = False
        self._version: str | None = None
        self._design_type: str | None = None
        self._project: str | None = None
        self._design: str | None = None
        self._setup: str | None = None
        self._stage: str | None = None
        self._adaptive = _Adaptive()
        self._sweep = _Sweep()
        self._rate = RateEstimator()
        self._status: str | None = None
        self._solves_completed = 0
        self._batch_stopped = False
        self._termination: Termination | None = None
        self._failure: str | None = None
        # Message joining (§2.3): the lines of the message being read, whether it still waits
        # for its stamp, and whether it is the first failure, whose text grows with it.
        self._current: list[str] = []
        self._open = False
        self._collecting = False

    # -- OutputParser ---------------------------------------------------------------------

    def feed(self, source: str, lines: Iterable[str], now: float) -> None:
        """Consume complete lines (any source); stray CRs anywhere in a line are dropped."""
        for raw in lines:
            for line in raw.replace("\r", "").split("\n"):
                self._line(line, now)

    def snapshot(self) -> Progress:
        """What the output said so far; a fresh record each call."""
        progress: float | None = None
        eta_s: float | None = None
        if self._termination is Termination.NORMAL:
            progress = 100.0
        elif self._termination is None:
            progress, eta_s = self._sweep_progress()
        return Progress(
            started=self._started,
            progress=progress,
            eta_s=eta_s,
            termination=self._termination,
            message=self._message(),
            details=self._details(),
        )

    # -- lines ----------------------------------------------------------------------------

    def _line(self, line: str, now: float) -> None:
        severity = SEVERITY.match(line)
        continuation = False
        if severity is not None:
            self._current = [line]
            self._open = STAMP.search(line) is None
            self._collecting = False
            self._message_line(line, now)
        elif self._open and not (VERSION.match(line) or STARTING.match(line) or STOPPING.match(line)):
            continuation = True
            if len(self._current) < MAX_MESSAGE_LINES:
                self._current.append(line)
            self._open = STAMP.search(line) is None
        else:
            # A header line, or text outside any message: it stands alone.
            self._current = [line]
            self._open = False
            self._collecting = False
            self._header_line(line)
        self._anywhere(line, now)
        failed = (
            (severity is not None and severity.group(1).lower() in FAILURE_SEVERITIES)
            or EXECUTION_ERROR.search(line) is not None
            or LICENCE_FAILURE.search(line) is not None
        )
        if failed and self._termination is not Termination.ERROR:
            self._fail(_clean(" ".join(self._current)))
            self._collecting = self._open
        elif continuation and self._collecting:
            self._failure = _clean(" ".join(self._current))
            self._collecting = self._open

    def _header_line(self, line: str) -> None:
        if match := VERSION.match(line):
            self._started = True
            self._version = match.group(1).rstrip(".")
        elif STARTING.match(line):
            self._started = True
        elif STOPPING.match(line):
            self._batch_stopped = True

    def _message_line(self, line: str, now: float) -> None:
        match = PROJECT.match(line)
        if match is None:
            return
        self._started = True
        self._project = match.group(1).strip() or self._project
        rest = STAMP.sub("", match.group(2))
        if design := DESIGN.match(rest):
            self._design = design.group(1).strip() or self._design
            return
        solver = SOLVER.search(rest)
        setup = rest[: solver.start()].strip() if solver else ""
        if solver is None or not setup:
            return
        self._setup = setup
        body = rest[solver.end() :].strip()
        if solver.group(1) == "CONVERGE":
            self._converge(body)
        else:
            self._profile(body, now)

    def _profile(self, body: str, now: float) -> None:
        if body.startswith("Solution Process"):
            self._new_solve()
            if (product := SOLUTION_PROCESS.match(body)) and self._version is None:
                self._version = product.group(1).rstrip(".")
            return
        for pattern, stage in STAGES:
            if pattern.match(body):
                self._stage = stage
                return
        if body.startswith(SWEEP_SOLUTION):
            # `Solution - Sweep1 : Interpolating HFSS Frequency Sweep, ...` (§2.5)
            name, _, kind = body[len(SWEEP_SOLUTION) :].partition(":")
            self._sweep = _Sweep(name=name.strip() or None, kind=_sweep_kind(kind))
            self._rate.reset()
            self._stage = "frequency sweep"
        elif sweep_range := SWEEP_RANGE.match(body):
            self._sweep.range_text = f"{sweep_range.group(1)} to {sweep_range.group(2)}"
            self._sweep.frequencies = int(sweep_range.group(3))
        elif POINT_SOLVED.match(body):
            self._sweep.solved += 1
            self._rate.add(now, float(self._sweep.solved))
        elif POINT_STARTED.match(body):
            self._sweep.started += 1

    def _converge(self, body: str) -> None:
        # `Pass Number:  2;  Solved Elements:  25632;  Max Mag. Delta S:  0.50326; ...` (§2.4)
        fields: dict[str, str] = {}
        for pair in body.split(";"):
            key, colon, value = pair.partition(":")
            if colon:
                fields[" ".join(key.split()).lower()] = value.strip()
        number = _int(fields.get("pass number", ""))
        if number is None:
            return
        self._adaptive.record(number)
        self._stage = "adaptive meshing"
        self._adaptive.solved_elements = _int(fields.get("solved elements", ""))
        delta = _float(fields.get("max mag. delta s", ""))
        self._adaptive.delta_s = delta
        if delta is not None:
            self._adaptive.history.append(delta)

    def _anywhere(self, line: str, now: float) -> None:
        """Patterns that count wherever they appear: header settings echoed inside a message,
        .profile rows, convergence and completion status."""
        if match := DESIGN_TYPE.match(line):
            self._design_type = match.group(1).strip()
        if PROFILE_START.search(line):
            self._started = True
            self._new_solve()
            if self._version is None and (product := PROFILE_PRODUCT.search(line)):
                self._version = product.group(1)
        elif match := PROFILE_PASS.search(line):
            number = _int(match.group(1))
            if number is not None:
                self._adaptive.record(number)
        if PASSES_CONVERGED.search(line):
            self._adaptive.converged = True
        if match := SWEEP_CONVERGED.search(line):
            self._sweep.solutions = _int(match.group(1))
            self._sweep.converged = True
            self._sweep.kind = self._sweep.kind or "interpolating"
        text = STAMP.sub("", line)
        if (match := STATUS.search(text)) and any(c in text[: match.start()] for c in STATUS_CONTEXT):
            self._on_status(match.group(1).strip())

    # -- state changes --------------------------------------------------------------------

    def _new_solve(self) -> None:
        """A further solve of the same batch (next setup, next .profile group) has begun:
        an earlier Normal Completion no longer describes the run; a failure still does."""
        if self._termination is Termination.NORMAL:
            self._termination = None
        self._status = None
        self._batch_stopped = False

    def _on_status(self, status: str) -> None:
        self._status = status
        if status.lower() == NORMAL_STATUS:
            self._solves_completed += 1
            if self._termination is None:
                self._termination = Termination.NORMAL
        else:
            # FORMATS.md §2.6: a `Status:` other than Normal Completion is a failure.
            self._fail(f"Status: {status}")

    def _fail(self, text: str) -> None:
        """The first failure names the cause; later ones (often a generic summary such as
        `Simulation completed with execution error`) do not replace it."""
        if self._termination is not Termination.ERROR:
            self._termination = Termination.ERROR
            self._failure = text
            self._collecting = False

    # -- snapshot parts -------------------------------------------------------------------

    def _sweep_progress(self) -> tuple[float | None, float | None]:
        """Percent and ETA only for a discrete sweep, the one sweep whose number of solves is
        known in advance (§2.5, UNSEEN in a sample); an interpolating sweep decides as it goes."""
        sweep = self._sweep
        if sweep.kind != "discrete" or not sweep.frequencies or self._stage != "frequency sweep":
            return None, None
        percent = min(100.0, 100.0 * sweep.solved / sweep.frequencies)
        return percent, self._rate.eta(float(sweep.frequencies))

    def _message(self) -> str | None:
        if self._termination is Termination.ERROR:
            return self._failure
        if self._termination is Termination.NORMAL:
            return "Normal Completion"
        if self._batch_stopped:
            return "batch run stopped without a completion status"
        if self._stage == "frequency sweep":
            return self._sweep_message()
        if self._adaptive.last_pass is not None:
            return self._adaptive_message()
        if self._stage is not None:
            return self._stage
        return "batch solve started" if self._started else None

    def _adaptive_message(self) -> str:
        adaptive = self._adaptive
        delta = "" if adaptive.delta_s is None else f", max ΔS {adaptive.delta_s:g}"
        if adaptive.converged:
            return f"adaptive passes converged at pass {adaptive.last_pass}{delta}"
        return f"adaptive pass {adaptive.last_pass}{delta}"

    def _sweep_message(self) -> str:
        sweep = self._sweep
        kind = f"{sweep.kind} sweep" if sweep.kind else "frequency sweep"
        name = f"{kind} {sweep.name}" if sweep.name else kind
        if sweep.converged:
            return f"{name} converged after {sweep.solutions} solutions"
        if sweep.kind == "discrete" and sweep.frequencies:
            return f"{name}: {sweep.solved} of {sweep.frequencies} points solved"
        if sweep.solved:
            return f"{name}: {sweep.solved} points solved"
        if sweep.started:
            return f"{name}: {sweep.started} points started"
        return name

    def _details(self) -> dict[str, object]:
        adaptive, sweep = self._adaptive, self._sweep
        details: dict[str, object] = {}
        for key, value in (
            ("version", self._version),
            ("design_type", self._design_type),
            ("project", self._project),
            ("design", self._design),
            ("setup", self._setup),
            ("stage", self._stage),
            ("pass", adaptive.last_pass),
            ("solved_elements", adaptive.solved_elements),
            ("delta_s", adaptive.delta_s),
            ("delta_s_history", list(adaptive.history) or None),
            ("converged", adaptive.converged),
            ("sweep", sweep.name),
            ("sweep_kind", sweep.kind),
            ("sweep_range", sweep.range_text),
            ("sweep_frequencies", sweep.frequencies),
            ("sweep_points_started", sweep.started or None),
            ("sweep_points_solved", sweep.solved or None),
            ("sweep_solutions", sweep.solutions),
            ("sweep_converged", sweep.converged or None),
            ("status", self._status),
            ("solves_completed", self._solves_completed or None),
            ("batch_stopped", self._batch_stopped or None),
        ):
            if value is not None:
                details[key] = value
        return details


def _clean(text: str) -> str:
    """One readable line: the stamp dropped, runs of blanks collapsed, length bounded."""
    text = " ".join(STAMP.sub("", text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _sweep_kind(text: str) -> str | None:
    lowered = text.lower()
    for kind in ("interpolating", "discrete", "fast"):
        if kind in lowered:
            return kind
    return None


def _int(text: str) -> int | None:
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        return None
    return int(text)


def _float(text: str) -> float | None:
    """A ΔS value; `N/A` (pass 1) and anything else that is not a finite number give None."""
    text = text.strip()
    if not re.fullmatch(r"[-+]?[0-9]{1,20}(?:\.[0-9]{0,20})?(?:[eE][-+]?[0-9]{1,3})?", text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None
