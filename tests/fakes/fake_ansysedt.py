# Fake `ansysedt` (Ansys Electronics Desktop batch solve) for the dynalauncher test suite.
# Standalone, stdlib only, Python 3.11; no `from __future__` import, because
# tests/fakes/__init__.py:install_fake_ansysedt() writes a `#!<sys.executable>` line and a
# `FAKE_ANSYSEDT_BAKED_SAMPLE = '<path>'` line in front of this source, so the running process
# is named after the installed file (`ansysedt`) and knows its sample without any environment.
#
# What it prints: nothing of its own on stdout. It replays a real batch log from
# /work/shared/samples/hfss (FORMATS.md §2) line by line, as `ansysedt -ng -monitor` would
# print it, flushing each line, then exits.
#
# Command line it accepts (the shape serv/solvers/hfss.py builds; anything else: a message on
# stderr and exit 2, as a usage error):
#   ansysedt -ng -monitor [-jobid ID] [-distributed] [-auto]
#            [-machinelist list=HOST:TASKS:CORES:RAM%[,...] | -machinelist numcores=N]
#            [-batchoptions "'KEY'='VALUE' 'KEY'=INT ..."]
#            -batchsolve [DESIGN | DESIGN:Nominal:SETUP | DESIGN:Optimetrics:SETUP] PROJECT
# The optional flags in the second line are the ones the samples' command lines show, accepted
# so that a profile's extra_args can carry them. PROJECT must end in .aedt or .aedb; it need not
# exist.
#
# Which sample it replays, first found wins:
#   1. a line `$ fake-sample: PATH` in PROJECT, when PROJECT is a readable text file;
#   2. the environment variable FAKE_ANSYSEDT_SAMPLE;
#   3. the path baked in by install_fake_ansysedt().
#   None of them: a message on stderr and exit 3.
# Environment:
#   FAKE_ANSYSEDT_LINE_DELAY_S   seconds slept after each line (default 0.005)
#   FAKE_ANSYSEDT_EXIT           exit code after the replay (default 0)
#   FAKE_ANSYSEDT_IGNORE_SIGTERM "1": ignore SIGTERM (default: SIGTERM kills it, like the real
#                                solver, whose graceful stop is SIGTERM)

import os
import re
import signal
import sys
import time

FAKE_SAMPLE_DIRECTIVE = re.compile(r"^\$ fake-sample:\s*(\S.*?)\s*$", re.MULTILINE)
MACHINE = r"[^:,\s]+:-?[0-9]+:[0-9]+:[0-9]+%(?::[0-9]+)?"  # HOST:TASKS:CORES:RAM%[:GPUS]
MACHINELIST = re.compile(rf"list={MACHINE}(?:,{MACHINE})*|numcores=[0-9]+")
BATCHOPTION = r"'[^']+'=(?:'[^']*'|-?[0-9]+)"
BATCHOPTIONS = re.compile(rf"{BATCHOPTION}(?: +{BATCHOPTION})*")
TARGET = re.compile(r"[^:]+|[^:]+:(?:Nominal|Optimetrics):[^:]+")
PROJECT_SUFFIXES = (".aedt", ".aedb")
MAX_PROJECT_SCAN = 64 * 1024


def usage(problem):
    sys.stderr.write(f"fake ansysedt: {problem}\n")
    sys.stderr.write(
        "usage: ansysedt -ng -monitor [-jobid ID] [-distributed] [-auto] [-machinelist SPEC]"
        " [-batchoptions OPTIONS] -batchsolve [DESIGN[:Nominal:SETUP]] PROJECT\n"
    )
    sys.stderr.flush()
    sys.exit(2)


def check_argv(args):
    """Return the project path if `args` has the accepted shape, else exit 2 naming the problem."""
    if args[:2] != ["-ng", "-monitor"]:
        usage(f"expected '-ng -monitor' first, got {args[:2]!r}")
    rest = args[2:]
    while rest and rest[0] in ("-jobid", "-distributed", "-auto"):
        if rest[0] == "-jobid":
            if len(rest) < 2 or not re.fullmatch(r"[A-Za-z0-9_-]+", rest[1]):
                usage("-jobid needs an id of letters, digits, _ and -")
            rest = rest[2:]
        else:
            rest = rest[1:]
    if rest[:1] == ["-machinelist"]:
        if len(rest) < 2 or not MACHINELIST.fullmatch(rest[1]):
            usage(f"-machinelist needs list=HOST:TASKS:CORES:RAM% or numcores=N, got {rest[1:2]!r}")
        rest = rest[2:]
    if rest[:1] == ["-auto"]:
        rest = rest[1:]
    if rest[:1] == ["-batchoptions"]:
        if len(rest) < 2 or not BATCHOPTIONS.fullmatch(rest[1]):
            usage(f"-batchoptions needs one argument \"'KEY'='VALUE' ...\", got {rest[1:2]!r}")
        rest = rest[2:]
    if rest[:1] != ["-batchsolve"]:
        usage(f"expected -batchsolve, got {rest[:1]!r}")
    rest = rest[1:]
    if len(rest) == 2:
        if not TARGET.fullmatch(rest[0]) or rest[0].startswith("-"):
            usage(f"-batchsolve target must be DESIGN or DESIGN:Nominal:SETUP, got {rest[0]!r}")
    elif len(rest) != 1:
        usage(f"-batchsolve takes [TARGET] PROJECT, got {rest!r}")
    project = rest[-1]
    if not project.lower().endswith(PROJECT_SUFFIXES):
        usage(f"PROJECT must be a .aedt or .aedb project, got {project!r}")
    return project


def sample_path(project):
    try:
        with open(project, "rb") as fh:
            head = fh.read(MAX_PROJECT_SCAN).decode("utf-8", errors="replace")
    except OSError:  # missing, a directory (.aedb) or unreadable: no directive there
        head = ""
    match = FAKE_SAMPLE_DIRECTIVE.search(head)
    if match:
        return match.group(1)
    env = os.environ.get("FAKE_ANSYSEDT_SAMPLE", "")
    if env:
        return env
    return globals().get("FAKE_ANSYSEDT_BAKED_SAMPLE") or None


def main():
    if os.environ.get("FAKE_ANSYSEDT_IGNORE_SIGTERM", "") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    project = check_argv(sys.argv[1:])
    path = sample_path(project)
    if path is None:
        sys.stderr.write("fake ansysedt: no sample: set FAKE_ANSYSEDT_SAMPLE or install with one\n")
        return 3
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        sys.stderr.write(f"fake ansysedt: cannot read sample {path!r}: {exc}\n")
        return 3
    delay = float(os.environ.get("FAKE_ANSYSEDT_LINE_DELAY_S", "0.005"))
    exit_code = int(os.environ.get("FAKE_ANSYSEDT_EXIT", "0"))
    out = sys.stdout.buffer
    # Split on LF only: a stray CR inside a line (the Linux 2022 R2 log, FORMATS.md §2.2) stays.
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        out.write(line + b"\n")
        out.flush()
        if delay > 0:
            time.sleep(delay)
    return exit_code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader went away: nothing left to report to
        sys.exit(1)
