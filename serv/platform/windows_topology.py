"""Windows CPU topology from GetLogicalProcessorInformationEx(RelationAll).

Two halves: `parse_slpi_ex(buffer)` turns the buffer the call fills into a `Topology`
(pure, importable on any OS, unit-tested on Linux with buffers built byte by byte), and
`read()` makes the call through ctypes. `ctypes.WinDLL` is touched only inside `read()`,
never at import time.

Layouts, from the Win32 documentation (winnt.h), x64 / ARM64 (KAFFINITY = ULONG_PTR, 8 bytes):

* SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX
  (learn.microsoft.com/windows/win32/api/winnt/ns-winnt-system_logical_processor_information_ex):
  `Relationship` DWORD, `Size` DWORD (of this whole record: step by it), then the union at
  offset 8 (its members hold KAFFINITY, so it is 8-byte aligned).
* PROCESSOR_RELATIONSHIP (.../ns-winnt-processor_relationship), used for
  RelationProcessorCore and RelationProcessorPackage: `Flags` BYTE (LTP_PC_SMT when the
  core has more than one logical processor), `EfficiencyClass` BYTE (higher = faster, only
  non-zero on hybrid CPUs, Windows 10+), `Reserved[20]`, `GroupCount` WORD (always 1 for a
  core), then `GroupMask[GroupCount]` at offset 24.
* NUMA_NODE_RELATIONSHIP (.../ns-winnt-numa_node_relationship): `NodeNumber` DWORD,
  `Reserved[18]`, `GroupCount` WORD, then `GroupMask[GroupCount]` at offset 24. Before
  Windows 10 20H2 the GroupCount bytes were part of `Reserved[20]` (so they read 0) and
  exactly one GroupMask follows: 0 is read as 1.
* GROUP_AFFINITY (.../ns-winnt-group_affinity): `Mask` KAFFINITY, `Group` WORD,
  `Reserved[3]` WORD; 16 bytes.

Processor groups ("Processor Groups", learn.microsoft.com/windows/win32/procthread/processor-groups)
hold at most 64 logical processors; a logical CPU's index here is group * 64 + bit, so a
machine whose groups are not full has gaps in its numbering.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass

from serv.core.cores import Cpu, Topology

log = logging.getLogger(__name__)

# LOGICAL_PROCESSOR_RELATIONSHIP (winnt.h).
RELATION_PROCESSOR_CORE = 0
RELATION_NUMA_NODE = 1
RELATION_CACHE = 2
RELATION_PROCESSOR_PACKAGE = 3
RELATION_GROUP = 4
RELATION_PROCESSOR_DIE = 5
RELATION_NUMA_NODE_EX = 6
RELATION_PROCESSOR_MODULE = 7
RELATION_ALL = 0xFFFF

LTP_PC_SMT = 0x1
ERROR_INSUFFICIENT_BUFFER = 122
GROUP_SIZE = 64  # logical processors per processor group, at most


class GROUP_AFFINITY(ctypes.Structure):
    _fields_ = [
        ("Mask", ctypes.c_uint64),  # KAFFINITY on x64 / ARM64
        ("Group", ctypes.c_uint16),
        ("Reserved", ctypes.c_uint16 * 3),
    ]


class SLPI_EX_HEADER(ctypes.Structure):
    """The fixed head of SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX; the union follows at 8."""

    _fields_ = [("Relationship", ctypes.c_uint32), ("Size", ctypes.c_uint32)]


class PROCESSOR_RELATIONSHIP(ctypes.Structure):
    _fields_ = [
        ("Flags", ctypes.c_uint8),
        ("EfficiencyClass", ctypes.c_uint8),
        ("Reserved", ctypes.c_uint8 * 20),
        ("GroupCount", ctypes.c_uint16),
        ("GroupMask", GROUP_AFFINITY * 1),  # ANYSIZE_ARRAY: GroupCount entries in fact
    ]


class NUMA_NODE_RELATIONSHIP(ctypes.Structure):
    _fields_ = [
        ("NodeNumber", ctypes.c_uint32),
        ("Reserved", ctypes.c_uint8 * 18),
        ("GroupCount", ctypes.c_uint16),
        ("GroupMask", GROUP_AFFINITY * 1),
    ]


UNION_OFFSET = 8
MASKS_OFFSET = PROCESSOR_RELATIONSHIP.GroupMask.offset  # 24, the same in both relationships
assert MASKS_OFFSET == NUMA_NODE_RELATIONSHIP.GroupMask.offset == 24
assert ctypes.sizeof(GROUP_AFFINITY) == 16


@dataclass(frozen=True, slots=True)
class Record:
    """One parsed core, package or NUMA node record: the logical CPUs it covers."""

    relationship: int
    cpus: tuple[int, ...]
    flags: int = 0
    efficiency_class: int = 0
    node_number: int = 0

    @property
    def smt(self) -> bool:
        return bool(self.flags & LTP_PC_SMT)


class BadBuffer(ValueError):
    """The buffer is not a well-formed SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX list."""


def _masks(buffer: bytes, body: int, count: int, end: int) -> tuple[int, ...]:
    cpus: list[int] = []
    for i in range(count):
        at = body + MASKS_OFFSET + i * ctypes.sizeof(GROUP_AFFINITY)
        if at + ctypes.sizeof(GROUP_AFFINITY) > end:
            raise BadBuffer(f"GROUP_AFFINITY {i} at byte {at} runs past its record (ends {end})")
        affinity = GROUP_AFFINITY.from_buffer_copy(buffer, at)
        cpus.extend(affinity.Group * GROUP_SIZE + bit for bit in range(GROUP_SIZE)
                    if affinity.Mask >> bit & 1)
    return tuple(sorted(cpus))


def parse_records(buffer: bytes) -> list[Record]:
    """The core, package and NUMA node records in `buffer`, in buffer order; other
    relationships (caches, groups, dies, modules) are stepped over by their Size.
    Raises BadBuffer on a truncated or malformed buffer."""
    records: list[Record] = []
    offset = 0
    while offset < len(buffer):
        if offset + ctypes.sizeof(SLPI_EX_HEADER) > len(buffer):
            raise BadBuffer(f"record header at byte {offset} runs past the buffer ({len(buffer)})")
        head = SLPI_EX_HEADER.from_buffer_copy(buffer, offset)
        end = offset + head.Size
        if head.Size < ctypes.sizeof(SLPI_EX_HEADER) or end > len(buffer):
            raise BadBuffer(f"record at byte {offset} has size {head.Size}; buffer is {len(buffer)}")
        body = offset + UNION_OFFSET
        kind = head.Relationship
        if kind in (RELATION_PROCESSOR_CORE, RELATION_PROCESSOR_PACKAGE):
            if body + MASKS_OFFSET > end:
                raise BadBuffer(f"PROCESSOR_RELATIONSHIP at byte {offset} is cut short")
            proc = PROCESSOR_RELATIONSHIP.from_buffer_copy(buffer, body)
            records.append(Record(kind, _masks(buffer, body, proc.GroupCount, end),
                                  flags=proc.Flags, efficiency_class=proc.EfficiencyClass))
        elif kind in (RELATION_NUMA_NODE, RELATION_NUMA_NODE_EX):
            if body + MASKS_OFFSET > end:
                raise BadBuffer(f"NUMA_NODE_RELATIONSHIP at byte {offset} is cut short")
            node = NUMA_NODE_RELATIONSHIP.from_buffer_copy(buffer, body)
            count = node.GroupCount or 1  # older Windows: Reserved[20] and one GroupMask
            records.append(Record(RELATION_NUMA_NODE, _masks(buffer, body, count, end),
                                  node_number=node.NodeNumber))
        offset = end
    return records


def parse_slpi_ex(buffer: bytes, allowed: set[int] | None = None) -> Topology:
    """Topology from a GetLogicalProcessorInformationEx(RelationAll) buffer.

    Sockets are the packages in buffer order; core ids count the cores of each package in
    order of their lowest logical CPU (as Linux, unique only within a socket); siblings are
    the logical CPUs of the core's mask. CPUs outside `allowed` are left out. A CPU no
    package or node record covers is put on socket 0 / node 0 (logged).
    Raises BadBuffer on a malformed buffer.
    """
    records = parse_records(buffer)
    package_of: dict[int, int] = {}
    node_of: dict[int, int] = {}
    packages = [r for r in records if r.relationship == RELATION_PROCESSOR_PACKAGE]
    for socket, record in enumerate(packages):
        for cpu in record.cpus:
            package_of.setdefault(cpu, socket)
    for record in records:
        if record.relationship == RELATION_NUMA_NODE:
            for cpu in record.cpus:
                node_of.setdefault(cpu, record.node_number)
    cores = sorted((r for r in records if r.relationship == RELATION_PROCESSOR_CORE and r.cpus),
                   key=lambda r: r.cpus[0])
    next_core_id: dict[int, int] = {}
    cpus: list[Cpu] = []
    unplaced: list[int] = []
    for core in cores:
        if core.smt != (len(core.cpus) > 1):
            log.warning("core of CPUs %s: LTP_PC_SMT flag %s disagrees with its mask",
                        list(core.cpus), core.smt)
        socket = package_of.get(core.cpus[0], 0)
        core_id = next_core_id.get(socket, 0)
        next_core_id[socket] = core_id + 1
        for index in core.cpus:
            if index not in package_of or index not in node_of:
                unplaced.append(index)
            if allowed is not None and index not in allowed:
                continue
            cpus.append(Cpu(index=index, core_id=core_id, socket=socket,
                            numa_node=node_of.get(index, 0), siblings=core.cpus,
                            efficiency_class=core.efficiency_class))
    if unplaced:
        log.warning("no package or NUMA node record covers CPUs %s; put on socket 0 / node 0",
                    unplaced)
    return Topology(tuple(sorted(cpus, key=lambda c: c.index)))


def _call() -> bytes:
    """The raw buffer of GetLogicalProcessorInformationEx(RelationAll); raises OSError.

    learn.microsoft.com/windows/win32/api/sysinfoapi/nf-sysinfoapi-getlogicalprocessorinformationex:
    a first call with too small a buffer fails with ERROR_INSUFFICIENT_BUFFER and sets the
    length needed.
    """
    from ctypes import wintypes

    kernel32 = getattr(ctypes, "WinDLL")("kernel32", use_last_error=True)
    call = kernel32.GetLogicalProcessorInformationEx
    call.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(wintypes.DWORD)]
    call.restype = wintypes.BOOL
    length = wintypes.DWORD(0)
    for _ in range(3):  # the size can change between calls (a CPU hot-added)
        buffer = ctypes.create_string_buffer(max(length.value, 1))
        if call(RELATION_ALL, buffer, ctypes.byref(length)):
            return buffer.raw[: length.value]
        error: int = getattr(ctypes, "get_last_error")()
        if error != ERROR_INSUFFICIENT_BUFFER:
            raise getattr(ctypes, "WinError")(error)
    raise OSError("GetLogicalProcessorInformationEx: buffer size kept changing")


def read(allowed: set[int] | None = None) -> Topology | None:
    """This machine's topology (Windows only); None when it lists no CPU. Raises OSError
    when the call fails.

    `allowed` (the process affinity, as psutil reports it: bits of one processor group)
    is applied only when the machine has a single group; with several groups those bits
    cannot be mapped to group * 64 + bit indices, so it is ignored (logged).
    """
    topology = parse_slpi_ex(_call())
    if allowed is not None:
        if all(c.index < GROUP_SIZE for c in topology.cpus):
            topology = Topology(tuple(c for c in topology.cpus if c.index in allowed))
        else:
            log.warning("several processor groups: the process affinity mask is not applied")
    return topology if topology.cpus else None
