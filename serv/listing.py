"""What `listJobs` answers: the jobs newest first, from memory where possible.

JobManager is the only writer of the store (one daemon per database) and tells the listing
about every record it commits (`saw`), so an in-memory index of every job's id and status,
loaded once at start (`load`), stays exact: a listing needs no store round trip and no
thread hop. Ids grow, so newest first is descending id.

An ended job never changes, so its record and its encoded JSON text are kept (bounded);
the `listJobs` fast path joins those texts into the response without re-encoding. Live
jobs come from the manager's memory, so they are never stale (their `elapsed_s` moves, so
their text is made per call). Ended jobs beyond the cache are read from the store.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from serv.api import job_to_wire
from serv.core.jobs import Job
from serv.core.states import JobStatus
from serv.store import Store

log = logging.getLogger(__name__)

#: Ended jobs whose record and text are kept: ~2.2 kB each (Job ~1.4 kB, text ~0.8 kB, as
#: measured on the bench's jobs), so ~22 MB at most; listJobs' largest `limit` fits in it.
ENDED_CACHE = 10_000


class Ended(NamedTuple):
    """An ended job and its wire form encoded with `json.dumps` defaults."""

    job: Job
    text: str


class JobListing:
    """listJobs and the wire form of single jobs: an id/status index of every job and a
    bounded cache of ended jobs' records and texts."""

    def __init__(self, store: Store, live: Mapping[int, Job]) -> None:
        self._store = store
        self._live = live
        self._ended: OrderedDict[int, Ended] = OrderedDict()
        # The index: every job's status, and ids ascending, all and per status.
        self._status: dict[int, JobStatus] = {}
        self._ids: list[int] = []
        self._by_status: dict[JobStatus, list[int]] = {s: [] for s in JobStatus}
        self._loaded = False

    async def load(self) -> None:
        """Read every job's id and status (once, at start, before recovery)."""
        rows = await self._store.statuses()
        self._status = dict(rows)
        self._ids = sorted(self._status)
        by_status: dict[JobStatus, list[int]] = {s: [] for s in JobStatus}
        for job_id in self._ids:
            by_status[self._status[job_id]].append(job_id)
        self._by_status = by_status
        self._loaded = True
        log.debug("job index loaded: %d jobs", len(self._ids))

    def saw(self, job: Job) -> None:
        """`job` was committed and is about to be announced: index it, and keep its text
        when it has ended."""
        old = self._status.get(job.id)
        if old is not job.status:
            if old is None:
                bisect.insort(self._ids, job.id)
            else:
                _discard(self._by_status[old], job.id)
            bisect.insort(self._by_status[job.status], job.id)
            self._status[job.id] = job.status
        if job.status.is_terminal:
            self._keep(job)
        else:
            self._ended.pop(job.id, None)

    # ----------------------------------------------------------------- single jobs

    def wire(self, job: Job) -> dict[str, Any]:
        """The contract's wire form of `job` (a fresh dict: callers may change it)."""
        if job.status.is_terminal:
            self._keep(job)
        return job_to_wire(job, datetime.now(UTC))

    def _keep(self, job: Job) -> Ended:
        """The cache entry of an ended job, made on first sight; the newest are kept."""
        entry = self._ended.get(job.id)
        if entry is None or (entry.job is not job and entry.job != job):
            entry = Ended(job, json.dumps(job_to_wire(job, datetime.now(UTC))))
            self._ended[job.id] = entry
            if len(self._ended) > ENDED_CACHE:
                self._ended.popitem(last=False)
        return entry

    # ----------------------------------------------------------------- lists

    def newest_ids(self, status: JobStatus | None, limit: int) -> list[int]:
        """Up to `limit` job ids, newest first, of one status or all (from the index)."""
        ids = self._ids if status is None else self._by_status[status]
        return ids[: -limit - 1 : -1]

    async def list_jobs(self, status: JobStatus | None, limit: int) -> list[Job]:
        """The jobs of a listing, newest first: live ones from memory, ended ones from the
        cache, the rest from the store."""
        return [job for job, _ in await self._entries(status, limit)]

    async def list_wire(self, status: JobStatus | None, limit: int) -> list[dict[str, Any]]:
        """listJobs' result as wire dicts (the normal dispatch path)."""
        now = datetime.now(UTC)
        return [
            json.loads(text) if text is not None else job_to_wire(job, now)
            for job, text in await self._entries(status, limit)
        ]

    def list_text_now(self, status: JobStatus | None, limit: int) -> str | None:
        """listJobs' result as JSON text (`json.dumps` defaults), when everything it needs
        is in memory; else None (then `list_text` reads the store)."""
        entries = self._entries_now(status, limit)
        return None if entries is None else _join(entries)

    async def list_text(self, status: JobStatus | None, limit: int) -> str:
        """listJobs' result as JSON text (`json.dumps` defaults)."""
        return _join(await self._entries(status, limit))

    def _entries_now(
        self, status: JobStatus | None, limit: int
    ) -> list[tuple[Job, str | None]] | None:
        if not self._loaded:
            return None
        entries: list[tuple[Job, str | None]] = []
        for job_id in self.newest_ids(status, limit):
            live = self._live.get(job_id)
            if live is not None:
                entries.append((live, None))
                continue
            ended = self._ended.get(job_id)
            if ended is None:
                return None
            entries.append(ended)
        return entries

    async def _entries(self, status: JobStatus | None, limit: int) -> list[tuple[Job, str | None]]:
        """(job, cached text or None for a live job) of a listing, newest first."""
        entries = self._entries_now(status, limit)
        if entries is not None:
            return entries
        known: dict[int, tuple[Job, str | None]] = {}  # cache entries met and rows read
        tried: set[int] = set()
        while True:
            # The index may change while the store is read, so it is read again after each
            # await (TestListingRace): a job created meanwhile is listed, one that ended
            # meanwhile was cached by `saw`. Entries are held in `known` so that the cache
            # evicting them meanwhile cannot cause a second read.
            ids = await self._ids_for(status, limit)
            for job_id in ids:
                if job_id not in known and job_id not in self._live:
                    ended = self._ended.get(job_id)
                    if ended is not None:
                        known[job_id] = ended
            missing = [i for i in ids if i not in self._live and i not in known and i not in tried]
            if not missing:
                break
            tried.update(missing)
            for job in await self._store.get_many(missing):
                known[job.id] = self._keep(job) if job.status.is_terminal else (job, None)
        result: list[tuple[Job, str | None]] = []
        for job_id in ids:
            live = self._live.get(job_id)
            entry = (live, None) if live is not None else self._ended.get(job_id) or known.get(job_id)
            if entry is not None:  # None: a row that is not in the store (never expected)
                result.append(entry)
        return result

    async def _ids_for(self, status: JobStatus | None, limit: int) -> list[int]:
        if self._loaded:
            return self.newest_ids(status, limit)
        # Before `load` (a manager that was never started): ask the store.
        return await self._store.list_ids(status=status, limit=limit)


def _join(entries: Iterable[tuple[Job, str | None]]) -> str:
    """The JSON array of the entries, byte for byte what `json.dumps` of their wire dicts
    gives (", " between items), live jobs encoded now."""
    now = datetime.now(UTC)
    return "[" + ", ".join(
        text if text is not None else json.dumps(job_to_wire(job, now)) for job, text in entries
    ) + "]"


def _discard(ids: list[int], job_id: int) -> None:
    """Remove `job_id` from the sorted list `ids` if it is there."""
    at = bisect.bisect_left(ids, job_id)
    if at < len(ids) and ids[at] == job_id:
        del ids[at]
