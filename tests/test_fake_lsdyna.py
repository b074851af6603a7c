"""Tests of the fake LS-DYNA itself (tests/fakes/fake_lsdyna.py): real processes, no mocks."""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

try:  # pytest puts tests/ on sys.path while tests/ has no __init__.py
    from fakes import install_fake_lsdyna, write_deck
except ModuleNotFoundError:  # tests/ became a package: the repo root is on sys.path instead
    _fakes = importlib.import_module("tests.fakes")
    install_fake_lsdyna = _fakes.install_fake_lsdyna
    write_deck = _fakes.write_deck

# FORMATS.md §1.3 (tolerant cycle-line pattern) and §1.7 (banners)
CYCLE_RE = re.compile(
    r"^\s*(?P<cycle>\d+)\s+t\s+(?P<t>[-+0-9.Ee]+)\s+dt\s+(?P<dt>[-+0-9.Ee]+)\s+(?P<event>.*?)"
    r"\s+(?P<date>\d\d/\d\d/\d\d)\s+(?P<clock>\d\d:\d\d:\d\d)\s*$"
)  # applied to one line at a time: with re.MULTILINE on a whole text, `\s*$` swallows a following " " line
NORMAL_RE = re.compile(r"N o r m a l\s+t e r m i n a t i o n")
ERROR_RE = re.compile(r"E r r o r\s+t e r m i n a t i o n")
PROBLEM_TIME_RE = re.compile(r"^ Problem time\s+=\s+(\S+)$", re.MULTILINE)


T = TypeVar("T")


def wait_for(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return ""


def cycles(text: str) -> list[re.Match[str]]:
    return [m for line in text.splitlines() if (m := CYCLE_RE.match(line))]


def sim_times(text: str) -> list[float]:
    return [float(m["t"]) for m in cycles(text)]


def is_gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def ignores_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    m = re.search(r"^SigIgn:\s*([0-9a-fA-F]+)$", status, re.MULTILINE)
    return m is not None and bool(int(m.group(1), 16) & (1 << (signal.SIGTERM - 1)))


def problem_time(text: str) -> str:
    m = PROBLEM_TIME_RE.search(text)
    assert m, "no 'Problem time' line"
    return m[1]


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    path: Path = install_fake_lsdyna(tmp_path / "bin")
    return path


@pytest.fixture
def job(tmp_path: Path) -> Path:
    d = tmp_path / "job"
    d.mkdir()
    return d


@pytest.fixture
def started() -> Iterator[list[int]]:
    """PIDs of processes this test started (directly or as mpiexec's descendants).

    Anything still alive at teardown is SIGKILLed by PID; nothing else is touched."""
    pids: list[int] = []
    yield pids
    for pid in reversed(pids):
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def start(fake: Path, cwd: Path, *args: str, started: list[int], env: dict[str, str] | None = None,
          out_name: str = "stdout.txt") -> subprocess.Popen[bytes]:
    """Start like the launcher does: cwd = deck folder, stdout redirected to a file."""
    with open(cwd / out_name, "wb") as out:
        p = subprocess.Popen([str(fake), *args], cwd=cwd, stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    started.append(p.pid)
    return p


def run(fake: Path, cwd: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(fake), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def first_progress(out: Path, timeout: float = 5.0) -> float:
    """Wait for a cycle line with t > 0 in the live stdout file; return its t."""
    def check() -> float:
        ts = [t for t in sim_times(read(out)) if t > 0]
        return ts[-1] if ts else 0.0
    return wait_for(check, timeout, f"a cycle line with t > 0 in {out.name}")


def send_switch(job: Path, word: str) -> None:
    (job / "d3kil").write_text(word + "\n")
    wait_for(lambda: not (job / "d3kil").exists(), 3.0, f"the fake to consume d3kil {word!r}")


# ---------------------------------------------------------------------------------------------
# SMP


def test_smp_normal_run(fake: Path, job: Path) -> None:
    write_deck(job / "deck.k", endtim=0.01, wall_s=0.6, print_every_s=0.05)
    t0 = time.monotonic()
    cp = run(fake, job, "i=deck.k", "ncpu=2", "memory=20m")
    took = time.monotonic() - t0
    assert cp.returncode == 0, cp.stdout + cp.stderr
    out = cp.stdout
    assert 0.5 < took < 5
    assert "     |  LS-DYNA, A Program for Nonlinear Dynamic         |" in out
    assert "     |  Version : smp d R16                              |" in out
    assert " Command line options: i=deck.k \n                       ncpu=2 \n" in out
    assert "                       memory=20m\n" in out
    assert re.search(r"^ Input file: deck\.k {74}$", out, re.MULTILINE)
    assert re.search(r"^ Beginning of keyword reader {35}\d\d/\d\d/\d\d \d\d:\d\d:\d\d$", out, re.MULTILINE)
    cyc = cycles(out)
    assert len(cyc) >= 2
    for m in cyc:  # exact R16 layout: 80 columns, stamp at column 63
        assert len(m.group(0)) == 80 and m.group(0)[63:65].isdigit(), m.group(0)
    ts = [float(m["t"]) for m in cyc]
    assert ts == sorted(ts) and ts[0] == 0.0 and ts[-1] == pytest.approx(0.01)
    events = [m["event"] for m in cyc]
    assert events[:2] == ["flush i/o buffers", "write d3plot file"]
    assert events[-2:] == ["write d3dump01 file", "write d3plot file"]
    assert "\n *** termination time reached ***\n" in out
    lines = out.splitlines()
    assert len(NORMAL_RE.findall(out)) == 2 and NORMAL_RE.search(lines[-1])
    assert re.fullmatch(r" N o r m a l    t e r m i n a t i o n {26}\d\d/\d\d/\d\d \d\d:\d\d:\d\d",
                        lines[-1])
    assert " T i m i n g   i n f o r m a t i o n\n" in out
    assert problem_time(out) == "1.0000E-02"
    assert re.search(r"^ Elapsed time +\d+ seconds? +for +\d+ cycles using  2 SMP threads$", out, re.MULTILINE)
    assert not ERROR_RE.search(out)
    assert (job / "messag").read_text() == out
    assert (job / "d3plot").exists()
    assert (job / "d3dump01").read_text().startswith("t=0.01\n")
    assert "termination time......................." in (job / "d3hsp").read_text()


def test_endtim_zero_runs_one_cycle(fake: Path, job: Path) -> None:
    # like the R16 sample: ENDTIM 0 -> cycle 1 at t=0, then termination at t = dt
    write_deck(job / "deck.k", endtim=0.0)
    cp = run(fake, job, "i=deck.k")
    assert cp.returncode == 0
    cyc = cycles(cp.stdout)
    assert [m["cycle"] for m in cyc] == ["1"] * 4
    assert [m["t"] for m in cyc] == ["0.0000E+00", "0.0000E+00", "1.3776E-07", "1.3776E-07"]
    assert {m["dt"] for m in cyc} == {"1.38E-07"}
    assert "\n *** termination time reached ***\n" in cp.stdout
    assert len(NORMAL_RE.findall(cp.stdout)) == 2


@pytest.mark.parametrize(
    "card",
    [
        "2.5e-3,0,0.0",            # free format
        "  0.0025         0",      # fixed 10-character fields
        "2.50000d-3       0.0",    # fixed fields touching each other, Fortran exponent
    ],
)
def test_deck_endtim_formats(fake: Path, job: Path, card: str) -> None:
    (job / "Deck.K").write_text(
        "*KEYWORD\n"
        "$ fake: wall_s=0.2, print_every_s=0.05\n"
        "*CONTROL_TERMINATION\n"
        "$#  endtim    endcyc     dtmin\n"
        "$ second comment line\n"
        f"{card}\n"
        "*END\n"
    )
    cp = run(fake, job, "I=Deck.K", "foo=bar")
    assert cp.returncode == 0, cp.stdout
    assert problem_time(cp.stdout) == "2.5000E-03"
    assert " Command line options: I=Deck.K \n                       foo=bar\n" in cp.stdout


def test_process_name_and_signals(fake: Path, job: Path, started: list[int]) -> None:
    write_deck(job / "deck.k", wall_s=30)
    p = start(fake, job, "i=deck.k", started=started)
    assert psutil.Process(p.pid).name() == "lsdyna-fake"
    first_progress(job / "stdout.txt")  # stdout is flushed line by line into the file
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=5) == -signal.SIGTERM

    q = start(fake, job, "i=deck.k", started=started, out_name="stdout2.txt")
    first_progress(job / "stdout2.txt")
    q.send_signal(signal.SIGINT)
    assert q.wait(timeout=5) == -signal.SIGINT


def test_sw1_ends_run_with_dump(fake: Path, job: Path, started: list[int]) -> None:
    write_deck(job / "deck.k", wall_s=30)
    p = start(fake, job, "i=deck.k", started=started)
    first_progress(job / "stdout.txt")
    t_sw = time.monotonic()
    (job / "d3kil").write_text("sw1.\n")
    assert p.wait(timeout=5) == 0
    assert time.monotonic() - t_sw < 3
    assert not (job / "d3kil").exists()
    out = read(job / "stdout.txt")
    dump_t = float((job / "d3dump01").read_text().split("\n")[0].removeprefix("t="))
    assert 0 < dump_t < 0.01
    events = [m["event"] for m in cycles(out)]
    assert events[-2:] == ["write d3dump01 file", "write d3plot file"]
    assert float(problem_time(out)) == pytest.approx(dump_t, rel=1e-3)
    assert len(NORMAL_RE.findall(out)) == 2
    assert "termination time reached" not in out
    assert not (job / "d3dump02").exists()


def test_sw2_sw3_sw4_and_ack_continue_then_stop(fake: Path, job: Path, started: list[int]) -> None:
    write_deck(job / "deck.k", wall_s=30, print_every_s=0.05)
    p = start(fake, job, "i=deck.k", started=started)
    out = job / "stdout.txt"
    first_progress(out)

    send_switch(job, "sw2.")
    wait_for(lambda: re.search(r"^ time\.+\s+\S+\n cycle\.+\s+\d+\n time step\.+\s+\S+$",
                               read(out), re.MULTILINE), 3, "the sw2 report")

    send_switch(job, "SW3")  # case-insensitive, dot optional
    wait_for(lambda: "write d3dump01 file" in read(out), 3, "the sw3 dump line")
    assert (job / "d3dump01").read_text().startswith("t=")

    plots = read(out).count("write d3plot file")
    send_switch(job, "sw4.")
    wait_for(lambda: read(out).count("write d3plot file") > plots, 3, "the sw4 d3plot line")

    send_switch(job, "swa.")
    wait_for(lambda: " sense switch swa received" in read(out), 3, "the swa acknowledgement")

    n = len(cycles(read(out)))
    wait_for(lambda: len(cycles(read(out))) >= n + 2, 3, "more cycle lines: the run goes on")
    assert p.poll() is None

    (job / "d3kil").write_text("stop\n")
    assert p.wait(timeout=5) == 0
    text = read(out)
    assert len(NORMAL_RE.findall(text)) == 2
    assert not (job / "d3dump02").exists()  # stop writes no dump
    ts = sim_times(text)
    assert ts == sorted(ts) and ts[-1] < 0.01


def test_restart_from_dump(fake: Path, job: Path, started: list[int]) -> None:
    write_deck(job / "deck.k", wall_s=30)
    p = start(fake, job, "i=deck.k", started=started)
    wait_for(lambda: first_progress(job / "stdout.txt") > 2e-4, 5, "t > 2e-4")
    (job / "d3kil").write_text("sw1.")
    assert p.wait(timeout=5) == 0
    dump = (job / "d3dump01").read_text()
    dump_t = float(dump.split("\n")[0].removeprefix("t="))
    m = re.search(r"^cycle=(\d+)$", dump, re.MULTILINE)
    assert m
    dump_cycle = int(m[1])

    write_deck(job / "deck.k", wall_s=0.6, print_every_s=0.05)  # the rest now takes < 0.6 s
    cp = run(fake, job, "i=deck.k", "r=d3dump01")
    assert cp.returncode == 0, cp.stdout
    assert re.search(r"^ restart from d3dump01 at time \S+", cp.stdout, re.MULTILINE)
    cyc = cycles(cp.stdout)
    assert float(cyc[0]["t"]) == pytest.approx(dump_t, rel=1e-3)
    assert int(cyc[0]["cycle"]) == dump_cycle
    assert all(float(m["t"]) >= float(cyc[0]["t"]) for m in cyc)
    assert problem_time(cp.stdout) == "1.0000E-02"
    assert "write d3dump02 file" in cp.stdout and (job / "d3dump02").exists()
    assert len(NORMAL_RE.findall(cp.stdout)) == 2

    # r= alone: the dump knows its deck; restarting at ENDTIM terminates at once
    cp = run(fake, job, "r=d3dump02")
    assert cp.returncode == 0, cp.stdout
    assert problem_time(cp.stdout) == "1.0000E-02"
    assert (job / "d3dump03").exists()


@pytest.mark.parametrize("args", [["i=nope.k"], [], ["ncpu=2"], ["i=deck.k", "r=d3dump07"]])
def test_missing_input_is_an_error(fake: Path, job: Path, args: list[str]) -> None:
    write_deck(job / "deck.k", wall_s=0.2)
    cp = run(fake, job, *args)
    assert cp.returncode == 1
    assert " *** Error 20018 (STR+18)\n" in cp.stdout
    assert ERROR_RE.search(cp.stdout.splitlines()[-1])
    assert not NORMAL_RE.search(cp.stdout)
    assert (job / "messag").read_text() == cp.stdout


def test_error_at_s(fake: Path, job: Path) -> None:
    write_deck(job / "deck.k", wall_s=5, print_every_s=0.05, error_at_s=0.3)
    t0 = time.monotonic()
    cp = run(fake, job, "i=deck.k")
    assert cp.returncode == 1
    assert time.monotonic() - t0 < 3
    assert len(cycles(cp.stdout)) >= 3
    assert " *** Error 20211 (STR+211)\n" in cp.stdout
    assert ERROR_RE.search(cp.stdout)
    assert not NORMAL_RE.search(cp.stdout)
    assert 0 < sim_times(cp.stdout)[-1] < 0.01


def test_no_banner(fake: Path, job: Path) -> None:
    write_deck(job / "deck.k", wall_s=0.3, print_every_s=0.05, no_banner=True)
    assert "\n$ fake: no_banner\n" in (job / "deck.k").read_text()
    cp = run(fake, job, "i=deck.k")
    assert cp.returncode == 0
    assert len(cycles(cp.stdout)) >= 3
    assert not NORMAL_RE.search(cp.stdout) and not ERROR_RE.search(cp.stdout)
    assert "termination time reached" not in cp.stdout


def test_exit_code(fake: Path, job: Path) -> None:
    write_deck(job / "deck.k", wall_s=0.2, exit_code=3)
    cp = run(fake, job, "i=deck.k")
    assert cp.returncode == 3
    assert len(NORMAL_RE.findall(cp.stdout)) == 2


# ---------------------------------------------------------------------------------------------
# MPP


def mpi_env(rank: int, size: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    env.update(PMI_RANK=str(rank), PMI_SIZE=str(size))
    return env


def start_mpi(fake: Path, job: Path, np: int, started: list[int]) -> subprocess.Popen[bytes]:
    from tests.conftest import mpiexec_hydra  # fails, naming the apt package, when missing
    with open(job / "stdout.txt", "wb") as out:
        p = subprocess.Popen([mpiexec_hydra(), "-np", str(np), str(fake), "i=deck.k"], cwd=job,
                             stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    started.append(p.pid)
    return p


def wait_ranks(p: subprocess.Popen[bytes], n: int, started: list[int]) -> list[psutil.Process]:
    def ranks() -> list[psutil.Process]:
        found = []
        try:
            for c in psutil.Process(p.pid).children(recursive=True):
                if c.pid not in started:
                    started.append(c.pid)  # proxy and ranks: ours, killed at teardown if alive
                if c.name() == "lsdyna-fake":
                    found.append(c)
        except psutil.Error:
            return []
        return found if len(found) == n else []
    found = wait_for(ranks, 10, f"{n} processes named lsdyna-fake under mpiexec")
    for r in found:
        assert r.parent().name() == "hydra_pmi_proxy"
    return found


def test_mpi_two_ranks_sw1(fake: Path, job: Path, started: list[int]) -> None:
    write_deck(job / "deck.k", wall_s=30, print_every_s=0.05)
    p = start_mpi(fake, job, 2, started)
    ranks = wait_ranks(p, 2, started)
    first_progress(job / "mes0000")
    out = read(job / "stdout.txt")
    assert "     |  Version : mpp d R16                              |" in out
    assert "\n MPP execution with       2 procs\n" in out
    assert re.search(r"^ Initial reading of file {39}\d\d/\d\d/\d\d \d\d:\d\d:\d\d$", out, re.MULTILINE)
    assert not (job / "messag").exists()
    rank0_pid = int(read(job / ".fake-lsdyna-rank0").split()[0])
    assert rank0_pid in {r.pid for r in ranks}

    # the ranks sleep between polls: CPU use well below one core while 10 cycle lines go by
    cpu0 = {r.pid: sum(r.cpu_times()[:2]) for r in ranks}
    w0 = time.monotonic()
    n = len(cycles(read(job / "mes0000")))
    wait_for(lambda: len(cycles(read(job / "mes0000"))) >= n + 10, 5, "10 more cycle lines")
    wall = time.monotonic() - w0
    for r in ranks:
        assert (sum(r.cpu_times()[:2]) - cpu0[r.pid]) / wall < 0.3

    (job / "d3kil").write_text("sw1.\n")
    assert p.wait(timeout=10) == 0
    for r in ranks:
        wait_for(partial(is_gone, r.pid), 5, f"rank pid {r.pid} to end")
    mes = read(job / "mes0000")
    assert "write d3dump01 file" in mes and (job / "d3dump01").exists()
    assert len(NORMAL_RE.findall(mes)) == 2
    assert NORMAL_RE.search(read(job / "stdout.txt"))
    assert read(job / ".fake-lsdyna-done").split() == ["0", str(rank0_pid)]


def test_mpi_error_exit_code(fake: Path, job: Path, started: list[int]) -> None:
    write_deck(job / "deck.k", wall_s=5, print_every_s=0.05, error_at_s=0.3)
    p = start_mpi(fake, job, 2, started)
    assert p.wait(timeout=10) == 1
    assert ERROR_RE.search(read(job / "mes0000"))
    assert ERROR_RE.search(read(job / "stdout.txt"))


def test_mpi_ignore_sigterm_then_sigkill(fake: Path, job: Path, started: list[int]) -> None:
    write_deck(job / "deck.k", wall_s=30, print_every_s=0.05, ignore_sigterm=True)
    p = start_mpi(fake, job, 2, started)
    ranks = wait_ranks(p, 2, started)
    for r in ranks:
        wait_for(partial(ignores_sigterm, r.pid), 5, f"rank pid {r.pid} to ignore SIGTERM")
    first_progress(job / "mes0000")

    p.send_signal(signal.SIGTERM)
    n = len(cycles(read(job / "mes0000")))
    wait_for(lambda: len(cycles(read(job / "mes0000"))) >= n + 5, 5,
             "rank 0 to keep printing after SIGTERM")
    assert p.poll() is None
    assert all(r.is_running() and r.status() != psutil.STATUS_ZOMBIE for r in ranks)

    p.kill()
    assert p.wait(timeout=5) == -signal.SIGKILL
    for r in ranks:
        wait_for(partial(is_gone, r.pid), 5, f"rank pid {r.pid} to be killed by hydra_pmi_proxy")


def test_other_rank_follows_rank0(fake: Path, tmp_path: Path, started: list[int]) -> None:
    """Without mpiexec: PMI_RANK/PMI_SIZE set by hand, both ranks children of this process."""
    # rank 0 killed without a done marker (an MPI abort) -> rank 1 exits 1
    a = tmp_path / "abort"
    a.mkdir()
    write_deck(a / "deck.k", wall_s=30)
    r1 = start(fake, a, "i=deck.k", started=started, env=mpi_env(1, 2), out_name="r1.txt")
    r0 = start(fake, a, "i=deck.k", started=started, env=mpi_env(0, 2))
    first_progress(a / "mes0000")
    assert r1.poll() is None
    r0.kill()
    assert r1.wait(timeout=5) == 1
    r0.wait(timeout=5)
    assert read(a / "r1.txt") == ""  # other ranks print nothing

    # rank 0 ends normally -> rank 1 exits with rank 0's exit code
    b = tmp_path / "done"
    b.mkdir()
    write_deck(b / "deck.k", wall_s=0.3, exit_code=3)
    r1 = start(fake, b, "i=deck.k", started=started, env=mpi_env(1, 2), out_name="r1.txt")
    r0 = start(fake, b, "i=deck.k", started=started, env=mpi_env(0, 2))
    assert r0.wait(timeout=10) == 3
    assert r1.wait(timeout=5) == 3
    assert NORMAL_RE.search(read(b / "mes0000"))
