"""Diagnostic: where the milliseconds of death_to_event and pid_discovery go.

Runs the daemon in this process (so the steps can be timed) and wraps a few of its internal
steps with timestamps: the pidfd exit callbacks, the process-tree scan, the output verdict,
the store commit, the publish, and for the PID search each `find_solver` call. It prints the
median time of each step's first start/end after the kill (or after the rank's start time).

This reaches into private names of serv.job_manager and friends, so it may need updating
when they change; the figures themselves come from death_to_event.py and pid_discovery.py,
which use only the public API over a real WebSocket.

    .venv/bin/python bench/breakdown.py death smp|mpp [--n 30]
    .venv/bin/python bench/breakdown.py pid smp|mpp [--n 30]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import functools
import os
import shutil
import signal
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import serv.job_manager as jm
from bench import common
from serv import proctree, workdir
from serv.client import Client
from serv.config import load_config
from serv.daemon import Daemon
from serv.server import Hub
from serv.store import Store

CASES = {"smp": ("fake-smp", 1), "mpp": ("fake-mpp", 2)}
marks: list[tuple[str, float]] = []


def mark(name: str) -> None:
    marks.append((name, common.boottime()))


def wrap(owner: Any, attr: str, name: str, *, hit: bool = False) -> None:
    orig: Callable[..., Any] = getattr(owner, attr)
    if asyncio.iscoroutinefunction(orig):

        @functools.wraps(orig)
        async def awrapped(*a: Any, **k: Any) -> Any:
            mark(name + ">")
            try:
                return await orig(*a, **k)
            finally:
                mark(name + "<")

        setattr(owner, attr, awrapped)
        return

    @functools.wraps(orig)
    def wrapped(*a: Any, **k: Any) -> Any:
        mark(name + ">")
        result = orig(*a, **k)
        mark(name + ("<hit" if hit and result is not None else "<"))
        return result

    setattr(owner, attr, wrapped)


def instrument() -> None:
    wrap(jm.JobManager, "_on_launcher_exit", "launcher pidfd callback")
    wrap(jm.JobManager, "_on_solver_exit", "solver exit seen")
    wrap(jm.JobManager, "_kill_tree_sync", "tree scan + kill")
    wrap(jm.JobManager, "_collect_end_sync", "collect end (tail thread)")
    wrap(jm, "read_verdict", "read verdict")
    wrap(workdir, "newest_dump", "newest dump")
    wrap(workdir, "write_pid_file", "write pid file")
    wrap(proctree, "find_solver", "find_solver", hit=True)
    wrap(Store, "commit", "store commit")
    wrap(Hub, "job_changed", "publish")


async def next_job(
    client: Client, job_id: int, statuses: frozenset[str]
) -> dict[str, Any]:
    while True:
        note = await client.next_notification("jobChanged", 30)
        job: dict[str, Any] = note["job"]
        if job["id"] == job_id and job["status"] in statuses:
            return job


async def run(figure: str, case: str, n: int) -> None:
    solver, ncpu = CASES[case]
    bench = (
        common.BenchDaemon()
    )  # its temp folder, config and fake solvers; not started
    config = load_config(bench.config_path)
    config = dataclasses.replace(
        config, server=dataclasses.replace(config.server, port=0)
    )
    rows: dict[str, list[float]] = collections.defaultdict(list)
    try:
        async with Daemon(config) as daemon, Client(daemon.url) as client:
            assert daemon.store is not None
            bench.daemon_id = daemon.store.daemon_id
            await client.subscribe("jobs")
            for i in range(n + 1):
                marks.clear()
                job = await client.call(
                    "launch",
                    solver=solver,
                    input=str(bench.deck(wall_s=600.0)),
                    ncpu=ncpu,
                )
                running = await next_job(client, job["id"], frozenset({"running"}))
                rx = common.boottime()
                pid = running["pid"]
                if figure == "pid":
                    zero = common.start_boottime(pid)
                    await client.call("stop", id=job["id"], force=True)
                    await next_job(client, job["id"], common.TERMINAL)
                    found = next(t for m, t in marks if m == "find_solver<hit")
                    steps = [
                        (m, t) for m, t in marks if found <= t <= rx
                    ]  # not the stop that follows
                    end = rx
                else:
                    await asyncio.sleep(0.2)
                    if not bench.is_ours(pid):
                        raise RuntimeError(f"pid {pid} is not ours")
                    marks.clear()
                    zero = common.boottime()
                    os.kill(pid, signal.SIGKILL)
                    await next_job(client, job["id"], common.TERMINAL)
                    end = common.boottime()
                    steps = list(marks)
                if i == 0:
                    continue  # warm-up
                if figure == "pid":
                    rows["find_solver calls"].append(
                        sum(1 for m, _ in marks if m == "find_solver>")
                    )
                    misses = [t for m, t in marks if m == "find_solver<" and t < found]
                    if misses:
                        rows["last find_solver miss <"].append(
                            (misses[-1] - zero) * 1000
                        )
                    rows["find_solver hit <"].append((found - zero) * 1000)
                seen: set[str] = set()
                for name, t in steps:
                    if name not in seen and not name.startswith("find_solver"):
                        seen.add(name)
                        rows[name].append((t - zero) * 1000)
                rows["client receives jobChanged"].append((end - zero) * 1000)
    finally:
        if bench.daemon_id:
            common.kill_tagged(bench.daemon_id)
        shutil.rmtree(bench.tmp, ignore_errors=True)
    origin = (
        "the kill"
        if figure == "death"
        else "the rank's start time (tick-floored, so +0-10 ms)"
    )
    print(f"# breakdown {figure} {case}: median ms after {origin}, n={n}")
    calls = rows.pop("find_solver calls", None)
    for name, values in sorted(rows.items(), key=lambda kv: statistics.median(kv[1])):
        print(f"  {name:<30} {statistics.median(values):8.2f}")
    if calls:
        print(f"  find_solver calls per job (median): {statistics.median(calls):.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("figure", choices=["death", "pid"])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--n", type=int, default=30)
    args = parser.parse_args()
    common.install_sigterm_as_interrupt()
    instrument()
    print(common.machine())
    asyncio.run(run(args.figure, args.case, args.n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
