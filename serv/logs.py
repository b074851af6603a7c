"""Logging set-up (once, at start) and the per-job adapter every job line goes through.

Colour only on a TTY and only when NO_COLOR is unset (colorama makes ANSI work on older
Windows consoles); the rotating log file never gets escape codes.

The handlers that write run in a thread of their own (`_Writer`): a console that blocks (a
Windows console with a selection made in QuickEdit mode stops every write to it) or a slow
disk must never stall the event loop that notices solver deaths, and formatting and writing
a line twice (console and file) cost a sixth of the loop's time per job when 200 jobs a
second were started. Lines reach the writer without waking it for each one and are written
in batches, one write per batch and handler.
"""

from __future__ import annotations

import atexit
import collections
import logging
import logging.handlers
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, MutableMapping, TextIO

import colorama

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
COLOURS = {
    logging.DEBUG: colorama.Fore.BLUE,
    logging.INFO: colorama.Fore.GREEN,
    logging.WARNING: colorama.Fore.YELLOW,
    logging.ERROR: colorama.Fore.RED,
    logging.CRITICAL: colorama.Fore.RED + colorama.Style.BRIGHT,
}


class LineFormatter(logging.Formatter):
    """FORMAT, formatted once per record however many handlers write it (the text is kept
    on the record: console and file show the same line)."""

    def format(self, record: logging.LogRecord) -> str:
        text: str | None = record.__dict__.get("_line")
        if text is None:
            text = super().format(record)
            record._line = text
        return text


class ColourFormatter(LineFormatter):
    """Colours the line by level; used only for a console that is a TTY."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        colour = COLOURS.get(record.levelno, "")
        return f"{colour}{text}{colorama.Style.RESET_ALL}" if colour else text


class Console(logging.StreamHandler):  # type: ignore[type-arg]
    """The console handler; the writer thread hands it a batch of lines at once."""

    def write_batch(self, records: list[logging.LogRecord]) -> None:
        """All of `records` in one write and one flush (a console or pipe gets one system
        call per batch, not one per line)."""
        try:
            text = "".join(self.format(r) + self.terminator for r in records)
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(text)
                self.stream.flush()
        except RecursionError:
            raise
        except Exception:  # logging's own contract: a failing handler reports, never raises
            self.handleError(records[-1])


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


class RotatingLogFile(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that rolls over once the file has reached its size, judged by
    the stream position alone. The stock check formats every record a second time and
    stats the path twice, per line; that was most of the cost of a log line. The file
    ends at most one line over the size, and a path that is not a regular file (/dev/null,
    a pipe) never rolls over, as with the stock handler."""

    _regular: bool | None = None

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.maxBytes <= 0:
            return False
        if self.stream is None:  # opened lazily, or closed by the last rollover
            self.stream = self._open()
            self._regular = None
        if self._regular is None:
            self._regular = stat.S_ISREG(os.fstat(self.stream.fileno()).st_mode)
        return self._regular and self.stream.tell() >= self.maxBytes

    def write_batch(self, records: list[logging.LogRecord]) -> None:
        """All of `records`, rolling over between lines as needed, then one flush."""
        try:
            with self.lock:  # type: ignore[union-attr]
                for record in records:
                    if self.shouldRollover(record):
                        self.doRollover()
                    stream = self.stream if self.stream is not None else self._open()
                    self.stream = stream
                    stream.write(self.format(record) + self.terminator)
                if self.stream is not None:
                    self.stream.flush()
        except RecursionError:
            raise
        except Exception:  # logging's own contract: a failing handler reports, never raises
            self.handleError(records[-1])


class _Writer:
    """The thread that formats and writes every line, in batches.

    The caller's side only appends the record to a deque (no lock, no wake-up): waking the
    writer for every line cost the event loop two context switches per line, and writing
    line by line a system call per line and handler. The writer is woken by the first line
    after a quiet spell, lets a batch gather for LINGER_S, then hands each handler the
    whole batch (one write, one flush)."""

    LINGER_S = 0.02

    def __init__(self, handlers: list[logging.Handler]) -> None:
        self.handlers = handlers
        self._records: collections.deque[logging.LogRecord] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, record: logging.LogRecord) -> None:
        """Any thread: queue `record` (its message text already fixed)."""
        self._records.append(record)
        if not self._wake.is_set():
            self._wake.set()

    def stop(self) -> None:
        """Write everything queued so far, then end the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if not self._stopping:
                time.sleep(self.LINGER_S)
            # Cleared before the drain: a line queued from here on sets it again, so none
            # is left behind until the next line comes.
            self._wake.clear()
            batch = []
            while self._records:
                batch.append(self._records.popleft())
            if batch:
                self._write(batch)
            if self._stopping and not self._records:
                return

    def _write(self, batch: list[logging.LogRecord]) -> None:
        for handler in self.handlers:
            chosen = [r for r in batch if r.levelno >= handler.level]
            if not chosen:
                continue
            write_batch = getattr(handler, "write_batch", None)
            if write_batch is not None:
                write_batch(chosen)
            else:
                for record in chosen:
                    handler.handle(record)


class Handoff(logging.Handler):
    """The root logger's only handler: fixes a record's message text (an argument could
    change before the writer thread formats it) and hands it to the writer thread."""

    def __init__(self, writer: _Writer) -> None:
        super().__init__()
        self.writer = writer

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: appending to a deque is already safe from any thread.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg = record.getMessage()
            record.args = None
        except RecursionError:
            raise
        except Exception:  # logging's own contract: a bad format string reports, never raises
            self.handleError(record)
            return
        self.writer.put(record)


_listener: _Writer | None = None


def setup_logging(level: str = "INFO", log_file: Path | None = None, stream: TextIO | None = None) -> None:
    """Install the console handler (coloured on a TTY) and the rotating file handler, both
    written by one thread behind a queue (see the module docstring). Calling it again
    replaces the previous set-up, after writing what it still held."""
    global _listener
    stream = stream or sys.stderr
    root = logging.getLogger()
    stop_logging()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = Console(stream)
    plain = LineFormatter(FORMAT)
    if use_colour(stream):
        colorama.just_fix_windows_console()
        console.setFormatter(ColourFormatter(FORMAT))
    else:
        console.setFormatter(plain)
    writers: list[logging.Handler] = [console]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = RotatingLogFile(log_file, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8")
        file_handler.setFormatter(plain)
        writers.append(file_handler)
    _listener = _Writer(writers)
    _listener.start()
    root.addHandler(Handoff(_listener))
    # FORMAT shows none of these, and each costs the caller's thread work per line (the
    # logging HOWTO's "Optimization" table): the caller's file and line, found by walking
    # its stack, and the thread and process names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root.setLevel(level.upper())
    # The libraries' per-frame debug lines would drown the daemon's own.
    logging.getLogger("websockets").setLevel(max(root.level, logging.INFO))
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))


def stop_logging() -> None:
    """Write every queued line and stop the writer thread (at exit, and before a new
    set-up). Lines logged afterwards reach no handler of ours until setup_logging runs."""
    global _listener
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, Handoff):
            root.removeHandler(handler)
    if _listener is not None:
        listener, _listener = _listener, None
        listener.stop()
        for handler in listener.handlers:
            handler.close()


# Registered after logging's own exit hook, so it runs first: queued lines are written
# before the handlers are flushed and closed.
atexit.register(stop_logging)


class JobLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every message with its job id and keeps the id on the record for filters."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        job_id = self.extra["job_id"] if self.extra else None
        kwargs["extra"] = {**kwargs.get("extra", {}), "job_id": job_id}
        return f"job {job_id}: {msg}", kwargs


def job_log(logger: logging.Logger, job_id: int) -> JobLog:
    return JobLog(logger, {"job_id": job_id})
