"""contract.md § Methods `getCoreAllocationStatus`, § Configuration `[cores] max_usable`:
the topology's hand-out order and the allocator's booking rules.

Topologies are built from `Cpu` records the way `serv.topology` reads them from the OS,
with the two numbering schemes seen in practice: Linux numbers every core's first thread
before any second thread (siblings i and i+N), Windows numbers siblings next to each other.
"""

from __future__ import annotations

from typing import Sequence

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    run_state_machine_as_test,
    initialize,
    invariant,
    rule,
)

from serv.core.cores import CoreAllocator, Cpu, Topology


def ht_topology(sockets: int, cores: int, threads: int, *, adjacent: bool = False) -> Topology:
    """`sockets` × `cores` × `threads`; core ids restart at 0 on every socket as on Linux.

    adjacent=False: CPU index = thread * (sockets * cores) + socket * cores + core (Linux).
    adjacent=True: CPU index = (socket * cores + core) * threads + thread (Windows).
    """
    physical = sockets * cores

    def index(s: int, c: int, t: int) -> int:
        p = s * cores + c
        return p * threads + t if adjacent else t * physical + p

    cpus = []
    for s in range(sockets):
        for c in range(cores):
            siblings = tuple(sorted(index(s, c, t) for t in range(threads)))
            for t in range(threads):
                cpus.append(Cpu(index=index(s, c, t), core_id=c, socket=s, numa_node=s,
                                siblings=siblings))
    return Topology(tuple(sorted(cpus, key=lambda cpu: cpu.index)))


ONE_SOCKET_HT = ht_topology(1, 4, 2)                      # CPUs 0-3 first threads, 4-7 siblings
ONE_SOCKET_HT_ADJACENT = ht_topology(1, 4, 2, adjacent=True)  # (0,1) (2,3) (4,5) (6,7)
TWO_SOCKETS_HT = ht_topology(2, 2, 2)                      # s0: 0,1 | s1: 2,3 | siblings +4


def physical_of(topology: Topology, index: int) -> tuple[int, int]:
    cpu = next(c for c in topology.cpus if c.index == index)
    return cpu.socket, cpu.core_id


class TestTopology:
    """contract.md § Methods `getCoreAllocationStatus`: physical vs logical cores."""

    def test_counts_report_physical_and_logical_cores_when_hyper_threaded(self) -> None:
        """4 cores × 2 threads: 4 physical, 8 logical, hyper-threading on."""
        assert (ONE_SOCKET_HT.physical_cores, ONE_SOCKET_HT.logical_cores) == (4, 8)
        assert ONE_SOCKET_HT.hyper_threading
        assert (TWO_SOCKETS_HT.physical_cores, TWO_SOCKETS_HT.logical_cores) == (4, 8)
        assert not Topology.flat(4).hyper_threading

    def test_physical_cores_count_each_socket_when_core_ids_repeat(self) -> None:
        """Core id 0 on socket 0 and core id 0 on socket 1 are two physical cores."""
        assert ht_topology(2, 3, 1).physical_cores == 6

    def test_preference_order_hands_out_first_threads_first_when_siblings_are_offset(self) -> None:
        """Linux numbering: 0,1,2,3 (one per core) before their siblings 4,5,6,7."""
        assert ONE_SOCKET_HT.preference_order() == [0, 1, 2, 3, 4, 5, 6, 7]

    def test_preference_order_hands_out_first_threads_first_when_siblings_are_adjacent(self) -> None:
        """Windows numbering: 0,2,4,6 (one per core) before their siblings 1,3,5,7."""
        assert ONE_SOCKET_HT_ADJACENT.preference_order() == [0, 2, 4, 6, 1, 3, 5, 7]

    def test_preference_order_covers_every_socket_before_siblings_when_two_sockets(self) -> None:
        """Two sockets: all four physical cores, socket by socket, then the second threads."""
        order = TWO_SOCKETS_HT.preference_order()
        assert order == [0, 1, 2, 3, 4, 5, 6, 7]
        first_four = [physical_of(TWO_SOCKETS_HT, i) for i in order[:4]]
        assert first_four == [(0, 0), (0, 1), (1, 0), (1, 1)]

    @pytest.mark.parametrize(
        "topology",
        [ONE_SOCKET_HT, ONE_SOCKET_HT_ADJACENT, TWO_SOCKETS_HT, ht_topology(2, 3, 2, adjacent=True)],
        ids=["1x4x2", "1x4x2-adjacent", "2x2x2", "2x3x2-adjacent"],
    )
    def test_preference_order_gives_one_cpu_per_physical_core_when_taking_a_prefix(
        self, topology: Topology
    ) -> None:
        """The first `physical_cores` CPUs handed out sit on distinct physical cores."""
        order = topology.preference_order()
        assert sorted(order) == sorted(c.index for c in topology.cpus)
        head = order[: topology.physical_cores]
        assert len({physical_of(topology, i) for i in head}) == topology.physical_cores

    def test_preference_order_is_the_index_order_when_flat(self) -> None:
        """Without hyper-threading, CPUs go out in index order."""
        assert Topology.flat(5).preference_order() == [0, 1, 2, 3, 4]
        assert Topology(()).preference_order() == []


class TestMaxUsable:
    """contract.md § Configuration `[cores] max_usable`."""

    def test_allocator_uses_only_first_threads_when_max_usable_is_the_physical_count(self) -> None:
        """max_usable=4 on 4 cores × 2 threads leaves the siblings out."""
        alloc = CoreAllocator(ONE_SOCKET_HT_ADJACENT, max_usable=4)
        assert alloc.usable == (0, 2, 4, 6)
        assert alloc.usable_count == 4 and alloc.free_count() == 4
        assert alloc.allocate(1, 5) is None
        assert alloc.allocate(1, 4) == (0, 2, 4, 6)

    def test_allocator_uses_every_cpu_when_max_usable_exceeds_the_machine(self) -> None:
        """A limit above the logical count changes nothing; None means no limit. One job can
        get at most one CPU per physical core unless siblings are used."""
        for limit in (64, None):
            alloc = CoreAllocator(ONE_SOCKET_HT, max_usable=limit)
            assert len(alloc.usable) == 8 and alloc.usable_count == 4
            assert CoreAllocator(ONE_SOCKET_HT, max_usable=limit, use_siblings=True).usable_count == 8

    @pytest.mark.parametrize("limit", [0, -3])
    def test_allocator_books_nothing_when_max_usable_is_not_positive(self, limit: int) -> None:
        """A limit of zero (or below) leaves no usable CPU."""
        alloc = CoreAllocator(ONE_SOCKET_HT, max_usable=limit)
        assert alloc.usable == ()
        assert alloc.allocate(1, 1) is None


class TestAllocate:
    """contract.md § Methods `launch` (ncpu) and `getCoreAllocationStatus` (job_id per core)."""

    def test_allocate_books_sorted_cpus_in_preference_order_when_free(self) -> None:
        """Two jobs get disjoint CPUs, first threads first, each list sorted; a job never
        takes the sibling of a booked core, so the second waits for a whole core."""
        alloc = CoreAllocator(ONE_SOCKET_HT_ADJACENT)
        assert alloc.allocate(1, 3) == (0, 2, 4)
        assert alloc.free_count() == 1
        assert alloc.allocate(2, 3) is None
        assert alloc.allocate(2, 1) == (6,)
        assert alloc.snapshot() == {0: 1, 2: 1, 4: 1, 6: 2}
        assert alloc.free_count() == 0

    def test_allocate_books_both_threads_of_a_core_when_siblings_are_used(self) -> None:
        """use_siblings: two jobs get disjoint CPUs, whole cores first, each list sorted."""
        alloc = CoreAllocator(ONE_SOCKET_HT_ADJACENT, use_siblings=True)
        assert alloc.allocate(1, 3) == (0, 1, 2)
        assert alloc.allocate(2, 3) == (3, 4, 5)
        assert alloc.snapshot() == {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 2}
        assert alloc.free_count() == 2

    def test_allocate_returns_none_and_books_nothing_when_too_few_are_free(self) -> None:
        """A request above the free count is refused whole, never partly booked."""
        alloc = CoreAllocator(Topology.flat(4))
        alloc.allocate(1, 3)
        assert alloc.allocate(2, 2) is None
        assert alloc.snapshot() == {0: 1, 1: 1, 2: 1}

    @pytest.mark.parametrize("n", [0, -1])
    def test_allocate_returns_none_when_the_count_is_not_positive(self, n: int) -> None:
        """Zero or negative CPU counts book nothing."""
        alloc = CoreAllocator(Topology.flat(4))
        assert alloc.allocate(1, n) is None
        assert alloc.snapshot() == {}

    def test_allocate_returns_the_held_cpus_when_the_job_already_holds_some(self) -> None:
        """Allocating again for the same job is idempotent: same CPUs, nothing more booked."""
        alloc = CoreAllocator(Topology.flat(8))
        first = alloc.allocate(1, 2)
        assert alloc.allocate(1, 2) == first
        assert alloc.free_count() == 6

    def test_release_frees_the_job_cpus_when_it_holds_some(self) -> None:
        """Release returns the freed CPUs; a second release returns nothing (idempotent)."""
        alloc = CoreAllocator(Topology.flat(4))
        alloc.allocate(1, 2)
        alloc.allocate(2, 1)
        assert alloc.release(1) == (0, 1)
        assert alloc.release(1) == ()
        assert alloc.snapshot() == {2: 2}
        assert alloc.holder(0) is None and alloc.holder(2) == 2


class TestRestore:
    """contract.md § Files `pid` (line 2 `{"cores": [..]}`): re-adopted jobs keep their CPUs."""

    def test_restore_books_exactly_the_cores_when_they_are_free(self) -> None:
        """A restart gives the job back the very CPUs it had, even out of preference order."""
        alloc = CoreAllocator(Topology.flat(8))
        assert alloc.restore(5, [6, 3])
        assert alloc.snapshot() == {3: 5, 6: 5}
        assert alloc.allocate(6, 2) == (0, 1)

    def test_restore_replaces_the_job_cores_when_it_already_holds_others(self) -> None:
        """Cores the job held but that are not in the list are freed."""
        alloc = CoreAllocator(Topology.flat(8))
        alloc.allocate(1, 2)
        assert alloc.restore(1, [1, 5])
        assert alloc.snapshot() == {1: 1, 5: 1}

    def test_restore_refuses_when_a_core_is_held_by_another_job(self) -> None:
        """A CPU already booked to another job is never taken from it."""
        alloc = CoreAllocator(Topology.flat(4))
        alloc.allocate(1, 2)
        assert not alloc.restore(2, [1, 2])
        assert alloc.snapshot() == {0: 1, 1: 1}

    @pytest.mark.parametrize("cores", [[3, 9], [-1], [4]], ids=["beyond", "negative", "over-limit"])
    def test_restore_refuses_when_a_core_is_not_usable(self, cores: list[int]) -> None:
        """CPUs that do not exist, or that max_usable leaves out, are refused."""
        alloc = CoreAllocator(Topology.flat(8), max_usable=4)
        assert not alloc.restore(1, cores)
        assert alloc.snapshot() == {}

    def test_restore_refuses_when_the_list_is_empty(self) -> None:
        """An empty list restores nothing."""
        alloc = CoreAllocator(Topology.flat(4))
        assert not alloc.restore(1, [])


class TestRestoreFirst:
    """contract.md § Files `pid`; issue #3 item 11: pid file first, then database, then fresh."""

    def test_restore_first_uses_the_first_candidate_when_it_fits(self) -> None:
        """The pid file's cores win when they are free and the right count."""
        alloc = CoreAllocator(Topology.flat(8))
        got = alloc.restore_first(1, 2, [("pid file", [4, 5]), ("database", [6, 7])])
        assert got == ((4, 5), "pid file")
        assert alloc.snapshot() == {4: 1, 5: 1}

    def test_restore_first_falls_back_to_the_next_candidate_when_the_first_is_taken(self) -> None:
        """Cores held by another job are skipped for the next source."""
        alloc = CoreAllocator(Topology.flat(8))
        alloc.restore(9, [4])
        got = alloc.restore_first(1, 2, [("pid file", [4, 5]), ("database", [6, 7])])
        assert got == ((6, 7), "database")
        assert alloc.snapshot() == {4: 9, 6: 1, 7: 1}

    @pytest.mark.parametrize(
        "candidates",
        [
            [("pid file", None), ("database", None)],
            [("pid file", [1]), ("database", [1, 2, 3])],
            [("pid file", [2, 2])],
            [("pid file", [8, 9])],
        ],
        ids=["missing", "wrong-count", "duplicates", "not-usable"],
    )
    def test_restore_first_skips_a_candidate_when_it_cannot_be_restored(
        self, candidates: list[tuple[str, Sequence[int] | None]]
    ) -> None:
        """Missing lists, wrong counts, repeated or unusable CPUs all lead to a fresh allocation."""
        alloc = CoreAllocator(Topology.flat(8))
        cores, source = alloc.restore_first(1, 2, candidates)
        assert source == "fresh allocation"
        assert cores == (0, 1)
        assert alloc.snapshot() == {0: 1, 1: 1}

    def test_restore_first_reports_fresh_allocation_with_no_cores_when_nothing_is_free(self) -> None:
        """With no candidate fitting and too few free CPUs, cores is None."""
        alloc = CoreAllocator(Topology.flat(2))
        alloc.allocate(9, 2)
        assert alloc.restore_first(1, 2, [("pid file", [0, 1])]) == (None, "fresh allocation")
        assert alloc.snapshot() == {0: 9, 1: 9}


# -- property: no sequence of operations ever double-books or books an unusable CPU --------

JOBS = st.integers(min_value=1, max_value=5)
CORE_LISTS = st.lists(st.integers(min_value=-1, max_value=17), max_size=5)


class AllocatorMachine(RuleBasedStateMachine):
    """Random allocate / release / restore / restore_first on a random topology, checked
    against a model of which job holds which CPUs."""

    def __init__(self) -> None:
        super().__init__()
        self.alloc: CoreAllocator | None = None
        self.model: dict[int, frozenset[int]] = {}
        self.sockets = 1

    @initialize(
        sockets=st.integers(1, 2), cores=st.integers(1, 4), threads=st.integers(1, 2),
        adjacent=st.booleans(), limit=st.none() | st.integers(-1, 17),
        placement=st.sampled_from(["pack", "spread"]), use_siblings=st.booleans(),
    )
    def build(self, sockets: int, cores: int, threads: int, adjacent: bool, limit: int | None,
              placement: str, use_siblings: bool) -> None:
        topology = ht_topology(sockets, cores, threads, adjacent=adjacent)
        self.sockets = sockets
        self.alloc = CoreAllocator(topology, max_usable=limit, placement=placement,
                                   use_siblings=use_siblings)
        expected = topology.preference_order()
        if limit is not None:
            expected = expected[: max(0, limit)]
        assert self.alloc.usable == tuple(expected)

    @property
    def a(self) -> CoreAllocator:
        assert self.alloc is not None
        return self.alloc

    def booked(self) -> set[int]:
        return set().union(*self.model.values()) if self.model else set()

    def offered(self) -> list[int]:
        """What a fresh job may be given, in the order it is given: every free usable CPU
        with use_siblings (a core's threads together), else the first usable thread of each
        core none of whose threads is booked (one CPU per physical core, never a booked
        core's sibling)."""
        booked = self.booked()
        core_of = {c.index: c.core for c in self.a.topology.cpus}
        if self.a.use_siblings:
            # Whole cores first: cores in the order their first thread goes out, then
            # each core's free threads together.
            rank = {core: r for r, core in enumerate(dict.fromkeys(core_of[c] for c in self.a.usable))}
            free = [c for c in self.a.usable if c not in booked]
            return sorted(free, key=lambda c: rank[core_of[c]])
        busy = {core_of[c] for c in booked}
        out: list[int] = []
        seen: set[tuple[int, int]] = set()
        for cpu in self.a.usable:
            if core_of[cpu] not in busy and core_of[cpu] not in seen:
                seen.add(core_of[cpu])
                out.append(cpu)
        return out

    @rule(job=JOBS, n=st.integers(-1, 10))
    def allocate(self, job: int, n: int) -> None:
        held = self.model.get(job)
        offered = self.offered()
        got = self.a.allocate(job, n)
        if held:
            assert got == tuple(sorted(held))
            return
        if n < 1 or n > len(offered):
            assert got is None
            return
        assert got is not None and len(got) == n and list(got) == sorted(got)
        assert set(got) <= set(offered)
        if self.sockets == 1 and self.a.placement == "pack":
            # One socket, one NUMA node: the n first offered CPUs in hand-out order, sorted.
            assert got == tuple(sorted(offered[:n]))
        self.model[job] = frozenset(got)

    @rule(job=JOBS)
    def release(self, job: int) -> None:
        assert set(self.a.release(job)) == set(self.model.pop(job, frozenset()))

    @rule(job=JOBS, cores=CORE_LISTS)
    def restore(self, job: int, cores: list[int]) -> None:
        others = self.booked() - self.model.get(job, frozenset())
        wanted = set(cores)
        fits = bool(wanted) and wanted <= set(self.a.usable) and not wanted & others
        assert self.a.restore(job, cores) is fits
        if fits:
            self.model[job] = frozenset(wanted)

    @rule(job=JOBS, n=st.integers(1, 6), first=st.none() | CORE_LISTS, second=st.none() | CORE_LISTS)
    def restore_first(self, job: int, n: int, first: list[int] | None, second: list[int] | None) -> None:
        cores, source = self.a.restore_first(job, n, [("pid file", first), ("database", second)])
        held = self.a.snapshot()
        now = frozenset(c for c, j in held.items() if j == job)
        if cores is None:
            assert source == "fresh allocation"
            assert not now
            self.model.pop(job, None)
            return
        assert source in {"pid file", "database", "fresh allocation"}
        assert set(cores) == now and len(cores) == len(now), "reported cores are the booked ones"
        if source != "fresh allocation":
            assert len(cores) == n
            assert list(cores) == sorted({"pid file": first, "database": second}[source] or [])
        self.model[job] = now

    @invariant()
    def books_match_the_model(self) -> None:
        if self.alloc is None:
            return
        snapshot = self.a.snapshot()
        expected = {c: j for j, cs in self.model.items() for c in cs}
        assert snapshot == expected

    @invariant()
    def never_books_a_cpu_twice(self) -> None:
        held = [c for cs in self.model.values() for c in cs]
        assert len(held) == len(set(held))

    @invariant()
    def books_only_usable_cpus(self) -> None:
        if self.alloc is not None:
            assert set(self.a.snapshot()) <= set(self.a.usable)

    @invariant()
    def free_count_is_what_a_fresh_job_may_be_given(self) -> None:
        if self.alloc is not None:
            assert self.a.free_count() == len(self.offered())


class TestAllocatorProperty:
    """contract.md § Methods `getCoreAllocationStatus`: one job per CPU, usable CPUs only."""

    def test_allocator_keeps_one_job_per_usable_cpu_when_operations_are_random(self) -> None:
        """No sequence of allocate/release/restore books a CPU twice or an unusable one,
        and free_count is always what a fresh job may be given (usable − booked, counted
        in whole free cores unless siblings are used)."""
        run_state_machine_as_test(
            AllocatorMachine,
            settings=settings(max_examples=150, stateful_step_count=25, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow]),
        )
