"""A single request is dispatched through jsonrpcserver's own steps without its gather
(serv.websocket_api._dispatch_single): every answer is the library path's, value for value
(the text is written by serv.jsonwire, without json.dumps' spaces)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonrpcserver import async_dispatch

from serv.daemon import Daemon
from serv.server import validate_request
from serv.websocket_api import METHODS, Session, _dispatch_single
from tests.conftest import Env

MESSAGES: list[Any] = [
    {"jsonrpc": "2.0", "method": "getJob", "params": {"id": 123456}, "id": 1},  # 1001
    {"jsonrpc": "2.0", "method": "getJob", "params": {"id": "x"}, "id": 2},  # bad param
    {"jsonrpc": "2.0", "method": "getJob", "params": {}, "id": 3},  # missing param
    {"jsonrpc": "2.0", "method": "getJob", "params": {"id": 1, "colour": 2}, "id": 4},  # unknown param
    {"jsonrpc": "2.0", "method": "getJob", "params": [123456], "id": "by position"},
    {"jsonrpc": "2.0", "method": "noSuchMethod", "id": 5},
    {"jsonrpc": "2.0", "method": "noSuchMethod"},  # a notification: no answer at all
    {"jsonrpc": "2.0", "method": "getJob", "params": {"id": 123456}},  # a failing notification
    {"jsonrpc": "2.0", "method": "launch", "params": {"solver": "sleeper", "input": "relative/path"}, "id": 6},
    {"jsonrpc": "2.0", "method": "launch", "params": {"solver": "nope", "input": "/x"}, "id": 7},
    {"jsonrpc": "2.0", "method": "subscribe", "params": {"topics": ["bogus"]}, "id": 8},
    {"jsonrpc": "2.0", "method": "setPriority", "params": {"id": 123456, "priority": 1}, "id": 9},
    {"jsonrpc": "2.0", "method": "getCoreAllocationStatus", "id": 10},
    {"jsonrpc": "2.0", "method": "getCoreAllocationStatus", "id": 2**70},  # beyond orjson's ints
    {"jsonrpc": "2.0", "method": "getJob", "params": {"id": 123456, "id_": 1}, "id": 16},  # a near miss
    {"jsonrpc": "1.0", "method": "getJob", "id": 11},  # invalid request
    {"method": "getJob", "id": 12},
    {"jsonrpc": "2.0", "method": "getJob", "id": True},
    {"jsonrpc": "2.0", "method": "getJob", "params": "x", "id": 13},
    {"jsonrpc": "2.0", "id": 14},
    [{"jsonrpc": "2.0", "method": "getJob", "params": {"id": 1}, "id": 15}],  # a batch: library path
]
RAW = ['{"jsonrpc": "2.0", "method": "getJob"', "[]", "5", '"text"', ""]


@pytest.fixture
async def session(env: Env, daemon: Daemon) -> Session:
    assert daemon.server is not None
    return Session(api=daemon.server.api, send=lambda text: None)


async def library(message: str, session: Session) -> str:
    return await async_dispatch(message, methods=METHODS, context=session, validator=validate_request)


@pytest.mark.parametrize("message", [json.dumps(m) for m in MESSAGES] + RAW, ids=lambda m: m[:70])
async def test_the_answer_is_the_librarys_value_for_value(session: Session, message: str) -> None:
    ours, theirs = await _dispatch_single(message, session, validate_request), await library(message, session)
    assert (ours == "") == (theirs == "")
    if ours:
        assert json.loads(ours) == json.loads(theirs)


async def test_a_method_that_fails_unexpectedly_gets_the_same_internal_error(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception escaping a method: the same answer both ways (no traceback in it)."""
    from serv import websocket_api

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setitem(websocket_api.METHODS, "getCoreAllocationStatus", broken)
    message = json.dumps({"jsonrpc": "2.0", "method": "getCoreAllocationStatus", "id": 1})
    ours = await _dispatch_single(message, session, validate_request)
    assert json.loads(ours) == json.loads(await library(message, session))
    assert "Traceback" not in ours and json.loads(ours)["error"]["code"] < 0
