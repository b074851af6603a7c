"""Throughput: N trivial jobs through 2 cores, submit to all done; dynalauncher against
task-spooler and a single-node SLURM, all measured in the same run (issue #7, figure 1).

* dynalauncher: a `generic` profile running `true` (ncpu=1, so 2 at a time on 2 cores), each
  job in its own workdir (folder + empty input file, made before the clock starts). One
  client (serv.client.Client, one WebSocket) subscribes to "jobs", then sends all N `launch`
  requests without waiting for the answers (pipelined; `--submit sequential` awaits each) and
  counts the jobs whose `jobChanged` notification carries a terminal status.
* task-spooler: `tsp -S 2` with a private TS_SOCKET and TMPDIR; a bash loop `cd <workdir> &&
  tsp -n true` per job; then `tsp -l` is polled every 10 ms until all N are finished
  (`tsp -w` waits for ONE job). "tsp-output" is the same with tsp's default of keeping each
  job's output in a file (`tsp true`), the work dynalauncher does with every job's stdout.
* SLURM 22.05 (slurmctld + slurmd + munged, private, 127.0.0.1; bench/peers/slurm.py): a bash
  loop of `sbatch --chdir=<workdir> -o /dev/null --wrap true` ("wrap"), or one `sbatch
  --array=1-N` ("array"); completions counted from the jobcomp/filetxt file, polled every
  10 ms. A warm-up job runs first (the first job after a start waits ~3 s). "tuned" is
  SchedulerParameters=batch_sched_delay=0 (schedule on every 1-s background tick), "default"
  is Debian's default (batch_sched_delay=3: one scheduling pass per 3 s).

The clock runs from the first submission to the moment the last job is seen ended. Peers are
installed by bench/peers/setup; a peer that is missing is reported as skipped.

    .venv/bin/python bench/throughput.py [--n 1000] [--slurm-n 100] [--default-slurm-n 20]
        [--peers dynalauncher,tsp,tsp-output,slurm-wrap,slurm-array,slurm-default]
        [--submit pipelined|sequential] [--extra-procs N] [--json FILE] [--keep]
    diagnostics (dynalauncher only): [--profile FILE.txt [--profile-gil]] (py-spy raw stacks of
        the daemon), [--what-if NAME,...] (run-time patches of serv that model a change, see
        bench/peers/whatif/sitecustomize.py and docs/benchmarks/throughput.md; `trace` times
        the daemon's steps, `timeline` each job's chain, `spin` slows one part down),
        [--no-legacy]. The what-ifs scan and children are shipped in 48ab53a, and
        async-schedule, schedule-fast and group-commit are shipped in 773a3fe; asking for one
        of them stops the daemon with a message saying so.

Besides the rates, dynalauncher's run prints its daemon CPU per job and, from the store's
transition times, how long each job held its core and how long the next one took to start.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.peers.daemon import PROFILE, GenericDaemon
from serv.client import Client

TERMINAL = common.TERMINAL
ALL_PEERS = ("dynalauncher", "tsp", "tsp-output", "slurm-wrap", "slurm-array", "slurm-default")
TUNED = "SchedulerParameters=batch_sched_delay=0"
GOAL_TSP = 0.5
GOAL_SLURM = 10.0


# ----------------------------------------------------------------- dynalauncher


async def dyna_run(
    daemon: GenericDaemon, inputs: list[Path], submit: str
) -> dict[str, Any]:
    assert daemon.url is not None
    n = len(inputs)
    ended: dict[int, tuple[str, float]] = {}
    seen_all = asyncio.Event()
    ids: list[int] = []
    async with Client(daemon.url) as client:
        await client.subscribe("jobs")

        async def watch() -> None:
            while True:
                note = await client.next_notification("jobChanged", timeout=600)
                job = note["job"]
                if job["status"] in TERMINAL and job["id"] not in ended:
                    ended[job["id"]] = (job["status"], time.perf_counter())
                    if len(ended) >= n and set(ids) <= set(ended):
                        seen_all.set()

        watcher = asyncio.create_task(watch())
        cpu0 = daemon.daemon_cpu_s()
        assert daemon.proc is not None
        threads0 = common.thread_cpu_s(daemon.proc.pid)
        helpers = common.spawn_helpers(daemon.proc.pid)  # started by the warm-up job
        helper0 = sum(common.proc_cpu_s(h) for h in helpers)
        # The jobs are reaped by the helper (or the daemon, when it starts them itself).
        jobs_cpu0 = sum(common.children_cpu_s(p) for p in [daemon.proc.pid, *helpers])
        bench_cpu0 = time.process_time()
        t0 = time.perf_counter()
        if submit == "pipelined":
            jobs = await asyncio.gather(
                *(
                    client.call("launch", solver=PROFILE, input=str(p), ncpu=1)
                    for p in inputs
                )
            )
        else:
            jobs = [
                await client.call("launch", solver=PROFILE, input=str(p), ncpu=1)
                for p in inputs
            ]
        submitted = time.perf_counter()
        ids.extend(j["id"] for j in jobs)
        if len(ended) >= n and set(ids) <= set(ended):
            seen_all.set()
        await asyncio.wait_for(seen_all.wait(), timeout=600)
        done = max(ended[i][1] for i in ids)
        cpu = daemon.daemon_cpu_s() - cpu0
        threads1 = common.thread_cpu_s(daemon.proc.pid)
        loop_cpu = threads1.get(daemon.proc.pid, 0.0) - threads0.get(daemon.proc.pid, 0.0)
        jobs_cpu = sum(common.children_cpu_s(p) for p in [daemon.proc.pid, *helpers]) - jobs_cpu0
        helper_cpu = sum(common.proc_cpu_s(h) for h in helpers) - helper0
        bench_cpu = time.process_time() - bench_cpu0
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    return {
        "peer": "dynalauncher",
        "how": f"launch x{n} ({submit}), jobChanged",
        "n": n,
        "submit_s": submitted - t0,
        # perf_counter is CLOCK_MONOTONIC, shared with the daemon's what-if timeline.
        "submitted_at": submitted,
        "total_s": done - t0,
        "rate": n / (done - t0),
        "daemon_cpu_s": cpu,
        # The event loop thread's share: when it nears the wall time, the loop is the bound.
        "loop_cpu_s": loop_cpu,
        "helper_cpu_s": helper_cpu,
        # On 2 cores the machine is the limit once daemon + jobs + this client near 2 × wall.
        "jobs_cpu_s": jobs_cpu,
        "client_cpu_s": bench_cpu,
        "statuses": dict(Counter(ended[i][0] for i in ids)),
    }


def run_dynalauncher(args: argparse.Namespace) -> dict[str, Any]:
    extra = ("[legacy]\nenabled = false\n" if args.no_legacy else "") + args.config_extra
    with GenericDaemon(
        keep=args.keep, patches=tuple(args.what_if), extra=extra
    ) as daemon:
        inputs = daemon.workdirs(args.n)
        warm = daemon.workdirs(
            1, prefix="warm"
        )  # one job first: imports, first spawn, store
        asyncio.run(dyna_run_warm(daemon, warm))
        profiler = (
            start_profiler(daemon, args.profile, args.profile_gil)
            if args.profile
            else None
        )
        try:
            result = asyncio.run(dyna_run(daemon, inputs, args.submit))
        finally:
            if profiler is not None:
                stop_profiler(profiler, args.profile)
        result["db_bytes"] = (daemon.tmp / "jobs.db").stat().st_size
        result["phases"] = job_phases(daemon.tmp / "jobs.db", skip=1)
    if (
        daemon.trace_path.exists()
    ):  # the "trace" what-if: step timings, written at daemon exit
        result["trace"] = json.loads(daemon.trace_path.read_text())
        daemon.trace_path.unlink()
        if "timeline" in result["trace"]:
            merge_helper_marks(result["trace"]["timeline"], Path(f"{daemon.trace_path}.helper"))
    gc_stats = Path(f"{daemon.trace_path}.gc")  # the "gc-stats" what-if, written at daemon exit
    if gc_stats.exists():
        for generation, (count, total_s, worst_s) in json.loads(gc_stats.read_text()).items():
            print(
                f"# what-if gc-stats: {generation} {count} collections, {1000 * total_s:.1f} ms in all, "
                f"worst {1000 * worst_s:.1f} ms (start-up included)"
            )
        gc_stats.unlink()
    profile = Path(f"{daemon.trace_path}.prof")  # the "cprofile" what-if
    if profile.exists():
        print(f"# what-if cprofile: pstats file {profile}")
    return result


def job_phases(db: Path, skip: int) -> dict[str, Any]:
    """From the store's transition events: how long a job holds its core (starting → ended),
    and the gap between a job ending and the next one starting (the scheduler's turnaround).
    `skip`: warm-up jobs (the lowest ids) left out."""
    import bisect
    import sqlite3
    from datetime import datetime as dt

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT job_id, at, to_status FROM job_events ORDER BY id"
        ).fetchall()
    at: dict[int, dict[str, float]] = {}
    for job_id, when, status in rows:
        if job_id > skip:
            at.setdefault(job_id, {})[status] = dt.fromisoformat(when).timestamp()
    ends = {
        j: next(t[s] for s in TERMINAL if s in t)
        for j, t in at.items()
        if TERMINAL & t.keys()
    }
    held = [
        ends[j] - t["starting"] for j, t in at.items() if j in ends and "starting" in t
    ]
    starts = sorted(t["starting"] for t in at.values() if "starting" in t)
    gaps = []
    for end in ends.values():
        k = bisect.bisect_left(starts, end)
        if k < len(starts):
            gaps.append(starts[k] - end)
    return {
        "core_held_s": common.summarize(held),
        "end_to_next_start_s": common.summarize(gaps),
        "reached_running": sum(1 for t in at.values() if "running" in t),
        "events_per_job": len([r for r in rows if r[0] > skip]) / max(1, len(at)),
    }


async def dyna_run_warm(daemon: GenericDaemon, inputs: list[Path]) -> None:
    assert daemon.url is not None
    async with Client(daemon.url) as client:
        await client.subscribe("jobs")
        job = await client.call("launch", solver=PROFILE, input=str(inputs[0]), ncpu=1)
        await client.wait_for(job["id"], *TERMINAL, timeout=30)


def launches_only(args: argparse.Namespace) -> str:
    """N pipelined launches into a daemon that plans nothing (the `no-schedule` what-if), so
    the burst is timed alone; returns the SUMMARY line. Used to find what a launch costs."""
    patches = (*args.what_if, "no-schedule")
    with GenericDaemon(keep=args.keep, patches=patches, extra=args.config_extra) as daemon:
        inputs = daemon.workdirs(args.n)
        assert daemon.url is not None and daemon.proc is not None
        profiler = start_profiler(daemon, args.profile, args.profile_gil) if args.profile else None

        async def burst() -> float:
            assert daemon.url is not None
            async with Client(daemon.url) as client:
                await client.subscribe("jobs")
                t0 = time.perf_counter()
                await asyncio.gather(
                    *(client.call("launch", solver=PROFILE, input=str(p), ncpu=1) for p in inputs)
                )
                return time.perf_counter() - t0

        cpu0, loop0 = daemon.daemon_cpu_s(), common.thread_cpu_s(daemon.proc.pid)[daemon.proc.pid]
        try:
            wall = asyncio.run(burst())
        finally:
            if profiler is not None:
                stop_profiler(profiler, args.profile)
        cpu = daemon.daemon_cpu_s() - cpu0
        loop = common.thread_cpu_s(daemon.proc.pid)[daemon.proc.pid] - loop0
    if args.profile and args.profile.exists():
        print(top_frames(args.profile))
    return (
        f"SUMMARY throughput --launches-only: {args.n} pipelined launches in {wall:.3f} s "
        f"({args.n / wall:.0f}/s); daemon CPU {1000 * cpu / args.n:.3f} ms per launch, of which the "
        f"event loop thread {1000 * loop / args.n:.3f} ms"
    )


def start_profiler(
    daemon: GenericDaemon, out: Path, gil: bool
) -> subprocess.Popen[bytes]:
    """py-spy record (raw collapsed stacks, all threads, idle frames dropped) on our daemon;
    `gil`: only the thread holding the GIL (what limits a Python daemon to one CPU)."""
    assert daemon.proc is not None
    py_spy = Path(sys.executable).parent / "py-spy"
    proc = subprocess.Popen(
        [
            str(py_spy if py_spy.exists() else "py-spy"),
            "record",
            "--pid",
            str(daemon.proc.pid),
            "--rate",
            "1000",
            "--threads",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            *(["--gil"] if gil else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)  # py-spy attaches
    return proc


def stop_profiler(proc: subprocess.Popen[bytes], out: Path) -> None:
    proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if not out.exists():
        print(
            f"# py-spy wrote nothing: {err.decode(errors='replace')[-500:]}",
            file=sys.stderr,
        )


# ----------------------------------------------------------------- peers


def workdirs(root: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        d = root / f"j{i:05d}"
        d.mkdir(parents=True)
        out.append(d)
    return out


def bash_loop(commands: list[str], env: dict[str, str]) -> None:
    """Run the commands one after another in one bash (the way a user scripts a CLI)."""
    script = "set -e\n" + "\n".join(commands) + "\n"
    subprocess.run(
        ["bash", "-c", script], env=env, check=True, stdout=subprocess.DEVNULL
    )


def run_tsp(args: argparse.Namespace, *, keep_output: bool = False) -> dict[str, Any]:
    """tsp -S 2 on N trivial jobs. `keep_output`: tsp's default, each job's output captured
    in a file of its own (as dynalauncher captures every job's stdout in its workdir);
    otherwise `tsp -n`, output discarded."""
    from bench.peers.tsp import TaskSpooler

    n = args.n
    submit = "tsp true" if keep_output else "tsp -n true"
    with TaskSpooler(slots=2, keep=args.keep) as ts:
        dirs = workdirs(ts.dir / "runs", n)
        bash_loop([f"cd / && {submit}"], ts.env)  # warm-up job (server already up)
        ts.wait_all(1)
        base = ts.states().get("finished", 0)
        cmds = [f"cd {shlex.quote(str(d))} && {submit}" for d in dirs]
        t0 = time.perf_counter()
        bash_loop(cmds, ts.env)
        submitted = time.perf_counter()
        done = ts.wait_all(base + n)
        levels = ts.exit_levels()
    return {
        "peer": "task-spooler, output kept" if keep_output else "task-spooler",
        "how": f"tsp -S 2; {submit} x{n} (bash loop); poll tsp -l",
        "n": n,
        "submit_s": submitted - t0,
        "total_s": done - t0,
        "rate": n / (done - t0),
        "statuses": {f"exit {k}": v for k, v in levels.items()},
    }


def run_slurm(
    args: argparse.Namespace, kind: str, n: int, extra: str
) -> dict[str, Any]:
    from bench.peers.slurm import Slurm

    cpus = os.cpu_count() or 2
    with Slurm(cpus=cpus, keep=args.keep, extra_conf=extra) as s:
        dirs = workdirs(s.dir / "runs", n)
        s.run("sbatch", "-o", "/dev/null", "--wrap", "true")  # warm-up
        deadline = time.monotonic() + 60
        while s.completed() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        base = s.completed()
        t0 = time.perf_counter()
        if kind == "array":
            # One submission; each task runs in its own folder (cd by task id).
            root = shlex.quote(str(s.dir / "runs"))
            s.run(
                "sbatch",
                f"--array=0-{n - 1}",
                "-o",
                "/dev/null",
                "--chdir",
                str(s.dir / "runs"),
                "--wrap",
                f"cd {root}/j$(printf %05d $SLURM_ARRAY_TASK_ID) && true",
            )
        else:
            bash_loop(
                [
                    f"sbatch --chdir={shlex.quote(str(d))} -o /dev/null --wrap true"
                    for d in dirs
                ],
                s.env,
            )
        submitted = time.perf_counter()
        deadline = time.monotonic() + max(120.0, n * 5.0)
        while s.completed() < base + n:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"SLURM: {s.completed() - base} of {n} jobs ended in time"
                )
            time.sleep(0.01)
        done = time.perf_counter()
        states = Counter(
            line.split("JobState=")[1].split()[0]
            for line in s.jobcomp.read_text().splitlines()[base:]
            if "JobState=" in line
        )
    how = {
        "array": f"sbatch --array=0-{n - 1} --wrap (1 call)",
        "wrap": f"sbatch --wrap true x{n} (bash loop)",
    }[kind]
    return {
        "peer": f"SLURM {kind}, {'tuned' if extra else 'default'}",
        "how": how + (f"; {extra}" if extra else "; Debian default scheduler"),
        "n": n,
        "submit_s": submitted - t0,
        "total_s": done - t0,
        "rate": n / (done - t0),
        "statuses": dict(states),
    }


# ----------------------------------------------------------------- main


class ProcCount:
    """Samples the host's process count every 0.5 s in a thread (other users' processes
    come and go, and dynalauncher's job-end sweep reads every process)."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="proc-count", daemon=True
        )

    def _run(self) -> None:
        while True:
            self.seen.append(len(psutil.pids()))
            if self._stop.wait(0.5):
                return

    def start(self) -> ProcCount:
        self._thread.start()
        return self

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        return min(self.seen), max(self.seen)


def merge_helper_marks(marks: dict[str, dict[str, float]], path: Path) -> None:
    """Add the spawn helper's moments (it writes them when it exits, on the daemon's EOF)."""
    deadline = time.monotonic() + 5.0
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the helper's exit follows the daemon's; no event to wait on
    if not path.exists():
        print("# what-if timeline: the spawn helper wrote no moments")
        return
    for job_id, moments in json.loads(path.read_text()).items():
        marks.setdefault(job_id, {}).update(moments)
    path.unlink()


def print_timeline(marks: dict[str, dict[str, float]], submitted_at: float, submit_s: float) -> None:
    """The `timeline` what-if: the mean of each link of a job's chain (ms from one moment to
    the next, in the order they happen), for the jobs started while launches were still
    being handled and for those started after. Both processes' perf_counter is the same
    CLOCK_MONOTONIC, so the daemon's and the helper's moments compare with the bench's."""
    order = [
        "start", "commit starting>", "store thread runs", "store thread wrote", "commit starting<",
        "spawn>", "h:got", "h:spawned", "h:ctime", "spawn<", "exit", "finish", "read>", "read<",
        "commit end>",
    ]
    print("# what-if timeline: mean ms per link of a job's chain (start -> `commit end>`):")
    # The warm-up job started before the clock; it is left out.
    began = submitted_at - submit_s
    jobs = [m for m in marks.values() if "start" in m and "commit end>" in m and m["start"] >= began]
    for phase, chosen in (
        ("started during submission", [m for m in jobs if m["start"] < submitted_at]),
        ("started after submission", [m for m in jobs if m["start"] >= submitted_at]),
    ):
        if not chosen:
            continue
        links = []
        for a, b in itertools.pairwise(order):
            gaps = [m[b] - m[a] for m in chosen if a in m and b in m]
            if gaps:
                links.append(f"{b} {1000 * sum(gaps) / len(gaps):.2f}")
        chain = [1000 * (m["commit end>"] - m["start"]) for m in chosen]
        print(
            f"#   {phase}: {len(chosen)} jobs, chain mean {sum(chain) / len(chain):.2f} ms: "
            + "; ".join(links)
        )


def top_frames(raw: Path, limit: int = 25) -> str:
    """Inclusive sample share of each function in a py-spy raw (collapsed) file."""
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, k in common.collapsed_stacks(raw.read_text()):
        total += k
        for frame in set(frames):
            inclusive[frame] += k
    lines = [
        f"# py-spy: {total} samples (all threads, idle excluded); inclusive share:"
    ]
    for frame, k in inclusive.most_common(limit):
        lines.append(f"#  {100 * k / total:5.1f}%  {frame}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n",
        type=int,
        default=1000,
        help="jobs for dynalauncher and tsp (default 1000)",
    )
    parser.add_argument(
        "--slurm-n",
        type=int,
        default=100,
        help="jobs per tuned SLURM case (default 100; ~2 jobs/s)",
    )
    parser.add_argument(
        "--default-slurm-n",
        type=int,
        default=20,
        help="jobs for SLURM with Debian's default scheduler (default 20; ~0.7 jobs/s)",
    )
    parser.add_argument(
        "--peers",
        default=",".join(ALL_PEERS),
        help=f"comma list of {', '.join(ALL_PEERS)}",
    )
    parser.add_argument(
        "--submit", choices=("pipelined", "sequential"), default="pipelined"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy raw stacks of the daemon's run go here"
    )
    parser.add_argument(
        "--config-extra",
        default="",
        help="TOML appended to the daemon's configuration (a what-if, e.g. $'[cores]\\npin = false')",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL",
    )
    parser.add_argument(
        "--what-if",
        default=[],
        type=lambda s: [p for p in s.split(",") if p],
        help="diagnostic: run the daemon with these run-time patches of serv "
        "(bench/peers/whatif/sitecustomize.py): switch (GIL switch interval 0.5 ms), "
        "quiet-log (no INFO lines), store-linger, store-lanes, short-slice; not shippable, to "
        "learn what limits: store-inline, no-end-read; diagnostics: trace (step timings), "
        "timeline (each job's chain), cprofile, spin (causal: slow one part down). "
        "No longer available, shipped: scan, children (shipped in 48ab53a), "
        "async-schedule, schedule-fast, group-commit (shipped in 773a3fe), no-pin (shipped in 62b1853)",
    )
    parser.add_argument(
        "--no-legacy",
        action="store_true",
        help="diagnostic: [legacy] enabled = false (no Socket.IO gateway)",
    )
    parser.add_argument(
        "--extra-procs",
        type=int,
        default=0,
        help="idle `sleep` processes of our own during every peer's run (default 0)",
    )
    parser.add_argument(
        "--launches-only",
        action="store_true",
        help="diagnostic: time dynalauncher's burst of N pipelined launches alone (the "
        "no-schedule what-if: nothing starts), with the daemon's CPU; no peers",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folders")
    args = parser.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(ALL_PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}")
    common.install_sigterm_as_interrupt()
    print(common.machine())
    print(
        f"# throughput: {args.n} jobs of `true` through {os.cpu_count()} cores; load average "
        f"{os.getloadavg()[0]:.2f} at start"
    )
    if args.launches_only:
        print(launches_only(args))
        return 0
    began = time.perf_counter()
    with common.ExtraProcesses(args.extra_procs):
        results, skipped = run_peers(args, peers)
    report(args, results, skipped, began)
    return 0


def run_peers(
    args: argparse.Namespace, peers: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    if args.extra_procs:
        print(
            f"# with {args.extra_procs} extra idle processes: {len(psutil.pids())} on the host"
        )
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    for peer in peers:
        need = {
            "tsp": ["tsp"],
            "tsp-output": ["tsp"],
            "slurm-wrap": ["slurmctld"],
            "slurm-array": ["slurmctld"],
            "slurm-default": ["slurmctld"],
        }.get(peer, [])
        if any(shutil.which(c) is None for c in need):
            skipped.append(f"{peer} (not installed: run bench/peers/setup)")
            continue
        sampler = ProcCount().start()
        if peer == "dynalauncher":
            results.append(run_dynalauncher(args))
        elif peer == "tsp":
            results.append(run_tsp(args))
        elif peer == "tsp-output":
            results.append(run_tsp(args, keep_output=True))
        elif peer == "slurm-wrap":
            results.append(run_slurm(args, "wrap", args.slurm_n, TUNED))
        elif peer == "slurm-array":
            results.append(run_slurm(args, "array", args.slurm_n, TUNED))
        elif peer == "slurm-default":
            results.append(run_slurm(args, "wrap", args.default_slurm_n, ""))
        r = results[-1]
        r["host_procs"] = sampler.stop()
        print(
            f"# {r['peer']}: {r['n']} jobs in {r['total_s']:.2f} s = {r['rate']:.1f} jobs/s "
            f"(submitting took {r['submit_s']:.2f} s); {r['statuses']}; host processes "
            f"{r['host_procs'][0]}-{r['host_procs'][1]} during the run",
            flush=True,
        )
    return results, skipped


def report(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    skipped: list[str],
    began: float,
) -> None:
    print(f"{'peer':<28} {'n':>5} {'submit s':>9} {'total s':>9} {'jobs/s':>9}   how")
    for r in results:
        print(
            f"{r['peer']:<28} {r['n']:>5} {r['submit_s']:>9.2f} {r['total_s']:>9.2f} {r['rate']:>9.1f}   {r['how']}"
        )
    for s in skipped:
        print(f"# skipped {s}")
    by = {r["peer"]: r for r in results}
    dyna = by.get("dynalauncher")
    ratios = []
    if dyna:
        if "daemon_cpu_s" in dyna:
            print(
                f"# dynalauncher daemon CPU {dyna['daemon_cpu_s']:.2f} s = "
                f"{1000 * dyna['daemon_cpu_s'] / dyna['n']:.2f} ms per job, of which the event loop thread "
                f"{dyna['loop_cpu_s']:.2f} s ({dyna['loop_cpu_s'] / dyna['total_s']:.0%} of the run's wall time) "
                f"and the spawn helper process {dyna.get('helper_cpu_s', 0.0):.2f} s; "
                f"store {dyna['db_bytes'] / 1e6:.1f} MB\n"
                f"# CPU besides the daemon: the jobs themselves {dyna['jobs_cpu_s']:.2f} s, this bench's "
                f"client {dyna['client_cpu_s']:.2f} s; all three together "
                f"{(dyna['daemon_cpu_s'] + dyna['jobs_cpu_s'] + dyna['client_cpu_s']) / dyna['total_s']:.2f} "
                f"CPUs of the {os.cpu_count()}"
            )
            ph = dyna["phases"]
            print(
                "# dynalauncher per job, from the store's transition times (event `at`, set just before each commit):"
            )
            print(
                common.table(
                    [
                        ("core held (starting→ended)", ph["core_held_s"]),
                        ("job ended → next starting", ph["end_to_next_start_s"]),
                    ]
                )
            )
            print(
                f"# {ph['reached_running']} of {dyna['n']} jobs were seen `running` (the rest ended before the "
                f"PID search found `true`); {ph['events_per_job']:.1f} transition events per job"
            )
        for r in results:
            if r is dyna:
                continue
            ratio = dyna["rate"] / r["rate"]
            goal = GOAL_TSP if r["peer"].startswith("task-spooler") else GOAL_SLURM
            verdict = (
                "met" if ratio >= goal else f"missed ({ratio / goal:.2f}x of the goal)"
            )
            ratios.append(f"{ratio:.2f}x {r['peer']} (goal >= {goal:g}x: {verdict})")
            print(
                f"# dynalauncher / {r['peer']}: {ratio:.2f}x  goal >= {goal:g}x: {verdict}"
            )
    if dyna and dyna.get("trace", {}).get("timeline"):
        print_timeline(dyna["trace"].pop("timeline"), dyna["submitted_at"], dyna["submit_s"])
    if dyna and dyna.get("trace"):
        missing = dyna["trace"].pop("missing", [])
        if missing:
            print(
                f"# what-if trace: not found in serv/ (not timed): {', '.join(missing)}"
            )
        counts = {k: v for k, v in dyna["trace"].items() if k.startswith("count:")}
        rows = sorted(
            ((k, v) for k, v in dyna["trace"].items() if k not in counts),
            key=lambda kv: -sum(kv[1]),
        )
        for name, v in counts.items():
            c = common.summarize(v)
            print(
                f"# what-if trace {name}: n={c['n']} p50 {c['p50']:g} p90 {c['p90']:g} "
                f"max {c['max']:g} mean {sum(v) / max(1, len(v)):.2f}"
            )
        print(
            "# what-if trace: wall time per call of the daemon's steps (calls per job = n / jobs):"
        )
        print(common.table([(name[:28], common.summarize(v)) for name, v in rows]))
        for name, v in rows:
            print(
                f"#   {name}: {len(v) / dyna['n']:.2f} calls/job, {1000 * sum(v) / dyna['n']:.2f} ms/job total"
            )
    if args.profile and args.profile.exists():
        print(top_frames(args.profile))
    if args.json:
        args.json.write_text(
            json.dumps({"results": results, "skipped": skipped}, indent=1)
        )
    rates = ", ".join(f"{r['peer']} {r['rate']:.1f}/s" for r in results)
    print(
        f"SUMMARY throughput: {rates}; dynalauncher = {'; '.join(ratios) or 'n/a'}; "
        f"wall {time.perf_counter() - began:.1f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
