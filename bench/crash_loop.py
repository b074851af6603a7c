"""kill -9 of the daemon at random moments during launches and stops: nothing lost,
nothing duplicated, no core booked twice, no solver left without a job.

One daemon folder (config, SQLite store, log) for the whole run. A driver sends launch
requests (default 200) of short fake LS-DYNA jobs (`wall_s` uniform in 0.5-1.5 s; 80 % SMP
with ncpu 1, 20 % MPP with ncpu 2 under mpiexec.hydra; on this machine's 2 cores, pinned)
each with a unique `name`, and stop requests (a quarter of the operations; graceful or
forced at random; mostly jobs that have a process, else queued ones) for recent jobs.
Requests are sent as tasks, so several can be in flight when the daemon dies. The daemon is killed with SIGKILL
(default 50 times) and started again at once on the same store:
- 80 % of the kills come while requests flow, after the restarted daemon answered its first
  checks: about two thirds at a random moment 0.1-2.0 s later, one third "aimed" 0-30 ms
  after a request was sent (while the daemon validates, commits, spawns or answers it);
- 20 % come 0.05-1.0 s after the process was created, often before it listens: during
  start-up, store opening, recovery (re-adoption) and the first scheduling.
After every restart that got to listen (before any new request), and at the end after every
job ended:
- lost: an acknowledged launch (the daemon answered with a job id) whose `name` is not in
  listJobs and that getJob does not find either (when getJob finds it, listJobs left out
  an existing job: counted as a listJobs omission); duplicated: a `name` that appears more
  than once;
- cores: live jobs (starting, running, paused, stopping) whose `allocated_cores` overlap
  (double-booked), getCoreAllocationStatus disagreeing with the jobs' records, and processes
  of running jobs whose CPU affinity is not within their allocated cores (MPICH binds each
  rank to one of them) (each re-checked 3 times 0.2 s apart, so a change between two calls
  is not counted);
- processes: processes carrying this daemon's tag whose job is not live (orphan solvers),
  and live jobs with no process at all (ghosts), each still true after a settle of 6 s
  (longer than the 5 s watchdog interval and the 2 s launcher linger).
Launches that were in flight when the daemon died (no answer) may exist or not; they are
counted, never called lost. Any non-zero count in the table is a bug; its job ids, pids and
the daemon's log lines for those jobs are printed.

    .venv/bin/python bench/crash_loop.py [--launches 200] [--kills 50] [--seed 7] [--mpp-share 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from websockets.exceptions import WebSocketException

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from serv.client import Client, RpcError

LIVE_PROC = frozenset({"starting", "running", "paused", "stopping"})
STOP_SHARE = 0.25
EARLY_SHARE = 0.2
AIMED_SHARE = 0.35  # of the kills while serving
SETTLE_S = 6.0
MAX_LIVE = 10  # launch only while fewer acknowledged jobs than this are known to be live
CALL_TIMEOUT_S = 10.0
# the daemon is gone (or going): refused, reset, closed, or a handshake cut short
DOWN = (ConnectionError, WebSocketException, OSError, TimeoutError)


class Tracker:
    def __init__(self) -> None:
        self.sent: dict[str, int] = {}  # name -> epoch sent
        self.acked: dict[str, int] = {}  # name -> job id
        self.acked_epoch: dict[str, int] = {}
        self.unacked: set[str] = set()
        self.rpc_errors: list[str] = []
        self.stops_sent = 0
        self.stops_acked = 0
        self.status: dict[int, str] = {}
        self.inflight = 0
        self.seq = 0
        # findings: kind -> key -> detail (first seen)
        self.findings: dict[str, dict[Any, dict[str, Any]]] = collections.defaultdict(dict)
        self.kills: list[dict[str, Any]] = []
        # an "aimed" kill: fired `aim_delay` s after the next request is sent
        self.mpp_share = 0.0
        self.aimed_kill: Any = None
        self.aim_delay = 0.0

    def live_known(self) -> int:
        return sum(1 for jid in self.acked.values() if self.status.get(jid) not in common.TERMINAL)

    def note(self, kind: str, key: Any, epoch: int, **detail: Any) -> None:
        if key not in self.findings[kind]:
            self.findings[kind][key] = {"epoch": epoch, **detail}


async def call(client: Client, method: str, **params: Any) -> Any:
    return await asyncio.wait_for(client.call(method, **params), CALL_TIMEOUT_S)


def aim(t: Tracker) -> None:
    """Arm the aimed kill, if one waits, as a request is about to be sent."""
    if t.aimed_kill is not None:
        kill, t.aimed_kill = t.aimed_kill, None
        asyncio.get_running_loop().call_later(t.aim_delay, kill, True)


async def launch_one(daemon: common.BenchDaemon, client: Client, t: Tracker, rng: random.Random,
                     epoch: int) -> None:
    t.seq += 1
    name = f"cl{t.seq:04d}"
    deck = daemon.deck(wall_s=round(rng.uniform(0.5, 1.5), 3))
    mpp = rng.random() < t.mpp_share
    solver, ncpu = ("fake-mpp", 2) if mpp else ("fake-smp", 1)
    t.sent[name] = epoch
    t.inflight += 1
    aim(t)
    try:
        job = await call(client, "launch", solver=solver, input=str(deck), ncpu=ncpu, name=name)
        t.acked[name] = job["id"]
        t.acked_epoch[name] = epoch
        t.status.setdefault(job["id"], job["status"])
    except RpcError as exc:
        t.rpc_errors.append(f"launch {name}: {exc}")
    except DOWN:
        t.unacked.add(name)
    finally:
        t.inflight -= 1


async def stop_one(client: Client, t: Tracker, rng: random.Random) -> None:
    recent = [jid for jid in list(t.acked.values())[-12:] if t.status.get(jid) not in common.TERMINAL]
    running = [jid for jid in recent if t.status.get(jid) in LIVE_PROC]
    if not recent:
        return
    # mostly jobs with a process (graceful or forced stop of a solver), else a queued one
    jid = rng.choice(running if running and rng.random() < 0.7 else recent)
    t.stops_sent += 1
    t.inflight += 1
    aim(t)
    try:
        await call(client, "stop", id=jid, force=rng.random() < 0.5)
        t.stops_acked += 1
    except RpcError as exc:
        t.rpc_errors.append(f"stop {jid}: {exc}")
    except DOWN:
        pass
    finally:
        t.inflight -= 1


async def follow(client: Client, t: Tracker) -> None:
    """Keep t.status current from jobChanged notifications."""
    while True:
        try:
            note = await client.next_notification("jobChanged", 1.0)
        except TimeoutError:
            continue
        job = note["job"]
        t.status[job["id"]] = job["status"]


async def ops(daemon: common.BenchDaemon, client: Client, t: Tracker, rng: random.Random,
              epoch: int, launches: int, gap_mean: float, last: bool) -> None:
    """Send requests until the daemon dies (or, in the last epoch, until all are sent)."""
    tasks: set[asyncio.Task[None]] = set()
    proc = daemon.proc
    assert proc is not None
    try:
        while proc.poll() is None:
            if last and t.seq >= launches:
                break
            if rng.random() < STOP_SHARE:
                task = asyncio.create_task(stop_one(client, t, rng))
            elif t.seq < launches and t.live_known() < MAX_LIVE:
                task = asyncio.create_task(launch_one(daemon, client, t, rng, epoch))
            else:  # the queue is full (or every launch was sent): wait
                await asyncio.sleep(rng.expovariate(1.0 / gap_mean))
                continue
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(rng.expovariate(1.0 / gap_mean))
    finally:
        if tasks:
            await asyncio.wait(tasks, timeout=CALL_TIMEOUT_S + 1)


async def check_jobs(client: Client, t: Tracker, epoch: int) -> list[dict[str, Any]]:
    jobs = await common.list_all_jobs(client)
    by_name: dict[str, list[int]] = collections.defaultdict(list)
    for j in jobs:
        if j["name"]:
            by_name[j["name"]].append(j["id"])
    for name, ids in by_name.items():
        if len(ids) > 1:
            t.note("duplicated", name, epoch, ids=sorted(ids))
    by_id = {j["id"]: j for j in jobs}
    for name, jid in t.acked.items():
        if name not in by_name:
            # listJobs left it out: ask for the job itself before calling it lost
            try:
                job = await call(client, "getJob", id=jid)
            except RpcError:
                job = None
            if job is not None and job["name"] == name:
                t.note("listjobs_omission", name, epoch, job_id=jid, status=job["status"],
                       listed=len(jobs))
            else:
                t.note("lost", name, epoch, job_id=jid, acked_in_epoch=t.acked_epoch[name])
        elif jid in by_id and by_id[jid]["name"] != name:
            t.note("id_name_mismatch", name, epoch, job_id=jid, found=by_id[jid]["name"])
    for j in jobs:
        t.status[j["id"]] = j["status"]
    return jobs


async def check_cores(daemon: common.BenchDaemon, client: Client, t: Tracker, epoch: int) -> None:
    problems: list[tuple[str, Any, dict[str, Any]]] = []
    for _ in range(3):
        problems = []
        status = await call(client, "getCoreAllocationStatus")
        jobs = await common.list_all_jobs(client)
        holder: dict[int, int] = {}
        for j in jobs:
            if j["status"] not in LIVE_PROC:
                continue
            for c in j["allocated_cores"] or []:
                if c in holder:
                    problems.append(("double_booked", (epoch, c), {"core": c, "jobs": [holder[c], j["id"]]}))
                else:
                    holder[c] = j["id"]
        table = {c["index"]: c["job_id"] for c in status["cores"] if c["job_id"] is not None}
        for c in sorted(set(table) | set(holder)):
            if table.get(c) != holder.get(c):
                problems.append(("core_table_mismatch", (epoch, c),
                                 {"core": c, "table": table.get(c), "records": holder.get(c)}))
        tagged = await asyncio.to_thread(daemon.tagged)
        for j in jobs:
            if j["status"] != "running" or not j["allocated_cores"]:
                continue
            # every process of the job (launcher, MPI proxies, ranks) runs inside its cores;
            # MPICH binds each rank to one of them (-bind-to user:LIST), hence "within"
            for pid in tagged.get(j["id"], []):
                try:
                    aff = sorted(os.sched_getaffinity(pid))
                except OSError:
                    continue
                if not set(aff) <= set(j["allocated_cores"]):
                    problems.append(("affinity_mismatch", (epoch, j["id"], pid),
                                     {"job_id": j["id"], "pid": describe(pid), "affinity": aff,
                                      "allocated": j["allocated_cores"]}))
        if not problems:
            return
        await asyncio.sleep(0.2)
    for kind, key, detail in problems:
        t.note(kind, key, epoch, **detail)


def describe(pid: int) -> str:
    try:
        p = psutil.Process(pid)
        return f"{pid} {p.name()} {' '.join(p.cmdline())[:120]}"
    except psutil.Error:
        return f"{pid} (gone)"


async def check_processes(daemon: common.BenchDaemon, client: Client, t: Tracker, epoch: int) -> None:
    began = time.monotonic()
    while True:
        tagged = await asyncio.to_thread(daemon.tagged)
        jobs = {j["id"]: j for j in await common.list_all_jobs(client)}
        orphans = {jid: pids for jid, pids in tagged.items()
                   if jid not in jobs or jobs[jid]["status"] not in LIVE_PROC}
        ghosts = [jid for jid, j in jobs.items() if j["status"] in LIVE_PROC and jid not in tagged]
        if (not orphans and not ghosts) or time.monotonic() - began > SETTLE_S:
            break
        await asyncio.sleep(0.25)
    for jid, pids in orphans.items():
        status = jobs[jid]["status"] if jid in jobs else "unknown to the daemon"
        t.note("orphan_solver", (jid, tuple(sorted(pids))), epoch, job_id=jid, job_status=status,
               processes=[describe(p) for p in pids])
    for jid in ghosts:
        t.note("ghost_job", jid, epoch, job_id=jid, status=jobs[jid]["status"], pid=jobs[jid]["pid"])


async def all_checks(daemon: common.BenchDaemon, client: Client, t: Tracker, epoch: int) -> None:
    await check_jobs(client, t, epoch)
    await check_cores(daemon, client, t, epoch)
    await check_processes(daemon, client, t, epoch)


async def wait_all_ended(client: Client, t: Tracker, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = await common.list_all_jobs(client)
        live = [j for j in jobs if j["status"] not in common.TERMINAL]
        if not live or time.monotonic() > deadline:
            return live
        await asyncio.sleep(0.5)


async def run(daemon: common.BenchDaemon, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    t = Tracker()
    t.mpp_share = args.mpp_share
    kills = 0
    epoch = 0
    restarts_listening = 0
    started_failures = 0
    final: dict[str, Any] = {}
    while True:
        epoch += 1
        last = kills >= args.kills
        early = not last and rng.random() < EARLY_SHARE
        fired = threading.Event()
        on_spawn = None
        if early:
            delay = rng.uniform(0.05, 1.0)

            def on_spawn(proc: Any, delay: float = delay, fired: threading.Event = fired) -> None:
                def kill() -> None:
                    fired.set()
                    proc.kill()

                timer = threading.Timer(delay, kill)
                timer.daemon = True
                timer.start()

        try:
            url = await asyncio.to_thread(daemon.start, cleanup_on_failure=False, on_spawn=on_spawn)
        except RuntimeError as exc:
            assert daemon.proc is not None
            await asyncio.to_thread(daemon.proc.wait)
            if early and fired.is_set():
                kills += 1
                t.kills.append({"epoch": epoch, "when": "before listening", "inflight": 0})
                continue
            started_failures += 1
            t.note("daemon_did_not_start", epoch, epoch, log_tail=str(exc)[-2000:])
            if started_failures > 3:
                raise
            continue
        restarts_listening += 1
        killed_by_us = threading.Event()
        handle: asyncio.TimerHandle | None = None
        try:
            async with Client(url) as client:
                await client.subscribe("jobs")
                follower = asyncio.create_task(follow(client, t))
                try:
                    if not early:
                        await all_checks(daemon, client, t, epoch)
                    t.aim_delay = 0.0
                    remaining_kills = max(args.kills - kills, 0)
                    remaining_launches = max(args.launches - t.seq, 0)
                    per_epoch = remaining_launches / (remaining_kills + 1)
                    ops_per_epoch = max(per_epoch / (1 - STOP_SHARE), 0.5)
                    kill_delay = rng.uniform(0.1, 2.0)
                    gap_mean = max(1.05 / ops_per_epoch, 0.02)
                    if not last and not early:
                        proc = daemon.proc
                        assert proc is not None

                        def kill_now(aimed: bool = False, proc: Any = proc, epoch: int = epoch,
                                     flag: threading.Event = killed_by_us) -> None:
                            if flag.is_set() or proc.poll() is not None:
                                return
                            flag.set()
                            t.aimed_kill = None
                            when = "aimed 0-30 ms after a request" if aimed else "while serving"
                            t.kills.append({"epoch": epoch, "when": when, "inflight": t.inflight})
                            proc.kill()

                        if rng.random() < AIMED_SHARE:
                            # 0-30 ms after the next request is sent: while the daemon
                            # validates, commits, spawns or answers it
                            t.aim_delay = rng.uniform(0.0, 0.03)
                            t.aimed_kill = kill_now
                            kill_delay += 5.0  # fallback when no request comes
                        handle = asyncio.get_running_loop().call_later(kill_delay, kill_now)
                    await ops(daemon, client, t, rng, epoch, args.launches, gap_mean, last)
                    if last:
                        live = await wait_all_ended(client, t, timeout=180.0)
                        for j in live:
                            t.note("not_ended", j["id"], epoch, status=j["status"], pid=j["pid"])
                        await all_checks(daemon, client, t, epoch)
                        jobs = await common.list_all_jobs(client)
                        final["statuses"] = dict(collections.Counter(j["status"] for j in jobs))
                        final["jobs"] = len(jobs)
                        final["unacked_created"] = sum(1 for j in jobs if j["name"] in t.unacked)
                finally:
                    follower.cancel()
                    await asyncio.gather(follower, return_exceptions=True)
        except DOWN as exc:
            if not early and not killed_by_us.is_set():
                t.note("daemon_died", epoch, epoch, error=repr(exc), log_tail="".join(daemon.log_tail)[-1500:])
                if last:
                    raise
        if handle is not None:
            handle.cancel()
        t.aimed_kill = None
        if last:
            break
        assert daemon.proc is not None
        if not early and not killed_by_us.is_set():
            if daemon.proc.poll() is None:
                daemon.kill9()
            t.note("daemon_died", epoch, epoch, error=f"exit code {daemon.proc.returncode}",
                   log_tail="".join(daemon.log_tail)[-1500:])
        await asyncio.to_thread(daemon.proc.wait)
        if early:
            t.kills.append({"epoch": epoch, "when": "just after listening", "inflight": t.inflight})
        kills += 1
    return {"t": t, "final": final, "restarts_listening": restarts_listening, "epochs": epoch}


def job_log_lines(daemon: common.BenchDaemon, job_ids: set[int], limit: int = 12) -> list[str]:
    out: list[str] = []
    for jid in sorted(job_ids):
        lines = daemon.log_lines(rf"job {jid}:")
        out.append(f"  --- log of job {jid} ({len(lines)} lines, last {min(limit, len(lines))}):")
        out.extend("    " + line for line in lines[-limit:])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launches", type=int, default=200, help="launch requests (default 200)")
    parser.add_argument("--kills", type=int, default=50, help="daemon kills (default 50)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--mpp-share", type=float, default=0.2,
                        help="share of launches that are MPP (fake-mpp, ncpu 2 under "
                             "mpiexec.hydra) instead of SMP (ncpu 1); default 0.2")
    parser.add_argument("--json", type=Path, help="also write the findings here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (log, store)")
    args = parser.parse_args()
    common.install_sigterm_as_interrupt()
    print(common.machine())
    began = time.perf_counter()
    daemon = common.BenchDaemon(keep=True)  # removed below unless --keep or a finding
    result: dict[str, Any] | None = None
    try:
        result = asyncio.run(run(daemon, args))
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.terminate()
        daemon.daemon_id = daemon.daemon_id or common.store_daemon_id(daemon.tmp / "jobs.db")
        leftover = daemon.tagged() if daemon.daemon_id else {}
        if daemon.daemon_id:
            common.kill_tagged(daemon.daemon_id)
    assert result is not None
    t: Tracker = result["t"]
    final = result["final"]
    kinds = ["lost", "listjobs_omission", "duplicated", "id_name_mismatch", "double_booked", "core_table_mismatch",
             "affinity_mismatch", "orphan_solver", "ghost_job", "not_ended", "daemon_did_not_start",
             "daemon_died"]
    labels = {
        "lost": "jobs lost (acknowledged launch missing)",
        "listjobs_omission": "listJobs answers missing an existing job",
        "duplicated": "jobs duplicated (a name more than once)",
        "id_name_mismatch": "acknowledged id carries another name",
        "double_booked": "cores double-booked (core, restart)",
        "core_table_mismatch": "core table != job records (core, restart)",
        "affinity_mismatch": "job process affinity outside its cores",
        "orphan_solver": "solvers left without a live job",
        "ghost_job": "live jobs without any process",
        "not_ended": "jobs not ended 180 s after the last launch",
        "daemon_did_not_start": "restarts that failed (not our kill)",
        "daemon_died": "daemon deaths we did not cause",
    }
    when = collections.Counter(k["when"] for k in t.kills)
    inflight_kills = sum(1 for k in t.kills if k["inflight"])
    print(f"{'check':<46} {'count':>7}")
    print(f"{'launch requests sent':<46} {len(t.sent):>7}")
    print(f"{'  acknowledged (job id returned)':<46} {len(t.acked):>7}")
    print(f"{'  unanswered (daemon died) / of them created':<46} {len(t.unacked):>7} / {final.get('unacked_created', '?')}")
    print(f"{'  refused with an error':<46} {len(t.rpc_errors):>7}")
    print(f"{'stop requests sent / acknowledged':<46} {t.stops_sent:>7} / {t.stops_acked}")
    print(f"{'daemon kills (SIGKILL)':<46} {len(t.kills):>7}")
    for w, n in sorted(when.items()):
        print(f"{'  ' + w:<46} {n:>7}")
    print(f"{'  with requests in flight':<46} {inflight_kills:>7}")
    print(f"{'restarts that listened (each checked)':<46} {result['restarts_listening']:>7}")
    print(f"{'jobs in the store at the end':<46} {final.get('jobs', '?'):>7}  {final.get('statuses', {})}")
    for kind in kinds:
        print(f"{labels[kind]:<46} {len(t.findings.get(kind, {})):>7}")
    if t.rpc_errors:
        print("# refused requests: " + "; ".join(t.rpc_errors[:10]))
    bad_ids: set[int] = set()
    for kind in kinds:
        for key, detail in t.findings.get(kind, {}).items():
            print(f"# FINDING {kind} {key}: {json.dumps(detail, default=str)}")
            for field in ("job_id",):
                if isinstance(detail.get(field), int):
                    bad_ids.add(detail[field])
            for field in ("ids", "jobs"):
                bad_ids.update(x for x in detail.get(field, []) if isinstance(x, int))
    if bad_ids:
        print("\n".join(job_log_lines(daemon, bad_ids)))
    if leftover:
        print(f"# after the final stop, {sum(map(len, leftover.values()))} tagged processes were "
              f"left and killed: jobs {sorted(leftover)[:20]}")
    if args.json:
        args.json.write_text(json.dumps({
            "findings": {k: {str(kk): v for kk, v in d.items()} for k, d in t.findings.items()},
            "kills": t.kills, "final": final, "sent": len(t.sent), "acked": len(t.acked),
            "unacked": sorted(t.unacked), "rpc_errors": t.rpc_errors,
        }, indent=1, default=str))
    bugs = sum(len(t.findings.get(k, {})) for k in kinds)
    if bugs and not args.keep:
        print(f"# kept {daemon.tmp} (findings: log and store are there)")
    elif not args.keep:
        import shutil

        shutil.rmtree(daemon.tmp, ignore_errors=True)
    else:
        print(f"# kept {daemon.tmp}")
    counts = {k: len(t.findings.get(k, {})) for k in kinds}
    print(
        f"SUMMARY crash_loop: {len(t.kills)} kill -9 ({when.get('before listening', 0)} before listening) "
        f"during {len(t.sent)} launches ({len(t.acked)} acknowledged) and {t.stops_sent} stops: "
        f"lost {counts['lost']} (listJobs omissions {counts['listjobs_omission']}), "
        f"duplicated {counts['duplicated']}, cores double-booked "
        f"{counts['double_booked']} (table mismatches {counts['core_table_mismatch']}, affinity "
        f"{counts['affinity_mismatch']}), orphan solvers {counts['orphan_solver']}, ghost jobs "
        f"{counts['ghost_job']}, not ended {counts['not_ended']}; goal all 0 "
        f"({'met' if bugs == 0 else 'MISSED'}); wall {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
