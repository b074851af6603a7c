"""The daemon's lifecycle: open the store, recover jobs, start the watchdog, serve.

`Daemon` is an async context manager: entering starts every part in order, leaving tears
them down in reverse (stop accepting first, then the watchdog, then the job manager, then
the store) and runs every step even if one fails. Solver jobs are left running: the next
start re-adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

from serv import __version__
from serv.config import Config
from serv.errors import ConfigError
from serv.core.cores import CoreAllocator
from serv.core.jobs import Job
from serv.job_manager import JobManager
from serv.legacy import LegacyGateway, import_at_first_start
from serv.platform import current
from serv.server import Hub, Server
from serv.store import Store
from serv.topology import read_topology
from serv.watchdog import Watchdog
from serv.websocket_api import Api

log = logging.getLogger(__name__)


class Daemon:
    """One running dynalauncher: `async with Daemon(config) as daemon: ... daemon.url`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stack = contextlib.AsyncExitStack()
        self.store: Store | None = None
        self.manager: JobManager | None = None
        self.watchdog: Watchdog | None = None
        self.server: Server | None = None
        self.hub = Hub()
        self.started = time.monotonic()
        self._reloads: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("Daemon.url: enter the Daemon (async with) first")
        return self.server.url

    async def __aenter__(self) -> Daemon:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self.store = await Store.open(self.config.store.path)
        self._stack.push_async_callback(self._step, "close the store", self.store.close)
        topology = await asyncio.to_thread(read_topology, self.config.cores.topology_root)
        current.raise_open_files_limit()
        cores = self.config.cores
        allocator = CoreAllocator(
            topology, cores.max_usable, placement=cores.placement, use_siblings=cores.use_siblings
        )
        log.info(
            "cores: %d usable of %d logical (%d physical)",
            allocator.usable_count, topology.logical_cores, topology.physical_cores,
        )
        # Issue #6: the desktop GUI's gateway hears every job change and output chunk too, and
        # an API-DynaLauncher history is imported before recovery sees the store.
        legacy = self.legacy = LegacyGateway(self.config) if self.config.legacy.enabled else None
        await import_at_first_start(self.store, self.config)

        def on_job(job: Job) -> None:
            # Every job that prints changes every second: its wire form is built only
            # when a session is subscribed to "jobs".
            if self.hub.listens("jobs"):
                self.hub.job_changed(job)
            if legacy is not None:
                legacy.job_changed(job)

        def on_output(job_id: int, text: str) -> None:
            self.hub.publish("output", "jobOutput", {"id": job_id, "data": text})
            if legacy is not None:
                legacy.output(job_id, text)

        self.manager = JobManager(
            self.config, self.store, allocator,
            on_job=on_job,
            on_cores=self._cores_changed,
            on_output=on_output,
        )
        if legacy is not None:
            legacy.attach(self.manager)
        await self.manager.start()
        self._stack.push_async_callback(self._step, "release the job manager", self.manager.close)
        if self.config.jobs.clean_orphans_at_start:
            # With allowed roots, jobs only ever run below them, so the clean-up stays there too.
            scopes: list[Path | None] = list(self.config.jobs.allowed_roots) or [None]
            killed = [p for scope in scopes for p in await self.manager.kill_orphans(scope)]
            where = ", ".join(str(s) for s in scopes if s is not None) or "anywhere"
            log.info("--clean-orphans-at-start: killed %d orphan process(es) (%s)", len(killed), where)
        self.watchdog = Watchdog(
            loop,
            interval_s=self.config.watchdog.interval_s,
            snapshot=self.manager.live_snapshot,
            is_ending=self.manager.is_ending,
            on_gone=self.manager._on_solver_exit,
            count_orphans=self.manager.count_orphans,
        )
        self.watchdog.start()
        self._stack.push_async_callback(self._step, "stop the watchdog", self._stop_watchdog)
        api = Api(self.manager, self.health)
        self.server = Server(self.config.server, api, self.hub, self.health)
        if legacy is not None:
            self.server.legacy_handler = legacy.handle
        await self.server.start()
        self._stack.push_async_callback(self._step, "stop the server", self.server.close)
        if legacy is not None:
            self._stack.push_async_callback(self._step, "close the legacy GUI connections", legacy.close)
        log.info("dynalauncher %s listening on %s", __version__, self.server.url)

    def spawn_reload(self, reload: Callable[[], Config]) -> None:
        """SIGHUP: read the configuration again and apply what can change while running."""
        task = asyncio.get_running_loop().create_task(self.reload(reload))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self, reload: Callable[[], Config]) -> None:
        assert self.manager is not None
        try:
            config = await asyncio.to_thread(reload)
        except ConfigError as exc:
            log.error("configuration reload refused, keeping the running one: %s", exc)
            return
        except Exception:  # a reload must never take the daemon down
            log.exception("configuration reload failed, keeping the running one")
            return
        await self.manager.reconfigure(config)
        self.config = self.manager.config

    def _cores_changed(self) -> None:
        # The core table is built only for a listener: a start and an end each change it.
        if self.hub.listens("cores"):
            assert self.manager is not None
            self.hub.publish("cores", "coresChanged", {"status": self.manager.core_status()})

    async def _stop_watchdog(self) -> None:
        if self.watchdog is not None:
            await asyncio.to_thread(self.watchdog.stop)

    async def _step(self, what: str, fn: Any) -> None:
        """Run one shutdown step; a failure is logged and the other steps still run."""
        try:
            await fn()
        except Exception:  # each shutdown step: log and go on with the next
            log.exception("shutdown: could not %s", what)

    async def health(self) -> dict[str, Any]:
        """contract.md getSystemHealth."""
        assert self.manager is not None and self.store is not None
        db_ok = self.manager.db_ok and await self.store.ping()
        running, queued = self.manager.counts()
        wd = self.watchdog
        active = wd is not None and wd.active
        age = wd.tick_age_s() if wd is not None else None
        stale = age is not None and age > 3 * self.config.watchdog.interval_s
        return {
            "status": "ok" if db_ok and active and not stale else "degraded",
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "running_jobs": running,
            "queued_jobs": queued,
            "watchdog_active": active,
            "watchdog_last_tick_age_s": None if age is None else round(age, 3),
            "watchdog_interval_s": self.config.watchdog.interval_s,
            "watchdog_ticks": wd.ticks if wd is not None else 0,
            "orphan_processes": wd.orphan_count if wd is not None else 0,
            "db_ok": db_ok,
            "db_path": str(self.config.store.path),
            "host": wd.telemetry if wd is not None else {},
            "licenses": [
                {"pool": p.name, "size": p.size, "server_max": p.server_max,
                 "used_by_others": p.external, "held": p.held, "free": p.free}
                for p in self.manager.licences.snapshot()
            ],
            "licence_server_error": self.manager.licence_server_note,
        }


async def serve_forever(config: Config, reload: Callable[[], Config] | None = None) -> None:
    """Run the daemon until SIGINT/SIGTERM (Ctrl+C / Ctrl+Break on Windows); SIGHUP re-reads
    the configuration through `reload` (a bad file is logged and the old one kept)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        log.info("%s received; shutting down (solver jobs keep running)", name)
        stop.set()

    current.install_shutdown_handlers(loop, on_signal)
    async with Daemon(config) as daemon:
        # What start made (modules, classes, configuration, recovered jobs) mostly lives as
        # long as the process. Frozen, the cyclic collector no longer walks it: a full
        # collection, which stops every thread, took 30-70 ms with it and now walks only
        # what was made since (bench/throughput.py: 1,000 launches in 0.29-0.33 s instead
        # of 0.33-0.38). Cyclic garbage among the frozen objects would never be freed; it
        # is bounded by what start made. Done here, by the owner of the process, not in
        # Daemon, which tests and embedders run inside processes of their own.
        gc.collect()
        gc.freeze()
        if reload is not None:
            current.install_reload_handler(loop, lambda: daemon.spawn_reload(reload))
        await stop.wait()
    log.info("dynalauncher stopped")
