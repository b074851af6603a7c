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
from collections.abc import Callable, Iterable, Iterator, Sequence
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


def config_text(tmp: Path, bin_dir: Path, log_level: str, extra: str = "") -> str:
    """Like the tests' config, but with the default watchdog interval (5 s): exit detection
    must not depend on the watchdog, and that is what is measured. `extra` is appended
    (more `[solvers.NAME]` tables, a `[cores]` table...)."""
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
        """) + textwrap.dedent(extra)


class BenchDaemon:
    """`with BenchDaemon() as d: d.url, d.deck(...)`: a real daemon process in a temp folder."""

    def __init__(
        self,
        *,
        log_level: str = "INFO",
        keep: bool = False,
        extra_config: str = "",
        prelude: str = "",
    ) -> None:
        """`extra_config` is appended to the config; `{tmp}` and `{bin}` in it are replaced by
        the run's folder and its bin folder (where `install_sleeper` etc. put executables).
        `prelude`: Python run in the daemon process before launcher.py (diagnostics only,
        e.g. to switch one internal step off and see what it costs)."""
        self.prelude = prelude
        self.tmp = Path(tempfile.mkdtemp(prefix="dynalauncher-bench-"))
        self.bin_dir = self.tmp / "bin"
        install_fake_lsdyna(self.bin_dir, "lsdyna-fake")
        self.config_path = self.tmp / "dynalauncher.toml"
        extra = extra_config.replace("{tmp}", str(self.tmp)).replace("{bin}", str(self.bin_dir))
        self.config_path.write_text(config_text(self.tmp, self.bin_dir, log_level, extra))
        self.keep = keep
        self.proc: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self.daemon_id: str | None = None
        self.log_tail: deque[str] = deque(maxlen=200)
        self.started_at = 0.0
        self._decks = 0

    # ------------------------------------------------------------- start / stop

    def start(
        self,
        *,
        cleanup_on_failure: bool = True,
        on_spawn: Callable[[subprocess.Popen[str]], None] | None = None,
    ) -> str:
        """Start the daemon (again, after `kill9`/`terminate`: same config and store) and
        return its URL once it logged `listening on`. `self.started_at` is perf_counter just
        before the process was created. When the daemon exits before that line, raises
        RuntimeError, after `stop()` (which removes the folder) unless `cleanup_on_failure`
        is false (a crash test that killed it on purpose). `on_spawn(proc)` runs right after
        the process was created (e.g. to arm a kill timer)."""
        self.url = None
        self.started_at = time.perf_counter()
        launcher = [sys.executable, str(ROOT / "launcher.py")]
        if self.prelude:
            code = (
                f"import runpy, sys\nsys.argv = sys.argv[1:]\n{self.prelude}\n"
                "runpy.run_path(sys.argv[0], run_name='__main__')"
            )
            launcher = [sys.executable, "-c", code, str(ROOT / "launcher.py")]
        self.proc = subprocess.Popen(
            [*launcher, "--config", str(self.config_path), "--port", "0"],
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        if on_spawn is not None:
            on_spawn(self.proc)
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
                if cleanup_on_failure:
                    self.stop()
                else:
                    self.kill9()  # timed out while alive: not left running
                raise RuntimeError(
                    "daemon did not report its URL:\n" + "".join(self.log_tail)
                )
            found = re.search(r"listening on (ws://\S+)", line)
            if found:
                self.url = found.group(1)
                self.daemon_id = store_daemon_id(self.tmp / "jobs.db")
                return self.url

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        """SIGKILL our daemon (a crash) and reap it; its jobs keep running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_DEADLINE_S)

    def terminate(self) -> int | None:
        """SIGTERM our daemon (a clean shutdown: its jobs keep running) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=STOP_DEADLINE_S)
        return self.proc.returncode if self.proc is not None else None

    def input_file(self, folder: str, name: str = "case.txt", text: str = "bench\n") -> Path:
        """A plain input file in a run folder of its own (for generic profiles)."""
        run = self.tmp / "runs" / folder
        run.mkdir(parents=True, exist_ok=True)
        path = run / name
        path.write_text(text)
        return path

    def log_lines(self, pattern: str) -> list[str]:
        """Lines of the daemon's log file (all runs) matching the regex `pattern`."""
        path = self.tmp / "daemon.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return []
        rx = re.compile(pattern)
        return [line for line in text.splitlines() if rx.search(line)]

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
            shown = ", ".join(str(pid) for pid in killed[:10]) + (", ..." if len(killed) > 10 else "")
            print(
                f"# cleanup: killed {len(killed)} leftover tagged process(es): {shown}",
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
        """CPU seconds (user + system) used so far by the daemon process and its spawn helper."""
        assert self.proc is not None
        return daemon_cpu_s_of(self.proc.pid)

    def tagged(self) -> dict[int, list[int]]:
        """PIDs carrying this daemon's job tag, by job id (a scan of our own processes)."""
        assert self.daemon_id is not None
        return tagged_by_job(self.daemon_id)


def store_daemon_id(db: Path) -> str | None:
    if not db.exists():
        return None
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'daemon_id'").fetchone()
    return row[0] if row else None


def kill_tagged(daemon_id: str, wait_s: float = 10.0) -> list[int]:
    """Kill every process started by the daemon with this store id (ours only), then wait
    up to `wait_s` until they are gone from the process table (here PID 1 reaps orphaned
    zombies within ~2 s), so the next benchmark does not start on a table full of them."""
    killed = []
    procs_killed = []
    for procs in proctree.tagged(f"{daemon_id}:").values():
        for proc in procs:
            try:
                proc.kill()
                killed.append(proc.pid)
                procs_killed.append(proc)
            except psutil.NoSuchProcess:  # ended between the scan and the kill
                continue
    deadline = time.monotonic() + wait_s
    while procs_killed and time.monotonic() < deadline:
        alive = []
        for proc in procs_killed:
            if psutil.pid_exists(proc.pid):
                alive.append(proc)
        procs_killed = alive
        if alive:
            time.sleep(0.05)
    return killed


def tagged_by_job(daemon_id: str) -> dict[int, list[int]]:
    """{job id: [pid, ...]} of every live process carrying `<daemon_id>:<job id>`."""
    out: dict[int, list[int]] = {}
    for tag, procs in proctree.tagged(f"{daemon_id}:").items():
        try:
            job_id = int(tag.rsplit(":", 1)[1])
        except ValueError:
            continue
        out.setdefault(job_id, []).extend(p.pid for p in procs)
    return out


# ----------------------------------------------------------------- light solvers

# GNU tail, following its input with inotify off and a one-day poll interval: an idle
# process of ~1.8 MB RSS that never exits on its own, ends on SIGTERM, and takes the input
# path as its last argument (the generic family's argv is `EXE [extra_args] INPUT`).
# Reached through a symlink, so its process name (comm) is the symlink's name.
SLEEPER_ARGS = ("---disable-inotify", "-s", "86400", "-f")


def install_sleeper(bin_dir: Path, name: str = "sleeper-solv") -> Path:
    """A symlink `bin_dir/name` to GNU tail (no interpreter per job); see SLEEPER_ARGS."""
    tail = shutil.which("tail") or "/usr/bin/tail"
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / name
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(tail)
    return link


def sleeper_profile(name: str, executable: Path, *, book_cores: bool) -> str:
    """A `[solvers.NAME]` table (generic family) for the sleeper from install_sleeper."""
    args = ", ".join(f'"{a}"' for a in SLEEPER_ARGS)
    return textwrap.dedent(f"""\
        [solvers.{name}]
        family = "generic"
        executable = "{executable}"
        process_names = ["{executable.name}"]
        extra_args = [{args}]
        book_cores = {"true" if book_cores else "false"}
        """)


def write_topology(dest: Path, sockets: int, cores: int, threads: int) -> Path:
    """A synthetic sysfs CPU tree (tests/data/sysfs/make_shapes.py) under `dest`; returns
    the folder to give as `[cores] topology_root`."""
    sys.path.insert(0, str(ROOT / "tests" / "data" / "sysfs"))
    try:
        import make_shapes
    finally:
        sys.path.pop(0)
    shape = make_shapes.Shape(f"bench-{sockets}s-{cores}c-{threads}t", sockets, cores, threads)
    make_shapes.write_shape(shape, dest)
    return dest / "cpu"


# ----------------------------------------------------------------- /proc figures


def proc_cpu_s(pid: int) -> float:
    """utime + stime of `pid` in seconds (fields 14 and 15 of /proc/<pid>/stat; all threads)."""
    return proc_cpu_s_of(f"/proc/{pid}/stat")


def thread_cpu_s(pid: int) -> dict[int, float]:
    """utime + stime in seconds of each thread of `pid`, by thread id (the main thread's id
    is `pid`: for the daemon, the event loop)."""
    out: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = proc_cpu_s_of(f"/proc/{pid}/task/{tid}/stat")
        except FileNotFoundError:
            continue  # the thread ended meanwhile
    return out


def proc_cpu_s_of(stat_path: str) -> float:
    with open(stat_path, "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu_s(pid: int) -> float:
    """cutime + cstime of `pid` in seconds: the CPU of its reaped children (the jobs)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[13]) + int(fields[14])) / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def spawn_helpers(pid: int) -> list[int]:
    """The daemon's fork server process (serv.platform.forkserver), once it has started one:
    its CPU and memory are the daemon's too."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            if any("serv.platform.forkserver" in part for part in child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


def daemon_cpu_s_of(pid: int) -> float:
    """CPU seconds of the daemon `pid` and of its spawn helper."""
    return proc_cpu_s(pid) + sum(proc_cpu_s(h) for h in spawn_helpers(pid))


def daemon_kb(pid: int, key: str) -> int:
    """`proc_status_kb` of the daemon plus its spawn helper (memory: both are its cost)."""
    return proc_status_kb(pid, key) + sum(proc_status_kb(h, key) for h in spawn_helpers(pid))


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_window(pid: int, seconds: float) -> tuple[float, float]:
    """(CPU seconds used by the daemon `pid` and its spawn helper, wall seconds) over a
    window of `seconds`."""
    c0, t0 = daemon_cpu_s_of(pid), time.perf_counter()
    time.sleep(seconds)
    c1, t1 = daemon_cpu_s_of(pid), time.perf_counter()
    return c1 - c0, t1 - t0


def cpu_trace(pid: int, seconds: float, step: float = 1.0) -> tuple[list[float], float]:
    """CPU seconds used by the daemon `pid` and its spawn helper in each `step` of a window
    of `seconds`, and the window's wall time. Summing the steps gives the window's total."""
    steps: list[float] = []
    began = time.perf_counter()
    last = daemon_cpu_s_of(pid)
    for i in range(1, round(seconds / step) + 1):
        time.sleep(max(began + i * step - time.perf_counter(), 0.0))
        now = daemon_cpu_s_of(pid)
        steps.append(now - last)
        last = now
    return steps, time.perf_counter() - began


class Background:
    """`with Background(cmd) as bg:` a helper process of ours (py-spy...) for the duration."""

    def __init__(self, cmd: Sequence[str]) -> None:
        self.cmd = list(cmd)
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def py_spy_cmd(pid: int, seconds: float, out: Path, rate: int = 100) -> list[str]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return [exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(rate),
            "--format", "raw", "--threads", "--nonblocking", "-o", str(out)]


def loadavg() -> str:
    """The 1-minute load average, as text."""
    return f"{os.getloadavg()[0]:.2f}"


def py_spy_profile(pid: int, seconds: float, out: Path, rate: int = 200) -> str:
    """Profile `pid` (a process we started) with `py-spy record --format raw --threads
    --idle off` for `seconds`; returns a short text: the top functions by own samples and
    by inclusive samples (the collapsed stacks stay in `out`)."""
    res = subprocess.run(
        py_spy_cmd(pid, seconds, out, rate),
        capture_output=True, text=True, timeout=seconds + 60, check=False,
    )
    if res.returncode != 0 or not out.exists():
        return f"py-spy failed ({res.returncode}): {res.stderr.strip()[-300:]}"
    return summarize_collapsed(out.read_text())


def collapsed_stacks(text: str) -> Iterator[tuple[list[str], int]]:
    """(frames, sample count) of each line of py-spy's collapsed output. A line whose
    count is not a number is skipped: py-spy reads the target's memory without stopping
    it, and now and then a string it reads is torn mid-update."""
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if stack and count_s.isdigit():
            yield stack.split(";"), int(count_s)


def summarize_collapsed(text: str, top: int = 12) -> str:
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for frames, count in collapsed_stacks(text):
        total += count
        threads[frames[0]] = threads.get(frames[0], 0) + count
        for frame in set(frames[1:]):
            incl[frame] = incl.get(frame, 0) + count
        if len(frames) > 1:
            own[frames[-1]] = own.get(frames[-1], 0) + count
    if not total:
        return "py-spy: no samples (the process was idle)"
    lines = [f"py-spy: {total} samples (non-idle)"]
    lines.append("  by thread: " + ", ".join(
        f"{k} {v * 100 / total:.0f}%" for k, v in sorted(threads.items(), key=lambda kv: -kv[1])[:6]))
    lines.append("  own time:")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {n * 100 / total:5.1f}%  {frame}")
    lines.append("  inclusive:")
    for frame, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {n * 100 / total:5.1f}%  {frame}")
    return "\n".join(lines)


async def list_all_jobs(client: Any, status: str | None = None) -> list[dict[str, Any]]:
    """Every job the daemon knows (listJobs, limit 10000), newest first."""
    params: dict[str, Any] = {"limit": 10000}
    if status is not None:
        params["status"] = status
    jobs: list[dict[str, Any]] = await client.call("listJobs", **params)
    return jobs


async def gather_limited(n: int, coros: Iterable[Any]) -> list[Any]:
    """Await `coros` with at most `n` in flight; results in order (exceptions returned)."""
    import asyncio

    sem = asyncio.Semaphore(n)

    async def one(coro: Any) -> Any:
        async with sem:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)


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
