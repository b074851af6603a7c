"""Logging set-up (once, at start) and the per-job adapter every job line goes through.

Colour only on a TTY and only when NO_COLOR is unset (colorama makes ANSI work on older
Windows consoles); the rotating log file never gets escape codes.

The handlers that write run in a thread of their own behind a queue: a console that blocks
(a Windows console with a selection made in QuickEdit mode stops every write to it) or a
slow disk must never stall the event loop that notices solver deaths, and formatting and
writing a line twice (console and file) cost a sixth of the loop's time per job when 200
jobs a second were started.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import queue
import stat
import sys
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


class ColourFormatter(logging.Formatter):
    """Colours the level name; used only for a console that is a TTY."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        colour = COLOURS.get(record.levelno, "")
        return f"{colour}{text}{colorama.Style.RESET_ALL}" if colour else text


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


class _QueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread with their message text fixed (an argument could
    change before the thread formats it) but not formatted: each handler formats there."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg = record.getMessage()
        record.args = None
        return record


_listener: logging.handlers.QueueListener | None = None


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
    console = logging.StreamHandler(stream)
    if use_colour(stream):
        colorama.just_fix_windows_console()
        console.setFormatter(ColourFormatter(FORMAT))
    else:
        console.setFormatter(logging.Formatter(FORMAT))
    writers: list[logging.Handler] = [console]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = RotatingLogFile(log_file, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(FORMAT))
        writers.append(file_handler)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, *writers, respect_handler_level=True)
    _listener.start()
    root.addHandler(_QueueHandler(records))
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
        if isinstance(handler, _QueueHandler):
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
