"""LSTC licence-server client: run `lstc_qrun` / `lstc_qkill` and read what they print.

What the predecessor did (dynalauncher-protocol.md §5.6) and what this module keeps:

* The tools are run without a shell, output captured, under a timeout (here 5 s by default,
  the predecessor used 2 s and 1 s). The licence server is never passed as `-s`: like the
  predecessor, the tools read `LSTC_LICENSE_SERVER` from their environment; when
  `LstcTools.server` is set it is put into the child's environment (and only there).
* `lstc_qrun -r` prints the licence table (FORMATS.md §4). The predecessor read the last row
  by token position; `parse_qrun_r` reads every row by shape instead.
* Plain `lstc_qrun` prints the running programs. The predecessor kept only rows of >= 9
  tokens, which the recorded sample (8 tokens: user, PID@HOST, program, 4-token start, procs)
  never has; `parse_qrun` reads rows by shape and accepts an optional 9th number (`jobs`,
  inferred from the predecessor's parse, UNSEEN in any sample).
* `lstc_qkill PID@HOST` succeeds when its output contains `Program queued for termination`
  (the predecessor's test; no recorded output exists). The host is checked against
  `^[0-9]+@[A-Za-z0-9._-]+$` before anything runs: it comes from a client, and although it is
  one argv element (no shell), an option-like or odd string has no business reaching the tool.

Errors: the async functions never raise for a failure of the tool (missing, not executable,
timed out, non-zero exit, unparseable output); they return an `LstcFailure` (or for a kill a
`KillResult` with success False) whose message says what happened. Programming errors
(a bad `LstcTools`) raise ValueError. The parsers are plain functions that raise
`LstcParseError` (a ValueError) on text they do not recognise.

This is an edge module: asyncio and the OS only; nothing from serv.core depends on it. The
daemon feeds `lsdyna_usage` / `lsdyna_capacity` into `serv.core.licenses.LicensePools`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Callable, NamedTuple, TypeVar

T = TypeVar("T")

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "KILL_MARKER",
    "SERVER_ENV",
    "FailureKind",
    "KillResult",
    "LicenseFeature",
    "LicenseGroup",
    "LicenseInfo",
    "LstcFailure",
    "LstcParseError",
    "LstcTools",
    "QrunRow",
    "is_lsdyna_feature",
    "kill_program",
    "lsdyna_capacity",
    "lsdyna_usage",
    "parse_qrun",
    "parse_qrun_r",
    "query_licenses",
    "query_programs",
    "valid_host",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
#: The environment variable the LSTC tools read the server from (protocol §5.6, §7.1).
SERVER_ENV = "LSTC_LICENSE_SERVER"
#: lstc_qkill's output on success, as the predecessor tests it (protocol §5.6).
KILL_MARKER = "Program queued for termination"

_HOST = re.compile(r"[0-9]+@[A-Za-z0-9._-]+", re.ASCII)
_SERVER = re.compile(r"(?:[0-9]+@)?[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)
_MAX_HOST_LEN = 255
#: LS-DYNA feature names: LS-DYNA, MPPDYNA, SMPDYNA and their versioned forms (MPPDYNA_971).
_LSDYNA_FEATURE = re.compile(r"(?:LS-DYNA|MPPDYNA|SMPDYNA)(?:_\S*)?", re.IGNORECASE)

# lstc_qrun -r (FORMATS.md §4): three numbers (used, free, max) under a four-word header.
_SERVER_LINE = re.compile(r"^\s*Using user specified server\s+(\S+)\s*$")
_HEADER = re.compile(r"^\s*PROGRAM\s+EXPIRATION\b")
_RULE = re.compile(r"^[\s|-]*-{4,}[\s|-]*$")
_GROUP_ROW = re.compile(
    r"^\s*LICENSE\s+GROUP\s+(?P<used>\d+)\s+(?P<free>\d+)\s+(?P<max>\d+)\s*\|\s*(?P<queued>\d+)\s*$"
)
_FEATURE_ROW = re.compile(
    r"^\s*(?P<name>\S+)\s+(?P<expiry>\S+)\s+(?P<used>\d+)\s+(?P<free>\d+)\s+(?P<max>\d+)"
    r"\s*\|\s*(?P<queued>\d+)\s*$"
)

# plain lstc_qrun: user, PID@HOST (host maybe cut), program, "Day Mon DD HH:MM", procs.
_PROGRAMS_RULE = re.compile(r"^\s*-{16,}\s*$")
_PROGRAM_ROW = re.compile(
    r"^\s*(?P<user>\S+)\s+(?P<host>[0-9]+@\S+)\s+(?P<program>\S+)\s+"
    r"(?P<started>[A-Za-z]{3}\s+[A-Za-z]{3}\s+\d{1,2}\s+\d{1,2}:\d{2})\s+(?P<procs>\d+)"
    r"(?:\s+(?P<jobs>\d+))?\s*$"
)
_NOTHING_RUNNING = re.compile(r"no programs running", re.IGNORECASE)


class LstcParseError(ValueError):
    """The text is not the lstc_qrun output this module knows; the message quotes the line."""


class FailureKind(StrEnum):
    """Why a run of an LSTC tool gave no usable answer."""

    MISSING = "missing"  # the executable was not found
    OS_ERROR = "os-error"  # found but could not be started (permissions, format)
    TIMEOUT = "timeout"  # no answer within the timeout; the process was killed
    EXIT = "exit"  # non-zero exit status
    UNPARSEABLE = "unparseable"  # exit 0, but the output is not what was expected


@dataclass(frozen=True, slots=True)
class LstcFailure:
    """A failed run of `tool` ("lstc_qrun -r", "lstc_qrun", "lstc_qkill")."""

    tool: str
    kind: FailureKind
    message: str


@dataclass(frozen=True, slots=True)
class LstcTools:
    """Where the tools are and which licence server they ask.

    `qrun`/`qkill`: a bare name (looked up on PATH; Windows adds .exe) or a path.
    `server`: `PORT@HOST` or `HOST`, exported as LSTC_LICENSE_SERVER to the tools only;
    None: the daemon's own environment decides. Raises ValueError when invalid.
    """

    qrun: str | Path = "lstc_qrun"
    qkill: str | Path = "lstc_qkill"
    server: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.server is not None and not _SERVER.fullmatch(self.server):
            raise ValueError(f"licence server {self.server!r}: expected PORT@HOST or HOST")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")


@dataclass(frozen=True, slots=True)
class LicenseFeature:
    """One feature row of `lstc_qrun -r`, e.g. `MPPDYNA 04/05/2021 384 216 600 | 0`.

    `used + free = max` holds for the main rows of both samples but not for versioned rows
    (`MPPDYNA_971 ... 0 216 600`): there `free` is the group's free count.
    """

    name: str
    expiry_text: str
    expiry: date | None  # None when the expiry is not MM/DD/YYYY (UNSEEN, kept as text)
    used: int
    free: int
    max: int
    queued: int


@dataclass(frozen=True, slots=True)
class LicenseGroup:
    """A `LICENSE GROUP` totals row, with the names of the feature rows above it (since the
    previous group row): those features share these licences."""

    used: int
    free: int
    max: int
    queued: int
    features: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LicenseInfo:
    """What `lstc_qrun -r` reported."""

    server: str | None  # from `Using user specified server ...`, when printed
    features: tuple[LicenseFeature, ...]
    groups: tuple[LicenseGroup, ...]

    @property
    def group(self) -> LicenseGroup | None:
        """The last `LICENSE GROUP` row (the one the predecessor read), or None."""
        return self.groups[-1] if self.groups else None


@dataclass(frozen=True, slots=True)
class QrunRow:
    """One running program of plain `lstc_qrun`; `procs` is the licences it holds."""

    user: str
    host: str  # PID@HOST as printed; the host part can be cut to the column width
    program: str
    started: str  # "Tue Mar 17 16:18", as printed (no year, no zone), single-spaced
    procs: int
    jobs: int | None = None  # an optional 9th column (UNSEEN; predecessor's `josbs`)


class KillResult(NamedTuple):
    """`lstc_qkill`'s outcome: unpacks as (success, message), like the legacy qKillJob."""

    success: bool
    message: str


# ---------------------------------------------------------------------------------------
# Parsers (pure).
# ---------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return text.replace("\r", "").split("\n")


def _expiry(text: str) -> date | None:
    try:
        return datetime.strptime(text, "%m/%d/%Y").date()
    except ValueError:
        return None


def parse_qrun_r(text: str) -> LicenseInfo:
    """Read `lstc_qrun -r` output (FORMATS.md §4).

    Rules: an optional `Using user specified server X` line; the `PROGRAM EXPIRATION ...`
    header and its dashed rule are required; every non-blank line after the rule is a
    feature row (name, expiry, used, free, max, `|`, queued) or a `LICENSE GROUP` row
    (used, free, max, `|`, queued); at least one row. Anything else raises LstcParseError,
    so a changed layout is reported rather than miscounted.
    """
    lines = _lines(text)
    server: str | None = None
    header_at: int | None = None
    for index, line in enumerate(lines):
        match = _SERVER_LINE.match(line)
        if match and server is None:
            server = match.group(1)
        if _HEADER.match(line):
            header_at = index
            break
    if header_at is None:
        raise LstcParseError(f"lstc_qrun -r: no 'PROGRAM EXPIRATION' header in {_gist(text)}")
    rest = lines[header_at + 1 :]
    while rest and not rest[0].strip():
        rest = rest[1:]
    if not rest or not _RULE.match(rest[0]):
        raise LstcParseError("lstc_qrun -r: no dashed rule under the 'PROGRAM EXPIRATION' header")
    features: list[LicenseFeature] = []
    groups: list[LicenseGroup] = []
    pending: list[str] = []
    for line in rest[1:]:
        if not line.strip():
            continue
        group = _GROUP_ROW.match(line)
        if group:
            groups.append(
                LicenseGroup(
                    used=int(group["used"]),
                    free=int(group["free"]),
                    max=int(group["max"]),
                    queued=int(group["queued"]),
                    features=tuple(pending),
                )
            )
            pending = []
            continue
        row = _FEATURE_ROW.match(line)
        if not row:
            raise LstcParseError(f"lstc_qrun -r: unrecognised row {line.strip()!r}")
        features.append(
            LicenseFeature(
                name=row["name"],
                expiry_text=row["expiry"],
                expiry=_expiry(row["expiry"]),
                used=int(row["used"]),
                free=int(row["free"]),
                max=int(row["max"]),
                queued=int(row["queued"]),
            )
        )
        pending.append(row["name"])
    if not features and not groups:
        raise LstcParseError("lstc_qrun -r: the licence table has no rows")
    return LicenseInfo(server=server, features=tuple(features), groups=tuple(groups))


def parse_qrun(text: str) -> list[QrunRow]:
    """Read plain `lstc_qrun` output (FORMATS.md §4): the running programs.

    Rows are the lines right after the rule of >= 16 dashes, up to the first line that is
    not a row (blank, `No programs queued`, or the UNSEEN queued-programs section, which is
    not read). No rule at all: [] if the text says `No programs running`, else LstcParseError.
    """
    lines = _lines(text)
    start = next((i for i, line in enumerate(lines) if _PROGRAMS_RULE.match(line)), None)
    if start is None:
        if _NOTHING_RUNNING.search(text):
            return []
        raise LstcParseError(f"lstc_qrun: no programs table in {_gist(text)}")
    rows: list[QrunRow] = []
    for line in lines[start + 1 :]:
        match = _PROGRAM_ROW.match(line)
        if not match:
            break
        rows.append(
            QrunRow(
                user=match["user"],
                host=match["host"],
                program=match["program"],
                started=" ".join(match["started"].split()),
                procs=int(match["procs"]),
                jobs=int(match["jobs"]) if match["jobs"] is not None else None,
            )
        )
    return rows


def is_lsdyna_feature(name: str) -> bool:
    """True for LS-DYNA licence features: LS-DYNA, MPPDYNA, SMPDYNA and versioned forms."""
    return _LSDYNA_FEATURE.fullmatch(name) is not None


def _lsdyna_groups(info: LicenseInfo) -> tuple[list[LicenseGroup], list[LicenseFeature]]:
    """The groups holding an LS-DYNA feature, and the LS-DYNA features in no group."""
    grouped = {name for group in info.groups for name in group.features}
    groups = [g for g in info.groups if any(is_lsdyna_feature(n) for n in g.features)]
    loose = [f for f in info.features if is_lsdyna_feature(f.name) and f.name not in grouped]
    return groups, loose


def lsdyna_usage(info: LicenseInfo) -> int | None:
    """Licences in use on the server that count against pool `lsdyna`; None if the table has
    no LS-DYNA feature.

    Rule: a `LICENSE GROUP` row is one shared stock of licences (the 2000 sample: LS-DYNA and
    MPPDYNA each show 2000 free of 2000, the group 2000, not 4000), so every group with an
    LS-DYNA feature counts with its `used` total (600 sample: 384). LS-DYNA features in no
    group (UNSEEN) count with their own `used`, summed.
    """
    groups, loose = _lsdyna_groups(info)
    if not groups and not loose:
        return None
    return sum(g.used for g in groups) + sum(f.used for f in loose)


def lsdyna_capacity(info: LicenseInfo) -> int | None:
    """The server's maximum for pool `lsdyna` (the `max` of those groups, summed; failing
    groups, the largest `max` of the LS-DYNA features); None without an LS-DYNA feature."""
    groups, loose = _lsdyna_groups(info)
    if groups:
        return sum(g.max for g in groups)
    return max((f.max for f in loose), default=None)


def valid_host(host: object) -> bool:
    """True when `host` is `PID@HOST` as lstc_qrun prints it (the only thing lstc_qkill takes)."""
    return (
        isinstance(host, str)
        and len(host) <= _MAX_HOST_LEN
        and _HOST.fullmatch(host) is not None
    )


def _gist(text: str, limit: int = 120) -> str:
    """The first non-blank line of `text`, shortened, for messages."""
    first = next((line.strip() for line in _lines(text) if line.strip()), "")
    if not first:
        return "empty output"
    return repr(first if len(first) <= limit else first[: limit - 1] + "…")


# ---------------------------------------------------------------------------------------
# Running the tools.
# ---------------------------------------------------------------------------------------


class _Output(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


async def _run(tool: str, argv: list[str], tools: LstcTools) -> _Output | LstcFailure:
    """Run `argv` (no shell) with the server in its environment, under the timeout.

    The process is killed if it outlives the timeout or if the caller is cancelled.
    """
    env: dict[str, str] | None = None
    if tools.server is not None:
        env = dict(os.environ)
        env[SERVER_ENV] = tools.server
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except FileNotFoundError:
        return LstcFailure(tool, FailureKind.MISSING, f"{tool}: {argv[0]} not found")
    except OSError as exc:  # PermissionError, exec format error, ...
        return LstcFailure(tool, FailureKind.OS_ERROR, f"{tool}: cannot run {argv[0]}: {exc}")
    try:
        out, err = await asyncio.wait_for(proc.communicate(), tools.timeout_s)
    except TimeoutError:
        return LstcFailure(
            tool,
            FailureKind.TIMEOUT,
            f"{tool}: no answer within {tools.timeout_s:g} s (licence server "
            f"{tools.server or os.environ.get(SERVER_ENV) or 'unset'}); killed",
        )
    finally:
        if proc.returncode is None:
            # ProcessLookupError: it exited between the check and the kill.
            with suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return _Output(
        proc.returncode,
        out.decode("utf-8", errors="replace"),
        err.decode("utf-8", errors="replace"),
    )


def _exit_failure(tool: str, output: _Output) -> LstcFailure:
    detail = _gist(output.stderr) if output.stderr.strip() else _gist(output.stdout)
    return LstcFailure(
        tool, FailureKind.EXIT, f"{tool}: exit status {output.returncode}: {detail}"
    )


async def _query(tool: str, argv: list[str], tools: LstcTools, parse: Callable[[str], T]) -> T | LstcFailure:
    """Run one lstc_qrun form and parse its output; an `LstcFailure` on any failure."""
    output = await _run(tool, argv, tools)
    if isinstance(output, LstcFailure):
        log.debug("%s", output.message)
        return output
    if output.returncode != 0:
        return _exit_failure(tool, output)
    try:
        return parse(output.stdout)
    except LstcParseError as exc:
        return LstcFailure(tool, FailureKind.UNPARSEABLE, str(exc))


async def query_licenses(tools: LstcTools | None = None) -> LicenseInfo | LstcFailure:
    """Run `lstc_qrun -r` and parse the licence information; an `LstcFailure` on any failure."""
    tools = tools or LstcTools()
    return await _query("lstc_qrun -r", [str(tools.qrun), "-r"], tools, parse_qrun_r)


async def query_programs(tools: LstcTools | None = None) -> list[QrunRow] | LstcFailure:
    """Run plain `lstc_qrun` and parse the running programs; an `LstcFailure` on any failure."""
    tools = tools or LstcTools()
    return await _query("lstc_qrun", [str(tools.qrun)], tools, parse_qrun)


async def kill_program(host: str, tools: LstcTools | None = None) -> KillResult:
    """Ask the licence server to end the program `host` (`PID@HOST` from lstc_qrun).

    `host` is checked first; a bad one is refused and nothing runs. Success means the tool's
    output contains `Program queued for termination` (then the message is that output);
    otherwise success is False and the message says why. Never raises for a failure.
    """
    tools = tools or LstcTools()
    if not valid_host(host):
        shown = repr(host) if len(repr(host)) <= 80 else repr(host)[:79] + "…"
        return KillResult(
            False, f"refused: host {shown} is not PID@HOST as lstc_qrun prints it"
        )
    tool = "lstc_qkill"
    output = await _run(tool, [str(tools.qkill), host], tools)
    if isinstance(output, LstcFailure):
        log.warning("lstc_qkill %s failed: %s", host, output.message)
        return KillResult(False, output.message)
    if KILL_MARKER in output.stdout:
        log.info("lstc_qkill %s: program queued for termination", host)
        return KillResult(True, output.stdout.strip())
    status = f"exit status {output.returncode}, " if output.returncode else ""
    text = output.stdout.strip() or output.stderr.strip() or "(no output)"
    log.warning("lstc_qkill %s: unexpected response: %s", host, text)
    return KillResult(False, f"lstc_qkill {host}: unexpected response ({status}{text!r})"[:500])
