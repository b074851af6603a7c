"""`Job.evolve`: the job copy used on the daemon's hot path is `dataclasses.replace`, field
for field, including the TypeError for a name that is not a field."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serv.core.jobs import Family, Job
from serv.core.states import JobStatus, Termination

T0 = datetime(2026, 11, 23, 1, 2, 3, tzinfo=UTC)
FIELDS = [f.name for f in dataclasses.fields(Job)]

BASE = Job(
    id=3, solver="lsdyna-smp", family=Family.LSDYNA, input="/decks/a/main.k", workdir="/decks/a",
    submitted_at=T0, ncpu=4, status=JobStatus.RUNNING, pid=4242, pid_create_time=1.5,
    allocated_cores=(0, 1, 2, 3), command=("lsdyna", "i=main.k", "ncpu=4"), message="solver pid 4242",
    extra={"process_names": ["lsdyna"]},
)
# A second job whose every field differs from BASE: a change taken from it is always visible.
OTHER = Job(
    id=9, solver="ccx", family=Family.CALCULIX, input="/decks/b/beam.inp", workdir="/decks/b",
    submitted_at=T0 + timedelta(hours=1), name="beam", ncpu=2, memory="2000m", args=("-x",),
    priority=5, nice=10, restart="d3dump01", backend="slurm", backend_id="123",
    licenses=(("lsdyna", 2),), after=(1, 2),
    status=JobStatus.FINISHED, pid=77, pid_create_time=2.5, launcher_pid=76, launcher_create_time=2.25,
    allocated_cores=(4, 5), command=("ccx", "beam"), started_at=T0 + timedelta(hours=2),
    ended_at=T0 + timedelta(hours=3), exit_code=0, progress=100.0, sim_time=1.0, end_time=1.0,
    eta_s=0.0, added_mass=0.5, pct_mass=0.1, termination=Termination.NORMAL, message="finished",
    stop_requested_by="user", queue_seq=2.5, extra={"k": "v"},
)


def as_tuple(job: Job) -> tuple[object, ...]:
    # Every field, `extra` too (it is left out of ==).
    return tuple(getattr(job, name) for name in FIELDS)


def test_every_field_differs_between_the_two_samples() -> None:
    same = [name for name in FIELDS if getattr(BASE, name) == getattr(OTHER, name)]
    assert same == []


@given(st.sets(st.sampled_from(FIELDS)))
def test_evolve_is_dataclasses_replace(names: set[str]) -> None:
    changes = {name: getattr(OTHER, name) for name in names}
    before = as_tuple(BASE)
    copied = BASE.evolve(**changes)
    assert as_tuple(copied) == as_tuple(dataclasses.replace(BASE, **changes))
    assert type(copied) is Job and copied is not BASE
    assert as_tuple(BASE) == before  # a copy, never an edit


def test_a_copy_is_still_frozen() -> None:
    copied = BASE.evolve(message="m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        copied.message = "n"  # type: ignore[misc]


def test_an_unknown_field_is_refused_like_replace() -> None:
    with pytest.raises(TypeError, match="Job has no field stauts"):
        BASE.evolve(stauts=JobStatus.FAILED)
    with pytest.raises(TypeError):
        dataclasses.replace(BASE, stauts=JobStatus.FAILED)  # type: ignore[call-arg]
