"""A job's end leaves none of its processes behind: those still in the launcher's process
group are killed before the end is announced; those that left it (setsid) are found by
their tag in the next shared sweep, within LATE_SWEEP_S."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from serv.client import Client
from serv.daemon import Daemon
from serv.job_manager import LATE_SWEEP_S
from tests.conftest import DEADLINE, Env, install_script, kill_tagged, wait_until

ENDED = ("finished", "failed", "stopped", "cancelled")

# A solver that starts a helper and exits at once, as some pre-processors do. The helper's
# PID goes to a file so the test can watch it. argv[-1] is the input: "group" keeps the
# helper in the job's process group, "setsid" puts it in a session of its own.
FORKER = """\
import subprocess, sys, time
mode = open(sys.argv[-1]).read().strip()
helper = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(300)"],
    start_new_session=(mode == "setsid"),
)
open("helper.pid", "w").write(str(helper.pid))
print("forker done", flush=True)
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def forker_env(env: Env, tmp_path: Path) -> Env:
    script = install_script(tmp_path, "forker-solv", FORKER)
    env.extra_config = f"""
[solvers.forker]
family = "generic"
executable = "{script}"
process_names = ["forker"]
"""
    return env


def case(env: Env, mode: str) -> Path:
    folder = env.tmp / "runs" / mode
    folder.mkdir(parents=True)
    (folder / "case.txt").write_text(mode)
    return folder / "case.txt"


class TestLeftovers:
    daemon_id: str | None = None

    @pytest.fixture(autouse=True)
    def _kill_helpers(self) -> Iterator[None]:
        """Whatever the outcome, no helper of this test outlives it."""
        yield
        if self.daemon_id is not None:
            kill_tagged(self.daemon_id)

    async def run_forker(self, env: Env, mode: str) -> int:
        """Run one forker job to its end (it must finish); the PID of the helper it left."""
        async with Daemon(env.config()) as daemon, Client(daemon.url) as client:
            assert daemon.store is not None
            self.daemon_id = daemon.store.daemon_id
            await client.subscribe()
            deck = case(env, mode)
            job = await client.call("launch", solver="forker", input=str(deck))
            ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
            assert ended["status"] == "finished", ended
            helper = int((deck.parent / "helper.pid").read_text())
            if mode == "setsid":
                assert os.getsid(helper) == helper  # it really left the job's session
            # The daemon keeps running while the helper's fate is checked.
            await wait_until(lambda: not alive(helper), f"helper {helper} to die", timeout=LATE_SWEEP_S + DEADLINE)
        return helper

    async def test_a_helper_left_in_the_process_group_is_killed_before_the_end_is_announced(
        self, forker_env: Env, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="serv")
        helper = await self.run_forker(forker_env, "group")
        # Killed by the sweep at the job's end, not by the later shared one.
        assert any("leftover processes of the job" in r.getMessage() and str(helper) in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]

    async def test_a_helper_that_left_the_group_is_killed_by_the_shared_sweep(
        self, forker_env: Env, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="serv")
        helper = await self.run_forker(forker_env, "setsid")
        assert any("outside its process group" in r.getMessage() and str(helper) in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
