"""stdout tailing cost (issue #4): CPU per MB of solver output in the daemon's tail path.

In-process, single-threaded, timed with time.process_time (this process's CPU, all
threads; nothing else runs in it while timing). The file is an LS-DYNA-like stdout:
the lines of the samples in /work/shared/samples/lsdyna (banner, d3hsp, messag, the R7
stdout tail) and, between them, cycle lines in the exact format LS-DYNA prints
(`   19862 t 3.0000E-02 dt 1.51E-06 write d3plot file            11/18/15 08:24:40`),
about 9 cycle lines to 1 sample line, ~75 bytes a line.

For each file size (default 1, 10, 100 MB) a `serv.output.Tailer` follows the file the
way the daemon does (one job, source "stdout"):
- catch-up: the tailer starts at offset 0 and reads the whole file (4 MB per read), ms/MB;
- idle poll: the file was read to its end; `read_job` with nothing new, µs per call;
- appended: the file was read to its end; an increment is appended (not timed), then
  `read_job` reads it (timed). One line (~75 B), 64 KB and 1 MB increments; ms per MB and
  µs per call. O(new bytes) means these do not grow with the file's size.
The parser (`LsDynaOutput.feed` + `snapshot`, what the tail thread runs on the lines) is
timed separately on the same lines, and so is the whole path (read_job + feed + snapshot).

    .venv/bin/python bench/tail_cost.py [--sizes-mb 1,10,100]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from serv.output import Tailer
from serv.solvers.lsdyna_output import LsDynaOutput
from serv.solvers.progress import STDOUT

GOAL_MS_PER_MB = 10.0
SAMPLES = Path("/work/shared/samples/lsdyna")
MB = 1024 * 1024
EVENTS = ("flush i/o buffers", "write d3plot file")


def sample_lines() -> list[str]:
    lines: list[str] = []
    for path in sorted(SAMPLES.glob("*")):
        if path.is_file():
            lines.extend(path.read_text(encoding="utf-8", errors="replace").splitlines())
    if not lines:
        raise SystemExit(f"no LS-DYNA samples in {SAMPLES}")
    return lines


def corpus() -> Iterator[str]:
    """LS-DYNA-like stdout lines, endless: 9 cycle lines, then the next sample line."""
    samples = itertools.cycle(sample_lines())
    cycle, t, dt = 1, 0.0, 1.51e-06
    while True:
        for i in range(9):
            event = EVENTS[1] if cycle % 50 == 0 else EVENTS[0]
            yield f"{cycle:8d} t {t:.4E} dt {dt:.2E} {event:<29s}11/18/15 08:24:40"
            cycle += 1
            t += dt
        yield next(samples)


class Writer:
    """Appends corpus text to a file, in whole lines, by size."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = corpus()
        self.fh = open(path, "ab")  # noqa: SIM115 (kept open across appends; closed by close())

    def chunk(self, size: int) -> bytes:
        parts: list[bytes] = []
        n = 0
        while n < size:
            b = (next(self.lines) + "\n").encode()
            parts.append(b)
            n += len(b)
        return b"".join(parts)

    def append(self, size: int) -> int:
        data = self.chunk(size)
        self.fh.write(data)
        self.fh.flush()
        return len(data)

    def close(self) -> None:
        self.fh.close()


def timed(fn: Any, *a: Any) -> tuple[Any, float]:
    t0 = time.process_time()
    result = fn(*a)
    return result, time.process_time() - t0


def measure_size(folder: Path, size_mb: int) -> dict[str, Any]:
    path = folder / "stdout"
    if path.exists():
        path.unlink()
    w = Writer(path)
    written = 0
    while written < size_mb * MB:
        written += w.append(min(4 * MB, size_mb * MB - written))
    tailer = Tailer()
    tailer.add(1, folder, [(STDOUT, ("stdout",), None)])
    out: dict[str, Any] = {"size_mb": size_mb, "bytes": written}
    # catch-up read of the whole file
    cpu = 0.0
    got = 0
    lines_all = 0
    while True:
        chunks, dt = timed(tailer.read_job, 1)
        cpu += dt
        if not chunks:
            break
        got += len(chunks[STDOUT][1].encode())
        lines_all += len(chunks[STDOUT][0])
    out["catchup_ms_per_mb"] = cpu * 1000 / (got / MB)
    # idle polls
    reps = 2000
    _, dt = timed(lambda: [tailer.read_job(1) for _ in range(reps)])
    out["idle_us_per_call"] = dt / reps * 1e6
    # appended increments
    for label, inc, reps in (("line", 1, 2000), ("64k", 64 * 1024, 100), ("1m", MB, 20)):
        cpu = 0.0
        nbytes = 0
        for _ in range(reps):
            nbytes += w.append(inc)
            chunks, dt = timed(tailer.read_job, 1)
            cpu += dt
        out[f"append_{label}_us_per_call"] = cpu / reps * 1e6
        out[f"append_{label}_ms_per_mb"] = cpu * 1000 / (nbytes / MB)
    w.close()
    return out


def measure_parser(folder: Path, size_mb: int = 10) -> dict[str, Any]:
    """LsDynaOutput.feed + snapshot on lines as the tail thread hands them (64 KB reads),
    and the whole path read_job + feed + snapshot, per MB."""
    path = folder / "parser-stdout"
    w = Writer(path)
    tailer = Tailer()
    tailer.add(2, folder, [(STDOUT, ("parser-stdout",), None)])
    parser = LsDynaOutput()
    feed_cpu = read_cpu = snap_cpu = 0.0
    nbytes = nlines = 0
    now = 0.0
    while nbytes < size_mb * MB:
        w.append(64 * 1024)
        chunks, dt = timed(tailer.read_job, 2)
        read_cpu += dt
        lines, text = chunks[STDOUT]
        nbytes += len(text.encode())
        nlines += len(lines)
        now += 0.5
        _, dt = timed(parser.feed, STDOUT, lines, now)
        feed_cpu += dt
        _, dt = timed(parser.snapshot)
        snap_cpu += dt
    w.close()
    mb = nbytes / MB
    snap = parser.snapshot()
    return {
        "mb": mb,
        "lines": nlines,
        "read_ms_per_mb": read_cpu * 1000 / mb,
        "feed_ms_per_mb": feed_cpu * 1000 / mb,
        "feed_us_per_line": feed_cpu / nlines * 1e6,
        "snapshot_ms_per_mb": snap_cpu * 1000 / mb,
        "path_ms_per_mb": (read_cpu + feed_cpu + snap_cpu) * 1000 / mb,
        "parser_saw": {"sim_time": snap.sim_time, "started": snap.started},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", default="1,10,100", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    print(common.machine())
    began = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="dynalauncher-bench-tail-"))
    try:
        rows = [measure_size(folder, s) for s in args.sizes_mb]
        (folder / "stdout").unlink(missing_ok=True)
        parse = measure_parser(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"# file: LS-DYNA-like stdout, {rows[0]['bytes'] / rows[0]['size_mb'] / MB * 100:.0f}% of "
          f"the nominal size; Tailer.read_job, time.process_time")
    head = f"{'file (already read)':<20} {'catch-up':>10} {'idle poll':>10} {'+1 line':>10} " \
           f"{'+1 line':>10} {'+64 KB':>10} {'+1 MB':>10}"
    print(head)
    print(f"{'':<20} {'ms/MB':>10} {'us/call':>10} {'us/call':>10} {'ms/MB':>10} {'ms/MB':>10} {'ms/MB':>10}")
    for r in rows:
        print(f"{str(r['size_mb']) + ' MB':<20} {r['catchup_ms_per_mb']:>10.2f} {r['idle_us_per_call']:>10.1f} "
              f"{r['append_line_us_per_call']:>10.1f} {r['append_line_ms_per_mb']:>10.1f} "
              f"{r['append_64k_ms_per_mb']:>10.2f} {r['append_1m_ms_per_mb']:>10.2f}")
    print(f"# parser, {parse['mb']:.0f} MB in 64 KB increments ({parse['lines']} lines; it saw sim_time "
          f"{parse['parser_saw']['sim_time']}, started {parse['parser_saw']['started']}):")
    print(f"{'  Tailer.read_job':<36} {parse['read_ms_per_mb']:>8.2f} ms/MB")
    print(f"{'  LsDynaOutput.feed':<36} {parse['feed_ms_per_mb']:>8.2f} ms/MB "
          f"({parse['feed_us_per_line']:.2f} us/line)")
    print(f"{'  LsDynaOutput.snapshot (per read)':<36} {parse['snapshot_ms_per_mb']:>8.2f} ms/MB")
    print(f"{'  whole tail path':<36} {parse['path_ms_per_mb']:>8.2f} ms/MB")
    if args.json:
        args.json.write_text(json.dumps({"sizes": rows, "parser": parse}, indent=1))
    worst_tail = max(max(r["append_64k_ms_per_mb"], r["append_1m_ms_per_mb"]) for r in rows)
    spread = max(r["append_64k_ms_per_mb"] for r in rows) / min(r["append_64k_ms_per_mb"] for r in rows)
    idle_spread = max(r["idle_us_per_call"] for r in rows) / min(r["idle_us_per_call"] for r in rows)
    path = parse["path_ms_per_mb"]
    ratio = max(r["size_mb"] for r in rows) / min(r["size_mb"] for r in rows)
    print(
        f"SUMMARY tail_cost: tailer {worst_tail:.2f} ms CPU/MB appended (worst of 64 KB/1 MB "
        f"increments; {'met' if worst_tail <= GOAL_MS_PER_MB else 'missed'}; goal <= "
        f"{GOAL_MS_PER_MB:.0f} ms/MB), a {ratio:.0f}x bigger file changes it {spread:.2f}x "
        f"(idle poll {idle_spread:.2f}x); parser feed "
        f"{parse['feed_ms_per_mb']:.1f} ms/MB, whole path {path:.1f} ms/MB "
        f"({'met' if path <= GOAL_MS_PER_MB else f'missed, {path / GOAL_MS_PER_MB:.2f}x'}); "
        f"wall {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
