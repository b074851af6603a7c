"""style.md §2 (import rules) and §1 (sans-I/O core): `serv/core` does no I/O and reads no
clock, so crash recovery and these tests drive exactly the code the daemon runs.

Every module in `serv/core` is parsed with `ast` (nothing is imported), and every import,
at any depth (including `if TYPE_CHECKING:` blocks and function bodies), is checked.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import serv.core

CORE = Path(serv.core.__file__).resolve().parent
MODULES = sorted(CORE.glob("*.py"))

# Edge libraries the core must never touch (style.md §2).
FORBIDDEN = {"asyncio", "psutil", "sqlalchemy", "websockets", "subprocess", "socket", "threading"}
# The one exception: the allocator's lock (cores.py docstring says why), imported plainly.
ALLOWED_EXCEPTIONS = {("cores.py", "threading")}
# Reading the clock: `now` is passed in as a fact instead.
CLOCK_READS = {
    "datetime.now", "datetime.utcnow", "datetime.today", "date.today",
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today",
    "datetime.date.today",
    "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns",
    "time.perf_counter", "time.perf_counter_ns", "time.localtime", "time.gmtime",
}
CLOCK_FUNCTIONS = {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter",
                   "perf_counter_ns", "localtime", "gmtime"}


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"serv/core/{self.module}:{self.line}: {self.what}"


def imported_modules(tree: ast.AST) -> list[tuple[int, str, ast.AST]]:
    """(line, absolute module name, node) for every import in `tree`."""
    found: list[tuple[int, str, ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: level 1 is serv.core itself, level 2 is serv
                base = ["serv", "core"][: max(0, 3 - node.level)]
                name = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                name = node.module or ""
            found.append((node.lineno, name, node))
    return found


def violations(source: str, module: str) -> list[Violation]:
    """Every forbidden import and clock read in one module's source."""
    tree = ast.parse(source)
    out: list[Violation] = []
    clock_names: set[str] = set()
    for line, name, node in imported_modules(tree):
        top = name.split(".")[0]
        if top in FORBIDDEN and (module, name) not in ALLOWED_EXCEPTIONS:
            out.append(Violation(module, line, f"imports {name}"))
        elif (module, name) in ALLOWED_EXCEPTIONS and not isinstance(node, ast.Import):
            out.append(Violation(module, line, f"imports from {name}; only `import {name}` is allowed"))
        if top == "serv" and not (name == "serv.errors" or name.startswith("serv.core.")
                                  or name == "serv.core"):
            out.append(Violation(module, line, f"imports edge module {name}"))
        if name == "time" and isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in CLOCK_FUNCTIONS:
                    clock_names.add(alias.asname or alias.name)
                    out.append(Violation(module, line, f"imports clock function time.{alias.name}"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = ast.unparse(node.func)
        if called in CLOCK_READS or called in clock_names:
            out.append(Violation(module, node.lineno, f"reads the clock: {called}()"))
    return out


def threading_uses(source: str) -> set[str]:
    """Attributes used off the `threading` module, e.g. {"Lock"}."""
    return {
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "threading"
    }


class TestCoreImports:
    """style.md §2: `core` imports no edge module and reads no clock."""

    def test_core_package_has_the_expected_modules_when_listed(self) -> None:
        """The walk covers the real modules (a wrong path would pass vacuously)."""
        names = {p.name for p in MODULES}
        assert {"states.py", "jobs.py", "cores.py", "queue.py", "ending.py", "recovery.py"} <= names

    @pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
    def test_core_module_imports_nothing_forbidden_when_parsed(self, path: Path) -> None:
        """No asyncio, psutil, sqlalchemy, websockets, subprocess, socket, threading (but the
        allocator's lock), no serv edge module, no clock read."""
        found = violations(path.read_text(encoding="utf-8"), path.name)
        assert not found, "\n".join(map(str, found))

    def test_cores_module_uses_threading_for_a_lock_only_when_it_imports_it(self) -> None:
        """The single allowed use of threading is `threading.Lock`."""
        assert threading_uses((CORE / "cores.py").read_text(encoding="utf-8")) == {"Lock"}


class TestDetector:
    """style.md §2: the checker itself catches what it must (so a pass means something)."""

    @pytest.mark.parametrize(
        ("source", "module", "expected"),
        [
            ("import asyncio", "jobs.py", "imports asyncio"),
            ("import psutil", "jobs.py", "imports psutil"),
            ("from sqlalchemy.orm import Session", "jobs.py", "imports sqlalchemy.orm"),
            ("import websockets.asyncio", "jobs.py", "imports websockets.asyncio"),
            ("import subprocess", "jobs.py", "imports subprocess"),
            ("import socket", "jobs.py", "imports socket"),
            ("import threading", "queue.py", "imports threading"),
            ("from threading import Lock", "cores.py", "only `import threading` is allowed"),
            ("if TYPE_CHECKING:\n    from serv.store.repo import Repo", "jobs.py", "edge module serv.store.repo"),
            ("def f():\n    from serv import proctree", "jobs.py", "edge module serv"),
            ("from ..job_manager import JobManager", "jobs.py", "edge module serv.job_manager"),
            ("from datetime import datetime\nx = datetime.now()", "jobs.py", "datetime.now()"),
            ("import datetime\nx = datetime.datetime.now(datetime.UTC)", "jobs.py", "datetime.datetime.now()"),
            ("import time\nx = time.time()", "jobs.py", "time.time()"),
            ("import time\nx = time.monotonic()", "jobs.py", "time.monotonic()"),
            ("from time import monotonic as m\nx = m()", "jobs.py", "reads the clock: m()"),
        ],
    )
    def test_violations_reports_the_import_or_call_when_a_snippet_breaks_a_rule(
        self, source: str, module: str, expected: str
    ) -> None:
        """Each forbidden import or clock read in a snippet is reported."""
        found = violations(source, module)
        assert any(expected in str(v) for v in found), found

    @pytest.mark.parametrize(
        ("source", "module"),
        [
            ("import threading", "cores.py"),
            ("from serv.errors import InvalidState", "states.py"),
            ("from serv.core.states import JobStatus", "jobs.py"),
            ("from .states import JobStatus", "jobs.py"),
            ("from datetime import datetime\ndef f(at: datetime) -> datetime:\n    return at", "jobs.py"),
        ],
    )
    def test_violations_reports_nothing_when_a_snippet_is_allowed(self, source: str, module: str) -> None:
        """Allowed imports (errors, core siblings, the allocator's threading) pass."""
        assert violations(source, module) == []
