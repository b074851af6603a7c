"""Issue #4 end to end: live progress, output streaming, sense switches, pause/resume, and
the CalculiX and HFSS families with real processes."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import psutil
import pytest

from serv.client import Client, RpcError
from tests.conftest import DEADLINE, Env, wait_until

ENDED = ("finished", "failed", "stopped", "cancelled")
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"


def tree_pids(rank_pid: int) -> list[int]:
    """mpiexec, hydra_pmi_proxy and every rank of the job whose rank 0 is `rank_pid`."""
    launcher = psutil.Process(rank_pid).parent().parent()
    return [launcher.pid, *(p.pid for p in launcher.children(recursive=True))]


async def next_ticks(client: Client, count: int) -> None:
    """Wait (by event, not by sleeping a guess) until the watchdog has ticked `count` more times."""
    start = (await client.call("getSystemHealth"))["watchdog_ticks"]
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while (await client.call("getSystemHealth"))["watchdog_ticks"] < start + count:
        assert loop.time() < end, "the watchdog stopped ticking"
        await asyncio.sleep(0.05)


async def progress_above(client: Client, job_id: int, floor: float) -> dict:
    """The first jobChanged of `job_id` whose progress exceeds `floor`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while True:
        note = await client.next_notification("jobChanged", max(0.01, end - loop.time()))
        job = note["job"]
        if job["id"] == job_id and (job["progress"] or 0) > floor:
            return job


class TestLsDynaLive:
    """Fake LS-DYNA under a real MPICH mpiexec: progress, ETA, output, sense switches."""

    async def test_progress_eta_and_output_stream_while_running(self, env: Env, client: Client) -> None:
        """A running job reports progress from its cycle lines against ENDTIM, an ETA, and its stdout."""
        await client.subscribe("output")
        deck = env.deck(wall_s=8, endtim=0.02)
        job = await client.call("launch", solver="fake-mpp", input=str(deck), ncpu=2)
        seen = await progress_above(client, job["id"], 5.0)
        assert seen["status"] == "running"
        assert seen["end_time"] == pytest.approx(0.02)
        assert 0 < seen["sim_time"] < 0.02
        assert seen["progress"] == pytest.approx(100 * seen["sim_time"] / 0.02, rel=1e-3)
        later = await progress_above(client, job["id"], seen["progress"] + 10)
        assert later["eta_s"] is not None and 0 < later["eta_s"] < 10
        assert later["solver_started"] is True
        assert later["details"]["cycle"] > 0
        chunk = await client.next_notification("jobOutput", DEADLINE)
        assert chunk["id"] == job["id"] and chunk["data"]
        done = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert done["status"] == "finished" and done["progress"] == 100

    async def test_sense_switches_sw2_sw3_then_sw1_under_mpiexec(self, env: Env, client: Client) -> None:
        """sw2 prints a report, sw3 writes a dump and the run goes on, sw1 ends it stopped with a dump."""
        deck = env.deck(wall_s=120)
        job = await client.call("launch", solver="fake-mpp", input=str(deck), ncpu=2)
        running = await client.wait_for(job["id"], "running")
        pids = tree_pids(running["pid"])
        stdout = deck.parent / "stdout"
        before = stdout.stat().st_size
        await client.call("senseSwitch", id=job["id"], switch="sw2")
        await wait_until(lambda: " time...." in stdout.read_text()[before:], "the sw2 report")
        await client.call("senseSwitch", id=job["id"], switch="sw3")
        await wait_until(lambda: (deck.parent / "d3dump01").exists(), "d3dump01 from sw3")
        assert (await client.call("getJob", id=job["id"]))["status"] == "running"
        assert (deck.parent / "d3kil").exists() is False
        await client.call("senseSwitch", id=job["id"], switch="sw1")
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] == "stopped"
        assert ended["termination"] == "normal"
        assert "d3dump02" in ended["message"]
        for pid in pids:
            await wait_until(lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie",
                             f"pid {pid} to end")

    async def test_restart_from_a_dump_continues_the_run(self, env: Env, client: Client) -> None:
        """launch(restart="d3dump01") passes r=d3dump01 and the run resumes from the dump."""
        deck = env.deck(wall_s=60)
        first = await client.call("launch", solver="fake-smp", input=str(deck))
        await client.wait_for(first["id"], "running")
        await client.call("senseSwitch", id=first["id"], switch="sw1")
        ended = await client.wait_for(first["id"], *ENDED, timeout=DEADLINE)
        assert "d3dump01" in ended["message"]
        again = await client.call("launch", solver="fake-smp", input=str(deck), restart="d3dump01")
        again = await client.wait_until(again["id"], lambda j: bool(j["command"]), "started")
        assert "r=d3dump01" in again["command"]
        running = await client.wait_for(again["id"], "running")
        await wait_until(lambda: "restart from d3dump01" in (deck.parent / "stdout").read_text(), "the restart line")
        await client.call("stop", id=running["id"], force=True)
        await client.wait_for(again["id"], *ENDED)

    async def test_pause_and_resume_the_whole_tree(self, env: Env, client: Client) -> None:
        """pause stops every process of the tree; the watchdog and exit detection leave it paused; resume continues."""
        deck = env.deck(wall_s=6, endtim=0.01)
        job = await client.call("launch", solver="fake-mpp", input=str(deck), ncpu=2)
        running = await client.wait_for(job["id"], "running")
        first = await progress_above(client, job["id"], 10.0)
        paused = await client.call("pause", id=job["id"])
        assert paused["status"] == "paused"
        pids = tree_pids(running["pid"])
        for pid in pids:
            assert psutil.Process(pid).status() == psutil.STATUS_STOPPED
        frozen = (await client.call("getJob", id=job["id"]))["sim_time"]
        await next_ticks(client, 3)
        still = await client.call("getJob", id=job["id"])
        assert still["status"] == "paused" and still["sim_time"] == frozen
        with pytest.raises(RpcError) as err:
            await client.call("pause", id=job["id"])
        assert err.value.code == 1002
        resumed = await client.call("resume", id=job["id"])
        assert resumed["status"] == "running"
        for pid in pids:
            assert psutil.Process(pid).status() != psutil.STATUS_STOPPED
        after = await progress_above(client, job["id"], (still["progress"] or first["progress"]) + 5)
        # The pause did not count as run time: the fake needs about 6 s of running in all,
        # so an ETA inflated by the ≥ 1.5 s pause would exceed what is left.
        assert after["eta_s"] is not None and after["eta_s"] < 6
        done = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert done["status"] == "finished"

    async def test_stop_while_paused_resumes_then_stops(self, env: Env, client: Client) -> None:
        deck = env.deck(wall_s=60)
        job = await client.call("launch", solver="fake-smp", input=str(deck))
        await client.wait_for(job["id"], "running")
        await client.call("pause", id=job["id"])
        await client.call("stop", id=job["id"])
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] == "stopped" and "d3dump01" in ended["message"]

    @pytest.mark.parametrize(
        ("params", "code"),
        [({"switch": "sw9"}, -32602), ({"switch": 1}, -32602), ({"switch": "sw1", "id": 999}, 1001)],
    )
    async def test_sense_switch_bad_params(self, env: Env, client: Client, params: dict, code: int) -> None:
        response = await client.request("senseSwitch", {"id": 1, **params})
        assert response["error"]["code"] == code

    async def test_sense_switch_refused_for_other_families_and_states(self, env: Env, client: Client) -> None:
        """Wrong family or a job that is not running → 1002 naming why."""
        other = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(60)))
        await client.wait_for(other["id"], "running")
        response = await client.request("senseSwitch", {"id": other["id"], "switch": "sw1"})
        assert response["error"]["code"] == 1002 and "LS-DYNA" in response["error"]["message"]
        await client.call("stop", id=other["id"], force=True)
        ended = await client.wait_for(other["id"], *ENDED)
        dyna = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=0.2)))
        await client.wait_for(dyna["id"], *ENDED)
        response = await client.request("senseSwitch", {"id": dyna["id"], "switch": "sw2"})
        assert response["error"]["code"] == 1002 and "finished" in response["error"]["message"]
        assert ended["status"] == "stopped"


@pytest.fixture
def calculix_env(env: Env) -> Env:
    ccx = shutil.which("ccx")
    if ccx is None:
        pytest.fail("ccx is missing: run scripts/install-test-deps (apt package calculix-ccx)")
    env.extra_config = f'\n[solvers.ccx]\nfamily = "calculix"\nexecutable = "{ccx}"\n'
    return env


def calculix_case(env: Env, name: str) -> Path:
    folder = env.tmp / "runs" / name
    folder.mkdir(parents=True)
    target = folder / f"{name}.inp"
    shutil.copy(SAMPLES / "calculix" / "inputs" / f"{name}.inp", target)
    return target


class TestCalculix:
    """A real CalculiX (Debian calculix-ccx) run through the daemon."""

    async def test_linear_static_run_finishes_with_progress_100(self, calculix_env: Env) -> None:
        from serv.daemon import Daemon

        async with Daemon(calculix_env.config()) as daemon, Client(daemon.url) as client:
            await client.subscribe()
            deck = calculix_case(calculix_env, "beamp")
            job = await client.call("launch", solver="ccx", input=str(deck), ncpu=2)
            job = await client.wait_until(job["id"], lambda j: bool(j["command"]), "started")
            assert job["command"][-2:] == ["-i", "beamp"]
            done = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
            assert done["status"] == "finished", done
            assert done["progress"] == 100 and done["termination"] == "normal"
            assert (deck.parent / "beamp.frd").exists()

    async def test_input_error_fails_with_the_error_in_message(self, calculix_env: Env) -> None:
        from serv.daemon import Daemon

        async with Daemon(calculix_env.config()) as daemon, Client(daemon.url) as client:
            await client.subscribe()
            deck = calculix_case(calculix_env, "beamcr")
            job = await client.call("launch", solver="ccx", input=str(deck))
            done = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
            assert done["status"] == "failed" and done["termination"] == "error"
            assert "*ERROR" in done["message"] and "VISCO" in done["message"]

    async def test_non_convergence_fails_with_increment_size_message(self, calculix_env: Env) -> None:
        from serv.daemon import Daemon

        async with Daemon(calculix_env.config()) as daemon, Client(daemon.url) as client:
            await client.subscribe()
            deck = calculix_case(calculix_env, "beampiso_collapse")
            job = await client.call("launch", solver="ccx", input=str(deck), ncpu=2)
            running = await progress_above(client, job["id"], 1.0)
            assert running["status"] == "running" and running["details"]["step"] == 1
            done = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE * 2)
            assert done["status"] == "failed"
            assert "increment size smaller than minimum" in done["message"]


def allowed_cpus(pid: int) -> list[int]:
    from tests.e2e.test_resources import allowed_cpus as read

    return read(pid)


class TestMpiPinning:
    """The same LS-DYNA job under MPICH and under Intel MPI: each gets the pinning it honours."""

    @pytest.fixture
    def mpi_env(self, env: Env) -> Env:
        from tests.conftest import intel_mpiexec

        env.extra_config = (
            f'\n[solvers.fake-impi]\nfamily = "lsdyna"\nexecutable = "{env.bin_dir / "lsdyna-fake"}"\n'
            f'mpi = "intelmpi"\nmpiexec = "{intel_mpiexec()}"\n'
        )
        return env

    @pytest.mark.parametrize("solver", ["fake-mpp", "fake-impi"])
    async def test_ranks_are_pinned_one_per_allocated_core(self, mpi_env: Env, solver: str) -> None:
        from serv.daemon import Daemon

        async with Daemon(mpi_env.config()) as daemon, Client(daemon.url) as client:
            await client.subscribe()
            job = await client.call("launch", solver=solver, input=str(mpi_env.deck(wall_s=60)), ncpu=2)
            running = await client.wait_for(job["id"], "running")
            rank0 = psutil.Process(running["pid"])
            assert rank0.name() == "lsdyna-fake" and rank0.parent().name() == "hydra_pmi_proxy"
            from tests.e2e.test_resources import both_ranks

            ranks = await wait_until(lambda: both_ranks(rank0.parent()), "both ranks")
            assert sorted(allowed_cpus(p.pid) for p in ranks) == [[0], [1]]
            environ = rank0.environ()
            if solver == "fake-impi":
                assert environ["I_MPI_PIN_PROCESSOR_LIST"] == "0,1"
                assert "-bind-to" not in running["command"]
            else:
                assert "I_MPI_PIN_PROCESSOR_LIST" not in environ
                assert running["command"][3:5] == ["-bind-to", "user:0,1"]
            await client.call("stop", id=job["id"], force=True)
            await client.wait_for(job["id"], *ENDED)

    async def test_no_intel_mpi_core_allocation_leaves_intel_pinning_alone(self, mpi_env: Env) -> None:
        """--noIntelMpiCoreAllocation: no I_MPI_PIN_PROCESSOR_LIST and no mask from the daemon."""
        from dataclasses import replace

        from serv.daemon import Daemon

        config = mpi_env.config()
        config = replace(config, cores=replace(config.cores, intel_mpi_pinning=False))
        async with Daemon(config) as daemon, Client(daemon.url) as client:
            await client.subscribe()
            job = await client.call("launch", solver="fake-impi", input=str(mpi_env.deck(wall_s=60)), ncpu=1)
            running = await client.wait_for(job["id"], "running")
            assert "I_MPI_PIN_PROCESSOR_LIST" not in psutil.Process(running["pid"]).environ()
            launcher = psutil.Process(running["pid"]).parent().parent()
            assert allowed_cpus(launcher.pid) == [0, 1]
            await client.call("stop", id=job["id"], force=True)
            await client.wait_for(job["id"], *ENDED)


class TestNotificationRate:
    async def test_progress_notifications_stay_at_about_two_per_second(self, env: Env, client: Client) -> None:
        """A solver printing 50 lines a second still yields at most ~2 jobChanged per second."""
        deck = env.deck(wall_s=3, print_every_s=0.02)
        job = await client.call("launch", solver="fake-smp", input=str(deck))
        loop = asyncio.get_running_loop()
        stamps: list[float] = []
        while True:
            note = await client.next_notification("jobChanged", DEADLINE)
            if note["job"]["id"] != job["id"]:
                continue
            if note["job"]["status"] == "running":
                stamps.append(loop.time())
            if note["job"]["status"] in ENDED:
                break
        assert len(stamps) >= 3
        span = stamps[-1] - stamps[0]
        # Every window of one second holds at most 3 notifications (2 per tick period + the
        # status change itself).
        for i, start in enumerate(stamps):
            assert len([t for t in stamps[i:] if t - start < 1.0]) <= 3, stamps
        assert span > 0


class TestHfss:
    """HFSS family with a fake `ansysedt` that replays the recorded batch logs line by line."""

    @pytest.fixture
    def hfss_env(self, env: Env) -> Env:
        from tests.fakes import install_fake_ansysedt

        normal = install_fake_ansysedt(env.tmp / "hfssbin", SAMPLES / "hfss" / "aedt2026R1-siwave-syz-batchsolve-normal.log")
        partial = install_fake_ansysedt(
            env.tmp / "hfssbin2", SAMPLES / "hfss" / "aedt2025R2-hfss3dlayout-batchsolve-monitor-inprogress.log"
        )
        env.extra_config = (
            f'\n[solvers.hfss]\nfamily = "hfss"\nexecutable = "{normal}"\n'
            f'\n[solvers.hfss-partial]\nfamily = "hfss"\nexecutable = "{partial}"\n'
        )
        return env

    def project(self, env: Env, name: str) -> Path:
        folder = env.tmp / "runs" / name
        folder.mkdir(parents=True)
        path = folder / f"{name}.aedt"
        path.write_text("$begin 'AnsoftProject'\n$end 'AnsoftProject'\n")
        return path

    async def test_batch_solve_command_line_and_normal_completion(self, hfss_env: Env) -> None:
        from serv.daemon import Daemon

        async with Daemon(hfss_env.config()) as daemon, Client(daemon.url) as client:
            await client.subscribe()
            project = self.project(hfss_env, "pdn")
            job = await client.call(
                "launch", solver="hfss", input=str(project), ncpu=2,
                args=["design=board", "setup=Setup1", "batchoption=HFSS/HPCLicenseType=Pool"],
            )
            job = await client.wait_until(job["id"], lambda j: bool(j["command"]), "started")
            assert job["command"][1:] == [
                "-ng", "-monitor", "-machinelist", "list=localhost:1:2:90%",
                "-batchoptions", "'HFSS/HPCLicenseType'='Pool'",
                "-batchsolve", "board:Nominal:Setup1", str(project),
            ]
            running = await client.wait_for(job["id"], "running", *ENDED)
            assert running["status"] == "running"
            assert psutil.Process(running["pid"]).name() == "ansysedt"
            done = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
            assert done["status"] == "finished", done
            assert done["termination"] == "normal" and done["progress"] == 100
            assert done["details"]["sweep_solutions"] == 76

    async def test_adaptive_passes_are_reported_while_solving(self, hfss_env: Env) -> None:
        from serv.daemon import Daemon

        async with Daemon(hfss_env.config()) as daemon, Client(daemon.url) as client:
            await client.subscribe()
            job = await client.call("launch", solver="hfss-partial", input=str(self.project(hfss_env, "test1")))
            passes: list[int] = []
            while True:
                note = await client.next_notification("jobChanged", DEADLINE)
                seen = note["job"]
                if seen["id"] != job["id"]:
                    continue
                if "pass" in seen["details"]:
                    passes.append(seen["details"]["pass"])
                if seen["status"] in ENDED:
                    break
            assert passes and max(passes) == 8
            assert seen["details"]["converged"] is True
            assert seen["termination"] is None and seen["status"] == "finished"

    async def test_refused_hfss_args(self, hfss_env: Env) -> None:
        from serv.daemon import Daemon

        async with Daemon(hfss_env.config()) as daemon, Client(daemon.url) as client:
            project = self.project(hfss_env, "bad")
            for args in (["-batchsave"], ["design=a;rm"], ["setup=S1"]):
                response = await client.request("launch", {"solver": "hfss", "input": str(project), "args": args})
                assert response["error"]["code"] == -32602 and "args" in response["error"]["message"]
