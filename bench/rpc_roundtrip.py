"""JSON-RPC round trip and throughput over loopback WebSocket, with N jobs in the store
(issue #7, figure 2; issue #3's `getCoreAllocationStatus` figure is its first row).

Endpoints and cases (each method called without notifications subscribed):
  jsonrpc  `/`            core = getCoreAllocationStatus, list100 = listJobs (default
                          limit 100), list1000 = listJobs limit=1000
  legacy   `/socket.io/?EIO=4&transport=websocket`, the JSON-RPC text as the argument of a
           Socket.IO `message` event (no ack), answered by a `message` event:
                          core = getCoreAllocationStatus, fulllist = getFullJobList (the
                          legacy GUI's list: the started jobs, at most 500)
The store is built before the daemon starts (serv.store.Store: N `generic` jobs of the bench's
`true` profile, each moved queued → starting → running → finished with pid, cores, exit code
and its four transition events), so the daemon serves N ended jobs and is otherwise idle.

1. Latency: one client, sequential calls (--n after --warmup; warm-up stops after ~1 s and
   a case after --max-seq-s, printing the n it got), timed from send to its answer.
2. Throughput, for each of --clients: that many WebSocket connections, each doing sequential
   calls for --duration s, spread over spawned processes, once for each of --client-procs
   (default 1 and 4; all connected and warm before the clock starts, released together).
   Reported: calls/s, per-call latency under that load, and the daemon's CPU s per wall s
   (1.0 = its one event-loop thread saturated; its Python runs under one GIL).

The JSON-RPC client is the project's serv.client.Client; the legacy client is a small raw
websockets client using python-engineio's and python-socketio's Packet codecs (no
python-socketio client: its asyncio client needs aiohttp). Both offer permessage-deflate,
as real clients do; --no-deflate makes them refuse it, to show what compression costs.
Both decode answers with orjson by default (--decoder json: the standard library's).

    .venv/bin/python bench/rpc_roundtrip.py [--n 2000] [--warmup 200] [--duration 5]
        [--clients 1,32] [--jobs 1000] [--endpoints jsonrpc,legacy]
        [--cases core,list100,list1000,fulllist] [--client-procs 1,4] [--no-deflate]
        [--decoder orjson|json] [--json FILE] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Self

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.peers.daemon import PROFILE, GenericDaemon
from serv.client import Client

GOAL_S = 0.001
GOAL_RATE = 5000.0
CASES: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "jsonrpc": {
        "core": ("getCoreAllocationStatus", {}),
        "list100": ("listJobs", {}),
        "list1000": ("listJobs", {"limit": 1000}),
    },
    "legacy": {
        "core": ("getCoreAllocationStatus", {}),
        "fulllist": ("getFullJobList", {}),
    },
}


# ----------------------------------------------------------------- the store


async def populate(db: Path, n: int) -> float:
    """N ended jobs of the `true` profile, written with the daemon's own Store; seconds taken."""
    from serv.core.jobs import Family, JobSpec
    from serv.core.states import JobStatus as S
    from serv.core.states import transition
    from serv.store import Store

    began = time.perf_counter()
    store = await Store.open(db)
    try:
        t0 = datetime.now(UTC) - timedelta(hours=2)
        for i in range(n):
            workdir = f"/runs/bench/j{i:05d}"
            spec = JobSpec(
                solver=PROFILE,
                family=Family.GENERIC,
                input=f"{workdir}/input",
                workdir=workdir,
                ncpu=1,
                name=f"bench job {i}",
            )
            at = t0 + timedelta(seconds=i)
            job = await store.create(spec, at=at)
            steps: list[tuple[S, str, dict[str, Any]]] = [
                (
                    S.STARTING,
                    "starting",
                    {"allocated_cores": (i % 2,), "command": ("/bin/true", spec.input)},
                ),
                (
                    S.RUNNING,
                    f"solver pid {10000 + i}",
                    {"pid": 10000 + i, "pid_create_time": at.timestamp()},
                ),
                (S.FINISHED, "finished: exit code 0", {"exit_code": 0}),
            ]
            for k, (status, message, changes) in enumerate(steps, start=1):
                moved = dataclasses.replace(
                    transition(
                        job,
                        status,
                        at=at + timedelta(milliseconds=10 * k),
                        message=message,
                    ),
                    **changes,
                )
                await store.commit(moved, previous=job.status)
                job = moved
    finally:
        await store.close()
    return time.perf_counter() - began


# ----------------------------------------------------------------- clients


def _socketio_packet(base: type, loads: Callable[[str | bytes], Any]) -> type:
    """python-socketio's Packet decoding its JSON with `loads` (its codecs take a `json`
    module-like object: loads, and dumps with json.dumps' keywords)."""
    if loads is json.loads:
        return base

    class Codec:
        @staticmethod
        def loads(text: str | bytes) -> Any:
            return loads(text)

        @staticmethod
        def dumps(value: Any, **kwargs: Any) -> str:
            return json.dumps(value, **kwargs)

    return type("FastPacket", (base,), {"json": Codec})


class LegacyClient:
    """Engine.IO v4 / Socket.IO v5 over one websocket: `message` events carry JSON-RPC text."""

    def __init__(
        self, url: str, *, deflate: bool = True, loads: Callable[[str | bytes], Any] = json.loads
    ) -> None:
        self.deflate = deflate
        self.loads = loads
        base = url.rstrip("/")
        self.url = f"{base}/socket.io/?EIO=4&transport=websocket"
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        from engineio import packet as eio
        from socketio import packet as sio
        from websockets.asyncio.client import connect

        self._eio, self._sio = eio, sio
        self._event = _socketio_packet(sio.Packet, self.loads)
        self._ws = await connect(
            self.url,
            max_size=64 * 1024 * 1024,
            compression="deflate" if self.deflate else None,
        )
        opened = eio.Packet(encoded_packet=await self._ws.recv())
        if opened.packet_type != eio.OPEN:
            raise ConnectionError(
                f"legacy endpoint: expected OPEN, got {opened.packet_type}"
            )
        await self._ws.send(
            eio.Packet(
                eio.MESSAGE, data=sio.Packet(sio.CONNECT, data={}).encode()
            ).encode()
        )
        joined = sio.Packet(
            encoded_packet=eio.Packet(encoded_packet=await self._ws.recv()).data
        )
        if joined.packet_type != sio.CONNECT:
            raise ConnectionError(
                f"legacy endpoint: namespace not joined ({joined.packet_type})"
            )
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        eio, sio = self._eio, self._sio
        try:
            async for frame in self._ws:
                packet = eio.Packet(encoded_packet=frame)
                if packet.packet_type == eio.PING:
                    await self._ws.send(eio.Packet(eio.PONG).encode())
                    continue
                if packet.packet_type != eio.MESSAGE:
                    continue
                event = self._event(encoded_packet=packet.data)
                if (
                    event.packet_type != sio.EVENT
                    or not event.data
                    or event.data[0] != "message"
                ):
                    continue
                msg = self.loads(event.data[1])
                req_id = msg.get("id") if isinstance(msg, dict) else None
                fut = (
                    self._pending.pop(req_id, None) if isinstance(req_id, int) else None
                )
                if fut is not None:
                    fut.set_result(msg)
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("legacy connection closed"))

    async def call(self, method: str, **params: Any) -> Any:
        eio, sio = self._eio, self._sio
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        text = json.dumps(
            {"jsonrpc": "2.0", "method": method, "params": params, "id": req_id}
        )
        await self._ws.send(
            eio.Packet(
                eio.MESSAGE, data=sio.Packet(sio.EVENT, data=["message", text]).encode()
            ).encode()
        )
        msg = await fut
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg["result"]


class PlainClient(Client):
    """serv.client.Client that refuses permessage-deflate (--no-deflate)."""

    async def __aenter__(self) -> Self:
        from websockets.asyncio.client import connect

        # Client has no option for it; its reader is reused as is.
        self._ws = await connect(self.url, max_size=64 * 1024 * 1024, compression=None)
        self._reader = asyncio.create_task(self._read())
        return self


@dataclass(frozen=True)
class ClientOptions:
    """How the bench's clients connect and decode (picklable: sent to the load processes)."""

    deflate: bool = True
    #: "orjson" (default) or "json": the decoder of every answer. With json, a client process
    #: spends most of its time decoding list answers (measured: 79 kB in 0.38 ms with
    #: json.loads, 0.15 ms with orjson.loads), and that, not the daemon, bounds the list rates.
    decoder: str = "orjson"

    def loads(self) -> Callable[[str | bytes], Any]:
        return orjson.loads if self.decoder == "orjson" else json.loads


def make_client(endpoint: str, url: str, opts: ClientOptions) -> Any:
    if endpoint == "jsonrpc":
        cls = Client if opts.deflate else PlainClient
        return cls(url, loads=opts.loads())
    return LegacyClient(url, deflate=opts.deflate, loads=opts.loads())


async def sequential(
    endpoint: str,
    url: str,
    method: str,
    params: dict[str, Any],
    n: int,
    warmup: int,
    max_s: float,
    opts: ClientOptions,
) -> tuple[list[float], int]:
    async with make_client(endpoint, url, opts) as client:
        result = None
        warm_until = time.perf_counter() + 1.0  # heavy cases: at most ~1 s of warm-up
        for _ in range(warmup):
            result = await client.call(method, **params)
            if time.perf_counter() > warm_until:
                break
        size = len(json.dumps(result)) if result is not None else 0
        samples = []
        stop_at = time.perf_counter() + max_s
        for _ in range(n):
            t0 = time.perf_counter()
            await client.call(method, **params)
            samples.append(time.perf_counter() - t0)
            if t0 > stop_at:
                break
    return samples, size


def load_worker(
    endpoint: str,
    url: str,
    method: str,
    params: dict[str, Any],
    conns: int,
    duration: float,
    ready: Any,
    go: Any,
    out: Any,
    opts: ClientOptions,
) -> None:
    """One client process: `conns` connections; once all are connected and warm it says so
    on `ready`, waits for `go`, then does sequential calls on each for `duration` s and puts
    (calls, latencies, CPU seconds this process used meanwhile) on `out`."""

    async def run() -> tuple[int, list[float], float]:
        clients = [make_client(endpoint, url, opts) for _ in range(conns)]
        for c in clients:
            await c.__aenter__()
        try:
            for c in clients:  # warm every connection
                for _ in range(2):
                    await c.call(method, **params)
            latencies: list[float] = []
            ready.put(conns)
            await asyncio.to_thread(go.wait)
            cpu0 = time.process_time()
            stop_at = time.monotonic() + duration

            async def worker(c: Any) -> int:
                count = 0
                while time.monotonic() < stop_at:
                    t0 = time.perf_counter()
                    await c.call(method, **params)
                    latencies.append(time.perf_counter() - t0)
                    count += 1
                return count

            counts = await asyncio.gather(*(worker(c) for c in clients))
            cpu = time.process_time() - cpu0
        finally:
            for c in clients:
                await c.close()
        return sum(counts), latencies, cpu

    out.put(asyncio.run(run()))


def throughput(
    daemon: common.BenchDaemon,
    endpoint: str,
    method: str,
    params: dict[str, Any],
    clients: int,
    procs: int,
    duration: float,
    opts: ClientOptions,
) -> dict[str, Any]:
    """`clients` connections over `procs` spawned processes, all released at once when every
    one is connected and warm; the daemon's CPU is read over the same window."""
    assert daemon.url is not None
    procs = max(1, min(procs, clients))
    shares = [
        clients // procs + (1 if i < clients % procs else 0) for i in range(procs)
    ]
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [
        ctx.Process(
            target=load_worker,
            args=(endpoint, daemon.url, method, params, k, duration, ready, go, out, opts),
            daemon=True,
        )
        for k in shares
    ]
    for w in workers:
        w.start()
    try:
        for _ in workers:
            ready.get(timeout=300)
        cpu0 = daemon.daemon_cpu_s()
        began = time.monotonic()
        go.set()
        results = [out.get(timeout=duration + 300) for _ in workers]
        wall = time.monotonic() - began  # ≥ duration: includes the last calls' answers
        cpu = daemon.daemon_cpu_s() - cpu0
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
    latencies = [x for _, lat, _ in results for x in lat]
    total = sum(k for k, _, _ in results)
    return {
        "clients": clients,
        "procs": procs,
        "calls": total,
        "wall_s": wall,
        "calls_per_s": total / wall,
        "daemon_cpu_per_wall": cpu / wall,
        "client_cpu_per_wall": sum(c for _, _, c in results) / wall,
        "latency": common.summarize(latencies),
    }


# ----------------------------------------------------------------- main


def load_shapes(clients: list[int], procs: list[int]) -> list[tuple[int, int]]:
    """(clients, processes) of each throughput run: every client count over every process
    count, one process for one client."""
    shapes = []
    for k in clients:
        for p in sorted({min(p, k) for p in procs}):
            shapes.append((k, p))
    return shapes


def shape_label(t: dict[str, Any]) -> str:
    return f"{t['clients']}c" + (f"/{t['procs']}p" if t["clients"] > 1 else "")


def run(daemon: GenericDaemon, args: argparse.Namespace) -> list[dict[str, Any]]:
    assert daemon.url is not None
    opts = ClientOptions(deflate=not args.no_deflate, decoder=args.decoder)
    rows = []
    for endpoint in args.endpoints:
        for case in args.cases:
            if case not in CASES[endpoint]:
                continue
            method, params = CASES[endpoint][case]
            seq, size = asyncio.run(
                sequential(
                    endpoint,
                    daemon.url,
                    method,
                    params,
                    args.n,
                    args.warmup,
                    args.max_seq_s,
                    opts,
                )
            )
            loads = [
                throughput(daemon, endpoint, method, params, k, procs, args.duration, opts)
                for k, procs in load_shapes(args.clients, args.client_procs)
            ]
            rows.append(
                {
                    "endpoint": endpoint,
                    "case": case,
                    "method": method,
                    "params": params,
                    "answer_bytes": size,
                    "sequential": common.summarize(seq),
                    "throughput": loads,
                    "samples_s": seq,
                }
            )
            s = rows[-1]["sequential"]
            tp = ", ".join(
                f"{t['clients']}c {t['calls_per_s']:.0f}/s (CPU s/s: daemon "
                f"{t['daemon_cpu_per_wall']:.2f}, clients {t['client_cpu_per_wall']:.2f})"
                for t in loads
            )
            print(
                f"# {endpoint} {case} ({method} {json.dumps(params)}, answer {size / 1000:.1f} kB): "
                f"seq p50 {s['p50'] * 1000:.3f} ms (n {int(s['n'])}); {tp}",
                flush=True,
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=int, default=2000, help="sequential calls measured (default 2000)"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="calls before measuring (default 200)"
    )
    parser.add_argument(
        "--max-seq-s",
        type=float,
        default=4.0,
        help="stop a sequential case after this many seconds (default 4)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=5.0,
        help="seconds per throughput run (default 5)",
    )
    parser.add_argument(
        "--clients",
        default=[1, 32],
        type=lambda s: [int(x) for x in s.split(",")],
        help="concurrent client counts (default 1,32)",
    )
    parser.add_argument(
        "--client-procs",
        default=[1, 4],
        type=lambda s: [int(x) for x in s.split(",")],
        help="process counts the concurrent clients are spread over, each measured (default "
        "1,4: where the daemon is the bound, a cheap answer, more client processes take CPU "
        "from it on 2 vCPUs; where decoding the answers is, a list, one process is the bound)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1000, help="ended jobs in the store (default 1000)"
    )
    parser.add_argument(
        "--endpoints",
        default=["jsonrpc", "legacy"],
        type=lambda s: s.split(","),
        help="jsonrpc,legacy (default both)",
    )
    parser.add_argument(
        "--cases",
        default=["core", "list100", "list1000", "fulllist"],
        type=lambda s: s.split(","),
        help="core,list100,list1000,fulllist (default all)",
    )
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="clients refuse permessage-deflate (default: offered, as real clients do)",
    )
    parser.add_argument(
        "--decoder",
        choices=["orjson", "json"],
        default="orjson",
        help="how the clients decode answers (default orjson; json: the standard library's, "
        "under which the client process, not the daemon, bounds the list rates)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw samples here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (log, store)"
    )
    args = parser.parse_args()
    common.install_sigterm_as_interrupt()
    print(common.machine())
    print(
        f"# rpc_roundtrip: {args.jobs} ended jobs in the store; {args.n} sequential calls after "
        f"{args.warmup} warm-up (at most {args.max_seq_s:g} s a case); throughput {args.duration:g} s "
        f"per client count over {'/'.join(map(str, args.client_procs))} client process(es); "
        f"permessage-deflate {'off' if args.no_deflate else 'on'}; answers decoded with {args.decoder}; "
        f"load average {__import__('os').getloadavg()[0]:.2f}"
    )
    began = time.perf_counter()
    daemon = GenericDaemon(keep=args.keep)
    try:
        took = asyncio.run(populate(daemon.tmp / "jobs.db", args.jobs))
        print(
            f"# store: {args.jobs} jobs written with serv.store.Store in {took:.1f} s, before the daemon started"
        )
        daemon.start()
        rows = run(daemon, args)
    finally:
        killed = daemon.stop()
        if killed:
            print(
                f"# cleanup: killed {len(killed)} leftover tagged process(es): {killed}",
                file=sys.stderr,
            )
    table_rows = []
    for r in rows:
        table_rows.append((f"{r['endpoint']} {r['case']} seq", r["sequential"]))
        for t in r["throughput"]:
            table_rows.append(
                (f"{r['endpoint']} {r['case']} {shape_label(t)}", t["latency"])
            )
    print(common.table(table_rows))
    print(
        f"{'endpoint case':<22} {'answer kB':>9} {'seq p50 ms':>10} "
        + " ".join(
            f"{shape_label({'clients': k, 'procs': p}) + ' calls/s':>14} {'dCPU':>5} {'cCPU':>5}"
            for k, p in load_shapes(args.clients, args.client_procs)
        )
        + "   (dCPU/cCPU: daemon/client CPU s per wall s)"
    )
    for r in rows:
        cells = " ".join(
            f"{t['calls_per_s']:>14.0f} {t['daemon_cpu_per_wall']:>5.2f} {t['client_cpu_per_wall']:>5.2f}"
            for t in r["throughput"]
        )
        print(
            f"{r['endpoint'] + ' ' + r['case']:<22} {r['answer_bytes'] / 1000:>9.1f} "
            f"{r['sequential']['p50'] * 1000:>10.3f} {cells}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    parts = []
    for r in rows:
        best = (
            max(t["calls_per_s"] for t in r["throughput"])
            if r["throughput"]
            else float("nan")
        )
        p50 = r["sequential"]["p50"]
        rate_verdict = (
            "met" if best >= GOAL_RATE else f"missed, {best / GOAL_RATE:.2f}x"
        )
        parts.append(
            f"{r['endpoint']} {r['case']} p50 {p50 * 1000:.3f} ms ({common.verdict(p50, GOAL_S)}), "
            f"best {best:.0f} calls/s ({rate_verdict})"
        )
    print(
        f"SUMMARY rpc_roundtrip: {'; '.join(parts)}; goals p50 <= 1 ms, >= {GOAL_RATE:.0f} calls/s; "
        f"wall {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
