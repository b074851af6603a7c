"""The job database (`serv.store.Store`) against real SQLite files in tmp_path; no mocks.

Raw checks of the files use the stdlib `sqlite3` module, never sqlalchemy (only `serv.store`
imports it). `tests/data/jobs-v0001.db` is a checked-in database at schema revision 0001:
built by running `serv.store.migrate.upgrade(conn, "0001")` on a fresh WAL file, then
inserting the two rows that `V0001_JOBS` below describes with raw SQL, and setting its
`daemon_id` to `V0001_DAEMON_ID`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from serv.core.jobs import Family, Job, JobSpec
from serv.core.states import LIVE, JobStatus, Termination, transition
from serv.errors import StoreUnavailable
from serv.store import Store, StoredEvent

REPO_ROOT = Path(__file__).resolve().parents[2]
V0001_DB = REPO_ROOT / "tests" / "data" / "jobs-v0001.db"
EXAMPLE_DB = REPO_ROOT / "jobs.db.example"
V0001_DAEMON_ID = "0001feedfacecafe0001feedfacecafe"

S = JobStatus
T0 = datetime(2025, 6, 2, 8, 0, 0, 123456, tzinfo=UTC)


def utc(h: int, m: int = 0, s: int = 0, day: int = 1) -> datetime:
    return datetime(2025, 6, day, h, m, s, tzinfo=UTC)


def spec(name: str = "job", **fields: object) -> JobSpec:
    base: dict[str, object] = {
        "solver": "lsdyna-r16",
        "family": Family.LSDYNA,
        "input": f"/data/{name}/{name}.k",
        "workdir": f"/data/{name}",
        "name": name,
    }
    base.update(fields)
    return JobSpec(**base)  # type: ignore[arg-type]


# The rows inserted with raw SQL into tests/data/jobs-v0001.db, as Jobs at head schema.
V0001_JOBS = (
    Job(
        id=1,
        solver="lsdyna-r16",
        family=Family.LSDYNA,
        input="/data/crash/front.k",
        workdir="/data/crash",
        submitted_at=utc(8),
        status=S.FINISHED,
        name="front crash",
        ncpu=4,
        memory="200m",
        args=("-d", "nodump"),
        licenses=(("lsdyna", 4),),
        command=("/opt/lsdyna/lsdyna", "i=front.k", "ncpu=4", "memory=200m"),
        pid=4242,
        pid_create_time=1748764801.25,
        launcher_pid=4240,
        launcher_create_time=1748764800.5,
        started_at=utc(8, 0, 1),
        ended_at=utc(9, 30),
        exit_code=0,
        progress=100.0,
        sim_time=0.12,
        end_time=0.12,
        eta_s=0.0,
        added_mass=0.0015,
        pct_mass=0.3,
        termination=Termination.NORMAL,
        message="normal termination",
        queue_seq=1.0,  # migration 0003 gives old rows their id as queue sequence
    ),
    Job(
        id=2,
        solver="ccx",
        family=Family.CALCULIX,
        input="/data/beam/beam.inp",
        workdir="/data/beam",
        submitted_at=utc(10),
        status=S.RUNNING,
        ncpu=2,
        priority=5,
        nice=10,
        after=(1,),
        command=("/usr/bin/ccx", "-i", "beam"),
        pid=5151,
        pid_create_time=1748772005.5,
        allocated_cores=(0, 1),
        started_at=utc(10, 0, 5),
        progress=37.5,
        eta_s=120.0,
        queue_seq=2.0,
    ),
)


def full_job(job_id: int) -> Job:
    """A job with every field away from its default, to prove each one is stored."""
    return Job(
        id=job_id,
        solver="lsdyna-r16-mpp",
        family=Family.HFSS,
        input="/data/crash/front ünïcode.k",
        workdir="/data/crash",
        submitted_at=T0,
        status=S.STOPPING,
        name="front crash",
        ncpu=8,
        memory="2000m",
        args=("-d", "nodump", "x = 1"),
        priority=-3,
        nice=5,
        restart="d3dump01",
        backend="slurm",
        backend_id="slurm-991",
        licenses=(("lsdyna", 8), ("mpp", 1)),
        after=(1, 2),
        command=("/opt/lsdyna/lsdyna", "i=front.k", "ncpu=8"),
        pid=41012,
        pid_create_time=1748851212.123456,
        launcher_pid=41010,
        launcher_create_time=1748851206.654321,
        allocated_cores=(0, 2, 4, 6),
        started_at=T0 + timedelta(seconds=6, microseconds=1),
        ended_at=T0 + timedelta(hours=2, microseconds=999999),
        exit_code=-9,
        progress=37.25,
        sim_time=0.0451,
        end_time=0.12,
        eta_s=812.5,
        added_mass=1.5e-3,
        pct_mass=0.27,
        termination=Termination.ERROR,
        message="stop requested",
        stop_requested_by="alice",
        queue_seq=2.5,
        extra={"d3plots": 12, "tags": ["a", "b"], "nested": {"k": None, "f": 0.1}},
    )


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection in autocommit mode, for checks from outside the Store."""
    return sqlite3.connect(path, isolation_level=None)


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Make `path` immutable (chattr +i): unwritable even for root, unlike chmod."""
    try:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    except FileNotFoundError:
        pytest.skip("chattr is not installed")
    if done.returncode != 0:
        pytest.skip(f"chattr +i unsupported here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "jobs.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(db_path)
    try:
        yield opened
    finally:
        await opened.close()


class TestRoundTrip:
    """Every Job field comes back exactly as it was committed."""

    async def test_every_job_field_round_trips_exactly(self, store: Store) -> None:
        """A job with every field set reads back equal, `extra` and tz-aware times included."""
        created = await store.create(spec(), at=T0)
        job = full_job(created.id)
        defaults = {
            f.name: f.default
            for f in dataclasses.fields(Job)
            if f.default is not dataclasses.MISSING
        }
        assert all(getattr(job, name) != default for name, default in defaults.items())

        await store.commit(job)
        read = await store.get(job.id)

        assert read == job
        assert read is not None and read.extra == job.extra
        assert read.submitted_at.tzinfo is not None and read.submitted_at.utcoffset() == timedelta(
            0
        )
        assert isinstance(read.args, tuple) and isinstance(read.licenses, tuple)
        assert read.licenses is not None and all(isinstance(p, tuple) for p in read.licenses)
        assert isinstance(read.family, Family) and isinstance(read.termination, Termination)

    async def test_created_job_reads_back_with_nones_and_empty_tuples(self, store: Store) -> None:
        """A fresh job keeps None apart from (): licenses/cores None, args/after/command ()."""
        created = await store.create(spec(licenses=None, after=()), at=T0)
        read = await store.get(created.id)
        assert read == created == Job.from_spec(created.id, spec(), at=T0)
        assert read is not None
        assert read.licenses is None and read.allocated_cores is None
        assert read.args == () and read.after == () and read.command == ()
        assert read.extra == {}

    async def test_empty_tuples_stay_distinct_from_none(self, store: Store) -> None:
        """licenses=() and allocated_cores=() do not come back as None."""
        created = await store.create(spec(licenses=()), at=T0)
        job = dataclasses.replace(created, allocated_cores=())
        await store.commit(job)
        read = await store.get(job.id)
        assert read is not None and read.licenses == () and read.allocated_cores == ()

    async def test_aware_non_utc_datetime_is_stored_as_the_same_instant_in_utc(
        self, store: Store
    ) -> None:
        """A +02:00 submission time reads back as the same instant, in UTC."""
        plus2 = datetime(2025, 6, 2, 10, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
        created = await store.create(spec(), at=plus2)
        read = await store.get(created.id)
        assert read is not None
        assert read.submitted_at == plus2
        assert read.submitted_at.tzinfo == UTC

    async def test_naive_datetime_is_refused_as_a_caller_bug(self, store: Store) -> None:
        """A naive datetime raises ValueError naming the field, and writes nothing."""
        with pytest.raises(ValueError, match="submitted_at"):
            await store.create(spec(), at=datetime(2025, 6, 2, 8, 0))
        assert await store.list() == []

    async def test_get_returns_none_for_an_unknown_id(self, store: Store) -> None:
        """get() of an id never created is None, not an error."""
        assert await store.get(999) is None

    async def test_every_job_field_has_a_column(self, store: Store, db_path: Path) -> None:
        """The jobs table has exactly one column per Job field."""
        with raw(db_path) as conn:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        assert columns == {f.name for f in dataclasses.fields(Job)}


class TestQueries:
    """list() newest first with a status filter and a limit; live() oldest first."""

    async def test_list_is_newest_first_and_filters_by_status(self, store: Store) -> None:
        """list() orders by id descending, filters on status and honours limit."""
        jobs = [await store.create(spec(f"j{i}"), at=T0 + timedelta(minutes=i)) for i in range(5)]
        started = transition(jobs[1], S.STARTING, at=T0)
        await store.commit(started, previous=S.QUEUED)

        assert [j.id for j in await store.list()] == [j.id for j in reversed(jobs)]
        assert [j.id for j in await store.list(limit=2)] == [jobs[4].id, jobs[3].id]
        assert [j.id for j in await store.list(status=S.STARTING)] == [jobs[1].id]
        assert [j.id for j in await store.list(status=S.QUEUED, limit=3)] == [
            jobs[4].id,
            jobs[3].id,
            jobs[2].id,
        ]
        assert await store.list(status=S.FINISHED) == []

    async def test_statuses_lists_every_job_newest_first_with_its_status(self, store: Store) -> None:
        """statuses() is (id, status) of every job, newest first, the current status."""
        jobs = [await store.create(spec(f"j{i}"), at=T0) for i in range(3)]
        await store.commit(transition(jobs[0], S.STARTING, at=T0), previous=S.QUEUED)
        assert await store.statuses() == [
            (jobs[2].id, S.QUEUED), (jobs[1].id, S.QUEUED), (jobs[0].id, S.STARTING),
        ]

    async def test_list_refuses_a_limit_below_one(self, store: Store) -> None:
        """limit=0 is a caller bug, not an empty page."""
        with pytest.raises(ValueError, match="limit"):
            await store.list(limit=0)

    async def test_live_returns_only_live_jobs_oldest_first(self, store: Store) -> None:
        """live() holds every queued…stopping job and no ended one, by id ascending."""
        made: dict[JobStatus, Job] = {}
        for status in JobStatus:
            job = await store.create(spec(status.value), at=T0)
            job = dataclasses.replace(job, status=status)
            await store.commit(job)
            made[status] = job
        live = await store.live()
        assert [j.status for j in live] == [s for s in JobStatus if s in LIVE]
        assert [j.id for j in live] == sorted(made[s].id for s in LIVE)


class TestIdentity:
    """Job ids and the database's daemon_id."""

    async def test_ids_increase_and_are_never_reused_after_a_delete(self, db_path: Path) -> None:
        """Deleting the newest job does not free its id (AUTOINCREMENT)."""
        store = await Store.open(db_path)
        ids = [(await store.create(spec(f"j{i}"), at=T0)).id for i in range(3)]
        await store.close()
        assert ids == sorted(ids) and len(set(ids)) == 3
        with raw(db_path) as conn:
            conn.execute("DELETE FROM job_events WHERE job_id = ?", (ids[-1],))
            conn.execute("DELETE FROM jobs WHERE id = ?", (ids[-1],))

        store = await Store.open(db_path)
        try:
            again = await store.create(spec("again"), at=T0)
        finally:
            await store.close()
        assert again.id > ids[-1]

    async def test_daemon_id_is_made_once_and_kept_across_opens(self, db_path: Path) -> None:
        """daemon_id is a uuid4 hex, the same after a reopen."""
        first = await Store.open(db_path)
        daemon_id = first.daemon_id
        await first.close()
        second = await Store.open(db_path)
        try:
            assert second.daemon_id == daemon_id
        finally:
            await second.close()
        assert len(daemon_id) == 32 and int(daemon_id, 16) >= 0


class TestEvents:
    """One job_events row per status transition."""

    async def test_each_transition_is_recorded_with_its_message_and_time(
        self, store: Store
    ) -> None:
        """create and every committed move add one event; same-status commits add none."""
        job = await store.create(spec(), at=T0)
        moves = [
            (S.STARTING, "cores 0-3 granted"),
            (S.RUNNING, "solver pid 812 found"),
            (S.STOPPING, None),
            (S.STOPPED, "stopped by sw1; restart dump d3dump01 written"),
        ]
        expected = [StoredEvent(0, job.id, T0, None, S.QUEUED, "")]
        for minute, (to, note) in enumerate(moves, start=1):
            at = T0 + timedelta(minutes=minute)
            moved = transition(job, to, at=at, message=note or "stop requested by alice")
            await store.commit(moved, previous=job.status, message=note, at=at)
            await store.commit(dataclasses.replace(moved, progress=float(minute)))
            await store.commit(moved, previous=moved.status, at=at)
            expected.append(StoredEvent(0, job.id, at, job.status, to, moved.message))
            job = moved

        events = await store.events(job.id)
        assert [dataclasses.replace(e, id=0) for e in events] == expected
        assert [e.id for e in events] == sorted({e.id for e in events})
        assert await store.events(job.id + 1) == []

    async def test_event_time_defaults_to_now(self, store: Store) -> None:
        """commit() without `at` stamps the event with the current UTC time."""
        job = await store.create(spec(), at=T0)
        before = datetime.now(UTC)
        await store.commit(transition(job, S.CANCELLED, at=T0), previous=S.QUEUED)
        after = datetime.now(UTC)
        last = (await store.events(job.id))[-1]
        assert before <= last.at <= after and last.to_status is S.CANCELLED


class TestFile:
    """How the file is opened: WAL, one daemon per file, clear failures."""

    async def test_database_is_in_wal_mode(self, store: Store, db_path: Path) -> None:
        """The file's journal mode is WAL."""
        with raw(db_path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    async def test_open_creates_missing_parent_folders(self, tmp_path: Path) -> None:
        """A path under folders that do not exist yet is created."""
        path = tmp_path / "a" / "b" / "jobs.db"
        store = await Store.open(path)
        await store.close()
        assert path.is_file()

    async def test_second_open_fails_naming_the_path_while_the_first_holds_it(
        self, store: Store, db_path: Path
    ) -> None:
        """A second Store on the same file is refused; once the first closes it opens."""
        with pytest.raises(StoreUnavailable) as caught:
            await Store.open(db_path)
        message = str(caught.value)
        assert message == (
            f"database {db_path} is in use by another dynalauncher (lock {db_path}.lock)"
        )
        await store.close()
        again = await Store.open(db_path)
        await again.close()

    async def test_open_fails_clearly_when_a_parent_is_a_regular_file(self, tmp_path: Path) -> None:
        """A parent path that is a file names the database and the file in the way."""
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("x")
        path = blocker / "sub" / "jobs.db"
        with pytest.raises(StoreUnavailable) as caught:
            await Store.open(path)
        assert str(path) in str(caught.value)
        assert f"{blocker} is a file, not a folder" in str(caught.value)

    async def test_open_fails_clearly_when_the_path_is_a_folder(self, tmp_path: Path) -> None:
        """A folder where the file should be is refused by name."""
        path = tmp_path / "jobs.db"
        path.mkdir()
        with pytest.raises(StoreUnavailable, match="it is a folder, not a file") as caught:
            await Store.open(path)
        assert str(path) in str(caught.value)

    async def test_open_fails_clearly_on_a_file_that_is_not_sqlite(self, db_path: Path) -> None:
        """A garbage file is reported as not a SQLite database, and is left untouched."""
        db_path.parent.mkdir(parents=True)
        garbage = b"this is not a database\n" * 200
        db_path.write_bytes(garbage)
        with pytest.raises(StoreUnavailable) as caught:
            await Store.open(db_path)
        assert str(db_path) in str(caught.value)
        assert "not a SQLite database" in str(caught.value)
        assert db_path.read_bytes() == garbage
        # The failed open released its lock: a second try fails for the same reason.
        with pytest.raises(StoreUnavailable, match="not a SQLite database"):
            await Store.open(db_path)

    async def test_open_fails_clearly_when_the_file_is_not_writable(self, db_path: Path) -> None:
        """An immutable database file (chattr +i, which binds root too) is 'not writable'."""
        store = await Store.open(db_path)
        await store.close()
        with immutable(db_path), pytest.raises(StoreUnavailable) as caught:
            await Store.open(db_path)
        assert str(db_path) in str(caught.value)
        assert "not writable" in str(caught.value)

    async def test_open_fails_clearly_when_another_process_holds_the_write_lock(
        self, db_path: Path
    ) -> None:
        """A writer outside dynalauncher (sqlite busy) makes open fail after busy_timeout."""
        store = await Store.open(db_path)
        await store.close()
        holder = raw(db_path)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable) as caught:
                await Store.open(db_path, busy_timeout_s=0.2)
        finally:
            holder.close()
        assert str(db_path) in str(caught.value)
        assert "locked by another process" in str(caught.value)

    async def test_commit_fails_with_store_unavailable_when_the_write_is_blocked(
        self, db_path: Path
    ) -> None:
        """A commit that cannot write raises StoreUnavailable naming the job; later ones work."""
        store = await Store.open(db_path, busy_timeout_s=0.2)
        try:
            job = await store.create(spec(), at=T0)
            started = transition(job, S.STARTING, at=T0)
            holder = raw(db_path)
            try:
                holder.execute("BEGIN IMMEDIATE")
                with pytest.raises(StoreUnavailable, match=f"cannot save job {job.id} to database"):
                    await store.commit(started, previous=S.QUEUED)
            finally:
                holder.close()
            assert await store.get(job.id) == job
            assert len(await store.events(job.id)) == 1
            await store.commit(started, previous=S.QUEUED)
            assert await store.get(job.id) == started
        finally:
            await store.close()


class TestMigrations:
    """Old files are migrated in place; newer or foreign ones are refused."""

    async def test_v0001_file_is_migrated_in_place_with_rows_intact(self, tmp_path: Path) -> None:
        """A 0001 database gains job_events, extra and stop_requested_by; its rows survive."""
        path = tmp_path / "jobs.db"
        shutil.copy(V0001_DB, path)
        with raw(path) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)

        store = await Store.open(path)
        try:
            assert store.daemon_id == V0001_DAEMON_ID
            assert await store.list() == list(reversed(V0001_JOBS))
            assert [j.extra for j in await store.list()] == [{}, {}]
            assert [j.stop_requested_by for j in await store.list()] == [None, None]
            assert await store.live() == [V0001_JOBS[1]]
            assert await store.events(1) == []
            new = await store.create(spec(), at=T0)
            assert new.id == 3
            assert len(await store.events(new.id)) == 1
        finally:
            await store.close()
        with raw(path) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0003",)

    async def test_database_with_a_newer_revision_is_refused(self, db_path: Path) -> None:
        """A revision the code does not know is refused, naming it, and left as it was."""
        store = await Store.open(db_path)
        await store.close()
        with raw(db_path) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '0099'")
        with pytest.raises(StoreUnavailable) as caught:
            await Store.open(db_path)
        message = str(caught.value)
        assert str(db_path) in message and "'0099'" in message and "newer dynalauncher" in message
        with raw(db_path) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0099",)

    async def test_sqlite_file_of_another_application_is_refused(self, db_path: Path) -> None:
        """A SQLite file with tables but no revision (e.g. the old GUI's) is not touched."""
        db_path.parent.mkdir(parents=True)
        with raw(db_path) as conn:
            conn.execute("CREATE TABLE sql_job (id INTEGER PRIMARY KEY, input VARCHAR(300))")
        with pytest.raises(StoreUnavailable, match="not a dynalauncher job database") as caught:
            await Store.open(db_path)
        assert str(db_path) in str(caught.value)
        with raw(db_path) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert tables == {"sql_job"}


class TestExampleDatabase:
    """jobs.db.example, made by scripts/make_example_db.py, opens with the current code."""

    async def test_example_database_opens_and_holds_jobs_in_many_statuses(
        self, tmp_path: Path
    ) -> None:
        """The example has ≥ 5 distinct statuses, including the documented cases."""
        path = tmp_path / "jobs.db"
        shutil.copy(EXAMPLE_DB, path)
        store = await Store.open(path)
        try:
            jobs = await store.list()
            by_status = {job.status: job for job in jobs}
            assert len(by_status) >= 5
            finished = by_status[S.FINISHED]
            assert finished.progress == 100.0 and finished.termination is Termination.NORMAL
            assert "d3dump" in by_status[S.STOPPED].message
            assert by_status[S.FAILED].message
            running = by_status[S.RUNNING]
            assert running.pid is not None and running.allocated_cores
            for job in jobs:
                assert (await store.events(job.id))[0].to_status is S.QUEUED
        finally:
            await store.close()


class TestThreading:
    """All SQL runs on the Store's one thread, never on the event loop."""

    async def test_store_calls_never_run_sql_on_the_event_loop_thread(self, db_path: Path) -> None:
        """Open, reads, writes and close ran all their SQL on one 'dynalauncher-store' thread."""
        loop_thread = threading.get_ident()
        store = await Store.open(db_path)
        job = await store.create(spec(), at=T0)
        await store.commit(transition(job, S.STARTING, at=T0), previous=S.QUEUED)
        await store.get(job.id)
        await store.list()
        await store.live()
        await store.events(job.id)
        assert await store.ping()
        threads = store.sql_thread_ids
        names = {t.ident: t.name for t in threading.enumerate()}
        await store.close()

        assert loop_thread not in threads
        assert len(threads) == 1
        (store_thread,) = threads
        assert names[store_thread].startswith("dynalauncher-store")

    async def test_concurrent_commits_apply_in_call_order(self, store: Store) -> None:
        """Commits issued together land in the order they were made (one FIFO thread)."""
        job = await store.create(spec(), at=T0)
        await asyncio.gather(
            *(store.commit(dataclasses.replace(job, progress=float(i))) for i in range(50))
        )
        read = await store.get(job.id)
        assert read is not None and read.progress == 49.0


class TestLifecycle:
    """close() is idempotent; a closed store refuses work."""

    async def test_close_is_idempotent_and_a_closed_store_refuses_calls(
        self, db_path: Path
    ) -> None:
        """After close, ping is False and calls raise StoreUnavailable naming the path."""
        store = await Store.open(db_path)
        await store.close()
        await store.close()
        assert not await store.ping()
        with pytest.raises(StoreUnavailable, match=f"database {db_path} is closed"):
            await store.get(1)
