"""Daemon restart with many running jobs → every job re-adopted, same pid, same cores.

The daemon plans cores on a synthetic CPU tree of 256 CPUs (2 sockets x 128 cores, written
with tests/data/sysfs/make_shapes.py into the run's folder; `[cores] topology_root`, and
`[cores] pin = false` because those CPUs do not exist here). N jobs (default 200) of a
generic profile that books its cores (`ncpu = 1`), whose solver is an idle GNU `tail`
(see common.SLEEPER_ARGS), are launched and recorded as (pid, allocated_cores). Then, for
each round: stop the daemon (SIGTERM: clean shutdown; or SIGKILL: a crash), start it again
on the same config and store, and time from just before the new process is created to the
first `listJobs` answer that shows all N jobs `running` with the recorded pid and cores.
`listJobs` is polled as soon as the daemon logged its URL (recovery runs before it listens,
so the first answer normally has them all). After each restart, getCoreAllocationStatus
must show each recorded core booked by its own job (mismatches are counted).

    .venv/bin/python bench/restart_readopt.py [--n 200] [--rounds 3] [--modes term,kill]
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

GOAL_S = 2.0
SHAPE = (2, 128, 1)  # sockets, cores per socket, threads per core: 256 CPUs
LAUNCH_CONCURRENCY = 16


def config(topology: Path) -> str:
    return (
        common.sleeper_profile("sleeper-core", Path("{bin}/sleeper-solv"), book_cores=True)
        + f'[cores]\ntopology_root = "{topology}"\npin = false\n'
    )


async def launch(daemon: common.BenchDaemon, n: int) -> dict[int, tuple[int, tuple[int, ...]]]:
    assert daemon.url is not None
    async with Client(daemon.url) as client:
        inputs = [daemon.input_file(f"r{i:04d}") for i in range(n)]
        results = await common.gather_limited(
            LAUNCH_CONCURRENCY,
            (client.call("launch", solver="sleeper-core", input=str(p), ncpu=1) for p in inputs),
        )
        bad = [r for r in results if isinstance(r, BaseException)]
        if bad:
            raise RuntimeError(f"{len(bad)} launches failed, first: {bad[0]!r}")
        deadline = time.monotonic() + 120
        while True:
            jobs = await common.list_all_jobs(client, "running")
            if sum(1 for j in jobs if j["pid"]) >= n:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(jobs)} of {n} running after 120 s")
            await asyncio.sleep(0.2)
    return {j["id"]: (j["pid"], tuple(j["allocated_cores"] or ())) for j in jobs}


async def readopted(
    daemon: common.BenchDaemon, want: dict[int, tuple[int, tuple[int, ...]]], timeout: float
) -> dict[str, Any]:
    """Poll listJobs until every recorded job is running with its pid and cores."""
    assert daemon.url is not None
    url_s = time.perf_counter() - daemon.started_at
    polls = 0
    async with Client(daemon.url) as client:
        while True:
            jobs = await common.list_all_jobs(client)
            polls += 1
            now = time.perf_counter()
            seen = {j["id"]: j for j in jobs}
            same = [
                i for i, (pid, cores) in want.items()
                if i in seen and seen[i]["status"] == "running" and seen[i]["pid"] == pid
                and tuple(seen[i]["allocated_cores"] or ()) == cores
            ]
            if len(same) == len(want):
                break
            if now - daemon.started_at > timeout:
                return {"url_s": url_s, "all_s": None, "polls": polls, "same": len(same),
                        "core_mismatch": None}
            await asyncio.sleep(0.01)
        status = await client.call("getCoreAllocationStatus")
    booked = {c["index"]: c["job_id"] for c in status["cores"]}
    mismatch = sum(1 for i, (_, cores) in want.items() for c in cores if booked.get(c) != i)
    return {"url_s": url_s, "all_s": now - daemon.started_at, "polls": polls,
            "same": len(same), "core_mismatch": mismatch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="running jobs (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="restarts per mode (default 3)")
    parser.add_argument("--modes", default="term,kill", type=lambda s: s.split(","),
                        help="term (SIGTERM), kill (SIGKILL); default both")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    common.install_sigterm_as_interrupt()
    print(common.machine())
    began = time.perf_counter()
    sockets, cores, threads = SHAPE
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes}
    daemon = common.BenchDaemon(keep=args.keep)
    try:
        topo = common.write_topology(daemon.tmp / "sysfs", sockets, cores, threads)
        daemon.config_path.write_text(
            daemon.config_path.read_text() + config(topo).replace("{bin}", str(daemon.bin_dir))
        )
        common.install_sleeper(daemon.bin_dir)
        daemon.start()
        first_url = time.perf_counter() - daemon.started_at
        want = asyncio.run(launch(daemon, args.n))
        ncores = len({c for _, cs in want.values() for c in cs})
        print(f"# {len(want)} jobs running on {ncores} distinct cores of a synthetic "
              f"{sockets * cores * threads}-CPU tree (pin = false); first start to URL {first_url:.2f} s")
        for _ in range(args.rounds):
            for mode in args.modes:
                if mode == "term":
                    code = daemon.terminate()
                    if code != 0:
                        print(f"# daemon exit code after SIGTERM: {code}")
                else:
                    daemon.kill9()
                daemon.start()
                r = asyncio.run(readopted(daemon, want, timeout=60.0))
                rows[mode].append(r)
                print(f"# {mode}: URL after {r['url_s']:.3f} s, all {r['same']}/{len(want)} re-adopted "
                      f"after {r['all_s'] if r['all_s'] is None else round(r['all_s'], 3)} s "
                      f"({r['polls']} listJobs), core mismatches {r['core_mismatch']}")
        readopt_lines = len(daemon.log_lines(r"re-adopted solver pid"))
    finally:
        killed = daemon.stop()
        if killed:
            print(f"# cleanup: killed {len(killed)} tagged processes", file=sys.stderr)
    print(f"{'case':<44} {'n':>3} {'min':>8} {'p50':>8} {'max':>8}   (s, process start -> ...)")
    for mode, rs in rows.items():
        name = {"term": "SIGTERM", "kill": "kill -9"}.get(mode, mode)
        for what, key in (("URL logged", "url_s"), (f"all {args.n} running, same pid+cores", "all_s")):
            vals = sorted(x[key] for x in rs if x[key] is not None)
            s = common.summarize(vals)
            print(f"{name + ': ' + what:<44} {len(vals):>3} {s['min']:>8.3f} {s['p50']:>8.3f} {s['max']:>8.3f}")
    print(f"# 're-adopted solver pid' log lines over all restarts: {readopt_lines} "
          f"(expected {args.n * args.rounds * len(args.modes)})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    worst = {m: max((x["all_s"] if x["all_s"] is not None else float("inf")) for x in rs)
             for m, rs in rows.items() if rs}
    failures = sum(1 for rs in rows.values() for x in rs if x["all_s"] is None or x["core_mismatch"])
    summary = ", ".join(
        f"{'SIGTERM' if m == 'term' else 'kill -9'} worst {w:.2f} s "
        f"({'met' if w <= GOAL_S else f'missed, {w / GOAL_S:.2f}x the goal'})"
        for m, w in worst.items()
    )
    print(
        f"SUMMARY restart_readopt: {args.n} jobs re-adopted with the same pid and cores, process "
        f"start -> all running: {summary}; goal <= {GOAL_S:.0f} s; rounds with a job or core "
        f"missing: {failures}; wall {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
