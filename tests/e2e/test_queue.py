"""Issue #5 item 3 end to end: the persistent priority queue — priorities, moveJob,
setPriority, dependencies, why each job waits, and the queue across kill -9 of the daemon."""

from __future__ import annotations

import os
import signal
from typing import Callable

import pytest

from serv.client import Client, RpcError
from tests.conftest import DEADLINE, DaemonProcess, Env, wait_until

ENDED = ("finished", "failed", "stopped", "cancelled")


async def block_all_cores(env: Env, client: Client) -> dict:
    """A long job on both cores so everything after it queues."""
    job = await client.call("launch", solver="fake-smp", input=str(env.deck("blocker", wall_s=120)), ncpu=2)
    return await client.wait_for(job["id"], "running")


async def start_order(client: Client, ids: list[int]) -> list[int]:
    """The order in which `ids` reach `starting`, from jobChanged notifications."""
    order: list[int] = []
    while len(order) < len(ids):
        note = await client.next_notification("jobChanged", DEADLINE)
        job = note["job"]
        if job["id"] in ids and job["status"] == "starting" and job["id"] not in order:
            order.append(job["id"])
    return order


class TestPriorityQueue:
    async def test_higher_priority_starts_first_then_submission_order(self, env: Env, client: Client) -> None:
        blocker = await block_all_cores(env, client)
        low = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)), priority=0)
        high = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)), priority=5)
        low2 = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)), priority=0)
        queue = [j["id"] for j in await client.call("listJobs", status="queued")]
        assert sorted(queue) == sorted([low["id"], high["id"], low2["id"]])
        assert (await client.call("getJob", id=high["id"]))["message"] == "waiting for 1 cores, 0 free"
        assert (await client.call("getJob", id=low["id"]))["message"] == "waiting for 1 cores, 0 free"
        await client.call("stop", id=blocker["id"], force=True)
        order = await start_order(client, [low["id"], high["id"], low2["id"]])
        assert order == [high["id"], low["id"], low2["id"]]

    async def test_move_job_and_set_priority_reorder_the_queue(self, env: Env, client: Client) -> None:
        blocker = await block_all_cores(env, client)
        a, b, c = [await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1))) for _ in range(3)]
        queue = await client.call("moveJob", id=c["id"], position=0)
        assert [j["id"] for j in queue] == [c["id"], a["id"], b["id"]]
        changed = await client.call("setPriority", id=b["id"], priority=10)
        assert changed["priority"] == 10
        with pytest.raises(RpcError) as err:
            await client.call("setPriority", id=blocker["id"], priority=1)
        assert err.value.code == 1002 and "running" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("moveJob", id=a["id"], position=-1)
        assert err.value.code == -32602
        await client.call("stop", id=blocker["id"], force=True)
        assert await start_order(client, [a["id"], b["id"], c["id"]]) == [b["id"], c["id"], a["id"]]

    async def test_moving_a_low_priority_job_ahead_takes_its_neighbours_priority(self, env: Env, client: Client) -> None:
        await block_all_cores(env, client)
        high = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)), priority=5)
        low = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)), priority=0)
        queue = await client.call("moveJob", id=low["id"], position=0)
        assert [j["id"] for j in queue] == [low["id"], high["id"]]
        assert queue[0]["priority"] == 5

    async def test_dependency_waits_then_runs_and_a_failed_one_cancels(self, env: Env, client: Client) -> None:
        first = await client.call("launch", solver="fake-smp", input=str(env.deck("first", wall_s=1)))
        after_ok = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)), after=[first["id"]])
        waits = f"waiting for job {first['id']}"
        await client.wait_until(after_ok["id"], lambda j: j["message"] == waits, "waiting for its dependency")
        failing = await client.call("launch", solver="fake-smp", input=str(env.deck("fail", wall_s=5, error_at_s=0.2)))
        doomed = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)), after=[failing["id"]])
        ok = await client.wait_for(after_ok["id"], *ENDED, timeout=DEADLINE)
        assert ok["status"] == "finished"
        assert (await client.call("getJob", id=first["id"]))["status"] == "finished"
        cancelled = await client.wait_for(doomed["id"], *ENDED, timeout=DEADLINE)
        assert cancelled["status"] == "cancelled"
        assert f"dependency job {failing['id']} ended failed" == cancelled["message"]

    async def test_stop_cancels_a_queued_job_and_the_next_one_moves_up(self, env: Env, client: Client) -> None:
        blocker = await block_all_cores(env, client)
        a = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)))
        b = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)))
        assert (await client.call("stop", id=a["id"]))["status"] == "cancelled"
        assert (await client.call("getJob", id=b["id"]))["message"] == "waiting for 1 cores, 0 free"
        await client.call("stop", id=blocker["id"], force=True)
        assert (await client.wait_for(b["id"], *ENDED))["status"] == "finished"


class TestQueueSurvivesCrash:
    async def test_kill9_with_a_populated_queue_keeps_order_and_priorities(
        self, env: Env, daemon_process: Callable[..., DaemonProcess]
    ) -> None:
        first = daemon_process()
        async with Client(first.start()) as client:
            await client.subscribe()
            blocker = await block_all_cores(env, client)
            ids = []
            for prio in (0, 3, 0, 3):
                job = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)), priority=prio)
                ids.append(job["id"])
            await client.call("moveJob", id=ids[2], position=0)
            before = [j["id"] for j in await client.call("moveJob", id=ids[2], position=0)]
        first.kill9()
        second = daemon_process()
        async with Client(second.start()) as client:
            await client.subscribe()
            for job_id in ids:
                assert (await client.call("getJob", id=job_id))["status"] == "queued"
            assert (await client.call("getJob", id=blocker["id"]))["status"] == "running"
            await client.call("stop", id=blocker["id"], force=True)
            assert await start_order(client, ids) == before


class TestReload:
    async def test_sighup_reloads_profiles_and_a_bad_file_is_refused(
        self, env: Env, daemon_process: Callable[..., DaemonProcess]
    ) -> None:
        proc = daemon_process()
        url = proc.start()
        async with Client(url) as client:
            names = {s["name"] for s in await client.call("listSolvers")}
            assert "late" not in names
            env.extra_config = f'\n[solvers.late]\nfamily = "generic"\nexecutable = "{env.bin_dir / "sleeper-solv"}"\n'
            env.config_path  # rewrites the file with the new profile
            assert proc.proc is not None
            os.kill(proc.proc.pid, signal.SIGHUP)
            await wait_until(lambda: any("configuration reloaded" in line for line in proc.log_lines), "the reload")
            assert "late" in {s["name"] for s in await client.call("listSolvers")}
            (env.tmp / "dynalauncher.toml").write_text("[watchdog]\ninterval_s = -1\n")
            os.kill(proc.proc.pid, signal.SIGHUP)
            await wait_until(lambda: any("reload refused" in line for line in proc.log_lines), "the refusal")
            assert "late" in {s["name"] for s in await client.call("listSolvers")}


class TestLongQueue:
    """A queue longer than the planning window: jobs deep in it say so, and get their real
    reason once planning reaches them."""

    async def test_jobs_behind_the_window_say_so_until_planning_reaches_them(self, env: Env, client: Client) -> None:
        from serv.job_manager import DEEP_IN_QUEUE, PLAN_WINDOW

        blocker = await block_all_cores(env, client)
        jobs = [
            await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)))
            for _ in range(PLAN_WINDOW + 2)
        ]
        last = jobs[-1]
        waits = "waiting for 1 cores, 0 free"
        await client.wait_until(jobs[PLAN_WINDOW - 1]["id"], lambda j: j["message"] == waits, "waiting")
        assert (await client.call("getJob", id=last["id"]))["message"] == DEEP_IN_QUEUE
        for job in jobs[:3]:
            assert (await client.call("stop", id=job["id"]))["status"] == "cancelled"
        await client.wait_until(last["id"], lambda j: j["message"] == waits, "reached by planning")
        await client.call("stop", id=blocker["id"], force=True)
        for job in jobs[3:]:
            await client.call("stop", id=job["id"])
