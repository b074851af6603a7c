"""A GUI opened after the daemon ran and queued jobs with no GUI connected (protocol §1.6: the
GUI asks for the job list, the queue and the shells when it mounts, then lives on
notifications), with both real Socket.IO clients and jobs launched through the new API."""

from __future__ import annotations

from pathlib import Path

import pytest

from serv.client import Client
from serv.daemon import Daemon
from tests.conftest import Env, wait_until
from tests.legacy.conftest import open_gui

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("kind", ["python", "node"])
async def test_a_gui_opened_late_sees_the_jobs_shells_and_queue(
    kind: str, legacy_env: Env, legacy_daemon: Daemon
) -> None:
    """Two jobs ended, one runs on both cores and two wait, all while no GUI was connected:
    the GUI that connects then gets their shells with all their output, the queue in order
    and the job list, and afterwards the notifications of a GUI that had been there: the
    waiting jobs' addJob (once, first) and setQueue as they start, update_data of the
    running one, and no addJob for a job it already holds."""
    env, gw = legacy_env, legacy_daemon.legacy
    assert gw is not None
    async with Client(legacy_daemon.url) as api:
        await api.subscribe("jobs")
        ended = []
        for i in range(2):
            job = await api.call("launch", solver="fake-smp", input=str(env.deck(f"late-done{i}", wall_s=0.3)),
                                 ncpu=1, memory="20m")
            ended.append(job["id"])
        for job_id in ended:
            await api.wait_for(job_id, "finished")
        long = await api.call("launch", solver="fake-smp", input=str(env.deck("late-long", wall_s=30.0)),
                              ncpu=2, memory="20m")
        await api.wait_for(long["id"], "running")
        waiting = [await api.call("launch", solver="fake-smp", input=str(env.deck(f"late-q{i}", wall_s=0.3)),
                                  ncpu=1, memory="20m") for i in range(2)]
        # All of the ended jobs' output reached the gateway with nobody to send it to.
        for job_id in ended:
            text = (Path((await api.call("getJob", id=job_id))["workdir"]) / "stdout").read_text()
            await wait_until(lambda job_id=job_id, text=text: gw.shells[job_id].stdout == text,
                             f"job {job_id}'s whole stdout kept")
        assert not gw.sessions

        gui = await open_gui(kind, legacy_daemon)
        try:
            tags = [gui.request("getFullJobList"), gui.request("getQueue"), gui.request("getRunningShells")]
            await gui.connect()
            table, queue, shells = [await gui.result(t) for t in tags]

            assert set(shells) == {str(i) for i in [*ended, long["id"]]}
            for job_id in ended:
                shell = shells[str(job_id)]
                assert shell["status"] == "Finished" and shell["stdout"] == gw.shells[job_id].stdout
                assert "N o r m a l" in shell["stdout"]
            running = shells[str(long["id"])]
            assert running["status"] == "Running" and running["pid"] == (await api.call("getJob", id=long["id"]))["pid"]
            assert [r["id"] for r in queue] == [j["id"] for j in waiting]
            assert [r["position"] for r in queue] == [0, 1]
            rows = {r["id"]: r for r in table}
            assert {*ended, long["id"]} <= set(rows) and not {j["id"] for j in waiting} & set(rows)
            for job_id in ended:  # the list and the shells show the same record
                assert rows[job_id] == {k: v for k, v in shells[str(job_id)].items() if k != "stdout"}

            # From now on it hears what a GUI connected all along would hear.
            assert await gui.call("KillProcessByJobId", {"id": long["id"]}) is None
            await gui.wait_for(lambda: "Stopped" in gui.statuses(long["id"]), "the long job Stopped")
            for job in waiting:
                await gui.wait_for(lambda job=job: "Finished" in gui.statuses(job["id"]), f"job {job['id']} Finished")
            await gui.wait_for(lambda: any(q == [] for q in gui.queue_broadcasts()), "setQueue with an empty queue")
            known = {int(i) for i in shells} | {row["id"] for row in table}
            for job in waiting:
                notes = gui.job_notifications(job["id"])
                assert notes[0]["method"] == "addJob"
                assert [n["method"] for n in notes].count("addJob") == 1
                assert "N o r m a l" in gui.stdout(job["id"])
            assert not [n for n in gui.notifications("addJob") if n["params"]["job"]["id"] in known]
            # The queue broadcasts only ever shrink from what getQueue gave: the jobs start.
            for broadcast in gui.queue_broadcasts():
                assert {r["id"] for r in broadcast} <= {r["id"] for r in queue}
        finally:
            await gui.close()
