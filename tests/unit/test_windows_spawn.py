"""contract.md § Methods `launch` and § Files `stdout`: how a solver is started detached.

Windows: `serv.platform.windows.spawn_detached` with an injected `popen` that records its
call. This is the one fake in the suite, because Windows creation flags and job objects
cannot exist on this OS; the flag values are checked against the Win32 documentation
(processthreadsapi.h). POSIX: `pin_exec_argv` and `spawn_detached`, checked by really running the programs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from serv.platform import posix, windows

# Win32 values, written out here on purpose rather than imported from the module under test.
CREATE_BREAKAWAY_FROM_JOB = 0x01000000
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
ARGV = ["C:/LSDYNA/program/lsdyna_dp.exe", "i=main.k", "ncpu=4", "memory=200m"]
ENV = {"SYSTEMROOT": "C:/Windows", "DYNALAUNCHER_JOB": "dl-1-7"}


def win_error(code: int) -> OSError:
    """An OSError as CreateProcess raises it on Windows: `winerror` carries the Win32 code."""
    err = OSError(13, "Access is denied")
    err.winerror = code  # type: ignore[attr-defined]
    return err


@dataclass
class RecordingPopen:
    """Records every call; raises the queued errors in turn, then returns a stand-in process."""

    errors: list[OSError] = field(default_factory=list)
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    process: object = field(default_factory=object)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The stdout file must be open (writable) while Popen runs.
        out = kwargs["stdout"]
        assert not out.closed and out.writable()
        self.calls.append((args, kwargs))
        if self.errors:
            raise self.errors.pop(0)
        return self.process


def spawn(tmp_path: Path, popen: RecordingPopen) -> Any:
    return windows.spawn_detached(
        tuple(ARGV), cwd=tmp_path, env=ENV, stdout_path=tmp_path / "stdout", cores=None,
        popen=popen,
    )


class TestSpawnDetached:
    """contract.md § Files `stdout`; Win32 process creation flags (processthreadsapi.h)."""

    def test_spawn_detached_breaks_away_first_when_the_first_attempt_succeeds(self, tmp_path: Path) -> None:
        """One call: breakaway + new process group + no window, exact argv, cwd, env and streams."""
        popen = RecordingPopen()
        assert spawn(tmp_path, popen) is popen.process
        assert len(popen.calls) == 1
        args, kwargs = popen.calls[0]
        assert args == (ARGV,)
        assert type(args[0]) is list
        out = kwargs.pop("stdout")
        assert Path(out.name) == tmp_path / "stdout" and "b" in out.mode and "w" in out.mode
        assert kwargs == {
            "cwd": tmp_path,
            "env": ENV,
            "stdin": subprocess.DEVNULL,
            "stderr": subprocess.STDOUT,
            "creationflags": CREATE_BREAKAWAY_FROM_JOB | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW,
            "close_fds": True,
        }
        assert kwargs["creationflags"] == 0x09000200
        assert out.closed, "the daemon's copy of the stdout handle is closed after the start"
        assert (tmp_path / "stdout").exists()

    def test_spawn_detached_drops_only_breakaway_when_the_job_object_denies_it(self, tmp_path: Path) -> None:
        """ERROR_ACCESS_DENIED (winerror 5): a second call without CREATE_BREAKAWAY_FROM_JOB,
        everything else identical."""
        popen = RecordingPopen(errors=[win_error(5)])
        assert spawn(tmp_path, popen) is popen.process
        assert len(popen.calls) == 2
        (first_args, first), (second_args, second) = popen.calls
        assert first["creationflags"] == CREATE_BREAKAWAY_FROM_JOB | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
        assert second["creationflags"] == CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
        assert second_args == first_args == (ARGV,)
        assert {k: v for k, v in second.items() if k != "creationflags"} == {
            k: v for k, v in first.items() if k != "creationflags"
        }

    def test_spawn_detached_raises_access_denied_when_the_fallback_is_denied_too(self, tmp_path: Path) -> None:
        """A second ERROR_ACCESS_DENIED is not retried again: it propagates after two calls."""
        second_error = win_error(5)
        popen = RecordingPopen(errors=[win_error(5), second_error])
        with pytest.raises(OSError) as caught:
            spawn(tmp_path, popen)
        assert caught.value is second_error
        assert len(popen.calls) == 2

    @pytest.mark.parametrize(
        "error",
        [win_error(2), win_error(193), FileNotFoundError(2, "No such file"), PermissionError(13, "denied")],
        ids=["file-not-found", "bad-exe-format", "no-winerror", "permission-no-winerror"],
    )
    def test_spawn_detached_raises_without_retry_when_the_error_is_not_access_denied(
        self, tmp_path: Path, error: OSError
    ) -> None:
        """Any other OSError propagates unchanged after exactly one call."""
        popen = RecordingPopen(errors=[error])
        with pytest.raises(OSError) as caught:
            spawn(tmp_path, popen)
        assert caught.value is error
        assert len(popen.calls) == 1

    def test_creation_attempts_match_the_win32_values_when_listed(self) -> None:
        """The module's constants are the documented Win32 values."""
        assert windows.creation_attempts() == [0x09000200, 0x08000200]

    def test_pin_exec_argv_leaves_argv_unchanged_when_on_windows(self) -> None:
        """Windows pins after creation, so the argv is never wrapped."""
        assert windows.pin_exec_argv(ARGV, [0, 1]) == ARGV


needs_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="sched_setaffinity is Linux-only"
)


class TestPinExecArgv:
    """contract.md § Files `pid` (line 2, the pinned cores): the mask is set before exec."""

    def test_pin_exec_argv_leaves_argv_unchanged_when_no_nice_value_is_asked_for(self) -> None:
        """Cores alone need no wrapper: the spawning thread's mask is inherited."""
        assert posix.pin_exec_argv(tuple(ARGV), [0, 2]) == ARGV

    @needs_affinity
    def test_pin_exec_argv_wraps_argv_with_the_interpreter_cpu_list_and_nice_value(self) -> None:
        """With a nice value: [python, -I, -S, -c, TRAMPOLINE, "0,2", NICE, *argv]."""
        wrapped = posix.pin_exec_argv(ARGV, [0, 2], nice=3)
        assert wrapped[:4] == [sys.executable, "-I", "-S", "-c"]
        assert "sched_setaffinity" in wrapped[4] and "execv" in wrapped[4]
        assert wrapped[5:7] == ["0,2", "3"]
        assert wrapped[7:] == ARGV

    @pytest.mark.parametrize("cores", [None, [], ()], ids=["none", "empty-list", "empty-tuple"])
    def test_pin_exec_argv_leaves_argv_unchanged_when_there_are_no_cores(self, cores: Any) -> None:
        """No cores: the argv itself, as a new list."""
        argv = tuple(ARGV)
        assert posix.pin_exec_argv(argv, cores) == ARGV

    @needs_affinity
    def test_spawn_detached_starts_the_program_on_the_cores_and_the_thread_keeps_its_mask(
        self, tmp_path: Path
    ) -> None:
        """The program runs on the job's core from its start; the spawning thread gets its
        own mask back (it goes on to spawn other jobs)."""
        own = os.sched_getaffinity(0)
        cpu = max(own)
        probe = [sys.executable, "-c",
                 "import os, sys; print(sorted(os.sched_getaffinity(0)), sys.argv[1:])", "a b", "c"]
        proc = posix.spawn_detached(probe, cwd=tmp_path, env=os.environ, stdout_path=tmp_path / "out",
                                    cores=[cpu])
        assert proc.wait(timeout=30) == 0
        assert (tmp_path / "out").read_text().strip() == f"[{cpu}] ['a b', 'c']"
        assert os.sched_getaffinity(0) == own

    @needs_affinity
    def test_spawn_detached_gives_the_thread_its_mask_back_when_the_program_is_missing(
        self, tmp_path: Path
    ) -> None:
        """The caller fails the job with the OSError; the thread is not left pinned."""
        own = os.sched_getaffinity(0)
        with pytest.raises(FileNotFoundError):
            posix.spawn_detached([str(tmp_path / "no-such-solver")], cwd=tmp_path, env=os.environ,
                                 stdout_path=tmp_path / "out", cores=[max(own)])
        assert os.sched_getaffinity(0) == own

    @needs_affinity
    def test_thread_mask_pins_only_the_calling_thread(self) -> None:
        """Another thread of the daemon (the event loop) keeps running on every CPU."""
        import threading

        own = os.sched_getaffinity(0)
        seen: list[set[int]] = []
        with posix.thread_mask([min(own)]):
            assert os.sched_getaffinity(0) == {min(own)}
            other = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
            other.start()
            other.join()
        assert os.sched_getaffinity(0) == own
        # A new thread inherits its creator's mask: this one was made while pinned.
        assert seen == [{min(own)}]

    @needs_affinity
    def test_pin_exec_argv_applies_cores_and_nice_when_both_are_given(self) -> None:
        """The program starts with the mask and the nice value already set."""
        cpu = min(os.sched_getaffinity(0))
        if os.getpriority(os.PRIO_PROCESS, 0) > 5:
            pytest.skip("the tests already run above nice 5, which an unprivileged user cannot lower")
        probe = [sys.executable, "-c",
                 "import os; print(sorted(os.sched_getaffinity(0)), os.getpriority(os.PRIO_PROCESS, 0))"]
        out = subprocess.run(posix.pin_exec_argv(probe, [cpu], nice=5), capture_output=True,
                             text=True, timeout=30, check=True).stdout
        assert out.strip() == f"[{cpu}] 5"

    @needs_affinity
    def test_pin_exec_argv_exits_127_naming_the_program_when_it_cannot_be_executed(self, tmp_path: Path) -> None:
        """A missing program behind the trampoline exits 127 with the reason on stderr, like a shell would."""
        cpu = min(os.sched_getaffinity(0))
        missing = str(tmp_path / "no-such-solver")
        done = subprocess.run(posix.pin_exec_argv([missing, "i=main.k"], [cpu], nice=1),
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 127
        assert missing in done.stderr and ("cannot execute" in done.stderr or "failed to execute" in done.stderr)
