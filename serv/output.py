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
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Reading a burst in bounded pieces keeps one tick short when a solver wrote megabytes.
MAX_READ = 4 * 1024 * 1024


@dataclass
class TailFile:
    """One file being followed."""

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
    current: Path | None = None

    def _locate(self) -> tuple[Path, os.stat_result] | None:
        for name in self.names:
            path = self.folder / name
            try:
                st = path.stat()
                if st.st_mtime < self.not_before:
                    continue
                return path, st
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.debug("cannot stat %s: %s", path, exc)
                continue
        return None

    def _reset(self) -> None:
        self.offset = 0
        self.pending = b""
        self.pending_text = ""
        self.utf16 = None
        self.encoding_known = False

    def read(self) -> tuple[list[str], str]:
        """New complete lines (CR removed) and the new text as written (for streaming)."""
        found = self._locate()
        if found is None:
            return [], ""
        path, st = found
        ident = (st.st_dev, st.st_ino)
        if path != self.current or ident != self.ident or st.st_size < self.offset:
            if self.ident is not None:
                log.debug("%s was replaced or truncated; reading it from the start", path)
            self._reset()
            self.current, self.ident = path, ident
        limit = st.st_size if self.max_bytes is None else min(st.st_size, self.max_bytes)
        if limit <= self.offset:
            return [], ""
        try:
            with open(path, "rb") as fh:
                fh.seek(self.offset)
                raw = fh.read(min(limit - self.offset, MAX_READ))
        except OSError as exc:
            log.debug("cannot read %s: %s", path, exc)
            return [], ""
        self.offset += len(raw)
        return self._decode(raw, final=self.max_bytes is not None and self.offset >= limit)

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
    """Follows the output files of every live job (single-threaded: the tail thread)."""

    def __init__(self) -> None:
        self.jobs: dict[int, JobTail] = {}

    def add(
        self,
        job_id: int,
        folder: Path,
        files: list[tuple[str, tuple[str, ...], int | None]],
        not_before: float = 0.0,
    ) -> None:
        """Follow `files` (source, candidate names, max bytes) of `job_id` in `folder`,
        ignoring any not written since `not_before` (epoch seconds)."""
        self.jobs[job_id] = JobTail(
            [TailFile(src, names, folder, max_bytes, not_before) for src, names, max_bytes in files]
        )

    def remove(self, job_id: int) -> None:
        self.jobs.pop(job_id, None)

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
