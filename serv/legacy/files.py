"""File checks, folder cleaning and free disk space for the legacy GUI (protocol §3, §5.7, §5.8).

Cleaning is the dangerous one: the legacy server deleted, in the parent folder of any path a
client named, every file whose *path* lacked `.k`, `.key` and `.dyn`. Here:

* only the folder that holds the input (never a parent, never a sub-folder);
* the input must be an existing regular file named like a deck for a full clean;
* never a deck (a name containing `.k` — which covers `.key` — `.dyn` or `.inp`, or ending in
  `.inc`, `.i` or `.dat`), never the input itself, never a file named in `keep` (the restart
  dump a template asks for);
* never a link (not followed, not removed), never a folder; on POSIX the folder is opened
  once with O_NOFOLLOW and every name is removed relative to that descriptor, so a folder
  swapped for a link meanwhile cannot redirect the deletion;
* never a file-system root, the home folder or the daemon's data folder, and only inside
  `[jobs] allowed_roots` when those are set;
* `clean_all=False` removes only the run's own `pid`, `stdout` and `d3kil`.

Free space: `getFreeSpace {"disk": "C:"}` is what the GUI always asks. A drive letter names
a Windows drive on Windows; on Linux and macOS, where there are no drives, it means the file
system that holds the daemon's data folder (the job database), which is where the operator
chose to keep the daemon's state. Any other text is taken as a path, measured on the file
system holding its nearest existing ancestor. Sizes are GiB, as JSON numbers.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePath
from typing import Iterable

from serv import host
from serv.legacy.rpc import LegacyError

ALWAYS_REMOVED = ("pid", "stdout", "d3kil")
DECK_MARKS = (".k", ".dyn", ".inp")
DECK_SUFFIXES = frozenset({".inc", ".i", ".dat"})
DRIVE = re.compile(r"^[A-Za-z]:[\\/]?$")


def is_deck(name: str) -> bool:
    low = name.lower()
    return any(mark in low for mark in DECK_MARKS) or PurePath(low).suffix in DECK_SUFFIXES


def file_exists(path: str) -> bool:
    """Legacy fileExists: a restart dump name matches any `d3dumpNN` of its folder."""
    if not path or "\x00" in path:
        return False
    if "d3dump" in path:
        target = Path(path)
        try:
            return any(target.name in entry for entry in os.listdir(target.parent))
        except OSError:
            return False
    return os.path.isfile(path)


def folder_has_no_d3plot(input_file: str) -> bool:
    """Legacy isFolderEmpty: only an entry named exactly `d3plot` makes a folder non-empty."""
    if not input_file or "\x00" in input_file:
        return True
    return not os.path.lexists(os.path.join(os.path.dirname(input_file), "d3plot"))


def _within(path: str, root: str) -> bool:
    real, top = os.path.normcase(path), os.path.normcase(root)
    return real == top or os.path.commonpath([real, top]) == top


def check_clean_target(
    input: str, *, clean_all: bool, roots: Iterable[Path], forbidden: Iterable[Path]
) -> Path:
    """The folder `clean_folder` may clean for `input`; raises LegacyError(10) if none."""
    path = Path(input)
    if not path.is_absolute():
        raise LegacyError(10, f"cannot clean for {input!r}: the input must be an absolute path")
    folder = path.parent
    try:
        folder_stat = os.lstat(folder)
        input_stat = os.lstat(path)
    except OSError as exc:
        raise LegacyError(10, f"cannot clean for {input!r}: {exc.strerror}") from exc
    if not stat.S_ISDIR(folder_stat.st_mode):
        raise LegacyError(10, f"cannot clean {folder}: it is a link or not a folder")
    if not stat.S_ISREG(input_stat.st_mode):
        raise LegacyError(10, f"cannot clean for {input!r}: the input is not a regular file")
    if clean_all and not is_deck(path.name):
        raise LegacyError(10, f"cannot clean for {input!r}: the input is not named like an "
                              "LS-DYNA deck (.k, .key, .dyn)")
    real = os.path.realpath(folder)
    for place in [Path(real).anchor, *map(str, forbidden)]:
        try:
            if place and os.path.normcase(real) == os.path.normcase(os.path.realpath(place)):
                raise LegacyError(10, f"cannot clean {folder}: the daemon never cleans {place}")
        except OSError:
            continue
    allowed = [os.path.realpath(r) for r in roots]
    if allowed and not any(_within(real, r) for r in allowed):
        raise LegacyError(10, f"cannot clean {folder}: it is outside [jobs] allowed_roots")
    return folder


def clean_folder(input: str, *, clean_all: bool, keep: Iterable[str] = ()) -> list[str]:
    """Delete the run's files next to `input` (see the module notes); the names removed.

    Call `check_clean_target` first. Errors on single files are ignored, like legacy.
    """
    path = Path(input)
    folder = path.parent
    protected = {path.name, *keep}
    removed: list[str] = []

    def wanted(name: str) -> bool:
        if name in protected:
            return False
        if clean_all:
            return not is_deck(name)
        return name in ALWAYS_REMOVED

    if os.unlink in os.supports_dir_fd and os.scandir in os.supports_fd:
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(folder, flags)
        except OSError as exc:
            raise LegacyError(10, f"cannot clean {folder}: {exc.strerror}") from exc
        try:
            with os.scandir(fd) as entries:
                names = [e.name for e in entries if e.is_file(follow_symlinks=False) and wanted(e.name)]
            for name in names:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        os.unlink(name, dir_fd=fd)
                        removed.append(name)
                except OSError:
                    continue
        finally:
            os.close(fd)
        return removed
    try:
        with os.scandir(folder) as entries:  # Windows: no dir_fd
            names = [e.name for e in entries if e.is_file(follow_symlinks=False) and wanted(e.name)]
    except OSError as exc:
        raise LegacyError(10, f"cannot clean {folder}: {exc.strerror}") from exc
    for name in names:
        target = folder / name
        try:
            if stat.S_ISREG(os.lstat(target).st_mode):
                os.unlink(target)
                removed.append(name)
        except OSError:
            continue
    return removed


def free_space(disk: object, data_dir: Path) -> list[object]:
    """Legacy getFreeSpace: `[label, free GiB, total GiB]`, numbers in 1 and 2."""
    label = disk if isinstance(disk, str) else str(disk)
    try:
        if not isinstance(disk, str) or not disk or "\x00" in disk:
            raise ValueError(disk)
        if DRIVE.match(disk):
            target = Path(disk[:2] + "\\") if os.name == "nt" else data_dir
        else:
            target = Path(disk)
            if not target.is_absolute():
                raise ValueError(disk)
        while not target.exists() and target.parent != target:
            target = target.parent
        free, total = host.disk_free(str(target))
    except (OSError, ValueError):
        return [f"error reading {label}", 0, 0]
    return [label, free, total]
