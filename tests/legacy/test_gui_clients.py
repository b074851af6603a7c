"""The DynaLauncher desktop GUI's whole session against the daemon, with two real Socket.IO
clients (python-socketio and Node's socket.io-client + json-rpc-2.0), protocol §9.1:
requests queued before connect, lists, licences, a GUI-shaped startJob of the fake LS-DYNA,
live notifications in order, the queue commands, sw1, kill, removeShell, a refused template,
and the one job model seen through the new JSON-RPC API."""

from __future__ import annotations

import pytest

from serv.client import Client
from serv.daemon import Daemon
from tests.conftest import Env
from tests.legacy.conftest import (
    GUI_TEMPLATE_SMP,
    GuiBase,
    GuiError,
    job_data,
    open_gui,
)

pytestmark = pytest.mark.timeout(180)


def assert_protocol_invariants(gui: GuiBase) -> None:
    """§9.1 "what to assert": notifications never carry id; every answer echoes a sent id;
    addJob comes once per job and before every other notification of that job."""
    sent_ids = {e["request"]["id"] for e in gui.events if e["kind"] == "sent"}
    for note in gui.notifications():
        assert "id" not in note, note
        assert note["jsonrpc"] == "2.0"
    for answer in gui.responses():
        assert answer["id"] in sent_ids and isinstance(answer["id"], int), answer
    assert sent_ids and min(sent_ids) == 1
    seen: dict[int, int] = {}
    for index, note in enumerate(gui.notifications()):
        if note["method"] == "addJob":
            job_id = note["params"]["job"]["id"]
            assert job_id not in seen, f"second addJob for job {job_id}"
            seen[job_id] = index
        elif note["method"] in ("update_data", "appendToShell"):
            job_id = note["params"]["id"]
            assert isinstance(job_id, int)
            assert job_id in seen, f"{note['method']} of job {job_id} before its addJob"
    assert not [e for e in gui.events if e["kind"] == "unparsable"]


@pytest.mark.parametrize("kind", ["python", "node"])
async def test_gui_session(kind: str, legacy_env: Env, legacy_daemon: Daemon) -> None:
    env = legacy_env
    solver = env.bin_dir / "lsdyna-fake"
    gui = await open_gui(kind, legacy_daemon)
    try:
        # 1. the GUI's mount-time burst, queued before the connection exists (§1.6)
        tags = [gui.request("getFullJobList"), gui.request("getQueue"),
                gui.request("getRunningShells"), gui.request("getLicCount"),
                gui.request("getFreeSpace", {"disk": "C:"})]
        await gui.connect()
        jobs, queue, shells, licences, disk = [await gui.result(t) for t in tags]
        assert jobs == [] and queue == [] and shells == {}
        assert licences == [384, 600, 0]  # the recorded lstc_qrun -r output (600 licences)
        assert disk[0] == "C:" and all(isinstance(v, float) for v in disk[1:]) and disk[2] >= disk[1] > 0

        # 2. the send flow of LauncherForm (§5.1): checks, then startJob
        deck = env.deck("gui-main", wall_s=30.0, endtim=0.01)
        (deck.parent / "d3plot").write_text("old results\n")
        data = job_data(deck, solver, ncpu="2")
        assert await gui.call("fileExists", {"input": str(deck)}) is True
        assert await gui.call("fileExists", {"input": str(solver)}) is True
        assert await gui.call("fileExists", {"input": str(deck.parent / "nope.k")}) is False
        assert await gui.call("isjobRunning", {"input": str(deck)}) is False
        assert await gui.call("isInQueue", {"input": str(deck)}) is False
        assert await gui.call("isFolderEmpty", {"input_file": str(deck)}) is False  # d3plot there
        started = await gui.call("startJob", {"job_data": data, "clean_all": True})
        job_id = started["id"]
        assert isinstance(job_id, int) and started["ncpu"] == "2"
        assert not (deck.parent / "d3plot").exists() and deck.exists()  # cleaned, deck kept

        # 3. live notifications: addJob first, then progress and output
        await gui.wait_for(lambda: any(
            (n["params"]["payload"].get("progress") or 0) > 0
            for n in gui.notifications("update_data", job_id)), "update_data with progress > 0")
        await gui.wait_for(lambda: gui.stdout(job_id), "appendToShell output")
        first = gui.job_notifications(job_id)[0]
        assert first["method"] == "addJob"
        added = first["params"]["job"]
        assert added["status"] in ("Starting", "Running") and added["expr"] == data["expr"]
        assert added["solver"] == str(solver) and added["input"] == str(deck)
        assert "Running" in gui.statuses(job_id) or added["status"] == "Running"
        payloads = [n["params"]["payload"] for n in gui.notifications("update_data", job_id)]
        progress = [p["progress"] for p in payloads if p.get("progress") is not None]
        assert all(0 <= v <= 100 for v in progress)
        assert any("ETA" in p or "current" in p for p in payloads)
        # legacy compares case-insensitively (§3.7)
        assert await gui.call("isjobRunning", {"input": str(deck).upper()}) is True

        # 4. one job model: the new API sees the GUI's job, with its real solver PID
        async with Client(legacy_daemon.url) as api:
            job = await api.call("getJob", id=job_id)
            assert job["status"] == "running" and job["ncpu"] == 2 and job["solver"] == "fake-mpp"
            assert job["pid"] is not None and job["allocated_cores"] is not None
            import psutil
            assert "lsdyna" in psutil.Process(job["pid"]).name()
        shells = await gui.call("getRunningShells")
        assert str(job_id) in shells and shells[str(job_id)]["pid"] == job["pid"]
        assert shells[str(job_id)]["stdout"].startswith(gui.stdout(job_id)[:40])

        # 5. the queue: both cores are busy, so queued jobs wait (GUI's queue path)
        queued_decks = [env.deck(f"gui-q{i}", wall_s=0.5) for i in range(3)]
        for i, qdeck in enumerate(queued_decks):
            qdata = job_data(qdeck, solver, ncpu=1 if i else "1", expr=GUI_TEMPLATE_SMP, memory="")
            assert await gui.call("isFolderEmpty", {"input_file": str(qdeck)}) is True
            assert await gui.call("addToQueue", {"job_data": qdata}) is None
        await gui.wait_for(lambda: any(len(q) == 3 for q in gui.queue_broadcasts()), "setQueue with 3 jobs")
        with pytest.raises(GuiError) as again:
            await gui.call("addToQueue", {"job_data": job_data(queued_decks[0], solver, ncpu="1",
                                                               expr=GUI_TEMPLATE_SMP, memory="")})
        assert again.value.code == 10 and "already in queue" in again.value.message
        assert await gui.call("isInQueue", {"input": str(queued_decks[0])}) is True
        queue = await gui.call("getQueue")
        assert [r["position"] for r in queue] == [0, 1, 2]
        assert [r["input"] for r in queue] == [str(d) for d in queued_decks]
        assert await gui.call("getLicCount") == [384, 600, 3]
        # switch 0 and 2 (AG Grid may send the new position as a string)
        assert await gui.call("switchPositionQueue", {"initial": 0, "new": "2"}) == 1
        queue = await gui.call("getQueue")
        assert [r["input"] for r in queue] == [str(queued_decks[i]) for i in (2, 1, 0)]
        assert gui.queue_broadcasts()[-1] == queue
        # set ncpu of the middle one (string, as typed); it keeps its place
        middle = queue[1]
        assert await gui.call("setNcpuQueue", {"id": middle["id"], "ncpu": "2"}) == 1
        queue = await gui.call("getQueue")
        assert queue[1]["input"] == middle["input"] and queue[1]["ncpu"] == 2
        assert "ncpu=2" in queue[1]["command"]
        assert await gui.call("setNcpuQueue", {"id": 999999, "ncpu": 1}) is None
        with pytest.raises(GuiError) as zero:
            await gui.call("setNcpuQueue", {"id": middle["id"], "ncpu": "0"})
        assert zero.value.code == 10
        with pytest.raises(GuiError) as same:
            await gui.call("switchPositionQueue", {"initial": 1, "new": 1})
        assert same.value.code == 10
        # remove them all (by position, as the Actions cell does)
        for _ in range(3):
            assert await gui.call("removeFromQueue", {"position": "0"}) is None
        assert await gui.call("getQueue") == []
        assert gui.queue_broadcasts()[-1] == []

        # 6. a malicious template is refused, naming what is allowed; nothing is cleaned
        evil_deck = env.deck("gui-evil")
        (evil_deck.parent / "keepme.txt").write_text("x")
        evil = job_data(evil_deck, solver, ncpu="1", expr="$SOLVER i=$INPUT & rm -rf ~", memory="")
        with pytest.raises(GuiError) as refused:
            await gui.call("startJob", {"job_data": evil, "clean_all": True})
        assert refused.value.code == 10 and "Allowed" in refused.value.message
        assert (evil_deck.parent / "keepme.txt").exists()
        sh = job_data(evil_deck, "/bin/sh", ncpu="1", expr="$SOLVER i=$INPUT", memory="")
        with pytest.raises(GuiError) as other:
            await gui.call("startJob", {"job_data": sh, "clean_all": False})
        assert other.value.code == 10 and "not the executable of a configured profile" in other.value.message

        # 7. sw1 from the terminal: the job ends normally after writing a dump → "sw1"
        assert await gui.call("sendD3kill", {"id": job_id, "payload": "sw1"}) is None
        await gui.wait_for(lambda: "sw1" in gui.statuses(job_id), "status sw1")
        assert await gui.call("isjobRunning", {"input": str(deck)}) is False
        with pytest.raises(GuiError) as not_running:
            await gui.call("sendD3kill", {"id": job_id, "payload": "sw2"})
        assert not_running.value.code == 20
        async with Client(legacy_daemon.url) as api:
            job = await api.call("getJob", id=job_id)
        assert job["status"] == "stopped" and job["termination"] == "normal"

        # 8. a second job (SMP, ncpu as a number), killed from the terminal → "Stopped"
        deck2 = env.deck("gui-kill", wall_s=30.0)
        second = await gui.call("startJob", {"job_data": job_data(deck2, solver, ncpu=1,
                                                                  expr=GUI_TEMPLATE_SMP, memory=""),
                                             "clean_all": True})
        second_id = second["id"]
        await gui.wait_for(lambda: "Running" in gui.statuses(second_id)
                           or any(n["params"]["job"]["status"] == "Running"
                                  for n in gui.notifications("addJob", second_id)), "second job running")
        assert await gui.call("KillProcessByJobId", {"id": str(second_id)}) is None
        await gui.wait_for(lambda: "Stopped" in gui.statuses(second_id), "second job Stopped")

        # 9. the job list and shells keep ended jobs until removeShell
        table = await gui.call("getFullJobList")
        rows = {r["id"]: r for r in table}
        assert rows[job_id]["status"] == "sw1" and rows[second_id]["status"] == "Stopped"
        assert isinstance(rows[job_id]["started"], int) and rows[job_id]["allocated_cores"] is None
        assert set(rows[job_id]) >= {"id", "input", "solver", "command", "ncpu", "memory", "expr", "status",
                                     "progress", "started", "ETA", "elapsed", "current", "end", "pid",
                                     "a_mass", "pct_mass", "sender", "allocated_cores"}
        shells = await gui.call("getRunningShells")
        assert {str(job_id), str(second_id)} <= set(shells)
        assert await gui.call("removeShell", {"id": job_id}) == job_id
        await gui.wait_for(lambda: gui.notifications("removeShell"), "removeShell notification")
        assert gui.notifications("removeShell")[-1]["params"] == {"id": job_id}
        shells = await gui.call("getRunningShells")
        assert str(job_id) not in shells and str(second_id) in shells
        assert (await gui.call("getFullJobList"))[0]["status"] in ("Stopped", "sw1")  # not overwritten
        assert_protocol_invariants(gui)
    finally:
        await gui.close()
