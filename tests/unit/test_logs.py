"""Issue #3 item 13: colour only on a TTY (and not with NO_COLOR); the log file has none."""

from __future__ import annotations

import io
import os
import logging
import logging.handlers
from pathlib import Path

import pytest

from serv.logs import Handoff, job_log, setup_logging, stop_logging


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    stop_logging()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_console_is_coloured_on_a_tty_and_the_file_is_plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = FakeTty()
    log_file = tmp_path / "logs" / "d.log"
    setup_logging("INFO", log_file, stream=tty)
    job_log(logging.getLogger("serv.test"), 7).warning("pid %d fallback", 42)
    stop_logging()  # the writer thread has written everything queued when this returns
    assert "\x1b[" in tty.getvalue() and "job 7: pid 42 fallback" in tty.getvalue()
    text = log_file.read_text()
    assert "job 7: pid 42 fallback" in text and "\x1b[" not in text


def test_console_is_plain_when_not_a_tty_or_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = io.StringIO()
    setup_logging("INFO", None, stream=plain)
    logging.getLogger("serv.test").info("hello")
    stop_logging()
    assert "hello" in plain.getvalue() and "\x1b[" not in plain.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    tty = FakeTty()
    setup_logging("INFO", None, stream=tty)
    logging.getLogger("serv.test").info("again")
    stop_logging()
    assert "again" in tty.getvalue() and "\x1b[" not in tty.getvalue()


def test_job_log_keeps_the_job_id_on_the_record() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("serv.test.keep")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    job_log(logger, 12).info("started")
    assert records[0].job_id == 12  # type: ignore[attr-defined]
    assert records[0].getMessage() == "job 12: started"


def test_lines_are_written_by_a_thread_with_their_arguments_fixed_when_logged() -> None:
    """The loop thread only queues a record; a list logged and then changed shows as it was."""
    plain = io.StringIO()
    setup_logging("INFO", None, stream=plain)
    handlers = logging.getLogger().handlers
    assert len(handlers) == 1 and isinstance(handlers[0], Handoff)
    shown = [1, 2]
    logging.getLogger("serv.test").info("pids %s", shown)
    shown.append(3)
    stop_logging()
    assert "pids [1, 2]\n" in plain.getvalue()
    assert logging.getLogger().handlers == []  # nothing queues into a stopped writer


def test_a_second_set_up_writes_what_the_first_still_held(tmp_path: Path) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("INFO", None, stream=first)
    for i in range(500):
        logging.getLogger("serv.test").info("line %d", i)
    setup_logging("INFO", None, stream=second)
    assert "line 499" in first.getvalue() and second.getvalue() == ""


class TestRotatingLogFile:
    """The file rolls over by its size without formatting each record twice."""

    def test_rolls_over_once_the_size_is_reached_and_keeps_every_line(self, tmp_path: Path) -> None:
        from serv.logs import RotatingLogFile

        path = tmp_path / "d.log"
        handler = RotatingLogFile(path, maxBytes=1000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger("serv.test.rotate")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            for i in range(60):
                logger.warning("line %02d %s", i, "x" * 40)
        finally:
            logger.removeHandler(handler)
            handler.close()
        files = [path, *(tmp_path / f"d.log.{n}" for n in (1, 2))]
        assert all(f.exists() for f in files) and not (tmp_path / "d.log.4").exists()
        # Over the size by at most one line, never more.
        assert all(f.stat().st_size < 1000 + 50 for f in files)
        lines = [line for f in reversed(files) for line in f.read_text().splitlines()]
        assert lines == [f"line {i:02d} {'x' * 40}" for i in range(60 - len(lines), 60)]

    def test_a_path_that_is_not_a_regular_file_never_rolls_over(self) -> None:
        from serv.logs import RotatingLogFile

        handler = RotatingLogFile(os.devnull, maxBytes=1)
        try:
            record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None)
            assert handler.shouldRollover(record) is False
        finally:
            handler.close()


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_lines_from_many_threads_are_all_written_in_order_and_in_batches() -> None:
    """Every line of every thread arrives, each thread's in its order; a burst is written in a
    few writes, not one per line (the writer takes what has gathered at once)."""
    import threading

    stream = CountingStream()
    setup_logging("INFO", None, stream=stream)
    logger = logging.getLogger("serv.test.burst")

    def burst(name: str) -> None:
        for i in range(200):
            logger.info("%s line %d", name, i)

    threads = [threading.Thread(target=burst, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop_logging()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 800
    for n in range(4):
        mine = [line.rsplit(": ", 1)[1] for line in lines if f": t{n} line " in line]
        assert mine == [f"t{n} line {i}" for i in range(200)]
    assert stream.writes < 100


def test_a_line_logged_after_a_quiet_spell_is_written_without_more_lines() -> None:
    import threading

    written = threading.Event()

    class Signalling(io.StringIO):
        def write(self, text: str) -> int:
            count = super().write(text)
            written.set()
            return count

    stream = Signalling()
    setup_logging("INFO", None, stream=stream)
    logging.getLogger("serv.test").warning("alone")
    assert written.wait(10), "the writer thread never wrote the line"
    assert "alone" in stream.getvalue()
