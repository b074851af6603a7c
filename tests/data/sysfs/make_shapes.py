"""Write the synthetic sysfs trees under tests/data/sysfs (README.md says what they are).

Run `python tests/data/sysfs/make_shapes.py` to (re)write every shape next to this file;
tests may also import `write_shape` / `SHAPES` to build variants in a temporary folder.
Only the files `serv.topology.read_sysfs` reads are written:

    <shape>/cpu/online
    <shape>/cpu/cpuN/topology/{core_id, physical_package_id, thread_siblings_list, core_cpus_list}
    <shape>/node/nodeM/cpulist

Numbering follows Linux on x86: CPUs are numbered first thread of every core (socket by
socket), then the second threads in the same order, so siblings are i and i + cores;
core_id restarts at 0 on every package.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Shape:
    """sockets × cores per socket × threads per core, NUMA nodes per socket, offline CPUs."""

    name: str
    sockets: int
    cores: int
    threads: int
    nodes_per_socket: int = 1
    offline: frozenset[int] = field(default_factory=frozenset)
    what: str = ""

    @property
    def physical(self) -> int:
        return self.sockets * self.cores

    def index(self, socket: int, core: int, thread: int) -> int:
        return thread * self.physical + socket * self.cores + core

    def node(self, socket: int, core: int) -> int:
        per_node = self.cores // self.nodes_per_socket
        return socket * self.nodes_per_socket + core // per_node

    def cpus(self) -> list[tuple[int, int, int, int]]:
        """(index, socket, core_id, node) of every CPU, online or not."""
        return sorted(
            (self.index(s, c, t), s, c, self.node(s, c))
            for s in range(self.sockets)
            for c in range(self.cores)
            for t in range(self.threads)
        )


SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("1s-4c-noht", 1, 4, 1, what="one socket, 4 cores, no SMT (a small workstation)"),
        Shape("1s-4c-ht", 1, 4, 2, what="one socket, 4 cores × 2 threads; siblings i and i+4"),
        Shape("2s-8c-ht", 2, 4, 2,
              what="2 sockets × 4 cores × 2 threads, one NUMA node per socket; socket 0 = "
                   "CPUs 0-3 and 8-11, socket 1 = 4-7 and 12-15 (a dual-Xeon workstation)"),
        Shape("4numa-16c", 1, 16, 1, nodes_per_socket=4,
              what="one socket, 16 cores, 4 NUMA nodes of 4 cores (AMD EPYC in NPS4 mode)"),
        Shape("offline", 1, 4, 2, offline=frozenset({5}),
              what="one socket, 4 cores × 2 threads with CPU 5 (sibling of 1) offline"),
    )
}


def cpu_list(cpus: list[int]) -> str:
    """[0, 1, 2, 4, 6, 7] → '0-2,4,6-7' (the kernel's cpulist format)."""
    runs: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


def write_shape(shape: Shape, dest: Path) -> Path:
    """Write `shape` as a sysfs tree under dest (dest/cpu, dest/node); returns dest."""
    if dest.exists():
        shutil.rmtree(dest)
    cpu_root, node_root = dest / "cpu", dest / "node"
    cpu_root.mkdir(parents=True)
    cpus = shape.cpus()
    online = [i for i, *_ in cpus if i not in shape.offline]
    (cpu_root / "online").write_text(cpu_list(online) + "\n")
    nodes: dict[int, list[int]] = {}
    for index, socket, core, node in cpus:
        if index in shape.offline:
            # An offline CPU keeps its folder but has no topology/ (Linux removes it).
            (cpu_root / f"cpu{index}").mkdir()
            (cpu_root / f"cpu{index}" / "online").write_text("0\n")
            continue
        nodes.setdefault(node, []).append(index)
        siblings = [shape.index(socket, core, t) for t in range(shape.threads)]
        siblings = [c for c in siblings if c not in shape.offline]
        topo = cpu_root / f"cpu{index}" / "topology"
        topo.mkdir(parents=True)
        (topo / "core_id").write_text(f"{core}\n")
        (topo / "physical_package_id").write_text(f"{socket}\n")
        (topo / "thread_siblings_list").write_text(cpu_list(siblings) + "\n")
        (topo / "core_cpus_list").write_text(cpu_list(siblings) + "\n")
    for node, members in sorted(nodes.items()):
        (node_root / f"node{node}").mkdir(parents=True)
        (node_root / f"node{node}" / "cpulist").write_text(cpu_list(members) + "\n")
    return dest


def main(argv: list[str]) -> int:
    names = argv or sorted(SHAPES)
    for name in names:
        sys.stdout.write(f"{write_shape(SHAPES[name], HERE / name)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
