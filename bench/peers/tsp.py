"""A private task-spooler (Debian `task-spooler`, command `tsp`) server, for benchmarks.

`TS_SOCKET` and `TMPDIR` point into a temp folder of our own, so another tsp user on this box
is never touched. The server starts itself on the first `tsp` call (a process in its own
session) and `stop()` ends it with `tsp -K` on *our* socket. Facts and gotchas (`tsp -w` waits
for ONE job) are in /work/shared/lab-findings.md §5; install with bench/peers/setup.

    with TaskSpooler(slots=2) as ts: subprocess.run(["tsp", "-n", "true"], env=ts.env)
    .venv/bin/python -m bench.peers.tsp up     # start, print the env to use, wait for Ctrl+C
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

from bench.peers import serve_peer


class TaskSpooler:
    def __init__(
        self, *, slots: int = 2, max_finished: int = 100_000, keep: bool = False
    ) -> None:
        if shutil.which("tsp") is None:
            raise SystemExit("missing tsp: run bench/peers/setup (apt: task-spooler)")
        self.slots = slots
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix="dynalauncher-bench-tsp-"))
        self.env = {
            **os.environ,
            "TS_SOCKET": str(self.dir / "ts.socket"),
            "TMPDIR": str(self.dir),
            # Keep every finished job listed, so the wait below can count them all.
            "TS_MAXFINISHED": str(max_finished),
        }
        self.started = False

    def run(self, *args: str) -> str:
        out = subprocess.run(
            ["tsp", *args], env=self.env, capture_output=True, text=True, check=True
        )
        return out.stdout

    def start(self) -> Self:
        self.run("-S", str(self.slots))  # starts our server and sets its slots
        self.started = True
        return self

    def states(self) -> dict[str, int]:
        """Jobs per state ("queued", "running", "finished", ...) in `tsp -l`."""
        counts: dict[str, int] = {}
        for line in self.run("-l").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 2:
                counts[fields[1]] = counts.get(fields[1], 0) + 1
        return counts

    def exit_levels(self) -> dict[str, int]:
        """Finished jobs per E-Level (exit code) in `tsp -l`."""
        levels: dict[str, int] = {}
        for line in self.run("-l").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 4 and fields[1] == "finished":
                levels[fields[3]] = levels.get(fields[3], 0) + 1
        return levels

    def wait_all(
        self, total: int, poll_s: float = 0.01, timeout_s: float = 600.0
    ) -> float:
        """Poll `tsp -l` until `total` jobs are finished; the perf_counter time it saw that."""
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self.states().get("finished", 0)
            now = time.perf_counter()
            if seen >= total:
                return now
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"tsp: {seen} of {total} jobs finished after {timeout_s:.0f} s"
                )
            time.sleep(poll_s)

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                ["tsp", "-K"],
                env=self.env,
                capture_output=True,
                timeout=30,
                check=False,
            )
            self.started = False
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    return serve_peer(
        "tsp",
        lambda: TaskSpooler(keep=True),
        lambda ts: [
            f"task-spooler up with {ts.slots} slots; folder {ts.dir}",
            f"export TS_SOCKET={ts.env['TS_SOCKET']} TMPDIR={ts.env['TMPDIR']}",
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
