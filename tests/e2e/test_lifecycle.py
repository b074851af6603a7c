"""contract.md § Methods `launch`/`stop`, § Job status: real PIDs under mpiexec, exits
noticed at once, graceful then forced stops that leave no process behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from serv.client import Client, RpcError
from tests.conftest import DEADLINE, Env, wait_until

ENDED = ("finished", "failed", "stopped", "cancelled")


def gone(pid: int) -> bool:
    """A process is gone when it no longer exists or is a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tree_of(pid: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        return [root.pid, *(p.pid for p in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


class TestRealPid:
    """Issue #3 item 6: the PID reported is the solver's, never a shell or mpiexec."""

    async def test_pid_under_mpiexec_is_a_rank_not_the_launcher(self, env: Env, client: Client) -> None:
        """Under `mpiexec -np 2`, the job's pid is rank 0 of the fake LS-DYNA below hydra_pmi_proxy."""
        deck = env.deck(wall_s=30)
        job = await client.call("launch", solver="fake-mpp", input=str(deck), ncpu=2)
        running = await client.wait_for(job["id"], "running", timeout=DEADLINE)
        proc = psutil.Process(running["pid"])
        assert proc.name() == "lsdyna-fake"
        assert proc.parent().name() == "hydra_pmi_proxy"
        assert running["command"][0].endswith(("mpiexec.hydra", "mpiexec.mpich"))
        assert running["command"][1:5] == ["-np", "2", "-bind-to", f"user:{','.join(map(str, running['allocated_cores']))}"]
        from tests.e2e.test_resources import both_ranks

        assert await wait_until(lambda: both_ranks(psutil.Process(proc.ppid())), "both ranks")
        assert proc.environ()["PMI_RANK"] == "0"
        await client.call("stop", id=job["id"], force=True)
        await client.wait_for(job["id"], *ENDED)

    async def test_pid_search_falls_back_to_the_launcher_when_no_name_matches(
        self, env: Env, bin_dir: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A profile whose process_names match nothing gets the launched PID after the search window, with a WARNING."""
        from serv.daemon import Daemon

        env.extra_config = f"""
[solvers.misnamed]
family = "generic"
executable = "{bin_dir / 'sleeper-solv'}"
process_names = ["nothing-like-this"]
"""
        config = env.config()
        from dataclasses import replace

        config = replace(config, jobs=replace(config.jobs, pid_search_s=0.3))
        async with Daemon(config) as daemon, Client(daemon.url) as client:
            await client.subscribe()
            job = await client.call("launch", solver="misnamed", input=str(env.sleeper_input(30)))
            running = await client.wait_for(job["id"], "running", timeout=DEADLINE)
            assert psutil.Process(running["pid"]).name() == "sleeper-solv"
            warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
            assert any("no process named like ['nothing-like-this']" in w and "sleeper-solv" in w for w in warnings)
            await client.call("stop", id=job["id"], force=True)
            await client.wait_for(job["id"], *ENDED)


class TestExitDetection:
    """Issue #3 item 9: a solver's death ends its job at once and frees its cores."""

    async def test_kill9_of_smp_solver_ends_job_stopped_and_frees_cores(self, env: Env, client: Client) -> None:
        """kill -9 of an SMP solver → stopped (killed by signal 9), cores free, no process left."""
        deck = env.deck(wall_s=60)
        job = await client.call("launch", solver="fake-smp", input=str(deck), ncpu=2)
        running = await client.wait_for(job["id"], "running")
        os.kill(running["pid"], signal.SIGKILL)
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] == "stopped"
        assert "signal 9" in ended["message"]
        assert ended["exit_code"] == -9
        cores = await client.call("getCoreAllocationStatus")
        assert cores["available_cores"] == 2

    async def test_kill9_of_a_rank_under_mpiexec_ends_job_and_leaves_no_process(self, env: Env, client: Client) -> None:
        """kill -9 of rank 0 under MPICH ends the job; mpiexec, proxy and the other rank are gone."""
        deck = env.deck(wall_s=60)
        job = await client.call("launch", solver="fake-mpp", input=str(deck), ncpu=2)
        running = await client.wait_for(job["id"], "running")
        tree = tree_of(psutil.Process(running["pid"]).parent().ppid())
        assert len(tree) >= 4  # mpiexec, hydra_pmi_proxy, two ranks
        os.kill(running["pid"], signal.SIGKILL)
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        # Hydra's own exit code is 9 either way; its report names the signal.
        assert ended["status"] == "stopped" and "signal 9" in ended["message"]
        assert ended["termination"] is None
        for pid in tree:
            assert gone(pid), f"pid {pid} of the job survived"

    async def test_solver_error_termination_ends_failed_with_its_message(self, env: Env, client: Client) -> None:
        """An LS-DYNA error termination → failed, with the solver's error text in message."""
        deck = env.deck(wall_s=30, error_at_s=0.3)
        job = await client.call("launch", solver="fake-smp", input=str(deck))
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] == "failed"
        assert ended["termination"] == "error"
        assert ended["message"]

    async def test_exit_zero_without_banner_is_failed_for_lsdyna(self, env: Env, client: Client) -> None:
        """LS-DYNA that exits 0 without a termination banner did not finish."""
        deck = env.deck(wall_s=0.3, no_banner=True)
        job = await client.call("launch", solver="fake-smp", input=str(deck))
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] == "failed"
        assert "no termination message" in ended["message"]

    async def test_a_solver_that_cannot_start_fails_the_job(self, env: Env, client: Client, bin_dir: Path) -> None:
        """A generic solver that exits at once with an error ends failed and frees its cores."""
        path = env.sleeper_input(0)
        path.write_text("not a number\n")
        job = await client.call("launch", solver="sleeper", input=str(path))
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] == "failed"
        assert "exited with code 1" in ended["message"]
        assert (await client.call("getCoreAllocationStatus"))["available_cores"] == 2


class TestStop:
    """Issue #3 item 10: graceful, then forced; no process of the job survives."""

    async def test_stop_lsdyna_writes_sw1_and_ends_stopped_with_restart_dump(self, env: Env, client: Client) -> None:
        """A graceful stop of LS-DYNA writes `sw1.` to d3kil; the run ends normally with a dump."""
        deck = env.deck(wall_s=60)
        job = await client.call("launch", solver="fake-smp", input=str(deck))
        running = await client.wait_for(job["id"], "running")
        stopping = await client.call("stop", id=job["id"])
        assert stopping["status"] == "stopping"
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] == "stopped"
        assert ended["termination"] == "normal"
        assert "d3dump01" in ended["message"]
        assert (deck.parent / "d3dump01").exists()
        assert gone(running["pid"])

    async def test_stop_mpp_lsdyna_ends_every_rank(self, env: Env, client: Client) -> None:
        """sw1 under mpiexec ends rank 0, the other rank and mpiexec."""
        deck = env.deck(wall_s=60)
        job = await client.call("launch", solver="fake-mpp", input=str(deck), ncpu=2)
        running = await client.wait_for(job["id"], "running")
        tree = tree_of(psutil.Process(running["pid"]).parent().ppid())
        await client.call("stop", id=job["id"])
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] == "stopped" and ended["termination"] == "normal"
        for pid in tree:
            await wait_until(lambda pid=pid: gone(pid), f"pid {pid} to end")

    async def test_solver_ignoring_sigterm_under_mpiexec_is_killed_after_grace(self, env: Env, client: Client) -> None:
        """Ranks that ignore SIGTERM keep mpiexec waiting forever; after stop_grace_s the whole tree is killed."""
        job = await client.call("launch", solver="stubborn-mpp", input=str(env.sleeper_input(600)), ncpu=2)
        running = await client.wait_for(job["id"], "running")
        assert psutil.Process(running["pid"]).name() == "stubborn-solv"
        tree = tree_of(psutil.Process(running["pid"]).parent().ppid())
        await client.call("stop", id=job["id"])
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] == "stopped"
        assert ended["message"] == "stopped by user"
        for pid in tree:
            assert gone(pid), f"pid {pid} survived the stop"

    async def test_force_stop_kills_at_once(self, env: Env, client: Client) -> None:
        """force=true kills the whole tree without the grace period."""
        job = await client.call("launch", solver="stubborn-mpp", input=str(env.sleeper_input(600)), ncpu=1)
        running = await client.wait_for(job["id"], "running")
        loop_time = __import__("asyncio").get_running_loop().time
        begun = loop_time()
        await client.call("stop", id=job["id"], force=True)
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] == "stopped"
        assert loop_time() - begun < 2.0  # stop_grace_s is 2 s in the test config
        assert gone(running["pid"])

    async def test_stop_of_queued_job_cancels_it_and_stop_of_ended_job_returns_it(self, env: Env, client: Client) -> None:
        """A queued job becomes cancelled; stopping an ended job changes nothing."""
        blocker = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=60)), ncpu=2)
        await client.wait_for(blocker["id"], "running")
        queued = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=1)), ncpu=1)
        assert queued["status"] == "queued"
        await client.wait_until(queued["id"], lambda j: j["message"] == "waiting for 1 cores, 0 free", "waiting")
        cancelled = await client.call("stop", id=queued["id"])
        assert cancelled["status"] == "cancelled"
        again = await client.call("stop", id=queued["id"], force=True)
        assert again == {**cancelled, "elapsed_s": again["elapsed_s"]}
        await client.call("stop", id=blocker["id"], force=True)
        await client.wait_for(blocker["id"], *ENDED)

    async def test_stop_unknown_job_is_1001(self, client: Client) -> None:
        """Stopping a job that does not exist answers 1001 naming it."""
        with pytest.raises(RpcError) as err:
            await client.call("stop", id=999)
        assert err.value.code == 1001 and "999" in err.value.message
