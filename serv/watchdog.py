"""The watchdog thread: every `watchdog.interval_s`, re-check each live job's processes.

Exit handles (pidfd) notice a death at once; the watchdog is the safety net for what they
cannot see (a handle that could not be opened, a platform without pidfd) and feeds
`getSystemHealth`. It only reports facts to the loop (call_soon_threadsafe); it never
mutates a job. A paused (SIGSTOPped) process is alive; a zombie is dead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable

from serv import host, proctree
from serv.core.jobs import Job
from serv.logs import job_log

log = logging.getLogger(__name__)


class Watchdog:
    """A daemon thread that ticks every `interval_s` seconds."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        interval_s: float,
        snapshot: Callable[[], list[Job]],
        is_ending: Callable[[int], bool],
        on_gone: Callable[[int], None],
        count_orphans: Callable[[], int] | None = None,
        orphan_every_s: float = 60.0,
    ) -> None:
        self._loop = loop
        self.interval_s = interval_s
        self._snapshot = snapshot
        self._is_ending = is_ending
        self._on_gone = on_gone
        self._count_orphans = count_orphans
        self._orphan_every_s = orphan_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_tick: float | None = None
        self.ticks = 0
        self.orphan_count = 0
        self.telemetry: dict[str, object] = {}
        self._last_orphan_scan = float("-inf")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and wait for the thread; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
            self._thread = None

    @property
    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def tick_age_s(self) -> float | None:
        return None if self.last_tick is None else time.monotonic() - self.last_tick

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # the thread's top level: log, keep watching
                log.exception("watchdog tick failed")
            if self._stop.wait(self.interval_s):
                return

    def tick(self) -> None:
        """One pass over the live jobs; reports each vanished solver to the loop."""
        jobs = self._snapshot()
        for job in jobs:
            if not job.status.has_process or self._is_ending(job.id):
                continue
            ident = job.solver_identity or job.launcher_identity
            if ident is not None and not proctree.is_alive(ident):
                job_log(log, job.id).warning("watchdog: pid %d is gone", ident.pid)
                self._loop.call_soon_threadsafe(self._on_gone, job.id)
        self.telemetry = host.sample(j for j in jobs if j.status.has_process)
        self.last_tick = time.monotonic()
        self.ticks += 1
        now = self.last_tick
        if self._count_orphans is not None and now - self._last_orphan_scan >= self._orphan_every_s:
            self._last_orphan_scan = now
            self.orphan_count = self._count_orphans()
