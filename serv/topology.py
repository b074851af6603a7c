"""Read the machine's CPU topology from the OS: Linux sysfs, Windows through
`serv.platform.windows_topology`, a flat list (logged) elsewhere.

Sockets, NUMA nodes, physical cores and hyper-thread siblings are read, never guessed from
counts. Only CPUs that are online and in the daemon's own affinity mask count: a daemon
started under `taskset` or a cpuset must not hand out CPUs it may not use.

Linux files read (Documentation/ABI/stable/sysfs-devices-system-cpu, .../sysfs-devices-node):
`cpu/online`; per CPU `cpuN/topology/{core_id, physical_package_id, thread_siblings_list}`
(`core_cpus_list`, its newer name, when the old one is missing); the NUMA node of each CPU
from `node/nodeM/cpulist`, else from the `cpuN/nodeM` links.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import psutil

from serv.core.cores import Cpu, Topology

log = logging.getLogger(__name__)

SYSFS_CPU = Path("/sys/devices/system/cpu")
SYSFS_NODE = Path("/sys/devices/system/node")


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,8,10-11' → [0, 1, 2, 3, 8, 10, 11] (the kernel's cpulist format)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _numbered(folder: Path, prefix: str) -> list[tuple[int, Path]]:
    """(N, path) for every `<prefix>N` entry of `folder`, sorted by N."""
    found: list[tuple[int, Path]] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return found
    for entry in entries:
        suffix = entry.name[len(prefix):]
        if entry.name.startswith(prefix) and suffix.isdigit():
            found.append((int(suffix), entry))
    return sorted(found)


def _node_map(node_root: Path) -> dict[int, int]:
    """CPU → NUMA node from `nodeM/cpulist` (empty when that tree is missing)."""
    nodes: dict[int, int] = {}
    for node, path in _numbered(node_root, "node"):
        text = _read(path / "cpulist")
        for cpu in parse_cpu_list(text) if text else ():
            nodes.setdefault(cpu, node)
    return nodes


def read_sysfs(
    root: Path = SYSFS_CPU,
    node_root: Path = SYSFS_NODE,
    allowed: set[int] | None = None,
) -> Topology | None:
    """Topology from a sysfs tree (the real one, or a copy under tests/data/sysfs).

    Offline CPUs, and CPUs outside `allowed` (the daemon's affinity mask), are left out;
    `siblings` keep every online thread of the core, as the OS lists them, so the status
    shows what else shares the core. Returns None when `root/online` cannot be read or no
    CPU is left.
    """
    online_text = _read(root / "online")
    if online_text is None:
        return None
    online = set(parse_cpu_list(online_text))
    node_of = _node_map(node_root)
    cpus: list[Cpu] = []
    guessed: list[int] = []
    for index in sorted(online):
        if allowed is not None and index not in allowed:
            continue
        topo = root / f"cpu{index}" / "topology"
        core = _read_int(topo / "core_id")
        package = _read_int(topo / "physical_package_id")
        siblings_text = _read(topo / "thread_siblings_list") or _read(topo / "core_cpus_list")
        if core is None or package is None or not siblings_text:
            guessed.append(index)
        node = node_of.get(index)
        if node is None:
            # Older kernels or trimmed containers: the cpuN/nodeM link names the node.
            links = _numbered(root / f"cpu{index}", "node")
            node = links[0][0] if links else 0
        siblings = {c for c in parse_cpu_list(siblings_text) if c in online} if siblings_text else set()
        cpus.append(
            Cpu(
                index=index,
                core_id=core if core is not None and core >= 0 else index,
                socket=package if package is not None and package >= 0 else 0,
                numa_node=node,
                siblings=tuple(sorted(siblings | {index})),
            )
        )
    if guessed:
        log.warning("sysfs has no topology for CPUs %s; each counted as its own core on socket 0",
                    guessed)
    return Topology(tuple(cpus)) if cpus else None


def _affinity() -> set[int] | None:
    """The logical CPUs this process may run on (None when the OS cannot tell)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    try:
        return set(psutil.Process().cpu_affinity() or ())
    except (AttributeError, psutil.Error, OSError):  # macOS has no cpu_affinity
        return None


def read_topology(recorded: Path | None = None) -> Topology:
    """This machine's usable topology; never raises (falls back to a flat list, logged).

    `recorded`: a copy of /sys/devices/system/cpu (with its sibling `node` folder) to read
    instead, all of its CPUs usable ([cores] topology_root, for tests and benchmarks).
    """
    if recorded is not None:
        found = read_sysfs(recorded, recorded.parent / "node")
        if found is not None:
            log.info("CPU topology read from the recorded tree %s", recorded)
            return found
        log.warning("no CPU topology in %s; using this machine's", recorded)
    allowed = _affinity()
    topology: Topology | None = None
    if sys.platform.startswith("linux"):
        topology = read_sysfs(allowed=allowed)
        if topology is None:
            log.warning("could not read the CPU topology from %s", SYSFS_CPU)
    elif sys.platform == "win32":
        from serv.platform import windows_topology

        try:
            topology = windows_topology.read(allowed)
        except OSError as exc:
            log.warning("GetLogicalProcessorInformationEx failed: %s", exc)
    if topology is None:
        count = psutil.cpu_count(logical=True) or 1
        indices = sorted(allowed) if allowed else range(count)
        log.info("no CPU topology from the OS on %s; assuming CPUs %s, one per physical core, "
                 "one socket", sys.platform, list(indices))
        topology = Topology.of_indices(indices)
    return topology
