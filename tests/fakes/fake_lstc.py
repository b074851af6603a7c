# Fake LSTC licence tools `lstc_qrun` and `lstc_qkill` for the dynalauncher test suite.
# Standalone, stdlib only; no `from __future__` import, because
# tests/fakes/__init__.py:install_fake_lstc() writes a `#!<sys.executable>` line and the baked
# constants below (FAKE_LSTC_BAKED_*) in front of this source, once per tool.
#
# What it prints: nothing of its own. It replays recorded output from /work/shared/samples/lstc
# (FORMATS.md §4), chosen at install time:
#   lstc_qrun [-s SERVER] -r   -> the baked licence-information file, exit 0
#   lstc_qrun [-s SERVER]      -> the baked running-programs file, exit 0
#   lstc_qkill PID@HOST        -> the baked qkill output plus a newline, exit 0
#   anything else              -> a usage message on stderr, exit 2
# The role (qrun or qkill) is baked in; run directly, it follows the file name.
#
# Environment:
#   FAKE_LSTC_MODE    "fail": a message on stderr, exit 1; "hang": sleep 60 s first (for
#                     timeout tests); "garbage": print a line that is no lstc output, exit 0
#   FAKE_LSTC_RECORD  a file to which one JSON line per run is appended before anything else:
#                     {"role", "argv", "server" (LSTC_LICENSE_SERVER or null), "pid"}

import json
import os
import sys
import time


def _baked(name):
    return globals().get(name)


def _role():
    role = _baked("FAKE_LSTC_BAKED_ROLE")
    if role:
        return role
    return "qkill" if os.path.basename(sys.argv[0]).startswith("lstc_qkill") else "qrun"


def _usage(role, message):
    sys.stderr.write(f"lstc_{role}: {message}\n")
    sys.exit(2)


def _replay(path):
    if not path:
        sys.stderr.write("fake lstc: no recorded output baked in\n")
        sys.exit(3)
    with open(path, "rb") as source:
        sys.stdout.buffer.write(source.read())
    sys.stdout.flush()


def main():
    role = _role()
    args = sys.argv[1:]
    record = os.environ.get("FAKE_LSTC_RECORD")
    if record:
        with open(record, "a", encoding="utf-8") as out:
            out.write(json.dumps({
                "role": role,
                "argv": args,
                "server": os.environ.get("LSTC_LICENSE_SERVER"),
                "pid": os.getpid(),
            }) + "\n")
    mode = os.environ.get("FAKE_LSTC_MODE", "")
    if mode == "hang":
        time.sleep(60)
    if mode == "fail":
        sys.stderr.write(f"lstc_{role}: cannot contact the licence server (fake failure)\n")
        sys.exit(1)
    if mode == "garbage":
        sys.stdout.write("this is not lstc output\n")
        return
    if role == "qkill":
        if len(args) != 1:
            _usage(role, "usage: lstc_qkill PID@HOST")
        sys.stdout.write((_baked("FAKE_LSTC_BAKED_QKILL_OUTPUT") or "") + "\n")
        sys.stdout.flush()
        return
    if len(args) >= 2 and args[0] == "-s":
        args = args[2:]
    if args == ["-r"]:
        _replay(_baked("FAKE_LSTC_BAKED_QRUN_R"))
    elif args == []:
        _replay(_baked("FAKE_LSTC_BAKED_QRUN"))
    else:
        _usage(role, f"unexpected arguments {args!r}; usage: lstc_qrun [-s SERVER] [-r]")


if __name__ == "__main__":
    main()
