"""JSON-RPC round trip of `getCoreAllocationStatus` over loopback WebSocket.

1. Latency: one client, sequential calls (default 2000 after 200 warm-up calls); each call
   timed with perf_counter from `call()` to its result.
2. Throughput: 1 and 8 concurrent clients (each a WebSocket connection doing sequential
   calls, all in this one process and event loop) for a fixed time; calls/s, per-call
   latency under that load, and the daemon's CPU use over the window (CPU s / wall s: 1.0
   means its single event-loop thread was saturated).

The daemon is idle (no jobs), so this measures the transport, JSON-RPC dispatch and the
method itself, not a busy job manager. The client is the project's own `serv.client.Client`.

    .venv/bin/python bench/rpc_roundtrip.py [--n 2000] [--warmup 200] [--duration 5] [--clients 1,8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from serv.client import Client

GOAL_S = 0.001
METHOD = "getCoreAllocationStatus"


async def sequential(url: str, n: int, warmup: int) -> list[float]:
    async with Client(url) as client:
        for _ in range(warmup):
            await client.call(METHOD)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            await client.call(METHOD)
            samples.append(time.perf_counter() - t0)
    return samples


async def throughput(
    daemon: common.BenchDaemon, clients: int, duration: float
) -> dict[str, Any]:
    assert daemon.url is not None
    conns = [Client(daemon.url) for _ in range(clients)]
    for c in conns:
        await c.__aenter__()
    try:
        for c in conns:  # warm every connection
            for _ in range(50):
                await c.call(METHOD)
        latencies: list[float] = []
        stop_at = 0.0

        async def worker(c: Client) -> int:
            count = 0
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                await c.call(METHOD)
                latencies.append(time.perf_counter() - t0)
                count += 1
            return count

        cpu0 = daemon.daemon_cpu_s()
        began = time.perf_counter()
        stop_at = began + duration
        counts = await asyncio.gather(*(worker(c) for c in conns))
        wall = time.perf_counter() - began
        cpu = daemon.daemon_cpu_s() - cpu0
    finally:
        for c in conns:
            await c.close()
    total = sum(counts)
    return {
        "clients": clients,
        "calls": total,
        "wall_s": wall,
        "calls_per_s": total / wall,
        "daemon_cpu_per_wall": cpu / wall,
        "latency": common.summarize(latencies),
    }


async def run(daemon: common.BenchDaemon, args: argparse.Namespace) -> dict[str, Any]:
    assert daemon.url is not None
    seq = await sequential(daemon.url, args.n, args.warmup)
    tput = [await throughput(daemon, k, args.duration) for k in args.clients]
    return {"sequential": common.summarize(seq), "throughput": tput, "samples_s": seq}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=int, default=2000, help="sequential calls measured (default 2000)"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="calls before measuring (default 200)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=5.0,
        help="seconds per throughput run (default 5)",
    )
    parser.add_argument(
        "--clients",
        default=[1, 8],
        type=lambda s: [int(x) for x in s.split(",")],
        help="concurrent client counts (default 1,8)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw samples here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (log, store)"
    )
    args = parser.parse_args()
    common.install_sigterm_as_interrupt()
    print(common.machine())
    print(
        f"# rpc_roundtrip: {METHOD}, {args.n} sequential calls after {args.warmup} warm-up; "
        f"throughput {args.duration} s per client count"
    )
    began = time.perf_counter()
    with common.BenchDaemon(keep=args.keep) as daemon:
        results = asyncio.run(run(daemon, args))
    rows = [("sequential round trip", results["sequential"])]
    rows += [
        (f"{t['clients']} client(s), under load", t["latency"])
        for t in results["throughput"]
    ]
    print(common.table(rows))
    for t in results["throughput"]:
        print(
            f"# {t['clients']} client(s): {t['calls']} calls in {t['wall_s']:.2f} s = "
            f"{t['calls_per_s']:.0f} calls/s; daemon CPU {t['daemon_cpu_per_wall']:.2f} s per s"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    seq = results["sequential"]
    tput = ", ".join(
        f"{t['clients']} client(s) {t['calls_per_s']:.0f}/s"
        for t in results["throughput"]
    )
    print(
        f"SUMMARY rpc_roundtrip: sequential p50 {seq['p50'] * 1000:.3f} ms "
        f"({common.verdict(seq['p50'], GOAL_S)}; goal p50 <= 1 ms), p99 {seq['p99'] * 1000:.3f} ms; "
        f"throughput {tput}; wall {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
