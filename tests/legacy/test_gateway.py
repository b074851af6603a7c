"""LegacyGateway without a network: a GUI that connects after jobs ran and queued while nobody
was connected sees what a GUI connected all along sees (protocol §1.6 mount-time requests,
§3.19 shells, §4.1 notifications), shells are trimmed by the same rule, and answers are
encoded once yet framed exactly as the Socket.IO codecs frame them (§2)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from serv.config import Config, SolverProfile
from serv.core.jobs import Family, Job
from serv.core.states import JobStatus
from serv.legacy import gateway as gateway_module
from serv.legacy.gateway import LegacyGateway, Shell
from serv.legacy.jsontext import JsonText, json_list, with_member
from serv.legacy.records import (
    UPDATE_FIELDS,
    QueueRecords,
    job_record,
    queue_record,
    update_fields,
)
from serv.legacy.rpc import Dispatcher
from serv.legacy.transport import message_frame, message_frame_json
from tests.conftest import DEADLINE

S = JobStatus
T0 = datetime(2024, 1, 12, 10, 0, tzinfo=UTC)
JOBS = 3
MAX_ENDED = 2  # MAX_ENDED_SHELLS in these scenarios, so that trimming happens often


class FakeManager:
    """What the gateway reads of a JobManager: live jobs, the queue in order, the profiles."""

    def __init__(self) -> None:
        self.config = Config()
        self.jobs: dict[int, Job] = {}

    def add_reconfigure_listener(self, listener: Callable[[Config], None]) -> None:
        pass

    def queue(self) -> list[Job]:
        queued = [j for j in self.jobs.values() if j.status is S.QUEUED]
        return sorted(queued, key=lambda j: (j.queue_seq or 0.0, j.id))


class FakeSession:
    """A GUI that joined namespace "/": the notifications the gateway sent it, decoded."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    def send_frame(self, frame: str) -> None:
        self.frames.append(frame)

    def notes(self) -> list[dict[str, Any]]:
        out = []
        for frame in self.frames:
            assert frame.startswith('42["message",'), frame
            out.append(json.loads(json.loads(frame[2:])[1]))
        return out


class World:
    """One sequence of job events, fed to every gateway as the daemon feeds them: a commit
    keeps live jobs in the manager and then calls `job_changed`; output calls `output`."""

    def __init__(self, gateways: list[LegacyGateway]) -> None:
        self.jm = FakeManager()
        self.gateways = gateways
        self.known: dict[int, Job] = {}
        self.seq = itertools.count(1)
        for gw in gateways:
            gw.attach(self.jm)  # type: ignore[arg-type]

    def commit(self, job: Job) -> None:
        self.known[job.id] = job
        if job.status.is_live:
            self.jm.jobs[job.id] = job
        else:
            self.jm.jobs.pop(job.id, None)
        for gw in self.gateways:
            gw.job_changed(job)

    def step(self, action: str, job_id: int, value: int) -> None:
        job = self.known.get(job_id)
        at = T0 + timedelta(seconds=next(self.seq))
        if action == "submit" and job is None:
            self.commit(Job(job_id, "fake", Family.LSDYNA, f"/runs/{job_id}/main.k", f"/runs/{job_id}", T0,
                            queue_seq=float(next(self.seq))))
        elif job is None:
            return
        elif action == "move" and job.status is S.QUEUED:
            self.commit(dataclasses.replace(job, queue_seq=-float(next(self.seq))))
        elif action == "cancel" and job.status is S.QUEUED:
            self.commit(dataclasses.replace(job, status=S.CANCELLED, ended_at=at))
        elif action == "start" and job.status is S.QUEUED:
            self.commit(dataclasses.replace(job, status=S.STARTING, started_at=at, allocated_cores=(job_id,)))
        elif action == "run" and job.status is S.STARTING:
            self.commit(dataclasses.replace(job, status=S.RUNNING, pid=1000 + job_id))
        elif action == "progress" and job.status is S.RUNNING:
            self.commit(dataclasses.replace(job, progress=value * 12.345, sim_time=value * 0.1,
                                            eta_s=100.0 - value, end_time=1.0))
        elif action == "touch":  # a commit that changes no field the GUI shows
            self.commit(dataclasses.replace(job, message=f"note {value}"))
        elif action == "end" and job.status in (S.STARTING, S.RUNNING):
            status = (S.FINISHED, S.FAILED, S.STOPPED)[value % 3]
            self.commit(dataclasses.replace(job, status=status, ended_at=at))
        elif action == "output":
            for gw in self.gateways:
                gw.output(job_id, f"line {value} of job {job_id}\n" * (value + 1))
        elif action == "remove":
            for gw in self.gateways:
                gw.remove_shell(job_id, job_id)


async def settle(gateways: list[LegacyGateway]) -> None:
    """Let the debounced setQueue of every gateway go out (the debounce is 0 s here)."""
    async with asyncio.timeout(DEADLINE):
        while any(gw._queue_flush_pending for gw in gateways):
            await asyncio.sleep(0)


def check_shells(gw: LegacyGateway, before: list[tuple[int, bool]]) -> None:
    """The shells are in announce order, the ended-shell index matches them, and an announce
    dropped exactly the oldest ended shells beyond MAX_ENDED_SHELLS (the rule as it was: scan
    every shell in order at each announce)."""
    seqs = [shell.seq for shell in gw.shells.values()]
    assert seqs == sorted(seqs)
    assert gw._ended_shells == [(s.seq, i) for i, s in gw.shells.items() if s.job.status.is_terminal]
    assert all(s.ended == s.job.status.is_terminal for s in gw.shells.values())
    known = dict(before)
    new = [i for i in gw.shells if i not in known]
    if new:
        (job_id,) = new
        candidates = [*before, (job_id, gw.shells[job_id].job.status.is_terminal)]
        ended = [i for i, is_ended in candidates if is_ended]
        dropped = set(ended[: max(0, len(ended) - MAX_ENDED)])
        assert list(gw.shells) == [i for i, _ in candidates if i not in dropped]


ACTIONS = ("submit", "move", "cancel", "start", "run", "progress", "touch", "end", "output", "remove")
steps = st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(1, JOBS), st.integers(0, 9)), max_size=40)


async def late_and_early(before: list[tuple[str, int, int]], after: list[tuple[str, int, int]]) -> None:
    early, late = LegacyGateway(Config()), LegacyGateway(Config())
    world = World([early, late])
    watching, joining = FakeSession(), FakeSession()
    early._joined(watching)  # type: ignore[arg-type]
    for action, job_id, value in before:
        snapshot = [(i, s.job.status.is_terminal) for i, s in late.shells.items()]
        world.step(action, job_id, value)
        await settle([early, late])
        check_shells(late, snapshot)
    assert late._sent.keys() == early._sent.keys()
    assert not late._queue_flush_pending  # nobody connected: the queue was not read

    late._joined(joining)  # type: ignore[arg-type]
    # The GUI's mount-time requests (protocol §1.6) see what the early GUI would see.
    assert await late.methods.getRunningShells() == await early.methods.getRunningShells()
    assert await late.methods.getQueue() == await early.methods.getQueue()
    # From now on, both hear the same notifications.
    watching.frames.clear()
    for action, job_id, value in after:
        world.step(action, job_id, value)
        await settle([early, late])
    assert joining.notes() == watching.notes()
    assert await late.methods.getRunningShells() == await early.methods.getRunningShells()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=steps, after=steps)
@example(  # a job runs and prints unseen, another ends and one waits; then a GUI watches
    before=[("submit", 1, 0), ("start", 1, 0), ("run", 1, 0), ("progress", 1, 3), ("output", 1, 2),
            ("submit", 2, 0), ("submit", 3, 0), ("move", 3, 0), ("start", 2, 0), ("end", 2, 1)],
    after=[("progress", 1, 5), ("touch", 1, 1), ("output", 1, 1), ("end", 1, 0), ("start", 3, 0),
           ("run", 3, 0), ("output", 3, 4), ("remove", 1, 0), ("end", 3, 2)],
)
def test_a_gui_that_joins_late_sees_what_one_joined_early_sees(
    before: list[tuple[str, int, int]], after: list[tuple[str, int, int]]
) -> None:
    """Jobs queued, started, printed, ended and removed while no GUI was connected: a GUI that
    joins then gets the same shells and queue, and afterwards the same notifications, as a
    GUI connected all along; and no announce keeps more ended shells than the limit."""
    with (
        mock.patch.object(gateway_module, "QUEUE_DEBOUNCE_S", 0.0),
        mock.patch.object(gateway_module, "MAX_ENDED_SHELLS", MAX_ENDED),
        mock.patch("serv.job_manager.utcnow", lambda: T0 + timedelta(hours=1)),
    ):
        asyncio.run(late_and_early(before, after))


async def test_no_record_is_built_and_no_queue_read_while_no_gui_is_connected() -> None:
    """With nobody connected, a job's changes cost no record and the queue is not read; the
    output is still kept for the shells a GUI will ask for."""
    gw = LegacyGateway(Config())
    world = World([gw])
    with (
        mock.patch.object(LegacyGateway, "record", side_effect=AssertionError("record built")),
        mock.patch.object(LegacyGateway, "queue_records", side_effect=AssertionError("queue read")),
    ):
        for job_id in range(1, 51):
            for action in ("submit", "start", "run", "progress", "output", "end"):
                world.step(action, job_id, job_id % 10)
        assert not gw._queue_flush_pending
    assert len(gw.shells) == 50
    assert gw.shells[50].stdout == "line 0 of job 50\n"
    session = FakeSession()
    gw._joined(session)  # type: ignore[arg-type]
    assert gw._queue_sent == [] and session.frames == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=12), st.integers(1, 8))
def test_a_shell_keeps_the_newest_output(chunks: list[str], limit: int) -> None:
    """A shell's stdout is the newest SHELL_MAX_CHARS of what was appended, however cut."""
    with mock.patch.object(gateway_module, "SHELL_MAX_CHARS", limit):
        shell = Shell(Job(1, "fake", Family.LSDYNA, "/r/main.k", "/r", T0))
        for chunk in chunks:
            shell.append(chunk)
            assert shell.size <= limit + limit // 8 + len(chunk)
        assert shell.stdout == "".join(chunks)[-limit:] if chunks else shell.stdout == ""


def test_update_fields_are_the_records_own() -> None:
    """`update_fields` gives the UPDATE_FIELDS of `job_record`, so diffs need no record."""
    base = Job(7, "fake", Family.LSDYNA, "/r/main.k", "/r", T0)
    versions = [
        base,
        dataclasses.replace(base, status=S.STARTING, started_at=T0, allocated_cores=(2, 3)),
        dataclasses.replace(base, status=S.RUNNING, started_at=T0, allocated_cores=(2, 3), pid=42,
                            progress=33.3333, eta_s=12.6, sim_time=0.5, end_time=1.0, added_mass=1e-3,
                            pct_mass=0.1),
        dataclasses.replace(base, status=S.FINISHED, started_at=T0, ended_at=T0, allocated_cores=(2, 3)),
    ]
    for job in versions:
        record = job_record(job, None, None, T0)
        assert update_fields(job) == {key: record[key] for key in UPDATE_FIELDS}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
texts = st.text(max_size=30) | st.sampled_from(
    ['"', "\\", "\n\r\t", "\x00\x1f", "é", "\u2028", "😀", "\udfff", "𝄞x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=6), texts)
def test_encoded_parts_join_as_json_dumps_writes_them(values: list[Any], text: str) -> None:
    """A list of encoded values, and its escaped form, are byte for byte what `json.dumps`
    makes of the list and of its text; the frame around it is the codecs' own."""
    joined = json_list([JsonText.of(v) for v in values])
    assert joined.text == json.dumps(values)
    assert joined.escaped == json.dumps(json.dumps(values))[1:-1]
    assert message_frame_json(joined) == message_frame(json.dumps(values))
    assert message_frame_json(JsonText(text)) == message_frame(text)


@settings(max_examples=200, deadline=None)
@given(json_values, st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), texts))
def test_a_member_spliced_in_is_where_json_dumps_writes_it(value: Any, request_id: Any) -> None:
    """An answer with an encoded result is the text of the same answer with the value,
    whatever the request's id holds (the mark's own text included)."""
    for rid in (request_id, "\x00dynalauncher:encoded\x00", '"\\u0000dynalauncher:encoded\\u0000"'):
        answer = {"jsonrpc": "2.0", "result": None, "id": rid}
        spliced = with_member(answer, "result", JsonText.of(value))
        assert spliced.text == json.dumps({**answer, "result": value})
        assert spliced.escaped == json.dumps(spliced.text)[1:-1]


async def test_an_encoded_result_is_answered_as_the_same_value() -> None:
    """A method that returns kept JSON text is answered byte for byte as if it returned the
    value, alone and in a batch."""
    records = [{"id": i, "input": f"C:\\runs\\{i}\\main.k", "status": "Finished", "é": None} for i in range(3)]

    async def as_values() -> list[dict[str, Any]]:
        return records

    async def as_text() -> JsonText:
        return json_list([JsonText.of(r) for r in records])

    values, encoded = Dispatcher({"m": as_values}), Dispatcher({"m": as_text})
    for request in ('{"jsonrpc": "2.0", "id": 4, "method": "m"}',
                    '[{"jsonrpc": "2.0", "id": "a", "method": "m"}, {"jsonrpc": "2.0", "id": 5, "method": "m"}]'):
        want, got = await values(request), await encoded(request)
        assert want is not None and got is not None
        assert got.text == want.text and got.escaped == want.escaped
        assert message_frame_json(got) == message_frame(want.text)


@pytest.mark.parametrize("connected", [False, True])
async def test_only_the_newest_ended_shells_are_kept(connected: bool) -> None:
    """After 1,000 jobs ended, connected or not, the shells are the MAX_ENDED_SHELLS newest
    ended ones the last announce kept, plus the last job's, which ended after it."""
    gw = LegacyGateway(Config())
    world = World([gw])
    if connected:
        gw._joined(FakeSession())  # type: ignore[arg-type]
    with mock.patch.object(gateway_module, "QUEUE_DEBOUNCE_S", 0.0):
        for job_id in range(1, 1001):
            world.step("submit", job_id, 0)
            world.step("start", job_id, 0)
            world.step("end", job_id, 0)
        await settle([gw])
    kept = gateway_module.MAX_ENDED_SHELLS + 1
    assert list(gw.shells) == list(range(1001 - kept, 1001))
    assert [job_id for _seq, job_id in gw._ended_shells] == list(gw.shells)


def test_queue_records_are_made_again_only_for_what_changed() -> None:
    """The kept queue records equal fresh ones after jobs move, change, leave and arrive and
    a memo or a profile is replaced; an unchanged job's part is not made again."""
    profile = SolverProfile("fake", Family.LSDYNA, "/opt/lsdyna", ("lsdyna",))
    jobs = [Job(i, "fake", Family.LSDYNA, f"/runs/{i}/main.k", f"/runs/{i}", T0, ncpu=i, memory="20m")
            for i in range(1, 6)]
    memos: dict[int, dict[str, Any]] = {2: {"expr": "$SOLVER i=$INPUT", "sender": "me", "input": "D:\\2.k"}}
    profiles = {"fake": profile}
    kept = QueueRecords()

    def check() -> list[dict[str, Any]]:
        got = kept.records(jobs, lambda j: memos.get(j.id), lambda j: profiles.get(j.solver), T0)
        want = [queue_record(j, i, memos.get(j.id), profiles.get(j.solver), T0) for i, j in enumerate(jobs)]
        assert got == want and [list(r) for r in got] == [list(r) for r in want]
        return got

    first = check()
    with mock.patch("serv.legacy.records._queue_part", side_effect=AssertionError("made again")):
        assert kept.records(jobs, lambda j: memos.get(j.id), lambda j: profiles.get(j.solver), T0) == first
    jobs.reverse()
    jobs[0] = dataclasses.replace(jobs[0], ncpu=16)
    memos[2] = {**memos[2], "sender": "you"}
    check()
    del jobs[1]
    jobs.append(Job(9, "fake", Family.LSDYNA, "/runs/9/main.k", "/runs/9", T0))
    profiles["fake"] = dataclasses.replace(profile, executable="/opt/lsdyna-R14")
    check()
