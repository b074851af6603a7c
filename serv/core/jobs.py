"""The job record and the request that creates it.

Records are frozen; every change makes a copy (`Job.evolve`; `dataclasses.replace` for the
other records), and status changes go through `serv.core.states.transition`. Runtime
handles (processes, pidfds, tail offsets) are never part of a Job: they live in the
JobManager and are rebuilt after a restart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

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

    def evolve(self, **changes: Any) -> Job:
        """This job with `changes`: what `dataclasses.replace(self, **changes)` returns
        (TypeError for a name that is not a field), three to four times faster. A job is
        copied about eight times on its way from launch to end, on the event loop."""
        if not _JOB_FIELDS.issuperset(changes):
            unknown = ", ".join(sorted(set(changes) - _JOB_FIELDS))
            raise TypeError(f"Job has no field {unknown}")
        return _copy_job(self, changes)

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


def _compile_copy(cls: type[Job]) -> Callable[[Job, Mapping[str, Any]], Job]:
    """A copy function for `cls` with one line per field, set through the slot descriptors
    (how dataclasses writes its own __init__). It is `dataclasses.replace` without the
    generic work per call, which is valid only while every field is an init field and
    there is no __post_init__: checked here, so a later change to Job fails at import."""
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or not all(f.init for f in fields):
        raise TypeError("Job.evolve copies fields as they are: Job must keep no __post_init__ and only init fields")
    names = [f.name for f in fields]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    namespace.update({f"_set_{name}": getattr(cls, name).__set__ for name in names})
    body = "".join(
        f"    _set_{name}(new, changes[{name!r}] if {name!r} in changes else job.{name})\n" for name in names
    )
    exec(f"def copy(job, changes):\n    new = _new(_cls)\n{body}    return new\n", namespace)
    return cast(Callable[[Job, Mapping[str, Any]], Job], namespace["copy"])


_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(Job))
_copy_job = _compile_copy(Job)
