"""Which logical CPUs exist, which are usable, and which job holds each one.

`Topology` is a value read from the OS by `serv.topology` (an edge); `CoreAllocator` books
CPUs for jobs over it. Physical cores are handed out before their hyper-thread siblings so
that a job gets one logical CPU per physical core while the machine has free ones.
The allocator is mutated only on the daemon's loop thread, but its lock makes every
operation atomic anyway, so the watchdog and tests can read it from any thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True, slots=True)
class Cpu:
    """One logical CPU as the OS describes it."""

    index: int
    core_id: int
    socket: int = 0
    numa_node: int = 0
    siblings: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Topology:
    """The machine's logical CPUs (online ones only)."""

    cpus: tuple[Cpu, ...]

    @property
    def logical_cores(self) -> int:
        return len(self.cpus)

    @property
    def physical_cores(self) -> int:
        return len({(c.socket, c.core_id) for c in self.cpus})

    @property
    def hyper_threading(self) -> bool:
        return self.logical_cores > self.physical_cores

    def preference_order(self) -> list[int]:
        """Logical CPUs in the order they are handed out: first thread of every physical
        core (by socket, core), then the second threads, and so on."""
        by_core: dict[tuple[int, int], list[int]] = {}
        for cpu in sorted(self.cpus, key=lambda c: (c.socket, c.core_id, c.index)):
            by_core.setdefault((cpu.socket, cpu.core_id), []).append(cpu.index)
        order: list[int] = []
        depth = max((len(v) for v in by_core.values()), default=0)
        for level in range(depth):
            order.extend(threads[level] for threads in by_core.values() if len(threads) > level)
        return order

    @classmethod
    def flat(cls, n: int) -> Topology:
        """n logical CPUs, one per physical core (for tests and unknown platforms)."""
        return cls(tuple(Cpu(index=i, core_id=i, siblings=(i,)) for i in range(n)))


class CoreAllocator:
    """Books logical CPUs for jobs; never hands one CPU to two jobs."""

    def __init__(self, topology: Topology, max_usable: int | None = None) -> None:
        order = topology.preference_order()
        if max_usable is not None:
            order = order[: max(0, max_usable)]
        self.topology = topology
        self._order: tuple[int, ...] = tuple(order)
        self._usable: frozenset[int] = frozenset(order)
        self._holder: dict[int, int] = {}
        self._lock = threading.Lock()

    @property
    def usable(self) -> tuple[int, ...]:
        """Usable logical CPUs, in hand-out order."""
        return self._order

    @property
    def usable_count(self) -> int:
        return len(self._order)

    def free_count(self) -> int:
        with self._lock:
            return len(self._order) - len(self._holder)

    def allocate(self, job_id: int, n: int) -> tuple[int, ...] | None:
        """Book `n` free CPUs for `job_id` and return them sorted, or None when fewer are free.

        A job that already holds CPUs gets them back unchanged (idempotent).
        """
        with self._lock:
            held = self._held_by(job_id)
            if held:
                return held
            free = [c for c in self._order if c not in self._holder]
            if n < 1 or len(free) < n:
                return None
            chosen = tuple(sorted(free[:n]))
            for cpu in chosen:
                self._holder[cpu] = job_id
            return chosen

    def restore(self, job_id: int, cores: Sequence[int]) -> bool:
        """Give `job_id` exactly `cores` if every one is usable and free (or already its own)."""
        with self._lock:
            wanted = set(cores)
            if not wanted or not wanted <= self._usable:
                return False
            if any(self._holder.get(c, job_id) != job_id for c in wanted):
                return False
            for cpu in self._held_by(job_id):
                if cpu not in wanted:
                    del self._holder[cpu]
            for cpu in wanted:
                self._holder[cpu] = job_id
            return True

    def restore_first(
        self, job_id: int, n: int, candidates: Iterable[tuple[str, Sequence[int] | None]]
    ) -> tuple[tuple[int, ...] | None, str]:
        """Restore the first candidate core list that fits, else allocate fresh cores.

        Returns (cores, source) where source names the candidate used ("fresh
        allocation" when none fitted, and cores None when not even that was possible).
        """
        for source, cores in candidates:
            # A list with a repeated CPU (a damaged pid file) would book fewer than n CPUs
            # while reporting n, so it does not fit.
            if cores and len(set(cores)) == len(cores) == n and self.restore(job_id, cores):
                return tuple(sorted(cores)), source
        return self.allocate(job_id, n), "fresh allocation"

    def release(self, job_id: int) -> tuple[int, ...]:
        """Free every CPU `job_id` holds; returns them (empty when it held none). Idempotent."""
        with self._lock:
            held = self._held_by(job_id)
            for cpu in held:
                del self._holder[cpu]
            return held

    def holder(self, cpu: int) -> int | None:
        with self._lock:
            return self._holder.get(cpu)

    def snapshot(self) -> dict[int, int]:
        """CPU index → job id for every booked CPU."""
        with self._lock:
            return dict(self._holder)

    def _held_by(self, job_id: int) -> tuple[int, ...]:
        return tuple(sorted(c for c, j in self._holder.items() if j == job_id))
