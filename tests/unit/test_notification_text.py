"""serv.server.notification_text: orjson for speed, the same JSON values as json.dumps, and
json.dumps for what orjson refuses."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from serv.api import job_to_wire
from serv.core.jobs import Family, Job
from serv.core.states import JobStatus
from serv.server import notification_text

T0 = datetime(2026, 11, 23, 1, 0, 0, 123456, tzinfo=UTC)


def a_job() -> Job:
    return Job(
        id=12, solver="lsdyna-mpp", family=Family.LSDYNA, input="/runs/crash/main.k",
        workdir="/runs/crash", submitted_at=T0, status=JobStatus.RUNNING, name="Crash ünd Co ✓",
        ncpu=4, pid=4321, allocated_cores=(0, 1, 2, 3), started_at=T0 + timedelta(seconds=2),
        progress=12.345, sim_time=0.001234, end_time=0.01, eta_s=321.0,
        command=("mpiexec", "-np", "4", "lsdyna", "i=main.k"), message="cycle 1200",
        extra={"process_names": ["lsdyna"], "note": "line\nbreak \"quoted\""},
    )


def test_a_jobs_notification_carries_the_same_values_as_json_dumps() -> None:
    wire = job_to_wire(a_job(), T0 + timedelta(seconds=10))
    text = notification_text("jobChanged", {"job": wire})
    assert json.loads(text) == json.loads(
        json.dumps({"jsonrpc": "2.0", "method": "jobChanged", "params": {"job": wire}})
    )
    assert json.loads(text)["params"]["job"]["name"] == "Crash ünd Co ✓"


def test_what_orjson_refuses_goes_through_json_dumps() -> None:
    huge = 2**70  # beyond 64 bits: orjson refuses it, json.dumps writes it exactly
    text = notification_text("jobChanged", {"job": {"id": 1, "extra": {"big": huge, 3: "int key"}}})
    parsed = json.loads(text)
    assert parsed["params"]["job"]["extra"] == {"big": huge, "3": "int key"}


def test_a_lone_surrogate_in_output_text_goes_through_json_dumps() -> None:
    # Not UTF-8, so orjson refuses it; json.dumps escapes it as the stdlib always did.
    text = notification_text("jobOutput", {"id": 3, "data": "bad \udcff byte"})
    assert json.loads(text)["params"]["data"] == "bad \udcff byte"


def test_nan_is_written_as_null_so_the_text_stays_json() -> None:
    text = notification_text("jobChanged", {"job": {"id": 1, "eta_s": math.nan}})

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    assert json.loads(text, parse_constant=refuse)["params"]["job"]["eta_s"] is None
