"""Which logical CPUs exist, which are usable, and which job holds each one.

`Topology` is a value read from the OS by `serv.topology` (an edge: Linux sysfs, Windows
GetLogicalProcessorInformationEx); `CoreAllocator` books CPUs for jobs over it. This module
does no I/O and reads no clock (style.md §2).

Placement rules (issue #5 item 1), applied by `CoreAllocator.allocate` to FREE usable CPUs:

* **Unit of booking.** With `use_siblings=False` (the default) the unit is a physical core:
  a job gets one logical CPU (the core's first usable thread in hand-out order) of each
  physical core it is given, and a physical core counts as free only when none of its
  threads is booked, by any job. So two jobs never share a core either, and a job asking
  for more CPUs than there are free physical cores waits (`allocate` returns None) rather
  than doubling up on a core. With `use_siblings=True` the unit is a logical CPU, and the
  free threads of one core are taken together before the next core's.
* **pack** (default): the smallest set of NUMA nodes / sockets that holds the job:
  1. one NUMA node if one has room: among those, the one with the fewest free units
     (best fit, so big holes stay for big jobs), ties to the lowest (socket, node);
  2. else one socket if one has room: the best-fitting socket (same rule), and in it the
     fewest NUMA nodes (below);
  3. else the fewest sockets (below), and in each the fewest NUMA nodes.
  "Fewest groups" for n units: take the groups with the most free units (ties to the
  lowest id) whole until the next one would cover the rest, then cover the rest from the
  best-fitting remaining group. Inside a NUMA node, units go in hand-out order.
* **spread**: units are dealt round-robin, one at a time, over the sockets ordered by free
  units (most first, ties to the lowest id), skipping full ones; inside each socket the
  same over its NUMA nodes; inside a node in hand-out order.

`free_count()` is the number of free units, and every rule above can place any n up to it
(step 3 and round-robin always succeed when the total suffices). So a scheduler that
admits jobs while `ncpu <= free_count()`, subtracting as it goes, is never refused by
`allocate`. `usable_count` is the largest job `allocate` can ever place (usable physical
cores when siblings are not used), so a bigger request is refused up front (1005).

The allocator is mutated only on the daemon's loop thread, but its lock makes every
operation atomic anyway, so the watchdog and tests can read it from any thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, Iterable, Mapping, Sequence, TypeVar


class Placement(StrEnum):
    """How a job's CPUs are laid over sockets and NUMA nodes (`[cores] placement`)."""

    PACK = "pack"
    SPREAD = "spread"


@dataclass(frozen=True, slots=True)
class Cpu:
    """One logical CPU as the OS describes it.

    `core_id` is unique only within a socket (Linux `topology/core_id`), so a physical core
    is the pair (`socket`, `core_id`). `siblings` are the logical CPUs of the same physical
    core, this one included. `efficiency_class` is Windows' EfficiencyClass (higher is
    faster on hybrid CPUs; 0 everywhere else).
    """

    index: int
    core_id: int
    socket: int = 0
    numa_node: int = 0
    siblings: tuple[int, ...] = ()
    efficiency_class: int = 0

    @property
    def core(self) -> tuple[int, int]:
        """The physical core: (socket, core_id)."""
        return (self.socket, self.core_id)


@dataclass(frozen=True, slots=True)
class Topology:
    """The machine's logical CPUs (online ones the daemon may use only)."""

    cpus: tuple[Cpu, ...]

    @property
    def logical_cores(self) -> int:
        return len(self.cpus)

    @property
    def physical_cores(self) -> int:
        return len({c.core for c in self.cpus})

    @property
    def hyper_threading(self) -> bool:
        return self.logical_cores > self.physical_cores

    @property
    def sockets(self) -> tuple[int, ...]:
        return tuple(sorted({c.socket for c in self.cpus}))

    @property
    def numa_nodes(self) -> tuple[int, ...]:
        return tuple(sorted({c.numa_node for c in self.cpus}))

    def preference_order(self) -> list[int]:
        """Logical CPUs in the order they are handed out: the first thread of every physical
        core (fastest efficiency class first, then by socket, NUMA node, core), then the
        second threads, and so on."""
        by_core: dict[tuple[int, int], list[int]] = {}
        for cpu in sorted(self.cpus, key=_hand_out_key):
            by_core.setdefault(cpu.core, []).append(cpu.index)
        order: list[int] = []
        depth = max((len(v) for v in by_core.values()), default=0)
        for level in range(depth):
            order.extend(threads[level] for threads in by_core.values() if len(threads) > level)
        return order

    @classmethod
    def flat(cls, n: int) -> Topology:
        """n logical CPUs, one per physical core (for tests and unknown platforms)."""
        return cls.of_indices(range(n))

    @classmethod
    def of_indices(cls, indices: Iterable[int]) -> Topology:
        """These logical CPUs, one per physical core, one socket, one NUMA node."""
        return cls(tuple(Cpu(index=i, core_id=i, siblings=(i,)) for i in sorted(set(indices))))


def _hand_out_key(cpu: Cpu) -> tuple[int, int, int, int, int]:
    return (-cpu.efficiency_class, cpu.socket, cpu.numa_node, cpu.core_id, cpu.index)


@dataclass(frozen=True, slots=True)
class _Unit:
    """What one step of placement books: one physical core's first free thread
    (use_siblings=False) or one logical CPU (use_siblings=True)."""

    rank: tuple[int, int]  # (core's hand-out rank, thread's hand-out position)
    cpu: int
    socket: int
    node: tuple[int, int]  # (socket, numa_node): a node is split if it spans sockets


K = TypeVar("K", int, tuple[int, int])  # a socket, or a (socket, numa_node)


class CoreAllocator:
    """Books logical CPUs for jobs; never hands one CPU to two jobs.

    `max_usable` keeps the first N logical CPUs in hand-out order (one thread per physical
    core first); `placement` is "pack" or "spread" and `use_siblings` lets a job take both
    threads of a core (module docstring: the exact rules). Raises ValueError for an
    unknown placement.
    """

    def __init__(
        self,
        topology: Topology,
        max_usable: int | None = None,
        *,
        placement: str = "pack",
        use_siblings: bool = False,
    ) -> None:
        try:
            self.placement = Placement(placement)
        except ValueError:
            raise ValueError(f"placement {placement!r} is not one of 'pack', 'spread'") from None
        self.use_siblings = use_siblings
        order = topology.preference_order()
        if max_usable is not None:
            order = order[: max(0, max_usable)]
        self.topology = topology
        self._order: tuple[int, ...] = tuple(order)
        self._usable: frozenset[int] = frozenset(order)
        self._holder: dict[int, int] = {}
        self._lock = threading.Lock()
        cpus = {c.index: c for c in topology.cpus}
        self._cpu = cpus
        # Usable threads of each physical core in hand-out order; cores ranked by their
        # first thread's position, so a core's rank is the order its first thread goes out.
        self._threads: dict[tuple[int, int], tuple[int, ...]] = {}
        for index in order:
            core = cpus[index].core
            self._threads[core] = (*self._threads.get(core, ()), index)
        self._core_rank = {core: rank for rank, core in enumerate(self._threads)}
        self._pos = {index: pos for pos, index in enumerate(order)}

    @property
    def usable(self) -> tuple[int, ...]:
        """Usable logical CPUs, in hand-out order (any of them may be restored)."""
        return self._order

    @property
    def usable_count(self) -> int:
        """The most CPUs one job can be given: usable physical cores, or usable logical CPUs
        when use_siblings. A launch asking for more can never start."""
        return len(self._order) if self.use_siblings else len(self._threads)

    def free_count(self) -> int:
        """How many CPUs `allocate` can give right now (free physical cores when not
        use_siblings). Jobs whose sizes add up to at most this all fit, whatever the
        placement."""
        with self._lock:
            return len(self._free_units())

    def allocate(self, job_id: int, n: int) -> tuple[int, ...] | None:
        """Book `n` free CPUs for `job_id` by the placement rules and return them sorted, or
        None (booking nothing) when n < 1 or n > free_count().

        A job that already holds CPUs gets them back unchanged (idempotent).
        """
        with self._lock:
            held = self._held_by(job_id)
            if held:
                return held
            units = self._free_units()
            if n < 1 or len(units) < n:
                return None
            if self.placement is Placement.SPREAD:
                chosen = _spread(units, n)
            else:
                chosen = _pack(units, n)
            cpus = tuple(sorted(u.cpu for u in chosen))
            for cpu in cpus:
                self._holder[cpu] = job_id
            return cpus

    def restore(self, job_id: int, cores: Sequence[int]) -> bool:
        """Give `job_id` exactly `cores` if every one is usable and free (or already its own).

        Placement rules do not apply: a re-adopted job keeps what it had, siblings included.
        """
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

    def _free_units(self) -> list[_Unit]:
        """Free units in hand-out order (caller holds the lock)."""
        units: list[_Unit] = []
        for core, threads in self._threads.items():
            free = [t for t in threads if t not in self._holder]
            if not self.use_siblings:
                # A core is free only when no thread of it is booked (restore may have
                # booked one thread to a re-adopted job).
                free = free[:1] if len(free) == len(threads) else []
            for cpu in free:
                c = self._cpu[cpu]
                units.append(_Unit((self._core_rank[core], self._pos[cpu]), cpu, c.socket,
                                   (c.socket, c.numa_node)))
        units.sort(key=lambda u: u.rank)
        return units


# -- placement (pure functions over free units; callers guarantee len(units) >= n >= 1) -----


def _group(units: Iterable[_Unit], key: Callable[[_Unit], K]) -> dict[K, list[_Unit]]:
    groups: dict[K, list[_Unit]] = {}
    for unit in units:
        groups.setdefault(key(unit), []).append(unit)
    return groups


def _best_fit(sizes: Mapping[K, int], n: int) -> K | None:
    """The group with the fewest free units that still holds n (ties to the lowest key)."""
    fits = [k for k, size in sizes.items() if size >= n]
    return min(fits, key=lambda k: (sizes[k], k)) if fits else None


def _fewest(sizes: Mapping[K, int], n: int, take: Callable[[K, int], list[_Unit]]) -> list[_Unit]:
    """n units from the fewest groups: the largest groups whole until the next would cover
    the rest, then the rest from the best-fitting remaining group."""
    ordered = sorted(sizes, key=lambda k: (-sizes[k], k))
    whole: list[K] = []
    got = 0
    for k in ordered:
        if got + sizes[k] >= n:
            break
        whole.append(k)
        got += sizes[k]
    last = _best_fit({k: s for k, s in sizes.items() if k not in whole}, n - got)
    assert last is not None, "caller guarantees the groups hold n units"
    return [u for k in whole for u in take(k, sizes[k])] + take(last, n - got)


def _pack(units: list[_Unit], n: int) -> list[_Unit]:
    nodes = _group(units, lambda u: u.node)
    node_sizes = {k: len(v) for k, v in nodes.items()}
    node = _best_fit(node_sizes, n)
    if node is not None:
        return nodes[node][:n]

    def from_socket(socket: int, count: int) -> list[_Unit]:
        mine = {k: s for k, s in node_sizes.items() if k[0] == socket}
        return _fewest(mine, count, lambda k, c: nodes[k][:c])

    socket_sizes = {k: len(v) for k, v in _group(units, lambda u: u.socket).items()}
    socket = _best_fit(socket_sizes, n)
    if socket is not None:
        return from_socket(socket, n)
    return _fewest(socket_sizes, n, from_socket)


def _round_robin(sizes: Mapping[K, int], n: int) -> dict[K, int]:
    """Deal n units one at a time over the groups, most free first, skipping full ones."""
    ordered = sorted(sizes, key=lambda k: (-sizes[k], k))
    quota = dict.fromkeys(ordered, 0)
    left = n
    while left:
        for k in ordered:
            if left and quota[k] < sizes[k]:
                quota[k] += 1
                left -= 1
    return quota


def _spread(units: list[_Unit], n: int) -> list[_Unit]:
    nodes = _group(units, lambda u: u.node)
    node_sizes = {k: len(v) for k, v in nodes.items()}
    socket_sizes = {k: len(v) for k, v in _group(units, lambda u: u.socket).items()}
    chosen: list[_Unit] = []
    for socket, count in _round_robin(socket_sizes, n).items():
        mine = {k: s for k, s in node_sizes.items() if k[0] == socket}
        for node, share in _round_robin(mine, count).items():
            chosen.extend(nodes[node][:share])
    return chosen
