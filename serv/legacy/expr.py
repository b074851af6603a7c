"""The GUI's command template (`expr`, protocol §5.1, §5.10) mapped onto a launch request.

The legacy server ran the client's command string through `cmd /c`: any client could run
anything. Here the template is parsed into tokens and accepted only when it has the shape

    [MPIEXEC (-np|-n) $NCPU] $SOLVER i=$INPUT [ncpu=$NCPU] [memory=$MEMORY|SIZE]
                             [r=$INPUT|d3dumpNN] [LS-DYNA key=value …]

where MPIEXEC is an MPI launcher name or path (mpiexec, mpirun, mpiexec.hydra, …; the
profile decides which launcher really runs), and `solver` (the job_data field) must be the
executable of a configured LS-DYNA profile (compared after resolving links) or an executable
under `[legacy] solver_dirs`. The result is a profile name plus `JobManager.launch` params;
nothing is ever given to a shell. Anything else — shell syntax (; & | < > ` % ( ) …), other
programs, redirections, unknown options — is refused with an error that names what is
allowed. The `command` field the GUI also sends is display text only and is never run.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any, Iterable, Mapping

from serv.config import DEFAULT_PROCESS_NAMES, MpiKind, SolverProfile
from serv.core.jobs import Family
from serv.errors import BadParam
from serv.legacy.rpc import LegacyError
from serv.solvers.lsdyna import ALLOWED_KEYS

MPI_LAUNCHERS = frozenset({
    "mpiexec", "mpirun", "mpiexec.hydra", "mpiexec.mpich", "mpirun.mpich", "mpiexec.openmpi",
    "mpirun.openmpi", "orterun",
})
PLACEHOLDERS = ("$NCPU", "$SOLVER", "$INPUT", "$MEMORY")
# Characters with a meaning to cmd.exe or a POSIX shell; a quote is only allowed around a
# whole token (a launcher path with spaces).
SHELL_SYNTAX = re.compile(r"[;&|<>`%!^()\[\]{}*?~'\r\n\x00]")
STRAY_DOLLAR = re.compile(r"\$(?!(?:NCPU|SOLVER|INPUT|MEMORY)(?![A-Za-z0-9_]))")
TOKEN = re.compile(r'(?:"[^"]*"|[^\s"])+|"')
QUOTED_OPTION = re.compile(r'^(?P<key>[A-Za-z][A-Za-z0-9_]*)="(?P<value>[^"]*)"$')
MEMORY = re.compile(r"^\d+[kKmMgG]?$")
DUMP = re.compile(r"^d3dump\d+$|^runrsf$", re.IGNORECASE)
DECK_SUFFIXES = (".k", ".key", ".dyn")
SHAPE = (
    "[mpiexec -np $NCPU] $SOLVER i=$INPUT [ncpu=$NCPU] [memory=$MEMORY] [r=d3dumpNN] "
    "[key=value with an LS-DYNA option: " + ", ".join(sorted(ALLOWED_KEYS)) + "]"
)


def refuse(why: str) -> LegacyError:
    return LegacyError(
        10,
        f"expr refused: {why}. Allowed: {SHAPE}; no shell syntax, redirections or other "
        "programs, and the solver must be a configured LS-DYNA profile's executable",
    )


@dataclass(frozen=True, slots=True)
class JobData:
    """A `job_data` object, checked and normalised (protocol §5.1; `sender` optional)."""

    input: str
    solver: str
    ncpu: int
    expr: str
    memory: str
    command: str
    sender: str | None
    raw: Mapping[str, Any]

    def memo(self) -> dict[str, Any]:
        """What the records show for a job submitted with this job_data."""
        return {
            "input": self.input, "solver": self.solver, "ncpu": self.raw.get("ncpu"),
            "command": self.command, "expr": self.expr, "memory": self.memory,
            "sender": self.sender,
        }


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """A template mapped onto a profile and `JobManager.launch` params."""

    profile: str
    input: str
    ncpu: int
    memory: str | None
    args: tuple[str, ...]
    restart: str | None
    derived: SolverProfile | None = None  # a profile made for a `[legacy] solver_dirs` executable

    def params(self) -> dict[str, Any]:
        return {
            "solver": self.profile, "input": self.input, "ncpu": self.ncpu,
            "memory": self.memory, "args": list(self.args), "restart": self.restart,
        }


def to_int(name: str, value: Any) -> int:
    """An int from a number or a numeric string ("8", " 8 ", 8.0); else -32602 naming `name`."""
    if isinstance(value, bool):
        raise LegacyError(-32602, "Invalid params", f"param {name!r}: expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise LegacyError(-32602, "Invalid params", f"param {name!r}: expected a number, got {value!r}")


def _text(name: str, value: Any, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or "\x00" in value or len(value) > 4096:
        raise LegacyError(-32602, "Invalid params", f"job_data.{name}: expected a non-empty text")
    return value.strip()


def parse_job_data(job_data: Any) -> JobData:
    if not isinstance(job_data, dict):
        raise LegacyError(-32602, "Invalid params", "job_data: expected an object")
    ncpu = to_int("job_data.ncpu", job_data.get("ncpu"))
    if ncpu < 1:
        raise LegacyError(10, f"job_data.ncpu: {ncpu} is not a number of cores")
    sender = job_data.get("sender")
    return JobData(
        input=_text("input", job_data.get("input")),
        solver=_text("solver", job_data.get("solver")),
        ncpu=ncpu,
        expr=_text("expr", job_data.get("expr")),
        memory=_text("memory", job_data.get("memory"), required=False),
        command=_text("command", job_data.get("command"), required=False),
        sender=sender if isinstance(sender, str) else None,
        raw=dict(job_data),
    )


def tokenize(expr: str) -> list[str]:
    if SHELL_SYNTAX.search(expr):
        bad = SHELL_SYNTAX.search(expr)
        assert bad is not None
        raise refuse(f"{bad.group()!r} is shell syntax")
    if STRAY_DOLLAR.search(expr):
        raise refuse("the only $ words are $NCPU, $SOLVER, $INPUT and $MEMORY")
    words = []
    for token in TOKEN.findall(expr):
        option = QUOTED_OPTION.match(token)
        if option:  # i="$INPUT": cmd.exe needed the quotes for spaces; argv does not
            words.append(f"{option['key']}={option['value']}")
            continue
        quoted = len(token) >= 2 and token[0] == token[-1] == '"' and '"' not in token[1:-1]
        if '"' in token and not quoted:
            raise refuse("a quote must enclose a whole word or a whole option value")
        words.append(token[1:-1] if quoted else token)
    return words


def _launcher_name(token: str) -> str | None:
    name = PureWindowsPath(token).name.lower()
    if name.endswith(".exe"):
        name = name[:-4]
    return name if name in MPI_LAUNCHERS else None


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))
    except (OSError, ValueError):
        return False


def _within(path: str, folder: Path) -> bool:
    try:
        real = os.path.realpath(path)
        root = os.path.realpath(folder)
    except (OSError, ValueError):
        return False
    return os.path.commonpath([os.path.normcase(real), os.path.normcase(root)]) == os.path.normcase(root)


def parse_template(data: JobData) -> tuple[str | None, dict[str, Any]]:
    """(the MPI launcher word or None, launch fields) from the template; raises on refusal."""
    tokens = tokenize(data.expr)
    i = 0
    launcher = None
    ncpu = data.ncpu
    if tokens and _launcher_name(tokens[0]):
        launcher = _launcher_name(tokens[0])
        if len(tokens) < 3 or tokens[1].lower() not in ("-np", "-n"):
            raise refuse(f"after {tokens[0]} only '-np $NCPU' is accepted")
        ncpu = _ncpu_value(tokens[2], data.ncpu)
        i = 3
    if i >= len(tokens):
        raise refuse("the template has no $SOLVER")
    if tokens[i] != "$SOLVER" and not (tokens[i] == data.solver):
        raise refuse(f"{tokens[i]!r} where $SOLVER was expected")
    i += 1
    fields: dict[str, Any] = {"ncpu": ncpu, "memory": None, "restart": None, "args": [],
                              "input_is_dump": False}
    saw_input = False
    for token in tokens[i:]:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise refuse(f"{token!r} is not a key=value option")
        low = key.lower()
        if low == "i":
            if value not in ("$INPUT", data.input):
                raise refuse("i= must be i=$INPUT")
            saw_input = True
        elif low == "ncpu":
            fields["ncpu"] = _ncpu_value(value, data.ncpu)
        elif low == "memory":
            memory = data.memory if value == "$MEMORY" else value
            if memory and not MEMORY.match(memory):
                raise refuse(f"memory {memory!r} is not a size like 200m or 2000000")
            fields["memory"] = memory or None
        elif low == "r":
            if value == "$INPUT":
                fields["input_is_dump"] = True
                fields["restart"] = PureWindowsPath(data.input).name
            elif DUMP.match(value):
                fields["restart"] = value
            else:
                raise refuse(f"r={value} is not a restart dump name like d3dump01")
        elif any(p in value for p in PLACEHOLDERS):
            raise refuse(f"{token!r}: placeholders only go in i=, ncpu=, memory= and r=")
        elif low not in ALLOWED_KEYS:
            raise refuse(f"{key}= is not an LS-DYNA option")
        else:
            fields["args"].append(f"{key}={value}")
    if not saw_input and not fields["input_is_dump"]:
        raise refuse("i=$INPUT is missing")
    if fields["restart"] is not None and not DUMP.match(fields["restart"]):
        raise refuse(f"restart {fields['restart']!r} is not a dump name like d3dump01")
    return launcher, fields


def _ncpu_value(value: str, ncpu: int) -> int:
    if value == "$NCPU":
        return ncpu
    if value.isdigit() and int(value) == ncpu:
        return ncpu
    raise refuse(f"{value!r} where $NCPU was expected")


def choose_profile(
    solver: str,
    launcher: str | None,
    profiles: Mapping[str, SolverProfile],
    executables: Mapping[str, Path | None],
    solver_dirs: Iterable[Path],
) -> tuple[str, SolverProfile | None]:
    """The profile that runs `solver` (the name, and a derived profile when it is made here).

    `executables` maps each profile name to its resolved executable (None: unavailable).
    """
    matching = [
        p for name, p in sorted(profiles.items())
        if (exe := executables.get(name)) is not None and _same_file(exe, solver)
    ]
    if matching:
        lsdyna = [p for p in matching if p.family is Family.LSDYNA]
        if not lsdyna:
            raise refuse(f"solver {solver} belongs to profile {matching[0].name} "
                         f"({matching[0].family}); the desktop GUI launches LS-DYNA only")
        fits = [p for p in lsdyna if (p.mpi is not MpiKind.NONE) == (launcher is not None)]
        if not fits:
            kinds = ", ".join(f"{p.name} (mpi {p.mpi})" for p in lsdyna)
            want = "an MPI profile (the template starts with mpiexec)" if launcher else \
                "a profile without MPI (the template has no mpiexec)"
            raise refuse(f"solver {solver} is configured as {kinds}, not as {want}")
        if launcher:
            exact = [p for p in fits if p.mpiexec and _launcher_name(p.mpiexec) == launcher]
            fits = exact or fits
        return fits[0].name, None
    dirs = [d for d in solver_dirs if _within(solver, d)]
    if not dirs:
        raise refuse(f"solver {solver} is not the executable of a configured profile nor under "
                     "[legacy] solver_dirs")
    if not (os.path.isfile(solver) and os.access(solver, os.X_OK)):
        raise refuse(f"solver {solver} is not an executable file")
    mpi, mpiexec = MpiKind.NONE, None
    if launcher:
        donors = [p for _, p in sorted(profiles.items())
                  if p.family is Family.LSDYNA and p.mpi is not MpiKind.NONE]
        if not donors:
            raise refuse("the template uses mpiexec but no LS-DYNA MPI profile is configured")
        mpi, mpiexec = donors[0].mpi, donors[0].mpiexec
    stem = PurePath(solver).stem
    name = f"legacy:{stem}" + ("-mpi" if launcher else "")
    real = os.path.realpath(solver)
    existing = profiles.get(name)
    if existing is not None and existing.executable != real:
        name = f"{name}-{zlib.crc32(real.encode()) % 10_000}"
    derived = SolverProfile(
        name=name, family=Family.LSDYNA, executable=real,
        process_names=DEFAULT_PROCESS_NAMES[Family.LSDYNA], mpi=mpi, mpiexec=mpiexec,
    )
    return name, derived


def find_deck(folder: Path) -> Path:
    try:
        decks = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DECK_SUFFIXES)
    except OSError as exc:
        raise refuse(f"r=$INPUT: cannot list {folder}: {exc.strerror}") from exc
    if len(decks) != 1:
        raise refuse(f"r=$INPUT restarts from a dump; its folder must hold exactly one deck "
                     f"(.k, .key, .dyn) to name as i=, found {len(decks)}")
    return decks[0]


def validate_args(args: list[str]) -> None:
    from serv.solvers import family_of

    try:
        family_of(Family.LSDYNA).validate_args(args)
    except BadParam as exc:
        raise refuse(str(exc)) from exc


def plan_launch(
    data: JobData,
    profiles: Mapping[str, SolverProfile],
    executables: Mapping[str, Path | None],
    solver_dirs: Iterable[Path],
) -> LaunchRequest:
    """Map a job_data onto a launch request, or raise LegacyError(10) saying why not."""
    launcher, fields = parse_template(data)
    validate_args(fields["args"])
    name, derived = choose_profile(data.solver, launcher, profiles, executables, solver_dirs)
    input_path = data.input
    if fields["input_is_dump"]:
        input_path = str(find_deck(Path(data.input).parent))
    return LaunchRequest(
        profile=name,
        input=input_path,
        ncpu=fields["ncpu"],
        memory=fields["memory"],
        args=tuple(fields["args"]),
        restart=fields["restart"],
        derived=derived,
    )


def with_ncpu(memo: Mapping[str, Any], ncpu: int, input: str, memory: str | None) -> dict[str, Any]:
    """A memo after setNcpuQueue: ncpu a number, command rebuilt from the template."""
    from serv.legacy.records import render

    new = dict(memo)
    new["ncpu"] = ncpu
    expr = memo.get("expr")
    if isinstance(expr, str) and expr:
        new["command"] = render(expr, ncpu=ncpu, solver=str(memo.get("solver") or ""),
                                input=str(memo.get("input") or input), memory=memory or "")
    return new


__all__ = ["JobData", "LaunchRequest", "parse_job_data", "plan_launch", "to_int", "with_ncpu"]
