"""contract.md § Methods `launch`, § Job, § Files: a job runs, its real PID and cores are known."""

from __future__ import annotations

import json

import psutil

from serv.client import Client
from tests.conftest import DEADLINE, Env


class TestSmpLaunch:
    """An LS-DYNA SMP job from launch to its normal end."""

    async def test_smp_job_runs_to_finished_with_real_pid_and_pinned_cores(self, env: Env, client: Client) -> None:
        """The job gets the solver's own PID, a pid file, pinned cores, then ends finished."""
        deck = env.deck(wall_s=1.0, endtim=0.01)
        job = await client.call("launch", solver="fake-smp", input=str(deck), ncpu=1)
        assert job["status"] in ("queued", "starting", "running")
        running = await client.wait_for(job["id"], "running", timeout=DEADLINE)
        proc = psutil.Process(running["pid"])
        assert proc.name() == "lsdyna-fake"
        assert running["allocated_cores"] and len(running["allocated_cores"]) == 1
        assert proc.cpu_affinity() == running["allocated_cores"]
        lines = (deck.parent / "pid").read_text().splitlines()
        assert int(lines[0]) == running["pid"]
        assert json.loads(lines[1]) == {"cores": running["allocated_cores"]}
        done = await client.wait_for(job["id"], "finished", "failed", "stopped", timeout=DEADLINE)
        assert done["status"] == "finished", done
        assert done["termination"] == "normal"
        assert done["exit_code"] == 0
        assert "N o r m a l" in (deck.parent / "stdout").read_text()
        status = await client.call("getCoreAllocationStatus")
        assert all(core["job_id"] != job["id"] for core in status["cores"])
