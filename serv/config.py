"""The daemon's configuration: one TOML file plus command-line flags, as frozen records.

This module owns every default of the daemon (contract.md § Configuration, § Command line):
the record classes below hold them, `CONFIG_KEYS` describes every key (type, default,
meaning) and is what validation checks unknown keys against, so the generated reference
(`config_reference()`) and the example file (`example_toml()`) cannot drift from the code.

Protocol: `load_config(path, flags)` reads the file, validates every key, merges the
built-in solver profiles under the user's `[solvers.NAME]` tables, applies the flags and
returns a `Config`. Anything wrong raises `ConfigError`, whose message names the file (or
"command line") and the dotted key; a bad configuration never produces a traceback.

Relative paths in the file (store, log file, allowed roots, an executable with a directory)
are taken relative to the file's folder, so a config keeps working wherever the daemon is
started from; relative paths given as flags are taken relative to the current directory.

Imports: the stdlib, platformdirs, `serv.core.jobs.Family` and `serv.errors` only; nothing
here does I/O beyond reading the file and looking at PATH for the built-in profiles.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import shutil
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PureWindowsPath
from types import MappingProxyType
from typing import Literal, TypeVar

import platformdirs

from serv.core.cores import Placement
from serv.core.jobs import Family
from serv.errors import ConfigError

APP_NAME = "dynalauncher"

T = TypeVar("T")

#: A profile's licence use per job: a fixed count, or "ncpu" for one licence per core.
LicenseUse = int | Literal["ncpu"]


def default_db_path() -> Path:
    """Where the job database lives when neither `[store] path` nor `--db` says otherwise."""
    return platformdirs.user_data_path(APP_NAME) / "jobs.db"


def default_log_file() -> Path:
    """Where the daemon logs when neither `[log] file` nor `--log-file` says otherwise."""
    return platformdirs.user_log_path(APP_NAME) / "dynalauncher.log"


# ---------------------------------------------------------------------------------------
# Records. Their field defaults are THE defaults; everything else reads them from here.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """`[server]`: where the daemon listens and who may talk to it (contract.md § Transport)."""

    host: str = "127.0.0.1"
    port: int = 5568
    # A secret: pueue's lesson (style.md § pueue) is that secrets never reach a repr or a log.
    token: str | None = field(default=None, repr=False)
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """`[store]`: the SQLite file holding the job records."""

    path: Path = field(default_factory=default_db_path)


@dataclass(frozen=True, slots=True)
class CoresConfig:
    """`[cores]`: how many cores jobs may use and whether MPI ranks are pinned to them."""

    max_usable: int | None = None
    intel_mpi_pinning: bool = True
    placement: str = "pack"
    use_siblings: bool = False
    pin: bool = True
    topology_root: Path | None = None


@dataclass(frozen=True, slots=True)
class WatchdogConfig:
    """`[watchdog]`: how often live jobs are checked for vanished solvers."""

    interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class JobsConfig:
    """`[jobs]`: stop deadline, where inputs may live, PID search and orphan cleanup."""

    stop_grace_s: float = 30.0
    allowed_roots: tuple[Path, ...] = ()
    pid_search_s: float = 10.0
    clean_orphans_at_start: bool = False


@dataclass(frozen=True, slots=True)
class LogConfig:
    """`[log]`: the log file (None: console only) and the level."""

    file: Path | None = field(default_factory=default_log_file)
    level: str = "INFO"


class MpiKind(StrEnum):
    """How a profile's solver is started: directly, or under one of these MPI launchers."""

    NONE = "none"
    INTELMPI = "intelmpi"
    MSMPI = "msmpi"
    MPICH = "mpich"
    OPENMPI = "openmpi"


#: Process names a family's solver shows, when a profile does not say (substrings, any case).
DEFAULT_PROCESS_NAMES: Mapping[Family, tuple[str, ...]] = MappingProxyType(
    {
        Family.LSDYNA: ("lsdyna", "ls-dyna", "ls_dyna", "mppdyna", "smpdyna"),
        Family.CALCULIX: ("ccx",),
        Family.HFSS: ("ansysedt", "hf3d", "hfsscomengine"),
    }
)

#: Launchers and shells that sit between the daemon and the solver. A process_names entry
#: matching one of them would make the PID search report a launcher as the solver, which the
#: contract forbids (§ Job: `pid` is "the real solver process, never a shell or mpiexec").
LAUNCHER_NAMES: tuple[str, ...] = (
    "mpiexec",
    "mpirun",
    "hydra_pmi_proxy",
    "orterun",
    "sh",
    "bash",
    "cmd",
    "python",
)

#: The licence pool LS-DYNA-family profiles draw from, one per core, unless they say
#: otherwise (contract.md § Configuration).
LSDYNA_POOL = "lsdyna"


@dataclass(frozen=True, slots=True)
class SolverProfile:
    """`[solvers.NAME]`: how to start one solver and how to recognise its process."""

    name: str
    family: Family
    executable: str
    process_names: tuple[str, ...]
    mpi: MpiKind = MpiKind.NONE
    mpiexec: str | None = None
    extra_args: tuple[str, ...] = ()
    #: None: the family default (LS-DYNA: pool "lsdyna", one per core; others: none).
    licenses: tuple[tuple[str, LicenseUse], ...] | None = None
    builtin: bool = False
    #: False: jobs of this profile take no cores from the allocator and are not pinned
    #: (light tasks such as pre- and post-processing scripts).
    book_cores: bool = True

    def licenses_for(self, ncpu: int) -> tuple[tuple[str, int], ...]:
        """The licences one job of `ncpu` cores takes from each pool, as (pool, count) pairs.

        A pool not configured under `[licenses]` is not limited; the queue decides that.
        """
        if self.licenses is None:
            return ((LSDYNA_POOL, ncpu),) if self.family is Family.LSDYNA else ()
        return tuple(
            (pool, ncpu if use == "ncpu" else use) for pool, use in self.licenses
        )


@dataclass(frozen=True, slots=True)
class LstcConfig:
    """`[lstc]`: the LSTC licence server tools; present = live licence counts are polled."""

    qrun: str = "lstc_qrun"
    qkill: str = "lstc_qkill"
    server: str | None = None
    poll_interval_s: float = 60.0
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class LegacyConfig:
    """`[legacy]`: the DynaLauncher desktop GUI's Socket.IO endpoint and its history."""

    enabled: bool = True
    import_db: Path | None = None
    solver_dirs: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class SlurmConfig:
    """`[backends.slurm]`: its presence enables the Slurm backend; values go to sbatch."""

    partition: str | None = None
    account: str | None = None
    time_limit: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration, as the daemon uses it; immutable, built by `load_config`."""

    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    cores: CoresConfig = field(default_factory=CoresConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    licenses: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    solvers: Mapping[str, SolverProfile] = field(
        default_factory=lambda: MappingProxyType({})
    )
    slurm: SlurmConfig | None = None
    lstc: LstcConfig | None = None
    legacy: LegacyConfig = field(default_factory=LegacyConfig)
    source: Path | None = None


@dataclass(frozen=True, slots=True)
class Flags:
    """Command-line overrides; None (or False) means "not given", so the file decides."""

    host: str | None = None
    port: int | None = None
    db: Path | None = None
    max_cores: int | None = None
    watchdog_interval: float | None = None
    no_intel_mpi_core_allocation: bool = False
    clean_orphans_at_start: bool = False
    token: str | None = field(default=None, repr=False)
    log_file: Path | None = None
    log_level: str | None = None
    stop_grace_s: float | None = None


# ---------------------------------------------------------------------------------------
# The key reference: every key, its type, default and meaning. Validation reads the key
# names from here, the README reference and example_toml() are generated from it.
# ---------------------------------------------------------------------------------------


def _toml_value(value: object) -> str:
    """`value` written as TOML (for the reference and the example file)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        # JSON string escapes are all valid in TOML basic strings.
        return json.dumps(str(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _default(record: type, name: str) -> str:
    """The TOML text of a record field's plain default (not for None or factory defaults)."""
    for item in dataclasses.fields(record):
        if item.name == name:
            return _toml_value(item.default)
    raise KeyError(name)


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One documented configuration key.

    `default` is TOML text when the default is a plain value, otherwise prose; `example` is
    TOML text shown commented out in `example_toml()` for keys whose default cannot be
    written in TOML (unset, or platform dependent); `flag` is the command-line override.
    """

    section: str
    key: str
    type: str
    default: str
    meaning: str
    example: str | None = None
    flag: str | None = None


#: What each section is for, in file order; the sections in EXAMPLE_COMMENTED_SECTIONS are
#: off unless written, so the example file shows them commented out.
CONFIG_SECTIONS: Mapping[str, str] = MappingProxyType(
    {
        "server": "Where the daemon listens and who may connect (contract.md § Transport).",
        "store": "The SQLite file holding the job records.",
        "cores": "Cores jobs may use, and MPI pinning.",
        "watchdog": "The liveness check of running jobs.",
        "jobs": "Stopping, input locations, PID search, orphan cleanup.",
        "log": "Logging.",
        "licenses": "Static licence pools: NAME = COUNT. Pools not listed are not limited.",
        "lstc": "Present = live LS-DYNA licence counts from an LSTC licence server (lstc_qrun).",
        "legacy": "The DynaLauncher desktop GUI's Socket.IO endpoint and its job history.",
        "backends.slurm": 'Present = the Slurm backend is enabled (launch(..., backend="slurm")).',
        "solvers.NAME": "A solver profile, used as launch(solver=NAME). Built-in profiles "
        "lsdyna-smp, lsdyna-mpp and calculix exist unless a table of the same name replaces them.",
    }
)
EXAMPLE_COMMENTED_SECTIONS = frozenset({"backends.slurm", "solvers.NAME", "lstc"})

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

CONFIG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(
        "server",
        "host",
        "string",
        _default(ServerConfig, "host"),
        "Address to bind. Anything but loopback (127.0.0.0/8, ::1, localhost) needs a token.",
        flag="--host",
    ),
    ConfigKey(
        "server",
        "port",
        "integer 0-65535",
        _default(ServerConfig, "port"),
        "TCP port for WebSocket, legacy Socket.IO and HTTP (0: any free port).",
        flag="--port",
    ),
    ConfigKey(
        "server",
        "token",
        "string",
        "unset (no authentication)",
        "Shared secret clients present as `Authorization: Bearer TOKEN` or `?token=TOKEN`.",
        example='"change-me"',
        flag="--token",
    ),
    ConfigKey(
        "server",
        "allowed_origins",
        "list of strings",
        _default(ServerConfig, "allowed_origins"),
        'Browser origins allowed besides the daemon\'s own (e.g. "http://dash.example:8080").',
    ),
    ConfigKey(
        "store",
        "path",
        "path",
        'platformdirs user_data_path("dynalauncher")/jobs.db '
        "(Linux: ~/.local/share/dynalauncher/jobs.db)",
        "SQLite file holding the jobs (platformdirs' user data directory by default).",
        example='"/var/lib/dynalauncher/jobs.db"',
        flag="--db",
    ),
    ConfigKey(
        "cores",
        "max_usable",
        "integer >= 1",
        "unset (every core of the machine)",
        "Most cores all running jobs may use together.",
        example="8",
        flag="--max-cores",
    ),
    ConfigKey(
        "cores",
        "intel_mpi_pinning",
        "boolean",
        _default(CoresConfig, "intel_mpi_pinning"),
        "Pin Intel MPI jobs to their allocated cores (I_MPI_PIN_PROCESSOR_LIST and the CPU mask); "
        "false = Intel MPI pins by itself; cores are still booked, so none is given twice.",
        flag="--noIntelMpiCoreAllocation",
    ),
    ConfigKey(
        "cores",
        "placement",
        "string",
        _default(CoresConfig, "placement"),
        'How a job\'s cores are chosen: "pack" (one NUMA node or socket when the job fits '
        'there) or "spread" (evenly over the sockets).',
    ),
    ConfigKey(
        "cores",
        "pin",
        "boolean",
        _default(CoresConfig, "pin"),
        "Pin jobs to the cores they booked (CPU mask, MPI binding options); false = cores "
        "are booked for scheduling only.",
    ),
    ConfigKey(
        "cores",
        "topology_root",
        "path",
        "unset (the machine's own)",
        "A recorded copy of /sys/devices/system/cpu to plan cores on instead of this "
        "machine's (for tests and benchmarks; needs pin = false when it names other CPUs).",
        example='"/srv/recorded/2s-32c-ht/cpu"',
    ),
    ConfigKey(
        "cores",
        "use_siblings",
        "boolean",
        _default(CoresConfig, "use_siblings"),
        "Give jobs both hyper-threads of a core; false = one logical CPU per physical core.",
    ),
    ConfigKey(
        "lstc",
        "qrun",
        "string",
        _default(LstcConfig, "qrun"),
        "lstc_qrun: absolute path or a name looked up on PATH (run without a shell).",
    ),
    ConfigKey(
        "lstc",
        "qkill",
        "string",
        _default(LstcConfig, "qkill"),
        "lstc_qkill: absolute path or a name looked up on PATH.",
    ),
    ConfigKey(
        "lstc",
        "server",
        "string",
        "unset (the tools' own default: LSTC_LICENSE_SERVER)",
        "Licence server as PORT@HOST, passed to the tools as LSTC_LICENSE_SERVER.",
        example='"31010@licserver"',
    ),
    ConfigKey(
        "lstc",
        "poll_interval_s",
        "number > 0",
        _default(LstcConfig, "poll_interval_s"),
        "Seconds between licence server polls (licences used by others count as used).",
    ),
    ConfigKey(
        "lstc",
        "timeout_s",
        "number > 0",
        _default(LstcConfig, "timeout_s"),
        "Seconds one lstc_qrun / lstc_qkill call may take.",
    ),
    ConfigKey(
        "legacy",
        "enabled",
        "boolean",
        _default(LegacyConfig, "enabled"),
        "Serve the DynaLauncher desktop GUI's Socket.IO endpoint at /socket.io/.",
    ),
    ConfigKey(
        "legacy",
        "import_db",
        "path",
        "unset (nothing is imported)",
        "An API-DynaLauncher DynaLauncher.db whose jobs are imported at the first start "
        "(read only; the file is never changed).",
        example='"C:/DynaLauncher/instance/DynaLauncher.db"',
    ),
    ConfigKey(
        "legacy",
        "solver_dirs",
        "list of paths",
        "[]",
        "Folders whose executables the GUI may name as its solver, besides the configured "
        "profiles' executables.",
    ),
    ConfigKey(
        "watchdog",
        "interval_s",
        "number > 0",
        _default(WatchdogConfig, "interval_s"),
        "Seconds between liveness checks of running jobs.",
        flag="--watchdog-interval",
    ),
    ConfigKey(
        "jobs",
        "stop_grace_s",
        "number > 0",
        _default(JobsConfig, "stop_grace_s"),
        "Seconds a graceful stop may take before the process tree is killed.",
        flag="--stop-grace-s",
    ),
    ConfigKey(
        "jobs",
        "allowed_roots",
        "list of paths",
        _default(JobsConfig, "allowed_roots"),
        "Folders inputs must lie under; empty = anywhere.",
    ),
    ConfigKey(
        "jobs",
        "pid_search_s",
        "number > 0",
        _default(JobsConfig, "pid_search_s"),
        "Seconds to look for the real solver process under its launcher before giving up.",
    ),
    ConfigKey(
        "jobs",
        "clean_orphans_at_start",
        "boolean",
        _default(JobsConfig, "clean_orphans_at_start"),
        "At start, kill solver processes no job owns.",
        flag="--clean-orphans-at-start",
    ),
    ConfigKey(
        "log",
        "file",
        "path",
        'platformdirs user_log_path("dynalauncher")/dynalauncher.log '
        "(Linux: ~/.local/state/dynalauncher/log/dynalauncher.log)",
        'Log file; "" = log to the console only.',
        example='"/var/log/dynalauncher.log"',
        flag="--log-file",
    ),
    ConfigKey(
        "log",
        "level",
        "string",
        _default(LogConfig, "level"),
        "One of " + ", ".join(_LOG_LEVELS) + " (any case).",
        flag="--log-level",
    ),
    ConfigKey(
        "licenses",
        "NAME",
        "integer >= 0",
        "no pools",
        'Licences in pool NAME; LS-DYNA profiles draw from pool "lsdyna", one per core.',
        example="8",
    ),
    ConfigKey(
        "backends.slurm",
        "partition",
        "string",
        "unset (Slurm's default)",
        "Partition jobs are submitted to.",
        example='"compute"',
    ),
    ConfigKey(
        "backends.slurm",
        "account",
        "string",
        "unset (Slurm's default)",
        "Account jobs are charged to.",
        example='"cae"',
    ),
    ConfigKey(
        "backends.slurm",
        "time_limit",
        "string or integer (minutes)",
        "unset (the partition's limit)",
        "Job time limit in Slurm's formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.",
        example='"2-00:00:00"',
    ),
    ConfigKey(
        "solvers.NAME",
        "family",
        "string",
        "required",
        "One of " + ", ".join(f'"{f.value}"' for f in Family) + ".",
        example='"lsdyna"',
    ),
    ConfigKey(
        "solvers.NAME",
        "executable",
        "string",
        "required",
        "Absolute path, path relative to this file, or a name looked up on PATH.",
        example='"/opt/lsdyna/mppdyna_d_R13"',
    ),
    ConfigKey(
        "solvers.NAME",
        "process_names",
        "list of strings",
        "by family: lsdyna "
        + _toml_value(DEFAULT_PROCESS_NAMES[Family.LSDYNA])
        + ", calculix "
        + _toml_value(DEFAULT_PROCESS_NAMES[Family.CALCULIX])
        + ", hfss "
        + _toml_value(DEFAULT_PROCESS_NAMES[Family.HFSS])
        + ", generic [executable's name without extension]",
        "Substrings matched case-insensitively against process names to find the real "
        "solver; never a launcher or shell (" + ", ".join(LAUNCHER_NAMES) + ").",
        example='["lsdyna", "mppdyna"]',
    ),
    ConfigKey(
        "solvers.NAME",
        "mpi",
        "string",
        '"none"',
        "One of " + ", ".join(f'"{k.value}"' for k in MpiKind) + ".",
        example='"intelmpi"',
    ),
    ConfigKey(
        "solvers.NAME",
        "mpiexec",
        "string",
        '"mpiexec" when mpi is not "none"',
        "The MPI launcher: absolute path or a name looked up on PATH.",
        example='"mpiexec.hydra"',
    ),
    ConfigKey(
        "solvers.NAME",
        "extra_args",
        "list of strings",
        "[]",
        "Arguments added to every command line of this profile.",
        example='["memory2=200m"]',
    ),
    ConfigKey(
        "solvers.NAME",
        "book_cores",
        "boolean",
        "true",
        "false = jobs of this profile take no cores and are not pinned (light tasks such as "
        "post-processing); they are still supervised, stopped and recovered like any job.",
    ),
    ConfigKey(
        "solvers.NAME",
        "licenses",
        'table of POOL = "ncpu" | integer',
        'lsdyna family: { lsdyna = "ncpu" }; others: {}',
        'Licences one job takes: "ncpu" = one per core, or a fixed count per job; '
        "each POOL must be listed under [licenses].",
        example='{ lsdyna = "ncpu" }',
    ),
)


def _keys_of(section: str) -> tuple[str, ...]:
    return tuple(k.key for k in CONFIG_KEYS if k.section == section)


def config_reference() -> str:
    """The configuration reference as a Markdown table, for the README."""
    lines = ["| key | type | default | meaning | flag |", "|---|---|---|---|---|"]
    for k in CONFIG_KEYS:
        cells = (f"`[{k.section}] {k.key}`", k.type, k.default, k.meaning, k.flag or "")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def example_toml() -> str:
    """A commented example configuration with every key.

    Keys whose default has a TOML form are written with that default, the others are
    commented out, so loading the example gives exactly the defaults (a test checks it).
    """
    out = [
        "# dynalauncher configuration (contract.md § Configuration).",
        "# Every key is optional; the values written here are the defaults.",
        "# Command-line flags override this file. Relative paths are relative to this file.",
    ]
    for section, about in CONFIG_SECTIONS.items():
        commented = section in EXAMPLE_COMMENTED_SECTIONS
        header = "solvers.my-solver" if section == "solvers.NAME" else section
        out += ["", f"# {about}", ("# " if commented else "") + f"[{header}]"]
        for k in (k for k in CONFIG_KEYS if k.section == section):
            flag = f" (flag {k.flag})" if k.flag else ""
            out.append(f"# {k.key}: {k.type}; {k.meaning}{flag}")
            key = "lsdyna" if k.key == "NAME" else k.key
            if commented or k.example is not None:
                out.append(
                    f"# {key} = {k.example if k.example is not None else k.default}"
                )
            else:
                out.append(f"{key} = {k.default}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------
# Value checks, shared by the file and the flags. Each returns the clean value or raises
# _Bad with what was expected; the caller adds where (file, section, key).
# ---------------------------------------------------------------------------------------


class _Bad(Exception):
    """A value did not fit; the text says what was expected ("a number > 0")."""


def _show(value: object) -> str:
    """A value as the user wrote it, roughly in TOML, kept short for a one-line message."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        text = "a table"
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):  # a value json cannot render: fall back to repr
            text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(lo: int | None = None, hi: int | None = None) -> Callable[[object], int]:
    if lo is not None and hi is not None:
        expected = f"an integer from {lo} to {hi}"
    elif lo is not None:
        expected = f"an integer >= {lo}"
    else:
        expected = "an integer"

    def check(value: object) -> int:
        # bool is a subclass of int in Python, but `port = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(expected)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _Bad(expected)
        return value

    return check


def _positive_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad("a number > 0")
    if not math.isfinite(value) or value <= 0:
        raise _Bad("a number > 0")
    return float(value)


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("a non-empty string")
    return value


def _text_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Bad("a list of non-empty strings")
    return tuple(value)


def _choice(kind: type[StrEnum]) -> Callable[[object], str]:
    expected = "one of " + ", ".join(f'"{member.value}"' for member in kind)

    def check(value: object) -> str:
        if not isinstance(value, str) or value not in {m.value for m in kind}:
            raise _Bad(expected)
        return value

    return check


def _log_level(value: object) -> str:
    if not isinstance(value, str) or value.upper() not in _LOG_LEVELS:
        raise _Bad("one of " + ", ".join(f'"{v}"' for v in _LOG_LEVELS))
    return value.upper()


_SLURM_TIME = re.compile(
    r"\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}(:\d{1,2}(:\d{1,2})?)?|unlimited|infinite",
    re.IGNORECASE,
)


def _slurm_time(value: object) -> str:
    """A Slurm --time value; an integer means minutes, as sbatch reads it."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and _SLURM_TIME.fullmatch(value.strip()):
        return value.strip()
    raise _Bad('a Slurm time limit such as 90, "12:00:00" or "2-00:00:00"')


_LSTC_SERVER = re.compile(r"\d{1,5}@[A-Za-z0-9._-]+")


def _lstc_server(value: object) -> str:
    if not isinstance(value, str) or not _LSTC_SERVER.fullmatch(value.strip()):
        raise _Bad('PORT@HOST, e.g. "31010@licserver"')
    return value.strip()


def _path_under(base: Path) -> Callable[[object], Path]:
    def check(value: object) -> Path:
        return _absolute(Path(_text(value)), base)

    return check


def _absolute(path: Path, base: Path) -> Path:
    """`path` with ~ expanded, joined to `base` when relative (no symlinks resolved)."""
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def is_loopback(host: str) -> bool:
    """Whether binding `host` only accepts local connections (127.0.0.0/8, ::1, localhost)."""
    bare = host.strip().strip("[]")
    if bare.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


# ---------------------------------------------------------------------------------------
# Reading the file.
# ---------------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, object]:
    """The parsed file, or ConfigError naming the file and (for syntax) line and column."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such configuration file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from exc
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the configuration file: {exc.strerror}"
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8"
        ) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Its message ends with "(at line L, column C)", which the user needs.
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


class _Section:
    """One table of the file: typed reads that fail naming the file, section and key."""

    def __init__(
        self, where: str, name: str, raw: object, known: Iterable[str] | None
    ) -> None:
        self.where = where
        self.name = name
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: [{name}]: expected a table, got {_show(raw)}")
        self.raw: dict[str, object] = raw
        if known is not None:
            known = tuple(known)
            for key in raw:
                if key not in known:
                    raise self.error(
                        key, "unknown key" + _suggest(key, known, "known keys")
                    )

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where}: [{self.name}] {key}: {message}")

    def check(self, key: str, value: object, checker: Callable[[object], T]) -> T:
        try:
            return checker(value)
        except _Bad as bad:
            raise self.error(key, f"expected {bad}, got {_show(value)}") from None

    def get(self, key: str, checker: Callable[[object], T], default: T) -> T:
        if key not in self.raw:
            return default
        return self.check(key, self.raw[key], checker)

    def optional(self, key: str, checker: Callable[[object], T]) -> T | None:
        if key not in self.raw:
            return None
        return self.check(key, self.raw[key], checker)


def _suggest(word: str, known: Iterable[str], what: str) -> str:
    known = list(known)
    close = difflib.get_close_matches(word, known, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f"{hint}; {what}: {', '.join(known)}"


_TOP_LEVEL = (
    "server",
    "store",
    "cores",
    "watchdog",
    "jobs",
    "log",
    "licenses",
    "lstc",
    "legacy",
    "backends",
    "solvers",
)


def _check_top_level(raw: Mapping[str, object], where: str) -> None:
    for name, value in raw.items():
        if name not in _TOP_LEVEL:
            if isinstance(value, dict):
                raise ConfigError(
                    f"{where}: unknown section [{name}]"
                    + _suggest(name, _TOP_LEVEL, "known sections")
                )
            raise ConfigError(
                f"{where}: {name}: unknown top-level key; every setting belongs in a section"
                + _suggest(name, _TOP_LEVEL, "sections")
            )


def _section(raw: Mapping[str, object], name: str, where: str) -> _Section:
    return _Section(where, name, raw.get(name, {}), _keys_of(name))


# ---------------------------------------------------------------------------------------
# Solver profiles.
# ---------------------------------------------------------------------------------------

_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

#: LS-DYNA SMP executables as installers and users commonly name them, best guess first.
LSDYNA_SMP_CANDIDATES: tuple[str, ...] = (
    "lsdyna",
    "ls-dyna",
    "lsdyna_smp",
    "ls-dyna_smp*",
    "lsdyna_sp*",
    "lsdyna_dp*",
    "smpdyna*",
)
#: LS-DYNA MPP executables, best guess first.
LSDYNA_MPP_CANDIDATES: tuple[str, ...] = ("mppdyna*", "ls-dyna_mpp*", "lsdyna_mpp*")


def launcher_name_in(name: str) -> str | None:
    """The launcher or shell that process-name substring `name` would match, if any.

    `name` matches a process when it is a substring of the process name (any case). So it
    is refused when it is a substring of a launcher's name ("mpi", "bash"), or when it is a
    launcher's name plus a version or extension ("python3", "mpiexec.hydra", "cmd.exe").
    """
    lowered = name.lower()
    for launcher in LAUNCHER_NAMES:
        if lowered in launcher:
            return launcher
        if lowered.startswith(launcher) and not lowered[len(launcher) :][:1].isalpha():
            return launcher
    return None


def default_process_names(family: Family, executable: str) -> tuple[str, ...]:
    """What a profile's solver process is called when the profile does not say.

    Generic profiles use the executable's file name without extension: matching is by
    substring, so that always matches the full name too.
    """
    if family in DEFAULT_PROCESS_NAMES:
        return DEFAULT_PROCESS_NAMES[family]
    # PureWindowsPath splits on both / and \, so a Windows path in a config read on Linux works.
    return (PureWindowsPath(executable).stem,)


def _natural_key(path: Path) -> list[object]:
    """Sort key that orders R9 before R13, so the newest release sorts last."""
    return [
        int(part) if part.isdigit() else part.lower()
        for part in re.split(r"(\d+)", path.name)
    ]


def find_executable(candidates: Iterable[str], search_path: str) -> Path | None:
    """The first candidate found on `search_path` (a PATH value), or None.

    Candidates are tried in order; a plain name is looked up like a shell would, a glob
    pattern picks, in each PATH folder in order, the highest version that is executable.
    """
    folders = [folder for folder in search_path.split(os.pathsep) if folder]
    for pattern in candidates:
        if not any(c in pattern for c in "*?["):
            found = shutil.which(pattern, path=search_path)
            if found:
                return Path(found)
            continue
        for folder in folders:
            for match in sorted(
                Path(folder).glob(pattern), key=_natural_key, reverse=True
            ):
                # which() on a path checks "is an executable file" portably.
                found = shutil.which(str(match))
                if found:
                    return Path(found)
    return None


def builtin_profiles(
    environ: Mapping[str, str] | None = None,
) -> dict[str, SolverProfile]:
    """The profiles that exist without any configuration, executables looked up on PATH.

    A profile whose executable is not found still exists (with a plain name), so a client
    listing solvers sees it and `resolve_profile` says why it is unavailable.
    """
    env = os.environ if environ is None else environ
    search = env.get("PATH", os.defpath)
    smp = find_executable(LSDYNA_SMP_CANDIDATES, search)
    mpp = find_executable(LSDYNA_MPP_CANDIDATES, search)
    lsdyna_names = DEFAULT_PROCESS_NAMES[Family.LSDYNA]
    return {
        "lsdyna-smp": SolverProfile(
            name="lsdyna-smp",
            family=Family.LSDYNA,
            executable=str(smp) if smp else "lsdyna",
            process_names=lsdyna_names,
            builtin=True,
        ),
        "lsdyna-mpp": SolverProfile(
            name="lsdyna-mpp",
            family=Family.LSDYNA,
            executable=str(mpp) if mpp else "mppdyna",
            process_names=lsdyna_names,
            mpi=MpiKind.MPICH,
            mpiexec="mpiexec",
            builtin=True,
        ),
        "calculix": SolverProfile(
            name="calculix",
            family=Family.CALCULIX,
            executable="ccx",
            process_names=DEFAULT_PROCESS_NAMES[Family.CALCULIX],
            builtin=True,
        ),
    }


def _executable(value: object, base: Path) -> str:
    """A bare name stays a name (looked up on PATH later); a path is made absolute."""
    text = _text(value)
    if "/" in text or "\\" in text:
        return str(_absolute(Path(text), base))
    return text


def _license_table(
    sec: _Section, pools: Mapping[str, int]
) -> tuple[tuple[str, LicenseUse], ...] | None:
    if "licenses" not in sec.raw:
        return None
    raw = sec.raw["licenses"]
    if not isinstance(raw, dict):
        raise sec.error(
            "licenses",
            f'expected a table such as {{ lsdyna = "ncpu" }}, got {_show(raw)}',
        )
    uses: list[tuple[str, LicenseUse]] = []
    for pool, value in raw.items():
        key = f"licenses.{pool}"
        use: LicenseUse = (
            "ncpu" if value == "ncpu" else sec.check(key, value, _license_count)
        )
        if pool not in pools:
            raise sec.error(
                key, f'no pool "{pool}" under [licenses]; add [licenses] {pool} = COUNT'
            )
        uses.append((pool, use))
    return tuple(uses)


def _license_count(value: object) -> int:
    try:
        return _integer(lo=1)(value)
    except _Bad:
        raise _Bad('"ncpu" or an integer >= 1') from None


def _profile(
    name: str, raw: object, where: str, base: Path, pools: Mapping[str, int]
) -> SolverProfile:
    """One `[solvers.NAME]` table as a profile; ConfigError names the bad key."""
    sec = _Section(where, f"solvers.{name}", raw, _keys_of("solvers.NAME"))
    if not _PROFILE_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: [solvers.{name}]: a profile name is letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    for required in ("family", "executable"):
        if required not in sec.raw:
            raise sec.error(
                required, "missing; every profile needs family and executable"
            )
    family = Family(sec.check("family", sec.raw["family"], _choice(Family)))
    executable = sec.check(
        "executable", sec.raw["executable"], lambda v: _executable(v, base)
    )
    mpi = MpiKind(sec.get("mpi", _choice(MpiKind), MpiKind.NONE.value))
    mpiexec = sec.optional("mpiexec", _text)
    if mpi is MpiKind.NONE and mpiexec is not None:
        raise sec.error(
            "mpiexec", 'set, but mpi is "none"; set mpi too, or remove mpiexec'
        )
    if mpi is not MpiKind.NONE and mpiexec is None:
        mpiexec = "mpiexec"
    elif mpiexec is not None:
        mpiexec = _executable(mpiexec, base)
    if "process_names" in sec.raw:
        names = sec.check("process_names", sec.raw["process_names"], _text_list)
        if not names:
            raise sec.error("process_names", "expected at least one name, got []")
        origin = ""
    else:
        names = default_process_names(family, executable)
        origin = f' (the default, from executable "{executable}"; set process_names)'
    for item in names:
        launcher = launcher_name_in(item)
        if launcher is not None:
            raise sec.error(
                "process_names",
                f'"{item}" would match the launcher or shell "{launcher}", not the solver{origin}',
            )
    return SolverProfile(
        name=name,
        family=family,
        executable=executable,
        process_names=names,
        mpi=mpi,
        mpiexec=mpiexec,
        extra_args=sec.get("extra_args", _text_list, ()),
        licenses=_license_table(sec, pools),
        book_cores=sec.get("book_cores", _boolean, True),
    )


# ---------------------------------------------------------------------------------------
# load_config and the flags.
# ---------------------------------------------------------------------------------------


def load_config(
    path: Path | None,
    flags: Flags | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read, validate and merge the configuration: defaults < file < flags.

    `path` None means no file (all defaults). `environ` (default os.environ) supplies the
    PATH the built-in profiles are looked up on. Raises ConfigError naming the file (or
    "command line") and the key for anything wrong, including a non-loopback host without
    a token. Pure apart from reading `path` and PATH folders; safe to call from any thread.
    """
    raw: dict[str, object] = {} if path is None else _read_toml(path)
    where = str(path) if path is not None else "defaults"
    base = path.parent.absolute() if path is not None else Path.cwd()
    _check_top_level(raw, where)

    # slots=True replaces class-level defaults with slot descriptors: read them off instances.
    defaults = Config()

    sec = _section(raw, "server", where)
    server = ServerConfig(
        host=sec.get("host", _text, defaults.server.host),
        port=sec.get("port", _integer(0, 65535), defaults.server.port),
        token=sec.optional("token", _text),
        allowed_origins=sec.get(
            "allowed_origins", _text_list, defaults.server.allowed_origins
        ),
    )
    host_where = f"{where}: [server] host"

    sec = _section(raw, "store", where)
    store = StoreConfig(path=sec.get("path", _path_under(base), defaults.store.path))

    sec = _section(raw, "cores", where)
    cores = CoresConfig(
        max_usable=sec.optional("max_usable", _integer(lo=1)),
        intel_mpi_pinning=sec.get(
            "intel_mpi_pinning", _boolean, defaults.cores.intel_mpi_pinning
        ),
        placement=sec.get("placement", _choice(Placement), defaults.cores.placement),
        use_siblings=sec.get("use_siblings", _boolean, defaults.cores.use_siblings),
        pin=sec.get("pin", _boolean, defaults.cores.pin),
        topology_root=sec.optional("topology_root", _path_under(base)),
    )

    sec = _section(raw, "watchdog", where)
    watchdog = WatchdogConfig(
        interval_s=sec.get("interval_s", _positive_number, defaults.watchdog.interval_s)
    )

    sec = _section(raw, "jobs", where)
    roots = sec.optional("allowed_roots", _text_list)
    jobs = JobsConfig(
        stop_grace_s=sec.get(
            "stop_grace_s", _positive_number, defaults.jobs.stop_grace_s
        ),
        allowed_roots=(
            defaults.jobs.allowed_roots
            if roots is None
            else tuple(_absolute(Path(root), base) for root in roots)
        ),
        pid_search_s=sec.get(
            "pid_search_s", _positive_number, defaults.jobs.pid_search_s
        ),
        clean_orphans_at_start=sec.get(
            "clean_orphans_at_start", _boolean, defaults.jobs.clean_orphans_at_start
        ),
    )

    sec = _section(raw, "log", where)
    log_file = defaults.log.file
    if "file" in sec.raw:
        # "" turns the file off: TOML has no null to say "no file".
        log_file = (
            None
            if sec.raw["file"] == ""
            else sec.check("file", sec.raw["file"], _path_under(base))
        )
    log = LogConfig(
        file=log_file, level=sec.get("level", _log_level, defaults.log.level)
    )

    sec = _Section(where, "licenses", raw.get("licenses", {}), None)
    licenses = {
        pool: sec.check(pool, count, _integer(lo=0)) for pool, count in sec.raw.items()
    }

    backends = _Section(where, "backends", raw.get("backends", {}), ("slurm",))
    slurm: SlurmConfig | None = None
    if "slurm" in backends.raw:
        sec = _Section(
            where, "backends.slurm", backends.raw["slurm"], _keys_of("backends.slurm")
        )
        slurm = SlurmConfig(
            partition=sec.optional("partition", _text),
            account=sec.optional("account", _text),
            time_limit=sec.optional("time_limit", _slurm_time),
        )

    lstc: LstcConfig | None = None
    if "lstc" in raw:
        sec = _section(raw, "lstc", where)
        plain = LstcConfig()
        lstc = LstcConfig(
            qrun=sec.get("qrun", _text, plain.qrun),
            qkill=sec.get("qkill", _text, plain.qkill),
            server=sec.optional("server", _lstc_server),
            poll_interval_s=sec.get("poll_interval_s", _positive_number, plain.poll_interval_s),
            timeout_s=sec.get("timeout_s", _positive_number, plain.timeout_s),
        )

    sec = _section(raw, "legacy", where)
    dirs = sec.optional("solver_dirs", _text_list)
    legacy = LegacyConfig(
        enabled=sec.get("enabled", _boolean, defaults.legacy.enabled),
        import_db=sec.optional("import_db", _path_under(base)),
        solver_dirs=() if dirs is None else tuple(_absolute(Path(d), base) for d in dirs),
    )

    solvers_raw = _Section(where, "solvers", raw.get("solvers", {}), None).raw
    solvers = builtin_profiles(environ)
    # A user table with a built-in's name replaces it whole; no key is inherited.
    solvers.update(
        {
            name: _profile(name, table, where, base, licenses)
            for name, table in solvers_raw.items()
        }
    )

    config = Config(
        server=server,
        store=store,
        cores=cores,
        watchdog=watchdog,
        jobs=jobs,
        log=log,
        licenses=MappingProxyType(licenses),
        solvers=MappingProxyType(solvers),
        slurm=slurm,
        lstc=lstc,
        legacy=legacy,
        source=path,
    )
    if flags is not None:
        config = _apply_flags(config, flags)
        if flags.host is not None:
            host_where = "command line: --host"
    if not is_loopback(config.server.host) and config.server.token is None:
        raise ConfigError(
            f"{host_where}: binding {config.server.host} needs [server] token (or --token): "
            "clients on other machines must authenticate (contract.md § Transport)"
        )
    return config


def _flag(name: str, value: object, checker: Callable[[object], T]) -> T:
    try:
        return checker(value)
    except _Bad as bad:
        raise ConfigError(
            f"command line: {name}: expected {bad}, got {_show(value)}"
        ) from None


def _apply_flags(config: Config, flags: Flags) -> Config:
    """`config` with every given flag applied; ConfigError names a bad flag."""
    cwd = Path.cwd()
    server, store, cores = config.server, config.store, config.cores
    watchdog, jobs, log = config.watchdog, config.jobs, config.log
    if flags.host is not None:
        server = dataclasses.replace(server, host=_flag("--host", flags.host, _text))
    if flags.port is not None:
        server = dataclasses.replace(
            server, port=_flag("--port", flags.port, _integer(0, 65535))
        )
    if flags.token is not None:
        server = dataclasses.replace(server, token=_flag("--token", flags.token, _text))
    if flags.db is not None:
        store = StoreConfig(path=_absolute(Path(flags.db), cwd))
    if flags.max_cores is not None:
        cores = dataclasses.replace(
            cores, max_usable=_flag("--max-cores", flags.max_cores, _integer(lo=1))
        )
    if flags.no_intel_mpi_core_allocation:
        cores = dataclasses.replace(cores, intel_mpi_pinning=False)
    if flags.watchdog_interval is not None:
        interval = _flag(
            "--watchdog-interval", flags.watchdog_interval, _positive_number
        )
        watchdog = WatchdogConfig(interval_s=interval)
    if flags.stop_grace_s is not None:
        grace = _flag("--stop-grace-s", flags.stop_grace_s, _positive_number)
        jobs = dataclasses.replace(jobs, stop_grace_s=grace)
    if flags.clean_orphans_at_start:
        jobs = dataclasses.replace(jobs, clean_orphans_at_start=True)
    if flags.log_file is not None:
        log = dataclasses.replace(log, file=_absolute(Path(flags.log_file), cwd))
    if flags.log_level is not None:
        log = dataclasses.replace(
            log, level=_flag("--log-level", flags.log_level, _log_level)
        )
    return dataclasses.replace(
        config,
        server=server,
        store=store,
        cores=cores,
        watchdog=watchdog,
        jobs=jobs,
        log=log,
    )


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add the daemon's flags (contract.md § Command line) to `parser`, all defaulting to "not given".

    Ranges are checked by `load_config`, so a bad value is reported like a bad file value.
    """
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help="TOML configuration file"
    )
    parser.add_argument("--host", help="address to bind (non-loopback needs a token)")
    parser.add_argument("--port", type=int, help="port to listen on (default 5568)")
    parser.add_argument("--db", type=Path, metavar="PATH", help="SQLite job database")
    parser.add_argument(
        "--max-cores", type=int, metavar="N", help="most cores jobs may use"
    )
    parser.add_argument(
        "--watchdog-interval",
        type=float,
        metavar="SECONDS",
        help="liveness check period",
    )
    parser.add_argument(
        "--noIntelMpiCoreAllocation",
        dest="no_intel_mpi_core_allocation",
        action="store_true",
        help="no core allocation and no MPI pinning",
    )
    parser.add_argument(
        "--clean-orphans-at-start",
        action="store_true",
        help="kill solver processes no job owns at start",
    )
    parser.add_argument(
        "--token",
        help="shared secret clients must present (visible to local users in the process list)",
    )
    parser.add_argument("--log-file", type=Path, metavar="PATH", help="log file")
    parser.add_argument(
        "--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
    parser.add_argument(
        "--stop-grace-s", type=float, metavar="SECONDS", help="graceful stop deadline"
    )


def flags_from_args(args: argparse.Namespace) -> Flags:
    """The `Flags` in a namespace parsed with `add_flags`; attributes it lacks count as not given."""
    return Flags(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        db=getattr(args, "db", None),
        max_cores=getattr(args, "max_cores", None),
        watchdog_interval=getattr(args, "watchdog_interval", None),
        no_intel_mpi_core_allocation=bool(
            getattr(args, "no_intel_mpi_core_allocation", False)
        ),
        clean_orphans_at_start=bool(getattr(args, "clean_orphans_at_start", False)),
        token=getattr(args, "token", None),
        log_file=getattr(args, "log_file", None),
        log_level=getattr(args, "log_level", None),
        stop_grace_s=getattr(args, "stop_grace_s", None),
    )
