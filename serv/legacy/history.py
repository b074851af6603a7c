"""Import the job history of an API-DynaLauncher 2.0.x `DynaLauncher.db` (protocol §6).

The legacy file is opened read-only and immutable (`file:…?mode=ro&immutable=1`): SQLite
neither writes nor locks it, and no journal or WAL file is created next to it, so it stays
byte-identical. Every `sql_job` row becomes one job of the store, in one transaction, with:

* `extra["legacy_id"]` (the legacy id), `extra["legacy_source"]` (the file) and
  `extra["legacy"]` (input, solver, command, expr, memory, ncpu, sender, allocated_cores as
  the legacy row had them), so the GUI shows them unchanged;
* the legacy id as the job id when the store holds no job yet (the GUI keeps its numbers),
  else new ids after the store's highest;
* `solver` the name of the configured profile with that executable, else the legacy path;
* status: Finished → finished (termination normal), Error → failed (termination error),
  Stopped → stopped, sw1 → stopped after a sw1 (termination normal; shown as sw1 again),
  anything else that is not live → stopped with a message naming the legacy status.

Rows that were `Running` or `Starting` become live (`running`) jobs carrying their pid, and
the daemon's normal crash recovery decides at start. A pid create time is recorded only when
the process is proven to be the same one: it exists and its create time is within
PID_IDENTITY_S of the row's `started` epoch. Then recovery re-adopts it. Otherwise (no pid,
no such process, or a recycled pid) the job has no identity and recovery ends it — stopped,
or finished/failed when its stdout shows a termination banner. Schemas without `sender`
and/or `allocated_cores` (databases from before 2025-09 / 2025-10) are read the same way.
Importing the same file again skips the rows already imported from it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PureWindowsPath
from typing import Any, Mapping

import psutil

from serv.config import DEFAULT_PROCESS_NAMES, Config, SolverProfile
from serv.core.jobs import Family, Job
from serv.core.states import JobStatus, Termination
from serv.legacy.records import SW1_REQUESTER
from serv.store import Store

log = logging.getLogger(__name__)

S = JobStatus
PID_IDENTITY_S = 2.0
COLUMNS = (
    "id", "input", "solver", "command", "ncpu", "memory", "status", "progress", "started",
    "ETA", "elapsed", "current", "end", "pid", "expr", "a_mass", "pct_mass", "sender",
    "allocated_cores",
)
ENDED: Mapping[str, tuple[JobStatus, Termination | None, str | None]] = {
    "Finished": (S.FINISHED, Termination.NORMAL, None),
    "Error": (S.FAILED, Termination.ERROR, None),
    "Stopped": (S.STOPPED, None, None),
    "sw1": (S.STOPPED, Termination.NORMAL, SW1_REQUESTER),
}
LIVE = ("Running", "Starting")


class LegacyImportError(Exception):
    """The file is not a readable API-DynaLauncher database."""


@dataclass
class ImportReport:
    source: Path
    imported: int = 0
    skipped: int = 0
    live: int = 0
    proven: int = 0
    ids: dict[int, int] = field(default_factory=dict)  # legacy id -> job id
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"imported {self.imported} jobs from {self.source} ({self.skipped} skipped; "
            f"{self.live} were running, {self.proven} of them with a proven live process)"
        )


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every `sql_job` row as a dict of the known columns present; never writes the file."""
    path = Path(path)
    if not path.is_file():
        raise LegacyImportError(f"{path}: no such file")
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise LegacyImportError(f"{path}: cannot open: {exc}") from exc
    try:
        present = {row[1] for row in conn.execute('PRAGMA table_info("sql_job")')}
        if not present:
            raise LegacyImportError(f"{path}: no table sql_job; not an API-DynaLauncher database")
        wanted = [c for c in COLUMNS if c in present]
        if "id" not in wanted or "status" not in wanted or "input" not in wanted:
            raise LegacyImportError(f"{path}: table sql_job lacks id, input or status")
        select = ", ".join(f'"{c}"' for c in wanted)
        rows = conn.execute(f'SELECT {select} FROM sql_job ORDER BY id').fetchall()
    except sqlite3.Error as exc:
        raise LegacyImportError(f"{path}: cannot read: {exc}") from exc
    finally:
        conn.close()
    return [dict(zip(wanted, row)) for row in rows]


def _float(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _workdir(input: str) -> str:
    windows = os.name != "nt" and ("\\" in input or (len(input) > 1 and input[1] == ":"))
    return str(PureWindowsPath(input).parent if windows else Path(input).parent)


def _cores(value: Any) -> tuple[int, ...] | None:
    try:
        cores = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None
    if isinstance(cores, list) and cores and all(isinstance(c, int) and c >= 0 for c in cores):
        return tuple(cores)
    return None


def proven_create_time(pid: int | None, started: int | None) -> float | None:
    """The create time of `pid` when it is the process the legacy row started, else None."""
    if pid is None or pid <= 0 or started is None:
        return None
    try:
        created = psutil.Process(pid).create_time()
    except (psutil.Error, OSError, ValueError):
        return None
    return created if abs(created - started) <= PID_IDENTITY_S else None


def _profile_name(solver: str, profiles: Mapping[str, SolverProfile]) -> str:
    if not solver:
        return "legacy"
    try:
        real = os.path.normcase(os.path.realpath(solver))
    except (OSError, ValueError):
        real = solver
    for name, profile in sorted(profiles.items()):
        if profile.family is not Family.LSDYNA:
            continue
        exe = profile.executable
        if exe == solver or (os.path.isabs(exe) and os.path.normcase(os.path.realpath(exe)) == real):
            return name
    return solver


def row_to_job(row: Mapping[str, Any], job_id: int, source: Path,
               profiles: Mapping[str, SolverProfile], now: datetime) -> Job:
    legacy_id = int(row["id"])
    input = _text(row.get("input"))
    solver = _text(row.get("solver"))
    status_text = _text(row.get("status"))
    started_epoch = _int(row.get("started"))
    started_at = datetime.fromtimestamp(started_epoch, UTC) if started_epoch else None
    pid = _int(row.get("pid"))
    ncpu = max(1, _int(row.get("ncpu")) or 1)
    memory = _text(row.get("memory")) or None
    memo = {
        "input": input, "solver": solver, "command": _text(row.get("command")),
        "expr": _text(row.get("expr")), "memory": memory or "", "ncpu": row.get("ncpu"),
        "sender": row.get("sender"), "allocated_cores": row.get("allocated_cores"),
    }
    base = f"imported from legacy DynaLauncher {source.name} (id {legacy_id}, status {status_text or 'none'})"
    changes: dict[str, Any] = {}
    if status_text in LIVE:
        create_time = proven_create_time(pid, started_epoch)
        status, termination, requester = S.RUNNING, None, None
        message = base + (f"; pid {pid} is still that process" if create_time is not None
                          else f"; pid {pid} cannot be proven to be that process")
        changes = {"pid": pid, "pid_create_time": create_time, "allocated_cores": _cores(row.get("allocated_cores"))}
    else:
        status, termination, requester = ENDED.get(status_text, (S.STOPPED, None, None))
        message = base
        changes = {"pid": pid}
    return Job(
        id=job_id,
        solver=_profile_name(solver, profiles),
        family=Family.LSDYNA,
        input=input,
        workdir=_workdir(input),
        submitted_at=started_at or now,
        status=status,
        name=None,
        ncpu=ncpu,
        memory=memory,
        command=tuple(_text(row.get("command")).split()),
        started_at=started_at,
        progress=_float(row.get("progress")),
        sim_time=_float(row.get("current")),
        end_time=_float(row.get("end")),
        eta_s=_float(row.get("ETA")),
        added_mass=_float(row.get("a_mass")),
        pct_mass=_float(row.get("pct_mass")),
        termination=termination,
        message=message,
        stop_requested_by=requester,
        queue_seq=float(job_id),
        extra={
            "legacy_id": legacy_id,
            "legacy_source": str(source),
            "legacy": memo,
            "process_names": list(DEFAULT_PROCESS_NAMES[Family.LSDYNA]),
        },
        **changes,
    )


async def import_history(store: Store, path: Path, config: Config) -> ImportReport:
    """Import every not yet imported row of `path` into `store`, in one transaction."""
    import asyncio

    source = Path(path).resolve()
    report = ImportReport(source)
    rows = await asyncio.to_thread(read_rows, source)
    existing = await store.list(limit=1_000_000_000)
    done = {
        j.extra.get("legacy_id") for j in existing if j.extra.get("legacy_source") == str(source)
    }
    newest = existing[0].id if existing else 0
    keep_ids = not existing and all(_int(r.get("id")) and int(r["id"]) >= 1 for r in rows)
    now = datetime.now(UTC)
    jobs: list[Job] = []
    next_id = newest + 1
    for row in rows:
        legacy_id = _int(row.get("id"))
        if legacy_id is None or legacy_id in done:
            report.skipped += 1
            continue
        if not _text(row.get("input")):
            report.skipped += 1
            report.notes.append(f"legacy job {legacy_id}: no input path; skipped")
            continue
        if keep_ids:
            job_id = legacy_id
        else:
            job_id, next_id = next_id, next_id + 1
        job = await asyncio.to_thread(row_to_job, row, job_id, source, config.solvers, now)
        jobs.append(job)
        report.ids[legacy_id] = job_id
        if job.status is S.RUNNING:
            report.live += 1
            report.proven += job.pid_create_time is not None
    await store.commit_many(jobs)
    report.imported = len(jobs)
    log.info("legacy history: %s", report.summary())
    for note in report.notes:
        log.warning("legacy history: %s", note)
    return report


async def import_at_first_start(store: Store, config: Config) -> ImportReport | None:
    """The daemon's first start: import `[legacy] import_db` when the store has no job yet.
    A missing or unreadable file is logged; the daemon starts anyway."""
    path = config.legacy.import_db
    if path is None:
        return None
    if await store.list(limit=1):
        log.debug("legacy history: the store already holds jobs; %s not imported", path)
        return None
    try:
        return await import_history(store, path, config)
    except LegacyImportError as exc:
        log.error("legacy history not imported: %s", exc)
        return None


def import_command(path: Path, config: Config) -> ImportReport:
    """`dynalauncher import-legacy PATH`, with the daemon stopped: opening the store takes its
    lock, so a running daemon makes this raise StoreUnavailable ("in use by another
    dynalauncher"). Raises LegacyImportError for a file that is not a legacy database."""
    import asyncio

    async def run() -> ImportReport:
        store = await Store.open(config.store.path)
        try:
            return await import_history(store, path, config)
        finally:
            await store.close()

    return asyncio.run(run())


__all__ = ["ImportReport", "LegacyImportError", "import_at_first_start", "import_command",
           "import_history", "read_rows"]
