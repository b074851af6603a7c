"""Many concurrently supervised jobs: the daemon's idle CPU and its memory.

Launches N jobs (default 1,000) of a generic profile with `book_cores = false` whose
solver is an idle GNU `tail` reached through a symlink named `sleeper-solv` (no
interpreter per job, ~1.8 MB RSS each; see common.SLEEPER_ARGS), each in its own workdir,
waits until every one is `running` with its pid, lets the daemon settle, then reads the
daemon's utime+stime from /proc/<pid>/stat every second over a window with no client
traffic, and its VmRSS / VmHWM and open file descriptors. The window defaults to 60 s: the
watchdog counts orphan processes once every 60 s, so a window of a whole period gives the
long-run average, and the per-second trace shows that scan's spike.

The daemon lifts its own RLIMIT_NOFILE soft limit to the hard limit (each job holds a pidfd);
the bench prints both, and the machine's pid limits, first.

    .venv/bin/python bench/supervise_many.py [--n 1000] [--window 60] [--settle 3]
        [--profile]   # py-spy the daemon during the window (its own CPU shows in the figure)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from serv.client import Client

GOAL_CPU_PCT = 2.0
GOAL_RSS_MB = 150.0
LAUNCH_CONCURRENCY = 16


def limits() -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    pid_max = Path("/proc/sys/kernel/pid_max").read_text().strip()
    threads_max = Path("/proc/sys/kernel/threads-max").read_text().strip()
    return (
        f"# limits: RLIMIT_NOFILE soft {soft} hard {hard} (the daemon lifts soft to hard), "
        f"RLIMIT_NPROC {nproc[0]}, kernel pid_max {pid_max}, threads-max {threads_max}"
    )


async def wait_running(client: Client, n: int, timeout: float) -> float:
    """Seconds until `n` jobs are running with a pid (polls listJobs every 0.25 s)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while True:
        jobs = await common.list_all_jobs(client, "running")
        if sum(1 for j in jobs if j["pid"]) >= n:
            return loop.time() - began
        if loop.time() - began > timeout:
            raise TimeoutError(f"only {len(jobs)} of {n} jobs running after {timeout:.0f} s")
        await asyncio.sleep(0.25)


async def launch_all(daemon: common.BenchDaemon, n: int) -> tuple[float, int]:
    inputs = [daemon.input_file(f"s{i:05d}") for i in range(n)]
    assert daemon.url is not None
    async with Client(daemon.url) as client:
        began = time.perf_counter()
        results = await common.gather_limited(
            LAUNCH_CONCURRENCY,
            (client.call("launch", solver="sleeper", input=str(p), name=p.parent.name) for p in inputs),
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            print(f"# {len(failed)} launches failed, first: {failed[0]!r}")
        await wait_running(client, n - len(failed), timeout=max(120.0, n * 0.2))
        return time.perf_counter() - began, len(failed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="jobs (default 1000)")
    parser.add_argument("--window", type=float, default=60.0, help="CPU window, s (default 60)")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds between all running and the window (default 3)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy (--nonblocking) the daemon during the window")
    parser.add_argument("--no-orphan-count", action="store_true",
                        help="diagnostic: switch the watchdog's 60-s orphan count off in the "
                             "daemon (Watchdog orphan_every_s = 1e9) to see what the rest costs")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    common.install_sigterm_as_interrupt()
    print(common.machine())
    print(limits())
    began = time.perf_counter()
    extra = common.sleeper_profile("sleeper", Path("{bin}/sleeper-solv"), book_cores=False)
    result: dict[str, Any] = {"n": args.n}
    prelude = ""
    if args.no_orphan_count:
        prelude = "import serv.watchdog as w\nw.Watchdog.__init__.__kwdefaults__['orphan_every_s'] = 1e9"
        print("# DIAGNOSTIC: the watchdog's orphan count is switched off in this daemon")
    with common.BenchDaemon(keep=args.keep, extra_config=extra, prelude=prelude) as daemon:
        common.install_sleeper(daemon.bin_dir)
        pid = daemon.pid
        rss0 = common.daemon_kb(pid, "VmRSS")
        cpu_idle0, wall_idle0 = common.cpu_window(pid, 2.0)
        launch_s, failed = asyncio.run(launch_all(daemon, args.n))
        running = args.n - failed
        result.update(launch_s=launch_s, failed=failed, rss_empty_kb=rss0,
                      cpu_pct_empty=cpu_idle0 / wall_idle0 * 100)
        print(f"# {running} jobs running {launch_s:.1f} s after the first launch "
              f"({running / launch_s:.0f} jobs/s); {failed} launches failed")
        time.sleep(args.settle)
        tagged = daemon.tagged()
        print(f"# processes carrying our tag: {sum(len(v) for v in tagged.values())} in "
              f"{len(tagged)} jobs; host processes {len(psutil.pids())}; load {common.loadavg()}")
        spy = daemon.tmp / "supervise_many.pyspy.txt"
        if args.profile:
            with common.Background(common.py_spy_cmd(pid, args.window, spy)):
                trace, wall = common.cpu_trace(pid, args.window)
        else:
            trace, wall = common.cpu_trace(pid, args.window)
        cpu = sum(trace)
        rss = common.daemon_kb(pid, "VmRSS")
        hwm = common.daemon_kb(pid, "VmHWM")
        fds = common.proc_fds(pid)
        threads = psutil.Process(pid).num_threads()
        result.update(cpu_s=cpu, wall_s=wall, cpu_pct=cpu / wall * 100, rss_kb=rss, hwm_kb=hwm,
                      fds=fds, threads=threads, load=common.loadavg())
        median_step = common.percentile(sorted(trace), 50)
        saturated = sum(1 for x in trace if x >= 0.9)
        result.update(trace_s=trace, median_step_pct=median_step * 100, saturated_steps=saturated)
        if args.profile:
            print(common.summarize_collapsed(spy.read_text()) if spy.exists() else "# py-spy wrote nothing")
        jobs_alive = asyncio.run(_count_running(daemon))
        result["running_after"] = jobs_alive
    pct = result["cpu_pct"]
    rss_mb = result["rss_kb"] / 1024
    print(f"{'case':<40} {'value':>12}")
    print(f"{'daemon CPU, no jobs (2 s)':<40} {result['cpu_pct_empty']:>11.3f}%")
    print(f"{f'daemon CPU, {running} idle jobs ({wall:.0f} s)':<40} {pct:>11.3f}%")
    print(f"{'  = CPU ms per s per 1000 jobs':<40} {cpu / wall * 1000 * 1000 / max(running, 1):>12.2f}")
    print(f"{'  median 1-s step':<40} {result['median_step_pct']:>11.3f}%")
    print(f"{'  1-s steps at >= 90% of a core':<40} {result['saturated_steps']:>12}")
    print("# per-second CPU (% of a core): " + " ".join(f"{x * 100:.0f}" for x in result["trace_s"]))
    print(f"{'daemon RSS, no jobs':<40} {rss0 / 1024:>10.1f} MB")
    print(f"{f'daemon RSS, {running} jobs':<40} {rss_mb:>10.1f} MB")
    print(f"{'daemon peak RSS (VmHWM)':<40} {result['hwm_kb'] / 1024:>10.1f} MB")
    print(f"{'  = RSS KB per job':<40} {(result['rss_kb'] - rss0) / max(running, 1):>12.1f}")
    print(f"{'daemon open fds / threads':<40} {result['fds']:>7} / {result['threads']}")
    print(f"{'jobs still running after the window':<40} {result['running_after']:>12}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    cpu_v = "met" if pct <= GOAL_CPU_PCT else f"missed, {pct / GOAL_CPU_PCT:.2f}x the goal"
    rss_v = "met" if rss_mb <= GOAL_RSS_MB else f"missed, {rss_mb / GOAL_RSS_MB:.2f}x the goal"
    print(
        f"SUMMARY supervise_many{' (DIAGNOSTIC)' if prelude else ''}: {running} idle jobs: daemon CPU {pct:.2f}% of one core over "
        f"{wall:.0f} s ({cpu_v}; goal <= {GOAL_CPU_PCT:.0f}%), RSS {rss_mb:.0f} MB ({rss_v}; goal "
        f"<= {GOAL_RSS_MB:.0f} MB); launch {running / launch_s:.0f} jobs/s; "
        f"wall {time.perf_counter() - began:.1f} s"
    )
    return 0


async def _count_running(daemon: common.BenchDaemon) -> int:
    assert daemon.url is not None
    async with Client(daemon.url) as client:
        return len(await common.list_all_jobs(client, "running"))


if __name__ == "__main__":
    sys.exit(main())
