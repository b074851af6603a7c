"""Issue #4, HFSS / Electronics Desktop batch solve: the command line `Hfss.plan()` builds, the
`args` items it accepts, `HfssOutput` read against every sample in ../shared/samples/hfss
(FORMATS.md §2), and the fake `ansysedt` (tests/fakes/fake_ansysedt.py) as a real process.

Expected values below were read off the sample files by hand; lines marked UNSEEN are
synthetic (no sample shows them) and follow the wording FORMATS.md §2.6 quotes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serv.core.jobs import Family, Job
from serv.core.states import Termination
from serv.errors import BadParam
from serv.solvers.base import GracefulStop, LaunchContext, LaunchPlan, OutputVerdict
from serv.solvers.hfss import Hfss
from serv.solvers.hfss_output import HfssOutput
from serv.solvers.progress import STDOUT, Progress
from tests.fakes import install_fake_ansysedt

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples"
HFSS_SAMPLES = SAMPLES / "hfss"
S2025 = "aedt2025R2-hfss3dlayout-batchsolve-monitor-inprogress.log"
S2026 = "aedt2026R1-siwave-syz-batchsolve-normal.log"
S2022 = "aedt2022R2.2-linux-lsf-batchsolve-header.issue-excerpt.log"
S2017 = "hfss2017-eigenmode-solution.profile"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EXE = Path("/opt/AnsysEM/v252/Linux64/ansysedt")
PROJECT = "/runs/ant/antenna.aedt"
DELTA_S_2025 = [0.50326, 0.23296, 0.16771, 0.091794, 0.029611, 0.020736, 0.017318]


def job(args: tuple[str, ...] = (), ncpu: int = 8, input: str = PROJECT) -> Job:
    return Job(
        id=7, solver="hfss", family=Family.HFSS, input=input, workdir=str(Path(input).parent),
        submitted_at=T0, ncpu=ncpu, args=args,
    )


def ctx(extra_args: tuple[str, ...] = (), executable: Path = EXE) -> LaunchContext:
    return LaunchContext(
        executable=executable, mpiexec=None, mpi="none", cores=tuple(range(8)),
        intel_mpi_pinning=False, extra_args=extra_args,
    )


def sample_lines(name: str) -> list[str]:
    """The sample as the solver wrote it. The 2022 R2 excerpt shows the CRs of the original
    output as a literal `^M` (the issue author's pager, SOURCES.md): put the CRs back."""
    text = (HFSS_SAMPLES / name).read_text(encoding="utf-8")
    if name == S2022:
        text = text.replace("^M", "\r")
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def parse(lines: list[str], now: float = 0.0) -> Progress:
    parser = HfssOutput()
    parser.feed(STDOUT, lines, now)
    return parser.snapshot()


def until(lines: list[str], marker: str) -> list[str]:
    """The lines up to and including the first one containing `marker`."""
    index = next(i for i, line in enumerate(lines) if marker in line)
    return lines[: index + 1]


# ---------------------------------------------------------------------------------------------
# Command line


class TestHfssPlan:
    """FORMATS.md §2.1 and contract.md § Configuration: `ansysedt -ng -monitor [-machinelist
    list=localhost:1:N:90%] [-batchoptions "..."] -batchsolve [DESIGN[:Nominal:SETUP]] PROJECT`."""

    def test_plan_solves_the_whole_project_on_the_booked_cores_when_args_are_empty(self) -> None:
        """No args: one task with all the job's cores on this host, every design and setup."""
        plan = Hfss().plan(job(ncpu=8), ctx())
        assert plan == LaunchPlan(
            (str(EXE), "-ng", "-monitor", "-machinelist", "list=localhost:1:8:90%",
             "-batchsolve", PROJECT),
            {},
        )

    def test_plan_puts_the_design_before_the_project_when_a_design_is_chosen(self) -> None:
        """design=board solves all setups of that design: `-batchsolve board PROJECT`."""
        plan = Hfss().plan(job(("design=board",), ncpu=2), ctx())
        assert plan.argv == (str(EXE), "-ng", "-monitor", "-machinelist", "list=localhost:1:2:90%",
                             "-batchsolve", "board", PROJECT)

    def test_plan_names_a_nominal_setup_when_design_and_setup_are_chosen(self) -> None:
        """AEDT's target form DESIGN:Nominal:SETUP (pyaedt's solve_in_batch, the 2026 R1 `::`)."""
        plan = Hfss().plan(job(("setup=HFSS_Solution", "design=board 2"), ncpu=4), ctx())
        assert plan.argv[-3:] == ("-batchsolve", "board 2:Nominal:HFSS_Solution", PROJECT)

    def test_plan_passes_batch_options_as_one_argv_element_when_given(self) -> None:
        """Every batchoption= item goes into the single element after -batchoptions, in order."""
        args = (
            "design=board",
            "setup=Setup1",
            "batchoption=HFSS 3D Layout Design/MPIVendor=Intel",
            "batchoption=HFSS 3D Layout Design/RAMLimitPercent=90",
            "batchoption=HFSS/SolveAdaptiveOnly=0",
        )
        plan = Hfss().plan(job(args, ncpu=6), ctx())
        assert plan == LaunchPlan(
            (str(EXE), "-ng", "-monitor", "-machinelist", "list=localhost:1:6:90%",
             "-batchoptions",
             ("'HFSS 3D Layout Design/MPIVendor'='Intel' 'HFSS 3D Layout Design/RAMLimitPercent'=90 "
              "'HFSS/SolveAdaptiveOnly'=0"),
             "-batchsolve", "board:Nominal:Setup1", PROJECT),
            {},
        )

    @pytest.mark.parametrize(
        ("item", "rendered", "sample"),
        [
            ("batchoption=HFSS 3D Layout Design/MPIVendor=Intel",
             "'HFSS 3D Layout Design/MPIVendor'='Intel'", S2025),
            ("batchoption=HFSS 3D Layout Design/RAMLimitPercent=90",
             "'HFSS 3D Layout Design/RAMLimitPercent'=90", S2022),
        ],
        ids=["string-2025R2", "integer-2022R2"],
    )
    def test_plan_writes_batch_options_as_the_samples_do_when_given_a_string_or_an_integer(
        self, item: str, rendered: str, sample: str
    ) -> None:
        """Strings quoted, integers bare (Ansys Batchoptions File Format): text found verbatim
        in a sample's `Using command line:` / `Command line:` line."""
        plan = Hfss().plan(job((item,)), ctx())
        assert plan.argv[plan.argv.index("-batchoptions") + 1] == rendered
        command_line = next(line for line in sample_lines(sample) if "ommand line:" in line)
        options = command_line.split("-batchoptions", 1)[1].split(" -batchsolve", 1)[0]
        assert f" {rendered} " in f" {' '.join(options.split())} "

    def test_plan_uses_the_machine_list_syntax_of_the_local_samples_when_run_locally(self) -> None:
        """`list=localhost:TASKS:CORES:90%` as in 2025 R2 (`list=localhost:2:2:90%`)."""
        command_line = next(line for line in sample_lines(S2025) if "Using command line:" in line)
        assert "-machinelist list=localhost:2:2:90% " in command_line
        plan = Hfss().plan(job(ncpu=2), ctx())
        assert " ".join(plan.argv[3:5]) == "-machinelist list=localhost:1:2:90%"

    def test_plan_keeps_the_profile_machine_list_when_the_profile_brings_one(self) -> None:
        """A profile's extra_args (after -monitor) with its own -machinelist, as under LSF in
        the 2022 R2 sample (`-distributed -machinelist numcores=48 -auto`), replace ours."""
        extra = ("-distributed", "-machinelist", "numcores=48", "-auto")
        plan = Hfss().plan(job(("design=board",), ncpu=48), ctx(extra_args=extra))
        assert plan.argv == (str(EXE), "-ng", "-monitor", *extra, "-batchsolve", "board", PROJECT)

    def test_plan_adds_the_machine_list_after_profile_flags_when_they_have_none(self) -> None:
        """Profile flags without a machine list come right after -monitor, then ours."""
        plan = Hfss().plan(job(ncpu=3), ctx(extra_args=("-jobid", "JOB_1")))
        assert plan.argv[:7] == (str(EXE), "-ng", "-monitor", "-jobid", "JOB_1", "-machinelist",
                                 "list=localhost:1:3:90%")

    def test_family_attributes_match_the_issue_4_interface_when_read(self) -> None:
        """SIGTERM to stop, no deck, no side files, no sense switches, a fresh HfssOutput each time."""
        hfss = Hfss()
        assert hfss.graceful_stop is GracefulStop.SIGTERM
        assert hfss.reads_deck is False
        assert hfss.sense_switches == frozenset()
        assert hfss.side_files(job()) == ()
        first, second = hfss.new_parser(job()), hfss.new_parser(job())
        assert isinstance(first, HfssOutput) and first is not second


class TestHfssValidateArgs:
    """contract.md § Methods `launch` (`args` validated per profile) and § Errors: BadParam
    (-32602) naming the refused `'args'[i]` and what is allowed."""

    @pytest.mark.parametrize(
        "args",
        [
            [],
            ["design=board"],
            ["design=HFSSDesign1", "setup=Setup1"],
            ["setup=SIWAVE_SYZ_Setup1", "design=Cell_4DLT5F"],
            ["batchoption=HFSS 3D Layout Design/RAMLimitPercent=90"],
            ["design=a.b-c_d/e 2", "batchoption=HFSS/MPIVendor=Intel", "batchoption=HFSS/X=-1"],
        ],
    )
    def test_validate_args_accepts_design_setup_and_batch_options_when_well_formed(
        self, args: list[str]
    ) -> None:
        """design=, setup= (with a design) and batchoption=KEY=VALUE items pass."""
        Hfss().validate_args(args)

    @pytest.mark.parametrize(
        ("args", "index", "text"),
        [
            (["-distributed"], 0, "is not an HFSS batch-solve item"),
            (["design=board", "-machinelist", "list=host1:4"], 1, "allowed: design=NAME"),
            (["Design=board"], 0, "allowed: design=NAME"),
            (["project=x.aedt"], 0, "allowed: design=NAME"),
            (["design="], 0, "may hold only letters, digits, space and _-./"),
            (["design= board"], 0, "not starting or ending with a space"),
            (["design=a:b"], 0, "may hold only"),
            (["design=b\u00e4rd"], 0, "may hold only"),
            (["design=board", "setup=Setup1;rm -rf"], 1, "may hold only"),
            (["design=-RunScriptAndExit"], 0, "must not start with '-'"),
            (["setup=Setup1"], 0, "setup= needs a design= item"),
            (["batchoption=HFSS/X=1", "setup=Setup1"], 1, "setup= needs a design= item"),
            (["design=a", "design=b"], 1, "design= is given twice"),
            (["design=a", "setup=s", "setup=t"], 2, "setup= is given twice"),
            (["batchoption=HFSS/RAMLimitPercent"], 0, "is not batchoption=KEY=VALUE"),
            (["batchoption==90"], 0, "is not batchoption=KEY=VALUE"),
            (["batchoption=HFSS/X="], 0, "is not batchoption=KEY=VALUE"),
            (["batchoption='HFSS/X'='1'"], 0, "is not batchoption=KEY=VALUE"),
            (["batchoption=HFSS/X=1=2"], 0, "is not batchoption=KEY=VALUE"),
            (["batchoption=Desktop/ProjectDirectory=C:/x"], 0, "is not batchoption=KEY=VALUE"),
            (["batchoption=HFSS/X=1", "batchoption=hfss/x=2"], 1, "is given twice"),
        ],
    )
    def test_validate_args_refuses_the_item_naming_its_index_when_not_allowed(
        self, args: list[str], index: int, text: str
    ) -> None:
        """The first refused element is named as 'args'[i], with the reason."""
        with pytest.raises(BadParam) as caught:
            Hfss().validate_args(args)
        message = str(caught.value)
        assert caught.value.code == -32602
        assert f"param 'args'[{index}]" in message
        assert text in message

    @pytest.mark.parametrize("char", list(";&|<>`$\\\n\"'*?(){}[]!~:=,%"))
    def test_validate_args_refuses_shell_and_quote_characters_when_in_a_name(self, char: str) -> None:
        """No shell metacharacter, quote, `:` or `=` reaches the command line inside a name."""
        for item in (f"design=a{char}b", f"batchoption=HFSS/A{char}B=1", f"batchoption=HFSS/A=x{char}y"):
            with pytest.raises(BadParam, match=r"'args'\[0\]"):
                Hfss().validate_args([item])

    def test_plan_refuses_args_that_validation_refuses_when_called_directly(self) -> None:
        """plan() reads args with the same rules, so a bad item never reaches an argv."""
        with pytest.raises(BadParam, match=r"'args'\[0\]"):
            Hfss().plan(job(("-RunScriptAndExit",)), ctx())


# ---------------------------------------------------------------------------------------------
# Output parser against the samples


class TestHfssOutputSamples:
    """FORMATS.md §2.2–2.7: every file in ../shared/samples/hfss, with values read off the file."""

    def test_every_hfss_sample_has_expectations_when_the_folder_is_listed(self) -> None:
        """A sample added to the folder fails here until its expected values are written."""
        assert sorted(p.name for p in HFSS_SAMPLES.iterdir()) == sorted(EXPECTED)

    @pytest.mark.parametrize("name", sorted(n for n in os.listdir(HFSS_SAMPLES)))
    def test_snapshot_matches_the_values_read_off_the_sample_when_fed_the_whole_file(
        self, name: str
    ) -> None:
        """started, progress, termination, message and every details key, exactly."""
        expected = EXPECTED[name]
        assert parse(sample_lines(name)) == expected

    def test_snapshot_reports_the_pass_and_delta_s_without_a_percentage_when_mid_adaptive(self) -> None:
        """§2.4: after pass 4's [CONVERGE] line, `adaptive pass 4, max ΔS 0.16771`, progress None."""
        progress = parse(until(sample_lines(S2025), "Pass Number:  4;"))
        assert progress.progress is None and progress.termination is None and progress.eta_s is None
        assert progress.message == "adaptive pass 4, max ΔS 0.16771"
        assert progress.details["pass"] == 4
        assert progress.details["solved_elements"] == 33025
        assert progress.details["delta_s_history"] == DELTA_S_2025[:3]
        assert progress.details["converged"] is False
        assert progress.details["stage"] == "adaptive meshing"

    def test_snapshot_reports_pass_1_without_delta_s_when_delta_s_is_n_a(self) -> None:
        """Pass 1 prints `Max Mag. Delta S:  N/A`: a pass number, no ΔS, no history."""
        progress = parse(until(sample_lines(S2025), "Pass Number:  1;"))
        assert progress.message == "adaptive pass 1"
        assert progress.details["pass"] == 1
        assert "delta_s" not in progress.details and "delta_s_history" not in progress.details

    def test_snapshot_says_converged_when_adaptive_passes_converged(self) -> None:
        """`Adaptive Passes converged` after pass 8 (§2.4)."""
        progress = parse(until(sample_lines(S2025), "Adaptive Passes converged"))
        assert progress.details["converged"] is True
        assert progress.message == "adaptive passes converged at pass 8, max ΔS 0.017318"

    def test_snapshot_counts_sweep_points_when_the_interpolating_sweep_runs(self) -> None:
        """§2.5: `Frequency - X : host` starts a point, `... : Elapsed time` finishes it."""
        progress = parse(until(sample_lines(S2025), "Frequency - 100kHz : Elapsed time"))
        assert progress.details["sweep_points_started"] == 2  # 100kHz, 3GHz
        assert progress.details["sweep_points_solved"] == 2  # 3GHz, then 100kHz
        assert progress.message == "interpolating sweep Sweep1: 2 points solved"
        assert progress.progress is None

    def test_snapshot_joins_a_message_whose_stamp_is_on_the_next_line_when_fed_line_by_line(self) -> None:
        """§2.3: ` (11:55:40 AM  Oct 12, 2025)` continues the previous message; nothing breaks."""
        lines = until(sample_lines(S2025), "Model assembly took")
        parser = HfssOutput()
        for line in lines:
            parser.feed(STDOUT, [line], 0.0)
        assert parser.snapshot() == parse(lines)
        assert parser.snapshot().details["design"] == "board"

    def test_crs_anywhere_in_a_line_are_ignored_when_the_2022_log_carries_them(self) -> None:
        """The Linux 2022 R2 log has stray CRs (§2.2): same snapshot with CRs, without them,
        and with a CR moved into the middle of a line."""
        with_cr = sample_lines(S2022)
        without = [line.replace("\r", "") for line in with_cr]
        assert any("\r" in line for line in with_cr)
        inner = [line.replace("HFSS 3D Layout", "HFSS \r3D\r\r Layout") for line in without]
        inner = [line.replace("Starting Batch", "\rStarting Batch") for line in inner]
        assert parse(with_cr) == parse(without) == parse(inner) == EXPECTED[S2022]

    @pytest.mark.parametrize(
        ("name", "verdict"),
        [
            (S2026, OutputVerdict(Termination.NORMAL)),
            (S2017, OutputVerdict(Termination.NORMAL)),
            (S2025, OutputVerdict()),
            (S2022, OutputVerdict()),
        ],
    )
    def test_verdict_agrees_with_the_parser_when_read_from_a_sample(
        self, name: str, verdict: OutputVerdict
    ) -> None:
        """Hfss.verdict(text) reads the end of a run with the same parser."""
        assert Hfss().verdict("\n".join(sample_lines(name))) == verdict


EXPECTED: dict[str, Progress] = {
    # Cut mid-sweep: a running job (SOURCES.md). 8 passes, ΔS 0.50326 → 0.017318, converged,
    # interpolating sweep 0–5 GHz, 201 frequencies, 6 points started, 4 finished.
    S2025: Progress(
        started=True,
        message="interpolating sweep Sweep1: 4 points solved",
        details={
            "version": "2025.2.0",
            "design_type": "HFSS 3D Layout Design",
            "project": "test1",
            "design": "board",
            "setup": "HFSS_Solution",
            "stage": "frequency sweep",
            "pass": 8,
            "solved_elements": 65671,
            "delta_s": 0.017318,
            "delta_s_history": DELTA_S_2025,
            "converged": True,
            "sweep": "Sweep1",
            "sweep_kind": "interpolating",
            "sweep_range": "0Hz to 5GHz",
            "sweep_frequencies": 201,
            "sweep_points_started": 6,
            "sweep_points_solved": 4,
        },
    ),
    # SIwave SYZ: no adaptive passes; 8 points started, `converged after   76 solutions`,
    # `Status: Normal Completion`, `Stopping Batch Run:`.
    S2026: Progress(
        started=True,
        progress=100.0,
        termination=Termination.NORMAL,
        message="Normal Completion",
        details={
            "version": "2026.1.0",
            "design_type": "HFSS 3D Layout Design",
            "project": "pdn_design_001",
            "design": "Cell_4DLT5F",
            "setup": "SIWAVE_SYZ_Setup1",
            "stage": "frequency sweep",
            "sweep": "Freq",
            "sweep_kind": "interpolating",
            "sweep_points_started": 8,
            "sweep_solutions": 76,
            "sweep_converged": True,
            "status": "Normal Completion",
            "solves_completed": 1,
            "batch_stopped": True,
        },
    ),
    # Header and the start of a sweep only; the excerpt ends before any status.
    S2022: Progress(
        started=True,
        message="interpolating sweep Sweep1",
        details={
            "version": "2022.2.2",
            "design_type": "HFSS 3D Layout Design",
            "project": "project",
            "setup": "Pyaedt_Setup",
            "stage": "frequency sweep",
            "sweep": "Sweep1",
            "sweep_kind": "interpolating",
            "sweep_range": "0Hz to 1GHz",
            "sweep_frequencies": 792,
        },
    ),
    # Two ProfileGroups, each `Status: Normal Completion`; passes 1 and 2, then converged.
    S2017: Progress(
        started=True,
        progress=100.0,
        termination=Termination.NORMAL,
        message="Normal Completion",
        details={
            "version": "2017.0.0",
            "pass": 2,
            "converged": True,
            "status": "Normal Completion",
            "solves_completed": 2,
        },
    ),
}


# ---------------------------------------------------------------------------------------------
# Output parser: ends that no sample shows


STAMP = " (11:58:06 AM  Oct 12, 2025)"


class TestHfssOutputEnds:
    """FORMATS.md §2.6: failure is `[error]`, a `Status:` other than Normal Completion, or (UNSEEN)
    an execution-error or licence-checkout message; `Stopping Batch Run:` alone decides nothing."""

    def test_termination_is_error_with_the_message_when_an_error_line_follows(self) -> None:
        """UNSEEN `[error] … Simulation completed with execution error …` → error, text kept."""
        lines = sample_lines(S2025) + [
            "[error] Project:test1, Design:board, Simulation completed with execution error on "
            "server: Local Machine." + STAMP,
        ]
        progress = parse(lines)
        assert progress.termination is Termination.ERROR
        assert progress.message == (
            "[error] Project:test1, Design:board, Simulation completed with execution error on "
            "server: Local Machine."
        )
        assert progress.progress is None
        assert Hfss().verdict("\n".join(lines)) == OutputVerdict(Termination.ERROR, progress.message)

    def test_error_message_joins_its_continuation_lines_when_the_stamp_comes_later(self) -> None:
        """An [error] spanning lines (§2.3) is reported whole, without the stamp."""
        lines = [
            "[error] Project:p, Design:d, Port1 is not assigned",
            "to any conductor.",
            STAMP,
            "[info] Project:p, Design:d, Saved project." + STAMP,
        ]
        progress = parse(lines)
        assert progress.message == "[error] Project:p, Design:d, Port1 is not assigned to any conductor."

    def test_first_failure_is_kept_when_a_generic_one_and_a_normal_status_follow(self) -> None:
        """The first failure names the cause; an error end stays an error end."""
        lines = sample_lines(S2026)
        stop = next(i for i, line in enumerate(lines) if "Status: Normal Completion" in line)
        lines = (
            lines[:stop]
            + ["[error] Project:pdn_design_001, Design:Cell_4DLT5F, Mesh failed on net GND." + STAMP,
               "Simulation completed with execution error on server: Local Machine."]
            + lines[stop:]
        )
        progress = parse(lines)
        assert progress.termination is Termination.ERROR
        assert progress.message == (
            "[error] Project:pdn_design_001, Design:Cell_4DLT5F, Mesh failed on net GND."
        )

    @pytest.mark.parametrize(
        "line",
        [
            "[error] Project:test1, Design:board, Unable to check out license feature 'electronics_desktop'."
            + STAMP,
            "Failed to checkout license for feature elec_solve_hfss",
            "[warning] Project:test1, HFSS_Solution : [PROFILE] LICENSE CHECKOUT FAILED for hfss_solve"
            + STAMP,
            "FlexNet Licensing error:-5,357",
            "Could not obtain a licence for HFSS",
            "No licenses available for feature electronics_desktop",
        ],
    )
    def test_termination_is_error_when_a_licence_checkout_fails(self, line: str) -> None:
        """UNSEEN licence failures, any case, with or without a severity → error with the text."""
        progress = parse(sample_lines(S2022) + [line])
        assert progress.termination is Termination.ERROR
        assert progress.message is not None and "lic" in progress.message.lower()

    @pytest.mark.parametrize(
        "line",
        [
            "[info] Project:test1, Design:board, Checked out license feature electronics_desktop." + STAMP,
            ("[info] Using command line: \"ansysedt -batchoptions 'Desktop/Settings/ProjectOptions/"
             "LicenseQueuing'=1 -batchsolve x.aedt\"."),
            "[warning] Project:test1, Design:board, License will expire in 10 days." + STAMP,
            "[warning] Project:test1, Design:board, Error estimate exceeds target on port 2." + STAMP,
        ],
    )
    def test_termination_stays_open_when_a_line_only_mentions_licences_or_errors(self, line: str) -> None:
        """A licence name or the word error in a non-error message is not a failure."""
        assert parse(sample_lines(S2025) + [line]).termination is None

    def test_termination_is_error_when_the_status_is_not_normal_completion(self) -> None:
        """UNSEEN `Status: <other>` in the stop line → error naming the status."""
        lines = sample_lines(S2025) + [
            "[info] Project:test1, HFSS_Solution : [PROFILE]        Stop Time: 10/12/2025 11:59:00, "
            "Status: Aborted" + STAMP,
        ]
        progress = parse(lines)
        assert progress.termination is Termination.ERROR
        assert progress.message == "Status: Aborted"
        assert progress.details["status"] == "Aborted"

    def test_termination_stays_none_when_the_batch_stops_without_a_status(self) -> None:
        """`Stopping Batch Run:` without Normal Completion or an error: the exit code decides."""
        progress = parse(sample_lines(S2025) + ["Stopping Batch Run: 11:59:01 AM  Oct 12, 2025"])
        assert progress.termination is None
        assert progress.progress is None
        assert progress.details["batch_stopped"] is True
        assert progress.message == "batch run stopped without a completion status"

    def test_normal_completion_is_withdrawn_when_another_solve_starts(self) -> None:
        """A batch solving several setups completes each one: a new `Solution Process` reopens
        the run, and the next Normal Completion closes it again."""
        lines = sample_lines(S2026)[:-1]  # without `Stopping Batch Run:`
        process = next(line for line in lines if "[PROFILE] Solution Process" in line)
        status = next(line for line in lines if "Status: Normal Completion" in line)
        reopened = parse(lines + [process])
        assert reopened.termination is None and reopened.progress is None
        assert reopened.details["solves_completed"] == 1
        closed = parse(lines + [process, status])
        assert closed.termination is Termination.NORMAL and closed.progress == 100.0
        assert closed.details["solves_completed"] == 2

    def test_discrete_sweep_reports_percent_and_eta_when_points_finish(self) -> None:
        """UNSEEN discrete sweep: finished points / N Frequencies (§2.5), ETA from their rate."""
        prefix = "[info] Project:p, Setup1 : [PROFILE] "
        parser = HfssOutput()
        parser.feed(STDOUT, [prefix + "Frequency Sweep : Time: 10/12/2025 11:57:14" + STAMP,
                             prefix + "Solution - Sweep2 : Discrete HFSS Frequency Sweep" + STAMP,
                             prefix + "       From 1GHz to 4GHz, 4 Frequencies" + STAMP], 100.0)
        parser.feed(STDOUT, [prefix + "Frequency - 1GHz : Elapsed time : 00:00:10" + STAMP], 110.0)
        parser.feed(STDOUT, [prefix + "Frequency - 2GHz : Elapsed time : 00:00:10" + STAMP], 120.0)
        progress = parser.snapshot()
        assert progress.progress == 50.0
        assert progress.eta_s == pytest.approx(20.0)
        assert progress.message == "discrete sweep Sweep2: 2 of 4 points solved"
        assert progress.details["sweep_kind"] == "discrete"


# ---------------------------------------------------------------------------------------------
# Output parser: properties


FRAGMENTS = [
    line
    for name in sorted(EXPECTED)
    for line in sample_lines(name)[:: 7]
] + [
    "[error]", "[error] Project:", "[CONVERGE] Pass Number: ", "Pass Number:  99999999999999999999;",
    "Max Mag. Delta S:  1e999;", "Max Mag. Delta S:  nan;", " (11:58:06 AM  Oct 12, 2025)",
    "Status:", "Stop Time: x, Status: ", "TotalInfo='", "StartInfo='", "ProfileTask('Adaptive Pass ",
    "Frequency - ", "From a to b, 1 Frequencies", "Solution - ", "\r", "\x00", "\ufeff", "^M",
]


@st.composite
def chunked(draw: st.DrawFn, lines: list[str]) -> list[list[str]]:
    """`lines` cut into consecutive feed calls at random places (empty calls included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(lines)), max_size=40)))
    bounds = [0, *cuts, len(lines)]
    return [lines[a:b] for a, b in itertools.pairwise(bounds)]


class TestHfssOutputProperties:
    """progress.py: parsers are fed complete lines in any grouping and never raise on text."""

    @pytest.mark.parametrize("name", sorted(EXPECTED))
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_snapshot_is_the_same_when_the_log_is_fed_in_any_chunking(
        self, name: str, data: st.DataObject
    ) -> None:
        """Same lines, random feed calls (same `now`): the same snapshot as one call."""
        lines = sample_lines(name)
        parser = HfssOutput()
        for chunk in data.draw(chunked(lines)):
            parser.feed(STDOUT, chunk, 5.0)
        assert parser.snapshot() == EXPECTED[name]

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.one_of(st.text(max_size=200), st.sampled_from(FRAGMENTS),
                              st.lists(st.sampled_from(FRAGMENTS), max_size=4).map("".join)),
                    max_size=40))
    def test_parser_never_raises_and_stays_json_safe_when_fed_junk(self, lines: list[str]) -> None:
        """Any text, including truncated sample lines and huge numbers: no exception, and the
        details serialise as JSON."""
        parser = HfssOutput()
        parser.feed(STDOUT, lines, 1.0)
        progress = parser.snapshot()
        json.dumps(dict(progress.details), allow_nan=False)
        assert progress.progress is None or 0.0 <= progress.progress <= 100.0
        Hfss().verdict("\n".join(lines))


    def test_parser_reads_long_repetitive_lines_quickly_when_fed_pathological_text(self) -> None:
        """Blank runs and repeated keywords cost linear time (no regex retrying a run at every
        start): 100 kB lines of each read in well under a second apiece on any machine."""
        prefix = "[info] Project:p, Setup1 : [PROFILE] "
        lines = [
            prefix + "Solution - " + " " * 100_000 + "x",
            "Design type: x" + " " * 100_000 + "y",
            "Stop Time: " * 10_000,
            prefix + "Stop Time: 1, Status: a" + " " * 100_000 + "b",
            "[info] Project:p, " + " " * 100_000 + ": [PROFILE] x",
        ]
        began = time.perf_counter()
        parse(lines)
        assert time.perf_counter() - began < 5.0

# ---------------------------------------------------------------------------------------------
# Fake ansysedt, as a real process


@pytest.fixture
def started() -> Iterator[list[int]]:
    """PIDs this test started; any still alive at teardown are killed by PID, nothing else."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:  # already ended, the usual case
            pass


def fake_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_ANSYSEDT_")}
    env["FAKE_ANSYSEDT_LINE_DELAY_S"] = "0"
    env.update(extra)
    return env


def run_fake(argv: tuple[str, ...], cwd: Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, timeout=30,
                          stdin=subprocess.DEVNULL, env=fake_env(**env), check=False)


class TestFakeAnsysedt:
    """tests/fakes/fake_ansysedt.py: replays a sample for the argv Hfss.plan() builds."""

    def test_fake_replays_the_sample_and_exits_0_when_given_the_planned_argv(self, tmp_path: Path) -> None:
        """The planned command line is accepted; stdout is the sample, read as Normal Completion."""
        fake = install_fake_ansysedt(tmp_path / "bin", HFSS_SAMPLES / S2026)
        args = ("design=Cell_4DLT5F", "setup=SIWAVE_SYZ_Setup1",
                "batchoption=HFSS 3D Layout Design/MPIVendor=Intel",
                "batchoption=HFSS 3D Layout Design/RAMLimitPercent=90")
        plan = Hfss().plan(job(args, ncpu=6, input=str(tmp_path / "pdn.aedb")), ctx(executable=fake))
        done = run_fake(plan.argv, tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout == (HFSS_SAMPLES / S2026).read_bytes()
        lines = done.stdout.decode().split("\n")[:-1]
        assert parse(lines) == EXPECTED[S2026]

    @pytest.mark.parametrize(
        "argv",
        [
            ("-ng", "-batchsolve", "x.aedt"),
            ("-ng", "-monitor", "x.aedt"),
            ("-ng", "-monitor", "-batchsolve", "x.txt"),
            ("-ng", "-monitor", "-batchsolve", "a", "b", "x.aedt"),
            ("-ng", "-monitor", "-machinelist", "localhost", "-batchsolve", "x.aedt"),
            ("-ng", "-monitor", "-batchoptions", "HFSS/X=1", "-batchsolve", "x.aedt"),
            ("-ng", "-monitor", "-batchoptions", "'HFSS/X'='1'", "'HFSS/Y'='2'", "-batchsolve", "x.aedt"),
            ("-ng", "-monitor", "-batchsolve", "board:Setup1", "x.aedt"),
        ],
    )
    def test_fake_exits_2_with_a_message_when_the_argv_has_the_wrong_shape(
        self, tmp_path: Path, argv: tuple[str, ...]
    ) -> None:
        """A command line the family never builds is a usage error: exit 2, stderr says why."""
        fake = install_fake_ansysedt(tmp_path / "bin", HFSS_SAMPLES / S2026)
        done = run_fake((str(fake), *argv), tmp_path)
        assert done.returncode == 2
        assert done.stdout == b""
        assert b"fake ansysedt:" in done.stderr

    def test_fake_takes_the_sample_from_the_project_then_the_environment_when_given(
        self, tmp_path: Path
    ) -> None:
        """`$ fake-sample: PATH` in the project beats FAKE_ANSYSEDT_SAMPLE, which beats the baked path."""
        fake = install_fake_ansysedt(tmp_path / "bin", HFSS_SAMPLES / S2026)
        project = tmp_path / "p.aedt"
        argv = (str(fake), "-ng", "-monitor", "-batchsolve", str(project))
        from_env = run_fake(argv, tmp_path, FAKE_ANSYSEDT_SAMPLE=str(HFSS_SAMPLES / S2017))
        assert from_env.stdout == (HFSS_SAMPLES / S2017).read_bytes()
        project.write_text(f"$begin 'AnsoftProject'\n$ fake-sample: {HFSS_SAMPLES / S2022}\n")
        from_project = run_fake(argv, tmp_path, FAKE_ANSYSEDT_SAMPLE=str(HFSS_SAMPLES / S2017))
        assert from_project.stdout == (HFSS_SAMPLES / S2022).read_bytes()

    def test_fake_exits_with_the_configured_code_when_fake_ansysedt_exit_is_set(self, tmp_path: Path) -> None:
        """FAKE_ANSYSEDT_EXIT=3: the full replay, then exit 3."""
        fake = install_fake_ansysedt(tmp_path / "bin", HFSS_SAMPLES / S2025)
        done = run_fake((str(fake), "-ng", "-monitor", "-batchsolve", "t.aedb"), tmp_path,
                        FAKE_ANSYSEDT_EXIT="3")
        assert done.returncode == 3
        assert done.stdout == (HFSS_SAMPLES / S2025).read_bytes()

    def test_fake_runs_as_ansysedt_and_dies_on_sigterm_when_stopped_mid_replay(
        self, tmp_path: Path, started: list[int]
    ) -> None:
        """The process is named `ansysedt` (shebang install) and SIGTERM ends it (graceful stop)."""
        fake = install_fake_ansysedt(tmp_path / "bin", HFSS_SAMPLES / S2026)
        plan = Hfss().plan(job(ncpu=2, input=str(tmp_path / "p.aedt")), ctx(executable=fake))
        out = tmp_path / "stdout"
        with open(out, "wb") as sink:
            proc = subprocess.Popen(list(plan.argv), cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=fake_env(FAKE_ANSYSEDT_LINE_DELAY_S="0.05"))
        started.append(proc.pid)
        deadline = time.monotonic() + 10
        while b"Starting Batch Run:" not in out.read_bytes():
            assert time.monotonic() < deadline, "the fake printed nothing within 10 s"
            time.sleep(0.02)
        assert psutil.Process(proc.pid).name() == "ansysedt"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert b"Stopping Batch Run:" not in out.read_bytes()
