"""JSON encoded once, for answers a Socket.IO `message` frame carries as a string (protocol §2).

The legacy GUI gets every JSON-RPC answer as the one string argument of a `message` event:
`42["message","{\\"jsonrpc\\": \\"2.0\\", …}"]`. So the answer is written twice over: once as
JSON text, then that text as the inside of a JSON string. A `JsonText` keeps both forms of one
encoded value, and the second is made from the first only once. `json.dumps` escapes a string
one character at a time, so the escaped form of joined texts is the join of their escaped
forms: a list of kept parts (ended jobs' records) is spliced in either form, never encoded
again. Texts are `json.dumps` defaults, as the legacy server wrote them.

This module imports nothing from `serv`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any


class JsonText:
    """One JSON value, already encoded: `text` (its JSON) and `escaped` (that JSON as the body
    of a JSON string, without the quotes). Either form is built once, when first read, and
    kept; treat an instance as immutable. Any thread may read it."""

    __slots__ = ("_escaped", "_parts", "_text")

    def __init__(self, text: str) -> None:
        self._parts: tuple[JsonText, ...] | None = None
        self._text: str | None = text
        self._escaped: str | None = None

    @classmethod
    def of(cls, value: Any) -> JsonText:
        """`value` encoded by `json.dumps` with its defaults."""
        return cls(json.dumps(value))

    @classmethod
    def joined(cls, parts: Iterable[JsonText]) -> JsonText:
        """The concatenation of `parts` (which must make one JSON value), in both forms."""
        joined = cls.__new__(cls)
        joined._parts = tuple(parts)
        joined._text = None
        joined._escaped = None
        return joined

    @property
    def text(self) -> str:
        if self._text is None:
            assert self._parts is not None
            self._text = "".join([part.text for part in self._parts])
        return self._text

    @property
    def escaped(self) -> str:
        if self._escaped is None:
            if self._parts is not None:
                self._escaped = "".join([part.escaped for part in self._parts])
            else:
                self._escaped = json.dumps(self.text)[1:-1]
        return self._escaped

    def __repr__(self) -> str:
        return f"JsonText({self.text[:60]!r}{'…' if len(self.text) > 60 else ''})"


_OPEN, _SEPARATOR, _CLOSE = JsonText("["), JsonText(", "), JsonText("]")


def json_list(items: Sequence[JsonText]) -> JsonText:
    """The JSON list of `items`, as `json.dumps` writes a list of their values."""
    parts: list[JsonText] = [_OPEN]
    for index, item in enumerate(items):
        if index:
            parts.append(_SEPARATOR)
        parts.append(item)
    parts.append(_CLOSE)
    return JsonText.joined(parts)


#: Stands for an encoded value inside an object that `json.dumps` writes around it; a NUL
#: keeps it from matching any text a caller could mean.
_MARK = "\x00dynalauncher:encoded\x00"
_MARK_JSON = json.dumps(_MARK)


def with_member(obj: dict[str, Any], key: str, value: JsonText) -> JsonText:
    """`obj` with the encoded `value` as its member `key`, written as `json.dumps` writes
    `obj`: `json.dumps` writes the object around a mark, and `value` replaces the first mark.
    Members are written in order, so that is `key`'s own when no member before `key` holds
    the mark's text (a later one may: a client's request id, say)."""
    head, tail = json.dumps({**obj, key: _MARK}).split(_MARK_JSON, 1)
    return JsonText.joined([JsonText(head), value, JsonText(tail)])
