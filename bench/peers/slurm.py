"""A private single-node SLURM (munged + slurmctld + slurmd) on 127.0.0.1, for benchmarks.

Everything lives in one temp folder: a fresh munge key, munged's socket, slurm.conf (ports
picked free, not Slurm's 6817/6818, so another SLURM on this box is left alone), state and
spool folders, logs, and a jobcomp/filetxt file (one line per ended job: how the bench sees
completions without polling slurmctld). The three daemons run in the foreground (-F / -D) as
children of this process, so `stop()` signals exactly the PIDs it started: SIGTERM, then
SIGKILL after a deadline. Jobs still known to *this* controller are scancelled first.

Set-up facts (packages, timings, gotchas) are in /work/shared/lab-findings.md §3; install
with bench/peers/setup. Runs as root (slurmd must be root to launch jobs as their user).

    .venv/bin/python -m bench.peers.slurm up      # start, print the env to use, wait for Ctrl+C
    with Slurm() as s: subprocess.run(["sbatch", ...], env=s.env)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Self

from bench.peers import serve_peer

START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (Slurm takes ports from its config, not from 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: run bench/peers/setup (apt: slurm-wlm munge)"
        )


class Slurm:
    """`with Slurm(cpus=2) as s:` a private single-node cluster; `s.env` for sbatch/squeue."""

    def __init__(
        self, *, cpus: int | None = None, keep: bool = False, extra_conf: str = ""
    ) -> None:
        require(
            "munged",
            "mungekey",
            "slurmctld",
            "slurmd",
            "sbatch",
            "squeue",
            "scancel",
            "sinfo",
        )
        self.cpus = cpus or os.cpu_count() or 1
        self.keep = keep
        self.extra_conf = extra_conf
        self.dir = Path(tempfile.mkdtemp(prefix="dynalauncher-bench-slurm-"))
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.dir / "slurm.conf"
        self.jobcomp = self.dir / "jobcomp.txt"
        self.munge_socket = self.dir / "munge" / "munge.socket"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------- start

    def _config(self) -> str:
        d = self.dir
        return textwrap.dedent(f"""\
            ClusterName=dlbench
            SlurmctldHost={self.node}(127.0.0.1)
            SlurmctldPort={free_port()}
            SlurmdPort={free_port()}
            AuthType=auth/munge
            CredType=cred/munge
            AuthInfo=socket={self.munge_socket}
            SlurmUser=root
            SlurmdUser=root
            StateSaveLocation={d / "state"}
            SlurmdSpoolDir={d / "spool"}
            SlurmctldPidFile={d / "slurmctld.pid"}
            SlurmdPidFile={d / "slurmd.pid"}
            SlurmctldLogFile={d / "slurmctld.log"}
            SlurmdLogFile={d / "slurmd.log"}
            ProctrackType=proctrack/linuxproc
            TaskPlugin=task/affinity
            SelectType=select/cons_tres
            SelectTypeParameters=CR_Core
            SchedulerType=sched/backfill
            MpiDefault=none
            ReturnToService=2
            EnforcePartLimits=ALL
            JobCompType=jobcomp/filetxt
            JobCompLoc={self.jobcomp}
            AccountingStorageType=accounting_storage/none
            JobAcctGatherType=jobacct_gather/none
            MaxJobCount=100000
            {self.extra_conf}
            NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
            PartitionName=bench Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
            """)

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.dir / f"{name}.stderr", "wb") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def start(self) -> Self:
        began = time.perf_counter()
        for sub in ("munge", "state", "spool"):
            (self.dir / sub).mkdir(mode=0o700)
        self.conf.write_text(self._config())
        key = self.dir / "munge" / "munge.key"
        subprocess.run(
            ["mungekey", "-c", "-k", str(key)], check=True, capture_output=True
        )
        try:
            self._spawn(
                "munged",
                [
                    "munged",
                    "--foreground",
                    "--force",
                    f"--socket={self.munge_socket}",
                    f"--key-file={key}",
                    f"--pid-file={self.dir / 'munge' / 'munged.pid'}",
                    f"--log-file={self.dir / 'munged.log'}",
                    f"--seed-file={self.dir / 'munge' / 'munged.seed'}",
                ],
            )
            self._wait(lambda: self.munge_socket.exists(), "munged socket")
            self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            self._spawn(
                "slurmd", ["slurmd", "-D", "-N", self.node, "-f", str(self.conf)]
            )
            self._wait(self._node_ready, "node idle in sinfo")
        except BaseException:
            self.stop()
            raise
        self.timings["start_s"] = time.perf_counter() - began
        return self

    def _node_ready(self) -> bool:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        return out.returncode == 0 and out.stdout.strip().rstrip("*") == "idle"

    def _wait(self, ok: object, what: str) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while not ok():  # type: ignore[operator]
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode}:\n{self.tail(name)}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SLURM: no {what} after {START_DEADLINE_S:.0f} s:\n"
                    + "\n".join(self.tail(n) for n in self.procs)
                )
            time.sleep(0.05)

    def tail(self, name: str, lines: int = 15) -> str:
        texts = []
        for f in (self.dir / f"{name}.stderr", self.dir / f"{name}.log"):
            if f.exists():
                texts.append(
                    f"--- {f}\n"
                    + "\n".join(f.read_text(errors="replace").splitlines()[-lines:])
                )
        return "\n".join(texts)

    # ------------------------------------------------------------- use

    def run(self, *argv: str, check: bool = True) -> str:
        """A SLURM client command against this cluster; its stdout."""
        out = subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, check=False
        )
        if check and out.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)}: rc {out.returncode}: {out.stderr.strip()}"
            )
        return out.stdout

    def completed(self) -> int:
        """Jobs this controller has ended so far (lines of the jobcomp file)."""
        try:
            with open(self.jobcomp, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    # ------------------------------------------------------------- stop

    def stop(self) -> None:
        """Cancel this cluster's jobs, then SIGTERM our three daemons (SIGKILL after a deadline)."""
        if (
            self.procs.get("slurmctld") is not None
            and self.procs["slurmctld"].poll() is None
        ):
            subprocess.run(
                ["scancel", "--partition=bench"],
                env=self.env,
                capture_output=True,
                timeout=30,
                check=False,
            )
        for name in ("slurmd", "slurmctld"):  # in parallel: each takes ~2 s to exit
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None:
                continue
            if name == "munged" and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_DEADLINE_S)
        self.procs.clear()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    return serve_peer(
        "slurm",
        lambda: Slurm(keep=True),
        lambda s: [f"SLURM up in {s.timings['start_s']:.2f} s; folder {s.dir}", f"export SLURM_CONF={s.conf}"],
    )


if __name__ == "__main__":
    sys.exit(main())
