"""ORM models of the job database, and the one mapping between a `Job` and its row.

The models describe the schema at the newest migration (`migrations/versions/`); the
migrations, not `create_all`, build it, so a database on disk always has a known revision.
ORM rows never leave `serv.store`: `job_to_values` and `row_to_job` are the only places a
`Job` becomes a row or a row becomes a `Job`, and `Store` uses nothing else.

Storage rules, chosen so a row can be read with the plain `sqlite3` shell too:
- datetimes are ISO 8601 text in UTC with microseconds (`2025-01-02T03:04:05.000006+00:00`);
  fixed width, so text order is time order. Naive datetimes are refused when written.
- enums are stored as their string (wire) values, not as SQL enums, so adding a status does
  not need a table rebuild on SQLite.
- tuples and `extra` are compact JSON text; `None` stays SQL NULL, distinct from `[]`.

Imports sqlalchemy: only `serv.store` may.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from serv.core.jobs import Family, Job
from serv.core.states import JobStatus, Termination

log = logging.getLogger(__name__)

DAEMON_ID_KEY = "daemon_id"


class Base(DeclarativeBase):
    """Declarative base of the job database; `Base.metadata` is the head schema."""


class JobRow(Base):
    """One row per job: one column per `Job` field, same names."""

    __tablename__ = "jobs"
    # AUTOINCREMENT: ids are strictly increasing and never reused, even after the newest
    # job is deleted, so a client or a log line can never mix up two jobs.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    solver: Mapped[str] = mapped_column(Text)
    family: Mapped[str] = mapped_column(String(16))
    input: Mapped[str] = mapped_column(Text)
    workdir: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str | None] = mapped_column(Text)
    ncpu: Mapped[int] = mapped_column(Integer)
    memory: Mapped[str | None] = mapped_column(Text)
    args: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer)
    nice: Mapped[int] = mapped_column(Integer)
    restart: Mapped[str | None] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(Text)
    backend_id: Mapped[str | None] = mapped_column(Text)
    licenses: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str] = mapped_column(Text)
    command: Mapped[str] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    pid_create_time: Mapped[float | None] = mapped_column(Float)
    launcher_pid: Mapped[int | None] = mapped_column(Integer)
    launcher_create_time: Mapped[float | None] = mapped_column(Float)
    allocated_cores: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[str | None] = mapped_column(String(32))
    ended_at: Mapped[str | None] = mapped_column(String(32))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    progress: Mapped[float | None] = mapped_column(Float)
    sim_time: Mapped[float | None] = mapped_column(Float)
    end_time: Mapped[float | None] = mapped_column(Float)
    eta_s: Mapped[float | None] = mapped_column(Float)
    added_mass: Mapped[float | None] = mapped_column(Float)
    pct_mass: Mapped[float | None] = mapped_column(Float)
    termination: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    # Added by revision 0002; the server default fills rows written before it.
    stop_requested_by: Mapped[str | None] = mapped_column(Text)
    queue_seq: Mapped[float | None] = mapped_column(Float)
    extra: Mapped[str] = mapped_column(Text, server_default="{}")


class JobEventRow(Base):
    """One row per status transition of a job (revision 0002)."""

    __tablename__ = "job_events"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class MetaRow(Base):
    """Key/value facts about the database itself, e.g. `daemon_id`."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def _check_columns_cover_job() -> None:
    """Fail at import when `Job` and the `jobs` table drift apart.

    A field without a column would be silently lost on every commit, and the daemon would
    forget it after a restart; an import error names the culprit instead.
    """
    fields = {f.name for f in dataclasses.fields(Job)}
    columns = set(JobRow.__table__.columns.keys())
    if fields != columns:
        raise TypeError(
            "serv.store.models.JobRow is out of step with serv.core.jobs.Job: "
            f"fields without a column {sorted(fields - columns)}, "
            f"columns without a field {sorted(columns - fields)}"
        )


_check_columns_cover_job()


def to_iso(value: datetime, what: str) -> str:
    """`value` as fixed-width ISO 8601 UTC text; raises ValueError for a naive datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware UTC datetime, got naive {value!r}")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    """The aware UTC datetime written by `to_iso` (text without an offset is taken as UTC)."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _opt_iso(value: datetime | None, what: str) -> str | None:
    return None if value is None else to_iso(value, what)


def _opt_from_iso(text: str | None) -> datetime | None:
    return None if text is None else from_iso(text)


# Compact and key-sorted, so equal values give equal bytes (deterministic files). One
# encoder for all: json.dumps builds a new one per call whenever options are given.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _json(value: object) -> str:
    if isinstance(value, tuple):
        return _json_of_tuple(value)
    return _ENCODER.encode(value)


@functools.lru_cache(maxsize=4096)
def _json_of_tuple(value: tuple[Any, ...]) -> str:
    """A job's args, command, cores and dependencies are tuples that stay the same over its
    three or more commits: each is encoded once."""
    return _ENCODER.encode(value)


def _opt_json(value: object | None) -> str | None:
    return None if value is None else _json(value)


def job_to_values(job: Job) -> dict[str, Any]:
    """Column values for `job`, keyed by column name (every column, `id` included).

    Raises ValueError for a naive datetime and TypeError when `extra` is not JSON: both are
    caller bugs, not database failures.
    """
    return {
        "id": job.id,
        "solver": job.solver,
        "family": job.family.value,
        "input": job.input,
        "workdir": job.workdir,
        "submitted_at": to_iso(job.submitted_at, f"job {job.id} submitted_at"),
        "status": job.status.value,
        "name": job.name,
        "ncpu": job.ncpu,
        "memory": job.memory,
        "args": _json(job.args),
        "priority": job.priority,
        "nice": job.nice,
        "restart": job.restart,
        "backend": job.backend,
        "backend_id": job.backend_id,
        "licenses": _opt_json(job.licenses),  # ((pool, count), ...) → [[pool, count], ...]
        "after": _json(job.after),
        "command": _json(job.command),
        "pid": job.pid,
        "pid_create_time": job.pid_create_time,
        "launcher_pid": job.launcher_pid,
        "launcher_create_time": job.launcher_create_time,
        "allocated_cores": _opt_json(job.allocated_cores),
        "started_at": _opt_iso(job.started_at, f"job {job.id} started_at"),
        "ended_at": _opt_iso(job.ended_at, f"job {job.id} ended_at"),
        "exit_code": job.exit_code,
        "progress": job.progress,
        "sim_time": job.sim_time,
        "end_time": job.end_time,
        "eta_s": job.eta_s,
        "added_mass": job.added_mass,
        "pct_mass": job.pct_mass,
        "termination": None if job.termination is None else job.termination.value,
        "message": job.message,
        "stop_requested_by": job.stop_requested_by,
        "queue_seq": job.queue_seq,
        "extra": _json(job.extra),
    }


def row_to_job(row: JobRow) -> Job:
    """The `Job` stored in `row`.

    Raises ValueError or TypeError (an unknown enum value, bad JSON, a bad timestamp) when
    the row was not written by `job_to_values`; the Store reports that as StoreUnavailable.
    """
    licenses_raw = None if row.licenses is None else json.loads(row.licenses)
    cores_raw = None if row.allocated_cores is None else json.loads(row.allocated_cores)
    extra = json.loads(row.extra)
    if not isinstance(extra, dict):
        raise TypeError(f"job {row.id}: column extra holds {type(extra).__name__}, not an object")
    return Job(
        id=row.id,
        solver=row.solver,
        family=Family(row.family),
        input=row.input,
        workdir=row.workdir,
        submitted_at=from_iso(row.submitted_at),
        status=JobStatus(row.status),
        name=row.name,
        ncpu=row.ncpu,
        memory=row.memory,
        args=tuple(str(arg) for arg in json.loads(row.args)),
        priority=row.priority,
        nice=row.nice,
        restart=row.restart,
        backend=row.backend,
        backend_id=row.backend_id,
        licenses=(
            None
            if licenses_raw is None
            else tuple((str(pool), int(count)) for pool, count in licenses_raw)
        ),
        after=tuple(int(job_id) for job_id in json.loads(row.after)),
        command=tuple(str(part) for part in json.loads(row.command)),
        pid=row.pid,
        pid_create_time=row.pid_create_time,
        launcher_pid=row.launcher_pid,
        launcher_create_time=row.launcher_create_time,
        allocated_cores=None if cores_raw is None else tuple(int(core) for core in cores_raw),
        started_at=_opt_from_iso(row.started_at),
        ended_at=_opt_from_iso(row.ended_at),
        exit_code=row.exit_code,
        progress=row.progress,
        sim_time=row.sim_time,
        end_time=row.end_time,
        eta_s=row.eta_s,
        added_mass=row.added_mass,
        pct_mass=row.pct_mass,
        termination=None if row.termination is None else Termination(row.termination),
        message=row.message,
        stop_requested_by=row.stop_requested_by,
        queue_seq=row.queue_seq,
        extra=extra,
    )
