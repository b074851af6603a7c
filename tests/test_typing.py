"""style.md §3.2: the pure core type-checks under `mypy --strict`, the rest under mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_pure_core_passes_mypy_strict() -> None:
    done = run_mypy("--strict", "serv/core")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_daemon_passes_mypy() -> None:
    done = run_mypy("serv")
    assert done.returncode == 0, done.stdout + done.stderr
