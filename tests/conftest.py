"""Shared fixtures: a real daemon (in-process or as a process), a real WebSocket client,
the fake solvers installed as real executables, and decks in the test's own tmp folder.

Safety: every process a test's daemon starts carries that daemon's job tag; teardown kills
exactly those (and nothing else) so a failed test never leaves a solver behind.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from serv import proctree
from serv.client import Client
from serv.config import Config, load_config
from serv.daemon import Daemon
from tests.fakes import install_fake_lsdyna, write_deck

ROOT = Path(__file__).resolve().parent.parent
FACTOR = float(os.environ.get("DYNALAUNCHER_TEST_TIMEOUT_FACTOR", "1"))
DEADLINE = 20.0 * FACTOR


def mpiexec_hydra() -> str:
    """MPICH's mpiexec by its MPICH-only name (mpiexec.hydra may be Intel MPI's in a venv)."""
    path = shutil.which("mpiexec.mpich")
    if path is None:
        pytest.fail("MPICH's mpiexec.hydra is missing: run scripts/install-test-deps (apt package mpich)")
    return path


STUBBORN = """\
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sys.stdout.write("stubborn solver running; SIGTERM is ignored\\n")
sys.stdout.flush()
deadline = time.monotonic() + float(sys.argv[1] if len(sys.argv) > 2 else 600)
while time.monotonic() < deadline:
    time.sleep(0.2)
"""

SLEEPER = """\
import sys, time
sys.stdout.write("sleeper started\\n")
sys.stdout.flush()
seconds = float(open(sys.argv[-1]).read().strip() or 0)
time.sleep(seconds)
sys.stdout.write("sleeper done\\n")
"""


def intel_mpiexec() -> str:
    """Intel MPI's mpiexec from the PyPI package impi-rt, installed into the venv."""
    path = Path(sys.executable).parent / "mpiexec"
    if not path.exists() or not (Path(sys.executable).parent / "impi_info").exists():
        pytest.fail("Intel MPI is missing: install the test extras (pip package impi-rt)")
    return str(path)


def install_script(bin_dir: Path, name: str, body: str) -> Path:
    """An executable script named `name` (its process name) run by this test's interpreter."""
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fake solvers as real executables: lsdyna-fake, stubborn-solv, sleeper-solv."""
    folder = tmp_path_factory.mktemp("bin")
    install_fake_lsdyna(folder, "lsdyna-fake")
    install_script(folder, "stubborn-solv", STUBBORN)
    install_script(folder, "sleeper-solv", SLEEPER)
    return folder


def config_text(tmp: Path, bin_dir: Path, extra: str = "", server: str = "") -> str:
    mpiexec = mpiexec_hydra()
    return textwrap.dedent(f"""\
        [server]
        port = 0
        {server}
        [store]
        path = "{tmp / 'jobs.db'}"
        [log]
        file = "{tmp / 'daemon.log'}"
        level = "DEBUG"
        [watchdog]
        interval_s = 0.5
        [jobs]
        stop_grace_s = 2.0
        pid_search_s = 5.0
        [solvers.fake-smp]
        family = "lsdyna"
        executable = "{bin_dir / 'lsdyna-fake'}"
        [solvers.fake-mpp]
        family = "lsdyna"
        executable = "{bin_dir / 'lsdyna-fake'}"
        mpi = "mpich"
        mpiexec = "{mpiexec}"
        [solvers.stubborn-mpp]
        family = "generic"
        executable = "{bin_dir / 'stubborn-solv'}"
        process_names = ["stubborn"]
        mpi = "mpich"
        mpiexec = "{mpiexec}"
        [solvers.sleeper]
        family = "generic"
        executable = "{bin_dir / 'sleeper-solv'}"
        process_names = ["sleeper"]
        [solvers.missing]
        family = "lsdyna"
        executable = "{tmp / 'no-such-solver'}"
        """) + extra


@dataclass
class Env:
    """One test's world: its tmp folder, config file and decks."""

    tmp: Path
    bin_dir: Path
    extra_config: str = ""
    server_config: str = ""
    decks: int = field(default=0)

    @property
    def config_path(self) -> Path:
        path = self.tmp / "dynalauncher.toml"
        path.write_text(config_text(self.tmp, self.bin_dir, self.extra_config, self.server_config))
        return path

    def config(self) -> Config:
        return load_config(self.config_path)

    def deck(self, name: str | None = None, **directives: Any) -> Path:
        """A fake LS-DYNA deck in a folder of its own."""
        self.decks += 1
        folder = self.tmp / "runs" / (name or f"run{self.decks}")
        return write_deck(folder / "main.k", **directives)

    def sleeper_input(self, seconds: float, name: str | None = None) -> Path:
        self.decks += 1
        folder = self.tmp / "runs" / (name or f"sleep{self.decks}")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "case.txt"
        path.write_text(f"{seconds}\n")
        return path


@pytest.fixture
def env(tmp_path: Path, bin_dir: Path) -> Env:
    return Env(tmp_path, bin_dir)


def kill_tagged(daemon_id: str) -> None:
    """Kill every process started by the daemon with this store id (ours only)."""
    for procs in proctree.tagged(f"{daemon_id}:").values():
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue


def store_daemon_id(db: Path) -> str | None:
    import sqlite3

    if not db.exists():
        return None
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'daemon_id'").fetchone()
    return row[0] if row else None


@pytest.fixture
async def daemon(env: Env) -> AsyncIterator[Daemon]:
    """A daemon running in the test's event loop on a free port."""
    config = env.config()
    async with Daemon(config) as running:
        try:
            yield running
        finally:
            assert running.store is not None
            kill_tagged(running.store.daemon_id)


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[Client]:
    """A WebSocket client subscribed to job and core changes."""
    async with Client(daemon.url) as c:
        await c.subscribe("jobs", "cores")
        yield c


class DaemonProcess:
    """`python launcher.py` as a real process, for kill -9 and restart tests."""

    def __init__(self, env: Env, extra_args: list[str] | None = None) -> None:
        self.env = env
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self.log_lines: list[str] = []

    def start(self) -> str:
        return self.start_with(self.env.config_path)

    def start_with(self, config: Path) -> str:
        """Start with a given config file (the default one is written by Env)."""
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "launcher.py"), "--config", str(config),
             "--port", "0", *self.extra_args],
            cwd=self.env.tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert self.proc.stderr is not None
        import queue
        import threading

        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log_lines.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            while True:
                line = lines.get(timeout=DEADLINE)
                if line is None:
                    break
                found = re.search(r"listening on (ws://\S+)", line)
                if found:
                    self.url = found.group(1)
                    return self.url
        except queue.Empty:
            pass
        self.proc.kill()
        pytest.fail("daemon did not report its URL:\n" + "".join(self.log_lines))

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=DEADLINE)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def daemon_process(env: Env) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def make(extra_args: list[str] | None = None) -> DaemonProcess:
        proc = DaemonProcess(env, extra_args)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
    daemon_id = store_daemon_id(env.tmp / "jobs.db")
    if daemon_id:
        kill_tagged(daemon_id)


async def wait_until(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll a cheap condition (no event exists for it) until true, under a deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > end:
            pytest.fail(f"timed out after {timeout:.1f} s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
