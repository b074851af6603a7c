"""The `mpiexec` part of a command line and the pinning each MPI flavour needs.

Facts from ../shared/lab-findings.md §1: MPICH's and Open MPI's `-bind-to core` ignore an
inherited CPU mask, so they get their explicit list options; Intel MPI respects the
inherited mask and reads I_MPI_PIN_PROCESSOR_LIST; Open MPI refuses to run as root
without its two allow-run-as-root variables.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping


def mpi_prefix(
    kind: str,
    mpiexec: Path | None,
    nranks: int,
    cores: tuple[int, ...] | None,
    *,
    intel_mpi_pinning: bool,
    running_as_root: bool | None = None,
) -> tuple[tuple[str, ...], Mapping[str, str]]:
    """argv prefix and environment for launching `nranks` ranks with `kind` MPI."""
    if kind == "none" or mpiexec is None:
        return (), {}
    exe = str(mpiexec)
    cpu_list = ",".join(str(c) for c in cores) if cores else None
    env: dict[str, str] = {}
    if kind == "mpich":
        argv = [exe, "-np", str(nranks)]
        if cpu_list:
            argv += ["-bind-to", f"user:{cpu_list}"]
    elif kind == "openmpi":
        argv = [exe, "-np", str(nranks)]
        if cpu_list:
            argv += ["--cpu-set", cpu_list, "--bind-to", "core"]
        root = os.geteuid() == 0 if running_as_root is None and hasattr(os, "geteuid") else bool(running_as_root)
        if root:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    elif kind == "intelmpi":
        argv = [exe, "-np", str(nranks)]
        if cpu_list and intel_mpi_pinning:
            env["I_MPI_PIN_PROCESSOR_LIST"] = cpu_list
    elif kind == "msmpi":
        argv = [exe, "-n", str(nranks)]
    else:
        raise ValueError(f"unknown MPI kind {kind!r}")
    return tuple(argv), env


# How MPI launchers report a rank killed by a signal. Seen here: MPICH 4.0 Hydra prints
# "YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)" and exits with the
# signal number, which alone cannot be told from an ordinary exit code. Open MPI's
# "... exited on signal 9 (Killed)." is its documented wording, not seen on this machine.
_RANK_SIGNAL = (
    re.compile(r"TERMINATED WITH THE EXIT STRING: [^\n]*\(signal (\d+)\)"),
    re.compile(r"exited on signal (\d+)"),
)


def rank_signal(launcher_output: str) -> int | None:
    """The signal that killed a rank, as the MPI launcher reported it in its output."""
    for pattern in _RANK_SIGNAL:
        found = pattern.search(launcher_output)
        if found:
            return int(found.group(1))
    return None
