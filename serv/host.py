"""Host telemetry for getSystemHealth: per-CPU use, memory, free disk where jobs run.

Sampled by the watchdog thread once per tick (psutil's per-CPU percentages are "since the
previous call", so one regular caller gives meaningful numbers); never on the event loop.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import psutil

from serv.core.jobs import Job


def sample(jobs: Iterable[Job]) -> dict[str, Any]:
    """CPU per logical core (%), memory, and free space of each file system holding a
    live job's workdir (one entry per device, with the jobs on it)."""
    memory = psutil.virtual_memory()
    disks: dict[int, dict[str, Any]] = {}
    for job in jobs:
        try:
            device = os.stat(job.workdir).st_dev
        except OSError:
            continue
        entry = disks.get(device)
        if entry is None:
            try:
                usage = psutil.disk_usage(job.workdir)
            except OSError:
                continue
            entry = disks[device] = {
                "path": job.workdir,
                "free_bytes": usage.free,
                "total_bytes": usage.total,
                "free_gib": round(usage.free / 1024**3, 2),
                "jobs": [],
            }
        entry["jobs"].append(job.id)
    return {
        "cpu_percent": psutil.cpu_percent(percpu=True),
        "memory": {
            "total_bytes": memory.total,
            "available_bytes": memory.available,
            "percent": memory.percent,
        },
        "disks": list(disks.values()),
    }


def disk_free(path: str) -> tuple[float, float]:
    """(free GiB, total GiB) of the file system holding `path`; raises OSError."""
    usage = psutil.disk_usage(path)
    return usage.free / 1024**3, usage.total / 1024**3
