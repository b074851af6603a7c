"""Issue #5 item 1 (real topology), contract.md § Configuration `[cores]`: where a job's CPUs go.

The rules are written out in serv/core/cores.py's docstring: one CPU per physical core
unless use_siblings; "pack" fills the best-fitting single NUMA node, else the best-fitting
socket, else the fewest sockets; "spread" deals CPUs round-robin over sockets, then nodes.

Topologies are the synthetic sysfs trees under tests/data/sysfs as `serv.topology` reads
them (laid out like real machine shapes; tests/data/sysfs/README.md), this machine's own
sysfs, and two shapes built here from `Cpu` records: four sockets, and Windows-style
adjacent sibling numbering.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serv.core.cores import CoreAllocator, Cpu, Topology
from serv.topology import SYSFS_CPU, SYSFS_NODE, read_sysfs

DATA = Path(__file__).resolve().parent.parent / "data" / "sysfs"


def sysfs_shape(name: str) -> Topology:
    topology = read_sysfs(DATA / name / "cpu", DATA / name / "node")
    assert topology is not None, name
    return topology


def grid(sockets: int, cores: int, threads: int, *, nodes_per_socket: int = 1,
         adjacent: bool = False) -> Topology:
    """sockets × cores × threads. Linux numbering (siblings i, i + physical) or Windows
    (siblings side by side); core ids restart on every socket."""
    physical = sockets * cores
    per_node = cores // nodes_per_socket

    def index(s: int, c: int, t: int) -> int:
        p = s * cores + c
        return p * threads + t if adjacent else t * physical + p

    cpus = [
        Cpu(index=index(s, c, t), core_id=c, socket=s, numa_node=s * nodes_per_socket + c // per_node,
            siblings=tuple(sorted(index(s, c, u) for u in range(threads))))
        for s in range(sockets) for c in range(cores) for t in range(threads)
    ]
    return Topology(tuple(sorted(cpus, key=lambda c: c.index)))


NOHT = sysfs_shape("1s-4c-noht")
HT = sysfs_shape("1s-4c-ht")
TWO_SOCKETS = sysfs_shape("2s-8c-ht")
FOUR_NODES = sysfs_shape("4numa-16c")
OFFLINE = sysfs_shape("offline")
FOUR_SOCKETS = grid(4, 4, 1)
WINDOWS_2S = grid(2, 4, 2, adjacent=True)
THIS_MACHINE = read_sysfs(SYSFS_CPU, SYSFS_NODE) if (SYSFS_CPU / "online").exists() else None

SHAPES: dict[str, Topology] = {
    "1s-4c-noht": NOHT, "1s-4c-ht": HT, "2s-8c-ht": TWO_SOCKETS, "4numa-16c": FOUR_NODES,
    "offline": OFFLINE, "4s-16c": FOUR_SOCKETS, "win-2s-8c-ht": WINDOWS_2S,
    **({"this-machine": THIS_MACHINE} if THIS_MACHINE is not None else {}),
}


def cpus_of(topology: Topology, indices: tuple[int, ...] | None) -> list[Cpu]:
    assert indices is not None
    by_index = {c.index: c for c in topology.cpus}
    return [by_index[i] for i in indices]


class TestPack:
    """Pack: one NUMA node if one has room, else one socket, else the fewest sockets."""

    def test_pack_puts_a_4_cpu_job_on_one_socket_when_it_fits(self) -> None:
        """2 sockets × 4 cores × 2 threads: 4 CPUs = the 4 cores of socket 0, no sibling."""
        alloc = CoreAllocator(TWO_SOCKETS)
        assert alloc.allocate(1, 4) == (0, 1, 2, 3)
        assert alloc.allocate(2, 4) == (4, 5, 6, 7)

    def test_pack_puts_a_4_cpu_job_on_one_numa_node_when_4_nodes(self) -> None:
        """EPYC NPS4-like: each 4-CPU job gets a NUMA node of its own."""
        alloc = CoreAllocator(FOUR_NODES)
        got = [alloc.allocate(j, 4) for j in range(1, 5)]
        assert got == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11), (12, 13, 14, 15)]

    def test_pack_chooses_the_fullest_node_that_fits_when_several_have_room(self) -> None:
        """Best fit: a small job fills a partly used node and leaves whole nodes whole."""
        alloc = CoreAllocator(FOUR_NODES)
        assert alloc.allocate(1, 3) == (0, 1, 2)
        assert alloc.allocate(2, 2) == (4, 5)
        assert alloc.allocate(3, 1) == (3,)
        assert alloc.allocate(4, 2) == (6, 7)
        assert alloc.allocate(5, 4) == (8, 9, 10, 11)

    def test_pack_chooses_the_fullest_socket_that_fits_when_several_have_room(self) -> None:
        """2 on socket 0, 3 must go to socket 1, then 2 fit the 2 left on socket 0."""
        alloc = CoreAllocator(TWO_SOCKETS)
        assert alloc.allocate(1, 2) == (0, 1)
        assert alloc.allocate(2, 3) == (4, 5, 6)
        assert alloc.allocate(3, 2) == (2, 3)
        assert alloc.free_count() == 1

    def test_pack_spans_the_fewest_nodes_when_no_node_has_room(self) -> None:
        """6 CPUs on 4 nodes with 1, 2, 0, 4 free: the 4 and the 2, not three nodes."""
        alloc = CoreAllocator(FOUR_NODES)
        assert alloc.restore(9, [0, 1, 2, 4, 5, 8, 9, 10, 11])
        assert alloc.allocate(1, 6) == (6, 7, 12, 13, 14, 15)

    def test_pack_spans_two_sockets_when_the_job_is_bigger_than_a_socket(self) -> None:
        """6 CPUs on 2 × 4 cores: a whole socket plus 2 cores of the other."""
        alloc = CoreAllocator(TWO_SOCKETS)
        got = cpus_of(TWO_SOCKETS, alloc.allocate(1, 6))
        assert Counter(c.socket for c in got) == {0: 4, 1: 2}
        assert len({c.core for c in got}) == 6

    def test_pack_uses_the_fewest_sockets_when_four_sockets_are_partly_busy(self) -> None:
        """Free 2, 3, 1, 4 on sockets 0-3: a 6-CPU job takes socket 3 whole and the best
        fitting socket for the other 2 (socket 0), never three sockets."""
        alloc = CoreAllocator(FOUR_SOCKETS)
        assert alloc.restore(9, [0, 1, 4, 8, 9, 10])
        got = cpus_of(FOUR_SOCKETS, alloc.allocate(1, 6))
        assert Counter(c.socket for c in got) == {3: 4, 0: 2}

    def test_pack_refuses_more_cpus_than_physical_cores_when_siblings_are_not_used(self) -> None:
        """16 threads, 8 cores: a 9-CPU job can never start; 8 takes every core once."""
        alloc = CoreAllocator(TWO_SOCKETS)
        assert alloc.usable_count == 8
        assert alloc.allocate(1, 9) is None
        assert alloc.allocate(1, 8) == tuple(range(8))


class TestSpread:
    """Spread: round-robin over sockets by free cores, then over NUMA nodes."""

    def test_spread_balances_a_job_over_the_sockets_when_both_are_free(self) -> None:
        """4 CPUs on 2 sockets: 2 + 2, one thread per core."""
        alloc = CoreAllocator(TWO_SOCKETS, placement="spread")
        assert alloc.allocate(1, 4) == (0, 1, 4, 5)

    def test_spread_gives_the_extra_cpu_to_the_freer_socket_when_uneven(self) -> None:
        """Socket 0 has 1 free core, socket 1 has 4: 3 CPUs go 2 to socket 1, 1 to socket 0."""
        alloc = CoreAllocator(TWO_SOCKETS, placement="spread")
        assert alloc.restore(9, [0, 1, 2])
        got = cpus_of(TWO_SOCKETS, alloc.allocate(1, 3))
        assert Counter(c.socket for c in got) == {1: 2, 0: 1}

    def test_spread_fills_the_other_socket_when_one_socket_is_full(self) -> None:
        """A socket with no free core is skipped: the rest goes where there is room."""
        alloc = CoreAllocator(TWO_SOCKETS, placement="spread")
        assert alloc.restore(9, [0, 1, 2, 3])
        assert alloc.allocate(1, 3) == (4, 5, 6)

    def test_spread_deals_over_numa_nodes_when_one_socket_has_four(self) -> None:
        """EPYC NPS4-like: 4 CPUs = one per node; 8 CPUs = two per node."""
        alloc = CoreAllocator(FOUR_NODES, placement="spread")
        assert alloc.allocate(1, 4) == (0, 4, 8, 12)
        assert alloc.allocate(2, 8) == (1, 2, 5, 6, 9, 10, 13, 14)

    def test_allocator_rejects_an_unknown_placement_when_built(self) -> None:
        """Only "pack" and "spread" exist."""
        with pytest.raises(ValueError, match="placement 'fill'"):
            CoreAllocator(NOHT, placement="fill")


class TestSiblings:
    """One logical CPU per physical core unless use_siblings."""

    def test_allocate_waits_rather_than_doubling_up_when_every_core_is_busy(self) -> None:
        """4 cores booked, 4 sibling threads free: a 1-CPU job waits (free_count is 0)."""
        alloc = CoreAllocator(HT)
        assert alloc.allocate(1, 4) == (0, 1, 2, 3)
        assert alloc.free_count() == 0
        assert alloc.allocate(2, 1) is None

    def test_allocate_treats_a_core_as_busy_when_a_restored_job_holds_its_sibling(self) -> None:
        """A re-adopted job on CPU 4 (sibling of 0) keeps core 0 from new jobs."""
        alloc = CoreAllocator(HT)
        assert alloc.restore(9, [4])
        assert alloc.free_count() == 3
        assert alloc.allocate(1, 3) == (1, 2, 3)

    def test_allocate_takes_both_threads_of_a_core_first_when_siblings_are_used(self) -> None:
        """use_siblings: 2 CPUs = the two threads of core 0; 4 = two whole cores."""
        alloc = CoreAllocator(HT, use_siblings=True)
        assert alloc.allocate(1, 2) == (0, 4)
        assert alloc.allocate(2, 4) == (1, 2, 5, 6)
        assert alloc.free_count() == 2 and alloc.usable_count == 8

    def test_allocate_takes_whole_cores_when_siblings_are_adjacent(self) -> None:
        """Windows numbering with use_siblings: (0, 1) then (2, 3) on socket 0; 10 CPUs then
        take socket 1 whole and one whole core left on socket 0."""
        alloc = CoreAllocator(WINDOWS_2S, use_siblings=True)
        assert alloc.allocate(1, 4) == (0, 1, 2, 3)
        assert alloc.allocate(2, 10) == (4, 5, 8, 9, 10, 11, 12, 13, 14, 15)

    def test_allocate_skips_the_lone_thread_when_a_sibling_is_offline(self) -> None:
        """CPU 5 offline: core 1 has one thread; 4 jobs of one core each still get 4 cores."""
        alloc = CoreAllocator(OFFLINE)
        assert alloc.usable_count == 4
        assert alloc.allocate(1, 4) == (0, 1, 2, 3)
        assert alloc.allocate(2, 1) is None


class TestMaxUsableOnShapes:
    """`[cores] max_usable` / --max-cores keeps the first N CPUs in hand-out order."""

    def test_max_usable_keeps_one_socket_first_threads_when_4_of_2_sockets(self) -> None:
        """max 4 on 2 × 4 × 2: socket 0's four cores, nothing of socket 1."""
        alloc = CoreAllocator(TWO_SOCKETS, max_usable=4)
        assert alloc.usable == (0, 1, 2, 3)
        assert alloc.allocate(1, 5) is None

    def test_max_usable_adds_siblings_only_after_every_core_when_10_of_16(self) -> None:
        """max 10: every core's first thread, then the siblings of socket 0's first two cores."""
        alloc = CoreAllocator(TWO_SOCKETS, max_usable=10)
        assert set(alloc.usable) == set(range(8)) | {8, 9}
        assert alloc.usable_count == 8
        assert CoreAllocator(TWO_SOCKETS, max_usable=10, use_siblings=True).usable_count == 10

    def test_pack_uses_whole_nodes_when_max_usable_cuts_a_node(self) -> None:
        """max 6 on 4 NUMA nodes: CPUs 0-5; a 4-CPU job gets node 0, a 2-CPU job node 1."""
        alloc = CoreAllocator(FOUR_NODES, max_usable=6)
        assert alloc.usable == (0, 1, 2, 3, 4, 5)
        assert alloc.allocate(1, 4) == (0, 1, 2, 3)
        assert alloc.allocate(2, 2) == (4, 5)
        assert alloc.allocate(3, 1) is None


# -- properties over every shape ---------------------------------------------------------


def free_units(alloc: CoreAllocator) -> dict[tuple[int, int], int]:
    """Free units per (socket, numa_node), computed from the outside: free usable CPUs with
    use_siblings, else usable physical cores none of whose threads is booked."""
    booked = alloc.snapshot()
    cpu = {c.index: c for c in alloc.topology.cpus}
    out: Counter[tuple[int, int]] = Counter()
    if alloc.use_siblings:
        for i in alloc.usable:
            if i not in booked:
                out[(cpu[i].socket, cpu[i].numa_node)] += 1
        return dict(out)
    busy = {cpu[i].core for i in booked}
    for core in {cpu[i].core for i in alloc.usable} - busy:
        first = next(cpu[i] for i in alloc.usable if cpu[i].core == core)
        out[(first.socket, first.numa_node)] += 1
    return dict(out)


def fewest_groups(sizes: list[int], n: int) -> int:
    total, count = 0, 0
    for size in sorted(sizes, reverse=True):
        if total >= n:
            break
        total, count = total + size, count + 1
    return count


OPS = st.lists(st.tuples(st.sampled_from(["allocate", "release"]), st.integers(1, 17)), max_size=20)


class TestPlacementProperties:
    """Random launches and ends on every shape, both placements, with and without siblings."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        name=st.sampled_from(sorted(SHAPES)), placement=st.sampled_from(["pack", "spread"]),
        use_siblings=st.booleans(), limit=st.none() | st.integers(0, 17), ops=OPS,
    )
    def test_allocations_follow_the_placement_rules_when_operations_are_random(
        self, name: str, placement: str, use_siblings: bool, limit: int | None,
        ops: list[tuple[str, int]],
    ) -> None:
        """No CPU booked twice; a job gets exactly n CPUs iff n <= free_count; no two
        threads of one core unless use_siblings; pack uses one node when one had room, else
        one socket when one had room, else the fewest sockets; spread keeps sockets within
        one CPU of each other unless a socket ran out."""
        topology = SHAPES[name]
        alloc = CoreAllocator(topology, max_usable=limit, placement=placement, use_siblings=use_siblings)
        cpu = {c.index: c for c in topology.cpus}
        held: dict[int, tuple[int, ...]] = {}
        next_job = 1
        for op, n in ops:
            if op == "release":
                if held:
                    job = sorted(held)[n % len(held)]
                    assert alloc.release(job) == held.pop(job)
                continue
            before = free_units(alloc)
            assert alloc.free_count() == sum(before.values())
            got = alloc.allocate(next_job, n)
            if n > sum(before.values()):
                assert got is None
                continue
            assert got is not None and len(got) == n == len(set(got)) and list(got) == sorted(got)
            assert not set(got) & {c for cs in held.values() for c in cs}, "a CPU booked twice"
            cores = [cpu[i].core for i in got]
            if not use_siblings:
                assert len(set(cores)) == n, "two threads of one core"
                assert not set(cores) & {cpu[i].core for cs in held.values() for i in cs}
            nodes = Counter((cpu[i].socket, cpu[i].numa_node) for i in got)
            sockets = Counter(cpu[i].socket for i in got)
            per_socket: Counter[int] = Counter()
            for (s, _), k in before.items():
                per_socket[s] += k
            if placement == "pack":
                if max(before.values()) >= n:
                    assert len(nodes) == 1, f"{n} CPUs over nodes {dict(nodes)}; free {before}"
                elif max(per_socket.values()) >= n:
                    assert len(sockets) == 1
                else:
                    assert len(sockets) == fewest_groups(list(per_socket.values()), n)
            else:
                for s in sockets.keys() | per_socket.keys():
                    for t in per_socket:
                        if sockets[s] > sockets[t] + 1:
                            assert sockets[t] == per_socket[t], f"socket {t} left idle: {sockets}"
            held[next_job] = got
            next_job += 1
            assert alloc.snapshot() == {c: j for j, cs in held.items() for c in cs}

    @settings(max_examples=200, deadline=None)
    @given(
        name=st.sampled_from(sorted(SHAPES)), placement=st.sampled_from(["pack", "spread"]),
        use_siblings=st.booleans(), booked=st.lists(st.integers(0, 17), max_size=6),
        sizes=st.lists(st.integers(1, 8), max_size=6),
    )
    def test_jobs_that_fit_free_count_all_start_when_admitted_together(
        self, name: str, placement: str, use_siblings: bool, booked: list[int], sizes: list[int]
    ) -> None:
        """The scheduler admits jobs while their sizes add up to free_count(): every one of
        them is then placed, whatever was booked (even siblings, by restore) before."""
        alloc = CoreAllocator(SHAPES[name], placement=placement, use_siblings=use_siblings)
        alloc.restore(99, [c for c in booked if c in alloc.usable])
        free = alloc.free_count()
        admitted = []
        for size in sizes:
            if size <= free:
                admitted.append(size)
                free -= size
        for job, size in enumerate(admitted, start=1):
            assert alloc.allocate(job, size) is not None, (admitted, alloc.snapshot())
        assert alloc.free_count() == free
