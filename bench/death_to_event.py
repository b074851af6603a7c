"""Solver death → `jobChanged` with an ended status, as seen by a subscribed client.

For each kill: launch a long fake LS-DYNA job, wait until it is `running` (its `pid` is the
solver: the process itself for SMP, rank 0 under `mpiexec.hydra -np 2` for MPP), let it
settle (0.1 s), then time from just before `os.kill(pid, SIGKILL)` to the receipt of the
`jobChanged` notification for that job with a terminal status (finished, failed, stopped,
cancelled). Right after that notification, `getCoreAllocationStatus` must show none of the
job's cores still booked (counted; the daemon frees them before it announces the end).
Kills are sequential. The daemon runs with the default 5 s watchdog interval, so a result
well under 5 s shows that the exit was seen without the watchdog.

Peer: the predecessor notices a dead solver only at its job watchdog's next tick, every 5 s
(a constant in its code; /work/shared/reference/dynalauncher-protocol.md), so 0-5 s, about
2.5 s on average and ~4.95 s at p99 for kills at random moments. Not measured here.

    .venv/bin/python bench/death_to_event.py [--n 100] [--cases smp,mpp]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from serv.client import Client

GOAL_S = 0.1
PEER_WATCHDOG_S = 5.0  # the predecessor's job watchdog interval (documented constant)
STEP_TIMEOUT_S = 30.0
CASES = {  # name: (solver profile, ncpu)
    "smp": ("fake-smp", 1),
    "mpp": ("fake-mpp", 2),  # mpiexec.hydra -np 2
}


async def ended(client: Client, job_id: int, timeout: float) -> dict[str, Any]:
    """The first jobChanged for `job_id` with a terminal status (others are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        note = await client.next_notification(
            "jobChanged", max(deadline - loop.time(), 0.0)
        )
        job: dict[str, Any] = note["job"]
        if job["id"] == job_id and job["status"] in common.TERMINAL:
            return job


async def one_kill(
    daemon: common.BenchDaemon, client: Client, solver: str, ncpu: int, settle: float
) -> tuple[float, str]:
    deck = daemon.deck(wall_s=600.0)
    job = await client.call("launch", solver=solver, input=str(deck), ncpu=ncpu)
    running = await client.wait_for(job["id"], "running", timeout=STEP_TIMEOUT_S)
    pid = running["pid"]
    await asyncio.sleep(settle)  # past start-up: the solver is mid-run when it dies
    if not daemon.is_ours(pid):
        raise RuntimeError(
            f"job {job['id']}: pid {pid} does not carry our daemon's tag; not killing it"
        )
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    done = await ended(client, job["id"], STEP_TIMEOUT_S)
    dt = time.perf_counter() - t0
    status = await client.call("getCoreAllocationStatus")
    still = [c["index"] for c in status["cores"] if c["job_id"] == job["id"]]
    return dt, done["status"] if not still else done["status"] + " (cores still booked)"


async def run(daemon: common.BenchDaemon, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    assert daemon.url is not None
    async with Client(daemon.url) as client:
        await client.subscribe("jobs")
        for case in args.cases:
            solver, ncpu = CASES[case]
            await one_kill(
                daemon, client, solver, ncpu, args.settle
            )  # warm-up, not counted
            procs_before = len(psutil.pids())
            samples: list[float] = []
            statuses: collections.Counter[str] = collections.Counter()
            timeouts = 0
            for _ in range(args.n):
                try:
                    dt, status = await one_kill(
                        daemon, client, solver, ncpu, args.settle
                    )
                except TimeoutError:
                    timeouts += 1
                    continue
                samples.append(dt)
                statuses[status] += 1
            results[case] = {
                "stats": common.summarize(samples),
                "statuses": dict(statuses),
                "timeouts": timeouts,
                "samples_s": samples,
                "host_processes": (procs_before, len(psutil.pids())),
            }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="kills per case (default 100)")
    parser.add_argument(
        "--cases", default="smp,mpp", type=lambda s: s.split(","), help="smp,mpp"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.1,
        help="seconds between `running` and the kill (default 0.1)",
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
        f"# death_to_event: n={args.n} per case, settle {args.settle} s, watchdog interval 5 s (default)"
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
    rows = [
        (f"{case} kill -9 -> jobChanged", r["stats"]) for case, r in results.items()
    ]
    print(common.table(rows))
    for case, r in results.items():
        print(
            f"# {case}: ended statuses {r['statuses']}, timeouts {r['timeouts']}; host processes "
            f"{r['host_processes'][0]} -> {r['host_processes'][1]} (case start -> end)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    summary = ", ".join(
        f"{case} p99 {r['stats']['p99'] * 1000:.1f} ms ({common.verdict(r['stats']['p99'], GOAL_S)})"
        for case, r in results.items()
    )
    worst = max((r["stats"]["p99"] for r in results.values()), default=float("nan"))
    booked = sum(
        n for r in results.values() for st, n in r["statuses"].items() if "still booked" in st
    )
    print(
        f"SUMMARY death_to_event: {summary}; goal p99 <= {GOAL_S * 1000:.0f} ms; "
        f"cores still booked at jobChanged: {booked}; peer: predecessor's {PEER_WATCHDOG_S:.0f} s "
        f"watchdog (0-{PEER_WATCHDOG_S:.0f} s, documented constant), "
        f"{PEER_WATCHDOG_S / 2 / worst:.0f}x its mean and {PEER_WATCHDOG_S * 0.99 / worst:.0f}x its p99 "
        f"at our worst p99; wall {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
