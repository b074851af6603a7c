"""What `listJobs` answers: the jobs newest first, from memory where possible.

An ended job never changes, so its wire form is computed once and kept (bounded); live
jobs come from the manager's memory, so they are never stale. JobManager tells the listing
about every record it announces (`saw`).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any, Mapping

from serv.api import job_to_wire
from serv.core.jobs import Job
from serv.core.states import JobStatus
from serv.store import Store

ENDED_WIRE_CACHE = 20_000


class JobListing:
    """listJobs and the wire form of single jobs, with a bounded cache of ended jobs."""

    def __init__(self, store: Store, live: Mapping[int, Job]) -> None:
        self._store = store
        self._live = live
        self._ended_wire: OrderedDict[int, dict[str, Any]] = OrderedDict()

    async def load(self) -> None:
        """Called once at start, before recovery; nothing to preload yet."""

    def saw(self, job: Job) -> None:
        """`job` was committed and is about to be announced."""

    def wire(self, job: Job) -> dict[str, Any]:
        """The contract's wire form; an ended job's never changes, so it is kept (bounded)."""
        cached = self._ended_wire.get(job.id)
        if cached is not None:
            return cached
        wired = job_to_wire(job, datetime.now(UTC))
        if job.status.is_terminal:
            self._ended_wire[job.id] = wired
            if len(self._ended_wire) > ENDED_WIRE_CACHE:
                self._ended_wire.popitem(last=False)
        return wired

    async def list_wire(self, status: JobStatus | None, limit: int) -> list[dict[str, Any]]:
        """listJobs: ids from the store, live jobs from memory, ended ones from the cache;
        only jobs seen for the first time are read and converted."""
        ids = await self._store.list_ids(status=status, limit=limit)
        # Live jobs are fetched too: one that ends during the await below leaves memory
        # without entering the cache, and must still be listed (from its row).
        missing = [i for i in ids if i not in self._ended_wire]
        fetched = {job.id: job for job in await self._store.get_many(missing)}
        result = []
        for job_id in ids:
            live = self._live.get(job_id)
            if live is not None:
                result.append(self.wire(live))
            elif job_id in self._ended_wire:
                result.append(self._ended_wire[job_id])
            elif job_id in fetched:
                result.append(self.wire(fetched[job_id]))
        return result
