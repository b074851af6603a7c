"""contract.md § Transport, § Methods, § Errors over a real WebSocket: every error code with
bad input (and nothing changed by it), batches, malformed frames, HTTP routes, auth."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from serv.client import Client
from serv.daemon import Daemon
from tests.conftest import DEADLINE, Env

ENDED = ("finished", "failed", "stopped", "cancelled")


async def error_of(client: Client, method: str, params: Any) -> dict[str, Any]:
    response = await client.request(method, params)
    assert "error" in response, response
    return response["error"]


class TestErrors:
    """contract.md § Errors: each code, with a message that names the bad param and value."""

    @pytest.mark.parametrize(
        ("params", "code", "needle"),
        [
            ({"solver": "nope", "input": "/x"}, 1003, "'nope'"),
            ({"solver": "missing", "input": "/x"}, 1003, "no-such-solver"),
            ({"solver": "fake-smp", "input": "relative/main.k"}, 1004, "absolute"),
            ({"solver": "fake-smp", "input": "/nonexistent/main.k"}, 1004, "/nonexistent/main.k"),
            ({"solver": "fake-smp", "input": "DECK", "ncpu": 64}, 1005, "64"),
            ({"solver": "fake-smp", "input": "DECK", "backend": "slurm"}, 1006, "slurm"),
            ({"solver": "fake-smp", "input": "DECK", "ncpu": "2"}, -32602, "'ncpu'"),
            ({"solver": "fake-smp", "input": "DECK", "ncpu": 0}, -32602, "'ncpu'"),
            ({"solver": "fake-smp", "input": "DECK", "ncpu": True}, -32602, "'ncpu'"),
            ({"solver": "fake-smp", "input": "DECK", "args": ["i=other.k"]}, -32602, "args"),
            ({"solver": "fake-smp", "input": "DECK", "args": ["o=x; rm -rf /"]}, -32602, "args"),
            ({"solver": "fake-smp", "input": "DECK", "memory": "lots"}, -32602, "'memory'"),
            ({"solver": "fake-smp", "input": "DECK", "restart": "../etc"}, -32602, "'restart'"),
            ({"solver": "fake-smp", "input": "DECK", "restart": "d3dump07"}, 1004, "d3dump07"),
            ({"solver": "fake-smp", "input": "DECK", "licenses": {"lsdyna": 1}}, 1005, "lsdyna"),
            ({"solver": "fake-smp", "input": "DECK", "after": [4242]}, 1001, "4242"),
            ({"solver": "fake-smp", "input": "DECK", "colour": "red"}, -32602, "colour"),
            ({"input": "DECK"}, -32602, "solver"),
        ],
    )
    async def test_launch_with_bad_input_is_refused_and_creates_nothing(
        self, env: Env, client: Client, params: dict[str, Any], code: int, needle: str
    ) -> None:
        """A bad launch gets its code and a message naming what was wrong; no job appears."""
        deck = env.deck()
        params = {k: (str(deck) if v == "DECK" else v) for k, v in params.items()}
        error = await error_of(client, "launch", params)
        assert error["code"] == code, error
        assert needle in error["message"], error
        assert await client.call("listJobs") == []

    async def test_second_live_job_in_one_workdir_is_1002(self, env: Env, client: Client) -> None:
        """One live job per workdir: the second launch there is refused with 1002."""
        deck = env.deck(wall_s=60)
        first = await client.call("launch", solver="fake-smp", input=str(deck))
        error = await error_of(client, "launch", {"solver": "fake-smp", "input": str(deck)})
        assert error["code"] == 1002 and str(deck.parent) in error["message"] and str(first["id"]) in error["message"]
        await client.call("stop", id=first["id"], force=True)
        await client.wait_for(first["id"], *ENDED)
        # Once it has ended, the folder takes a new job.
        second = await client.call("launch", solver="fake-smp", input=str(deck))
        assert second["id"] != first["id"]
        await client.call("stop", id=second["id"], force=True)
        await client.wait_for(second["id"], *ENDED)

    async def test_input_outside_allowed_roots_is_1004(self, env: Env) -> None:
        """With jobs.allowed_roots set, an input elsewhere is refused with 1004."""
        (env.tmp / "allowed").mkdir()
        env.extra_config = ""
        text = env.config_path.read_text().replace("[jobs]\n", f'[jobs]\nallowed_roots = ["{env.tmp / "allowed"}"]\n')
        env.config_path.write_text(text)
        from serv.config import load_config

        config = load_config(env.tmp / "dynalauncher.toml")
        async with Daemon(config) as daemon, Client(daemon.url) as client:
            error = await error_of(client, "launch", {"solver": "fake-smp", "input": str(env.deck())})
            assert error["code"] == 1004 and "allowed roots" in error["message"]

    @pytest.mark.parametrize(
        ("method", "params", "code", "needle"),
        [
            ("getJob", {"id": 77}, 1001, "77"),
            ("getJob", {"id": "seven"}, -32602, "'id'"),
            ("getJob", {}, -32602, "id"),
            ("getJobOutput", {"id": 77}, 1001, "77"),
            ("getJobOutput", {"id": 1, "offset": -1}, -32602, "'offset'"),
            ("listJobs", {"status": "sleeping"}, -32602, "sleeping"),
            ("listJobs", {"limit": 0}, -32602, "'limit'"),
            ("stop", {"id": 1, "force": "yes"}, -32602, "'force'"),
            ("subscribe", {"topics": ["weather"]}, -32602, "weather"),
            ("killOrphanDynaProcesses", {"working_dir": "relative"}, -32602, "working_dir"),
            ("noSuchMethod", None, -32601, "Method not found"),
        ],
    )
    async def test_bad_calls_get_their_error_code(
        self, client: Client, method: str, params: Any, code: int, needle: str
    ) -> None:
        """Unknown ids, wrong types and unknown methods are answered with the right code."""
        error = await error_of(client, method, params)
        assert error["code"] == code
        assert needle in error["message"] + json.dumps(error.get("data"))

    async def test_positional_params_work(self, env: Env, client: Client) -> None:
        """Params by position follow the contract's order."""
        job = await client.call("launch", "fake-smp", str(env.deck(wall_s=0.3)), 1)
        assert job["solver"] == "fake-smp" and job["ncpu"] == 1
        await client.wait_for(job["id"], *ENDED)


class TestFrames:
    """A malformed frame gets a JSON-RPC error and the connection stays usable."""

    @pytest.mark.parametrize(
        ("frame", "code"),
        [
            ("not json", -32700),
            ('{"jsonrpc": "2.0", "method": 5, "id": 1}', -32600),
            ('{"jsonrpc": "1.0", "method": "getJob", "id": 1}', -32600),
            ('{"jsonrpc": "2.0", "method": "getJob", "id": 1, "extra": 1}', -32600),
            ("[]", -32600),
            (b"\xff\xfe\x00binary", -32700),
        ],
    )
    async def test_malformed_frame_gets_an_error_and_connection_survives(
        self, daemon: Daemon, frame: str | bytes, code: int
    ) -> None:
        async with connect(daemon.url) as ws:
            await ws.send(frame)
            reply = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))
            assert reply["error"]["code"] == code and reply["id"] is None
            assert "Traceback" not in json.dumps(reply)
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "getSystemHealth", "id": 2}))
            assert json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))["id"] == 2

    async def test_compression_offered_by_a_client_is_declined(self, daemon: Daemon) -> None:
        """No permessage-deflate: it cost more CPU than it saved on loopback and LAN links."""
        async with connect(daemon.url) as ws:  # the websockets client offers deflate by default
            assert ws.request is not None and "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
            assert ws.response is not None and "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "getSystemHealth", "id": 1}))
            assert json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))["result"]["status"]

    async def test_batch_answers_every_request_and_skips_notifications(self, daemon: Daemon) -> None:
        """A batch returns one response per request (by id), none for notifications."""
        batch = [
            {"jsonrpc": "2.0", "method": "getSystemHealth", "id": 1},
            {"jsonrpc": "2.0", "method": "getJob", "params": {"id": 5}, "id": 2},
            {"jsonrpc": "2.0", "method": "getCoreAllocationStatus"},
            {"jsonrpc": "2.0", "method": "nope", "id": "three"},
        ]
        async with connect(daemon.url) as ws:
            await ws.send(json.dumps(batch))
            replies = {r["id"]: r for r in json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))}
        assert set(replies) == {1, 2, "three"}
        assert replies[1]["result"]["status"] == "ok"
        assert replies[2]["error"]["code"] == 1001
        assert replies["three"]["error"]["code"] == -32601


class TestPipelining:
    """A script sends its launches without waiting for the answers (JSON-RPC allows it)."""

    async def test_pipelined_launches_get_ids_in_the_order_they_were_sent(self, env: Env, daemon: Daemon) -> None:
        """Launches are handled at once, yet jobs are created in arrival order: ids and the
        queue order of equal priorities follow the script's order, and a bad launch among
        them is refused alone."""
        frames = []
        for i in range(24):
            deck = env.sleeper_input(0.05, name=f"case{i}")
            params: dict[str, Any] = {"solver": "sleeper", "input": str(deck)}
            if i == 7:
                params["ncpu"] = 64  # refused (1005); the others are not held up by it
            frames.append(json.dumps({"jsonrpc": "2.0", "method": "launch", "params": params, "id": i}))
        frames.append(json.dumps({"jsonrpc": "2.0", "method": "listJobs", "params": {"limit": 50}, "id": "list"}))
        async with connect(daemon.url) as ws:
            for frame in frames:
                await ws.send(frame)
            replies = {}
            while len(replies) < len(frames):
                reply = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))
                replies[reply["id"]] = reply
        assert replies[7]["error"]["code"] == 1005
        ids = [replies[i]["result"]["id"] for i in range(24) if i != 7]
        assert ids == sorted(ids) and len(set(ids)) == 23
        # A request after the launches sees every one of them, as if handled one by one.
        listed = {job["id"] for job in replies["list"]["result"]}
        assert set(ids) <= listed

    async def test_launches_of_a_client_that_hangs_up_at_once_are_all_created(
        self, env: Env, daemon: Daemon
    ) -> None:
        """A script that sends its launches and exits without reading an answer loses none:
        every launch that reached the daemon becomes a job, in the order sent."""
        decks = [env.sleeper_input(0.05, name=f"gone{i}") for i in range(10)]
        wanted = {str(d) for d in decks}
        async with Client(daemon.url) as watcher:
            await watcher.subscribe()
            async with connect(daemon.url) as ws:
                for i, deck in enumerate(decks):
                    params = {"solver": "sleeper", "input": str(deck)}
                    await ws.send(json.dumps({"jsonrpc": "2.0", "method": "launch", "params": params, "id": i}))
            created: dict[str, int] = {}
            while len(created) < len(decks):
                job = (await watcher.next_notification("jobChanged", timeout=DEADLINE))["job"]
                if job["input"] in wanted:
                    created.setdefault(job["input"], job["id"])
        ids = [created[str(d)] for d in decks]
        assert ids == sorted(ids)

    async def test_a_launch_stuck_on_its_disk_check_holds_up_its_own_client_only(
        self, env: Env, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A hung network drive cannot exist here, so one input's disk check is made to
        block (the only stand-in in this file): that client's next launch waits for it, to
        keep its order; another client's launch does not."""
        import threading

        manager = daemon.manager
        assert manager is not None
        release = threading.Event()
        slow_deck, next_deck, other_deck = (env.sleeper_input(0.05, name=n) for n in ("slow", "next", "other"))
        check = manager._prepare_sync

        def blocking_check(profile: Any, raw_input: str, restart: Any) -> Any:
            if raw_input == str(slow_deck):
                assert release.wait(DEADLINE), "the test never released the slow disk check"
            return check(profile, raw_input, restart)

        monkeypatch.setattr(manager, "_prepare_sync", blocking_check)

        def launch(deck: Any, request_id: int) -> str:
            params = {"solver": "sleeper", "input": str(deck)}
            return json.dumps({"jsonrpc": "2.0", "method": "launch", "params": params, "id": request_id})

        async with connect(daemon.url) as first, connect(daemon.url) as second:
            await first.send(launch(slow_deck, 1))
            await first.send(launch(next_deck, 2))
            first_reply = asyncio.ensure_future(first.recv())
            await second.send(launch(other_deck, 3))
            other = json.loads(await asyncio.wait_for(second.recv(), DEADLINE))
            assert other["id"] == 3 and other["result"]["status"] == "queued"
            # Meanwhile the first client got nothing, and its second launch made no job.
            assert not first_reply.done()
            assert all(job.input != str(next_deck) for job in manager.jobs.values())
            release.set()
            replies = [json.loads(await asyncio.wait_for(first_reply, DEADLINE))]
            replies.append(json.loads(await asyncio.wait_for(first.recv(), DEADLINE)))
        answers = {reply["id"]: reply["result"]["id"] for reply in replies}
        assert other["result"]["id"] < answers[1] < answers[2]

    async def test_a_request_after_a_launch_sees_the_job(self, env: Env, daemon: Daemon) -> None:
        """getJob sent right behind the launch, before its answer, finds the new job."""
        deck = env.sleeper_input(0.05, name="behind")
        launch = {"jsonrpc": "2.0", "method": "launch", "params": {"solver": "sleeper", "input": str(deck)}, "id": 1}
        async with connect(daemon.url) as ws:
            await ws.send(json.dumps(launch))
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "listJobs", "params": {"limit": 1}, "id": 2}))
            first = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))
            second = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))
        assert (first["id"], second["id"]) == (1, 2)
        assert second["result"][0]["id"] == first["result"]["id"]


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


class TestHttpAndAuth:
    """contract.md § Transport: GET /health, GET /, tokens, origins."""

    async def test_health_over_http_matches_the_contract(self, daemon: Daemon) -> None:
        base = daemon.url.replace("ws://", "http://")
        status, kind, body = await asyncio.to_thread(http_get, base + "health")
        health = json.loads(body)
        assert status == 200 and kind == "application/json"
        for key in ("status", "version", "uptime_s", "running_jobs", "queued_jobs", "watchdog_active",
                    "watchdog_last_tick_age_s", "orphan_processes", "db_ok"):
            assert key in health
        assert health["db_ok"] is True and health["watchdog_active"] is True
        status, kind, body = await asyncio.to_thread(http_get, base)
        assert status == 200 and kind.startswith("text/html")
        status, _, _ = await asyncio.to_thread(http_get, base + "nowhere")
        assert status == 404

    async def test_token_is_required_when_configured(self, env: Env) -> None:
        """Without the token the handshake gets HTTP 401; with it (header or query) it works."""
        env.server_config = 'token = "s3cret"'
        async with Daemon(env.config()) as daemon:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(daemon.url):
                    pass
            assert refused.value.response.status_code == 401
            with pytest.raises(InvalidStatus):
                async with connect(daemon.url, additional_headers={"Authorization": "Bearer wrong"}):
                    pass
            async with Client(daemon.url, token="s3cret") as client:
                assert (await client.call("getSystemHealth"))["db_ok"]
            async with connect(daemon.url + "?token=s3cret") as ws:
                await ws.send(json.dumps({"jsonrpc": "2.0", "method": "getSystemHealth", "id": 1}))
                assert "result" in json.loads(await ws.recv())
            base = daemon.url.replace("ws://", "http://")
            status, _, _ = await asyncio.to_thread(http_get, base + "health")
            assert status == 401

    async def test_foreign_browser_origin_is_refused(self, daemon: Daemon) -> None:
        """A browser page from another origin gets HTTP 403; the daemon's own origin works."""
        with pytest.raises(InvalidStatus) as refused:
            async with connect(daemon.url, origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        own = daemon.url.replace("ws://", "http://").rstrip("/")
        async with connect(daemon.url, origin=own):  # type: ignore[arg-type]
            pass


class TestQueriesAndNotifications:
    async def test_list_jobs_newest_first_with_status_filter(self, env: Env, client: Client) -> None:
        jobs = [await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=0.2))) for _ in range(3)]
        for job in jobs:
            await client.wait_for(job["id"], *ENDED)
        listed = await client.call("listJobs")
        assert [j["id"] for j in listed] == [j["id"] for j in reversed(jobs)]
        assert [j["id"] for j in await client.call("listJobs", status="finished", limit=2)] == [jobs[2]["id"], jobs[1]["id"]]
        assert await client.call("listJobs", status="running") == []

    async def test_job_output_pages_through_the_whole_stdout(self, env: Env, client: Client) -> None:
        deck = env.deck(wall_s=0.3)
        job = await client.call("launch", solver="fake-smp", input=str(deck))
        await client.wait_for(job["id"], *ENDED)
        whole = (deck.parent / "stdout").read_text()
        pieces, offset, eof = [], 0, False
        while not eof:
            page = await client.call("getJobOutput", id=job["id"], offset=offset, limit=1000)
            pieces.append(page["data"])
            offset, eof = page["next_offset"], page["eof"]
        assert "".join(pieces) == whole

    async def test_job_changed_carries_every_status_in_order(self, env: Env, client: Client) -> None:
        """jobChanged is sent for each transition, committed first: queued → starting → running → finished."""
        job = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=0.3)))
        seen = []
        while not seen or seen[-1] not in ENDED:
            note = await client.next_notification("jobChanged", DEADLINE)
            if note["job"]["id"] == job["id"] and (not seen or seen[-1] != note["job"]["status"]):
                seen.append(note["job"]["status"])
        assert seen == ["queued", "starting", "running", "finished"]

    async def test_cores_topic_reports_allocation_changes(self, env: Env, client: Client) -> None:
        job = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=0.2)), ncpu=2)
        note = await client.next_notification("coresChanged", DEADLINE)
        assert any(c["job_id"] == job["id"] for c in note["status"]["cores"])
        await client.wait_for(job["id"], *ENDED)

    async def test_unsubscribed_client_gets_no_notifications(self, env: Env, daemon: Daemon) -> None:
        async with Client(daemon.url) as quiet, Client(daemon.url) as loud:
            await loud.subscribe()
            job = await quiet.call("launch", solver="fake-smp", input=str(env.deck(wall_s=0.2)))
            await loud.wait_for(job["id"], *ENDED)
            with pytest.raises(TimeoutError):
                await quiet.next_notification("jobChanged", 0.2)


class TestDiscover:
    async def test_rpc_discover_lists_every_method_with_its_params(self, client: Client) -> None:
        """rpc.discover is an OpenRPC document naming every contract method and its params in order."""
        doc = await client.call("rpc.discover")
        assert doc["openrpc"].startswith("1.")
        by_name = {m["name"]: m for m in doc["methods"]}
        for name in ("launch", "stop", "pause", "resume", "senseSwitch", "setPriority", "moveJob", "getJob",
                     "listJobs", "getJobOutput", "subscribe", "killOrphanDynaProcesses",
                     "getCoreAllocationStatus", "getSystemHealth", "rpc.discover"):
            assert name in by_name, name
        launch = [p["name"] for p in by_name["launch"]["params"]]
        assert launch == ["solver", "input", "ncpu", "memory", "args", "name", "priority", "nice",
                          "restart", "backend", "licenses", "after"]
        assert [p["required"] for p in by_name["launch"]["params"]][:3] == [True, True, False]


class TestNotAuthorised:
    async def test_unscoped_orphan_cleanup_from_another_machine_is_1007(self, daemon: Daemon) -> None:
        """A remote client may clean up orphans only within a working_dir it names (1007 otherwise)."""
        from serv.websocket_api import Session, methods

        assert daemon.manager is not None
        api = daemon.server.api if daemon.server is not None else None
        assert api is not None
        remote = Session(api=api, send=lambda text: None, peer="('10.1.2.3', 5000)", peer_host="10.1.2.3")
        result = await methods()["killOrphanDynaProcesses"](remote)
        assert result._error.code == 1007 and "working_dir" in result._error.message  # type: ignore[attr-defined]
        local = Session(api=api, send=lambda text: None, peer="('127.0.0.1', 5000)", peer_host="127.0.0.1")
        assert local.is_local() and not remote.is_local()


class TestListingRace:
    async def test_a_job_ending_during_a_listing_is_still_listed(self, env: Env, daemon: Daemon) -> None:
        """listJobs reads rows in the store thread; a job that ends meanwhile is not dropped."""
        assert daemon.manager is not None and daemon.store is not None
        manager, store = daemon.manager, daemon.store
        async with Client(daemon.url) as client:
            await client.subscribe()
            job = await client.call("launch", solver="fake-smp", input=str(env.deck(wall_s=60)))
            await client.wait_for(job["id"], "running")
            real_get_many = store.get_many

            async def slow_get_many(ids):  # type: ignore[no-untyped-def]
                # The job ends while the listing waits for the store (as under load).
                await client.call("stop", id=job["id"], force=True)
                await client.wait_for(job["id"], "stopped")
                return await real_get_many(ids)

            store.get_many = slow_get_many  # type: ignore[method-assign]
            try:
                listed = await manager.list_wire(None, 100)
            finally:
                store.get_many = real_get_many  # type: ignore[method-assign]
            assert [j["id"] for j in listed] == [job["id"]]
