"""contract.md § Job (`progress`, `sim_time`, `end_time`, `eta_s`, `added_mass`, `pct_mass`,
`termination`, `message`) for LS-DYNA: what `LsDynaOutput` reads from real solver output
(../shared/samples/lsdyna, FORMATS.md §1).

Every expected value is written here from reading the sample, never computed by the code
under test. Lines marked UNSEEN are written by hand after FORMATS.md's description of text
no sample shows (§1.4 estimates, §1.5 added mass, §1.9 licences); they pin the parser's
defensive behaviour, not LS-DYNA's real wording.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serv.core.jobs import Family, Job
from serv.core.states import Termination
from serv.solvers.lsdyna import LsDyna
from serv.solvers.lsdyna_output import LsDynaOutput
from serv.solvers.progress import D3HSP, DECK, MESSAG, STDOUT, OutputParser, Progress, SideFile

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "lsdyna"
R16_MESSAG = "lsdyna-R16.1-smp-win-4thr-normal-1cycle.messag"
R16_INPROGRESS = "lsdyna-R16.1-smp-win-4thr-TRUNCATED-inprogress.messag"
R16_CARDS = "lsdyna-R16.1-smp-win-4thr-normal-1cycle.d3hsp.control-cards-8-9.excerpt.txt"
R16_D3HSP = "lsdyna-R16.1-smp-win-4thr-normal-1cycle.d3hsp.head+tail.txt"
R7_TAIL = "lsdyna-R7.0-smp-win-1cpu-stdout-tail-normal.blog-excerpt.txt"
ANSYS_HEADER = "lsdyna-ansys-smp-license-option-header.issue-excerpt.txt"
MPP_ERROR = "lsdyna-mppDEV-10procs-input-error-termination.issue-excerpt.txt"
ALL_SAMPLES = sorted(p.name for p in SAMPLES.iterdir())
R16_HEADER = {
    "version": "smp d R16",
    "revision": "R16.1-180-gd50332dbe5",
    "precision": "Double precision (I8R8)",
}


def lines(name: str) -> list[str]:
    """A sample's lines as the tailer hands them over: split at newlines, CRs removed."""
    text = (SAMPLES / name).read_text(encoding="utf-8", errors="replace")
    return text.replace("\r", "").split("\n")


def read(*feeds: tuple[str, list[str]], now: float = 0.0) -> Progress:
    parser = LsDynaOutput()
    for source, chunk in feeds:
        parser.feed(source, chunk, now)
    return parser.snapshot()


def cycle_line(
    cycle: int, t: float, dt: float, event: str, stamp: str = "12/21/25 20:15:16"
) -> str:
    """A cycle line laid out like the samples' (FORMATS.md §1.3): `%8d t %.4E dt %.2E`, the
    event padded to 29 characters, then the stamp."""
    return f"{cycle:8d} t {t:.4E} dt {dt:.2E} {event:<29s}{stamp}"


def deck(endtim_card: str, keyword: str = "*CONTROL_TERMINATION") -> list[str]:
    return [
        "*KEYWORD",
        "*TITLE",
        "wing lattice",
        keyword,
        "$#  endtim    endcyc     dtmin    endeng    endmas     nosol",
        endtim_card,
        "*END",
    ]


class TestSamples:
    """FORMATS.md §1.2–§1.7 against every file in ../shared/samples/lsdyna."""

    def test_every_sample_is_covered_when_the_folder_is_listed(self) -> None:
        """A new sample in the folder must get its own test here."""
        assert ALL_SAMPLES == sorted(
            [R16_MESSAG, R16_INPROGRESS, R16_CARDS, R16_D3HSP, R7_TAIL, ANSYS_HEADER, MPP_ERROR]
        )

    def test_r16_messag_reads_as_a_finished_run_when_fed_whole(self) -> None:
        """R16.1 messag: banner, one cycle to t 1.3776E-07, dump d3dump01, normal banner → 100 %."""
        seen = read((MESSAG, lines(R16_MESSAG)))
        assert seen.started is True
        assert seen.sim_time == 1.3776e-07
        assert seen.termination is Termination.NORMAL
        assert seen.progress == 100.0
        assert seen.eta_s == 0.0
        assert seen.end_time is None  # messag has no control-card echo
        assert seen.message is None
        assert (seen.added_mass, seen.pct_mass) == (None, None)
        assert seen.details == {
            **R16_HEADER,
            "cycle": 1,
            "dt": 1.38e-07,
            "event": "write d3plot file",
            "last_dump": "d3dump01",
        }

    def test_r16_inprogress_messag_has_no_progress_when_no_end_time_is_known(self) -> None:
        """Cut after the first `write d3plot file` line: started, t 0, no banner, no progress."""
        seen = read((MESSAG, lines(R16_INPROGRESS)))
        assert seen.started is True
        assert seen.sim_time == 0.0
        assert seen.termination is None
        assert seen.progress is None
        assert seen.eta_s is None
        assert seen.message is None
        assert seen.details == {
            **R16_HEADER,
            "cycle": 1,
            "dt": 1.38e-07,
            "event": "write d3plot file",
        }

    def test_r16_inprogress_messag_has_no_progress_when_d3hsp_says_endtim_is_zero(self) -> None:
        """§1.4: ENDTIM 0 (the run's own d3hsp echo) leaves progress to the banner, still unseen."""
        seen = read((D3HSP, lines(R16_CARDS)), (MESSAG, lines(R16_INPROGRESS)))
        assert seen.end_time == 0.0
        assert seen.progress is None
        assert seen.eta_s is None

    def test_r16_inprogress_messag_has_progress_when_the_deck_gives_endtim(self) -> None:
        """A deck with ENDTIM 1.0E-06 (written here) gives 0 % at the sample's t 0."""
        seen = read((DECK, deck("   1.0E-06")), (MESSAG, lines(R16_INPROGRESS)))
        assert seen.end_time == 1.0e-06
        assert seen.progress == 0.0

    def test_r16_control_cards_give_endtim_and_dt2ms_when_fed_as_d3hsp(self) -> None:
        """CONTROL CARD 8/9 echo: `termination time....    0.0000E+00`, `dt2ms.    0.0000E+00`."""
        seen = read((D3HSP, lines(R16_CARDS)))
        assert seen.end_time == 0.0
        assert seen.details == {"dt2ms": 0.0}
        assert seen.started is False
        assert seen.sim_time is None
        assert seen.termination is None
        assert seen.progress is None

    def test_r16_d3hsp_head_and_tail_read_as_a_finished_run_when_fed_as_d3hsp(self) -> None:
        """d3hsp head+tail: the same banner, cycle lines and normal banner as messag."""
        seen = read((D3HSP, lines(R16_D3HSP)))
        assert seen.started is True
        assert seen.sim_time == 1.3776e-07
        assert seen.termination is Termination.NORMAL
        assert seen.progress == 100.0
        assert seen.end_time is None  # the control-card echo is in the part cut out
        assert seen.message is None
        assert seen.details == {
            **R16_HEADER,
            "cycle": 1,
            "dt": 1.38e-07,
            "event": "write d3plot file",
            "last_dump": "d3dump01",
        }

    def test_r7_stdout_tail_reads_as_a_finished_run_when_fed_as_stdout(self) -> None:
        """R7 tail: cycle 19862 at t 3.0000E-02, dump d3dump01, bare normal banner at the end.

        It holds no header; its cycle lines alone say the solver ran. `Executing with LSTC
        local workstation license` is not a licence failure."""
        seen = read((STDOUT, lines(R7_TAIL)))
        assert seen.started is True
        assert seen.sim_time == 3.0e-02
        assert seen.termination is Termination.NORMAL
        assert seen.progress == 100.0
        assert seen.message is None
        assert seen.details == {
            "cycle": 19862,
            "dt": 1.51e-06,
            "event": "write d3plot file",
            "last_dump": "d3dump01",
        }

    def test_mpp_input_error_reads_as_an_error_with_its_first_error_block(self) -> None:
        """MPP: `Version : mpp d DEV`, `MPP execution with      10 procs`, two error blocks,
        `E r r o r   t e r m i n a t i o n`; the first block names the cause."""
        seen = read((STDOUT, lines(MPP_ERROR)))
        assert seen.started is True
        assert seen.termination is Termination.ERROR
        assert (
            seen.message == "Error 20211 (STR+211): reading boundary codes for implicit springback"
        )
        assert seen.sim_time is None
        assert seen.progress is None
        assert seen.eta_s == 0.0
        assert seen.details == {
            "version": "mpp d DEV",
            "revision": "DEV-93812-g2d73a9407a",
            "mpp_procs": 10,
        }

    def test_ansys_licence_option_header_reads_as_started_when_the_legal_notice_box_opens(
        self,
    ) -> None:
        """Ansys header: the `*            ANSYS LEGAL NOTICES        *` box line sets started
        (the excerpt stops before the version box). Neither `License option : check ansys
        licenses only` nor the notice's `software license agreement` is a licence failure."""
        parser = LsDynaOutput()
        head = lines(ANSYS_HEADER)
        parser.feed(STDOUT, head[:2], 0.0)  # `License option : ...` and a blank line
        assert parser.snapshot().started is False
        parser.feed(STDOUT, head[2:4], 0.0)  # the star rule, then the ANSYS LEGAL NOTICES line
        assert "ANSYS LEGAL NOTICES" in head[3]
        assert parser.snapshot().started is True
        parser.feed(STDOUT, head[4:], 0.0)
        seen = parser.snapshot()
        assert seen.message is None
        assert seen.termination is None
        assert seen.details == {}

    def test_r16_messag_starts_at_the_program_box_line_when_fed_line_by_line(self) -> None:
        """R16.1: the notice box and `LS-DYNA, A Program for Nonlinear Dynamic` both start."""
        text = lines(R16_MESSAG)
        box = next(
            i for i, line in enumerate(text) if "LS-DYNA, A Program for Nonlinear Dynamic" in line
        )
        rest = [line for line in text[:box] if "ANSYS LEGAL NOTICES" not in line]
        parser = LsDynaOutput()
        parser.feed(MESSAG, rest, 0.0)
        assert parser.snapshot().started is False
        parser.feed(MESSAG, [text[box]], 0.0)
        assert parser.snapshot().started is True

    @pytest.mark.parametrize(
        "line",
        [
            "     |  Livermore  Software  Technology  Corporation   |",  # FORMATS §1.2 (R7 era)
            "     |  Version : smp s R7.0.0                         |",
        ],
        ids=["lstc-banner", "version-box"],
    )
    def test_started_is_set_when_another_banner_line_is_seen(self, line: str) -> None:
        """§1.2: the LSTC-era box line and the `Version :` box line also mark the start."""
        assert read((STDOUT, [line])).started is True


class TestEndTime:
    """FORMATS.md §1.4: ENDTIM from the deck's *CONTROL_TERMINATION, else from d3hsp."""

    @pytest.mark.parametrize(
        ("card", "expected"),
        [
            ("   0.02000         0       0.0       0.0       0.0", 0.02),  # fixed 10-wide fields
            ("1.0000E-01         0", 0.1),
            ("0.05,0,0.0,0.0", 0.05),  # free format
            ("  2.5e-3 , 100", 2.5e-3),
            ("", 0.0),  # blank card: the default
            ("          1000", 0.0),  # blank ENDTIM field, ENDCYC given
            ("1.5D-2", 1.5e-2),  # Fortran exponent
        ],
        ids=["fixed", "fixed-exp", "free", "free-blanks", "blank", "blank-field", "fortran-d"],
    )
    def test_deck_endtim_is_the_first_field_when_the_card_is_read(
        self, card: str, expected: float
    ) -> None:
        """The first field, 10 wide, or up to the first comma in free format."""
        assert read((DECK, deck(card))).end_time == pytest.approx(expected)

    def test_deck_keyword_is_matched_case_insensitively_when_written_in_lower_case(self) -> None:
        """`*control_termination` is the same keyword."""
        assert read((DECK, deck("0.03", keyword="*control_termination"))).end_time == 0.03

    @pytest.mark.parametrize(
        "keyword",
        [
            "*CONTROL_IMPLICIT_TERMINATION",
            "*TERMINATION_NODE",
            "*CONTROL_TERMINATION_EXTRA",
            "*CONTROL_TIMESTEP",
        ],
    )
    def test_deck_endtim_is_unknown_when_the_keyword_is_another_one(self, keyword: str) -> None:
        """Only *CONTROL_TERMINATION itself carries ENDTIM; longer names are other keywords."""
        assert read((DECK, deck("0.03", keyword=keyword))).end_time is None

    def test_deck_endtim_skips_comment_cards_when_they_follow_the_keyword(self) -> None:
        """`$` cards between the keyword and its card are comments."""
        text = ["*CONTROL_TERMINATION", "$ endtim", "$ 9.9", "  0.0125"]
        assert read((DECK, text)).end_time == 0.0125

    def test_deck_endtim_is_zero_when_the_card_is_left_out(self) -> None:
        """A keyword right after *CONTROL_TERMINATION leaves every field at its default."""
        assert read((DECK, ["*CONTROL_TERMINATION", "*END"])).end_time == 0.0

    def test_deck_endtim_is_read_when_the_deck_arrives_in_chunks(self) -> None:
        """The keyword in one feed, its card in the next."""
        parser = LsDynaOutput()
        parser.feed(DECK, ["*KEYWORD", "*CONTROL_TERMINATION"], 0.0)
        parser.feed(DECK, ["$ comment", "0.2"], 0.0)
        assert parser.snapshot().end_time == 0.2

    def test_deck_endtim_uses_20_wide_fields_when_the_keyword_asks_for_long_format(self) -> None:
        """`*CONTROL_TERMINATION +` (and `*KEYWORD long=y`) read 20-character fields."""
        card = "            1.25E-02                   0"
        assert read((DECK, ["*CONTROL_TERMINATION +", card])).end_time == 1.25e-02
        assert read((DECK, ["*KEYWORD long=Y", "*CONTROL_TERMINATION", card])).end_time == 1.25e-02

    def test_deck_endtim_wins_over_d3hsp_when_both_are_known(self) -> None:
        """The deck is read first and preferred (FORMATS §1.4); d3hsp's 0 does not replace it."""
        seen = read((D3HSP, lines(R16_CARDS)), (DECK, deck("0.5")))
        assert seen.end_time == 0.5

    def test_d3hsp_endtim_is_used_when_the_deck_field_cannot_be_read(self) -> None:
        """A `&tend` parameter is left to the solver's own echo."""
        seen = read((DECK, deck("&tend")), (D3HSP, lines(R16_CARDS)))
        assert seen.end_time == 0.0

    def test_d3hsp_termination_time_reached_is_not_an_end_time_when_fed(self) -> None:
        """` *** termination time reached ***` holds the words but no number."""
        reached = " *** termination time reached ***"
        assert read((D3HSP, [reached])).end_time is None
        assert read((STDOUT, [reached]), (MESSAG, [reached])).end_time is None

    def test_d3hsp_dt2ms_is_not_taken_from_the_scale_factor_line_when_fed(self) -> None:
        """`scale factor on initial dt to determine dt2ms..` is another field."""
        seen = read((D3HSP, ["    scale factor on initial dt to determine dt2ms..    0.5000E+00"]))
        assert "dt2ms" not in seen.details


class TestProgressAndEta:
    """FORMATS.md §1.3–§1.4: progress = t/ENDTIM, ETA from the rate of t over active time.

    Cycle lines are synthetic, laid out like the samples' (`cycle_line` reproduces a sample line
    exactly, see the first test)."""

    def test_cycle_line_helper_reproduces_a_sample_line_when_given_its_values(self) -> None:
        """The helper's layout is the samples' own."""
        expected = (
            "       1 t 1.3776E-07 dt 1.38E-07 write d3dump01 file          12/21/25 20:15:16"
        )
        assert expected in lines(R16_MESSAG)
        assert cycle_line(1, 1.3776e-07, 1.3776e-07, "write d3dump01 file") == expected

    def test_progress_is_the_ratio_when_endtim_and_t_are_known(self) -> None:
        """t 2.5E-03 of ENDTIM 1.0E-02 is 25 %."""
        seen = read(
            (DECK, deck("1.0E-02")),
            (STDOUT, [cycle_line(900, 2.5e-03, 1.0e-06, "flush i/o buffers")]),
        )
        assert seen.progress == pytest.approx(25.0)
        assert seen.sim_time == 2.5e-03

    def test_progress_is_capped_below_100_when_t_reaches_endtim_without_a_banner(self) -> None:
        """Only the normal banner makes 100 %."""
        parser = LsDynaOutput()
        parser.feed(DECK, deck("1.0E-02"), 0.0)
        parser.feed(
            STDOUT,
            [
                " *** termination time reached ***",
                cycle_line(4000, 1.0e-02, 1.0e-06, "write d3plot file"),
            ],
            1.0,
        )
        assert parser.snapshot().progress == 99.9
        parser.feed(
            STDOUT,
            [" N o r m a l    t e r m i n a t i o n                          12/21/25 20:15:16"],
            2.0,
        )
        assert parser.snapshot().progress == 100.0

    def test_progress_stays_none_until_the_banner_when_endtim_is_zero(self) -> None:
        """§1.4: ENDTIM 0 — no ratio, 100 % on the normal banner."""
        parser = LsDynaOutput()
        parser.feed(DECK, deck("0.0"), 0.0)
        parser.feed(STDOUT, [cycle_line(1, 0.0, 1.38e-07, "flush i/o buffers")], 0.0)
        parser.feed(STDOUT, [cycle_line(1, 1.3776e-07, 1.38e-07, "write d3plot file")], 1.0)
        assert parser.snapshot().progress is None
        assert parser.snapshot().eta_s is None
        parser.feed(STDOUT, [" N o r m a l    t e r m i n a t i o n"], 2.0)
        assert parser.snapshot().progress == 100.0

    def test_progress_is_not_100_when_the_run_ends_in_error(self) -> None:
        """An error banner keeps the ratio (capped) and sets ETA 0."""
        parser = LsDynaOutput()
        parser.feed(DECK, deck("1.0"), 0.0)
        parser.feed(STDOUT, [cycle_line(10, 0.25, 1.0e-03, "flush i/o buffers")], 1.0)
        parser.feed(STDOUT, ["  E r r o r   t e r m i n a t i o n"], 2.0)
        seen = parser.snapshot()
        assert seen.progress == pytest.approx(25.0)
        assert seen.eta_s == 0.0
        assert seen.termination is Termination.ERROR
        assert seen.message == "error termination"

    def test_eta_is_none_when_only_one_sample_is_known(self) -> None:
        """One (time, t) sample gives no rate."""
        seen = read(
            (DECK, deck("1.0")), (STDOUT, [cycle_line(1, 0.0, 1.0e-03, "flush i/o buffers")])
        )
        assert seen.eta_s is None
        assert seen.progress == 0.0

    def test_eta_falls_when_the_rate_rises(self) -> None:
        """0.01/s for 10 s gives 90 s for the remaining 0.9; a jump to 0.03/s cuts it."""
        parser = LsDynaOutput()
        parser.feed(DECK, deck("1.0"), 0.0)
        parser.feed(STDOUT, [cycle_line(1, 0.0, 1.0e-03, "flush i/o buffers")], 0.0)
        parser.feed(STDOUT, [cycle_line(100, 0.1, 1.0e-03, "flush i/o buffers")], 10.0)
        first = parser.snapshot().eta_s
        assert first is not None and first == pytest.approx(90.0)
        parser.feed(STDOUT, [cycle_line(400, 0.4, 1.0e-03, "write d3plot file")], 20.0)
        second = parser.snapshot().eta_s
        assert second is not None and second < first - 30.0  # 0.6 left at well over 0.01/s

    def test_eta_ignores_lines_from_a_duplicate_source_when_they_bring_nothing_new(self) -> None:
        """messag repeating stdout later adds no sample, so the rate is unchanged."""
        parser = LsDynaOutput()
        first = [cycle_line(1, 0.0, 1.0e-03, "flush i/o buffers")]
        second = [cycle_line(100, 0.1, 1.0e-03, "flush i/o buffers")]
        parser.feed(DECK, deck("1.0"), 0.0)
        parser.feed(STDOUT, first, 0.0)
        parser.feed(STDOUT, second, 10.0)
        before = parser.snapshot()
        parser.feed(MESSAG, first + second, 50.0)
        assert parser.snapshot() == before

    def test_eta_is_zero_when_the_run_ended_normally(self) -> None:
        """After the banner nothing remains."""
        assert read((STDOUT, lines(R7_TAIL))).eta_s == 0.0


class TestDuplicateSources:
    """FORMATS.md §1.1: stdout and messag carry the same text; feeding both changes nothing."""

    @pytest.mark.parametrize("name", [R16_MESSAG, R16_INPROGRESS, R7_TAIL, MPP_ERROR])
    def test_snapshot_is_unchanged_when_messag_repeats_stdout(self, name: str) -> None:
        """Whole stdout then whole messag equals stdout alone."""
        text = lines(name)
        assert read((STDOUT, text), (MESSAG, text)) == read((STDOUT, text))

    def test_snapshot_is_unchanged_when_messag_lags_behind_stdout(self) -> None:
        """stdout ends at the last `write d3plot file`; messag re-reading up to the dump line
        must not pull `event` back to the dump."""
        text = lines(R16_MESSAG)
        dump = text.index(
            "       1 t 1.3776E-07 dt 1.38E-07 write d3dump01 file          12/21/25 20:15:16"
        )
        alone = read((STDOUT, text))
        parser = LsDynaOutput()
        parser.feed(STDOUT, text, 1.0)
        parser.feed(MESSAG, text[: dump + 1], 2.0)
        assert parser.snapshot() == alone
        assert alone.details["event"] == "write d3plot file"

    def test_snapshot_is_unchanged_when_the_sources_interleave_in_chunks(self) -> None:
        """stdout in 7-line chunks, messag one chunk behind and then catching up: stdout's result."""
        text = lines(R16_MESSAG)
        chunks = [text[i : i + 7] for i in range(0, len(text), 7)]
        parser = LsDynaOutput()
        for i, chunk in enumerate(chunks):
            parser.feed(STDOUT, chunk, float(i))
            if i:
                parser.feed(MESSAG, chunks[i - 1], float(i))
        parser.feed(MESSAG, chunks[-1], float(len(chunks)))
        assert parser.snapshot() == read((STDOUT, text))

    def test_added_mass_keeps_the_first_value_when_a_later_one_differs(self) -> None:
        """UNSEEN lines (§1.5): the first `added mass` / `percentage increase` is kept."""
        first = [" added mass          =   1.2345E-03", " percentage increase =   2.3456E+00"]
        later = [" added mass          =   9.9999E-01", " percentage increase =   9.9000E+01"]
        seen = read((STDOUT, first), (MESSAG, first + later), (STDOUT, later))
        assert (seen.added_mass, seen.pct_mass) == (1.2345e-03, 2.3456)


class TestUnseenLines:
    """FORMATS.md §1.4, §1.5, §1.9: text no sample shows, read defensively."""

    def test_added_mass_is_read_when_the_unseen_lines_appear(self) -> None:
        """UNSEEN: `added mass          =` (ten spaces) and `percentage increase =`, last token."""
        seen = read(
            (STDOUT, [" added mass          =   1.2345E-03", " percentage increase =   2.3456E+00"])
        )
        assert seen.added_mass == 1.2345e-03
        assert seen.pct_mass == 2.3456

    @pytest.mark.parametrize(
        "line",
        [
            " added mass          =",
            " added mass          =   ***********",
            " added mass          =   NaN",
            " added mass          =   1.0E+999",
            " added mass = 1.0",  # not ten spaces
        ],
    )
    def test_added_mass_stays_unknown_when_the_value_is_junk(self, line: str) -> None:
        """UNSEEN shapes with no finite number leave it unknown."""
        assert read((STDOUT, [line])).added_mass is None

    def test_estimates_go_to_details_when_the_unseen_lines_appear(self) -> None:
        """UNSEEN: LS-DYNA's own `estimated ... time = <N> sec (...)` lines; the last block wins."""
        block = [
            " estimated total cpu time          =      1200 sec (       0 hrs 20 mins)",
            " estimated cpu time to complete    =       900 sec (       0 hrs 15 mins)",
            " estimated total clock time        =      1260 sec (       0 hrs 21 mins)",
            " estimated clock time to complete  =       945 sec (       0 hrs 15 mins)",
        ]
        later = [" estimated clock time to complete  =       300 sec (       0 hrs  5 mins)"]
        seen = read((STDOUT, block + later), (MESSAG, block))
        assert {k: v for k, v in seen.details.items() if k.startswith("estimated")} == {
            "estimated_total_cpu_s": 1200.0,
            "estimated_cpu_to_complete_s": 900.0,
            "estimated_total_clock_s": 1260.0,
            "estimated_clock_to_complete_s": 300.0,
        }

    @pytest.mark.parametrize(
        "line",
        [
            " *** LICENSE ERROR: feature MPPDYNA not available",
            " License checkout failed for feature dyna",
            " Your license has expired",
            " licence request denied by server",
            " No license available for LS-DYNA",
            " Checkout failed: server down",
            " LSTC_LICENSE_SERVER not set",
            " Unable to obtain a license for lsdyna",
        ],
    )
    def test_licence_failure_is_the_message_when_an_unseen_licence_line_appears(
        self, line: str
    ) -> None:
        """UNSEEN (§1.9): licence failure wording, matched case-insensitively, names itself."""
        seen = read((STDOUT, [line]))
        assert seen.message is not None
        assert seen.message.startswith("licence failure: ")
        assert line.strip(" *")[:20] in seen.message

    def test_licence_error_70021_block_is_the_message_with_its_detail_when_it_ends_in_error(
        self,
    ) -> None:
        """UNSEEN: a `*** Error 70021` block outranks the first error block as the message."""
        text = [
            " *** Error 20018 (STR+18)",
            "     input phase completed with 1 fatal errors",
            "",
            " *** Error 70021 (OTH+21)",
            "     could not check out a license",
            "",
            "  E r r o r   t e r m i n a t i o n",
        ]
        seen = read((STDOUT, text))
        assert seen.termination is Termination.ERROR
        assert (
            seen.message == "licence failure: Error 70021 (OTH+21): could not check out a license"
        )

    @pytest.mark.parametrize("name", ALL_SAMPLES)
    def test_no_sample_reads_as_a_licence_failure(self, name: str) -> None:
        """The legal notice's `license` wording and `License option :` are not failures."""
        for source in (STDOUT, D3HSP):
            message = read((source, lines(name))).message
            assert message is None or not message.startswith("licence failure")

    def test_error_message_is_the_header_alone_when_no_detail_line_follows(self) -> None:
        """A header followed by a blank line, then the banner."""
        text = [" *** Error 10246 (KEY+246)", "", "  E r r o r   t e r m i n a t i o n"]
        assert read((STDOUT, text)).message == "Error 10246 (KEY+246)"

    def test_error_message_is_the_header_when_the_output_stops_after_it(self) -> None:
        """An error banner fed from another source while this one's block is still open."""
        parser = LsDynaOutput()
        parser.feed(MESSAG, [" *** Error 20211 (STR+211)"], 0.0)
        parser.feed(STDOUT, ["  E r r o r   t e r m i n a t i o n"], 0.0)
        assert parser.snapshot().message == "Error 20211 (STR+211)"

    def test_mpp_error_banner_wins_when_another_source_ended_normally(self) -> None:
        """§1.8: any source ending in error is fatal."""
        seen = read((STDOUT, lines(R16_MESSAG)), (MESSAG, lines(MPP_ERROR)))
        assert seen.termination is Termination.ERROR

    def test_cycle_lines_without_a_stamp_are_read_when_they_appear(self) -> None:
        """UNSEEN periodic lines may lack the event or the stamp (§1.3)."""
        seen = read(
            (
                STDOUT,
                [
                    "    2000 t 1.2000E-03 dt 6.00E-07",
                    "    2500 t 1.5000E-03 dt 6.00E-07 flush i/o buffers",
                ],
            )
        )
        assert seen.sim_time == 1.5e-03
        assert seen.details["event"] == "flush i/o buffers"
        assert seen.details["cycle"] == 2500

    def test_dump_numbers_advance_when_later_dumps_are_written(self) -> None:
        """`write d3dump02 file` after d3dump01 → last_dump d3dump02."""
        text = [
            cycle_line(100, 0.1, 1e-3, "write d3dump01 file"),
            cycle_line(200, 0.2, 1e-3, "write d3dump02 file"),
        ]
        assert read((STDOUT, text)).details["last_dump"] == "d3dump02"


class TestJunk:
    """progress.py: unknown text never raises."""

    def test_lines_with_carriage_returns_are_read_when_the_tailer_left_them(self) -> None:
        """CRs are the tailer's to strip; a cycle line and banner with one still parse."""
        text = [
            cycle_line(5, 1.0e-03, 1.0e-06, "write d3plot file") + "\r",
            " N o r m a l    t e r m i n a t i o n\r",
            "\r",
            "   \r\r junk \r",
        ]
        seen = read((STDOUT, text))
        assert seen.sim_time == 1.0e-03
        assert seen.termination is Termination.NORMAL

    @pytest.mark.parametrize(
        "line",
        [
            "       1 t E dt E write d3plot file            12/21/25 20:15:16",
            "       1 t 1.0E+999 dt 1.00E-06 write d3plot file            12/21/25 20:15:16",
            "       1 t ---- dt 1.00E-06",
            "     |  Version :",
            "     |  Version : |",
            " MPP execution with procs",
            " *** Error",
            "    termination time...............................    ********",
            "\x00\x00\x00\xff\ufffd\x1b[0m",
            "       1 t 1.0E-03 dt 1.0E-06 " + " " * 50_000 + "x",
        ],
    )
    def test_junk_line_is_ignored_when_it_almost_matches_a_marker(self, line: str) -> None:
        """Near-misses leave the values unknown."""
        seen = read((STDOUT, [line]), (D3HSP, [line]), (DECK, ["*CONTROL_TERMINATION", line]))
        assert seen.sim_time is None
        assert seen.termination is None

    FRAGMENTS = st.sampled_from(
        [
            "       1 t ",
            "0.0000E+00",
            " dt ",
            "1.38E-07",
            " write d3plot file",
            " write d3dump",
            "12/21/25 20:15:16",
            " *** Error 20211 (STR+211)",
            "E r r o r   t e r m i n a t i o n",
            "N o r m a l    t e r m i n a t i o n",
            "     |  Version : ",
            "|",
            "*CONTROL_TERMINATION",
            "$",
            ",",
            "added mass          =",
            "percentage increase =",
            "estimated total cpu time =",
            " sec",
            "termination time.....",
            "dt2ms.",
            "license",
            " not available",
            "\r",
            "\x00",
            "E+999",
            "-",
            "nan",
            " ",
            "\t",
        ]
    )
    LINE = st.one_of(st.text(max_size=120), st.lists(FRAGMENTS, max_size=12).map("".join))

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([STDOUT, MESSAG, D3HSP, DECK, "mes0001"]),
                st.lists(LINE, max_size=8),
                st.floats(min_value=0, max_value=1e6, allow_nan=False),
            ),
            max_size=12,
        )
    )
    def test_random_text_never_raises_when_fed_from_any_source(
        self, feeds: list[tuple[str, list[str], float]]
    ) -> None:
        """Whatever arrives, feed and snapshot return and the numbers stay in range."""
        parser: OutputParser = LsDynaOutput()
        for source, chunk, now in sorted(feeds, key=lambda f: f[2]):
            parser.feed(source, chunk, now)
            seen = parser.snapshot()
            assert seen.progress is None or 0.0 <= seen.progress <= 100.0
            assert seen.eta_s is None or seen.eta_s >= 0.0


def lsdyna_job() -> Job:
    return Job(
        id=7,
        solver="lsdyna-smp",
        family=Family.LSDYNA,
        input="/runs/wing/main.k",
        workdir="/runs/wing",
        submitted_at=datetime(2026, 1, 2, tzinfo=UTC),
    )


class TestFamily:
    """base.py (issue #4) and contract.md § Methods senseSwitch: what the family tails."""

    def test_family_tails_messag_or_mes0000_and_the_head_of_d3hsp(self) -> None:
        """messag with mes0000 as the MPP alternative; d3hsp up to 100 KB; the deck once."""
        family = LsDyna()
        assert family.side_files(lsdyna_job()) == (
            SideFile("messag", "messag", alternatives=("mes0000",)),
            SideFile("d3hsp", "d3hsp", max_bytes=100_000),
        )
        assert family.reads_deck is True

    def test_family_gives_a_fresh_parser_when_asked_twice(self) -> None:
        """One parser per job: state is never shared."""
        family = LsDyna()
        first, second = family.new_parser(lsdyna_job()), family.new_parser(lsdyna_job())
        assert isinstance(first, LsDynaOutput) and first is not second
        first.feed(STDOUT, lines(R7_TAIL), 0.0)
        assert second.snapshot() == Progress()

    def test_family_accepts_the_contract_sense_switches(self) -> None:
        """contract.md § Methods: sw1–sw4, swa–swd, lprint, nlprint, iter, conv, prof, stop;
        plus `file`, which the legacy GUI's menu sends."""
        assert LsDyna.sense_switches == frozenset(
            {
                "sw1",
                "sw2",
                "sw3",
                "sw4",
                "swa",
                "swb",
                "swc",
                "swd",
                "lprint",
                "nlprint",
                "iter",
                "conv",
                "prof",
                "stop",
                "file",
            }
        )
