"""Issue #5 item 2 end to end: static licence pools and live counts from a (fake)
lstc_qrun printing recorded output; jobs wait for licences and say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from serv.client import Client, RpcError
from serv.daemon import Daemon
from tests.conftest import DEADLINE, Env

ENDED = ("finished", "failed", "stopped", "cancelled")
LSTC = Path(__file__).resolve().parents[3] / "shared" / "samples" / "lstc"


class TestStaticPool:
    async def test_jobs_wait_for_licences_and_start_when_freed(self, env: Env) -> None:
        """[licenses] lsdyna = 1: a second LS-DYNA job waits for the licence, not for cores."""
        env.extra_config = "\n[licenses]\nlsdyna = 1\n"
        async with Daemon(env.config()) as daemon, Client(daemon.url) as client:
            await client.subscribe()
            first = await client.call("launch", solver="fake-smp", input=str(env.deck("a", wall_s=60)))
            await client.wait_for(first["id"], "running")
            second = await client.call("launch", solver="fake-smp", input=str(env.deck("b", wall_s=0.3)))
            assert second["status"] == "queued"
            await client.wait_until(
                second["id"], lambda j: j["message"] == "waiting for 1 lsdyna licences, 0 free", "waiting"
            )
            # A job drawing no licence may not take the one free core: the head needs it the
            # moment a licence frees (backfill never delays the head).
            other = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)))
            behind = f"waiting behind job {second['id']} (1 cores)"
            await client.wait_until(other["id"], lambda j: j["message"] == behind, "waiting behind")
            health = await client.call("getSystemHealth")
            assert {"pool": "lsdyna", "size": 1, "held": 1, "free": 0}.items() <= health["licenses"][0].items()
            await client.call("stop", id=first["id"], force=True)
            assert (await client.wait_for(second["id"], *ENDED, timeout=DEADLINE))["status"] == "finished"
            assert (await client.wait_for(other["id"], *ENDED, timeout=DEADLINE))["status"] == "finished"

    async def test_demand_above_the_pool_is_1005(self, env: Env) -> None:
        env.extra_config = "\n[licenses]\nlsdyna = 1\n"
        async with Daemon(env.config()) as daemon, Client(daemon.url) as client:
            with pytest.raises(RpcError) as err:
                await client.call("launch", solver="fake-smp", input=str(env.deck()), ncpu=2)
            assert err.value.code == 1005 and "lsdyna" in err.value.message
            with pytest.raises(RpcError) as err:
                await client.call("launch", solver="fake-smp", input=str(env.deck()), licenses={"abaqus": 1})
            assert err.value.code == 1005 and "abaqus" in err.value.message


class TestLicenceServer:
    async def test_licences_used_by_others_on_the_server_count_as_used(self, env: Env) -> None:
        """The recorded server shows 384 of 600 lsdyna licences used by others: 216 are free."""
        from tests.fakes import install_fake_lstc

        qrun, qkill = install_fake_lstc(
            env.tmp / "lstcbin",
            qrun_r=LSTC / "lstc_qrun-r-license-information-600.txt",
            qrun=LSTC / "lstc_qrun-running-programs.txt",
        )
        env.extra_config = f'\n[licenses]\nlsdyna = 600\n[lstc]\nqrun = "{qrun}"\nqkill = "{qkill}"\npoll_interval_s = 0.2\n'
        async with Daemon(env.config()) as daemon, Client(daemon.url) as client:
            await client.subscribe()
            assert daemon.manager is not None
            await daemon.manager.poll_licences_once()
            health = await client.call("getSystemHealth")
            pool = health["licenses"][0]
            assert (pool["server_max"], pool["used_by_others"], pool["free"]) == (600, 384, 216)
            big = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=0.3)), licenses={"lsdyna": 217})
            assert big["status"] == "queued"
            await client.wait_until(
                big["id"], lambda j: j["message"] == "waiting for 217 lsdyna licences, 216 free", "waiting"
            )
            await client.call("stop", id=big["id"])
            fits = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=0.3)), licenses={"lsdyna": 216})
            assert (await client.wait_for(fits["id"], *ENDED, timeout=DEADLINE))["status"] == "finished"

    async def test_a_failing_licence_server_is_reported_not_fatal(self, env: Env) -> None:
        env.extra_config = f'\n[lstc]\nqrun = "{env.tmp / "nope"}"\npoll_interval_s = 0.2\n'
        async with Daemon(env.config()) as daemon, Client(daemon.url) as client:
            assert daemon.manager is not None
            await daemon.manager.poll_licences_once()
            health = await client.call("getSystemHealth")
            assert health["licence_server_error"] and "nope" in health["licence_server_error"]
            await client.subscribe()
            job = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=0.2)))
            assert (await client.wait_for(job["id"], *ENDED))["status"] == "finished"
