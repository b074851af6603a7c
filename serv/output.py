"""Incremental tailing of job output files: new bytes only, whole lines only.

Each tailed file keeps its identity (device, inode), its offset and the bytes of an
unfinished last line. A read costs what was appended since the last one, whatever the
file's size. A file that shrank (truncated) or was replaced (new inode) is read again from
its start. Text is decoded as UTF-8, else Latin-1 (which never fails); a file that starts
with a UTF-16LE BOM or shows NUL bytes in every other position (LS-DYNA's stdout redirected
on Windows) is decoded as UTF-16LE. Every CR is removed from lines handed to parsers.

One `Tailer` serves every live job from one thread, so hundreds of jobs cost no thread each.
It is not thread-safe: the JobManager calls it only from its single tail thread.
"""

from __future__ import annotations

import codecs
import logging
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from serv.platform import IS_WINDOWS

log = logging.getLogger(__name__)

# Reading a burst in bounded pieces keeps one tick short when a solver wrote megabytes.
MAX_READ = 4 * 1024 * 1024
# A read asks for this much first (solvers append a few lines between reads); only a full
# chunk costs an fstat and a second read, so a 4 MB buffer is not allocated every time.
READ_CHUNK = 64 * 1024
# A file that keeps growing is still looked up by name at least this often (reads), to
# notice a replacement or a preferred name (messag before mes0000) while the old one grows.
RELOCATE_EVERY = 10
# Windows: a file open without FILE_SHARE_DELETE (Python's open/os.open never set it)
# stops its writer from deleting or renaming it, and a solver must be free to do both
# with its own output. So there the file is closed after every read (one open per read,
# as before); elsewhere it stays open between reads.
KEEP_OPEN = not IS_WINDOWS


@dataclass
class TailFile:
    """One file being followed.

    The file found is kept open between reads and `os.fstat` on it gives size and
    identity, so a read of a growing file costs one fstat, one seek and one read. The
    candidate names are stat'ed again (`_locate`) when the open file did not grow, and at
    least every RELOCATE_EVERY reads while it does: a file replaced, re-created or
    truncated, or a preferred name appearing, is noticed by then.
    """

    source: str
    names: tuple[str, ...]
    folder: Path
    max_bytes: int | None = None
    # A file last written before the job started belongs to an earlier run in the same
    # folder (a CalculiX .sta, an LS-DYNA messag): it is treated as absent until rewritten.
    not_before: float = 0.0
    offset: int = 0
    ident: tuple[int, int] | None = None
    pending: bytes = b""
    utf16: codecs.IncrementalDecoder | None = None
    pending_text: str = ""
    encoding_known: bool = False
    current: str | None = None  # the path followed, one of `paths`
    fd: int | None = field(default=None, repr=False)
    reads_since_locate: int = field(default=0, repr=False)
    # Candidate paths as str: os.stat on a str skips building a Path on every read.
    paths: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.paths = tuple(os.path.join(self.folder, name) for name in self.names)

    def _locate(self) -> tuple[int, os.stat_result] | None:
        """Index in `names` and stat of the first candidate that exists and is recent enough."""
        for index, path in enumerate(self.paths):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.debug("cannot stat %s: %s", path, exc)
                continue
            if st.st_mtime >= self.not_before:
                return index, st
        return None

    def close(self) -> None:
        """Close the open file, if any (the read position is kept)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.close(fd)
            except OSError as exc:
                log.debug("cannot close %s: %s", self.current, exc)

    def _reset(self) -> None:
        self.offset = 0
        self.pending = b""
        self.pending_text = ""
        self.utf16 = None
        self.encoding_known = False

    def _limit(self, size: int) -> int:
        return size if self.max_bytes is None else min(size, self.max_bytes)

    def read(self) -> tuple[list[str], str]:
        """New complete lines (CR removed) and the new text as written (for streaming)."""
        if self.fd is not None and self.reads_since_locate < RELOCATE_EVERY:
            # The open file is read on from where the last read ended: one read() call
            # when it grew. Only when it did not is it looked up by name again.
            self.reads_since_locate += 1
            got = self._read_on()
            if got is not None:
                return got
        size = self._relocate()
        if size is None:
            return [], ""
        if self._limit(size) <= self.offset:
            if self.max_bytes is not None and self.offset >= self.max_bytes:
                self.close()  # read up to its cap: only a replacement matters from now on
            return [], ""
        try:
            if self.fd is None:
                self._open()
            assert self.fd is not None
            os.lseek(self.fd, self.offset, os.SEEK_SET)
            got = self._read_on()
        except OSError as exc:
            log.debug("cannot read %s: %s", self.current, exc)
            self.close()
            return [], ""
        finally:
            if not KEEP_OPEN:
                self.close()
        return ([], "") if got is None else got

    def _read_on(self) -> tuple[list[str], str] | None:
        """Read from the open file's position (which is `offset`); None when nothing is new."""
        fd = self.fd
        assert fd is not None
        want = MAX_READ if self.max_bytes is None else min(MAX_READ, self.max_bytes - self.offset)
        if want <= 0:
            return None
        first = min(want, READ_CHUNK)
        try:
            raw = os.read(fd, first)
            at_end = len(raw) < first
            if not at_end and first < want:
                # A full chunk: the rest of a burst, up to `want`, in one more call.
                size = os.fstat(fd).st_size
                rest = min(size - self.offset - first, want - first)
                if rest > 0:
                    raw += os.read(fd, rest)
                at_end = self.offset + len(raw) >= size
        except OSError as exc:
            log.debug("cannot read %s: %s", self.current, exc)
            self.close()
            return None
        if not raw:
            return None
        self.offset += len(raw)
        # A capped file hands over its last partial line once read to its cap or its end.
        final = self.max_bytes is not None and (at_end or self.offset >= self.max_bytes)
        return self._decode(raw, final=final)

    def _relocate(self) -> int | None:
        """Find the file by its names again; its size, or None when there is none."""
        self.reads_since_locate = 0
        found = self._locate()
        if found is None:
            self.close()  # gone, or not there yet: nothing to hold on to
            return None
        index, st = found
        path = self.paths[index]
        if path != self.current or (st.st_dev, st.st_ino) != self.ident:
            self.close()  # another file now: it is opened when there is something to read
        self._follow(path, st)
        return st.st_size

    def _open(self) -> int:
        """Open the current file; its size. The identity is that of the file opened, which
        may be newer than the one stat'ed a moment before."""
        assert self.current is not None
        self.fd = os.open(self.current, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        st = os.fstat(self.fd)
        self._follow(self.current, st)
        return st.st_size

    def _follow(self, path: str, st: os.stat_result) -> None:
        """Make `path` with `st` the file followed; from its start if it is another file or shrank."""
        ident = (st.st_dev, st.st_ino)
        if path != self.current or ident != self.ident or st.st_size < self.offset:
            if self.ident is not None:
                log.debug("%s was replaced or truncated; reading it from the start", path)
            self._reset()
            self.current, self.ident = path, ident

    def _decode(self, raw: bytes, *, final: bool) -> tuple[list[str], str]:
        if not self.encoding_known:
            sample = self.pending + raw
            if len(sample) < 2 and not final:
                self.pending = sample
                return [], ""
            if sample.startswith(b"\xff\xfe") or _looks_utf16(sample):
                self.utf16 = codecs.getincrementaldecoder("utf-16-le")(errors="replace")
                raw, self.pending = sample, b""
            self.encoding_known = True
        if self.utf16 is not None:
            text = self.pending_text + self.utf16.decode(raw, final=final).lstrip("\ufeff")
            cut = text.rfind("\n") + 1
            if final:
                cut = len(text)
            done, self.pending_text = text[:cut], text[cut:]
            return _lines(done), done
        data = self.pending + raw
        cut = data.rfind(b"\n") + 1
        if final:
            cut = len(data)
        complete, self.pending = data[:cut], data[cut:]
        try:
            decoded = complete.decode("utf-8")
        except UnicodeDecodeError:
            decoded = complete.decode("latin-1")
        return _lines(decoded), decoded


def decode_text(raw: bytes) -> str:
    """Bytes of solver output as text, by the same rules as the tailer; CRs dropped."""
    if raw.startswith(b"\xff\xfe") or _looks_utf16(raw):
        text = raw.decode("utf-16-le", errors="replace").lstrip("\ufeff")
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    return text.replace("\r", "")


def _looks_utf16(sample: bytes) -> bool:
    """ASCII text in UTF-16LE has a NUL in (nearly) every odd position."""
    odd = sample[1:512:2]
    return len(odd) >= 4 and odd.count(0) >= 0.9 * len(odd)


def _lines(text: str) -> list[str]:
    if not text:
        return []
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [p.replace("\r", "") for p in parts]


@dataclass
class JobTail:
    """The files of one job."""

    files: list[TailFile] = field(default_factory=list)


class Tailer:
    """Follows the output files of every live job (single-threaded: the tail thread).

    It holds the files it follows open (not on Windows): `remove` a job, or `close` the
    tailer, to release them; what is left open is closed when the tailer is collected.
    """

    def __init__(self) -> None:
        self.jobs: dict[int, JobTail] = {}
        self._finalizer = weakref.finalize(self, _close_all, self.jobs)

    def add(
        self,
        job_id: int,
        folder: Path,
        files: list[tuple[str, tuple[str, ...], int | None]],
        not_before: float = 0.0,
    ) -> None:
        """Follow `files` (source, candidate names, max bytes) of `job_id` in `folder`,
        ignoring any not written since `not_before` (epoch seconds)."""
        self.remove(job_id)
        self.jobs[job_id] = JobTail(
            [TailFile(src, names, folder, max_bytes, not_before) for src, names, max_bytes in files]
        )

    def remove(self, job_id: int) -> None:
        """Stop following `job_id` and close its files."""
        tail = self.jobs.pop(job_id, None)
        if tail is not None:
            for tf in tail.files:
                tf.close()

    def close(self) -> None:
        """Stop following every job and close every file."""
        _close_all(self.jobs)

    def read_job(self, job_id: int) -> dict[str, tuple[list[str], str]]:
        """New lines and text per source of one job (sources with nothing new are left out)."""
        tail = self.jobs.get(job_id)
        if tail is None:
            return {}
        result: dict[str, tuple[list[str], str]] = {}
        for tf in tail.files:
            lines, text = tf.read()
            if text:
                old_lines, old_text = result.get(tf.source, ([], ""))
                result[tf.source] = (old_lines + lines, old_text + text)
        return result


def _close_all(jobs: dict[int, JobTail]) -> None:
    for tail in jobs.values():
        for tf in tail.files:
            tf.close()
    jobs.clear()
