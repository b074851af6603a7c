"""What every client shares with the daemon: method names, topics, the Job's wire form.

`job_to_wire` is the only place a Job becomes JSON (contract.md § Job). The CLI, the Python
client and the tests import this module, never the daemon's internals.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from serv.core.jobs import Job
from serv.core.states import JobStatus, Termination

DEFAULT_PORT = 5568
DEFAULT_URL = f"ws://127.0.0.1:{DEFAULT_PORT}/"

METHODS = (
    "launch", "stop", "pause", "resume", "senseSwitch", "setPriority", "moveJob", "getJob",
    "listJobs", "getJobOutput", "subscribe", "killOrphanDynaProcesses",
    "getCoreAllocationStatus", "getSystemHealth", "listSolvers", "rpc.discover",
)
TOPICS = frozenset({"jobs", "output", "cores"})

__all__ = ["JobStatus", "Termination", "job_to_wire", "iso", "METHODS", "TOPICS"]


def iso(at: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z suffix, or None."""
    if at is None:
        return None
    return at.isoformat().replace("+00:00", "Z")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def job_to_wire(job: Job, now: datetime) -> dict[str, Any]:
    """The contract's Job object (plus a few extra fields clients may use)."""
    elapsed = None
    if job.started_at is not None:
        elapsed = ((job.ended_at or now) - job.started_at).total_seconds()
    return {
        "id": job.id,
        "name": job.name,
        "solver": job.solver,
        "family": str(job.family),
        "input": job.input,
        "workdir": job.workdir,
        "ncpu": job.ncpu,
        "memory": job.memory,
        "args": list(job.args),
        "status": str(job.status),
        "pid": job.pid,
        "allocated_cores": None if job.allocated_cores is None else list(job.allocated_cores),
        "priority": job.priority,
        "submitted_at": iso(job.submitted_at),
        "started_at": iso(job.started_at),
        "ended_at": iso(job.ended_at),
        "exit_code": job.exit_code,
        "progress": _round(job.progress, 3),
        "sim_time": job.sim_time,
        "end_time": job.end_time,
        "eta_s": _round(job.eta_s, 1),
        "elapsed_s": _round(elapsed, 3),
        "added_mass": job.added_mass,
        "pct_mass": job.pct_mass,
        "termination": None if job.termination is None else str(job.termination),
        "message": job.message,
        "nice": job.nice,
        "after": list(job.after),
        "backend": job.backend,
        "backend_id": job.backend_id,
        "restart": job.restart,
        "licenses": None if job.licenses is None else dict(job.licenses),
        "command": list(job.command),
        "solver_started": bool(job.extra.get("solver_started", False)),
        "details": job.extra.get("details") or {},
    }
