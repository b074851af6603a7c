"""The JSON-RPC methods of contract.md § Methods, one small async function each.

Methods check the types of their params and name the bad one; they talk only to the
JobManager. `rpc()` is the one place errors become JSON-RPC error responses: a
DynalauncherError keeps its code and message, anything else is logged with its traceback
and answered with a fixed -32603 text (internal details never reach a client).
Params are bound here rather than by jsonrpcserver so that a missing or unknown param gets
a message naming it and the accepted ones.

`dispatch` is the entry point for one incoming text. A well-formed single `listJobs`
request takes a fast path that answers with text joined from the listing's cached JSON
(no re-encoding of ended jobs, no jsonrpcserver); anything else, or anything odd about
such a request, goes through jsonrpcserver and gets the usual answers and errors.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from jsonrpcserver import Error, Success, async_dispatch
from jsonrpcserver.async_dispatcher import dispatch_request
from jsonrpcserver.dispatcher import create_request, to_response, validate_request
from jsonrpcserver.response import ServerErrorResponse, to_serializable
from jsonrpcserver.result import Result
from jsonrpcserver.sentinels import NOID
from oslash.either import Left

from serv import __version__, jsonwire
from serv.api import TOPICS
from serv.core.states import JobStatus
from serv.errors import BadParam, DynalauncherError, NotAuthorised
from serv.job_manager import JobManager
from serv.profiles import describe, resolve_profile

log = logging.getLogger(__name__)

INTERNAL = "internal error; details are in the daemon log"
Method = Callable[..., Awaitable[Any]]
METHODS: dict[str, Method] = {}


@dataclass(eq=False)
class Session:
    """One client connection: what it subscribed to and where its messages go."""

    api: Api
    send: Callable[[str], None]
    topics: set[str] = field(default_factory=set)
    peer: str = "?"
    peer_host: str | None = None

    def is_local(self) -> bool:
        """Whether the client connected from this machine (a loopback address)."""
        if self.peer_host is None:
            return False
        try:
            return ipaddress.ip_address(self.peer_host).is_loopback
        except ValueError:
            return self.peer_host == "localhost"


#: OpenRPC descriptions of the registered methods, built from their signatures (rpc.discover).
DESCRIPTIONS: dict[str, dict[str, Any]] = {}


def describe_method(name: str, fn: Method, params: list[inspect.Parameter]) -> dict[str, Any]:
    """An OpenRPC method object: params in contract order, required ones marked."""
    doc = inspect.getdoc(fn) or ""
    return {
        "name": name,
        "summary": doc.split("\n", 1)[0],
        "paramStructure": "either",
        "params": [
            {
                "name": p.name,
                "required": p.default is inspect.Parameter.empty,
                "schema": {} if p.default is inspect.Parameter.empty else {"default": p.default},
            }
            for p in params
        ],
        "result": {"name": "result", "schema": {}},
    }


def rpc(name: str) -> Callable[[Method], Method]:
    """Register `fn(api, session, **params)` as JSON-RPC method `name`."""

    def register(fn: Method) -> Method:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())[2:]
        accepted = ", ".join(p.name for p in params) or "none"
        DESCRIPTIONS[name] = describe_method(name, fn, params)
        # Params by name that are all known and include every required one can be passed
        # as they are: Signature.bind costs ~7 µs for `launch`'s twelve params, on
        # every call. Anything else is bound, which names what is wrong.
        by_name = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
        known = frozenset(p.name for p in params)
        required = frozenset(p.name for p in params if p.default is inspect.Parameter.empty)

        async def call(session: Session, *args: Any, **kwargs: Any) -> Result:
            try:
                if by_name and not args and known.issuperset(kwargs) and required.issubset(kwargs):
                    return Success(await fn(session.api, session, **kwargs))
                try:
                    bound = signature.bind(session.api, session, *args, **kwargs)
                except TypeError as exc:
                    raise BadParam(f"{name}: {exc}; accepted params: {accepted}") from exc
                return Success(await fn(*bound.args, **bound.kwargs))
            except DynalauncherError as exc:
                return Error(exc.code, str(exc))
            except Exception:  # the RPC edge: log everything, leak nothing
                log.exception("method %s failed", name)
                return Error(-32603, INTERNAL)

        call.__name__ = name
        # jsonrpcserver checks every request's params against inspect.signature(call), which
        # builds a new Signature each time (~7 µs) unless the function carries one (~1 µs).
        call.__signature__ = inspect.signature(call)  # type: ignore[attr-defined]
        METHODS[name] = call
        return fn

    return register


# ------------------------------------------------------------------- param checks


def as_int(name: str, value: Any, *, lo: int | None = None, hi: int | None = None) -> int:
    """`value` as an int (a bool is not one), within [lo, hi]; else BadParam naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise BadParam(f"param {name!r}: expected an integer, got {json.dumps(value)}")
    if lo is not None and value < lo:
        raise BadParam(f"param {name!r}: {value} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise BadParam(f"param {name!r}: {value} is above the maximum {hi}")
    return int(value)


def as_str(name: str, value: Any, *, optional: bool = False, max_len: int = 4096) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise BadParam(f"param {name!r}: expected a non-empty string, got {json.dumps(value)}")
    if len(value) > max_len or "\x00" in value:
        raise BadParam(f"param {name!r}: too long or contains NUL")
    return value


def as_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadParam(f"param {name!r}: expected true or false, got {json.dumps(value)}")
    return value


def as_list(name: str, value: Any, item: Callable[[str, Any], Any]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadParam(f"param {name!r}: expected a list, got {json.dumps(value)}")
    return [item(f"{name}[{i}]", v) for i, v in enumerate(value)]


def as_id(value: Any) -> int:
    return as_int("id", value, lo=1)


def as_status(value: Any) -> JobStatus | None:
    if value is None:
        return None
    try:
        return JobStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in JobStatus)
        raise BadParam(f"param 'status': {json.dumps(value)} is not one of {allowed}") from None


# ------------------------------------------------------------------- the API


class Api:
    """The methods' shared state: the JobManager and the daemon's health sources."""

    def __init__(self, manager: JobManager, health: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.manager = manager
        self.health = health
        self.started = time.monotonic()


@rpc("launch")
async def launch(
    api: Api,
    session: Session,
    solver: Any,
    input: Any,
    ncpu: Any = 1,
    memory: Any = None,
    args: Any = None,
    name: Any = None,
    priority: Any = 0,
    nice: Any = 0,
    restart: Any = None,
    backend: Any = "local",
    licenses: Any = None,
    after: Any = None,
) -> dict[str, Any]:
    """Queue a solver job; it starts as soon as its cores and licences are free."""
    if isinstance(memory, int) and not isinstance(memory, bool):
        memory = str(memory)
    pools: dict[str, int] | None = None
    if licenses is not None:
        if not isinstance(licenses, dict):
            raise BadParam(f"param 'licenses': expected an object {{pool: count}}, got {json.dumps(licenses)}")
        pools = {str(k): as_int(f"licenses.{k}", v, lo=0) for k, v in licenses.items()}
    job = await api.manager.launch(
        solver=as_str("solver", solver) or "",
        input=as_str("input", input) or "",
        ncpu=as_int("ncpu", ncpu, lo=1),
        memory=as_str("memory", memory, optional=True, max_len=32),
        args=as_list("args", args, lambda n, v: as_str(n, v)),
        name=as_str("name", name, optional=True, max_len=200),
        priority=as_int("priority", priority, lo=-1000, hi=1000),
        nice=as_int("nice", nice, lo=-20, hi=19),
        restart=as_str("restart", restart, optional=True, max_len=64),
        backend=as_str("backend", backend) or "local",
        licenses=pools,
        after=as_list("after", after, lambda n, v: as_int(n, v, lo=1)),
        order=session,  # this client's pipelined launches become jobs in the order sent
    )
    return api.manager.wire(job)


@rpc("stop")
async def stop(api: Api, session: Session, id: Any, force: Any = False) -> dict[str, Any]:
    """Stop a job: cancel it when queued, else graceful (sw1 / SIGTERM) then forced."""
    job = await api.manager.stop(as_id(id), as_bool("force", force))
    return api.manager.wire(job)


SENSE_SWITCHES = ("sw1", "sw2", "sw3", "sw4", "swa", "swb", "swc", "swd", "lprint", "nlprint",
                  "iter", "conv", "prof", "stop")


@rpc("pause")
async def pause(api: Api, session: Session, id: Any) -> dict[str, Any]:
    """Suspend the whole process tree of a running job."""
    return api.manager.wire(await api.manager.pause(as_id(id)))


@rpc("resume")
async def resume(api: Api, session: Session, id: Any) -> dict[str, Any]:
    """Continue a paused job."""
    return api.manager.wire(await api.manager.resume(as_id(id)))


@rpc("senseSwitch")
async def sense_switch(api: Api, session: Session, id: Any, switch: Any) -> dict[str, Any]:
    """Send an LS-DYNA sense switch through d3kil."""
    name = as_str("switch", switch, max_len=16)
    if name not in SENSE_SWITCHES:
        raise BadParam(f"param 'switch': {json.dumps(switch)} is not one of {', '.join(SENSE_SWITCHES)}")
    return api.manager.wire(await api.manager.sense_switch(as_id(id), name))


@rpc("setPriority")
async def set_priority(api: Api, session: Session, id: Any, priority: Any) -> dict[str, Any]:
    """Change the priority of a queued job."""
    job = await api.manager.set_priority(as_id(id), as_int("priority", priority, lo=-1000, hi=1000))
    return api.manager.wire(job)


@rpc("moveJob")
async def move_job(api: Api, session: Session, id: Any, position: Any) -> list[dict[str, Any]]:
    """Put a queued job at a 0-based place in the queue; returns the queue."""
    queue = await api.manager.move_job(as_id(id), as_int("position", position, lo=0))
    return [api.manager.wire(j) for j in queue]


@rpc("getJob")
async def get_job(api: Api, session: Session, id: Any) -> dict[str, Any]:
    """One job."""
    return api.manager.wire(await api.manager.get(as_id(id)))


@rpc("listJobs")
async def list_jobs(api: Api, session: Session, status: Any = None, limit: Any = 100) -> list[dict[str, Any]]:
    """Jobs, newest first, optionally of one status."""
    return await api.manager.list_wire(as_status(status), as_int("limit", limit, lo=1, hi=10000))


@rpc("getJobOutput")
async def get_job_output(
    api: Api, session: Session, id: Any, offset: Any = 0, limit: Any = 65536
) -> dict[str, Any]:
    """A page of a job's stdout."""
    return await api.manager.read_output(
        as_id(id), as_int("offset", offset, lo=0), as_int("limit", limit, lo=1, hi=1024 * 1024)
    )


@rpc("subscribe")
async def subscribe(api: Api, session: Session, topics: Any = None) -> bool:
    """Receive notifications of the topics jobs, output and cores."""
    wanted = as_list("topics", ["jobs"] if topics is None else topics, lambda n, v: as_str(n, v))
    unknown = [t for t in wanted if t not in TOPICS]
    if unknown:
        raise BadParam(f"param 'topics': unknown topic {unknown[0]!r}; known: {', '.join(sorted(TOPICS))}")
    session.topics.update(wanted)
    return True


@rpc("killOrphanDynaProcesses")
async def kill_orphans(api: Api, session: Session, working_dir: Any = None) -> dict[str, Any]:
    """Kill solver processes that belong to no live job (optionally within a folder)."""
    folder = as_str("working_dir", working_dir, optional=True)
    path = None
    if folder is None and not session.is_local():
        # An unscoped clean-up kills every unowned solver of the user on this machine:
        # only someone at the machine itself may ask for that.
        raise NotAuthorised(
            "killOrphanDynaProcesses without 'working_dir' is allowed from this machine only; "
            "give a working_dir"
        )
    if folder is not None:
        path = Path(folder)
        if not path.is_absolute() or not path.is_dir():
            raise BadParam(f"param 'working_dir': {folder!r} is not an absolute path to a folder")
    killed = await api.manager.kill_orphans(path)
    where = f" in {folder}" if folder else ""
    return {
        "killed_count": len(killed),
        "message": f"killed {len(killed)} orphan process(es){where}",
        "processes": [{"pid": p.pid, "name": p.name, "cwd": p.cwd} for p in killed],
    }


@rpc("getCoreAllocationStatus")
async def core_status(api: Api, session: Session) -> dict[str, Any]:
    """The machine's cores and which job holds each."""
    return api.manager.core_status()


@rpc("getSystemHealth")
async def system_health(api: Api, session: Session) -> dict[str, Any]:
    """Daemon health: watchdog, store, job counts, host telemetry, licences."""
    return await api.health()


@rpc("listSolvers")
async def list_solvers(api: Api, session: Session) -> list[dict[str, object]]:
    """The configured solver profiles and whether each can run here (an extra method)."""
    import asyncio

    profiles = list(api.manager.config.solvers.values())
    resolved = await asyncio.to_thread(lambda: [resolve_profile(p) for p in profiles])
    return [describe(r) for r in resolved]


@rpc("rpc.discover")
async def discover(api: Api, session: Session) -> dict[str, Any]:
    """The OpenRPC document of every method this daemon serves."""
    return {
        "openrpc": "1.2.6",
        "info": {"title": "dynalauncher", "version": __version__},
        "methods": [DESCRIPTIONS[name] for name in sorted(DESCRIPTIONS)],
    }


def methods() -> Mapping[str, Method]:
    """The method table handed to jsonrpcserver (explicit, never its global registry)."""
    return METHODS


# ------------------------------------------------------------------- dispatch

REQUEST_KEYS = frozenset({"jsonrpc", "method", "params", "id"})
LIST_JOBS_PARAMS = ("status", "limit")
#: Stands for "the request has no `id`" (a notification); `None` is a valid id.
NO_ID = object()


async def dispatch(message: str, session: Session, validator: Callable[[Any], Any]) -> str:
    """The response text for one incoming `message` ("" when nothing is to be sent).

    `validator` is the structural check jsonrpcserver runs (the server's fast one)."""
    fast = await _list_jobs_fast(message, session)
    if fast is not None:
        return fast
    return await _dispatch_single(message, session, validator)


async def _dispatch_single(message: str, session: Session, validator: Callable[[Any], Any]) -> str:
    """jsonrpcserver's `dispatch` for one request, through its own steps (parse, validate,
    dispatch_request, to_response) but without the asyncio.gather it wraps even a single
    request in: a task and a gathering future less per call, i.e. per `launch` of a script's
    thousand. Answers are the library's values, written by serv.jsonwire. A batch, and
    anything that fails before dispatch, takes the library's path."""
    try:
        parsed = json.loads(message)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return await async_dispatch(message, methods=METHODS, context=session, validator=validator)
    checked = validate_request(validator, parsed)
    if isinstance(checked, Left):
        return jsonwire.dumps(to_serializable(checked))
    try:
        request, result = await dispatch_request(METHODS, session, create_request(parsed))
        if request.id is NOID:
            return ""  # a notification gets no answer
        return jsonwire.dumps(to_serializable(to_response(request, result)))
    except Exception as exc:  # the library's last resort, kept: a -32000 answer, logged
        log.exception("dispatching %s", parsed.get("method"))
        return jsonwire.dumps(to_serializable(Left(ServerErrorResponse(str(exc), None))))


def single_request(message: str, method: str) -> dict[str, Any] | None:
    """`message` parsed, when it is one JSON-RPC request (not a batch) for `method`; else
    None (also for text that is not JSON: the normal path answers that)."""
    if f'"{method}"' not in message:  # cheap test first: other methods skip the parse
        return None
    try:
        request = json.loads(message)
    except ValueError:
        return None
    return request if isinstance(request, dict) and request.get("method") == method else None


def _list_jobs_request(message: str) -> tuple[Any, Any, Any] | None:
    """(status, limit, id or NO_ID) of a plain single `listJobs` request, else None.

    Only what the normal path would answer with a result passes; anything it would
    refuse (bad JSON, a batch, extra keys, a bad id, unknown or extra params) is left to
    it, so the errors stay exactly the normal path's."""
    request = single_request(message, "listJobs")
    if (
        request is None
        or request.get("jsonrpc") != "2.0"
        or not request.keys() <= REQUEST_KEYS
    ):
        return None
    params = request.get("params", [])
    if isinstance(params, list):
        if len(params) > len(LIST_JOBS_PARAMS):
            return None
        params = dict(zip(LIST_JOBS_PARAMS, params))
    elif not isinstance(params, dict) or not params.keys() <= set(LIST_JOBS_PARAMS):
        return None
    request_id = request.get("id", NO_ID)
    if not (
        request_id is NO_ID
        or request_id is None
        or isinstance(request_id, str)
        or isinstance(request_id, int) and not isinstance(request_id, bool)
    ):
        return None
    return params.get("status"), params.get("limit", 100), request_id


async def _list_jobs_fast(message: str, session: Session) -> str | None:
    """The answer to a plain `listJobs` request built from cached text, or None to let
    the normal path answer."""
    parsed = _list_jobs_request(message)
    if parsed is None:
        return None
    raw_status, raw_limit, request_id = parsed
    try:
        status = as_status(raw_status)
        limit = as_int("limit", raw_limit, lo=1, hi=10000)
    except BadParam:
        return None  # the normal path answers -32602 with the same message
    if request_id is NO_ID:
        return ""  # a notification: listing has no effect, and nothing is answered
    listing = session.api.manager.listing
    result = listing.list_text_now(status, limit)
    if result is None:
        try:
            result = await listing.list_text(status, limit)
        except Exception:  # the normal path owns error answers and their logging
            log.debug("listJobs fast path failed; answering through the normal path", exc_info=True)
            return None
    return '{"jsonrpc": "2.0", "result": ' + result + ', "id": ' + json.dumps(request_id) + "}"


