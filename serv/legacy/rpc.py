"""JSON-RPC 2.0 as the legacy server answered it (protocol §2), with an explicit methods table.

A request is the single string argument of a `message` event. The answers keep the legacy
codes where the GUI or a script may look at them:

    -32700 Parse error       the argument is not a JSON string (an object, `not json`); id null
    -32600 Invalid request   not a JSON-RPC 2.0 request (extra keys, no method, …); id null
    -32601 Method not found  data = the method name
    -32602 Invalid params    data = what did not bind, e.g. "missing a required argument: 'input'"
    -32603 Internal error    an unexpected failure; data is a fixed text (details in the log)
    10 / 20                  application refusals (`LegacyError`), the legacy codes

A daemon error (`DynalauncherError`) raised by the job manager is answered with code 10 and
its message (a BadParam keeps -32602). Tracebacks never reach a client. Responses echo the
request's `id` with its JSON type; a request without `id` (a notification) gets no answer.
Text is written with `json.dumps` defaults, like the legacy server.

Answers are `JsonText`, so that the transport frames them without encoding them again; a
method may return a `JsonText` result (kept records), which is spliced into its answer.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any, Awaitable, Callable, Mapping

from serv.errors import BadParam, DynalauncherError
from serv.legacy.jsontext import JsonText, json_list, with_member

log = logging.getLogger(__name__)

INTERNAL = "internal error; details are in the daemon log"
REQUEST_KEYS = frozenset({"jsonrpc", "method", "params", "id"})
Method = Callable[..., Awaitable[Any]]


class LegacyError(Exception):
    """An application error answered as `{"code": code, "message": message[, "data": data]}`."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def error_response(code: int, message: str, data: Any = None, id: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": id}


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def _is_request(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and item.get("jsonrpc") == "2.0"
        and isinstance(item.get("method"), str)
        and set(item) <= REQUEST_KEYS
        and ("params" not in item or isinstance(item["params"], (list, dict)))
        and _valid_id(item.get("id"))
    )


def _encoded(answer: dict[str, Any]) -> JsonText:
    """`answer` as `json.dumps(answer)` writes it; a `JsonText` result is spliced in as is."""
    result = answer.get("result")
    if isinstance(result, JsonText):
        return with_member(answer, "result", result)
    return JsonText.of(answer)


class Dispatcher:
    """Parse, validate, bind and run one `message` payload against `methods`."""

    def __init__(self, methods: Mapping[str, Method]) -> None:
        self.methods = dict(methods)
        self._signatures = {name: inspect.signature(fn) for name, fn in self.methods.items()}

    async def __call__(self, payload: Any) -> JsonText | None:
        """The response for `payload` (`.text` is the JSON-RPC text), or None when nothing is
        to be sent."""
        if not isinstance(payload, str):
            kind = type(payload).__name__ if payload is not None else "nothing"
            return JsonText.of(error_response(
                -32700, "Parse error", f"the request must be a JSON string, not {kind}"))
        try:
            request = json.loads(payload)
        except ValueError as exc:
            return JsonText.of(error_response(-32700, "Parse error", str(exc)))
        if isinstance(request, list):
            if not request:
                return JsonText.of(error_response(-32600, "Invalid request", "empty batch"))
            answers = [a for a in [await self._one(item) for item in request] if a is not None]
            return json_list([_encoded(a) for a in answers]) if answers else None
        answer = await self._one(request)
        return None if answer is None else _encoded(answer)

    async def _one(self, request: Any) -> dict[str, Any] | None:
        if not _is_request(request):
            return error_response(-32600, "Invalid request", "The request failed schema validation")
        name = request["method"]
        has_id = "id" in request
        request_id = request.get("id")
        answer = await self._call(name, request.get("params"))
        if not has_id:
            return None
        answer["id"] = request_id
        return answer

    async def _call(self, name: str, params: Any) -> dict[str, Any]:
        fn = self.methods.get(name)
        if fn is None:
            return error_response(-32601, "Method not found", name)
        args = params if isinstance(params, list) else []
        kwargs = params if isinstance(params, dict) else {}
        try:
            self._signatures[name].bind(*args, **kwargs)
        except TypeError as exc:
            return error_response(-32602, "Invalid params", str(exc))
        try:
            result = await fn(*args, **kwargs)
        except LegacyError as exc:
            return error_response(exc.code, exc.message, exc.data)
        except BadParam as exc:
            return error_response(-32602, "Invalid params", str(exc))
        except DynalauncherError as exc:
            return error_response(10, str(exc), {"dynalauncher_code": exc.code})
        except Exception:  # the RPC edge: log everything, leak nothing
            log.exception("legacy method %s failed", name)
            return error_response(-32603, "Internal error", INTERNAL)
        return {"jsonrpc": "2.0", "result": result}
