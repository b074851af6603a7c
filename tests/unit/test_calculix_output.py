"""Issue #4, CalculiX: `CalculixOutput` read against every ccx 2.20 sample in
../shared/samples/calculix (FORMATS.md §3, SOURCES.md "CalculiX") and against the real `ccx`.

Expected values are written out here, read from the sample files themselves: a change in
what the parser reports shows up as a failing number, not as a new "golden" file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serv.core.jobs import Family, Job
from serv.core.states import Termination
from serv.solvers.calculix import CalculiX
from serv.solvers.calculix_output import CalculixOutput
from serv.solvers.progress import CVG, DECK, STA, STDOUT, Progress, SideFile


SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "calculix"
INPUTS = SAMPLES / "inputs"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

BEAMP = "ccx2.20-beamp-linear-static-normal"
FRICTION2 = "ccx2.20-friction2-nonlinear-contact-4steps-normal"
BEAMPISO = "ccx2.20-beampiso-plastic-2steps-direct-normal"
COLLAPSE_LIVE = "ccx2.20-beampiso_collapse-inprogress-at-2s"
COLLAPSE_ERROR = "ccx2.20-beampiso_collapse-no-convergence-error"
BEAMCR = "ccx2.20-beamcr-input-error"

DETAIL_KEYS = {
    "step", "increment", "attempt", "converged", "step_time", "step_progress", "inc_time",
    "cutbacks", "iterations", "steps_total", "step_periods", "threads", "version",
    "cutback_note", "deck_notes",
}
DOCKER_PREFIX = "calculix-adapter-solid    | "  # FORMATS.md §3.6 (compose log of a ccx 2.15 run)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").replace("\r", "").splitlines()


def run_sample(
    sample: str,
    deck: str,
    *,
    stdout: str | None = None,
    sources: Iterable[str] = (STA, CVG, STDOUT),
) -> CalculixOutput:
    """A parser fed the deck, then each of the sample's files in turn (1 s apart)."""
    parser = CalculixOutput()
    parser.feed(DECK, lines(INPUTS / deck), 0.0)
    names = {STA: f"{sample}.sta", CVG: f"{sample}.cvg", STDOUT: stdout or f"{sample}.stdout.txt"}
    for i, source in enumerate(sources, start=1):
        parser.feed(source, lines(SAMPLES / names[source]), float(i))
    return parser


def deck_only(text: str) -> Progress:
    parser = CalculixOutput()
    parser.feed(DECK, text.splitlines(), 0.0)
    return parser.snapshot()


def fortran_e(value: float) -> str:
    """A real as ccx's .sta writes it (`0.500000E-01`: mantissa in [0.1, 1))."""
    if value == 0:
        return "0.000000E+00"
    exponent = 0
    mantissa = value
    while abs(mantissa) >= 1:
        mantissa, exponent = mantissa / 10, exponent + 1
    while abs(mantissa) < 0.1:
        mantissa, exponent = mantissa * 10, exponent - 1
    return f"{mantissa:.6f}E{exponent:+03d}"


def sta_row(step: int, inc: int, att: int, itrs: int, tot: float, stept: float, inct: float,
            *, converged: bool = True) -> str:
    """One synthetic .sta row in ccx 2.20's exact columns (checked against a real row below)."""
    return (f"{step:6d}{inc:11d}{att:6d}{' ' if converged else 'U'}{itrs:5d}"
            f"  {fortran_e(tot)}  {fortran_e(stept)}  {fortran_e(inct)}")


class TestDeck:
    """FORMATS.md §3.3: step periods are the second number of each procedure's data line."""

    @pytest.mark.parametrize(
        ("deck", "periods"),
        [
            ("beamp.inp", [1.0]),  # `*STATIC` then `*CLOAD` at once: no data line
            ("friction2.inp", [1.0, 1.0, 1.0, 1.0]),  # `.05,1.` four times
            ("beampiso.inp", [1.0, 1.0]),  # `*STATIC,DIRECT` with data line `1.,1.`
            ("beampiso_collapse.inp", [1.0]),  # `0.05,1.,1.e-5,0.25`
            ("beamcr.inp", [0.001]),  # `*VISCO` with `0.001,0.001`
        ],
    )
    def test_deck_gives_each_step_its_period_when_read_from_the_sample_inputs(
        self, deck: str, periods: list[float]
    ) -> None:
        """Every `*STEP` counts once; its period comes from the data line right after the
        procedure keyword, else 1.0 (never from a later card such as `*CLOAD`'s `LOAD,2,1.`)."""
        snap = deck_only((INPUTS / deck).read_text())
        assert snap.details["step_periods"] == periods
        assert snap.details["steps_total"] == len(periods)
        assert snap.end_time == pytest.approx(sum(periods))
        assert snap.started is False and snap.progress is None

    @pytest.mark.parametrize(
        ("procedure", "data", "period"),
        [
            ("*static", "0.1,2.", 2.0),  # ccx 2.20 writes TOT TIME 2.0 for this (tried on beamp)
            ("*STATIC,", "0.1,2.", 2.0),  # no keyword continuation in ccx: still 2.0 (tried)
            ("*STATIC", "0.1 , 2.D0", 2.0),  # Fortran exponent, blanks (tried: 2.0)
            ("*STATIC", "0.1", 1.0),  # one number only: ccx's default 1.0 (tried)
            ("*STATIC", "0.5,,", 1.0),  # empty period field: default 1.0 (tried)
            ("*DYNAMIC", "1.e-3,0.5", 0.5),
            ("*Heat Transfer,Steady State", "0.25,3.", 3.0),
            ("*COUPLED TEMPERATURE-DISPLACEMENT", "0.1,4.", 4.0),
            ("*VISCO,CETOL=1.e-3", "0.01,10.", 10.0),
            ("*FREQUENCY", "10", 1.0),  # not a timed procedure: default period
        ],
    )
    def test_deck_reads_the_period_when_the_procedure_card_varies(
        self, procedure: str, data: str, period: float
    ) -> None:
        """Case, blanks, comments before the data line and Fortran reals do not matter."""
        text = (f"*NODE\n1,0,0,0\n*STEP,NLGEOM\n{procedure}\n** a comment\n\n{data}\n"
                "*CLOAD\n1,1,5.\n*END STEP\n")
        assert deck_only(text).details["step_periods"] == [period]

    def test_deck_notes_an_include_when_the_deck_has_one(self) -> None:
        """`*INCLUDE` is not followed (the parser opens no files); details say so."""
        text = "*INCLUDE,INPUT=mesh.inp\n*STEP\n*STATIC\n0.1,2.\n*END STEP\n"
        snap = deck_only(text)
        assert snap.details["step_periods"] == [2.0]
        assert snap.details["deck_notes"] == [
            "*INCLUDE,INPUT=mesh.inp not read: steps in included files are not counted"
        ]

    def test_deck_ignores_procedure_cards_when_they_are_outside_a_step(self) -> None:
        """Only cards between `*STEP` and `*END STEP` define a step."""
        text = "*STATIC\n0.1,7.\n*STEP\n*STATIC\n*END STEP\n*STATIC\n0.1,9.\n"
        assert deck_only(text).details["step_periods"] == [1.0]

    def test_deck_gives_the_same_periods_when_fed_one_line_at_a_time(self) -> None:
        """The deck may arrive in any chunks; the state carries across feed calls."""
        parser = CalculixOutput()
        for line in lines(INPUTS / "beampiso_collapse.inp"):
            parser.feed(DECK, [line], 0.0)
        assert parser.snapshot().details["step_periods"] == [1.0]


class TestSamples:
    """FORMATS.md §3.2–3.4: each sample's deck, .sta, .cvg and stdout, end to end."""

    def test_parser_reports_a_finished_single_step_when_the_run_is_beamp_linear(self) -> None:
        """Linear static: one .sta row (ITRS 1, TOT 1.0), no .cvg rows, ` Job finished`."""
        snap = run_sample(BEAMP, "beamp.inp").snapshot()
        assert snap.started is True
        assert snap.termination is Termination.NORMAL and snap.message is None
        assert snap.progress == 100.0
        assert snap.sim_time == 1.0 and snap.end_time == 1.0 and snap.eta_s == 0.0
        assert snap.details["step"] == 1 and snap.details["steps_total"] == 1
        assert snap.details["increment"] == 1 and snap.details["attempt"] == 1
        assert snap.details["iterations"] == 0 and snap.details["cutbacks"] == 0
        assert snap.details["threads"] == 2 and snap.details["version"] == "2.20"
        assert set(snap.details) == DETAIL_KEYS

    def test_parser_reports_four_steps_to_4s_when_the_run_is_friction2(self) -> None:
        """Four `.05,1.` steps: end 4.0; last .sta row `4 7 1 2 0.400000E+01 …`; 59 .cvg rows."""
        snap = run_sample(FRICTION2, "friction2.inp").snapshot()
        assert snap.details["step_periods"] == [1.0, 1.0, 1.0, 1.0]
        assert snap.termination is Termination.NORMAL
        assert snap.progress == 100.0
        assert snap.sim_time == 4.0 and snap.end_time == 4.0
        assert snap.details["step"] == 4 and snap.details["increment"] == 7
        assert snap.details["attempt"] == 1 and snap.details["converged"] is True
        assert snap.details["step_time"] == 1.0 and snap.details["inc_time"] == 0.290625
        assert snap.details["iterations"] == 59 and snap.details["cutbacks"] == 0

    def test_parser_reports_two_direct_steps_when_the_run_is_beampiso(self) -> None:
        """`*STATIC,DIRECT` × 2: one increment per step, TOT 2.0, 6 iterations, normal."""
        snap = run_sample(BEAMPISO, "beampiso.inp").snapshot()
        assert snap.termination is Termination.NORMAL and snap.progress == 100.0
        assert snap.sim_time == 2.0 and snap.end_time == 2.0
        assert snap.details["steps_total"] == 2 and snap.details["step"] == 2
        assert snap.details["iterations"] == 6 and snap.details["cutbacks"] == 0

    def test_parser_shows_partial_progress_and_cutbacks_when_the_collapse_run_is_live(self) -> None:
        """2 s in: last converged row TOT 0.0827820 of 1.0, 7 `U` rows, no end yet."""
        snap = run_sample(COLLAPSE_LIVE, "beampiso_collapse.inp").snapshot()
        assert snap.started is True
        assert snap.termination is None and snap.message is None
        assert snap.progress is not None and 8.27 < snap.progress < 8.28
        assert snap.sim_time == pytest.approx(0.082782) and snap.end_time == 1.0
        assert snap.details["cutbacks"] == 7
        position = (snap.details["step"], snap.details["increment"], snap.details["attempt"])
        assert position == (1, 9, 2)
        assert snap.details["inc_time"] == pytest.approx(0.549316e-4)
        assert snap.details["iterations"] == 81
        assert snap.details["cutback_note"] == (
            "too slow convergence; the increment size is decreased to 5.493164e-05"
        )

    def test_parser_reports_an_error_with_the_reason_when_the_collapse_run_stops(self) -> None:
        """`*ERROR: increment size smaller than minimum` → error; 10 cutbacks; progress kept."""
        snap = run_sample(COLLAPSE_ERROR, "beampiso_collapse.inp").snapshot()
        assert snap.termination is Termination.ERROR
        assert snap.message == "*ERROR: increment size smaller than minimum"
        assert snap.eta_s is None
        assert snap.progress is not None and 8.279 < snap.progress < 8.280
        assert snap.sim_time == pytest.approx(0.0827957)
        assert snap.details["cutbacks"] == 10
        assert (snap.details["increment"], snap.details["attempt"]) == (11, 1)
        assert snap.details["converged"] is False

    def test_parser_reports_the_visco_input_error_when_the_run_is_beamcr(self) -> None:
        """ccx 2.20 rejects the 2015 creep deck: the first `*ERROR` line and its indented reason."""
        snap = run_sample(BEAMCR, "beamcr.inp").snapshot()
        assert snap.termination is Termination.ERROR
        assert snap.message == (
            "*ERROR reading *VISCO: no strictly positive value for the parameter CETOL given"
        )
        assert "*VISCO" in snap.message
        assert snap.sim_time is None and snap.end_time == 0.001 and snap.progress == 0.0
        assert snap.details["cutbacks"] == 0 and snap.details["iterations"] == 0

    def test_snapshots_match_when_stdout_was_unbuffered_or_buffered(self) -> None:
        """FORMATS.md §3.5: the two friction2 stdouts differ only in line order; with .sta or
        from stdout alone, their final snapshots are the same."""
        unbuffered = f"{FRICTION2}.GFORTRAN_UNBUFFERED.stdout.txt"
        for sources in ((STA, CVG, STDOUT), (STDOUT,)):
            buffered = run_sample(FRICTION2, "friction2.inp", sources=sources).snapshot()
            ordered = run_sample(
                FRICTION2, "friction2.inp", stdout=unbuffered, sources=sources
            ).snapshot()
            assert ordered == buffered
        assert buffered.termination is Termination.NORMAL
        assert buffered.details["step"] == 4 and buffered.details["increment"] == 7

    def test_progress_stays_under_100_when_the_last_row_is_in_but_job_finished_is_not(self) -> None:
        """100 % only at ` Job finished`: ccx still writes results after the last increment."""
        parser = run_sample(FRICTION2, "friction2.inp", sources=(STA,))
        snap = parser.snapshot()
        assert snap.sim_time == 4.0 and snap.progress == 99.9 and snap.termination is None
        parser.feed(STDOUT, [" Job finished"], 9.0)
        assert parser.snapshot().progress == 100.0

    @pytest.mark.parametrize(("sample", "deck"), [(COLLAPSE_ERROR, "beampiso_collapse.inp"),
                                                 (BEAMCR, "beamcr.inp"), (BEAMP, "beamp.inp")])
    def test_termination_is_unchanged_when_a_log_driver_prefixes_every_line(
        self, sample: str, deck: str
    ) -> None:
        """FORMATS.md §3.6: the samples' stdout with `calculix-adapter-solid    | ` before each
        line (built here from the 2.20 samples) reads the same."""
        plain = run_sample(sample, deck, sources=(STDOUT,)).snapshot()
        parser = CalculixOutput()
        parser.feed(DECK, lines(INPUTS / deck), 0.0)
        parser.feed(STDOUT, [DOCKER_PREFIX + line for line in
                             lines(SAMPLES / f"{sample}.stdout.txt")], 1.0)
        assert parser.snapshot() == plain
        assert plain.termination is not None

    def test_error_message_keeps_its_reason_when_the_lines_arrive_in_two_reads(self) -> None:
        """The indented continuation may come in the next read of stdout."""
        text = lines(SAMPLES / f"{BEAMCR}.stdout.txt")
        cut = text.index(" *ERROR reading *VISCO:") + 1
        parser = CalculixOutput()
        parser.feed(STDOUT, text[:cut], 1.0)
        assert parser.snapshot().message == "*ERROR reading *VISCO:"
        parser.feed(STDOUT, text[cut:], 2.0)
        assert parser.snapshot().message == (
            "*ERROR reading *VISCO: no strictly positive value for the parameter CETOL given"
        )

    def test_error_wins_when_job_finished_also_appears(self) -> None:
        """Any `*ERROR` line is a failure, whatever else was printed."""
        parser = CalculixOutput()
        parser.feed(STDOUT, [" *ERROR in readinput: cannot open file x.inp", " Job finished"], 1.0)
        snap = parser.snapshot()
        assert snap.termination is Termination.ERROR
        assert snap.message == "*ERROR in readinput: cannot open file x.inp"

    def test_rows_count_once_when_a_rewritten_sta_is_read_again(self) -> None:
        """A .sta read again from its header (truncated, re-tailed) does not double cutbacks."""
        parser = CalculixOutput()
        rows = lines(SAMPLES / f"{COLLAPSE_ERROR}.sta")
        parser.feed(STA, rows, 1.0)
        parser.feed(STA, rows[5:], 2.0)  # the same rows again: ignored
        parser.feed(STA, rows, 3.0)  # the whole file again from its header: counted afresh
        assert parser.snapshot().details["cutbacks"] == 10


class TestEta:
    """FORMATS.md §3.3: ETA from converged TOT TIME against active seconds. The .sta rows here
    are synthetic, written in ccx 2.20's exact columns (the helper is checked on a real row)."""

    def test_synthetic_rows_use_the_real_column_format(self) -> None:
        """`sta_row` reproduces rows of the real collapse .sta byte for byte."""
        real = lines(SAMPLES / f"{COLLAPSE_LIVE}.sta")
        assert sta_row(1, 2, 1, 5, 0.05, 0.05, 0.05, converged=False) == real[3]
        assert sta_row(1, 9, 2, 2, 0.827820e-1, 0.827820e-1, 0.549316e-4) == real[-1]

    def test_eta_follows_converged_time_when_rows_arrive_at_a_steady_rate(self) -> None:
        """0.1 s of sim time per 10 active s, end 1.0 at 0.4 → 60 s left; `U` rows add nothing."""
        parser = CalculixOutput()
        parser.feed(DECK, ["*STEP", "*STATIC", "0.1,1.", "*END STEP"], 0.0)
        for i in range(1, 5):
            t = i / 10
            parser.feed(STA, [sta_row(1, i, 1, 2, t, t, 0.1)], 10.0 * i)
        assert parser.snapshot().eta_s == pytest.approx(60.0)
        parser.feed(STA, [sta_row(1, 5, 1, 9, 0.4, 0.4, 0.1, converged=False)], 45.0)
        snap = parser.snapshot()
        assert snap.eta_s == pytest.approx(60.0)
        assert snap.details["cutbacks"] == 1 and snap.progress == pytest.approx(40.0)

    def test_eta_is_unknown_when_only_one_converged_row_is_in(self) -> None:
        """One sample gives no rate."""
        parser = CalculixOutput()
        parser.feed(DECK, ["*STEP", "*STATIC", "0.1,1.", "*END STEP"], 0.0)
        parser.feed(STA, [sta_row(1, 1, 1, 2, 0.1, 0.1, 0.1)], 5.0)
        assert parser.snapshot().eta_s is None

    def test_eta_is_zero_when_normal_and_unknown_when_failed(self) -> None:
        """An ended run has nothing left: 0 after ` Job finished`, None after an error."""
        finished = run_sample(BEAMP, "beamp.inp").snapshot()
        failed = run_sample(COLLAPSE_ERROR, "beampiso_collapse.inp").snapshot()
        assert (finished.eta_s, failed.eta_s) == (0.0, None)

    def test_progress_is_unknown_when_sta_runs_past_the_steps_the_deck_showed(self) -> None:
        """A step beyond the deck's (e.g. from an `*INCLUDE`d file) makes Σ periods wrong."""
        parser = CalculixOutput()
        parser.feed(DECK, ["*STEP", "*STATIC", "0.1,1.", "*END STEP", "*INCLUDE,INPUT=more.inp"],
                    0.0)
        parser.feed(STA, [sta_row(2, 1, 1, 2, 1.5, 0.5, 0.5)], 1.0)
        snap = parser.snapshot()
        assert snap.progress is None and snap.end_time is None and snap.eta_s is None
        assert snap.sim_time == 1.5


class TestRobustness:
    """progress.py: parsers never raise on unknown text."""

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from([DECK, STA, CVG, STDOUT, "messag"]),
                              st.lists(st.text(max_size=80), max_size=5)), max_size=20))
    def test_parser_never_raises_when_fed_arbitrary_text(
        self, feeds: list[tuple[str, list[str]]]
    ) -> None:
        """Any text on any source leaves a valid snapshot."""
        parser = CalculixOutput()
        for i, (source, chunk) in enumerate(feeds):
            parser.feed(source, chunk, float(i))
        snap = parser.snapshot()
        assert snap.progress is None or 0.0 <= snap.progress <= 100.0
        assert set(snap.details) == DETAIL_KEYS

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.sampled_from([
        "*STEP", "*STEP,NLGEOM", "*STATIC", "*STATIC,DIRECT", "*VISCO", "*END STEP", "**x", "",
        "0.1,2.", ",", "1e999,1e999", "abc,def", "*INCLUDE,INPUT=a", "0.1,-1.", "*", "* ,",
    ]), max_size=30))
    def test_deck_never_raises_and_periods_stay_positive_when_cards_are_shuffled(
        self, deck: list[str]
    ) -> None:
        """Malformed decks give one positive period per `*STEP`."""
        snap = deck_only("\n".join(deck))
        periods = snap.details["step_periods"]
        assert isinstance(periods, list)
        assert len(periods) == sum(1 for card in deck if card.upper().startswith("*STEP"))
        assert all(p > 0 for p in periods)


def calculix_job(tmp_path: Path, name: str = "beamp.inp") -> Job:
    return Job(id=5, solver="ccx", family=Family.CALCULIX, input=str(tmp_path / name),
               workdir=str(tmp_path), submitted_at=T0, ncpu=1)


class TestFamily:
    """Issue #4 family interface (serv/solvers/base.py): what the CalculiX family tails."""

    def test_family_tails_sta_and_cvg_named_after_the_job_when_the_deck_is_inp(
        self, tmp_path: Path
    ) -> None:
        """BEAM.INP → BEAM.sta and BEAM.cvg; the deck is read; no sense switches."""
        family = CalculiX()
        assert family.side_files(calculix_job(tmp_path, "BEAM.INP")) == (
            SideFile(STA, "BEAM.sta"), SideFile(CVG, "BEAM.cvg")
        )
        assert family.reads_deck is True and family.sense_switches == frozenset()

    def test_family_makes_a_fresh_parser_for_each_job(self, tmp_path: Path) -> None:
        """Parsers hold per-run state, so each call returns a new one."""
        job = calculix_job(tmp_path)
        first, second = CalculiX().new_parser(job), CalculiX().new_parser(job)
        assert isinstance(first, CalculixOutput) and first is not second
        first.feed(STDOUT, [" Job finished"], 1.0)
        assert second.snapshot().termination is None


def run_ccx(workdir: Path, stem: str) -> subprocess.CompletedProcess[str]:
    """The real ccx, as the family's plan runs it (`ccx -i stem`, one thread, unbuffered)."""
    ccx = shutil.which("ccx")
    if ccx is None:
        pytest.fail("ccx is missing: run scripts/install-test-deps (apt package calculix-ccx)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GFORTRAN_UNBUFFERED_PRECONNECTED": "y"}
    return subprocess.run([ccx, "-i", stem], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


class TestRealCcx:
    """lab-findings.md §2: the installed ccx 2.20, run in tmp_path."""

    def test_real_ccx_run_reads_as_finished_when_beamp_solves(self, tmp_path: Path) -> None:
        """beamp.inp → rc 0, ` Job finished`, one .sta row at 1.0: normal, 100 %."""
        shutil.copy(INPUTS / "beamp.inp", tmp_path / "beamp.inp")
        done = run_ccx(tmp_path, "beamp")
        assert done.returncode == 0, done.stdout[-2000:]
        job = calculix_job(tmp_path)
        family = CalculiX()
        parser = family.new_parser(job)
        parser.feed(DECK, lines(tmp_path / "beamp.inp"), 0.0)
        for side in family.side_files(job):
            parser.feed(side.source, lines(tmp_path / side.name), 1.0)
        parser.feed(STDOUT, done.stdout.splitlines(), 1.0)
        snap = parser.snapshot()
        assert snap.termination is Termination.NORMAL and snap.message is None
        assert snap.progress == 100.0 and snap.sim_time == 1.0 and snap.end_time == 1.0
        assert snap.details["threads"] == 1 and snap.details["step"] == 1

    def test_real_ccx_reads_as_error_when_the_input_is_missing_despite_exit_0(
        self, tmp_path: Path
    ) -> None:
        """`ccx -i nothere` exits 0 but prints `*ERROR in readinput: cannot open file`."""
        done = run_ccx(tmp_path, "nothere")
        assert done.returncode == 0
        parser = CalculixOutput()
        parser.feed(STDOUT, done.stdout.splitlines(), 1.0)
        snap = parser.snapshot()
        assert snap.termination is Termination.ERROR
        assert snap.message == "*ERROR in readinput: cannot open file nothere.inp"
        assert CalculiX().verdict(done.stdout).termination is Termination.ERROR
