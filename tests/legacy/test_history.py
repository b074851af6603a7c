"""Importing an API-DynaLauncher 2.0.x DynaLauncher.db (protocol §6): at first start and with
`dynalauncher import-legacy`, all three schema generations, read-only (the file stays
byte-identical), visible in both APIs, live rows re-adopted only when provably the same
process."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from serv.client import Client
from serv.daemon import Daemon
from tests.conftest import DEADLINE, Env, kill_tagged
from tests.legacy.conftest import PyGui, http_url, open_gui

pytestmark = pytest.mark.timeout(120)

# §6.2: the table as Flask-SQLAlchemy 3.0.5 creates it for model SqlJob (id INTEGER PRIMARY
# KEY, no AUTOINCREMENT); `sender` and `allocated_cores` are added by ensure_schema() (§6.3).
LEGACY_DDL = """CREATE TABLE sql_job (
	id INTEGER NOT NULL, 
	input VARCHAR(300), 
	solver VARCHAR(300), 
	command VARCHAR(300), 
	ncpu INTEGER, 
	memory VARCHAR(300), 
	status VARCHAR(300), 
	progress VARCHAR(300), 
	started INTEGER, 
	"ETA" INTEGER, 
	elapsed INTEGER, 
	current FLOAT, 
	"end" FLOAT, 
	pid INTEGER, 
	expr VARCHAR(300), 
	a_mass FLOAT, 
	pct_mass FLOAT, 
	PRIMARY KEY (id)
)"""
MIGRATIONS = {
    "sender": "ALTER TABLE sql_job ADD COLUMN sender VARCHAR(300)",
    "allocated_cores": "ALTER TABLE sql_job ADD COLUMN allocated_cores VARCHAR(500)",
}
SCHEMAS = {  # the three generations of §6.3
    "2.0.8": ("sender", "allocated_cores"),
    "2025-09": ("sender",),
    "pre-2025-09": (),
}
EXPR = "mpiexec -np $NCPU $SOLVER i=$INPUT memory=$MEMORY"


def make_legacy_db(path: Path, rows: list[dict[str, Any]], schema: str = "2.0.8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(LEGACY_DDL)
        for column in SCHEMAS[schema]:
            conn.execute(MIGRATIONS[column])
        columns = [r[1] for r in conn.execute('PRAGMA table_info("sql_job")')]
        for row in rows:
            keys = [k for k in row if k in columns]
            conn.execute(
                f'INSERT INTO sql_job ({", ".join(chr(34) + k + chr(34) for k in keys)}) '
                f'VALUES ({", ".join("?" for _ in keys)})', [row[k] for k in keys])
    conn.close()
    return path


def fingerprint(path: Path) -> tuple[str, int, list[str]]:
    return (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns,
            sorted(os.listdir(path.parent)))


def legacy_row(legacy_id: int, folder: Path, status: str | None, **extra: Any) -> dict[str, Any]:
    deck = folder / f"run{legacy_id}" / "main.k"
    deck.parent.mkdir(parents=True, exist_ok=True)
    deck.write_text("*KEYWORD\n*END\n")
    row = {
        "id": legacy_id, "input": str(deck), "solver": "C:\\LSDYNA\\ls-dyna_mpp_d_R13.exe",
        "command": f"mpiexec -np 4 C:\\LSDYNA\\ls-dyna_mpp_d_R13.exe i={deck} memory=200m",
        "ncpu": 4, "memory": "200m", "status": status, "progress": "0", "started": 1_700_000_000,
        "ETA": 0, "elapsed": None, "current": None, "end": None, "pid": 4242, "expr": EXPR,
        "a_mass": None, "pct_mass": None, "sender": None, "allocated_cores": None,
    }
    row.update(extra)
    return row


@pytest.fixture
def sleeper() -> Any:
    """A live process the legacy DB says it started (killed by the test that made it)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait(timeout=DEADLINE)


@pytest.mark.parametrize("kind", ["python", "node"])
async def test_first_start_imports_into_both_apis(kind: str, env: Env, sleeper: subprocess.Popen[bytes]) -> None:
    created = int(psutil.Process(sleeper.pid).create_time())
    legacy = env.tmp / "legacy" / "instance"
    rows = [
        legacy_row(3, legacy, "Finished", progress="100", current=0.01, end=0.01, a_mass=1.5e-3,
                   pct_mass=0.2, sender="alice", allocated_cores=None),
        legacy_row(5, legacy, "Error", progress="42.5", current=0.004, end=0.01),
        legacy_row(8, legacy, "Stopped"),
        legacy_row(12, legacy, "sw1", progress="30", current=0.003, end=0.01),
        legacy_row(13, legacy, None),
        legacy_row(20, legacy, "Running", pid=sleeper.pid, started=created, ncpu=1,
                   allocated_cores="[0]", progress="10", current=0.001, end=0.01),
        legacy_row(21, legacy, "Running", pid=sleeper.pid, started=created - 1000, ncpu=1),
        legacy_row(22, legacy, "Starting", pid=None, ncpu=1),
        legacy_row(23, legacy, "Finished", input=None),
    ]
    db = make_legacy_db(legacy / "DynaLauncher.db", rows)
    before = fingerprint(db)
    env.extra_config += f'\n[legacy]\nimport_db = "{db}"\n'
    async with Daemon(env.config()) as daemon:
        assert daemon.store is not None
        try:
            async with Client(daemon.url) as api:
                jobs = {j["id"]: j for j in await api.call("listJobs", limit=50)}
                assert set(jobs) == {3, 5, 8, 12, 13, 20, 21, 22}  # legacy ids kept; 23 had no input
                assert {i: jobs[i]["status"] for i in jobs} == {
                    3: "finished", 5: "failed", 8: "stopped", 12: "stopped", 13: "stopped",
                    20: "running", 21: "stopped", 22: "stopped"}
                assert jobs[12]["termination"] == "normal" and jobs[3]["termination"] == "normal"
                assert jobs[20]["pid"] == sleeper.pid and jobs[20]["family"] == "lsdyna"
                assert jobs[3]["progress"] == 100 and jobs[5]["progress"] == 42.5
                assert jobs[3]["started_at"] is not None and jobs[3]["ncpu"] == 4
                assert "imported from legacy DynaLauncher" in jobs[8]["message"]
            gui = await open_gui(kind, daemon)
            try:
                await gui.connect()
                table = {r["id"]: r for r in await gui.call("getFullJobList")}
                assert {i: table[i]["status"] for i in table} == {
                    3: "Finished", 5: "Error", 8: "Stopped", 12: "sw1", 13: "Stopped",
                    20: "Running", 21: "Stopped", 22: "Stopped"}
                assert table[3]["solver"] == rows[0]["solver"] and table[3]["expr"] == EXPR
                assert table[3]["command"] == rows[0]["command"] and table[3]["sender"] == "alice"
                assert table[3]["started"] == 1_700_000_000 and table[3]["a_mass"] == 1.5e-3
                assert table[20]["pid"] == sleeper.pid
                shells = await gui.call("getRunningShells")
                assert "20" in shells and shells["20"]["status"] == "Running"
                # the re-adopted job is a normal live job: it ends when its process does
                sleeper.kill()
                await gui.wait_for(lambda: "Stopped" in gui.statuses(20), "job 20 Stopped")
            finally:
                await gui.close()
            async with Client(daemon.url) as api:
                deck = env.deck("after-import")
                job = await api.call("launch", solver="fake-smp", input=str(deck))
                assert job["id"] == 23  # after the highest kept legacy id (22); never reused
        finally:
            kill_tagged(daemon.store.daemon_id)
    assert fingerprint(db) == before  # byte-identical, not even touched; no journal left
    # a second start imports nothing again (the store is not empty)
    async with Daemon(env.config()) as daemon:
        async with Client(daemon.url) as api:
            assert len(await api.call("listJobs", limit=100)) == 9
    assert fingerprint(db) == before


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from serv.cli import main; raise SystemExit(main())", *args],
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
async def test_import_legacy_command(schema: str, env: Env) -> None:
    folder = env.tmp / "old"
    rows = [legacy_row(1, folder, "Finished", sender="bob"), legacy_row(2, folder, "sw1"),
            legacy_row(7, folder, "Running", pid=None)]
    db = make_legacy_db(folder / "DynaLauncher.db", rows, schema)
    before = fingerprint(db)
    config = env.config_path
    first = cli("import-legacy", str(db), "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "imported 3 jobs" in first.stdout
    again = cli("import-legacy", str(db), "--config", str(config))
    assert again.returncode == 0 and "imported 0 jobs" in again.stdout and "3 skipped" in again.stdout
    not_a_db = env.tmp / "notes.txt"
    not_a_db.write_text("hello")
    bad = cli("import-legacy", str(not_a_db), "--config", str(config))
    assert bad.returncode == 2 and "cannot import" in bad.stderr
    async with Daemon(env.config()) as daemon:
        running = cli("import-legacy", str(db), "--config", str(config))
        assert running.returncode == 3 and "in use by another dynalauncher" in running.stderr
        async with Client(daemon.url) as api:
            jobs = {j["id"]: j for j in await api.call("listJobs")}
        assert [j["status"] for j in jobs.values()] == ["stopped", "stopped", "finished"]
        gui = PyGui(http_url(daemon))
        try:
            await gui.connect()
            table = await gui.call("getFullJobList")
            assert [r["status"] for r in table] == ["Stopped", "sw1", "Finished"]
            assert table[-1]["sender"] == ("bob" if "sender" in SCHEMAS[schema] else None)
            assert all(r["allocated_cores"] is None for r in table)
        finally:
            await gui.close()
    assert fingerprint(db) == before
