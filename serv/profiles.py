"""Whether a solver profile can be used right now, and why not.

A profile (`serv.config.SolverProfile`) names its executable and, for MPI, its launcher;
this module finds both the way the spawner will (an absolute path, or a name on PATH) and
says precisely what is missing. The answer is a snapshot: installing a solver or changing
PATH later changes it, so callers resolve again when they launch and when they list.

Only the stdlib and `serv.config`; no process is started and no file is written.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serv.config import MpiKind, SolverProfile


@dataclass(frozen=True, slots=True)
class ResolvedProfile:
    """A profile with its executable (and mpiexec) found, or the reason it is unavailable."""

    profile: SolverProfile
    available: bool
    executable: Path | None
    mpiexec: Path | None
    reason: str | None


def _locate(what: str, name: str, search_path: str) -> tuple[Path | None, str | None]:
    """`name` as an executable file, or None and why: (path, None) or (None, reason).

    A name with a directory part is checked where it says; a bare name is looked up on
    `search_path` as a shell would (shutil.which also applies PATHEXT on Windows).
    """
    if os.sep in name or "/" in name or (os.altsep is not None and os.altsep in name):
        candidate = Path(name)
        try:
            exists = candidate.exists()
        except OSError as exc:  # e.g. a folder on the way we may not search
            return None, f'{what} "{name}" cannot be checked: {exc.strerror}'
        if not exists:
            return None, f'{what} "{name}" does not exist'
        found = shutil.which(name)
        if found is None:
            return None, f'{what} "{name}" is not an executable file'
        return Path(found), None
    found = shutil.which(name, path=search_path)
    if found is None:
        return None, f'{what} "{name}" not found on PATH'
    return Path(found), None


def resolve_profile(
    profile: SolverProfile, *, environ: Mapping[str, str] | None = None
) -> ResolvedProfile:
    """Find `profile`'s executable and, for an MPI profile, its mpiexec.

    `environ` (default os.environ) supplies PATH. Never raises for a missing program: the
    result is unavailable and `reason` names every missing piece, joined by "; ".
    Blocking (stat calls on PATH folders): call it off the event loop when PATH is long
    or on a network share.
    """
    env = os.environ if environ is None else environ
    search_path = env.get("PATH", os.defpath)
    executable, problem = _locate("executable", profile.executable, search_path)
    problems = [problem] if problem else []
    mpiexec: Path | None = None
    if profile.mpi is not MpiKind.NONE:
        mpiexec, problem = _locate("mpiexec", profile.mpiexec or "mpiexec", search_path)
        if problem:
            problems.append(problem)
    return ResolvedProfile(
        profile=profile,
        available=not problems,
        executable=executable,
        mpiexec=mpiexec,
        reason="; ".join(problems) if problems else None,
    )


def describe(resolved: ResolvedProfile) -> dict[str, object]:
    """One entry of the API's solver listing: plain JSON types only.

    `executable` is the file that would run when available, else the configured name, so
    a user sees what to install or fix.
    """
    profile = resolved.profile
    executable = (
        resolved.executable if resolved.executable is not None else profile.executable
    )
    mpiexec = resolved.mpiexec if resolved.mpiexec is not None else profile.mpiexec
    return {
        "name": profile.name,
        "family": profile.family.value,
        "mpi": profile.mpi.value,
        "executable": str(executable),
        "mpiexec": None if mpiexec is None else str(mpiexec),
        "available": resolved.available,
        "reason": resolved.reason,
        "process_names": list(profile.process_names),
        "builtin": profile.builtin,
    }
