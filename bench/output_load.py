"""Daemon CPU with many live jobs that each print a line every second (issue #4).

N jobs (default 200) of the fake LS-DYNA (tests/fakes: LS-DYNA's banner, then a cycle line
every `print_every_s = 1` s, `wall_s = 3600`), through a profile of the lsdyna family with
`book_cores = false` (so 200 fit on this machine's 2 CPUs), each in its own workdir. Once
all are `running` and have printed for a while, the daemon's utime+stime is read from
/proc/<pid>/stat every second over a window (default 30 s). One client stays subscribed to
"jobs" during the window and drains the `jobChanged` progress notifications, as the GUI
would (`--no-client` leaves it out). The fakes' own CPU (they poll d3kil every 50 ms) is
printed too, as the load they put on the host.

    .venv/bin/python bench/output_load.py [--n 200] [--window 30] [--settle 5] [--profile]
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

GOAL_CPU_PCT = 2.0
LAUNCH_CONCURRENCY = 16
PROFILE = """\
[solvers.fake-print]
family = "lsdyna"
executable = "{bin}/lsdyna-fake"
book_cores = false
"""


# Diagnostics (--what-if): Python run in the daemon before it starts, each switching one
# step off or changing one constant, to measure what that step costs. Not the shipped daemon.
WHAT_IF = {
    # progress-only changes are not written to SQLite (they are still announced)
    "no-progress-commit": "# Store.commit_many (progress-only commits) is a no-op\n"
    "import serv.store.repo as r\n"
    "async def _none(self, jobs):\n    return None\n"
    "r.Store.commit_many = _none\n",
    # output read once a second instead of twice
    "tail-1s": "# serv.job_manager.TAIL_INTERVAL_S = 1.0 (shipped: 0.5)\n"
    "import serv.job_manager as jm\njm.TAIL_INTERVAL_S = 1.0\n",
    # the ETA's weighted least-squares slope recomputed at most every 5 s of a job's time
    "eta-5s": "# RateEstimator.rate cached for 5 s of active time (shipped: every snapshot)\n"
    + "import serv.solvers.eta as e\n_rate = e.RateEstimator.rate\n"
    "def rate(self):\n"
    "    c = getattr(self, '_cache', None)\n"
    "    t = self._samples[-1][0] if self._samples else None\n"
    "    if c is not None and t is not None and t - c[0] < 5.0:\n        return c[1]\n"
    "    r = _rate(self)\n    self._cache = (t, r) if t is not None else None\n    return r\n"
    "e.RateEstimator.rate = rate\n",
}
WHAT_IF["all3"] = (
    "# no-progress-commit + tail-1s + eta-5s together\n"
    + WHAT_IF["no-progress-commit"] + WHAT_IF["tail-1s"] + WHAT_IF["eta-5s"]
)


async def launch_all(daemon: common.BenchDaemon, client: Client, n: int) -> int:
    decks = [daemon.deck(wall_s=3600.0, endtim=1.0, print_every_s=1.0) for _ in range(n)]
    results = await common.gather_limited(
        LAUNCH_CONCURRENCY,
        (client.call("launch", solver="fake-print", input=str(d)) for d in decks),
    )
    bad = [r for r in results if isinstance(r, BaseException)]
    if bad:
        print(f"# {len(bad)} launches failed, first: {bad[0]!r}")
    deadline = time.monotonic() + max(120.0, n * 0.5)
    while True:
        jobs = await common.list_all_jobs(client, "running")
        if sum(1 for j in jobs if j["pid"]) >= n - len(bad):
            return n - len(bad)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(jobs)} of {n} running")
        await asyncio.sleep(0.25)


def tagged_cpu_s(daemon: common.BenchDaemon) -> float:
    total = 0.0
    for pids in daemon.tagged().values():
        for pid in pids:
            try:
                total += common.proc_cpu_s(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue
    return total


async def run(daemon: common.BenchDaemon, args: argparse.Namespace) -> dict[str, Any]:
    assert daemon.url is not None
    out: dict[str, Any] = {}
    async with Client(daemon.url) as client:
        began = time.perf_counter()
        running = await launch_all(daemon, client, args.n)
        out["running"] = running
        out["launch_s"] = time.perf_counter() - began
        await asyncio.sleep(args.settle)
        if not args.no_client:
            await client.subscribe("jobs")
        notes = 0
        stop = asyncio.Event()

        async def drain() -> None:
            nonlocal notes
            while not stop.is_set():
                try:
                    await client.next_notification("jobChanged", 0.5)
                    notes += 1
                except TimeoutError:
                    continue

        drainer = asyncio.create_task(drain())
        fakes0 = await asyncio.to_thread(tagged_cpu_s, daemon)
        spy = daemon.tmp / "output_load.pyspy.txt"
        measure = (
            lambda: _profiled(daemon.pid, args.window, spy) if args.profile
            else common.cpu_trace(daemon.pid, args.window)
        )
        trace, wall = await asyncio.to_thread(measure)
        fakes1 = await asyncio.to_thread(tagged_cpu_s, daemon)
        stop.set()
        await drainer
        jobs = await common.list_all_jobs(client, "running")
        out.update(
            trace=trace, wall=wall, cpu=sum(trace), notes=notes,
            fakes_cpu_pct=(fakes1 - fakes0) / wall * 100,
            running_after=len(jobs),
            with_progress=sum(1 for j in jobs if j["sim_time"]),
            rss_kb=common.daemon_kb(daemon.pid, "VmRSS"),
            load=common.loadavg(),
        )
        if args.profile:
            out["profile"] = common.summarize_collapsed(spy.read_text()) if spy.exists() else "no profile"
    return out


def _profiled(pid: int, seconds: float, out: Path) -> tuple[list[float], float]:
    with common.Background(common.py_spy_cmd(pid, seconds, out)):
        return common.cpu_trace(pid, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="jobs (default 200)")
    parser.add_argument("--window", type=float, default=30.0, help="CPU window, s (default 30)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds between all running and the window (default 5)")
    parser.add_argument("--no-client", action="store_true", help="no subscribed client")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy (--nonblocking) the daemon during the window")
    parser.add_argument("--what-if", choices=sorted(WHAT_IF), default=None,
                        help="diagnostic: change one internal step in the daemon (see WHAT_IF) "
                             "to see what it costs; not the daemon as shipped")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    common.install_sigterm_as_interrupt()
    print(common.machine())
    began = time.perf_counter()
    prelude = WHAT_IF[args.what_if] if args.what_if else ""
    if prelude:
        print(f"# DIAGNOSTIC what-if {args.what_if}: {prelude.strip().splitlines()[0]}")
    with common.BenchDaemon(keep=args.keep, extra_config=PROFILE, prelude=prelude) as daemon:
        r = asyncio.run(run(daemon, args))
    pct = r["cpu"] / r["wall"] * 100
    running, wall, notes = r["running"], r["wall"], r["notes"]
    per_line_ms = r["cpu"] * 1000 / (running * wall)
    print(f"# {running} fake LS-DYNA jobs running after {r['launch_s']:.1f} s; "
          f"{r['with_progress']} of them showed sim_time progress; load {r['load']}")
    print(f"{'case':<46} {'value':>12}")
    label = f"daemon CPU, {running} jobs x 1 line/s ({wall:.0f} s)"
    print(f"{label:<46} {pct:>11.2f}%")
    print(f"{'  = CPU ms per job-line':<46} {per_line_ms:>12.3f}")
    med, top = common.percentile(sorted(r["trace"]), 50) * 100, max(r["trace"]) * 100
    print(f"{'  median / max 1-s step':<46} {med:>5.1f}% / {top:.0f}%")
    client = "no client" if args.no_client else f"{notes / wall:.0f} jobChanged/s to 1 client"
    print(f"{'jobChanged received by the client':<46} {notes:>12} ({client})")
    print(f"{'daemon RSS':<46} {r['rss_kb'] / 1024:>9.1f} MB")
    print(f"{'the fakes together (host load they add)':<46} {r['fakes_cpu_pct']:>11.1f}%")
    print(f"{'jobs still running after the window':<46} {r['running_after']:>12}")
    print("# per-second daemon CPU (% of a core): " + " ".join(f"{x * 100:.0f}" for x in r["trace"]))
    if args.profile:
        print(r["profile"])
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    verdict = "met" if pct <= GOAL_CPU_PCT else f"missed, {pct / GOAL_CPU_PCT:.2f}x the goal"
    print(
        f"SUMMARY output_load{' (DIAGNOSTIC ' + args.what_if + ')' if prelude else ''}: {running} jobs printing 1 line/s: daemon CPU {pct:.2f}% of one core "
        f"over {wall:.0f} s ({verdict}; goal <= {GOAL_CPU_PCT:.0f}%), {per_line_ms:.3f} ms per "
        f"job-line, {client}; wall {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
