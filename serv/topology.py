"""Read the machine's CPU topology from the OS (Linux sysfs); a flat fallback elsewhere.

Sockets, cores and hyper-thread siblings are read, never guessed from counts. Only CPUs
that are online and in the daemon's own affinity mask count: a daemon started under
`taskset` or a cpuset must not hand out CPUs it may not use.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import psutil

from serv.core.cores import Cpu, Topology

log = logging.getLogger(__name__)

SYSFS_CPU = Path("/sys/devices/system/cpu")


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,8,10-11' → [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
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


def read_sysfs(root: Path = SYSFS_CPU, allowed: set[int] | None = None) -> Topology | None:
    """Topology from a sysfs cpu folder (a real one, or a recorded copy in tests)."""
    online_text = _read(root / "online")
    if online_text is None:
        return None
    online = parse_cpu_list(online_text)
    cpus = []
    for index in online:
        if allowed is not None and index not in allowed:
            continue
        topo = root / f"cpu{index}" / "topology"
        core = _read(topo / "core_id")
        package = _read(topo / "physical_package_id")
        siblings = _read(topo / "thread_siblings_list") or _read(topo / "core_cpus_list")
        node = next((int(p.name[4:]) for p in (root / f"cpu{index}").glob("node[0-9]*")), 0)
        cpus.append(
            Cpu(
                index=index,
                core_id=int(core) if core is not None else index,
                socket=int(package) if package is not None else 0,
                numa_node=node,
                siblings=tuple(parse_cpu_list(siblings)) if siblings else (index,),
            )
        )
    return Topology(tuple(cpus)) if cpus else None


def read_topology() -> Topology:
    """This machine's usable topology."""
    allowed = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    topology = read_sysfs(allowed=allowed) if SYSFS_CPU.exists() else None
    if topology is None:
        count = psutil.cpu_count(logical=True) or 1
        log.info("no sysfs topology; assuming %d CPUs, one per physical core", count)
        topology = Topology.flat(count)
    return topology
