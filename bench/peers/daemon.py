"""A bench daemon whose config has a `generic` profile for trivial jobs (no MPI, no fake LS-DYNA).

`common.BenchDaemon` writes the LS-DYNA config of the latency benchmarks (and needs MPICH for
it); this subclass keeps its start/stop/cleanup (SIGTERM our daemon, then kill only processes
carrying its job tag) and writes this config instead:

    [solvers.true]  family = "generic", executable = <path of `true`>, process_names = ["true"]

plus the default watchdog interval, log level INFO (as the daemon ships), cores pinned
(`taskset -c N`, which execs, so the job is still `true`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from bench import common

PROFILE = "true"


def generic_config(tmp: Path, *, log_level: str = "INFO", extra: str = "") -> str:
    true = shutil.which("true") or "/bin/true"
    return (
        textwrap.dedent(f"""\
        [store]
        path = "{tmp / "jobs.db"}"
        [log]
        file = "{tmp / "daemon.log"}"
        level = "{log_level}"
        [solvers.{PROFILE}]
        family = "generic"
        executable = "{true}"
        process_names = ["true"]
        """)
        + extra
    )


class GenericDaemon(common.BenchDaemon):
    """`with GenericDaemon() as d:` a real daemon with the `true` profile, in a temp folder."""

    def __init__(
        self,
        *,
        log_level: str = "INFO",
        keep: bool = False,
        extra: str = "",
        patches: tuple[str, ...] = (),
    ) -> None:
        super().__init__(log_level=log_level, keep=keep)
        # Same folder, store and log as BenchDaemon's; only the solver profiles differ.
        self.config_path.write_text(
            generic_config(self.tmp, log_level=log_level, extra=extra)
        )
        self.patches = patches
        # Written at exit by the "trace" what-if; outside tmp, which stop() removes.
        self.trace_path = Path(tempfile.gettempdir()) / f"{self.tmp.name}-trace.json"

    def start(self, **kwargs: Any) -> str:
        """BenchDaemon.start; with `patches`, the daemon imports bench/peers/whatif/sitecustomize.py
        first, which applies them (diagnostic what-ifs, see that file)."""
        if not self.patches:
            return super().start(**kwargs)
        saved = {
            k: os.environ.get(k)
            for k in (
                "PYTHONPATH",
                "DYNALAUNCHER_BENCH_PATCHES",
                "DYNALAUNCHER_BENCH_TRACE",
            )
        }
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(__file__).parent / "whatif"), saved["PYTHONPATH"]) if p
        )
        os.environ["DYNALAUNCHER_BENCH_PATCHES"] = ",".join(self.patches)
        os.environ["DYNALAUNCHER_BENCH_TRACE"] = str(self.trace_path)
        try:
            return super().start(**kwargs)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def workdirs(self, n: int, prefix: str = "j") -> list[Path]:
        """`n` new run folders, each with an (empty) input file; returns the input paths."""
        inputs = []
        for i in range(n):
            folder = self.tmp / "runs" / f"{prefix}{i:05d}"
            folder.mkdir(parents=True)
            path = folder / "input"
            path.touch()
            inputs.append(path)
        return inputs
