"""Issue #4 item 2: incremental tailing — new bytes only, whole lines, partial last lines,
truncation, re-created files, UTF-16LE and CRLF output, capped side files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serv.output import TailFile, Tailer

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "samples" / "lsdyna" / "lsdyna-R16.1-smp-win-4thr-normal-1cycle.messag"


def tail(folder: Path, *names: str, max_bytes: int | None = None) -> TailFile:
    return TailFile("stdout", names or ("stdout",), folder, max_bytes)


def test_reads_only_new_whole_lines_and_keeps_a_partial_line(tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    out.write_bytes(b"one\ntwo\nthr")
    tf = tail(tmp_path)
    assert tf.read()[0] == ["one", "two"]
    assert tf.read() == ([], "")
    with open(out, "ab") as fh:
        fh.write(b"ee\nfour")
    assert tf.read()[0] == ["three"]
    assert tf.offset == out.stat().st_size


def test_cost_is_proportional_to_new_bytes(tmp_path: Path) -> None:
    """After a big file was read once, a read fetches only what was appended."""
    out = tmp_path / "stdout"
    out.write_bytes(b"x" * 99 + b"\n" * 1 + (b"line\n" * 200_000))
    tf = tail(tmp_path)
    tf.read()
    tf.read()
    start = tf.offset
    with open(out, "ab") as fh:
        fh.write(b"new line\n")
    lines, text = tf.read()
    assert lines == ["new line"] and tf.offset - start == len(b"new line\n")


def test_truncated_file_is_read_again_from_its_start(tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    out.write_text("a\nb\nc\n")
    tf = tail(tmp_path)
    tf.read()
    out.write_text("x\n")
    assert tf.read()[0] == ["x"]


def test_recreated_file_is_read_from_its_start(tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    out.write_text("first run line 1\nfirst run line 2\n")
    tf = tail(tmp_path)
    tf.read()
    replacement = tmp_path / "stdout.new"
    replacement.write_text("second run, a much longer first line than before\n")
    os.replace(replacement, out)
    assert tf.read()[0] == ["second run, a much longer first line than before"]


def test_crlf_is_stripped_and_text_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "stdout").write_bytes(b" 1 t 0.0000E+00 dt 2.37E-07 flush\r\nnext\r\n")
    lines, text = tail(tmp_path).read()
    assert lines == [" 1 t 0.0000E+00 dt 2.37E-07 flush", "next"]
    assert text.endswith("\r\n")


def test_utf16le_output_from_windows_is_decoded_across_reads(tmp_path: Path) -> None:
    """LS-DYNA stdout redirected on Windows can be UTF-16LE, with or without a BOM."""
    original = SAMPLE.read_text(encoding="utf-8", errors="replace").replace("\n", "\r\n")
    encoded = "\ufeff".encode("utf-16-le") + original.encode("utf-16-le")
    out = tmp_path / "stdout"
    tf = tail(tmp_path)
    lines: list[str] = []
    # Write in odd-sized pieces so characters and CRLFs are split between reads.
    for start in range(0, len(encoded), 777):
        with open(out, "ab") as fh:
            fh.write(encoded[start : start + 777])
        lines += tf.read()[0]
    assert lines == original.replace("\r", "").split("\n")[: len(lines)]
    assert any("N o r m a l" in line for line in lines)


def test_utf16_without_bom_is_recognised(tmp_path: Path) -> None:
    (tmp_path / "stdout").write_bytes("hello world\r\nsecond line\r\n".encode("utf-16-le"))
    assert tail(tmp_path).read()[0] == ["hello world", "second line"]


def test_invalid_utf8_falls_back_to_latin1(tmp_path: Path) -> None:
    (tmp_path / "stdout").write_bytes("Température 20°C\n".encode("latin-1"))
    assert tail(tmp_path).read()[0] == ["Température 20°C"]


def test_max_bytes_caps_reading_and_yields_the_last_partial_line(tmp_path: Path) -> None:
    (tmp_path / "d3hsp").write_text("a\n" * 10 + "tail of a long file\n" * 1000)
    tf = TailFile("d3hsp", ("d3hsp",), tmp_path, max_bytes=25)
    lines, _ = tf.read()
    assert lines[:10] == ["a"] * 10 and len("".join(lines)) <= 25
    assert tf.read() == ([], "")


def test_alternative_names_are_tried_in_order(tmp_path: Path) -> None:
    tf = TailFile("messag", ("messag", "mes0000"), tmp_path)
    assert tf.read() == ([], "")
    (tmp_path / "mes0000").write_text("rank 0 says hi\n")
    assert tf.read()[0] == ["rank 0 says hi"]


def test_tailer_groups_new_lines_per_source(tmp_path: Path) -> None:
    (tmp_path / "stdout").write_text("s1\n")
    (tmp_path / "job.sta").write_text("t1\n")
    tailer = Tailer()
    tailer.add(7, tmp_path, [("stdout", ("stdout",), None), ("sta", ("job.sta",), None)])
    got = tailer.read_job(7)
    assert got["stdout"][0] == ["s1"] and got["sta"][0] == ["t1"]
    assert tailer.read_job(7) == {}
    tailer.remove(7)
    assert tailer.read_job(7) == {}


def test_paused_time_does_not_count_as_active_time() -> None:
    """Runtime.active_now stands still while the job is paused."""
    import time

    from serv.job_manager import Runtime

    rt = Runtime()
    rt.paused_since = time.monotonic() - 100.0
    frozen = rt.active_now()
    assert rt.active_now() - frozen < 0.01
    rt.paused_total += time.monotonic() - rt.paused_since
    rt.paused_since = None
    assert abs((time.monotonic() - rt.active_now()) - rt.paused_total) < 0.01


def test_a_side_file_from_an_earlier_run_is_ignored_until_rewritten(tmp_path: Path) -> None:
    """A stale .sta (older than the job) is not read; once the solver rewrites it, it is."""
    import time

    sta = tmp_path / "job.sta"
    sta.write_text("old run row\n")
    old = time.time() - 3600
    os.utime(sta, (old, old))
    tf = TailFile("sta", ("job.sta",), tmp_path, None, not_before=time.time() - 1)
    assert tf.read() == ([], "")
    sta.write_text("new run row\n")
    assert tf.read()[0] == ["new run row"]


# -- the file kept open between reads ----------------------------------------------------


def test_the_open_file_is_read_on_without_reopening(tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    out.write_text("a\n")
    tf = tail(tmp_path)
    assert tf.read()[0] == ["a"]
    fd = tf.fd
    assert fd is not None
    with open(out, "a") as fh:
        fh.write("b\n")
    assert tf.read()[0] == ["b"] and tf.fd == fd
    tf.close()
    assert tf.fd is None


def test_a_file_deleted_and_recreated_is_read_from_its_start(tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    out.write_text("old line one\nold line two\n")
    tf = tail(tmp_path)
    tf.read()
    out.unlink()
    assert tf.read() == ([], "") and tf.fd is None
    out.write_text("new\n")
    assert tf.read()[0] == ["new"]


def test_a_file_replaced_by_rename_while_the_old_one_still_grows_is_followed(tmp_path: Path) -> None:
    """The writer of the old file keeps appending to it after another file was renamed over
    its name: the new file is noticed within RELOCATE_EVERY reads and read from its start."""
    from serv.output import RELOCATE_EVERY

    out = tmp_path / "stdout"
    out.write_text("old 0\n")
    tf = tail(tmp_path)
    tf.read()
    with open(out, "a") as old_writer:
        new = tmp_path / "stdout.new"
        new.write_text("new first line\n")
        os.replace(new, out)
        seen: list[str] = []
        for i in range(1, RELOCATE_EVERY + 2):
            old_writer.write(f"old {i}\n")
            old_writer.flush()
            seen += tf.read()[0]
    assert "new first line" in seen
    assert seen[seen.index("new first line") :] == ["new first line"]


def test_a_preferred_name_that_appears_is_followed_within_relocate_every_reads(tmp_path: Path) -> None:
    from serv.output import RELOCATE_EVERY

    tf = TailFile("messag", ("messag", "mes0000"), tmp_path)
    alt = tmp_path / "mes0000"
    alt.write_text("rank 0\n")
    assert tf.read()[0] == ["rank 0"]
    (tmp_path / "messag").write_text("smp\n")
    seen: list[str] = []
    with open(alt, "a") as fh:
        for _ in range(RELOCATE_EVERY + 1):
            fh.write("rank 0 again\n")
            fh.flush()
            seen += tf.read()[0]
    assert "smp" in seen and tf.current == str(tmp_path / "messag")


def test_a_file_truncated_while_open_is_read_from_its_start(tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    out.write_text("a long first line\nand a second\n")
    tf = tail(tmp_path)
    tf.read()
    with open(out, "r+") as fh:  # the same file (inode), cut short
        fh.truncate(0)
        fh.write("x\n")
    assert tf.read()[0] == ["x"]


def test_a_capped_file_is_closed_at_its_cap_and_a_replacement_is_read(tmp_path: Path) -> None:
    hsp = tmp_path / "d3hsp"
    hsp.write_text("card\n" * 100)
    tf = TailFile("d3hsp", ("d3hsp",), tmp_path, max_bytes=50)
    assert tf.read()[0] == ["card"] * 10
    assert tf.read() == ([], "") and tf.fd is None
    new = tmp_path / "d3hsp.new"
    new.write_text("second run\n")
    os.replace(new, hsp)
    assert tf.read()[0] == ["second run"]


def test_a_burst_larger_than_one_chunk_is_read_in_one_read(tmp_path: Path) -> None:
    from serv.output import READ_CHUNK

    out = tmp_path / "stdout"
    out.write_text("start\n")
    tf = tail(tmp_path)
    tf.read()
    burst = [f"line {i:07d}" for i in range(3 * READ_CHUNK // 12)]
    with open(out, "a") as fh:
        fh.write("\n".join(burst) + "\n")
    assert tf.read()[0] == burst


def test_a_capped_file_yields_its_partial_last_line_at_its_end_as_before(tmp_path: Path) -> None:
    hsp = tmp_path / "d3hsp"
    hsp.write_text("one\ntw")
    tf = TailFile("d3hsp", ("d3hsp",), tmp_path, max_bytes=1000)
    assert tf.read()[0] == ["one", "tw"]


def test_without_keep_open_the_file_is_closed_after_every_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows: the solver must stay free to delete or rename its own output."""
    import serv.output

    monkeypatch.setattr(serv.output, "KEEP_OPEN", False)
    out = tmp_path / "stdout"
    out.write_text("a\nb")
    tf = tail(tmp_path)
    assert tf.read()[0] == ["a"] and tf.fd is None
    with open(out, "a") as fh:
        fh.write("c\n")
    assert tf.read()[0] == ["bc"] and tf.fd is None
    out.rename(tmp_path / "moved")
    assert tf.read() == ([], "")


def test_tailer_remove_and_close_release_the_files(tmp_path: Path) -> None:
    (tmp_path / "stdout").write_text("s\n")
    tailer = Tailer()
    tailer.add(1, tmp_path, [("stdout", ("stdout",), None)])
    tailer.add(2, tmp_path, [("stdout", ("stdout",), None)])
    tailer.read_job(1)
    tailer.read_job(2)
    files = [tailer.jobs[1].files[0], tailer.jobs[2].files[0]]
    assert all(f.fd is not None for f in files)
    tailer.remove(1)
    assert files[0].fd is None and files[1].fd is not None
    tailer.close()
    assert files[1].fd is None and tailer.read_job(2) == {}
