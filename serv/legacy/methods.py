"""The 20 JSON-RPC methods the DynaLauncher GUI calls (protocol §3), over the JobManager.

Names and parameter keys are the legacy ones, case included. Numbers may arrive as numeric
strings (`ncpu`, `id`, `position`, `new`, `initial`); `job_data` needs no `sender`.

Queue mapping — the legacy in-memory queue IS the daemon's persistent queue:

    getQueue             the daemon's queued jobs in start order; `position` = index, `id` = job id
    addToQueue           `launch`; it waits in the daemon's queue, behind the jobs queued
                         before it, until cores (and licences) allow it to start
    removeFromQueue      `stop` of the job at that position (it becomes `cancelled`)
    switchPositionQueue  the two jobs swap places: two `moveJob`s, one `setQueue`
    setNcpuQueue         the JobManager cannot change a queued job's ncpu, so the job is
                         cancelled and launched again with the new ncpu, then moved back to
                         its place (a new job id; the old one stays as `cancelled`)

Refusals use the legacy codes (10, 20) and say why. `startJob` validates everything
before it cleans the folder (the legacy server cleaned first).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from serv import lstc
from serv.core.jobs import Family
from serv.core.states import JobStatus
from serv.errors import DynalauncherError, InvalidState, JobNotFound
from serv.legacy import files
from serv.legacy.expr import JobData, parse_job_data, plan_launch, to_int, with_ncpu
from serv.legacy.jsontext import JsonText, json_list
from serv.legacy.records import EndedRecords
from serv.legacy.rpc import LegacyError
from serv.profiles import resolve_profile
from serv.solvers import family_of

if TYPE_CHECKING:
    from serv.job_manager import JobManager
    from serv.legacy.gateway import LegacyGateway

log = logging.getLogger(__name__)

S = JobStatus
JOB_LIST_LIMIT = 500
LICENCE_CACHE_S = 2.0
#: The payloads of the GUI's sw1 button and switch menu (protocol §5.9).
GUI_SWITCHES = (
    "sw1", "sw2", "sw3", "sw4", "swa", "swb", "swc", "swd", "conv", "iter", "lprint",
    "nlprint", "prof", "stop", "file",
)


def _text_param(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise LegacyError(-32602, "Invalid params", f"param {name!r}: expected a text")
    return value


def _bool_param(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1, "true", "false", "True", "False"):
        return value in (1, "true", "True")
    raise LegacyError(-32602, "Invalid params", f"param {name!r}: expected true or false")


class LegacyMethods:
    """The legacy methods, bound to one gateway."""

    def __init__(self, gateway: LegacyGateway) -> None:
        self.gw = gateway
        self._licences: tuple[float, Any] | None = None
        self._licence_task: asyncio.Task[Any] | None = None
        self._ended = EndedRecords(2 * JOB_LIST_LIMIT)

    @property
    def jm(self) -> JobManager:
        return self.gw.jm

    def table(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        names = [
            "fileExists", "getFullJobList", "getLicCount", "getFreeSpace", "getQrunJobs",
            "qKillJob", "isjobRunning", "startJob", "cleanFolder", "getQueue", "isInQueue",
            "addToQueue", "removeFromQueue", "switchPositionQueue", "setNcpuQueue",
            "isFolderEmpty", "sendD3kill", "KillProcessByJobId", "getRunningShells",
            "removeShell", "getCoreAllocationStatus",
        ]
        return {name: getattr(self, name) for name in names}

    # ----------------------------------------------------------------- helpers

    def _allowed_solver(self, path: str) -> bool:
        """A configured profile's executable, or a file under `[legacy] solver_dirs`. Thread."""
        real = os.path.normcase(os.path.realpath(path))
        for profile in list(self.jm.config.solvers.values()):
            exe = resolve_profile(profile).executable
            if exe is not None and os.path.normcase(os.path.realpath(exe)) == real:
                return True
        return any(files._within(real, os.path.normcase(os.path.realpath(d)))
                   for d in self.jm.config.legacy.solver_dirs)

    def _within_roots(self, path: str) -> bool:
        roots = self.jm.config.jobs.allowed_roots
        if not roots:
            return True
        real = os.path.realpath(path)
        return any(files._within(real, os.path.realpath(r)) for r in roots)

    def _live_in(self, workdir: str) -> Any:
        return next((j for j in self.jm.jobs.values() if j.workdir == workdir), None)

    def _shown_input(self, job: Any) -> str:
        memo = self.gw.memo_for(job) or {}
        return str(memo.get("input") or job.input)

    async def _plan(self, data: JobData) -> Any:
        profiles = dict(self.jm.config.solvers)

        def executables() -> dict[str, Path | None]:
            return {name: resolve_profile(p).executable for name, p in profiles.items()}

        found = await asyncio.to_thread(executables)
        request = plan_launch(data, profiles, found, self.jm.config.legacy.solver_dirs)
        self._precheck(request.input, request.ncpu, request.profile, request.derived)
        return request

    def _precheck(self, input: str, ncpu: int, profile_name: str, derived: Any) -> None:
        """What JobManager.launch would refuse, checked before any file is touched."""
        path = Path(input)
        if not path.is_absolute() or not path.is_file():
            raise LegacyError(10, f"Input file {input} does not exist on the server.")
        if not self._within_roots(input):
            raise LegacyError(10, f"Input file {input} is outside [jobs] allowed_roots.")
        usable = self.jm.allocator.usable_count
        if ncpu > usable:
            raise LegacyError(10, f"ncpu {ncpu} exceeds the {usable} usable cores of this machine.")
        profile = derived or self.jm.config.solvers.get(profile_name)
        pools = getattr(self.jm, "licences", None)
        if profile is not None and pools is not None:
            demand = {p: n for p, n in profile.licenses_for(ncpu) if n}
            pools.check_fits(demand, "ncpu")
        busy = self._live_in(str(path.parent))
        if busy is not None:
            raise LegacyError(10, f"Job {busy.id} ({busy.status}) already uses the folder {path.parent}.")

    # ----------------------------------------------------------------- checks (§3.1, 3.7, 3.11, 3.16)

    async def fileExists(self, input: Any) -> bool:
        """Legacy fileExists; with `[jobs] allowed_roots`, paths outside them exist only when
        they are an allowed solver (no probing of the rest of the file system)."""
        path = _text_param("input", input)

        def check() -> bool:
            if not self._within_roots(path) and not self._allowed_solver(path):
                return False
            return files.file_exists(path)

        return await asyncio.to_thread(check)

    async def isjobRunning(self, input: Any) -> bool:
        wanted = _text_param("input", input).casefold()
        return any(
            job.status.has_process
            and (self._shown_input(job).casefold() == wanted or job.input.casefold() == wanted)
            for job in list(self.jm.jobs.values())
        )

    async def isInQueue(self, input: Any) -> bool:
        wanted = _text_param("input", input)
        return any(self._shown_input(job) == wanted for job in self.jm.queue())

    async def isFolderEmpty(self, input_file: Any) -> bool:
        path = _text_param("input_file", input_file)
        return await asyncio.to_thread(files.folder_has_no_d3plot, path)

    # ----------------------------------------------------------------- lists (§3.2, 3.10, 3.19)

    async def getFullJobList(self) -> JsonText:
        # The listing's index and ended-job cache spare the store read, and ended jobs'
        # records are kept encoded: the list is mostly ended jobs and was rebuilt on every
        # call, then encoded twice (the JSON-RPC text, then that text in the Socket.IO frame).
        jobs = await self.jm.listing.list_jobs(None, JOB_LIST_LIMIT)
        now = datetime.now(UTC)
        return json_list([
            self._ended.encoded(job, self.gw.memo_for(job), self.gw.profile_for(job), now)
            for job in jobs
            if job.status is not S.QUEUED and (job.started_at is not None or "legacy_id" in job.extra)
        ])

    async def getQueue(self) -> list[dict[str, Any]]:
        return self.gw.queue_records()

    async def getRunningShells(self) -> dict[str, dict[str, Any]]:
        shells: dict[str, dict[str, Any]] = {}
        for job_id, shell in list(self.gw.shells.items()):
            job = self.jm.jobs.get(job_id, shell.job)
            record = self.gw.record(job)
            record["stdout"] = shell.stdout
            shells[str(job_id)] = record
        return shells

    async def getCoreAllocationStatus(self) -> dict[str, Any]:
        return self.jm.core_status()

    # ----------------------------------------------------------------- licences (§3.3, 3.5, 3.6)

    def _lstc_tools(self) -> lstc.LstcTools | None:
        cfg = self.jm.config.lstc
        if cfg is None:
            return None
        return lstc.LstcTools(qrun=cfg.qrun, qkill=cfg.qkill, server=cfg.server, timeout_s=cfg.timeout_s)

    async def _licence_info(self, tools: lstc.LstcTools) -> Any:
        """`lstc_qrun -r`, shared by every GUI: one run at a time, reused for 2 s."""
        now = time.monotonic()
        if self._licences is not None and now - self._licences[0] < LICENCE_CACHE_S:
            return self._licences[1]
        if self._licence_task is None or self._licence_task.done():
            self._licence_task = asyncio.ensure_future(lstc.query_licenses(tools))
        info = await asyncio.shield(self._licence_task)
        self._licences = (time.monotonic(), info)
        return info

    async def getLicCount(self) -> list[int]:
        """[used, max, queued]: the licence server's LS-DYNA counts with `[lstc]` (legacy's
        [-2, 0, queued] when it fails); else the `lsdyna` pool of `[licenses]`; else, with no
        licence limit at all, the cores (used, usable), which is then what makes jobs wait."""
        queued = sum(job.ncpu for job in self.jm.queue())
        tools = self._lstc_tools()
        if tools is not None:
            info = await self._licence_info(tools)
            if isinstance(info, lstc.LstcFailure):
                return [-2, 0, queued]
            used, cap = lstc.lsdyna_usage(info), lstc.lsdyna_capacity(info)
            if used is None or cap is None:
                return [-2, 0, queued]
            return [used, cap, queued]
        pools = getattr(self.jm, "licences", None)
        size = pools.capacity("lsdyna") if pools is not None else self.jm.config.licenses.get("lsdyna")
        if size is not None:
            held = pools.held("lsdyna") if pools is not None else sum(
                j.ncpu for j in self.jm.jobs.values() if j.status.has_process and j.family is Family.LSDYNA)
            return [held, size, queued]
        usable = self.jm.allocator.usable_count
        return [usable - self.jm.allocator.free_count(), usable, queued]

    async def getQrunJobs(self) -> list[dict[str, Any]]:
        tools = self._lstc_tools()
        if tools is None:
            return []
        rows = await lstc.query_programs(tools)
        if isinstance(rows, lstc.LstcFailure):
            log.warning("getQrunJobs: %s", rows.message)
            return []
        out = []
        for row in rows:
            jobs = "" if row.jobs is None else str(row.jobs)
            out.append({"user": row.user, "host": row.host, "program": row.program,
                        "started": row.started, "procs": str(row.procs), "jobs": jobs, "josbs": jobs})
        return out

    async def qKillJob(self, host: Any) -> dict[str, Any]:
        tools = self._lstc_tools()
        if tools is None:
            return {"success": False,
                    "message": "No licence server tools are configured on this daemon ([lstc])."}
        success, message = await lstc.kill_program(host if isinstance(host, str) else repr(host), tools)
        return {"success": success, "message": message}

    async def getFreeSpace(self, disk: Any) -> list[Any]:
        data_dir = Path(self.jm.config.store.path).parent
        return await asyncio.to_thread(files.free_space, disk, data_dir)

    # ----------------------------------------------------------------- starting (§3.8, 3.9)

    async def startJob(self, job_data: Any, clean_all: Any = True) -> dict[str, Any]:
        data = parse_job_data(job_data)
        clean = _bool_param("clean_all", clean_all)
        if await self.isjobRunning(data.input):
            raise LegacyError(10, "Job is already running.")
        request = await self._plan(data)
        keep = [request.restart] if request.restart else []
        await self._clean(request.input, clean_all=clean, keep=keep)
        with self.gw.queue_batch(force=False):  # setQueue only if it has to wait for cores
            job = await self.gw.launch(request.params(), data.memo(), request.derived)
        record = self.gw.record(self.jm.jobs.get(job.id, job))
        record["ncpu"] = data.raw.get("ncpu", record["ncpu"])
        return record

    async def _clean(self, input: str, *, clean_all: bool, keep: list[str]) -> list[str]:
        config = self.jm.config
        forbidden = [Path.home(), Path(config.store.path).parent]

        def run() -> list[str]:
            files.check_clean_target(input, clean_all=clean_all, roots=config.jobs.allowed_roots,
                                     forbidden=forbidden)
            return files.clean_folder(input, clean_all=clean_all, keep=keep)

        removed = await asyncio.to_thread(run)
        if removed:
            log.info("legacy: cleaned %d files next to %s: %s", len(removed), input,
                     ", ".join(sorted(removed)[:20]))
        return removed

    async def cleanFolder(self, input: Any) -> None:
        path = _text_param("input", input)
        busy = self._live_in(str(Path(path).parent))
        if busy is not None and busy.status is not S.QUEUED:
            raise LegacyError(10, f"Job {busy.id} is running in {Path(path).parent}; not cleaned.")
        await self._clean(path, clean_all=True, keep=[])
        return None

    # ----------------------------------------------------------------- queue (§3.12–3.15)

    async def addToQueue(self, job_data: Any) -> None:
        data = parse_job_data(job_data)
        if await self.isInQueue(data.input):
            raise LegacyError(10, "Job is already in queue.")
        request = await self._plan(data)
        with self.gw.queue_batch():
            await self.gw.launch(request.params(), data.memo(), request.derived)
        return None

    async def removeFromQueue(self, position: Any) -> None:
        index = to_int("position", position)
        queue = self.jm.queue()
        if not 0 <= index < len(queue):
            raise LegacyError(10, f"No job at queue position {index} (the queue holds {len(queue)}).")
        with self.gw.queue_batch():
            await self.jm.stop(queue[index].id)
        return None

    async def switchPositionQueue(self, initial: Any, new: Any) -> int:
        first, second = to_int("initial", initial), to_int("new", new)
        if first == second:
            raise LegacyError(10, "Can't switch position.")
        queue = self.jm.queue()
        if not 0 <= first < len(queue):
            raise LegacyError(10, "Can't switch position.")
        second = max(0, min(second, len(queue) - 1))
        with self.gw.queue_batch():
            if second != first:
                a, b = queue[first].id, queue[second].id
                try:
                    await self.jm.move_job(a, second)
                    await self.jm.move_job(b, first)
                except (InvalidState, JobNotFound) as exc:  # one of them started meanwhile
                    raise LegacyError(10, f"Can't switch position: {exc}") from exc
        return 1

    async def setNcpuQueue(self, id: Any, ncpu: Any) -> int | None:
        count = to_int("ncpu", ncpu)
        if count <= 0:
            raise LegacyError(10, "Can't set NCPU.")
        job_id = to_int("id", id)
        with self.gw.queue_batch():
            old = next((j for j in self.jm.queue() if j.id == job_id), None)
            if old is None:
                return None
            if old.ncpu == count:
                return 1
            memo = with_ncpu(self.gw.memo_for(old) or {}, count, old.input, old.memory)
            try:
                await self.jm.set_ncpu(job_id, count, extra={"legacy": dict(memo)})
            except DynalauncherError as exc:
                raise LegacyError(10, f"Can't set NCPU: {exc}") from exc
            self.gw.remember(job_id, memo)
        return 1

    # ----------------------------------------------------------------- running jobs (§3.17, 3.18, 3.20)

    async def sendD3kill(self, id: Any, payload: Any) -> None:
        job_id = to_int("id", id)
        if payload not in GUI_SWITCHES:
            raise LegacyError(10, f"Unknown switch {payload!r}; allowed: {', '.join(GUI_SWITCHES)}.")
        try:
            job = await self.jm.get(job_id)
        except JobNotFound:
            raise LegacyError(20, f"Job {id} is not running.") from None
        if job.status is S.STARTING:
            raise LegacyError(10, "Please wait to send d3kil.")
        if not job.status.has_process:
            raise LegacyError(20, f"Job {id} is not running.")
        if payload not in family_of(job.family).sense_switches:
            raise LegacyError(10, f"Job {id} is a {job.family} job; d3kil is for LS-DYNA.")
        try:
            await self.jm.sense_switch(job_id, payload)
        except InvalidState as exc:
            raise LegacyError(20, f"Job {id} is not running: {exc}") from exc
        return None

    async def KillProcessByJobId(self, id: Any) -> None:
        job_id = to_int("id", id)
        try:
            job = await self.jm.get(job_id)
        except JobNotFound:
            raise LegacyError(10, f"Job {id} not found.") from None
        if not job.status.is_terminal:
            await self.jm.stop(job_id, force=True)
        return None

    async def removeShell(self, id: Any) -> Any:
        try:
            job_id = to_int("id", id)
        except LegacyError:
            return id
        self.gw.remove_shell(job_id, id)
        return id
