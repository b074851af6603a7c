"""Issue #3 item 11: crash recovery. kill -9 of the daemon loses nothing and books no core
twice; a recycled PID is never adopted; jobs that ended while the daemon was down get
their final status from their output."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Callable

import psutil
import pytest

from serv import job_manager, proctree
from serv.client import Client
from serv.core.jobs import Family, Job, JobSpec
from serv.core.states import JobStatus, transition
from serv.daemon import Daemon
from serv.errors import StoreUnavailable
from serv.platform import TAG_VAR
from serv.platform.spawning import ThreadSpawner
from serv.store import Store
from tests.conftest import DEADLINE, DaemonProcess, Env, wait_until
from tests.fakes import write_deck

ENDED = ("finished", "failed", "stopped", "cancelled")


class TestDaemonCrash:
    """kill -9 of the daemon, then a restart: jobs re-adopted with the same cores."""

    async def test_kill9_of_daemon_then_restart_readopts_jobs_with_same_cores(
        self, env: Env, daemon_process: Callable[..., DaemonProcess]
    ) -> None:
        """Two running jobs (SMP and MPP) and a queued one survive kill -9 and a restart."""
        first = daemon_process()
        url = first.start()
        async with Client(url) as client:
            await client.subscribe()
            smp = await client.call("launch", solver="fake-smp", input=str(env.deck("smp", wall_s=120)), ncpu=1)
            mpp = await client.call("launch", solver="fake-mpp", input=str(env.deck("mpp", wall_s=120)), ncpu=1)
            queued = await client.call("launch", solver="fake-smp", input=str(env.deck("q", wall_s=1)), ncpu=1)
            before = {j["id"]: await client.wait_for(j["id"], "running") for j in (smp, mpp)}
            assert (await client.call("getJob", id=queued["id"]))["status"] == "queued"
        first.kill9()
        for job in before.values():
            assert psutil.pid_exists(job["pid"]), "the solver must outlive the daemon"
        second = daemon_process()
        url = second.start()
        async with Client(url) as client:
            await client.subscribe()
            for job_id, job in before.items():
                after = await client.call("getJob", id=job_id)
                assert after["status"] == "running"
                assert after["pid"] == job["pid"]
                assert after["allocated_cores"] == job["allocated_cores"]
            status = await client.call("getCoreAllocationStatus")
            owners = [c["job_id"] for c in status["cores"] if c["job_id"] is not None]
            assert sorted(owners) == sorted(before)
            assert (await client.call("getJob", id=queued["id"]))["status"] == "queued"
            # A re-adopted job and a queued one still own their folders.
            for job in (mpp, queued):
                refused = await client.request("launch", {"solver": "fake-smp", "input": job["input"]})
                assert refused["error"]["code"] == 1002 and str(job["id"]) in refused["error"]["message"]
            # The restored jobs are watched again: a death is noticed at once.
            os.kill(before[smp["id"]]["pid"], signal.SIGKILL)
            ended = await client.wait_for(smp["id"], *ENDED, timeout=DEADLINE)
            assert ended["status"] == "stopped"
            started = await client.wait_for(queued["id"], "running", *ENDED, timeout=DEADLINE)
            assert started["allocated_cores"] == before[smp["id"]]["allocated_cores"]
            await client.call("stop", id=mpp["id"], force=True)
            await client.wait_for(mpp["id"], *ENDED)

    async def test_sigterm_shuts_down_cleanly_and_leaves_jobs_running(
        self, env: Env, daemon_process: Callable[..., DaemonProcess]
    ) -> None:
        """SIGTERM stops the daemon with exit 0; its solver keeps running and is re-adopted."""
        first = daemon_process()
        async with Client(first.start()) as client:
            await client.subscribe()
            job = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=120)))
            running = await client.wait_for(job["id"], "running")
        assert first.terminate() == 0
        assert any("shutting down" in line for line in first.log_lines)
        assert psutil.Process(running["pid"]).status() != psutil.STATUS_ZOMBIE
        second = daemon_process()
        async with Client(second.start()) as client:
            again = await client.call("getJob", id=job["id"])
            assert again["status"] == "running" and again["pid"] == running["pid"]
            await client.call("stop", id=job["id"], force=True)


async def stored_running_job(db: Path, workdir: Path, pid: int, create_time: float, cores: tuple[int, ...]) -> int:
    """Write a job into the store as if a daemon had been running it when it crashed."""
    if not (workdir / "main.k").exists():
        write_deck(workdir / "main.k", wall_s=60)
    store = await Store.open(db)
    try:
        now = datetime.now(UTC)
        job = await store.create(
            JobSpec(solver="fake-smp", family=Family.LSDYNA, input=str(workdir / "main.k"), workdir=str(workdir)),
            at=now,
        )
        started = transition(job, JobStatus.STARTING, at=now)
        running = transition(started, JobStatus.RUNNING, at=now)
        import dataclasses

        running = dataclasses.replace(
            running, pid=pid, pid_create_time=create_time, allocated_cores=cores,
            extra={"process_names": ["lsdyna"]},
        )
        await store.commit(running, previous=JobStatus.QUEUED)
        return job.id
    finally:
        await store.close()


def fake_solver(env: Env, workdir: Path) -> subprocess.Popen[bytes]:
    """A fake LS-DYNA started by the test itself, as if by a daemon that has since died."""
    return subprocess.Popen([str(env.bin_dir / "lsdyna-fake"), "i=main.k"], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class TestRecoveryRules:
    """The recovery rules against real processes and a real store file."""

    async def test_recycled_pid_is_not_adopted(self, env: Env) -> None:
        """A live process with the stored PID but another create time is not the solver."""
        stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            ctime = psutil.Process(stranger.pid).create_time()
            job_id = await stored_running_job(
                env.tmp / "jobs.db", env.tmp / "runs" / "recycled", stranger.pid, ctime - 100.0, (0,)
            )
            async with Daemon(env.config()) as daemon, Client(daemon.url) as client:
                job = await client.call("getJob", id=job_id)
                assert job["status"] == "stopped"
                assert "daemon was down" in job["message"]
                status = await client.call("getCoreAllocationStatus")
                assert status["available_cores"] == 2
            assert stranger.poll() is None, "a process that is not the job's must not be touched"
        finally:
            stranger.kill()
            stranger.wait()

    async def test_job_that_ended_while_down_takes_its_status_from_output(self, env: Env) -> None:
        """A dead solver whose stdout shows normal termination ends finished; an error → failed."""
        ok_dir = env.tmp / "runs" / "ok"
        bad_dir = env.tmp / "runs" / "bad"
        ok_id = await stored_running_job(env.tmp / "jobs.db", ok_dir, 999999, 1.0, (0,))
        bad_id = await stored_running_job(env.tmp / "jobs.db", bad_dir, 999998, 1.0, (1,))
        samples = Path(__file__).resolve().parents[3] / "shared" / "samples" / "lsdyna"
        messag = samples / "lsdyna-R16.1-smp-win-4thr-normal-1cycle.messag"
        error = samples / "lsdyna-mppDEV-10procs-input-error-termination.issue-excerpt.txt"
        (ok_dir / "stdout").write_bytes(messag.read_bytes())
        (bad_dir / "stdout").write_bytes(error.read_bytes())
        async with Daemon(env.config()) as daemon, Client(daemon.url) as client:
            ok = await client.call("getJob", id=ok_id)
            bad = await client.call("getJob", id=bad_id)
        assert (ok["status"], ok["termination"]) == ("finished", "normal")
        assert (bad["status"], bad["termination"]) == ("failed", "error")

    async def test_pid_file_cores_win_over_database_cores(self, env: Env) -> None:
        """Core restore order: pid file first, then the database."""
        workdir = env.tmp / "runs" / "adopt"
        write_deck(workdir / "main.k", wall_s=60)
        proc = fake_solver(env, workdir)
        try:
            ctime = psutil.Process(proc.pid).create_time()
            job_id = await stored_running_job(env.tmp / "jobs.db", workdir, proc.pid, ctime, (0,))
            (workdir / "pid").write_text(f'{proc.pid}\n{{"cores": [1]}}\n')
            async with Daemon(env.config()) as daemon, Client(daemon.url) as client:
                job = await client.call("getJob", id=job_id)
                assert job["status"] == "running" and job["pid"] == proc.pid
                assert job["allocated_cores"] == [1]
                await client.subscribe()
                await client.call("stop", id=job_id, force=True)
                await client.wait_for(job_id, *ENDED)
            assert proc.wait(timeout=DEADLINE) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    async def test_conflicting_cores_get_a_fresh_allocation(self, env: Env) -> None:
        """Two restored jobs claiming the same core: the second gets other cores, never a shared one."""
        dirs = [env.tmp / "runs" / f"c{i}" for i in range(2)]
        for folder in dirs:
            write_deck(folder / "main.k", wall_s=60)
        procs = [fake_solver(env, folder) for folder in dirs]
        try:
            ids = []
            for folder, proc in zip(dirs, procs):
                ctime = psutil.Process(proc.pid).create_time()
                ids.append(await stored_running_job(env.tmp / "jobs.db", folder, proc.pid, ctime, (0,)))
            async with Daemon(env.config()) as daemon, Client(daemon.url) as client:
                jobs = [await client.call("getJob", id=i) for i in ids]
                assert [j["allocated_cores"] for j in jobs] == [[0], [1]]
                assert psutil.Process(procs[1].pid).cpu_affinity() == [1]
                await client.subscribe()
                for job_id in ids:
                    await client.call("stop", id=job_id, force=True)
                    await client.wait_for(job_id, *ENDED)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()




def live_tagged(tag: str) -> list[int]:
    """PIDs of the live (not zombie) processes carrying job tag `tag`."""
    pids = []
    for proc in proctree.tagged(tag).get(tag, []):
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                pids.append(proc.pid)
    return pids


class TestUnrecordedStart:
    """A job's launcher is spawned while its `starting` commit is written: a start that was
    never recorded must not leave a solver behind, nor run the job twice."""

    async def test_a_queued_jobs_tagged_processes_are_killed_at_restart_and_the_job_runs_once(
        self, env: Env
    ) -> None:
        """The daemon died after the spawn, before the commit: at restart the job is queued in
        the store and its launcher runs. The launcher is killed; the job then starts afresh."""
        workdir = env.tmp / "runs" / "unrecorded"
        write_deck(workdir / "main.k", wall_s=60)
        store = await Store.open(env.tmp / "jobs.db")
        try:
            job = await store.create(
                JobSpec(solver="fake-smp", family=Family.LSDYNA, input=str(workdir / "main.k"),
                        workdir=str(workdir)),
                at=datetime.now(UTC),
            )
            tag = f"{store.daemon_id}:{job.id}"
        finally:
            await store.close()
        leftover = subprocess.Popen(
            [str(env.bin_dir / "lsdyna-fake"), "i=main.k"], cwd=workdir,
            env={**os.environ, TAG_VAR: tag}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            async with Daemon(env.config()) as daemon, Client(daemon.url) as client:
                await client.subscribe()
                assert leftover.wait(timeout=DEADLINE) == -signal.SIGKILL
                running = await client.wait_for(job.id, "running", *ENDED, timeout=DEADLINE)
                assert running["status"] == "running" and running["pid"] != leftover.pid
                assert live_tagged(tag) and leftover.pid not in live_tagged(tag)
                await client.call("stop", id=job.id, force=True)
                await client.wait_for(job.id, *ENDED)
        finally:
            if leftover.poll() is None:
                leftover.kill()
                leftover.wait()

    @pytest.mark.parametrize("spawner", ["fork server", "threads"])
    async def test_a_start_whose_commit_fails_kills_its_launcher_and_stays_queued(
        self, env: Env, monkeypatch: pytest.MonkeyPatch, spawner: str
    ) -> None:
        """The `starting` commit fails once the launcher runs: the launcher is killed, the job
        is still queued, and it starts when the store works again. With the fork server, and
        with the daemon's own spawn threads (Windows, or no helper)."""
        if spawner == "threads":
            monkeypatch.setattr(job_manager, "new_spawner", ThreadSpawner)
        async with Daemon(env.config()) as daemon, Client(daemon.url) as client:
            assert daemon.store is not None and daemon.manager is not None
            store, manager = daemon.store, daemon.manager
            commit = store.commit
            spawned: list[int] = []
            parents: list[int] = []

            async def failing_commit(job: Job, previous: JobStatus | None = None) -> None:
                if job.status is JobStatus.STARTING and not spawned:
                    tag = manager.tag_prefix + str(job.id)
                    # Fail only once the launcher exists, so the kill is what is tested.
                    spawned.extend(await wait_until(
                        lambda: live_tagged(tag), "the launcher spawned alongside the commit"
                    ))
                    parents.append(psutil.Process(spawned[0]).ppid())
                    raise StoreUnavailable("cannot write the job database: disk full (test)")
                await commit(job, previous=previous)

            monkeypatch.setattr(store, "commit", failing_commit)
            await client.subscribe()
            job = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=60)))
            await wait_until(lambda: parents, "the failed start")
            assert (parents[0] == os.getpid()) == (spawner == "threads"), "the spawner under test"
            tag = manager.tag_prefix + str(job["id"])
            await wait_until(lambda: not live_tagged(tag), "the unrecorded launcher killed")
            for pid in spawned:
                assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            assert (await client.call("getJob", id=job["id"]))["status"] == "queued"
            status = await client.call("getCoreAllocationStatus")
            assert status["available_cores"] == 2, "an unrecorded start books no core"
            monkeypatch.setattr(store, "commit", commit)
            manager.request_schedule()
            running = await client.wait_for(job["id"], "running", *ENDED, timeout=DEADLINE)
            assert running["status"] == "running" and running["pid"] not in spawned
            await client.call("stop", id=job["id"], force=True)
            await client.wait_for(job["id"], *ENDED)
