"""#7: `LsDynaOutput.feed` counts plain cycle lines (PLAIN_CYCLE) instead of parsing each one,
and must read every batch of lines exactly as reading them one at a time in full did.

The reference is the feed before #7, kept here as `LineByLine`: every line goes through
`_output_line` (and `_hsp_line` for d3hsp), in order. Both parsers get the same batches at the
same `now` and are compared after every batch: the snapshot, the ETA's samples and what each
source has said (the tie-break between sources, the dumps). The one difference allowed is the
rounding of `eta_s`: within one feed the old code made one `RateEstimator.add` per rising `t`,
each replacing the sample before it (same `now`); the new one makes a single `add` with the
largest `t`. The samples are the same; the estimator's running sums are rounded differently.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serv.solvers.lsdyna_output import (
    ERROR_HEADER,
    LICENCE_ALWAYS,
    LICENCE_ERROR_NUMBER,
    LICENCE_TROUBLE,
    LSTC_LICENSE_TROUBLE,
    PLAIN_CYCLE,
    LsDynaOutput,
    _parse_cycle,
    _Stream,
    is_licence_failure,
)
from serv.solvers.progress import D3HSP, DECK, MESSAG, STDOUT

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "lsdyna"
ALL_SAMPLES = sorted(p.name for p in SAMPLES.iterdir())
DECK_ENDTIM_1 = ["*KEYWORD", "*CONTROL_TERMINATION", "       1.0", "*END"]
EVENTS = [
    "flush i/o buffers",
    "write d3plot file",
    "write d3dump01 file",
    "WRITE D3DUMP07 FILE",
    "wrıte d3dump02 file",  # dotless ı: DUMP_EVENT's IGNORECASE folds it to i
    "write  d3dump03   file",
    "write d3dump file",
    "write runrsf file",
    "",
]


class LineByLine(LsDynaOutput):
    """The feed before #7: every line read in full, one at a time, in order."""

    def feed(self, source: str, lines: Iterable[str], now: float) -> None:
        if source == DECK:
            for line in lines:
                self._deck_line(line)
            return
        stream = self._streams.setdefault(source, _Stream())
        for line in lines:
            self._output_line(stream, line, now)
            if source == D3HSP:
                self._hsp_line(line)


def sample(name: str) -> list[str]:
    """A sample's lines as the tailer hands them over: split at newlines, CRs removed."""
    text = (SAMPLES / name).read_text(encoding="utf-8", errors="replace")
    return text.replace("\r", "").split("\n")


def cycle_line(
    cycle: int, t: float, dt: float, event: str, stamp: str = "12/21/25 20:15:16"
) -> str:
    """A cycle line in LS-DYNA's layout (FORMATS.md §1.3)."""
    return f"{cycle:8d} t {t:.4E} dt {dt:.2E} {event:<29s}{stamp}"


def split(lines: list[str], sizes: list[int]) -> list[list[str]]:
    """`lines` cut into consecutive batches of the given sizes, repeated until all are used."""
    batches: list[list[str]] = []
    i = 0
    while i < len(lines):
        for size in sizes:
            batches.append(lines[i : i + size])
            i += size
    return [b for b in batches if b]


def what_streams_said(parser: LsDynaOutput) -> dict[str, tuple[object, ...]]:
    return {
        name: (s.last_cycle, s.cycles_seen, s.last_dump, s.dumps_seen, s.banner, s.open_error)
        for name, s in parser._streams.items()
    }


def assert_reads_alike(fast: LsDynaOutput, slow: LineByLine) -> None:
    got, want = fast.snapshot(), slow.snapshot()
    assert dataclasses.replace(got, eta_s=None) == dataclasses.replace(want, eta_s=None)
    if got.eta_s is None or want.eta_s is None:
        assert got.eta_s == want.eta_s
    else:
        assert math.isclose(got.eta_s, want.eta_s, rel_tol=1e-9, abs_tol=1e-9)
    assert list(fast._rate._samples) == list(slow._rate._samples)
    assert what_streams_said(fast) == what_streams_said(slow)


def feed_both(feeds: list[tuple[str, list[str], float]], end_time_known: bool = True) -> None:
    """Feed the same batches to both parsers, comparing them after every batch."""
    fast, slow = LsDynaOutput(), LineByLine()
    if end_time_known:  # so that eta_s is computed, not None
        fast.feed(DECK, DECK_ENDTIM_1, 0.0)
        slow.feed(DECK, DECK_ENDTIM_1, 0.0)
    for source, batch, now in feeds:
        fast.feed(source, batch, now)
        slow.feed(source, batch, now)
        assert_reads_alike(fast, slow)


SOURCES = st.sampled_from([STDOUT, MESSAG, D3HSP])
SIZES = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8)
STEPS = st.lists(st.sampled_from([0.0, 0.25, 1.0, 7.5]), min_size=1, max_size=8)


def timed(
    source: str, batches: list[list[str]], steps: list[float]
) -> list[tuple[str, list[str], float]]:
    """Each batch with its `now`: the steps, repeated, added up (a step of 0 repeats `now`)."""
    now = 0.0
    feeds = []
    for i, batch in enumerate(batches):
        now += steps[i % len(steps)]
        feeds.append((source, batch, now))
    return feeds


class TestSamples:
    """Every file in ../shared/samples/lsdyna reads the same in batches as line by line."""

    @pytest.mark.parametrize("source", [STDOUT, MESSAG, D3HSP])
    @pytest.mark.parametrize("name", ALL_SAMPLES)
    def test_sample_reads_alike_when_fed_whole_or_line_by_line(
        self, name: str, source: str
    ) -> None:
        """One batch, then the same text again one line per batch."""
        text = sample(name)
        feed_both([(source, text, 1.0)])
        feed_both(timed(source, [[line] for line in text], [0.5]))

    @settings(max_examples=150, deadline=None)
    @given(name=st.sampled_from(ALL_SAMPLES), source=SOURCES, sizes=SIZES, steps=STEPS)
    def test_sample_reads_alike_when_split_into_random_batches(
        self, name: str, source: str, sizes: list[int], steps: list[float]
    ) -> None:
        """Any split of a sample into batches, at any active times."""
        feed_both(timed(source, split(sample(name), sizes), steps))

    @settings(max_examples=60, deadline=None)
    @given(name=st.sampled_from(ALL_SAMPLES), sizes=SIZES, lag=st.integers(0, 3))
    def test_sample_reads_alike_when_messag_lags_behind_stdout(
        self, name: str, sizes: list[int], lag: int
    ) -> None:
        """stdout and messag carry the same text, messag some batches behind."""
        batches = split(sample(name), sizes)
        feeds = []
        for i, batch in enumerate(batches):
            feeds.append((STDOUT, batch, float(i)))
            if i >= lag:
                feeds.append((MESSAG, batches[i - lag], float(i)))
        feed_both(feeds)


PLAIN_CYCLES = st.builds(
    cycle_line,
    st.integers(min_value=0, max_value=99_999_999),
    st.floats(min_value=0.0, max_value=1e3),
    st.floats(min_value=1e-12, max_value=1e-2),
    st.sampled_from(EVENTS[:2]),
)
ODD_CYCLES = st.builds(
    cycle_line,
    st.integers(min_value=0, max_value=10**10),  # > 8 digits: another layout
    st.floats(min_value=-1e120, max_value=1e120),  # negative, three-digit exponents
    st.floats(min_value=-1.0, max_value=1e120),
    st.sampled_from(EVENTS),
    st.sampled_from(["12/21/25 20:15:16", "", "12/21/25"]),
)
TWEAKS = st.sampled_from(
    [
        lambda s: s,
        lambda s: s + " " * 300,  # longer than CYCLE_MAX_CHARS
        lambda s: s + "\r",
        lambda s: s.replace(" t ", "\tt ", 1),
        lambda s: s[:40] + "\n" + s[40:],
        lambda s: s[:33],  # no event, no stamp
        lambda s: s[:34],
        lambda s: s.replace(" dt ", "  dt ", 1),
        lambda s: s.replace("E", "e"),
        lambda s: "１" + s[1:],  # a full-width digit: \d takes it, PLAIN_CYCLE does not
    ]
)
OTHER_LINES = st.sampled_from(
    [
        "",
        " *** Error 20211 (STR+211)",
        "     reading boundary codes for implicit springback",
        " *** Warning 20006 (STR+6)",
        " N o r m a l    t e r m i n a t i o n                          12/21/25 20:15:16",
        "  E r r o r   t e r m i n a t i o n",
        " added mass          =   1.2345E-03",
        " estimated total cpu time          =      1234 sec (       0 hrs 20 mins)",
        " *** Error 70021 (OTH+21)",
        " LSTC_LICENSE not set",
    ]
)
TWEAKED_CYCLES = st.builds(lambda tweak, line: tweak(line), TWEAKS, ODD_CYCLES)
LINE = st.one_of(PLAIN_CYCLES, PLAIN_CYCLES, PLAIN_CYCLES, TWEAKED_CYCLES, OTHER_LINES)


class TestLongRuns:
    """Cycle lines in long runs (what #7 is about), with dumps and near-misses among them."""

    @settings(max_examples=300, deadline=None)
    @given(
        text=st.lists(LINE, max_size=120),
        name=st.sampled_from(ALL_SAMPLES),
        sizes=SIZES,
        steps=STEPS,
        two_sources=st.booleans(),
    )
    def test_run_reads_alike_when_split_into_random_batches(
        self,
        text: list[str],
        name: str,
        sizes: list[int],
        steps: list[float],
        two_sources: bool,
    ) -> None:
        """Generated cycle lines around a sample, in random batches; messag, if fed, lags."""
        lines = sample(name)
        middle = len(lines) // 2
        batches = split(lines[:middle] + text + lines[middle:], sizes)
        feeds = timed(STDOUT, batches, steps)
        if two_sources:
            with_messag = []
            for i, feed in enumerate(feeds):
                with_messag.append(feed)
                if i:
                    with_messag.append((MESSAG, batches[i - 1], feed[2]))
            feeds = with_messag
        feed_both(feeds)

    def test_run_reads_alike_when_t_falls_and_dumps_are_written_among_plain_lines(self) -> None:
        """The largest `t`, the dumps and the count survive when they are not on the last line."""
        run = [
            cycle_line(10, 2.0e-3, 1e-6, "flush i/o buffers"),
            cycle_line(11, 9.0e-3, 1e-6, "flush i/o buffers"),  # the largest t, not last
            cycle_line(12, 9.0e-3, 1e-6, "write d3dump01 file"),
            cycle_line(13, 3.0e-3, 1e-6, "write d3plot file"),
            " *** Error 20211 (STR+211)",
            cycle_line(14, 4.0e-3, 1e-6, "flush i/o buffers"),  # the error's detail line
            cycle_line(15, 5.0e-3, 1e-6, "write d3dump02 file"),
            cycle_line(16, 1.0e-3, 1e-6, "flush i/o buffers"),
        ]
        for size in range(1, len(run) + 1):
            feed_both(timed(STDOUT, split(run * 3, [size]), [1.0]))
        parser = LsDynaOutput()
        parser.feed(STDOUT, run, 1.0)
        seen = parser.snapshot()
        assert seen.sim_time == 9.0e-3
        assert seen.details["last_dump"] == "d3dump02"
        assert seen.details["cycle"] == 16

    def test_long_run_reads_alike_when_fed_as_the_tailer_hands_it_over(self) -> None:
        """~4,000 lines of a steady run, 9 cycle lines to 1 sample line, in 200-line reads."""
        others = [line for name in ALL_SAMPLES for line in sample(name)]
        lines = []
        for i in range(400):
            for j in range(9):
                cycle = 9 * i + j + 1
                event = "write d3plot file" if cycle % 50 == 0 else "flush i/o buffers"
                stamp = "11/18/15 08:24:40"
                lines.append(cycle_line(cycle, cycle * 1.51e-6, 1.51e-6, event, stamp))
            lines.append(others[i % len(others)])
        feed_both(timed(STDOUT, split(lines, [200]), [0.5]))


class TestPlainCycle:
    """PLAIN_CYCLE's promise: what it takes is a cycle line, `t` in columns 11-20, no dump."""

    @settings(max_examples=1000, deadline=None)
    @given(line=st.one_of(PLAIN_CYCLES, TWEAKED_CYCLES))
    def test_plain_cycle_line_is_a_cycle_line_with_its_t_and_no_dump(self, line: str) -> None:
        """Wherever PLAIN_CYCLE matches, the full parse agrees."""
        if PLAIN_CYCLE.match(line) is None:
            return
        parsed = _parse_cycle(line)
        assert parsed is not None
        cycle, dump = parsed
        assert dump is None
        assert cycle.t == float(line[11:21])
        assert len(line) <= 300

    def test_plain_cycle_takes_the_sample_lines_that_write_no_dump(self) -> None:
        """The samples' own cycle lines: plain unless they write d3dump01."""
        found = {
            line: PLAIN_CYCLE.match(line) is not None
            for name in ALL_SAMPLES
            for line in sample(name)
            if _parse_cycle(line) is not None
        }
        assert found and all(plain == ("d3dump" not in line) for line, plain in found.items())


def licence_failure_before_7(low: str) -> bool:
    """`is_licence_failure` without its shortcut."""
    if any(text in low for text in LICENCE_ALWAYS) or LICENCE_ERROR_NUMBER.search(low):
        return True
    if "lstc_license" in low and any(word in low for word in LSTC_LICENSE_TROUBLE):
        return True
    return ("license" in low or "licence" in low) and any(word in low for word in LICENCE_TROUBLE)


class TestShortcuts:
    """The per-line shortcuts of #7 change no answer."""

    @settings(max_examples=500, deadline=None)
    @given(
        st.one_of(
            st.text(max_size=80),
            st.lists(
                st.sampled_from([*LICENCE_ALWAYS, *LICENCE_TROUBLE, "license", "lstc_license",
                                 "*** error 70021", " ", "x"]),
                max_size=6,
            ).map("".join),
        )
    )
    def test_licence_shortcut_answers_as_the_full_search_when_given_any_text(
        self, text: str
    ) -> None:
        """The `licen`/`check`/`70021` pre-test never hides a licence failure."""
        low = text.lower()
        assert is_licence_failure(low) == licence_failure_before_7(low)

    def test_licence_shortcut_answers_as_the_full_search_for_every_sample_line(self) -> None:
        """Every sample line, lower-cased as `_output_line` does."""
        lows = [line.lower() for name in ALL_SAMPLES for line in sample(name)]
        assert [is_licence_failure(x) for x in lows] == [licence_failure_before_7(x) for x in lows]

    def test_error_header_pattern_never_takes_a_plain_cycle_line(self) -> None:
        """A plain cycle line starts with its cycle number, never with `***`."""
        assert ERROR_HEADER.match(cycle_line(1, 0.0, 1e-7, "flush i/o buffers")) is None
