"""The job database: `Store` keeps `Job` records in one SQLite file, on one dedicated thread.

Protocol: `store = await Store.open(path)`, then any of the async methods from the event
loop, then `await store.close()`. Every SQL statement runs on the Store's own single worker
thread (named "dynalauncher-store…"), never on the event loop; `sql_thread_ids` records
which threads ran SQL so tests can prove it. A failure to open, read or write is raised as
`serv.errors.StoreUnavailable` naming the database path and the cause; the caller of
`commit` must not announce a transition that raised.

Only this package imports sqlalchemy, and ORM rows never leave it: callers see `Job` and
`StoredEvent` records.

Writes are grouped: every write queued while the store thread is busy goes into the next
transaction together (one WAL append for many), in the order they were queued. Their SQL is
compiled once by SQLAlchemy and run through the driver: an ORM session per commit cost
~0.4 ms of Python, ten times what SQLite needs (bench/throughput.py).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, Sequence, TypeVar

from filelock import FileLock, Timeout
from sqlalchemy import bindparam, create_engine, event, insert, select, text, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from serv.core.jobs import Job, JobSpec
from serv.core.states import LIVE, JobStatus
from serv.errors import StoreUnavailable
from serv.store import migrate
from serv.store.models import (
    DAEMON_ID_KEY,
    JobEventRow,
    JobRow,
    MetaRow,
    from_iso,
    job_to_values,
    row_to_job,
    to_iso,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One recorded status transition of a job (`from_status` is None for the creation)."""

    id: int
    job_id: int
    at: datetime
    from_status: JobStatus | None
    to_status: JobStatus
    message: str


def _cause(exc: BaseException) -> str:
    """A short human cause for a failure of SQLite or the file system, for messages."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    name = getattr(orig, "sqlite_errorname", "")
    detail = str(orig).strip() or type(orig).__name__
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "database is locked" in detail:
        return f"it is locked by another process (sqlite busy: {detail})"
    if name == "SQLITE_NOTADB" or "file is not a database" in detail:
        return f"it is not a SQLite database (corrupt, or another kind of file: {detail})"
    if name == "SQLITE_CORRUPT" or "malformed" in detail:
        return f"it is corrupt ({detail})"
    if name.startswith("SQLITE_READONLY") or "readonly" in detail:
        return f"it is not writable ({detail})"
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in detail:
        return f"it cannot be opened ({detail})"
    if name == "SQLITE_FULL":
        return f"the disk is full ({detail})"
    if isinstance(orig, OSError) and orig.strerror:
        return orig.strerror
    return detail


@functools.cache
def _upsert_statement() -> Any:
    """INSERT … ON CONFLICT(id) DO UPDATE of every column."""
    stmt = sqlite_insert(JobRow)
    columns = [c.name for c in JobRow.__table__.columns]
    return stmt.on_conflict_do_update(
        index_elements=[JobRow.id],
        set_={name: stmt.excluded[name] for name in columns if name != "id"},
    )


@dataclass(frozen=True, slots=True)
class _Sql:
    """The write statements as SQLite text with :name parameters, compiled once."""

    upsert: str
    create: str
    event: str


@functools.cache
def _sql() -> _Sql:
    dialect = sqlite_dialect.dialect(paramstyle="named")
    job_columns = [c.name for c in JobRow.__table__.columns if c.name != "id"]
    create = insert(JobRow).values({name: bindparam(name) for name in job_columns})
    event_columns = [c.name for c in JobEventRow.__table__.columns if c.name != "id"]
    add_event = insert(JobEventRow).values({name: bindparam(name) for name in event_columns})
    return _Sql(
        upsert=str(_upsert_statement().compile(dialect=dialect)),
        create=str(create.compile(dialect=dialect)),
        event=str(add_event.compile(dialect=dialect)),
    )


def _event_values(job_id: int, at: datetime, src: JobStatus | None, dst: JobStatus, message: str) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "at": to_iso(at, f"job {job_id} event time"),
        "from_status": None if src is None else src.value,
        "to_status": dst.value,
        "message": message,
    }


@dataclass
class _Write:
    """One queued write: job rows to upsert and events to add, or a new job (`new`).
    Values are computed by the caller, so a caller's bad value fails only that caller."""

    what: str
    rows: builtins.list[dict[str, Any]] = field(default_factory=list)
    events: builtins.list[dict[str, Any]] = field(default_factory=list)
    new: dict[str, Any] | None = None
    result: int | None = None


def _first_non_folder(folder: Path) -> Path | None:
    """The first existing ancestor of `folder` (or itself) that is not a folder, if any."""
    for candidate in (*reversed(folder.parents), folder):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


class Store:
    """Job rows in SQLite through SQLAlchemy, all on one dedicated thread.

    One thread because a sqlite3 connection belongs to the thread that opened it (the
    driver's `check_same_thread` enforces it), writes to one file are serialized anyway,
    and a single FIFO queue keeps commits in the order the transitions happened. Build it
    with `await Store.open(path)`; the methods are coroutines for the event loop thread.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        """Prepare, without touching the disk; use `Store.open`, which also opens it."""
        self._path = Path(path).absolute()
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dynalauncher-store")
        self._engine: Engine | None = None
        self._lock: FileLock | None = None
        self._daemon_id: str | None = None
        self._closed = False
        self._sql_threads: set[int] = set()
        self._sql_threads_guard = threading.Lock()
        self._pending: builtins.list[tuple[_Write, asyncio.Future[_Write]]] = []
        self._pending_guard = threading.Lock()
        self._writer: Any = None  # the store thread's pooled driver connection for writes

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    async def open(cls, path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Store:
        """Open (creating if needed) the job database at `path` and migrate it to head.

        Async: all the work (folder, lock, pragmas, migrations, a test write) runs on the
        store thread. Takes the exclusive lock `<path>.lock` so two daemons never share a
        database. `busy_timeout_s` is how long SQLite waits for another process's write
        lock before failing. Raises StoreUnavailable naming the path and the cause: a parent
        that is a file, a folder that cannot be made, a database in use by another
        dynalauncher, locked by another process, not writable, not SQLite, or with a schema
        newer than this code. Nothing is left open or locked when it raises.
        """
        store = cls(path, busy_timeout_s=busy_timeout_s)
        try:
            await store._call(store._open_sync)
        except Exception:
            await store.close()
            raise
        except asyncio.CancelledError:
            # The open job may still be running on the store thread; queue the cleanup
            # behind it (the executor is FIFO) without waiting, and let the cancel through.
            store._closed = True
            cleanup = store._executor.submit(store._close_sync)
            cleanup.add_done_callback(store._log_cleanup_failure)
            store._executor.shutdown(wait=False)
            raise
        return store

    def _log_cleanup_failure(self, done: Future[None]) -> None:
        """Nobody awaits a cleanup queued by a cancelled open: log its failure here."""
        if not done.cancelled() and (exc := done.exception()) is not None:
            log.error(
                "job database %s: cleanup after a cancelled open failed", self._path, exc_info=exc
            )

    async def close(self) -> None:
        """Dispose of the engine, release the file lock and stop the store thread.

        Idempotent: later calls return at once. Statements queued before the call still
        run first (FIFO); calls made after it raise StoreUnavailable.
        """
        if self._closed:
            return
        self._closed = True
        was_open = self._daemon_id is not None
        loop = asyncio.get_running_loop()
        try:
            # Shielded: even if the caller is cancelled, the lock must still be released.
            await asyncio.shield(loop.run_in_executor(self._executor, self._close_sync))
        finally:
            self._executor.shutdown(wait=False)
        if was_open:
            log.info("job database %s closed", self._path)

    @property
    def path(self) -> Path:
        """The database file (absolute)."""
        return self._path

    @property
    def daemon_id(self) -> str:
        """This database's identity (uuid4 hex), made once when the file was created.

        It tags the processes launched for this store's jobs, so the daemon can find its
        own jobs' processes again after a restart.
        """
        if self._daemon_id is None:
            raise StoreUnavailable(f"database {self._path} is not open")
        return self._daemon_id

    @property
    def sql_thread_ids(self) -> frozenset[int]:
        """Ids of the threads that ran SQL for this store: the store thread and no other."""
        with self._sql_threads_guard:
            return frozenset(self._sql_threads)

    # --------------------------------------------------------------- public API

    async def create(
        self, spec: JobSpec, *, at: datetime, extra: dict[str, Any] | None = None, message: str = ""
    ) -> Job:
        """Insert a queued job for `spec`, submitted `at` (aware UTC), with `extra` and
        `message`; return it with its id.

        Ids come from SQLite AUTOINCREMENT: strictly increasing, never reused. Records a
        None → queued event. Committed before it returns; raises StoreUnavailable if the
        write fails.
        """
        draft = Job.from_spec(0, spec, at=at)
        if extra is not None or message:
            draft = draft.evolve(extra=draft.extra if extra is None else extra, message=message)
        values = job_to_values(draft)
        del values["id"]
        event = _event_values(0, at, None, draft.status, draft.message)
        write = await self._write(_Write("a new job", events=[event], new=values))
        assert write.result is not None
        log.debug("job %d: created in %s", write.result, self._path)
        return draft.evolve(id=write.result, queue_seq=float(write.result))

    async def commit(
        self,
        job: Job,
        *,
        previous: JobStatus | None = None,
        message: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Write every field of `job` (insert or replace by id), in one transaction.

        When `previous` is given and differs from `job.status`, also records a
        `previous → job.status` event with `message` (default: `job.message`) at `at`
        (default: now, UTC). Raises StoreUnavailable when the write fails; the caller must
        then not announce the change. Idempotent for the job row.
        """
        write = _Write(f"job {job.id}", rows=[job_to_values(job)])
        if previous is not None and previous != job.status:
            when = datetime.now(UTC) if at is None else at
            note = job.message if message is None else message
            write.events.append(_event_values(job.id, when, previous, job.status, note))
        await self._write(write)

    async def commit_many(self, jobs: Sequence[Job]) -> None:
        """Write every field of each job in ONE transaction, recording no events.

        For changes that are not transitions (progress, ETA) of many jobs at once: one
        commit per tick instead of one per job. Raises StoreUnavailable when it fails.
        """
        if jobs:
            what = "jobs " + ", ".join(str(j.id) for j in jobs)
            await self._write(_Write(what, rows=[job_to_values(job) for job in jobs]))

    async def get(self, job_id: int) -> Job | None:
        """The job with `job_id`, or None. Raises StoreUnavailable when the read fails."""
        return await self._call(self._get_sync, job_id)

    async def list(self, status: JobStatus | None = None, limit: int = 100) -> builtins.list[Job]:
        """Up to `limit` (≥ 1) jobs, newest (highest id) first, optionally of one status."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return await self._call(self._list_sync, status, limit)

    async def list_ids(self, status: JobStatus | None = None, limit: int = 100) -> builtins.list[int]:
        """The ids `list` would return, without building the jobs (for cached listings)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return await self._call(self._list_ids_sync, status, limit)

    async def statuses(self) -> builtins.list[tuple[int, JobStatus]]:
        """(id, status) of every job, newest first: an in-memory index's starting point."""
        return await self._call(self._statuses_sync)

    async def get_many(self, job_ids: Sequence[int]) -> builtins.list[Job]:
        """The jobs with these ids that exist, in no particular order."""
        if not job_ids:
            return []
        return await self._call(self._get_many_sync, list(job_ids))

    async def live(self) -> builtins.list[Job]:
        """Every job whose status is live (queued … stopping), oldest first: recovery's input."""
        return await self._call(self._live_sync)

    async def events(self, job_id: int) -> builtins.list[StoredEvent]:
        """The recorded transitions of `job_id`, oldest first (empty for an unknown job)."""
        return await self._call(self._events_sync, job_id)

    async def ping(self) -> bool:
        """True when a trivial query works (for getSystemHealth's `db_ok`); never raises."""
        if self._closed:
            return False
        try:
            return await self._call(self._ping_sync)
        except StoreUnavailable:
            log.warning("job database %s failed a health check", self._path, exc_info=True)
            return False

    # ------------------------------------------------------------ thread plumbing

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the store thread and await its result."""
        if self._closed:
            raise StoreUnavailable(f"database {self._path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _write(self, write: _Write) -> _Write:
        """Queue `write` for the next transaction and await it. The first write of a group
        schedules the flush; later ones ride along until the store thread takes them."""
        if self._closed:
            raise StoreUnavailable(f"database {self._path} is closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[_Write] = loop.create_future()
        with self._pending_guard:
            self._pending.append((write, done))
            first = len(self._pending) == 1
        if first:
            self._executor.submit(self._flush_sync, loop)
        return await done

    def _flush_sync(self, loop: asyncio.AbstractEventLoop) -> None:
        """Store thread: every queued write in one transaction, then wake their callers."""
        with self._pending_guard:
            batch, self._pending = self._pending, []
        error: StoreUnavailable | None = None
        try:
            self._run_writes([write for write, _done in batch])
        except (sqlite3.Error, SQLAlchemyError, StoreUnavailable) as exc:
            what = "; ".join(write.what for write, _done in batch)
            cause = exc if isinstance(exc, StoreUnavailable) else _cause(exc)
            error = StoreUnavailable(f"cannot save {what} to database {self._path}: {cause}")
            error.__cause__ = exc

        def settle() -> None:
            for write, done in batch:
                if done.done():
                    continue  # the caller was cancelled; the write itself happened (or not)
                if error is None:
                    done.set_result(write)
                else:
                    done.set_exception(error)

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:
            # The loop is gone (the daemon is exiting): nobody waits for these any more.
            log.warning("job database %s: %d writes finished after the event loop closed", self._path, len(batch))

    def _run_writes(self, writes: builtins.list[_Write]) -> None:
        """Store thread: `writes` in one transaction on the store's own driver connection
        (SQLAlchemy made the connection and compiled the SQL; running it through the
        driver skips per-statement work that cost more than SQLite itself)."""
        if self._writer is None:
            self._writer = self._engine_or_raise().raw_connection()
        self._note_sql_thread()
        conn = self._writer.driver_connection
        assert isinstance(conn, sqlite3.Connection)
        sql = _sql()
        conn.execute("BEGIN")
        try:
            for write in writes:
                if write.new is not None:
                    write.result = conn.execute(sql.create, write.new).lastrowid
                    conn.execute("UPDATE jobs SET queue_seq = id WHERE id = ?", (write.result,))
                    for event_row in write.events:
                        event_row["job_id"] = write.result
                if write.rows:
                    conn.executemany(sql.upsert, write.rows)
                if write.events:
                    conn.executemany(sql.event, write.events)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _engine_or_raise(self) -> Engine:
        if self._engine is None:
            raise StoreUnavailable(f"database {self._path} is not open")
        return self._engine

    def _note_sql_thread(self) -> None:
        with self._sql_threads_guard:
            self._sql_threads.add(threading.get_ident())

    # -------------------------------------------------- store thread: open / close

    def _open_sync(self) -> None:
        self._make_folder()
        self._take_lock()
        try:
            self._engine = self._make_engine()
            with self._engine.connect() as conn:
                with conn.begin():
                    self._check_wal(conn)
                with conn.begin():
                    before, after = migrate.upgrade(conn)
                with conn.begin():
                    self._daemon_id = self._check_writable_and_read_id(conn)
        except migrate.SchemaRefused as exc:
            raise StoreUnavailable(f"cannot use database {self._path}: {exc}") from exc
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open database {self._path}: {_cause(exc)}") from exc
        log.info(
            "job database %s open (schema %s%s, daemon id %s)",
            self._path,
            after,
            "" if before == after else f", migrated from {before or 'empty'}",
            self._daemon_id,
        )

    def _make_folder(self) -> None:
        folder = self._path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocker = _first_non_folder(folder)
            if blocker is not None:
                raise StoreUnavailable(
                    f"cannot create the folder for database {self._path}: "
                    f"{blocker} is a file, not a folder"
                ) from exc
            raise StoreUnavailable(
                f"cannot create the folder {folder} for database {self._path}: {_cause(exc)}"
            ) from exc
        if self._path.is_dir():
            raise StoreUnavailable(f"cannot open database {self._path}: it is a folder, not a file")

    def _take_lock(self) -> None:
        # thread_local=False: the lock is taken and released on the store thread today, but
        # its state must not silently depend on which thread touches it.
        lock = FileLock(self._lock_path, timeout=0, thread_local=False)
        try:
            lock.acquire()
        except Timeout as exc:
            raise StoreUnavailable(
                f"database {self._path} is in use by another dynalauncher (lock {self._lock_path})"
            ) from exc
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot lock database {self._path}: lock file {self._lock_path}: {_cause(exc)}"
            ) from exc
        self._lock = lock

    def _make_engine(self) -> Engine:
        # URL.create, not a string: a path with "?", "#" or "%" stays a path.
        url = URL.create("sqlite+pysqlite", database=str(self._path))
        engine = create_engine(url, connect_args={"timeout": self._busy_timeout_s})
        busy_ms = max(0, int(self._busy_timeout_s * 1000))

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            self._note_sql_thread()
            # Let SQLAlchemy emit BEGIN itself (below): the driver's legacy mode skips BEGIN
            # before DDL, which would make migrations non-atomic (SQLAlchemy SQLite docs,
            # "Transactions with SQLite and the sqlite3 driver").
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                # WAL: readers never block the writer, and a commit is one append.
                cursor.execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode: a commit survives a crash of this process (the WAL is
                # in the OS page cache); only an OS crash or power cut may lose the last
                # commits, never corrupt the file (sqlite.org/pragma.html#pragma_synchronous).
                cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN")

        @event.listens_for(engine, "before_cursor_execute")
        def _on_execute(*_args: Any) -> None:
            self._note_sql_thread()

        return engine

    def _check_wal(self, conn: Connection) -> None:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        if str(mode).lower() != "wal":
            # E.g. a file system without shared memory support: WAL is what makes
            # synchronous=NORMAL safe, so refuse rather than run with weaker guarantees.
            raise StoreUnavailable(
                f"cannot open database {self._path}: SQLite refused WAL mode (journal mode {mode})"
            )

    def _check_writable_and_read_id(self, conn: Connection) -> str:
        """Read `daemon_id` and prove the file is writable with a real (no-op) write."""
        daemon_id = conn.scalar(select(MetaRow.value).where(MetaRow.key == DAEMON_ID_KEY))
        if daemon_id is None:
            raise StoreUnavailable(
                f"cannot use database {self._path}: it has no {DAEMON_ID_KEY} in table meta"
            )
        conn.execute(
            update(MetaRow).where(MetaRow.key == DAEMON_ID_KEY).values(value=MetaRow.value)
        )
        return str(daemon_id)

    def _close_sync(self) -> None:
        """Dispose the engine (SQLite checkpoints the WAL as the last connection closes)
        and release the lock. Safe on a half-opened store."""
        try:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    # ---------------------------------------------- store thread: reads and writes

    def _read(self, what: str, query: Callable[[Session], T]) -> T:
        """Run `query` in a read transaction; failures become StoreUnavailable."""
        try:
            with Session(self._engine_or_raise()) as session, session.begin():
                return query(session)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                f"cannot read {what} from database {self._path}: {_cause(exc)}"
            ) from exc
        except (ValueError, TypeError, KeyError) as exc:
            # A row this code did not write (hand edits, or a bug): name it, do not crash.
            raise StoreUnavailable(
                f"cannot read {what} from database {self._path}: bad stored value: {exc}"
            ) from exc

    def _get_sync(self, job_id: int) -> Job | None:
        def query(session: Session) -> Job | None:
            row = session.get(JobRow, job_id)
            return None if row is None else row_to_job(row)

        return self._read(f"job {job_id}", query)

    def _list_sync(self, status: JobStatus | None, limit: int) -> builtins.list[Job]:
        stmt = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(JobRow.status == status.value)
        return self._read("jobs", lambda s: [row_to_job(row) for row in s.scalars(stmt)])

    def _list_ids_sync(self, status: JobStatus | None, limit: int) -> builtins.list[int]:
        stmt = select(JobRow.id).order_by(JobRow.id.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(JobRow.status == status.value)
        return self._read("job ids", lambda s: list(s.scalars(stmt)))

    def _statuses_sync(self) -> builtins.list[tuple[int, JobStatus]]:
        stmt = select(JobRow.id, JobRow.status).order_by(JobRow.id.desc())
        return self._read("job statuses", lambda s: [(i, JobStatus(v)) for i, v in s.execute(stmt)])

    def _get_many_sync(self, job_ids: builtins.list[int]) -> builtins.list[Job]:
        stmt = select(JobRow).where(JobRow.id.in_(job_ids))
        return self._read("jobs", lambda s: [row_to_job(row) for row in s.scalars(stmt)])

    def _live_sync(self) -> builtins.list[Job]:
        stmt = (
            select(JobRow)
            .where(JobRow.status.in_(sorted(status.value for status in LIVE)))
            .order_by(JobRow.id)
        )
        return self._read("live jobs", lambda s: [row_to_job(row) for row in s.scalars(stmt)])

    def _events_sync(self, job_id: int) -> builtins.list[StoredEvent]:
        stmt = select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id)

        def query(session: Session) -> builtins.list[StoredEvent]:
            return [
                StoredEvent(
                    id=row.id,
                    job_id=row.job_id,
                    at=from_iso(row.at),
                    from_status=None if row.from_status is None else JobStatus(row.from_status),
                    to_status=JobStatus(row.to_status),
                    message=row.message,
                )
                for row in session.scalars(stmt)
            ]

        return self._read(f"events of job {job_id}", query)

    def _ping_sync(self) -> bool:
        return self._read("a health check", lambda s: s.execute(text("SELECT 1")).scalar() == 1)
