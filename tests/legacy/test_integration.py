"""The one job model from the other side (a new-API job in the GUI), licences through the
LSTC tools or the configured pool, cleanFolder, and solvers under [legacy] solver_dirs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from serv.client import Client
from serv.daemon import Daemon
from tests.conftest import Env
from tests.legacy.conftest import GUI_TEMPLATE_SMP, GuiError, PyGui, http_url, job_data, open_gui

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("kind", ["python", "node"])
async def test_new_api_job_appears_in_the_gui(kind: str, env: Env, daemon: Daemon) -> None:
    gui = await open_gui(kind, daemon)
    try:
        await gui.connect()
        deck = env.deck("api-job", wall_s=1.0)
        async with Client(daemon.url) as api:
            job = await api.call("launch", solver="fake-smp", input=str(deck), ncpu=1, memory="20m")
        job_id = job["id"]
        await gui.wait_for(lambda: "Finished" in gui.statuses(job_id), "the API job Finished in the GUI")
        added = gui.notifications("addJob", job_id)
        assert len(added) == 1 and gui.job_notifications(job_id)[0]["method"] == "addJob"
        record = added[0]["params"]["job"]
        assert record["solver"] == str(env.bin_dir / "lsdyna-fake")
        assert record["expr"] == "$SOLVER i=$INPUT ncpu=$NCPU memory=$MEMORY"
        assert record["memory"] == "20m" and record["ncpu"] == 1
        assert "N o r m a l" in gui.stdout(job_id)
        # it started at once: if a (debounced) setQueue showed it queued, a later one cleared it
        queues = gui.queue_broadcasts()
        assert not queues or not any(r["id"] == job_id for r in queues[-1])
        progress = [n["params"]["payload"]["progress"] for n in gui.notifications("update_data", job_id)
                    if n["params"]["payload"].get("progress") is not None]
        assert progress and progress[-1] == 100
        shells = await gui.call("getRunningShells")
        assert shells[str(job_id)]["status"] == "Finished"
        assert "N o r m a l" in shells[str(job_id)]["stdout"]
        table = await gui.call("getFullJobList")
        assert table[0]["id"] == job_id and table[0]["status"] == "Finished"
    finally:
        await gui.close()


async def test_licences_and_lstc_tools(legacy_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    record = legacy_env.tmp / "lstc-calls.jsonl"
    monkeypatch.setenv("FAKE_LSTC_RECORD", str(record))
    async with Daemon(legacy_env.config()) as daemon:
        gui = PyGui(http_url(daemon))
        try:
            await gui.connect()
            assert await gui.call("getLicCount") == [384, 600, 0]
            rows = await gui.call("getQrunJobs")
            assert rows == [
                {"user": "hna", "host": "84212@o0284.ten.osc.ed", "program": "MPPDYNA",
                 "started": "Tue Mar 17 16:18", "procs": "28", "jobs": "", "josbs": ""},
                {"user": "sciappst", "host": "85606@o0579.ten.osc.ed", "program": "MPPDYNA",
                 "started": "Tue Mar 17 16:22", "procs": "10", "jobs": "", "josbs": ""},
            ]
            assert await gui.call("qKillJob", {"host": "84212@o0284.ten.osc.ed"}) == {
                "success": True, "message": "Program queued for termination"}
            refused = await gui.call("qKillJob", {"host": "1@h; rm -rf /"})
            assert refused["success"] is False and "refused" in refused["message"]
        finally:
            await gui.close()
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert {"role": "qrun", "argv": ["-r"]}.items() <= calls[0].items()
    assert [c["argv"] for c in calls if c["role"] == "qkill"] == [["84212@o0284.ten.osc.ed"]]


async def test_licence_count_without_lstc(env: Env) -> None:
    env.extra_config += "\n[licenses]\nlsdyna = 8\n"
    async with Daemon(env.config()) as daemon:
        gui = PyGui(http_url(daemon))
        try:
            await gui.connect()
            assert await gui.call("getLicCount") == [0, 8, 0]
            assert await gui.call("getQrunJobs") == []
            assert (await gui.call("qKillJob", {"host": "1@h"}))["success"] is False
            deck = env.deck("lic", wall_s=30.0)
            started = await gui.call("startJob", {"job_data": job_data(deck, env.bin_dir / "lsdyna-fake", ncpu=1,
                                                                       expr=GUI_TEMPLATE_SMP, memory=""),
                                                  "clean_all": False})
            assert await gui.call("getLicCount") == [1, 8, 0]
            assert await gui.call("KillProcessByJobId", {"id": started["id"]}) is None
            await gui.wait_for(lambda: "Stopped" in gui.statuses(started["id"]), "Stopped")
            assert await gui.call("getLicCount") == [0, 8, 0]
        finally:
            await gui.close()


async def test_clean_folder(env: Env, daemon: Daemon) -> None:
    gui = PyGui(http_url(daemon))
    try:
        await gui.connect()
        deck = env.deck("clean", wall_s=30.0)
        for name in ("d3plot", "glstat", "include.key"):
            (deck.parent / name).write_text(name)
        assert await gui.call("cleanFolder", {"input": str(deck)}) is None  # legacy: always -32603
        assert sorted(p.name for p in deck.parent.iterdir()) == ["include.key", "main.k"]
        with pytest.raises(GuiError) as outside:
            await gui.call("cleanFolder", {"input": "/etc/passwd"})
        assert outside.value.code == 10
        started = await gui.call("startJob", {"job_data": job_data(deck, env.bin_dir / "lsdyna-fake", ncpu=1,
                                                                   expr=GUI_TEMPLATE_SMP, memory=""),
                                              "clean_all": True})
        with pytest.raises(GuiError) as busy:
            await gui.call("cleanFolder", {"input": str(deck)})
        assert busy.value.code == 10 and "running" in busy.value.message
        with pytest.raises(GuiError) as twice:
            await gui.call("startJob", {"job_data": job_data(deck, env.bin_dir / "lsdyna-fake", ncpu=1,
                                                             expr=GUI_TEMPLATE_SMP, memory=""), "clean_all": True})
        assert twice.value.message == "Job is already running."
        await gui.call("KillProcessByJobId", {"id": started["id"]})
    finally:
        await gui.close()


async def test_solver_under_solver_dirs(env: Env) -> None:
    extra = env.tmp / "site-solvers"
    extra.mkdir()
    alt = extra / "lsdyna-alt"
    shutil.copy(env.bin_dir / "lsdyna-fake", alt)
    alt.chmod(0o755)
    env.extra_config += f'\n[legacy]\nsolver_dirs = ["{extra}"]\n'
    async with Daemon(env.config()) as daemon:
        gui = PyGui(http_url(daemon))
        try:
            await gui.connect()
            assert await gui.call("fileExists", {"input": str(alt)}) is True
            deck = env.deck("alt", wall_s=0.5)
            started = await gui.call("startJob", {"job_data": job_data(deck, alt, ncpu="1",
                                                                       expr=GUI_TEMPLATE_SMP, memory=""),
                                                  "clean_all": True})
            await gui.wait_for(lambda: "Finished" in gui.statuses(started["id"]), "Finished")
            async with Client(daemon.url) as api:
                job = await api.call("getJob", id=started["id"])
            assert job["solver"] == "legacy:lsdyna-alt" and job["command"][0] == str(alt)
            await daemon.reload(env.config)  # SIGHUP: the derived profile survives a reload
            assert daemon.manager is not None and "legacy:lsdyna-alt" in daemon.manager.config.solvers
        finally:
            await gui.close()
    assert Path(alt).exists()
