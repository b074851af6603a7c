"""The `listJobs` fast path of serv.websocket_api.dispatch answers exactly what the
jsonrpcserver path answers, on a real daemon's store: same results for well-formed
requests (byte for byte when no live job is listed), same errors for odd ones."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonrpcserver import async_dispatch

from serv import websocket_api
from serv.client import Client
from serv.daemon import Daemon
from serv.server import validate_request
from serv.websocket_api import METHODS, Session, dispatch
from tests.conftest import DEADLINE, Env

ENDED = ("finished", "failed", "stopped", "cancelled")

WELL_FORMED = [
    {"jsonrpc": "2.0", "method": "listJobs", "id": 1},
    {"jsonrpc": "2.0", "method": "listJobs", "params": {}, "id": 2},
    {"jsonrpc": "2.0", "method": "listJobs", "params": [], "id": 3},
    {"jsonrpc": "2.0", "method": "listJobs", "params": {"limit": 2}, "id": 4},
    {"jsonrpc": "2.0", "method": "listJobs", "params": {"limit": 2.0}, "id": 5},
    {"jsonrpc": "2.0", "method": "listJobs", "params": [None, 3], "id": 6},
    {"jsonrpc": "2.0", "method": "listJobs", "params": ["finished"], "id": 7},
    {"jsonrpc": "2.0", "method": "listJobs", "params": {"status": "finished", "limit": 1}, "id": 8},
    {"jsonrpc": "2.0", "method": "listJobs", "params": {"status": "running"}, "id": 9},
    {"jsonrpc": "2.0", "method": "listJobs", "params": {"status": "queued"}, "id": 10},
    {"jsonrpc": "2.0", "method": "listJobs", "params": {"status": None}, "id": 11},
    {"jsonrpc": "2.0", "method": "listJobs", "params": {"limit": 10000}, "id": 12},
    {"jsonrpc": "2.0", "method": "listJobs", "id": "a string id"},
    {"jsonrpc": "2.0", "method": "listJobs", "id": "ü ☃ \"quoted\""},
    {"jsonrpc": "2.0", "method": "listJobs", "id": None},
    {"jsonrpc": "2.0", "method": "listJobs", "id": 0},
    {"jsonrpc": "2.0", "method": "listJobs", "id": -7},
    {"jsonrpc": "2.0", "method": "listJobs", "id": 2**70},
    {"jsonrpc": "2.0", "method": "listJobs"},  # a notification
    {"jsonrpc": "2.0", "method": "listJobs", "params": {"limit": 5}},  # a notification
]

#: Bad params, and what the -32602 message must name.
BAD_PARAMS = [
    ({"limit": 0}, "'limit'"),
    ({"limit": 10001}, "'limit'"),
    ({"limit": "5"}, "'limit'"),
    ({"limit": True}, "'limit'"),
    ({"limit": 2.5}, "'limit'"),
    ({"status": "bogus"}, "'status'"),
    ({"status": 3}, "'status'"),
    ({"colour": "red"}, "colour"),
    ([None, 1, 2], "listJobs"),
]
ODD = [
    {"jsonrpc": "2.0", "method": "listJobs", "params": None, "id": 10},
    {"jsonrpc": "2.0", "method": "listJobs", "params": "x", "id": 11},
    {"jsonrpc": "2.0", "method": "listJobs", "id": True},
    {"jsonrpc": "2.0", "method": "listJobs", "id": 1.5},
    {"jsonrpc": "2.0", "method": "listJobs", "id": [1]},
    {"jsonrpc": "2.0", "method": "listJobs", "id": {"a": 1}},
    {"jsonrpc": "1.0", "method": "listJobs", "id": 12},
    {"method": "listJobs", "id": 13},
    {"jsonrpc": "2.0", "method": "listJobs", "id": 14, "extra": 1},
    {"jsonrpc": "2.0", "method": "listJobs", "params": {"limit": 0}},  # a bad notification
    [{"jsonrpc": "2.0", "method": "listJobs", "id": 15}],  # a batch
    [{"jsonrpc": "2.0", "method": "listJobs", "id": 16}, {"jsonrpc": "2.0", "method": "listJobs"}],
    {"jsonrpc": "2.0", "method": "getJob", "params": {"id": 1}, "id": 17},
]
RAW_ODD = ['{"jsonrpc": "2.0", "method": "listJobs", "id": 1', '"listJobs"', "listJobs", "[]", ""]


async def normal(message: str, session: Session) -> str:
    return await async_dispatch(message, methods=METHODS, context=session, validator=validate_request)


#: Fields of a live job that cannot move between two calls (progress, sim_time, eta_s and
#: elapsed_s do, as the solver runs).
STEADY = ("id", "status", "name", "solver", "family", "input", "workdir", "ncpu", "pid", "allocated_cores",
          "submitted_at", "started_at", "priority", "after")


def comparable(text: str) -> Any:
    """The parsed answer, with live jobs reduced to their STEADY fields."""
    answer = json.loads(text)
    for item in answer if isinstance(answer, list) else [answer]:
        result = item.get("result")
        if isinstance(result, list):
            item["result"] = [
                job if job["status"] in ENDED else {k: job[k] for k in STEADY} for job in result
            ]
    return answer


@pytest.fixture
async def session(env: Env, daemon: Daemon, client: Client) -> Session:
    """A session on a daemon with three ended jobs (finished, finished, stopped), one
    running and one queued."""
    assert daemon.server is not None
    decks = [env.deck(wall_s=0.2), env.deck(wall_s=0.2), env.deck(wall_s=60)]
    ended = [await client.call("launch", solver="fake-smp", input=str(d)) for d in decks[:2]]
    for job in ended:
        await client.wait_for(job["id"], *ENDED, timeout=DEADLINE)
    stopped = await client.call("launch", solver="fake-smp", input=str(decks[2]))
    await client.call("stop", id=stopped["id"], force=True)
    await client.wait_for(stopped["id"], *ENDED, timeout=DEADLINE)
    running = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=60)))
    await client.wait_for(running["id"], "running", timeout=DEADLINE)
    queued = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=60)), after=[running["id"]])
    assert queued["status"] == "queued"
    return Session(api=daemon.server.api, send=lambda text: None)


class TestFastPath:
    @pytest.mark.parametrize("request_", WELL_FORMED, ids=lambda r: json.dumps(r)[:80])
    async def test_well_formed_listing_is_answered_by_the_fast_path_as_by_jsonrpcserver(
        self, session: Session, request_: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Same parsed answer as the normal path (byte for byte with no live job listed);
        jsonrpcserver is not called."""
        message = json.dumps(request_)
        expected = await normal(message, session)
        calls: list[str] = []

        async def spy(*args: Any, **kwargs: Any) -> str:
            calls.append(args[0])
            return await async_dispatch(*args, **kwargs)

        monkeypatch.setattr(websocket_api, "async_dispatch", spy)
        answer = await dispatch(message, session, validate_request)
        assert calls == []
        if "id" not in request_:
            assert answer == expected == ""
            return
        assert comparable(answer) == comparable(expected)
        if all(job["status"] in ENDED for job in json.loads(answer)["result"]):
            assert answer == expected

    async def test_the_listing_covers_every_status_and_is_newest_first(self, session: Session) -> None:
        """The fixture's jobs are all there, newest first, the live ones with their status."""
        answer = json.loads(await dispatch(json.dumps(WELL_FORMED[0]), session, validate_request))
        listed = answer["result"]
        assert [j["status"] for j in listed][:2] == ["queued", "running"]
        assert [j["status"] for j in listed[2:]] == ["stopped", "finished", "finished"]
        assert [j["id"] for j in listed] == sorted((j["id"] for j in listed), reverse=True)

    @pytest.mark.parametrize("request_", ODD, ids=lambda r: json.dumps(r)[:80])
    async def test_odd_requests_get_the_normal_paths_answer(
        self, session: Session, request_: Any
    ) -> None:
        """Bad params, ids, keys, batches: answered by jsonrpcserver, errors unchanged."""
        message = json.dumps(request_)
        answer = await dispatch(message, session, validate_request)
        expected = await normal(message, session)
        assert (comparable(answer) if answer else answer) == (comparable(expected) if expected else expected)

    @pytest.mark.parametrize(("params", "needle"), BAD_PARAMS, ids=lambda p: json.dumps(p))
    async def test_bad_params_get_invalid_params_naming_them(
        self, session: Session, params: Any, needle: str
    ) -> None:
        """-32602 with a message naming the param, as from the normal path."""
        message = json.dumps({"jsonrpc": "2.0", "method": "listJobs", "params": params, "id": 1})
        answer = await dispatch(message, session, validate_request)
        assert json.loads(answer) == json.loads(await normal(message, session))
        error = json.loads(answer)["error"]
        assert error["code"] == -32602 and needle in error["message"], error

    @pytest.mark.parametrize("message", RAW_ODD)
    async def test_text_that_is_not_a_request_gets_the_normal_paths_answer(
        self, session: Session, message: str
    ) -> None:
        """Broken JSON that merely mentions listJobs is a parse error as before."""
        assert await dispatch(message, session, validate_request) == await normal(message, session)
