"""Logging set-up (once, at start) and the per-job adapter every job line goes through.

Colour only on a TTY and only when NO_COLOR is unset (colorama makes ANSI work on older
Windows consoles); the rotating log file never gets escape codes.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
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


def setup_logging(level: str = "INFO", log_file: Path | None = None, stream: TextIO | None = None) -> None:
    """Install the console handler (coloured on a TTY) and the rotating file handler."""
    stream = stream or sys.stderr
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler(stream)
    if use_colour(stream):
        colorama.just_fix_windows_console()
        console.setFormatter(ColourFormatter(FORMAT))
    else:
        console.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
        )
        file_handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(file_handler)
    root.setLevel(level.upper())
    # The libraries' per-frame debug lines would drown the daemon's own.
    logging.getLogger("websockets").setLevel(max(root.level, logging.INFO))
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))


class JobLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every message with its job id and keeps the id on the record for filters."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        job_id = self.extra["job_id"] if self.extra else None
        kwargs["extra"] = {**kwargs.get("extra", {}), "job_id": job_id}
        return f"job {job_id}: {msg}", kwargs


def job_log(logger: logging.Logger, job_id: int) -> JobLog:
    return JobLog(logger, {"job_id": job_id})
