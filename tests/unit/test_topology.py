"""Issue #5 item 1 (real topology), contract.md § Methods `getCoreAllocationStatus`:
sockets, NUMA nodes, physical cores and siblings as the OS reports them.

Linux: `serv.topology.read_sysfs` on the synthetic sysfs trees under tests/data/sysfs
(tests/data/sysfs/README.md: laid out like real machine shapes, not recordings) and on this
machine's own /sys. Windows: `serv.platform.windows_topology.parse_slpi_ex` on
GetLogicalProcessorInformationEx buffers built here byte by byte with `struct`, following
the documented layouts (winnt.h) rather than the module's own ctypes structures.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import sys
from pathlib import Path
from types import ModuleType

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serv.core.cores import Topology
from serv.platform import windows_topology as wt
from serv.topology import SYSFS_CPU, SYSFS_NODE, parse_cpu_list, read_sysfs, read_topology

DATA = Path(__file__).resolve().parent.parent / "data" / "sysfs"


def _load_make_shapes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_shapes", DATA / "make_shapes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_shapes", module)  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


make_shapes = _load_make_shapes()


def shape(name: str, allowed: set[int] | None = None) -> Topology:
    topology = read_sysfs(DATA / name / "cpu", DATA / name / "node", allowed=allowed)
    assert topology is not None
    return topology


def rows(topology: Topology) -> list[tuple[int, int, int, int, tuple[int, ...]]]:
    """(index, socket, core_id, numa_node, siblings) per CPU, by index."""
    return [(c.index, c.socket, c.core_id, c.numa_node, c.siblings)
            for c in sorted(topology.cpus, key=lambda c: c.index)]


class TestParseCpuList:
    """Linux cpulist format (Documentation/admin-guide/cputopology.rst)."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [("0", [0]), ("0-3", [0, 1, 2, 3]), ("0-3,8-11\n", [0, 1, 2, 3, 8, 9, 10, 11]),
         ("0,4", [0, 4]), ("0-4,6-7", [0, 1, 2, 3, 4, 6, 7]), ("", [])],
    )
    def test_parse_cpu_list_expands_ranges_when_given_kernel_text(self, text: str, expected: list[int]) -> None:
        """Ranges and single CPUs, with the trailing newline sysfs writes."""
        assert parse_cpu_list(text) == expected

    @given(st.sets(st.integers(0, 300)))
    def test_generator_cpu_list_round_trips_through_the_parser_when_any_set(self, cpus: set[int]) -> None:
        """make_shapes.cpu_list writes what parse_cpu_list reads back (so the trees are sound)."""
        assert parse_cpu_list(make_shapes.cpu_list(sorted(cpus))) == sorted(cpus)


class TestSysfsShapes:
    """Each synthetic tree is read with the right sockets, nodes, core ids and siblings."""

    def test_read_sysfs_reads_one_socket_without_smt_when_1s_4c_noht(self) -> None:
        """4 CPUs, 4 cores, each its own sibling, one socket and node."""
        topo = shape("1s-4c-noht")
        assert rows(topo) == [(i, 0, i, 0, (i,)) for i in range(4)]
        assert (topo.physical_cores, topo.logical_cores, topo.hyper_threading) == (4, 4, False)

    def test_read_sysfs_pairs_i_with_i_plus_4_when_1s_4c_ht(self) -> None:
        """Linux numbering: CPU i and i+4 are the two threads of core i."""
        topo = shape("1s-4c-ht")
        assert rows(topo) == [(i, 0, i % 4, 0, (i % 4, i % 4 + 4)) for i in range(8)]
        assert (topo.physical_cores, topo.logical_cores, topo.hyper_threading) == (4, 8, True)

    def test_read_sysfs_reads_two_sockets_with_a_node_each_when_2s_8c_ht(self) -> None:
        """Socket 0 = CPUs 0-3 and 8-11, socket 1 = 4-7 and 12-15; core ids restart per socket."""
        topo = shape("2s-8c-ht")
        expected = []
        for i in range(16):
            socket = (i % 8) // 4
            core = i % 4
            first = socket * 4 + core
            expected.append((i, socket, core, socket, (first, first + 8)))
        assert rows(topo) == expected
        assert topo.sockets == (0, 1) and topo.numa_nodes == (0, 1)
        assert (topo.physical_cores, topo.logical_cores) == (8, 16)

    def test_physical_cores_count_repeated_core_ids_on_each_socket_when_2s_8c_ht(self) -> None:
        """core_id 0 exists on both sockets: they are two physical cores."""
        topo = shape("2s-8c-ht")
        assert {c.core_id for c in topo.cpus} == {0, 1, 2, 3}
        assert topo.physical_cores == 8

    def test_read_sysfs_reads_four_nodes_in_one_socket_when_4numa_16c(self) -> None:
        """Node k holds CPUs 4k..4k+3 on the single socket."""
        topo = shape("4numa-16c")
        assert rows(topo) == [(i, 0, i, i // 4, (i,)) for i in range(16)]
        assert topo.sockets == (0,) and topo.numa_nodes == (0, 1, 2, 3)

    def test_read_sysfs_skips_an_offline_cpu_when_online_leaves_it_out(self) -> None:
        """CPU 5 is offline: absent, and its sibling 1 is a core of one thread."""
        topo = shape("offline")
        assert [c.index for c in topo.cpus] == [0, 1, 2, 3, 4, 6, 7]
        by_index = {c.index: c for c in topo.cpus}
        assert by_index[1].siblings == (1,)
        assert by_index[0].siblings == (0, 4)
        assert (topo.physical_cores, topo.logical_cores) == (4, 7)

    def test_read_sysfs_ignores_an_offline_cpu_when_a_stale_list_still_names_it(self, tmp_path: Path) -> None:
        """A node cpulist or sibling list naming offline CPU 5 does not bring it back."""
        root = make_shapes.write_shape(make_shapes.SHAPES["offline"], tmp_path / "t")
        (root / "node" / "node0" / "cpulist").write_text("0-7\n")
        (root / "cpu" / "cpu1" / "topology" / "thread_siblings_list").write_text("1,5\n")
        topo = read_sysfs(root / "cpu", root / "node")
        assert topo is not None
        assert 5 not in {c.index for c in topo.cpus}
        assert {c.index: c for c in topo.cpus}[1].siblings == (1,)

    @pytest.mark.parametrize(
        ("name", "allowed", "expected"),
        [("2s-8c-ht", {4, 5, 12}, [4, 5, 12]), ("1s-4c-ht", {0, 1, 2, 3}, [0, 1, 2, 3]),
         ("offline", {5, 6}, [6]), ("4numa-16c", set(), None)],
    )
    def test_read_sysfs_keeps_only_allowed_cpus_when_given_an_affinity_mask(
        self, name: str, allowed: set[int], expected: list[int] | None
    ) -> None:
        """CPUs outside the daemon's affinity mask are left out (None when none is left)."""
        topo = read_sysfs(DATA / name / "cpu", DATA / name / "node", allowed=allowed)
        assert (None if topo is None else [c.index for c in topo.cpus]) == expected

    def test_read_sysfs_keeps_os_siblings_when_the_mask_excludes_one(self) -> None:
        """An excluded sibling is still listed: the status shows what shares the core."""
        topo = shape("1s-4c-ht", allowed={0, 1, 2, 3})
        assert {c.index: c.siblings for c in topo.cpus}[0] == (0, 4)
        assert not topo.hyper_threading

    def test_read_sysfs_takes_nodes_from_cpu_links_when_the_node_tree_is_missing(self, tmp_path: Path) -> None:
        """Without node/nodeM/cpulist, the cpuN/nodeM entries name each CPU's node."""
        root = make_shapes.write_shape(make_shapes.SHAPES["4numa-16c"], tmp_path / "t")
        shutil.rmtree(root / "node")
        for i in range(16):
            (root / "cpu" / f"cpu{i}" / f"node{i // 4}").symlink_to(tmp_path)
        topo = read_sysfs(root / "cpu", root / "node")
        assert topo is not None
        assert [c.numa_node for c in topo.cpus] == [i // 4 for i in range(16)]

    def test_read_sysfs_reads_core_cpus_list_when_thread_siblings_list_is_missing(self, tmp_path: Path) -> None:
        """Kernels that dropped the deprecated name still give siblings."""
        root = make_shapes.write_shape(make_shapes.SHAPES["1s-4c-ht"], tmp_path / "t")
        for path in (root / "cpu").glob("cpu*/topology/thread_siblings_list"):
            path.unlink()
        assert rows(read_sysfs(root / "cpu", root / "node") or Topology(())) == rows(shape("1s-4c-ht"))

    def test_read_sysfs_counts_each_cpu_as_a_core_when_its_topology_is_missing(self, tmp_path: Path) -> None:
        """An online CPU without topology files is its own core on socket 0 (logged)."""
        root = make_shapes.write_shape(make_shapes.SHAPES["1s-4c-ht"], tmp_path / "t")
        shutil.rmtree(root / "cpu" / "cpu6" / "topology")
        topo = read_sysfs(root / "cpu", root / "node")
        assert topo is not None
        assert {c.index: (c.socket, c.core_id, c.siblings) for c in topo.cpus}[6] == (0, 6, (6,))

    def test_read_sysfs_returns_none_when_online_is_missing(self, tmp_path: Path) -> None:
        """No `online` file: not a sysfs tree."""
        assert read_sysfs(tmp_path, tmp_path) is None

    @pytest.mark.parametrize("name", sorted(make_shapes.SHAPES))
    def test_checked_in_tree_matches_the_generator_when_regenerated(self, name: str, tmp_path: Path) -> None:
        """The folders under tests/data/sysfs are exactly what make_shapes.py writes."""
        fresh = make_shapes.write_shape(make_shapes.SHAPES[name], tmp_path / name)
        kept = DATA / name

        def files(root: Path) -> dict[str, str]:
            return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}

        assert files(kept) == files(fresh)


@pytest.mark.skipif(not (SYSFS_CPU / "online").exists(), reason="needs Linux sysfs")
class TestThisMachine:
    """This machine's own /sys/devices/system/cpu (lab-findings.md §8: 2 CPUs, no SMT)."""

    def test_read_sysfs_counts_match_psutil_when_reading_this_machine(self) -> None:
        """Logical and physical counts agree with psutil."""
        topo = read_sysfs(SYSFS_CPU, SYSFS_NODE)
        assert topo is not None
        assert topo.logical_cores == psutil.cpu_count(logical=True)
        assert topo.physical_cores == psutil.cpu_count(logical=False)
        assert all(c.index in c.siblings for c in topo.cpus)
        online = set(parse_cpu_list((SYSFS_CPU / "online").read_text()))
        assert {c.index for c in topo.cpus} == online

    def test_read_topology_offers_exactly_the_affinity_mask_when_reading_this_machine(self) -> None:
        """The daemon's topology is its own affinity mask, nothing more."""
        topo = read_topology()
        assert {c.index for c in topo.cpus} == set(os.sched_getaffinity(0))

    def test_read_sysfs_reads_numa_nodes_when_this_machine_has_a_node_tree(self) -> None:
        """Every CPU's node is one of the node folders."""
        topo = read_sysfs(SYSFS_CPU, SYSFS_NODE)
        assert topo is not None
        nodes = {int(p.name[4:]) for p in SYSFS_NODE.glob("node[0-9]*")} or {0}
        assert set(topo.numa_nodes) <= nodes


class TestFallback:
    """read_topology on an OS with neither sysfs nor Windows: a flat list, logged."""

    def test_read_topology_falls_back_to_a_flat_list_when_the_os_is_unknown(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One core per allowed CPU, one socket, one node, and an INFO line saying so."""
        monkeypatch.setattr(sys, "platform", "darwin")
        with caplog.at_level("INFO", logger="serv.topology"):
            topo = read_topology()
        expected = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        if expected is not None:
            assert [c.index for c in topo.cpus] == expected
        assert not topo.hyper_threading and topo.sockets == (0,) and topo.numa_nodes == (0,)
        assert "no CPU topology from the OS on darwin" in caplog.text


# -- Windows: GetLogicalProcessorInformationEx buffers, byte by byte -----------------------
# LOGICAL_PROCESSOR_RELATIONSHIP values (winnt.h), written out here on purpose.
CORE, NUMA, CACHE, PACKAGE, GROUP, NUMA_EX = 0, 1, 2, 3, 4, 6
LTP_PC_SMT = 1


def affinity(group: int, *bits: int) -> bytes:
    """GROUP_AFFINITY: KAFFINITY Mask (8 bytes on x64), WORD Group, WORD Reserved[3]."""
    return struct.pack("<QH6x", sum(1 << b for b in bits), group)


def record(kind: int, body: bytes) -> bytes:
    """SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX: Relationship DWORD, Size DWORD, union at 8."""
    return struct.pack("<II", kind, 8 + len(body)) + body


def processor(kind: int, *masks: bytes, flags: int = 0, efficiency: int = 0) -> bytes:
    """PROCESSOR_RELATIONSHIP: Flags BYTE, EfficiencyClass BYTE, Reserved[20], GroupCount
    WORD, GroupMask[GroupCount]."""
    return record(kind, struct.pack("<BB20xH", flags, efficiency, len(masks)) + b"".join(masks))


def core(group: int, *bits: int, efficiency: int = 0) -> bytes:
    return processor(CORE, affinity(group, *bits), flags=LTP_PC_SMT if len(bits) > 1 else 0,
                     efficiency=efficiency)


def numa(node: int, *masks: bytes, kind: int = NUMA, old: bool = False) -> bytes:
    """NUMA_NODE_RELATIONSHIP: NodeNumber DWORD, Reserved[18], GroupCount WORD, GroupMask[];
    before Windows 10 20H2: Reserved[20] and exactly one GroupMask."""
    if old:
        assert len(masks) == 1
        return record(kind, struct.pack("<I20x", node) + masks[0])
    return record(kind, struct.pack("<I18xH", node, len(masks)) + b"".join(masks))


def cache(group: int, *bits: int) -> bytes:
    """CACHE_RELATIONSHIP (Level, Associativity, LineSize, CacheSize, Type, Reserved[18],
    GroupCount, GroupMask): only stepped over by the parser."""
    return record(CACHE, struct.pack("<BBHII18xH", 2, 8, 64, 1 << 20, 0, 1) + affinity(group, *bits))


def group_record(*active: int) -> bytes:
    """GROUP_RELATIONSHIP (MaximumGroupCount, ActiveGroupCount, Reserved[20], GroupInfo[]):
    stepped over."""
    infos = b"".join(struct.pack("<BB38xQ", 64, n, (1 << n) - 1) for n in active)
    return record(GROUP, struct.pack("<HH20x", len(active), len(active)) + infos)


needs_64bit = pytest.mark.skipif(struct.calcsize("P") != 8, reason="KAFFINITY is 8 bytes on x64 only")


@needs_64bit
class TestWindowsBuffers:
    """GetLogicalProcessorInformationEx(RelationAll) buffers (learn.microsoft.com, winnt.h)."""

    def test_ctypes_structures_have_the_documented_offsets_when_defined(self) -> None:
        """GroupMask at 24 in both relationships, GROUP_AFFINITY 16 bytes."""
        assert wt.PROCESSOR_RELATIONSHIP.GroupCount.offset == 22
        assert wt.PROCESSOR_RELATIONSHIP.GroupMask.offset == 24
        assert wt.NUMA_NODE_RELATIONSHIP.GroupCount.offset == 22
        assert wt.NUMA_NODE_RELATIONSHIP.GroupMask.offset == 24
        assert len(affinity(0, 1)) == 16

    def test_parse_slpi_ex_pairs_adjacent_threads_when_one_package_has_smt(self) -> None:
        """4 cores × 2 threads numbered side by side (Windows style), caches in between."""
        buffer = (
            b"".join(core(0, 2 * c, 2 * c + 1) + cache(0, 2 * c, 2 * c + 1) for c in range(4))
            + numa(0, affinity(0, *range(8)))
            + processor(PACKAGE, affinity(0, *range(8)))
            + group_record(8)
        )
        topo = wt.parse_slpi_ex(buffer)
        assert rows(topo) == [(i, 0, i // 2, 0, (i - i % 2, i - i % 2 + 1)) for i in range(8)]
        assert topo.hyper_threading
        assert topo.preference_order() == [0, 2, 4, 6, 1, 3, 5, 7]

    def test_parse_records_reads_the_smt_flag_and_efficiency_class_when_present(self) -> None:
        """Flags LTP_PC_SMT on a two-thread core, none on a one-thread core."""
        records = wt.parse_records(core(0, 0, 1, efficiency=1) + core(0, 2))
        assert [(r.cpus, r.smt, r.efficiency_class) for r in records] == [((0, 1), True, 1), ((2,), False, 0)]

    def test_parse_slpi_ex_numbers_cpus_group_times_64_plus_bit_when_two_groups(self) -> None:
        """Two packages in two processor groups: group 1's bit 0 is CPU 64."""
        buffer = (
            core(0, 0, 1) + core(0, 2, 3) + core(1, 0, 1) + core(1, 2, 3)
            + processor(PACKAGE, affinity(0, 0, 1, 2, 3))
            + processor(PACKAGE, affinity(1, 0, 1, 2, 3))
            + numa(0, affinity(0, 0, 1, 2, 3)) + numa(1, affinity(1, 0, 1, 2, 3))
            + group_record(4, 4)
        )
        topo = wt.parse_slpi_ex(buffer)
        assert rows(topo) == [
            (0, 0, 0, 0, (0, 1)), (1, 0, 0, 0, (0, 1)), (2, 0, 1, 0, (2, 3)), (3, 0, 1, 0, (2, 3)),
            (64, 1, 0, 1, (64, 65)), (65, 1, 0, 1, (64, 65)), (66, 1, 1, 1, (66, 67)),
            (67, 1, 1, 1, (66, 67)),
        ]
        assert (topo.physical_cores, topo.logical_cores) == (4, 8)

    def test_parse_slpi_ex_reads_a_package_spanning_two_groups_when_group_count_is_2(self) -> None:
        """One package whose two NUMA nodes sit in two groups: one socket, two nodes."""
        buffer = (
            core(0, 0) + core(0, 1) + core(1, 0) + core(1, 1)
            + processor(PACKAGE, affinity(0, 0, 1), affinity(1, 0, 1))
            + numa(0, affinity(0, 0, 1)) + numa(1, affinity(1, 0, 1))
        )
        topo = wt.parse_slpi_ex(buffer)
        assert rows(topo) == [(0, 0, 0, 0, (0,)), (1, 0, 1, 0, (1,)), (64, 0, 2, 1, (64,)),
                              (65, 0, 3, 1, (65,))]

    def test_parse_slpi_ex_reads_an_old_numa_record_when_group_count_is_absent(self) -> None:
        """Pre-20H2 layout (Reserved[20], one GroupMask) and RelationNumaNodeEx both read."""
        buffer = (
            core(0, 0) + core(0, 1) + core(0, 2) + core(0, 3)
            + processor(PACKAGE, affinity(0, 0, 1, 2, 3))
            + numa(0, affinity(0, 0, 1), old=True) + numa(1, affinity(0, 2, 3), kind=NUMA_EX)
        )
        assert [c.numa_node for c in wt.parse_slpi_ex(buffer).cpus] == [0, 0, 1, 1]

    def test_parse_slpi_ex_hands_out_fast_cores_first_when_the_cpu_is_hybrid(self) -> None:
        """EfficiencyClass 1 (P-cores, SMT) goes out before class 0 (E-cores)."""
        buffer = (
            core(0, 0, efficiency=0) + core(0, 1, efficiency=0)
            + core(0, 2, 3, efficiency=1) + core(0, 4, 5, efficiency=1)
            + processor(PACKAGE, affinity(0, *range(6))) + numa(0, affinity(0, *range(6)))
        )
        topo = wt.parse_slpi_ex(buffer)
        assert {c.index: c.efficiency_class for c in topo.cpus} == {0: 0, 1: 0, 2: 1, 3: 1, 4: 1, 5: 1}
        assert topo.preference_order() == [2, 4, 0, 1, 3, 5]

    def test_parse_slpi_ex_keeps_only_allowed_cpus_when_given_a_mask(self) -> None:
        """CPUs outside `allowed` are left out; siblings still list the whole core."""
        buffer = core(0, 0, 1) + core(0, 2, 3) + processor(PACKAGE, affinity(0, 0, 1, 2, 3))
        topo = wt.parse_slpi_ex(buffer, allowed={0, 2, 3})
        assert rows(topo) == [(0, 0, 0, 0, (0, 1)), (2, 0, 1, 0, (2, 3)), (3, 0, 1, 0, (2, 3))]

    @pytest.mark.parametrize(
        "buffer",
        [core(0, 0)[:-4], struct.pack("<II", CORE, 4), struct.pack("<II", CORE, 200) + bytes(32),
         record(CORE, struct.pack("<BB20xH", 0, 0, 3) + affinity(0, 0)), b"\x00\x00"],
        ids=["cut-mask", "size-below-header", "size-past-end", "group-count-too-big", "cut-header"],
    )
    def test_parse_records_raises_bad_buffer_when_the_buffer_is_malformed(self, buffer: bytes) -> None:
        """A truncated or inconsistent buffer is an error, never a silent partial topology."""
        with pytest.raises(wt.BadBuffer):
            wt.parse_records(buffer)

    def test_parse_slpi_ex_returns_no_cpu_when_the_buffer_is_empty(self) -> None:
        """An empty buffer is an empty topology."""
        assert wt.parse_slpi_ex(b"").cpus == ()
