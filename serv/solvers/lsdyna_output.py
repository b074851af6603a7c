"""LS-DYNA output, read line by line: start, simulation time, progress, ETA, added mass,
the end of the run and why it failed (../shared/samples/FORMATS.md §1).

`LsDynaOutput` implements `serv.solvers.progress.OutputParser`. It is pure: it never reads a
file or a clock (`now` is active seconds, passed in), imports nothing from the daemon, and
ignores text it does not understand: no line, however garbled, raises.

Sources (serv.solvers.progress):
  * "stdout", "messag" (messag or mes0000) and any source name it does not know: console
    text. stdout and messag carry the same text, so every value is fed idempotently:
    `sim_time` is the largest `t` seen, the start and termination flags never revert, header
    values and added mass keep the first value seen, and the values of "the last line"
    (cycle, dt, event, dump, LS-DYNA's own estimates) come from the source that has read
    furthest, so a lagging duplicate cannot pull them back.
  * "d3hsp": console text as well, plus the control-card echo (termination time, dt2ms).
  * "deck": the input deck, for ENDTIM of `*CONTROL_TERMINATION`, which wins over d3hsp.
Lines marked UNSEEN below match text no sample shows (FORMATS.md §1.4, §1.5, §1.9).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter, not_
from typing import Iterable

from serv.core.states import Termination
from serv.solvers.eta import RateEstimator
from serv.solvers.progress import D3HSP, DECK, Progress, fortran_float

# FORMATS.md §1.3, applied to one line at a time (with re.M over a whole text `\s*$` would
# run on into the next line).
CYCLE = re.compile(
    r"^\s*(?P<cycle>\d+)\s+t\s+(?P<t>[-+0-9.Ee]+)\s+dt\s+(?P<dt>[-+0-9.Ee]+)\s+(?P<event>.*?)"
    r"\s+(?P<date>\d\d/\d\d/\d\d)\s+(?P<clock>\d\d:\d\d:\d\d)\s*$"
)
# UNSEEN: the plain periodic cycle lines of long runs may lack the event or the stamp.
CYCLE_BARE = re.compile(
    r"^\s*(?P<cycle>\d+)\s+t\s+(?P<t>[-+0-9.Ee]+)\s+dt\s+(?P<dt>[-+0-9.Ee]+)(?:\s(?P<event>.*))?$"
)
# Cycle lines are about 80 characters; longer text is not one, and the lazy event group of
# CYCLE would backtrack quadratically through a long run of blanks.
CYCLE_MAX_CHARS = 300
# Text past this is never part of a marker; cutting it keeps every search linear in practice.
LINE_MAX_CHARS = 2000
DUMP_EVENT = re.compile(r"^write\s+(?P<name>d3dump\d+)\s+file$", re.IGNORECASE)
# A cycle line in the layout LS-DYNA itself prints (§1.3: `%8d t %.4E dt %.2E`, then the
# event), at most CYCLE_MAX_CHARS long, that writes no restart dump: nearly every line of a
# long run. Whatever this matches, CYCLE or CYCLE_BARE reads as a cycle line with `t` in
# columns 11-20, and DUMP_EVENT finds no dump in (tests/unit/test_lsdyna_output_fast.py
# checks both), so `feed` only counts these lines, keeps their largest `t` and parses the
# last one (#7). The first lookahead puts ` t ` at column 8 (the cycle number fills columns
# 0-7) and refuses a newline or more than CYCLE_MAX_CHARS; the last one refuses an event
# whose first words are `write d3dump`, with DUMP_EVENT's own case folding (which also takes
# `wrıte`). ASCII digits and two-digit exponents keep `t` and `dt` finite. The counts are
# written out (`........`, `[0-9][0-9]`) because the regex engine runs that faster than
# `{n}`, and this runs on every line.
PLAIN_CYCLE = re.compile(
    r"(?=........ t .{0,%d}\Z) *[0-9]+ t [0-9]\.[0-9][0-9][0-9][0-9]E[-+][0-9][0-9]"
    r" dt [0-9]\.[0-9][0-9]E[-+][0-9][0-9](?: |\Z)(?!\s*(?i:write\s+d3dump))"
    % (CYCLE_MAX_CHARS - 11)
)
_plain_t = itemgetter(slice(11, 21))

# §1.2: what says the solver itself is running. The LSTC-era box line, the Ansys-era box
# line, the `Version :` box line, and the `ANSYS LEGAL NOTICES` star box that Ansys builds
# print before the version box (the only header text in the licence-option sample).
STARTED_TEXT = (
    "Livermore  Software  Technology  Corporation",
    "LS-DYNA, A Program for Nonlinear Dynamic",
    "ANSYS LEGAL NOTICES",
)
BOX_FIELD = re.compile(r"^\s*\|\s*(?P<key>Version|Revision|Precision)\s*:\s*(?P<value>[^|]*)")
MPP_PROCS = re.compile(r"^\s*MPP execution with\s+(?P<n>\d+)\s+procs?\b")

# §1.7: never assume the number of spaces between the spaced words.
NORMAL = re.compile(r"N o r m a l\s+t e r m i n a t i o n")
ERROR = re.compile(r"E r r o r\s+t e r m i n a t i o n")
# §1.6: ` *** Error 20211 (STR+211)`, then indented detail lines until a blank line.
ERROR_HEADER = re.compile(r"^\s*\*\*\*\s*(?P<header>Error\s+\d+\b.*)$", re.IGNORECASE)

# §1.5 (UNSEEN): the predecessor's markers; the value is the last token.
ADDED_MASS = "added mass          ="
PCT_MASS = "percentage increase ="
# §1.4 (UNSEEN): `estimated total cpu time = <N> sec (...)` and its three siblings.
ESTIMATE = re.compile(
    r"estimated\s+(?P<what>total\s+cpu|cpu|total\s+clock|clock)\s+time(?P<left>\s+to\s+complete)?"
    r"\s*=\s*(?P<s>[-+0-9.Ee]+)\s*sec",
    re.IGNORECASE,
)

# §1.9 (UNSEEN): licence failures. Case-insensitive; the legal notice's "software license
# agreement" lines must not match, so plain "license" needs a word saying it went wrong.
LICENCE_ALWAYS = (
    "license error",
    "licence error",
    "no license",
    "no licence",
    "checkout failed",
    "check out failed",
    "checkout failure",
)
LICENCE_TROUBLE = (
    "not available",
    "unavailable",
    "expired",
    "denied",
    "failed",
    "failure",
    "unable to",
    "cannot",
    "could not",
    "invalid",
)
LSTC_LICENSE_TROUBLE = (*LICENCE_TROUBLE, "error", "not set", "not defined", "not found")
LICENCE_ERROR_NUMBER = re.compile(r"\*\*\*\s*error\s+70021\b", re.IGNORECASE)
MESSAGE_MAX = 200

# d3hsp control-card echo (§1.4). The dots keep ` *** termination time reached ***` out.
HSP_ENDTIM = re.compile(r"^\s*termination time\s*\.{2,}\s*(?P<v>\S+)\s*$")
HSP_DT2MS = re.compile(r"^\s*time step size for mass scaled solution, dt2ms\.*\s*(?P<v>\S+)\s*$")

# Deck: `*CONTROL_TERMINATION` exactly (any case), optionally followed by a format flag
# (`+` long 20-wide fields, `-` standard, `%` wide integers only). *CONTROL_IMPLICIT_TERMINATION,
# *TERMINATION_NODE or any `*CONTROL_TERMINATION_<x>` are other keywords.
KEYWORD = re.compile(r"^\s*\*(?P<name>[A-Za-z0-9_]+)(?P<rest>.*)$")
LONG_ON = re.compile(r"\blong\s*=\s*y", re.IGNORECASE)
LONG_OFF = re.compile(r"\blong\s*=\s*[sn]", re.IGNORECASE)


to_float = fortran_float


def last_token_float(line: str) -> float | None:
    tokens = line.split()
    return to_float(tokens[-1]) if tokens else None


def is_licence_failure(low: str) -> bool:
    """True for a lower-cased line that reports a licence failure (UNSEEN, kept defensive)."""
    if "licen" not in low and "check" not in low and "70021" not in low:
        # Every marker below holds one of these; most lines hold none, and this costs a
        # fraction of the searches below (#7).
        return False
    if any(text in low for text in LICENCE_ALWAYS) or LICENCE_ERROR_NUMBER.search(low):
        return True
    if "lstc_license" in low and any(word in low for word in LSTC_LICENSE_TROUBLE):
        return True
    return ("license" in low or "licence" in low) and any(word in low for word in LICENCE_TROUBLE)


def shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 3] + "..."


@dataclass(frozen=True, slots=True)
class _Cycle:
    """One cycle line (§1.3)."""

    cycle: int
    t: float
    dt: float
    event: str


def _parse_cycle(line: str) -> tuple[_Cycle, str | None] | None:
    """The cycle line `line` and the dump file its event writes, or None if it is not one."""
    match = CYCLE.match(line) or CYCLE_BARE.match(line)
    if match is None:
        return None
    t = to_float(match["t"])
    dt = to_float(match["dt"])
    if t is None or dt is None:
        return None
    event = " ".join((match["event"] or "").split())
    dump = DUMP_EVENT.match(event)
    return _Cycle(int(match["cycle"]), t, dt, event), None if dump is None else dump["name"]


@dataclass(slots=True)
class _Stream:
    """What one source has said; duplicate sources are merged in `LsDynaOutput.snapshot`."""

    last_cycle: _Cycle | None = None
    cycles_seen: int = 0
    last_dump: str | None = None
    dumps_seen: int = 0
    banner: Termination | None = None  # the last termination banner in this source
    open_error: str | None = None  # an error header still waiting for its first detail line
    estimates: dict[str, tuple[int, float]] = field(default_factory=dict)  # key: (count, s)


class LsDynaOutput:
    """The OutputParser of the LS-DYNA family: one per job, fed from every source it tails.

    Not thread-safe; the caller feeds and reads it from one thread. `feed` never raises on
    any text; `snapshot` is cheap and may be called after every feed.
    """

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._started = False
        self._sim_time: float | None = None
        self._rate = RateEstimator()
        # The last cycle line parsed (text, cycle, dump name): the same line from the next
        # source is not parsed again.
        self._cycle_memo: tuple[str, _Cycle, str | None] | None = None
        self._header: dict[str, object] = {}  # version, revision, precision, mpp_procs
        self._added_mass: float | None = None
        self._pct_mass: float | None = None
        self._first_error: str | None = None
        self._licence: str | None = None
        self._licence_header: str | None = None  # a licence error block still open
        self._hsp_end_time: float | None = None
        self._dt2ms: float | None = None
        # deck state, kept across feeds because the deck may arrive in several chunks
        self._deck_end_time: float | None = None
        self._deck_long = False
        self._deck_card_width: int | None = None  # set while ENDTIM's card is expected

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, source: str, lines: Iterable[str], now: float) -> None:
        """Consume complete lines of `source` read at active time `now` (seconds)."""
        if source == DECK:
            for line in lines:
                self._deck_line(line)
            return
        stream = self._streams.setdefault(source, _Stream())
        if source == D3HSP:
            # Only d3hsp's head is read (SideFile.max_bytes): line by line is cheap enough.
            for line in lines:
                self._output_line(stream, line, now)
                self._hsp_line(line)
            return
        self._feed_console(stream, lines if isinstance(lines, list) else list(lines), now)

    def _feed_console(self, stream: _Stream, lines: list[str], now: float) -> None:
        """Feed console lines, parsing in full only the last of the plain cycle lines (#7).

        Every line of one feed has the same `now`, and no other line reads what a cycle line
        sets, so the plain cycle lines of a feed (PLAIN_CYCLE) add up to: their number
        (`cycles_seen`), their largest `t` (`sim_time` and the ETA sample at `now`) and the
        last of them (`last_cycle`), unless a cycle line read in full comes after it. Every
        other line is read in full and in order, as before. The lines are told apart with
        `map` rather than a Python loop: at ~12,000 cycle lines per MB every step per line
        counts (docs/benchmarks/tail_cost.md).
        """
        plain = list(map(bool, map(PLAIN_CYCLE.match, lines)))
        if plain and stream.open_error is not None:
            plain[0] = False  # the detail line of an error header that ended the last feed
        last_read_cycle = -1  # index of the last cycle line read in full
        # Lazy, so it sees the detail lines marked below before it reaches them.
        for i in compress(range(len(lines)), map(not_, plain)):
            seen = stream.cycles_seen
            self._output_line(stream, lines[i], now)
            if stream.open_error is not None and i + 1 < len(lines):
                plain[i + 1] = False  # an error's detail line (§1.6) is read, plain or not
            if stream.cycles_seen != seen:
                last_read_cycle = i
        if True in plain:
            last_plain = len(plain) - 1 - plain[::-1].index(True)
            self._add_plain_cycles(
                stream, list(compress(lines, plain)), last_plain > last_read_cycle, now
            )

    def _add_plain_cycles(
        self, stream: _Stream, found: list[str], last_is_latest: bool, now: float
    ) -> None:
        """Count the plain cycle lines `found` in one feed at `now`, as `_cycle_line` would.

        `last_is_latest`: no cycle line read in full came after the last of them.
        """
        self._started = True
        t = max(map(float, map(_plain_t, found)))
        if self._sim_time is None or t > self._sim_time:
            # The same samples as one `add` per rising line: a sample at the same `now`
            # replaces the one before it. Only the estimator's rounding can differ.
            self._sim_time = t
            self._rate.add(now, t)
        if last_is_latest:
            stream.cycles_seen += len(found) - 1
            # Parsed in full (never refused: see PLAIN_CYCLE) for cycle, dt and event.
            self._cycle_line(stream, found[-1], now)
        else:
            stream.cycles_seen += len(found)

    def _output_line(self, stream: _Stream, line: str, now: float) -> None:
        line = line[:LINE_MAX_CHARS]
        if stream.open_error is not None:
            self._close_error(stream, line)
        header = ERROR_HEADER.match(line) if "***" in line else None
        if header is not None:
            stream.open_error = " ".join(header["header"].split())
            if self._licence is None and LICENCE_ERROR_NUMBER.search(line):
                self._licence = "licence failure: " + shorten(stream.open_error)
                self._licence_header = stream.open_error
            return
        if "dt" in line and len(line) <= CYCLE_MAX_CHARS and self._cycle_line(stream, line, now):
            return
        if "t e r m i n a t i o n" in line:
            if ERROR.search(line):
                stream.banner = Termination.ERROR
            elif NORMAL.search(line):
                stream.banner = Termination.NORMAL
            return
        if not self._started and any(text in line for text in STARTED_TEXT):
            self._started = True
        if "|" in line:
            self._box_line(line)
        elif "MPP execution" in line and "mpp_procs" not in self._header:
            procs = MPP_PROCS.match(line)
            if procs is not None:
                self._header["mpp_procs"] = int(procs["n"])
        if "=" in line:
            self._equals_line(stream, line)
        if self._licence is None and is_licence_failure(line.lower()):
            self._licence = "licence failure: " + shorten(line.strip(" *\t"))

    def _equals_line(self, stream: _Stream, line: str) -> None:
        """Added mass and LS-DYNA's estimates: every one of their markers holds `=` (#7:
        the other lines skip these searches)."""
        if self._added_mass is None and ADDED_MASS in line:
            self._added_mass = last_token_float(line)
        if self._pct_mass is None and PCT_MASS in line:
            self._pct_mass = last_token_float(line)
        if "estimated" in line.lower():
            self._estimate_line(stream, line)

    def _close_error(self, stream: _Stream, line: str) -> None:
        """End the open error block with `line` as its first detail line, if it is one."""
        header = str(stream.open_error)
        stream.open_error = None
        detail = "" if ERROR_HEADER.match(line) else line.strip()
        text = f"{header}: {shorten(detail)}" if detail else header
        if self._first_error is None:
            self._first_error = text
        if header == self._licence_header:
            self._licence = "licence failure: " + shorten(text)
            self._licence_header = None

    def _cycle_line(self, stream: _Stream, line: str, now: float) -> bool:
        memo = self._cycle_memo
        if memo is not None and memo[0] == line:
            # stdout, messag and d3hsp carry the same line: it is parsed once.
            cycle, dump_name = memo[1], memo[2]
        else:
            parsed = _parse_cycle(line)
            if parsed is None:
                return False
            cycle, dump_name = parsed
            self._cycle_memo = (line, cycle, dump_name)
        self._started = True  # a cycle line is the solver computing
        stream.last_cycle = cycle
        stream.cycles_seen += 1
        if dump_name is not None:
            stream.last_dump = dump_name
            stream.dumps_seen += 1
        t = cycle.t
        if self._sim_time is None or t > self._sim_time:
            self._sim_time = t
            self._rate.add(now, t)
        return True

    def _box_line(self, line: str) -> None:
        match = BOX_FIELD.match(line)
        if match is None:
            return
        key = match["key"].lower()
        # `Version : smp d R16`; an LSTC-era box may add `Date: …` after two or more spaces.
        value = re.split(r"\s{2,}", match["value"].strip())[0]
        if key == "version":
            self._started = True
        if value and key not in self._header:
            self._header[key] = value

    def _estimate_line(self, stream: _Stream, line: str) -> None:
        match = ESTIMATE.search(line)
        if match is None:
            return
        seconds = to_float(match["s"])
        if seconds is None:
            return
        what = "_".join(match["what"].lower().split())
        key = f"estimated_{what}{'_to_complete' if match['left'] else ''}_s"
        count = stream.estimates.get(key, (0, 0.0))[0]
        stream.estimates[key] = (count + 1, seconds)

    def _hsp_line(self, line: str) -> None:
        if self._hsp_end_time is None and "termination time" in line:
            match = HSP_ENDTIM.match(line)
            if match is not None:
                self._hsp_end_time = to_float(match["v"])
        if self._dt2ms is None and "dt2ms" in line:
            match = HSP_DT2MS.match(line)
            if match is not None:
                self._dt2ms = to_float(match["v"])

    def _deck_line(self, line: str) -> None:
        stripped = line.strip()
        if stripped.startswith("$"):
            return  # comment card
        if self._deck_card_width is not None and not stripped.startswith("*"):
            # ENDTIM's card: free format when it has a comma, else fixed-width fields.
            card = line.rstrip("\r\n")
            first = card.split(",")[0] if "," in card else card[: self._deck_card_width]
            # A blank field is the default, 0.0. The last *CONTROL_TERMINATION read wins,
            # as LS-DYNA overwrites control values card by card; an unreadable field
            # (e.g. a `&name` parameter) leaves it to the d3hsp echo.
            self._deck_end_time = 0.0 if not first.strip() else to_float(first)
            self._deck_card_width = None
            return
        keyword = KEYWORD.match(line) if stripped.startswith("*") else None
        if keyword is None:
            return
        if self._deck_card_width is not None:
            self._deck_end_time = 0.0  # the card was left out: every field is its default
            self._deck_card_width = None
        name = keyword["name"].upper()
        rest = keyword["rest"].strip()
        if name == "KEYWORD":
            if LONG_ON.search(rest):
                self._deck_long = True
            elif LONG_OFF.search(rest):
                self._deck_long = False
        elif name == "CONTROL_TERMINATION" and (not rest or rest[0] in "+-%$"):
            long = rest.startswith("+") or (self._deck_long and not rest.startswith("-"))
            self._deck_card_width = 20 if long else 10

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self) -> Progress:
        """What the output said so far (a fresh record; details is a new dict)."""
        termination = self._termination()
        end_time = self._deck_end_time if self._deck_end_time is not None else self._hsp_end_time
        sim_time = self._sim_time
        known_end = end_time is not None and end_time > 0
        progress: float | None = None
        eta_s: float | None = None
        if termination is Termination.NORMAL:
            progress = 100.0  # §1.4: with ENDTIM 0 the banner is the only measure
        elif known_end and sim_time is not None and end_time is not None:
            progress = min(99.9, max(0.0, 100.0 * sim_time / end_time))
        if termination is not None:
            eta_s = 0.0
        elif known_end and sim_time is not None and end_time is not None:
            eta_s = self._rate.eta(end_time)
        return Progress(
            started=self._started,
            progress=progress,
            sim_time=sim_time,
            end_time=end_time,
            eta_s=eta_s,
            added_mass=self._added_mass,
            pct_mass=self._pct_mass,
            termination=termination,
            message=self._message(termination),
            details=self._details(),
        )

    def _termination(self) -> Termination | None:
        # Within a source the last banner counts (a restart appended after an error); any
        # source ending in an error wins, since any rank's error is fatal (§1.8).
        banners = {stream.banner for stream in self._streams.values()}
        if Termination.ERROR in banners:
            return Termination.ERROR
        return Termination.NORMAL if Termination.NORMAL in banners else None

    def _message(self, termination: Termination | None) -> str | None:
        if self._licence is not None:
            return self._licence
        if termination is not Termination.ERROR:
            return None
        if self._first_error is not None:
            return self._first_error
        open_errors = [s.open_error for s in self._streams.values() if s.open_error]
        return open_errors[0] if open_errors else "error termination"

    def _details(self) -> dict[str, object]:
        details: dict[str, object] = dict(self._header)
        streams = list(self._streams.values())
        with_cycle = [s for s in streams if s.last_cycle is not None]
        if with_cycle:
            # The source that has read furthest: largest t, then cycle, then line count.
            ahead = max(with_cycle, key=_progress_key)
            last = ahead.last_cycle
            if last is not None:
                details.update(cycle=last.cycle, dt=last.dt, event=last.event)
        with_dump = [s for s in streams if s.last_dump is not None]
        if with_dump:
            details["last_dump"] = max(with_dump, key=lambda s: s.dumps_seen).last_dump
        if self._dt2ms is not None:
            details["dt2ms"] = self._dt2ms
        keys = sorted({key for s in streams for key in s.estimates})
        for key in keys:
            details[key] = max(
                (s.estimates[key] for s in streams if key in s.estimates), key=lambda e: e[0]
            )[1]
        return details


def _progress_key(stream: _Stream) -> tuple[float, int, int]:
    last = stream.last_cycle
    return (last.t, last.cycle, stream.cycles_seen) if last is not None else (-math.inf, -1, -1)
