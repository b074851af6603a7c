"""What a solver's output says while it runs: the `Progress` record and the parser interface.

Parsers are pure and stateful, one per job: the daemon feeds them complete lines (newline
and every CR removed) from each source it tails, with `now` in *active* seconds — a
monotonic clock that does not advance while the job is paused, so ETAs do not count paused
time. They never read files or clocks themselves, so tests drive them with sample files.
Unknown text never raises: a parser ignores what it does not understand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol

from serv.core.states import Termination

# Sources a family may ask for (see SideFile.source).
STDOUT = "stdout"   # the job's stdout+stderr file
MESSAG = "messag"   # LS-DYNA messag (SMP) or mes0000 (MPP rank 0)
D3HSP = "d3hsp"     # LS-DYNA d3hsp, first part only (control-card echo)
DECK = "deck"       # the input deck, read once at start
STA = "sta"         # CalculiX <job>.sta
CVG = "cvg"         # CalculiX <job>.cvg


@dataclass(frozen=True, slots=True)
class SideFile:
    """A file in the workdir a family wants tailed besides stdout.

    `name` is relative to the workdir; `max_bytes` stops reading after that many bytes
    (d3hsp can be 18 MB, only its first part matters); `alternatives` are tried in order
    when `name` does not exist (e.g. mes0000 for an MPP run instead of messag).
    """

    source: str
    name: str
    max_bytes: int | None = None
    alternatives: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of what the output said so far; None means "not known (yet)"."""

    started: bool = False
    progress: float | None = None  # percent, 0–100
    sim_time: float | None = None
    end_time: float | None = None
    eta_s: float | None = None
    added_mass: float | None = None
    pct_mass: float | None = None
    termination: Termination | None = None
    message: str | None = None  # a failure (licence, fatal error) or a status line worth showing
    details: Mapping[str, object] = field(default_factory=dict)  # family-specific, JSON-safe


class OutputParser(Protocol):
    def feed(self, source: str, lines: Iterable[str], now: float) -> None:
        """Consume complete lines from `source`, read at active time `now` (seconds)."""

    def snapshot(self) -> Progress:
        """What is known now."""


def fortran_float(text: str) -> float | None:
    """A real as solvers print it (`1.`, `.05`, `1.e-5`, Fortran's `1.D0`) if finite, else None."""
    try:
        value = float(text.strip().replace("D", "E").replace("d", "e"))
    except ValueError:
        return None
    return value if math.isfinite(value) else None
