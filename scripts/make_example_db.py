"""Regenerate `jobs.db.example` at the repo root: a small job database to look at and test with.

Run from anywhere: `python scripts/make_example_db.py [OUTPUT]`. It deletes the output
first, then builds it through `serv.store.Store` (the project's own schema and migrations)
and `serv.core.states.transition` (the legal moves only), so the file always matches the
code. Every value and timestamp is fixed; only `meta.daemon_id` (a fresh uuid4, as for any
new database) differs between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# The dev venv does not necessarily install the project; make `serv` importable from a checkout.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from serv.core.jobs import Family, Job, JobSpec
from serv.core.states import JobStatus, Termination, transition
from serv.store import Store

log = logging.getLogger("make_example_db")

S = JobStatus
T0 = datetime(2025, 6, 2, 8, 0, 0, tzinfo=UTC)
LSDYNA = "/opt/lsdyna/lsdyna_smp_d_R16.1.1"
CCX = "/usr/bin/ccx"


def at(minutes: float) -> datetime:
    """A fixed moment, `minutes` after T0."""
    return T0 + timedelta(minutes=minutes)


class Builder:
    """Moves jobs through legal transitions and commits each step with its event."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def submit(self, spec: JobSpec, minutes: float) -> Job:
        """A new queued job for `spec`, submitted at T0 + `minutes`."""
        return await self.store.create(spec, at=at(minutes))

    async def move(
        self, job: Job, to: JobStatus, minutes: float, message: str | None = None, **fields: Any
    ) -> Job:
        """`job` moved to `to` at T0 + `minutes` with `fields` replaced, committed with its event."""
        moved = dataclasses.replace(transition(job, to, at=at(minutes), message=message), **fields)
        await self.store.commit(moved, previous=job.status, at=at(minutes))
        return moved


async def build(output: Path) -> None:
    for leftover in (output, *(output.with_name(output.name + s) for s in ("-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    store = await Store.open(output)
    try:
        b = Builder(store)

        # 1. finished: normal termination, progress 100.
        job = await b.submit(
            JobSpec(
                solver="lsdyna-r16",
                family=Family.LSDYNA,
                input="/data/crash/front.k",
                workdir="/data/crash",
                ncpu=4,
                memory="200m",
                name="front crash",
                licenses=(("lsdyna", 4),),
            ),
            0,
        )
        job = await b.move(job, S.STARTING, 0.1, "cores 0-3 granted", allocated_cores=(0, 1, 2, 3))
        job = await b.move(
            job,
            S.RUNNING,
            0.2,
            "solver pid 41012 found",
            command=(LSDYNA, "i=front.k", "ncpu=4", "memory=200m"),
            pid=41012,
            pid_create_time=1748851212.25,
            launcher_pid=41010,
            launcher_create_time=1748851206.5,
        )
        await b.move(
            job,
            S.FINISHED,
            95,
            "normal termination",
            exit_code=0,
            progress=100.0,
            sim_time=0.12,
            end_time=0.12,
            eta_s=0.0,
            added_mass=0.00153,
            pct_mass=0.27,
            termination=Termination.NORMAL,
            allocated_cores=None,
        )

        # 2. failed: error termination with the solver's message.
        job = await b.submit(
            JobSpec(
                solver="lsdyna-r16",
                family=Family.LSDYNA,
                input="/data/door/door.k",
                workdir="/data/door",
                ncpu=2,
                name="door intrusion",
            ),
            5,
        )
        job = await b.move(job, S.STARTING, 5.1, "cores 4-5 granted", allocated_cores=(4, 5))
        job = await b.move(
            job,
            S.RUNNING,
            5.2,
            "solver pid 41377 found",
            command=(LSDYNA, "i=door.k", "ncpu=2"),
            pid=41377,
            pid_create_time=1748851512.75,
        )
        await b.move(
            job,
            S.FAILED,
            5.5,
            "error termination: *** Error: part 12 referenced by *SECTION_SHELL is not defined",
            exit_code=1,
            progress=0.0,
            sim_time=0.0,
            end_time=0.08,
            termination=Termination.ERROR,
            allocated_cores=None,
        )

        # 3. stopped by sw1: a graceful stop that wrote a restart dump.
        job = await b.submit(
            JobSpec(
                solver="lsdyna-r16",
                family=Family.LSDYNA,
                input="/data/sled/sled.k",
                workdir="/data/sled",
                ncpu=4,
                name="sled test",
            ),
            10,
        )
        job = await b.move(job, S.STARTING, 10.1, "cores 4-7 granted", allocated_cores=(4, 5, 6, 7))
        job = await b.move(
            job,
            S.RUNNING,
            10.2,
            "solver pid 41502 found",
            command=(LSDYNA, "i=sled.k", "ncpu=4"),
            pid=41502,
            pid_create_time=1748851812.5,
        )
        job = await b.move(
            job, S.STOPPING, 60, "stop requested: sw1 sent", stop_requested_by="user (stop)"
        )
        await b.move(
            job,
            S.STOPPED,
            61,
            "stopped by sw1; restart dump d3dump01 written (resume with restart=d3dump01)",
            exit_code=0,
            progress=61.5,
            sim_time=0.0738,
            end_time=0.12,
            termination=Termination.NORMAL,
            allocated_cores=None,
        )

        # 4. cancelled: left the queue before it started.
        job = await b.submit(
            JobSpec(
                solver="hfss-2024",
                family=Family.HFSS,
                input="/data/antenna/patch.aedt",
                workdir="/data/antenna",
                ncpu=8,
                name="patch antenna sweep",
            ),
            20,
        )
        await b.move(
            job, S.CANCELLED, 40, "cancelled before start", stop_requested_by="user (stop)"
        )

        # 5. running: solver pid and allocated cores, progress under way.
        running = await b.submit(
            JobSpec(
                solver="ccx",
                family=Family.CALCULIX,
                input="/data/bracket/bracket.inp",
                workdir="/data/bracket",
                ncpu=4,
                priority=5,
                name="bracket modal",
            ),
            132,
        )
        running = await b.move(
            running, S.STARTING, 132.1, "cores 4-7 granted", allocated_cores=(4, 5, 6, 7)
        )
        running = await b.move(
            running,
            S.RUNNING,
            132.2,
            "solver pid 42118 found",
            command=(CCX, "-i", "bracket"),
            pid=42118,
            pid_create_time=1748859132.0,
            launcher_pid=42115,
            launcher_create_time=1748859131.5,
        )
        running = dataclasses.replace(
            running, progress=42.5, sim_time=0.425, end_time=1.0, eta_s=840.0
        )
        await store.commit(running)

        # 6. queued: waits for cores, and for the running job to finish normally.
        queued = await b.submit(
            JobSpec(
                solver="lsdyna-r16",
                family=Family.LSDYNA,
                input="/data/crash/rear.k",
                workdir="/data/crash/rear",
                ncpu=8,
                args=("-d", "nodump"),
                after=(running.id,),
                restart=None,
                name="rear crash",
            ),
            133,
        )
        await store.commit(
            dataclasses.replace(queued, message=f"waiting for job {running.id} and 8 free cores")
        )
        counts = {status: len(await store.list(status=status)) for status in JobStatus}
        log.info("wrote %s: %s", output, ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    finally:
        await store.close()
    # The lock only guards a running daemon; do not leave one beside an example file.
    output.with_name(output.name + ".lock").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output", nargs="?", type=Path, default=REPO_ROOT / "jobs.db.example", help="file to write"
    )
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    asyncio.run(build(options.output))


if __name__ == "__main__":
    main()
