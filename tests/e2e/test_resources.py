"""Issue #3 items 7, 9, 12: cores never booked twice under contention, pinning seen by the
kernel, the watchdog, and orphan cleanup scoped to the test's own folder."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import psutil

from serv import proctree
from serv.client import Client
from serv.core.jobs import Job
from serv.daemon import Daemon
from tests.conftest import DEADLINE, Env, wait_until
from tests.fakes import write_deck

ENDED = ("finished", "failed", "stopped", "cancelled")


def allowed_cpus(pid: int) -> list[int]:
    """Cpus_allowed_list from /proc/PID/status: what the kernel enforces."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            from serv.topology import parse_cpu_list

            return parse_cpu_list(line.split(":", 1)[1])
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def both_ranks(proxy: psutil.Process) -> list[psutil.Process] | None:
    """The two fake LS-DYNA ranks under a hydra_pmi_proxy once both have started."""
    ranks = [p for p in proxy.children() if p.name() == "lsdyna-fake"]
    return ranks if len(ranks) == 2 else None


class TestCores:
    async def test_twenty_concurrent_launches_on_two_cores_never_share_a_core(self, env: Env, client: Client) -> None:
        """20 launches at once contend for 2 cores: every job runs, no core is ever booked twice."""
        inputs = [env.sleeper_input(0.2) for _ in range(20)]
        jobs = await asyncio.gather(*(client.call("launch", solver="sleeper", input=str(p)) for p in inputs))
        assert len({j["id"] for j in jobs}) == 20
        holding: dict[int, int] = {}
        done: set[int] = set()
        max_parallel = 0
        while len(done) < 20:
            note = await client.next_notification("jobChanged", DEADLINE)
            job = note["job"]
            if job["status"] in ("starting", "running"):
                for core in job["allocated_cores"]:
                    assert holding.get(core, job["id"]) == job["id"], f"core {core} booked twice"
                    holding[core] = job["id"]
                max_parallel = max(max_parallel, len(set(holding.values())))
            elif job["status"] in ENDED:
                assert job["status"] == "finished", job
                for core in [c for c, j in holding.items() if j == job["id"]]:
                    del holding[core]
                done.add(job["id"])
            status = await client.call("getCoreAllocationStatus")
            owners = [c["job_id"] for c in status["cores"] if c["job_id"] is not None]
            assert len(owners) <= 2
        assert max_parallel == 2
        assert (await client.call("getCoreAllocationStatus"))["available_cores"] == 2

    async def test_mpich_ranks_are_pinned_to_the_allocated_cores(self, env: Env, client: Client) -> None:
        """MPICH ignores an inherited mask with -bind-to core, so ranks get -bind-to user:<list>."""
        job = await client.call("launch", solver="fake-mpp", input=str(env.deck(wall_s=60)), ncpu=2)
        running = await client.wait_for(job["id"], "running")
        proxy = psutil.Process(running["pid"]).parent()
        # Rank 1 may still be starting when rank 0 is already known.
        ranks = await wait_until(lambda: both_ranks(proxy), "both ranks")
        masks = sorted(allowed_cpus(p.pid) for p in ranks)
        assert masks == [[c] for c in sorted(running["allocated_cores"])]
        await client.call("stop", id=job["id"], force=True)
        await client.wait_for(job["id"], *ENDED)

    async def test_smp_solver_mask_matches_its_single_core(self, env: Env, client: Client) -> None:
        job = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=60)), ncpu=1)
        running = await client.wait_for(job["id"], "running")
        assert allowed_cpus(running["pid"]) == running["allocated_cores"]
        await client.call("stop", id=job["id"], force=True)
        await client.wait_for(job["id"], *ENDED)


class TestWatchdog:
    async def test_health_reports_an_active_watchdog_that_ticks(self, daemon: Daemon, client: Client) -> None:
        assert (await client.call("getSystemHealth"))["watchdog_active"] is True
        # Its first pass (host telemetry, an orphan count) may still run when the daemon
        # starts answering; until it ends there is no tick to report.
        assert daemon.watchdog is not None
        await wait_until(lambda: daemon.watchdog is not None and daemon.watchdog.ticks >= 2, "two watchdog ticks")
        health = await client.call("getSystemHealth")
        assert health["watchdog_active"] is True
        assert health["watchdog_last_tick_age_s"] is not None
        assert health["watchdog_last_tick_age_s"] < 3 * daemon.config.watchdog.interval_s

    async def test_watchdog_reports_a_vanished_solver_without_a_pidfd(self, env: Env, daemon: Daemon, client: Client) -> None:
        """The watchdog alone notices a death: the job's exit handles are cancelled first."""
        assert daemon.manager is not None
        job = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=60)))
        running = await client.wait_for(job["id"], "running")
        runtime = daemon.manager._rt[job["id"]]
        for handle in runtime.handles:
            handle.cancel()
        runtime.handles.clear()
        psutil.Process(running["pid"]).kill()
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] == "stopped"

    def test_a_zombie_counts_as_dead(self) -> None:
        """A killed child that nobody reaped yet is a zombie: not alive for the daemon."""
        child = subprocess.Popen(["sleep", "60"])
        try:
            ident = proctree.identity(child.pid)
            assert ident is not None and proctree.is_alive(ident)
            child.kill()
            # Blocks until the child has exited, and leaves it unreaped: a zombie.
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
            assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
            assert not proctree.is_alive(ident)
            assert proctree.identity(child.pid) is None
            # The spawn path's cheaper look at its own unreaped child still names it.
            assert proctree.child_identity(child.pid) == ident
        finally:
            child.wait()
        assert proctree.child_identity(child.pid) is None  # reaped: nothing to read

    def test_watchdog_tick_calls_on_gone_for_a_dead_identity(self) -> None:
        """A direct tick: a job whose solver identity is dead is reported, a live one is not."""
        from datetime import UTC, datetime

        from serv.core.jobs import Family
        from serv.core.states import JobStatus
        from serv.watchdog import Watchdog

        live = subprocess.Popen(["sleep", "60"])
        dead = subprocess.Popen(["true"])
        dead.wait()
        try:
            now = datetime.now(UTC)
            ctime = psutil.Process(live.pid).create_time()
            jobs = [
                Job(id=1, solver="s", family=Family.GENERIC, input="/x", workdir="/", submitted_at=now,
                    status=JobStatus.RUNNING, pid=live.pid, pid_create_time=ctime),
                Job(id=2, solver="s", family=Family.GENERIC, input="/y", workdir="/", submitted_at=now,
                    status=JobStatus.RUNNING, pid=dead.pid, pid_create_time=ctime),
            ]
            gone: list[int] = []

            class Loop:
                def call_soon_threadsafe(self, fn, *args):  # type: ignore[no-untyped-def]
                    fn(*args)

            dog = Watchdog(Loop(), interval_s=1, snapshot=lambda: jobs,  # type: ignore[arg-type]
                           is_ending=lambda _id: False, on_gone=gone.append)
            dog.tick()
            assert gone == [2]
            assert dog.tick_age_s() is not None
        finally:
            live.kill()
            live.wait()


class TestOrphans:
    """killOrphanDynaProcesses, always scoped to the test's own tmp folder."""

    async def test_orphan_cleanup_kills_only_orphans_inside_working_dir(self, env: Env, client: Client) -> None:
        """An untagged fake LS-DYNA in the folder dies; one outside the folder and a live job's solver live on."""
        inside = env.tmp / "scope" / "orphan"
        outside = env.tmp / "elsewhere"
        for folder in (inside, outside):
            write_deck(folder / "main.k", wall_s=120)
        fake = str(env.bin_dir / "lsdyna-fake")
        orphan = subprocess.Popen([fake, "i=main.k"], cwd=inside, stdout=subprocess.DEVNULL)
        bystander = subprocess.Popen([fake, "i=main.k"], cwd=outside, stdout=subprocess.DEVNULL)
        try:
            live_deck = write_deck(env.tmp / "scope" / "live" / "main.k", wall_s=120)
            job = await client.call("launch", solver="fake-smp", input=str(live_deck))
            running = await client.wait_for(job["id"], "running")
            result = await client.call("killOrphanDynaProcesses", working_dir=str(env.tmp / "scope"))
            assert result["killed_count"] == 1
            assert [(p["pid"], p["name"]) for p in result["processes"]] == [(orphan.pid, "lsdyna-fake")]
            assert result["processes"][0]["cwd"] == str(inside)
            assert orphan.wait(timeout=DEADLINE) == -9
            assert bystander.poll() is None
            assert psutil.pid_exists(running["pid"])
            assert (await client.call("getJob", id=job["id"]))["status"] == "running"
            await client.call("stop", id=job["id"], force=True)
            await client.wait_for(job["id"], *ENDED)
        finally:
            for proc in (orphan, bystander):
                if proc.poll() is None:
                    proc.kill()
                proc.wait()

    async def test_orphaned_mpi_tree_goes_with_its_launcher(self, env: Env, client: Client) -> None:
        """Ranks under an mpiexec the daemon does not know are killed with that mpiexec and proxy."""
        from tests.conftest import mpiexec_hydra

        folder = env.tmp / "scope" / "mpi"
        write_deck(folder / "main.k", wall_s=120)
        launcher = subprocess.Popen([mpiexec_hydra(), "-np", "2", str(env.bin_dir / "lsdyna-fake"), "i=main.k"],
                                    cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + DEADLINE
            while len([p for p in psutil.Process(launcher.pid).children(recursive=True) if p.name() == "lsdyna-fake"]) < 2:
                assert time.monotonic() < deadline, "ranks did not appear"
                await asyncio.sleep(0.02)
            tree = [launcher.pid, *(p.pid for p in psutil.Process(launcher.pid).children(recursive=True))]
            result = await client.call("killOrphanDynaProcesses", working_dir=str(env.tmp / "scope"))
            assert {p["pid"] for p in result["processes"]} == set(tree)
            launcher.wait(timeout=DEADLINE)
        finally:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()


class TestLimits:
    async def test_max_cores_limits_usable_cores(self, env: Env) -> None:
        """--max-cores 1: one usable core; ncpu 2 is 1005 and a job runs on the usable core."""
        from dataclasses import replace

        config = env.config()
        config = replace(config, cores=replace(config.cores, max_usable=1))
        async with Daemon(config) as daemon, Client(daemon.url) as client:
            await client.subscribe()
            status = await client.call("getCoreAllocationStatus")
            assert status["available_cores"] == 1
            assert [c["usable"] for c in status["cores"]] == [True, False]
            response = await client.request("launch", {"solver": "fake-smp", "input": str(env.deck()), "ncpu": 2})
            assert response["error"]["code"] == 1005 and "1 usable" in response["error"]["message"]
            job = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=60)), nice=5)
            running = await client.wait_for(job["id"], "running")
            assert running["allocated_cores"] == [0]
            assert psutil.Process(running["pid"]).nice() == 5
            await client.call("stop", id=job["id"], force=True)
            await client.wait_for(job["id"], *ENDED)
