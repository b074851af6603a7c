"""The files dynalauncher reads and writes in a job's workdir (contract.md § Files).

`pid` (the solver's PID and its cores), `d3kil` (LS-DYNA sense switches), pages and the tail
of `stdout`, the input deck, restart dumps. Every writer writes a temporary file and renames
it, so a reader (the solver, a client, the daemon after a crash) never sees half a file.
Blocking: call from a thread.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Iterable

from serv.output import decode_text

log = logging.getLogger(__name__)

OUTPUT_TAIL_BYTES = 256 * 1024
DECK_MAX_BYTES = 64 * 1024 * 1024


def read_deck_lines(path: Path) -> list[str]:
    """The input deck's lines (the first DECK_MAX_BYTES), decoded like solver output."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(DECK_MAX_BYTES)
    except OSError as exc:
        log.warning("cannot read input deck %s: %s", path, exc)
        return []
    return decode_text(raw).split("\n")


def write_pid_file(workdir: Path, pid: int, cores: Iterable[int] | None) -> None:
    """contract.md § Files: line 1 the solver PID, line 2 {"cores": [..]} when pinned.
    Written to a temporary name and renamed, so a reader never sees half a file."""
    text = f"{pid}\n"
    if cores:
        text += json.dumps({"cores": list(cores)}) + "\n"
    tmp = workdir / ".pid.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, workdir / "pid")


def read_pid_file_cores(workdir: Path) -> tuple[int, ...] | None:
    """The cores on line 2 of the pid file, or None when absent or unreadable."""
    try:
        lines = (workdir / "pid").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    if len(lines) < 2:
        return None
    try:
        cores = json.loads(lines[1]).get("cores")
    except (ValueError, AttributeError):
        log.warning("unreadable cores line in %s: %r", workdir / "pid", lines[1])
        return None
    if isinstance(cores, list) and all(isinstance(c, int) for c in cores):
        return tuple(cores)
    return None


def write_d3kil(workdir: Path, switch: str) -> None:
    """LS-DYNA reads a sense switch from a file named d3kil in its cwd. The sw switches are
    written as LS-DYNA's interactive syntax spells them (`sw1.`), the other words bare."""
    text = f"{switch}." if re.fullmatch(r"sw[1-4a-d]", switch) else switch
    tmp = workdir / ".d3kil.tmp"
    tmp.write_text(text + "\n", encoding="ascii")
    # Renamed into place so the solver never reads a half-written switch.
    os.replace(tmp, workdir / "d3kil")


def read_tail(path: Path, size: int = OUTPUT_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            fh.seek(max(0, end - size))
            raw = fh.read()
    except OSError:
        return ""
    return decode_text(raw)


def newest_dump(workdir: Path, since: datetime | None) -> str | None:
    """The newest restart dump (d3dumpNN) written since the job started, if any."""
    floor = since.timestamp() - 1 if since else 0
    best: tuple[float, str] | None = None
    try:
        entries = list(workdir.glob("d3dump*"))
    except OSError:
        return None
    for path in entries:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if mtime >= floor and (best is None or mtime > best[0]):
            best = (mtime, path.name)
    return best[1] if best else None


def read_page(path: Path, offset: int, limit: int) -> tuple[str, int, int]:
    """Up to `limit` bytes from `offset`, cut back to a whole UTF-8 character."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(offset)
            raw = fh.read(limit)
    except FileNotFoundError:
        return "", offset, 0
    if len(raw) == limit:
        cut = len(raw)
        # Back up over UTF-8 continuation bytes so a character is never split across pages.
        while cut > 0 and len(raw) - cut < 4 and (raw[cut - 1] & 0xC0) == 0x80:
            cut -= 1
        if cut > 0 and raw[cut - 1] >= 0xC0:
            cut -= 1
        if cut > 0:
            raw = raw[:cut]
    return raw.decode("utf-8", errors="replace"), offset + len(raw), size
