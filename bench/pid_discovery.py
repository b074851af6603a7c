"""Rank appears → its real PID known to a subscribed client.

For each job: launch a fake LS-DYNA job (SMP: the solver process itself; MPP: under
`mpiexec.hydra -np 2`, the job's pid is rank 0 below hydra_pmi_proxy) and time from the
kernel's start time of the job's final `pid` to the receipt of the `jobChanged` with status
`running` carrying that pid. The job is then stopped (`stop`, force) before the next one.

Clock: the start time is field 22 of /proc/<pid>/stat (what psutil's create_time() reads),
in clock ticks since boot, compared with CLOCK_BOOTTIME at receipt. It has the kernel's
clock-tick resolution (1/CLK_TCK = 10 ms with USER_HZ=100) and is floored, so each sample
is quantised and overstated by 0-10 ms (5 ms on average). psutil's create_time() adds the
whole-second `btime` and must not be compared with time.time() (off by up to 1 s).

Also printed, for context: launch call sent → `running` received (perf_counter).

Peer: the predecessor looks for the PID up to 10 times, 0.5 s apart (documented constant,
/work/shared/reference/dynalauncher-protocol.md), matching only the name `mpiexec`: its
PID is known 0-0.5 s after the launcher starts at best, and it is never the solver's.

    .venv/bin/python bench/pid_discovery.py [--n 100] [--cases smp,mpp]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from serv.client import Client

GOAL_S = 0.1
PEER_STEP_S = 0.5  # the predecessor's PID search interval (documented constant)
STEP_TIMEOUT_S = 30.0
CASES = {  # name: (solver profile, ncpu)
    "smp": ("fake-smp", 1),
    "mpp": ("fake-mpp", 2),  # mpiexec.hydra -np 2
}


async def running_note(
    client: Client, job_id: int, timeout: float
) -> tuple[dict[str, Any], float, float]:
    """The first jobChanged for `job_id` with status running and a pid, with its receipt
    time on CLOCK_BOOTTIME and on perf_counter."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        note = await client.next_notification(
            "jobChanged", max(deadline - loop.time(), 0.0)
        )
        at_boot, at_perf = common.boottime(), time.perf_counter()
        job = note["job"]
        if job["id"] != job_id:
            continue
        if job["status"] == "running" and job.get("pid"):
            return job, at_boot, at_perf
        if job["status"] in common.TERMINAL:
            raise RuntimeError(
                f"job {job_id} ended before running: {job['status']} {job.get('message')}"
            )


async def one_job(
    daemon: common.BenchDaemon, client: Client, solver: str, ncpu: int
) -> dict[str, Any]:
    deck = daemon.deck(wall_s=600.0)
    sent = time.perf_counter()
    job = await client.call("launch", solver=solver, input=str(deck), ncpu=ncpu)
    running, at_boot, at_perf = await running_note(client, job["id"], STEP_TIMEOUT_S)
    pid = running["pid"]
    started = common.start_boottime(pid)
    name = psutil.Process(pid).name()
    await client.call("stop", id=job["id"], force=True)
    await client.wait_for(job["id"], *common.TERMINAL, timeout=STEP_TIMEOUT_S)
    return {
        "rank_to_event": at_boot - started,
        "launch_to_event": at_perf - sent,
        "name": name,
    }


async def run(daemon: common.BenchDaemon, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    assert daemon.url is not None
    async with Client(daemon.url) as client:
        await client.subscribe("jobs")
        for case in args.cases:
            solver, ncpu = CASES[case]
            await one_job(daemon, client, solver, ncpu)  # warm-up, not counted
            procs_before = len(psutil.pids())
            rank: list[float] = []
            launch: list[float] = []
            names: collections.Counter[str] = collections.Counter()
            for _ in range(args.n):
                r = await one_job(daemon, client, solver, ncpu)
                rank.append(r["rank_to_event"])
                launch.append(r["launch_to_event"])
                names[r["name"]] += 1
            results[case] = {
                "rank_to_event": common.summarize(rank),
                "launch_to_event": common.summarize(launch),
                "pid_names": dict(names),
                "samples_rank_s": rank,
                "samples_launch_s": launch,
                "host_processes": (procs_before, len(psutil.pids())),
            }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="jobs per case (default 100)")
    parser.add_argument(
        "--cases", default="smp,mpp", type=lambda s: s.split(","), help="smp,mpp"
    )
    parser.add_argument(
        "--extra-procs",
        type=int,
        default=0,
        help="idle sleep processes to add to the process table (default 0)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw samples here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (log, store, decks)"
    )
    args = parser.parse_args()
    common.install_sigterm_as_interrupt()
    print(common.machine())
    print(
        f"# pid_discovery: n={args.n} per case; start time resolution {1000 / common.CLK_TCK:.0f} ms (floored)"
    )
    began = time.perf_counter()
    with (
        common.ExtraProcesses(args.extra_procs),
        common.BenchDaemon(keep=args.keep) as daemon,
    ):
        print(
            f"# processes on the host with the daemon up: {len(psutil.pids())} ({args.extra_procs} extra idle)"
        )
        results = asyncio.run(run(daemon, args))
    rows = []
    for case, r in results.items():
        rows.append((f"{case} rank start -> running", r["rank_to_event"]))
        rows.append((f"{case} launch call -> running", r["launch_to_event"]))
    print(common.table(rows))
    for case, r in results.items():
        print(
            f"# {case}: process name of the reported pid {r['pid_names']}; host processes "
            f"{r['host_processes'][0]} -> {r['host_processes'][1]} (case start -> end)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    summary = ", ".join(
        f"{case} p50 {r['rank_to_event']['p50'] * 1000:.0f} ms / p99 {r['rank_to_event']['p99'] * 1000:.0f} ms "
        f"(p99 {common.verdict(r['rank_to_event']['p99'], GOAL_S)})"
        for case, r in results.items()
    )
    print(
        f"SUMMARY pid_discovery (rank start -> running): {summary}; goal <= {GOAL_S * 1000:.0f} ms; "
        f"peer: predecessor's {PEER_STEP_S} s search steps (documented constant; finds mpiexec, "
        f"never the rank); wall {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
