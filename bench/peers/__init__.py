"""Peers the benchmarks compare dynalauncher with, each started and stopped by the bench."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

P = TypeVar("P")


def serve_peer(module: str, make: Callable[[], AbstractContextManager[P]], describe: Callable[[P], list[str]]) -> int:
    """`python -m bench.peers.MODULE up`: start a peer, print how to reach it, and keep it up
    until Ctrl+C or SIGTERM, then stop it."""
    if len(sys.argv) != 2 or sys.argv[1] != "up":
        print(f"usage: python -m bench.peers.{module} up   (runs until Ctrl+C / SIGTERM, then stops)")
        return 2

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with make() as peer:
        for line in describe(peer):
            print(line)
        try:
            while True:
                time.sleep(3600)  # a console tool idling until it is stopped
        except KeyboardInterrupt:
            print("stopping")
    return 0
