"""contract.md § Configuration and § Command line: the TOML file, the flags, the profiles.

Plain files in tmp_path and fake executables on a PATH built there; nothing is mocked.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import stat
from pathlib import Path

import pytest

from serv.config import (
    CONFIG_KEYS,
    Flags,
    MpiKind,
    SolverProfile,
    add_flags,
    config_reference,
    default_db_path,
    default_log_file,
    example_toml,
    flags_from_args,
    load_config,
)
from serv.core.jobs import Family
from serv.errors import ConfigError
from serv.profiles import describe, resolve_profile

posix_only = pytest.mark.skipif(
    os.name == "nt", reason="fake executables are sh scripts"
)

EMPTY_PATH = {"PATH": ""}


def write(tmp_path: Path, text: str, name: str = "dl.toml") -> Path:
    """A config file with `text`, returned by path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def fake_exe(folder: Path, name: str) -> Path:
    """An executable file `name` in `folder` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def load_error(tmp_path: Path, text: str, flags: Flags | None = None) -> str:
    """The ConfigError message loading `text` produces (fails if it loads)."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, flags, environ=EMPTY_PATH)
    return str(caught.value)


class TestDefaults:
    """contract.md § Configuration: every key is optional, with the documented defaults."""

    def test_load_config_gives_documented_defaults_when_there_is_no_file(self) -> None:
        """No file and no flags: the contract's defaults, the three built-ins, no Slurm."""
        config = load_config(None, environ=EMPTY_PATH)
        assert config.server.host == "127.0.0.1"
        assert config.server.port == 5568
        assert config.server.token is None
        assert config.server.allowed_origins == ()
        assert config.store.path == default_db_path()
        assert config.store.path.name == "jobs.db"
        assert config.cores.max_usable is None
        assert config.cores.intel_mpi_pinning is True
        assert config.watchdog.interval_s == 5.0
        assert config.jobs.stop_grace_s == 30.0
        assert config.jobs.allowed_roots == ()
        assert config.jobs.pid_search_s == 10.0
        assert config.jobs.clean_orphans_at_start is False
        assert config.log.file == default_log_file()
        assert config.log.level == "INFO"
        assert dict(config.licenses) == {}
        assert set(config.solvers) == {"lsdyna-smp", "lsdyna-mpp", "calculix"}
        assert config.slurm is None
        assert config.source is None

    def test_config_records_are_immutable(self) -> None:
        """Config, its sections and its mappings cannot be changed after loading."""
        config = load_config(None, environ=EMPTY_PATH)
        with pytest.raises(dataclasses.FrozenInstanceError):
            config.server.port = 1  # type: ignore[misc]
        with pytest.raises(TypeError):
            config.licenses["lsdyna"] = 3  # type: ignore[index]
        with pytest.raises(TypeError):
            config.solvers["x"] = config.solvers["calculix"]  # type: ignore[index]

    def test_example_toml_parses_back_into_the_defaults(self, tmp_path: Path) -> None:
        """The generated example file loads into exactly the default configuration."""
        path = write(tmp_path, example_toml())
        from_example = load_config(path, environ=EMPTY_PATH)
        assert from_example.source == path
        assert dataclasses.replace(from_example, source=None) == load_config(
            None, environ=EMPTY_PATH
        )

    def test_example_toml_and_reference_mention_every_key(self) -> None:
        """Every documented key appears in the example file and in the reference table."""
        example, reference = example_toml(), config_reference()
        for key in CONFIG_KEYS:
            name = "lsdyna" if key.key == "NAME" else key.key
            assert f"{name} = " in example, key
            assert f"`[{key.section}] {key.key}`" in reference, key


FULL = """
[server]
host = "0.0.0.0"
port = 6000
token = "s3cret"
allowed_origins = ["http://dash.example:8080"]

[store]
path = "db/jobs.db"

[cores]
max_usable = 12
intel_mpi_pinning = false

[watchdog]
interval_s = 2

[jobs]
stop_grace_s = 12.5
allowed_roots = ["/data/runs", "rel"]
pid_search_s = 3
clean_orphans_at_start = true

[log]
file = "/var/log/dl.log"
level = "debug"

[licenses]
lsdyna = 16
abaqus = 0

[backends.slurm]
partition = "compute"
account = "cae"
time_limit = "2-00:00:00"

[solvers.dyna-impi]
family = "lsdyna"
executable = "/opt/lsdyna/mppdyna_R13"
mpi = "intelmpi"
mpiexec = "mpiexec.hydra"
extra_args = ["memory2=200m"]
licenses = { lsdyna = "ncpu" }

[solvers.hfss]
family = "hfss"
executable = "ansysedt"
licenses = { abaqus = 2 }

[solvers.my-tool]
family = "generic"
executable = "bin/my_tool.exe"
"""


class TestFileSections:
    """contract.md § Configuration: every section and key of the file is read."""

    def test_every_section_is_parsed_into_its_record(self, tmp_path: Path) -> None:
        """Each key of a full file ends up in its record, paths relative to the file."""
        path = write(tmp_path, FULL)
        config = load_config(path, environ=EMPTY_PATH)
        assert config.source == path
        assert (config.server.host, config.server.port, config.server.token) == (
            "0.0.0.0",
            6000,
            "s3cret",
        )
        assert config.server.allowed_origins == ("http://dash.example:8080",)
        assert config.store.path == tmp_path / "db" / "jobs.db"
        assert config.cores.max_usable == 12
        assert config.cores.intel_mpi_pinning is False
        assert config.watchdog.interval_s == 2.0
        assert config.jobs.stop_grace_s == 12.5
        assert config.jobs.allowed_roots == (Path("/data/runs"), tmp_path / "rel")
        assert config.jobs.pid_search_s == 3.0
        assert config.jobs.clean_orphans_at_start is True
        assert config.log.file == Path("/var/log/dl.log")
        assert config.log.level == "DEBUG"
        assert dict(config.licenses) == {"lsdyna": 16, "abaqus": 0}
        assert config.slurm is not None
        assert (
            config.slurm.partition,
            config.slurm.account,
            config.slurm.time_limit,
        ) == (
            "compute",
            "cae",
            "2-00:00:00",
        )

    def test_solver_tables_become_profiles_with_family_defaults(
        self, tmp_path: Path
    ) -> None:
        """[solvers.NAME] tables become profiles; absent keys take the family's defaults."""
        config = load_config(write(tmp_path, FULL), environ=EMPTY_PATH)
        impi = config.solvers["dyna-impi"]
        assert impi == SolverProfile(
            name="dyna-impi",
            family=Family.LSDYNA,
            executable="/opt/lsdyna/mppdyna_R13",
            process_names=("lsdyna", "ls-dyna", "ls_dyna", "mppdyna", "smpdyna"),
            mpi=MpiKind.INTELMPI,
            mpiexec="mpiexec.hydra",
            extra_args=("memory2=200m",),
            licenses=(("lsdyna", "ncpu"),),
        )
        assert impi.licenses_for(8) == (("lsdyna", 8),)
        hfss = config.solvers["hfss"]
        assert hfss.process_names == ("ansysedt", "hf3d", "hfsscomengine")
        assert hfss.licenses_for(8) == (("abaqus", 2),)
        tool = config.solvers["my-tool"]
        assert tool.executable == str(tmp_path / "bin" / "my_tool.exe")
        assert tool.process_names == ("my_tool",)
        assert tool.licenses_for(4) == ()

    def test_lsdyna_profile_without_licenses_key_draws_one_per_core_from_lsdyna(
        self,
    ) -> None:
        """contract.md: LS-DYNA profiles draw from pool `lsdyna`, one licence per core."""
        config = load_config(None, environ=EMPTY_PATH)
        assert config.solvers["lsdyna-smp"].licenses_for(6) == (("lsdyna", 6),)
        assert config.solvers["calculix"].licenses_for(6) == ()

    def test_mpi_profile_without_mpiexec_uses_mpiexec_from_path(
        self, tmp_path: Path
    ) -> None:
        """An MPI profile that names no launcher uses "mpiexec"."""
        text = (
            '[solvers.d]\nfamily = "lsdyna"\nexecutable = "mppdyna"\nmpi = "openmpi"\n'
        )
        config = load_config(write(tmp_path, text), environ=EMPTY_PATH)
        assert config.solvers["d"].mpiexec == "mpiexec"

    def test_empty_log_file_turns_the_log_file_off(self, tmp_path: Path) -> None:
        """`[log] file = ""` means console only (TOML has no null)."""
        config = load_config(write(tmp_path, '[log]\nfile = ""\n'), environ=EMPTY_PATH)
        assert config.log.file is None


class TestFlags:
    """contract.md § Command line: flags override the file."""

    def test_flags_override_the_file(self, tmp_path: Path) -> None:
        """Every flag given wins over the file's value; flags not given leave it alone."""
        path = write(tmp_path, FULL)
        flags = Flags(
            host="127.0.0.1",
            port=0,
            db=Path("/tmp/other.db"),
            max_cores=2,
            watchdog_interval=0.5,
            clean_orphans_at_start=True,
            token="flag-token",
            log_file=Path("/tmp/dl.log"),
            log_level="warning",
            stop_grace_s=1,
        )
        config = load_config(path, flags, environ=EMPTY_PATH)
        assert (config.server.host, config.server.port, config.server.token) == (
            "127.0.0.1",
            0,
            "flag-token",
        )
        assert config.server.allowed_origins == ("http://dash.example:8080",)
        assert config.store.path == Path("/tmp/other.db")
        assert config.cores.max_usable == 2
        assert config.watchdog.interval_s == 0.5
        assert config.jobs.stop_grace_s == 1.0
        assert config.jobs.pid_search_s == 3.0
        assert config.log.file == Path("/tmp/dl.log")
        assert config.log.level == "WARNING"

    def test_no_intel_mpi_core_allocation_flag_turns_pinning_off(
        self, tmp_path: Path
    ) -> None:
        """--noIntelMpiCoreAllocation sets cores.intel_mpi_pinning to false over the file."""
        path = write(tmp_path, "[cores]\nintel_mpi_pinning = true\n")
        config = load_config(
            path, Flags(no_intel_mpi_core_allocation=True), environ=EMPTY_PATH
        )
        assert config.cores.intel_mpi_pinning is False

    def test_add_flags_parses_the_contract_flags_into_flags(self) -> None:
        """The contract's flag spellings parse into Flags; absent flags stay unset."""
        parser = argparse.ArgumentParser()
        add_flags(parser)
        args = parser.parse_args(
            [
                "--config",
                "x.toml",
                "--host",
                "::1",
                "--port",
                "5600",
                "--db",
                "j.db",
                "--max-cores",
                "4",
                "--watchdog-interval",
                "1.5",
                "--noIntelMpiCoreAllocation",
            ]
        )
        assert args.config == Path("x.toml")
        assert flags_from_args(args) == Flags(
            host="::1",
            port=5600,
            db=Path("j.db"),
            max_cores=4,
            watchdog_interval=1.5,
            no_intel_mpi_core_allocation=True,
        )
        assert flags_from_args(parser.parse_args([])) == Flags()

    @pytest.mark.parametrize(
        ("flags", "expected"),
        [
            (
                Flags(port=70000),
                "command line: --port: expected an integer from 0 to 65535, got 70000",
            ),
            (
                Flags(watchdog_interval=0),
                "command line: --watchdog-interval: expected a number > 0, got 0",
            ),
            (
                Flags(max_cores=0),
                "command line: --max-cores: expected an integer >= 1, got 0",
            ),
            (Flags(log_level="loud"), "command line: --log-level: expected one of"),
        ],
    )
    def test_bad_flag_is_refused_naming_the_flag(
        self, flags: Flags, expected: str
    ) -> None:
        """A flag out of range is a ConfigError naming the flag and the value."""
        with pytest.raises(ConfigError) as caught:
            load_config(None, flags, environ=EMPTY_PATH)
        assert str(caught.value).startswith(expected)


class TestErrors:
    """contract.md § Configuration: a bad file stops the daemon with a message naming file and key."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "[server]\nhots = 1\n",
                '[server] hots: unknown key (did you mean "host"?)',
            ),
            ("[sever]\nhost = 1\n", 'unknown section [sever] (did you mean "server"?)'),
            ("port = 1\n", "port: unknown top-level key"),
            ("[backends.pbs]\n", "[backends] pbs: unknown key"),
            (
                '[watchdog]\ninterval_s = "fast"\n',
                '[watchdog] interval_s: expected a number > 0, got "fast"',
            ),
            (
                "[watchdog]\ninterval_s = 0\n",
                "[watchdog] interval_s: expected a number > 0, got 0",
            ),
            (
                "[watchdog]\ninterval_s = -1.5\n",
                "[watchdog] interval_s: expected a number > 0, got -1.5",
            ),
            (
                "[jobs]\nstop_grace_s = true\n",
                "[jobs] stop_grace_s: expected a number > 0, got true",
            ),
            (
                "[server]\nport = true\n",
                "[server] port: expected an integer from 0 to 65535, got true",
            ),
            (
                "[server]\nport = 65536\n",
                "[server] port: expected an integer from 0 to 65535, got 65536",
            ),
            (
                "[server]\nport = -1\n",
                "[server] port: expected an integer from 0 to 65535, got -1",
            ),
            (
                '[server]\nport = "5568"\n',
                '[server] port: expected an integer from 0 to 65535, got "5568"',
            ),
            (
                "[cores]\nmax_usable = true\n",
                "[cores] max_usable: expected an integer >= 1, got true",
            ),
            (
                '[cores]\nintel_mpi_pinning = "no"\n',
                '[cores] intel_mpi_pinning: expected true or false, got "no"',
            ),
            (
                '[jobs]\nallowed_roots = "/data"\n',
                "[jobs] allowed_roots: expected a list of non-empty strings",
            ),
            ('[log]\nlevel = "loud"\n', '[log] level: expected one of "DEBUG"'),
            (
                "[licenses]\nlsdyna = true\n",
                "[licenses] lsdyna: expected an integer >= 0, got true",
            ),
            (
                '[backends.slurm]\ntime_limit = "soon"\n',
                "[backends.slurm] time_limit: expected a Slurm time limit",
            ),
            ("server = 5\n", "[server]: expected a table, got 5"),
            (
                '[solvers.x]\nfamily = "abaqus"\nexecutable = "abq"\n',
                '[solvers.x] family: expected one of "lsdyna", "hfss", "calculix", "generic", got "abaqus"',
            ),
            (
                '[solvers.x]\nfamily = "lsdyna"\nexecutable = "d"\nmpi = "lam"\n',
                '[solvers.x] mpi: expected one of "none", "intelmpi", "msmpi", "mpich", "openmpi", got "lam"',
            ),
            ('[solvers.x]\nfamily = "lsdyna"\n', "[solvers.x] executable: missing"),
            (
                '[solvers.x]\nfamily = "lsdyna"\nexecutable = "d"\nexe = 1\n',
                "[solvers.x] exe: unknown key",
            ),
            (
                '[solvers.x]\nfamily = "lsdyna"\nexecutable = "d"\nmpiexec = "mpiexec"\n',
                '[solvers.x] mpiexec: set, but mpi is "none"',
            ),
            (
                '[solvers.x]\nfamily = "lsdyna"\nexecutable = "d"\nlicenses = { lsdyna = "ncpu" }\n',
                '[solvers.x] licenses.lsdyna: no pool "lsdyna" under [licenses]',
            ),
            (
                (
                    '[licenses]\nlsdyna = 4\n[solvers.x]\nfamily = "lsdyna"\nexecutable = "d"\n'
                    'licenses = { lsdyna = "all" }\n'
                ),
                '[solvers.x] licenses.lsdyna: expected "ncpu" or an integer >= 1, got "all"',
            ),
            (
                '[solvers."a b"]\nfamily = "lsdyna"\nexecutable = "d"\n',
                "[solvers.a b]: a profile name is",
            ),
        ],
    )
    def test_bad_value_is_refused_naming_the_file_and_key(
        self, tmp_path: Path, text: str, expected: str
    ) -> None:
        """Unknown keys, wrong types (bool is not a number), bad values: ConfigError with file and key."""
        message = load_error(tmp_path, text)
        assert message.startswith(f"{tmp_path / 'dl.toml'}: ")
        assert expected in message

    def test_toml_syntax_error_names_the_file_line_and_column(
        self, tmp_path: Path
    ) -> None:
        """A TOML syntax error is a ConfigError with tomllib's line and column."""
        message = load_error(tmp_path, '[server]\nhost = "127.0.0.1"\nport = = 5\n')
        assert message.startswith(f"{tmp_path / 'dl.toml'}: invalid TOML: ")
        assert "line 3" in message
        assert "column" in message

    def test_missing_file_is_refused_naming_the_file(self, tmp_path: Path) -> None:
        """A config path that does not exist is a ConfigError, not a traceback."""
        missing = tmp_path / "nope.toml"
        with pytest.raises(ConfigError, match="no such configuration file") as caught:
            load_config(missing, environ=EMPTY_PATH)
        assert str(missing) in str(caught.value)

    def test_directory_and_non_utf8_files_are_refused(self, tmp_path: Path) -> None:
        """A folder, or bytes that are not UTF-8, give a ConfigError naming the file."""
        with pytest.raises(ConfigError, match="is a directory"):
            load_config(tmp_path, environ=EMPTY_PATH)
        bad = tmp_path / "latin1.toml"
        bad.write_bytes(b'[log]\nlevel = "\xe9"\n')
        with pytest.raises(ConfigError, match="not UTF-8"):
            load_config(bad, environ=EMPTY_PATH)


class TestHostAndToken:
    """contract.md § Transport: a token is mandatory when binding a non-loopback address."""

    @pytest.mark.parametrize(
        "host", ["0.0.0.0", "192.168.1.5", "::", "workstation.example"]
    )
    def test_non_loopback_host_without_token_is_refused(
        self, tmp_path: Path, host: str
    ) -> None:
        """Binding beyond loopback without [server] token stops the daemon at start."""
        message = load_error(tmp_path, f'[server]\nhost = "{host}"\n')
        assert f"[server] host: binding {host} needs [server] token" in message

    def test_non_loopback_host_flag_without_token_is_refused_naming_the_flag(
        self,
    ) -> None:
        """--host 0.0.0.0 without a token is refused, naming the flag."""
        with pytest.raises(
            ConfigError,
            match=r"^command line: --host: binding 0\.0\.0\.0 needs \[server\] token",
        ):
            load_config(None, Flags(host="0.0.0.0"), environ=EMPTY_PATH)

    def test_non_loopback_host_with_token_is_accepted(self, tmp_path: Path) -> None:
        """With a token in the file or from --token, any address may be bound."""
        config = load_config(
            write(tmp_path, '[server]\nhost = "0.0.0.0"\ntoken = "t"\n'),
            environ=EMPTY_PATH,
        )
        assert config.server.host == "0.0.0.0"
        config = load_config(None, Flags(host="0.0.0.0", token="t"), environ=EMPTY_PATH)
        assert config.server.token == "t"

    @pytest.mark.parametrize(
        "host", ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST"]
    )
    def test_loopback_host_needs_no_token(self, tmp_path: Path, host: str) -> None:
        """127.0.0.0/8, ::1 and localhost are loopback: no token required."""
        config = load_config(
            write(tmp_path, f'[server]\nhost = "{host}"\n'), environ=EMPTY_PATH
        )
        assert config.server.host == host

    def test_token_never_appears_in_a_repr(self, tmp_path: Path) -> None:
        """The token is a secret: no repr of the config or the flags shows it."""
        secret = "do-not-print-me"
        config = load_config(
            write(tmp_path, f'[server]\ntoken = "{secret}"\n'),
            Flags(token=secret),
            environ=EMPTY_PATH,
        )
        assert config.server.token == secret
        assert secret not in repr(config)
        assert secret not in repr(config.server)
        assert secret not in repr(Flags(token=secret))


@posix_only
class TestProfiles:
    """contract.md § Configuration [solvers.NAME]: built-in and user profiles, and availability."""

    def test_builtin_profiles_pick_executables_found_on_path(
        self, tmp_path: Path
    ) -> None:
        """lsdyna-smp and lsdyna-mpp take the first candidate on PATH; the newest release wins a glob."""
        first, second = tmp_path / "bin1", tmp_path / "bin2"
        fake_exe(second, "lsdyna")  # a plain name outranks any glob candidate
        fake_exe(first, "lsdyna_sp_R9.3")
        fake_exe(first, "mppdyna_d_R9")
        fake_exe(first, "mppdyna_d_R13")
        (first / "mppdyna_notes.txt").write_text("not executable", encoding="utf-8")
        fake_exe(second, "ccx")
        environ = {"PATH": os.pathsep.join([str(first), str(second)])}
        config = load_config(None, environ=environ)
        smp, mpp = config.solvers["lsdyna-smp"], config.solvers["lsdyna-mpp"]
        assert smp.executable == str(second / "lsdyna")
        assert (smp.family, smp.mpi, smp.builtin) == (Family.LSDYNA, MpiKind.NONE, True)
        assert mpp.executable == str(first / "mppdyna_d_R13")
        assert (mpp.mpi, mpp.mpiexec) == (MpiKind.MPICH, "mpiexec")
        assert resolve_profile(smp, environ=environ).available
        calculix = resolve_profile(config.solvers["calculix"], environ=environ)
        assert calculix.available and calculix.executable == second / "ccx"

    def test_builtin_smp_profile_falls_back_to_glob_candidates(
        self, tmp_path: Path
    ) -> None:
        """With no plain `lsdyna` on PATH, an `ls-dyna_smp*` executable is picked."""
        fake_exe(tmp_path, "ls-dyna_smp_d_R13.1")
        config = load_config(None, environ={"PATH": str(tmp_path)})
        assert config.solvers["lsdyna-smp"].executable == str(
            tmp_path / "ls-dyna_smp_d_R13.1"
        )

    def test_builtin_profiles_are_unavailable_with_a_reason_when_path_is_empty(
        self,
    ) -> None:
        """Nothing on PATH: the built-ins still exist, unavailable, saying what is missing."""
        config = load_config(None, environ=EMPTY_PATH)
        smp = resolve_profile(config.solvers["lsdyna-smp"], environ=EMPTY_PATH)
        assert (smp.available, smp.executable) == (False, None)
        assert smp.reason == 'executable "lsdyna" not found on PATH'
        mpp = resolve_profile(config.solvers["lsdyna-mpp"], environ=EMPTY_PATH)
        assert (
            mpp.reason
            == 'executable "mppdyna" not found on PATH; mpiexec "mpiexec" not found on PATH'
        )
        calculix = resolve_profile(config.solvers["calculix"], environ=EMPTY_PATH)
        assert calculix.reason == 'executable "ccx" not found on PATH'

    def test_user_profile_replaces_a_builtin_of_the_same_name(
        self, tmp_path: Path
    ) -> None:
        """A [solvers.lsdyna-smp] table replaces the built-in whole."""
        exe = fake_exe(tmp_path / "opt", "my_dyna")
        text = f'[solvers.lsdyna-smp]\nfamily = "lsdyna"\nexecutable = "{exe}"\nprocess_names = ["my_dyna"]\n'
        config = load_config(write(tmp_path, text), environ=EMPTY_PATH)
        profile = config.solvers["lsdyna-smp"]
        assert (profile.executable, profile.process_names, profile.builtin) == (
            str(exe),
            ("my_dyna",),
            False,
        )
        resolved = resolve_profile(profile, environ=EMPTY_PATH)
        assert resolved.available and resolved.executable == exe
        assert "lsdyna-mpp" in config.solvers

    @pytest.mark.parametrize(
        "name", ["mpiexec", "MPIRUN", "mpiexec.hydra", "python3", "bash", "sh", "mpi"]
    )
    def test_process_names_naming_a_launcher_are_refused(
        self, tmp_path: Path, name: str
    ) -> None:
        """process_names may never match mpiexec or a shell: the PID must be the solver's."""
        text = f'[solvers.x]\nfamily = "lsdyna"\nexecutable = "d"\nprocess_names = ["lsdyna", "{name}"]\n'
        message = load_error(tmp_path, text)
        assert (
            f'[solvers.x] process_names: "{name}" would match the launcher or shell'
            in message
        )

    def test_generic_profile_defaulting_to_a_launcher_name_is_refused(
        self, tmp_path: Path
    ) -> None:
        """A generic profile run by `python` must say which process is the solver."""
        message = load_error(
            tmp_path, '[solvers.x]\nfamily = "generic"\nexecutable = "python"\n'
        )
        assert "[solvers.x] process_names:" in message
        assert "set process_names" in message

    def test_missing_mpiexec_makes_an_mpi_profile_unavailable(
        self, tmp_path: Path
    ) -> None:
        """The solver alone is not enough for an MPI profile: its mpiexec must resolve too."""
        exe = fake_exe(tmp_path, "mppdyna")
        profile = SolverProfile(
            name="d",
            family=Family.LSDYNA,
            executable="mppdyna",
            process_names=("mppdyna",),
            mpi=MpiKind.INTELMPI,
            mpiexec="mpiexec.hydra",
        )
        resolved = resolve_profile(profile, environ={"PATH": str(tmp_path)})
        assert resolved.executable == exe
        assert not resolved.available
        assert resolved.reason == 'mpiexec "mpiexec.hydra" not found on PATH'
        fake_exe(tmp_path, "mpiexec.hydra")
        assert (
            resolve_profile(profile, environ={"PATH": str(tmp_path)}).mpiexec
            == tmp_path / "mpiexec.hydra"
        )

    def test_absolute_executable_must_exist_and_be_executable(
        self, tmp_path: Path
    ) -> None:
        """An absolute executable is checked where it is: missing and not-executable differ."""
        plain = tmp_path / "plain"
        plain.write_text("data", encoding="utf-8")
        for target, why in (
            (tmp_path / "gone", "does not exist"),
            (plain, "is not an executable file"),
        ):
            profile = SolverProfile(
                name="g",
                family=Family.GENERIC,
                executable=str(target),
                process_names=("g",),
            )
            resolved = resolve_profile(profile, environ=EMPTY_PATH)
            assert resolved.reason == f'executable "{target}" {why}'

    def test_describe_lists_what_the_api_shows(self, tmp_path: Path) -> None:
        """describe() gives name, family, mpi, executable, available, reason, process_names."""
        config = load_config(None, environ=EMPTY_PATH)
        entry = describe(
            resolve_profile(config.solvers["lsdyna-mpp"], environ=EMPTY_PATH)
        )
        assert entry["name"] == "lsdyna-mpp"
        assert entry["family"] == "lsdyna"
        assert entry["mpi"] == "mpich"
        assert entry["executable"] == "mppdyna"
        assert entry["available"] is False
        assert (
            entry["reason"]
            == 'executable "mppdyna" not found on PATH; mpiexec "mpiexec" not found on PATH'
        )
        assert entry["process_names"] == [
            "lsdyna",
            "ls-dyna",
            "ls_dyna",
            "mppdyna",
            "smpdyna",
        ]
        fake_exe(tmp_path, "ccx")
        entry = describe(
            resolve_profile(config.solvers["calculix"], environ={"PATH": str(tmp_path)})
        )
        assert (entry["available"], entry["reason"], entry["executable"]) == (
            True,
            None,
            str(tmp_path / "ccx"),
        )
