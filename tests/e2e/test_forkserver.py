"""The fork server: real launchers started by the helper process, their exits reported with
the code, the helper's loss survived, and the daemon's death leaving the jobs running."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, AsyncIterator

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serv.client import Client
from serv.daemon import Daemon
from serv.platform import forkserver
from serv.platform.forkserver import ForkServer, HelperUnavailable, RemoteChild, SpawnerLost
from serv.platform.spawn_request import SpawnRequest
from serv.platform.spawning import HelperFirst, PopenChild
from tests.conftest import DEADLINE, Env, wait_until

ENDED = ("finished", "failed", "stopped", "cancelled")
ROOT = Path(__file__).resolve().parents[2]


def req(argv: list[str], folder: Path, out: str = "stdout", **rest: Any) -> SpawnRequest:
    """A spawn in `folder` with its output in `folder/out`."""
    return SpawnRequest(tuple(argv), folder, folder / out, **rest)


@pytest.fixture
async def server() -> AsyncIterator[ForkServer]:
    fs = ForkServer()
    try:
        yield fs
    finally:
        await fs.close()


def exited_with(child: RemoteChild | PopenChild) -> asyncio.Future[int | None]:
    """A future for the code `child`'s exit is reported with."""
    future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    def ended(code: int | None) -> None:
        if not future.done():
            future.set_result(code)

    child.watch(ended)
    return future


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def gone(pid: int) -> None:
    """Wait (pidfd, under the deadline) until `pid` has ended; it is not our child."""
    fd = os.pidfd_open(pid)
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, ended.set)
    try:
        await asyncio.wait_for(ended.wait(), DEADLINE)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class TestSpawn:
    async def test_argv_folder_environment_output_and_exit_code(self, server: ForkServer, tmp_path: Path) -> None:
        """The job runs in its folder with the daemon's environment plus its own variables,
        stdout and stderr in its file, and its exit code comes back."""
        os.environ["DYNALAUNCHER_TEST_BASE"] = "from-daemon"
        try:
            child = await server.spawn(req(
                ["/bin/sh", "-c", 'echo "$DYNALAUNCHER_TEST_BASE $OWN $(pwd)"; echo err >&2; exit 3'],
                tmp_path, env={"OWN": "job-var"},
            ))
        finally:
            del os.environ["DYNALAUNCHER_TEST_BASE"]
        assert await asyncio.wait_for(exited_with(child), DEADLINE) == 3
        assert (tmp_path / "stdout").read_text() == f"from-daemon job-var {tmp_path}\nerr\n"

    async def test_identity_session_pinning_and_signals_of_the_child(self, server: ForkServer, tmp_path: Path) -> None:
        """The create time is psutil's; the child leads a session of its own, runs on the
        cores asked for from the start, and gets SIGPIPE with its default action (Python
        ignores it in the helper); a kill reports the signal like Popen (-9)."""
        cores = sorted(os.sched_getaffinity(0))[-1:]
        child = await server.spawn(req(["sleep", "60"], tmp_path, cores=tuple(cores)))
        ended = exited_with(child)
        try:
            assert child.create_time == psutil.Process(child.pid).create_time()
            assert os.getsid(child.pid) == child.pid
            assert os.sched_getaffinity(child.pid) == set(cores)
            status = Path(f"/proc/{child.pid}/status").read_text()
            ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
            assert not ignored & (1 << (signal.SIGPIPE - 1))
            assert psutil.Process(child.pid).ppid() == server.helper_pid
        finally:
            kill(child.pid)
        assert await asyncio.wait_for(ended, DEADLINE) == -signal.SIGKILL

    async def test_program_is_looked_up_on_the_jobs_path(self, server: ForkServer, tmp_path: Path) -> None:
        tools = tmp_path / "tools"
        tools.mkdir()
        (tools / "only-here").write_text("#!/bin/sh\necho found\n")
        (tools / "only-here").chmod(0o755)
        child = await server.spawn(req(["only-here"], tmp_path, env={"PATH": f"{tools}:/usr/bin:/bin"}))
        assert await asyncio.wait_for(exited_with(child), DEADLINE) == 0
        assert (tmp_path / "stdout").read_text() == "found\n"

    @pytest.mark.parametrize(
        ("argv", "folder", "number"),
        [
            (["no-such-program-xyz"], ".", errno.ENOENT),
            (["/no/such/program"], ".", errno.ENOENT),
            (["/bin/true"], "missing-folder", errno.ENOENT),
            (["./not-executable"], ".", errno.EACCES),
        ],
    )
    async def test_a_spawn_that_cannot_happen_raises_oserror_and_the_helper_goes_on(
        self, server: ForkServer, tmp_path: Path, argv: list[str], folder: str, number: int
    ) -> None:
        (tmp_path / "not-executable").write_text("#!/bin/sh\n")
        with pytest.raises(OSError) as raised:
            await server.spawn(SpawnRequest(tuple(argv), tmp_path / folder, tmp_path / "stdout"))
        assert raised.value.errno == number
        assert not isinstance(raised.value, SpawnerLost)
        child = await server.spawn(req(["/bin/true"], tmp_path, out="out2"))
        assert await asyncio.wait_for(exited_with(child), DEADLINE) == 0

    async def test_many_at_once_each_reply_goes_to_its_request(self, server: ForkServer, tmp_path: Path) -> None:
        folders = [tmp_path / f"j{i}" for i in range(40)]
        for folder in folders:
            folder.mkdir()
        children = await asyncio.gather(*(
            server.spawn(req(["/bin/sh", "-c", f"echo {i}; exit {i % 7}"], folder))
            for i, folder in enumerate(folders)
        ))
        codes = await asyncio.wait_for(asyncio.gather(*(exited_with(c) for c in children)), DEADLINE)
        assert codes == [i % 7 for i in range(40)]
        assert [(f / "stdout").read_text() for f in folders] == [f"{i}\n" for i in range(40)]


class TestHelperLoss:
    async def test_running_children_are_still_watched_and_the_next_spawn_starts_a_new_helper(
        self, server: ForkServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        child = await server.spawn(req(["sleep", "60"], tmp_path))
        ended = exited_with(child)
        first = server.helper_pid
        assert first is not None
        with caplog.at_level(logging.ERROR, logger="serv.platform.forkserver"):
            kill(first)
            await wait_until(lambda: server.helper_pid is None, "the loss noticed")
        assert "the spawn helper (pid %d) ended" % first in caplog.text
        assert psutil.Process(child.pid).is_running()  # the job runs on
        assert not ended.done()
        kill(child.pid)
        assert await asyncio.wait_for(ended, DEADLINE) is None  # ended; the code went with the helper
        again = await server.spawn(req(["/bin/true"], tmp_path, out="out2"))
        assert server.helper_pid not in (None, first)
        assert await asyncio.wait_for(exited_with(again), DEADLINE) == 0

    async def test_a_spawn_outstanding_when_the_helper_dies_fails_with_spawner_lost(
        self, server: ForkServer, tmp_path: Path
    ) -> None:
        warm = await server.spawn(req(["/bin/true"], tmp_path))
        await asyncio.wait_for(exited_with(warm), DEADLINE)
        helper = server.helper_pid
        assert helper is not None
        os.kill(helper, signal.SIGSTOP)  # it cannot answer
        pending = asyncio.ensure_future(
            server.spawn(req(["/bin/true"], tmp_path))
        )
        await asyncio.sleep(0)  # the request is written
        kill(helper)
        with pytest.raises(SpawnerLost):
            await asyncio.wait_for(pending, DEADLINE)

    async def test_a_helper_that_stops_answering_is_killed_and_replaced(
        self, server: ForkServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A stuck helper (stopped here; a hung network drive in life) fails the spawn it holds
        after spawn_timeout_s, is killed, and the next spawn gets a new helper; a job it had
        started runs on and its end is still seen."""
        server.spawn_timeout_s = 2.0  # far above a spawn's few ms, even on a loaded machine
        running = await server.spawn(req(["sleep", "60"], tmp_path))
        ended = exited_with(running)
        stuck = server.helper_pid
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)
        with caplog.at_level(logging.ERROR, logger="serv.platform.forkserver"):
            with pytest.raises(SpawnerLost, match="did not answer"):
                await asyncio.wait_for(server.spawn(req(["/bin/true"], tmp_path, out="o2")), DEADLINE)
        assert "has not answered a spawn" in caplog.text
        await gone(stuck)
        assert psutil.Process(running.pid).is_running()
        again = await server.spawn(req(["/bin/true"], tmp_path, out="o3"))
        assert server.helper_pid not in (None, stuck)
        assert await asyncio.wait_for(exited_with(again), DEADLINE) == 0
        kill(running.pid)
        assert await asyncio.wait_for(ended, DEADLINE) is None

    async def test_helper_ends_when_the_daemon_dies_and_the_job_runs_on(self, tmp_path: Path) -> None:
        """kill -9 of the process holding the ForkServer: the helper reads EOF and exits, the
        launcher it started (own session) keeps running."""
        script = textwrap.dedent(f"""\
            import asyncio, os, sys
            sys.path.insert(0, {str(ROOT)!r})
            from pathlib import Path
            from serv.platform.forkserver import ForkServer
            from serv.platform.spawn_request import SpawnRequest
            async def main():
                fs = ForkServer()
                folder = Path({str(tmp_path)!r})
                child = await fs.spawn(SpawnRequest(("sleep", "60"), folder, folder / "stdout"))
                print(fs.helper_pid, child.pid, flush=True)
                await asyncio.sleep(60)
            asyncio.run(main())
            """)
        owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert owner.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(owner.stdout.readline), DEADLINE)
            helper, job = (int(x) for x in line.split())
            owner.send_signal(signal.SIGKILL)
            owner.wait(timeout=DEADLINE)
            await gone(helper)
            assert psutil.Process(job).status() != psutil.STATUS_ZOMBIE
        finally:
            owner.kill()
            if "job" in locals():
                kill(job)


class TestFallback:
    async def test_threads_start_the_jobs_when_the_helper_cannot_start(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
        spawner = HelperFirst()
        try:
            with caplog.at_level(logging.WARNING, logger="serv.platform.spawning"):
                child = await spawner.spawn(req(["/bin/sh", "-c", "exit 5"], tmp_path))
            assert isinstance(child, PopenChild)
            assert "starting jobs from the daemon's threads instead" in caplog.text
            assert await asyncio.wait_for(exited_with(child), DEADLINE) == 5
        finally:
            await spawner.close()

    async def test_start_failure_is_helper_unavailable(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
        fs = ForkServer()
        with pytest.raises(HelperUnavailable, match="could not be started"):
            await fs.spawn(req(["/bin/true"], tmp_path))
        await fs.close()


class TestThroughTheDaemon:
    async def test_a_job_whose_helper_died_still_ends_and_frees_its_cores(
        self, env: Env, client: Client, daemon: Daemon
    ) -> None:
        job = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(60)), ncpu=1)
        running = await client.wait_for(job["id"], "running", timeout=DEADLINE)
        assert daemon.manager is not None
        spawner = daemon.manager._spawner
        assert isinstance(spawner, HelperFirst)
        helper = spawner.helper_pid
        assert helper is not None and psutil.Process(running["pid"]).ppid() == helper
        kill(helper)
        await wait_until(lambda: spawner.helper_pid is None, "the loss noticed")
        kill(running["pid"])
        ended = await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
        assert ended["status"] in ("failed", "stopped", "finished")
        status = await client.call("getCoreAllocationStatus")
        assert all(core["job_id"] != job["id"] for core in status["cores"])
        again = await client.call("launch", solver="sleeper", input=str(env.sleeper_input(0.1)), ncpu=1)
        assert (await client.wait_for(again["id"], *ENDED, timeout=DEADLINE))["status"] == "finished"
        assert spawner.helper_pid not in (None, helper)


@given(st.lists(st.tuples(st.text(max_size=50), st.integers()), max_size=8), st.lists(st.integers(1, 64), max_size=30))
def test_messages_survive_any_split_of_the_stream(payloads: list[tuple[str, int]], cuts: list[int]) -> None:
    stream = b"".join(forkserver._frame(("m", i, p)) for i, p in enumerate(payloads))
    buffer = bytearray()
    got: list[tuple[object, ...]] = []
    at = 0
    for cut in cuts:
        buffer += stream[at : at + cut]
        at += cut
        got += forkserver._unframe(buffer)
    buffer += stream[at:]
    got += forkserver._unframe(buffer)
    assert got == [("m", i, p) for i, p in enumerate(payloads)]
    assert not buffer
