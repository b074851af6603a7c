"""The job record and the request that creates it.

Records are frozen; every change goes through `dataclasses.replace`, and status changes go
through `serv.core.states.transition`. Runtime handles (processes, pidfds, tail offsets) are
never part of a Job: they live in the JobManager and are rebuilt after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from serv.core.states import JobStatus, Termination


class Family(StrEnum):
    """Solver families; each has a module in `serv.solvers`."""

    LSDYNA = "lsdyna"
    HFSS = "hfss"
    CALCULIX = "calculix"
    GENERIC = "generic"


@dataclass(frozen=True, slots=True)
class ProcIdentity:
    """A process as the OS knows it: a PID alone can be recycled, PID + create time cannot."""

    pid: int
    create_time: float


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated `launch` request, before it has an id."""

    solver: str
    family: Family
    input: str
    workdir: str
    ncpu: int = 1
    memory: str | None = None
    args: tuple[str, ...] = ()
    name: str | None = None
    priority: int = 0
    nice: int = 0
    restart: str | None = None
    backend: str = "local"
    licenses: tuple[tuple[str, int], ...] | None = None
    after: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Job:
    """One job, as stored and as clients see it (through `serv.api.job_to_wire`)."""

    id: int
    solver: str
    family: Family
    input: str
    workdir: str
    submitted_at: datetime
    status: JobStatus = JobStatus.QUEUED
    name: str | None = None
    ncpu: int = 1
    memory: str | None = None
    args: tuple[str, ...] = ()
    priority: int = 0
    nice: int = 0
    restart: str | None = None
    backend: str = "local"
    backend_id: str | None = None
    licenses: tuple[tuple[str, int], ...] | None = None
    after: tuple[int, ...] = ()
    command: tuple[str, ...] = ()
    pid: int | None = None
    pid_create_time: float | None = None
    launcher_pid: int | None = None
    launcher_create_time: float | None = None
    allocated_cores: tuple[int, ...] | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None
    progress: float | None = None
    sim_time: float | None = None
    end_time: float | None = None
    eta_s: float | None = None
    added_mass: float | None = None
    pct_mass: float | None = None
    termination: Termination | None = None
    message: str = ""
    stop_requested_by: str | None = None
    queue_seq: float | None = None
    extra: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def solver_identity(self) -> ProcIdentity | None:
        if self.pid is None or self.pid_create_time is None:
            return None
        return ProcIdentity(self.pid, self.pid_create_time)

    @property
    def launcher_identity(self) -> ProcIdentity | None:
        if self.launcher_pid is None or self.launcher_create_time is None:
            return None
        return ProcIdentity(self.launcher_pid, self.launcher_create_time)

    @classmethod
    def from_spec(cls, job_id: int, spec: JobSpec, *, at: datetime) -> Job:
        """A new queued job for `spec`."""
        return cls(
            id=job_id,
            solver=spec.solver,
            family=spec.family,
            input=spec.input,
            workdir=spec.workdir,
            submitted_at=at,
            name=spec.name,
            ncpu=spec.ncpu,
            memory=spec.memory,
            args=spec.args,
            priority=spec.priority,
            nice=spec.nice,
            restart=spec.restart,
            backend=spec.backend,
            licenses=spec.licenses,
            after=spec.after,
            queue_seq=float(job_id),
        )
