"""What starting a job's launcher takes, whichever way it is started (serv.platform.spawning)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SpawnRequest:
    """Start `argv` detached in `cwd` (a session of its own), stdin from the null device,
    stdout and stderr to `stdout_path`, pinned to `cores` from its first instruction (None:
    not pinned), at CPU priority `nice`, with the daemon's environment plus `env`."""

    argv: tuple[str, ...]
    cwd: Path
    stdout_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cores: tuple[int, ...] | None = None
    nice: int = 0
