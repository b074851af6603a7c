"""Shared helpers for the benchmark scripts: a real daemon in a temp folder, its config,
the fake solvers, statistics and the printed table.

A benchmark run gets its own folder under `tempfile` (config, SQLite store, log, decks,
fake solver executables). The daemon is `launcher.py --config ... --port 0` as a child
process; its URL is read from its `listening on ws://...` log line on stderr by a reader
thread under a deadline (the same way tests/conftest.py does).

Safety: the bench only ever signals processes it started itself. `BenchDaemon.stop()` sends
SIGTERM to the daemon it spawned, then kills exactly the processes that carry this daemon's
job tag (env DYNALAUNCHER_JOB=<daemon_id>:<job id>, daemon_id from the store's meta table),
like `kill_tagged` in tests/conftest.py. Solvers the bench kills on purpose are checked to
carry that tag first (`is_ours`).
"""

from __future__ import annotations

import math
import os
import platform
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
if (
    str(ROOT) not in sys.path
):  # `tests.fakes` lives in the repo, not in the installed package
    sys.path.insert(0, str(ROOT))

import psutil

from serv import proctree
from serv.platform import TAG_VAR
from tests.fakes import install_fake_lsdyna, write_deck

START_DEADLINE_S = 20.0
STOP_DEADLINE_S = 15.0
TERMINAL = frozenset({"finished", "failed", "stopped", "cancelled"})
CLK_TCK = os.sysconf("SC_CLK_TCK")


def mpiexec_hydra() -> str:
    path = shutil.which("mpiexec.hydra") or shutil.which("mpiexec.mpich")
    if path is None:
        raise SystemExit("MPICH's mpiexec.hydra is missing (apt package mpich)")
    return path  # absolute (shutil.which gives the PATH entry's full path)


def config_text(tmp: Path, bin_dir: Path, log_level: str) -> str:
    """Like the tests' config, but with the default watchdog interval (5 s): exit detection
    must not depend on the watchdog, and that is what is measured."""
    return textwrap.dedent(f"""\
        [store]
        path = "{tmp / "jobs.db"}"
        [log]
        file = "{tmp / "daemon.log"}"
        level = "{log_level}"
        [watchdog]
        interval_s = 5.0
        [jobs]
        stop_grace_s = 2.0
        [solvers.fake-smp]
        family = "lsdyna"
        executable = "{bin_dir / "lsdyna-fake"}"
        [solvers.fake-mpp]
        family = "lsdyna"
        executable = "{bin_dir / "lsdyna-fake"}"
        mpi = "mpich"
        mpiexec = "{mpiexec_hydra()}"
        """)


class BenchDaemon:
    """`with BenchDaemon() as d: d.url, d.deck(...)`: a real daemon process in a temp folder."""

    def __init__(self, *, log_level: str = "INFO", keep: bool = False) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="dynalauncher-bench-"))
        self.bin_dir = self.tmp / "bin"
        install_fake_lsdyna(self.bin_dir, "lsdyna-fake")
        self.config_path = self.tmp / "dynalauncher.toml"
        self.config_path.write_text(config_text(self.tmp, self.bin_dir, log_level))
        self.keep = keep
        self.proc: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self.daemon_id: str | None = None
        self.log_tail: deque[str] = deque(maxlen=200)
        self._decks = 0

    # ------------------------------------------------------------- start / stop

    def start(self) -> str:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "launcher.py"),
                "--config",
                str(self.config_path),
                "--port",
                "0",
            ],
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:  # keeps draining stderr for the daemon's whole life
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log_tail.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, name="daemon-stderr", daemon=True).start()
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            left = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(left, 0.001))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                raise RuntimeError(
                    "daemon did not report its URL:\n" + "".join(self.log_tail)
                )
            found = re.search(r"listening on (ws://\S+)", line)
            if found:
                self.url = found.group(1)
                self.daemon_id = store_daemon_id(self.tmp / "jobs.db")
                return self.url

    def stop(self) -> list[int]:
        """SIGTERM our daemon (SIGKILL after a deadline), then kill every process still
        carrying its job tag. Returns the PIDs of the tagged processes that were killed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_DEADLINE_S)
        daemon_id = self.daemon_id or store_daemon_id(self.tmp / "jobs.db")
        killed = kill_tagged(daemon_id) if daemon_id else []
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return killed

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        killed = self.stop()
        if killed:
            print(
                f"# cleanup: killed {len(killed)} leftover tagged process(es): {killed}",
                file=sys.stderr,
            )
        if self.keep:
            print(f"# kept {self.tmp}", file=sys.stderr)

    # ------------------------------------------------------------- inputs

    def deck(self, **directives: Any) -> Path:
        """A fake LS-DYNA deck in a run folder of its own."""
        self._decks += 1
        return write_deck(
            self.tmp / "runs" / f"run{self._decks:04d}" / "main.k", **directives
        )

    def is_ours(self, pid: int) -> bool:
        """True when `pid` carries this daemon's job tag (so the bench may signal it)."""
        try:
            tag = psutil.Process(pid).environ().get(TAG_VAR, "")
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone, or not ours to read
            return False
        return bool(self.daemon_id) and tag.startswith(f"{self.daemon_id}:")

    def daemon_cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by the daemon process."""
        assert self.proc is not None
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)


def store_daemon_id(db: Path) -> str | None:
    if not db.exists():
        return None
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'daemon_id'").fetchone()
    return row[0] if row else None


def kill_tagged(daemon_id: str) -> list[int]:
    """Kill every process started by the daemon with this store id (ours only)."""
    killed = []
    for procs in proctree.tagged(f"{daemon_id}:").values():
        for proc in procs:
            try:
                proc.kill()
                killed.append(proc.pid)
            except psutil.NoSuchProcess:  # ended between the scan and the kill
                continue
    return killed


def install_sigterm_as_interrupt() -> None:
    """SIGTERM to the bench runs the same cleanup as Ctrl+C (stop our daemon and its jobs)."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)


class ExtraProcesses:
    """`with ExtraProcesses(n):` n idle `sleep` processes of our own, to see how a fuller
    process table (a workstation has hundreds) changes the figures. Killed by handle at exit."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Self:
        sleep = shutil.which("sleep") or "/bin/sleep"
        try:
            for _ in range(self.n):
                self.procs.append(
                    subprocess.Popen([sleep, "3600"], stdin=subprocess.DEVNULL)
                )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs.clear()


# ----------------------------------------------------------------- clocks


def boottime() -> float:
    """Seconds since boot on CLOCK_BOOTTIME: the clock /proc/<pid>/stat starttime counts in."""
    return float(time.clock_gettime(time.CLOCK_BOOTTIME))


def start_boottime(pid: int) -> float:
    """A process's start on CLOCK_BOOTTIME, in seconds (field 22 of /proc/<pid>/stat, in
    clock ticks: 1/CLK_TCK s resolution, floored by the kernel).

    psutil's create_time() is this plus /proc/stat `btime`, which is a whole number of
    seconds, so comparing it with time.time() is off by up to 1 s; comparing ticks with
    CLOCK_BOOTTIME avoids that. psutil reads the same field."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[19]) / CLK_TCK  # field 22 overall; fields[0] is field 3 (state)


# ----------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(values: Iterable[float]) -> dict[str, float]:
    data = sorted(values)
    return {
        "n": len(data),
        "min": data[0] if data else math.nan,
        "p50": percentile(data, 50),
        "p90": percentile(data, 90),
        "p99": percentile(data, 99),
        "max": data[-1] if data else math.nan,
    }


HEADER = f"{'case':<28} {'n':>5} {'min':>9} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}"


def table(rows: Sequence[tuple[str, dict[str, float]]], unit: str = "ms") -> str:
    scale = 1000.0 if unit == "ms" else 1.0
    out = [f"{HEADER}   ({unit})"]
    for name, s in rows:
        out.append(
            f"{name:<28} {int(s['n']):>5} {s['min'] * scale:>9.2f} {s['p50'] * scale:>9.2f} "
            f"{s['p90'] * scale:>9.2f} {s['p99'] * scale:>9.2f} {s['max'] * scale:>9.2f}"
        )
    return "\n".join(out)


def verdict(value_s: float, goal_s: float) -> str:
    if value_s <= goal_s:
        return "met"
    return f"missed by {(value_s - goal_s) * 1000:.1f} ms ({value_s / goal_s:.2f}x the goal)"


def code_version() -> str:
    """The commit measured, plus a hash of serv/**/*.py (the working tree may differ from it)."""
    import hashlib

    try:
        head = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                check=False,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or "?"
        )
    except (
        OSError,
        subprocess.SubprocessError,
    ):  # no git here: the hash alone identifies the code
        head = "?"
    digest = hashlib.sha256()
    for path in sorted((ROOT / "serv").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return f"HEAD {head}, serv/*.py sha256 {digest.hexdigest()[:12]}"


def machine() -> str:
    """One line of machine facts for the output (the process count is the host's, now)."""
    return (
        f"# {platform.node()}: {psutil.cpu_count()} logical CPU(s), Python {platform.python_version()}, "
        f"kernel {platform.release()}, CLK_TCK {CLK_TCK}, {len(psutil.pids())} processes; "
        f"code {code_version()}"
    )
