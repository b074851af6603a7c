"""serv.listing: the in-memory job index and the ended-job cache behind listJobs, driven
with a store stand-in that counts its reads."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from serv import listing as listing_module
from serv.api import job_to_wire
from serv.core.jobs import Family, Job
from serv.core.states import JobStatus
from serv.listing import JobListing

S = JobStatus
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def job(job_id: int, status: JobStatus) -> Job:
    started = T0 + timedelta(seconds=job_id) if status is not S.QUEUED else None
    ended = started + timedelta(seconds=30) if started and status.is_terminal else None
    return Job(
        id=job_id, solver="fake", family=Family.GENERIC, input=f"/runs/{job_id}/a.k",
        workdir=f"/runs/{job_id}", submitted_at=T0, status=status, started_at=started,
        ended_at=ended, exit_code=0 if ended else None, name="ü ☃" if job_id == 2 else None,
    )


class FakeStore:
    """The three reads JobListing makes; `during_get_many` runs inside the read's await."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.rows = {j.id: j for j in jobs}
        self.reads: list[list[int]] = []
        self.during_get_many: Callable[[], Awaitable[None]] | None = None

    async def statuses(self) -> list[tuple[int, JobStatus]]:
        return [(i, self.rows[i].status) for i in sorted(self.rows, reverse=True)]

    async def list_ids(self, status: JobStatus | None = None, limit: int = 100) -> list[int]:
        ids = [i for i in sorted(self.rows, reverse=True) if status in (None, self.rows[i].status)]
        return ids[:limit]

    async def get_many(self, job_ids: Sequence[int]) -> list[Job]:
        self.reads.append(list(job_ids))
        if self.during_get_many is not None:
            await self.during_get_many()
        return [self.rows[i] for i in job_ids if i in self.rows]


async def loaded(jobs: Sequence[Job], live: dict[int, Job]) -> tuple[JobListing, FakeStore]:
    store = FakeStore(jobs)
    listing = JobListing(store, live)  # type: ignore[arg-type]
    await listing.load()
    return listing, store


def ids(listed: Sequence[dict[str, Any]]) -> list[int]:
    return [j["id"] for j in listed]


class TestIndex:
    async def test_lists_newest_first_of_all_and_of_one_status(self) -> None:
        """Descending ids; a status filter and a limit apply to the index."""
        jobs = [job(1, S.FINISHED), job(2, S.FAILED), job(3, S.FINISHED), job(4, S.RUNNING)]
        listing, _ = await loaded(jobs, {4: jobs[3]})
        assert ids(await listing.list_wire(None, 100)) == [4, 3, 2, 1]
        assert ids(await listing.list_wire(None, 2)) == [4, 3]
        assert ids(await listing.list_wire(S.FINISHED, 100)) == [3, 1]
        assert ids(await listing.list_wire(S.QUEUED, 100)) == []

    async def test_a_job_moves_between_statuses_as_it_is_seen(self) -> None:
        """saw() of each committed record moves the job in the index; a new job is added."""
        live: dict[int, Job] = {}
        listing, _ = await loaded([job(1, S.FINISHED)], live)
        for status in (S.QUEUED, S.STARTING, S.RUNNING):
            live[5] = job(5, status)
            listing.saw(live[5])
            assert ids(await listing.list_wire(status, 10)) == [5]
            assert ids(await listing.list_wire(None, 10)) == [5, 1]
        del live[5]
        listing.saw(job(5, S.STOPPED))
        assert ids(await listing.list_wire(S.RUNNING, 10)) == []
        assert ids(await listing.list_wire(S.STOPPED, 10)) == [5]
        assert ids(await listing.list_wire(None, 10)) == [5, 1]

    async def test_ids_seen_out_of_order_are_kept_in_order(self) -> None:
        """Two launches may commit in either order; newest first is still by id."""
        listing, _ = await loaded([], {})
        for job_id in (7, 6, 8):
            listing.saw(job(job_id, S.FINISHED))
        assert ids(await listing.list_wire(None, 10)) == [8, 7, 6]

    async def test_once_cached_a_listing_reads_nothing_from_the_store(self) -> None:
        """The first listing reads the uncached ended rows once; the next reads none."""
        jobs = [job(i, S.FINISHED) for i in range(1, 6)]
        listing, store = await loaded(jobs, {})
        assert listing.list_text_now(None, 100) is None
        await listing.list_wire(None, 100)
        assert store.reads == [[5, 4, 3, 2, 1]]
        assert listing.list_text_now(None, 100) is not None
        await listing.list_wire(None, 100)
        assert store.reads == [[5, 4, 3, 2, 1]]

    async def test_ended_jobs_beyond_the_cache_come_from_the_store(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With a cache of 3, a listing of 5 still lists every job."""
        monkeypatch.setattr(listing_module, "ENDED_CACHE", 3)
        jobs = [job(i, S.FINISHED) for i in range(1, 6)]
        listing, store = await loaded(jobs, {})
        assert ids(await listing.list_wire(None, 100)) == [5, 4, 3, 2, 1]
        assert ids(await listing.list_wire(None, 100)) == [5, 4, 3, 2, 1]
        assert len(store.reads) == 2

    async def test_before_load_the_store_gives_the_ids(self) -> None:
        """A manager that was never started still answers (from the store)."""
        store = FakeStore([job(1, S.FINISHED), job(2, S.FINISHED)])
        listing = JobListing(store, {})  # type: ignore[arg-type]
        assert ids(await listing.list_wire(None, 10)) == [2, 1]


class TestText:
    async def test_text_is_json_dumps_of_the_wire_dicts(self) -> None:
        """The joined text is byte for byte json.dumps of what the normal path returns."""
        jobs = [job(1, S.FINISHED), job(2, S.CANCELLED), job(3, S.FAILED)]
        listing, _ = await loaded(jobs, {})
        wired = await listing.list_wire(None, 100)
        assert await listing.list_text(None, 100) == json.dumps(wired)
        assert listing.list_text_now(None, 100) == json.dumps(wired)
        assert wired[1] == job_to_wire(jobs[1], datetime.now(UTC))

    async def test_live_jobs_are_encoded_from_memory_at_each_call(self) -> None:
        """A live job's record is the manager's current one, never a cached text."""
        live = {2: job(2, S.RUNNING)}
        listing, _ = await loaded([job(1, S.FINISHED), live[2]], live)
        await listing.list_wire(None, 10)
        live[2] = dataclasses.replace(live[2], progress=42.0)
        listing.saw(live[2])
        text = listing.list_text_now(None, 10)
        assert text is not None
        assert [j["progress"] for j in json.loads(text)] == [42.0, None]

    async def test_wire_returns_a_fresh_dict(self) -> None:
        """Callers may change what wire() returns without changing the cache."""
        listing, _ = await loaded([job(1, S.FINISHED)], {})
        first = listing.wire(job(1, S.FINISHED))
        first["name"] = "changed"
        assert listing.wire(job(1, S.FINISHED))["name"] is None


class TestRace:
    async def test_a_job_ending_while_the_store_is_read_is_listed_ended(self) -> None:
        """A live job that ends during the store read is listed from the record it ended
        with, and a job created meanwhile is listed too (the index is read again)."""
        live = {3: job(3, S.RUNNING)}
        listing, store = await loaded([job(1, S.FINISHED), job(2, S.FINISHED), live[3]], live)

        async def meanwhile() -> None:
            store.during_get_many = None
            del live[3]
            store.rows[3] = job(3, S.STOPPED)
            listing.saw(store.rows[3])
            live[4] = store.rows[4] = job(4, S.QUEUED)
            listing.saw(live[4])

        store.during_get_many = meanwhile
        listed = await listing.list_wire(None, 100)
        assert [(j["id"], j["status"]) for j in listed] == [
            (4, "queued"), (3, "stopped"), (2, "finished"), (1, "finished")
        ]
